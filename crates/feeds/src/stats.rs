//! A feed's counters and status, shared between its task and its [`crate::FeedHandle`].
//!
//! A std `Mutex` around plain numbers: it is held for a few assignments and never across an
//! `.await`, so it cannot stall the feed task, and readers (the HTTP API) see one consistent
//! snapshot.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::config::Exchange;
use crate::tick::{now_utc_millis, Status};

/// What `GET /api/v1/feeds` lists for one feed (spec item 40), plus `dropped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedStats {
    /// The feed's name.
    pub name: String,
    /// Its connector.
    pub exchange: Exchange,
    /// Its canonical products.
    pub products: Vec<String>,
    /// Current status.
    pub status: Status,
    /// Messages received from the exchange (every text frame; the synthetic feed counts ticks).
    pub messages: u64,
    /// Connection attempts after the first.
    pub reconnects: u64,
    /// Sequence jumps on streams numbered contiguously.
    pub gaps: u64,
    /// Messages dropped because their sequence went backwards or repeated.
    pub dropped: u64,
    /// When the last message arrived, RFC 3339 UTC milliseconds.
    pub last_message_at: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Counters {
    pub status: Status,
    pub messages: u64,
    pub reconnects: u64,
    pub gaps: u64,
    pub dropped: u64,
    pub last_message_at: Option<String>,
}

/// The shared half: fixed identity and the counters.
#[derive(Debug)]
pub(crate) struct SharedStats {
    pub name: Arc<str>,
    pub exchange: Exchange,
    pub products: Vec<String>,
    counters: Mutex<Counters>,
}

impl SharedStats {
    pub fn new(name: Arc<str>, exchange: Exchange, products: Vec<String>) -> Self {
        SharedStats {
            name,
            exchange,
            products,
            counters: Mutex::new(Counters {
                status: Status::Reconnecting,
                messages: 0,
                reconnects: 0,
                gaps: 0,
                dropped: 0,
                last_message_at: None,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Counters> {
        // A panic while holding this lock leaves plain numbers behind, still usable.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` messages that arrived now.
    pub fn message_arrived(&self, n: u64) {
        let now = now_utc_millis();
        let mut c = self.lock();
        c.messages += n;
        c.last_message_at = Some(now);
    }

    pub fn snapshot(&self) -> FeedStats {
        let c = self.lock();
        FeedStats {
            name: self.name.to_string(),
            exchange: self.exchange,
            products: self.products.clone(),
            status: c.status,
            messages: c.messages,
            reconnects: c.reconnects,
            gaps: c.gaps,
            dropped: c.dropped,
            last_message_at: c.last_message_at.clone(),
        }
    }
}
