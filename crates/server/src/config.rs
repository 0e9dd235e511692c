//! Configuration: defaults, then the TOML file, then `SIGNALHUB_*` variables, then flags.
//!
//! Everything is validated once at start; an invalid setting is a [`ConfigError`] naming the
//! key, variable or flag, and the binary exits with code 2.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use std::sync::Arc;

use serde::Deserialize;
use signalhub_hub::channel::Glob;
use signalhub_hub::history::HistoryLimits;
use signalhub_hub::rules::{Access, ChannelRule, ChannelRules};
use signalhub_hub::{HubConfig, TierLadder};
use signalhub_schema::signal::SignalRules;

use crate::auth::{
    parse_address, BalanceProvider, JsonRpcTiers, Minter, StaticTiers, TokenAlg, TokenRules,
    Verifier, VerifyKey,
};

/// An invalid setting: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    /// The TOML key, environment variable or flag at fault.
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Publisher,
    Admin,
}

/// A configured API key.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub key: String,
    pub role: Role,
}

impl std::fmt::Debug for ApiKey {
    // Secrets never reach logs, not even through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// Connection and request limits (spec section 5).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_subscriptions: usize,
    pub client_frames_per_second: u32,
    pub client_frames_burst: u32,
    /// Channels one `subscribe` or `unsubscribe` frame may name; more is a `bad_request`.
    pub max_channels_per_frame: usize,
    /// Channel operations (channels named by `subscribe`/`unsubscribe` frames) per second a
    /// connection may sustain, and at once: a second token bucket beside the frame rate.
    pub channel_ops_per_second: u32,
    pub channel_ops_burst: u32,
    pub connections_per_ip: usize,
    pub idle_timeout_s: u32,
    pub ping_interval_s: u32,
    pub max_queue_bytes: usize,
    pub max_body_bytes: usize,
    /// How long a long-poll waits for publications before answering empty.
    pub poll_timeout_s: u32,
    /// How long a request body may take to arrive in full (408 beyond).
    pub body_read_timeout_s: u32,
    /// How long an HTTP connection may wait for a request head: on a new connection and
    /// between the requests of a kept-alive one (then it is closed).
    pub http_idle_timeout_s: u32,
    /// Open HTTP connections one client address may hold (SSE streams included; a
    /// WebSocket stops counting here once upgraded); past it a connection gets one 429.
    pub http_connections_per_ip: usize,
    /// Publishes one API key may sustain per second, and at once, across every publishing
    /// endpoint; past it a request is answered 429 `rate_limited` with `Retry-After`.
    pub publishes_per_key_per_second: u32,
    pub publishes_per_key_burst: u32,
    /// New WebSocket connections one client address (an IPv6 one by its /64) may open per
    /// second, and at once; past it an upgrade is answered 429 with `Retry-After`.
    pub ws_connects_per_ip_per_second: u32,
    pub ws_connects_per_ip_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 65_536,
            max_subscriptions: 1024,
            client_frames_per_second: 50,
            client_frames_burst: 100,
            max_channels_per_frame: 100,
            channel_ops_per_second: 200,
            channel_ops_burst: 2048,
            connections_per_ip: 1000,
            idle_timeout_s: 300,
            ping_interval_s: 25,
            max_queue_bytes: 1 << 20,
            max_body_bytes: 1 << 20,
            poll_timeout_s: 25,
            body_read_timeout_s: 15,
            http_idle_timeout_s: 10,
            http_connections_per_ip: 256,
            publishes_per_key_per_second: 1000,
            publishes_per_key_burst: 2000,
            ws_connects_per_ip_per_second: 50,
            ws_connects_per_ip_burst: 200,
        }
    }
}

/// `[tiers]`: the ladder, lowest first, and aliases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TiersFile {
    pub ladder: Vec<String>,
    pub aliases: BTreeMap<String, String>,
}

impl Default for TiersFile {
    fn default() -> Self {
        TiersFile {
            ladder: ["free", "premium", "holder", "whale"]
                .map(String::from)
                .into(),
            aliases: [
                ("starter", "free"),
                ("professional", "premium"),
                ("institutional", "whale"),
            ]
            .into_iter()
            .map(|(a, t)| (a.to_string(), t.to_string()))
            .collect(),
        }
    }
}

