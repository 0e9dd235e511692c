//! One subscriber connection: bound connect, WebSocket handshake, subscribe, then counting
//! and timing every publication until told to close.
//!
//! The WebSocket side is the bench's own minimal client (ws.rs): frames are parsed in the
//! connection's read buffer and publications read from them in place, and deliveries are
//! tallied per runtime thread rather than in one shared place, so that a delivery costs
//! the bench little more than its `read` call.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

use crate::frame::parse_publication;
use crate::protocol::new_hist;
use crate::ws::{self, Frame, FrameReader};

/// Distinct connect errors kept for the report to the coordinator.
const MAX_ERRORS: usize = 5;

/// Where and how one connection connects.
pub struct ConnSpec {
    pub addr: SocketAddr,
    /// `host:port` for the request line's Host header.
    pub host: String,
    pub path: String,
    pub channel: String,
    pub source: IpAddr,
    pub connect_timeout: Duration,
}

/// Delivery figures of the connections served by one runtime thread.
pub struct Tally {
    /// Delivery latencies in microseconds.
    pub latency: Histogram<u64>,
    pub delivered: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub last_delivery_unix_ns: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency: new_hist(),
            delivered: 0,
            duplicates: 0,
            out_of_order: 0,
            last_delivery_unix_ns: 0,
        }
    }

    fn add(&mut self, other: &Tally) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.last_delivery_unix_ns = self.last_delivery_unix_ns.max(other.last_delivery_unix_ns);
    }
}

/// State shared by every connection of a worker process.
pub struct Shared {
    /// Messages each connection expects (0: no expectation).
    pub messages: u64,
    pub connect_hist: Mutex<Histogram<u64>>,
    /// One tally per runtime thread (see [`Shared::with_tally`]): each lock is taken by its
    /// own thread only, but for reports.
    tallies: Vec<Mutex<Tally>>,
    pub errors: Mutex<Vec<String>>,
    /// Connections whose connect + subscribe ended, well or not.
    pub attempted: AtomicUsize,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    /// Connections that need nothing more: all messages in, or gone.
    pub finished: AtomicUsize,
    pub disconnected: AtomicU64,
    /// Woken whenever `attempted` or `finished` grows.
    pub notify: Notify,
}

/// Number of the current thread among those that tallied deliveries.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static THREAD_NO: Cell<Option<usize>> = const { Cell::new(None) };
}

