//! Session tokens on the client side: where a fresh one comes from, and when to ask.
//!
//! The client never verifies a token (the server does); it only reads the `exp` claim to
//! refresh the token before the server closes the connection with 4001.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::BoxError;

/// Ask for a new token this long before the current one expires.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(30);

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;

/// A caller's async function that returns a fresh token.
#[derive(Clone)]
pub struct TokenProvider(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl TokenProvider {
    /// Wraps `f`; each call of `f` starts one token request.
    pub fn new<F, Fut, E>(f: F) -> TokenProvider
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        TokenProvider(Arc::new(move || {
            let fut = f();
            Box::pin(async move { fut.await.map_err(Into::into) })
        }))
    }

    /// Asks for a token.
    pub async fn fetch(&self) -> Result<String, BoxError> {
        (self.0)().await
    }
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenProvider")
    }
}

/// The token's `exp` claim (Unix seconds), read without verifying; `None` when it has none
/// or is not a JWT.
pub fn expiry(token: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<serde_json::Number>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let exp = serde_json::from_slice::<Claims>(&bytes).ok()?.exp?;
    // A fractional exp counts down, as the server rounds it.
    exp.as_i64()
        .or_else(|| exp.as_f64().map(|f| f.floor() as i64))
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// True when `token` expires within [`REFRESH_BEFORE`] of `now` (a token without `exp`: false).
pub(crate) fn expires_soon(token: &str, now: i64) -> bool {
    expiry(token).is_some_and(|exp| exp - now < REFRESH_BEFORE.as_secs() as i64)
}

/// True when `token` has expired at `now`.
pub(crate) fn is_expired(token: &str, now: i64) -> bool {
    expiry(token).is_some_and(|exp| exp <= now)
}

/// How long to wait before refreshing a token that expires at `exp`: [`REFRESH_BEFORE`] ahead,
/// or half the remaining life for a short-lived token. `None` for a token already expired:
/// the server closes that connection with 4001, and the provider is asked then.
pub(crate) fn refresh_delay(exp: i64, now: i64) -> Option<Duration> {
    let left = exp - now;
    if left <= 0 {
        return None;
    }
    let left_ms = left.saturating_mul(1000);
    let ahead = left_ms - REFRESH_BEFORE.as_millis() as i64;
    Some(Duration::from_millis(ahead.max(left_ms / 2) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.as_bytes())
        )
    }

    #[test]
    fn expiry_reads_the_exp_claim_without_verifying() {
        assert_eq!(
            expiry(&jwt(r#"{"sub":"u","exp":1700000000}"#)),
            Some(1_700_000_000)
        );
        assert_eq!(expiry(&jwt(r#"{"exp":1700000000.9}"#)), Some(1_700_000_000));
        assert_eq!(expiry(&jwt(r#"{"sub":"u"}"#)), None);
        assert_eq!(expiry(&jwt(r#"{"exp":"soon"}"#)), None);
        assert_eq!(expiry("not-a-jwt"), None);
    }

    #[test]
    fn refresh_comes_thirty_seconds_ahead_or_at_half_life() {
        let now = 1_000;
        assert_eq!(
            refresh_delay(now + 3600, now),
            Some(Duration::from_secs(3570))
        );
        assert_eq!(refresh_delay(now + 40, now), Some(Duration::from_secs(20)));
        assert_eq!(
            refresh_delay(now + 1, now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(refresh_delay(now, now), None);
        assert_eq!(refresh_delay(now - 5, now), None);
    }

    #[test]
    fn soon_and_expired_follow_exp() {
        let now = 1_000;
        let token = jwt(r#"{"exp":1020}"#);
        assert!(expires_soon(&token, now));
        assert!(!is_expired(&token, now));
        assert!(is_expired(&token, 1_020));
        let long = jwt(r#"{"exp":5000}"#);
        assert!(!expires_soon(&long, now));
        assert!(!expires_soon("opaque", now));
    }
}
