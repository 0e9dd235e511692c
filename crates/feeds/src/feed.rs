//! A running feed: [`Feed::spawn`] starts the task for one `[[feeds]]` entry and returns a
//! [`FeedHandle`] for its stats; events go to the sink the caller gave.
//!
//! The task ends when `shutdown` completes (closing the exchange connection with a close
//! frame) or when the sink's receiver is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::binance::BinanceProtocol;
use crate::coinbase::CoinbaseProtocol;
use crate::config::{ConfigError, Exchange, FeedConfig};
use crate::session;
use crate::stats::{FeedStats, SharedStats};
use crate::synthetic;
use crate::tick::{FeedEvent, Status};

/// The clocks of the reconnect loop. Production uses [`Timing::default`]; tests shorten the
/// backoff unit so a reconnect takes milliseconds (staleness comes from `stale_after_s`).
#[derive(Debug, Clone)]
pub struct Timing {
    /// Backoff unit: attempt k waits up to `unit * 2^k` (1 s).
    pub backoff_unit: Duration,
    /// Backoff cap (30 s).
    pub backoff_cap: Duration,
    /// Longest wait for the TCP, TLS and WebSocket handshakes (10 s).
    pub connect_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            backoff_unit: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Starts feeds.
pub struct Feed;

/// The shutdown future, boxed once so every wait in the task can select on it by reference.
pub(crate) type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Feed {
    /// Validates `config` and starts its task with production timing; a bad config is an
    /// error naming the field (`feed.products`). Must be called within a Tokio runtime.
    pub fn spawn(
        config: FeedConfig,
        sink: mpsc::Sender<FeedEvent>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<FeedHandle, ConfigError> {
        Feed::spawn_with(config, Timing::default(), sink, shutdown)
    }

    /// Like [`Feed::spawn`] with explicit timing.
    pub fn spawn_with(
        config: FeedConfig,
        timing: Timing,
        sink: mpsc::Sender<FeedEvent>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<FeedHandle, ConfigError> {
        // The server validates the whole list at load time (`validate_feeds`, with indices);
        // this guards direct callers, so the path is just `feed`.
        config.validate_at("feed")?;
        install_crypto_provider();
        let name: Arc<str> = config.name.as_str().into();
        let stats = Arc::new(SharedStats::new(
            name.clone(),
            config.exchange,
            config.products.clone(),
        ));
        let ctx = FeedCtx {
            name,
            stats: stats.clone(),
            sink,
            stale_after: config.stale_after(),
        };
        let shutdown: Shutdown = Box::pin(shutdown);
        let task = match config.exchange {
            Exchange::Coinbase => {
                let protocol = CoinbaseProtocol::new(&config, ctx.name.clone());
                tokio::spawn(session::run(protocol, ctx, timing, shutdown))
            }
            Exchange::Binance => {
                let protocol = BinanceProtocol::new(&config, ctx.name.clone());
                tokio::spawn(session::run(protocol, ctx, timing, shutdown))
            }
            Exchange::Synthetic => tokio::spawn(synthetic::run(config, ctx, shutdown)),
        };
        Ok(FeedHandle { stats, task })
    }
}

/// Makes ring rustls's process-wide crypto provider unless one is installed already:
/// tokio-tungstenite builds its TLS client from the process default, and rustls cannot pick
/// one by itself when no provider feature, or more than one, is enabled in the build.
fn install_crypto_provider() {
    // An error means a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The caller's side of a running feed.
#[derive(Debug)]
pub struct FeedHandle {
    stats: Arc<SharedStats>,
    task: JoinHandle<()>,
}

impl FeedHandle {
    /// The feed's name.
    pub fn name(&self) -> &str {
        &self.stats.name
    }

    /// A snapshot of the counters for `GET /api/v1/feeds`.
    pub fn stats(&self) -> FeedStats {
        self.stats.snapshot()
    }

    /// The current status, for `/ws/health`.
    pub fn status(&self) -> Status {
        self.stats.lock().status
    }

    /// Waits for the task to end (after shutdown, or once the sink is gone).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// The sink went away: nobody listens, so the feed stops.
#[derive(Debug)]
pub(crate) struct SinkClosed;

/// What every connector's task holds: identity, counters, the sink.
pub(crate) struct FeedCtx {
    pub name: Arc<str>,
    pub stats: Arc<SharedStats>,
    pub sink: mpsc::Sender<FeedEvent>,
    pub stale_after: Duration,
}

impl FeedCtx {
    /// Sets the status and, when it changed, tells the sink.
    pub async fn set_status(&self, status: Status) -> Result<(), SinkClosed> {
        let changed = {
            let mut c = self.stats.lock();
            let changed = c.status != status;
            c.status = status;
            changed
        };
        if changed {
            tracing::info!(feed = %self.name, status = status.as_str(), "feed status");
            self.emit(FeedEvent::Status {
                feed: self.name.clone(),
                status,
            })
            .await?;
        }
        Ok(())
    }

    pub fn status(&self) -> Status {
        self.stats.lock().status
    }

    pub async fn emit(&self, event: FeedEvent) -> Result<(), SinkClosed> {
        self.sink.send(event).await.map_err(|_| SinkClosed)
    }
}