impl Shared {
    /// `threads`: the worker's runtime threads (one tally each).
    pub fn new(messages: u64, threads: usize) -> Self {
        Shared {
            messages,
            connect_hist: Mutex::new(new_hist()),
            tallies: (0..threads.max(1))
                .map(|_| Mutex::new(Tally::new()))
                .collect(),
            errors: Mutex::new(Vec::new()),
            attempted: AtomicUsize::new(0),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            finished: AtomicUsize::new(0),
            disconnected: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    /// Runs `f` on the current thread's tally (uncontended but while a report is taken).
    fn with_tally<R>(&self, f: impl FnOnce(&mut Tally) -> R) -> R {
        let i = if self.tallies.len() == 1 {
            0
        } else {
            let no = THREAD_NO.with(|n| {
                n.get().unwrap_or_else(|| {
                    let no = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
                    n.set(Some(no));
                    no
                })
            });
            no % self.tallies.len()
        };
        f(&mut lock(&self.tallies[i]))
    }

    /// All deliveries so far.
    pub fn tally(&self) -> Tally {
        let mut sum = Tally::new();
        for t in &self.tallies {
            sum.add(&lock(t));
        }
        sum
    }

    /// Deliveries so far (for progress lines).
    pub fn delivered(&self) -> u64 {
        self.tallies.iter().map(|t| lock(t).delivered).sum()
    }

    fn note_error(&self, e: String) {
        let mut errors = lock(&self.errors);
        if errors.len() < MAX_ERRORS && !errors.contains(&e) {
            errors.push(e);
        }
    }

    fn finish_one(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs one connection to the end: waits for a connect slot, connects and subscribes, then
/// reads publications until `shutdown` turns true (or its sender goes away).
pub async fn run(
    spec: ConnSpec,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permit = slots.acquire_owned().await;
    let started = Instant::now();
    let mut frames = FrameReader::new();
    let result = tokio::time::timeout(
        spec.connect_timeout,
        connect_and_subscribe(&spec, &mut frames),
    )
    .await;
    drop(permit);
    let (mut stream, sub_seq) = match result {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return connect_failed(&shared, e),
        Err(_) => return connect_failed(&shared, "connect + subscribe timed out".into()),
    };
    connected(&shared, started);
    let mut reader = Reader::new(&spec.channel, sub_seq, &shared);
    let stop = stopped(&mut shutdown);
    tokio::pin!(stop);
    loop {
        // Everything already buffered first (frames that came with the subscribed reply).
        loop {
            match frames.next() {
                Ok(Some(Frame::Text(text))) => reader.on_text(text),
                Ok(Some(Frame::Ping(payload))) => {
                    if let Err(e) = ws::send_frame(&mut stream, ws::OP_PONG, payload).await {
                        return reader.gone(format!("write: {e}"));
                    }
                }
                Ok(Some(Frame::Close(code, why))) => {
                    reader.gone(match code {
                        Some(code) => {
                            format!("server closed: {code} {}", String::from_utf8_lossy(why))
                        }
                        None => "close without code".into(),
                    });
                    let echo = code.map(u16::to_be_bytes);
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        ws::send_frame(&mut stream, ws::OP_CLOSE, echo.as_ref().map_or(&[], |c| c)),
                    )
                    .await;
                    return;
                }
                Ok(Some(Frame::Binary | Frame::Pong)) => {}
                Ok(None) => break,
                Err(e) => return reader.gone(format!("read: {e}")),
            }
        }
        tokio::select! {
            biased;
            r = stream.read(frames.spare()) => match r {
                Ok(0) => return reader.gone("connection ended".into()),
                Ok(n) => frames.filled(n),
                Err(e) => return reader.gone(format!("read: {e}")),
            },
            () = &mut stop => break,
        }
    }
    // Close handshake: the server closes the TCP connection first, so TIME_WAIT stays on
    // its side rather than using up our source ports. What it still sends is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        ws::send_frame(&mut stream, ws::OP_CLOSE, &[]).await.ok()?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await.ok()? > 0 {}
        Some(())
    })
    .await;
}

/// Resolves once `shutdown` is true or its sender is gone.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records a connection that is up and subscribed (connect + subscribe took since `started`).
pub(crate) fn connected(shared: &Shared, started: Instant) {
    let micros = started.elapsed().as_micros() as u64;
    lock(&shared.connect_hist).saturating_record(micros);
    shared.connected.fetch_add(1, Ordering::SeqCst);
    shared.attempted.fetch_add(1, Ordering::SeqCst);
    shared.notify.notify_one();
}

pub(crate) fn connect_failed(shared: &Shared, e: String) {
    shared.note_error(e);
    shared.failed.fetch_add(1, Ordering::SeqCst);
    shared.attempted.fetch_add(1, Ordering::SeqCst);
    shared.finish_one();
}

/// Per-connection delivery bookkeeping.
pub(crate) struct Reader<'a> {
    channel: &'a str,
    /// The seq the next publication must carry.
    next_seq: u64,
    got: u64,
    finished: bool,
    shared: &'a Shared,
}

impl<'a> Reader<'a> {
    /// Bookkeeping for a connection subscribed to `channel` at `sub_seq`.
    pub(crate) fn new(channel: &'a str, sub_seq: u64, shared: &'a Shared) -> Self {
        let mut reader = Reader {
            channel,
            next_seq: sub_seq + 1,
            got: 0,
            finished: false,
            shared,
        };
        if shared.messages == 0 {
            // Nothing expected: this connection is finished as soon as it is up.
            reader.finish();
        }
        reader
    }

