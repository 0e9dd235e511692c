//! The broker seam: where a channel's `epoch`, `seq`, history and latest value are kept,
//! and how publications reach every node that has subscribers on a channel.
//!
//! The hub keeps subscribers, tier buckets and fan-out; a [`Broker`] keeps the channel's
//! stream. The in-process [`memory`] broker is the first implementation (one node, nothing
//! shared); a networked broker (Redis) is a second one, run through the same
//! [`conformance`] suite (public behind the `conformance` feature).
//!
//! # The contract
//!
//! - **Publish** ([`Broker::publish`]) assigns the next `seq` of the channel's current
//!   `epoch` (1 for the first publication of an epoch), joins the envelope
//!   [`Template`]s with them once, remembers the result in history (bounded by
//!   [`PublishOptions::history`]) and, for latest-value channels, as the latest value, then
//!   delivers it. A publication with an [`PublishOptions::idempotency_key`] seen on the
//!   channel within [`PublishOptions::idempotency_window_ms`] is not published again: the
//!   answer is the first one's position, with [`Accepted::duplicate`] set, and nothing is
//!   delivered.
//! - **Epochs.** An epoch names one unbroken sequence of a channel. When a broker loses or
//!   forgets a channel's state (memory: the channel was collected; Redis: the meta key
//!   expired or was evicted), the next publication starts a new epoch at seq 1, and history
//!   of an old epoch is never answered for the new one.
//! - **Delivery.** Every accepted, non-duplicate publication is delivered once to the
//!   [`Handler`] of every node interested in its channel ([`Broker::subscribe`]), this node
//!   included, in `seq` order per channel: `deliver` for seq n returns before `deliver` for
//!   n + 1 of the same channel is called. The [`Dispatch`] that `deliver` returns must be
//!   dropped after releasing any lock a publisher of that channel may wait for: dropping it
//!   runs the channel's fan-out (or hands it to the hub's executor). A networked broker
//!   delivers this node's own publications when they come back from the network, the
//!   memory broker before its publish completes.
//! - **History and recovery** ([`Broker::history`]): pages of the current epoch, and
//!   recovery from a client's `{epoch, seq}`: all of the publications after it or, when the
//!   epoch differs or history no longer reaches back that far, none and
//!   `recovered: false`. Never a partial replay.
//! - **Interest** ([`Broker::subscribe`], [`Broker::unsubscribe`]): the node tells the
//!   broker which channels it has subscribers on; only those are delivered to it. While a
//!   node is interested in a channel, the broker keeps the channel's epoch.
//! - **Health** ([`Broker::health`]) answers from what the broker already knows (no round
//!   trip), so `/health` and readiness stay cheap.
//!
//! # Asynchronous, and free for the memory broker
//!
//! A networked broker answers after a round trip, so the calls return a [`BrokerFuture`].
//! The memory broker answers with [`BrokerFuture::Ready`]: no boxing, no task hop, and a
//! caller that is not async takes the value with [`BrokerFuture::into_ready`].
//!
//! # Gap-free subscription
//!
//! A subscription must see every publication after its position exactly once. With the
//! memory broker the hub reads the position and history under the channel's locks, with
//! its own pending publications pushed first (see `hub`). With a networked broker the hub
//! subscribes first, holds what is delivered for the channel meanwhile, reads the position
//! and history, and merges the two by `seq`.
//!
//! # Envelopes as templates
//!
//! A networked broker assigns `seq` itself (a Redis Lua script does `HINCRBY`, `XADD` and
//! `PUBLISH` in one step), so the publisher cannot serialize the final envelope. It hands
//! over a [`Template`]: the bytes before the epoch and after the seq (the envelope's fields
//! are in the order `type, channel, epoch, seq, id, ...`). The broker joins
//! `prefix + epoch + "\",\"seq\":" + seq + suffix` once per publication, never per
//! subscriber; the same for the `locked` stub.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::history::HistoryLimits;
use crate::hub::{FanOut, Since};
use crate::tier::TierId;

pub use crate::envelope::Template;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod memory;

pub use memory::MemoryBroker;

/// The answer of a broker call: ready now (memory) or after a round trip (network).
pub enum BrokerFuture<'a, T> {
    /// Already answered; awaiting it costs nothing.
    Ready(std::future::Ready<T>),
    /// Answered later.
    Pending(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

impl<'a, T> BrokerFuture<'a, T> {
    /// An answer available now.
    pub fn ready(value: T) -> Self {
        BrokerFuture::Ready(std::future::ready(value))
    }

    /// An answer that comes later.
    pub fn pending(future: impl Future<Output = T> + Send + 'a) -> Self {
        BrokerFuture::Pending(Box::pin(future))
    }

    /// The answer if it is ready now, else the future back.
    pub fn into_ready(self) -> Result<T, Self> {
        match self {
            BrokerFuture::Ready(ready) => Ok(ready.into_inner()),
            pending => Err(pending),
        }
    }
}

impl<T> Future for BrokerFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            BrokerFuture::Ready(ready) => Pin::new(ready).poll(cx),
            BrokerFuture::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> Debug for BrokerFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerFuture::Ready(_) => f.write_str("BrokerFuture::Ready"),
            BrokerFuture::Pending(_) => f.write_str("BrokerFuture::Pending"),
        }
    }
}

