//! The HTTP side of a WebSocket: checks before the upgrade, the 101 answer, and handing the
//! raw socket to a [`Connection`].
//!
//! hyper performs the upgrade; the socket is then taken back out of hyper (a downcast to
//! the `TokioIo<HttpStream>` our accept loop gave it, unwrapped to its `TcpStream`), so a
//! connection costs only our own small future, not an HTTP stack's buffers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use signalhub_hub::{ids, Client, Identity, Since};
use tokio::net::TcpStream;

use super::connection::Connection;
use super::{protocol, session};
use crate::http::error::ApiError;
use crate::http::identity::identify;
use crate::server::HttpStream;
use crate::state::AppState;

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 section 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Validates the upgrade headers and returns the client's key.
fn check_upgrade(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(ApiError::bad_request(
            "this endpoint speaks WebSocket: send Upgrade: websocket and Connection: Upgrade",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(
            ApiError::bad_request("Sec-WebSocket-Version must be 13").with_header(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            ),
        );
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::bad_request("Sec-WebSocket-Key is required"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .map_err(|_| ApiError::bad_request("Sec-WebSocket-Key must be base64"))?;
    if decoded.len() != 16 {
        return Err(ApiError::bad_request(
            "Sec-WebSocket-Key must encode 16 bytes",
        ));
    }
    Ok(key.clone())
}

fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let allowed = &state.config.allowed_origins;
    if allowed.is_empty() {
        return Ok(());
    }
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(origin) if allowed.iter().any(|a| a.as_bytes() == origin.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::forbidden("origin not allowed")),
    }
}

/// Which channels a WebSocket path subscribes to on connect.
#[derive(Debug, Clone)]
pub enum Route {
    Plain,
    Fixed(&'static [&'static str]),
    Market,
    Agent,
    Bot,
    TradeExecution,
}

impl Route {
    fn channels(&self, param: Option<&str>, identity: &Identity) -> Result<Vec<String>, ApiError> {
        let p = param.unwrap_or_default();
        Ok(match self {
            Route::Plain => Vec::new(),
            Route::Fixed(list) => list.iter().map(|c| c.to_string()).collect(),
            Route::Market => vec![format!("market:{p}"), format!("price:{p}")],
            Route::Agent => vec![format!("agents:{p}")],
            Route::Bot => vec![format!("bot:{p}")],
            Route::TradeExecution => match &identity.user {
                Some(user) => vec![format!("trades:{user}")],
                None => {
                    return Err(ApiError::unauthorized(
                        "/ws/trade-execution needs a session or wallet token",
                    ))
                }
            },
        })
    }
}

/// The upgrade handler for every WebSocket path.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Option<Path<String>>,
    Query(query): Query<HashMap<String, String>>,
    route: Route,
    mut request: Request,
) -> Response {
    match prepare(
        &state,
        peer,
        path.as_ref().map(|p| p.0.as_str()),
        &query,
        &route,
        &mut request,
    ) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn prepare(
    state: &AppState,
    peer: SocketAddr,
    param: Option<&str>,
    query: &HashMap<String, String>,
    route: &Route,
    request: &mut Request,
) -> Result<Response, ApiError> {
    if state.is_stopping() {
        return Err(ApiError::unavailable("server is shutting down"));
    }
    let headers = request.headers();
    let key = check_upgrade(headers)?;
    check_origin(state, headers)?;
    // Before any token is verified: a reconnect storm is turned away at its cheapest.
    state
        .check_ws_connect_rate(peer.ip())
        .map_err(|retry_after_s| {
            ApiError::rate_limited(
                format!(
                    "too many new WebSocket connections from this address ({} a second, {} at once); retry after {retry_after_s} s",
                    state.config.limits.ws_connects_per_ip_per_second,
                    state.config.limits.ws_connects_per_ip_burst,
                ),
                retry_after_s,
            )
        })?;
    let identity = identify(state, query, headers)?;
    let channels = route.channels(param, &identity)?;
    let on_upgrade = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("this connection cannot be upgraded"))?;
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
    let accept = accept_key(key.as_bytes());
    let state = state.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                state.registry.remove_ip(ip);
                return;
            }
        };
        let parts = match upgraded.downcast::<TokioIo<HttpStream>>() {
            Ok(parts) => parts,
            Err(_) => {
                tracing::error!("upgraded connection is not a TCP stream");
                state.registry.remove_ip(ip);
                return;
            }
        };
        start(
            state,
            parts.io.into_inner().into_tcp(),
            parts.read_buf,
            identity,
            ip,
            &channels,
        );
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    Ok(response)
}

/// Registers the connection, greets it, subscribes it to its path's channels and spawns it.
fn start(
    state: AppState,
    stream: TcpStream,
    initial: Bytes,
    identity: Identity,
    ip: std::net::IpAddr,
    channels: &[String],
) {
    let _ = stream.set_nodelay(true);
    let id = state.next_connection_id();
    let limits = &state.config.limits;
    let ladder = state.hub.ladder();
    let welcome = protocol::welcome_frame(
        &format!("c_{id:x}{}", ids::random_token(8)),
        identity.auth.as_str(),
        ladder.name(identity.tier),
        identity.user.as_deref(),
        u64::from(limits.ping_interval_s) * 1000,
        limits.max_message_bytes,
    );
    let client = Arc::new(
        Client::new(id, identity, state.clock.now_s(), limits.ping_interval_s).with_peer(ip),
    );
    client.push(welcome, limits.max_queue_bytes);
    state.registry.insert(client.clone());
    let mut conn = Connection::new(stream, client, state.clone());
    if !channels.is_empty() {
        session::subscribe(&mut conn, None, channels, &HashMap::<String, Since>::new());
    }
    if !initial.is_empty() {
        // Frames the client sent right behind its handshake, already read by hyper.
        conn.receive(&initial);
    }
    if state.is_stopping() {
        // Shutdown began while this connection was being set up: close it like the rest.
        conn.begin_close(super::connection::close::GOING_AWAY, false);
    }
    tokio::spawn(conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
