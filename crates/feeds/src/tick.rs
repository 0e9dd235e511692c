//! What a feed hands to its sink: normalized [`Tick`]s and [`Status`] changes.
//!
//! A tick is exchange-neutral: canonical product name, exact decimal prices, the exchange's
//! event time in RFC 3339 UTC milliseconds. [`Tick::to_json`] writes the `data` object of a
//! `price_update` publication (spec items 39 and 58) with the prices as JSON numbers that keep
//! the exchange's digits, which `serde_json::Value` could not do without going through `f64`.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::Serialize;

use crate::config::Exchange;
use crate::decimal::Decimal;

/// One ticker message, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The feed's configured name.
    pub feed: Arc<str>,
    /// Canonical product, e.g. `BTC-USD`.
    pub product: String,
    /// Last trade price.
    pub price: Decimal,
    /// Best bid, when the message carries it.
    pub bid: Option<Decimal>,
    /// Best ask, when the message carries it.
    pub ask: Option<Decimal>,
    /// 24-hour base volume, when the message carries it.
    pub volume_24h: Option<Decimal>,
    /// The connector that produced it.
    pub exchange: Exchange,
    /// The exchange's event time, RFC 3339 UTC with milliseconds (`2022-10-19T23:28:22.061Z`).
    pub exchange_time: String,
    /// The exchange's sequence number (Coinbase `sequence`, the synthetic feed's counter).
    pub exchange_seq: Option<u64>,
}

impl Tick {
    /// The `data` object of the `price_update` publication, as compact JSON text:
    /// `{product, price, bid?, ask?, volume_24h?, exchange, exchange_time, exchange_seq?}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(192);
        out.push_str("{\"product\":");
        push_json_string(&mut out, &self.product);
        // Decimal text is a valid JSON number by construction, so it goes in unquoted.
        let _ = write!(out, ",\"price\":{}", self.price);
        for (key, value) in [
            ("bid", &self.bid),
            ("ask", &self.ask),
            ("volume_24h", &self.volume_24h),
        ] {
            if let Some(value) = value {
                let _ = write!(out, ",\"{key}\":{value}");
            }
        }
        let _ = write!(out, ",\"exchange\":\"{}\"", self.exchange.as_str());
        out.push_str(",\"exchange_time\":");
        push_json_string(&mut out, &self.exchange_time);
        if let Some(seq) = self.exchange_seq {
            let _ = write!(out, ",\"exchange_seq\":{seq}");
        }
        out.push('}');
        out
    }
}

fn push_json_string(out: &mut String, text: &str) {
    // serde_json escapes exactly as JSON requires; serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(text).expect("a string serializes"));
}

/// A feed's health (spec item 40). Before its first successful subscription a feed is
/// `reconnecting` too: it is trying to get a connection up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Subscribed, and messages arrive.
    Up,
    /// Subscribed, but nothing arrived for `stale_after_s`.
    Stale,
    /// Connecting, subscribing, or waiting to try again.
    Reconnecting,
}

impl Status {
    /// The wire name: `up`, `stale`, `reconnecting`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Stale => "stale",
            Status::Reconnecting => "reconnecting",
        }
    }
}

/// What a feed sends to its sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A price to publish as `price_update` on `price:{product}`.
    Tick(Tick),
    /// The feed's status changed; the server publishes `system_status` on `system`.
    Status {
        /// The feed's name.
        feed: Arc<str>,
        /// The new status.
        status: Status,
    },
}

/// Parses an RFC 3339 time with 0-9 fractional digits and normalizes it to UTC milliseconds
/// (truncating, so a time never moves into the future).
pub(crate) fn rfc3339_to_utc_millis(text: &str) -> Option<String> {
    let time = DateTime::parse_from_rfc3339(text).ok()?;
    Some(format_millis(time.with_timezone(&Utc)))
}

/// Formats Unix milliseconds (Binance `E`) as RFC 3339 UTC milliseconds.
pub(crate) fn unix_millis_to_utc(millis: i64) -> Option<String> {
    Utc.timestamp_millis_opt(millis).single().map(format_millis)
}

/// The current wall-clock time as RFC 3339 UTC milliseconds.
pub(crate) fn now_utc_millis() -> String {
    format_millis(Utc::now())
}

fn format_millis(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(price: &str) -> Tick {
        Tick {
            feed: "cb".into(),
            product: "BTC-USD".into(),
            price: Decimal::parse(price).unwrap(),
            bid: Some(Decimal::parse("64250.09").unwrap()),
            ask: None,
            volume_24h: Some(Decimal::parse("245532.79269678").unwrap()),
            exchange: Exchange::Coinbase,
            exchange_time: "2022-10-19T23:28:22.061Z".into(),
            exchange_seq: Some(37475248783),
        }
    }

    #[test]
    fn to_json_writes_prices_as_numbers_with_the_exchanges_digits() {
        assert_eq!(
            tick("64250.10").to_json(),
            r#"{"product":"BTC-USD","price":64250.10,"bid":64250.09,"volume_24h":245532.79269678,"exchange":"coinbase","exchange_time":"2022-10-19T23:28:22.061Z","exchange_seq":37475248783}"#
        );
    }

    #[test]
    fn to_json_keeps_a_twenty_digit_price() {
        let json = tick("12345678901234567890.12").to_json();
        assert!(
            json.contains(r#""price":12345678901234567890.12,"#),
            "{json}"
        );
        // And it is valid JSON.
        serde_json::from_str::<serde_json::Value>(&json).unwrap();
    }

    #[test]
    fn to_json_leaves_out_absent_optional_fields() {
        let mut t = tick("1.5");
        t.bid = None;
        t.volume_24h = None;
        t.exchange_seq = None;
        t.exchange = Exchange::Binance;
        assert_eq!(
            t.to_json(),
            r#"{"product":"BTC-USD","price":1.5,"exchange":"binance","exchange_time":"2022-10-19T23:28:22.061Z"}"#
        );
    }

    #[test]
    fn exchange_times_normalize_to_utc_milliseconds() {
        assert_eq!(
            rfc3339_to_utc_millis("2022-10-19T23:28:22.061769Z").unwrap(),
            "2022-10-19T23:28:22.061Z"
        );
        assert_eq!(
            rfc3339_to_utc_millis("2019-08-14T20:42:27.265Z").unwrap(),
            "2019-08-14T20:42:27.265Z"
        );
        assert_eq!(
            rfc3339_to_utc_millis("2023-02-09T22:30:37.167359596+02:00").unwrap(),
            "2023-02-09T20:30:37.167Z"
        );
        assert_eq!(
            rfc3339_to_utc_millis("2014-11-07T08:19:28Z").unwrap(),
            "2014-11-07T08:19:28.000Z"
        );
        assert!(rfc3339_to_utc_millis("yesterday").is_none());
        assert_eq!(
            unix_millis_to_utc(1672515782136).unwrap(),
            "2022-12-31T19:43:02.136Z"
        );
    }
}