/// Why a broker call failed. The publisher gets 503 for these: nothing was published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached or refused the call; `0` says why.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// The broker answered something this node does not understand.
    #[error("the broker answered unexpectedly: {0}")]
    Protocol(String),
}

/// A channel's stream position: its epoch and the last seq published in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    pub epoch: Arc<str>,
    pub seq: u64,
}

/// How a publication is kept on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOptions<'a> {
    /// History bounds of the channel (size 0: no history).
    pub history: HistoryLimits,
    /// Keep this publication as the channel's latest value (sent to new subscribers).
    pub latest_value: bool,
    /// A key under which a retried publication is recognised and not published twice.
    pub idempotency_key: Option<&'a str>,
    /// How long an idempotency key is remembered, in milliseconds.
    pub idempotency_window_ms: u64,
}

/// One publication for one channel, before it has an epoch and a seq.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// A valid, normalized channel name.
    pub channel: &'a str,
    /// The full envelope.
    pub full: Template,
    /// For a tier-locked publication, the tier it needs and its `locked` stub.
    pub locked: Option<(TierId, Template)>,
    pub options: PublishOptions<'a>,
}

/// A publication placed in its channel's stream: what history holds and what is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    pub channel: Arc<str>,
    pub epoch: Arc<str>,
    pub seq: u64,
    /// The full envelope, final bytes.
    pub full: Bytes,
    /// The `locked` stub and the tier it needs, for tier-locked publications.
    pub locked: Option<(TierId, Bytes)>,
}

impl Sequenced {
    /// The payload a subscriber of `tier` receives: the full envelope or the locked stub.
    pub fn for_tier(&self, tier: TierId) -> &Bytes {
        match &self.locked {
            Some((needed, stub)) if tier < *needed => stub,
            _ => &self.full,
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub position: StreamPosition,
    /// The idempotency key was seen before: `position` is the first publication's and
    /// nothing was published now.
    pub duplicate: bool,
}

/// Which part of a channel's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery<'a> {
    /// The newest `limit` publications of the current epoch.
    Last(usize),
    /// At most `limit` publications with seq above `seq`, of the current epoch.
    After { seq: u64, limit: usize },
    /// Every publication after a client's position, or none when that is impossible
    /// (another epoch, history too short, a position from the future).
    Recover(&'a Since),
}

/// A page of history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryReply {
    /// The channel's position when the page was read.
    pub position: StreamPosition,
    pub publications: Vec<Sequenced>,
    /// For [`HistoryQuery::Recover`]: whether `publications` is exactly what was missed.
    /// Always true for the other queries.
    pub recovered: bool,
}

/// What a broker knows of its own state, without a round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The broker's kind as configured (`memory`, `redis`).
    pub kind: &'static str,
    /// Publishing and delivery work as far as the broker knows.
    pub ok: bool,
    /// Why not, when not.
    pub detail: Option<String>,
}

/// Receives the publications a broker delivers to this node (the hub implements it).
pub trait Handler: Send + Sync + Debug {
    /// Takes one publication for this node's subscribers. See the module documentation
    /// for the order of calls and when to drop the returned [`Dispatch`].
    fn deliver(&self, publication: Sequenced) -> Dispatch;
}

/// Work that a delivery leaves to do: the channel's fan-out. Dropping it does that work,
/// on the dropping thread or as a job on the hub's executor.
#[must_use = "dropping a Dispatch runs the fan-out: drop it once your locks are released"]
#[derive(Debug, Default)]
pub struct Dispatch(pub(crate) Option<FanOut>);

impl Drop for Dispatch {
    fn drop(&mut self) {
        if let Some(job) = self.0.take() {
            job.start();
        }
    }
}

impl Dispatch {
    /// Nothing to do (no subscribers on the channel, or a job already runs).
    pub fn none() -> Self {
        Dispatch(None)
    }

    /// True when dropping it does nothing.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

/// Where channels' streams are kept. See the module documentation for the contract.
pub trait Broker: Send + Sync + Debug {
    /// Installs the handler that receives deliveries. Called once, before anything is
    /// published or subscribed.
    fn register(&self, handler: Arc<dyn Handler>);

    /// Assigns the next seq, remembers and delivers one publication.
    fn publish<'a>(
        &'a self,
        publication: Outgoing<'a>,
    ) -> BrokerFuture<'a, Result<Accepted, BrokerError>>;

    /// Reads the channel's history; `Ok(None)` when the broker holds no state for it.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        query: HistoryQuery<'a>,
    ) -> BrokerFuture<'a, Result<Option<HistoryReply>, BrokerError>>;

    /// The latest value of a latest-value channel, if one was published.
    fn latest<'a>(
        &'a self,
        channel: &'a str,
    ) -> BrokerFuture<'a, Result<Option<Sequenced>, BrokerError>>;

    /// This node has subscribers on `channel`: deliver its publications here from now on.
    /// When the future completes, every publication after the position a following
    /// [`Broker::history`] reports is delivered.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Result<(), BrokerError>>;

    /// This node no longer has subscribers on `channel`.
    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Result<(), BrokerError>>;

    /// What the broker knows of its health now.
    fn health(&self) -> Health;
}
