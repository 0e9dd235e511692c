//! Durable signals: stored before 2xx, unique forever, kept across restarts, read back with
//! filters by tier; 503 and nothing published when the store is down.

mod common;

use common::*;
use serde_json::{json, Value};
use signalhub::store::{NewSignal, Store, StoreUrl};

fn sqlite_config(path: &std::path::Path, extra_env: &[(&str, &str)]) -> signalhub::Config {
    let url = format!("sqlite:{}", path.display());
    let mut env = vec![
        ("SIGNALHUB_STORE", url.as_str()),
        ("SIGNALHUB_JWT_SECRET", SECRET),
    ];
    env.extend_from_slice(extra_env);
    config("", &env)
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn signal(id: &str, pair: &str, confidence: f64) -> Value {
    json!({"signal_id": id, "pair": pair, "signal_type": "BUY", "entry_price": "1.0950", "confidence_score": confidence})
}

async fn mint(server: &TestServer, user: &str, tier: &str) -> String {
    let (status, body) = server
        .post_raw(
            "/api/v1/auth/token",
            Some(ADMIN_KEY),
            json!({"user": user, "tier": tier}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

fn ids(body: &Value) -> Vec<String> {
    body["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["signal_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_survive_a_restart_and_their_id_stays_taken() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("signals.db");
    let server = TestServer::start_with(sqlite_config(&db, &[])).await;
    let (status, first) = server
        .post("/api/v1/signals", &signal("keep_1", "EUR_USD", 0.5))
        .await;
    assert_eq!(status, 200, "{first}");
    server.stop().await.unwrap();

    let server = TestServer::start_with(sqlite_config(&db, &[])).await;
    let (status, body) = server
        .get_with("/api/v1/signals", Some(PUBLISHER_KEY))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["keep_1"]);
    let raw = server.get_raw("/api/v1/signals", Some(PUBLISHER_KEY)).await;
    assert!(raw.contains("\"entry_price\":1.0950"), "digits kept: {raw}");
    // The same signal_id after the restart: the first answer, nothing published.
    let mut ws = server.ws("/ws/signals").await;
    ws.recv().await;
    let (status, again) = server
        .post("/api/v1/signals", &signal("keep_1", "EUR_USD", 0.5))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again, first);
    assert_eq!(server.state.hub.stats().publications, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stored_but_not_published_is_published_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("signals.db");
    {
        let store = Store::open(&StoreUrl::Sqlite(db.display().to_string()))
            .await
            .unwrap();
        let record = r#"{"signal_id":"orphan_1","pair":"BTC-USD","signal_type":"SELL","take_profit":[],"confidence_score":0.4,"timestamp":"2026-01-01T00:00:00.000Z","tier":"free"}"#;
        store
            .insert_signal(&NewSignal {
                signal_id: "orphan_1".into(),
                record_json: record.into(),
                pair: "BTC-USD".into(),
                signal_type: "SELL".into(),
                confidence: 0.4,
                tier_rank: 0,
                timestamp: "2026-01-01T00:00:00Z".parse().unwrap(),
                publisher: None,
            })
            .await
            .unwrap();
    }
    let server = TestServer::start_with(sqlite_config(&db, &[])).await;
    eventually(|| server.state.hub.stats().publications > 0).await;
    let (_, history) = server.get("/api/v1/channels/signals/history").await;
    let p = &history["publications"][0];
    assert_eq!(p["data"]["signal_id"], "orphan_1");
    assert!(server.state.store.unpublished().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_signals_is_newest_first_and_filtered_by_the_callers_tier() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(sqlite_config(&dir.path().join("s.db"), &[])).await;
    for (id, pair, conf) in [
        ("a_free", "EUR_USD", 0.5),
        ("b_premium", "EUR_USD", 0.85),
        ("c_whale", "BTC-USD", 0.95),
    ] {
        let (status, body) = server
            .post("/api/v1/signals", &signal(id, pair, conf))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, anonymous) = server.get("/api/v1/signals").await;
    assert_eq!(ids(&anonymous), ["a_free"]);
    let premium = mint(&server, "pat", "premium").await;
    let (_, as_premium) = server
        .get(&format!("/api/v1/signals?token={premium}"))
        .await;
    assert_eq!(ids(&as_premium), ["b_premium", "a_free"]);
    let (_, with_key) = server
        .get_with("/api/v1/signals", Some(PUBLISHER_KEY))
        .await;
    assert_eq!(ids(&with_key), ["c_whale", "b_premium", "a_free"]);
    let (_, by_pair) = server
        .get_with("/api/v1/signals?pair=eur_usd", Some(PUBLISHER_KEY))
        .await;
    assert_eq!(ids(&by_pair), ["b_premium", "a_free"]);
    let (_, by_conf) = server
        .get_with("/api/v1/signals?min_confidence=0.85", Some(PUBLISHER_KEY))
        .await;
    assert_eq!(ids(&by_conf), ["c_whale", "b_premium"]);
    let (_, by_type) = server
        .get_with("/api/v1/signals?signal_type=sell", Some(PUBLISHER_KEY))
        .await;
    assert_eq!(ids(&by_type), Vec::<String>::new());
    let (_, limited) = server
        .get_with("/api/v1/signals?limit=1", Some(PUBLISHER_KEY))
        .await;
    assert_eq!(ids(&limited), ["c_whale"]);
    let (_, future) = server
        .get_with(
            "/api/v1/signals?since=2999-01-01T00:00:00Z",
            Some(PUBLISHER_KEY),
        )
        .await;
    assert_eq!(ids(&future), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_with_locked_true_shows_above_tier_signals_as_stubs_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(sqlite_config(&dir.path().join("s.db"), &[])).await;
    let mut publication_ids = std::collections::HashMap::new();
    for (id, pair, conf) in [
        ("a_free", "EUR_USD", 0.5),
        ("b_premium", "EUR_USD", 0.85),
        ("c_whale", "BTC-USD", 0.95),
    ] {
        let (status, body) = server
            .post("/api/v1/signals", &signal(id, pair, conf))
            .await;
        assert_eq!(status, 200, "{body}");
        publication_ids.insert(id, body["id"].clone());
    }
    let (_, full) = server
        .get_with("/api/v1/signals", Some(PUBLISHER_KEY))
        .await;
    // The channel history's stubs, to match by publication id.
    let (_, history) = server.get("/api/v1/channels/signals/history").await;
    let history_stub = |pub_id: &Value| -> Value {
        history["publications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| &p["id"] == pub_id)
            .unwrap()
            .clone()
    };
    let record = |id: &str| -> Value {
        full["signals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["signal_id"] == id)
            .unwrap()
            .clone()
    };
    let (status, anonymous) = server.get("/api/v1/signals?locked=true").await;
    assert_eq!(status, 200, "{anonymous}");
    assert_eq!(ids(&anonymous), ["c_whale", "b_premium", "a_free"]);
    let rows = anonymous["signals"].as_array().unwrap();
    for (row, id) in rows[..2].iter().zip(["c_whale", "b_premium"]) {
        let mut keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["id", "kind", "locked", "signal_id", "tier", "timestamp"],
            "{row}"
        );
        assert_eq!(row["locked"], true);
        assert_eq!(row["kind"], "signal");
        assert_eq!(row["tier"], record(id)["tier"], "{row}");
        assert_eq!(row["timestamp"], record(id)["timestamp"], "{row}");
        // The id of the live `locked` frame, so a client merges the two into one row.
        assert_eq!(row["id"], publication_ids[id], "{row}");
        let live = history_stub(&row["id"]);
        assert_eq!(live["type"], "locked", "{live}");
        assert_eq!(live["tier"], row["tier"], "{live}");
    }
    assert_eq!(rows[2], record("a_free"));
    let premium = mint(&server, "pat", "premium").await;
    let (_, as_premium) = server
        .get(&format!("/api/v1/signals?token={premium}&locked=true"))
        .await;
    let rows = as_premium["signals"].as_array().unwrap();
    assert_eq!(ids(&as_premium), ["c_whale", "b_premium", "a_free"]);
    assert_eq!(rows[0]["locked"], true);
    assert_eq!(rows[1], record("b_premium"));
    // Without `locked=true` nothing changes; an API key has nothing locked.
    let (_, plain) = server.get("/api/v1/signals").await;
    assert_eq!(ids(&plain), ["a_free"]);
    let (_, with_key) = server
        .get_with("/api/v1/signals?locked=true", Some(PUBLISHER_KEY))
        .await;
    assert_eq!(with_key, full);
    let (status, bad) = server.get("/api/v1/signals?locked=yes").await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["error"]["field"], "locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_signals_refuses_bad_parameters_and_bad_tokens() {
    let server = TestServer::start().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("min_confidence=1.5", "min_confidence"),
        ("min_confidence=abc", "min_confidence"),
        ("since=yesterday", "since"),
        ("pair=%24%24", "pair"),
    ] {
        let (status, body) = server.get(&format!("/api/v1/signals?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}");
    }
    assert_eq!(server.get("/api/v1/signals?token=garbage").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_tier_change_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tiers.db");
    let server = TestServer::start_with(sqlite_config(&db, &[])).await;
    let (status, body) = server
        .post_raw(
            "/api/v1/users/carol/tier",
            Some(ADMIN_KEY),
            json!({"tier": "whale"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = mint(&server, "carol", "free").await;
    server.stop().await.unwrap();
    let server = TestServer::start_with(sqlite_config(&db, &[])).await;
    let ws = server.ws(&format!("/ws?token={token}")).await;
    assert_eq!(ws.welcome["tier"], "whale");
}

/// The PostgreSQL tests run when the test script started a server (scripts/postgres.sh).
fn postgres() -> Option<(String, String)> {
    let url = std::env::var("SIGNALHUB_TEST_POSTGRES").ok();
    let ctl = std::env::var("SIGNALHUB_TEST_POSTGRES_CTL").ok();
    match (url, ctl) {
        (Some(url), Some(ctl)) => Some((url, ctl)),
        _ if std::env::var("SIGNALHUB_REQUIRE_EXTERNAL").as_deref() == Ok("1") => {
            panic!("SIGNALHUB_TEST_POSTGRES and SIGNALHUB_TEST_POSTGRES_CTL are required")
        }
        _ => {
            eprintln!("skipped: SIGNALHUB_TEST_POSTGRES not set");
            None
        }
    }
}

fn postgres_ctl(ctl: &str, action: &str) {
    let mut parts = ctl.split_whitespace();
    let script = parts.next().unwrap();
    let status = std::process::Command::new(script)
        .arg(action)
        .args(parts)
        .status()
        .unwrap();
    assert!(status.success(), "postgres {action} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_a_signal_is_refused_with_503_and_nothing_is_published() {
    let Some((url, ctl)) = postgres() else {
        return;
    };
    let server = TestServer::start_with(config("", &[("SIGNALHUB_STORE", &url)])).await;
    let suffix = signalhub_hub::ids::random_token(8);
    let (status, body) = server
        .post(
            "/api/v1/signals",
            &signal(&format!("pg_ok_{suffix}"), "EUR_USD", 0.5),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut ws = server.ws("/ws/signals").await;
    ws.recv().await;
    let published_before = server.state.hub.stats().publications;

    postgres_ctl(&ctl, "stop");
    let (status, body) = server
        .post(
            "/api/v1/signals",
            &signal(&format!("pg_down_{suffix}"), "EUR_USD", 0.5),
        )
        .await;
    let (health, health_body) = server.get("/ws/health").await;
    postgres_ctl(&ctl, "start");
    assert_eq!(health_body["status"], "unavailable", "{health_body}");
    assert_eq!(
        health_body["storage"]["status"], "unavailable",
        "{health_body}"
    );

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(health, 503);
    assert_eq!(
        server.state.hub.stats().publications,
        published_before,
        "nothing was published"
    );
    // After the store comes back, the retry is stored and published.
    let (status, _) = server
        .post(
            "/api/v1/signals",
            &signal(&format!("pg_down_{suffix}"), "EUR_USD", 0.5),
        )
        .await;
    assert_eq!(status, 200);
    let p = ws.recv().await;
    assert_eq!(p["data"]["signal_id"], format!("pg_down_{suffix}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_stored_in_postgres_are_listed_after_a_restart() {
    let Some((url, _)) = postgres() else {
        return;
    };
    let suffix = signalhub_hub::ids::random_token(8);
    let id = format!("pg_keep_{suffix}");
    let server = TestServer::start_with(config("", &[("SIGNALHUB_STORE", &url)])).await;
    assert_eq!(
        server
            .post("/api/v1/signals", &signal(&id, "ETH-USD", 0.5))
            .await
            .0,
        200
    );
    server.stop().await.unwrap();
    let server = TestServer::start_with(config("", &[("SIGNALHUB_STORE", &url)])).await;
    let (_, body) = server
        .get_with(
            "/api/v1/signals?pair=ETH-USD&limit=1000",
            Some(PUBLISHER_KEY),
        )
        .await;
    assert!(ids(&body).contains(&id), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_id_stored_by_one_key_is_409_for_another_key_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("signals.db");
    let keys = "key-alpha:publisher,key-bravo:publisher,test-admin-key:admin";
    let server = TestServer::start_with(sqlite_config(&db, &[("SIGNALHUB_API_KEYS", keys)])).await;
    let body = signal("shared_id", "EUR_USD", 0.5).to_string();
    let (status, first) = server
        .post_raw("/api/v1/signals", Some("key-alpha"), body.clone())
        .await;
    assert_eq!(status, 200, "{first}");
    let published = server.state.hub.stats().publications;

    // Another publisher using the same id neither gets alpha's answer nor shadows it.
    let bravo = signal("shared_id", "BTC-USD", 0.9).to_string();
    let (status, refused) = server
        .post_raw("/api/v1/signals", Some("key-bravo"), bravo)
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "conflict", "{refused}");
    assert!(refused.get("seq").is_none(), "{refused}");
    assert_eq!(server.state.hub.stats().publications, published);

    // The owner's retry still gets its first answer, and the fingerprint (not the key) is
    // what is recorded: the same after a restart.
    server.stop().await.unwrap();
    let server = TestServer::start_with(sqlite_config(&db, &[("SIGNALHUB_API_KEYS", keys)])).await;
    let (status, again) = server
        .post_raw("/api/v1/signals", Some("key-alpha"), body)
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);
    let (status, refused) = server
        .post_raw(
            "/api/v1/signals",
            Some("key-bravo"),
            signal("shared_id", "EUR_USD", 0.5).to_string(),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    let (_, listed) = server.get_with("/api/v1/signals", Some("key-alpha")).await;
    assert_eq!(listed["signals"][0]["pair"], "EUR_USD");
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let stored = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !stored.windows(9).any(|w| w == b"key-alpha"),
            "the key itself is never stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_signal_without_a_signal_id_but_with_an_idempotency_key_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(sqlite_config(&dir.path().join("s.db"), &[])).await;
    let body = json!({"pair": "EUR_USD", "signal_type": "BUY", "confidence_score": 0.5,
                      "idempotency_key": "retry-7"});
    let (status, first) = server.post("/api/v1/signals", &body).await;
    assert_eq!(status, 200, "{first}");
    let published = server.state.hub.stats().publications;
    let (status, again) = server.post("/api/v1/signals", &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again, first,
        "the first answer, with the same generated signal_id"
    );
    let (_, listed) = server
        .get_with("/api/v1/signals", Some(PUBLISHER_KEY))
        .await;
    assert_eq!(listed["signals"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(server.state.hub.stats().publications, published);
    // The same key with another body is a conflict; a bad key is 422 naming it.
    let other = json!({"pair": "BTC-USD", "signal_type": "SELL", "confidence_score": 0.5,
                       "idempotency_key": "retry-7"});
    let (status, body) = server.post("/api/v1/signals", &other).await;
    assert_eq!(status, 409, "{body}");
    let bad = json!({"pair": "BTC-USD", "signal_type": "SELL", "confidence_score": 0.5,
                     "idempotency_key": ""});
    let (status, body) = server.post("/api/v1/signals", &bad).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "idempotency_key", "{body}");
}
