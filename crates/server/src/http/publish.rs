//! The publish API: `publish`, `broadcast`, `signals` and the typed publishes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use signalhub_hub::{channel, TierId};
use signalhub_schema::typed::TypedPublish;

use super::body::{self, RawBody};
use super::error::ApiError;
use super::keys::Publisher as Caller;
use crate::idempotency::body_hash;
use crate::publish::{Idempotency, Message, PublishFailure, Publisher, Receipt, Reply, Source};
use crate::state::AppState;

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

/// The channel `{prefix}{owner}` of an owner-only family (`trades:`, `user:`): the owner
/// must be present and make a valid channel name, or the publication could land on a
/// channel nobody owns.
fn check_owner_channel(prefix: &str, owner: &str, field: &str) -> Result<String, ApiError> {
    if owner.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    check_channel(&format!("{prefix}{owner}"), field)
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

pub(super) fn check_idempotency_key(key: Option<&str>) -> Result<(), ApiError> {
    match key {
        Some(k) if k.is_empty() || k.len() > 128 => Err(ApiError::invalid(
            "idempotency_key",
            "idempotency_key must be 1-128 bytes",
        )),
        _ => Ok(()),
    }
}

impl From<PublishFailure> for ApiError {
    fn from(e: PublishFailure) -> Self {
        match e {
            PublishFailure::Conflict(why) => ApiError::conflict(why),
            PublishFailure::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
            PublishFailure::Unavailable(why) => {
                tracing::warn!(error = %why, "broker unavailable");
                ApiError::unavailable(
                    "the broker is unavailable; nothing was published, retry later",
                )
            }
            PublishFailure::Internal(why) => ApiError::internal(why),
        }
    }
}

/// Publishes through the one publish path and answers as HTTP: the answer, a retry's
/// first answer, or the failure's status.
async fn publish_as(
    state: &AppState,
    caller: &Caller,
    message: Message<'_>,
    idempotency: Option<(&str, &'static str, &[u8])>,
    answer: fn(&Receipt) -> Value,
) -> Response {
    let idempotency = idempotency.map(|(key, endpoint, raw)| Idempotency {
        key,
        endpoint,
        body_hash: body_hash(raw),
    });
    let source = Source::ApiKey(caller.key_index);
    match Publisher::new(state.clone())
        .publish(&source, message, idempotency, answer)
        .await
    {
        Ok(reply) => reply_response(reply),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A publish's answer as HTTP: the new answer, or a retry's first answer byte for byte.
pub(super) fn reply_response(reply: Reply) -> Response {
    match reply {
        Reply::Published(v) => Json(v).into_response(),
        Reply::Replay { status, body } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
    }
}

/// `POST /api/v1/publish`: `{channel, type, data, tier?, idempotency_key?}`.
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
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
    let message = Message {
        channels: std::slice::from_ref(&channel),
        kind: &b.kind,
        data: &b.data,
        tier,
        id_prefix: "pub_",
    };
    let key = b
        .idempotency_key
        .as_deref()
        .map(|k| (k, "publish", &raw[..]));
    publish_as(&state, &caller, message, key, Receipt::single).await
}

/// `POST /api/v1/broadcast`: like publish with `channels: [...]`, refused whole if any
/// name is invalid.
pub async fn broadcast(
    State(state): State<AppState>,
    caller: Caller,
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
    let message = Message {
        channels: &channels,
        kind: &b.kind,
        data: &b.data,
        tier,
        id_prefix: "pub_",
    };
    let key = b
        .idempotency_key
        .as_deref()
        .map(|k| (k, "broadcast", &raw[..]));
    publish_as(&state, &caller, message, key, Receipt::many).await
}

async fn typed_publish(
    state: AppState,
    caller: Caller,
    raw: bytes::Bytes,
    endpoint: &'static str,
    parse: TypedParser,
) -> Response {
    let typed = match parse(&raw, state.hub.ladder()) {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let message = Message {
        channels: &typed.channels,
        kind: typed.kind,
        data: &typed.data,
        tier: typed.tier,
        id_prefix: "pub_",
    };
    let key = typed
        .idempotency_key
        .as_deref()
        .map(|k| (k, endpoint, &raw[..]));
    publish_as(&state, &caller, message, key, Receipt::many).await
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
        move |State(state): State<AppState>, caller: Caller, RawBody(raw): RawBody| async move {
            typed_publish(state, caller, raw, endpoint, parse).await
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
    caller: Caller,
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
        let channel = check_owner_channel("trades:", &b.user, "user")?;
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
    let data = match serde_json::value::to_raw_value(&data) {
        Ok(data) => data,
        Err(e) => {
            return ApiError::internal(format!("trade event is not JSON: {e}")).into_response()
        }
    };
    let message = Message {
        channels: std::slice::from_ref(&channel),
        kind: "trade_update",
        data: &data,
        tier: None,
        id_prefix: "trd_",
    };
    let key = b
        .idempotency_key
        .as_deref()
        .map(|k| (k, "trades", &raw[..]));
    publish_as(&state, &caller, message, key, Receipt::single).await
}
