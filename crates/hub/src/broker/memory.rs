//! The in-process broker: each channel's epoch, seq, history, latest value and idempotency
//! keys in memory, under one lock per channel. One node, nothing shared.
//!
//! A publication is sequenced, remembered and delivered to the hub under its channel's
//! lock, so the hub receives a channel's publications in `seq` order; the fan-out the
//! delivery asks for runs after the lock is released. Every call is answered at once
//! ([`BrokerFuture::Ready`]). The hub also reads a channel's stream under that same lock
//! ([`MemoryBroker::with_stream`]) while it holds the channel's subscribers, which is what
//! makes its subscriptions gap-free without buffering (see `hub`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Instant;

use super::{
    Accepted, Broker, BrokerError, BrokerFuture, Dispatch, Handler, Health, HistoryQuery,
    HistoryReply, Outgoing, Sequenced, StreamPosition,
};
use crate::history::{Entry, History, HistoryLimits};
use crate::hub::Since;
use crate::ids;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The in-memory broker. Share it with `Arc`.
#[derive(Debug)]
pub struct MemoryBroker {
    started: Instant,
    clock_skew_ms: AtomicU64,
    streams: RwLock<HashMap<Arc<str>, Arc<Stream>>>,
    handler: OnceLock<Arc<dyn Handler>>,
}

/// One channel's stream: its identity and its lock.
#[derive(Debug)]
struct Stream {
    name: Arc<str>,
    epoch: Arc<str>,
    log: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    seq: u64,
    /// The limits of the latest publication (used to prune between publications).
    limits: HistoryLimits,
    history: History,
    latest: Option<Entry>,
    keys: IdempotencyKeys,
    /// The node has subscribers here: keep the epoch even with nothing remembered.
    interested: bool,
    /// Garbage collection took the stream out of the map; look it up again.
    removed: bool,
}

/// Idempotency keys of one channel: a map for the look-up and a queue, oldest first, for
/// expiry, so neither costs more than the keys it touches.
#[derive(Debug, Default)]
struct IdempotencyKeys {
    seqs: HashMap<Box<str>, (u64, u64)>,
    order: VecDeque<(u64, Box<str>)>,
    window_ms: u64,
}

impl IdempotencyKeys {
    fn expire(&mut self, now_ms: u64) {
        while let Some((at, _)) = self.order.front() {
            if now_ms.saturating_sub(*at) < self.window_ms {
                break;
            }
            let (at, key) = self.order.pop_front().expect("front exists");
            if self.seqs.get(&key).is_some_and(|(_, first)| *first == at) {
                self.seqs.remove(&key);
            }
        }
        if self.order.is_empty() && self.order.capacity() > 0 {
            *self = IdempotencyKeys {
                window_ms: self.window_ms,
                ..IdempotencyKeys::default()
            };
        }
    }

    fn get(&self, key: &str) -> Option<u64> {
        self.seqs.get(key).map(|(seq, _)| *seq)
    }

    fn insert(&mut self, key: &str, seq: u64, now_ms: u64) {
        self.seqs.insert(key.into(), (seq, now_ms));
        self.order.push_back((now_ms, key.into()));
    }

    fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

fn sequenced(stream: &Stream, entry: &Entry) -> Sequenced {
    Sequenced {
        channel: stream.name.clone(),
        epoch: stream.epoch.clone(),
        seq: entry.seq,
        full: entry.full.clone(),
        locked: entry.locked.clone(),
    }
}

/// A channel's stream, locked: no publication is sequenced on it while this lives.
pub(crate) struct Locked<'a> {
    stream: &'a Stream,
    log: MutexGuard<'a, Log>,
}

impl Locked<'_> {
    pub(crate) fn epoch(&self) -> &Arc<str> {
        &self.stream.epoch
    }

    /// The last seq published.
    pub(crate) fn seq(&self) -> u64 {
        self.log.seq
    }

    /// The publications after `since`, oldest first, when history holds all of them.
    pub(crate) fn recover(&self, since: &Since) -> Option<impl Iterator<Item = &Entry>> {
        if *since.epoch != *self.stream.epoch {
            return None;
        }
        self.log.history.since(since.seq, self.log.seq)
    }

    pub(crate) fn latest(&self) -> Option<&Entry> {
        self.log.latest.as_ref()
    }

    /// Keeps the stream (and its epoch) while the node has subscribers on it.
    pub(crate) fn set_interest(&mut self, interested: bool) {
        self.log.interested = interested;
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        MemoryBroker::new()
    }
}

impl MemoryBroker {
    pub fn new() -> Self {
        MemoryBroker {
            started: Instant::now(),
            clock_skew_ms: AtomicU64::new(0),
            streams: RwLock::new(HashMap::new()),
            handler: OnceLock::new(),
        }
    }

