//! The Coinbase connector against the Coinbase replay server.

mod common;

use std::time::Duration;

use common::{config, start};
use futures_util::StreamExt;
use signalhub_feeds::testing::{start_coinbase, ReplayOptions, Script};
use signalhub_feeds::{Exchange, Status};
use tokio_tungstenite::tungstenite::Message;

fn options() -> ReplayOptions {
    ReplayOptions {
        subscribe_deadline: Duration::from_millis(500),
        keepalive_interval: Duration::from_millis(50),
        frame_interval: Duration::from_millis(5),
        ..ReplayOptions::default()
    }
}

const PRODUCTS: &[&str] = &["BTC-USD", "ETH-USD"];

#[tokio::test]
async fn subscribes_to_ticker_and_heartbeat_for_every_product_within_the_deadline() {
    let replay = start_coinbase(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Coinbase, replay.url(), PRODUCTS, 1.0));
    feed.wait_status(Status::Up).await;
    let subscribes = replay.subscribes();
    assert_eq!(subscribes.len(), 1);
    let sent: serde_json::Value = serde_json::from_str(&subscribes[0]).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["ticker","heartbeat"]})
    );
    assert_eq!(replay.deadline_closes(), 0);
    feed.shutdown().await;
}

#[tokio::test]
async fn replay_server_disconnects_a_client_that_does_not_subscribe_in_time() {
    let replay = start_coinbase(Script::default(), options()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(replay.url())
        .await
        .unwrap();
    let mut close_code = None;
    while let Some(Ok(frame)) = common::guarded("close", ws.next()).await {
        if let Message::Close(frame) = frame {
            close_code = frame.map(|f| u16::from(f.code));
        }
    }
    assert_eq!(close_code, Some(1008));
    assert_eq!(replay.deadline_closes(), 1);
}

#[tokio::test]
async fn is_up_only_after_the_ack_and_a_message() {
    let replay = start_coinbase(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Coinbase, replay.url(), PRODUCTS, 1.0));
    assert_eq!(feed.handle.status(), Status::Reconnecting);
    feed.wait_status(Status::Up).await;
    assert_eq!(feed.statuses, vec![Status::Up]);
    let stats = feed.handle.stats();
    // The ack and at least one heartbeat.
    assert!(stats.messages >= 2, "{stats:?}");
    assert!(stats.last_message_at.is_some());
    assert!(feed.ticks.is_empty(), "heartbeats publish nothing");
    feed.shutdown().await;
}

#[tokio::test]
async fn ticks_keep_exact_prices_ignore_unknown_types_and_drop_backwards_sequences() {
    let script = Script::fixture("coinbase_ticker.jsonl").unwrap();
    let frames = script.frames.len() as u64;
    let replay = start_coinbase(script, options()).await;
    let mut feed = start(config(Exchange::Coinbase, replay.url(), PRODUCTS, 1.0));
    feed.wait_ticks(4).await;
    let json: Vec<String> = feed.ticks.iter().map(|t| t.to_json()).collect();
    assert_eq!(
        json,
        vec![
            r#"{"product":"BTC-USD","price":64250.10,"bid":64250.09,"ask":64250.11,"volume_24h":12345.67890123,"exchange":"coinbase","exchange_time":"2026-11-30T12:00:00.123Z","exchange_seq":100}"#,
            r#"{"product":"ETH-USD","price":3200.5,"bid":3200.49,"ask":3200.51,"volume_24h":98765.4321,"exchange":"coinbase","exchange_time":"2026-11-30T12:00:00.200Z","exchange_seq":50}"#,
            r#"{"product":"BTC-USD","price":12345678901234567890.12,"bid":12345678901234567890.11,"ask":12345678901234567890.13,"volume_24h":12345.68890123,"exchange":"coinbase","exchange_time":"2026-11-30T12:00:01.999Z","exchange_seq":140}"#,
            r#"{"product":"ETH-USD","price":3200.50,"bid":3200.49,"ask":3200.51,"volume_24h":98765.9321,"exchange":"coinbase","exchange_time":"2026-11-30T12:00:02.000Z","exchange_seq":51}"#,
        ]
    );
    assert!(feed.ticks.iter().all(|t| &*t.feed == "test"));
    feed.wait_until("every scripted frame counted", |h| {
        h.stats().messages > frames
    })
    .await;
    let stats = feed.handle.stats();
    assert_eq!(stats.dropped, 2, "seq 99 after 100, and 100 again");
    assert_eq!(stats.gaps, 0, "ticker sequences are not contiguous");
    assert_eq!(feed.ticks.len(), 4);
    feed.shutdown().await;
}

