//! Admin API: mint session tokens, change a user's tier live, disconnect a user.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use signalhub_hub::AuthKind;

use super::body::{self, RawBody};
use super::error::ApiError;
use super::keys::Admin;
use crate::state::AppState;
use crate::ws::connection::close;

/// Longest session token an admin may mint: 30 days.
pub const MAX_TOKEN_TTL_S: u64 = 30 * 24 * 3600;

/// Wallet subjects are lower-case addresses: an EIP-55 address in a path names the same user.
fn canonical_user(user: String) -> String {
    match crate::auth::parse_address(&user) {
        Ok(address) => crate::auth::format_address(&address),
        Err(_) => user,
    }
}

fn check_user(user: &str, field: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.chars().count() > 128 || user.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "user must be 1-128 characters, no control characters",
        ));
    }
    Ok(())
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Deserialize)]
struct MintBody {
    user: String,
    tier: Option<String>,
    ttl_s: Option<i64>,
}

/// `POST /api/v1/auth/token` `{user, tier?, ttl_s?}` -> `{token, user, tier, expires_at}`.
pub async fn mint_token(
    State(state): State<AppState>,
    _admin: Admin,
    RawBody(raw): RawBody,
) -> Result<Json<Value>, ApiError> {
    let b: MintBody = body::json(&raw)?;
    if state.config.auth.minter.is_ephemeral() {
        return Err(ApiError::unavailable(
            "minting session tokens needs SIGNALHUB_JWT_SECRET",
        ));
    }
    check_user(&b.user, "user")?;
    let ladder = state.hub.ladder();
    let tier = match &b.tier {
        None => signalhub_hub::TierId::LOWEST,
        Some(name) => ladder
            .parse(name)
            .ok_or_else(|| ApiError::invalid("tier", format!("unknown tier {name:?}")))?,
    };
    let ttl_s = match b.ttl_s.unwrap_or(3600) {
        ttl @ 1.. if ttl as u64 <= MAX_TOKEN_TTL_S => ttl as u64,
        _ => {
            return Err(ApiError::invalid(
                "ttl_s",
                format!("ttl_s must be within 1..{MAX_TOKEN_TTL_S}"),
            ))
        }
    };
    let now = chrono::Utc::now().timestamp();
    let (token, expires_at) =
        state
            .config
            .auth
            .minter
            .mint(&b.user, ladder.name(tier), ttl_s, AuthKind::Session, now);
    Ok(Json(json!({
        "token": token,
        "user": b.user,
        "tier": ladder.name(tier),
        "expires_at": rfc3339(expires_at),
    })))
}

#[derive(Deserialize)]
struct TierBody {
    tier: String,
}

/// `POST /api/v1/users/{user}/tier` `{tier}` -> `{user, tier, connections}`: live
/// connections of the user (WebSockets, SSE streams, waiting long-polls) follow at once.
pub async fn set_tier(
    State(state): State<AppState>,
    _admin: Admin,
    Path(user): Path<String>,
    RawBody(raw): RawBody,
) -> Result<Json<Value>, ApiError> {
    let b: TierBody = body::json(&raw)?;
    let user = canonical_user(user);
    check_user(&user, "user")?;
    let ladder = state.hub.ladder();
    let tier = ladder
        .parse(&b.tier)
        .ok_or_else(|| ApiError::invalid("tier", format!("unknown tier {:?}", b.tier)))?;
    // Persist first: a tier change that could not be kept is not made at all.
    state
        .store
        .set_user_tier(&user, Some(ladder.name(tier)))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not store a tier change");
            ApiError::unavailable("the store is unavailable; the tier was not changed")
        })?;
    state.set_tier_override(&user, Some(tier));
    let mut connections = 0;
    state.registry.for_each_with_polls(|client| {
        if client.is_user(&user) {
            let mut identity = client.identity();
            identity.tier = tier;
            client.change_identity(identity);
            connections += 1;
        }
    });
    tracing::info!(%user, tier = ladder.name(tier), connections, "tier changed by admin");
    Ok(Json(
        json!({"user": user, "tier": ladder.name(tier), "connections": connections}),
    ))
}

/// `POST /api/v1/users/{user}/disconnect` -> `{user, disconnected}`: closes the user's
/// connections with 1008 (SSE streams end, waiting long-polls answer; tokens are not
/// revoked).
pub async fn disconnect(
    State(state): State<AppState>,
    _admin: Admin,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = canonical_user(user);
    check_user(&user, "user")?;
    let mut disconnected = 0;
    state.registry.for_each_with_polls(|client| {
        if client.is_user(&user) {
            client.request_close(close::POLICY, false);
            disconnected += 1;
        }
    });
    Ok(Json(json!({"user": user, "disconnected": disconnected})))
}
