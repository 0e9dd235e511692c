//! Test harness: a real server on port 0, a real WebSocket client, an HTTP client.
//!
//! Timeouts here only stop a broken test from hanging; no test asserts a duration.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signalhub::config::{Config, ConfigFile, Overrides};
use signalhub::AppState;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const PUBLISHER_KEY: &str = "test-publisher-key";
pub const ADMIN_KEY: &str = "test-admin-key";
/// Long enough for anything this suite waits for; only a hang guard.
pub const GUARD: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// A configuration from TOML text plus environment pairs (API keys preset).
pub fn config(toml: &str, env: &[(&str, &str)]) -> Config {
    let keys = format!("{PUBLISHER_KEY}:publisher,{ADMIN_KEY}:admin");
    // The first entry for a name wins, so the test's own variables go first.
    let mut all: Vec<(&str, &str)> = env.to_vec();
    all.push(("SIGNALHUB_API_KEYS", &keys));
    all.push(("SIGNALHUB_STORE", "sqlite::memory:"));
    let file: ConfigFile = signalhub::config::parse_file(toml).expect("test TOML parses");
    Config::resolve(file, &Overrides::default(), &all[..]).expect("test config is valid")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(config("", &[])).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::open(config).await.expect("the store opens");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(signalhub::server::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Connects a WebSocket and consumes the `welcome` frame.
    pub async fn ws(&self, path: &str) -> Ws {
        let (mut ws, welcome) = self.ws_with_welcome(path).await;
        assert_eq!(welcome["type"], "welcome");
        ws.welcome = welcome;
        ws
    }

    pub async fn ws_with_welcome(&self, path: &str) -> (Ws, Value) {
        let (stream, _) = tokio_tungstenite::connect_async(self.ws_url(path))
            .await
            .expect("websocket connects");
        let mut ws = Ws {
            stream,
            welcome: Value::Null,
        };
        let welcome = ws.recv().await;
        (ws, welcome)
    }

    /// POSTs JSON with the publisher key; returns status and JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, Some(PUBLISHER_KEY), body.to_string())
            .await
    }

    pub async fn post_raw(&self, path: &str, key: Option<&str>, body: String) -> (u16, Value) {
        let req = reqwest::Client::new()
            .post(self.http_url(path))
            .header("content-type", "application/json")
            .body(body);
        as_json(send(req, key).await).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_with(path, None).await
    }

    /// Publishes `data` on `channel` and returns the answer, asserting 200.
    pub async fn publish(&self, channel: &str, data: Value) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/publish",
                &json!({"channel": channel, "type": "test", "data": data}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(GUARD, task)
            .await
            .expect("server stops")
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A test WebSocket client over tokio-tungstenite.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Value,
}

impl Ws {
    pub async fn send(&mut self, value: Value) {
        self.stream
            .send(Message::text(value.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.unwrap();
    }

    /// The next message of any kind (pings included).
    pub async fn next_message(&mut self) -> Option<Message> {
        tokio::time::timeout(GUARD, self.stream.next())
            .await
            .expect("a message arrives")
            .map(|m| m.expect("websocket read"))
    }

    /// The next JSON text frame, skipping control frames.
    pub async fn recv(&mut self) -> Value {
        serde_json::from_str(&self.recv_text().await).expect("JSON frame")
    }

    /// The next text frame as sent, skipping control frames.
    pub async fn recv_text(&mut self) -> String {
        loop {
            match self.next_message().await {
                Some(Message::Text(text)) => return text.to_string(),
                Some(Message::Ping(_)) | Some(Message::Pong(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads until the close frame and returns its code.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            match self.next_message().await {
                Some(Message::Close(Some(frame))) => return u16::from(frame.code),
                Some(Message::Close(None)) => return 1005,
                Some(_) => continue,
                None => panic!("stream ended without a close frame"),
            }
        }
    }

    /// Subscribes and returns the `subscribed` frame.
    pub async fn subscribe(&mut self, channels: &[&str]) -> Value {
        self.send(json!({"type": "subscribe", "id": 1, "channels": channels}))
            .await;
        let reply = self.recv().await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }

    pub async fn close(mut self) {
        let _ = self
            .stream
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// Waits until `f` holds, polling; a hang guard, not a timing assertion.
pub async fn eventually(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw WebSocket client over TCP, for what tungstenite will not do: stop reading
/// (and so stop answering pings), send unmasked or malformed frames.
pub struct RawWs {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Performs the handshake on `path` and asserts 101.
    pub async fn connect(server: &TestServer, path: &str) -> RawWs {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        Self::handshake(server, path, tcp).await
    }

    /// As [`RawWs::connect`], with the socket's receive buffer set to `bytes` (so the
    /// server's writes to it fill up quickly while it is not read).
    pub async fn connect_with_recv_buffer(server: &TestServer, path: &str, bytes: u32) -> RawWs {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let tcp = socket.connect(server.addr).await.unwrap();
        Self::handshake(server, path, tcp).await
    }

    async fn handshake(server: &TestServer, path: &str, mut tcp: TcpStream) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let n = tokio::time::timeout(GUARD, tcp.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed during handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        assert!(
            buf.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        buf.drain(..end);
        RawWs { tcp, buf }
    }

    /// Sends one frame; `mask` false sends it unmasked (a protocol error from a client).
    pub async fn send_frame(&mut self, opcode: u8, fin: bool, payload: &[u8], mask: bool) {
        use tokio::io::AsyncWriteExt;
        let mut frame = vec![(u8::from(fin) << 7) | opcode];
        let mask_bit = if mask { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => frame.push(mask_bit | n as u8),
            n if n <= 65535 => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [0x12, 0x34, 0x56, 0x78];
        if mask {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        self.tcp.write_all(&frame).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, true, text.as_bytes(), true).await;
    }

    /// The next whole server frame as (opcode, payload); None at the end of the stream.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are never masked");
                let (len, start) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= start + len {
                    let opcode = self.buf[0] & 0x0F;
                    let payload = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    return Some((opcode, payload));
                }
            }
            let mut chunk = [0u8; 65536];
            // A reset counts as the end of the stream.
            let n: usize = tokio::time::timeout(GUARD, self.tcp.read(&mut chunk))
                .await
                .expect("data arrives")
                .unwrap_or_default();
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until a close frame and returns its code (None: the stream ended first).
    pub async fn read_until_close(&mut self) -> Option<u16> {
        while let Some((opcode, payload)) = self.read_frame().await {
            if opcode == 0x8 {
                return Some(if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    1005
                });
            }
        }
        None
    }

    /// Reads frames until a text frame and parses it.
    pub async fn read_json(&mut self) -> Value {
        while let Some((opcode, payload)) = self.read_frame().await {
            if opcode == 0x1 {
                return serde_json::from_slice(&payload).unwrap();
            }
        }
        panic!("stream ended before a text frame");
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// A streaming SSE response, read event by event (comments are skipped).
pub struct Sse {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl TestServer {
    /// Opens `/sse?{query}` with optional extra headers; returns the status and the stream.
    pub async fn sse(&self, query: &str, headers: &[(&str, &str)]) -> (u16, Sse) {
        let mut req = reqwest::Client::new().get(self.http_url(&format!("/sse?{query}")));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = tokio::time::timeout(GUARD, req.send())
            .await
            .unwrap()
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            Sse {
                body: Box::pin(resp.bytes_stream()),
                buf: String::new(),
            },
        )
    }
}

impl Sse {
    /// The next event (not comments).
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut event = SseEvent::default();
                let mut is_comment_only = true;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("data: ") {
                        event.data.push_str(v);
                        is_comment_only = false;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_string());
                        is_comment_only = false;
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.event = Some(v.to_string());
                        is_comment_only = false;
                    }
                }
                if !is_comment_only {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(GUARD, self.body.next())
                .await
                .expect("an event arrives")
                .expect("the stream is open")
                .expect("read");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads raw text until `needle` appears (for comments such as `: ping`).
    pub async fn read_until(&mut self, needle: &str) {
        while !self.buf.contains(needle) {
            let chunk = tokio::time::timeout(GUARD, self.body.next())
                .await
                .expect("data arrives")
                .expect("the stream is open")
                .expect("read");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// True once the server ended the stream.
    pub async fn ended(&mut self) -> bool {
        loop {
            match tokio::time::timeout(GUARD, self.body.next())
                .await
                .expect("stream ends")
            {
                None => return true,
                Some(Err(_)) => return true,
                Some(Ok(_)) => continue,
            }
        }
    }
}

impl TestServer {
    /// GETs the raw body text.
    pub async fn get_raw(&self, path: &str, key: Option<&str>) -> String {
        let resp = send(reqwest::Client::new().get(self.http_url(path)), key).await;
        resp.text().await.unwrap()
    }

    /// GETs with an optional `Authorization: Bearer` key.
    pub async fn get_with(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        as_json(send(reqwest::Client::new().get(self.http_url(path)), key).await).await
    }
}

/// Sends `req` with an optional bearer key, under the hang guard.
async fn send(mut req: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::Response {
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    tokio::time::timeout(GUARD, req.send())
        .await
        .expect("the server answers")
        .expect("the request is sent")
}

/// The status and the JSON body (or the text, as a JSON string, when it is not JSON).
async fn as_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Opens a WebSocket on `path` with extra request headers: the connection with its welcome
/// read (in `Ws::welcome`), or the HTTP refusal's status, headers and body (JSON, or the
/// text as a JSON string). A reset or any other failure panics: it is not an answer.
pub async fn try_handshake(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, (u16, reqwest::header::HeaderMap, Value)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = server.ws_url(path).into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    let attempt = tokio::time::timeout(GUARD, tokio_tungstenite::connect_async(req))
        .await
        .expect("the handshake finishes");
    match attempt {
        Ok((stream, _)) => {
            let mut ws = Ws {
                stream,
                welcome: Value::Null,
            };
            let welcome = ws.recv().await;
            assert_eq!(welcome["type"], "welcome", "{welcome}");
            ws.welcome = welcome;
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
            Err((resp.status().as_u16(), resp.headers().clone(), body))
        }
        Err(other) => panic!("expected an HTTP answer, got {other:?}"),
    }
}

/// One response read from `tcp`: status, head and body (by `Content-Length`).
pub async fn read_response(
    tcp: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return Ok((status, head, seen[end + 4..end + 4 + length].to_vec()));
            }
        }
        let n = tokio::time::timeout(GUARD, tokio::io::AsyncReadExt::read(tcp, &mut buf))
            .await
            .expect("the server answers")?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&buf[..n]);
    }
}
