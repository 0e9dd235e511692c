//! The signalhub hub: channels, tiers, sequencing, history and fan-out, with no I/O.
//!
//! Everything here is plain data and `std` locks, so it is unit-tested without a network and
//! shared by every transport (WebSocket, SSE, long-poll) and source (HTTP API, feeds).
//!
//! # Layout
//! - [`hub`]: channels with per-channel `epoch` and `seq`, history, tier-bucketed fan-out
//!   (batched, and run as a job beside the publisher for large channels).
//! - [`broker`]: the seam where a channel's epoch, seq, history and latest value are kept
//!   and publications reach every node (the contract, and its implementations).
//! - [`client`]: the state a connection shares with the hub (bounded outbox, identity).
//! - [`direct`]: the hook for writing publications straight to idle sockets in batches.
//! - [`envelope`]: publication envelopes and `locked` stubs, serialized once.
//! - [`history`]: a channel's bounded history and gap-free recovery.
//! - [`channel`]: channel-name grammar and configuration patterns.
//! - [`rules`]: who may subscribe to which channel.
//! - [`tier`]: the ordered tier ladder and its aliases.
//! - [`ids`]: publication ids, epochs and connection ids.
//!
//! The trading schema (signal records, typed publish bodies, exact decimals) is not here:
//! it is the `signalhub-schema` crate, beside the sources that publish it.

pub mod broker;
pub mod channel;
pub mod client;
pub mod direct;
pub mod envelope;
pub mod history;
pub mod hub;
pub mod ids;
pub mod rules;
pub mod tier;

pub use broker::{Broker, BrokerError, BrokerFuture, MemoryBroker};
pub use client::{AuthKind, Client, Identity, Offer, Push};
pub use direct::{DirectSink, Target};
pub use envelope::Publication;
pub use hub::{
    FanOut, FanOutExecutor, Hub, HubConfig, HubStats, Position, PublishError, PublishKey,
    Published, Since, SubscribeItem,
};
pub use tier::{TierId, TierLadder};