/// `[signals]`: tier thresholds and accepted signal types.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsFile {
    pub premium_min_confidence: f64,
    pub whale_min_confidence: f64,
    pub high_confidence: f64,
    pub extra_types: Vec<String>,
}

impl Default for SignalsFile {
    fn default() -> Self {
        SignalsFile {
            premium_min_confidence: 0.8,
            whale_min_confidence: 0.9,
            high_confidence: 0.8,
            extra_types: Vec::new(),
        }
    }
}

/// One `[[channels]]` rule: `pattern` plus `min_tier` or `access = "owner"`/`"open"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRuleFile {
    pub pattern: String,
    pub min_tier: Option<String>,
    pub access: Option<String>,
}

/// One `[[history.rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRuleFile {
    pub pattern: String,
    pub size: Option<usize>,
    pub ttl_s: Option<u64>,
}

/// `[history]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryFile {
    pub size: usize,
    pub ttl_s: u64,
    pub rules: Vec<HistoryRuleFile>,
    pub latest_value: Vec<String>,
}

impl Default for HistoryFile {
    fn default() -> Self {
        HistoryFile {
            size: 100,
            ttl_s: 300,
            rules: Vec::new(),
            latest_value: vec!["price:*".into(), "market:*".into()],
        }
    }
}

/// One `[[auth.keys]]` entry: a session-token verification key pinned to its algorithm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// `HS256`, `RS256` or `ES256`.
    pub alg: String,
    /// The HS256 secret.
    pub secret: Option<String>,
    /// A PEM file with the RS256/ES256 public key.
    pub public_key_file: Option<std::path::PathBuf>,
    pub kid: Option<String>,
}

/// `[auth.balance]`: where wallet tiers come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceFile {
    /// `static` (an address -> tier file) or `jsonrpc` (an ERC-20 balance).
    pub provider: String,
    pub file: Option<std::path::PathBuf>,
    pub url: Option<String>,
    pub token: Option<String>,
    pub holder_min: Option<String>,
    pub whale_min: Option<String>,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFile {
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub leeway_s: Option<u64>,
    /// The domain wallet sign-in messages must name. Without it the request's Host is used,
    /// which is only allowed on a loopback listen address (a phishing site's Host would do).
    pub wallet_domain: Option<String>,
    /// Wallet sign-in on or off (default on).
    pub wallet_signin: Option<bool>,
    pub keys: Vec<KeyFile>,
    pub balance: Option<BalanceFile>,
}

/// The TOML file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    pub listen: Option<String>,
    pub log: Option<String>,
    pub store: Option<String>,
    pub broker: Option<String>,
    pub jwt_secret: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    /// Reverse proxies (CIDRs or addresses) whose `X-Forwarded-For`/`Forwarded` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    pub api_keys: Option<Vec<ApiKey>>,
    pub dedup_window_s: Option<u64>,
    pub io_uring: Option<bool>,
    pub limits: Limits,
    pub tiers: TiersFile,
    pub signals: SignalsFile,
    pub channels: Option<Vec<ChannelRuleFile>>,
    pub history: HistoryFile,
    pub auth: AuthFile,
    /// `[[feeds]]`: exchange market-data feeds (spec section 10).
    pub feeds: Vec<signalhub_feeds::FeedConfig>,
}

pub use crate::peer::TrustedProxies;
pub use crate::store::StoreUrl;

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub log: String,
    pub store: StoreUrl,
    pub jwt_secret: Option<String>,
    /// Empty means any origin.
    pub allowed_origins: Vec<String>,
    /// Proxies whose forwarding headers name the client (empty: the TCP peer is the client).
    pub trusted_proxies: Arc<TrustedProxies>,
    pub api_keys: Vec<ApiKey>,
    /// True when no key was configured and one was generated at start.
    pub generated_key: bool,
    pub dedup_window_s: u64,
    /// Write publications to idle WebSocket connections through io_uring (Linux; falls
    /// back to per-connection writes where io_uring is unavailable).
    pub io_uring: bool,
    pub limits: Limits,
    pub signals: SignalRules,
    pub rules: ChannelRules,
    pub hub: HubConfig,
    pub auth: Arc<AuthSetup>,
    /// Market-data feeds started with the server, validated (`feeds[i].field`).
    pub feeds: Vec<signalhub_feeds::FeedConfig>,
}

