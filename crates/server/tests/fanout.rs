//! Fan-out as a job beside the publisher (forced for every channel here with
//! `defer_fanout_from = 0`): publishes are answered once sequenced, every subscriber still
//! gets every publication once and in order, history is complete at the answer, and the
//! shutdown notice still goes out before the close.

mod common;

use common::{config, TestServer};
use serde_json::json;

/// A server whose every fan-out runs as a job on the blocking pool.
async fn deferring_server(io_uring: bool) -> TestServer {
    let mut config = config("", &[("SIGNALHUB_IO_URING", &io_uring.to_string())]);
    config.hub.defer_fanout_from = 0;
    TestServer::start_with(config).await
}

async fn every_subscriber_gets_a_burst_once_and_in_order(io_uring: bool) {
    let server = deferring_server(io_uring).await;
    let mut subscribers = Vec::new();
    for _ in 0..8 {
        let mut ws = server.ws("/ws").await;
        ws.subscribe(&["burst"]).await;
        subscribers.push(ws);
    }
    // Four publishers at once, 50 each: publications pile up during each fan-out.
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let url = server.http_url("/api/v1/publish");
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0..50 {
                    let answer = http
                        .post(&url)
                        .bearer_auth(common::PUBLISHER_KEY)
                        .json(
                            &json!({"channel": "burst", "type": "test", "data": {"p": p, "i": i}}),
                        )
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), 200);
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    // Every answered publication is already in the history.
    let (status, page) = server.get("/api/v1/channels/burst/history?limit=100").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["seq"], 200, "{page}");
    for ws in &mut subscribers {
        for seq in 1..=200u64 {
            let envelope = ws.recv().await;
            assert_eq!(envelope["seq"], seq, "{envelope}");
        }
    }
    assert_eq!(server.state.hub.stats().publications, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_fanned_out_by_jobs_reaches_every_subscriber_once_in_order() {
    every_subscriber_gets_a_burst_once_and_in_order(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_fanned_out_by_jobs_with_direct_writes_reaches_every_subscriber_once_in_order() {
    every_subscriber_gets_a_burst_once_and_in_order(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_joining_during_deferred_fan_outs_sees_each_publication_once() {
    let server = deferring_server(true).await;
    let mut early = server.ws("/ws").await;
    early.subscribe(&["joined"]).await;
    for i in 0..20 {
        server.publish("joined", json!({ "i": i })).await;
    }
    let mut late = server.ws("/ws").await;
    let reply = late.subscribe(&["joined"]).await;
    let from = reply["channels"][0]["seq"].as_u64().unwrap();
    assert_eq!(from, 20, "{reply}");
    for i in 20..30 {
        server.publish("joined", json!({ "i": i })).await;
    }
    for seq in 1..=30u64 {
        assert_eq!(early.recv().await["seq"], seq);
    }
    for seq in from + 1..=30 {
        assert_eq!(late.recv().await["seq"], seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_notice_goes_out_before_the_close_when_fan_out_is_deferred() {
    let server = deferring_server(true).await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["system"]).await;
    let stopped = tokio::spawn(server.stop());
    let notice = ws.recv().await;
    assert_eq!(notice["data"]["status"], "shutting_down");
    assert_eq!(ws.close_code().await, 1001);
    stopped.await.unwrap().unwrap();
}
