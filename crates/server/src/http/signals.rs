//! Durable signals: `POST /api/v1/signals` stores, then routes; `GET /api/v1/signals` reads.
//!
//! A 2xx means the signal is in the store; when the store cannot take it the answer is 503
//! and nothing is published, so a retrying publisher loses nothing. A `signal_id` is unique
//! forever (the store enforces it): a retry gets the first answer and publishes nothing.
//! A signal stored but not published (the process died in between) is published at the
//! next start, or by the first retry that finds it.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use signalhub_hub::{ids, Publication};
use signalhub_schema::signal::{normalize_pair, Signal};

use super::body::RawBody;
use super::error::ApiError;
use super::identity::identify;
use super::keys::Publisher;
use crate::state::AppState;
use crate::store::{Inserted, NewSignal, SignalQuery, StoreError, MAX_QUERY_LIMIT};
use crate::ws::protocol::now_rfc3339;

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(why) => {
            tracing::warn!(error = %why, "signal store unavailable");
            ApiError::unavailable(
                "the signal store is unavailable; nothing was stored or published, retry later",
            )
        }
        other => {
            tracing::error!(error = %other, "signal store failed");
            ApiError::internal("the signal store failed")
        }
    }
}

/// Routes a stored signal to its channels and returns the publisher's answer.
fn route(state: &AppState, signal: &Signal, record: &str) -> Result<Value, ApiError> {
    let ladder = state.hub.ladder();
    let channels = signal.channels(ladder, &state.config.signals);
    let data = RawValue::from_string(record.to_string())
        .map_err(|e| ApiError::internal(format!("signal record is not JSON: {e}")))?;
    let id = ids::ulid("sig_");
    let timestamp = now_rfc3339();
    let publication = Publication {
        kind: "signal",
        id: &id,
        timestamp: &timestamp,
        tier: Some(signal.tier),
        data: &data,
    };
    let published: Vec<_> = channels
        .iter()
        .map(|c| state.hub.publish(c, &publication))
        .collect();
    let on_signals = &published[0];
    Ok(json!({
        "signal_id": signal.signal_id,
        "id": id,
        "tier": ladder.name(signal.tier),
        "channels": channels,
        "epoch": &*on_signals.epoch,
        "seq": on_signals.seq,
    }))
}

/// Publishes a stored signal and records the answer; a failure to record is logged (the
/// signal was delivered; at worst it is published again at the next start).
async fn publish_and_mark(
    state: &AppState,
    signal: &Signal,
    record: &str,
) -> Result<Value, ApiError> {
    let answer = route(state, signal, record)?;
    if let Err(e) = state
        .store
        .mark_published(&signal.signal_id, &answer.to_string())
        .await
    {
        tracing::warn!(signal_id = %signal.signal_id, error = %e, "could not record a published signal");
    }
    Ok(answer)
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Removes a `signal_id` from the in-flight set when the request ends, however it ends.
struct InFlight<'a> {
    state: &'a AppState,
    signal_id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state
            .signals_in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.signal_id);
    }
}

/// `POST /api/v1/signals` and `/api/v1/external-signals/sync/signal`.
pub async fn post(
    State(state): State<AppState>,
    _caller: Publisher,
    RawBody(raw): RawBody,
) -> Response {
    match store_then_route(&state, &raw).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn store_then_route(state: &AppState, raw: &[u8]) -> Result<Response, ApiError> {
    let ladder = state.hub.ladder();
    let signal = Signal::parse(raw, ladder, &state.config.signals)?;
    let record = signal.to_json(ladder);
    let claimed = state
        .signals_in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(signal.signal_id.clone());
    if !claimed {
        return Err(ApiError::conflict(
            "a signal with this signal_id is still being processed",
        ));
    }
    let _in_flight = InFlight {
        state,
        signal_id: signal.signal_id.clone(),
    };
    let new = NewSignal {
        signal_id: signal.signal_id.clone(),
        record_json: record.clone(),
        pair: signal.pair.clone(),
        signal_type: signal.signal_type.clone(),
        confidence: signal.confidence_score.as_f64(),
        tier_rank: signal.tier.0,
        timestamp: signal.timestamp,
    };
    match state.store.insert_signal(&new).await.map_err(store_error)? {
        Inserted::New { .. } => {
            Ok(axum::Json(publish_and_mark(state, &signal, &record).await?).into_response())
        }
        Inserted::Duplicate(row) => match row.answer_json {
            // Accepted before: the first answer again, nothing published.
            Some(answer) => Ok(json_response(answer)),
            // Stored but never published (a crash or a timed-out insert): publish it now.
            None => {
                let stored =
                    Signal::parse(row.record_json.as_bytes(), ladder, &state.config.signals)?;
                Ok(
                    axum::Json(publish_and_mark(state, &stored, &row.record_json).await?)
                        .into_response(),
                )
            }
        },
    }
}

/// Publishes every signal the store holds but never published (spec section 9, item 25).
pub async fn publish_pending(state: &AppState) -> Result<usize, StoreError> {
    let pending = state.store.unpublished().await?;
    let ladder = state.hub.ladder();
    let mut published = 0;
    for row in pending {
        match Signal::parse(row.record_json.as_bytes(), ladder, &state.config.signals) {
            Ok(signal) => {
                if publish_and_mark(state, &signal, &row.record_json)
                    .await
                    .is_ok()
                {
                    published += 1;
                }
            }
            Err(e) => {
                tracing::error!(signal_id = %row.signal_id, error = %e, "stored signal no longer validates; not published")
            }
        }
    }
    Ok(published)
}

/// `GET /api/v1/signals?pair=&signal_type=&min_confidence=&since=&limit=`: newest first,
/// above-tier signals left out; API keys see every tier.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let max_tier_rank = identify(&state, &query, &headers)?.tier.0;
    let mut q = SignalQuery::new(max_tier_rank);
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
        body.push_str(&row.record_json);
    }
    body.push_str("]}");
    Ok(json_response(body))
}
