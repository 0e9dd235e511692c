//! signalhub-minimal: the in-repo yardstick, a minimal tokio fan-out server speaking what
//! signalhub-bench uses (the subset node-ws-server.mjs implements: welcome, subscribe /
//! subscribed, envelopes with a per-channel seq, `POST /api/v1/publish` with a Bearer key).
//!
//! The design a lean fan-out server would have: server frames written by hand (one framed
//! envelope per publication, shared by every subscriber), no read buffer while a connection
//! is idle (reads go to the stack; only a partial client frame is kept), a `VecDeque`
//! outbox per connection drained by coalesced (vectored) writes, and jemalloc.
//! Usage: signalhub-minimal PORT API_KEY   (prints "listening on 127.0.0.1:PORT" on stderr)

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

#[allow(dead_code)]
#[path = "../src/ws.rs"]
mod ws;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Frames queued for one connection beyond which it is dropped as too slow.
const MAX_OUTBOX: usize = 8192;
/// Largest client frame payload and HTTP request (head + body) accepted.
const MAX_INPUT: usize = 65536;
/// Pending connections the listener queues.
const LISTEN_BACKLOG: u32 = 4096;
/// Frames handed to one `writev`.
const MAX_IOV: usize = 64;

/// One WebSocket connection's outbox, filled by publishers, drained by its own task.
#[derive(Default)]
struct Conn {
    outbox: Mutex<VecDeque<Arc<[u8]>>>,
    wake: Notify,
    /// Set when the outbox overflowed: the connection is closed rather than left with gaps.
    dead: AtomicBool,
}

impl Conn {
    /// Queues a frame; false if the connection is too far behind.
    fn push(&self, frame: Arc<[u8]>) -> bool {
        let mut q = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_OUTBOX {
            self.dead.store(true, Ordering::Relaxed);
            self.wake.notify_one();
            return false;
        }
        q.push_back(frame);
        drop(q);
        self.wake.notify_one();
        true
    }
}

#[derive(Default)]
struct Channel {
    seq: u64,
    subs: HashMap<u64, Arc<Conn>>,
}

struct Hub {
    api_key: String,
    channels: Mutex<HashMap<String, Channel>>,
    ids: AtomicU64,
}

/// A final, unmasked server frame.
fn server_frame(opcode: u8, payload: &[u8]) -> Arc<[u8]> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out.into()
}

/// fin, opcode, unmasked payload, bytes used.
type ClientFrame = (bool, u8, Vec<u8>, usize);

/// One complete client frame at the start of `buf`: (fin, opcode, unmasked payload,
/// bytes used), None if incomplete, an error if not a valid masked frame within limits.
fn client_frame(buf: &[u8]) -> Result<Option<ClientFrame>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 == 0 {
        return Err("unmasked client frame".into());
    }
    let (len, mut at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > MAX_INPUT {
        return Err("client frame too large".into());
    }
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload = buf[at..at + len]
        .iter()
        .zip(mask.iter().cycle())
        .map(|(b, m)| b ^ m);
    Ok(Some((
        buf[0] & 0x80 != 0,
        buf[0] & 0x0F,
        payload.collect(),
        at + len,
    )))
}

/// A parsed HTTP request head: method, path, lower-cased header names with their values.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_head(raw: &str) -> Option<Head> {
    let mut lines = raw.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Head {
        method,
        path,
        headers,
    })
}

#[derive(serde::Deserialize)]
struct PublishBody<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow)]
    channel: &'a str,
    data: &'a RawValue,
}

impl Hub {
    /// Publishes once: the envelope is serialized and framed once for all subscribers.
    fn publish(&self, body: &[u8]) -> Result<String, String> {
        let b: PublishBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let id = format!("pub_{}", self.ids.fetch_add(1, Ordering::Relaxed) + 1);
        let str_json = |s: &str| serde_json::to_string(s).expect("a string serializes");
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let c = channels.entry(b.channel.to_string()).or_default();
        c.seq += 1;
        let envelope = format!(
            r#"{{"type":{},"channel":{},"epoch":"e1","seq":{},"id":"{id}","timestamp":"{}","data":{}}}"#,
            str_json(b.kind.as_deref().unwrap_or("message")),
            str_json(b.channel),
            c.seq,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            b.data.get()
        );
        let frame = server_frame(ws::OP_TEXT, envelope.as_bytes());
        c.subs.retain(|_, conn| conn.push(frame.clone()));
        Ok(format!(
            r#"{{"id":"{id}","channel":{},"epoch":"e1","seq":{}}}"#,
            str_json(b.channel),
            c.seq
        ))
    }
}

