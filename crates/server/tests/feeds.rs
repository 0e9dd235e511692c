//! `[[feeds]]` through a real server: a Coinbase replay server on loopback feeds it, and
//! clients see `price_update`, `/api/v1/feeds`, `/ws/health` and `system_status`.

mod common;

use std::process::Stdio;

use common::{config, TestServer, GUARD};
use serde_json::Value;
use signalhub_feeds::testing::{start_coinbase, ReplayOptions, Script};

fn options() -> ReplayOptions {
    ReplayOptions {
        keepalive_interval: std::time::Duration::from_millis(50),
        frame_interval: std::time::Duration::from_millis(5),
        ..ReplayOptions::default()
    }
}

fn feeds_toml(url: &str, stale_after_s: f64) -> String {
    format!(
        "[[feeds]]\nname = \"cb\"\nexchange = \"coinbase\"\nurl = \"{url}\"\n\
         products = [\"BTC-USD\", \"ETH-USD\"]\nstale_after_s = {stale_after_s}\n"
    )
}

/// Polls `GET path` until `check` holds (hang guard only).
async fn get_until(server: &TestServer, path: &str, check: impl Fn(u16, &Value) -> bool) -> Value {
    tokio::time::timeout(GUARD, async {
        loop {
            let (status, body) = server.get(path).await;
            if check(status, &body) {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{path} never matched"))
}

#[tokio::test]
async fn a_price_subscriber_receives_the_exchanges_exact_digits_and_the_feed_is_listed_up() {
    let replay = start_coinbase(Script::fixture("coinbase_ticker.jsonl").unwrap(), options()).await;
    // Held until the subscriber is in, so the script's first tick is not missed.
    replay.stall();
    let server = TestServer::start_with(config(&feeds_toml(replay.url(), 30.0), &[])).await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["price:BTC-USD"]).await;
    replay.resume();
    let update = loop {
        let frame = ws.recv_text().await;
        if frame.contains("\"price_update\"") {
            break frame;
        }
    };
    assert!(update.contains(r#""price":64250.10"#), "{update}");
    assert!(update.contains(r#""product":"BTC-USD""#), "{update}");
    let envelope: Value = serde_json::from_str(&update).unwrap();
    assert_eq!(envelope["channel"], "price:BTC-USD");
    assert_eq!(envelope["data"]["exchange"], "coinbase");

    let body = get_until(&server, "/api/v1/feeds", |s, b| {
        s == 200 && b["feeds"][0]["status"] == "up"
    })
    .await;
    let feed = &body["feeds"][0];
    assert_eq!(feed["name"], "cb");
    assert_eq!(feed["exchange"], "coinbase");
    assert_eq!(feed["products"], serde_json::json!(["BTC-USD", "ETH-USD"]));
    assert!(feed["messages"].as_u64().unwrap() >= 2, "{body}");
    assert!(feed["last_message_at"].is_string(), "{body}");
    let health = get_until(&server, "/ws/health", |s, b| {
        s == 200 && b["status"] == "ok"
    })
    .await;
    assert_eq!(health["feeds"]["cb"], "up");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_stalled_exchange_makes_the_feed_stale_health_degraded_and_says_so_on_system() {
    let replay = start_coinbase(Script::default(), options()).await;
    let server = TestServer::start_with(config(&feeds_toml(replay.url(), 0.5), &[])).await;
    get_until(&server, "/ws/health", |_, b| b["feeds"]["cb"] == "up").await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["system"]).await;
    replay.stall();
    let notice = loop {
        let frame: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
        if frame["type"] == "system_status" && frame["data"]["status"] == "stale" {
            break frame;
        }
    };
    assert_eq!(notice["data"]["feed"], "cb");
    let health = get_until(&server, "/ws/health", |s, b| {
        s == 200 && b["feeds"]["cb"] == "stale"
    })
    .await;
    assert_eq!(health["status"], "degraded");
    replay.resume();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_feeds_the_feeds_endpoint_is_an_empty_list() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/api/v1/feeds").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"feeds": []}));
    server.stop().await.unwrap();
}

/// `signalhub serve --config FILE` with `toml`; returns exit code and standard error.
async fn serve_with(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signalhub.toml");
    std::fs::write(&file, toml).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_signalhub"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env_clear()
        .env("SIGNALHUB_STORE", "sqlite::memory:")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(GUARD, command.output())
        .await
        .expect("serve refuses at once")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn a_feed_with_an_unknown_exchange_refuses_to_start_with_exit_2_naming_it() {
    let (code, stderr) =
        serve_with("[[feeds]]\nname = \"k\"\nexchange = \"kraken\"\nproducts = [\"BTC-USD\"]\n")
            .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("kraken"), "{stderr}");
}

#[tokio::test]
async fn a_feed_without_products_refuses_to_start_with_exit_2_naming_the_field() {
    let (code, stderr) =
        serve_with("[[feeds]]\nname = \"cb\"\nexchange = \"coinbase\"\nproducts = []\n").await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("feeds[0].products"), "{stderr}");
}
