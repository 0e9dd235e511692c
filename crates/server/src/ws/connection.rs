//! One WebSocket connection: a hand-written future that owns the socket.
//!
//! Memory per idle connection is the scaling limit of a fan-out server, so this future is
//! small and allocates nothing while idle: no read buffer (it waits for readability, then
//! reads into a stack array; only a partial frame is kept on the heap), no timers (the
//! sweeper in `heartbeat` pings, times out and aborts), an outbox that is an empty
//! `VecDeque` until something is queued. Everything it does is synchronous: the hub never
//! awaits, so one `poll` reads, handles frames, and writes every queued frame in one
//! `writev` (coalescing bursts) until the socket or the outbox runs dry.
//!
//! Queued items are JSON payloads written as text frames (the header is built at write
//! time, so one payload is shared by every subscriber) or complete control frames, told
//! apart by their first byte: a control frame starts with 0x8X (FIN and opcode), which can
//! never start the UTF-8 text of a JSON payload.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use signalhub_hub::{Client, TierId};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::frame::{self, Decoder, Message, OpCode};
use super::rate::{Bucket, Quota};
use super::session;
use crate::state::AppState;

/// Close codes this module sends.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TOKEN_EXPIRED: u16 = 4001;
    pub const RATE_LIMITED: u16 = 4008;
    pub const SLOW_CONSUMER: u16 = 4009;
    pub const IDLE: u16 = 4010;

    /// The reason text sent with a close code.
    pub fn reason(code: u16) -> &'static str {
        match code {
            NORMAL => "normal closure",
            GOING_AWAY => "server shutting down",
            POLICY => "disconnected by policy",
            TOO_BIG => "message too big",
            TOKEN_EXPIRED => "token expired",
            RATE_LIMITED => "rate limit exceeded",
            SLOW_CONSUMER => "slow consumer: outbound queue overflow",
            IDLE => "idle timeout",
            1002 => "protocol error",
            1007 => "invalid UTF-8",
            _ => "",
        }
    }
}

/// At most this many frames and bytes go into one `writev`.
const MAX_BATCH_FRAMES: usize = 32;
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Stack buffer for one read.
const READ_CHUNK: usize = 4096;
/// Rounds of read/handle/write in one poll before yielding to other tasks.
const POLL_BUDGET: usize = 16;
/// Work one poll does on inbound frames before it yields to other tasks: one unit per data
/// frame plus one per channel a `subscribe`/`unsubscribe` names. Frames past it wait in
/// `stash` for the next poll (the socket is not read meanwhile), so one connection's burst of
/// large frames is cut into slices with every other task's turn in between.
const SLICE_OPS: u16 = 256;
/// Unwritten control frames (pongs) tolerated before a non-reading peer counts as slow.
const MAX_UNWRITTEN_FRAMES: usize = 4096;
/// How long a close frame the peer's full socket does not take yet may wait (a peer that
/// stopped reading for a while, the usual slow consumer) before the connection is dropped
/// without it; the sweeper's abort waits meanwhile, except during shutdown.
pub const CLOSE_FRAME_WAIT_S: u32 = 10;
/// Most unread inbound bytes discarded as the socket is dropped.
const MAX_DISCARDED_ON_DROP: usize = 64 * 1024;

static PING: Bytes = Bytes::from_static(&[0x89, 0x00]);

/// A connection's channels and its budget for naming them.
#[derive(Debug, Default)]
pub(super) struct Subs {
    /// Channels held, sorted by name (each once), with the tier bucket each was joined in.
    /// Changed only by (un)subscribes and kept at its length (no spare capacity).
    pub(super) held: Box<[(Arc<str>, TierId)]>,
    /// The channel operations bucket (`limits.channel_ops_*`).
    ops: Bucket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Our close frame is queued; once written we wait for the peer's.
    Closing,
    /// Our close frame is written.
    CloseSent,
}

