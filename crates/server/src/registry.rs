//! Every live connection, for shutdown, heartbeats, idle timeouts, admin actions and stats,
//! the long-polls waiting right now (for admin actions), and per-address counts.
//!
//! Sharded so that connects and disconnects on different cores rarely meet on one lock; the
//! locks are `std` mutexes held only to insert, remove or clone out an `Arc`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use signalhub_hub::Client;

const SHARDS: usize = 16;

/// Counts of something per client address, each bounded by a limit.
#[derive(Debug, Default)]
pub struct IpCounts(Mutex<HashMap<IpAddr, usize>>);

impl IpCounts {
    /// Counts one more for `ip`, unless it already has `limit`.
    pub fn try_add(&self, ip: IpAddr, limit: usize) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    /// Counts one fewer for `ip`.
    pub fn remove(&self, ip: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// The live connections, keyed by connection id.
#[derive(Debug)]
pub struct Registry {
    shards: Vec<Mutex<HashMap<u64, Arc<Client>>>>,
    /// Long-polls waiting for publications: not connections (not in stats, no heartbeat),
    /// but admin tier changes and disconnects reach them.
    polls: Mutex<HashMap<u64, Arc<Client>>>,
    /// WebSockets, SSE streams and waiting long-polls per address (`connections_per_ip`).
    per_ip: IpCounts,
    /// Open HTTP connections per address (`http_connections_per_ip`).
    pub http_per_ip: IpCounts,
    /// HTTP connections being answered 429 because their address had no slot left.
    pub http_refusals: AtomicUsize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            polls: Mutex::new(HashMap::new()),
            per_ip: IpCounts::default(),
            http_per_ip: IpCounts::default(),
            http_refusals: AtomicUsize::new(0),
        }
    }
}

impl Registry {
    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Client>>> {
        self.shards[id as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, client: Arc<Client>) {
        self.shard(client.id()).insert(client.id(), client);
    }

    pub fn remove(&self, id: u64) {
        self.shard(id).remove(&id);
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` for every connection. Each shard is copied out first, so `f` runs with no
    /// registry lock held and may take other locks.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<Client>)) {
        let mut batch: Vec<Arc<Client>> = Vec::new();
        for shard in &self.shards {
            batch.clear();
            batch.extend(
                shard
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .cloned(),
            );
            for client in &batch {
                f(client);
            }
        }
    }

    /// Records a waiting long-poll.
    pub fn insert_poll(&self, client: Arc<Client>) {
        self.polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client.id(), client);
    }

    pub fn remove_poll(&self, id: u64) {
        self.polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Calls `f` for every connection and every waiting long-poll (admin actions).
    pub fn for_each_with_polls(&self, mut f: impl FnMut(&Arc<Client>)) {
        self.for_each(&mut f);
        let polls: Vec<Arc<Client>> = self
            .polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for client in &polls {
            f(client);
        }
    }

    /// Counts a new connection from `ip`, unless it already has `limit`.
    pub fn try_add_ip(&self, ip: IpAddr, limit: usize) -> bool {
        self.per_ip.try_add(ip, limit)
    }

    pub fn remove_ip(&self, ip: IpAddr) {
        self.per_ip.remove(ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signalhub_hub::Identity;

    #[test]
    fn insert_remove_and_iterate() {
        let r = Registry::default();
        for id in 0..40 {
            r.insert(Arc::new(Client::new(id, Identity::default(), 0, 25)));
        }
        assert_eq!(r.len(), 40);
        r.remove(3);
        let mut seen = 0;
        r.for_each(|_| seen += 1);
        assert_eq!(seen, 39);
    }

    #[test]
    fn per_ip_limit_counts_and_releases() {
        let r = Registry::default();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        assert!(r.try_add_ip(ip, 2));
        assert!(r.try_add_ip(ip, 2));
        assert!(!r.try_add_ip(ip, 2));
        r.remove_ip(ip);
        assert!(r.try_add_ip(ip, 2));
    }
}