    pub(crate) fn on_text(&mut self, text: &[u8]) {
        let now = unix_ns();
        let Some(p) = parse_publication(text) else {
            return;
        };
        if p.channel != self.channel {
            return;
        }
        let expected = self.next_seq;
        if p.seq >= expected {
            self.next_seq = p.seq + 1;
            self.got += 1;
        }
        self.shared.with_tally(|tally| {
            if p.seq < expected {
                tally.duplicates += 1;
                return;
            }
            if p.seq > expected {
                tally.out_of_order += 1;
            }
            tally.delivered += 1;
            tally.last_delivery_unix_ns = tally.last_delivery_unix_ns.max(now);
            if let Some(t) = p.t {
                tally
                    .latency
                    .saturating_record(now.saturating_sub(t) / 1000);
            }
        });
        if p.seq >= expected && self.got == self.shared.messages {
            self.finish();
        }
    }

    pub(crate) fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.shared.finish_one();
        }
    }

    /// The connection ended before being told to close.
    pub(crate) fn gone(&mut self, why: String) {
        self.shared.disconnected.fetch_add(1, Ordering::SeqCst);
        self.shared.note_error(why);
        self.finish();
    }
}

/// TCP connect from `spec.source`, WebSocket handshake, subscribe; returns the stream and
/// the channel's seq from the `subscribed` reply. Frames after that reply stay in `frames`.
async fn connect_and_subscribe(
    spec: &ConnSpec,
    frames: &mut FrameReader,
) -> Result<(TcpStream, u64), String> {
    let mut stream = tcp_connect(spec).await?;
    ws::handshake(&mut stream, frames, &spec.host, &spec.path)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let subscribe = serde_json::json!({"type": "subscribe", "id": 1, "channels": [spec.channel]});
    ws::send_frame(&mut stream, ws::OP_TEXT, subscribe.to_string().as_bytes())
        .await
        .map_err(|e| format!("send subscribe: {e}"))?;
    loop {
        match frames.next().map_err(|e| format!("read: {e}"))? {
            Some(Frame::Text(text)) => {
                let text = std::str::from_utf8(text).map_err(|e| format!("read: {e}"))?;
                if let Some(seq) = subscribed_seq(text, &spec.channel)? {
                    return Ok((stream, seq));
                }
            }
            Some(Frame::Ping(payload)) => ws::send_frame(&mut stream, ws::OP_PONG, payload)
                .await
                .map_err(|e| format!("write: {e}"))?,
            Some(Frame::Close(code, why)) => {
                return Err(format!(
                    "closed before subscribed: {code:?} {}",
                    String::from_utf8_lossy(why)
                ))
            }
            Some(Frame::Binary | Frame::Pong) => {}
            None => {
                let n = stream
                    .read(frames.spare())
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("connection ended before subscribed".into());
                }
                frames.filled(n);
            }
        }
    }
}

