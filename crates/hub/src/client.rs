//! The state a connection shares with the hub: its bounded outbox, identity and liveness.
//!
//! The hub only ever `push`es into an outbox and wakes the connection's task; it never waits
//! on a socket. The outbox holds encoded payloads (`Bytes` shared by every subscriber of a
//! publication) and is bounded in bytes: a push past the bound empties it and asks the
//! connection to close with 4009, so a slow reader costs at most the bound, never the
//! publisher's time. An empty outbox allocates nothing, which matters at 19k idle sockets.
//!
//! The mutexes are `std` ones: they guard a few words, are never held across `.await`, and
//! are uncontended except for the instant a publisher and the connection meet.
//!
//! Direct writes (see `direct`): a WebSocket connection with nothing queued and nothing
//! half-written parks itself as *idle* with its socket. A publication offered to an idle
//! client is claimed for a direct write (the client turns *busy*) instead of being queued,
//! and the transport's writer sends it straight to the socket, then reports back with
//! [`Client::direct_done`]. While busy, the connection writes nothing itself and does not
//! end (so its socket stays open under the writer); later publications are claimed too
//! while nothing is queued or requested, and queued otherwise.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;

use crate::tier::TierId;

/// Close code for a slow consumer whose outbox overflowed.
pub const CLOSE_SLOW_CONSUMER: u16 = 4009;

/// How a connection authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum AuthKind {
    #[default]
    Anonymous,
    Session,
    Wallet,
}

impl AuthKind {
    /// The wire name (`anonymous`, `session`, `wallet`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Anonymous => "anonymous",
            AuthKind::Session => "session",
            AuthKind::Wallet => "wallet",
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub auth: AuthKind,
    /// The authenticated subject (None for anonymous connections).
    pub user: Option<Arc<str>>,
    /// The `anonymousId` an anonymous client named itself with, if any.
    pub anonymous_id: Option<Arc<str>>,
    pub tier: TierId,
    /// Unix seconds at which the credentials expire, if they do.
    pub expires_at: Option<i64>,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The outbox overflowed: it was emptied and the connection asked to close with 4009.
    Overflow,
    /// The connection is closing; nothing more is queued.
    Closed,
}

/// A request to close, as seen by the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u16,
    /// Drop frames not yet written (slow consumer) instead of flushing them first.
    pub discard_pending: bool,
}

#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<Bytes>,
    bytes: u32,
    waker: Option<Waker>,
    close: Option<CloseRequest>,
    /// The close request was handed to the connection (it is reported once).
    close_taken: bool,
    ping_due: bool,
    /// The identity changed from outside (an admin tier change): re-check subscriptions.
    refresh_due: bool,
    /// Set when the connection must stop at once (close handshake timed out).
    abort: bool,
    direct: Direct,
    /// A direct write stopped short: the writer hands back the rest of its claims unsent.
    draining: bool,
    /// The connection was polled (woken by its socket, say) while busy and wrote and read
    /// nothing: it must run once the direct writes are done.
    polled_while_busy: bool,
    /// Direct writes claimed and not yet reported (`direct` is `Busy` while above zero).
    claims: u16,
    /// Frames at the front of `frames` that the writer handed back (they precede every
    /// frame the hub queued, which all came later).
    handed_back: u16,
    /// The socket a direct write goes to (valid while `direct` is `Idle` or `Busy`).
    socket: i32,
    /// Bytes of the first queued frame already written by a direct write that stopped short.
    head_written: u32,
}

/// Most direct writes in flight for one client; past it publications queue.
const MAX_CLAIMS: u16 = 256;

/// Where a client stands with direct writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Direct {
    /// The connection is running or has not parked: publications are queued.
    #[default]
    Off,
    /// Parked with nothing queued or half-written: a publication may be written directly.
    Idle,
    /// Direct writes are in flight: the connection must not write or end.
    Busy,
    /// The connection has ended: never again.
    Retired,
}

impl Outbox {
    fn requests_pending(&self) -> bool {
        self.close.is_some()
            || self.ping_due
            || self.refresh_due
            || self.abort
            || self.polled_while_busy
    }

    /// Drops queued frames, except one a direct write left half-written (the stream must
    /// carry the rest of it before anything else, a close frame included).
    fn discard_frames(&mut self) {
        if self.head_written > 0 {
            self.frames.truncate(1);
            self.bytes = self.frames.front().map_or(0, len32);
        } else {
            self.frames = VecDeque::new();
            self.bytes = 0;
        }
        self.handed_back = self.handed_back.min(self.frames.len() as u16);
    }