async fn serve(hub: Arc<Hub>, mut stream: TcpStream, conn_id: u64) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_INPUT {
                return Err(io::Error::other("request head too large"));
            }
            buf.reserve(4096);
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let head = parse_head(std::str::from_utf8(&buf[..end]).map_err(io::Error::other)?)
            .ok_or_else(|| io::Error::other("bad request line"))?;
        buf.drain(..end);
        let upgrade = head
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        if head.method == "GET" && upgrade {
            let key = head.header("sec-websocket-key").unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                ws::accept_key(key)
            );
            // Nothing of the request is kept by the connection from here on.
            drop(head);
            stream.write_all(answer.as_bytes()).await?;
            drop(answer);
            return websocket(hub, stream, conn_id, buf).await;
        }
        let len: usize = head
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if len > MAX_INPUT {
            return Err(io::Error::other("body too large"));
        }
        while buf.len() < len {
            buf.reserve(len - buf.len());
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let bearer = head
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "));
        let (status, json) = if head.method != "POST" || head.path != "/api/v1/publish" {
            ("404 Not Found", String::new())
        } else if bearer != Some(hub.api_key.as_str()) {
            ("401 Unauthorized", String::new())
        } else {
            match hub.publish(&body) {
                Ok(json) => ("200 OK", json),
                Err(e) => (
                    "400 Bad Request",
                    serde_json::json!({ "error": e }).to_string(),
                ),
            }
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        );
        stream.write_all(answer.as_bytes()).await?;
    }
}

async fn websocket(
    hub: Arc<Hub>,
    stream: TcpStream,
    id: u64,
    mut partial: Vec<u8>,
) -> io::Result<()> {
    let conn = Arc::new(Conn::default());
    conn.push(server_frame(
        ws::OP_TEXT,
        br#"{"type":"welcome","connection_id":"c","auth":"anonymous","tier":"free"}"#,
    ));
    let mut held: Vec<String> = Vec::new();
    let result = ws_loop(&hub, &stream, id, &conn, &mut partial, &mut held).await;
    let mut channels = hub.channels.lock().unwrap_or_else(|p| p.into_inner());
    for name in held {
        if let Some(c) = channels.get_mut(&name) {
            c.subs.remove(&id);
        }
    }
    result
}

/// Writes what the outbox holds, many frames per `writev`; true if the socket is full.
fn flush(stream: &TcpStream, conn: &Conn, front_sent: &mut usize) -> io::Result<bool> {
    let mut q = conn.outbox.lock().unwrap_or_else(|p| p.into_inner());
    while !q.is_empty() {
        let mut iov: Vec<IoSlice> = Vec::with_capacity(q.len().min(MAX_IOV));
        for (k, f) in q.iter().take(MAX_IOV).enumerate() {
            iov.push(IoSlice::new(if k == 0 { &f[*front_sent..] } else { f }));
        }
        let mut n = match stream.try_write_vectored(&iov) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) => return Err(e),
        };
        drop(iov);
        while n > 0 {
            let left = q[0].len() - *front_sent;
            if n >= left {
                n -= left;
                *front_sent = 0;
                q.pop_front();
            } else {
                *front_sent += n;
                n = 0;
            }
        }
    }
    Ok(false)
}

