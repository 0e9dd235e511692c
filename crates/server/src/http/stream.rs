//! What SSE and long-poll share: a hub subscription owned by an HTTP request, CORS, and
//! reading an outbox from async code.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use bytes::Bytes;
use serde::Deserialize;
use signalhub_hub::client::Taken;
use signalhub_hub::{Client, TierId};

use crate::state::AppState;

/// A subscription set held by an HTTP request; dropping it unsubscribes, and (for streams)
/// leaves the registry and frees the per-IP slot.
pub struct Held {
    pub state: AppState,
    pub client: Arc<Client>,
    pub subs: Vec<(Arc<str>, TierId)>,
    /// Set for streams counted in the registry and per-IP limit.
    pub ip: Option<IpAddr>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for (channel, tier) in self.subs.drain(..) {
            self.state.hub.unsubscribe(self.client.id(), &channel, tier);
        }
        if let Some(ip) = self.ip {
            self.state.registry.remove(self.client.id());
            self.state.registry.remove_ip(ip);
        }
    }
}

/// Waits until the outbox has something (payloads moved into `into`, or a request).
/// `into` must be empty.
pub async fn next(client: &Client, into: &mut VecDeque<Bytes>) -> Taken {
    debug_assert!(into.is_empty());
    std::future::poll_fn(|cx| {
        let taken = client.take(into, cx.waker());
        if taken == Taken::default() {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(taken)
        }
    })
    .await
}

/// The routing fields of an envelope, read without parsing `data`.
#[derive(Debug, Deserialize)]
pub struct Head<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub channel: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub epoch: Option<std::borrow::Cow<'a, str>>,
    pub seq: Option<u64>,
}

impl<'a> Head<'a> {
    pub fn of(payload: &'a [u8]) -> Option<Head<'a>> {
        serde_json::from_slice(payload).ok()
    }
}

/// CORS for SSE and long-poll: the WebSocket `allowed_origins` list (empty: any).
pub fn cors(state: &AppState, request_headers: &HeaderMap, response_headers: &mut HeaderMap) {
    let Some(origin) = request_headers.get(header::ORIGIN) else {
        return;
    };
    let allowed = &state.config.allowed_origins;
    if allowed.is_empty() {
        response_headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else if allowed.iter().any(|a| a.as_bytes() == origin.as_bytes()) {
        response_headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response_headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}
