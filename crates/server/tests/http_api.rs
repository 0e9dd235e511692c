//! HTTP API tests against the real server: the publishing endpoints (keys, validation, body
//! limits, idempotency, routing), stats and health, and the checks made before a WebSocket
//! upgrade (spec sections 2, 6, 7 and 9).

mod common;

use std::collections::BTreeSet;

use common::*;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The request body limit, inclusive (spec section 9, item 33).
const MAX_BODY: usize = 1_048_576;

/// Every publishing endpoint.
const ENDPOINTS: [&str; 8] = [
    "/api/v1/publish",
    "/api/v1/broadcast",
    "/api/v1/signals",
    "/api/v1/external-signals/sync/signal",
    "/api/v1/alerts",
    "/api/v1/market-data",
    "/api/v1/agent-insights",
    "/api/v1/narratives",
];

/// The endpoints whose body takes an `idempotency_key` (signals dedupe by `signal_id`).
const KEYED_ENDPOINTS: [&str; 6] = [
    "/api/v1/publish",
    "/api/v1/broadcast",
    "/api/v1/alerts",
    "/api/v1/market-data",
    "/api/v1/agent-insights",
    "/api/v1/narratives",
];

/// The two signal endpoints.
const SIGNAL_ENDPOINTS: [&str; 2] = ["/api/v1/signals", "/api/v1/external-signals/sync/signal"];

/// A valid body for `path`; `tag` (of `[A-Za-z0-9_-]`) makes bodies and signal ids distinct.
fn valid_body(path: &str, tag: &str) -> Value {
    match path {
        "/api/v1/publish" => json!({"channel": "news", "type": "headline", "data": {"tag": tag}}),
        "/api/v1/broadcast" => {
            json!({"channels": ["news", "wire"], "type": "headline", "data": {"tag": tag}})
        }
        "/api/v1/signals" | "/api/v1/external-signals/sync/signal" => json!({
            "signal_id": format!("sig-{tag}"), "pair": "EUR_USD", "signal_type": "BUY",
            "confidence_score": 0.5
        }),
        "/api/v1/alerts" => {
            json!({"alert_type": "whale_move", "source": "monitor", "content": format!("moved {tag}")})
        }
        "/api/v1/market-data" => json!({"symbol": "BTC-USD", "data": {"tag": tag}}),
        "/api/v1/agent-insights" => json!({"agent": "scout", "insight": {"tag": tag}}),
        "/api/v1/narratives" => json!({"narrative": format!("risk-on {tag}")}),
        other => panic!("no body for {other}"),
    }
}

/// A channel that the valid body of `path` reaches.
fn target_channel(path: &str) -> &'static str {
    match path {
        "/api/v1/publish" | "/api/v1/broadcast" => "news",
        "/api/v1/signals" | "/api/v1/external-signals/sync/signal" => "signals",
        "/api/v1/alerts" => "alerts",
        "/api/v1/market-data" => "market:BTC-USD",
        "/api/v1/agent-insights" => "agents:scout",
        "/api/v1/narratives" => "narrative",
        other => panic!("no channel for {other}"),
    }
}

/// `body` with an extra `_pad` string making its JSON text exactly `total` bytes long.
fn padded(mut body: Value, total: usize) -> String {
    body["_pad"] = json!("");
    let base = body.to_string().len();
    assert!(base <= total, "the body alone is over {total} bytes");
    body["_pad"] = json!("x".repeat(total - base));
    let text = body.to_string();
    assert_eq!(text.len(), total);
    text
}

/// `body` made exactly `total` bytes long by padding a field that goes into the envelope
/// (unknown top-level fields are dropped, so `padded` does not grow the envelope).
fn padded_in_envelope(path: &str, mut body: Value, total: usize) -> String {
    let grow = |body: &mut Value, extra: usize| match path {
        "/api/v1/publish" | "/api/v1/broadcast" | "/api/v1/market-data" => {
            body["data"]["_pad"] = json!("x".repeat(extra));
        }
        "/api/v1/agent-insights" => body["insight"]["_pad"] = json!("x".repeat(extra)),
        "/api/v1/signals" | "/api/v1/external-signals/sync/signal" => {
            body["metadata"] = json!({ "_pad": "x".repeat(extra) });
        }
        "/api/v1/alerts" => body["embed"] = json!({ "_pad": "x".repeat(extra) }),
        "/api/v1/narratives" => body["narrative"] = json!("x".repeat(extra)),
        other => panic!("no padding for {other}"),
    };
    grow(&mut body, 0);
    let base = body.to_string().len();
    assert!(base <= total, "the body alone is over {total} bytes");
    grow(&mut body, total - base);
    let text = body.to_string();
    assert_eq!(text.len(), total);
    text
}

/// Checks the error shape `{"error":{"code","message","field"?}}` with `status` and `code`.
#[track_caller]
fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str, context: &str) {
    assert_eq!(status, expected_status, "{context}: {body}");
    let keys: Vec<&String> = body.as_object().expect("a JSON object").keys().collect();
    assert_eq!(keys, ["error"], "{context}: {body}");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{context}: {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{context}: a message: {body}"
    );
    if code != "invalid" {
        assert!(error.get("field").is_none(), "{context}: {body}");
    }
}

/// Checks a 422 `invalid` error naming `field`.
#[track_caller]
fn assert_invalid(status: u16, body: &Value, field: &str, context: &str) {
    assert_error(status, body, 422, "invalid", context);
    assert_eq!(body["error"]["field"], field, "{context}: {body}");
}

/// Publications made by the hub so far (one per channel reached).
fn publications(server: &TestServer) -> u64 {
    server.state.hub.stats().publications
}

/// Asserts that nothing is queued for `ws`: the next frame is the answer to a ping.
async fn assert_nothing_received(ws: &mut Ws) {
    ws.send(json!({"type": "ping", "id": 999})).await;
    let next = ws.recv().await;
    assert_eq!(
        (next["type"].as_str(), next["id"].as_i64()),
        (Some("pong"), Some(999)),
        "expected nothing before the pong, got {next}"
    );
}

