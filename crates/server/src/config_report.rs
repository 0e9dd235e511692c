//! What `signalhub config check` prints: the resolved configuration as TOML, without secrets.
//!
//! Every value is the one the server would run with after defaults, the file, the environment
//! and flags. API keys appear as counts by role, the JWT secret as `set`/`unset`, HS256 keys
//! by their source, a PostgreSQL password and a JSON-RPC URL's path and query not at all.
//! Optional settings that are unset are left out.

use serde::Serialize;
use signalhub_hub::channel::Glob;
use signalhub_hub::history::HistoryLimits;
use signalhub_hub::rules::Access;

use crate::auth::BalanceProvider;
use crate::config::{Config, Limits, Role, StoreUrl};
use crate::keyfile;

#[derive(Serialize)]
struct Report<'a> {
    listen: String,
    log: &'a str,
    store: String,
    broker: &'a str,
    jwt_secret: &'a str,
    /// Empty: any origin.
    allowed_origins: &'a [String],
    /// Empty: forwarding headers are never believed.
    trusted_proxies: Vec<String>,
    dedup_window_s: u64,
    io_uring: bool,
    api_keys: ApiKeys,
    limits: &'a Limits,
    tiers: Tiers<'a>,
    signals: Signals<'a>,
    channels: Vec<Channel>,
    history: History,
    auth: Auth<'a>,
    /// `[[feeds]]` as configured, with defaults filled in (URLs of public market data).
    feeds: &'a [signalhub_feeds::FeedConfig],
}

#[derive(Serialize)]
struct ApiKeys {
    publisher: usize,
    admin: usize,
    /// True when none was configured and the server generates one.
    generated: bool,
    /// Where a generated key is kept across restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<String>,
}

#[derive(Serialize)]
struct Tiers<'a> {
    ladder: Vec<&'a str>,
    aliases: std::collections::BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct Signals<'a> {
    premium_min_confidence: f64,
    whale_min_confidence: f64,
    high_confidence: f64,
    extra_types: &'a [String],
}

#[derive(Serialize)]
struct Channel {
    pattern: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<&'static str>,
}

#[derive(Serialize)]
struct History {
    size: usize,
    ttl_s: u64,
    latest_value: Vec<String>,
    rules: Vec<HistoryRule>,
}

#[derive(Serialize)]
struct HistoryRule {
    pattern: String,
    size: usize,
    ttl_s: u64,
}

#[derive(Serialize)]
struct Auth<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
    leeway_s: u64,
    wallet_signin: bool,
    /// Unset: the request's `Host` (loopback only).
    #[serde(skip_serializing_if = "Option::is_none")]
    wallet_domain: Option<&'a str>,
    keys: Vec<Key<'a>>,
    balance: Balance,
}

#[derive(Serialize)]
struct Key<'a> {
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
    source: &'static str,
}

#[derive(Serialize)]
struct Balance {
    provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    wallets: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    holder_min: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    whale_min: Option<String>,
}

fn glob(g: &Glob) -> String {
    match g {
        Glob::Exact(name) => name.clone(),
        Glob::Prefix(prefix) => format!("{prefix}*"),
    }
}

fn seconds(limits: &HistoryLimits) -> u64 {
    limits.ttl_ms / 1000
}

/// `store` without a password: the URL's userinfo password and any `password=` parameter.
fn store_text(store: &StoreUrl) -> String {
    match store {
        StoreUrl::Sqlite(path) => format!("sqlite:{path}"),
        StoreUrl::Postgres(url) => redact_postgres(url),
    }
}

