//! Issue #10 item 1: one client's large `subscribe`/`unsubscribe` frames must cost work linear
//! in their size, name at most `limits.max_channels_per_frame` channels, and stay within a
//! per-connection budget of channel operations, so that they cannot delay other connections.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Sends a ping with `id` and returns every text frame before its pong (control frames
/// skipped): proof of what a frame was answered with, and that the connection still answers.
async fn frames_before_pong(ws: &mut Ws, id: i64) -> Vec<Value> {
    ws.send(json!({"type": "ping", "id": id})).await;
    let mut before = Vec::new();
    loop {
        let v = ws.recv().await;
        if v["type"] == "pong" && v["id"] == id {
            return before;
        }
        before.push(v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_naming_101_channels_is_one_bad_request_and_subscribes_none() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "id": 4, "channels": names("c", 101)}))
        .await;
    let answers = frames_before_pong(&mut ws, 99).await;
    assert_eq!(answers.len(), 1, "one answer: {answers:?}");
    let e = &answers[0];
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_i64()),
        (Some("error"), Some("bad_request"), Some(4)),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("100"),
        "the error names the limit: {e}"
    );
    assert_eq!(server.state.hub.stats().subscriptions, 0);
    assert_eq!(server.state.hub.subscriber_count("c0"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_naming_100_channels_subscribes_all_of_them() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "id": 1, "channels": names("c", 100)}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["channels"].as_array().unwrap().len(), 100);
    assert_eq!(server.state.hub.stats().subscriptions, 100);
    assert_eq!(server.state.hub.subscriber_count("c99"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_limit_per_frame_is_configurable() {
    let server =
        TestServer::start_with(config("", &[("SIGNALHUB_MAX_CHANNELS_PER_FRAME", "3")])).await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "unsubscribe", "id": 2, "channels": names("c", 4)}))
        .await;
    let e = ws.recv().await;
    assert_eq!(
        (e["code"].as_str(), e["message"].as_str()),
        (
            Some("bad_request"),
            Some("a frame may name at most 3 channels")
        )
    );
    let ok = ws.subscribe(&["a", "b", "c"]).await;
    assert_eq!(ok["channels"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_65_kb_unsubscribe_of_10000_names_is_a_bad_request_and_the_connection_still_answers_ping()
{
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["kept"]).await;
    // 10,000 distinct three-character names: about 60 KB, under max_message_bytes.
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let names: Vec<String> = (0..10_000)
        .map(|i| {
            let digits = [i / (36 * 36), (i / 36) % 36, i % 36];
            digits.iter().map(|d| ALPHABET[*d] as char).collect()
        })
        .collect();
    let text = json!({"type": "unsubscribe", "id": 7, "channels": names}).to_string();
    assert!(
        text.len() > 60_000 && text.len() <= 65_536,
        "{} bytes",
        text.len()
    );
    ws.send_text(&text).await;
    let answers = frames_before_pong(&mut ws, 8).await;
    assert_eq!(answers.len(), 1, "one answer: {answers:?}");
    assert_eq!(
        (answers[0]["code"].as_str(), answers[0]["id"].as_i64()),
        (Some("bad_request"), Some(7)),
        "{}",
        answers[0]
    );
    assert_eq!(
        server.state.hub.subscriber_count("kept"),
        1,
        "nothing applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_answered_once_and_held_channels_are_found_in_any_order() {
    let server = TestServer::start_with(config("[limits]\nmax_subscriptions = 150", &[])).await;
    let mut ws = server.ws("/ws").await;
    // 50 names, each twice, in descending order.
    let mut first: Vec<String> = (0..50).rev().map(|i| format!("d{i:03}")).collect();
    first.extend(first.clone());
    ws.send(json!({"type": "subscribe", "id": 1, "channels": first}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["channels"].as_array().unwrap().len(), 50, "{reply}");
    assert_eq!(server.state.hub.stats().subscriptions, 50);

    // 30 held (interleaved) and 70 new: 120 distinct held in all, within 150.
    let second: Vec<String> = (0..100)
        .map(|i| {
            if i % 10 < 3 {
                format!("d{:03}", i / 10 * 3 + i % 10)
            } else {
                format!("n{i:03}")
            }
        })
        .collect();
    ws.send(json!({"type": "subscribe", "id": 2, "channels": second}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["channels"].as_array().unwrap().len(), 100);
    assert_eq!(server.state.hub.stats().subscriptions, 120);

    // 40 more new ones: 30 fit, 10 are over max_subscriptions.
    let third: Vec<String> = (0..40).map(|i| format!("m{i:03}")).collect();
    ws.send(json!({"type": "subscribe", "id": 3, "channels": third}))
        .await;
    let mut refused = 0;
    let reply = loop {
        let v = ws.recv().await;
        if v["type"] == "error" {
            assert_eq!(v["code"], "too_many_subscriptions", "{v}");
            refused += 1;
        } else {
            break v;
        }
    };
    assert_eq!(refused, 10);
    assert_eq!(reply["channels"].as_array().unwrap().len(), 30);
    assert_eq!(server.state.hub.stats().subscriptions, 150);

    // Unsubscribe with duplicates and names not held: each valid name answered once.
    let mut gone: Vec<String> = (0..50).map(|i| format!("d{i:03}")).collect();
    gone.extend((0..40).map(|i| format!("d{i:03}")));
    gone.extend((0..10).map(|i| format!("never{i}")));
    ws.send(json!({"type": "unsubscribe", "id": 4, "channels": gone}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "unsubscribed", "{reply}");
    assert_eq!(reply["channels"].as_array().unwrap().len(), 60);
    assert_eq!(server.state.hub.stats().subscriptions, 100);
    assert_eq!(server.state.hub.subscriber_count("d000"), 0);
    assert_eq!(server.state.hub.subscriber_count("n099"), 1);
    // The rest are still held: subscribing again adds nothing.
    let again = ws.subscribe(&["n003", "m029", "d001"]).await;
    assert_eq!(again["channels"].as_array().unwrap().len(), 3);
    assert_eq!(server.state.hub.stats().subscriptions, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_past_one_polls_slice_are_all_answered_in_order() {
    let server = TestServer::start().await;
    let mut raw = RawWs::connect(&server, "/ws").await;
    assert_eq!(raw.read_json().await["type"], "welcome");
    // 50 frames of 20 channels (1,050 units of work, several slices), then a ping.
    for id in 0..50 {
        let channels = names(&format!("s{id}-"), 20);
        raw.send_text(&json!({"type": "subscribe", "id": id, "channels": channels}).to_string())
            .await;
    }
    raw.send_text(r#"{"type":"ping","id":1000}"#).await;
    for id in 0..50 {
        let v = raw.read_json().await;
        assert_eq!(
            (v["type"].as_str(), v["id"].as_i64()),
            (Some("subscribed"), Some(id)),
            "{v}"
        );
    }
    let pong = raw.read_json().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(1000))
    );
    assert_eq!(server.state.hub.stats().subscriptions, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_channel_operations_budget_is_rate_limited_with_its_id_and_not_applied() {
    let server = TestServer::start_with(config(
        "[limits]\nchannel_ops_per_second = 1\nchannel_ops_burst = 200",
        &[],
    ))
    .await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "id": 1, "channels": names("a", 100)}))
        .await;
    assert_eq!(ws.recv().await["type"], "subscribed");
    ws.send(json!({"type": "unsubscribe", "id": 2, "channels": names("a", 100)}))
        .await;
    assert_eq!(ws.recv().await["type"], "unsubscribed");
    ws.send(json!({"type": "subscribe", "id": 3, "channels": names("b", 100)}))
        .await;
    let answers = frames_before_pong(&mut ws, 4).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(
        (answers[0]["code"].as_str(), answers[0]["id"].as_i64()),
        (Some("rate_limited"), Some(3)),
        "{}",
        answers[0]
    );
    assert_eq!(server.state.hub.stats().subscriptions, 0);
    // Frames naming no channel are not held back by it.
    ws.send(json!({"type": "stats", "id": 5})).await;
    assert_eq!(ws.recv().await["type"], "stats");
}

#[test]
fn a_channel_operations_burst_below_the_frame_limit_is_refused() {
    let file = signalhub::config::parse_file(
        "[limits]\nmax_channels_per_frame = 100\nchannel_ops_burst = 99",
    )
    .unwrap();
    let err = signalhub::config::Config::resolve(
        file,
        &signalhub::config::Overrides::default(),
        &[("SIGNALHUB_STORE", "sqlite::memory:")][..],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("limits.channel_ops_burst"),
        "{err}"
    );
}

/// What one hostile connection saw.
#[derive(Debug, Default)]
struct Offender {
    applied: usize,
    ops_refused: usize,
    close: Option<u16>,
}

/// Sends `frames` frames of 100 fresh channels each (subscribe, then unsubscribe of the same,
/// and so on: every one within the frame burst of 100) in one go, then reads every answer
/// until the server closes.
async fn offend(server: &TestServer, who: usize, frames: usize) -> Offender {
    let mut ws = server.ws("/ws").await;
    for f in 0..frames {
        let kind = if f % 2 == 0 {
            "subscribe"
        } else {
            "unsubscribe"
        };
        let prefix = format!("h{who}-{}-", f / 2);
        let frame = json!({"type": kind, "id": f, "channels": names(&prefix, 100)});
        ws.stream
            .feed(Message::text(frame.to_string()))
            .await
            .unwrap();
    }
    ws.stream.flush().await.unwrap();
    let mut seen = Offender::default();
    loop {
        match ws.next_message().await {
            Some(Message::Text(text)) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                match (v["type"].as_str(), v["code"].as_str()) {
                    (Some("subscribed" | "unsubscribed"), _) => seen.applied += 1,
                    (Some("error"), Some("rate_limited")) => {
                        assert!(v["id"].is_i64(), "{v}");
                        assert_eq!(v["message"], "too many channel operations: slow down");
                        seen.ops_refused += 1;
                    }
                    _ => panic!("unexpected {v}"),
                }
            }
            Some(Message::Close(frame)) => {
                seen.close = frame.map(|f| u16::from(f.code));
                return seen;
            }
            Some(_) => {}
            None => panic!("ended without a close frame"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_subscriber_gets_every_publication_in_order_while_ten_connections_flood_channel_operations(
) {
    // The default budget (2048 at once) with a slow refill, so the bound does not depend on
    // how fast this machine runs the test.
    let server = TestServer::start_with(config("[limits]\nchannel_ops_per_second = 10", &[])).await;
    let mut quiet = server.ws("/ws").await;
    quiet.subscribe(&["quiet"]).await;

    let offenders: Vec<_> = (0..10)
        .map(|who| {
            let server = &server;
            async move { offend(server, who, 100).await }
        })
        .collect();
    let publish = async {
        for i in 0..50 {
            server.publish("quiet", json!({ "i": i })).await;
        }
    };
    let (seen, ()) = tokio::join!(futures_util::future::join_all(offenders), publish);

    for i in 0..50u64 {
        let v = quiet.recv().await;
        assert_eq!(
            (
                v["channel"].as_str(),
                v["seq"].as_u64(),
                v["data"]["i"].as_u64()
            ),
            (Some("quiet"), Some(i + 1), Some(i)),
            "{v}"
        );
    }
    for (who, s) in seen.iter().enumerate() {
        // 2,048 operations at once and 10 a second: about 20 of the 100 frames.
        assert!(
            s.applied < 40,
            "offender {who} had {} frames applied",
            s.applied
        );
        assert_eq!(
            s.ops_refused, 20,
            "offender {who}: twenty refusals, then 4008"
        );
        assert_eq!(s.close, Some(4008), "offender {who}: {s:?}");
    }
    quiet.send(json!({"type": "ping", "id": 1})).await;
    assert_eq!(quiet.recv().await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_naming_no_channel_is_answered_with_bad_request_not_silence() {
    // A client waiting on the frame's id must get an answer; `subscribed` is omitted when
    // nothing is allowed, so an empty subscribe is refused as malformed.
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "id": 9, "channels": []}))
        .await;
    let e = ws.recv().await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["id"], 9, "{e}");
    assert_eq!(e["code"], "bad_request", "{e}");
    let ok = ws.subscribe(&["after"]).await;
    assert_eq!(ok["channels"].as_array().unwrap().len(), 1);
}
