//! Authentication against the real server: session tokens at connect and in `auth` frames,
//! tiers and owner channels, token expiry (4001), the admin token, tier and disconnect
//! endpoints, trade events, `/ws/stats` counts, and wallet sign-in (EIP-4361 messages signed
//! with EIP-191 `personal_sign`) with its balance providers.
//!
//! Tokens are minted here with `jsonwebtoken` (or by hand, for the ones no library would
//! produce); wallets are fixed k256 keys.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use signalhub::auth::wallet::{address_of, eip55, personal_sign_hash};

// ---- tokens ----

const SECRET: &str = "integration-test-jwt-secret-0123456789";

fn secret_config() -> signalhub::Config {
    config("", &[("SIGNALHUB_JWT_SECRET", SECRET)])
}

async fn secret_server() -> TestServer {
    TestServer::start_with(secret_config()).await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn testdata(name: &str) -> String {
    format!("{}/src/auth/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sign_hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// `claims` signed with the test secret.
fn signed(claims: Value) -> String {
    sign_hs256(SECRET.as_bytes(), &claims)
}

/// A session token for `user` at `tier`, valid for an hour, signed with the test secret.
fn token(user: &str, tier: &str) -> String {
    signed(json!({"sub": user, "tier": tier, "exp": now() + 3600}))
}

/// A token signed with the test secret over a hand-written header (jsonwebtoken's own
/// HMAC, so only the header differs from a library-built token).
fn token_with_header(header: &str, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{signing_input}.{signature}")
}

/// The claims of a token, unverified.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

// ---- connections ----

/// Opens a WebSocket on `path` with extra request headers: the connection (welcome read),
/// or the HTTP status and JSON body that refused the upgrade.
async fn try_connect(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, (u16, Value)> {
    try_handshake(server, path, headers)
        .await
        .map_err(|(status, _, body)| (status, body))
}

async fn connect(server: &TestServer, path: &str) -> Ws {
    match try_connect(server, path, &[]).await {
        Ok(ws) => ws,
        Err((status, body)) => panic!("{path}: refused with {status}: {body}"),
    }
}

/// Connects to `/ws` with `token` as the `token=` query parameter.
async fn connect_with(server: &TestServer, token: &str) -> Ws {
    connect(server, &format!("/ws?token={token}")).await
}

/// Asserts that `/ws?token=...` is refused with 401 `unauthorized` before the upgrade.
#[track_caller]
fn assert_refused_401(result: Result<Ws, (u16, Value)>, context: &str) {
    match result {
        Ok(ws) => panic!("{context}: upgraded: {}", ws.welcome),
        Err((status, body)) => {
            assert_eq!(status, 401, "{context}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{context}: {body}");
        }
    }
}

async fn assert_token_refused(server: &TestServer, token: &str, context: &str) {
    let result = try_connect(server, &format!("/ws?token={token}"), &[]).await;
    assert_refused_401(result, context);
    assert_eq!(
        server.state.registry.len(),
        0,
        "{context}: nothing registered"
    );
}

/// Sends a ping and returns every frame received before its pong.
async fn frames_before_pong(ws: &mut Ws, id: i64) -> Vec<Value> {
    ws.send(json!({"type": "ping", "id": id})).await;
    let mut frames = Vec::new();
    loop {
        let frame = ws.recv().await;
        if frame["type"] == "pong" && frame["id"] == id {
            return frames;
        }
        frames.push(frame);
    }
}

/// Asserts that nothing is queued for `ws`: the next frame is the answer to a ping.
async fn assert_nothing_received(ws: &mut Ws) {
    let frames = frames_before_pong(ws, 999).await;
    assert!(frames.is_empty(), "expected nothing, got {frames:?}");
}

async fn admin_post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    server
        .post_raw(path, Some(ADMIN_KEY), body.to_string())
        .await
}

#[track_caller]
fn assert_invalid(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid", "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
}

/// Posts a EUR_USD BUY signal with `confidence` and returns the answer.
async fn post_signal(server: &TestServer, confidence: f64) -> Value {
    let (status, answer) = server
        .post(
            "/api/v1/signals",
            &json!({"pair": "EUR_USD", "signal_type": "BUY", "entry_price": 1.095,
                    "confidence_score": confidence}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[track_caller]
fn assert_signal(frame: &Value, channel: &str, tier: &str) {
    assert_eq!(frame["type"], "signal", "{frame}");
    assert_eq!(frame["channel"], channel, "{frame}");
    assert_eq!(frame["data"]["tier"], tier, "{frame}");
}

#[track_caller]
fn assert_locked(frame: &Value, channel: &str, tier: &str) {
    assert_eq!(frame["type"], "locked", "{frame}");
    assert_eq!(frame["channel"], channel, "{frame}");
    assert_eq!(frame["tier"], tier, "{frame}");
    assert_eq!(frame["kind"], "signal", "{frame}");
    assert!(frame.get("data").is_none(), "no data in a stub: {frame}");
}

#[track_caller]
fn assert_subscribe_error(frame: &Value, code: &str, channel: &str, message: &str) {
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], code, "{frame}");
    assert_eq!(frame["channel"], channel, "{frame}");
    assert_eq!(frame["message"], message, "{frame}");
}

// ---- tiers: delivery on shared and tiered channels ----

/// Free, premium and whale session connections, each subscribed to `channels`.
async fn three_tiers(server: &TestServer, channels: &[&str]) -> [Ws; 3] {
    let mut out = Vec::new();
    for (user, tier) in [("f", "free"), ("p", "premium"), ("w", "whale")] {
        let mut ws = connect_with(server, &token(user, tier)).await;
        assert_eq!(ws.welcome["tier"], tier);
        ws.subscribe(channels).await;
        out.push(ws);
    }
    out.try_into().ok().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_premium_signal_on_signals_is_locked_for_free_and_delivered_to_premium_and_whale() {
    let server = secret_server().await;
    let [mut free, mut premium, mut whale] = three_tiers(&server, &["signals"]).await;
    let answer = post_signal(&server, 0.85).await;
    assert_eq!(answer["tier"], "premium");
    let stub = free.recv().await;
    assert_locked(&stub, "signals", "premium");
    assert_eq!(stub["id"], premium.recv().await["id"]);
    assert_signal(&whale.recv().await, "signals", "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whale_signal_on_signals_is_delivered_only_to_whale_and_locked_below() {
    let server = secret_server().await;
    let [mut free, mut premium, mut whale] = three_tiers(&server, &["signals"]).await;
    post_signal(&server, 0.95).await;
    assert_locked(&free.recv().await, "signals", "whale");
    assert_locked(&premium.recv().await, "signals", "whale");
    assert_signal(&whale.recv().await, "signals", "whale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_signal_on_signals_is_delivered_to_every_tier() {
    let server = secret_server().await;
    let [mut free, mut premium, mut whale] = three_tiers(&server, &["signals"]).await;
    post_signal(&server, 0.5).await;
    for ws in [&mut free, &mut premium, &mut whale] {
        assert_signal(&ws.recv().await, "signals", "free");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_channel_is_open_to_free_and_locks_higher_tier_signals() {
    let server = secret_server().await;
    let mut free = connect_with(&server, &token("f", "free")).await;
    free.subscribe(&["public"]).await;
    post_signal(&server, 0.5).await;
    assert_signal(&free.recv().await, "public", "free");
    post_signal(&server, 0.85).await;
    assert_locked(&free.recv().await, "public", "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_premium_channel_is_forbidden_to_free_and_delivers_to_premium_and_whale() {
    let server = secret_server().await;
    let mut free = connect_with(&server, &token("f", "free")).await;
    free.send(json!({"type": "subscribe", "id": 1, "channels": ["premium"]}))
        .await;
    assert_subscribe_error(
        &free.recv().await,
        "forbidden",
        "premium",
        "tier premium required",
    );
    let mut premium = connect_with(&server, &token("p", "premium")).await;
    premium.subscribe(&["premium"]).await;
    let mut whale = connect_with(&server, &token("w", "whale")).await;
    whale.subscribe(&["premium"]).await;
    post_signal(&server, 0.85).await;
    assert_signal(&premium.recv().await, "premium", "premium");
    assert_signal(&whale.recv().await, "premium", "premium");
    assert_nothing_received(&mut free).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whale_channel_is_forbidden_to_premium_and_delivers_to_whale() {
    let server = secret_server().await;
    let mut premium = connect_with(&server, &token("p", "premium")).await;
    premium
        .send(json!({"type": "subscribe", "id": 1, "channels": ["whale"]}))
        .await;
    assert_subscribe_error(
        &premium.recv().await,
        "forbidden",
        "whale",
        "tier whale required",
    );
    let mut whale = connect_with(&server, &token("w", "whale")).await;
    whale.subscribe(&["whale"]).await;
    post_signal(&server, 0.95).await;
    assert_signal(&whale.recv().await, "whale", "whale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_premium_channel_a_whale_signal_is_locked_for_premium() {
    let server = secret_server().await;
    let mut premium = connect_with(&server, &token("p", "premium")).await;
    premium.subscribe(&["premium"]).await;
    post_signal(&server, 0.95).await;
    assert_locked(&premium.recv().await, "premium", "whale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_may_subscribe_to_premium_but_not_to_whale() {
    let server = secret_server().await;
    let mut holder = connect_with(&server, &token("h", "holder")).await;
    assert_eq!(holder.welcome["tier"], "holder");
    holder.subscribe(&["premium"]).await;
    holder
        .send(json!({"type": "subscribe", "id": 2, "channels": ["whale"]}))
        .await;
    assert_subscribe_error(
        &holder.recv().await,
        "forbidden",
        "whale",
        "tier whale required",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_tier_aliases_and_case_are_accepted_and_reported_canonically() {
    let server = secret_server().await;
    for (claim, canonical) in [
        ("INSTITUTIONAL", "whale"),
        ("Professional", "premium"),
        ("starter", "free"),
        ("PREMIUM", "premium"),
    ] {
        let ws = connect_with(&server, &token("u", claim)).await;
        assert_eq!(ws.welcome["tier"], canonical, "{claim}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_a_tier_claim_is_free() {
    let server = secret_server().await;
    let ws = connect_with(&server, &signed(json!({"sub": "u", "exp": now() + 60}))).await;
    assert_eq!(ws.welcome["tier"], "free");
    assert_eq!(ws.welcome["auth"], "session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_an_unknown_tier_is_401_before_the_upgrade() {
    let server = secret_server().await;
    assert_token_refused(&server, &token("u", "platinum"), "unknown tier").await;
}

// ---- owner channels ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_a_cannot_subscribe_to_the_trades_channel_of_user_b() {
    let server = secret_server().await;
    let mut alice = connect_with(&server, &token("alice", "whale")).await;
    alice
        .send(json!({"type": "subscribe", "id": 4, "channels": ["trades:bob", "user:bob"]}))
        .await;
    let e = alice.recv().await;
    assert_subscribe_error(
        &e,
        "forbidden",
        "trades:bob",
        "channel belongs to another user",
    );
    assert_eq!(e["id"], 4);
    assert_subscribe_error(
        &alice.recv().await,
        "forbidden",
        "user:bob",
        "channel belongs to another user",
    );
    assert_nothing_received(&mut alice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_may_subscribe_to_its_own_trades_and_user_channels() {
    let server = secret_server().await;
    let mut alice = connect_with(&server, &token("alice", "free")).await;
    let sub = alice.subscribe(&["trades:alice", "user:alice"]).await;
    assert_eq!(sub["channels"].as_array().unwrap().len(), 2, "{sub}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_connection_gets_unauthorized_for_an_owner_channel() {
    let server = secret_server().await;
    let mut anon = server.ws("/ws").await;
    anon.send(json!({"type": "subscribe", "id": 1, "channels": ["trades:alice"]}))
        .await;
    let e = anon.recv().await;
    assert_eq!(
        (e["code"].as_str(), e["channel"].as_str()),
        (Some("unauthorized"), Some("trades:alice")),
        "{e}"
    );
}

// ---- refused tokens ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alg_none_token_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let claims = json!({"sub": "mallory", "tier": "whale", "exp": now() + 3600});
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    assert_token_refused(&server, &unsigned, "alg none").await;
    // `None` and `NONE` are not `none` either, and no algorithm name is case-folded.
    for alg in ["None", "NONE", "hs256"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        assert_token_refused(&server, &token_with_header(&header, &claims), alg).await;
    }
}

fn rs256_config() -> signalhub::Config {
    config(
        &format!(
            "[[auth.keys]]\nalg = \"RS256\"\npublic_key_file = '{}'\n",
            testdata("rs256_public.pem")
        ),
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hs256_token_signed_with_the_rs256_public_key_is_refused() {
    let server = TestServer::start_with(rs256_config()).await;
    let public_pem = std::fs::read(testdata("rs256_public.pem")).unwrap();
    let forged = sign_hs256(
        &public_pem,
        &json!({"sub": "mallory", "tier": "whale", "exp": now() + 3600}),
    );
    assert_token_refused(&server, &forged, "HS256 over the RSA public key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rs256_token_verifies_against_the_configured_public_key() {
    let server = TestServer::start_with(rs256_config()).await;
    let private_pem = std::fs::read(testdata("rs256_private.pem")).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "rsa-user", "tier": "premium", "exp": now() + 3600}),
        &EncodingKey::from_rsa_pem(&private_pem).unwrap(),
    )
    .unwrap();
    let ws = connect_with(&server, &token).await;
    assert_eq!(ws.welcome["user"], "rsa-user");
    assert_eq!(ws.welcome["tier"], "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_es256_token_verifies_against_the_configured_public_key() {
    let server = TestServer::start_with(config(
        &format!(
            "[[auth.keys]]\nalg = \"ES256\"\nkid = \"ec-1\"\npublic_key_file = '{}'\n",
            testdata("es256_public.pem")
        ),
        &[],
    ))
    .await;
    let private_pem = std::fs::read(testdata("es256_private.pem")).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "ec-user", "exp": now() + 3600}),
        &EncodingKey::from_ec_pem(&private_pem).unwrap(),
    )
    .unwrap();
    let ws = connect_with(&server, &token).await;
    assert_eq!(ws.welcome["user"], "ec-user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let expired = signed(json!({"sub": "u", "exp": now() - 120}));
    assert_token_refused(&server, &expired, "expired two minutes ago").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_yet_valid_token_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let early = signed(json!({"sub": "u", "exp": now() + 3600, "nbf": now() + 120}));
    assert_token_refused(&server, &early, "nbf in two minutes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_in_the_future_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let early = signed(json!({"sub": "u", "exp": now() + 3600, "iat": now() + 120}));
    assert_token_refused(&server, &early, "iat in two minutes").await;
}

fn audience_config() -> signalhub::Config {
    config(
        "[auth]\naudience = \"signalhub\"\nissuer = \"https://auth.example\"\n",
        &[("SIGNALHUB_JWT_SECRET", SECRET)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_401_when_an_audience_is_configured() {
    let server = TestServer::start_with(audience_config()).await;
    for aud in [json!("someone-else"), json!(["a", "b"]), Value::Null] {
        let t = signed(json!({"sub": "u", "exp": now() + 60, "aud": aud,
                              "iss": "https://auth.example"}));
        assert_token_refused(&server, &t, &format!("aud {aud}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_another_issuer_is_401_when_an_issuer_is_configured() {
    let server = TestServer::start_with(audience_config()).await;
    let t = signed(json!({"sub": "u", "exp": now() + 60, "aud": "signalhub",
                          "iss": "https://evil.example"}));
    assert_token_refused(&server, &t, "wrong iss").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_the_configured_audience_and_issuer_is_accepted() {
    let server = TestServer::start_with(audience_config()).await;
    let t = signed(
        json!({"sub": "u", "exp": now() + 60, "aud": ["other", "signalhub"],
                          "iss": "https://auth.example"}),
    );
    let ws = connect_with(&server, &t).await;
    assert_eq!(ws.welcome["user"], "u");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_is_accepted_when_an_audience_and_issuer_are_configured() {
    let server = TestServer::start_with(audience_config()).await;
    let (status, body) = admin_post(&server, MINT, json!({"user": "u"})).await;
    assert_eq!(status, 200, "{body}");
    let result = try_connect(
        &server,
        &format!("/ws?token={}", body["token"].as_str().unwrap()),
        &[],
    )
    .await;
    let ws = result.unwrap_or_else(|(status, body)| panic!("refused with {status}: {body}"));
    assert_eq!(ws.welcome["user"], "u");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_token_is_accepted_when_an_audience_and_issuer_are_configured() {
    let server = TestServer::start_with(audience_config()).await;
    let wallet = Wallet::new(0x17);
    let answer = sign_in(&server, &wallet).await;
    let result = try_connect(
        &server,
        &format!("/ws?token={}", answer["token"].as_str().unwrap()),
        &[],
    )
    .await;
    let ws = result.unwrap_or_else(|(status, body)| panic!("refused with {status}: {body}"));
    assert_eq!(ws.welcome["auth"], "wallet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aud_and_iss_are_not_checked_when_not_configured() {
    let server = secret_server().await;
    let t = signed(json!({"sub": "u", "exp": now() + 60, "aud": "anything", "iss": "anyone"}));
    let ws = connect_with(&server, &t).await;
    assert_eq!(ws.welcome["auth"], "session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_tampered_payload_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let genuine = token("mallory", "free");
    let mut parts: Vec<String> = genuine.split('.').map(String::from).collect();
    let mut claims = claims_of(&genuine);
    claims["tier"] = json!("whale");
    parts[1] = b64(claims.to_string().as_bytes());
    assert_token_refused(&server, &parts.join("."), "tier rewritten to whale").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_another_secret_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let foreign = sign_hs256(
        b"some-other-secret-of-enough-length",
        &json!({"sub": "u", "exp": now() + 60}),
    );
    assert_token_refused(&server, &foreign, "another secret").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_wrongly_typed_claim_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let far = (now() + 3600).to_string();
    for claims in [
        json!({"sub": "u", "exp": far}),
        json!({"sub": 7, "exp": now() + 60}),
        json!({"sub": "u", "exp": now() + 60, "tier": 3}),
        json!({"sub": "u", "exp": now() + 60, "nbf": "0"}),
    ] {
        assert_token_refused(&server, &signed(claims.clone()), &claims.to_string()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_sub_or_exp_is_401_before_the_upgrade() {
    let server = secret_server().await;
    for claims in [
        json!({"exp": now() + 60}),
        json!({"sub": "", "exp": now() + 60}),
        json!({"sub": "u"}),
        json!({"sub": "u", "exp": null}),
    ] {
        assert_token_refused(&server, &signed(claims.clone()), &claims.to_string()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_header_has_crit_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let claims = json!({"sub": "u", "exp": now() + 60});
    // Positive control: the same hand-built signing with a plain header is accepted.
    let plain = token_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, &claims);
    connect_with(&server, &plain).await.close().await;
    let crit = token_with_header(r#"{"alg":"HS256","crit":["exp"]}"#, &claims);
    let result = try_connect(&server, &format!("/ws?token={crit}"), &[]).await;
    assert_refused_401(result, "crit header");
}

// ---- credentials at connect ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_query_parameter_authenticates_the_connection() {
    let server = secret_server().await;
    let ws = connect(&server, &format!("/ws?token={}", token("alice", "premium"))).await;
    assert_eq!(ws.welcome["auth"], "session");
    assert_eq!(ws.welcome["tier"], "premium");
    assert_eq!(ws.welcome["user"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_token_query_parameter_authenticates_the_connection() {
    let server = secret_server().await;
    let path = format!("/ws?sessionToken={}", token("alice", "whale"));
    let ws = connect(&server, &path).await;
    assert_eq!(ws.welcome["auth"], "session");
    assert_eq!(ws.welcome["tier"], "whale");
    assert_eq!(ws.welcome["user"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_bearer_header_authenticates_the_connection() {
    let server = secret_server().await;
    let header = format!("Bearer {}", token("alice", "holder"));
    let ws = try_connect(&server, "/ws", &[("authorization", &header)])
        .await
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    assert_eq!(ws.welcome["auth"], "session");
    assert_eq!(ws.welcome["tier"], "holder");
    assert_eq!(ws.welcome["user"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_welcome_has_no_user() {
    let server = secret_server().await;
    let ws = server.ws("/ws").await;
    assert_eq!(ws.welcome["auth"], "anonymous");
    assert_eq!(ws.welcome["tier"], "free");
    assert!(ws.welcome.get("user").is_none(), "{}", ws.welcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_parameter_wins_over_session_token_and_the_header() {
    let server = secret_server().await;
    let path = format!(
        "/ws?token={}&sessionToken={}",
        token("first", "free"),
        token("second", "free")
    );
    let header = format!("Bearer {}", token("third", "free"));
    let ws = try_connect(&server, &path, &[("authorization", &header)])
        .await
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    assert_eq!(ws.welcome["user"], "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_token_parameter_wins_over_the_header() {
    let server = secret_server().await;
    let path = format!("/ws?sessionToken={}", token("second", "free"));
    let header = format!("Bearer {}", token("third", "free"));
    let ws = try_connect(&server, &path, &[("authorization", &header)])
        .await
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    assert_eq!(ws.welcome["user"], "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_parameter_is_not_rescued_by_a_valid_header() {
    let server = secret_server().await;
    let header = format!("Bearer {}", token("third", "free"));
    let result = try_connect(
        &server,
        "/ws?token=not-a-jwt",
        &[("authorization", &header)],
    )
    .await;
    assert_refused_401(result, "bad token= with a good header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_bearer_header_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let result = try_connect(&server, "/ws/signals", &[("authorization", "Bearer nope")]).await;
    assert_refused_401(result, "bad header");
    assert_eq!(server.state.registry.len(), 0);
}

// ---- progressive authentication: the `auth` frame ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_connection_authenticates_with_an_auth_frame_then_may_subscribe_to_premium() {
    let server = secret_server().await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "id": 1, "channels": ["premium"]}))
        .await;
    assert_eq!(ws.recv().await["code"], "forbidden");
    ws.send(json!({"type": "auth", "id": 3, "token": token("alice", "premium")}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "authenticated", "id": 3, "auth": "session", "tier": "premium",
               "user": "alice"})
    );
    let sub = ws.subscribe(&["premium"]).await;
    assert_eq!(sub["channels"][0]["channel"], "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_auth_frame_answers_unauthorized_and_changes_nothing() {
    let server = secret_server().await;
    let mut ws = connect_with(&server, &token("alice", "premium")).await;
    ws.subscribe(&["premium", "trades:alice"]).await;
    let expired = signed(json!({"sub": "bob", "tier": "whale", "exp": now() - 120}));
    for bad in ["garbage", expired.as_str()] {
        ws.send(json!({"type": "auth", "id": 5, "token": bad}))
            .await;
        let e = ws.recv().await;
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["code"], "unauthorized", "{e}");
        assert_eq!(e["id"], 5, "{e}");
    }
    // Still alice at premium, holding both channels.
    let again = ws.subscribe(&["premium", "trades:alice"]).await;
    assert_eq!(again["channels"].as_array().unwrap().len(), 2, "{again}");
    ws.send(json!({"type": "subscribe", "id": 6, "channels": ["whale"]}))
        .await;
    assert_eq!(ws.recv().await["code"], "forbidden");
    post_signal(&server, 0.85).await;
    assert_signal(&ws.recv().await, "premium", "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_frame_with_another_users_token_takes_away_owner_channels() {
    let server = secret_server().await;
    let mut ws = connect_with(&server, &token("alice", "free")).await;
    ws.subscribe(&["trades:alice", "news"]).await;
    ws.send(json!({"type": "auth", "id": 8, "token": token("bob", "free")}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "unsubscribed", "channels": ["trades:alice"], "reason": "auth_changed"})
    );
    let ok = ws.recv().await;
    assert_eq!(
        (ok["type"].as_str(), ok["id"].as_i64(), ok["user"].as_str()),
        (Some("authenticated"), Some(8), Some("bob"))
    );
    let (status, _) = server
        .post(
            "/api/v1/trades/t1/events",
            &json!({"user": "alice", "status": "filled"}),
        )
        .await;
    assert_eq!(status, 200);
    server.publish("news", json!({"still": "here"})).await;
    let next = ws.recv().await;
    assert_eq!(next["channel"], "news", "only news is still held: {next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_frame_with_a_lower_tier_token_takes_away_premium() {
    let server = secret_server().await;
    let mut ws = connect_with(&server, &token("alice", "premium")).await;
    ws.subscribe(&["premium", "signals"]).await;
    ws.send(json!({"type": "auth", "id": 2, "token": token("alice", "free")}))
        .await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "unsubscribed", "channels": ["premium"], "reason": "auth_changed"})
    );
    assert_eq!(ws.recv().await["tier"], "free");
    post_signal(&server, 0.85).await;
    assert_locked(&ws.recv().await, "signals", "premium");
}

// ---- token expiry during a connection ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_during_the_connection_closes_it_with_4001() {
    let server = secret_server().await;
    let short = signed(json!({"sub": "alice", "exp": now() + 2}));
    let mut ws = connect_with(&server, &short).await;
    assert_eq!(ws.welcome["user"], "alice");
    assert_eq!(ws.close_code().await, 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expired_within_the_leeway_is_accepted_then_closed_with_4001() {
    let server = secret_server().await;
    let just_expired = signed(json!({"sub": "alice", "exp": now() - 5}));
    let mut ws = connect_with(&server, &just_expired).await;
    assert_eq!(ws.welcome["auth"], "session");
    assert_eq!(ws.close_code().await, 4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_auth_frame_before_expiry_keeps_the_connection_open() {
    let server = secret_server().await;
    let exp = now() + 2;
    let short = signed(json!({"sub": "alice", "exp": exp}));
    let mut control = connect_with(&server, &short).await;
    let mut refreshed = connect_with(&server, &short).await;
    refreshed
        .send(json!({"type": "auth", "id": 1, "token": token("alice", "free")}))
        .await;
    assert_eq!(refreshed.recv().await["type"], "authenticated");
    // The control connection, with the same expiry, is closed by the same sweep.
    assert_eq!(control.close_code().await, 4001);
    assert!(now() >= exp);
    assert_nothing_received(&mut refreshed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_frame_replaces_the_expiry_even_with_an_earlier_one() {
    let server = secret_server().await;
    let mut ws = connect_with(&server, &token("alice", "free")).await;
    let short = signed(json!({"sub": "alice", "exp": now() + 2}));
    ws.send(json!({"type": "auth", "id": 1, "token": short}))
        .await;
    assert_eq!(ws.recv().await["type"], "authenticated");
    assert_eq!(ws.close_code().await, 4001);
}

// ---- admin: minting tokens ----

const MINT: &str = "/api/v1/auth/token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_a_token_without_an_api_key_is_401() {
    let server = secret_server().await;
    let (status, body) = server
        .post_raw(MINT, None, json!({"user": "alice"}).to_string())
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_a_token_with_a_publisher_key_is_403() {
    let server = secret_server().await;
    let (status, body) = server.post(MINT, &json!({"user": "alice"})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_a_token_without_a_jwt_secret_is_503() {
    let server = TestServer::start().await;
    let (status, body) = admin_post(&server, MINT, json!({"user": "alice"})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_a_token_with_an_unknown_tier_is_422_naming_tier() {
    let server = secret_server().await;
    let (status, body) = admin_post(&server, MINT, json!({"user": "a", "tier": "gold"})).await;
    assert_invalid(status, &body, "tier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_a_token_with_ttl_s_out_of_range_is_422_naming_ttl_s() {
    let server = secret_server().await;
    for ttl in [0u64, 30 * 24 * 3600 + 1] {
        let (status, body) = admin_post(&server, MINT, json!({"user": "a", "ttl_s": ttl})).await;
        assert_invalid(status, &body, "ttl_s");
    }
    let (status, body) =
        admin_post(&server, MINT, json!({"user": "a", "ttl_s": 30 * 24 * 3600})).await;
    assert_eq!(status, 200, "30 days is the maximum: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_a_token_with_a_negative_ttl_s_is_422_naming_ttl_s() {
    let server = secret_server().await;
    let (status, body) = admin_post(&server, MINT, json!({"user": "a", "ttl_s": -1})).await;
    assert_invalid(status, &body, "ttl_s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_a_token_for_an_empty_user_is_422_naming_user() {
    let server = secret_server().await;
    for user in ["", "tab\there", &"x".repeat(129)] {
        let (status, body) = admin_post(&server, MINT, json!({"user": user})).await;
        assert_invalid(status, &body, "user");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_answers_its_user_tier_expiry_and_authenticates_at_connect() {
    let server = secret_server().await;
    let (status, body) = admin_post(
        &server,
        MINT,
        json!({"user": "u_123", "tier": "PROFESSIONAL", "ttl_s": 600}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], "u_123");
    assert_eq!(body["tier"], "premium");
    let token = body["token"].as_str().unwrap();
    let claims = claims_of(token);
    assert_eq!(claims["sub"], "u_123");
    assert_eq!(claims["tier"], "premium");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(claims.get("auth").is_none(), "a session token: {claims}");
    assert_eq!(body["expires_at"], rfc3339(claims["exp"].as_i64().unwrap()));
    let ws = connect_with(&server, token).await;
    assert_eq!(ws.welcome["auth"], "session");
    assert_eq!(ws.welcome["user"], "u_123");
    assert_eq!(ws.welcome["tier"], "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_defaults_to_free_for_an_hour() {
    let server = secret_server().await;
    let (status, body) = admin_post(&server, MINT, json!({"user": "u"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tier"], "free");
    let claims = claims_of(body["token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
}

// ---- admin: tier changes ----

fn tier_path(user: &str) -> String {
    format!("/api/v1/users/{user}/tier")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_change_needs_an_admin_key() {
    let server = secret_server().await;
    let (status, _) = server
        .post_raw(
            &tier_path("alice"),
            None,
            json!({"tier": "whale"}).to_string(),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = server
        .post(&tier_path("alice"), &json!({"tier": "whale"}))
        .await;
    assert_eq!(status, 403);
    let ws = connect_with(&server, &token("alice", "free")).await;
    assert_eq!(ws.welcome["tier"], "free", "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_change_to_an_unknown_tier_is_422_naming_tier() {
    let server = secret_server().await;
    let (status, body) = admin_post(&server, &tier_path("alice"), json!({"tier": "gold"})).await;
    assert_invalid(status, &body, "tier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tier_upgrade_sends_authenticated_and_then_allows_premium() {
    let server = secret_server().await;
    let mut ws = connect_with(&server, &token("alice", "free")).await;
    let (status, body) = admin_post(
        &server,
        &tier_path("alice"),
        json!({"tier": "Professional"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"user": "alice", "tier": "premium", "connections": 1})
    );
    assert_eq!(
        ws.recv().await,
        json!({"type": "authenticated", "auth": "session", "tier": "premium", "user": "alice"})
    );
    ws.subscribe(&["premium"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_live_tier_upgrade_premium_signals_arrive_with_data() {
    let server = secret_server().await;
    let mut ws = connect_with(&server, &token("alice", "free")).await;
    ws.subscribe(&["signals"]).await;
    admin_post(&server, &tier_path("alice"), json!({"tier": "premium"})).await;
    assert_eq!(ws.recv().await["type"], "authenticated");
    post_signal(&server, 0.85).await;
    assert_signal(&ws.recv().await, "signals", "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tier_downgrade_removes_premium_subscriptions_within_one_round_trip() {
    let server = secret_server().await;
    let mut ws = connect_with(&server, &token("alice", "premium")).await;
    ws.subscribe(&["premium", "signals", "news"]).await;
    let (status, body) = admin_post(&server, &tier_path("alice"), json!({"tier": "free"})).await;
    assert_eq!(status, 200, "{body}");
    let frames = frames_before_pong(&mut ws, 42).await;
    assert_eq!(
        frames,
        [
            json!({"type": "unsubscribed", "channels": ["premium"], "reason": "tier_changed"}),
            json!({"type": "authenticated", "auth": "session", "tier": "free", "user": "alice"}),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_live_tier_downgrade_premium_signals_arrive_locked() {
    let server = secret_server().await;
    let mut ws = connect_with(&server, &token("alice", "premium")).await;
    ws.subscribe(&["signals"]).await;
    admin_post(&server, &tier_path("alice"), json!({"tier": "free"})).await;
    assert_eq!(ws.recv().await["tier"], "free");
    post_signal(&server, 0.85).await;
    assert_locked(&ws.recv().await, "signals", "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_change_applies_to_new_connections_and_auth_frames_of_the_user() {
    let server = secret_server().await;
    let (status, body) = admin_post(&server, &tier_path("bob"), json!({"tier": "whale"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connections"], 0);
    let ws = connect_with(&server, &token("bob", "free")).await;
    assert_eq!(ws.welcome["tier"], "whale", "the override beats the claim");
    let mut anon = server.ws("/ws").await;
    anon.send(json!({"type": "auth", "id": 1, "token": token("bob", "premium")}))
        .await;
    assert_eq!(anon.recv().await["tier"], "whale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_change_leaves_other_users_alone() {
    let server = secret_server().await;
    let mut carol = connect_with(&server, &token("carol", "premium")).await;
    carol.subscribe(&["premium"]).await;
    admin_post(&server, &tier_path("alice"), json!({"tier": "free"})).await;
    assert_nothing_received(&mut carol).await;
    let ws = connect_with(&server, &token("carol", "premium")).await;
    assert_eq!(ws.welcome["tier"], "premium");
}

// ---- admin: disconnect ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_disconnect_closes_the_users_connections_with_1008_and_no_one_elses() {
    let server = secret_server().await;
    let mut alice1 = connect_with(&server, &token("alice", "free")).await;
    let mut alice2 = connect_with(&server, &token("alice", "premium")).await;
    let mut bob = connect_with(&server, &token("bob", "free")).await;
    let mut anon = server.ws("/ws").await;
    let (status, body) = admin_post(&server, "/api/v1/users/alice/disconnect", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"user": "alice", "disconnected": 2}));
    assert_eq!(alice1.close_code().await, 1008);
    assert_eq!(alice2.close_code().await, 1008);
    assert_nothing_received(&mut bob).await;
    assert_nothing_received(&mut anon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_disconnect_does_not_revoke_the_users_token() {
    let server = secret_server().await;
    let t = token("alice", "free");
    let mut ws = connect_with(&server, &t).await;
    admin_post(&server, "/api/v1/users/alice/disconnect", json!({})).await;
    assert_eq!(ws.close_code().await, 1008);
    let again = connect_with(&server, &t).await;
    assert_eq!(again.welcome["user"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_needs_an_admin_key() {
    let server = secret_server().await;
    let mut ws = connect_with(&server, &token("alice", "free")).await;
    let path = "/api/v1/users/alice/disconnect";
    let (status, _) = server.post_raw(path, None, "{}".into()).await;
    assert_eq!(status, 401);
    let (status, _) = server.post(path, &json!({})).await;
    assert_eq!(status, 403);
    assert_nothing_received(&mut ws).await;
}

// ---- trade execution ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trade_execution_with_a_token_subscribes_to_the_users_trades_channel() {
    let server = secret_server().await;
    let mut ws = connect(
        &server,
        &format!("/ws/trade-execution?token={}", token("alice", "free")),
    )
    .await;
    let sub = ws.recv().await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    assert!(sub.get("id").is_none(), "{sub}");
    assert_eq!(sub["channels"][0]["channel"], "trades:alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trade_execution_without_a_token_is_401_before_the_upgrade() {
    let server = secret_server().await;
    let result = try_connect(&server, "/ws/trade-execution", &[]).await;
    assert_refused_401(result, "anonymous trade-execution");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_event_reaches_only_its_users_trade_execution_connection() {
    let server = secret_server().await;
    let mut alice = connect(
        &server,
        &format!("/ws/trade-execution?token={}", token("alice", "free")),
    )
    .await;
    let mut bob = connect(
        &server,
        &format!("/ws/trade-execution?token={}", token("bob", "free")),
    )
    .await;
    alice.recv().await;
    bob.recv().await;
    let (status, answer) = server
        .post(
            "/api/v1/trades/t_42/events",
            &json!({"user": "alice", "status": "filled", "progress": 100, "price": "1.2345"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["channel"], "trades:alice");
    let update = alice.recv().await;
    assert_eq!(update["type"], "trade_update", "{update}");
    assert_eq!(update["channel"], "trades:alice");
    assert_eq!(update["id"], answer["id"]);
    assert_eq!(update["seq"], answer["seq"]);
    let data = &update["data"];
    assert_eq!(data["trade_id"], "t_42");
    assert_eq!(data["user"], "alice");
    assert_eq!(data["status"], "filled");
    assert_eq!(data["progress"].as_f64(), Some(100.0));
    assert_eq!(data["price"], "1.2345");
    assert_nothing_received(&mut bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_event_with_an_empty_user_is_422_naming_user_and_publishes_nothing() {
    let server = secret_server().await;
    let _watcher = connect(&server, "/ws").await;
    for user in ["", "a b", "ü"] {
        let (status, answer) = server
            .post(
                "/api/v1/trades/t1/events",
                &json!({"user": user, "status": "filled"}),
            )
            .await;
        assert_eq!(status, 422, "user {user:?}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid");
        assert_eq!(answer["error"]["field"], "user", "{answer}");
    }
    assert_eq!(server.state.hub.stats().publications, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_channels_with_an_empty_owner_cannot_be_subscribed() {
    let server = secret_server().await;
    for path in [
        "/ws".to_string(),
        format!("/ws?token={}", token("alice", "whale")),
    ] {
        let mut ws = connect(&server, &path).await;
        for channel in ["trades:", "user:"] {
            ws.send(json!({"type": "subscribe", "channels": [channel]}))
                .await;
            let answer = ws.recv().await;
            assert_eq!(answer["type"], "error", "{path} {channel}: {answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_trade_event_is_400() {
    let server = secret_server().await;
    for body in [
        "{not json",
        "[]",
        r#"{"user":"alice"}"#,
        r#"{"status":"x"}"#,
    ] {
        let (status, answer) = server
            .post_raw("/api/v1/trades/t1/events", Some(PUBLISHER_KEY), body.into())
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_event_breaking_a_field_rule_is_422_naming_the_field() {
    let server = secret_server().await;
    let long_id = "t".repeat(129);
    let cases = [
        ("t1", json!({"user": "alice", "status": ""}), "status"),
        (
            "t1",
            json!({"user": "alice", "status": "x".repeat(65)}),
            "status",
        ),
        (
            "t1",
            json!({"user": "alice", "status": "open", "progress": 101}),
            "progress",
        ),
        (
            "t1",
            json!({"user": "alice", "status": "open", "progress": -1}),
            "progress",
        ),
        ("t1", json!({"user": "bad user", "status": "open"}), "user"),
        (
            long_id.as_str(),
            json!({"user": "alice", "status": "open"}),
            "trade_id",
        ),
    ];
    for (trade, body, field) in cases {
        let (status, answer) = server
            .post(&format!("/api/v1/trades/{trade}/events"), &body)
            .await;
        assert_invalid(status, &answer, field);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_event_without_an_api_key_is_401() {
    let server = secret_server().await;
    let body = json!({"user": "alice", "status": "filled"}).to_string();
    let (status, answer) = server
        .post_raw("/api/v1/trades/t1/events", None, body.clone())
        .await;
    assert_eq!(status, 401, "{answer}");
    let (status, _) = server
        .post_raw("/api/v1/trades/t1/events", Some("not-a-key"), body)
        .await;
    assert_eq!(status, 401);
}

// ---- /ws/stats ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_stats_counts_connections_by_auth_and_distinct_users_by_tier() {
    let server = secret_server().await;
    let _anon = server.ws("/ws").await;
    let _guest = server.ws("/ws?anonymousId=guest-1").await;
    let _alice1 = connect_with(&server, &token("alice", "premium")).await;
    let _alice2 = connect_with(&server, &token("alice", "premium")).await;
    let wallet_user = "0x00000000000000000000000000000000000000aa";
    let wallet_token = signed(
        json!({"sub": wallet_user, "tier": "whale", "auth": "wallet",
                                     "exp": now() + 60}),
    );
    let wallet = connect_with(&server, &wallet_token).await;
    assert_eq!(wallet.welcome["auth"], "wallet");
    let (status, stats) = server.get("/ws/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["total_connections"], 5, "{stats}");
    assert_eq!(stats["active_users"], 4, "{stats}");
    assert_eq!(
        stats["connections_by_auth"],
        json!({"anonymous": 2, "session": 2, "wallet": 1})
    );
    assert_eq!(
        stats["users_by_tier"],
        json!({"free": 2, "premium": 1, "holder": 0, "whale": 1})
    );
}

// ---- wallet sign-in ----

/// A fixed secp256k1 key standing in for a browser wallet.
struct Wallet {
    key: SigningKey,
}

impl Wallet {
    fn new(seed: u8) -> Wallet {
        Wallet {
            key: SigningKey::from_slice(&[seed; 32]).unwrap(),
        }
    }

    fn address(&self) -> [u8; 20] {
        address_of(self.key.verifying_key())
    }

    /// EIP-55 mixed case, as wallets show it.
    fn checksummed(&self) -> String {
        eip55(&self.address())
    }

    /// Lower case, the subject of wallet tokens.
    fn lower(&self) -> String {
        format!("0x{}", hex::encode(self.address()))
    }

    /// `personal_sign`: 65 bytes r || s || v, v 27/28, 0x-prefixed hex.
    fn sign(&self, message: &str) -> String {
        let (r_s, v) = self.sign_raw(message);
        format!("0x{}{:02x}", hex::encode(r_s), v + 27)
    }

    fn sign_raw(&self, message: &str) -> ([u8; 64], u8) {
        let digest = personal_sign_hash(message.as_bytes());
        let (signature, recovery) = self.key.sign_prehash_recoverable(&digest).unwrap();
        (signature.to_bytes().into(), recovery.to_byte())
    }
}

/// An EIP-4361 message for `domain`, naming `address` and `nonce`, issued at `issued_at`,
/// with `extra` optional lines (each starting with a newline).
fn siwe(domain: &str, address: &str, nonce: &str, issued_at: i64, extra: &str) -> String {
    format!(
        "{domain} wants you to sign in with your Ethereum account:\n{address}\n\n\
         Sign in to signalhub.\n\nURI: http://{domain}/login\nVersion: 1\nChain ID: 1\n\
         Nonce: {nonce}\nIssued At: {}{extra}",
        rfc3339(issued_at)
    )
}

async fn get_nonce(server: &TestServer, address: Option<&str>) -> String {
    let path = match address {
        Some(a) => format!("/api/v1/auth/nonce?address={a}"),
        None => "/api/v1/auth/nonce".to_string(),
    };
    let (status, body) = server.get(&path).await;
    assert_eq!(status, 200, "{body}");
    let nonce = body["nonce"].as_str().unwrap().to_string();
    assert_eq!(nonce.len(), 20, "{body}");
    assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()), "{body}");
    nonce
}

async fn post_sign_in(server: &TestServer, message: &str, signature: &str) -> (u16, Value) {
    server
        .post_raw(
            "/api/v1/auth/wallet",
            None,
            json!({"message": message, "signature": signature}).to_string(),
        )
        .await
}

/// A message for this server's host with a nonce bound to `wallet`'s address.
async fn fresh_message(server: &TestServer, wallet: &Wallet) -> String {
    let nonce = get_nonce(server, Some(&wallet.checksummed())).await;
    siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        &nonce,
        now(),
        "",
    )
}

/// The whole flow; asserts 200 and returns the answer.
async fn sign_in(server: &TestServer, wallet: &Wallet) -> Value {
    let message = fresh_message(server, wallet).await;
    let (status, body) = post_sign_in(server, &message, &wallet.sign(&message)).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[track_caller]
fn assert_401(status: u16, body: &Value) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
}

/// Writes `contents` to a fresh file under the temp dir (named with `suffix`).
fn temp_file(suffix: &str, contents: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "signalhub-auth-test-{}-{}{suffix}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

/// A server whose static balance file lists `wallet` as `tier`.
async fn static_balance_server(wallet: &Wallet, tier: &str, env: &[(&str, &str)]) -> TestServer {
    let file = temp_file(
        ".toml",
        &format!("\"{}\" = \"{tier}\"\n", wallet.checksummed()),
    );
    let config = config(
        &format!(
            "[auth.balance]\nprovider = \"static\"\nfile = '{}'\n",
            file.display()
        ),
        env,
    );
    // The file is read once, when the configuration is built.
    std::fs::remove_file(&file).unwrap();
    TestServer::start_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_sign_in_answers_a_token_the_tier_and_the_eip55_address() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x11);
    let answer = sign_in(&server, &wallet).await;
    assert_eq!(answer["address"], wallet.checksummed().as_str());
    assert_ne!(wallet.checksummed(), wallet.lower(), "a mixed-case address");
    assert_eq!(answer["tier"], "free");
    let claims = claims_of(answer["token"].as_str().unwrap());
    assert_eq!(claims["sub"], wallet.lower().as_str());
    assert_eq!(claims["auth"], "wallet");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        24 * 3600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_token_connects_as_wallet_with_the_lower_case_address_as_user() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x12);
    let answer = sign_in(&server, &wallet).await;
    let mut ws = connect_with(&server, answer["token"].as_str().unwrap()).await;
    assert_eq!(ws.welcome["auth"], "wallet");
    assert_eq!(ws.welcome["user"], wallet.lower().as_str());
    assert_eq!(ws.welcome["tier"], "free");
    let own = format!("trades:{}", wallet.lower());
    ws.subscribe(&[own.as_str()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_balance_file_gives_the_listed_wallet_whale() {
    let wallet = Wallet::new(0x13);
    let server = static_balance_server(&wallet, "whale", &[]).await;
    let answer = sign_in(&server, &wallet).await;
    assert_eq!(answer["tier"], "whale");
    let mut ws = connect_with(&server, answer["token"].as_str().unwrap()).await;
    assert_eq!(ws.welcome["tier"], "whale");
    ws.subscribe(&["whale"]).await;
    let unlisted = sign_in(&server, &Wallet::new(0x14)).await;
    assert_eq!(unlisted["tier"], "free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_tier_for_the_address_overrides_the_balance_provider() {
    let wallet = Wallet::new(0x15);
    let server = static_balance_server(&wallet, "whale", &[]).await;
    let (status, body) = admin_post(
        &server,
        &tier_path(&wallet.lower()),
        json!({"tier": "premium"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer = sign_in(&server, &wallet).await;
    assert_eq!(answer["tier"], "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_sign_in_works_without_a_jwt_secret() {
    let wallet = Wallet::new(0x16);
    let server = static_balance_server(&wallet, "holder", &[]).await;
    let answer = sign_in(&server, &wallet).await;
    assert_eq!(answer["tier"], "holder");
    let ws = connect_with(&server, answer["token"].as_str().unwrap()).await;
    assert_eq!(ws.welcome["auth"], "wallet");
    assert_eq!(ws.welcome["tier"], "holder");
    let (status, _) = admin_post(&server, MINT, json!({"user": "u"})).await;
    assert_eq!(status, 503, "session tokens still need the secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_from_another_key_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x21);
    let message = fresh_message(&server, &wallet).await;
    let (status, body) = post_sign_in(&server, &message, &Wallet::new(0x22).sign(&message)).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_nonce_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x23);
    let message = fresh_message(&server, &wallet).await;
    let signature = wallet.sign(&message);
    let (status, body) = post_sign_in(&server, &message, &signature).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_sign_in(&server, &message, &signature).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sign_in_uses_up_the_nonce() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x24);
    let message = fresh_message(&server, &wallet).await;
    let (status, body) = post_sign_in(&server, &message, &Wallet::new(0x25).sign(&message)).await;
    assert_401(status, &body);
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_nonce_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x26);
    let message = siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        "NeverIssued12345abcd",
        now(),
        "",
    );
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_sign_in_message_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x27);
    let nonce = get_nonce(&server, None).await;
    let expired = format!("\nExpiration Time: {}", rfc3339(now() - 60));
    let message = siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        &nonce,
        now() - 120,
        &expired,
    );
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_message_with_a_later_expiration_time_is_accepted() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x28);
    let nonce = get_nonce(&server, None).await;
    let lines = format!(
        "\nExpiration Time: {}\nNot Before: {}\nRequest ID: req-1\nResources:\n- https://example.com/a",
        rfc3339(now() + 600),
        rfc3339(now() - 10)
    );
    let message = siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        &nonce,
        now(),
        &lines,
    );
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_message_not_valid_yet_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x29);
    let nonce = get_nonce(&server, None).await;
    let later = format!("\nNot Before: {}", rfc3339(now() + 600));
    let message = siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        &nonce,
        now(),
        &later,
    );
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_message_issued_in_the_future_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x2a);
    let nonce = get_nonce(&server, None).await;
    let message = siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        &nonce,
        now() + 600,
        "",
    );
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_sign_in_message_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x2b);
    let message = fresh_message(&server, &wallet).await;
    let signature = wallet.sign(&message);
    let tampered = message.replace("Sign in to signalhub.", "Sign in to signalhub!");
    assert_ne!(tampered, message);
    let (status, body) = post_sign_in(&server, &tampered, &signature).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_message_for_another_domain_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x2c);
    let nonce = get_nonce(&server, Some(&wallet.checksummed())).await;
    let message = siwe("evil.example", &wallet.checksummed(), &nonce, now(), "");
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_is_compared_case_insensitively() {
    // 127.0.0.1 has no case: configure a host name to compare against.
    let server =
        TestServer::start_with(config("[auth]\nwallet_domain = \"App.Example.com\"\n", &[])).await;
    let wallet = Wallet::new(0x2d);
    let nonce = get_nonce(&server, None).await;
    let message = siwe("app.EXAMPLE.com", &wallet.checksummed(), &nonce, now(), "");
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_wallet_domain_replaces_the_host_check() {
    let server =
        TestServer::start_with(config("[auth]\nwallet_domain = \"app.example.com\"\n", &[])).await;
    let wallet = Wallet::new(0x2e);
    let nonce = get_nonce(&server, None).await;
    let host_message = siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        &nonce,
        now(),
        "",
    );
    let (status, body) = post_sign_in(&server, &host_message, &wallet.sign(&host_message)).await;
    assert_401(status, &body);
    let nonce = get_nonce(&server, None).await;
    let message = siwe("app.example.com", &wallet.checksummed(), &nonce, now(), "");
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_bound_to_another_address_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x31);
    let other = Wallet::new(0x32);
    let nonce = get_nonce(&server, Some(&other.checksummed())).await;
    let message = siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        &nonce,
        now(),
        "",
    );
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_401(status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_request_with_a_malformed_address_is_422_naming_address() {
    let server = secret_server().await;
    for address in [
        "0x1234",
        "abc",
        "0xAbCdEf0000000000000000000000000000000000",
    ] {
        let (status, body) = server
            .get(&format!("/api/v1/auth/nonce?address={address}"))
            .await;
        assert_invalid(status, &body, "address");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_sign_in_message_is_400() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x33);
    let nonce = get_nonce(&server, None).await;
    let good = siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        &nonce,
        now(),
        "",
    );
    for message in [
        "hello".to_string(),
        format!("{good}\n"),
        good.replace('\n', "\r\n"),
        good.replace("Version: 1", "Version: 2"),
        good.replace("Sign in to signalhub.", "Sign in to signalhub ✓"),
        good.replace(&wallet.checksummed(), "0xnotanaddress"),
    ] {
        let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
        assert_eq!(status, 400, "{message:?}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
    }
    // A message that does not parse does not use up its nonce.
    let (status, body) = post_sign_in(&server, &good, &wallet.sign(&good)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_a_statement_is_accepted_in_both_layouts() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x34);
    for blank_lines in ["\n\n\n", "\n\n"] {
        let nonce = get_nonce(&server, None).await;
        let message = format!(
            "{} wants you to sign in with your Ethereum account:\n{}{blank_lines}\
             URI: http://{}/\nVersion: 1\nChain ID: 137\nNonce: {nonce}\nIssued At: {}",
            server.addr,
            wallet.checksummed(),
            server.addr,
            rfc3339(now())
        );
        let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
        assert_eq!(status, 200, "{blank_lines:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_in_bare_hex_with_v_0_or_1_is_accepted() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x35);
    let message = fresh_message(&server, &wallet).await;
    let (r_s, v) = wallet.sign_raw(&message);
    let bare = format!("{}{v:02x}", hex::encode(r_s));
    let (status, body) = post_sign_in(&server, &message, &bare).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["address"], wallet.checksummed().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_s_signature_is_401() {
    let server = secret_server().await;
    let wallet = Wallet::new(0x36);
    let message = fresh_message(&server, &wallet).await;
    let digest = personal_sign_hash(message.as_bytes());
    let (signature, recovery) = wallet.key.sign_prehash_recoverable(&digest).unwrap();
    // (r, n - s) with the recovery parity flipped: the same signer, the malleable twin.
    let (r, s) = signature.split_scalars();
    let high = k256::ecdsa::Signature::from_scalars(r, -s).unwrap();
    assert!(high.normalize_s().is_some(), "s is now in the upper half");
    let v = (recovery.to_byte() ^ 1) + 27;
    let hex_sig = format!("0x{}{v:02x}", hex::encode(high.to_bytes()));
    let (status, body) = post_sign_in(&server, &message, &hex_sig).await;
    assert_401(status, &body);
}

// ---- JSON-RPC balance provider ----

/// A JSON-RPC node answering every `eth_call` with `balance_hex`.
async fn fake_rpc(balance_hex: &'static str) -> SocketAddr {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: axum::Json<Value>| async move {
            assert_eq!(body["method"], "eth_call");
            axum::Json(json!({"jsonrpc": "2.0", "id": body["id"], "result": balance_hex}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn jsonrpc_config(url: &str) -> signalhub::Config {
    config(
        &format!(
            "[auth.balance]\nprovider = \"jsonrpc\"\nurl = \"{url}\"\n\
             token = \"0x00000000000000000000000000000000000000ee\"\n\
             holder_min = \"1000\"\nwhale_min = \"1000000\"\n"
        ),
        &[("SIGNALHUB_JWT_SECRET", SECRET)],
    )
}

async fn jsonrpc_tier(balance_hex: &'static str) -> Value {
    let rpc = fake_rpc(balance_hex).await;
    let server = TestServer::start_with(jsonrpc_config(&format!("http://{rpc}/"))).await;
    sign_in(&server, &Wallet::new(0x41)).await["tier"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonrpc_balance_at_whale_min_gives_whale() {
    assert_eq!(jsonrpc_tier("0xf4240").await, "whale"); // 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonrpc_balance_between_holder_min_and_whale_min_gives_holder() {
    assert_eq!(jsonrpc_tier("0x3e8").await, "holder"); // 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonrpc_balance_below_holder_min_gives_free() {
    assert_eq!(jsonrpc_tier("0x3e7").await, "free"); // 999
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_balance_lookup_answers_503() {
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let server = TestServer::start_with(jsonrpc_config(&format!("http://{closed}/"))).await;
    let wallet = Wallet::new(0x42);
    let message = fresh_message(&server, &wallet).await;
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_nonces_are_rate_limited_per_client_address() {
    let server = TestServer::start().await;
    for _ in 0..signalhub::state::NONCE_BURST {
        let (status, body) = server.get("/api/v1/auth/nonce").await;
        assert_eq!(status, 200, "{body}");
    }
    let resp = reqwest::get(server.http_url("/api/v1/auth/nonce"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wallet_sign_in_turned_off_its_endpoints_answer_404() {
    let server = TestServer::start_with(config("[auth]\nwallet_signin = false\n", &[])).await;
    let (status, body) = server.get("/api/v1/auth/nonce").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wallet_signin"),
        "{body}"
    );
    let wallet = Wallet::new(0x3a);
    let message = siwe(
        &server.addr.to_string(),
        &wallet.checksummed(),
        "abcdefgh12345678",
        now(),
        "",
    );
    let (status, body) = post_sign_in(&server, &message, &wallet.sign(&message)).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_wallet_domain_a_message_for_the_requests_host_header_is_401() {
    // The phishing case of issue #10 item 3: a message signed for evil.example, posted with
    // `Host: evil.example`, must not sign in when the server's domain is configured.
    let server =
        TestServer::start_with(config("[auth]\nwallet_domain = \"app.example.com\"\n", &[])).await;
    let wallet = Wallet::new(0x3b);
    let nonce = get_nonce(&server, None).await;
    let message = siwe("evil.example", &wallet.checksummed(), &nonce, now(), "");
    let body = json!({"message": message, "signature": wallet.sign(&message)}).to_string();
    let answer = reqwest::Client::new()
        .post(format!("http://{}/api/v1/auth/wallet", server.addr))
        .header("host", "evil.example")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
}
