//! The state every handler and connection shares: configuration, hub, registry, counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use signalhub_hub::Hub;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::keys::KeyRing;
use crate::idempotency::Idempotency;
use crate::registry::Registry;

/// Cheap to clone: one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// What `AppState` points at.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub hub: Hub,
    pub registry: Registry,
    pub clock: Clock,
    pub idempotency: Idempotency,
    /// Digests of the configured API keys.
    pub keys: KeyRing,
    stopping: AtomicBool,
    stop_signal: tokio::sync::watch::Sender<bool>,
    next_connection: AtomicU64,
    /// Data frames received from clients.
    pub messages_in: AtomicU64,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(config: Config) -> Self {
        let hub = Hub::new(config.hub.clone());
        let idempotency = Idempotency::new(config.dedup_window_s);
        let keys = KeyRing::new(&config.api_keys);
        AppState(Arc::new(Shared {
            config,
            hub,
            registry: Registry::default(),
            clock: Clock::default(),
            idempotency,
            keys,
            stopping: AtomicBool::new(false),
            stop_signal: tokio::sync::watch::Sender::new(false),
            next_connection: AtomicU64::new(1),
            messages_in: AtomicU64::new(0),
        }))
    }

    /// A process-unique connection number.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// True once shutdown began: new connections and requests get 503.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop_signal.send_replace(true);
    }

    /// Completes once shutdown began (ends long-polls).
    pub async fn stopped(&self) {
        let mut rx = self.stop_signal.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}
