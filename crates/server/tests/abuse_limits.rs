//! The limits that protect a public server from one caller: publishes per API key per second
//! and new WebSocket connections per client address per second (429 with `Retry-After`).

mod common;

use common::*;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// POSTs `body` to `path` with `key`; returns status, headers and JSON body.
async fn post(server: &TestServer, path: &str, key: &str, body: &Value) -> (u16, HeaderMap, Value) {
    let response = tokio::time::timeout(
        GUARD,
        reqwest::Client::new()
            .post(server.http_url(path))
            .bearer_auth(key)
            .json(body)
            .send(),
    )
    .await
    .expect("the request finishes")
    .expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.expect("a JSON body");
    (status, headers, body)
}

/// A 429 `rate_limited` in the spec's error shape; returns its `Retry-After` seconds.
fn assert_rate_limited(status: u16, headers: &HeaderMap, body: &Value, context: &str) -> u64 {
    assert_eq!(status, 429, "{context}: {body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{context}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{context}: {body}"
    );
    let retry = headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("{context}: a Retry-After header"))
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap_or_else(|e| panic!("{context}: Retry-After is whole seconds: {e}"));
    assert!(retry >= 1, "{context}: Retry-After {retry}");
    retry
}

fn news(n: u32) -> Value {
    json!({"channel": "news", "type": "test", "data": {"n": n}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_publish_rate_gets_429_with_retry_after_on_every_publishing_endpoint_and_another_key_is_unaffected(
) {
    let server = TestServer::start_with(config(
        "[limits]\npublishes_per_key_per_second = 1\npublishes_per_key_burst = 3",
        &[],
    ))
    .await;
    for n in 0..3 {
        let (status, _, body) = post(&server, "/api/v1/publish", PUBLISHER_KEY, &news(n)).await;
        assert_eq!(status, 200, "publish {n} is within the burst: {body}");
    }
    let (status, headers, body) = post(&server, "/api/v1/publish", PUBLISHER_KEY, &news(3)).await;
    let retry = assert_rate_limited(status, &headers, &body, "the fourth publish");

    // One budget for the key, whatever the endpoint; the check comes before the body is read.
    for path in [
        "/api/v1/broadcast",
        "/api/v1/signals",
        "/api/v1/external-signals/sync/signal",
        "/api/v1/alerts",
        "/api/v1/market-data",
        "/api/v1/agent-insights",
        "/api/v1/narratives",
        "/api/v1/trades/t1/events",
    ] {
        let (status, headers, body) = post(&server, path, PUBLISHER_KEY, &json!({})).await;
        assert_rate_limited(status, &headers, &body, path);
    }

    // The other key has its own budget.
    let (status, _, body) = post(&server, "/api/v1/publish", ADMIN_KEY, &news(4)).await;
    assert_eq!(status, 200, "another key is unaffected: {body}");

    // Once the Retry-After has passed, the limited key publishes again.
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let (status, _, body) = post(&server, "/api/v1/publish", PUBLISHER_KEY, &news(5)).await;
    assert_eq!(status, 200, "after Retry-After: {body}");
}

/// A WebSocket handshake to `/ws` with extra headers: the open connection (its welcome
/// read), or the HTTP refusal.
async fn try_ws(
    server: &TestServer,
    headers: &[(&str, &str)],
) -> Result<Ws, (u16, HeaderMap, Value)> {
    try_handshake(server, "/ws", headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_websocket_connects_over_the_limit_gets_429_before_the_upgrade_and_a_connect_after_retry_after_succeeds(
) {
    let server = TestServer::start_with(config(
        "[limits]\nws_connects_per_ip_per_second = 1\nws_connects_per_ip_burst = 2",
        &[],
    ))
    .await;
    // Both stay open: the limit is on new connections, not open ones.
    let _first = try_ws(&server, &[]).await.expect("first connect");
    let _second = try_ws(&server, &[]).await.expect("second connect");
    let (status, headers, body) = match try_ws(&server, &[]).await {
        Ok(ws) => panic!(
            "the third connect in the burst was upgraded: {}",
            ws.welcome
        ),
        Err(refusal) => refusal,
    };
    let retry = assert_rate_limited(status, &headers, &body, "third connect");
    assert_eq!(
        server.state.registry.len(),
        2,
        "the refused one was not upgraded"
    );

    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let _third = try_ws(&server, &[])
        .await
        .expect("a connect after Retry-After is upgraded");
    assert_eq!(server.state.registry.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connects_are_limited_per_forwarded_client_and_an_ipv6_client_by_its_64() {
    let server = TestServer::start_with(config(
        "trusted_proxies = [\"127.0.0.0/8\"]\n[limits]\nws_connects_per_ip_per_second = 1\nws_connects_per_ip_burst = 1",
        &[],
    ))
    .await;
    let _a = try_ws(&server, &[("x-forwarded-for", "2001:db8:0:7::1")])
        .await
        .expect("first of the /64");
    match try_ws(&server, &[("x-forwarded-for", "2001:db8:0:7:ffff::2")]).await {
        Ok(ws) => panic!("another address of the same /64 escaped: {}", ws.welcome),
        Err((status, headers, body)) => {
            assert_rate_limited(status, &headers, &body, "same /64");
        }
    }
    let _b = try_ws(&server, &[("x-forwarded-for", "2001:db8:0:8::1")])
        .await
        .expect("another /64 has its own budget");
    let _c = try_ws(&server, &[("x-forwarded-for", "203.0.113.9")])
        .await
        .expect("another client behind the proxy has its own budget");
}