/// Credentials machinery built from the configuration.
#[derive(Debug)]
pub struct AuthSetup {
    /// Verifies session tokens (configured keys, plus the minter's key).
    pub verifier: Verifier,
    /// Signs session tokens: with `SIGNALHUB_JWT_SECRET`, or a per-process random key.
    pub minter: Minter,
    /// Whether `GET /api/v1/auth/nonce` and `POST /api/v1/auth/wallet` are served.
    pub wallet_signin: bool,
    /// The domain sign-in messages must name; `None` (loopback only) means the Host header.
    pub wallet_domain: Option<String>,
    pub balance: BalanceProvider,
}

/// Values from the command line, which win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub config: Option<std::path::PathBuf>,
    /// `serve --api-key`: the one publisher key, instead of `SIGNALHUB_API_KEYS` or the file's.
    pub api_key: Option<String>,
}

/// A source of environment variables (the process environment, or a map in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for [(&str, &str)] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// Reads and parses the TOML file.
pub fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("--config", format!("cannot read {}: {e}", path.display())))?;
    parse_file(&text)
}

/// Parses TOML text; unknown keys and wrong types are errors naming the key.
pub fn parse_file(text: &str) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().to_string();
        let field = e
            .span()
            .and_then(|span| text.get(span))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.len() < 80)
            .unwrap_or_else(|| "config file".to_string());
        invalid(field, message)
    })
}

fn env_nonempty(env: &(impl Env + ?Sized), name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_bool(value: &str, field: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(field, format!("{value:?} is not true or false"))),
    }
}

fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Parses `SIGNALHUB_API_KEYS`: `key:role` pairs split on `,`, the last `:` separating the role.
pub fn parse_api_keys(value: &str, field: &str) -> Result<Vec<ApiKey>, ConfigError> {
    let mut keys = Vec::new();
    for entry in comma_list(value) {
        let (key, role) = entry
            .rsplit_once(':')
            .ok_or_else(|| invalid(field, "each entry must be key:role"))?;
        let role = match role.trim() {
            "publisher" => Role::Publisher,
            "admin" => Role::Admin,
            _ => return Err(invalid(field, "role must be publisher or admin")),
        };
        keys.push(ApiKey {
            key: key.trim().to_string(),
            role,
        });
    }
    Ok(keys)
}

fn parse_limit<T: std::str::FromStr>(
    env: &(impl Env + ?Sized),
    name: &str,
    slot: &mut T,
) -> Result<(), ConfigError> {
    if let Some(value) = env_nonempty(env, name) {
        *slot = value
            .parse()
            .map_err(|_| invalid(name, format!("{value:?} is not a non-negative integer")))?;
    }
    Ok(())
}

fn parse_store(value: &str, field: &str) -> Result<StoreUrl, ConfigError> {
    if let Some(path) = value.strip_prefix("sqlite:") {
        if path.is_empty() {
            return Err(invalid(field, "sqlite: needs a path or :memory:"));
        }
        Ok(StoreUrl::Sqlite(path.to_string()))
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Ok(StoreUrl::Postgres(value.to_string()))
    } else {
        Err(invalid(field, "must be sqlite:PATH or postgres://..."))
    }
}

/// Parses `SIGNALHUB_CHANNEL_RULES`: `pattern=tier|owner|open` pairs split on `,`.
fn parse_rules_env(value: &str) -> Vec<ChannelRuleFile> {
    comma_list(value)
        .into_iter()
        .map(|entry| {
            let (pattern, access) = entry.rsplit_once('=').unwrap_or((&entry, ""));
            let access = access.trim().to_string();
            let (min_tier, access) = match access.as_str() {
                "owner" | "open" => (None, Some(access)),
                _ => (Some(access), None),
            };
            ChannelRuleFile {
                pattern: pattern.trim().to_string(),
                min_tier,
                access,
            }
        })
        .collect()
}

