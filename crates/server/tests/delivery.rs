//! Delivery guarantees over the real server: recovery with `since`, history, SSE, long-poll.

mod common;

use common::*;
use serde_json::{json, Value};

/// The `seq` of each publication in an HTTP answer's `publications`.
fn seqs_of(body: &Value) -> Vec<u64> {
    body["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].as_u64().unwrap())
        .collect()
}

async fn subscribe_since(ws: &mut Ws, channel: &str, epoch: &str, seq: u64) -> Value {
    ws.send(json!({"type":"subscribe","id":2,"channels":[channel],"since":{channel:{"epoch":epoch,"seq":seq}}}))
        .await;
    let reply = ws.recv().await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    reply["channels"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_since_after_missed_publications_gets_exactly_those_in_order() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    let epoch = ws.subscribe(&["signals"]).await["channels"][0]["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    server.publish("signals", json!({"n": 1})).await;
    assert_eq!(ws.recv().await["seq"], 1);
    ws.close().await;
    for n in 2..=6 {
        server.publish("signals", json!({"n": n})).await;
    }
    let mut again = server.ws("/ws").await;
    let pos = subscribe_since(&mut again, "signals", &epoch, 1).await;
    assert_eq!(pos["recovered"], true);
    assert_eq!(pos["seq"], 6);
    for n in 2..=6 {
        let p = again.recv().await;
        assert_eq!(
            (p["seq"].as_u64(), p["data"]["n"].as_u64()),
            (Some(n), Some(n))
        );
    }
    server.publish("signals", json!({"n": 7})).await;
    assert_eq!(
        again.recv().await["seq"],
        7,
        "live publications follow the replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_while_publishers_publish_concurrently_has_no_gap_and_no_duplicate() {
    let server = TestServer::start_with(config("[history]\nsize = 10000\nttl_s = 600", &[])).await;
    let addr = server.addr;
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0..60 {
                    let resp = http
                        .post(format!("http://{addr}/api/v1/publish"))
                        .bearer_auth(PUBLISHER_KEY)
                        .body(json!({"channel":"busy","type":"t","data":{"p":p,"i":i}}).to_string())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                }
            })
        })
        .collect();
    let mut seen: Vec<u64> = Vec::new();
    let mut ws = server.ws("/ws").await;
    let first = ws.subscribe(&["busy"]).await["channels"][0].clone();
    let epoch = first["epoch"].as_str().unwrap().to_string();
    seen.extend(1..=first["seq"].as_u64().unwrap());
    for round in 0..8 {
        // Take a few live publications, drop the connection, resubscribe from the last one.
        for _ in 0..(round % 3 + 1) {
            let p = ws.recv().await;
            seen.push(p["seq"].as_u64().unwrap());
        }
        ws.close().await;
        ws = server.ws("/ws").await;
        let pos = subscribe_since(&mut ws, "busy", &epoch, *seen.last().unwrap()).await;
        assert_eq!(pos["recovered"], true);
        let until = pos["seq"].as_u64().unwrap();
        while seen.last().copied().unwrap() < until {
            seen.push(ws.recv().await["seq"].as_u64().unwrap());
        }
    }
    for p in publishers {
        p.await.unwrap();
    }
    while seen.len() < 240 {
        seen.push(ws.recv().await["seq"].as_u64().unwrap());
    }
    let expected: Vec<u64> = (1..=240).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_older_than_the_history_gives_recovered_false_and_no_replay() {
    let server = TestServer::start_with(config("[history]\nsize = 3", &[])).await;
    let mut ws = server.ws("/ws").await;
    let epoch = ws.subscribe(&["h"]).await["channels"][0]["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    ws.close().await;
    for n in 1..=5 {
        server.publish("h", json!(n)).await;
    }
    let mut again = server.ws("/ws").await;
    let pos = subscribe_since(&mut again, "h", &epoch, 0).await;
    assert_eq!(pos["recovered"], false);
    again.send(json!({"type":"ping","id":9})).await;
    assert_eq!(again.recv().await["type"], "pong", "nothing was replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_from_another_epoch_is_not_recovered() {
    let server = TestServer::start().await;
    server.publish("e", json!(1)).await;
    let mut ws = server.ws("/ws").await;
    let pos = subscribe_since(&mut ws, "e", "not-this-epoch", 0).await;
    assert_eq!(pos["recovered"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_returns_publications_after_since_oldest_first_with_locked_stubs() {
    let server = TestServer::start().await;
    for n in 1..=4 {
        server.publish("hist", json!({"n": n})).await;
    }
    let (status, _) = server
        .post(
            "/api/v1/publish",
            &json!({"channel":"hist","type":"t","data":{"n":5},"tier":"whale"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server.get("/api/v1/channels/hist/history?since=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["channel"], "hist");
    assert!(body["epoch"].is_string());
    let seqs = seqs_of(&body);
    assert_eq!(seqs, [3, 4, 5]);
    let last = &body["publications"][2];
    assert_eq!(last["type"], "locked");
    assert!(last.get("data").is_none());
    let (_, body) = server.get("/api/v1/channels/hist/history?limit=2").await;
    let seqs = seqs_of(&body);
    assert_eq!(seqs, [4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_refuses_bad_input_and_channels_the_caller_may_not_read() {
    let server = TestServer::start().await;
    for (path, status) in [
        ("/api/v1/channels/hist/history?since=-1", 422),
        ("/api/v1/channels/hist/history?since=x", 422),
        ("/api/v1/channels/hist/history?limit=0", 422),
        ("/api/v1/channels/hist/history?limit=1001", 422),
        ("/api/v1/channels/bad%20name/history", 422),
        ("/api/v1/channels/whale/history", 403),
        ("/api/v1/channels/trades:alice/history", 401),
    ] {
        let (got, body) = server.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    let (status, body) = server.get("/api/v1/channels/never-used/history").await;
    assert_eq!(status, 200);
    assert_eq!(body["publications"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_info_counts_subscribers_and_presence_by_anonymous_id() {
    let server = TestServer::start().await;
    let mut a = server.ws("/ws?anonymousId=anna").await;
    a.subscribe(&["room"]).await;
    let mut b = server.ws("/ws?anonymousId=anna").await;
    b.subscribe(&["room"]).await;
    let mut c = server.ws("/ws").await;
    c.subscribe(&["room"]).await;
    let (status, body) = server.get("/api/v1/channels/room").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"channel":"room","subscribers":3,"presence":2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_opens_with_subscribed_then_streams_envelopes_with_cursor_ids() {
    let server = TestServer::start().await;
    let (status, mut sse) = server.sse("channels=news,price:X", &[]).await;
    assert_eq!(status, 200);
    let opened = sse.next_event().await;
    assert_eq!(opened.event.as_deref(), Some("subscribed"));
    assert_eq!(opened.json()["channels"].as_array().unwrap().len(), 2);
    server.publish("news", json!({"n": 1})).await;
    let e = sse.next_event().await;
    assert!(e.event.is_none());
    assert!(e.id.is_some());
    let v = e.json();
    assert_eq!(
        (v["channel"].as_str(), v["seq"].as_u64()),
        (Some("news"), Some(1))
    );
    let (_, stats) = server.get("/ws/stats").await;
    assert_eq!(stats["total_connections"], 1, "SSE connections are counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_after_a_dropped_connection_with_last_event_id() {
    let server = TestServer::start().await;
    let (_, mut sse) = server.sse("channels=feed", &[]).await;
    sse.next_event().await;
    server.publish("feed", json!(1)).await;
    server.publish("feed", json!(2)).await;
    sse.next_event().await;
    let last_id = sse.next_event().await.id.unwrap();
    drop(sse);
    for n in 3..=5 {
        server.publish("feed", json!(n)).await;
    }
    let (status, mut again) = server
        .sse("channels=feed", &[("Last-Event-ID", &last_id)])
        .await;
    assert_eq!(status, 200);
    let opened = again.next_event().await.json();
    assert_eq!(opened["channels"][0]["recovered"], true);
    for n in 3..=5 {
        let v = again.next_event().await.json();
        assert_eq!((v["seq"].as_u64(), v["data"].as_u64()), (Some(n), Some(n)));
    }
    // The query form works too (browsers cannot set headers on the first request).
    let (_, mut by_query) = server
        .sse(&format!("channels=feed&last_event_id={last_id}"), &[])
        .await;
    by_query.next_event().await;
    assert_eq!(by_query.next_event().await.json()["seq"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_refuses_forbidden_channels_and_bad_cursors_before_the_stream_starts() {
    let server = TestServer::start().await;
    assert_eq!(server.sse("channels=whale", &[]).await.0, 403);
    assert_eq!(server.sse("channels=trades:bob", &[]).await.0, 401);
    assert_eq!(server.sse("channels=bad%20name", &[]).await.0, 422);
    assert_eq!(server.sse("", &[]).await.0, 400);
    assert_eq!(
        server
            .sse("channels=a", &[("Last-Event-ID", "garbage!")])
            .await
            .0,
        422
    );
    assert_eq!(server.sse("channels=a&token=x", &[]).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_sends_ping_comments_and_ends_on_shutdown() {
    let server = TestServer::start_with(config(
        "[limits]\nping_interval_s = 1\nidle_timeout_s = 3",
        &[],
    ))
    .await;
    let (_, mut sse) = server.sse("channels=a", &[]).await;
    sse.next_event().await;
    sse.read_until(": ping\n\n").await;
    // Pings keep the stream from counting as idle; shutdown ends it.
    server.stop().await.unwrap();
    assert!(sse.ended().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_at_once_when_publications_are_waiting() {
    let server = TestServer::start_with(config("[limits]\npoll_timeout_s = 1", &[])).await;
    server.publish("lp", json!(1)).await;
    // A first poll with nothing new answers empty after the timeout, with a cursor.
    let (status, first) = server.get("/api/v1/poll?channels=lp").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["publications"], json!([]));
    let cursor = first["cursor"].as_str().unwrap().to_string();
    server.publish("lp", json!(2)).await;
    server.publish("lp", json!(3)).await;
    let (status, body) = server
        .get(&format!("/api/v1/poll?channels=lp&cursor={cursor}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["recovered"], true);
    let seqs = seqs_of(&body);
    assert_eq!(seqs, [2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_empty_after_the_timeout_when_nothing_arrives() {
    let server = TestServer::start_with(config("[limits]\npoll_timeout_s = 1", &[])).await;
    let (status, body) = server.get("/api/v1/poll?channels=quiet").await;
    assert_eq!(status, 200);
    assert_eq!(body["publications"], json!([]));
    assert!(body["cursor"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_without_a_cursor_waits_for_a_new_publication() {
    let server = TestServer::start().await;
    server.publish("price:Z", json!({"old": true})).await;
    let addr = server.addr;
    let waiting = tokio::spawn(async move {
        let resp = reqwest::get(format!("http://{addr}/api/v1/poll?channels=price:Z"))
            .await
            .unwrap();
        resp.json::<Value>().await.unwrap()
    });
    // Publish until the waiting poll has subscribed and answers.
    let mut n = 0;
    let body = loop {
        n += 1;
        server.publish("price:Z", json!({"n": n})).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if waiting.is_finished() {
            break waiting.await.unwrap();
        }
    };
    let pubs = body["publications"].as_array().unwrap();
    assert!(!pubs.is_empty());
    assert!(
        pubs.iter().all(|p| p["data"].get("old").is_none()),
        "the snapshot is not new: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_refuses_bad_cursors_and_forbidden_channels() {
    let server = TestServer::start().await;
    assert_eq!(
        server.get("/api/v1/poll?channels=a&cursor=nope!").await.0,
        422
    );
    assert_eq!(server.get("/api/v1/poll?channels=premium").await.0, 403);
    assert_eq!(server.get("/api/v1/poll").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_connections_and_delivery_counters_in_prometheus_text() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["m"]).await;
    server.publish("m", json!(1)).await;
    ws.recv().await;
    let resp = reqwest::get(server.http_url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    for line in [
        "signalhub_connections 1",
        "signalhub_subscriptions 1",
        "signalhub_publications_total 1",
        "signalhub_deliveries_total 1",
        "# TYPE signalhub_deliveries counter",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_reads_history_of_every_tier() {
    let server = TestServer::start().await;
    let (status, _) = server
        .post(
            "/api/v1/publish",
            &json!({"channel":"vault","type":"t","data":{"n":1},"tier":"whale"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .get_with("/api/v1/channels/vault/history", Some(PUBLISHER_KEY))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["publications"][0]["type"], "t",
        "full data, not a locked stub"
    );
    let (_, anonymous) = server.get("/api/v1/channels/vault/history").await;
    assert_eq!(anonymous["publications"][0]["type"], "locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_keyed_by_the_signals_all_alias_recovers_the_signals_channel() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    let epoch = ws.subscribe(&["signals"]).await["channels"][0]["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    server.publish("signals", json!({"n": 1})).await;
    assert_eq!(ws.recv().await["seq"], 1);
    ws.close().await;
    server.publish("signals", json!({"n": 2})).await;
    let mut again = server.ws("/ws").await;
    again
        .send(
            json!({"type": "subscribe", "id": 2, "channels": ["signals"],
                     "since": {"signals:all": {"epoch": epoch, "seq": 1}}}),
        )
        .await;
    let reply = again.recv().await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["channels"][0]["recovered"], true, "{reply}");
    let p = again.recv().await;
    assert_eq!(
        (p["seq"].as_u64(), p["data"]["n"].as_u64()),
        (Some(2), Some(2))
    );
}
