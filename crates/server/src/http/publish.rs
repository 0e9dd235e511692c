//! The publish API: `publish`, `broadcast`, `signals` and the typed publishes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use signalhub_hub::{channel, ids, Publication, Published, TierId};
use signalhub_schema::typed::TypedPublish;

use super::body::{self, RawBody};
use super::error::ApiError;
use super::keys::Publisher;
use crate::idempotency::{body_hash, Claim};
use crate::state::AppState;
use crate::ws::protocol::now_rfc3339;

/// Frame types a publication may not use (spec section 9, item 8).
const RESERVED_TYPES: [&str; 8] = [
    "welcome",
    "subscribed",
    "unsubscribed",
    "authenticated",
    "pong",
    "stats",
    "error",
    "locked",
];

/// Most channels one broadcast may name.
pub const MAX_BROADCAST_CHANNELS: usize = 1000;

#[derive(Deserialize)]
struct PublishBody {
    channel: String,
    #[serde(rename = "type")]
    kind: String,
    data: Box<RawValue>,
    tier: Option<String>,
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
struct BroadcastBody {
    channels: Vec<String>,
    #[serde(rename = "type")]
    kind: String,
    data: Box<RawValue>,
    tier: Option<String>,
    idempotency_key: Option<String>,
}

fn check_kind(kind: &str) -> Result<(), ApiError> {
    if kind.is_empty() || kind.chars().count() > 64 {
        return Err(ApiError::invalid("type", "type must be 1-64 characters"));
    }
    if RESERVED_TYPES.contains(&kind) {
        return Err(ApiError::invalid(
            "type",
            format!("type {kind:?} is reserved"),
        ));
    }
    Ok(())
}

fn check_channel(name: &str, field: &str) -> Result<String, ApiError> {
    channel::normalize(name).map(String::from).ok_or_else(|| {
        ApiError::invalid(
            field,
            "channel names match ^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$",
        )
    })
}

fn check_tier(state: &AppState, tier: Option<&str>) -> Result<Option<TierId>, ApiError> {
    match tier {
        None => Ok(None),
        Some(name) => state
            .hub
            .ladder()
            .parse(name)
            .map(Some)
            .ok_or_else(|| ApiError::invalid("tier", format!("unknown tier {name:?}"))),
    }
}

fn check_idempotency_key(key: Option<&str>) -> Result<(), ApiError> {
    match key {
        Some(k) if k.is_empty() || k.len() > 128 => Err(ApiError::invalid(
            "idempotency_key",
            "idempotency_key must be 1-128 bytes",
        )),
        _ => Ok(()),
    }
}

/// Publishes one publication to each channel in order.
fn publish_all(
    state: &AppState,
    channels: &[String],
    kind: &str,
    id: &str,
    tier: Option<TierId>,
    data: &RawValue,
) -> Vec<Published> {
    let timestamp = now_rfc3339();
    let publication = Publication {
        kind,
        id,
        timestamp: &timestamp,
        tier,
        data,
    };
    channels
        .iter()
        .map(|c| state.hub.publish(c, &publication))
        .collect()
}

fn positions(published: &[Published]) -> Value {
    published
        .iter()
        .map(|p| json!({"channel": &*p.channel, "epoch": &*p.epoch, "seq": p.seq}))
        .collect()
}

/// Runs `work` at most once per idempotency key (scoped by caller and endpoint) within the
/// dedup window; a retry gets the first answer.
fn idempotent(
    state: &AppState,
    scope: Option<String>,
    raw_body: &[u8],
    work: impl FnOnce() -> Result<Value, ApiError>,
) -> Response {
    let Some(scope) = scope else {
        return match work() {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        };
    };
    let hash = body_hash(raw_body);
    match state.idempotency.claim(&scope, hash) {
        Claim::Fresh => match work() {
            Ok(v) => {
                state.idempotency.complete(&scope, hash, 200, v.to_string());
                Json(v).into_response()
            }
            Err(e) => {
                state.idempotency.abandon(&scope);
                e.into_response()
            }
        },
        Claim::Replay { status, body } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Claim::Conflict(message) => ApiError::conflict(message).into_response(),
    }
}

fn scope(caller: &Publisher, endpoint: &str, key: Option<&str>) -> Option<String> {
    key.map(|k| format!("{}:{endpoint}:{k}", caller.key_index))
}

/// `POST /api/v1/publish`: `{channel, type, data, tier?, idempotency_key?}`.
pub async fn publish(
    State(state): State<AppState>,
    caller: Publisher,
    RawBody(raw): RawBody,
) -> Response {
    let parsed = (|| {
        let b: PublishBody = body::json(&raw)?;
        let channel = check_channel(&b.channel, "channel")?;
        check_kind(&b.kind)?;
        let tier = check_tier(&state, b.tier.as_deref())?;
        check_idempotency_key(b.idempotency_key.as_deref())?;
        Ok::<_, ApiError>((b, channel, tier))
    })();
    let (b, channel, tier) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let scope = scope(&caller, "publish", b.idempotency_key.as_deref());
    idempotent(&state, scope, &raw, || {
        let id = ids::ulid("pub_");
        let published = publish_all(
            &state,
            std::slice::from_ref(&channel),
            &b.kind,
            &id,
            tier,
            &b.data,
        );
        let p = &published[0];
        Ok(json!({"id": id, "channel": &*p.channel, "epoch": &*p.epoch, "seq": p.seq}))
    })
}

/// `POST /api/v1/broadcast`: like publish with `channels: [...]`, refused whole if any
/// name is invalid.
pub async fn broadcast(
    State(state): State<AppState>,
    caller: Publisher,
    RawBody(raw): RawBody,
) -> Response {
    let parsed = (|| {
        let b: BroadcastBody = body::json(&raw)?;
        if b.channels.is_empty() || b.channels.len() > MAX_BROADCAST_CHANNELS {
            return Err(ApiError::invalid(
                "channels",
                format!("channels must list 1-{MAX_BROADCAST_CHANNELS} channels"),
            ));
        }
        let mut channels: Vec<String> = Vec::with_capacity(b.channels.len());
        for (i, name) in b.channels.iter().enumerate() {
            let name = check_channel(name, &format!("channels[{i}]"))?;
            if !channels.contains(&name) {
                channels.push(name);
            }
        }
        check_kind(&b.kind)?;
        let tier = check_tier(&state, b.tier.as_deref())?;
        check_idempotency_key(b.idempotency_key.as_deref())?;
        Ok::<_, ApiError>((b, channels, tier))
    })();
    let (b, channels, tier) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let scope = scope(&caller, "broadcast", b.idempotency_key.as_deref());
    idempotent(&state, scope, &raw, || {
        let id = ids::ulid("pub_");
        let published = publish_all(&state, &channels, &b.kind, &id, tier, &b.data);
        Ok(json!({"id": id, "publications": positions(&published)}))
    })
}

fn typed_publish(
    state: AppState,
    caller: Publisher,
    raw: bytes::Bytes,
    endpoint: &str,
    parse: TypedParser,
) -> Response {
    let typed = match parse(&raw, state.hub.ladder()) {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let scope = scope(&caller, endpoint, typed.idempotency_key.as_deref());
    idempotent(&state, scope, &raw, || {
        let id = ids::ulid("pub_");
        let published = publish_all(
            &state,
            &typed.channels,
            typed.kind,
            &id,
            typed.tier,
            &typed.data,
        );
        Ok(json!({"id": id, "publications": positions(&published)}))
    })
}

/// A typed publish endpoint: its name (scopes idempotency keys) and body parser.
pub type TypedParser = fn(
    &[u8],
    &signalhub_hub::TierLadder,
) -> Result<TypedPublish, signalhub_schema::signal::SignalError>;

/// The handler of `POST /api/v1/{endpoint}` for a typed publish (alerts, market data, agent
/// insights, narratives).
pub fn typed(endpoint: &'static str, parse: TypedParser) -> axum::routing::MethodRouter<AppState> {
    axum::routing::post(
        move |State(state): State<AppState>, caller: Publisher, RawBody(raw): RawBody| async move {
            typed_publish(state, caller, raw, endpoint, parse)
        },
    )
}

#[derive(Deserialize)]
struct TradeEventBody {
    user: String,
    status: String,
    progress: Option<f64>,
    idempotency_key: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// `POST /api/v1/trades/{trade_id}/events` `{user, status, progress?, ...}`: a
/// `trade_update` on `trades:{user}`, which only that user may subscribe to.
pub async fn trade_event(
    State(state): State<AppState>,
    caller: Publisher,
    axum::extract::Path(trade_id): axum::extract::Path<String>,
    RawBody(raw): RawBody,
) -> Response {
    let parsed = (|| {
        let b: TradeEventBody = body::json(&raw)?;
        if trade_id.is_empty() || trade_id.len() > 128 || trade_id.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "trade_id",
                "trade_id must be 1-128 characters",
            ));
        }
        let channel = check_channel(&format!("trades:{}", b.user), "user")?;
        if b.status.is_empty() || b.status.chars().count() > 64 {
            return Err(ApiError::invalid(
                "status",
                "status must be 1-64 characters",
            ));
        }
        if let Some(p) = b.progress {
            if !(0.0..=100.0).contains(&p) {
                return Err(ApiError::invalid(
                    "progress",
                    "progress must be within 0..100",
                ));
            }
        }
        check_idempotency_key(b.idempotency_key.as_deref())?;
        Ok::<_, ApiError>((b, channel))
    })();
    let (b, channel) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mut data = b.rest;
    data.insert("trade_id".into(), trade_id.into());
    data.insert("user".into(), b.user.into());
    data.insert("status".into(), b.status.into());
    if let Some(p) = b.progress {
        data.insert("progress".into(), p.into());
    }
    let scope = scope(&caller, "trades", b.idempotency_key.as_deref());
    idempotent(&state, scope, &raw, || {
        let data = serde_json::value::to_raw_value(&data)
            .map_err(|e| ApiError::internal(format!("trade event is not JSON: {e}")))?;
        let id = ids::ulid("trd_");
        let published = publish_all(
            &state,
            std::slice::from_ref(&channel),
            "trade_update",
            &id,
            None,
            &data,
        );
        let p = &published[0];
        Ok(json!({"id": id, "channel": &*p.channel, "epoch": &*p.epoch, "seq": p.seq}))
    })
}
