//! The hub: channels with their sequence, epoch, history and tier-bucketed subscribers.
//!
//! Ordering rests on one rule: a channel's mutex is held while a publication is sequenced,
//! remembered and pushed to every subscriber's outbox, and while a subscription takes its
//! position, replays and joins. So every subscriber sees a channel's publications in `seq`
//! order, and a (re)subscription sees each publication exactly once: either in its replay or
//! live, never both, never neither. Pushing never blocks (see `client`), so the lock is held
//! for the time it takes to clone an `Arc` per subscriber.
//!
//! Subscribers are bucketed by tier so tier locking is decided once per bucket, not once per
//! subscriber: a publication is serialized once as a full envelope and once as a `locked`
//! stub, and each bucket gets one of the two.
//!
//! With a [`DirectSink`] installed, subscribers parked idle on their sockets are claimed
//! rather than queued and handed to the sink as one batch per bucket (see `direct`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use bytes::Bytes;

use crate::channel::Glob;
use crate::client::{Client, Offer, Push};
use crate::direct::{DirectSink, Target};
use crate::envelope::{self, Publication};
use crate::history::{Entry, History, HistoryLimits};
use crate::ids;
use crate::tier::{TierId, TierLadder};

/// A publication that comes less than this after the end of the previous one's fan-out on
/// the same channel is queued for the connections to write (coalesced), not written directly.
pub const DIRECT_MIN_GAP_MS: u64 = 5;

/// How the hub is tuned.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub ladder: TierLadder,
    /// The bound on each connection's outbox, in bytes (replays included).
    pub max_queue_bytes: usize,
    /// History limits for channels no rule names.
    pub history: HistoryLimits,
    /// Per-pattern history limits; the first match wins.
    pub history_rules: Vec<(Glob, HistoryLimits)>,
    /// Channels that send their latest publication to a new subscriber.
    pub latest_value: Vec<Glob>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            ladder: TierLadder::default(),
            max_queue_bytes: 1 << 20,
            history: HistoryLimits::default(),
            history_rules: Vec::new(),
            latest_value: vec![
                Glob::Prefix("price:".into()),
                Glob::Prefix("market:".into()),
            ],
        }
    }
}

/// A client's last known position on a channel, sent to recover what it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub epoch: String,
    pub seq: u64,
}

/// One channel of a subscribe request.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeItem<'a> {
    /// A valid, normalized channel name.
    pub channel: &'a str,
    pub since: Option<&'a Since>,
    /// The connection already holds this subscription: report its position, replay nothing.
    pub held: bool,
}

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub channel: Arc<str>,
    pub epoch: Arc<str>,
    /// The last seq published when the subscription took effect.
    pub seq: u64,
    pub recovered: bool,
}

/// Where a publication landed on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub channel: Arc<str>,
    pub epoch: Arc<str>,
    pub seq: u64,
}

/// A page of history for the HTTP API.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub epoch: Arc<str>,
    pub seq: u64,
    /// Oldest first; above-tier publications as `locked` stubs.
    pub publications: Vec<Bytes>,
}

/// Counters for `/ws/stats` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    /// Channels with at least one subscriber.
    pub channels: usize,
    pub subscriptions: usize,
    pub publications: u64,
    /// Publications queued to subscribers (data frames out).
    pub deliveries: u64,
    /// Of those, the ones handed to the direct writer.
    pub direct_deliveries: u64,
}

#[derive(Debug)]
struct Channel {
    name: Arc<str>,
    epoch: Arc<str>,
    seq: u64,
    limits: HistoryLimits,
    history: History,
    /// The newest publication of a latest-value channel.
    latest: Option<Entry>,
    latest_value: bool,
    /// Subscribers by tier rank.
    buckets: Vec<HashMap<u64, Arc<Client>>>,
    subscribers: usize,
    /// Set when garbage collection took the channel out of the map; whoever finds this
    /// must look the channel up again.
    removed: bool,
    /// When the previous publication's fan-out ended (hub clock), to tell bursts apart.
    last_publish_ms: Option<u64>,
}

