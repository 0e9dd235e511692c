//! `GET /sse?channels=a,b`: Server-Sent Events, for clients that cannot keep a WebSocket.
//!
//! The stream opens with a named `subscribed` event, then one unnamed event per publication
//! (the same envelope as WebSocket) whose `id` is a cursor of every channel's position, so a
//! reconnecting EventSource resumes with `Last-Event-ID` (or `?last_event_id=`, for the
//! first request, which browsers cannot give headers). A `: ping` comment is sent at the
//! heartbeat interval. An admin tier change re-checks the stream's channels like a
//! WebSocket's (named events `unsubscribed` and `authenticated`; above-tier publications
//! then arrive as `locked` stubs). The stream ends on shutdown or when its outbox overflows.

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use signalhub_hub::SubscribeItem;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::channels::requested_channels;
use super::cursor::Cursor;
use super::error::ApiError;
use super::identity::identify;
use super::stream::{cors, next, Head, Held, Kind};
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
    let limits = &state.config.limits;
    let tier = identity.tier;
    let mut held = Held::open(
        state,
        identity,
        peer.ip(),
        Kind::Stream,
        limits.ping_interval_s,
    )?;
    let items: Vec<SubscribeItem<'_>> = channels
        .iter()
        .map(|c| SubscribeItem {
            channel: c,
            since: cursor.get(c),
            held: false,
        })
        .collect();
    let positions = state
        .hub
        .subscribe(&held.client, tier, &items, |positions| {
            protocol::subscribed_frame(None, positions)
        });
    let mut cursor = Cursor::default();
    for p in &positions {
        cursor.set(&p.channel, &p.epoch, p.seq);
    }
    held.subs = positions
        .iter()
        .map(|p| (p.channel.clone(), tier))
        .collect();
    let body = Body::from_stream(futures_util::stream::unfold(
        (held, cursor, VecDeque::new(), false),
        |(mut held, mut cursor, mut queue, done)| async move {
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
            if taken.refresh {
                refresh(&mut held, &mut chunk);
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

/// After an admin tier change: re-checks the stream's channels like a WebSocket does, then
/// tells the client with a named `unsubscribed` event (`reason: tier_changed`) for the
/// channels taken away, if any, and a named `authenticated` event with the new tier.
fn refresh(held: &mut Held, out: &mut BytesMut) {
    let removed = held.restrict();
    if !removed.is_empty() {
        let names: Vec<&str> = removed.iter().map(|c| &**c).collect();
        let frame = protocol::unsubscribed_frame(None, &names, Some("tier_changed"));
        write_named(out, "unsubscribed", &frame);
    }
    let identity = held.client.identity();
    let frame = protocol::authenticated_frame(
        None,
        identity.auth.as_str(),
        held.state.hub.ladder().name(identity.tier),
        identity.user.as_deref(),
    );
    write_named(out, "authenticated", &frame);
}

/// Appends a named event (no `id`: it does not move the cursor).
fn write_named(out: &mut BytesMut, name: &str, payload: &[u8]) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(payload);
    out.put_slice(b"\n\n");
}

/// Appends one SSE event for an outbox payload, advancing the cursor.
fn write_event(out: &mut BytesMut, payload: &Bytes, cursor: &mut Cursor) {
    let Some(head) = Head::of(payload) else {
        return;
    };
    if head.kind == "subscribed" {
        write_named(out, "subscribed", payload);
        return;
    }
    if let (Some(channel), Some(epoch), Some(seq)) = (&head.channel, &head.epoch, head.seq) {
        cursor.set(channel, epoch, seq);
    }
    out.put_slice(b"id: ");
    out.put_slice(cursor.encode().as_bytes());
    out.put_slice(b"\ndata: ");
    // Envelopes are single-line JSON, so one `data:` line carries each.
    out.put_slice(payload);
    out.put_slice(b"\n\n");
}
