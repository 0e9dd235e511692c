//! A Rust client for signalhub: WebSocket subscriptions that survive reconnects without
//! losing or repeating publications.
//!
//! ```no_run
//! # async fn demo() -> Result<(), signalhub_client::Error> {
//! use futures_util::StreamExt;
//! use signalhub_client::{Client, Event};
//!
//! let client = Client::builder("http://127.0.0.1:8080").build()?;
//! let mut events = client.subscribe(["signals", "price:BTC-USD"])?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Publication(p) => println!("{}", p.to_json()),
//!         Event::State(state) => eprintln!("{state}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! It behaves like the TypeScript client (`clients/js`):
//! - one connection per [`Client`] to `{url}/ws`, the token in the query (`token=`);
//! - reconnects with exponential backoff and full jitter ([`Backoff`], 1 s to 30 s), at once
//!   after 1001 (server going away), never after 1008 (disconnected by policy), and after 4001
//!   (token expired) only with a new token from the token provider;
//! - the token provider is asked at connect when there is no token or it expires within 30 s,
//!   before the token's `exp` (the new one is sent in an `auth` frame), and after 4001;
//! - every subscribe carries `since` (the last epoch and seq seen per channel), so the server
//!   replays what was missed; when it cannot (`recovered: false`, a new epoch, a seq gap) the
//!   channel is resynced from `GET /api/v1/channels/{channel}/history` and what was not seen is
//!   delivered in order after an [`Event::Resync`];
//! - duplicates are dropped by (channel, seq) and by (channel, `data.signal_id`), the latter
//!   over the last 1000 signal ids.
//!
//! # Layout
//!
//! - [`client`]: [`Client`], its builder and the [`Events`] stream handed to each subscriber.
//! - [`event`]: what a subscriber receives: [`Event`], [`ConnectionState`].
//! - `connection`: the task that owns the WebSocket: connect, welcome, subscribe, read,
//!   refresh the token, decide how to reconnect.
//! - `recovery`: per-channel positions and de-duplication, no I/O.
//! - [`envelope`]: publications ([`Envelope`]) and the other frames of the wire protocol.
//! - [`backoff`]: reconnect delays.
//! - [`token`]: token sources and reading a JWT's `exp`.
//! - [`http`]: the HTTP API calls the client and the CLI make (history, publish).
//! - [`cli`]: the `signalhub tail` and `signalhub publish` commands.
//! - [`error`]: the crate's error type.

pub mod backoff;
pub mod cli;
pub mod client;
mod connection;
pub mod envelope;
pub mod error;
pub mod event;
pub mod http;
mod recovery;
pub mod token;

pub use backoff::Backoff;
pub use client::{Client, ClientBuilder, Events};
pub use envelope::Envelope;
pub use error::Error;
pub use event::{ConnectionState, Event};
pub use http::HttpApi;
