//! The `[[feeds]]` table of the TOML configuration (spec section 10), and its validation.
//!
//! Deserializing only checks shapes; [`validate_feeds`] checks meaning and names the offending
//! field with its path (`feeds[1].products[0]`), so the server can exit with code 2 naming it.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which connector a feed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exchange {
    /// Coinbase Exchange market data (`ticker` and `heartbeat` channels).
    Coinbase,
    /// Binance spot combined streams (`<symbol>@ticker`).
    Binance,
    /// A seeded random walk, no network.
    Synthetic,
}

impl Exchange {
    /// The name used in configuration, stats and tick `data.exchange`.
    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Coinbase => "coinbase",
            Exchange::Binance => "binance",
            Exchange::Synthetic => "synthetic",
        }
    }

    /// The URL used when `url` is absent (spec item 57: full URL for Coinbase, base URL for
    /// Binance); `None` for the synthetic feed, which connects nowhere.
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            Exchange::Coinbase => Some("wss://ws-feed.exchange.coinbase.com"),
            Exchange::Binance => Some("wss://stream.binance.com:9443"),
            Exchange::Synthetic => None,
        }
    }
}

/// Default `stale_after_s`: Coinbase heartbeats and Binance tickers both come every second.
pub const DEFAULT_STALE_AFTER_S: f64 = 5.0;
/// Default synthetic rate, as the demo uses (spec item 61).
pub const DEFAULT_TICKS_PER_S: u32 = 5;
/// Binance allows at most 1024 streams on one connection (reference section 3.1).
pub const BINANCE_MAX_STREAMS: usize = 1024;

/// One `[[feeds]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Unique; shown in `/ws/health`, `/api/v1/feeds` and on `system`.
    pub name: String,
    /// Which connector.
    pub exchange: Exchange,
    /// Full URL (Coinbase) or base URL (Binance); the exchange's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Canonical product names, e.g. `BTC-USD`.
    pub products: Vec<String>,
    /// Seconds of silence after which the feed is `stale` (fractions allowed).
    #[serde(default = "default_stale_after_s")]
    pub stale_after_s: f64,
    /// Synthetic only: the random walk's seed (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Synthetic only: ticks per second per product (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticks_per_s: Option<u32>,
}

fn default_stale_after_s() -> f64 {
    DEFAULT_STALE_AFTER_S
}

impl FeedConfig {
    /// A config with the defaults for everything but the required fields.
    pub fn new(name: &str, exchange: Exchange, products: &[&str]) -> Self {
        FeedConfig {
            name: name.to_string(),
            exchange,
            url: None,
            products: products.iter().map(|p| p.to_string()).collect(),
            stale_after_s: DEFAULT_STALE_AFTER_S,
            seed: None,
            ticks_per_s: None,
        }
    }

    /// `stale_after_s` as a duration (only meaningful after validation).
    pub fn stale_after(&self) -> Duration {
        Duration::from_secs_f64(self.stale_after_s)
    }

    /// The URL the connector uses: `url` or the exchange's default.
    pub fn effective_url(&self) -> Option<&str> {
        self.url.as_deref().or(self.exchange.default_url())
    }

