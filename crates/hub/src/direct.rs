//! The hook through which the hub hands publications to a transport's direct writer.
//!
//! Waking one task per subscriber so that each writes one frame costs a scheduler round
//! trip per delivery. When a connection is parked idle on its socket (see `client`), the
//! hub instead claims it and gives the whole set of claimed sockets for one payload to a
//! [`DirectSink`] in one call, which can write them in a batch (the server uses io_uring).
//! The hub stays free of I/O: it only knows socket numbers.
//!
//! Direct writes are one send per delivery. When a channel's publications come less than
//! `DIRECT_MIN_GAP_MS` after the previous one's fan-out ended (a burst), the hub queues
//! instead, so that each connection writes everything that piled up in one `writev`.

use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;

use crate::client::Client;

/// A client claimed for a direct write, and the socket to write to.
#[derive(Debug, Clone)]
pub struct Target {
    pub client: Arc<Client>,
    pub socket: i32,
}

/// Writes one payload to many sockets.
pub trait DirectSink: Send + Sync + Debug {
    /// Writes `payload` (a JSON envelope, framed by the sink) to every target's socket, now
    /// or soon, in order with earlier calls, and reports each with
    /// [`Client::direct_done`], also when the write failed or the sink is shutting down.
    fn send(&self, payload: &Bytes, targets: Vec<Target>);
}