    /// Milliseconds on the broker's monotonic clock (drives history and key expiry).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + self.clock_skew_ms.load(Ordering::Relaxed)
    }

    /// Moves the clock forward, so tests can expire history without sleeping.
    pub fn advance_clock(&self, ms: u64) {
        self.clock_skew_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn lookup(&self, name: &str) -> Option<Arc<Stream>> {
        let map = self.streams.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }

    fn get_or_create(&self, name: &str) -> Arc<Stream> {
        if let Some(stream) = self.lookup(name) {
            return stream;
        }
        let mut map = self.streams.write().unwrap_or_else(|e| e.into_inner());
        map.entry(Arc::from(name))
            .or_insert_with_key(|key| {
                Arc::new(Stream {
                    name: key.clone(),
                    epoch: Arc::from(ids::random_token(8)),
                    log: Mutex::new(Log::default()),
                })
            })
            .clone()
    }

    /// The stream of `channel` locked, created when missing, history pruned.
    fn locked(&self, channel: &str, create: bool) -> Option<(Arc<Stream>, u64)> {
        loop {
            let stream = if create {
                self.get_or_create(channel)
            } else {
                self.lookup(channel)?
            };
            if lock(&stream.log).removed {
                continue;
            }
            return Some((stream, self.now_ms()));
        }
    }

    /// Runs `f` with `channel`'s stream locked (created when missing): nothing is
    /// published on the channel meanwhile. Lock order: the hub's subscribers lock, then
    /// this, then the hub's pending list (which `deliver` takes under this lock).
    pub(crate) fn with_stream<R>(&self, channel: &str, f: impl FnOnce(&mut Locked<'_>) -> R) -> R {
        loop {
            let stream = self.get_or_create(channel);
            let mut log = lock(&stream.log);
            if log.removed {
                continue;
            }
            let now = self.now_ms();
            let limits = log.limits;
            log.history.prune(now, limits);
            let mut locked = Locked {
                stream: &stream,
                log,
            };
            return f(&mut locked);
        }
    }

    /// Publishes now; the same as [`Broker::publish`], without the future.
    pub fn publish_now(&self, publication: Outgoing<'_>) -> Accepted {
        let options = publication.options;
        loop {
            let stream = self.get_or_create(publication.channel);
            let mut log = lock(&stream.log);
            if log.removed {
                continue;
            }
            let now = self.now_ms();
            if let Some(key) = options.idempotency_key {
                log.keys.window_ms = options.idempotency_window_ms;
                log.keys.expire(now);
                if let Some(seq) = log.keys.get(key) {
                    return Accepted {
                        position: StreamPosition {
                            epoch: stream.epoch.clone(),
                            seq,
                        },
                        duplicate: true,
                    };
                }
            }
            log.seq += 1;
            let seq = log.seq;
            let entry = Entry {
                seq,
                at_ms: now,
                full: publication.full.join(&stream.epoch, seq),
                locked: publication
                    .locked
                    .as_ref()
                    .map(|(tier, stub)| (*tier, stub.join(&stream.epoch, seq))),
            };
            let limits = options.history;
            log.limits = limits;
            log.history.prune(now, limits);
            if options.latest_value {
                log.latest = Some(entry.clone());
            }
            if let Some(key) = options.idempotency_key {
                log.keys.insert(key, seq, now);
            }
            let dispatch = match self.handler.get() {
                Some(handler) => handler.deliver(sequenced(&stream, &entry)),
                None => Dispatch::none(),
            };
            log.history.push(entry, limits);
            drop(log);
            // After the lock: the fan-out must not hold up the channel's next publisher.
            drop(dispatch);
            return Accepted {
                position: StreamPosition {
                    epoch: stream.epoch.clone(),
                    seq,
                },
                duplicate: false,
            };
        }
    }

    /// Reads history now; the same as [`Broker::history`], without the future.
    pub fn history_now(&self, channel: &str, query: HistoryQuery<'_>) -> Option<HistoryReply> {
        let (stream, now) = self.locked(channel, false)?;
        let mut log = lock(&stream.log);
        let limits = log.limits;
        log.history.prune(now, limits);
        let to_sequenced = |e: &Entry| sequenced(&stream, e);
        let (publications, recovered) = match query {
            HistoryQuery::Last(limit) => {
                (log.history.last(limit).map(to_sequenced).collect(), true)
            }
            HistoryQuery::After { seq, limit } => (
                log.history
                    .last(usize::MAX)
                    .filter(|e| e.seq > seq)
                    .take(limit)
                    .map(to_sequenced)
                    .collect(),
                true,
            ),
            HistoryQuery::Recover(since) if *since.epoch == *stream.epoch => {
                match log.history.since(since.seq, log.seq) {
                    Some(missed) => (missed.map(to_sequenced).collect(), true),
                    None => (Vec::new(), false),
                }
            }
            HistoryQuery::Recover(_) => (Vec::new(), false),
        };
        Some(HistoryReply {
            position: StreamPosition {
                epoch: stream.epoch.clone(),
                seq: log.seq,
            },
            publications,
            recovered,
        })
    }

    /// The latest value now; the same as [`Broker::latest`], without the future.
    pub fn latest_now(&self, channel: &str) -> Option<Sequenced> {
        let (stream, _) = self.locked(channel, false)?;
        let log = lock(&stream.log);
        log.latest.as_ref().map(|e| sequenced(&stream, e))
    }

    /// Sets whether the node has subscribers on `channel` (an existing stream only when
    /// clearing it).
    pub fn set_interest(&self, channel: &str, interested: bool) {
        if interested {
            self.with_stream(channel, |s| s.set_interest(true));
        } else if let Some(stream) = self.lookup(channel) {
            lock(&stream.log).interested = false;
        }
    }

    /// Forgets expired history and keys, and drops streams nobody subscribes to with
    /// nothing left to remember. A dropped stream that comes back gets a new epoch.
    pub fn collect_garbage(&self) {
        let now = self.now_ms();
        let mut map = self.streams.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, stream| {
            // A stream busy right now is in use: look again next time.
            let Ok(mut log) = stream.log.try_lock() else {
                return true;
            };
            let limits = log.limits;
            log.history.prune(now, limits);
            log.keys.expire(now);
            if !log.interested
                && log.history.is_empty()
                && log.latest.is_none()
                && log.keys.is_empty()
            {
                log.removed = true;
                false
            } else {
                true
            }
        });
    }

    /// The names of the channels the broker holds a stream for.
    pub fn channel_names(&self) -> Vec<Arc<str>> {
        let map = self.streams.read().unwrap_or_else(|e| e.into_inner());
        map.keys().cloned().collect()
    }
}