/// TCP connect from `spec.source` to `spec.addr`, with TCP_NODELAY.
pub(crate) async fn tcp_connect(spec: &ConnSpec) -> Result<TcpStream, String> {
    let socket = if spec.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::new(spec.source, 0))
        .map_err(|e| format!("bind {}: {e}", spec.source))?;
    let stream = socket
        .connect(spec.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Some(seq) for the `subscribed` reply to our subscribe (id 1), an error for an `error`
/// reply to it, None for any other frame.
pub(crate) fn subscribed_seq(text: &str, channel: &str) -> Result<Option<u64>, String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(None);
    };
    let ours = v.get("id").and_then(|i| i.as_i64()) == Some(1);
    match v.get("type").and_then(|t| t.as_str()) {
        Some("subscribed") if ours => v
            .get("channels")
            .and_then(|c| c.as_array())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("channel").and_then(|n| n.as_str()) == Some(channel))
            })
            .and_then(|c| c.get("seq").and_then(|s| s.as_u64()))
            .map(Some)
            .ok_or_else(|| format!("subscribed reply without {channel}: {text}")),
        Some("error") if ours => Err(format!("subscribe refused: {text}")),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribed_reply() {
        let ok = r#"{"type":"subscribed","id":1,"channels":[{"channel":"bench-0","epoch":"e","seq":12,"recovered":false}]}"#;
        assert_eq!(subscribed_seq(ok, "bench-0"), Ok(Some(12)));
        assert!(subscribed_seq(ok, "bench-1").is_err());
        let err = r#"{"type":"error","id":1,"code":"forbidden","channel":"bench-0","message":"x"}"#;
        assert!(subscribed_seq(err, "bench-0").is_err());
        let welcome = r#"{"type":"welcome","connection_id":"c_1"}"#;
        assert_eq!(subscribed_seq(welcome, "bench-0"), Ok(None));
    }

    #[test]
    fn reader_counts_order_and_duplicates() {
        let shared = Shared::new(3, 1);
        let mut r = Reader {
            channel: "b",
            next_seq: 5,
            got: 0,
            finished: false,
            shared: &shared,
        };
        let t = unix_ns();
        let f = |seq: u64, ch: &str| {
            format!(r#"{{"type":"bench","channel":"{ch}","seq":{seq},"data":{{"t":{t},"i":0}}}}"#)
        };
        r.on_text(f(5, "b").as_bytes());
        r.on_text(f(5, "b").as_bytes());
        r.on_text(f(9, "other").as_bytes());
        r.on_text(f(6, "b").as_bytes());
        assert_eq!(shared.finished.load(Ordering::SeqCst), 0);
        r.on_text(f(8, "b").as_bytes());
        let tally = shared.tally();
        assert_eq!(tally.delivered, 3);
        assert_eq!(shared.delivered(), 3);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.out_of_order, 1);
        assert_eq!(shared.finished.load(Ordering::SeqCst), 1);
        assert_eq!(tally.latency.len(), 3);
        assert!(tally.last_delivery_unix_ns >= t);
    }
}

