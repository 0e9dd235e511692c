//! The hub: channels with their tier-bucketed subscribers, fed by the broker.
//!
//! A channel's stream (epoch, seq, history, latest value) is the broker's; here it is the
//! [`MemoryBroker`], which sequences a publication under the channel's *stream* lock and
//! delivers it to the hub there, onto the channel's *pending* list, so publications reach
//! the list in `seq` order. Sequencing and remembering a publication never waits for a
//! fan-out. The channel's *subscribers* lock is held while pending publications are pushed
//! to every subscriber's outbox, and while a subscription takes its position, replays and
//! joins. Locks are taken in the order subscribers, stream, pending; never the other way.
//!
//! Ordering rests on two rules. Pending publications are taken in `seq` order and pushed
//! under the subscribers lock, so every subscriber sees a channel's publications in `seq`
//! order. And a subscription first pushes whatever is pending, then, under the stream lock
//! with nothing pending, takes its position and replay, so it sees each publication exactly
//! once: either in its replay or live, never both, never neither.
//!
//! Fan-out to a channel with many subscribers runs as a [`FanOut`] job on the executor the
//! transport installs ([`Hub::with_fanout_executor`]), so the publisher is answered as soon as
//! its publication is sequenced and remembered. One job at a time runs per channel and takes
//! every publication pending when it looks, so publications that arrive during a fan-out are
//! pushed together in the next pass: one outbox lock and one wake-up per subscriber for the
//! lot. Past [`MAX_PENDING`] waiting publications the publisher pushes them itself, which
//! makes it wait for the fan-out: pending publications are bounded. A publisher that fans
//! out a small channel itself pushes at most [`INLINE_PASSES`] batches (others' publications
//! that came meanwhile) before handing the job to the executor, so no request is kept
//! pushing for everyone else.
//!
//! Subscribers are bucketed by tier so tier locking is decided once per bucket, not once per
//! subscriber: a publication is serialized once as a full envelope and once as a `locked`
//! stub, and each bucket gets one of the two.
//!
//! With a [`DirectSink`] installed, subscribers parked idle on their sockets are claimed
//! rather than queued and handed to the sink as one batch per bucket (see `direct`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Instant;

use bytes::Bytes;

use crate::broker::memory::MemoryBroker;
use crate::broker::{
    Broker, BrokerError, BrokerFuture, Dispatch, Handler, HistoryQuery, Outgoing, PublishOptions,
    Sequenced,
};
use crate::channel::Glob;
use crate::client::{Client, Offer, Push};
use crate::direct::{DirectSink, Target};
use crate::envelope::{self, Publication};
use crate::history::HistoryLimits;
use crate::tier::{TierId, TierLadder};

/// A publication that comes less than this after the end of the previous one's fan-out on
/// the same channel is queued for the connections to write (coalesced), not written directly.
pub const DIRECT_MIN_GAP_MS: u64 = 5;

/// At most this many publications wait for a channel's fan-out; the publisher of one more
/// pushes them itself (and so waits for the fan-out in progress).
pub const MAX_PENDING: usize = 1024;

/// A publisher that fans out a small channel itself pushes at most this many batches (the
/// later ones published by others meanwhile) before handing the rest to the executor.
pub const INLINE_PASSES: usize = 4;

/// What a subscription sets aside of the outbox for its reply frame, beyond the replays:
/// this much, plus [`REPLY_ALLOWANCE_PER_CHANNEL`] per channel (a name of up to 128 bytes,
/// an epoch, a seq and the JSON around them).
pub const REPLY_ALLOWANCE_BASE: usize = 256;
pub const REPLY_ALLOWANCE_PER_CHANNEL: usize = 320;

/// Runs fan-out jobs (see [`Hub::with_fanout_executor`]).
pub type FanOutExecutor = Arc<dyn Fn(FanOut) + Send + Sync>;

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
    /// With an executor installed, fan-out to a channel with at least this many subscribers
    /// runs as a job; to fewer, the publisher pushes (a job hand-off costs more than that).
    pub defer_fanout_from: usize,
    /// How long the broker remembers a publication's idempotency key, in milliseconds.
    pub idempotency_window_ms: u64,
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
            defer_fanout_from: 128,
            idempotency_window_ms: 300_000,
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