/// The connection future. Spawn it; it ends when the connection is closed.
///
/// Its size is watched (a test keeps it at or under 152 bytes): tokio's task cell is this
/// plus 104 bytes, aligned to 128, so 152 bytes is what fits a 256-byte cell.
pub struct Connection {
    stream: TcpStream,
    pub(super) client: Arc<Client>,
    pub(super) state: AppState,
    decoder: Decoder,
    /// Bytes of an incomplete inbound frame (None, unallocated, while idle). Boxed on
    /// purpose: 8 bytes in the future instead of a `Vec`'s 24, for a rarely used buffer.
    #[allow(clippy::box_collection)]
    stash: Option<Box<Vec<u8>>>,
    /// Items being written; `head_written` bytes of the first are already out.
    out: VecDeque<Bytes>,
    head_written: u32,
    /// What the connection holds once it names a channel (None, unallocated, before): a
    /// thin pointer, 8 bytes in the future, for state only (un)subscribes touch.
    pub(super) subs: Option<Box<Subs>>,
    bucket: Bucket,
    refusal_window_s: u32,
    /// Work done on inbound frames in this poll (see `SLICE_OPS`).
    slice_ops: u16,
    refusals: u8,
    /// The slice ran out with frames left in `stash`: handle them before reading again.
    backlog: bool,
    phase: Phase,
    /// Coarse clock second at which the close began.
    closing_since_s: u32,
    /// The peer sent its close frame (or the stream broke): finish once flushed.
    peer_done: bool,
    /// A protocol error stopped decoding; inbound bytes are ignored until the end.
    broken: bool,
}

fn is_control(item: &Bytes) -> bool {
    item.first().is_some_and(|b| b & 0xF0 == 0x80)
}

fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

fn item_len(item: &Bytes) -> usize {
    if is_control(item) {
        item.len()
    } else {
        header_len(item.len()) + item.len()
    }
}

impl Connection {
    /// A connection over an upgraded socket. The caller registered `client`.
    pub fn new(stream: TcpStream, client: Arc<Client>, state: AppState) -> Self {
        let decoder = Decoder::new(state.config.limits.max_message_bytes);
        Connection {
            stream,
            client,
            decoder,
            stash: None,
            out: VecDeque::new(),
            head_written: 0,
            subs: None,
            bucket: Bucket::default(),
            slice_ops: 0,
            backlog: false,
            refusals: 0,
            refusal_window_s: 0,
            phase: Phase::Open,
            closing_since_s: 0,
            peer_done: false,
            broken: false,
            state,
        }
    }

    /// The channels held, sorted by name.
    pub(super) fn held(&self) -> &[(Arc<str>, TierId)] {
        self.subs.as_deref().map_or(&[], |s| &s.held)
    }

    /// Takes the list of held channels out (to change it and put it back with `set_held`).
    pub(super) fn take_held(&mut self) -> Vec<(Arc<str>, TierId)> {
        self.subs
            .as_mut()
            .map(|s| std::mem::take(&mut s.held).into_vec())
            .unwrap_or_default()
    }

    /// Replaces the list of held channels (sorted by name, each once).
    pub(super) fn set_held(&mut self, held: Vec<(Arc<str>, TierId)>) {
        if held.is_empty() && self.subs.is_none() {
            return;
        }
        self.subs.get_or_insert_with(Box::default).held = held.into_boxed_slice();
    }

    /// Queues a reply or notice through the outbox, in order with publications.
    pub(super) fn reply(&self, frame: Bytes) {
        self.client
            .push(frame, self.state.config.limits.max_queue_bytes);
    }

    /// Starts the close handshake with `code` (once).
    pub(super) fn begin_close(&mut self, code: u16, discard_pending: bool) {
        if self.phase != Phase::Open {
            return;
        }
        if discard_pending {
            let keep = usize::from(self.head_written > 0);
            self.out.truncate(keep);
        }
        // Replies already queued go out before the close frame; nothing after it.
        self.client.shut(code, discard_pending, &mut self.out);
        self.out
            .push_back(frame::close_frame(code, close::reason(code)));
        self.phase = Phase::Closing;
        self.closing_since_s = self.state.clock.now_s();
    }

