//! Limits and close codes of spec section 5, and RFC 6455 behaviour at the edges.

mod common;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_message_over_max_message_bytes_closes_with_1009() {
    let server = TestServer::start().await;
    let mut ws = RawWs::connect(&server, "/ws").await;
    ws.read_json().await;
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(65_537));
    ws.send_text(&big).await;
    assert_eq!(ws.read_until_close().await, Some(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_exactly_max_message_bytes_is_accepted() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    let head = r#"{"type":"ping","id":1,"pad":""#;
    let pad = 65_536 - head.len() - 2;
    let text = format!("{head}{}\"}}", "x".repeat(pad));
    assert_eq!(text.len(), 65_536);
    ws.send_text(&text).await;
    assert_eq!(ws.recv().await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_over_the_limit_closes_with_1009() {
    let server = TestServer::start().await;
    let mut ws = RawWs::connect(&server, "/ws").await;
    ws.read_json().await;
    let part = vec![b'x'; 40_000];
    ws.send_frame(0x1, false, &part, true).await;
    ws.send_frame(0x0, true, &part, true).await;
    assert_eq!(ws.read_until_close().await, Some(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_with_a_ping_between_fragments_is_reassembled() {
    let server = TestServer::start().await;
    let mut ws = RawWs::connect(&server, "/ws").await;
    ws.read_json().await;
    ws.send_frame(0x1, false, br#"{"type":"pi"#, true).await;
    ws.send_frame(0x9, true, b"hb", true).await;
    ws.send_frame(0x0, true, br#"ng","id":5}"#, true).await;
    let (opcode, payload) = ws.read_frame().await.unwrap();
    assert_eq!(
        (opcode, payload.as_slice()),
        (0xA, &b"hb"[..]),
        "pong answers the ping at once"
    );
    let pong = ws.read_json().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(5))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmasked_client_frame_closes_with_1002() {
    let server = TestServer::start().await;
    let mut ws = RawWs::connect(&server, "/ws").await;
    ws.read_json().await;
    ws.send_frame(0x1, true, br#"{"type":"ping"}"#, false).await;
    assert_eq!(ws.read_until_close().await, Some(1002));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let server = TestServer::start().await;
    let mut ws = RawWs::connect(&server, "/ws").await;
    ws.read_json().await;
    ws.send_frame(0x1, true, &[0x7B, 0xFF, 0xFE, 0x7D], true)
        .await;
    assert_eq!(ws.read_until_close().await, Some(1007));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_echoed_and_the_connection_ends() {
    let server = TestServer::start().await;
    let mut ws = RawWs::connect(&server, "/ws").await;
    ws.read_json().await;
    let mut payload = 4321u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    ws.send_frame(0x8, true, &payload, true).await;
    assert_eq!(ws.read_until_close().await, Some(4321));
    assert!(
        ws.read_frame().await.is_none(),
        "the server closes the TCP connection"
    );
    eventually(|| server.state.registry.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_rate_get_rate_limited_errors_then_close_4008() {
    let server = TestServer::start_with(config(
        "[limits]\nclient_frames_per_second = 1\nclient_frames_burst = 2",
        &[],
    ))
    .await;
    let mut ws = server.ws("/ws").await;
    for id in 0..40 {
        ws.send(json!({"type":"ping","id":id})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    let code = loop {
        match ws.next_message().await {
            Some(Message::Text(text)) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                match v["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") => {
                        assert_eq!(v["code"], "rate_limited");
                        limited += 1;
                    }
                    _ => panic!("unexpected {v}"),
                }
            }
            Some(Message::Close(Some(frame))) => break u16::from(frame.code),
            Some(_) => {}
            None => panic!("ended without a close frame"),
        }
    };
    assert_eq!(code, 4008);
    assert!(pongs >= 2, "the burst was allowed");
    assert_eq!(limited, 20, "twenty refusals, then the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pings_at_the_heartbeat_interval() {
    let server = TestServer::start_with(config(
        "[limits]\nping_interval_s = 1\nidle_timeout_s = 30",
        &[],
    ))
    .await;
    let mut ws = server.ws("/ws").await;
    assert_eq!(ws.welcome["heartbeat_interval_ms"], 1000);
    loop {
        if let Some(Message::Ping(_)) = ws.next_message().await {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_for_the_idle_timeout_is_closed_with_4010() {
    let server = TestServer::start_with(config(
        "[limits]\nping_interval_s = 1\nidle_timeout_s = 2",
        &[],
    ))
    .await;
    // A raw client reads but never answers pings, so it is idle.
    let mut ws = RawWs::connect(&server, "/ws").await;
    assert_eq!(ws.read_until_close().await, Some(4010));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_pings_keeps_a_connection_alive_past_the_idle_timeout() {
    let server = TestServer::start_with(config(
        "[limits]\nping_interval_s = 1\nidle_timeout_s = 2",
        &[],
    ))
    .await;
    let mut ws = server.ws("/ws").await;
    // tungstenite answers each ping as it reads it; read four pings (past the timeout).
    let mut pings = 0;
    while pings < 4 {
        match ws.next_message().await {
            Some(Message::Ping(_)) => pings += 1,
            Some(Message::Close(frame)) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
    ws.send(json!({"type":"ping","id":1})).await;
    assert_eq!(ws.recv().await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_closed_with_4009_while_others_keep_receiving() {
    let server = TestServer::start_with(config("[limits]\nmax_queue_bytes = 65536", &[])).await;
    let mut slow = RawWs::connect(&server, "/ws").await;
    slow.read_json().await;
    slow.send_text(r#"{"type":"subscribe","id":1,"channels":["flood"]}"#)
        .await;
    assert_eq!(slow.read_json().await["type"], "subscribed");
    let mut fast = server.ws("/ws").await;
    fast.subscribe(&["flood"]).await;

    // In lockstep with the fast subscriber, so that it never has more than one publication
    // queued however slow the machine is (with a 64 KiB queue, a reader that lags by three
    // 30 KB publications would rightly be closed too), while the slow one reads nothing.
    let pad = "x".repeat(30_000);
    for i in 0..400u64 {
        server.publish("flood", json!({"i": i, "pad": pad})).await;
        let p = fast.recv().await;
        assert_eq!(p["seq"], i + 1, "in order, nothing missing");
    }
    // The slow subscriber's outbox overflowed: it is closing.
    let mut closing = 0;
    server
        .state
        .registry
        .for_each(|c| closing += usize::from(c.is_closing()));
    assert_eq!(closing, 1);
    // Once it reads again it finds what the kernel buffered, then the 4009 close frame.
    assert_eq!(slow.read_until_close().await, Some(4009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_that_reads_again_seconds_later_gets_the_4009_close_frame_not_a_reset() {
    let server = TestServer::start_with(config("[limits]\nmax_queue_bytes = 65536", &[])).await;
    let mut slow = RawWs::connect_with_recv_buffer(&server, "/ws", 16 * 1024).await;
    slow.read_json().await;
    slow.send_text(r#"{"type":"subscribe","id":1,"channels":["flood"]}"#)
        .await;
    assert_eq!(slow.read_json().await["type"], "subscribed");
    let pad = "x".repeat(30_000);
    for i in 0..200 {
        server.publish("flood", json!({"i": i, "pad": pad})).await;
    }
    let mut closing = 0;
    server
        .state
        .registry
        .for_each(|c| closing += usize::from(c.is_closing()));
    assert_eq!(closing, 1, "the outbox overflowed");
    // The client is busy elsewhere for longer than a close handshake may take, and sends
    // a ping meanwhile (so the server holds unread input), then reads again.
    slow.send_frame(0x9, true, b"still here", true).await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        slow.read_until_close().await,
        Some(4009),
        "what the kernel buffered, then the close frame"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_announces_on_system_then_closes_every_websocket_with_1001() {
    let server = TestServer::start().await;
    let mut a = server.ws("/ws").await;
    a.subscribe(&["system"]).await;
    let mut b = server.ws("/ws/signals").await;
    b.recv().await;
    let state = server.state.clone();
    let stopped = tokio::spawn(server.stop());
    let notice = a.recv().await;
    assert_eq!(notice["type"], "system_status");
    assert_eq!(notice["channel"], "system");
    assert_eq!(notice["data"]["status"], "shutting_down");
    assert_eq!(a.close_code().await, 1001);
    assert_eq!(b.close_code().await, 1001);
    stopped.await.unwrap().unwrap();
    assert!(state.registry.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_even_when_a_client_never_answers_the_close() {
    let server = TestServer::start().await;
    let mut silent = RawWs::connect(&server, "/ws").await;
    silent.read_json().await;
    let state = server.state.clone();
    server.stop().await.unwrap();
    assert!(state.registry.is_empty());
    assert_eq!(silent.read_until_close().await, Some(1001));
}