/// Why a publication was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Its envelope would not fit a subscriber's outbound queue (HTTP 413).
    #[error("the publication's envelope ({size} bytes) exceeds the {limit}-byte outbound queue")]
    TooLarge { size: usize, limit: usize },
    /// The broker did not take it (HTTP 503): nothing was published.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What the hub remembers of a publication's idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishKey<'a> {
    /// Scoped by the caller: the same key from two publishers are two keys.
    pub key: &'a str,
}

/// A channel: its name, subscribers and pending publications (see the module documentation).
#[derive(Debug)]
struct Channel {
    name: Arc<str>,
    /// How many subscribers: changed under `subs`, read without it to choose how to fan out.
    subscriber_count: AtomicUsize,
    subs: Mutex<Subscribers>,
    fan: Mutex<Fan>,
}

#[derive(Debug, Default)]
struct Subscribers {
    /// Subscribers by tier rank.
    buckets: Vec<HashMap<u64, Arc<Client>>>,
    /// When the previous fan-out pass ended (hub clock), to tell bursts apart.
    last_fanout_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Fan {
    /// Sequenced publications not yet pushed to the subscribers, oldest first.
    pending: Vec<Sequenced>,
    /// A fan-out job was started and has not yet found `pending` empty.
    fanning: bool,
    /// Set when garbage collection took the channel out of the map; whoever finds this
    /// must look the channel up again.
    removed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a fan-out needs, shared by the hub, its jobs and the broker's deliveries.
struct Delivery {
    started: Instant,
    clock_skew_ms: AtomicU64,
    max_queue_bytes: usize,
    defer_fanout_from: usize,
    deliveries: AtomicU64,
    direct_deliveries: AtomicU64,
    /// Where publications to idle sockets go, when the transport offers a direct writer.
    direct: OnceLock<Arc<dyn DirectSink>>,
    /// Where fan-out jobs run; unset: the publisher runs them.
    executor: OnceLock<FanOutExecutor>,
    channels: RwLock<HashMap<Arc<str>, Arc<Channel>>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("direct", &self.direct.get().is_some())
            .field("executor", &self.executor.get().is_some())
            .finish()
    }
}

impl Delivery {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + self.clock_skew_ms.load(Ordering::Relaxed)
    }

    fn lookup(&self, name: &str) -> Option<Arc<Channel>> {
        let map = self.channels.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }

    fn get_or_create(&self, name: &str) -> Arc<Channel> {
        if let Some(channel) = self.lookup(name) {
            return channel;
        }
        let mut map = self.channels.write().unwrap_or_else(|e| e.into_inner());
        map.entry(Arc::from(name))
            .or_insert_with_key(|key| {
                Arc::new(Channel {
                    name: key.clone(),
                    subscriber_count: AtomicUsize::new(0),
                    subs: Mutex::new(Subscribers::default()),
                    fan: Mutex::new(Fan::default()),
                })
            })
            .clone()
    }

    /// Pushes `channel`'s pending publications, and any that arrive meanwhile, until none
    /// is pending.
    fn settle(&self, channel: &Channel, subs: &mut Subscribers) {
        loop {
            let batch = {
                let mut fan = lock(&channel.fan);
                if fan.pending.is_empty() {
                    return;
                }
                std::mem::take(&mut fan.pending)
            };
            self.push_batch(subs, &batch);
        }
    }

    /// The channel's fan-out job: pushes at most `passes` batches of pending publications,
    /// and ends the job once it finds none. False when some are still pending after them
    /// (the job then goes on elsewhere).
    fn run_job(&self, channel: &Channel, subs: &mut Subscribers, passes: usize) -> bool {
        let _unwind = EndJobOnPanic(channel);
        for _ in 0..passes {
            let batch = {
                let mut fan = lock(&channel.fan);
                if fan.pending.is_empty() {
                    fan.fanning = false;
                    return true;
                }
                std::mem::take(&mut fan.pending)
            };
            self.push_batch(subs, &batch);
        }
        false
    }

