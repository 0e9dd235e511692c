//! Helpers shared by the connector tests: a feed under test and what its sink received.

#![allow(dead_code)] // each test file uses a different part

use std::future::Future;
use std::time::Duration;

use signalhub_feeds::{Exchange, Feed, FeedConfig, FeedEvent, FeedHandle, Status, Tick, Timing};
use tokio::sync::{mpsc, oneshot};

/// Test timing: backoff in tens of milliseconds, so a reconnect is quick.
pub fn fast_timing() -> Timing {
    Timing {
        backoff_unit: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(5),
    }
}

/// A running feed and everything its sink received so far.
pub struct Running {
    pub handle: FeedHandle,
    events: mpsc::Receiver<FeedEvent>,
    pub ticks: Vec<Tick>,
    pub statuses: Vec<Status>,
    stop: Option<oneshot::Sender<()>>,
}

pub fn config(exchange: Exchange, url: &str, products: &[&str], stale_after_s: f64) -> FeedConfig {
    let mut config = FeedConfig::new("test", exchange, products);
    config.url = Some(url.to_string());
    config.stale_after_s = stale_after_s;
    config
}

pub fn start(config: FeedConfig) -> Running {
    let (tx, events) = mpsc::channel(1024);
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let handle = Feed::spawn_with(config, fast_timing(), tx, shutdown).expect("valid config");
    Running {
        handle,
        events,
        ticks: Vec::new(),
        statuses: Vec::new(),
        stop: Some(stop),
    }
}

impl Running {
    async fn next(&mut self, what: &str) {
        let event = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("feed task ended");
        match event {
            FeedEvent::Tick(tick) => self.ticks.push(tick),
            FeedEvent::Status { feed, status } => {
                assert_eq!(&*feed, "test");
                self.statuses.push(status);
            }
        }
    }

    /// Waits until the status changes to `status` (counting only changes from now on).
    pub async fn wait_status(&mut self, status: Status) {
        let from = self.statuses.len();
        while !self.statuses[from..].contains(&status) {
            self.next(&format!("status {status:?}")).await;
        }
    }

    /// Waits until `n` ticks arrived in total.
    pub async fn wait_ticks(&mut self, n: usize) {
        while self.ticks.len() < n {
            self.next(&format!("{n} ticks")).await;
        }
    }

    /// Waits (handling events meanwhile) until `condition` holds on the feed's handle.
    pub async fn wait_until(&mut self, what: &str, condition: impl Fn(&FeedHandle) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition(&self.handle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(10), self.next(what)).await;
        }
    }

    /// Completes the shutdown future and waits for the task to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().expect("once").send(());
        let handle = self.handle;
        tokio::time::timeout(Duration::from_secs(10), handle.join())
            .await
            .expect("feed task ends after shutdown");
    }
}

/// Runs `future` with a 10 s guard so a broken behaviour fails instead of hanging.
pub async fn guarded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
