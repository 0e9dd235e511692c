//! What SSE and long-poll share: a hub subscription owned by an HTTP request (counted per
//! address, reached by admin tier changes), CORS, and reading an outbox from async code.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use bytes::Bytes;
use serde::Deserialize;
use signalhub_hub::client::Taken;
use signalhub_hub::{Client, Identity, TierId};

use super::error::ApiError;
use crate::state::AppState;

/// Where a [`Held`] client is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An SSE stream: a connection (stats, heartbeat, admin actions).
    Stream,
    /// A waiting long-poll: reached by admin actions only.
    Poll,
}

/// A subscription set held by an HTTP request, counted against its address's
/// `connections_per_ip` like a WebSocket; dropping it unsubscribes, leaves the registry and
/// frees the per-IP slot.
pub struct Held {
    pub state: AppState,
    pub client: Arc<Client>,
    pub subs: Vec<(Arc<str>, TierId)>,
    ip: IpAddr,
    kind: Kind,
}

impl Held {
    /// Takes a per-IP slot for `ip` (429 when it has none left) and registers a client with
    /// no subscriptions yet.
    pub fn open(
        state: &AppState,
        identity: Identity,
        ip: IpAddr,
        kind: Kind,
        ping_interval_s: u32,
    ) -> Result<Held, ApiError> {
        if !state
            .registry
            .try_add_ip(ip, state.config.limits.connections_per_ip)
        {
            return Err(ApiError::rate_limited(
                "too many connections from this address",
                5,
            ));
        }
        let client = Arc::new(
            Client::new(
                state.next_connection_id(),
                identity,
                state.clock.now_s(),
                ping_interval_s,
            )
            .with_peer(ip),
        );
        match kind {
            Kind::Stream => state.registry.insert(client.clone()),
            Kind::Poll => state.registry.insert_poll(client.clone()),
        }
        Ok(Held {
            state: state.clone(),
            client,
            subs: Vec::new(),
            ip,
            kind,
        })
    }

    /// After an admin tier change: ends the subscriptions the new identity may not hold
    /// and moves the rest into the bucket of its tier (so above-tier publications arrive as
    /// `locked` stubs), as a WebSocket does. Returns the channels ended.
    pub fn restrict(&mut self) -> Vec<Arc<str>> {
        let identity = self.client.identity();
        let held = std::mem::take(&mut self.subs);
        let (kept, removed) =
            crate::subscriptions::restrict(&self.state, &self.client, &identity, held);
        self.subs = kept;
        removed
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for (channel, tier) in self.subs.drain(..) {
            self.state.hub.unsubscribe(self.client.id(), &channel, tier);
        }
        match self.kind {
            Kind::Stream => self.state.registry.remove(self.client.id()),
            Kind::Poll => self.state.registry.remove_poll(self.client.id()),
        }
        self.state.registry.remove_ip(self.ip);
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
