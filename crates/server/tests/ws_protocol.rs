//! WebSocket protocol tests against the real server: frames, subscriptions, publications.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_names_an_anonymous_free_connection_and_the_limits() {
    let server = TestServer::start().await;
    let ws = server.ws("/ws").await;
    let w = &ws.welcome;
    assert_eq!(w["auth"], "anonymous");
    assert_eq!(w["tier"], "free");
    assert_eq!(w["heartbeat_interval_ms"], 25000);
    assert_eq!(w["max_message_bytes"], 65536);
    assert!(w["connection_id"].as_str().unwrap().starts_with("c_"));
    assert!(w["server_time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_then_publish_delivers_the_envelope_with_seq_increasing_by_one() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    let sub = ws.subscribe(&["news"]).await;
    assert_eq!(sub["id"], 1);
    let pos = &sub["channels"][0];
    assert_eq!(pos["channel"], "news");
    assert_eq!(pos["seq"], 0);
    assert_eq!(pos["recovered"], false);
    let epoch = pos["epoch"].as_str().unwrap().to_string();
    for i in 0..3 {
        let answer = server.publish("news", json!({"n": i})).await;
        assert_eq!(answer["seq"], i + 1);
        assert_eq!(answer["epoch"], epoch.as_str());
    }
    for i in 0..3 {
        let p = ws.recv().await;
        assert_eq!(p["type"], "test");
        assert_eq!(p["channel"], "news");
        assert_eq!(p["epoch"], epoch.as_str());
        assert_eq!(p["seq"], i + 1);
        assert_eq!(p["data"]["n"], i);
        assert!(p["id"].as_str().unwrap().starts_with("pub_"));
        assert!(p["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_all_is_an_alias_of_signals() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    let sub = ws.subscribe(&["signals:all"]).await;
    assert_eq!(sub["channels"][0]["channel"], "signals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_answers_errors_first_then_one_subscribed_for_the_allowed_channels() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.send(
        json!({"type":"subscribe","id":7,"channels":["a","bad name","premium","b","trades:alice"]}),
    )
    .await;
    let e1 = ws.recv().await;
    assert_eq!(
        (
            e1["type"].as_str(),
            e1["code"].as_str(),
            e1["channel"].as_str()
        ),
        (Some("error"), Some("bad_channel"), Some("bad name"))
    );
    assert_eq!(e1["id"], 7);
    let e2 = ws.recv().await;
    assert_eq!(
        (e2["code"].as_str(), e2["channel"].as_str()),
        (Some("forbidden"), Some("premium"))
    );
    assert_eq!(e2["message"], "tier premium required");
    let e3 = ws.recv().await;
    assert_eq!(
        (e3["code"].as_str(), e3["channel"].as_str()),
        (Some("unauthorized"), Some("trades:alice"))
    );
    let ok = ws.recv().await;
    assert_eq!(ok["type"], "subscribed");
    assert_eq!(ok["id"], 7);
    let names: Vec<_> = ok["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].clone())
        .collect();
    assert_eq!(names, [json!("a"), json!("b")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whale_channel_is_forbidden_to_free_connections() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type":"subscribe","id":1,"channels":["whale"]}))
        .await;
    let e = ws.recv().await;
    assert_eq!(
        (e["code"].as_str(), e["message"].as_str()),
        (Some("forbidden"), Some("tier whale required"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_a_held_channel_reports_its_position_and_replays_nothing() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["x"]).await;
    server.publish("x", json!(1)).await;
    assert_eq!(ws.recv().await["seq"], 1);
    let again = ws.subscribe(&["x"]).await;
    assert_eq!(again["channels"][0]["seq"], 1);
    ws.send(json!({"type":"ping","id":2})).await;
    assert_eq!(
        ws.recv().await["type"],
        "pong",
        "nothing was replayed before the pong"
    );
    assert_eq!(server.state.hub.stats().subscriptions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery_and_unknown_channels_are_not_errors() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["x", "y"]).await;
    ws.send(json!({"type":"unsubscribe","id":3,"channels":["x","never-held"]}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "unsubscribed");
    assert_eq!(reply["id"], 3);
    assert_eq!(reply["channels"], json!(["x", "never-held"]));
    server.publish("x", json!("dropped")).await;
    server.publish("y", json!("kept")).await;
    let p = ws.recv().await;
    assert_eq!(
        (p["channel"].as_str(), p["data"].as_str()),
        (Some("y"), Some("kept"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_stats_frames_are_answered_with_their_id() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["a"]).await;
    ws.send(json!({"type":"ping","id":4})).await;
    let pong = ws.recv().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(4))
    );
    assert!(pong["server_time"].is_string());
    ws.send(json!({"type":"stats","id":5})).await;
    let stats = ws.recv().await;
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["id"], 5);
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["channels"], 1);
    assert!(stats["uptime_s"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    let cases = [
        ("{not json", "bad_request"),
        ("[1,2]", "bad_request"),
        ("\"subscribe\"", "bad_request"),
        (r#"{"id":1}"#, "bad_request"),
        (r#"{"type":42}"#, "bad_request"),
        (r#"{"type":"ping","id":"7"}"#, "bad_request"),
        (r#"{"type":"ping","id":1.5}"#, "bad_request"),
        (r#"{"type":"subscribe","id":1}"#, "bad_request"),
        (
            r#"{"type":"subscribe","id":1,"channels":"signals"}"#,
            "bad_request",
        ),
        (
            r#"{"type":"subscribe","id":1,"channels":["a"],"since":{"a":{"seq":"x"}}}"#,
            "bad_request",
        ),
        (
            r#"{"type":"unsubscribe","id":1,"channels":[null]}"#,
            "bad_request",
        ),
        (r#"{"type":"auth","id":1}"#, "bad_request"),
        (r#"{"type":"publish","id":9}"#, "unknown_type"),
    ];
    for (text, code) in cases {
        ws.send_text(text).await;
        let e = ws.recv().await;
        assert_eq!(e["type"], "error", "{text}");
        assert_eq!(e["code"], code, "{text}: {e}");
    }
    ws.stream
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1, 2, 3].into(),
        ))
        .await
        .unwrap();
    assert_eq!(ws.recv().await["code"], "bad_request");
    let sub = ws.subscribe(&["still-open"]).await;
    assert_eq!(sub["type"], "subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_frames_with_a_token_are_refused_as_unauthorized_without_a_verifier() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type":"auth","id":3,"token":"abc"})).await;
    let e = ws.recv().await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("unauthorized"), Some(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_max_subscriptions_is_refused_per_channel() {
    let server = TestServer::start_with(config("[limits]\nmax_subscriptions = 2", &[])).await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type":"subscribe","id":1,"channels":["a","b","c"]}))
        .await;
    let e = ws.recv().await;
    assert_eq!(
        (e["code"].as_str(), e["channel"].as_str()),
        (Some("too_many_subscriptions"), Some("c"))
    );
    let ok = ws.recv().await;
    assert_eq!(ok["channels"].as_array().unwrap().len(), 2);
    // Re-subscribing to a held channel does not count again.
    let again = ws.subscribe(&["a"]).await;
    assert_eq!(again["channels"][0]["channel"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convenience_paths_subscribe_on_connect_with_an_idless_subscribed() {
    let server = TestServer::start().await;
    let cases: [(&str, &[&str]); 7] = [
        ("/ws/signals", &["signals"]),
        ("/ws/notifications", &["signals"]),
        ("/ws/unified", &["unified"]),
        ("/ws/market/BTC-USD", &["market:BTC-USD", "price:BTC-USD"]),
        ("/ws/agents/scout", &["agents:scout"]),
        ("/ws/narrative", &["narrative"]),
        ("/ws/bots/7", &["bot:7"]),
    ];
    for (path, expected) in cases {
        let mut ws = server.ws(path).await;
        let sub = ws.recv().await;
        assert_eq!(sub["type"], "subscribed", "{path}");
        assert!(sub.get("id").is_none(), "{path}");
        let names: Vec<String> = sub["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["channel"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, expected, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trade_execution_path_needs_credentials_before_the_upgrade() {
    let server = TestServer::start().await;
    let err = tokio_tungstenite::connect_async(server.ws_url("/ws/trade-execution"))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_premium_signal_reaches_free_subscribers_only_as_a_locked_stub() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["signals", "public", "unified"]).await;
    let (status, body) = server
        .post(
            "/api/v1/signals",
            &json!({"signal_id":"t1","pair":"EUR_USD","signal_type":"buy","entry_price":"1.0950","confidence_score":0.85}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tier"], "premium");
    for channel in ["signals", "public", "unified"] {
        let stub = ws.recv().await;
        assert_eq!(stub["type"], "locked", "{stub}");
        assert_eq!(stub["channel"], channel);
        assert_eq!(stub["tier"], "premium");
        assert_eq!(stub["kind"], "signal");
        assert_eq!(stub["seq"], 1);
        assert!(stub.get("data").is_none(), "no data leaks: {stub}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_signal_is_delivered_in_full_with_its_digits_kept() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws/signals").await;
    ws.recv().await;
    let (status, _) = server
        .post(
            "/api/v1/signals",
            &json!({"pair":"btc/usd","signal_type":"SELL","entry_price":"64250.10","confidence_score":0.5}),
        )
        .await;
    assert_eq!(status, 200);
    let raw = ws.recv_text().await;
    let p: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(p["type"], "signal");
    assert_eq!(p["data"]["pair"], "BTC-USD");
    assert_eq!(p["data"]["tier"], "free");
    assert!(raw.contains("\"entry_price\":64250.10"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_channels_send_the_latest_publication_right_after_subscribed() {
    let server = TestServer::start().await;
    server.publish("price:ETH-USD", json!({"price": 1})).await;
    server.publish("price:ETH-USD", json!({"price": 2})).await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["price:ETH-USD"]).await;
    let latest = ws.recv().await;
    assert_eq!(latest["seq"], 2);
    assert_eq!(latest["data"]["price"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_pipelined_behind_the_handshake_are_handled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    )
    .into_bytes();
    let ping = br#"{"type":"ping","id":77}"#;
    request.extend_from_slice(&[0x81, 0x80 | ping.len() as u8, 0, 0, 0, 0]);
    request.extend_from_slice(ping);
    tcp.write_all(&request).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"id\":77") {
        let n = tokio::time::timeout(GUARD, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 101"));
}
