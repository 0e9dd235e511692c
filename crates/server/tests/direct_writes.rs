//! The io_uring direct writer: publications to idle connections go straight to their
//! sockets, whole and in order, also when a socket fills up; with `io_uring = false` every
//! delivery goes through the connection's own task.

mod common;

use std::time::Duration;

use common::{config, RawWs, TestServer};
use serde_json::{json, Value};

async fn direct_deliveries(server: &TestServer) -> u64 {
    server.state.hub.stats().direct_deliveries
}

/// False (skip) where the kernel refuses io_uring (an old kernel, the
/// `kernel.io_uring_disabled` sysctl, a container's seccomp profile): the server then
/// runs without direct writes, which the `io_uring = false` tests cover.
/// `SIGNALHUB_REQUIRE_IO_URING=1` turns the skip into a failure.
fn io_uring_here() -> bool {
    match signalhub::ws::direct::UringWriter::start(1) {
        Ok(_) => true,
        Err(e) if std::env::var("SIGNALHUB_REQUIRE_IO_URING").as_deref() == Ok("1") => {
            panic!("io_uring unavailable: {e}")
        }
        Err(e) => {
            eprintln!("skipped: io_uring unavailable here ({e})");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscriber_gets_publications_from_the_direct_writer() {
    if !io_uring_here() {
        return;
    }
    let server = TestServer::start_with(config("io_uring = true", &[])).await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["prices"]).await;
    for n in 1..=3 {
        // Apart by more than the burst gap, so each goes direct to the parked connection.
        tokio::time::sleep(Duration::from_millis(10)).await;
        server.publish("prices", json!({ "n": n })).await;
        let envelope = ws.recv().await;
        assert_eq!(envelope["seq"], n);
        assert_eq!(envelope["data"]["n"], n);
    }
    assert_eq!(direct_deliveries(&server).await, 3);
    let metrics = reqwest::get(server.http_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("signalhub_direct_deliveries_total 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_io_uring_off_connections_write_every_delivery_themselves() {
    let server = TestServer::start_with(config("io_uring = false", &[])).await;
    let mut ws = server.ws("/ws").await;
    ws.subscribe(&["prices"]).await;
    for n in 1..=3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        server.publish("prices", json!({ "n": n })).await;
        assert_eq!(ws.recv().await["seq"], n);
    }
    assert_eq!(direct_deliveries(&server).await, 0);
    assert_eq!(server.state.hub.stats().deliveries, 3);
}

/// Subscribes a client with a tiny receive buffer, publishes ~6 MB while it reads nothing
/// (apart by more than the burst gap), then reads: every publication must arrive whole and
/// in order. The socket fills, so writes stop short or find it full and the rest waits.
async fn fall_behind_then_read_everything(server: &TestServer) {
    let mut raw = RawWs::connect_with_recv_buffer(server, "/ws", 4096).await;
    assert_eq!(raw.read_json().await["type"], "welcome");
    raw.send_text(r#"{"type":"subscribe","channels":["big"]}"#)
        .await;
    assert_eq!(raw.read_json().await["type"], "subscribed");
    let filler = "x".repeat(100_000);
    let count = 60u64;
    for n in 1..=count {
        tokio::time::sleep(Duration::from_millis(6)).await;
        server
            .publish("big", json!({ "n": n, "filler": filler }))
            .await;
    }
    for n in 1..=count {
        let envelope: Value = raw.read_json().await;
        assert_eq!(envelope["seq"], n);
        assert_eq!(envelope["data"]["n"], n);
        assert_eq!(
            envelope["data"]["filler"].as_str().map(str::len),
            Some(100_000)
        );
    }
}

/// A queue bound far above what is published, so nothing is dropped as a slow consumer.
const ROOMY: &str = "[limits]\nmax_queue_bytes = 67108864";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_a_full_socket_gets_every_direct_write_whole_and_in_order() {
    if !io_uring_here() {
        return;
    }
    let server = TestServer::start_with(config(&format!("io_uring = true\n{ROOMY}"), &[])).await;
    fall_behind_then_read_everything(&server).await;
    assert!(direct_deliveries(&server).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_a_full_socket_gets_every_queued_publication_once_it_reads() {
    // Without direct writes: the connection's own writes stop on a full socket, and what
    // was queued meanwhile must still go out once the socket drains (no later push or ping
    // needed to wake the connection).
    let server = TestServer::start_with(config(&format!("io_uring = false\n{ROOMY}"), &[])).await;
    fall_behind_then_read_everything(&server).await;
    assert_eq!(direct_deliveries(&server).await, 0);
}