#[tokio::test]
async fn heartbeats_alone_keep_the_feed_up() {
    let replay = start_coinbase(Script::default(), options()).await;
    // Heartbeats every 50 ms per product (40 messages a second); stale after 500 ms of
    // silence. 60 heartbeats span three stale periods: without them the feed would go stale.
    let mut feed = start(config(Exchange::Coinbase, replay.url(), PRODUCTS, 0.5));
    feed.wait_status(Status::Up).await;
    feed.wait_until("60 heartbeats", |h| h.stats().messages > 60)
        .await;
    assert_eq!(feed.statuses, vec![Status::Up]);
    assert!(feed.ticks.is_empty());
    feed.shutdown().await;
}

#[tokio::test]
async fn goes_stale_after_silence_and_up_again_when_messages_return() {
    let replay = start_coinbase(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Coinbase, replay.url(), PRODUCTS, 0.5));
    feed.wait_status(Status::Up).await;
    replay.stall();
    feed.wait_status(Status::Stale).await;
    replay.resume();
    feed.wait_status(Status::Up).await;
    assert_eq!(feed.statuses, vec![Status::Up, Status::Stale, Status::Up]);
    assert_eq!(
        replay.connections(),
        1,
        "staleness alone does not reconnect"
    );
    assert_eq!(feed.handle.stats().reconnects, 0);
    feed.shutdown().await;
}

#[tokio::test]
async fn reconnects_with_backoff_and_subscribes_again_after_a_drop() {
    let replay = start_coinbase(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Coinbase, replay.url(), PRODUCTS, 1.0));
    feed.wait_status(Status::Up).await;
    replay.drop_connections();
    feed.wait_status(Status::Reconnecting).await;
    feed.wait_status(Status::Up).await;
    assert_eq!(replay.connections(), 2);
    let subscribes = replay.subscribes();
    assert_eq!(subscribes.len(), 2);
    assert_eq!(subscribes[0], subscribes[1], "the same subscription again");
    assert_eq!(feed.handle.stats().reconnects, 1);
    feed.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_three_stale_periods_of_silence_and_subscribes_again() {
    let replay = start_coinbase(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Coinbase, replay.url(), PRODUCTS, 0.2));
    feed.wait_status(Status::Up).await;
    replay.stall();
    feed.wait_status(Status::Stale).await;
    feed.wait_status(Status::Reconnecting).await;
    replay.resume();
    feed.wait_status(Status::Up).await;
    assert!(replay.connections() >= 2);
    assert!(feed.handle.stats().reconnects >= 1);
    assert_eq!(replay.subscribes().len() as u64, replay.connections());
    feed.shutdown().await;
}

#[tokio::test]
async fn keeps_retrying_while_the_exchange_is_unreachable() {
    // A port with nothing listening: bind, note the port, close.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut feed = start(config(Exchange::Coinbase, &url, PRODUCTS, 1.0));
    feed.wait_until("three retries", |h| h.stats().reconnects >= 3)
        .await;
    assert_eq!(feed.handle.status(), Status::Reconnecting);
    assert!(feed.statuses.is_empty(), "never up, so no status change");
    feed.shutdown().await;
}

#[tokio::test]
async fn a_refused_product_never_marks_the_feed_up() {
    let replay = start_coinbase(
        Script::default(),
        ReplayOptions {
            valid_products: Some(vec!["BTC-USD".to_string()]),
            ..options()
        },
    )
    .await;
    let mut feed = start(config(
        Exchange::Coinbase,
        replay.url(),
        &["BTC-USD", "BTC-USDX"],
        0.1,
    ));
    // The refused subscribe gets an error frame, no ack; the feed retries with backoff.
    feed.wait_until("a second subscribe", |_| replay.subscribes().len() >= 2)
        .await;
    assert!(!feed.statuses.contains(&Status::Up));
    assert!(feed.handle.stats().reconnects >= 1);
    feed.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_connection_and_ends_the_task() {
    let replay = start_coinbase(Script::default(), options()).await;
    let mut feed = start(config(Exchange::Coinbase, replay.url(), PRODUCTS, 1.0));
    feed.wait_status(Status::Up).await;
    feed.shutdown().await;
    assert_eq!(replay.connections(), 1);
}

#[tokio::test]
async fn a_wss_url_goes_through_rustls_and_a_failed_handshake_is_retried() {
    // A TCP server that accepts and hangs up: the TLS handshake fails on our side, which
    // proves the rustls client (with its crypto provider and roots) is built for wss://.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://{}", listener.local_addr().unwrap());
    let hang_up = tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            drop(socket);
        }
    });
    let mut feed = start(config(Exchange::Coinbase, &url, PRODUCTS, 1.0));
    feed.wait_until("two retries", |h| h.stats().reconnects >= 2)
        .await;
    assert_eq!(feed.handle.status(), Status::Reconnecting);
    feed.shutdown().await;
    hang_up.abort();
}