/// A request with any method, headers and body; returns status, headers and JSON body.
async fn request(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, HeaderValue)],
    body: Option<String>,
) -> (u16, HeaderMap, Value) {
    let mut req = reqwest::Client::new().request(method, server.http_url(path));
    for (name, value) in headers {
        req = req.header(*name, value.clone());
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let resp = tokio::time::timeout(GUARD, req.send())
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// POSTs `body` with the given `Authorization` header value.
async fn post_with_authorization(
    server: &TestServer,
    path: &str,
    authorization: HeaderValue,
    body: &Value,
) -> (u16, HeaderMap, Value) {
    request(
        server,
        reqwest::Method::POST,
        path,
        &[("authorization", authorization)],
        Some(body.to_string()),
    )
    .await
}

/// Sends raw bytes on a new TCP connection and reads one HTTP response: status, head, body.
async fn raw_http(server: &TestServer, request: &[u8]) -> (u16, String, Value) {
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    read_json_response(&mut tcp).await
}

/// One response from `tcp`, its body as JSON (or as a JSON string when it is not JSON).
async fn read_json_response(tcp: &mut tokio::net::TcpStream) -> (u16, String, Value) {
    let (status, head, body) = read_response(tcp)
        .await
        .expect("a whole response before the connection closed");
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    (status, head, body)
}

/// A WebSocket handshake request for `path` with Upgrade headers and `extra` lines.
fn handshake(server: &TestServer, path: &str, version: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n",
        server.addr
    )
    .into_bytes()
}

/// Attempts a WebSocket connection with extra headers; `Ok` is the welcome frame,
/// `Err` the refusal's status, headers and JSON body.
async fn try_ws(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, Value), (u16, HeaderMap, Value)> {
    let ws = try_handshake(server, path, headers).await?;
    let welcome = ws.welcome.clone();
    Ok((ws, welcome))
}

// ---- success: answers and delivery ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_answers_id_channel_epoch_seq_and_delivers_to_the_named_channel_only() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    let sub = ws.subscribe(&["news", "other"]).await;
    let epoch = sub["channels"][0]["epoch"].clone();
    let (status, answer) = server
        .post(
            "/api/v1/publish",
            &json!({"channel": "news", "type": "headline", "data": {"text": "hi", "n": 1.50}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let keys: BTreeSet<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["id", "channel", "epoch", "seq"]),
        "{answer}"
    );
    assert!(
        answer["id"].as_str().unwrap().starts_with("pub_"),
        "{answer}"
    );
    assert_eq!(answer["channel"], "news");
    assert_eq!(answer["epoch"], epoch);
    assert_eq!(answer["seq"], 1);
    let p = ws.recv().await;
    assert_eq!(p["type"], "headline");
    assert_eq!(p["channel"], "news");
    assert_eq!(p["id"], answer["id"]);
    assert_eq!(p["epoch"], epoch);
    assert_eq!(p["seq"], 1);
    assert_eq!(p["data"], json!({"text": "hi", "n": 1.50}));
    assert_nothing_received(&mut ws).await;
    assert_eq!(publications(&server), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_answers_one_position_per_channel_and_delivers_the_same_id_on_each() {
    let server = TestServer::start().await;
    server.publish("wire", json!("earlier")).await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["news", "wire"]).await;
    let (status, answer) = server
        .post(
            "/api/v1/broadcast",
            &json!({"channels": ["news", "wire"], "type": "headline", "data": {"n": 7}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let keys: BTreeSet<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["id", "publications"]), "{answer}");
    let id = answer["id"].as_str().unwrap();
    assert!(id.starts_with("pub_"), "{answer}");
    let positions = answer["publications"].as_array().unwrap();
    assert_eq!(positions.len(), 2, "{answer}");
    for (position, (channel, seq)) in positions.iter().zip([("news", 1), ("wire", 2)]) {
        let keys: BTreeSet<&str> = position
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["channel", "epoch", "seq"]),
            "{answer}"
        );
        assert_eq!(position["channel"], channel);
        assert_eq!(position["seq"], seq);
        assert!(position["epoch"].is_string());
    }
    for position in positions {
        let p = ws.recv().await;
        assert_eq!(p["type"], "headline");
        assert_eq!(p["id"], id, "the same id on every channel");
        assert_eq!(p["channel"], position["channel"]);
        assert_eq!(p["epoch"], position["epoch"]);
        assert_eq!(p["seq"], position["seq"]);
        assert_eq!(p["data"], json!({"n": 7}));
    }
    assert_nothing_received(&mut ws).await;
}

/// Posts a free BUY signal from `bot:7` to `path` and checks the answer and every delivery.
async fn check_signal_routing(path: &str) {
    let server = TestServer::start().await;
    let expected = [
        "signals",
        "signals:type:BUY",
        "signals:pair:EUR_USD",
        "public",
        "unified",
        "bot:7",
    ];
    let mut ws = server.ws("/ws").await;
    let sub = ws.subscribe(&expected).await;
    let signals_epoch = sub["channels"][0]["epoch"].clone();
    let (status, answer) = server
        .post(
            path,
            &json!({"signal_id": "test_001", "pair": " eur_usd", "signal_type": "buy",
                    "entry_price": "1.0950", "confidence_score": 0.5, "source": "bot:7"}),
        )
        .await;
    assert_eq!(status, 200, "{path}: {answer}");
    assert_eq!(answer["signal_id"], "test_001");
    assert_eq!(answer["tier"], "free");
    assert_eq!(answer["channels"], json!(expected), "{path}");
    assert_eq!(answer["epoch"], signals_epoch);
    assert_eq!(answer["seq"], 1);
    let mut ids = BTreeSet::new();
    let mut channels = Vec::new();
    for _ in expected {
        let p = ws.recv().await;
        assert_eq!(p["type"], "signal", "{p}");
        assert_eq!(p["seq"], 1);
        assert_eq!(p["tier"], "free");
        assert_eq!(p["data"]["signal_id"], "test_001");
        assert_eq!(p["data"]["pair"], "EUR_USD");
        assert_eq!(p["data"]["signal_type"], "BUY");
        ids.insert(p["id"].as_str().unwrap().to_string());
        channels.push(p["channel"].as_str().unwrap().to_string());
    }
    assert_eq!(channels, expected, "{path}");
    assert_eq!(ids.len(), 1, "one publication id on every channel: {ids:?}");
    assert_nothing_received(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_answers_signal_id_tier_channels_epoch_seq_and_reaches_every_routing_channel() {
    check_signal_routing("/api/v1/signals").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_external_signals_alias_routes_a_signal_like_api_v1_signals() {
    check_signal_routing("/api/v1/external-signals/sync/signal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_confidence_signal_is_also_routed_to_signals_high_premium_and_whale() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["signals:high"]).await;
    let (status, answer) = server
        .post(
            "/api/v1/signals",
            &json!({"pair": "btc/usd", "signal_type": "SELL", "confidence_score": "0.95"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["tier"], "whale");
    assert!(
        answer["signal_id"].as_str().unwrap().starts_with("sig_"),
        "generated: {answer}"
    );
    assert_eq!(
        answer["channels"],
        json!([
            "signals",
            "signals:high",
            "signals:type:SELL",
            "signals:pair:BTC-USD",
            "public",
            "premium",
            "whale",
            "unified"
        ])
    );
    let stub = ws.recv().await;
    assert_eq!(
        stub["type"], "locked",
        "a free subscriber gets a stub: {stub}"
    );
    assert_eq!(stub["channel"], "signals:high");
    assert_eq!(stub["tier"], "whale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_publish_to_alerts_its_type_unified_and_the_symbols_market_channel() {
    let server = TestServer::start().await;
    let expected = ["alerts", "alerts:whale_move", "unified", "market:BTC-USD"];
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&expected).await;
    let body = json!({"alert_type": "whale_move", "source": "monitor", "symbol": "BTC-USD",
                      "content": "BTC moved", "embed": {"title": "t"}});
    let (status, answer) = server.post("/api/v1/alerts", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["id"].as_str().unwrap().starts_with("pub_"),
        "{answer}"
    );
    let channels: Vec<&str> = answer["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, expected);
    for channel in expected {
        let p = ws.recv().await;
        assert_eq!(p["type"], "alert");
        assert_eq!(p["channel"], channel);
        assert_eq!(p["id"], answer["id"]);
        assert_eq!(p["seq"], 1);
        assert_eq!(p["data"], body);
    }
    assert_nothing_received(&mut ws).await;
}

/// Posts `body` to a typed endpoint that reaches only `channel`, and checks the delivery.
async fn check_typed_publish(path: &str, body: Value, channel: &str, kind: &str) {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&[channel]).await;
    let (status, answer) = server.post(path, &body).await;
    assert_eq!(status, 200, "{path}: {answer}");
    assert!(
        answer["id"].as_str().unwrap().starts_with("pub_"),
        "{answer}"
    );
    let positions = answer["publications"].as_array().unwrap();
    assert_eq!(positions.len(), 1, "{answer}");
    assert_eq!(positions[0]["channel"], channel);
    assert_eq!(positions[0]["seq"], 1);
    let p = ws.recv().await;
    assert_eq!(p["type"], kind);
    assert_eq!(p["channel"], channel);
    assert_eq!(p["id"], answer["id"]);
    assert_eq!(p["epoch"], positions[0]["epoch"]);
    assert_eq!(p["data"], body);
    assert_nothing_received(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_data_publishes_to_the_symbols_market_channel() {
    let body = json!({"symbol": "BTC-USD", "data": {"price": 65000.5, "volume": 12}});
    check_typed_publish("/api/v1/market-data", body, "market:BTC-USD", "market_data").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_insights_publish_to_the_agents_channel() {
    let body = json!({"agent": "scout", "insight": {"text": "bullish", "score": 0.7}});
    check_typed_publish(
        "/api/v1/agent-insights",
        body,
        "agents:scout",
        "agent_insight",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narratives_publish_to_the_narrative_channel() {
    let body = json!({"narrative": "Risk-on across majors"});
    check_typed_publish("/api/v1/narratives", body, "narrative", "narrative").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_signals_all_publishes_on_signals() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["signals"]).await;
    let (status, answer) = server
        .post(
            "/api/v1/publish",
            &json!({"channel": "signals:all", "type": "note", "data": 1}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["channel"], "signals");
    assert_eq!(ws.recv().await["channel"], "signals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_with_a_tier_alias_is_locked_under_the_canonical_tier_name() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["news"]).await;
    let (status, answer) = server
        .post(
            "/api/v1/publish",
            &json!({"channel": "news", "type": "headline", "data": {"secret": 1}, "tier": "Professional"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let stub = ws.recv().await;
    assert_eq!(stub["type"], "locked", "{stub}");
    assert_eq!(stub["tier"], "premium");
    assert_eq!(stub["kind"], "headline");
    assert_eq!(stub["id"], answer["id"]);
    assert!(stub.get("data").is_none(), "{stub}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_key_may_use_every_publish_endpoint() {
    let server = TestServer::start().await;
    for (i, path) in ENDPOINTS.into_iter().enumerate() {
        let body = valid_body(path, &format!("admin{i}"));
        let (status, answer) = server
            .post_raw(path, Some(ADMIN_KEY), body.to_string())
            .await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let server = TestServer::start().await;
    let auth = HeaderValue::from_str(&format!("bearer {PUBLISHER_KEY}")).unwrap();
    let (status, _, answer) = post_with_authorization(
        &server,
        "/api/v1/publish",
        auth,
        &valid_body("/api/v1/publish", "a"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

// ---- API keys ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_endpoint_without_an_api_key_is_401_unauthorized() {
    let server = TestServer::start().await;
    for path in ENDPOINTS {
        let body = valid_body(path, "nokey").to_string();
        let (status, headers, answer) =
            request(&server, reqwest::Method::POST, path, &[], Some(body)).await;
        assert_error(status, &answer, 401, "unauthorized", path);
        assert_eq!(headers["www-authenticate"], "Bearer", "{path}");
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_endpoint_with_a_wrong_api_key_is_401_unauthorized() {
    let server = TestServer::start().await;
    for path in ENDPOINTS {
        for key in [
            "wrong-key",
            "test-publisher-ke",
            "test-publisher-key-",
            "TEST-PUBLISHER-KEY",
        ] {
            let (status, answer) = server
                .post_raw(path, Some(key), valid_body(path, "wrong").to_string())
                .await;
            assert_error(
                status,
                &answer,
                401,
                "unauthorized",
                &format!("{path} with {key}"),
            );
        }
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_authorization_header_is_401_unauthorized() {
    let server = TestServer::start().await;
    let values = [
        HeaderValue::from_static("Bearer"),
        HeaderValue::from_static("Bearer "),
        HeaderValue::from_static(PUBLISHER_KEY),
        HeaderValue::from_str(&format!("Basic {PUBLISHER_KEY}")).unwrap(),
        HeaderValue::from_str(&format!("Token {PUBLISHER_KEY}")).unwrap(),
        HeaderValue::from_str(&format!("Bearer{PUBLISHER_KEY}")).unwrap(),
        HeaderValue::from_str(&format!("Bearer {PUBLISHER_KEY} extra")).unwrap(),
        HeaderValue::from_bytes(b"Bearer test-publisher-key\xff").unwrap(),
    ];
    for path in ENDPOINTS {
        for value in &values {
            let (status, _, answer) = post_with_authorization(
                &server,
                path,
                value.clone(),
                &valid_body(path, "malformed"),
            )
            .await;
            assert_error(
                status,
                &answer,
                401,
                "unauthorized",
                &format!("{path} with {value:?}"),
            );
        }
    }
    assert_eq!(publications(&server), 0);
}

// ---- 400: malformed JSON and wrong shapes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_bad_request_on_every_endpoint() {
    let server = TestServer::start().await;
    for path in ENDPOINTS {
        for body in [
            "{not json",
            "",
            "{\"channel\": \"news\",",
            "{\"a\":1}}",
            "\u{feff}{}",
        ] {
            let (status, answer) = server
                .post_raw(path, Some(PUBLISHER_KEY), body.to_string())
                .await;
            assert_error(
                status,
                &answer,
                400,
                "bad_request",
                &format!("{path} with {body:?}"),
            );
        }
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_json_object_is_400_bad_request_on_every_endpoint() {
    let server = TestServer::start().await;
    for path in ENDPOINTS {
        for body in ["[]", "[{}]", "42", "\"text\"", "null", "true"] {
            let (status, answer) = server
                .post_raw(path, Some(PUBLISHER_KEY), body.to_string())
                .await;
            assert_error(
                status,
                &answer,
                400,
                "bad_request",
                &format!("{path} with {body}"),
            );
        }
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_missing_a_required_field_or_with_a_wrong_json_type_is_400() {
    let server = TestServer::start().await;
    let bodies = [
        json!({"type": "t", "data": 1}),
        json!({"channel": "news", "data": 1}),
        json!({"channel": "news", "type": "t"}),
        json!({"channel": 5, "type": "t", "data": 1}),
        json!({"channel": ["news"], "type": "t", "data": 1}),
        json!({"channel": "news", "type": true, "data": 1}),
        json!({"channel": "news", "type": "t", "data": 1, "tier": 3}),
        json!({"channel": "news", "type": "t", "data": 1, "idempotency_key": 5}),
    ];
    for body in bodies {
        let (status, answer) = server.post("/api/v1/publish", &body).await;
        assert_error(status, &answer, 400, "bad_request", &body.to_string());
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_missing_a_required_field_or_with_a_wrong_json_type_is_400() {
    let server = TestServer::start().await;
    let bodies = [
        json!({"type": "t", "data": 1}),
        json!({"channels": ["news"], "data": 1}),
        json!({"channels": ["news"], "type": "t"}),
        json!({"channels": "news", "type": "t", "data": 1}),
        json!({"channels": ["news", 5], "type": "t", "data": 1}),
        json!({"channel": "news", "type": "t", "data": 1}),
    ];
    for body in bodies {
        let (status, answer) = server.post("/api/v1/broadcast", &body).await;
        assert_error(status, &answer, 400, "bad_request", &body.to_string());
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_known_field_is_400_on_signal_and_typed_endpoints() {
    let server = TestServer::start().await;
    let cases = [
        (
            "/api/v1/signals",
            r#"{"pair":"EUR_USD","pair":"GBP_USD","signal_type":"BUY","confidence_score":0.5}"#,
        ),
        (
            "/api/v1/external-signals/sync/signal",
            r#"{"pair":"EUR_USD","signal_type":"BUY","confidence_score":0.5,"confidence_score":0.9}"#,
        ),
        (
            "/api/v1/alerts",
            r#"{"alert_type":"a","alert_type":"b","source":"s","content":"c"}"#,
        ),
        ("/api/v1/market-data", r#"{"symbol":"X","data":1,"data":2}"#),
        (
            "/api/v1/agent-insights",
            r#"{"agent":"a","agent":"b","insight":1}"#,
        ),
        ("/api/v1/narratives", r#"{"narrative":"a","narrative":"b"}"#),
    ];
    for (path, body) in cases {
        let (status, answer) = server
            .post_raw(path, Some(PUBLISHER_KEY), body.to_string())
            .await;
        assert_error(
            status,
            &answer,
            400,
            "bad_request",
            &format!("{path} with {body}"),
        );
    }
    assert_eq!(publications(&server), 0);
}

/// The signal and typed endpoints' contract (hub `signal.rs`/`typed.rs`): a missing required
/// field or a field of the wrong JSON type breaks a rule (422 naming it), not the shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_and_typed_endpoints_name_a_missing_or_mistyped_field_in_a_422() {
    let server = TestServer::start().await;
    let signal = json!({"pair": "EUR_USD", "signal_type": "BUY", "confidence_score": 0.5});
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    for path in SIGNAL_ENDPOINTS {
        for field in ["pair", "signal_type", "confidence_score"] {
            let mut missing = signal.clone();
            missing.as_object_mut().unwrap().remove(field);
            cases.push((path, missing, field));
            let mut null = signal.clone();
            null[field] = Value::Null;
            cases.push((path, null, field));
        }
        for (field, value) in [
            ("pair", json!(5)),
            ("signal_type", json!(["BUY"])),
            ("confidence_score", json!(true)),
            ("signal_id", json!(12)),
            ("entry_price", json!({"v": 1})),
            ("metadata", json!([1])),
        ] {
            let mut body = signal.clone();
            body[field] = value;
            cases.push((path, body, field));
        }
    }
    let typed = [
        (
            "/api/v1/alerts",
            json!({"alert_type": "a", "source": "s", "content": "c"}),
        ),
        ("/api/v1/market-data", json!({"symbol": "X", "data": 1})),
        (
            "/api/v1/agent-insights",
            json!({"agent": "a", "insight": 1}),
        ),
        ("/api/v1/narratives", json!({"narrative": "n"})),
    ];
    for (path, body) in &typed {
        for field in body.as_object().unwrap().keys() {
            let mut missing = body.clone();
            missing.as_object_mut().unwrap().remove(field);
            cases.push((path, missing, field.as_str()));
        }
    }
    cases.push((
        "/api/v1/alerts",
        json!({"alert_type": 5, "source": "s", "content": "c"}),
        "alert_type",
    ));
    cases.push((
        "/api/v1/alerts",
        json!({"alert_type": "a", "source": "s", "content": "c", "embed": "x"}),
        "embed",
    ));
    cases.push((
        "/api/v1/market-data",
        json!({"symbol": ["X"], "data": 1}),
        "symbol",
    ));
    cases.push((
        "/api/v1/agent-insights",
        json!({"agent": 7, "insight": 1}),
        "agent",
    ));
    for (path, body, field) in cases {
        let (status, answer) = server.post(path, &body).await;
        assert_invalid(status, &answer, field, &format!("{path} with {body}"));
    }
    assert_eq!(publications(&server), 0);
}

// ---- 422: fields that break a rule ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_an_invalid_channel_name_is_422_naming_channel() {
    let server = TestServer::start().await;
    let long = "a".repeat(129);
    for name in [
        "bad name",
        "",
        ":x",
        "-x",
        "a/b",
        "é",
        "a$",
        "news\n",
        long.as_str(),
    ] {
        let (status, answer) = server
            .post(
                "/api/v1/publish",
                &json!({"channel": name, "type": "t", "data": 1}),
            )
            .await;
        assert_invalid(status, &answer, "channel", &format!("{name:?}"));
    }
    assert_eq!(publications(&server), 0);
    let ok = "a".repeat(128);
    let (status, answer) = server
        .post(
            "/api/v1/publish",
            &json!({"channel": ok, "type": "t", "data": 1}),
        )
        .await;
    assert_eq!(status, 200, "128 characters is allowed: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_type_is_422_naming_type_on_publish_and_broadcast() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["news"]).await;
    let reserved = [
        "welcome",
        "subscribed",
        "unsubscribed",
        "authenticated",
        "pong",
        "stats",
        "error",
        "locked",
    ];
    for kind in reserved {
        let (status, answer) = server
            .post(
                "/api/v1/publish",
                &json!({"channel": "news", "type": kind, "data": 1}),
            )
            .await;
        assert_invalid(status, &answer, "type", &format!("publish {kind}"));
        let (status, answer) = server
            .post(
                "/api/v1/broadcast",
                &json!({"channels": ["news"], "type": kind, "data": 1}),
            )
            .await;
        assert_invalid(status, &answer, "type", &format!("broadcast {kind}"));
    }
    assert_nothing_received(&mut ws).await;
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_over_64_characters_or_empty_is_422_and_64_characters_are_accepted() {
    let server = TestServer::start().await;
    for path in ["/api/v1/publish", "/api/v1/broadcast"] {
        for kind in ["a".repeat(65), String::new(), "é".repeat(65)] {
            let mut body = valid_body(path, "t");
            body["type"] = json!(kind);
            let (status, answer) = server.post(path, &body).await;
            assert_invalid(
                status,
                &answer,
                "type",
                &format!("{path} with {} chars", kind.chars().count()),
            );
        }
    }
    assert_eq!(publications(&server), 0);
    for path in ["/api/v1/publish", "/api/v1/broadcast"] {
        for kind in ["a".repeat(64), "é".repeat(64)] {
            let mut body = valid_body(path, "t");
            body["type"] = json!(kind);
            let (status, answer) = server.post(path, &body).await;
            assert_eq!(status, 200, "{path}: 64 characters are allowed: {answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tier_is_422_naming_tier_on_every_endpoint() {
    let server = TestServer::start().await;
    for (i, path) in ENDPOINTS.into_iter().enumerate() {
        for tier in ["platinum", "", "gold"] {
            let mut body = valid_body(path, &format!("tier{i}"));
            body["tier"] = json!(tier);
            let (status, answer) = server.post(path, &body).await;
            assert_invalid(
                status,
                &answer,
                "tier",
                &format!("{path} with tier {tier:?}"),
            );
        }
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confidence_score_outside_0_to_1_is_422_naming_it() {
    let server = TestServer::start().await;
    for path in SIGNAL_ENDPOINTS {
        for score in [
            json!(1.5),
            json!(-0.1),
            json!("1.5"),
            json!("1.0000001"),
            json!("abc"),
        ] {
            let (status, answer) = server
                .post(
                    path,
                    &json!({"pair": "EUR_USD", "signal_type": "BUY", "confidence_score": score}),
                )
                .await;
            assert_invalid(
                status,
                &answer,
                "confidence_score",
                &format!("{path} with {score}"),
            );
        }
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pair_is_422_naming_pair() {
    let server = TestServer::start().await;
    let long = "A".repeat(33);
    for path in SIGNAL_ENDPOINTS {
        for pair in [
            "BTC USD",
            "BTC:USD",
            "",
            "   ",
            "ÉUR",
            "btc$",
            long.as_str(),
        ] {
            let (status, answer) = server
                .post(
                    path,
                    &json!({"pair": pair, "signal_type": "BUY", "confidence_score": 0.5}),
                )
                .await;
            assert_invalid(status, &answer, "pair", &format!("{path} with {pair:?}"));
        }
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_and_infinite_numbers_are_422_naming_the_field() {
    let server = TestServer::start().await;
    let mut cases: Vec<(&str, Value)> = Vec::new();
    for field in ["entry_price", "stop_loss", "take_profit"] {
        for bad in ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e999"] {
            cases.push((field, json!(bad)));
        }
    }
    cases.push(("take_profit", json!([1.1, "NaN"])));
    cases.push(("confidence_score", json!("NaN")));
    for path in SIGNAL_ENDPOINTS {
        for (field, value) in &cases {
            let mut body =
                json!({"pair": "EUR_USD", "signal_type": "BUY", "confidence_score": 0.5});
            body[*field] = value.clone();
            let (status, answer) = server.post(path, &body).await;
            assert_invalid(
                status,
                &answer,
                field,
                &format!("{path} with {field} = {value}"),
            );
        }
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signal_id_is_422_naming_signal_id() {
    let server = TestServer::start().await;
    let long = "x".repeat(129);
    for path in SIGNAL_ENDPOINTS {
        for id in [
            "",
            "has space",
            "slash/id",
            "é",
            "semi;colon",
            long.as_str(),
        ] {
            let (status, answer) = server
                .post(
                    path,
                    &json!({"signal_id": id, "pair": "EUR_USD", "signal_type": "BUY", "confidence_score": 0.5}),
                )
                .await;
            assert_invalid(status, &answer, "signal_id", &format!("{path} with {id:?}"));
        }
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_signal_type_is_422_naming_signal_type() {
    let server = TestServer::start().await;
    for path in SIGNAL_ENDPOINTS {
        for kind in ["scalp", "", "BUY NOW"] {
            let (status, answer) = server
                .post(
                    path,
                    &json!({"pair": "EUR_USD", "signal_type": kind, "confidence_score": 0.5}),
                )
                .await;
            assert_invalid(
                status,
                &answer,
                "signal_type",
                &format!("{path} with {kind:?}"),
            );
        }
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_with_one_invalid_channel_is_422_and_publishes_nothing_on_the_valid_ones() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["news", "wire"]).await;
    let (status, answer) = server
        .post(
            "/api/v1/broadcast",
            &json!({"channels": ["news", "bad name", "wire"], "type": "headline", "data": 1}),
        )
        .await;
    assert_invalid(
        status,
        &answer,
        "channels[1]",
        "one bad name among good ones",
    );
    assert_nothing_received(&mut ws).await;
    assert_eq!(publications(&server), 0);
    // The valid channels still start at seq 1: nothing was sequenced on them.
    assert_eq!(server.publish("news", json!(1)).await["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_with_no_channels_is_422_naming_channels() {
    let server = TestServer::start().await;
    let (status, answer) = server
        .post(
            "/api/v1/broadcast",
            &json!({"channels": [], "type": "headline", "data": 1}),
        )
        .await;
    assert_invalid(status, &answer, "channels", "empty list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_fields_that_break_a_rule_are_422_naming_them() {
    let server = TestServer::start().await;
    let alert = json!({"alert_type": "whale_move", "source": "monitor", "content": "moved"});
    let with = |base: &Value, field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let cases = [
        (
            "/api/v1/alerts",
            with(&alert, "alert_type", json!("has space")),
            "alert_type",
        ),
        (
            "/api/v1/alerts",
            with(&alert, "alert_type", json!("")),
            "alert_type",
        ),
        (
            "/api/v1/alerts",
            with(&alert, "symbol", json!("BTC/USD")),
            "symbol",
        ),
        (
            "/api/v1/alerts",
            with(&alert, "source", json!("  ")),
            "source",
        ),
        (
            "/api/v1/alerts",
            with(&alert, "content", json!("x".repeat(4097))),
            "content",
        ),
        (
            "/api/v1/alerts",
            with(&alert, "idempotency_key", json!("")),
            "idempotency_key",
        ),
        (
            "/api/v1/market-data",
            json!({"symbol": "BTC/USD", "data": 1}),
            "symbol",
        ),
        (
            "/api/v1/market-data",
            json!({"symbol": "A".repeat(122), "data": 1}),
            "symbol",
        ),
        (
            "/api/v1/market-data",
            json!({"symbol": "BTC-USD", "data": " "}),
            "data",
        ),
        (
            "/api/v1/agent-insights",
            json!({"agent": "bad name", "insight": "x"}),
            "agent",
        ),
        (
            "/api/v1/agent-insights",
            json!({"agent": "scout", "insight": ""}),
            "insight",
        ),
        (
            "/api/v1/narratives",
            json!({"narrative": "  "}),
            "narrative",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = server.post(path, &body).await;
        assert_invalid(status, &answer, field, &format!("{path} with {body}"));
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_idempotency_key_is_422_naming_it_on_publish_and_broadcast() {
    let server = TestServer::start().await;
    for path in ["/api/v1/publish", "/api/v1/broadcast"] {
        for key in [String::new(), "k".repeat(129)] {
            let mut body = valid_body(path, "k");
            body["idempotency_key"] = json!(key);
            let (status, answer) = server.post(path, &body).await;
            assert_invalid(
                status,
                &answer,
                "idempotency_key",
                &format!("{path} with {} bytes", key.len()),
            );
        }
    }
    assert_eq!(publications(&server), 0);
}

// ---- body size ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_1_mib_is_413_payload_too_large_on_every_endpoint() {
    let server = TestServer::start().await;
    for (i, path) in ENDPOINTS.into_iter().enumerate() {
        let body = padded(valid_body(path, &format!("big{i}")), MAX_BODY + 1);
        let (status, answer) = server.post_raw(path, Some(PUBLISHER_KEY), body).await;
        assert_error(status, &answer, 413, "payload_too_large", path);
    }
    assert_eq!(publications(&server), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_whose_envelope_cannot_fit_the_outbound_queue_is_413_and_reaches_no_one() {
    let server = TestServer::start().await;
    for (i, path) in ENDPOINTS.into_iter().enumerate() {
        let mut ws = server.ws("/ws").await;
        let before = ws.subscribe(&[target_channel(path)]).await["channels"][0]["seq"]
            .as_u64()
            .expect("a seq");
        // Within the 1 MiB body limit, but its envelope is over the 1 MiB queue.
        let body = padded_in_envelope(path, valid_body(path, &format!("over{i}")), MAX_BODY);
        let (status, answer) = server.post_raw(path, Some(PUBLISHER_KEY), body).await;
        assert_error(status, &answer, 413, "payload_too_large", path);
        // The subscriber was not closed and gets what comes next.
        let small = padded(valid_body(path, &format!("small{i}")), 4096);
        let (status, answer) = server.post_raw(path, Some(PUBLISHER_KEY), small).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let p = ws.recv().await;
        assert_eq!(p["channel"], target_channel(path), "{path}: {p}");
        assert_eq!(
            p["seq"],
            before + 1,
            "{path}: the refused one was not sequenced: {p}"
        );
        ws.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_exactly_1_mib_is_accepted_on_every_endpoint() {
    // Subscribers' queues hold more than the body limit here, so that a body at the limit
    // makes an envelope they can take (with the default 1 MiB queue such an envelope is
    // refused: see the next test).
    let server = TestServer::start_with(config("[limits]\nmax_queue_bytes = 2097152\n", &[])).await;
    for (i, path) in ENDPOINTS.into_iter().enumerate() {
        let mut ws = server.ws("/ws").await;
        ws.subscribe(&[target_channel(path)]).await;
        let body = padded(valid_body(path, &format!("exact{i}")), MAX_BODY);
        let (status, answer) = server.post_raw(path, Some(PUBLISHER_KEY), body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let p = ws.recv().await;
        assert_eq!(p["channel"], target_channel(path), "{path}: {p}");
        ws.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_1_mib_without_content_length_is_413() {
    let server = TestServer::start().await;
    let body = padded(valid_body("/api/v1/publish", "chunked"), MAX_BODY + 1);
    let mut request = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {PUBLISHER_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.addr
    )
    .into_bytes();
    for chunk in body.as_bytes().chunks(64 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (reader, mut writer) = tcp.split();
    // Write and read at once: the server may answer before it has read the whole body.
    let write = async move {
        let _ = writer.write_all(&request).await;
    };
    let read = async move {
        let mut reader = reader;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("payload_too_large") {
            let n = tokio::time::timeout(GUARD, reader.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(
                n > 0,
                "closed without an answer: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).to_string()
    };
    let ((), seen) = tokio::join!(write, read);
    assert!(seen.starts_with("HTTP/1.1 413"), "{seen}");
    assert_eq!(publications(&server), 0);
}

// ---- idempotency ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_with_the_same_body_replays_the_answer_and_publishes_once() {
    let server = TestServer::start().await;
    for path in KEYED_ENDPOINTS {
        let mut ws = server.ws("/ws").await;
        ws.subscribe(&[target_channel(path)]).await;
        let mut body = valid_body(path, "idem");
        body["idempotency_key"] = json!("retry-1");
        let (status, first) = server.post(path, &body).await;
        assert_eq!(status, 200, "{path}: {first}");
        let after_first = publications(&server);
        let (status, second) = server.post(path, &body).await;
        assert_eq!(status, 200, "{path}: {second}");
        assert_eq!(second, first, "{path}: the first answer again, same seq");
        assert_eq!(
            publications(&server),
            after_first,
            "{path}: nothing new published"
        );
        let p = ws.recv().await;
        assert_eq!(p["channel"], target_channel(path));
        assert_nothing_received(&mut ws).await;
        ws.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_with_a_different_body_is_409_conflict() {
    let server = TestServer::start().await;
    for path in KEYED_ENDPOINTS {
        let mut first = valid_body(path, "one");
        first["idempotency_key"] = json!("reused");
        let (status, answer) = server.post(path, &first).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let before = publications(&server);
        let mut second = valid_body(path, "two");
        second["idempotency_key"] = json!("reused");
        let (status, answer) = server.post(path, &second).await;
        assert_error(status, &answer, 409, "conflict", path);
        assert_eq!(publications(&server), before, "{path}: nothing published");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_scoped_per_api_key() {
    let server = TestServer::start().await;
    let body =
        json!({"channel": "news", "type": "t", "data": 1, "idempotency_key": "shared"}).to_string();
    let (status, first) = server
        .post_raw("/api/v1/publish", Some(PUBLISHER_KEY), body.clone())
        .await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = server
        .post_raw("/api/v1/publish", Some(ADMIN_KEY), body)
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        (first["seq"].as_u64(), second["seq"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(publications(&server), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_scoped_per_endpoint() {
    let server = TestServer::start().await;
    let (status, first) = server
        .post(
            "/api/v1/publish",
            &json!({"channel": "news", "type": "t", "data": 1, "idempotency_key": "k"}),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = server
        .post(
            "/api/v1/narratives",
            &json!({"narrative": "n", "idempotency_key": "k"}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["publications"][0]["channel"], "narrative");
    assert_eq!(publications(&server), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_does_not_use_up_its_idempotency_key() {
    let server = TestServer::start().await;
    let (status, answer) = server
        .post(
            "/api/v1/publish",
            &json!({"channel": "news", "type": "locked", "data": 1, "idempotency_key": "k"}),
        )
        .await;
    assert_invalid(status, &answer, "type", "reserved type");
    let (status, answer) = server
        .post(
            "/api/v1/publish",
            &json!({"channel": "news", "type": "t", "data": 1, "idempotency_key": "k"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_signal_id_twice_replays_the_answer_and_publishes_once() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws/signals").await;
    ws.recv().await;
    let body = json!({"signal_id": "dup_1", "pair": "EUR_USD", "signal_type": "BUY", "confidence_score": 0.5});
    let (status, first) = server.post("/api/v1/signals", &body).await;
    assert_eq!(status, 200, "{first}");
    let after_first = publications(&server);
    let (status, second) = server.post("/api/v1/signals", &body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second, first, "the first answer again");
    assert_eq!(publications(&server), after_first, "nothing new published");
    assert_eq!(ws.recv().await["data"]["signal_id"], "dup_1");
    assert_nothing_received(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_id_sent_through_the_alias_is_the_same_signal() {
    let server = TestServer::start().await;
    let body = json!({"signal_id": "dup_2", "pair": "EUR_USD", "signal_type": "BUY", "confidence_score": 0.5});
    let (status, first) = server.post("/api/v1/signals", &body).await;
    assert_eq!(status, 200, "{first}");
    let after_first = publications(&server);
    let (status, second) = server
        .post("/api/v1/external-signals/sync/signal", &body)
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second, first);
    assert_eq!(publications(&server), after_first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_id_reused_with_another_body_publishes_nothing_new() {
    let server = TestServer::start().await;
    let (status, first) = server
        .post(
            "/api/v1/signals",
            &json!({"signal_id": "dup_3", "pair": "EUR_USD", "signal_type": "BUY", "confidence_score": 0.5}),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let after_first = publications(&server);
    let (status, second) = server
        .post(
            "/api/v1/signals",
            &json!({"signal_id": "dup_3", "pair": "GBP_USD", "signal_type": "SELL", "confidence_score": 0.6}),
        )
        .await;
    // Section 4 ("returns the first result") and item 22 (409 for a reused key) both fit.
    match status {
        200 => assert_eq!(second, first),
        _ => assert_error(status, &second, 409, "conflict", "signal_id reused"),
    }
    assert_eq!(publications(&server), after_first, "nothing new published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_id_stays_unique_after_the_dedup_window() {
    let server = TestServer::start_with(config("dedup_window_s = 0", &[])).await;
    let body = json!({"signal_id": "forever_1", "pair": "EUR_USD", "signal_type": "BUY", "confidence_score": 0.5});
    let (status, first) = server.post("/api/v1/signals", &body).await;
    assert_eq!(status, 200, "{first}");
    let after_first = publications(&server);
    let (status, second) = server.post("/api/v1/signals", &body).await;
    if status == 200 {
        assert_eq!(
            second["seq"], first["seq"],
            "the first answer, not a new publication: {second}"
        );
    } else {
        assert_error(status, &second, 409, "conflict", "signal_id reused");
    }
    assert_eq!(
        publications(&server),
        after_first,
        "a signal_id is published once"
    );
}

// ---- stats, health and fallbacks ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_stats_has_every_key_and_counts_connections_and_subscriptions() {
    let server = TestServer::start().await;
    let mut a = server.ws("/ws").await;
    let mut b = server.ws("/ws").await;
    a.subscribe(&["x", "y"]).await;
    b.subscribe(&["y", "z"]).await;
    server.publish("y", json!(1)).await;
    assert_eq!(a.recv().await["channel"], "y");
    assert_eq!(b.recv().await["channel"], "y");
    let (status, stats) = server.get("/ws/stats").await;
    assert_eq!(status, 200, "{stats}");
    for key in [
        "total_connections",
        "active_users",
        "connections_by_auth",
        "users_by_tier",
        "channels",
        "subscriptions",
        "messages_in",
        "messages_out",
        "uptime_s",
    ] {
        assert!(stats.get(key).is_some(), "{key} missing: {stats}");
    }
    assert_eq!(stats["total_connections"], 2);
    assert_eq!(stats["active_users"], 2);
    assert_eq!(
        stats["connections_by_auth"],
        json!({"anonymous": 2, "session": 0, "wallet": 0})
    );
    assert_eq!(
        stats["users_by_tier"],
        json!({"free": 2, "premium": 0, "holder": 0, "whale": 0})
    );
    assert_eq!(stats["channels"], 3, "x, y and z have subscribers");
    assert_eq!(stats["subscriptions"], 4);
    assert_eq!(
        stats["messages_in"], 2,
        "one subscribe frame from each client"
    );
    // Both subscribers got the publication; whether protocol replies count too is not settled.
    assert!(stats["messages_out"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["uptime_s"].is_u64(), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_stats_counts_connections_sharing_an_anonymous_id_as_one_active_user() {
    let server = TestServer::start().await;
    let _a = server.ws("/ws?anonymousId=anon-1").await;
    let _b = server.ws("/ws?anonymousId=anon-1").await;
    let _c = server.ws("/ws").await;
    let (status, stats) = server.get("/ws/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["total_connections"], 3);
    assert_eq!(stats["active_users"], 2, "{stats}");
    assert_eq!(stats["channels"], 0);
    assert_eq!(stats["subscriptions"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_200() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_health_is_200_with_status_ok() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/ws/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_health_reports_storage_broker_and_feeds() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/ws/health").await;
    assert_eq!(status, 200, "{body}");
    for key in ["status", "storage", "broker", "feeds"] {
        assert!(body.get(key).is_some(), "{key} missing: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_path_is_404_json_not_found() {
    let server = TestServer::start().await;
    for path in [
        "/nope",
        "/api/v1/nope",
        "/api/v1/publish/extra",
        "/ws/unknown/deep/path",
    ] {
        let (status, body) = server.get(path).await;
        assert_error(status, &body, 404, "not_found", path);
    }
    let (status, body) = server.post("/api/v2/publish", &json!({})).await;
    assert_error(status, &body, 404, "not_found", "POST /api/v2/publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_json() {
    let server = TestServer::start().await;
    for path in ["/api/v1/publish", "/api/v1/broadcast", "/api/v1/alerts"] {
        let (status, headers, body) = request(&server, reqwest::Method::GET, path, &[], None).await;
        assert_eq!(status, 405, "{path}: {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
        let allow = headers
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            allow.is_some_and(|a| a.contains("POST")),
            "{path}: Allow names POST"
        );
    }
    let (status, _, body) = request(
        &server,
        reqwest::Method::POST,
        "/ws/stats",
        &[],
        Some("{}".into()),
    )
    .await;
    assert_eq!(status, 405, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
}

// ---- WebSocket upgrade checks ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_path_without_upgrade_headers_is_400_json() {
    let server = TestServer::start().await;
    for path in ["/ws", "/ws/signals", "/ws/market/BTC-USD", "/ws/bots/7"] {
        let (status, body) = server.get(path).await;
        assert_error(status, &body, 400, "bad_request", path);
    }
    assert_eq!(server.state.registry.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_version_8_is_400_and_names_version_13() {
    let server = TestServer::start().await;
    let (status, head, body) = raw_http(&server, &handshake(&server, "/ws", "8", "")).await;
    assert_error(
        status,
        &body,
        400,
        "bad_request",
        "Sec-WebSocket-Version: 8",
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "the answer names the supported version: {head}"
    );
    assert_eq!(server.state.registry.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_without_a_valid_key_is_400() {
    let server = TestServer::start().await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    let (status, _, body) = raw_http(&server, request.as_bytes()).await;
    assert_error(status, &body, 400, "bad_request", "no Sec-WebSocket-Key");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    let (status, _, body) = raw_http(&server, request.as_bytes()).await;
    assert_error(status, &body, 400, "bad_request", "a key of 5 bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_at_connect_is_401_before_the_upgrade() {
    let server = TestServer::start().await;
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("/ws?token=x", &[]),
        ("/ws?sessionToken=x", &[]),
        ("/ws/signals?token=x", &[]),
        ("/ws", &[("authorization", "Bearer x")]),
    ];
    for (path, headers) in cases {
        match try_ws(&server, path, headers).await {
            Ok((_, welcome)) => panic!("{path}: upgraded: {welcome}"),
            Err((status, _, body)) => assert_error(status, &body, 401, "unauthorized", path),
        }
    }
    assert_eq!(server.state.registry.len(), 0);
}

fn origin_config() -> signalhub::Config {
    config("allowed_origins = [\"https://ok.example\"]", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_403_when_allowed_origins_is_set() {
    let server = TestServer::start_with(origin_config()).await;
    for origin in [
        "https://evil.example",
        "https://OK.example",
        "https://ok.example/",
        "http://ok.example",
        "null",
    ] {
        match try_ws(&server, "/ws", &[("origin", origin)]).await {
            Ok((_, welcome)) => panic!("{origin}: upgraded: {welcome}"),
            Err((status, _, body)) => assert_error(status, &body, 403, "forbidden", origin),
        }
    }
    assert_eq!(server.state.registry.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origin_is_accepted() {
    let server = TestServer::start_with(origin_config()).await;
    let result = try_ws(&server, "/ws", &[("origin", "https://ok.example")]).await;
    let (_ws, welcome) = result.map_err(|e| format!("{e:?}")).unwrap();
    assert_eq!(welcome["auth"], "anonymous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_origin_is_accepted_when_allowed_origins_is_set() {
    let server = TestServer::start_with(origin_config()).await;
    let ws = server.ws("/ws").await;
    assert_eq!(ws.welcome["type"], "welcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_over_the_limit_get_429_before_the_upgrade() {
    let server = TestServer::start_with(config("[limits]\nconnections_per_ip = 2", &[])).await;
    let _a = server.ws("/ws").await;
    let _b = server.ws("/ws").await;
    match try_ws(&server, "/ws", &[]).await {
        Ok((_, welcome)) => panic!("a third connection was upgraded: {welcome}"),
        Err((status, headers, body)) => {
            assert_error(status, &body, 429, "rate_limited", "third connection");
            let retry = headers.get("retry-after").expect("Retry-After");
            assert!(retry.to_str().unwrap().parse::<u64>().is_ok(), "{retry:?}");
        }
    }
    assert_eq!(server.state.registry.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_frees_its_per_ip_slot() {
    let server = TestServer::start_with(config("[limits]\nconnections_per_ip = 2", &[])).await;
    let a = server.ws("/ws").await;
    let _b = server.ws("/ws").await;
    a.close().await;
    let state = server.state.clone();
    eventually(|| state.registry.len() == 1).await;
    // The slot is released just after the registry entry: retry until it is.
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        match try_ws(&server, "/ws", &[]).await {
            Ok(_) => break,
            Err((429, _, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(other) => panic!("the freed slot was not reused: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_per_ip_limit_counts_each_forwarded_client() {
    let server = TestServer::start_with(config(
        "trusted_proxies = [\"127.0.0.0/8\"]\n[limits]\nconnections_per_ip = 2",
        &[],
    ))
    .await;
    let alice = [("x-forwarded-for", "203.0.113.1")];
    let (_a1, _) = try_ws(&server, "/ws", &alice)
        .await
        .expect("first of alice");
    let (_a2, _) = try_ws(&server, "/ws", &alice)
        .await
        .expect("second of alice");
    match try_ws(&server, "/ws", &alice).await {
        Ok((_, welcome)) => panic!("alice's third connection was upgraded: {welcome}"),
        Err((status, _, body)) => assert_error(status, &body, 429, "rate_limited", "alice 3"),
    }
    // Another client behind the same proxy has its own budget; so does a client whose own
    // spoofed entry sits left of the address the proxy appended.
    let bob = [("x-forwarded-for", "203.0.113.2")];
    let (_b1, _) = try_ws(&server, "/ws", &bob)
        .await
        .expect("bob is not alice");
    let spoof = [("x-forwarded-for", "203.0.113.1, 198.51.100.7")];
    let (_c1, _) = try_ws(&server, "/ws", &spoof)
        .await
        .expect("the right-most entry counts");
    let rfc7239 = [("forwarded", "for=\"[2001:db8::5]:443\"")];
    let (_d1, _) = try_ws(&server, "/ws", &rfc7239)
        .await
        .expect("Forwarded is read");
    assert_eq!(server.state.registry.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_x_forwarded_for_cannot_escape_the_per_ip_limit() {
    let server = TestServer::start_with(config("[limits]\nconnections_per_ip = 2", &[])).await;
    let _a = try_ws(&server, "/ws", &[("x-forwarded-for", "203.0.113.1")])
        .await
        .expect("first");
    let _b = try_ws(&server, "/ws", &[("x-forwarded-for", "203.0.113.2")])
        .await
        .expect("second");
    match try_ws(&server, "/ws", &[("x-forwarded-for", "203.0.113.3")]).await {
        Ok((_, welcome)) => panic!("a forged X-Forwarded-For was believed: {welcome}"),
        Err((status, _, body)) => assert_error(status, &body, 429, "rate_limited", "third"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_trusted_proxies_entry_is_a_configuration_error_naming_it() {
    let file = signalhub::config::parse_file("trusted_proxies = [\"proxy.example\"]").unwrap();
    let env: [(&str, &str); 1] = [("SIGNALHUB_STORE", "sqlite::memory:")];
    let e = signalhub::Config::resolve(file, &Default::default(), &env[..]).unwrap_err();
    assert_eq!(e.field, "trusted_proxies");
    let env = [("SIGNALHUB_TRUSTED_PROXIES", "10.0.0.0/8,nope")];
    let e =
        signalhub::Config::resolve(Default::default(), &Default::default(), &env[..]).unwrap_err();
    assert_eq!(e.field, "SIGNALHUB_TRUSTED_PROXIES");
    assert!(e.message.contains("nope"), "{}", e.message);
}

/// The `signalhub_*` names in `text` from `from` up to the next blank line.
fn documented_metrics(text: &str, from: &str) -> BTreeSet<String> {
    let start = text.find(from).expect("the metric list is there");
    let end = text[start..].find("\n\n").map_or(text.len(), |i| start + i);
    text[start..end]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("signalhub_"))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn the_documented_metric_lists_are_exactly_what_metrics_serves() {
    let server = TestServer::start().await;
    let text = server.get_raw("/metrics", None).await;
    let served: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split([' ', '{']).next())
        .map(String::from)
        .collect();
    assert!(
        served.contains("signalhub_direct_deliveries_total"),
        "{text}"
    );
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let protocol = std::fs::read_to_string(format!("{root}/docs/protocol.md")).unwrap();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    assert_eq!(
        documented_metrics(&protocol, "`/metrics` families:"),
        served,
        "docs/protocol.md section 9"
    );
    assert_eq!(
        documented_metrics(&protocol, "- `/metrics` (OpenMetrics text)"),
        served,
        "docs/protocol.md section 10"
    );
    assert_eq!(
        documented_metrics(&readme, "`/metrics` (Prometheus"),
        served,
        "README.md"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_stopping_ws_health_answers_503_with_status_unavailable_and_health_stays_200() {
    let server = TestServer::start().await;
    server.state.begin_stopping();
    let (status, body) = server.get("/ws/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["stopping"], true, "{body}");
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/ws/stats").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
}
