//! `GET /sse?channels=a,b`: Server-Sent Events, for clients that cannot keep a WebSocket.
//!
//! The stream opens with a named `subscribed` event, then one unnamed event per publication
//! (the same envelope as WebSocket) whose `id` is a cursor of every channel's position, so a
//! reconnecting EventSource resumes with `Last-Event-ID` (or `?last_event_id=`, for the
//! first request, which browsers cannot give headers). A `: ping` comment is sent at the
//! heartbeat interval. The stream ends on shutdown or when its outbox overflows.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use signalhub_hub::{Client, SubscribeItem};

use super::channels::requested_channels;
use super::cursor::Cursor;
use super::error::ApiError;
use super::identity::identify;
use super::stream::{cors, next, Head, Held};
use crate::state::AppState;
use crate::ws::protocol;

/// `GET /sse`.
pub async fn sse(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match open(&state, peer, &query, &headers) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn open(
    state: &AppState,
    peer: SocketAddr,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let identity = identify(state, query, headers)?;
    let channels = requested_channels(state, &identity, query)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.get("last_event_id").map(String::as_str))
        .filter(|s| !s.is_empty());
    let cursor = match resume {
        None => Cursor::default(),
        Some(text) => Cursor::decode(text)
            .ok_or_else(|| ApiError::invalid("last_event_id", "not a cursor this server issued"))?,
    };
    let ip = peer.ip();
    if !state
        .registry
        .try_add_ip(ip, state.config.limits.connections_per_ip)
    {
        return Err(ApiError::rate_limited(
            "too many connections from this address",
            5,
        ));
    }
    let limits = &state.config.limits;
    let tier = identity.tier;
    let client = Arc::new(
        Client::new(
            state.next_connection_id(),
            identity,
            state.clock.now_s(),
            limits.ping_interval_s,
        )
        .with_peer(ip),
    );
    state.registry.insert(client.clone());
    let items: Vec<SubscribeItem<'_>> = channels
        .iter()
        .map(|c| SubscribeItem {
            channel: c,
            since: cursor.get(c),
            held: false,
        })
        .collect();
    let positions = state.hub.subscribe(&client, tier, &items, |positions| {
        protocol::subscribed_frame(None, positions)
    });
    let mut cursor = Cursor::default();
    for p in &positions {
        cursor.set(&p.channel, &p.epoch, p.seq);
    }
    let held = Held {
        state: state.clone(),
        subs: positions
            .iter()
            .map(|p| (p.channel.clone(), tier))
            .collect(),
        client,
        ip: Some(ip),
    };
    let body = Body::from_stream(futures_util::stream::unfold(
        (held, cursor, VecDeque::new(), false),
        |(held, mut cursor, mut queue, done)| async move {
            if done {
                return None;
            }
            let taken = next(&held.client, &mut queue).await;
            if taken.abort {
                return None;
            }
            let mut chunk = BytesMut::new();
            for payload in queue.drain(..) {
                write_event(&mut chunk, &payload, &mut cursor);
            }
            if taken.ping {
                chunk.put_slice(b": ping\n\n");
                held.client.touch(held.state.clock.now_s());
            }
            // A close request (shutdown, overflow) ends the stream after what was queued.
            let done = taken.close.is_some();
            Some((
                Ok::<Bytes, std::convert::Infallible>(chunk.freeze()),
                (held, cursor, queue, done),
            ))
        },
    ));
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    cors(state, headers, h);
    Ok(response)
}

/// Appends one SSE event for an outbox payload, advancing the cursor.
fn write_event(out: &mut BytesMut, payload: &Bytes, cursor: &mut Cursor) {
    let Some(head) = Head::of(payload) else {
        return;
    };
    if head.kind == "subscribed" {
        out.put_slice(b"event: subscribed\ndata: ");
    } else {
        if let (Some(channel), Some(epoch), Some(seq)) = (&head.channel, &head.epoch, head.seq) {
            cursor.set(channel, epoch, seq);
        }
        out.put_slice(b"id: ");
        out.put_slice(cursor.encode().as_bytes());
        out.put_slice(b"\ndata: ");
    }
    // Envelopes are single-line JSON, so one `data:` line carries each.
    out.put_slice(payload);
    out.put_slice(b"\n\n");
}
