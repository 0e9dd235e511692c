//! Durable signals over HTTP: `POST /api/v1/signals` stores, then routes (through the one
//! publish path, `crate::publish::signals`); `GET /api/v1/signals` reads the store.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use signalhub_schema::signal::{normalize_pair, Signal};

use super::body::RawBody;
use super::error::ApiError;
use super::identity::identify;
use super::keys::Publisher as Caller;
use super::publish::{check_idempotency_key, reply_response};
use crate::idempotency::body_hash;
use crate::publish::signals::{SignalFailure, SignalReply};
use crate::publish::{Idempotency, Publisher, Reply, Source};
use crate::state::AppState;
use crate::store::{SignalQuery, StoreError, StoredSignal, MAX_QUERY_LIMIT};

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(why) => unavailable(&why),
        other => {
            tracing::error!(error = %other, "signal store failed");
            ApiError::internal("the signal store failed")
        }
    }
}

fn unavailable(why: &str) -> ApiError {
    tracing::warn!(error = %why, "signal store unavailable");
    ApiError::unavailable(
        "the signal store is unavailable; nothing was stored or published, retry later",
    )
}

impl From<SignalFailure> for ApiError {
    fn from(e: SignalFailure) -> Self {
        match e {
            SignalFailure::InFlight | SignalFailure::TakenByAnotherPublisher => {
                ApiError::conflict(e.to_string())
            }
            SignalFailure::StoreUnavailable(why) => unavailable(&why),
            SignalFailure::Store(e) => store_error(e),
            SignalFailure::Invalid(e) => e.into(),
            SignalFailure::Publish(e) => e.into(),
        }
    }
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `POST /api/v1/signals` and `/api/v1/external-signals/sync/signal`. A `signal_id`
/// deduplicates forever; an `idempotency_key` as on every publishing endpoint (so a retried
/// signal without a `signal_id` is answered, not stored a second time).
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    RawBody(raw): RawBody,
) -> Result<Response, ApiError> {
    let signal = Signal::parse(&raw, state.hub.ladder(), &state.config.signals)?;
    let key = idempotency_key(&raw)?;
    let idempotency = key.as_deref().map(|key| Idempotency {
        key,
        endpoint: "signals",
        body_hash: body_hash(&raw),
    });
    let publisher = Publisher::new(state.clone());
    let fingerprint = state.keys.fingerprint(caller.key_index);
    let reply = publisher
        .once(&Source::ApiKey(caller.key_index), idempotency, async {
            Ok::<_, SignalFailure>(
                match publisher.publish_signal(&signal, &fingerprint).await? {
                    SignalReply::Published(answer) => Reply::Published(answer),
                    SignalReply::Answered(body) => Reply::Replay { status: 200, body },
                },
            )
        })
        .await?;
    Ok(reply_response(reply))
}

/// The body's `idempotency_key`, checked like the publish endpoints' (1-128 bytes).
fn idempotency_key(raw: &[u8]) -> Result<Option<String>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Key {
        idempotency_key: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Key>(raw) {
        Ok(Key {
            idempotency_key: Some(serde_json::Value::String(key)),
        }) => {
            check_idempotency_key(Some(&key))?;
            Ok(Some(key))
        }
        Ok(Key {
            idempotency_key: Some(_),
        }) => Err(ApiError::invalid(
            "idempotency_key",
            "idempotency_key must be a string of 1-128 bytes",
        )),
        // No key, or a body the signal parser already accepted in another shape.
        _ => Ok(None),
    }
}

/// The row a caller below a signal's tier sees with `locked=true`: what a live `locked`
/// frame reveals (the id, tier and time, and that it is a signal), nothing of its content.
/// `id` is the publication id of the live `locked` frame (once published), so a client can
/// tell a stored stub from the same signal's stub in the channel history.
fn locked_stub(state: &AppState, row: &StoredSignal) -> String {
    let ladder = state.hub.ladder();
    let tier = signalhub_hub::TierId(row.tier_rank.min(ladder.highest().0));
    let mut stub = json!({
        "signal_id": row.signal_id,
        "tier": ladder.name(tier),
        "timestamp": row.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "kind": "signal",
        "locked": true,
    });
    if let Some(id) = publication_id(row) {
        stub["id"] = Value::String(id);
    }
    stub.to_string()
}

/// The publication id in a stored signal's recorded answer, when it was published.
fn publication_id(row: &StoredSignal) -> Option<String> {
    let answer: Value = serde_json::from_str(row.answer_json.as_deref()?).ok()?;
    Some(answer.get("id")?.as_str()?.to_string())
}

/// `GET /api/v1/signals?pair=&signal_type=&min_confidence=&since=&limit=&locked=`: newest
/// first; API keys see every tier. Above-tier signals are left out, or with `locked=true`
/// listed in their place as locked stubs (as a live subscriber gets them), so a reloaded
/// dashboard shows the locked rows it showed live.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let max_tier_rank = identify(&state, &query, &headers)?.tier.0;
    let locked = match query.get("locked").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("locked", "locked must be true or false")),
    };
    let mut q = SignalQuery::new(if locked { u8::MAX } else { max_tier_rank });
    if let Some(pair) = query.get("pair") {
        q.pair = Some(normalize_pair(pair).ok_or_else(|| {
            ApiError::invalid(
                "pair",
                "pair must match ^[A-Z0-9._-]{1,32}$ after normalization",
            )
        })?);
    }
    if let Some(kind) = query.get("signal_type") {
        let kind = kind.trim().to_ascii_uppercase();
        if kind.is_empty() || kind.len() > 32 {
            return Err(ApiError::invalid(
                "signal_type",
                "signal_type must be 1-32 characters",
            ));
        }
        q.signal_type = Some(kind);
    }
    if let Some(min) = query.get("min_confidence") {
        match min.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => q.min_confidence = Some(v),
            _ => {
                return Err(ApiError::invalid(
                    "min_confidence",
                    "min_confidence must be within 0..1",
                ))
            }
        }
    }
    if let Some(since) = query.get("since") {
        let t = chrono::DateTime::parse_from_rfc3339(since)
            .map_err(|_| ApiError::invalid("since", "since must be an RFC 3339 time"))?;
        q.since = Some(t.with_timezone(&chrono::Utc));
    }
    if let Some(limit) = query.get("limit") {
        match limit.parse::<u32>() {
            Ok(n) if (1..=MAX_QUERY_LIMIT).contains(&n) => q.limit = n,
            _ => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("limit must be within 1..{MAX_QUERY_LIMIT}"),
                ))
            }
        }
    }
    let rows = state.store.query(&q).await.map_err(store_error)?;
    let mut body = String::from("{\"signals\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        if row.tier_rank > max_tier_rank {
            body.push_str(&locked_stub(&state, row));
        } else {
            body.push_str(&row.record_json);
        }
    }
    body.push_str("]}");
    Ok(json_response(body))
}
