//! The state every handler and connection shares: configuration, hub, registry, counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use signalhub_hub::{FanOut, Hub, Identity, TierId};

use crate::auth::{NonceStore, Principal};

use crate::clock::Clock;
use crate::config::Config;
use crate::http::keys::KeyRing;
use crate::idempotency::Idempotency;
use crate::registry::Registry;
use crate::store::{Store, StoreError};

/// Wallet sign-in nonces one client address may request per minute, and at once.
pub const NONCES_PER_MINUTE: u32 = 30;
pub const NONCE_BURST: u32 = 10;

/// `per_second` cells a second, `burst` at once; both are checked to be at least 1 when the
/// configuration is read.
fn per_second_quota(per_second: u32, burst: u32) -> governor::Quota {
    let nonzero = |n: u32| std::num::NonZeroU32::new(n.max(1)).expect("at least 1");
    governor::Quota::per_second(nonzero(per_second)).allow_burst(nonzero(burst))
}

/// One cell from `key`'s bucket, or the whole seconds (rounded up, at least 1) until one is
/// free: the `Retry-After` of the 429.
fn check_keyed<K>(limiter: &governor::DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), u64>
where
    K: Clone + std::hash::Hash + Eq,
{
    limiter.check_key(key).map_err(|not_until| {
        let now = governor::clock::Clock::now(limiter.clock());
        let wait = not_until.wait_time_from(now);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        secs.max(1)
    })
}

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
    /// Wallet sign-in nonces.
    pub nonces: NonceStore,
    /// Nonces issued per client address: a flood from one address cannot evict everyone
    /// else's outstanding nonces.
    pub nonce_limiter: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Publishes per API key (by its index in the key ring), across every publishing
    /// endpoint: `limits.publishes_per_key_per_second` and `_burst`.
    publish_limiter: governor::DefaultKeyedRateLimiter<usize>,
    /// New WebSocket upgrades per client address (an IPv6 one by its /64):
    /// `limits.ws_connects_per_ip_per_second` and `_burst`, against reconnect storms.
    ws_connect_limiter: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// Admin tier changes, by user: they override token claims (spec section 9, item 13).
    /// Persisted in the store; this is the in-memory copy read on every authentication.
    tier_overrides: Mutex<HashMap<String, TierId>>,
    /// Durable signals and tier changes.
    pub store: Store,
    /// Signals being stored and published right now, by `signal_id`: a concurrent retry
    /// waits its turn (409) instead of publishing twice.
    pub signals_in_flight: Mutex<HashSet<String>>,
    /// The running `[[feeds]]` (started by `server::serve`).
    pub feeds: crate::feeds::Feeds,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Opens the store named by the configuration and loads the admin tier changes kept
    /// there.
    pub async fn open(config: Config) -> Result<Self, StoreError> {
        let store = Store::open(&config.store).await?;
        let tiers = store.user_tiers().await?;
        let state = AppState::new(config, store);
        for (user, tier) in tiers {
            match state.hub.ladder().parse(&tier) {
                Some(tier) => state.set_tier_override(&user, Some(tier)),
                None => tracing::warn!(%user, %tier, "stored tier is not on the ladder; ignored"),
            }
        }
        Ok(state)
    }

    pub fn new(config: Config, store: Store) -> Self {
        let hub = with_fanout_jobs(with_direct_writer(
            Hub::new(config.hub.clone()),
            config.io_uring,
        ));
        let idempotency = Idempotency::new(config.dedup_window_s);
        let keys = KeyRing::new(&config.api_keys);
        let publish_limiter = governor::RateLimiter::keyed(per_second_quota(
            config.limits.publishes_per_key_per_second,
            config.limits.publishes_per_key_burst,
        ));
        let ws_connect_limiter = governor::RateLimiter::keyed(per_second_quota(
            config.limits.ws_connects_per_ip_per_second,
            config.limits.ws_connects_per_ip_burst,
        ));
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
            nonces: NonceStore::new(100_000),
            nonce_limiter: governor::RateLimiter::keyed(
                governor::Quota::per_minute(
                    std::num::NonZeroU32::new(NONCES_PER_MINUTE).expect("nonzero"),
                )
                .allow_burst(std::num::NonZeroU32::new(NONCE_BURST).expect("nonzero")),
            ),
            publish_limiter,
            ws_connect_limiter,
            tier_overrides: Mutex::new(HashMap::new()),
            store,
            signals_in_flight: Mutex::new(HashSet::new()),
            feeds: crate::feeds::Feeds::default(),
        }))
    }

    /// Takes one publish from API key `key_index`'s budget; `Err` holds the seconds (rounded
    /// up, at least 1) until the key may publish again.
    pub fn check_publish_rate(&self, key_index: usize) -> Result<(), u64> {
        check_keyed(&self.publish_limiter, &key_index)
    }

    /// Takes one new WebSocket connection from client address `ip`'s budget (an IPv6
    /// address counts by its /64); `Err` holds the seconds until it may connect again.
    pub fn check_ws_connect_rate(&self, ip: std::net::IpAddr) -> Result<(), u64> {
        let checked = check_keyed(&self.ws_connect_limiter, &crate::peer::limiter_key(ip));
        if self.ws_connect_limiter.len() > 100_000 {
            self.ws_connect_limiter.retain_recent();
        }
        checked
    }

    /// A process-unique connection number.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// The admin-set tier of `user`, if any.
    pub fn tier_override(&self, user: &str) -> Option<TierId> {
        self.tier_overrides
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .copied()
    }

    /// Sets (or with None clears) the admin tier of `user`.
    pub fn set_tier_override(&self, user: &str, tier: Option<TierId>) {
        let mut map = self
            .tier_overrides
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match tier {
            Some(tier) => map.insert(user.to_string(), tier),
            None => map.remove(user),
        };
    }

    /// The connection identity a verified principal gets, admin tier changes applied.
    pub fn identity_of(&self, principal: Principal) -> Identity {
        let tier = principal
            .user
            .as_deref()
            .and_then(|u| self.tier_override(u))
            .unwrap_or(principal.tier);
        Identity {
            auth: principal.auth,
            user: principal.user.map(std::sync::Arc::from),
            anonymous_id: None,
            tier,
            expires_at: principal.expires_at,
        }
    }

    /// Verifies a session token now.
    pub fn verify_token(&self, token: &str) -> Result<Identity, crate::auth::TokenError> {
        let now = chrono::Utc::now().timestamp();
        let principal = self
            .config
            .auth
            .verifier
            .verify(token, self.hub.ladder(), now)?;
        Ok(self.identity_of(principal))
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

/// Runs the hub's fan-out jobs on tokio's blocking pool: a publish is answered once its
/// publication is sequenced and remembered, while the fan-out to thousands of sockets runs
/// beside it (and picks up the publications that arrive meanwhile). Outside a runtime the
/// publisher fans out itself.
fn with_fanout_jobs(hub: Hub) -> Hub {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => hub.with_fanout_executor(Arc::new(move |job: FanOut| {
            // A runtime shutting down drops the task unrun, and dropping a job runs it.
            drop(runtime.spawn_blocking(move || job.run()));
        })),
        Err(_) => hub,
    }
}

/// Installs the io_uring direct writer in `hub` when asked for and available (Linux).
fn with_direct_writer(hub: Hub, wanted: bool) -> Hub {
    if !wanted {
        return hub;
    }
    #[cfg(target_os = "linux")]
    {
        // One writer per core, as tokio has one worker per core; a few suffice for any
        // fan-out a single process's ~20k-100k sockets ask for.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
        match crate::ws::direct::UringWriter::start(threads) {
            Ok(writer) => return hub.with_direct_sink(writer),
            Err(e) => {
                tracing::info!(error = %e, "io_uring unavailable: connections write for themselves")
            }
        }
    }
    hub
}
