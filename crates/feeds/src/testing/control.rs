//! What a test can see and do on a running replay server: its URL, counters of what clients
//! did, and the faults it can inject (stall, drop).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Timings and rules of a replay server. The defaults are the exchanges' own figures; tests
/// shorten them so they run in milliseconds.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Coinbase: a client that has not subscribed by then is disconnected (5 s).
    pub subscribe_deadline: Duration,
    /// Coinbase heartbeats per product (1 s) or Binance pings (20 s).
    pub keepalive_interval: Duration,
    /// Binance: a ping not answered by a pong within this closes the connection (60 s).
    pub pong_timeout: Duration,
    /// Spacing of scripted frames.
    pub frame_interval: Duration,
    /// Coinbase: products that exist; any other is refused with an error frame. `None`: all.
    pub valid_products: Option<Vec<String>>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            subscribe_deadline: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(1),
            pong_timeout: Duration::from_secs(60),
            frame_interval: Duration::from_millis(10),
            valid_products: None,
        }
    }
}

/// Counters of what clients did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    pub connections: u64,
    pub subscribes: Vec<String>,
    pub deadline_closes: u64,
    pub rate_limit_closes: u64,
    pub pongs_matched: u64,
    pub pongs_mismatched: u64,
    pub pong_timeouts: u64,
    pub requested_streams: Vec<Vec<String>>,
    pub sent_at: Vec<Option<Instant>>,
}

/// State shared by the accept loop, every connection and the test.
#[derive(Debug)]
pub(crate) struct Control {
    pub options: ReplayOptions,
    seen: Mutex<Seen>,
    /// `true` while stalled: connections send nothing at all.
    pub stalled: watch::Sender<bool>,
    /// Bumped to drop every open connection.
    pub drops: watch::Sender<u64>,
}

impl Control {
    pub fn new(options: ReplayOptions) -> Arc<Control> {
        Arc::new(Control {
            options,
            seen: Mutex::new(Seen::default()),
            stalled: watch::Sender::new(false),
            drops: watch::Sender::new(0),
        })
    }

    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records when scripted frame `index` went out.
    pub fn frame_sent(&self, index: usize) {
        let now = Instant::now();
        let mut seen = self.seen();
        if seen.sent_at.len() <= index {
            seen.sent_at.resize(index + 1, None);
        }
        seen.sent_at[index] = Some(now);
    }

    /// Waits while stalled; returns at once otherwise.
    pub async fn while_stalled(&self) {
        let mut stalled = self.stalled.subscribe();
        let _ = stalled.wait_for(|s| !*s).await;
    }
}

/// A running replay server; it stops when dropped.
#[derive(Debug)]
pub struct ReplayServer {
    pub(crate) url: String,
    pub(crate) control: Arc<Control>,
    pub(crate) task: JoinHandle<()>,
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.task.abort();
        // Connections watch `drops`; ending them closes their sockets.
        self.control.drops.send_modify(|d| *d += 1);
    }
}

impl ReplayServer {
    /// `ws://127.0.0.1:PORT`: the full URL for Coinbase, the base URL for Binance.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every connection goes silent (no frames, heartbeats, pings or acks) until [`resume`].
    ///
    /// [`resume`]: ReplayServer::resume
    pub fn stall(&self) {
        self.control.stalled.send_replace(true);
    }

    /// Ends a stall.
    pub fn resume(&self) {
        self.control.stalled.send_replace(false);
    }

    /// Drops every open connection without a close frame, like a network failure.
    pub fn drop_connections(&self) {
        self.control.drops.send_modify(|d| *d += 1);
    }

    /// WebSocket connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.control.seen().connections
    }

    /// Subscribe messages received (Coinbase `subscribe`, Binance `SUBSCRIBE`), in order.
    pub fn subscribes(&self) -> Vec<String> {
        self.control.seen().subscribes.clone()
    }

    /// Connections closed because they did not subscribe in time.
    pub fn deadline_closes(&self) -> u64 {
        self.control.seen().deadline_closes
    }

    /// Binance: connections closed for sending more than 5 messages in a second.
    pub fn rate_limit_closes(&self) -> u64 {
        self.control.seen().rate_limit_closes
    }

    /// Binance: pongs that carried the payload of the ping they answer.
    pub fn pongs_matched(&self) -> u64 {
        self.control.seen().pongs_matched
    }

    /// Binance: pongs with another payload.
    pub fn pongs_mismatched(&self) -> u64 {
        self.control.seen().pongs_mismatched
    }

    /// Binance: connections closed because a ping went unanswered.
    pub fn pong_timeouts(&self) -> u64 {
        self.control.seen().pong_timeouts
    }

    /// Binance: the streams each connection asked for in its URL.
    pub fn requested_streams(&self) -> Vec<Vec<String>> {
        self.control.seen().requested_streams.clone()
    }

    /// When scripted frame `index` was last sent (test clock).
    pub fn sent_at(&self, index: usize) -> Option<Instant> {
        self.control.seen().sent_at.get(index).copied().flatten()
    }

    /// Polls `condition` every few milliseconds until it holds; panics with `what` after 10 s
    /// so a broken behaviour fails the test instead of hanging it.
    pub async fn wait_until(&self, what: &str, mut condition: impl FnMut(&ReplayServer) -> bool) {
        wait_until(what, || condition(self)).await;
    }
}

/// Polls `condition` until it holds, failing after 10 s.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `future` unless the connection is dropped first.
pub(crate) async fn unless_dropped<F: Future<Output = ()>>(control: &Control, future: F) {
    let mut drops = control.drops.subscribe();
    tokio::select! {
        _ = drops.changed() => {}
        () = future => {}
    }
}