fn build_rules(
    rules: Option<Vec<ChannelRuleFile>>,
    ladder: &TierLadder,
    field: &str,
) -> Result<ChannelRules, ConfigError> {
    let Some(rules) = rules else {
        return Ok(ChannelRules::defaults(ladder));
    };
    let mut built = Vec::new();
    for (i, rule) in rules.into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        let access = match (rule.min_tier.as_deref(), rule.access.as_deref()) {
            (Some(tier), None) => Access::MinTier(ladder.parse(tier).ok_or_else(|| {
                invalid(format!("{at}.min_tier"), format!("unknown tier {tier:?}"))
            })?),
            (None, Some("owner")) => Access::Owner,
            (None, Some("open")) => Access::Open,
            (None, Some(other)) => {
                return Err(invalid(
                    format!("{at}.access"),
                    format!("{other:?} is not owner or open"),
                ))
            }
            _ => return Err(invalid(at, "give exactly one of min_tier or access")),
        };
        built.push(
            ChannelRule::new(&rule.pattern, access)
                .map_err(|m| invalid(format!("{at}.pattern"), m))?,
        );
    }
    Ok(ChannelRules::new(built))
}

fn check_confidence(value: f64, field: &str) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, "must be within 0..1"))
    }
}

fn build_auth(
    file: AuthFile,
    jwt_secret: Option<&str>,
    ladder: &TierLadder,
) -> Result<AuthSetup, ConfigError> {
    let mut keys = Vec::new();
    if let Some(secret) = jwt_secret {
        keys.push(VerifyKey::hs256(secret.as_bytes().to_vec()));
    }
    for (i, key) in file.keys.iter().enumerate() {
        let at = format!("auth.keys[{i}]");
        let alg = TokenAlg::from_jose(&key.alg)
            .ok_or_else(|| invalid(format!("{at}.alg"), "must be HS256, RS256 or ES256"))?;
        let built = match (alg, &key.secret, &key.public_key_file) {
            (TokenAlg::Hs256, Some(secret), None) if secret.len() >= 16 => {
                VerifyKey::hs256(secret.as_bytes().to_vec())
            }
            (TokenAlg::Hs256, Some(_), None) => {
                return Err(invalid(format!("{at}.secret"), "must be at least 16 bytes"))
            }
            (TokenAlg::Rs256 | TokenAlg::Es256, None, Some(path)) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        format!("{at}.public_key_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                if alg == TokenAlg::Rs256 {
                    VerifyKey::rs256_pem(pem)
                } else {
                    VerifyKey::es256_pem(pem)
                }
            }
            (TokenAlg::Hs256, ..) => {
                return Err(invalid(
                    at,
                    "an HS256 key needs `secret` (and no public_key_file)",
                ))
            }
            _ => {
                return Err(invalid(
                    at,
                    "an RS256/ES256 key needs `public_key_file` (and no secret)",
                ))
            }
        };
        keys.push(match &key.kid {
            Some(kid) => built.with_kid(kid.clone()),
            None => built,
        });
    }
    let rules = TokenRules {
        audience: file.audience,
        issuer: file.issuer,
        leeway_s: file.leeway_s.unwrap_or(30),
    };
    if rules.leeway_s > 30 {
        return Err(invalid("auth.leeway_s", "must be at most 30"));
    }
    let verifier = Verifier::new(keys, rules).map_err(|e| invalid("auth.keys", e.to_string()))?;
    let minter = match jwt_secret {
        Some(secret) => Minter::hs256(secret.as_bytes())
            .map_err(|e| invalid("SIGNALHUB_JWT_SECRET", e.to_string()))?,
        None => Minter::random(),
    }
    .with_claims_of(verifier.rules());
    // Without a configured secret, wallet tokens are signed with a per-process key that only
    // this verifier knows (spec section 9, item 16).
    let verifier = if minter.is_ephemeral() {
        verifier.with_minter(&minter)
    } else {
        verifier
    };
    let balance = match file.balance {
        None => BalanceProvider::None,
        Some(b) => match b.provider.as_str() {
            "none" => BalanceProvider::None,
            "static" => {
                let path = b.file.ok_or_else(|| {
                    invalid("auth.balance.file", "the static provider needs a file")
                })?;
                BalanceProvider::Static(
                    StaticTiers::load(&path, ladder)
                        .map_err(|e| invalid("auth.balance.file", e.to_string()))?,
                )
            }
            "jsonrpc" => {
                let need = |v: Option<String>, field: &str| {
                    v.ok_or_else(|| {
                        invalid(
                            format!("auth.balance.{field}"),
                            "required by the jsonrpc provider",
                        )
                    })
                };
                let url = need(b.url, "url")?;
                let token = need(b.token, "token")?;
                let token = parse_address(&token)
                    .map_err(|e| invalid("auth.balance.token", e.to_string()))?;
                let holder_min = need(b.holder_min, "holder_min")?;
                let whale_min = need(b.whale_min, "whale_min")?;
                BalanceProvider::JsonRpc(
                    JsonRpcTiers::new(&url, token, &holder_min, &whale_min, ladder)
                        .map_err(|e| invalid("auth.balance", e.to_string()))?,
                )
            }
            other => {
                return Err(invalid(
                    "auth.balance.provider",
                    format!("{other:?} is not none, static or jsonrpc"),
                ))
            }
        },
    };
    Ok(AuthSetup {
        verifier,
        minter,
        wallet_signin: file.wallet_signin.unwrap_or(true),
        wallet_domain: file.wallet_domain,
        balance,
    })
}

