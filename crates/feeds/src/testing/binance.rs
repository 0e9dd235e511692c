//! A Binance spot market-streams mimic (reference sections 3.1-3.2 and 5.6).
//!
//! It serves `/stream?streams=a/b` and `/ws/<stream>` (anything else gets 404), sends a ping
//! with a fresh payload every interval and closes the connection when the pong does not carry
//! that payload in time, answers `SUBSCRIBE`, `UNSUBSCRIBE` and `LIST_SUBSCRIPTIONS`, closes
//! with 1008 a client that sends more than 5 messages (pings, pongs and JSON all count) in any
//! second, and plays the script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::control::{unless_dropped, Control, ReplayOptions, ReplayServer};
use super::script::Script;

type Ws = WebSocketStream<TcpStream>;

/// Binance's inbound limit: messages per second per connection.
const INBOUND_PER_SECOND: usize = 5;

/// Starts a Binance replay server on 127.0.0.1 (port 0) playing `script`.
pub async fn start_binance(script: Script, options: ReplayOptions) -> ReplayServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("ws://{}", listener.local_addr().expect("local addr"));
    let control = Control::new(options);
    let script = Arc::new(script);
    let accept_control = control.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let control = accept_control.clone();
            let script = script.clone();
            tokio::spawn(async move {
                unless_dropped(&control.clone(), connection(stream, control, script)).await;
            });
        }
    });
    ReplayServer { url, control, task }
}

/// The streams a request path asks for, or `None` when the path is not a stream path.
fn streams_of(path_and_query: &str) -> Option<Vec<String>> {
    if let Some(stream) = path_and_query.strip_prefix("/ws/") {
        return (!stream.is_empty()).then(|| vec![stream.to_string()]);
    }
    let query = path_and_query.strip_prefix("/stream?")?;
    let list = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("streams="))?;
    let streams: Vec<String> = list
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    (!streams.is_empty()).then_some(streams)
}

fn valid_stream(stream: &str) -> bool {
    match stream.split_once('@') {
        Some((symbol, kind)) => {
            !symbol.is_empty()
                && symbol
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && !kind.is_empty()
        }
        None => false,
    }
}

/// Counts inbound messages and tells when a second held more than the limit.
#[derive(Default)]
struct InboundWindow(VecDeque<Instant>);

impl InboundWindow {
    fn over_limit(&mut self) -> bool {
        let now = Instant::now();
        self.0.push_back(now);
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.0.pop_front();
        }
        self.0.len() > INBOUND_PER_SECOND
    }
}

async fn close(ws: &mut Ws, code: CloseCode, reason: &'static str) {
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn connection(stream: TcpStream, control: Arc<Control>, script: Arc<Script>) {
    let requested: Arc<Mutex<Option<Vec<String>>>> = Arc::default();
    let seen_path = requested.clone();
    // tungstenite fixes the callback's error type (a whole HTTP response).
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request, response: Response| {
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        match streams_of(&path) {
            Some(streams) => {
                *seen_path.lock().unwrap_or_else(|e| e.into_inner()) = Some(streams);
                Ok(response)
            }
            None => {
                let mut refusal = ErrorResponse::new(Some("not a stream path".to_string()));
                *refusal.status_mut() = StatusCode::NOT_FOUND;
                Err(refusal)
            }
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let mut streams = requested
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    {
        let mut seen = control.seen();
        seen.connections += 1;
        seen.requested_streams.push(streams.clone());
    }
    let options = control.options.clone();
    let mut pings = interval(options.keepalive_interval);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    pings.tick().await;
    let mut frames = interval(options.frame_interval);
    frames.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut next_frame = 0;
    let mut ping_number: u64 = 0;
    // The payload of the ping awaiting its pong, and when that pong is due.
    let mut awaiting: Option<(Vec<u8>, Instant)> = None;
    let mut inbound = InboundWindow::default();
    loop {
        let stalled = *control.stalled.borrow();
        let pong_due = awaiting.as_ref().map(|(_, due)| *due);
        tokio::select! {
            _ = pings.tick() => {
                if stalled || awaiting.is_some() {
                    continue;
                }
                ping_number += 1;
                let payload = format!("ping-{ping_number}").into_bytes();
                awaiting = Some((payload.clone(), Instant::now() + options.pong_timeout));
                if ws.send(Message::Ping(payload.into())).await.is_err() {
                    return;
                }
            }
            () = sleep_until(pong_due.unwrap_or_else(Instant::now)), if pong_due.is_some() => {
                control.seen().pong_timeouts += 1;
                close(&mut ws, CloseCode::Policy, "pong timeout").await;
                return;
            }
            _ = frames.tick(), if next_frame < script.frames.len() => {
                if stalled {
                    continue;
                }
                control.frame_sent(next_frame);
                if ws.send(Message::text(script.frames[next_frame].clone())).await.is_err() {
                    return;
                }
                next_frame += 1;
            }
            frame = ws.next() => {
                let frame = match frame {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(frame)) => frame,
                };
                if inbound.over_limit() {
                    control.seen().rate_limit_closes += 1;
                    close(&mut ws, CloseCode::Policy, "Too many messages").await;
                    return;
                }
                match frame {
                    Message::Pong(payload) => {
                        match awaiting.take() {
                            Some((expected, _)) if expected == payload.as_ref() => {
                                control.seen().pongs_matched += 1;
                            }
                            Some(other) => {
                                control.seen().pongs_mismatched += 1;
                                // Unsolicited or wrong pongs do not count as the answer.
                                awaiting = Some(other);
                            }
                            None => {}
                        }
                    }
                    Message::Text(text) => {
                        let answer = control_answer(text.as_str(), &mut streams, &control);
                        if ws.send(Message::text(answer)).await.is_err() {
                            return;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The answer to a JSON control message (reference section 3.2).
fn control_answer(text: &str, streams: &mut Vec<String>, control: &Control) -> String {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return json!({"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}, "id": null}).to_string();
    };
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    let invalid = |msg: &str| {
        json!({"error": {"code": 2, "msg": format!("Invalid request: {msg}")}, "id": id})
            .to_string()
    };
    let params: Option<Vec<String>> = value.get("params").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    });
    match value.get("method").and_then(Value::as_str) {
        Some(method @ ("SUBSCRIBE" | "UNSUBSCRIBE")) => {
            control.seen().subscribes.push(text.to_string());
            let Some(params) = params.filter(|p| !p.is_empty()) else {
                return invalid("params required");
            };
            if params.iter().any(|s| !valid_stream(s)) {
                return invalid("invalid stream");
            }
            if method == "SUBSCRIBE" {
                for s in params {
                    if !streams.contains(&s) {
                        streams.push(s);
                    }
                }
            } else {
                streams.retain(|s| !params.contains(s));
            }
            json!({"result": null, "id": id}).to_string()
        }
        Some("LIST_SUBSCRIPTIONS") => json!({"result": streams, "id": id}).to_string(),
        _ => invalid("unknown method"),
    }
}