    /// True while an abort (the close took too long) should wait: our close frame is not
    /// written yet because the peer's socket is full, for at most `CLOSE_FRAME_WAIT_S`
    /// and not during shutdown. A slow consumer that reads again then finds its 4009.
    fn defer_abort(&self) -> bool {
        self.phase == Phase::Closing
            && !self.state.is_stopping()
            && self
                .state
                .clock
                .now_s()
                .saturating_sub(self.closing_since_s)
                < CLOSE_FRAME_WAIT_S
    }

    /// Reads and discards inbound bytes nobody read (bounded): closing a socket with
    /// unread input makes the kernel send a reset, which can destroy what the peer has not
    /// read yet (our close frame among it).
    fn discard_unread(&mut self) {
        let mut buf = [0u8; READ_CHUNK];
        let mut discarded = 0;
        while discarded < MAX_DISCARDED_ON_DROP {
            match self.stream.try_read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }

    /// Writes queued items until done or the socket is full.
    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while !self.out.is_empty() {
            let count = self.out.len().min(MAX_BATCH_FRAMES);
            let mut headers = [[0u8; 10]; MAX_BATCH_FRAMES];
            let mut header_lens = [0usize; MAX_BATCH_FRAMES];
            for (i, item) in self.out.iter().take(count).enumerate() {
                if !is_control(item) {
                    header_lens[i] = frame::write_header(OpCode::Text, item.len(), &mut headers[i]);
                }
            }
            let mut slices = [IoSlice::new(&[]); MAX_BATCH_FRAMES * 2];
            let mut n_slices = 0;
            let mut batch_bytes = 0;
            for (i, item) in self.out.iter().take(count).enumerate() {
                let header = &headers[i][..header_lens[i]];
                let skip = if i == 0 {
                    self.head_written as usize
                } else {
                    0
                };
                let payload_skip = if skip < header.len() {
                    slices[n_slices] = IoSlice::new(&header[skip..]);
                    n_slices += 1;
                    0
                } else {
                    skip - header.len()
                };
                slices[n_slices] = IoSlice::new(&item[payload_skip..]);
                n_slices += 1;
                batch_bytes += header.len() + item.len() - skip;
                if batch_bytes >= MAX_BATCH_BYTES {
                    break;
                }
            }
            match self.stream.try_write_vectored(&slices[..n_slices]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.stream.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => return Ok(()),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.out.capacity() > 0 {
            // Give the memory back: an idle connection should cost nothing here. (The next
            // push allocates again; that is one small allocation per batch of writes.)
            self.out = VecDeque::new();
        }
        Ok(())
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.out.front() else {
                return;
            };
            let remaining = item_len(front) - self.head_written as usize;
            if written >= remaining {
                written -= remaining;
                self.out.pop_front();
                self.head_written = 0;
            } else {
                // Items are at most max_message_bytes-sized envelopes, far below 4 GiB.
                self.head_written += written as u32;
                written = 0;
            }
        }
    }

    /// Reads what the socket has; Ready(true) when something was read, Ready(false) at the
    /// end of the stream, Pending when there is nothing to read.
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match self.stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(false),
                Poll::Ready(Ok(())) => {}
            }
            match self.stream.try_read(&mut buf) {
                Ok(0) => return Poll::Ready(false),
                Ok(n) => {
                    self.client.touch(self.state.clock.now_s());
                    self.receive(&buf[..n]);
                    return Poll::Ready(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Poll::Ready(false),
            }
        }
    }

    /// Decodes inbound bytes, keeping an incomplete frame for the next read.
    pub(super) fn receive(&mut self, input: &[u8]) {
        if self.broken {
            return;
        }
        match self.stash.take() {
            None => {
                let used = self.decode_all(input);
                if used < input.len() && !self.broken {
                    self.stash = Some(Box::new(input[used..].to_vec()));
                }
            }
            Some(mut data) => {
                data.extend_from_slice(input);
                let used = self.decode_all(&data);
                if used < data.len() && !self.broken {
                    data.drain(..used);
                    self.stash = Some(data);
                }
            }
        }
    }