    /// Pushes `batch` (in `seq` order) to every subscriber: one outbox lock per subscriber,
    /// or, for a lone publication after a quiet spell, claims for the direct writer.
    fn push_batch(&self, subs: &mut Subscribers, batch: &[Sequenced]) {
        let now = self.now_ms();
        // In a burst, queueing lets each connection write many publications in one go;
        // direct writes pay off when publications are apart (see `direct`). The gap is
        // counted from the end of the previous fan-out, which takes a while to 10,000
        // subscribers: back-to-back publications are a burst however long each takes.
        let direct = match (self.direct.get(), batch) {
            (Some(_), [_]) => subs
                .last_fanout_ms
                .is_none_or(|last| now.saturating_sub(last) >= DIRECT_MIN_GAP_MS),
            _ => false,
        };
        let mut delivered = 0u64;
        for (rank, bucket) in subs.buckets.iter().enumerate() {
            if bucket.is_empty() {
                continue;
            }
            let tier = TierId(rank as u8);
            if let [entry] = batch {
                let payload = entry.for_tier(tier);
                let mut targets = Vec::new();
                for client in bucket.values() {
                    match client.offer(payload, self.max_queue_bytes, direct) {
                        Offer::Direct(socket) => targets.push(Target {
                            client: client.clone(),
                            socket,
                        }),
                        Offer::Pushed(Push::Queued) => delivered += 1,
                        Offer::Pushed(_) => {}
                    }
                }
                // Claims happen only with a sink, so `targets` is empty without one.
                if let Some(sink) = self.direct.get().filter(|_| !targets.is_empty()) {
                    delivered += targets.len() as u64;
                    self.direct_deliveries
                        .fetch_add(targets.len() as u64, Ordering::Relaxed);
                    // Still under the subscribers lock: the sink receives a channel's
                    // batches in `seq` order (a claimed client queues later ones meanwhile).
                    sink.send(payload, targets);
                }
            } else {
                for client in bucket.values() {
                    let frames = batch.iter().map(|entry| entry.for_tier(tier).clone());
                    if client.push_all(frames, self.max_queue_bytes) == Push::Queued {
                        delivered += batch.len() as u64;
                    }
                }
            }
        }
        subs.last_fanout_ms = Some(self.now_ms());
        self.deliveries.fetch_add(delivered, Ordering::Relaxed);
    }
}

/// Ends a fan-out job that panics mid-pass (a transport's sink, say), so that the next
/// publication starts a new one instead of waiting behind a job that no longer exists.
struct EndJobOnPanic<'a>(&'a Channel);

impl Drop for EndJobOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(&self.0.fan).fanning = false;
        }
    }
}

/// A channel's pending publications to push to its subscribers. Running it pushes them and
/// any that arrive meanwhile; dropping it unrun runs it, so no publication is left behind.
#[must_use = "a fan-out job delivers its channel's publications when run or dropped"]
pub struct FanOut {
    channel: Option<Arc<Channel>>,
    delivery: Arc<Delivery>,
    /// Not a job: the publisher found too many publications pending and pushes them.
    backlog: bool,
}

/// The hub's side of the broker: takes delivered publications onto their channel's pending
/// list and says what fan-out that calls for.
#[derive(Debug)]
struct Deliverer(Arc<Delivery>);

impl Handler for Deliverer {
    fn deliver(&self, publication: Sequenced) -> Dispatch {
        let delivery = &self.0;
        let mut publication = Some(publication);
        loop {
            let handle = delivery.get_or_create(&publication.as_ref().expect("kept").channel);
            let mut fan = lock(&handle.fan);
            if fan.removed {
                continue;
            }
            fan.pending
                .push(publication.take().expect("delivered once"));
            let start_job = !fan.fanning;
            fan.fanning = true;
            let backlog = fan.pending.len() > MAX_PENDING;
            drop(fan);
            return if start_job || backlog {
                Dispatch(Some(FanOut {
                    channel: Some(handle),
                    delivery: delivery.clone(),
                    backlog: !start_job,
                }))
            } else {
                Dispatch::none()
            };
        }
    }
}

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOut")
            .field("channel", &self.channel.as_ref().map(|c| &c.name))
            .finish()
    }
}

impl FanOut {
    /// Pushes the channel's pending publications (blocking: run it where that is fine).
    pub fn run(mut self) {
        self.run_once();
    }

