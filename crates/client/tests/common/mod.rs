//! Test harness: the real server in-process on port 0 (restartable on the same port), and a
//! TCP proxy in front of it that can cut connections and hold new ones back, so a test
//! decides exactly what a client misses while it is away.
//!
//! Timeouts here only stop a broken test from hanging; no test asserts a duration.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use signalhub::config::{Config, Overrides};
use signalhub::AppState;
use signalhub_client::{Backoff, ConnectionState, Event, Events};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

pub const PUBLISHER_KEY: &str = "test-publisher-key";
pub const ADMIN_KEY: &str = "test-admin-key";
pub const JWT_SECRET: &str = "client-tests-secret-0123456789";
/// Long enough for anything these tests wait for; only a hang guard.
pub const GUARD: Duration = Duration::from_secs(20);

/// Reconnect quickly in tests.
pub fn fast_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(10), Duration::from_millis(100))
}

/// A running server with its own in-memory state (a restart is a new epoch everywhere).
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

fn config() -> Config {
    let keys = format!("{PUBLISHER_KEY}:publisher,{ADMIN_KEY}:admin");
    let env: &[(&str, &str)] = &[
        ("SIGNALHUB_API_KEYS", &keys),
        ("SIGNALHUB_STORE", "sqlite::memory:"),
        ("SIGNALHUB_JWT_SECRET", JWT_SECRET),
    ];
    let file = signalhub::config::parse_file("").expect("empty TOML parses");
    Config::resolve(file, &Overrides::default(), env).expect("test config is valid")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts a server on `addr` (a stopped server's address, to restart it).
    pub async fn start_on(addr: SocketAddr) -> TestServer {
        let listener: TcpListener = signalhub::server::bind(addr).expect("the address binds");
        let addr = listener.local_addr().unwrap();
        let state = AppState::open(config()).await.expect("the store opens");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(signalhub::server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts down gracefully (WebSockets close with 1001) and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(GUARD, task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }

    /// POSTs JSON with `key`; returns status and body.
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let resp = tokio::time::timeout(
            GUARD,
            reqwest::Client::new()
                .post(format!("{}{path}", self.url()))
                .bearer_auth(key)
                .json(body)
                .send(),
        )
        .await
        .unwrap()
        .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Publishes `data` on `channel` (optionally with a tier) and returns its seq.
    pub async fn publish_with(&self, channel: &str, data: Value, tier: Option<&str>) -> u64 {
        let mut body = json!({"channel": channel, "type": "test", "data": data});
        if let Some(tier) = tier {
            body["tier"] = json!(tier);
        }
        let (status, answer) = self.post("/api/v1/publish", PUBLISHER_KEY, &body).await;
        assert_eq!(status, 200, "{answer}");
        answer["seq"].as_u64().unwrap()
    }

    pub async fn publish(&self, channel: &str, data: Value) -> u64 {
        self.publish_with(channel, data, None).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A session token for `user`, signed with the test server's secret, expiring `ttl_s`
/// seconds after `now` (Unix seconds).
pub fn token_at(user: &str, ttl_s: u64, now: i64) -> String {
    let minter = signalhub::auth::Minter::hs256(JWT_SECRET.as_bytes()).unwrap();
    minter
        .mint(user, "free", ttl_s, signalhub_hub::AuthKind::Session, now)
        .0
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A TCP proxy to `upstream`: `cut` drops every open connection, `hold` makes new ones wait
/// (accepted, not yet forwarded) until `release`.
pub struct Proxy {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, gate) = watch::channel(true);
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let list = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut gate = gate.clone();
                let task = tokio::spawn(async move {
                    if gate.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                // The list is only touched here and in `cut`, never across an await.
                list.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            open,
            connections,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Drops every connection open now: the client sees the TCP stream end, no close frame.
    pub fn cut(&self) {
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The next event, within the guard.
pub async fn next(events: &mut Events) -> Event {
    tokio::time::timeout(GUARD, events.next())
        .await
        .expect("an event arrives")
        .expect("the stream is open")
}

/// Reads events until `f` accepts one; returns it and every event read before it.
pub async fn until(events: &mut Events, mut f: impl FnMut(&Event) -> bool) -> (Event, Vec<Event>) {
    let mut before = Vec::new();
    loop {
        let event = next(events).await;
        if f(&event) {
            return (event, before);
        }
        before.push(event);
    }
}

/// Waits for the `subscribed` of `channel`; returns whether it recovered.
pub async fn subscribed(events: &mut Events, channel: &str) -> (bool, Vec<Event>) {
    let (event, before) = until(
        events,
        |e| matches!(e, Event::Subscribed { channel: c, .. } if c == channel),
    )
    .await;
    let Event::Subscribed { recovered, .. } = event else {
        unreachable!()
    };
    (recovered, before)
}

/// The `n` field of each publication's data, in order.
pub fn numbers(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Publication(env) => env.data_as::<Value>().unwrap().unwrap()["n"].as_u64(),
            _ => None,
        })
        .collect()
}

/// Reads until `count` publications have arrived; returns them and everything else read.
pub async fn publications(events: &mut Events, count: usize) -> (Vec<Event>, Vec<Event>) {
    let mut pubs = Vec::new();
    let mut other = Vec::new();
    while pubs.len() < count {
        match next(events).await {
            e @ (Event::Publication(_) | Event::Locked(_)) => pubs.push(e),
            e => other.push(e),
        }
    }
    (pubs, other)
}

/// True for a terminal `Closed` state with `code`.
pub fn is_closed_with(event: &Event, code: u16) -> bool {
    matches!(event, Event::State(ConnectionState::Closed { code: Some(c), .. }) if *c == code)
}
