//! The Binance connector against the Binance replay server.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{config, start};
use futures_util::{SinkExt, StreamExt};
use signalhub_feeds::testing::{start_binance, ReplayOptions, Script};
use signalhub_feeds::{binance_symbol_of, Exchange, Status};
use tokio_tungstenite::tungstenite::Message;

/// Pings every 250 ms: our pongs (4 a second) stay under Binance's limit of 5 inbound
/// messages a second, as they must, since every pong counts.
fn options() -> ReplayOptions {
    ReplayOptions {
        keepalive_interval: Duration::from_millis(250),
        pong_timeout: Duration::from_millis(500),
        frame_interval: Duration::from_millis(5),
        ..ReplayOptions::default()
    }
}

const PRODUCTS: &[&str] = &["BTC-USDT", "ETH-USDT"];

#[tokio::test]
async fn asks_for_lower_case_combined_streams_in_the_url_and_is_up_once_open_and_a_message_came() {
    let replay = start_binance(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Binance, replay.url(), PRODUCTS, 1.0));
    // No data is scripted: the first ping after the open stream marks the feed up.
    feed.wait_status(Status::Up).await;
    assert_eq!(
        replay.requested_streams(),
        vec![vec![
            "btcusdt@ticker".to_string(),
            "ethusdt@ticker".to_string()
        ]]
    );
    assert!(
        replay.subscribes().is_empty(),
        "streams in the URL need no SUBSCRIBE"
    );
    feed.shutdown().await;
}

#[tokio::test]
async fn ticks_keep_exact_prices_ignore_unknown_events_and_drop_backwards_event_times() {
    let script = Script::fixture("binance_ticker.jsonl").unwrap();
    let frames = script.frames.len() as u64;
    let replay = start_binance(script, options()).await;
    let mut feed = start(config(Exchange::Binance, replay.url(), PRODUCTS, 1.0));
    feed.wait_ticks(4).await;
    let json: Vec<String> = feed.ticks.iter().map(|t| t.to_json()).collect();
    assert_eq!(
        json,
        vec![
            r#"{"product":"BTC-USDT","price":64250.10,"bid":64250.09,"ask":64250.11,"volume_24h":12345.67890123,"exchange":"binance","exchange_time":"2025-11-30T12:00:00.123Z"}"#,
            r#"{"product":"ETH-USDT","price":3200.5,"bid":3200.49,"ask":3200.51,"volume_24h":98765.4321,"exchange":"binance","exchange_time":"2025-11-30T12:00:00.200Z"}"#,
            r#"{"product":"BTC-USDT","price":12345678901234567890.12,"bid":12345678901234567890.11,"ask":12345678901234567890.13,"volume_24h":12345.68890123,"exchange":"binance","exchange_time":"2025-11-30T12:00:01.123Z"}"#,
            r#"{"product":"ETH-USDT","price":3200.50,"bid":3200.49,"ask":3200.51,"volume_24h":98765.9321,"exchange":"binance","exchange_time":"2025-11-30T12:00:01.200Z"}"#,
        ]
    );
    feed.wait_until("every scripted frame counted", |h| {
        h.stats().messages >= frames
    })
    .await;
    let stats = feed.handle.stats();
    assert_eq!(
        stats.dropped, 2,
        "an older event time, then the same one again"
    );
    assert_eq!(stats.gaps, 0);
    assert_eq!(feed.ticks.len(), 4);
    feed.shutdown().await;
}

#[tokio::test]
async fn pings_are_answered_with_pongs_carrying_the_same_payload() {
    let replay = start_binance(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Binance, replay.url(), PRODUCTS, 1.0));
    feed.wait_status(Status::Up).await;
    replay
        .wait_until("five pongs", |r| r.pongs_matched() >= 5)
        .await;
    assert_eq!(replay.rate_limit_closes(), 0);
    assert_eq!(replay.pongs_mismatched(), 0);
    assert_eq!(replay.pong_timeouts(), 0);
    assert_eq!(replay.connections(), 1);
    feed.shutdown().await;
}

#[tokio::test]
async fn replay_server_closes_a_client_that_sends_more_than_five_messages_a_second() {
    let replay = start_binance(Script::default(), options()).await;
    let url = format!("{}/stream?streams=btcusdt@ticker", replay.url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for id in 1..=6 {
        let list = format!(r#"{{"method":"LIST_SUBSCRIPTIONS","id":{id}}}"#);
        if ws.send(Message::text(list)).await.is_err() {
            break;
        }
    }
    let mut close_code = None;
    while let Some(Ok(frame)) = common::guarded("close", ws.next()).await {
        if let Message::Close(frame) = frame {
            close_code = frame.map(|f| u16::from(f.code));
        }
    }
    assert_eq!(close_code, Some(1008));
    assert_eq!(replay.rate_limit_closes(), 1);
}

#[tokio::test]
async fn streams_beyond_the_url_go_in_subscribe_messages_spaced_under_the_rate_limit() {
    let products: Vec<String> = (0..1000).map(|i| format!("C{i:04}-USDT")).collect();
    let refs: Vec<&str> = products.iter().map(String::as_str).collect();
    // Real Binance pings every 20 s; every 2 s here keeps at most one pong in any second.
    let slow_pings = ReplayOptions {
        keepalive_interval: Duration::from_secs(2),
        ..options()
    };
    let replay = start_binance(Script::default(), slow_pings).await;
    let mut feed = start(config(Exchange::Binance, replay.url(), &refs, 5.0));
    feed.wait_status(Status::Up).await;
    let subscribes = replay.subscribes();
    // More control messages than Binance takes in one second: sent at once they would close
    // the connection.
    assert!(
        subscribes.len() > 5,
        "{} SUBSCRIBE messages",
        subscribes.len()
    );
    assert_eq!(replay.rate_limit_closes(), 0);
    assert_eq!(replay.connections(), 1);
    let mut streams: HashSet<String> = replay.requested_streams()[0].iter().cloned().collect();
    for text in &subscribes {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["method"], "SUBSCRIBE");
        for s in v["params"].as_array().unwrap() {
            assert!(streams.insert(s.as_str().unwrap().to_string()), "{s} twice");
        }
    }
    let expected: HashSet<String> = products
        .iter()
        .map(|p| format!("{}@ticker", binance_symbol_of(p)))
        .collect();
    assert_eq!(streams, expected);
    feed.shutdown().await;
}

#[tokio::test]
async fn reconnects_and_asks_for_the_same_streams_after_a_drop() {
    let replay = start_binance(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Binance, replay.url(), PRODUCTS, 1.0));
    feed.wait_status(Status::Up).await;
    replay.drop_connections();
    feed.wait_status(Status::Reconnecting).await;
    feed.wait_status(Status::Up).await;
    let requested = replay.requested_streams();
    assert_eq!(requested.len(), 2);
    assert_eq!(requested[0], requested[1]);
    assert_eq!(feed.handle.stats().reconnects, 1);
    feed.shutdown().await;
}

#[tokio::test]
async fn goes_stale_then_reconnects_after_a_stall() {
    let replay = start_binance(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Binance, replay.url(), PRODUCTS, 0.6));
    feed.wait_status(Status::Up).await;
    replay.stall();
    feed.wait_status(Status::Stale).await;
    feed.wait_status(Status::Reconnecting).await;
    replay.resume();
    feed.wait_status(Status::Up).await;
    assert!(replay.connections() >= 2);
    assert!(feed.handle.stats().reconnects >= 1);
    feed.shutdown().await;
}