    /// What a delivery's [`Dispatch`] does when dropped: runs the job here, or on the
    /// executor, as the channel's size asks (see the module documentation).
    pub(crate) fn start(mut self) {
        if self.backlog {
            // Too many pending: this publisher pushes them, waiting for the pass in progress.
            if let Some(channel) = self.channel.take() {
                let mut subs = lock(&channel.subs);
                self.delivery.settle(&channel, &mut subs);
            }
            return;
        }
        let Some(channel) = self.channel.as_ref() else {
            return;
        };
        let many =
            channel.subscriber_count.load(Ordering::Relaxed) >= self.delivery.defer_fanout_from;
        match self.delivery.executor.get().cloned() {
            Some(executor) if many => executor(self),
            // A publisher pushes a few passes for others at most, then hands over.
            Some(executor) => {
                if let Some(rest) = self.run_passes(INLINE_PASSES) {
                    executor(rest);
                }
            }
            None => self.run(),
        }
    }

    fn run_once(&mut self) {
        if let Some(channel) = self.channel.take() {
            let mut subs = lock(&channel.subs);
            self.delivery.run_job(&channel, &mut subs, usize::MAX);
        }
    }

    /// Runs at most `passes` batches; returns the job when publications are still pending
    /// (others kept publishing meanwhile), to be finished elsewhere.
    fn run_passes(mut self, passes: usize) -> Option<FanOut> {
        let channel = self.channel.take()?;
        let done = {
            let mut subs = lock(&channel.subs);
            self.delivery.run_job(&channel, &mut subs, passes)
        };
        if done {
            None
        } else {
            self.channel = Some(channel);
            Some(self)
        }
    }
}

impl Drop for FanOut {
    fn drop(&mut self) {
        self.run_once();
    }
}

