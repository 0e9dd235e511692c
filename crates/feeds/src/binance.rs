//! Binance spot market streams: `<symbol>@ticker` (24hrTicker) over one combined-stream
//! connection (reference section 3, spec item 57).
//!
//! `url` is the base URL; the connector appends `/stream?streams=a@ticker/b@ticker`, so the
//! open connection is the acknowledgement. Streams that would make the URL long go in
//! `SUBSCRIBE` messages instead, spaced by the outbound limiter because Binance closes a
//! connection that receives more than 5 messages a second; the feed counts as subscribed once
//! every one of them was answered with `{"result":null,"id":N}`. Products map by joining base
//! and quote in lower case (`BTC-USDT` <-> `btcusdt`); Binance tickers carry no sequence, so
//! the event time `E` per symbol is the number that must not go backwards.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::{Exchange, FeedConfig};
use crate::connector::{Inbound, Opened, WsProtocol};
use crate::decimal::Decimal;
use crate::tick::{unix_millis_to_utc, Tick};

/// Longest stream list put in the URL; request lines beyond a few KiB are refused by many
/// HTTP front ends, and Binance documents no figure.
pub const URL_STREAMS_BUDGET: usize = 2000;
/// Streams per `SUBSCRIBE` message for the rest.
pub const STREAMS_PER_SUBSCRIBE: usize = 100;

/// The Binance symbol of a canonical product: `BTC-USDT` -> `btcusdt`.
pub fn symbol_of(product: &str) -> String {
    product.replace('-', "").to_ascii_lowercase()
}

/// The Binance spot connector.
pub(crate) struct BinanceProtocol {
    base_url: String,
    feed: Arc<str>,
    /// Streams in the URL.
    url_streams: Vec<String>,
    /// Streams sent in `SUBSCRIBE` messages.
    message_streams: Vec<String>,
    /// Upper-case symbol (as in payloads) -> canonical product.
    products: HashMap<String, String>,
    /// `SUBSCRIBE` ids not answered yet on this connection.
    pending: HashSet<u64>,
}

impl BinanceProtocol {
    pub fn new(config: &FeedConfig, feed: Arc<str>) -> Self {
        let base_url = config
            .effective_url()
            .expect("binance has a default URL")
            .trim_end_matches('/')
            .to_string();
        let mut url_streams = Vec::new();
        let mut message_streams = Vec::new();
        let mut used = 0;
        let mut products = HashMap::new();
        for product in &config.products {
            let symbol = symbol_of(product);
            let stream = format!("{symbol}@ticker");
            products.insert(symbol.to_ascii_uppercase(), product.clone());
            // The first stream always goes in the URL: a combined stream needs one.
            if url_streams.is_empty()
                || (message_streams.is_empty() && used + stream.len() < URL_STREAMS_BUDGET)
            {
                used += stream.len() + 1;
                url_streams.push(stream);
            } else {
                message_streams.push(stream);
            }
        }
        BinanceProtocol {
            base_url,
            feed,
            url_streams,
            message_streams,
            products,
            pending: HashSet::new(),
        }
    }

    fn ticker(&self, data: &RawValue) -> Option<Inbound> {
        let t: Ticker<'_> = serde_json::from_str(data.get()).ok()?;
        let product = self.products.get(t.s)?;
        let optional = |v: Option<&str>| v.map(Decimal::parse).transpose().ok();
        let tick = Tick {
            feed: self.feed.clone(),
            product: product.clone(),
            price: Decimal::parse(t.c).ok()?,
            bid: optional(t.b)?,
            ask: optional(t.a)?,
            volume_24h: optional(t.v)?,
            exchange: Exchange::Binance,
            exchange_time: unix_millis_to_utc(t.event_time)?,
            exchange_seq: None,
        };
        Some(Inbound::Tick {
            order: u64::try_from(t.event_time).ok(),
            tick,
        })
    }
}

/// A combined-stream frame, a control answer, or an error; only the fields used.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(default, borrow)]
    stream: Option<&'a str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    msg: Option<String>,
    /// A raw (not combined) event, e.g. `serverShutdown`.
    #[serde(default, borrow)]
    e: Option<&'a str>,
}

#[derive(Deserialize)]
struct EventType<'a> {
    #[serde(default, borrow)]
    e: Option<&'a str>,
}

#[derive(Deserialize)]
struct Ticker<'a> {
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(borrow)]
    s: &'a str,
    #[serde(borrow)]
    c: &'a str,
    #[serde(default, borrow)]
    b: Option<&'a str>,
    #[serde(default, borrow)]
    a: Option<&'a str>,
    #[serde(default, borrow)]
    v: Option<&'a str>,
}

impl WsProtocol for BinanceProtocol {
    fn url(&self) -> String {
        format!(
            "{}/stream?streams={}",
            self.base_url,
            self.url_streams.join("/")
        )
    }

    fn on_open(&mut self) -> Opened {
        self.pending.clear();
        let mut frames = Vec::new();
        for (i, chunk) in self
            .message_streams
            .chunks(STREAMS_PER_SUBSCRIBE)
            .enumerate()
        {
            let id = i as u64 + 1;
            self.pending.insert(id);
            frames.push(
                serde_json::json!({"method": "SUBSCRIBE", "params": chunk, "id": id}).to_string(),
            );
        }
        Opened {
            subscribed: frames.is_empty(),
            frames,
        }
    }