impl Config {
    /// Loads the configuration: defaults < TOML file < environment < flags.
    pub fn load(overrides: &Overrides, env: &(impl Env + ?Sized)) -> Result<Config, ConfigError> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => ConfigFile::default(),
        };
        Config::resolve(file, overrides, env)
    }

    /// Combines an already-parsed file with the environment and flags, and validates.
    pub fn resolve(
        file: ConfigFile,
        overrides: &Overrides,
        env: &(impl Env + ?Sized),
    ) -> Result<Config, ConfigError> {
        let (listen_text, listen_field) = match (
            &overrides.listen,
            env_nonempty(env, "SIGNALHUB_LISTEN"),
            &file.listen,
        ) {
            (Some(flag), _, _) => (flag.clone(), "--listen"),
            (None, Some(var), _) => (var, "SIGNALHUB_LISTEN"),
            (None, None, Some(toml)) => (toml.clone(), "listen"),
            (None, None, None) => ("127.0.0.1:8080".to_string(), "listen"),
        };
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                listen_field,
                format!("{listen_text:?} is not host:port (an IP address and a port)"),
            )
        })?;

        let log = env_nonempty(env, "SIGNALHUB_LOG")
            .or(file.log)
            .unwrap_or_else(|| "info".to_string());
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|e| invalid("SIGNALHUB_LOG", e.to_string()))?;

        let store = match env_nonempty(env, "SIGNALHUB_STORE") {
            Some(v) => parse_store(&v, "SIGNALHUB_STORE")?,
            None => parse_store(
                file.store.as_deref().unwrap_or("sqlite:signalhub.db"),
                "store",
            )?,
        };

        let (broker, broker_field) = match env_nonempty(env, "SIGNALHUB_BROKER") {
            Some(v) => (v, "SIGNALHUB_BROKER"),
            None => (file.broker.unwrap_or_else(|| "memory".into()), "broker"),
        };
        if broker != "memory" {
            return Err(invalid(
                broker_field,
                format!("{broker:?} is not supported by this build; use memory"),
            ));
        }

        let jwt_secret = env_nonempty(env, "SIGNALHUB_JWT_SECRET").or(file.jwt_secret);
        if let Some(secret) = &jwt_secret {
            if secret.len() < 16 {
                return Err(invalid("SIGNALHUB_JWT_SECRET", "must be at least 16 bytes"));
            }
        }

        let allowed_origins = match env.var("SIGNALHUB_ALLOWED_ORIGINS") {
            Some(v) => comma_list(&v),
            None => file.allowed_origins.unwrap_or_default(),
        };
        let allowed_origins = if allowed_origins.iter().any(|o| o == "*") {
            Vec::new()
        } else {
            allowed_origins
        };

        let flag_key = overrides.api_key.as_deref().map(str::trim);
        let (mut api_keys, keys_field) = match (flag_key, env_nonempty(env, "SIGNALHUB_API_KEYS")) {
            (Some(key), _) => (
                vec![ApiKey {
                    key: key.to_string(),
                    role: Role::Publisher,
                }],
                "--api-key",
            ),
            (None, Some(v)) => (
                parse_api_keys(&v, "SIGNALHUB_API_KEYS")?,
                "SIGNALHUB_API_KEYS",
            ),
            (None, None) => (file.api_keys.unwrap_or_default(), "api_keys"),
        };
        for key in &api_keys {
            if key.key.len() < 8 {
                return Err(invalid(
                    keys_field,
                    "each key must be at least 8 characters",
                ));
            }
        }
        let generated_key = api_keys.is_empty();
        if generated_key {
            api_keys.push(ApiKey {
                key: format!("shk_{}", signalhub_hub::ids::random_token(32)),
                role: Role::Publisher,
            });
        }

        let mut limits = file.limits;
        parse_limit(
            env,
            "SIGNALHUB_MAX_MESSAGE_BYTES",
            &mut limits.max_message_bytes,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_MAX_SUBSCRIPTIONS",
            &mut limits.max_subscriptions,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_CLIENT_FRAMES_PER_SECOND",
            &mut limits.client_frames_per_second,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_CLIENT_FRAMES_BURST",
            &mut limits.client_frames_burst,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_MAX_CHANNELS_PER_FRAME",
            &mut limits.max_channels_per_frame,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_CHANNEL_OPS_PER_SECOND",
            &mut limits.channel_ops_per_second,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_CHANNEL_OPS_BURST",
            &mut limits.channel_ops_burst,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_CONNECTIONS_PER_IP",
            &mut limits.connections_per_ip,
        )?;
        parse_limit(env, "SIGNALHUB_IDLE_TIMEOUT_S", &mut limits.idle_timeout_s)?;
        parse_limit(
            env,
            "SIGNALHUB_PING_INTERVAL_S",
            &mut limits.ping_interval_s,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_MAX_QUEUE_BYTES",
            &mut limits.max_queue_bytes,
        )?;
        parse_limit(env, "SIGNALHUB_MAX_BODY_BYTES", &mut limits.max_body_bytes)?;
        parse_limit(env, "SIGNALHUB_POLL_TIMEOUT_S", &mut limits.poll_timeout_s)?;
        parse_limit(
            env,
            "SIGNALHUB_BODY_READ_TIMEOUT_S",
            &mut limits.body_read_timeout_s,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_HTTP_IDLE_TIMEOUT_S",
            &mut limits.http_idle_timeout_s,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_HTTP_CONNECTIONS_PER_IP",
            &mut limits.http_connections_per_ip,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_PUBLISHES_PER_KEY_PER_SECOND",
            &mut limits.publishes_per_key_per_second,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_PUBLISHES_PER_KEY_BURST",
            &mut limits.publishes_per_key_burst,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_WS_CONNECTS_PER_IP_PER_SECOND",
            &mut limits.ws_connects_per_ip_per_second,
        )?;
        parse_limit(
            env,
            "SIGNALHUB_WS_CONNECTS_PER_IP_BURST",
            &mut limits.ws_connects_per_ip_burst,
        )?;
        let positive: [(&str, usize); 18] = [
            ("limits.max_message_bytes", limits.max_message_bytes),
            ("limits.max_subscriptions", limits.max_subscriptions),
            (
                "limits.client_frames_per_second",
                limits.client_frames_per_second as usize,
            ),
            (
                "limits.client_frames_burst",
                limits.client_frames_burst as usize,
            ),
            (
                "limits.max_channels_per_frame",
                limits.max_channels_per_frame,
            ),
            (
                "limits.channel_ops_per_second",
                limits.channel_ops_per_second as usize,
            ),
            (
                "limits.channel_ops_burst",
                limits.channel_ops_burst as usize,
            ),
            ("limits.connections_per_ip", limits.connections_per_ip),
            ("limits.ping_interval_s", limits.ping_interval_s as usize),
            ("limits.max_queue_bytes", limits.max_queue_bytes),
            ("limits.max_body_bytes", limits.max_body_bytes),
            (
                "limits.body_read_timeout_s",
                limits.body_read_timeout_s as usize,
            ),
            (
                "limits.http_idle_timeout_s",
                limits.http_idle_timeout_s as usize,
            ),
            (
                "limits.http_connections_per_ip",
                limits.http_connections_per_ip,
            ),
            (
                "limits.publishes_per_key_per_second",
                limits.publishes_per_key_per_second as usize,
            ),
            (
                "limits.publishes_per_key_burst",
                limits.publishes_per_key_burst as usize,
            ),
            (
                "limits.ws_connects_per_ip_per_second",
                limits.ws_connects_per_ip_per_second as usize,
            ),
            (
                "limits.ws_connects_per_ip_burst",
                limits.ws_connects_per_ip_burst as usize,
            ),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if (limits.channel_ops_burst as usize) < limits.max_channels_per_frame {
            // A frame naming the most channels allowed could never be admitted.
            return Err(invalid(
                "limits.channel_ops_burst",
                "must be at least limits.max_channels_per_frame",
            ));
        }
        if limits.idle_timeout_s <= limits.ping_interval_s {
            return Err(invalid(
                "limits.idle_timeout_s",
                "must be longer than limits.ping_interval_s",
            ));
        }
        if limits.poll_timeout_s == 0 || limits.poll_timeout_s > 120 {
            return Err(invalid("limits.poll_timeout_s", "must be within 1..120"));
        }
        if limits.max_message_bytes > 16 << 20 {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be at most 16 MiB",
            ));
        }

        let aliases: Vec<(String, String)> = file.tiers.aliases.into_iter().collect();
        let ladder = TierLadder::new(&file.tiers.ladder, &aliases)
            .map_err(|e| invalid("tiers", e.to_string()))?;

        let file_signals = file.signals;
        check_confidence(
            file_signals.premium_min_confidence,
            "signals.premium_min_confidence",
        )?;
        check_confidence(
            file_signals.whale_min_confidence,
            "signals.whale_min_confidence",
        )?;
        check_confidence(file_signals.high_confidence, "signals.high_confidence")?;
        if file_signals.whale_min_confidence < file_signals.premium_min_confidence {
            return Err(invalid(
                "signals.whale_min_confidence",
                "must not be below signals.premium_min_confidence",
            ));
        }
        let signals = SignalRules {
            premium_min_confidence: file_signals.premium_min_confidence,
            whale_min_confidence: file_signals.whale_min_confidence,
            high_confidence: file_signals.high_confidence,
            extra_signal_types: file_signals.extra_types,
        };
        signals
            .validate()
            .map_err(|e| invalid(format!("signals.{}", e.field), e.message))?;

        let rules = match env_nonempty(env, "SIGNALHUB_CHANNEL_RULES") {
            Some(v) => build_rules(
                Some(parse_rules_env(&v)),
                &ladder,
                "SIGNALHUB_CHANNEL_RULES",
            )?,
            None => build_rules(file.channels, &ladder, "channels")?,
        };

        let history = HistoryLimits {
            size: file.history.size,
            ttl_ms: file.history.ttl_s.saturating_mul(1000),
        };
        if history.size > 100_000 {
            return Err(invalid("history.size", "must be at most 100000"));
        }
        let mut history_rules = Vec::new();
        for (i, rule) in file.history.rules.iter().enumerate() {
            let glob = Glob::parse(&rule.pattern)
                .map_err(|m| invalid(format!("history.rules[{i}].pattern"), m))?;
            let limits = HistoryLimits {
                size: rule.size.unwrap_or(history.size),
                ttl_ms: rule
                    .ttl_s
                    .map_or(history.ttl_ms, |s| s.saturating_mul(1000)),
            };
            if limits.size > 100_000 {
                return Err(invalid(
                    format!("history.rules[{i}].size"),
                    "must be at most 100000",
                ));
            }
            history_rules.push((glob, limits));
        }
        let mut latest_value = Vec::new();
        for (i, pattern) in file.history.latest_value.iter().enumerate() {
            latest_value.push(
                Glob::parse(pattern)
                    .map_err(|m| invalid(format!("history.latest_value[{i}]"), m))?,
            );
        }

        let mut auth_file = file.auth;
        if let Some(v) = env_nonempty(env, "SIGNALHUB_WALLET_DOMAIN") {
            auth_file.wallet_domain = Some(v);
        }
        if let Some(v) = env_nonempty(env, "SIGNALHUB_WALLET_SIGNIN") {
            auth_file.wallet_signin = Some(parse_bool(&v, "SIGNALHUB_WALLET_SIGNIN")?);
        }
        if let Some(domain) = &auth_file.wallet_domain {
            if domain.trim().is_empty() || domain.contains(char::is_whitespace) {
                return Err(invalid(
                    "auth.wallet_domain",
                    "must be a host name (with an optional :port), as sign-in messages name it",
                ));
            }
        }
        // Without a configured domain the request's Host header would be trusted, and a
        // phishing site's signature would sign in here: only on loopback (issue #10 item 3).
        if auth_file.wallet_signin.unwrap_or(true)
            && auth_file.wallet_domain.is_none()
            && !listen.ip().is_loopback()
        {
            return Err(invalid(
                "auth.wallet_domain",
                format!(
                    "wallet sign-in on a non-loopback address ({listen}) needs the domain its \
                     messages must name: set auth.wallet_domain or SIGNALHUB_WALLET_DOMAIN \
                     (e.g. app.example.com), or turn wallet sign-in off with \
                     auth.wallet_signin = false or SIGNALHUB_WALLET_SIGNIN=false"
                ),
            ));
        }
        let auth = Arc::new(build_auth(auth_file, jwt_secret.as_deref(), &ladder)?);

        let io_uring = match env_nonempty(env, "SIGNALHUB_IO_URING") {
            Some(v) => parse_bool(&v, "SIGNALHUB_IO_URING")?,
            None => file.io_uring.unwrap_or(false),
        };

        let hub = HubConfig {
            ladder,
            max_queue_bytes: limits.max_queue_bytes,
            history,
            history_rules,
            latest_value,
            ..HubConfig::default()
        };
        let trusted_proxies = match env_nonempty(env, "SIGNALHUB_TRUSTED_PROXIES") {
            Some(v) => TrustedProxies::parse_list(v.split(','))
                .map_err(|e| invalid("SIGNALHUB_TRUSTED_PROXIES", e))?,
            None => TrustedProxies::parse_list(
                file.trusted_proxies.iter().flatten().map(String::as_str),
            )
            .map_err(|e| invalid("trusted_proxies", e))?,
        };
        signalhub_feeds::validate_feeds(&file.feeds).map_err(|e| invalid(e.field, e.message))?;
        Ok(Config {
            listen,
            log,
            store,
            jwt_secret,
            allowed_origins,
            trusted_proxies: Arc::new(trusted_proxies),
            api_keys,
            generated_key,
            dedup_window_s: file.dedup_window_s.unwrap_or(300),
            io_uring,
            limits,
            signals,
            rules,
            hub,
            auth,
            feeds: file.feeds,
        })
    }

    /// Defaults for tests and embedding: no file, no environment.
    pub fn for_tests() -> Config {
        let env: [(&str, &str); 1] = [(
            "SIGNALHUB_API_KEYS",
            "test-publisher-key:publisher,test-admin-key:admin",
        )];
        Config::resolve(ConfigFile::default(), &Overrides::default(), &env[..])
            .expect("test defaults are valid")
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
