//! The HTTP API calls the client makes (channel history, for resync) and the CLI makes
//! (publish), and the URLs derived from the server's base URL.

use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::envelope::Envelope;
use crate::error::Error;

/// Largest history page the server serves.
const HISTORY_PAGE: usize = 1000;
/// No single HTTP call may take longer; the connection task waits for history fetches.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's HTTP API at one base URL.
#[derive(Debug, Clone)]
pub struct HttpApi {
    base: Url,
    client: reqwest::Client,
}

/// `GET /api/v1/channels/{channel}/history`: what the server still holds, oldest first.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryPage {
    /// `None` when the server holds no state for the channel.
    pub epoch: Option<String>,
    /// The channel's last seq.
    #[serde(default)]
    pub seq: u64,
    pub publications: Vec<Envelope>,
}

/// The body of `POST /api/v1/publish`.
#[derive(Debug, Clone, Serialize)]
pub struct PublishRequest<'a> {
    pub channel: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<&'a str>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl HttpApi {
    /// The API of the server at `base` (`http(s)://host:port[/prefix]`; `ws(s)://` is taken
    /// as the same server).
    pub fn new(base: &str) -> Result<HttpApi, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let mut url = Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
        let scheme = match url.scheme() {
            "http" | "ws" => "http",
            "https" | "wss" => "https",
            _ => return Err(invalid("the scheme must be http, https, ws or wss")),
        };
        url.set_scheme(scheme)
            .map_err(|()| invalid("the scheme cannot be changed"))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a base URL has no query or fragment"));
        }
        url.path_segments_mut()
            .map_err(|()| invalid("the URL cannot be a base"))?
            .pop_if_empty();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(HttpApi { base: url, client })
    }

    /// The base URL, `http` or `https`.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `{base}/{segments...}`, each segment escaped.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("the base was checked to be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// The WebSocket URL: `ws(s)://.../ws`, with `token=` when there is a token.
    pub fn ws_url(&self, token: Option<&str>) -> Url {
        let mut url = self.url(&["ws"]);
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .expect("http and ws schemes are interchangeable");
        if let Some(token) = token {
            url.query_pairs_mut().append_pair("token", token);
        }
        url
    }

    /// Every publication of `channel` after `since` that the server holds, fetched in pages;
    /// `token` identifies the caller (above-tier publications come back as stubs).
    pub async fn history(
        &self,
        channel: &str,
        since: u64,
        token: Option<&str>,
    ) -> Result<HistoryPage, Error> {
        let mut all = HistoryPage {
            epoch: None,
            seq: 0,
            publications: Vec::new(),
        };
        let mut from = since;
        loop {
            let mut url = self.url(&["api", "v1", "channels", channel, "history"]);
            url.query_pairs_mut()
                .append_pair("since", &from.to_string())
                .append_pair("limit", &HISTORY_PAGE.to_string());
            let mut request = self.client.get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let page: HistoryPage = decode(&checked(request.send().await?).await?)?;
            if !all.publications.is_empty() && page.epoch != all.epoch {
                break; // the epoch changed between pages: keep what belongs together
            }
            let full = page.publications.len() >= HISTORY_PAGE;
            all.epoch = page.epoch;
            all.seq = page.seq;
            all.publications.extend(page.publications);
            match all.publications.last() {
                Some(last) if full && last.seq < all.seq => from = last.seq,
                _ => break,
            }
        }
        Ok(all)
    }

    /// `POST /api/v1/publish` with `api_key`; returns the answer's body (`{id, channel,
    /// epoch, seq}`) as the server wrote it.
    pub async fn publish(
        &self,
        api_key: Option<&str>,
        request: &PublishRequest<'_>,
    ) -> Result<String, Error> {
        let mut call = self
            .client
            .post(self.url(&["api", "v1", "publish"]))
            .json(request);
        if let Some(key) = api_key {
            call = call.bearer_auth(key);
        }
        checked(call.send().await?).await
    }
}

/// The body of a 2xx answer; any other status becomes [`Error::Api`] with the server's error.
async fn checked(response: reqwest::Response) -> Result<String, Error> {
    let status = response.status();
    let text = response.text().await?;
    if status.is_success() {
        return Ok(text);
    }
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error.code, body.error.message),
        Err(_) => (
            status.canonical_reason().unwrap_or("error").to_string(),
            text,
        ),
    };
    Err(Error::Api {
        status: status.as_u16(),
        code,
        message,
    })
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(Error::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_websocket_url_follows_the_base_url() {
        let api = HttpApi::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(api.ws_url(None).as_str(), "ws://127.0.0.1:8080/ws");
        assert_eq!(
            api.ws_url(Some("a.b+c")).as_str(),
            "ws://127.0.0.1:8080/ws?token=a.b%2Bc"
        );
        let api = HttpApi::new("https://example.com/hub").unwrap();
        assert_eq!(api.ws_url(None).as_str(), "wss://example.com/hub/ws");
        let api = HttpApi::new("wss://example.com").unwrap();
        assert_eq!(api.base().as_str(), "https://example.com/");
    }

    #[test]
    fn history_urls_escape_the_channel() {
        let api = HttpApi::new("http://h:1").unwrap();
        assert_eq!(
            api.url(&["api", "v1", "channels", "price:BTC-USD", "history"])
                .as_str(),
            "http://h:1/api/v1/channels/price:BTC-USD/history"
        );
    }

    #[test]
    fn unusable_base_urls_are_refused() {
        for bad in ["ftp://h", "not a url", "http://h/?q=1", "mailto:x@y"] {
            assert!(
                matches!(HttpApi::new(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