/// One connection against a scripted server on loopback: handshake, welcome in the same
/// segment as the 101, pings before and inside a fragmented `subscribed` reply,
/// publications in the same read as it and split across writes, the close handshake.
#[cfg(test)]
mod scripted {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::cli::ReaderKind;
    use crate::ws::{accept_key, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            out.push(payload.len() as u8);
        } else {
            out.push(126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    /// Reads one client frame: it must be final and masked; returns opcode and payload.
    async fn client_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.unwrap();
        assert_eq!(h[0] & 0x80, 0x80, "final");
        assert_eq!(h[1] & 0x80, 0x80, "masked");
        let len = match h[1] & 0x7F {
            126 => s.read_u16().await.unwrap() as usize,
            127 => s.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let mut mask = [0u8; 4];
        s.read_exact(&mut mask).await.unwrap();
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        (h[0] & 0x0F, payload)
    }

    async fn server(listener: TcpListener) {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            request.push(s.read_u8().await.unwrap());
        }
        let request = String::from_utf8(request).unwrap();
        assert!(request.starts_with("GET /ws HTTP/1.1\r\n"), "{request}");
        let key = request
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(": ")?;
                name.eq_ignore_ascii_case("Sec-WebSocket-Key")
                    .then_some(value)
            })
            .unwrap();
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        )
        .into_bytes();
        out.extend(frame(
            true,
            OP_TEXT,
            br#"{"type":"welcome","connection_id":"c_1"}"#,
        ));
        s.write_all(&out).await.unwrap();

        let (op, sub) = client_frame(&mut s).await;
        assert_eq!(op, OP_TEXT);
        let sub: serde_json::Value = serde_json::from_slice(&sub).unwrap();
        assert_eq!(
            sub,
            serde_json::json!({"type": "subscribe", "id": 1, "channels": ["c"]})
        );

        let t = unix_ns();
        let publication = |seq: u64, pad: usize| {
            format!(
                r#"{{"type":"bench","channel":"c","epoch":"e","seq":{seq},"data":{{"t":{t},"i":{seq},"pad":"{}"}}}}"#,
                "x".repeat(pad)
            )
        };
        let mut out = frame(true, OP_PING, b"p1");
        out.extend(frame(false, OP_TEXT, br#"{"type":"subscribed","id":1,"#));
        out.extend(frame(true, OP_PING, b"p2"));
        out.extend(frame(
            true,
            OP_CONTINUATION,
            br#""channels":[{"channel":"c","epoch":"e","seq":7,"recovered":false}]}"#,
        ));
        out.extend(frame(true, OP_TEXT, publication(8, 10).as_bytes()));
        s.write_all(&out).await.unwrap();
        assert_eq!(client_frame(&mut s).await, (OP_PONG, b"p1".to_vec()));
        assert_eq!(client_frame(&mut s).await, (OP_PONG, b"p2".to_vec()));

        // seq 9 (16-bit length) in fragments, written in pieces.
        let p9 = publication(9, 300);
        let (a, b) = p9.as_bytes().split_at(100);
        let mut out = frame(false, OP_TEXT, a);
        out.extend(frame(true, OP_PING, b"p3"));
        out.extend(frame(true, OP_CONTINUATION, b));
        for piece in [&out[..1], &out[1..3], &out[3..150], &out[150..]] {
            s.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(client_frame(&mut s).await, (OP_PONG, b"p3".to_vec()));

        // The client closes when told to; we answer and close the TCP connection first.
        assert_eq!(client_frame(&mut s).await, (OP_CLOSE, vec![]));
        s.write_all(&frame(true, OP_CLOSE, b"")).await.unwrap();
    }

    #[test]
    fn lean_connection_against_a_scripted_server() {
        against_scripted_server(ReaderKind::Lean);
    }

    #[test]
    fn tungstenite_connection_against_a_scripted_server() {
        against_scripted_server(ReaderKind::Tungstenite);
    }

    fn against_scripted_server(reader: ReaderKind) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(server(listener));
            let shared = Arc::new(Shared::new(2, 1));
            let (stop_tx, stop_rx) = watch::channel(false);
            let spec = ConnSpec {
                addr,
                host: addr.to_string(),
                path: "/ws".into(),
                channel: "c".into(),
                source: "127.0.0.1".parse().unwrap(),
                connect_timeout: Duration::from_secs(5),
            };
            let (slots, shared2) = (Arc::new(Semaphore::new(1)), shared.clone());
            let conn = match reader {
                ReaderKind::Lean => tokio::spawn(run(spec, shared2, slots, stop_rx)),
                ReaderKind::Tungstenite => tokio::spawn(crate::tungstenite_reader::run(
                    spec, shared2, slots, stop_rx,
                )),
            };
            tokio::time::timeout(Duration::from_secs(5), async {
                while shared.finished.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("both publications arrive");
            stop_tx.send(true).unwrap();
            tokio::time::timeout(Duration::from_secs(5), conn)
                .await
                .unwrap()
                .unwrap();
            server.await.unwrap();
            assert_eq!(shared.connected.load(Ordering::SeqCst), 1);
            assert_eq!(shared.disconnected.load(Ordering::SeqCst), 0);
            let tally = shared.tally();
            assert_eq!(
                (tally.delivered, tally.duplicates, tally.out_of_order),
                (2, 0, 0)
            );
            assert_eq!(tally.latency.len(), 2);
            assert!(lock(&shared.errors).is_empty());
        });
    }
}
