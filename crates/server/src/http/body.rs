//! Request bodies: read with the size limit (413 beyond it) within the read timeout (408
//! beyond it), and parsed as JSON (400).

use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::http::HeaderMap;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::state::AppState;

/// A request body read whole, within `limits.max_body_bytes` (413 beyond) and
/// `limits.body_read_timeout_s` (408 beyond); the extractor every JSON endpoint starts from.
pub struct RawBody(pub Bytes);

impl axum::extract::FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let limits = &state.config.limits;
        let timeout = Duration::from_secs(u64::from(limits.body_read_timeout_s));
        match tokio::time::timeout(timeout, read(&parts.headers, body, limits.max_body_bytes)).await
        {
            Ok(read) => read.map(RawBody),
            Err(_) => Err(ApiError::request_timeout(format!(
                "the request body did not arrive within {} s",
                limits.body_read_timeout_s
            ))),
        }
    }
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::payload_too_large(limit))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "could not read the body: {e}"
        ))),
    }
}

/// Parses a JSON body into `T`: malformed JSON and wrong shapes are 400 `bad_request`.
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "malformed JSON"
        } else {
            "wrong shape"
        };
        ApiError::bad_request(format!("{what}: {e}"))
    })
}