    fn decode_all(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len() && !self.peer_done {
            if self.slice_ops >= SLICE_OPS {
                // The rest waits in `stash` for the next poll.
                self.backlog = true;
                break;
            }
            match self.decoder.decode(&data[used..]) {
                Ok(decoded) if decoded.consumed == 0 => break,
                Ok(decoded) => {
                    used += decoded.consumed;
                    if let Some(message) = decoded.message {
                        self.on_message(message);
                    }
                }
                Err(e) => {
                    tracing::debug!(client = self.client.id(), error = %e, "protocol error");
                    self.broken = true;
                    self.begin_close(e.close_code(), false);
                    return data.len();
                }
            }
        }
        used
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Text(text) => {
                self.slice_ops = self.slice_ops.saturating_add(1);
                if self.phase == Phase::Open && self.admit_data_frame() {
                    self.state.messages_in.fetch_add(1, Ordering::Relaxed);
                    session::handle_text(self, &text);
                }
            }
            Message::Binary(_) => {
                self.slice_ops = self.slice_ops.saturating_add(1);
                if self.phase == Phase::Open && self.admit_data_frame() {
                    self.state.messages_in.fetch_add(1, Ordering::Relaxed);
                    self.reply(super::protocol::error_frame(
                        None,
                        "bad_request",
                        None,
                        "binary frames are not supported; send JSON text frames",
                    ));
                }
            }
            Message::Ping(payload) => {
                if self.out.len() >= MAX_UNWRITTEN_FRAMES {
                    self.begin_close(close::SLOW_CONSUMER, true);
                } else if self.phase == Phase::Open {
                    self.out.push_back(frame::pong_frame(&payload));
                }
            }
            Message::Pong(_) => {}
            Message::Close(code) => {
                self.peer_done = true;
                // Echo the peer's code (RFC 6455 section 5.5.1); an empty close gets 1000.
                let code = code.map_or(close::NORMAL, |(code, _)| code);
                self.begin_close(code, false);
            }
        }
    }

    /// Applies the client rate limit to a data frame: false when it must be dropped.
    fn admit_data_frame(&mut self) -> bool {
        let limits = &self.state.config.limits;
        let quota = Quota::new(limits.client_frames_per_second, limits.client_frames_burst);
        if self.bucket.admit(quota, self.state.clock.now_us()) {
            return true;
        }
        self.refuse(None, "too many frames: slow down");
        false
    }

    /// Applies the channel operations limit to a `subscribe`/`unsubscribe` naming `channels`
    /// channels: false when the frame must be dropped whole (answered `rate_limited`, with
    /// its id, and counted like any refusal towards 4008).
    pub(super) fn admit_channel_ops(&mut self, id: Option<i64>, channels: usize) -> bool {
        self.slice_ops = self
            .slice_ops
            .saturating_add(u16::try_from(channels).unwrap_or(u16::MAX));
        let limits = &self.state.config.limits;
        let quota = Quota::new(limits.channel_ops_per_second, limits.channel_ops_burst);
        let now = self.state.clock.now_us();
        let subs = self.subs.get_or_insert_with(Box::default);
        if subs.ops.admit_n(quota, now, channels as u64) {
            return true;
        }
        self.refuse(id, "too many channel operations: slow down");
        false
    }

    /// Answers a refused frame with `rate_limited`, or closes with 4008 after more than 20
    /// refusals within 10 s (spec section 9, item 19).
    fn refuse(&mut self, id: Option<i64>, message: &str) {
        let now = self.state.clock.now_s();
        if now.saturating_sub(self.refusal_window_s) >= 10 {
            self.refusal_window_s = now;
            self.refusals = 0;
        }
        self.refusals = self.refusals.saturating_add(1);
        if self.refusals > 20 {
            self.begin_close(close::RATE_LIMITED, false);
        } else {
            self.reply(super::protocol::error_frame(
                id,
                "rate_limited",
                None,
                message,
            ));
        }
    }

    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.slice_ops = 0;
        for _ in 0..POLL_BUDGET {
            // `take` leaves payloads in the outbox while `out` still has unwritten items;
            // if this round's flush empties `out`, go round again to take them.
            let out_was_full = !self.out.is_empty();
            let taken = self.client.take(&mut self.out, cx.waker());
            if taken.busy {
                // A direct write owns the socket's write side; it wakes us when done.
                return Poll::Pending;
            }
            if taken.frames {
                // `out` was empty, so this is its first frame's progress.
                self.head_written = taken.head_written;
            }
            if taken.abort && !self.defer_abort() {
                return Poll::Ready(());
            }
            // `take` registered our waker: payloads pushed from now on wake us, so taking
            // payloads is no reason to go round again. Our own replies (after a read, a
            // refresh) are, since they are queued in the outbox.
            let mut progressed = false;
            if taken.ping && self.phase == Phase::Open {
                self.out.push_back(PING.clone());
            }
            if let Some(request) = taken.close {
                self.begin_close(request.code, request.discard_pending);
            }
            if taken.refresh && self.phase == Phase::Open {
                session::refresh(self);
                progressed = true;
            }
            if let Err(e) = self.flush(cx) {
                tracing::debug!(client = self.client.id(), error = %e, "write failed");
                return Poll::Ready(());
            }
            if out_was_full && self.out.is_empty() {
                progressed = true;
            }
            if self.phase == Phase::Closing && self.out.is_empty() {
                self.phase = Phase::CloseSent;
                // Half-close: the peer reads our close, answers, and sees the end.
                let _ = Pin::new(&mut self.stream).poll_shutdown(cx);
            }
            if self.peer_done && self.out.is_empty() {
                return Poll::Ready(());
            }
            if self.backlog {
                if self.slice_ops >= SLICE_OPS {
                    // This poll's slice is used up: yield with frames left to handle.
                    break;
                }
                self.backlog = false;
                self.receive(&[]);
                progressed = true;
            } else {
                match self.read(cx) {
                    Poll::Ready(true) => progressed = true,
                    Poll::Ready(false) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
            }
            if !progressed {
                if self.out.is_empty() && self.phase == Phase::Open && !self.peer_done {
                    // Nothing queued or half-written: publications may go straight to the
                    // socket until we run again.
                    self.client.park_idle(self.stream.as_raw_fd());
                }
                return Poll::Pending;
            }
        }
        // Out of budget with work left: let other connections run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Future for Connection {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match this.drive(cx) {
            // The socket must outlive a direct write in flight; we are woken after it.
            Poll::Ready(()) if !this.client.retire(cx.waker()) => Poll::Pending,
            ready => ready,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropped without finishing (runtime shutdown): still never close the socket under
        // a direct write. The writer reports every write it was given, so this ends.
        while !self.client.retire(Waker::noop()) {
            std::thread::yield_now();
        }
        self.discard_unread();
        for (channel, tier) in self.held() {
            self.state.hub.unsubscribe(self.client.id(), channel, *tier);
        }
        self.state.registry.remove(self.client.id());
        if let Some(ip) = self.client.peer() {
            self.state.registry.remove_ip(ip);
        }
        tracing::debug!(client = self.client.id(), "connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_and_json_payloads_are_told_apart_by_their_first_byte() {
        assert!(is_control(&PING));
        assert!(is_control(&frame::close_frame(1000, "")));
        assert!(is_control(&frame::pong_frame(b"x")));
        assert!(!is_control(&Bytes::from_static(b"{\"type\":\"x\"}")));
    }

    #[test]
    fn item_length_counts_the_text_header_built_at_write_time() {
        assert_eq!(item_len(&Bytes::from(vec![b'{'; 125])), 127);
        assert_eq!(item_len(&Bytes::from(vec![b'{'; 126])), 130);
        assert_eq!(item_len(&Bytes::from(vec![b'{'; 70_000])), 70_010);
        assert_eq!(item_len(&PING), 2);
    }

    #[test]
    fn the_connection_future_stays_small() {
        // The task cell is this plus ~100 bytes, rounded up by the allocator: keep it lean.
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 152, "Connection is {size} bytes");
    }
}