    /// Checks this entry alone; `path` prefixes field names (`feeds[0]`).
    pub fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("{path}.{name}");
        if !valid_name(&self.name) {
            return Err(ConfigError::new(
                field("name"),
                "must be 1-64 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        match (self.exchange, &self.url) {
            (Exchange::Synthetic, Some(_)) => {
                return Err(ConfigError::new(
                    field("url"),
                    "a synthetic feed connects nowhere; remove url",
                ))
            }
            (_, Some(url)) if !(url.starts_with("ws://") || url.starts_with("wss://")) => {
                return Err(ConfigError::new(
                    field("url"),
                    "must start with ws:// or wss://",
                ))
            }
            (_, Some(url)) if url.len() <= "wss://".len() || url.contains(char::is_whitespace) => {
                return Err(ConfigError::new(field("url"), "is not a WebSocket URL"))
            }
            _ => {}
        }
        if self.exchange != Exchange::Synthetic {
            if self.seed.is_some() {
                return Err(ConfigError::new(
                    field("seed"),
                    "only for exchange synthetic",
                ));
            }
            if self.ticks_per_s.is_some() {
                return Err(ConfigError::new(
                    field("ticks_per_s"),
                    "only for exchange synthetic",
                ));
            }
        }
        if let Some(rate) = self.ticks_per_s {
            if !(1..=1000).contains(&rate) {
                return Err(ConfigError::new(field("ticks_per_s"), "must be 1..1000"));
            }
        }
        if self.products.is_empty() {
            return Err(ConfigError::new(
                field("products"),
                "needs at least one product",
            ));
        }
        if self.exchange == Exchange::Binance && self.products.len() > BINANCE_MAX_STREAMS {
            return Err(ConfigError::new(
                field("products"),
                "Binance allows at most 1024 streams per connection",
            ));
        }
        let mut seen = HashSet::new();
        for (i, product) in self.products.iter().enumerate() {
            let at = format!("{path}.products[{i}]");
            // Coinbase and Binance products are BASE-QUOTE; the synthetic feed also takes the
            // FX-style BASE_QUOTE the demo uses (EUR_USD).
            let separators: &[char] = match self.exchange {
                Exchange::Synthetic => &['-', '_'],
                _ => &['-'],
            };
            if !valid_product(product, separators) {
                let expected = if separators.len() == 2 {
                    "BASE-QUOTE or BASE_QUOTE"
                } else {
                    "BASE-QUOTE"
                };
                return Err(ConfigError::new(
                    at,
                    format!("must be {expected} in upper case, e.g. BTC-USD"),
                ));
            }
            if !seen.insert(product.as_str()) {
                return Err(ConfigError::new(at, "repeats an earlier product"));
            }
        }
        if !(self.stale_after_s.is_finite()
            && self.stale_after_s > 0.0
            && self.stale_after_s <= 3600.0)
        {
            return Err(ConfigError::new(
                field("stale_after_s"),
                "must be more than 0 and at most 3600",
            ));
        }
        Ok(())
    }
}

/// Checks every entry and that names are unique; errors name `feeds[i].field`.
pub fn validate_feeds(feeds: &[FeedConfig]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (i, feed) in feeds.iter().enumerate() {
        let path = format!("feeds[{i}]");
        feed.validate_at(&path)?;
        if !names.insert(feed.name.as_str()) {
            return Err(ConfigError::new(
                format!("{path}.name"),
                format!("{:?} is already the name of another feed", feed.name),
            ));
        }
    }
    Ok(())
}

/// A configuration value that cannot be used; `field` is its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Path of the field, e.g. `feeds[0].stale_after_s`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(field: String, message: impl Into<String>) -> Self {
        ConfigError {
            field,
            message: message.into(),
        }
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_product(product: &str, separators: &[char]) -> bool {
    let Some((base, quote)) = product.split_once(separators) else {
        return false;
    };
    let part_ok = |s: &str| {
        (1..=20).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    part_ok(base) && part_ok(quote)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The crate does not depend on `toml`; JSON exercises the same serde derive.
    #[derive(Deserialize)]
    struct FileOf {
        feeds: Vec<FeedConfig>,
    }

    fn parse(json: &str) -> Vec<FeedConfig> {
        serde_json::from_str::<FileOf>(json).unwrap().feeds
    }

    #[test]
    fn defaults_fill_url_and_stale_after() {
        let feeds = parse(
            r#"{"feeds":[{"name":"coinbase","exchange":"coinbase","products":["BTC-USD"]}]}"#,
        );
        assert_eq!(feeds[0].stale_after_s, 5.0);
        assert_eq!(
            feeds[0].effective_url(),
            Some("wss://ws-feed.exchange.coinbase.com")
        );
        validate_feeds(&feeds).unwrap();
    }

    #[test]
    fn unknown_exchange_and_unknown_field_are_refused_when_reading() {
        let bad = r#"{"feeds":[{"name":"k","exchange":"kraken","products":["BTC-USD"]}]}"#;
        assert!(serde_json::from_str::<FileOf>(bad).is_err());
        let extra =
            r#"{"feeds":[{"name":"k","exchange":"coinbase","products":["BTC-USD"],"colour":1}]}"#;
        let err = serde_json::from_str::<FileOf>(extra)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn validation_errors_name_the_field() {
        let ok = FeedConfig::new("cb", Exchange::Coinbase, &["BTC-USD"]);
        let cases: Vec<(FeedConfig, &str)> = vec![
            (
                FeedConfig {
                    name: String::new(),
                    ..ok.clone()
                },
                "feeds[0].name",
            ),
            (
                FeedConfig {
                    url: Some("http://x".into()),
                    ..ok.clone()
                },
                "feeds[0].url",
            ),
            (
                FeedConfig {
                    products: vec![],
                    ..ok.clone()
                },
                "feeds[0].products",
            ),
            (
                FeedConfig {
                    products: vec!["BTC-USD".into(), "btc-usd".into()],
                    ..ok.clone()
                },
                "feeds[0].products[1]",
            ),
            (
                FeedConfig {
                    products: vec!["BTC-USD".into(), "BTC-USD".into()],
                    ..ok.clone()
                },
                "feeds[0].products[1]",
            ),
            (
                FeedConfig {
                    products: vec!["EUR_USD".into()],
                    ..ok.clone()
                },
                "feeds[0].products[0]",
            ),
            (
                FeedConfig {
                    stale_after_s: 0.0,
                    ..ok.clone()
                },
                "feeds[0].stale_after_s",
            ),
            (
                FeedConfig {
                    stale_after_s: f64::NAN,
                    ..ok.clone()
                },
                "feeds[0].stale_after_s",
            ),
            (
                FeedConfig {
                    seed: Some(3),
                    ..ok.clone()
                },
                "feeds[0].seed",
            ),
            (
                FeedConfig {
                    exchange: Exchange::Synthetic,
                    url: Some("ws://127.0.0.1:1".into()),
                    ..ok.clone()
                },
                "feeds[0].url",
            ),
            (
                FeedConfig {
                    exchange: Exchange::Synthetic,
                    ticks_per_s: Some(0),
                    ..ok.clone()
                },
                "feeds[0].ticks_per_s",
            ),
        ];
        for (config, field) in cases {
            let err = validate_feeds(std::slice::from_ref(&config)).unwrap_err();
            assert_eq!(err.field, field, "{config:?}: {err}");
        }
    }

    #[test]
    fn duplicate_feed_names_are_refused_at_the_second() {
        let a = FeedConfig::new("demo", Exchange::Synthetic, &["BTC-USD"]);
        let err = validate_feeds(&[a.clone(), a]).unwrap_err();
        assert_eq!(err.field, "feeds[1].name");
    }

    #[test]
    fn synthetic_accepts_fx_style_products() {
        let demo = FeedConfig::new(
            "demo",
            Exchange::Synthetic,
            &["BTC-USD", "ETH-USD", "SOL-USD", "EUR_USD"],
        );
        validate_feeds(&[demo]).unwrap();
    }
}
