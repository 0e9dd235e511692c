//! A Coinbase Exchange market-data mimic (reference sections 1.2-1.8 and 5.6).
//!
//! It disconnects a client that has not subscribed within the deadline, answers every
//! subscribe and unsubscribe with the cumulative `subscriptions` message (`account_ids: null`,
//! batch channels under their legacy names), refuses unknown products, authenticated channels
//! and a product-less heartbeat with Coinbase's error frames, sends a `heartbeat` per product
//! every interval with a growing, non-contiguous `sequence`, and plays the script.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{interval, timeout_at, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::control::{unless_dropped, Control, ReplayOptions, ReplayServer};
use super::script::Script;

type Ws = WebSocketStream<TcpStream>;

/// Starts a Coinbase replay server on 127.0.0.1 (port 0) playing `script`.
pub async fn start_coinbase(script: Script, options: ReplayOptions) -> ReplayServer {
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

/// The channels a connection is subscribed to, in the order first asked for.
#[derive(Default)]
struct Subscriptions(Vec<(String, Vec<String>)>);

impl Subscriptions {
    fn add(&mut self, channel: &str, products: &[String]) {
        let entry = match self.0.iter_mut().find(|(name, _)| name == channel) {
            Some(entry) => entry,
            None => {
                self.0.push((channel.to_string(), Vec::new()));
                self.0.last_mut().expect("just pushed")
            }
        };
        for p in products {
            if !entry.1.contains(p) {
                entry.1.push(p.clone());
            }
        }
    }

    fn remove(&mut self, channel: &str, products: &[String]) {
        if products.is_empty() {
            self.0.retain(|(name, _)| name != channel);
        } else if let Some((_, list)) = self.0.iter_mut().find(|(name, _)| name == channel) {
            list.retain(|p| !products.contains(p));
        }
    }

    fn products(&self, channel: &str) -> Vec<String> {
        self.0
            .iter()
            .find(|(name, _)| name == channel)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }

    fn ack(&self) -> String {
        let channels: Vec<Value> = self
            .0
            .iter()
            .map(|(name, products)| json!({"name": name, "product_ids": products, "account_ids": null}))
            .collect();
        json!({"type": "subscriptions", "channels": channels}).to_string()
    }
}

/// A parsed subscribe or unsubscribe: (channel as acknowledged, products).
type Request = Vec<(String, Vec<String>)>;

/// Reads a subscribe/unsubscribe the way Coinbase does; `Err` is the error frame to send.
fn parse_request(value: &Value, options: &ReplayOptions) -> Result<Request, String> {
    let error = |reason: String| {
        json!({"type": "error", "message": "Failed to subscribe", "reason": reason}).to_string()
    };
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let root_products = strings(value.get("product_ids"));
    let Some(channels) = value.get("channels").and_then(Value::as_array) else {
        return Err(error("channels is required".to_string()));
    };
    let mut request = Vec::new();
    for channel in channels {
        let (name, mut products) = match channel {
            Value::String(name) => (name.clone(), Vec::new()),
            Value::Object(o) => (
                o.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                strings(o.get("product_ids")),
            ),
            _ => return Err(error("invalid channel".to_string())),
        };
        for p in &root_products {
            if !products.contains(p) {
                products.push(p.clone());
            }
        }
        let acked_name = match name.as_str() {
            "ticker" | "heartbeat" | "matches" | "status" => name.clone(),
            // Batch channels are acknowledged under their legacy names (reference 1.4).
            "ticker_batch" | "ticker_1000" => "ticker_1000".to_string(),
            "level2_batch" | "level2_50" => "level2_50".to_string(),
            "level2" | "level3" | "full" | "user" => {
                return Err(error(
                    "level2, level3, and full channels now require authentication. https://docs.cloud.coinbase.com/exchange/docs/websocket-auth"
                        .to_string(),
                ))
            }
            other => return Err(error(format!("{other} is not a valid channel"))),
        };
        if products.is_empty() && value.get("type").and_then(Value::as_str) == Some("subscribe") {
            return Err(error(format!(
                "You need to specify at least one product ID for channel {name}"
            )));
        }
        if let Some(valid) = &options.valid_products {
            if let Some(bad) = products.iter().find(|p| !valid.contains(p)) {
                return Err(error(format!("{bad} is not a valid product")));
            }
        }
        request.push((acked_name, products));
    }
    Ok(request)
}

async fn send(ws: &mut Ws, control: &Control, text: String) -> bool {
    // A stalled server holds everything, acks included.
    control.while_stalled().await;
    ws.send(Message::text(text)).await.is_ok()
}

async fn connection(stream: TcpStream, control: Arc<Control>, script: Arc<Script>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    control.seen().connections += 1;
    let options = control.options.clone();
    let mut subscriptions = Subscriptions::default();

    // Phase 1: a successful subscribe must arrive before the deadline.
    let deadline = Instant::now() + options.subscribe_deadline;
    loop {
        let frame = match timeout_at(deadline, ws.next()).await {
            Err(_) => {
                control.seen().deadline_closes += 1;
                let frame = CloseFrame {
                    code: CloseCode::Policy,
                    reason: "subscribe within 5 s".into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
                return;
            }
            Ok(Some(Ok(frame))) => frame,
            Ok(_) => return,
        };
        let Message::Text(text) = frame else { continue };
        let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if value.get("type").and_then(Value::as_str) != Some("subscribe") {
            continue;
        }
        control.seen().subscribes.push(text.to_string());
        match parse_request(&value, &options) {
            Ok(request) => {
                for (channel, products) in &request {
                    subscriptions.add(channel, products);
                }
                if !send(&mut ws, &control, subscriptions.ack()).await {
                    return;
                }
                break;
            }
            Err(error_frame) => {
                if !send(&mut ws, &control, error_frame).await {
                    return;
                }
            }
        }
    }

    // Phase 2: heartbeats, the script, and later subscribes or unsubscribes.
    let mut heartbeats = interval(options.keepalive_interval);
    heartbeats.set_missed_tick_behavior(MissedTickBehavior::Delay);
    heartbeats.tick().await;
    let mut frames = interval(options.frame_interval);
    frames.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut next_frame = 0;
    let mut sequence: u64 = 1_000;
    let mut last_trade_id: u64 = 500;
    loop {
        let stalled = *control.stalled.borrow();
        tokio::select! {
            _ = heartbeats.tick() => {
                if stalled {
                    continue;
                }
                for product in subscriptions.products("heartbeat") {
                    // The product's sequence counts full-channel events, so it jumps.
                    sequence += 7;
                    last_trade_id += 1;
                    let time = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
                    let heartbeat = json!({"type": "heartbeat", "sequence": sequence,
                        "last_trade_id": last_trade_id, "product_id": product, "time": time});
                    if !send(&mut ws, &control, heartbeat.to_string()).await {
                        return;
                    }
                }
            }
            _ = frames.tick(), if next_frame < script.frames.len() => {
                if stalled {
                    continue;
                }
                control.frame_sent(next_frame);
                if !send(&mut ws, &control, script.frames[next_frame].clone()).await {
                    return;
                }
                next_frame += 1;
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                };
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                let kind = value.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
                if kind != "subscribe" && kind != "unsubscribe" {
                    continue;
                }
                control.seen().subscribes.push(text.to_string());
                let answer = match parse_request(&value, &options) {
                    Ok(request) => {
                        for (channel, products) in &request {
                            if kind == "subscribe" {
                                subscriptions.add(channel, products);
                            } else {
                                subscriptions.remove(channel, products);
                            }
                        }
                        subscriptions.ack()
                    }
                    Err(error_frame) => error_frame,
                };
                if !send(&mut ws, &control, answer).await {
                    return;
                }
            }
        }
    }
}
