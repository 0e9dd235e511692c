//! The sweeper: one task that pings, times out and reaps every connection once a second.
//!
//! Connections carry no timers of their own (a tokio `Sleep` per socket would cost more
//! than the rest of an idle connection), so liveness is checked here from the coarse
//! timestamps each connection keeps.

use std::collections::HashMap;
use std::time::Duration;

use crate::state::AppState;
use crate::ws::connection::close;

/// How long a closing connection may take to finish its close handshake before it is
/// dropped without one (a connection whose close frame its peer's full socket has not taken
/// yet defers that, up to `ws::connection::CLOSE_FRAME_WAIT_S`).
pub const CLOSE_GRACE_S: u32 = 3;

/// Runs until the task is aborted.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut closing_since: HashMap<u64, u32> = HashMap::new();
    let mut rounds: u64 = 0;
    loop {
        tick.tick().await;
        sweep(&state, &mut closing_since);
        rounds += 1;
        if rounds.is_multiple_of(10) {
            state.hub.collect_garbage();
        }
    }
}

/// One pass over every connection.
pub fn sweep(state: &AppState, closing_since: &mut HashMap<u64, u32>) {
    let now = state.clock.now_s();
    let unix_now = chrono::Utc::now().timestamp();
    let limits = &state.config.limits;
    let mut still_closing: HashMap<u64, u32> = HashMap::new();
    state.registry.for_each(|client| {
        if client.is_closing() {
            let since = closing_since.get(&client.id()).copied().unwrap_or(now);
            if now.saturating_sub(since) >= CLOSE_GRACE_S {
                client.abort();
            }
            still_closing.insert(client.id(), since);
            return;
        }
        if client.expires_at().is_some_and(|exp| unix_now >= exp) {
            // Credentials expired and no fresh `auth` frame came: 4001.
            client.request_close(close::TOKEN_EXPIRED, false);
            still_closing.insert(client.id(), now);
            return;
        }
        if now.saturating_sub(client.last_seen()) >= limits.idle_timeout_s {
            client.request_close(close::IDLE, false);
            still_closing.insert(client.id(), now);
            return;
        }
        if client.ping_due(now, limits.ping_interval_s) {
            client.request_ping();
        }
    });
    *closing_since = still_closing;
}