async fn ws_loop(
    hub: &Hub,
    stream: &TcpStream,
    id: u64,
    conn: &Arc<Conn>,
    partial: &mut Vec<u8>,
    held: &mut Vec<String>,
) -> io::Result<()> {
    let mut front_sent = 0;
    let mut closing = frames(hub, id, conn, partial, held)?;
    loop {
        if conn.dead.load(Ordering::Relaxed) {
            return Err(io::Error::other("outbox overflow: too slow a reader"));
        }
        let blocked = flush(stream, conn, &mut front_sent)?;
        if closing && !blocked {
            return Ok(());
        }
        tokio::select! {
            r = stream.readable() => r?,
            () = conn.wake.notified(), if !blocked => continue,
            r = stream.writable(), if blocked => { r?; continue; }
        }
        match read_some(stream, partial) {
            Ok(0) => return Ok(()),
            Ok(_) => closing |= frames(hub, id, conn, partial, held)?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads what the socket has into a buffer on the thread's stack (a plain function, so it is
/// no part of the connection's future) and appends it to `partial`.
fn read_some(stream: &TcpStream, partial: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 2048];
    let n = stream.try_read(&mut chunk)?;
    partial.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Handles the complete client frames in `partial` and keeps only an incomplete one (no
/// buffer at all once nothing is left); true once a close frame came.
fn frames(
    hub: &Hub,
    id: u64,
    conn: &Arc<Conn>,
    partial: &mut Vec<u8>,
    held: &mut Vec<String>,
) -> io::Result<bool> {
    let (mut used, mut closing) = (0, false);
    while let Some((fin, opcode, payload, len)) =
        client_frame(&partial[used..]).map_err(io::Error::other)?
    {
        used += len;
        if !fin {
            return Err(io::Error::other(
                "fragmented client frames are not supported",
            ));
        }
        match opcode {
            ws::OP_TEXT => subscribe(hub, id, conn, &payload, held),
            ws::OP_PING => {
                conn.push(server_frame(ws::OP_PONG, &payload));
            }
            ws::OP_CLOSE => {
                conn.push(server_frame(
                    ws::OP_CLOSE,
                    payload.get(..2).unwrap_or_default(),
                ));
                closing = true;
            }
            _ => {}
        }
    }
    partial.drain(..used);
    if partial.is_empty() {
        *partial = Vec::new();
    }
    Ok(closing)
}

/// Handles a `subscribe` frame (anything else is ignored, as by the Node server); the reply is
/// queued under the channels lock, so it precedes every publication counted after it.
fn subscribe(hub: &Hub, id: u64, conn: &Arc<Conn>, text: &[u8], held: &mut Vec<String>) {
    #[derive(serde::Deserialize)]
    struct Subscribe {
        #[serde(rename = "type")]
        kind: String,
        id: Option<serde_json::Value>,
        #[serde(default)]
        channels: Vec<String>,
    }
    let Ok(s) = serde_json::from_slice::<Subscribe>(text) else {
        return;
    };
    if s.kind != "subscribe" {
        return;
    }
    let mut channels = hub.channels.lock().unwrap_or_else(|p| p.into_inner());
    let positions: Vec<_> = s
        .channels
        .iter()
        .map(|name| {
            let c = channels.entry(name.clone()).or_default();
            c.subs.insert(id, conn.clone());
            if !held.contains(name) {
                held.push(name.clone());
            }
            serde_json::json!({"channel": name, "epoch": "e1", "seq": c.seq, "recovered": false})
        })
        .collect();
    let reply = serde_json::json!({"type": "subscribed", "id": s.id, "channels": positions});
    conn.push(server_frame(ws::OP_TEXT, reply.to_string().as_bytes()));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let api_key = args.next().unwrap_or_else(|| "benchkey1234".into());
    let hub = Arc::new(Hub {
        api_key,
        channels: Mutex::default(),
        ids: AtomicU64::new(0),
    });
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        // A backlog for connect storms (tokio's `bind` listens with 1,024).
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(([127, 0, 0, 1], port).into()).expect("bind");
        let listener = socket.listen(LISTEN_BACKLOG).expect("listen");
        eprintln!(
            "listening on {}",
            listener.local_addr().expect("local address")
        );
        for conn_id in 1.. {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(hub.clone(), stream, conn_id));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn server_frames_have_the_shortest_length_encoding_and_parse_in_the_bench_reader() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let payload = vec![b'x'; len];
            let f = server_frame(ws::OP_TEXT, &payload);
            assert_eq!(f.len(), header + len, "length {len}");
            assert_eq!(f[0], 0x81);
            let mut reader = ws::FrameReader::new();
            let mut fed = 0;
            while fed < f.len() {
                let spare = reader.spare();
                let n = spare.len().min(f.len() - fed);
                spare[..n].copy_from_slice(&f[fed..fed + n]);
                reader.filled(n);
                fed += n;
            }
            assert_eq!(reader.next(), Ok(Some(ws::Frame::Text(&payload[..]))));
        }
    }

    #[test]
    fn client_frames_are_unmasked_and_incomplete_ones_wait() {
        let mut raw = Vec::new();
        ws::client_frame(ws::OP_TEXT, &[b'a'; 300], [1, 2, 3, 4], &mut raw);
        ws::client_frame(ws::OP_PING, b"p", [9, 8, 7, 6], &mut raw);
        let (fin, op, payload, used) = client_frame(&raw).unwrap().unwrap();
        assert_eq!(
            (fin, op, payload, used),
            (true, ws::OP_TEXT, vec![b'a'; 300], 308)
        );
        assert_eq!(client_frame(&raw[used..]).unwrap().unwrap().2, b"p");
        assert_eq!(client_frame(&raw[..307]).unwrap(), None);
        assert_eq!(client_frame(&raw[..3]).unwrap(), None);
        assert!(client_frame(&[0x81, 0x01, b'x']).is_err(), "unmasked");
    }

    #[test]
    fn publish_numbers_each_channel_and_queues_one_envelope_per_subscriber() {
        let hub = Hub {
            api_key: "k".into(),
            channels: Mutex::default(),
            ids: AtomicU64::new(0),
        };
        let conn = Arc::new(Conn::default());
        let mut held = Vec::new();
        subscribe(
            &hub,
            7,
            &conn,
            br#"{"type":"subscribe","id":1,"channels":["a"]}"#,
            &mut held,
        );
        let reply = hub
            .publish(br#"{"channel":"a","type":"bench","data":{"t":1,"i":0}}"#)
            .unwrap();
        assert_eq!(
            reply,
            r#"{"id":"pub_1","channel":"a","epoch":"e1","seq":1}"#
        );
        hub.publish(br#"{"channel":"b","data":1}"#).unwrap();
        let q = conn.outbox.lock().unwrap();
        assert_eq!(
            q.len(),
            2,
            "subscribed reply, then only channel a's envelope"
        );
        let sub: serde_json::Value = serde_json::from_slice(&q[0][2..]).unwrap();
        assert_eq!(sub["channels"][0]["seq"], 0);
        assert_eq!(sub["id"], 1);
        let env: serde_json::Value = serde_json::from_slice(&q[1][2..]).unwrap();
        assert_eq!(
            (env["type"].as_str(), env["seq"].as_u64()),
            (Some("bench"), Some(1))
        );
        assert_eq!(env["data"], serde_json::json!({"t": 1, "i": 0}));
        assert!(hub.publish(b"{}").is_err());
    }

    #[test]
    fn request_heads_parse_with_lower_cased_header_names() {
        let h = parse_head(
            "POST /api/v1/publish HTTP/1.1\r\nAuthorization: Bearer k\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str()),
            ("POST", "/api/v1/publish")
        );
        assert_eq!(h.header("authorization"), Some("Bearer k"));
        assert_eq!(h.header("content-length"), Some("5"));
    }

    #[test]
    fn a_connection_task_holds_no_read_buffer_while_it_waits() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let hub = Arc::new(Hub {
                api_key: "k".into(),
                channels: Mutex::default(),
                ids: AtomicU64::new(0),
            });
            // The whole state a connection's task keeps between wake-ups (HTTP phase and
            // WebSocket phase alike): no 2-4 KiB read array in it.
            let task = serve(hub, client, 1);
            let size = std::mem::size_of_val(&task);
            assert!(size < 1024, "a connection's future is {size} bytes");
        });
    }
}
