//! The server's side of `[[feeds]]`: starts each configured feed, publishes its ticks as
//! `price_update` on `price:{PRODUCT}` and its status changes as `system_status` on `system`
//! through [`Publisher`], and keeps the handles whose stats `/ws/health` and
//! `GET /api/v1/feeds` show.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use serde_json::value::RawValue;
use signalhub_feeds::{Feed, FeedEvent, FeedHandle, FeedStats, Status};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::publish::{Message, Publisher, Source};
use crate::state::AppState;

/// Events a feed may have queued before its publisher task takes them.
const SINK_CAPACITY: usize = 1024;
/// How long shutdown waits for a feed to close its exchange connection.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// The running feeds of one server.
#[derive(Debug, Default)]
pub struct Feeds {
    running: Mutex<Vec<Running>>,
    stop: Mutex<Option<watch::Sender<bool>>>,
}

#[derive(Debug)]
struct Running {
    handle: FeedHandle,
    publisher: JoinHandle<()>,
}

impl Feeds {
    /// Starts every configured feed and its publishing task. Called once, at start.
    pub fn start(state: &AppState) {
        if state.config.feeds.is_empty() {
            return;
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut running = Vec::new();
        for config in &state.config.feeds {
            let (sink, events) = mpsc::channel(SINK_CAPACITY);
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            };
            let name = config.name.clone();
            let handle = match Feed::spawn(config.clone(), sink, shutdown) {
                Ok(handle) => handle,
                Err(e) => {
                    // Validated at load time; a failure here is a bug, not a config error.
                    tracing::error!(feed = %name, error = %e, "feed not started");
                    continue;
                }
            };
            let publisher = tokio::spawn(publish_events(
                Publisher::new(state.clone()),
                Source::Internal(format!("feed:{name}")),
                events,
            ));
            running.push(Running { handle, publisher });
        }
        *state.feeds.running.lock().expect("feeds lock") = running;
        *state.feeds.stop.lock().expect("feeds lock") = Some(stop_tx);
    }

    /// Tells every feed to close its exchange connection and waits (bounded) for them.
    pub async fn stop(&self) {
        if let Some(stop) = self.stop.lock().expect("feeds lock").take() {
            let _ = stop.send(true);
        }
        let running = std::mem::take(&mut *self.running.lock().expect("feeds lock"));
        for Running { handle, publisher } in running {
            let name = handle.name().to_string();
            if tokio::time::timeout(STOP_WAIT, handle.join())
                .await
                .is_err()
            {
                tracing::warn!(feed = %name, "feed did not stop in time");
            }
            // The feed dropped its sink, so the publisher drains what is queued and ends.
            let _ = tokio::time::timeout(STOP_WAIT, publisher).await;
        }
    }

    /// Each feed's counters, in configuration order.
    pub fn stats(&self) -> Vec<FeedStats> {
        let running = self.running.lock().expect("feeds lock");
        running.iter().map(|r| r.handle.stats()).collect()
    }

    /// Each feed's name and status, in configuration order.
    pub fn statuses(&self) -> Vec<(String, Status)> {
        let running = self.running.lock().expect("feeds lock");
        running
            .iter()
            .map(|r| (r.handle.name().to_string(), r.handle.status()))
            .collect()
    }
}

/// Publishes one feed's events until its sink closes.
async fn publish_events(
    publisher: Publisher,
    source: Source,
    mut events: mpsc::Receiver<FeedEvent>,
) {
    while let Some(event) = events.recv().await {
        let (channel, kind, data, id_prefix) = match &event {
            FeedEvent::Tick(tick) => (
                format!("price:{}", tick.product),
                "price_update",
                tick.to_json(),
                "pub_",
            ),
            FeedEvent::Status { feed, status } => (
                "system".to_string(),
                "system_status",
                json!({"feed": &**feed, "status": status.as_str()}).to_string(),
                "sys_",
            ),
        };
        let data = match RawValue::from_string(data) {
            Ok(data) => data,
            Err(e) => {
                tracing::error!(?source, error = %e, "feed event is not JSON; dropped");
                continue;
            }
        };
        let channels = [channel];
        let sent = publisher
            .send(Message {
                channels: &channels,
                kind,
                data: &data,
                tier: None,
                id_prefix,
            })
            .await;
        if let Err(e) = sent {
            tracing::warn!(?source, channel = %channels[0], error = %e, "feed publication failed");
        }
    }
}
