//! One subscriber connection: bound connect, WebSocket handshake, subscribe, then counting
//! and timing every publication until told to close.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::frame::parse_publication;
use crate::protocol::new_hist;

type Ws = WebSocketStream<TcpStream>;

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

/// Counters shared by every connection of a worker process.
pub struct Shared {
    /// Messages each connection expects (0: no expectation).
    pub messages: u64,
    pub connect_hist: Mutex<Histogram<u64>>,
    pub latency_hist: Mutex<Histogram<u64>>,
    pub errors: Mutex<Vec<String>>,
    /// Connections whose connect + subscribe ended, well or not.
    pub attempted: AtomicUsize,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    /// Connections that need nothing more: all messages in, or gone.
    pub finished: AtomicUsize,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub out_of_order: AtomicU64,
    pub disconnected: AtomicU64,
    pub last_delivery_unix_ns: AtomicU64,
    /// Woken whenever `attempted` or `finished` grows.
    pub notify: Notify,
}

impl Shared {
    pub fn new(messages: u64) -> Self {
        Shared {
            messages,
            connect_hist: Mutex::new(new_hist()),
            latency_hist: Mutex::new(new_hist()),
            errors: Mutex::new(Vec::new()),
            attempted: AtomicUsize::new(0),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            finished: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            last_delivery_unix_ns: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    fn note_error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
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

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
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
    let result = tokio::time::timeout(spec.connect_timeout, connect_and_subscribe(&spec)).await;
    drop(permit);
    let (mut ws, sub_seq) = match result {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return connect_failed(&shared, e),
        Err(_) => return connect_failed(&shared, "connect + subscribe timed out".into()),
    };
    let micros = started.elapsed().as_micros() as u64;
    lock(&shared.connect_hist).saturating_record(micros);
    shared.connected.fetch_add(1, Ordering::SeqCst);
    shared.attempted.fetch_add(1, Ordering::SeqCst);
    shared.notify.notify_one();

    let mut reader = Reader {
        channel: &spec.channel,
        next_seq: sub_seq + 1,
        got: 0,
        finished: false,
        shared: &shared,
    };
    if shared.messages == 0 {
        // Nothing expected: this connection is finished as soon as it is up.
        reader.finish();
    }
    let stop = stopped(&mut shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => reader.on_text(text.as_str()),
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map_or("close without code".into(), |f| {
                        format!("server closed: {} {}", u16::from(f.code), f.reason)
                    });
                    reader.gone(why);
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return reader.gone(format!("read: {e}")),
                None => return reader.gone("connection ended".into()),
            },
            () = &mut stop => break,
        }
    }
    // Close handshake: the server closes the TCP connection first, so TIME_WAIT stays on
    // its side rather than using up our source ports.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        ws.close(None).await.ok()?;
        while let Some(Ok(_)) = ws.next().await {}
        Some(())
    })
    .await;
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn connect_failed(shared: &Shared, e: String) {
    shared.note_error(e);
    shared.failed.fetch_add(1, Ordering::SeqCst);
    shared.attempted.fetch_add(1, Ordering::SeqCst);
    shared.finish_one();
}

/// Per-connection delivery bookkeeping.
struct Reader<'a> {
    channel: &'a str,
    /// The seq the next publication must carry.
    next_seq: u64,
    got: u64,
    finished: bool,
    shared: &'a Shared,
}

impl Reader<'_> {
    fn on_text(&mut self, text: &str) {
        let now = unix_ns();
        let Some(p) = parse_publication(text) else {
            return;
        };
        if p.channel != self.channel {
            return;
        }
        let shared = self.shared;
        if p.seq < self.next_seq {
            shared.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if p.seq > self.next_seq {
            shared.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        self.next_seq = p.seq + 1;
        self.got += 1;
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        shared
            .last_delivery_unix_ns
            .fetch_max(now, Ordering::Relaxed);
        if let Some(t) = p.t {
            lock(&shared.latency_hist).saturating_record(now.saturating_sub(t) / 1000);
        }
        if self.got == shared.messages {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.shared.finish_one();
        }
    }

    /// The connection ended before being told to close.
    fn gone(&mut self, why: String) {
        self.shared.disconnected.fetch_add(1, Ordering::SeqCst);
        self.shared.note_error(why);
        self.finish();
    }
}

/// TCP connect from `spec.source`, WebSocket handshake, subscribe; returns the stream and
/// the channel's seq from the `subscribed` reply.
async fn connect_and_subscribe(spec: &ConnSpec) -> Result<(Ws, u64), String> {
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
    let request = format!("ws://{}{}", spec.host, spec.path)
        .into_client_request()
        .map_err(|e| format!("request: {e}"))?;
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let subscribe = serde_json::json!({"type": "subscribe", "id": 1, "channels": [spec.channel]});
    ws.send(Message::text(subscribe.to_string()))
        .await
        .map_err(|e| format!("send subscribe: {e}"))?;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => return Err(format!("closed before subscribed: {f:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("connection ended before subscribed".into()),
        };
        if let Some(seq) = subscribed_seq(text.as_str(), &spec.channel)? {
            return Ok((ws, seq));
        }
    }
}

/// Some(seq) for the `subscribed` reply to our subscribe (id 1), an error for an `error`
/// reply to it, None for any other frame.
fn subscribed_seq(text: &str, channel: &str) -> Result<Option<u64>, String> {
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
        let shared = Shared::new(3);
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
        r.on_text(&f(5, "b"));
        r.on_text(&f(5, "b"));
        r.on_text(&f(9, "other"));
        r.on_text(&f(6, "b"));
        assert_eq!(shared.finished.load(Ordering::SeqCst), 0);
        r.on_text(&f(8, "b"));
        assert_eq!(shared.delivered.load(Ordering::SeqCst), 3);
        assert_eq!(shared.duplicates.load(Ordering::SeqCst), 1);
        assert_eq!(shared.out_of_order.load(Ordering::SeqCst), 1);
        assert_eq!(shared.finished.load(Ordering::SeqCst), 1);
        assert_eq!(lock(&shared.latency_hist).len(), 3);
    }
}