/// The in-process hub. Share it with `Arc`.
pub struct Hub {
    config: HubConfig,
    broker: Arc<MemoryBroker>,
    active_channels: AtomicUsize,
    subscriptions: AtomicUsize,
    publications: AtomicU64,
    delivery: Arc<Delivery>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .field("channels", &self.channel_count())
            .field("executor", &self.delivery.executor.get().is_some())
            .finish()
    }
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        let delivery = Arc::new(Delivery {
            started: Instant::now(),
            clock_skew_ms: AtomicU64::new(0),
            max_queue_bytes: config.max_queue_bytes,
            defer_fanout_from: config.defer_fanout_from,
            deliveries: AtomicU64::new(0),
            direct_deliveries: AtomicU64::new(0),
            direct: OnceLock::new(),
            executor: OnceLock::new(),
            channels: RwLock::new(HashMap::new()),
        });
        let broker = Arc::new(MemoryBroker::new());
        broker.register(Arc::new(Deliverer(delivery.clone())));
        Hub {
            config,
            broker,
            active_channels: AtomicUsize::new(0),
            subscriptions: AtomicUsize::new(0),
            publications: AtomicU64::new(0),
            delivery,
        }
    }

    /// Hands publications to idle sockets to `sink` instead of waking their connections.
    /// Call once, before anything is published.
    pub fn with_direct_sink(self, sink: Arc<dyn DirectSink>) -> Self {
        if self.delivery.direct.set(sink).is_err() {
            panic!("a hub takes one direct sink");
        }
        self
    }

    /// Runs fan-outs to channels with many subscribers (`defer_fanout_from`) as jobs on
    /// `executor`, which must run each job, or drop it (dropping runs it in place).
    pub fn with_fanout_executor(self, executor: FanOutExecutor) -> Self {
        if self.delivery.executor.set(executor).is_err() {
            panic!("a hub takes one fan-out executor");
        }
        self
    }

    /// The broker that keeps the channels' streams.
    pub fn broker(&self) -> &MemoryBroker {
        &self.broker
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn ladder(&self) -> &TierLadder {
        &self.config.ladder
    }

    /// Milliseconds on the hub's monotonic clock (drives history ttl).
    pub fn now_ms(&self) -> u64 {
        self.delivery.now_ms()
    }

    /// Moves the hub clock forward, so tests can expire history without sleeping.
    pub fn advance_clock(&self, ms: u64) {
        self.delivery.clock_skew_ms.fetch_add(ms, Ordering::Relaxed);
        self.broker.advance_clock(ms);
    }

    fn limits_for(&self, channel: &str) -> HistoryLimits {
        self.config
            .history_rules
            .iter()
            .find(|(glob, _)| glob.matches(channel))
            .map(|(_, limits)| *limits)
            .unwrap_or(self.config.history)
    }

    fn latest_value(&self, channel: &str) -> bool {
        self.config.latest_value.iter().any(|g| g.matches(channel))
    }

    /// Sequences `publication` on `channel` and remembers it; its fan-out to the subscribers
    /// runs here, or as a job on the executor (see the module documentation). Refused when
    /// its envelope could not fit a subscriber's outbound queue.
    pub fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: &Publication<'_>,
    ) -> BrokerFuture<'a, Result<Published, PublishError>> {
        self.publish_keyed(channel, publication, None)
    }

    /// [`Hub::publish`] with an idempotency key: a publication with a key seen on the
    /// channel within the window is not published again, and its first position is the
    /// answer.
    pub fn publish_keyed<'a>(
        &'a self,
        channel: &'a str,
        publication: &Publication<'_>,
        key: Option<PublishKey<'_>>,
    ) -> BrokerFuture<'a, Result<Published, PublishError>> {
        BrokerFuture::ready(self.publish_now(channel, publication, key))
    }

    /// Whether `publication`'s envelope on `channel` fits a subscriber's outbound queue:
    /// a source publishing to several channels checks the longest name first, so that it
    /// is refused whole rather than on some channels only.
    pub fn check_fits(
        &self,
        channel: &str,
        publication: &Publication<'_>,
    ) -> Result<(), PublishError> {
        let ladder = &self.config.ladder;
        let tier = publication.tier.map(|t| ladder.name(t));
        let size = envelope::full_template(publication, channel, tier).joined_len_at_most();
        if size > self.config.max_queue_bytes {
            return Err(PublishError::TooLarge {
                size,
                limit: self.config.max_queue_bytes,
            });
        }
        Ok(())
    }

    fn publish_now(
        &self,
        channel: &str,
        publication: &Publication<'_>,
        key: Option<PublishKey<'_>>,
    ) -> Result<Published, PublishError> {
        let ladder = &self.config.ladder;
        let full = envelope::full_template(
            publication,
            channel,
            publication.tier.map(|t| ladder.name(t)),
        );
        let size = full.joined_len_at_most();
        if size > self.config.max_queue_bytes {
            return Err(PublishError::TooLarge {
                size,
                limit: self.config.max_queue_bytes,
            });
        }
        let locked = publication.tier.filter(|t| *t > TierId::LOWEST).map(|t| {
            (
                t,
                envelope::locked_template(publication, channel, ladder.name(t)),
            )
        });
        let accepted = self.broker.publish_now(Outgoing {
            channel,
            full,
            locked,
            options: PublishOptions {
                history: self.limits_for(channel),
                latest_value: self.latest_value(channel),
                idempotency_key: key.map(|k| k.key),
                idempotency_window_ms: self.config.idempotency_window_ms,
            },
        });
        if !accepted.duplicate {
            self.publications.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Published {
            channel: Arc::from(channel),
            epoch: accepted.position.epoch,
            seq: accepted.position.seq,
        })
    }

    /// Pushes every channel's pending publications now and waits for fan-out passes in
    /// progress to end (say, before closing connections).
    pub fn flush(&self) {
        let channels: Vec<Arc<Channel>> = self
            .delivery
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for channel in channels {
            // A running job may have taken the pending publications and still be pushing
            // them: taking the subscribers lock waits for its pass to end.
            let idle = {
                let fan = lock(&channel.fan);
                fan.pending.is_empty() && !fan.fanning
            };
            if idle {
                continue;
            }
            let mut subs = lock(&channel.subs);
            self.delivery.settle(&channel, &mut subs);
        }
    }

    /// Subscribes `client` (in tier bucket `tier`) to every item, atomically with respect
    /// to publications on those channels. Queues, in order: the frame `reply` builds from
    /// the positions, then each channel's replay (oldest first) or latest-value snapshot.
    /// Returns the positions in item order (duplicates reported once).
    ///
    /// What is queued never takes the outbox past its bound: a replay that would is not
    /// sent and its channel answers `recovered: false` (so a client whose history is too
    /// large to replay is not closed for it on every reconnect), and a latest-value
    /// snapshot that would is left out.
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
        let handles: Vec<(usize, Arc<Channel>)> = loop {
            let handles: Vec<_> = order
                .iter()
                .map(|&i| (i, self.delivery.get_or_create(items[i].channel)))
                .collect();
            // A channel removed between look-up and lock is looked up again.
            if handles.iter().all(|(_, h)| !lock(&h.fan).removed) {
                break handles;
            }
        };
        // Lock in name order (the order of `handles`) so concurrent subscribers can't
        // deadlock. Removal needs the subscribers lock, so what is checked now stays true.
        let mut guards: Vec<(usize, &Channel, MutexGuard<'_, Subscribers>)> = handles
            .iter()
            .map(|(i, h)| (*i, &**h, lock(&h.subs)))
            .collect();
        if guards.iter().any(|(_, h, _)| lock(&h.fan).removed) {
            drop(guards);
            return self.subscribe(client, tier, items, reply);
        }
        guards.sort_by_key(|(i, _, _)| *i);
        // Room for the replays: the bound, less what is queued and a generous allowance
        // for the reply frame (a channel name, an epoch and a seq per channel).
        let mut room = self
            .config
            .max_queue_bytes
            .saturating_sub(client.queued_bytes())
            .saturating_sub(REPLY_ALLOWANCE_BASE + REPLY_ALLOWANCE_PER_CHANNEL * guards.len());
        let mut positions = Vec::with_capacity(guards.len());
        let mut replays: Vec<Bytes> = Vec::new();
        for (i, ch, subs) in guards.iter_mut() {
            let item = &items[*i];
            let latest_value = self.latest_value(&ch.name);
            // Pushes whatever is pending, then reads the stream with nothing pending and no
            // publication sequenced meanwhile: the position is the last publication pushed,
            // and everything after it will be pushed to this subscriber too.
            let (epoch, seq, recovered) = loop {
                let step = self.broker.with_stream(&ch.name, |stream| {
                    {
                        let mut fan = lock(&ch.fan);
                        if !fan.pending.is_empty() {
                            return Err(std::mem::take(&mut fan.pending));
                        }
                    }
                    stream.set_interest(true);
                    let position = (stream.epoch().clone(), stream.seq());
                    if item.held {
                        return Ok((position, item.since.is_some()));
                    }
                    let recovered = match item.since.and_then(|since| stream.recover(since)) {
                        Some(missed) => {
                            let missed: Vec<&Bytes> = missed.map(|e| e.for_tier(tier)).collect();
                            let bytes: usize = missed.iter().map(|b| b.len()).sum();
                            if bytes <= room {
                                room -= bytes;
                                replays.extend(missed.into_iter().cloned());
                                true
                            } else {
                                false
                            }
                        }
                        None => false,
                    };
                    if !recovered && latest_value {
                        if let Some(latest) = stream.latest() {
                            let snapshot = latest.for_tier(tier);
                            if snapshot.len() <= room {
                                room -= snapshot.len();
                                replays.push(snapshot.clone());
                            }
                        }
                    }
                    Ok((position, recovered))
                });
                match step {
                    Ok(((epoch, seq), recovered)) => break (epoch, seq, recovered),
                    Err(batch) => self.delivery.push_batch(subs, &batch),
                }
            };
            if !item.held {
                let rank = tier.index();
                if subs.buckets.len() <= rank {
                    subs.buckets.resize_with(rank + 1, HashMap::new);
                }
                if subs.buckets[rank]
                    .insert(client.id(), client.clone())
                    .is_none()
                {
                    // Changed only under the subscribers lock, which is held.
                    let count = ch.subscriber_count.fetch_add(1, Ordering::Relaxed) + 1;
                    self.subscriptions.fetch_add(1, Ordering::Relaxed);
                    if count == 1 {
                        self.active_channels.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            positions.push(Position {
                channel: ch.name.clone(),
                epoch,
                seq,
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
    /// Publications still pending then are not pushed to it.
    pub fn unsubscribe(&self, client_id: u64, channel: &str, tier: TierId) {
        let Some(handle) = self.delivery.lookup(channel) else {
            return;
        };
        let mut subs = lock(&handle.subs);
        let removed = subs
            .buckets
            .get_mut(tier.index())
            .and_then(|bucket| bucket.remove(&client_id))
            .is_some();
        if removed {
            let count = handle.subscriber_count.fetch_sub(1, Ordering::Relaxed) - 1;
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
            if count == 0 {
                self.active_channels.fetch_sub(1, Ordering::Relaxed);
                subs.buckets = Vec::new();
                // Under the subscribers lock, so no subscription sets it again meanwhile.
                self.broker.set_interest(channel, false);
            } else if let Some(bucket) = subs.buckets.get_mut(tier.index()) {
                if bucket.is_empty() {
                    *bucket = HashMap::new();
                }
            }
        }
    }

    /// Moves `client` on `channel` from the `from` tier bucket to `to` (after a tier change),
    /// atomically with respect to publications on the channel: those published before the
    /// move are pushed at the old tier first.
    pub fn rebucket(&self, client: &Arc<Client>, channel: &str, from: TierId, to: TierId) {
        if from == to {
            return;
        }
        let Some(handle) = self.delivery.lookup(channel) else {
            return;
        };
        let mut subs = lock(&handle.subs);
        self.delivery.settle(&handle, &mut subs);
        let Some(bucket) = subs.buckets.get_mut(from.index()) else {
            return;
        };
        if bucket.remove(&client.id()).is_none() {
            return;
        }
        if subs.buckets.len() <= to.index() {
            subs.buckets.resize_with(to.index() + 1, HashMap::new);
        }
        subs.buckets[to.index()].insert(client.id(), client.clone());
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
        let query = match since {
            Some(seq) => HistoryQuery::After { seq, limit },
            None => HistoryQuery::Last(limit),
        };
        let reply = self.broker.history_now(channel, query)?;
        Some(HistoryPage {
            epoch: reply.position.epoch,
            seq: reply.position.seq,
            publications: reply
                .publications
                .iter()
                .map(|p| p.for_tier(tier).clone())
                .collect(),
        })
    }

    /// Every subscriber of `channel` (copied out; for presence counts, not the hot path).
    pub fn subscribers(&self, channel: &str) -> Vec<Arc<Client>> {
        self.delivery.lookup(channel).map_or_else(Vec::new, |h| {
            lock(&h.subs)
                .buckets
                .iter()
                .flat_map(|bucket| bucket.values().cloned())
                .collect()
        })
    }

    /// How many connections subscribe to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.delivery
            .lookup(channel)
            .map_or(0, |h| h.subscriber_count.load(Ordering::Relaxed))
    }

    /// Forgets expired history and drops channels with no subscribers and nothing to
    /// remember or deliver. A dropped channel that comes back gets a new epoch.
    pub fn collect_garbage(&self) {
        {
            let mut map = self
                .delivery
                .channels
                .write()
                .unwrap_or_else(|e| e.into_inner());
            map.retain(|_, handle| {
                // A channel busy right now is in use: keep it and look again next time. Both
                // locks are held while deciding, so no subscription joins meanwhile.
                let Ok(_subs) = handle.subs.try_lock() else {
                    return true;
                };
                let Ok(mut fan) = handle.fan.try_lock() else {
                    return true;
                };
                if handle.subscriber_count.load(Ordering::Relaxed) == 0
                    && fan.pending.is_empty()
                    && !fan.fanning
                {
                    fan.removed = true;
                    false
                } else {
                    true
                }
            });
        }
        self.broker.collect_garbage();
    }

    /// How many channels the hub holds state for (subscribed, remembered or being fanned
    /// out).
    pub fn channel_count(&self) -> usize {
        let mut names: std::collections::HashSet<Arc<str>> =
            self.broker.channel_names().into_iter().collect();
        names.extend(
            self.delivery
                .channels
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned(),
        );
        names.len()
    }

    pub fn stats(&self) -> HubStats {
        HubStats {
            channels: self.active_channels.load(Ordering::Relaxed),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
            publications: self.publications.load(Ordering::Relaxed),
            deliveries: self.delivery.deliveries.load(Ordering::Relaxed),
            direct_deliveries: self.delivery.direct_deliveries.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
