//! People-facing figures: `/ws/stats`, `/health`, `/ws/health` and `/api/v1/feeds`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use signalhub_feeds::Status;
use signalhub_hub::AuthKind;

use crate::state::AppState;

/// `GET /ws/stats` (spec section 9, item 31).
pub async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    let ladder = state.hub.ladder();
    let mut by_auth = [0usize; 3];
    let mut identities: HashSet<String> = HashSet::new();
    let mut by_tier: Vec<HashSet<String>> = vec![HashSet::new(); ladder.len()];
    let mut total = 0usize;
    state.registry.for_each(|client| {
        total += 1;
        let identity = client.identity();
        by_auth[match identity.auth {
            AuthKind::Anonymous => 0,
            AuthKind::Session => 1,
            AuthKind::Wallet => 2,
        }] += 1;
        let key = match (&identity.user, &identity.anonymous_id) {
            (Some(user), _) => format!("u:{user}"),
            (None, Some(anon)) => format!("a:{anon}"),
            (None, None) => format!("c:{}", client.id()),
        };
        if let Some(set) = by_tier.get_mut(identity.tier.index()) {
            set.insert(key.clone());
        }
        identities.insert(key);
    });
    let users_by_tier: BTreeMap<&str, usize> = ladder
        .names()
        .zip(by_tier.iter().map(HashSet::len))
        .collect();
    let hub = state.hub.stats();
    Json(json!({
        "total_connections": total,
        "active_users": identities.len(),
        "connections_by_auth": {"anonymous": by_auth[0], "session": by_auth[1], "wallet": by_auth[2]},
        "users_by_tier": users_by_tier,
        "channels": hub.channels,
        "subscriptions": hub.subscriptions,
        "publications": hub.publications,
        "messages_in": state.messages_in.load(Ordering::Relaxed),
        "messages_out": hub.deliveries,
        "uptime_s": state.clock.uptime_s(),
    }))
}

/// `GET /health`: liveness, 200 while the process runs.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ws/health`: readiness of the server and its dependencies. `status` is `ok` (200),
/// `degraded` (200: a configured feed is not `up`; `feeds` maps each name to its status) or `unavailable` (503: the store or broker cannot be reached, or the server is
/// stopping), so a load balancer's readiness probe reads one field.
pub async fn ready(State(state): State<AppState>) -> Response {
    let stopping = state.is_stopping();
    let storage_ok = tokio::time::timeout(std::time::Duration::from_secs(3), state.store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let ok = !stopping && storage_ok;
    let statuses = state.feeds.statuses();
    let degraded = statuses.iter().any(|(_, s)| *s != Status::Up);
    let feeds: BTreeMap<String, &str> = statuses
        .into_iter()
        .map(|(name, s)| (name, s.as_str()))
        .collect();
    let body = json!({
        "status": match (ok, degraded) {
            (false, _) => "unavailable",
            (true, true) => "degraded",
            (true, false) => "ok",
        },
        "stopping": stopping,
        "storage": {"backend": state.store.backend(), "status": if storage_ok { "ok" } else { "unavailable" }},
        "broker": {"backend": "memory", "status": "ok"},
        "feeds": feeds,
        "connections": state.registry.len(),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /api/v1/feeds`: each configured feed's status and counters (spec section 10). Public,
/// like `/ws/stats`: the figures describe public market data.
pub async fn feeds(State(state): State<AppState>) -> Json<serde_json::Value> {
    let feeds: Vec<serde_json::Value> = state
        .feeds
        .stats()
        .into_iter()
        .map(|f| {
            json!({
                "name": f.name,
                "exchange": f.exchange.as_str(),
                "products": f.products,
                "status": f.status.as_str(),
                "messages": f.messages,
                "reconnects": f.reconnects,
                "gaps": f.gaps,
                "last_message_at": f.last_message_at,
            })
        })
        .collect();
    Json(json!({ "feeds": feeds }))
}
