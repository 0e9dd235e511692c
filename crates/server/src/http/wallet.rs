//! Sign-In with Ethereum: `GET /api/v1/auth/nonce` and `POST /api/v1/auth/wallet`.
//!
//! The flow: get a single-use nonce, sign an EIP-4361 message naming it with the wallet
//! (EIP-191 `personal_sign`), post both; the server checks the message and recovers the
//! signer, looks the wallet's tier up, and answers a 24-hour session token.

use std::collections::HashMap;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::header;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use signalhub_hub::{AuthKind, TierId};

use super::body::{self, RawBody};
use super::error::ApiError;
use crate::auth::{eip55, format_address, parse_address, verify_sign_in, SiweMessage};
use crate::peer::limiter_key;
use crate::state::AppState;

/// Wallet session tokens live a day.
pub const WALLET_TOKEN_TTL_S: u64 = 24 * 3600;

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// 404 when wallet sign-in is turned off (`auth.wallet_signin = false`).
fn enabled(state: &AppState) -> Result<(), ApiError> {
    if state.config.auth.wallet_signin {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "wallet sign-in is turned off on this server (auth.wallet_signin = false)",
        ))
    }
}

/// `GET /api/v1/auth/nonce?address=0x...` -> `{nonce, expires_at}`.
pub async fn nonce(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    enabled(&state)?;
    if state
        .nonce_limiter
        .check_key(&limiter_key(peer.ip()))
        .is_err()
    {
        return Err(ApiError::rate_limited(
            "too many sign-in nonces from this address; try again in a minute",
            2,
        ));
    }
    if state.nonce_limiter.len() > 100_000 {
        state.nonce_limiter.retain_recent();
    }
    let address = match query.get("address") {
        None => None,
        Some(a) => Some(parse_address(a).map_err(|e| ApiError::invalid("address", e.to_string()))?),
    };
    let (nonce, expires_at) = state.nonces.issue(address, chrono::Utc::now().timestamp());
    Ok(Json(
        json!({"nonce": nonce, "expires_at": rfc3339(expires_at)}),
    ))
}

#[derive(Deserialize)]
struct WalletBody {
    message: String,
    signature: String,
}

/// `POST /api/v1/auth/wallet` `{message, signature}` -> `{token, tier, address}`.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    RawBody(raw): RawBody,
) -> Result<Json<Value>, ApiError> {
    enabled(&state)?;
    let b: WalletBody = body::json(&raw)?;
    let message = SiweMessage::parse(&b.message).map_err(|e| {
        ApiError::bad_request(format!("message is not an EIP-4361 sign-in message: {e}"))
    })?;
    let now = chrono::Utc::now().timestamp();
    // The nonce is used up by this attempt, successful or not.
    state
        .nonces
        .take(message.nonce(), message.address(), now)
        .map_err(|e| ApiError::unauthorized(format!("nonce refused: {e}")))?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let domain = state.config.auth.wallet_domain.as_deref().unwrap_or(host);
    let address = verify_sign_in(&message, &b.signature, domain, now)
        .map_err(|e| ApiError::unauthorized(e.message()))?;
    let subject = format_address(&address);
    let ladder = state.hub.ladder();
    let tier = match state.tier_override(&subject) {
        Some(tier) => tier,
        None => state
            .config
            .auth
            .balance
            .tier_for(&address, ladder)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "balance lookup failed");
                ApiError::unavailable("the wallet's balance could not be read; try again")
            })?
            .unwrap_or(TierId::LOWEST),
    };
    let (token, _) = state.config.auth.minter.mint(
        &subject,
        ladder.name(tier),
        WALLET_TOKEN_TTL_S,
        AuthKind::Wallet,
        now,
    );
    Ok(Json(
        json!({"token": token, "tier": ladder.name(tier), "address": eip55(&address)}),
    ))
}
