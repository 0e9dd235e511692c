//! Sign-In with Ethereum: `GET /api/v1/auth/nonce` and `POST /api/v1/auth/wallet`.
//!
//! The flow: get a single-use nonce, sign an EIP-4361 message naming it with the wallet
//! (EIP-191 `personal_sign`), post both; the server checks the message and recovers the
//! signer, looks the wallet's tier up, and answers a 24-hour session token.

use std::collections::HashMap;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::header;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use signalhub_hub::{AuthKind, TierId};

use super::body::{self, RawBody};
use super::error::ApiError;
use crate::auth::{eip55, format_address, parse_address, verify_sign_in, SiweMessage};
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

/// The nonce limiter's key for a peer: an IPv4 address as it is, an IPv6 address by its
/// /64 (one subscriber's allocation), so one /64 cannot flush the nonce store by rotating
/// addresses. IPv4-mapped IPv6 addresses count as their IPv4 address.
pub(crate) fn limiter_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use governor::{Quota, RateLimiter};
    use std::num::NonZeroU32;

    #[test]
    fn ipv6_peers_in_one_64_share_a_nonce_limiter_key() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limiter_key(a), limiter_key(b));
        assert_eq!(limiter_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(limiter_key(a), limiter_key(other));
    }

    #[test]
    fn ipv4_peers_are_limited_by_exact_address_also_when_mapped_into_ipv6() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let next: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(limiter_key(mapped), v4);
        assert_eq!(limiter_key(v4), v4);
        assert_ne!(limiter_key(next), limiter_key(v4));
    }

    #[test]
    fn rotating_addresses_inside_one_64_does_not_escape_the_nonce_limit() {
        let limiter = RateLimiter::keyed(Quota::per_minute(NonZeroU32::new(3).unwrap()));
        let allowed = (0..100u128)
            .map(|i| {
                IpAddr::V6(Ipv6Addr::from(
                    0x2001_0db8_0000_0001_0000_0000_0000_0000 + i,
                ))
            })
            .filter(|ip| limiter.check_key(&limiter_key(*ip)).is_ok())
            .count();
        assert_eq!(allowed, 3, "100 addresses of one /64 share one budget of 3");
    }
}