    /// Takes the waker to wake the connection after a change, and stops direct writes
    /// until it parks again. A busy client is not woken: its writer does that when done.
    fn wake_connection(&mut self) -> Option<Waker> {
        match self.direct {
            Direct::Busy => None,
            Direct::Idle => {
                self.direct = Direct::Off;
                self.waker.take()
            }
            Direct::Off | Direct::Retired => self.waker.take(),
        }
    }
}

/// A frame's length as counted in the outbox (frames are envelopes far below 4 GiB).
fn len32(frame: &Bytes) -> u32 {
    u32::try_from(frame.len()).unwrap_or(u32::MAX)
}

/// What became of a publication offered to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Claimed for a direct write to this socket; report with [`Client::direct_done`].
    Direct(i32),
    /// Not written directly: pushed as by [`Client::push`].
    Pushed(Push),
}

/// What the connection took from its outbox in one go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Payloads were moved out.
    pub frames: bool,
    /// A close request, reported once.
    pub close: Option<CloseRequest>,
    pub ping: bool,
    /// The identity was changed from outside; the connection re-checks its subscriptions.
    pub refresh: bool,
    pub abort: bool,
    /// A direct write is in flight: write nothing and wait to be woken.
    pub busy: bool,
    /// Bytes of the first taken frame that a direct write already sent.
    pub head_written: u32,
}

/// The per-connection state shared between the connection task, the hub and the registry.
#[derive(Debug)]
pub struct Client {
    id: u64,
    outbox: Mutex<Outbox>,
    identity: Mutex<Identity>,
    /// Coarse clock second of the last inbound frame (any frame, control frames included).
    last_seen: AtomicU32,
    /// Coarse clock second at which the next heartbeat ping is due.
    next_ping: AtomicU32,
    /// The remote address, for per-address limits.
    peer: Option<IpAddr>,
}

impl Client {
    /// A client with an empty outbox, seen at `now_s` on the coarse clock.
    pub fn new(id: u64, identity: Identity, now_s: u32, ping_interval_s: u32) -> Self {
        Client {
            id,
            outbox: Mutex::new(Outbox::default()),
            identity: Mutex::new(identity),
            last_seen: AtomicU32::new(now_s),
            next_ping: AtomicU32::new(now_s.saturating_add(ping_interval_s)),
            peer: None,
        }
    }

