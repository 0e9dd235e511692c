//! `GET /api/v1/poll?channels=a,b&cursor=...`: long-poll, for clients that can only do HTTP.
//!
//! Answers at once when publications after the cursor are waiting (recovered from history),
//! otherwise waits up to `poll_timeout_s` (25 s) for new ones. Without a cursor it waits for
//! publications after "now". At most 1000 publications per answer; the returned cursor
//! continues exactly after the last one returned on each channel. A waiting poll counts
//! against `connections_per_ip` like a WebSocket; an admin tier change or disconnect of the
//! caller ends it at once (the next poll is served at the new tier).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use signalhub_hub::SubscribeItem;

use super::channels::requested_channels;
use super::cursor::Cursor;
use super::error::ApiError;
use super::identity::identify;
use super::stream::{cors, next, Head, Held, Kind};
use crate::state::AppState;

/// Most publications in one answer.
pub const MAX_PER_ANSWER: usize = 1000;

/// `GET /api/v1/poll`.
pub async fn poll(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match answer(&state, peer, &query, &headers).await {
        Ok(mut response) => {
            cors(&state, &headers, response.headers_mut());
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn answer(
    state: &AppState,
    peer: SocketAddr,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let identity = identify(state, query, headers)?;
    let channels = requested_channels(state, &identity, query)?;
    let given = match query.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(text) => Some(
            Cursor::decode(text)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor this server issued"))?,
        ),
    };
    let tier = identity.tier;
    let mut held = Held::open(state, identity, peer.ip(), Kind::Poll, u32::MAX)?;
    let items: Vec<SubscribeItem<'_>> = channels
        .iter()
        .map(|c| SubscribeItem {
            channel: c,
            since: given.as_ref().and_then(|g| g.get(c)),
            held: false,
        })
        .collect();
    let positions = state
        .hub
        .subscribe(&held.client, tier, &items, |_| Bytes::new());
    held.subs = positions
        .iter()
        .map(|p| (p.channel.clone(), tier))
        .collect();
    let recovered = given.is_some() && positions.iter().all(|p| p.recovered);
    let mut cursor = Cursor::default();
    // Only publications after these positions count (not latest-value snapshots).
    let mut start: HashMap<Arc<str>, u64> = HashMap::new();
    for p in &positions {
        cursor.set(&p.channel, &p.epoch, p.seq);
        let from = given
            .as_ref()
            .and_then(|g| g.get(&p.channel))
            .filter(|s| p.recovered && *s.epoch == *p.epoch)
            .map_or(p.seq, |s| s.seq);
        start.insert(p.channel.clone(), from);
    }
    let mut publications: Vec<Bytes> = Vec::new();
    let mut queue = VecDeque::new();
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(u64::from(state.config.limits.poll_timeout_s));
    loop {
        let taken = tokio::select! {
            taken = next(&held.client, &mut queue) => Some(taken),
            () = tokio::time::sleep_until(deadline) => None,
            () = state.stopped() => None,
        };
        if taken.as_ref().is_some_and(|t| t.refresh) {
            // An admin changed the caller's tier: what was queued with the change may have
            // been fanned out at the old tier. Answer with what came before; the cursor
            // stays before the rest, so the next poll gets it at the new tier.
            queue.clear();
            break;
        }
        for payload in queue.drain(..) {
            if publications.len() >= MAX_PER_ANSWER {
                break;
            }
            let Some(head) = Head::of(&payload) else {
                continue;
            };
            let (Some(channel), Some(epoch), Some(seq)) = (&head.channel, &head.epoch, head.seq)
            else {
                continue;
            };
            if start.get(&**channel).is_some_and(|from| seq <= *from) {
                continue;
            }
            cursor.set(channel, epoch, seq);
            publications.push(payload);
        }
        match taken {
            Some(t) if publications.is_empty() && t.close.is_none() && !t.abort => continue,
            _ => break,
        }
    }
    drop(held);
    let mut body = String::from("{\"publications\":[");
    for (i, p) in publications.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(std::str::from_utf8(p).expect("envelopes are UTF-8"));
    }
    body.push_str("],\"cursor\":");
    body.push_str(&serde_json::to_string(&cursor.encode()).expect("string"));
    body.push_str(",\"recovered\":");
    body.push_str(if recovered { "true" } else { "false" });
    body.push('}');
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