    fn on_text(&mut self, text: &str) -> Inbound {
        let frame: Frame<'_> = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(feed = %self.feed, error = %e, "binance: unreadable message ignored");
                return Inbound::Nothing;
            }
        };
        if let Some(error) = frame.error {
            return Inbound::ExchangeError(error.to_string());
        }
        if let (Some(code), Some(msg)) = (&frame.code, &frame.msg) {
            return Inbound::ExchangeError(format!("{code}: {msg}"));
        }
        if frame.e == Some("serverShutdown") {
            return Inbound::Reconnect("binance serverShutdown".to_string());
        }
        if let (Some(stream), Some(data)) = (frame.stream, frame.data) {
            let kind = serde_json::from_str::<EventType<'_>>(data.get())
                .ok()
                .and_then(|t| t.e);
            return match kind {
                Some("24hrTicker") => self.ticker(data).unwrap_or_else(|| {
                    tracing::debug!(feed = %self.feed, stream, "binance: malformed ticker ignored");
                    Inbound::Nothing
                }),
                Some("serverShutdown") => Inbound::Reconnect("binance serverShutdown".to_string()),
                _ => Inbound::Nothing,
            };
        }
        if let Some(id) = frame.id.as_ref().and_then(serde_json::Value::as_u64) {
            if self.pending.remove(&id) && self.pending.is_empty() {
                return Inbound::Subscribed;
            }
        }
        Inbound::Nothing
    }

    fn contiguous(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol(products: &[&str]) -> BinanceProtocol {
        let mut config = FeedConfig::new("bn", Exchange::Binance, products);
        config.url = Some("ws://127.0.0.1:9/".into());
        BinanceProtocol::new(&config, "bn".into())
    }

    #[test]
    fn products_map_to_lower_case_combined_streams_in_the_url() {
        let mut p = protocol(&["BTC-USDT", "ETH-BTC"]);
        assert_eq!(
            p.url(),
            "ws://127.0.0.1:9/stream?streams=btcusdt@ticker/ethbtc@ticker"
        );
        let opened = p.on_open();
        assert!(opened.subscribed);
        assert!(opened.frames.is_empty());
        assert_eq!(symbol_of("BTC-USD"), "btcusd");
    }

    #[test]
    fn the_documented_24hr_ticker_becomes_a_tick_with_its_digits() {
        let mut p = protocol(&["BNB-BTC"]);
        let text = r#"{"stream":"bnbbtc@ticker","data":{"e":"24hrTicker","E":1672515782136,"s":"BNBBTC","p":"0.0015","P":"250.00","w":"0.0018","x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026","A":"100","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}}"#;
        let Inbound::Tick { tick, order } = p.on_text(text) else {
            panic!("not a tick")
        };
        assert_eq!(order, Some(1672515782136));
        assert_eq!(
            tick.to_json(),
            r#"{"product":"BNB-BTC","price":0.0025,"bid":0.0024,"ask":0.0026,"volume_24h":10000,"exchange":"binance","exchange_time":"2022-12-31T19:43:02.136Z"}"#
        );
    }

    #[test]
    fn unknown_events_errors_and_shutdown_notices_are_told_apart() {
        let mut p = protocol(&["BTC-USDT"]);
        let block = r#"{"stream":"btcusdt@blockTrade","data":{"e":"blockTrade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1,"m":true}}"#;
        assert!(matches!(p.on_text(block), Inbound::Nothing));
        let wrapped = r#"{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}"#;
        assert!(matches!(p.on_text(wrapped), Inbound::ExchangeError(_)));
        let bare = r#"{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"}"#;
        assert!(matches!(p.on_text(bare), Inbound::ExchangeError(_)));
        let shutdown =
            r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}"#;
        assert!(matches!(p.on_text(shutdown), Inbound::Reconnect(_)));
        assert!(matches!(
            p.on_text(r#"{"e":"serverShutdown","E":1770123456789}"#),
            Inbound::Reconnect(_)
        ));
    }

    #[test]
    fn streams_beyond_the_url_budget_are_subscribed_by_message_and_acked_by_id() {
        let products: Vec<String> = (0..400).map(|i| format!("C{i:04}-USDT")).collect();
        let refs: Vec<&str> = products.iter().map(String::as_str).collect();
        let mut p = protocol(&refs);
        assert!(p.url().len() < URL_STREAMS_BUDGET + 64);
        let opened = p.on_open();
        assert!(!opened.subscribed);
        let mut all: Vec<String> = p.url_streams.clone();
        for (i, frame) in opened.frames.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(frame).unwrap();
            assert_eq!(v["method"], "SUBSCRIBE");
            assert_eq!(v["id"], i as u64 + 1);
            for s in v["params"].as_array().unwrap() {
                all.push(s.as_str().unwrap().to_string());
            }
        }
        let expected: Vec<String> = products
            .iter()
            .map(|p| format!("{}@ticker", symbol_of(p)))
            .collect();
        assert_eq!(all, expected);
        let n = opened.frames.len() as u64;
        for id in 1..n {
            assert!(matches!(
                p.on_text(&format!(r#"{{"result":null,"id":{id}}}"#)),
                Inbound::Nothing
            ));
        }
        assert!(matches!(
            p.on_text(&format!(r#"{{"result":null,"id":{n}}}"#)),
            Inbound::Subscribed
        ));
    }
}