fn redact_postgres(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match authority_path.find('/') {
        Some(i) => authority_path.split_at(i),
        None => (authority_path, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

fn balance(provider: &BalanceProvider) -> Balance {
    let mut b = Balance {
        provider: "none",
        wallets: None,
        url: None,
        token: None,
        holder_min: None,
        whale_min: None,
    };
    match provider {
        BalanceProvider::None => {}
        BalanceProvider::Static(list) => {
            b.provider = "static";
            b.wallets = Some(list.len());
        }
        BalanceProvider::JsonRpc(rpc) => {
            let (holder, whale) = rpc.thresholds();
            b.provider = "jsonrpc";
            b.url = Some(format!("{}/...", rpc.origin()));
            b.token = Some(rpc.token());
            b.holder_min = Some(holder);
            b.whale_min = Some(whale);
        }
    }
    b
}

/// The report `signalhub config check` prints for `config`: TOML, two comment lines first.
pub fn render(config: &Config) -> String {
    let ladder = &config.hub.ladder;
    let count = |role: Role| config.api_keys.iter().filter(|k| k.role == role).count();
    let key_file = if config.generated_key {
        keyfile::path_for(&config.store).map(|p| p.display().to_string())
    } else {
        None
    };
    let channels = config
        .rules
        .rules()
        .iter()
        .map(|rule| {
            let (min_tier, access) = match rule.access() {
                Access::MinTier(tier) => (Some(ladder.name(tier).to_string()), None),
                Access::Owner => (None, Some("owner")),
                Access::Open => (None, Some("open")),
            };
            Channel {
                pattern: rule.pattern(),
                min_tier,
                access,
            }
        })
        .collect();
    let history = &config.hub.history;
    let rules = config
        .hub
        .history_rules
        .iter()
        .map(|(g, limits)| HistoryRule {
            pattern: glob(g),
            size: limits.size,
            ttl_s: seconds(limits),
        })
        .collect();
    let auth = &config.auth;
    let token_rules = auth.verifier.rules();
    let keys = auth
        .verifier
        .keys()
        .into_iter()
        .enumerate()
        .map(|(i, (alg, kid, ephemeral))| Key {
            alg: alg.as_str(),
            kid,
            // SIGNALHUB_JWT_SECRET (or jwt_secret), when set, is always the first key.
            source: if ephemeral {
                "per-process wallet key"
            } else if i == 0 && config.jwt_secret.is_some() {
                "jwt_secret"
            } else {
                "auth.keys"
            },
        })
        .collect();
    let report = Report {
        listen: config.listen.to_string(),
        log: &config.log,
        store: store_text(&config.store),
        broker: "memory",
        jwt_secret: if config.jwt_secret.is_some() {
            "set"
        } else {
            "unset"
        },
        allowed_origins: &config.allowed_origins,
        trusted_proxies: config.trusted_proxies.ranges().collect(),
        dedup_window_s: config.dedup_window_s,
        io_uring: config.io_uring,
        api_keys: ApiKeys {
            publisher: count(Role::Publisher),
            admin: count(Role::Admin),
            generated: config.generated_key,
            key_file,
        },
        limits: &config.limits,
        tiers: Tiers {
            ladder: ladder.names().collect(),
            aliases: ladder.aliases().into_iter().collect(),
        },
        signals: Signals {
            premium_min_confidence: config.signals.premium_min_confidence,
            whale_min_confidence: config.signals.whale_min_confidence,
            high_confidence: config.signals.high_confidence,
            extra_types: &config.signals.extra_signal_types,
        },
        channels,
        history: History {
            size: history.size,
            ttl_s: seconds(history),
            latest_value: config.hub.latest_value.iter().map(glob).collect(),
            rules,
        },
        auth: Auth {
            audience: token_rules.audience.as_deref(),
            issuer: token_rules.issuer.as_deref(),
            leeway_s: token_rules.leeway_s,
            wallet_signin: auth.wallet_signin,
            wallet_domain: auth.wallet_domain.as_deref(),
            keys,
            balance: balance(&auth.balance),
        },
        feeds: &config.feeds,
    };
    let body = toml::to_string(&report).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    format!(
        "# signalhub config check: the configuration is valid and resolves to this.\n\
         # Secrets are not shown; unset optional settings are left out.\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_password_is_not_shown() {
        assert_eq!(
            redact_postgres("postgres://app:s3cret@db:5432/signals?sslmode=require&password=x"),
            "postgres://app:***@db:5432/signals?sslmode=require&password=***"
        );
        assert_eq!(
            redact_postgres("postgresql://app@db/signals"),
            "postgresql://app@db/signals"
        );
    }

    #[test]
    fn the_report_is_toml_without_the_keys_or_the_secret() {
        let env = [
            ("SIGNALHUB_API_KEYS", "secret-publisher-key:publisher"),
            ("SIGNALHUB_JWT_SECRET", "secret-jwt-secret-0123456789"),
        ];
        let config = Config::resolve(
            crate::config::ConfigFile::default(),
            &crate::config::Overrides::default(),
            &env[..],
        )
        .unwrap();
        let text = render(&config);
        assert!(!text.contains("secret-"), "{text}");
        assert!(text.contains("trusted_proxies = []"), "{text}");
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["jwt_secret"].as_str(), Some("set"));
        assert_eq!(parsed["api_keys"]["publisher"].as_integer(), Some(1));
        assert_eq!(
            parsed["limits"]["max_message_bytes"].as_integer(),
            Some(65536)
        );
        assert_eq!(
            parsed["auth"]["keys"][0]["source"].as_str(),
            Some("jwt_secret")
        );
    }
}