impl Broker for MemoryBroker {
    fn register(&self, handler: Arc<dyn Handler>) {
        if self.handler.set(handler).is_err() {
            panic!("a memory broker takes one handler, registered once");
        }
    }

    fn publish<'a>(
        &'a self,
        publication: Outgoing<'a>,
    ) -> BrokerFuture<'a, Result<Accepted, BrokerError>> {
        BrokerFuture::ready(Ok(self.publish_now(publication)))
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        query: HistoryQuery<'a>,
    ) -> BrokerFuture<'a, Result<Option<HistoryReply>, BrokerError>> {
        BrokerFuture::ready(Ok(self.history_now(channel, query)))
    }

    fn latest<'a>(
        &'a self,
        channel: &'a str,
    ) -> BrokerFuture<'a, Result<Option<Sequenced>, BrokerError>> {
        BrokerFuture::ready(Ok(self.latest_now(channel)))
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Result<(), BrokerError>> {
        self.set_interest(channel, true);
        BrokerFuture::ready(Ok(()))
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Result<(), BrokerError>> {
        self.set_interest(channel, false);
        BrokerFuture::ready(Ok(()))
    }

    fn health(&self) -> Health {
        Health {
            kind: "memory",
            ok: true,
            detail: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::conformance;

    #[test]
    fn the_memory_broker_passes_the_conformance_suite() {
        conformance::block_on(conformance::run(&|| {
            Arc::new(MemoryBroker::new()) as Arc<dyn Broker>
        }));
    }

    #[test]
    fn every_call_is_answered_at_once() {
        let broker = MemoryBroker::new();
        let data = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        let p = crate::Publication {
            kind: "k",
            id: "i",
            timestamp: "t",
            tier: None,
            data: &data,
        };
        let out = Outgoing {
            channel: "ch",
            full: crate::envelope::full_template(&p, "ch", None),
            locked: None,
            options: conformance::options(),
        };
        assert!(broker.publish(out).into_ready().is_ok());
        assert!(broker
            .history("ch", HistoryQuery::Last(1))
            .into_ready()
            .is_ok());
        assert!(broker.latest("ch").into_ready().is_ok());
        assert!(broker.subscribe("ch").into_ready().is_ok());
        assert!(broker.unsubscribe("ch").into_ready().is_ok());
    }

    #[test]
    fn a_forgotten_stream_comes_back_with_a_new_epoch() {
        let broker = MemoryBroker::new();
        let first = broker.with_stream("ch", |s| s.epoch().clone());
        broker.collect_garbage();
        assert!(broker.channel_names().is_empty());
        let second = broker.with_stream("ch", |s| s.epoch().clone());
        assert_ne!(first, second);
    }

    #[test]
    fn a_stream_with_an_interested_node_keeps_its_epoch() {
        let broker = MemoryBroker::new();
        broker.set_interest("ch", true);
        let first = broker.with_stream("ch", |s| s.epoch().clone());
        broker.collect_garbage();
        assert_eq!(broker.with_stream("ch", |s| s.epoch().clone()), first);
    }
}
