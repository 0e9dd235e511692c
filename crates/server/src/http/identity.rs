//! Who is calling: the identity behind a WebSocket upgrade, an SSE stream, a long-poll or a
//! read of the HTTP API, from the request's credentials.
//!
//! Credentials, any one of: query `token=` (alias `sessionToken=`), `Authorization: Bearer`.
//! Query `anonymousId=` names an anonymous client. Precedence: `token`, `sessionToken`,
//! then the header (spec section 9, item 9).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use signalhub_hub::Identity;

use super::error::ApiError;
use crate::state::AppState;

/// The credential a request carries, by precedence.
pub fn presented_token<'a>(
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
) -> Option<&'a str> {
    if let Some(token) = query.get("token").or_else(|| query.get("sessionToken")) {
        return Some(token.as_str());
    }
    super::keys::bearer_token(headers)
}

fn anonymous_id(query: &HashMap<String, String>) -> Result<Option<Arc<str>>, ApiError> {
    match query.get("anonymousId") {
        None => Ok(None),
        Some(id)
            if (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b)) =>
        {
            Ok(Some(Arc::from(id.as_str())))
        }
        Some(_) => Err(ApiError::bad_request(
            "anonymousId must be 1-128 of [A-Za-z0-9_.:@-]",
        )),
    }
}

/// The caller's identity: anonymous (tier: lowest) unless a credential proves more: a
/// session token, or an API key (which reads every tier, as the backend it is). A
/// credential that does not verify is a 401, never a silent downgrade.
pub fn identify(
    state: &AppState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
    let anonymous_id = anonymous_id(query)?;
    match presented_token(query, headers) {
        None => Ok(Identity {
            anonymous_id,
            ..Identity::default()
        }),
        // A publisher or admin key reads like a backend: every tier, no user.
        Some(token) if state.keys.find(token).is_some() => Ok(Identity {
            tier: state.hub.ladder().highest(),
            ..Identity::default()
        }),
        Some(token) => state
            .verify_token(token)
            .map_err(|e| ApiError::unauthorized(e.message())),
    }
}
