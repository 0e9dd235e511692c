//! Publisher and admin API keys: `Authorization: Bearer <key>`, compared in constant time.
//!
//! Keys are compared as SHA-256 digests with `subtle`, and every configured key is compared
//! (no early exit), so neither the key's content nor its length nor which key matched leaks
//! through timing.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{ApiKey, Role};
use crate::state::AppState;

/// The configured keys as digests; the secrets themselves are not kept.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<([u8; 32], Role)>,
}

impl KeyRing {
    pub fn new(keys: &[ApiKey]) -> Self {
        KeyRing {
            keys: keys
                .iter()
                .map(|k| (Sha256::digest(k.key.as_bytes()).into(), k.role))
                .collect(),
        }
    }

    /// A stable, non-secret name for key `index` (`key:` and 16 hex digits of a SHA-256 of
    /// the key's digest): recorded with what the key stores, the same across restarts as
    /// long as the key is, and useless for recovering the key.
    pub fn fingerprint(&self, index: usize) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"signalhub publisher fingerprint\0");
        hasher.update(self.keys[index].0);
        let digest = hasher.finalize();
        format!("key:{}", hex::encode(&digest[..8]))
    }

    /// The index and role of the key `presented`, if it is one of ours.
    pub fn find(&self, presented: &str) -> Option<(usize, Role)> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (i, (key, role)) in self.keys.iter().enumerate() {
            if bool::from(key.ct_eq(&digest)) && found.is_none() {
                found = Some((i, *role));
            }
        }
        found
    }
}

/// The bearer token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn bearer(parts: &Parts) -> Option<&str> {
    bearer_token(&parts.headers)
}

/// A caller holding a publisher or admin key.
#[derive(Debug, Clone, Copy)]
pub struct Publisher {
    /// Which configured key (scopes idempotency keys).
    pub key_index: usize,
    pub role: Role,
}

fn authenticate(parts: &Parts, state: &AppState) -> Result<Publisher, ApiError> {
    let token = bearer(parts).ok_or_else(|| {
        ApiError::unauthorized("an API key is required: Authorization: Bearer <key>")
    })?;
    let (key_index, role) = state
        .keys
        .find(token)
        .ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
    Ok(Publisher { key_index, role })
}

impl FromRequestParts<AppState> for Publisher {
    type Rejection = ApiError;

    /// Every publishing endpoint takes a `Publisher`, so this is where a key's publish rate
    /// (`limits.publishes_per_key_per_second` and `_burst`) is charged: before the body is
    /// parsed, one request one publish.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state)?;
        state
            .check_publish_rate(caller.key_index)
            .map_err(|retry_after_s| {
                ApiError::rate_limited(
                    format!(
                        "this API key is over its publish rate ({} a second, {} at once); retry after {retry_after_s} s",
                        state.config.limits.publishes_per_key_per_second,
                        state.config.limits.publishes_per_key_burst,
                    ),
                    retry_after_s,
                )
            })?;
        Ok(caller)
    }
}

/// A caller holding an admin key.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Publisher);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state)?;
        if caller.role != Role::Admin {
            return Err(ApiError::forbidden("this call needs an admin key"));
        }
        Ok(Admin(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(&[
            ApiKey {
                key: "publisher-key".into(),
                role: Role::Publisher,
            },
            ApiKey {
                key: "admin-key-123".into(),
                role: Role::Admin,
            },
        ])
    }

    #[test]
    fn finds_each_configured_key_with_its_role() {
        assert_eq!(ring().find("publisher-key"), Some((0, Role::Publisher)));
        assert_eq!(ring().find("admin-key-123"), Some((1, Role::Admin)));
    }

    #[test]
    fn refuses_unknown_prefixes_and_empty_keys() {
        for k in [
            "",
            "publisher",
            "publisher-key ",
            "admin-key-1234",
            "PUBLISHER-KEY",
        ] {
            assert_eq!(ring().find(k), None, "{k:?}");
        }
    }
}
