//! Exchange market-data feeds for signalhub: connections to Coinbase, Binance or a synthetic
//! random walk, turned into normalized [`Tick`]s and [`Status`] changes (spec section 10,
//! items 39-41 and 57-61).
//!
//! The crate knows nothing of the hub or the server. [`Feed::spawn`] runs one `[[feeds]]`
//! entry and sends [`FeedEvent`]s to an `mpsc` sink; the server maps each tick to a
//! `price_update` publication on `price:{product}` with [`Tick::to_json`] as `data`, each
//! status change to `system_status` on `system`, and serves [`FeedHandle::stats`] in
//! `GET /api/v1/feeds` and `/ws/health`.
//!
//! # Layout
//!
//! - [`config`]: the `[[feeds]]` table ([`FeedConfig`]) and validation errors naming the field.
//! - [`feed`]: [`Feed::spawn`], the [`FeedHandle`] and the [`Timing`] of the reconnect loop.
//! - [`tick`]: what the sink receives: [`FeedEvent`], [`Tick`] and its JSON, [`Status`].
//! - [`decimal`]: exact decimal prices, the exchange's digits kept as text.
//! - [`stats`]: the counters behind [`FeedHandle::stats`].
//! - `connector`: the small interface an exchange's protocol implements (`WsProtocol`).
//! - `session`: the WebSocket loop every exchange shares: connect, subscribe, read, staleness,
//!   reconnect with [`backoff`], sequence checks ([`sequence`]), outbound spacing
//!   ([`rate_limit`]).
//! - `coinbase`, `binance`: the two exchange protocols; [`synthetic`]: the random walk.
//! - `testing` (feature `testing`): local replay servers speaking each exchange's protocol, for
//!   this crate's tests and the server's.

pub mod backoff;
mod binance;
mod coinbase;
pub mod config;
mod connector;
pub mod decimal;
pub mod feed;
pub mod rate_limit;
pub mod sequence;
mod session;
pub mod stats;
pub mod synthetic;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tick;

pub use binance::symbol_of as binance_symbol_of;
pub use coinbase::subscribe_message as coinbase_subscribe_message;
pub use config::{validate_feeds, ConfigError, Exchange, FeedConfig};
pub use decimal::Decimal;
pub use feed::{Feed, FeedHandle, Timing};
pub use stats::FeedStats;
pub use tick::{FeedEvent, Status, Tick};
