//! Channel reads over HTTP: which channels a request names and may read, history, presence.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use signalhub_hub::rules::Denied;
use signalhub_hub::{channel, Identity};

use super::error::ApiError;
use super::identity::identify;
use crate::state::AppState;

/// Checks that `identity` may read `name` (the subscribe rules).
pub fn check_access(state: &AppState, identity: &Identity, name: &str) -> Result<(), ApiError> {
    match state.config.rules.check(
        state.hub.ladder(),
        name,
        identity.tier,
        identity.user.as_deref(),
    ) {
        Ok(()) => Ok(()),
        Err(Denied::Unauthorized) => Err(ApiError::unauthorized(format!(
            "channel {name} needs an authenticated user"
        ))),
        Err(Denied::Forbidden(message)) => Err(ApiError::forbidden(format!("{name}: {message}"))),
    }
}

/// Parses and checks `channels=a,b` for a streaming request: at most
/// `limits.max_channels_per_frame` names (100 by default, as for one WebSocket `subscribe`
/// frame; more is 400 before any name is looked at), every name valid (422) and readable
/// (401/403), at most `max_subscriptions`, duplicates dropped.
pub fn requested_channels(
    state: &AppState,
    identity: &Identity,
    query: &HashMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    let Some(list) = query.get("channels") else {
        return Err(ApiError::bad_request("channels is required: ?channels=a,b"));
    };
    let names = || list.split(',').map(str::trim).filter(|s| !s.is_empty());
    let max = state.config.limits.max_channels_per_frame;
    if names().nth(max).is_some() {
        return Err(ApiError::bad_request(format!(
            "at most {max} channels per request (limits.max_channels_per_frame)"
        )));
    }
    let mut channels: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for raw in names() {
        let name = channel::normalize(raw).ok_or_else(|| {
            ApiError::invalid("channels", format!("{raw:?} is not a valid channel name"))
        })?;
        check_access(state, identity, name)?;
        if seen.insert(name) {
            channels.push(name.to_string());
        }
    }
    if channels.is_empty() {
        return Err(ApiError::bad_request("channels is required: ?channels=a,b"));
    }
    let max = state.config.limits.max_subscriptions;
    if channels.len() > max {
        return Err(ApiError::invalid(
            "channels",
            format!("at most {max} channels per request"),
        ));
    }
    Ok(channels)
}

fn path_channel(raw: &str) -> Result<&str, ApiError> {
    channel::normalize(raw)
        .ok_or_else(|| ApiError::invalid("channel", format!("{raw:?} is not a valid channel name")))
}

/// `GET /api/v1/channels/{channel}/history?since=&limit=`.
pub async fn history(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match read_history(&state, &raw, &query, &headers) {
        Ok(body) => body,
        Err(e) => e.into_response(),
    }
}

fn read_history(
    state: &AppState,
    raw: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let identity = identify(state, query, headers)?;
    let name = path_channel(raw)?;
    check_access(state, &identity, name)?;
    let since =
        match query.get("since") {
            None => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                ApiError::invalid("since", "since must be a non-negative integer seq")
            })?),
        };
    let limit = match query.get("limit") {
        None => 100,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(ApiError::invalid("limit", "limit must be within 1..1000")),
        },
    };
    let page = state.hub.history(name, since, limit, identity.tier);
    let (epoch, seq, publications) = match &page {
        Some(p) => (Some(&*p.epoch), p.seq, p.publications.as_slice()),
        None => (None, 0, &[][..]),
    };
    // The envelopes are already JSON: splice them in rather than reparse them.
    let mut body = serde_json::to_string(&json!({"channel": name, "epoch": epoch, "seq": seq}))
        .expect("serializes");
    body.pop();
    body.push_str(",\"publications\":[");
    for (i, p) in publications.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(std::str::from_utf8(p).expect("envelopes are UTF-8"));
    }
    body.push_str("]}");
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `GET /api/v1/channels/{channel}`: `{channel, subscribers, presence}`.
pub async fn info(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let identity = identify(&state, &query, &headers)?;
    let name = path_channel(&raw)?;
    check_access(&state, &identity, name)?;
    let subscribers = state.hub.subscribers(name);
    // Presence: distinct users, else anonymousIds, else connections (spec 9, item 28).
    let presence: HashSet<String> = subscribers
        .iter()
        .map(|c| {
            let id = c.identity();
            match (id.user, id.anonymous_id) {
                (Some(user), _) => format!("u:{user}"),
                (None, Some(anon)) => format!("a:{anon}"),
                (None, None) => format!("c:{}", c.id()),
            }
        })
        .collect();
    Ok(axum::Json(json!({
        "channel": name,
        "subscribers": subscribers.len(),
        "presence": presence.len(),
    })))
}
