//! What a subscriber receives from the client: publications in order, and everything else
//! that happened to its channels or to the connection.

use std::fmt;
use std::time::Duration;

use crate::envelope::Envelope;

/// One item of an [`crate::Events`] stream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A publication, live, replayed by the server, or fetched by a resync; each (channel,
    /// seq) at most once, in seq order per channel.
    Publication(Envelope),
    /// A `locked` stub: the publication's tier is above the connection's (no `data`).
    Locked(Envelope),
    /// The server accepted a subscription on this connection at `seq` of `epoch`.
    /// `recovered` says the missed publications follow as a replay.
    Subscribed {
        channel: String,
        epoch: String,
        seq: u64,
        recovered: bool,
    },
    /// The server could not replay what was missed on `channel` (history lost, or a new
    /// epoch); the publications found in the history API for `epoch` follow.
    Resync { channel: String, epoch: String },
    /// The server took the subscription away (`tier_changed`, `auth_changed`); it is asked
    /// for again when the identity changes or the client reconnects.
    Unsubscribed { channel: String, reason: String },
    /// An error frame from the server (a refused subscription names its channel), or the
    /// client's own trouble: `resync_failed`, `token_error`, `token_expired`, `disconnected`
    /// (1008), `unauthorized`/`forbidden` (a refused handshake).
    Error {
        code: String,
        message: String,
        channel: Option<String>,
    },
    /// The connection changed state.
    State(ConnectionState),
}

/// The state of the client's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Opening a WebSocket.
    Connecting,
    /// Welcomed by the server; subscriptions are being (re)sent.
    Connected { connection_id: String },
    /// The connection ended or could not be opened; the next attempt starts after `delay`.
    Reconnecting {
        /// The close code, when the server sent one.
        code: Option<u16>,
        reason: String,
        delay: Duration,
    },
    /// Closed for good: by [`crate::Client::close`] (1000), by the server's policy (1008),
    /// an expired token with no new one (4001), or a refused handshake. The stream ends.
    Closed { code: Option<u16>, reason: String },
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = |code: &Option<u16>| code.map(|c| format!(" ({c})")).unwrap_or_default();
        match self {
            ConnectionState::Connecting => f.write_str("connecting"),
            ConnectionState::Connected { connection_id } => {
                write!(f, "connected as {connection_id}")
            }
            ConnectionState::Reconnecting {
                code: c,
                reason,
                delay,
            } => write!(
                f,
                "disconnected{}: {reason}; reconnecting in {:.1} s",
                code(c),
                delay.as_secs_f64()
            ),
            ConnectionState::Closed { code: c, reason } => write!(f, "closed{}: {reason}", code(c)),
        }
    }
}