    /// Records the remote address.
    pub fn with_peer(mut self, peer: IpAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The remote address, when the transport has one.
    pub fn peer(&self) -> Option<IpAddr> {
        self.peer
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current identity.
    pub fn identity(&self) -> Identity {
        self.identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The connection's current tier.
    pub fn tier(&self) -> TierId {
        self.identity.lock().unwrap_or_else(|e| e.into_inner()).tier
    }

    /// Replaces the identity (after an `auth` frame or an admin tier change).
    pub fn set_identity(&self, identity: Identity) {
        *self.identity.lock().unwrap_or_else(|e| e.into_inner()) = identity;
    }

    /// Queues one payload unless that would take the outbox past `limit` bytes.
    pub fn push(&self, frame: Bytes, limit: usize) -> Push {
        self.push_all(std::iter::once(frame), limit)
    }

    /// Queues several payloads atomically: nothing else is interleaved between them.
    pub fn push_all(&self, frames: impl IntoIterator<Item = Bytes>, limit: usize) -> Push {
        Self::queue_and_wake(self.outbox(), frames, limit)
    }

    /// Queues `frames` in the locked `outbox`, then wakes the connection (after unlocking)
    /// if anything changed.
    fn queue_and_wake(
        mut outbox: MutexGuard<'_, Outbox>,
        frames: impl IntoIterator<Item = Bytes>,
        limit: usize,
    ) -> Push {
        let result = Self::queue(&mut outbox, frames, limit);
        let waker = match result {
            Push::Closed => None,
            Push::Queued | Push::Overflow => outbox.wake_connection(),
        };
        drop(outbox);
        if let Some(waker) = waker {
            waker.wake();
        }
        result
    }

    fn queue(outbox: &mut Outbox, frames: impl IntoIterator<Item = Bytes>, limit: usize) -> Push {
        if outbox.close.is_some() {
            return Push::Closed;
        }
        for frame in frames {
            if outbox.bytes as usize + frame.len() > limit {
                outbox.discard_frames();
                outbox.close = Some(CloseRequest {
                    code: CLOSE_SLOW_CONSUMER,
                    discard_pending: true,
                });
                return Push::Overflow;
            }
            outbox.bytes = outbox.bytes.saturating_add(len32(&frame));
            outbox.frames.push_back(frame);
        }
        Push::Queued
    }

    /// Offers one publication: claimed for a direct write when the connection is parked
    /// idle on a socket, or already has direct writes in flight and nothing queued or
    /// requested after them (and `direct` allows it); otherwise pushed, as by [`Client::push`].
    pub fn offer(&self, frame: &Bytes, limit: usize, direct: bool) -> Offer {
        let mut outbox = self.outbox();
        let claimable = match outbox.direct {
            // Parked: nothing queued or requested (a push or request ends `Idle`).
            Direct::Idle => true,
            // Not while the connection has something to do: it runs only once every claim
            // is reported, so more claims would keep it from running.
            Direct::Busy => {
                !outbox.draining
                    && outbox.frames.is_empty()
                    && !outbox.requests_pending()
                    && outbox.claims < MAX_CLAIMS
            }
            Direct::Off | Direct::Retired => false,
        };
        if direct && claimable {
            outbox.direct = Direct::Busy;
            outbox.claims += 1;
            return Offer::Direct(outbox.socket);
        }
        // One lock for the whole offer: this runs once per subscriber per publication.
        Offer::Pushed(Self::queue_and_wake(
            outbox,
            std::iter::once(frame.clone()),
            limit,
        ))
    }

    /// Parks the connection as idle on `socket`: called by the connection when it waits
    /// with nothing queued and nothing half-written. Ignored when something is pending.
    pub fn park_idle(&self, socket: i32) {
        let mut outbox = self.outbox();
        if outbox.direct == Direct::Off && outbox.frames.is_empty() && !outbox.requests_pending() {
            outbox.direct = Direct::Idle;
            outbox.socket = socket;
        }
    }

    /// Asked by the writer just before a claimed send: false once an earlier direct write
    /// stopped short, and then the writer hands this one back with `written` 0.
    pub fn direct_writable(&self) -> bool {
        !self.outbox().draining
    }

    /// Reports a direct write claimed by [`Client::offer`]: `written` bytes of the complete
    /// `frame` went out. The rest, if any, is queued ahead of everything the hub queued,
    /// and the writer hands back the remaining claims unsent. Once every claim is reported
    /// the connection is woken if it has anything to write; otherwise it stays idle.
    pub fn direct_done(&self, frame: Bytes, written: usize) {
        let waker = {
            let mut outbox = self.outbox();
            debug_assert_eq!(outbox.direct, Direct::Busy);
            outbox.claims = outbox.claims.saturating_sub(1);
            if written < frame.len() {
                let at = usize::from(outbox.handed_back).min(outbox.frames.len());
                debug_assert!(
                    at == 0 || written == 0,
                    "only the first hand-back is partial"
                );
                if at == 0 {
                    // Only the first hand-back can be partly written: after it, the writer
                    // sends nothing more to this client.
                    outbox.head_written = written as u32;
                }
                outbox.bytes = outbox.bytes.saturating_add(len32(&frame));
                outbox.frames.insert(at, frame);
                outbox.handed_back += 1;
                outbox.draining = true;
            }
            if outbox.claims > 0 {
                None
            } else {
                outbox.handed_back = 0;
                outbox.draining = false;
                if outbox.frames.is_empty() && !outbox.requests_pending() {
                    outbox.direct = Direct::Idle;
                    None
                } else {
                    outbox.direct = Direct::Off;
                    outbox.waker.take()
                }
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Called by the connection as it ends: true when it may drop its socket now, false
    /// while a direct write is in flight (`waker` is woken once it is done).
    pub fn retire(&self, waker: &Waker) -> bool {
        let mut outbox = self.outbox();
        if outbox.direct == Direct::Busy {
            match &outbox.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => outbox.waker = Some(waker.clone()),
            }
            // The connection is ending: once the write is done it is woken to stop at once.
            outbox.abort = true;
            return false;
        }
        outbox.direct = Direct::Retired;
        true
    }

    /// Asks the connection to close with `code`. The first request wins.
    pub fn request_close(&self, code: u16, discard_pending: bool) {
        let waker = {
            let mut outbox = self.outbox();
            if outbox.close.is_some() {
                return;
            }
            outbox.close = Some(CloseRequest {
                code,
                discard_pending,
            });
            outbox.wake_connection()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Called by the connection itself as it starts closing: refuses further pushes and
    /// hands over what is queued (appended to `into`), or drops it when `discard_pending`.
    pub fn shut(&self, code: u16, discard_pending: bool, into: &mut VecDeque<Bytes>) {
        let mut outbox = self.outbox();
        if outbox.close.is_none() {
            outbox.close = Some(CloseRequest {
                code,
                discard_pending,
            });
        }
        outbox.close_taken = true;
        if discard_pending {
            outbox.discard_frames();
        }
        // A half-written hand-back is always taken (with its progress) before the
        // connection can start closing, so nothing here is half-written.
        debug_assert_eq!(outbox.head_written, 0);
        into.append(&mut outbox.frames);
        outbox.bytes = 0;
    }

    /// Asks the connection to stop at once, without further writes.
    pub fn abort(&self) {
        let waker = {
            let mut outbox = self.outbox();
            outbox.abort = true;
            outbox.wake_connection()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// True once a close was requested.
    pub fn is_closing(&self) -> bool {
        self.outbox().close.is_some()
    }

    /// Replaces the identity from outside the connection (an admin tier change) and asks
    /// the connection to re-check what it holds.
    pub fn change_identity(&self, identity: Identity) {
        self.set_identity(identity);
        let waker = {
            let mut outbox = self.outbox();
            outbox.refresh_due = true;
            outbox.wake_connection()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// When the connection's credentials expire (Unix seconds), if they do.
    pub fn expires_at(&self) -> Option<i64> {
        self.identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expires_at
    }

    /// True when the connection is authenticated as `user`.
    pub fn is_user(&self, user: &str) -> bool {
        self.identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .user
            .as_deref()
            == Some(user)
    }

    /// Asks the connection to send a heartbeat ping.
    pub fn request_ping(&self) {
        let waker = {
            let mut outbox = self.outbox();
            outbox.ping_due = true;
            outbox.wake_connection()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves every queued payload into `into` (which the connection owns and writes from)
    /// when `into` is empty, and reports pending requests. Payloads stay queued (and count
    /// against the bound) while the connection still has unwritten ones, so a reader that
    /// stops reading overflows its outbox instead of growing `into`. `waker` is stored to be
    /// woken by the next push or request.
    pub fn take(&self, into: &mut VecDeque<Bytes>, waker: &Waker) -> Taken {
        let mut outbox = self.outbox();
        match &outbox.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => outbox.waker = Some(waker.clone()),
        }
        match outbox.direct {
            Direct::Busy => {
                // Whatever woke us (a readable socket, a request) is served once the
                // direct writes are done: `direct_done` wakes us then.
                outbox.polled_while_busy = true;
                return Taken {
                    busy: true,
                    ..Taken::default()
                };
            }
            Direct::Idle => outbox.direct = Direct::Off,
            Direct::Off | Direct::Retired => {}
        }
        outbox.polled_while_busy = false;
        let mut frames = false;
        let mut head_written = 0;
        if into.is_empty() && !outbox.frames.is_empty() {
            std::mem::swap(into, &mut outbox.frames);
            outbox.bytes = 0;
            head_written = std::mem::take(&mut outbox.head_written);
            frames = true;
        }
        let close = if outbox.close_taken {
            None
        } else {
            outbox.close_taken = outbox.close.is_some();
            outbox.close
        };
        let taken = Taken {
            frames,
            close,
            ping: std::mem::take(&mut outbox.ping_due),
            refresh: std::mem::take(&mut outbox.refresh_due),
            abort: outbox.abort,
            busy: false,
            head_written,
        };
        // The waker is registered on every call, so the caller need not call again to learn
        // that nothing more is queued: the next push wakes it.
        taken
    }

    /// Queued bytes not yet taken by the connection.
    pub fn queued_bytes(&self) -> usize {
        self.outbox().bytes as usize
    }

    /// Records inbound activity at `now_s`.
    pub fn touch(&self, now_s: u32) {
        self.last_seen.store(now_s, Ordering::Relaxed);
    }

    pub fn last_seen(&self) -> u32 {
        self.last_seen.load(Ordering::Relaxed)
    }

    /// True (once per interval) when a heartbeat ping is due at `now_s`.
    pub fn ping_due(&self, now_s: u32, interval_s: u32) -> bool {
        let due = self.next_ping.load(Ordering::Relaxed);
        if now_s < due {
            return false;
        }
        self.next_ping
            .compare_exchange(
                due,
                now_s.saturating_add(interval_s),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn client() -> Client {
        Client::new(1, Identity::default(), 0, 25)
    }

    #[test]
    fn push_queues_and_take_moves_everything() {
        let c = client();
        assert_eq!(c.push(Bytes::from_static(b"a"), 10), Push::Queued);
        assert_eq!(c.push(Bytes::from_static(b"bc"), 10), Push::Queued);
        assert_eq!(c.queued_bytes(), 3);
        let mut into = VecDeque::new();
        let taken = c.take(&mut into, Waker::noop());
        assert!(taken.frames);
        assert_eq!(into, [Bytes::from_static(b"a"), Bytes::from_static(b"bc")]);
        assert_eq!(c.queued_bytes(), 0);
    }

    #[test]
    fn take_leaves_payloads_queued_while_the_connection_has_unwritten_ones() {
        let c = client();
        let mut into = VecDeque::from([Bytes::from_static(b"old")]);
        c.push(Bytes::from_static(b"new"), 10);
        assert!(!c.take(&mut into, Waker::noop()).frames);
        assert_eq!(into.len(), 1);
        assert_eq!(c.queued_bytes(), 3);
    }

    #[test]
    fn a_close_request_is_reported_once() {
        let c = client();
        c.request_close(1000, false);
        assert!(c.take(&mut VecDeque::new(), Waker::noop()).close.is_some());
        assert!(c.take(&mut VecDeque::new(), Waker::noop()).close.is_none());
        assert!(c.is_closing());
    }

    #[test]
    fn overflow_empties_the_outbox_and_requests_4009() {
        let c = client();
        assert_eq!(c.push(Bytes::from_static(b"12345"), 8), Push::Queued);
        assert_eq!(c.push(Bytes::from_static(b"6789"), 8), Push::Overflow);
        assert_eq!(c.push(Bytes::from_static(b"x"), 8), Push::Closed);
        let mut into = VecDeque::new();
        let taken = c.take(&mut into, Waker::noop());
        assert!(into.is_empty());
        assert_eq!(
            taken.close,
            Some(CloseRequest {
                code: CLOSE_SLOW_CONSUMER,
                discard_pending: true
            })
        );
    }

    #[test]
    fn idle_take_registers_the_waker_and_push_wakes_it() {
        let c = client();
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut into = VecDeque::new();
        c.take(&mut into, &waker);
        c.push(Bytes::from_static(b"x"), 10);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        // Woken once; a second push before the next take does not wake again.
        c.push(Bytes::from_static(b"y"), 10);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn first_close_request_wins() {
        let c = client();
        c.request_close(1001, false);
        c.request_close(4009, true);
        let taken = c.take(&mut VecDeque::new(), Waker::noop());
        assert_eq!(taken.close.unwrap().code, 1001);
    }

    #[test]
    fn shut_hands_over_queued_payloads_and_refuses_new_ones() {
        let c = client();
        c.push(Bytes::from_static(b"a"), 10);
        let mut into = VecDeque::from([Bytes::from_static(b"w")]);
        c.shut(1000, false, &mut into);
        assert_eq!(into, [Bytes::from_static(b"w"), Bytes::from_static(b"a")]);
        assert_eq!(c.push(Bytes::from_static(b"b"), 10), Push::Closed);
        assert!(c.take(&mut VecDeque::new(), Waker::noop()).close.is_none());
    }

    #[test]
    fn ping_is_due_once_per_interval() {
        let c = client();
        assert!(!c.ping_due(24, 25));
        assert!(c.ping_due(25, 25));
        assert!(!c.ping_due(26, 25));
        assert!(c.ping_due(50, 25));
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    /// A client whose connection took everything and parked idle on socket 7.
    fn parked() -> (Client, Arc<CountingWaker>) {
        let c = client();
        let (counter, waker) = counting();
        c.take(&mut VecDeque::new(), &waker);
        c.park_idle(7);
        (c, counter)
    }

    fn frame(text: &'static [u8]) -> Bytes {
        Bytes::from_static(text)
    }

    #[test]
    fn an_idle_client_is_claimed_for_a_direct_write_without_a_wake() {
        let (c, counter) = parked();
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Direct(7));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert_eq!(c.queued_bytes(), 0);
    }

    #[test]
    fn offers_are_pushed_when_direct_writes_are_off_or_the_client_is_not_parked() {
        let (c, _) = parked();
        assert_eq!(
            c.offer(&frame(b"a"), 10, false),
            Offer::Pushed(Push::Queued)
        );
        let fresh = client();
        assert_eq!(
            fresh.offer(&frame(b"b"), 10, true),
            Offer::Pushed(Push::Queued)
        );
    }

    #[test]
    fn a_complete_direct_write_with_nothing_queued_leaves_the_client_idle() {
        let (c, counter) = parked();
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Direct(7));
        c.direct_done(frame(b"\x81\x01a"), 3);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert_eq!(c.offer(&frame(b"b"), 10, true), Offer::Direct(7));
    }

    #[test]
    fn a_busy_client_is_claimed_again_and_stays_idle_once_every_write_is_reported() {
        let (c, counter) = parked();
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Direct(7));
        assert_eq!(c.offer(&frame(b"b"), 10, true), Offer::Direct(7));
        // The connection, polled meanwhile, takes nothing and writes nothing.
        assert!(c.direct_writable());
        c.direct_done(frame(b"\x81\x01a"), 3);
        assert_eq!(
            c.offer(&frame(b"c"), 10, true),
            Offer::Direct(7),
            "still busy"
        );
        c.direct_done(frame(b"\x81\x01b"), 3);
        c.direct_done(frame(b"\x81\x01c"), 3);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            0,
            "nothing to write: no wake"
        );
        assert_eq!(c.offer(&frame(b"d"), 10, true), Offer::Direct(7));
    }

    #[test]
    fn a_busy_connection_writes_nothing_when_polled() {
        let (c, _) = parked();
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Direct(7));
        c.push(frame(b"r"), 10);
        let mut out = VecDeque::new();
        assert!(c.take(&mut out, Waker::noop()).busy);
        assert!(out.is_empty());
    }

    #[test]
    fn after_something_is_queued_a_busy_client_queues_and_is_woken_when_the_writes_end() {
        let (c, counter) = parked();
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Direct(7));
        // A reply queued meanwhile: later publications must follow it through the queue.
        assert_eq!(c.push(frame(b"r"), 10), Push::Queued);
        assert_eq!(c.offer(&frame(b"b"), 10, true), Offer::Pushed(Push::Queued));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "no wake while busy");
        c.direct_done(frame(b"\x81\x01a"), 3);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        let mut out = VecDeque::new();
        let taken = c.take(&mut out, Waker::noop());
        assert_eq!(out, [frame(b"r"), frame(b"b")]);
        assert_eq!(taken.head_written, 0);
    }

    #[test]
    fn a_short_direct_write_hands_back_its_rest_and_the_later_claims_in_order() {
        let (c, counter) = parked();
        assert_eq!(c.offer(&frame(b"a"), 100, true), Offer::Direct(7));
        assert_eq!(c.offer(&frame(b"b"), 100, true), Offer::Direct(7));
        assert_eq!(c.offer(&frame(b"c"), 100, true), Offer::Direct(7));
        c.direct_done(frame(b"\x81\x03abc"), 2);
        // Claimed sends after a short one are not attempted.
        assert!(!c.direct_writable());
        // Nor is anything claimed now; it queues behind the hand-backs.
        assert_eq!(
            c.offer(&frame(b"d"), 100, true),
            Offer::Pushed(Push::Queued)
        );
        c.direct_done(frame(b"\x81\x01b"), 0);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "a claim is still out");
        c.direct_done(frame(b"\x81\x01c"), 0);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        let mut out = VecDeque::new();
        let taken = c.take(&mut out, Waker::noop());
        assert_eq!(
            out,
            [
                frame(b"\x81\x03abc"),
                frame(b"\x81\x01b"),
                frame(b"\x81\x01c"),
                frame(b"d")
            ]
        );
        assert_eq!(taken.head_written, 2);
        // Written out, the connection parks again and direct writes resume.
        assert!(c.direct_writable());
        c.park_idle(7);
        assert_eq!(c.offer(&frame(b"e"), 100, true), Offer::Direct(7));
    }

    #[test]
    fn a_connection_polled_while_busy_is_woken_once_the_writes_are_done() {
        let (c, _) = parked();
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Direct(7));
        // Its socket became readable (a client frame): polled, it may not run yet.
        let (counter, waker) = counting();
        assert!(c.take(&mut VecDeque::new(), &waker).busy);
        // No more claims meanwhile: the connection must get to run.
        assert_eq!(c.offer(&frame(b"b"), 10, true), Offer::Pushed(Push::Queued));
        c.direct_done(frame(b"\x81\x01a"), 3);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken to read");
        let mut out = VecDeque::new();
        assert!(!c.take(&mut out, &waker).busy);
        assert_eq!(out, [frame(b"b")]);
        // Written and read, it parks again and direct writes resume.
        c.park_idle(7);
        assert_eq!(c.offer(&frame(b"c"), 10, true), Offer::Direct(7));
    }

    #[test]
    fn a_busy_client_with_a_pending_request_is_not_claimed_again() {
        let (c, counter) = parked();
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Direct(7));
        c.request_ping();
        assert_eq!(c.offer(&frame(b"b"), 10, true), Offer::Pushed(Push::Queued));
        c.direct_done(frame(b"\x81\x01a"), 3);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(c.take(&mut VecDeque::new(), Waker::noop()).ping);
    }

    #[test]
    fn claims_are_bounded_per_client() {
        let (c, _) = parked();
        for _ in 0..MAX_CLAIMS {
            assert_eq!(c.offer(&frame(b"a"), 1000, true), Offer::Direct(7));
        }
        assert_eq!(
            c.offer(&frame(b"b"), 1000, true),
            Offer::Pushed(Push::Queued)
        );
    }

    #[test]
    fn overflow_keeps_a_half_written_frame_so_the_stream_stays_well_formed() {
        let (c, _) = parked();
        assert_eq!(c.offer(&frame(b"a"), 8, true), Offer::Direct(7));
        c.direct_done(frame(b"\x81\x03abc"), 1);
        assert_eq!(c.push(frame(b"12345"), 8), Push::Overflow);
        let mut out = VecDeque::new();
        let taken = c.take(&mut out, Waker::noop());
        assert_eq!(out, [frame(b"\x81\x03abc")]);
        assert_eq!(taken.head_written, 1);
        assert_eq!(taken.close.map(|r| r.code), Some(CLOSE_SLOW_CONSUMER));
    }

    #[test]
    fn requests_while_busy_wait_for_the_write_and_then_wake_the_connection() {
        let (c, counter) = parked();
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Direct(7));
        c.request_close(1001, false);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        c.direct_done(frame(b"\x81\x01a"), 3);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        let taken = c.take(&mut VecDeque::new(), Waker::noop());
        assert_eq!(taken.close.map(|r| r.code), Some(1001));
    }

    #[test]
    fn a_push_to_an_idle_client_wakes_it_and_ends_direct_writes_until_it_parks_again() {
        let (c, counter) = parked();
        assert_eq!(c.push(frame(b"r"), 10), Push::Queued);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Pushed(Push::Queued));
    }

    #[test]
    fn parking_is_refused_while_something_is_queued_or_requested() {
        let c = client();
        c.push(frame(b"x"), 10);
        c.park_idle(7);
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Pushed(Push::Queued));
        let c = client();
        c.request_ping();
        c.park_idle(7);
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Pushed(Push::Queued));
    }

    #[test]
    fn a_connection_cannot_retire_while_its_socket_is_being_written() {
        let (c, _) = parked();
        assert_eq!(c.offer(&frame(b"a"), 10, true), Offer::Direct(7));
        let (counter, waker) = counting();
        assert!(!c.retire(&waker));
        c.direct_done(frame(b"\x81\x01a"), 3);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken to end");
        assert!(c.take(&mut VecDeque::new(), &waker).abort);
        assert!(c.retire(&waker));
        // Retired for good: never claimed again, even if asked to park.
        c.park_idle(7);
        assert_eq!(c.offer(&frame(b"b"), 10, true), Offer::Pushed(Push::Queued));
    }

    #[test]
    fn a_client_fits_a_192_byte_allocation() {
        // One per connection: the next allocator size class is 224 bytes.
        let size = std::mem::size_of::<Client>();
        assert!(size <= 192, "Client is {size} bytes");
    }

    #[test]
    fn an_empty_outbox_allocates_nothing() {
        let c = client();
        assert_eq!(c.outbox().frames.capacity(), 0);
    }
}
