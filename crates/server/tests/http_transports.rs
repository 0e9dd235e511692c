//! SSE, long-poll and plain HTTP connections against the real server: admin tier changes
//! reach open streams and waiting polls, polls and streams count against the per-IP limit
//! and name at most 100 channels, request bodies and idle connections are timed out, an
//! address's HTTP connections are bounded, and answers sent before a request was read whole
//! reach the client instead of a reset (issue #10, items 2, 4, 5 and 8).

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "integration-test-jwt-secret-0123456789";

fn server_config(toml: &str) -> signalhub::Config {
    config(toml, &[("SIGNALHUB_JWT_SECRET", SECRET)])
}

/// A session token for `user` at `tier`, valid for an hour.
fn token(user: &str, tier: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": user, "tier": tier, "exp": exp}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn set_tier(server: &TestServer, user: &str, tier: &str) -> Value {
    let (status, body) = server
        .post_raw(
            &format!("/api/v1/users/{user}/tier"),
            Some(ADMIN_KEY),
            json!({ "tier": tier }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Posts a premium (confidence 0.85) signal, which goes to `signals` and `premium`.
async fn post_premium_signal(server: &TestServer) {
    let (status, answer) = server
        .post(
            "/api/v1/signals",
            &json!({"pair": "EUR_USD", "signal_type": "BUY", "entry_price": 1.095,
                    "confidence_score": 0.85}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tier"], "premium", "{answer}");
}

/// GETs `/api/v1/poll?{query}`: status and JSON body.
async fn poll(server: &TestServer, query: &str) -> (u16, Value) {
    server.get(&format!("/api/v1/poll?{query}")).await
}

fn subscribers(server: &TestServer, channel: &str) -> usize {
    server.state.hub.subscribers(channel).len()
}

#[track_caller]
fn assert_error(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

// ---- item 2: admin tier changes reach SSE streams and long-polls ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_sse_stream_of_a_downgraded_user_gets_locked_signals() {
    let server = TestServer::start_with(server_config("")).await;
    let query = format!("channels=signals&token={}", token("alice", "premium"));
    let (status, mut sse) = server.sse(&query, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(sse.next_event().await.event.as_deref(), Some("subscribed"));
    post_premium_signal(&server).await;
    let full = sse.next_event().await.json();
    assert_eq!(full["type"], "signal", "premium gets the data: {full}");

    let answer = set_tier(&server, "alice", "free").await;
    assert_eq!(answer["connections"], 1, "the SSE stream is one of alice's");
    let notice = sse.next_event().await;
    assert_eq!(notice.event.as_deref(), Some("authenticated"));
    assert_eq!(
        notice.json(),
        json!({"type": "authenticated", "auth": "session", "tier": "free", "user": "alice"})
    );
    post_premium_signal(&server).await;
    let stub = sse.next_event().await.json();
    assert_eq!(stub["type"], "locked", "{stub}");
    assert_eq!(stub["tier"], "premium", "{stub}");
    assert!(stub.get("data").is_none(), "{stub}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_sse_stream_of_a_downgraded_user_loses_channels_above_its_new_tier() {
    let server = TestServer::start_with(server_config("")).await;
    let query = format!("channels=premium,news&token={}", token("alice", "premium"));
    let (status, mut sse) = server.sse(&query, &[]).await;
    assert_eq!(status, 200);
    sse.next_event().await;
    set_tier(&server, "alice", "free").await;
    let removed = sse.next_event().await;
    assert_eq!(removed.event.as_deref(), Some("unsubscribed"));
    assert_eq!(
        removed.json(),
        json!({"type": "unsubscribed", "channels": ["premium"], "reason": "tier_changed"})
    );
    assert_eq!(
        sse.next_event().await.event.as_deref(),
        Some("authenticated")
    );
    assert_eq!(subscribers(&server, "premium"), 0);
    // The stream goes on with what the new tier may read.
    server.publish("news", json!({"n": 1})).await;
    let e = sse.next_event().await.json();
    assert_eq!(
        (e["channel"].as_str(), e["seq"].as_u64()),
        (Some("news"), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_long_poll_of_a_downgraded_user_never_returns_premium_data() {
    let server = std::sync::Arc::new(
        TestServer::start_with(server_config("[limits]\npoll_timeout_s = 3")).await,
    );
    let alice = token("alice", "premium");
    let waiting = {
        let (server, query) = (server.clone(), format!("channels=signals&token={alice}"));
        tokio::spawn(async move { poll(&server, &query).await })
    };
    eventually(|| subscribers(&server, "signals") == 1).await;
    let answer = set_tier(&server, "alice", "free").await;
    assert_eq!(
        answer["connections"], 1,
        "the waiting poll is one of alice's"
    );
    post_premium_signal(&server).await;
    let (status, first) = waiting.await.unwrap();
    assert_eq!(status, 200, "{first}");
    // The next poll from the returned cursor gets whatever the first did not.
    let cursor = first["cursor"].as_str().unwrap();
    let (status, second) = poll(
        &server,
        &format!("channels=signals&token={alice}&cursor={cursor}"),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let seen: Vec<&Value> = first["publications"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["publications"].as_array().unwrap())
        .collect();
    assert_eq!(seen.len(), 1, "the signal, once: {first} {second}");
    assert_eq!(seen[0]["type"], "locked", "{}", seen[0]);
    assert!(seen[0].get("data").is_none(), "{}", seen[0]);
}

// ---- item 4: the per-IP limit and the channel bound ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_and_sse_streams_count_against_the_per_ip_connection_limit() {
    let server = std::sync::Arc::new(
        TestServer::start_with(config(
            "[limits]\nconnections_per_ip = 3\npoll_timeout_s = 5",
            &[],
        ))
        .await,
    );
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["c"]).await;
    let (status, _sse) = server.sse("channels=c", &[]).await;
    assert_eq!(status, 200);
    let waiting = {
        let server = server.clone();
        tokio::spawn(async move { poll(&server, "channels=c").await })
    };
    eventually(|| subscribers(&server, "c") == 3).await;

    let (status, body) = poll(&server, "channels=c").await;
    assert_error(status, &body, 429, "rate_limited");
    let (status, _) = server.sse("channels=c", &[]).await;
    assert_eq!(status, 429, "SSE shares the limit");
    match tokio_tungstenite::connect_async(server.ws_url("/ws")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429)
        }
        other => panic!("expected 429 before the upgrade, got {other:?}"),
    }

    // A closed WebSocket frees its slot for a poll.
    ws.close().await;
    eventually(|| subscribers(&server, "c") == 2).await;
    server.publish("c", json!({"n": 1})).await;
    let (status, body) = poll(&server, "channels=c").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["publications"][0]["seq"], 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_long_poll_naming_more_than_100_channels_are_400() {
    let server = TestServer::start().await;
    let names = |n: usize| {
        (0..n)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let many = names(101);
    let (status, body) = poll(&server, &format!("channels={many}")).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, _) = server.sse(&format!("channels={many}"), &[]).await;
    assert_eq!(status, 400);
    // Invalid names past the bound do not matter: the count is checked first.
    let (status, body) = poll(&server, &format!("channels={many},bad%20name")).await;
    assert_error(status, &body, 400, "bad_request");
    assert_eq!(subscribers(&server, "c0"), 0, "nothing was subscribed");

    let (status, mut sse) = server.sse(&format!("channels={}", names(100)), &[]).await;
    assert_eq!(status, 200, "100 channels are allowed");
    let opened = sse.next_event().await.json();
    assert_eq!(opened["channels"].as_array().unwrap().len(), 100);
}

// ---- raw HTTP/1.1 over TCP ----

/// Sends `GET /health` on a kept-alive connection and asserts 200.
async fn health(tcp: &mut TcpStream) {
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = read_response(tcp).await.unwrap();
    assert_eq!(status, 200, "{head}");
}

/// Reads until the server closes the connection: true for a clean close (FIN), false
/// for a reset.
async fn closed_cleanly(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(GUARD, tcp.read(&mut buf))
            .await
            .expect("the server closes the connection")
        {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

// ---- item 5: body and idle timeouts, HTTP connections per address ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_trickles_past_body_read_timeout_is_answered_408() {
    let server = TestServer::start_with(config("[limits]\nbody_read_timeout_s = 1", &[])).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    write
        .write_all(
            b"POST /api/v1/auth/wallet HTTP/1.1\r\nHost: test\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    // One byte every 200 ms: the whole body would take over three minutes.
    let trickle = tokio::spawn(async move {
        for _ in 0..999 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let (status, head, body) = read_response(&mut read)
        .await
        .expect("an answer before the body is complete, not a reset");
    trickle.abort();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(status, &body, 408, "request_timeout");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_http_connections_per_ip_get_429_and_a_clean_close() {
    let server = TestServer::start_with(config("[limits]\nhttp_connections_per_ip = 3", &[])).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        health(&mut tcp).await;
        open.push(tcp);
    }
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut extra).await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_error(status, &body, 429, "rate_limited");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
    assert!(
        closed_cleanly(&mut extra).await,
        "FIN after the 429, no reset"
    );
    // The kept-alive connections still work, and closing one frees its slot.
    health(&mut open[0]).await;
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot is never freed"
        );
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        if read_response(&mut tcp).await.unwrap().0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_left_idle_past_http_idle_timeout_is_closed() {
    let server = TestServer::start_with(config("[limits]\nhttp_idle_timeout_s = 1", &[])).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    health(&mut tcp).await;
    health(&mut tcp).await;
    assert!(closed_cleanly(&mut tcp).await, "closed with a FIN");
    // Nothing sent at all: closed as well.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_cleanly(&mut silent).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_outlives_the_http_idle_timeout() {
    let server = TestServer::start_with(config("[limits]\nhttp_idle_timeout_s = 1", &[])).await;
    let (status, mut sse) = server.sse("channels=news", &[]).await;
    assert_eq!(status, 200);
    sse.next_event().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.publish("news", json!({"n": 1})).await;
    assert_eq!(sse.next_event().await.json()["seq"], 1);
}

// ---- item 8: answers, not resets ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_mib_post_on_a_kept_alive_connection_is_answered_413_not_reset() {
    let server = TestServer::start().await;
    let body = vec![b' '; 2 << 20];
    for attempt in 0..8 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        health(&mut tcp).await;
        let head = format!(
            "POST /api/v1/publish HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {PUBLISHER_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        // In 64 KiB pieces with a pause between them, as over a real network: the answer
        // comes before the body is all sent.
        let written = tokio::time::timeout(GUARD, async {
            for piece in body.chunks(64 * 1024) {
                tcp.write_all(piece).await?;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            std::io::Result::Ok(())
        })
        .await
        .expect("the body is taken");
        assert!(written.is_ok(), "attempt {attempt}: {written:?}");
        let (status, head, answer) = read_response(&mut tcp)
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status, 413, "attempt {attempt}: {head}");
        assert_error(status, &answer, 413, "payload_too_large");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_not_capped_by_http_connections_per_ip() {
    // Behind a proxy every client arrives from the proxy's address: the proxy takes no
    // slot, and its clients are limited by their forwarded addresses instead.
    let server = TestServer::start_with(config(
        "trusted_proxies = [\"127.0.0.1\"]\n[limits]\nhttp_connections_per_ip = 2",
        &[],
    ))
    .await;
    let mut open = Vec::new();
    for _ in 0..5 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        health(&mut tcp).await;
        open.push(tcp);
    }
    for tcp in &mut open {
        health(tcp).await;
    }
}
