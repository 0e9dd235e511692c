//! signalhub: a real-time signal streaming server.
//!
//! Publishers POST signals, prices and alerts; subscribers receive them over WebSocket
//! within milliseconds, each publication serialized once and shared by every subscriber,
//! tier-locked for those below its tier, sequenced per channel so gaps can be seen.
//!
//! # Layout
//! - [`server`]: the accept loop, HTTP serving and graceful shutdown; [`run`] is the entry.
//! - [`http`]: the HTTP API (publish, signals, stats, health) as an axum `Router`.
//! - [`publish`]: the one publish path every source uses (HTTP, the shutdown notice,
//!   in-process feeds and bots): ids, idempotency, durable signals, the broker.
//! - [`ws`]: the WebSocket transport: handshake, framing, the connection future, frames.
//! - [`subscriptions`]: what every transport does with its subscriptions when its identity
//!   changes (an admin tier change, an `auth` frame).
//! - [`peer`]: the client's address behind trusted reverse proxies.
//! - [`heartbeat`]: the sweeper that pings, times out and reaps connections.
//! - [`registry`]: every live connection, for shutdown, admin actions and stats.
//! - [`auth`]: tokens, wallet sign-in, balance-derived tiers: credentials to a `Principal`.
//! - [`config`]: defaults, TOML, environment and flags, validated at start;
//!   [`config_report`] prints what they resolve to (`signalhub config check`).
//! - [`keyfile`]: the generated publisher key, kept beside the store across restarts.
//! - [`store`]: durable signals and admin tier changes: SQLite by default, PostgreSQL by URL.
//! - [`state`], [`clock`], [`idempotency`]: shared state, a coarse clock, publish dedup.
//!
//! The hub itself (channels, tiers, history, fan-out) is the `signalhub-hub` crate.

pub mod auth;
pub mod clock;
pub mod config;
pub mod config_report;
pub mod feeds;
pub mod heartbeat;
pub mod http;
pub mod idempotency;
pub mod keyfile;
pub mod peer;
pub mod publish;
pub mod registry;
pub mod server;
pub mod state;
pub mod store;
pub mod subscriptions;
pub mod ws;

use std::future::Future;

pub use config::Config;
pub use state::AppState;

/// Runs a server on `listener` with `config` until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let state = AppState::open(config)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    server::serve(listener, state, shutdown).await
}