/// The in-process hub. Share it with `Arc`.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    channels: RwLock<HashMap<Arc<str>, Arc<Mutex<Channel>>>>,
    started: Instant,
    clock_skew_ms: AtomicU64,
    active_channels: AtomicUsize,
    subscriptions: AtomicUsize,
    publications: AtomicU64,
    deliveries: AtomicU64,
    direct_deliveries: AtomicU64,
    /// Where publications to idle sockets go, when the transport offers a direct writer.
    direct: Option<Arc<dyn DirectSink>>,
}

fn lock(channel: &Mutex<Channel>) -> MutexGuard<'_, Channel> {
    channel.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        Hub {
            config,
            channels: RwLock::new(HashMap::new()),
            started: Instant::now(),
            clock_skew_ms: AtomicU64::new(0),
            active_channels: AtomicUsize::new(0),
            subscriptions: AtomicUsize::new(0),
            publications: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            direct_deliveries: AtomicU64::new(0),
            direct: None,
        }
    }

    /// Hands publications to idle sockets to `sink` instead of waking their connections.
    pub fn with_direct_sink(mut self, sink: Arc<dyn DirectSink>) -> Self {
        self.direct = Some(sink);
        self
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn ladder(&self) -> &TierLadder {
        &self.config.ladder
    }

    /// Milliseconds on the hub's monotonic clock (drives history ttl).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + self.clock_skew_ms.load(Ordering::Relaxed)
    }

    /// Moves the hub clock forward, so tests can expire history without sleeping.
    pub fn advance_clock(&self, ms: u64) {
        self.clock_skew_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn limits_for(&self, channel: &str) -> HistoryLimits {
        self.config
            .history_rules
            .iter()
            .find(|(glob, _)| glob.matches(channel))
            .map(|(_, limits)| *limits)
            .unwrap_or(self.config.history)
    }

    fn lookup(&self, name: &str) -> Option<Arc<Mutex<Channel>>> {
        let map = self.channels.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }

    fn get_or_create(&self, name: &str) -> Arc<Mutex<Channel>> {
        if let Some(channel) = self.lookup(name) {
            return channel;
        }
        let mut map = self.channels.write().unwrap_or_else(|e| e.into_inner());
        map.entry(Arc::from(name))
            .or_insert_with_key(|key| {
                Arc::new(Mutex::new(Channel {
                    name: key.clone(),
                    epoch: Arc::from(ids::random_token(8)),
                    seq: 0,
                    limits: self.limits_for(name),
                    history: History::default(),
                    latest: None,
                    latest_value: self.config.latest_value.iter().any(|g| g.matches(name)),
                    buckets: Vec::new(),
                    subscribers: 0,
                    removed: false,
                    last_publish_ms: None,
                }))
            })
            .clone()
    }

    /// Sequences `publication` on `channel`, remembers it and queues it to every subscriber.
    pub fn publish(&self, channel: &str, publication: &Publication<'_>) -> Published {
        let tier_name = publication.tier.map(|t| self.config.ladder.name(t));
        loop {
            let handle = self.get_or_create(channel);
            let mut ch = lock(&handle);
            if ch.removed {
                continue;
            }
            let now = self.now_ms();
            ch.seq += 1;
            let seq = ch.seq;
            let full = envelope::full(publication, &ch.name, &ch.epoch, seq, tier_name);
            let locked = publication.tier.filter(|t| *t > TierId::LOWEST).map(|t| {
                let stub = envelope::locked(
                    publication,
                    &ch.name,
                    &ch.epoch,
                    seq,
                    self.config.ladder.name(t),
                );
                (t, stub)
            });
            let entry = Entry {
                seq,
                at_ms: now,
                full,
                locked,
            };
            let mut delivered = 0u64;
            // In a burst, queueing lets each connection write many publications in one go;
            // direct writes pay off when publications are apart (see `direct`). The gap is
            // counted from the end of the previous fan-out, which takes a while to 10,000
            // subscribers: back-to-back publications are a burst however long each takes.
            let direct = self.direct.is_some()
                && ch
                    .last_publish_ms
                    .is_none_or(|last| now.saturating_sub(last) >= DIRECT_MIN_GAP_MS);
            for (rank, bucket) in ch.buckets.iter().enumerate() {
                if bucket.is_empty() {
                    continue;
                }
                let payload = entry.for_tier(TierId(rank as u8));
                let mut targets = Vec::new();
                for client in bucket.values() {
                    match client.offer(payload, self.config.max_queue_bytes, direct) {
                        Offer::Direct(socket) => targets.push(Target {
                            client: client.clone(),
                            socket,
                        }),
                        Offer::Pushed(Push::Queued) => delivered += 1,
                        Offer::Pushed(_) => {}
                    }
                }
                // Claims happen only with a sink, so `targets` is empty without one.
                if let Some(sink) = self.direct.as_ref().filter(|_| !targets.is_empty()) {
                    delivered += targets.len() as u64;
                    self.direct_deliveries
                        .fetch_add(targets.len() as u64, Ordering::Relaxed);
                    // Still under the channel lock: the sink receives a channel's batches in
                    // `seq` order (a claimed client queues later publications meanwhile).
                    sink.send(payload, targets);
                }
            }
            ch.last_publish_ms = Some(self.now_ms());
            let limits = ch.limits;
            ch.history.prune(now, limits);
            if ch.latest_value {
                ch.latest = Some(entry.clone());
            }
            ch.history.push(entry, limits);
            self.publications.fetch_add(1, Ordering::Relaxed);
            self.deliveries.fetch_add(delivered, Ordering::Relaxed);
            return Published {
                channel: ch.name.clone(),
                epoch: ch.epoch.clone(),
                seq,
            };
        }
    }

    /// Subscribes `client` (in tier bucket `tier`) to every item, atomically with respect
    /// to publications on those channels. Queues, in order: the frame `reply` builds from
    /// the positions, then each channel's replay (oldest first) or latest-value snapshot.
    /// Returns the positions in item order (duplicates reported once).
    pub fn subscribe(
        &self,
        client: &Arc<Client>,
        tier: TierId,
        items: &[SubscribeItem<'_>],
        reply: impl FnOnce(&[Position]) -> Bytes,
    ) -> Vec<Position> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|a, b| items[*a].channel.cmp(items[*b].channel));
        order.dedup_by(|a, b| items[*a].channel == items[*b].channel);
        let handles: Vec<(usize, Arc<Mutex<Channel>>)> = loop {
            let handles: Vec<_> = order
                .iter()
                .map(|&i| (i, self.get_or_create(items[i].channel)))
                .collect();
            // A channel removed between look-up and lock is looked up again.
            if handles.iter().all(|(_, h)| !lock(h).removed) {
                break handles;
            }
        };
        // Lock in name order (the order of `handles`) so concurrent subscribers can't deadlock.
        let mut guards: Vec<(usize, MutexGuard<'_, Channel>)> =
            handles.iter().map(|(i, h)| (*i, lock(h))).collect();
        if guards.iter().any(|(_, g)| g.removed) {
            drop(guards);
            return self.subscribe(client, tier, items, reply);
        }
        guards.sort_by_key(|(i, _)| *i);
        let now = self.now_ms();
        let mut positions = Vec::with_capacity(guards.len());
        let mut replays: Vec<Bytes> = Vec::new();
        for (i, ch) in guards.iter_mut() {
            let item = &items[*i];
            let limits = ch.limits;
            ch.history.prune(now, limits);
            let recovered = if item.held {
                item.since.is_some()
            } else {
                let recovered = match item.since {
                    Some(since) if *since.epoch == *ch.epoch => {
                        match ch.history.since(since.seq, ch.seq) {
                            Some(missed) => {
                                replays.extend(missed.map(|e| e.for_tier(tier).clone()));
                                true
                            }
                            None => false,
                        }
                    }
                    _ => false,
                };
                if !recovered && ch.latest_value {
                    if let Some(latest) = ch.latest.as_ref() {
                        replays.push(latest.for_tier(tier).clone());
                    }
                }
                let rank = tier.index();
                if ch.buckets.len() <= rank {
                    ch.buckets.resize_with(rank + 1, HashMap::new);
                }
                if ch.buckets[rank]
                    .insert(client.id(), client.clone())
                    .is_none()
                {
                    ch.subscribers += 1;
                    self.subscriptions.fetch_add(1, Ordering::Relaxed);
                    if ch.subscribers == 1 {
                        self.active_channels.fetch_add(1, Ordering::Relaxed);
                    }
                }
                recovered
            };
            positions.push(Position {
                channel: ch.name.clone(),
                epoch: ch.epoch.clone(),
                seq: ch.seq,
                recovered,
            });
        }
        let frame = reply(&positions);
        client.push_all(
            std::iter::once(frame).chain(replays),
            self.config.max_queue_bytes,
        );
        positions
    }

    /// Removes `client_id` from `channel`'s bucket for `tier`. Unknown pairs are ignored.
    pub fn unsubscribe(&self, client_id: u64, channel: &str, tier: TierId) {
        let Some(handle) = self.lookup(channel) else {
            return;
        };
        let mut ch = lock(&handle);
        let removed = ch
            .buckets
            .get_mut(tier.index())
            .and_then(|bucket| bucket.remove(&client_id))
            .is_some();
        if removed {
            ch.subscribers -= 1;
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
            if ch.subscribers == 0 {
                self.active_channels.fetch_sub(1, Ordering::Relaxed);
                ch.buckets = Vec::new();
            } else if let Some(bucket) = ch.buckets.get_mut(tier.index()) {
                if bucket.is_empty() {
                    *bucket = HashMap::new();
                }
            }
        }
    }

    /// Moves `client` on `channel` from the `from` tier bucket to `to` (after a tier change),
    /// atomically with respect to publications on the channel.
    pub fn rebucket(&self, client: &Arc<Client>, channel: &str, from: TierId, to: TierId) {
        if from == to {
            return;
        }
        let Some(handle) = self.lookup(channel) else {
            return;
        };
        let mut ch = lock(&handle);
        let Some(bucket) = ch.buckets.get_mut(from.index()) else {
            return;
        };
        if bucket.remove(&client.id()).is_none() {
            return;
        }
        if ch.buckets.len() <= to.index() {
            ch.buckets.resize_with(to.index() + 1, HashMap::new);
        }
        ch.buckets[to.index()].insert(client.id(), client.clone());
    }

    /// History of `channel` after `since` (or the last `limit` when None), as a subscriber
    /// of `tier` would see it; None when the channel has no state at all.
    pub fn history(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: usize,
        tier: TierId,
    ) -> Option<HistoryPage> {
        let handle = self.lookup(channel)?;
        let mut ch = lock(&handle);
        let limits = ch.limits;
        ch.history.prune(self.now_ms(), limits);
        let publications: Vec<Bytes> = match since {
            Some(after) => ch
                .history
                .last(usize::MAX)
                .filter(|e| e.seq > after)
                .take(limit)
                .map(|e| e.for_tier(tier).clone())
                .collect(),
            None => ch
                .history
                .last(limit)
                .map(|e| e.for_tier(tier).clone())
                .collect(),
        };
        Some(HistoryPage {
            epoch: ch.epoch.clone(),
            seq: ch.seq,
            publications,
        })
    }

    /// Every subscriber of `channel` (copied out; for presence counts, not the hot path).
    pub fn subscribers(&self, channel: &str) -> Vec<Arc<Client>> {
        self.lookup(channel).map_or_else(Vec::new, |h| {
            lock(&h)
                .buckets
                .iter()
                .flat_map(|bucket| bucket.values().cloned())
                .collect()
        })
    }

    /// How many connections subscribe to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.lookup(channel).map_or(0, |h| lock(&h).subscribers)
    }

    /// Forgets expired history and drops channels with no subscribers and nothing to
    /// remember. A dropped channel that comes back gets a new epoch.
    pub fn collect_garbage(&self) {
        let now = self.now_ms();
        let mut map = self.channels.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, handle| {
            // A channel busy right now is in use: keep it and look again next time.
            let Ok(mut ch) = handle.try_lock() else {
                return true;
            };
            let limits = ch.limits;
            ch.history.prune(now, limits);
            if ch.subscribers == 0 && ch.history.is_empty() && ch.latest.is_none() {
                ch.removed = true;
                false
            } else {
                true
            }
        });
    }

    /// How many channels the hub holds state for (subscribed or remembered).
    pub fn channel_count(&self) -> usize {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn stats(&self) -> HubStats {
        HubStats {
            channels: self.active_channels.load(Ordering::Relaxed),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
            publications: self.publications.load(Ordering::Relaxed),
            deliveries: self.deliveries.load(Ordering::Relaxed),
            direct_deliveries: self.direct_deliveries.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
