//! Coinbase Exchange market data: the `ticker` channel for prices and `heartbeat` for
//! liveness (reference section 1, spec item 57).
//!
//! One subscribe names every product on both channels, sent as soon as the socket opens
//! (Coinbase disconnects a client that has not subscribed within 5 s). The `subscriptions`
//! answer is the acknowledgement. Ticker `sequence` is the product's full-channel sequence, so
//! it skips numbers normally: only going backwards means anything.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{Exchange, FeedConfig};
use crate::connector::{Inbound, Opened, WsProtocol};
use crate::decimal::Decimal;
use crate::tick::{rfc3339_to_utc_millis, Tick};

/// The Coinbase Exchange connector.
pub(crate) struct CoinbaseProtocol {
    url: String,
    feed: Arc<str>,
    products: Vec<String>,
}

impl CoinbaseProtocol {
    pub fn new(config: &FeedConfig, feed: Arc<str>) -> Self {
        CoinbaseProtocol {
            url: config
                .effective_url()
                .expect("coinbase has a default URL")
                .to_string(),
            feed,
            products: config.products.clone(),
        }
    }
}

/// The subscribe message for `products` (Coinbase product ids are the canonical names).
pub fn subscribe_message(products: &[String]) -> String {
    serde_json::json!({
        "type": "subscribe",
        "product_ids": products,
        "channels": ["ticker", "heartbeat"],
    })
    .to_string()
}

/// Only the fields used; borrowed, since prices are kept as the exchange's text.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    sequence: Option<u64>,
    #[serde(default, borrow)]
    product_id: Option<&'a str>,
    #[serde(default, borrow)]
    price: Option<&'a str>,
    #[serde(default, borrow)]
    best_bid: Option<&'a str>,
    #[serde(default, borrow)]
    best_ask: Option<&'a str>,
    #[serde(default, borrow)]
    volume_24h: Option<&'a str>,
    #[serde(default, borrow)]
    time: Option<&'a str>,
    // Error texts may hold escapes, which a borrowed &str cannot.
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
}

impl WsProtocol for CoinbaseProtocol {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn on_open(&mut self) -> Opened {
        Opened {
            frames: vec![subscribe_message(&self.products)],
            subscribed: false,
        }
    }

    fn on_text(&mut self, text: &str) -> Inbound {
        let message: Message<'_> = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(feed = %self.feed, error = %e, "coinbase: unreadable message ignored");
                return Inbound::Nothing;
            }
        };
        match message.kind {
            "subscriptions" => Inbound::Subscribed,
            "ticker" => match self.ticker(&message) {
                Some(inbound) => inbound,
                None => {
                    tracing::debug!(feed = %self.feed, "coinbase: malformed ticker ignored");
                    Inbound::Nothing
                }
            },
            "error" => Inbound::ExchangeError(format!(
                "{}{}",
                message.message.as_deref().unwrap_or("error"),
                message.reason.map(|r| format!(": {r}")).unwrap_or_default()
            )),
            // heartbeat is liveness only; anything else is a type we do not use.
            _ => Inbound::Nothing,
        }
    }

    fn contiguous(&self) -> bool {
        false
    }
}

impl CoinbaseProtocol {
    fn ticker(&self, m: &Message<'_>) -> Option<Inbound> {
        let product = m.product_id?;
        if !self.products.iter().any(|p| p == product) {
            return None;
        }
        let optional = |v: Option<&str>| v.map(Decimal::parse).transpose().ok();
        let tick = Tick {
            feed: self.feed.clone(),
            product: product.to_string(),
            price: Decimal::parse(m.price?).ok()?,
            bid: optional(m.best_bid)?,
            ask: optional(m.best_ask)?,
            volume_24h: optional(m.volume_24h)?,
            exchange: Exchange::Coinbase,
            exchange_time: rfc3339_to_utc_millis(m.time?)?,
            exchange_seq: m.sequence,
        };
        Some(Inbound::Tick {
            order: m.sequence,
            tick,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol() -> CoinbaseProtocol {
        let config = FeedConfig::new("cb", Exchange::Coinbase, &["ETH-USD", "BTC-USD"]);
        CoinbaseProtocol::new(&config, "cb".into())
    }

    #[test]
    fn subscribe_names_every_product_on_ticker_and_heartbeat() {
        let frames = protocol().on_open().frames;
        assert_eq!(frames.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&frames[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"subscribe","product_ids":["ETH-USD","BTC-USD"],"channels":["ticker","heartbeat"]})
        );
    }

    #[test]
    fn the_documented_ticker_becomes_a_tick_with_its_digits() {
        let text = r#"{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"1285.04","best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040","side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"}"#;
        let Inbound::Tick { tick, order } = protocol().on_text(text) else {
            panic!("not a tick")
        };
        assert_eq!(order, Some(37475248783));
        assert_eq!(
            tick.to_json(),
            r#"{"product":"ETH-USD","price":1285.22,"bid":1285.04,"ask":1285.27,"volume_24h":245532.79269678,"exchange":"coinbase","exchange_time":"2022-10-19T23:28:22.061Z","exchange_seq":37475248783}"#
        );
    }

    #[test]
    fn acks_heartbeats_errors_and_unknown_types_are_told_apart() {
        let mut p = protocol();
        let ack = r#"{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD"],"account_ids":null}]}"#;
        assert!(matches!(p.on_text(ack), Inbound::Subscribed));
        let hb = r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#;
        assert!(matches!(p.on_text(hb), Inbound::Nothing));
        let err = r#"{"type":"error","message":"Failed to subscribe","reason":"BTC-USDX is not a valid product"}"#;
        let Inbound::ExchangeError(e) = p.on_text(err) else {
            panic!("not an error")
        };
        assert_eq!(e, "Failed to subscribe: BTC-USDX is not a valid product");
        assert!(matches!(
            p.on_text(r#"{"type":"status","products":[]}"#),
            Inbound::Nothing
        ));
        assert!(matches!(p.on_text("not json"), Inbound::Nothing));
    }

    #[test]
    fn a_ticker_with_a_float_or_bad_price_is_ignored() {
        let mut p = protocol();
        let float = r#"{"type":"ticker","sequence":1,"product_id":"BTC-USD","price":64250.1,"time":"2022-10-19T23:28:22.061769Z"}"#;
        assert!(matches!(p.on_text(float), Inbound::Nothing));
        let bad = r#"{"type":"ticker","sequence":1,"product_id":"BTC-USD","price":"1e5","time":"2022-10-19T23:28:22.061769Z"}"#;
        assert!(matches!(p.on_text(bad), Inbound::Nothing));
        let other = r#"{"type":"ticker","sequence":1,"product_id":"DOGE-USD","price":"1","time":"2022-10-19T23:28:22.061769Z"}"#;
        assert!(matches!(p.on_text(other), Inbound::Nothing));
    }
}
