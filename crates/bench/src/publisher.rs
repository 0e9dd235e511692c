//! Publishing the bench messages over HTTP at a fixed rate (or as fast as possible), each
//! stamped with its send time and padded to a fixed payload size.

use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use reqwest::header::CONTENT_TYPE;

use crate::subscriber::unix_ns;

/// What one publish run did.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Requests answered 2xx.
    pub published: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Send time of the earliest request (unix nanoseconds), 0 if none was sent.
    pub first_send_unix_ns: u64,
    pub elapsed: Duration,
    /// Stopped at the deadline before sending everything.
    pub cut_short: bool,
}

pub struct PublishPlan<'a> {
    pub http_base: &'a str,
    pub api_key: &'a str,
    pub channels: &'a [String],
    pub messages: u64,
    /// Message indexes per second (each index goes to every channel); 0 = no pacing.
    pub rate: f64,
    pub concurrency: usize,
    pub payload_bytes: usize,
    pub deadline: Instant,
}

/// The `data` JSON `{"t":..,"i":..,"pad":"xx.."}`, padded to `size` bytes when it can be.
pub fn payload(t: u64, i: u64, size: usize) -> String {
    let bare = format!(r#"{{"t":{t},"i":{i},"pad":""}}"#);
    let pad = "x".repeat(size.saturating_sub(bare.len()));
    format!(r#"{{"t":{t},"i":{i},"pad":"{pad}"}}"#)
}

/// Sends `messages` x `channels` publishes; `concurrency` requests in flight at most.
pub async fn publish(plan: &PublishPlan<'_>) -> Result<PublishStats, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(plan.concurrency.max(1))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let url = format!("{}/api/v1/publish", plan.http_base);
    let k = plan.channels.len() as u64;
    let start = Instant::now();
    let mut stats = PublishStats::default();
    let mut results = std::pin::pin!(stream::iter(0..plan.messages * k)
        .then(|job| async move {
            let i = job / k;
            if plan.rate > 0.0 {
                let at = start + Duration::from_secs_f64(i as f64 / plan.rate);
                tokio::time::sleep_until(at.into()).await;
            }
            (i, (job % k) as usize)
        })
        .take_while(|_| std::future::ready(Instant::now() < plan.deadline))
        .map(|(i, ch)| send_one(&client, &url, plan, &plan.channels[ch], i))
        .buffer_unordered(plan.concurrency.max(1)));
    while let Some(result) = results.next().await {
        match result {
            Ok(t) => {
                stats.published += 1;
                if stats.first_send_unix_ns == 0 || t < stats.first_send_unix_ns {
                    stats.first_send_unix_ns = t;
                }
            }
            Err((t, e)) => {
                stats.errors += 1;
                if stats.first_send_unix_ns == 0 || t < stats.first_send_unix_ns {
                    stats.first_send_unix_ns = t;
                }
                if stats.first_error.is_none() {
                    eprintln!("publish error: {e}");
                    stats.first_error = Some(e);
                }
            }
        }
    }
    stats.elapsed = start.elapsed();
    stats.cut_short = stats.published + stats.errors < plan.messages * k;
    Ok(stats)
}

/// One publish; returns its send time, with the error when it failed.
async fn send_one(
    client: &reqwest::Client,
    url: &str,
    plan: &PublishPlan<'_>,
    channel: &str,
    i: u64,
) -> Result<u64, (u64, String)> {
    let t = unix_ns();
    let data = payload(t, i, plan.payload_bytes);
    let body = format!(r#"{{"channel":"{channel}","type":"bench","data":{data}}}"#);
    let response = client
        .post(url)
        .bearer_auth(plan.api_key)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| (t, format!("POST {url}: {e}")))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(t)
    } else {
        let text: String = text.chars().take(300).collect();
        Err((t, format!("POST {url}: HTTP {status}: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_padded_to_size() {
        let t = unix_ns();
        for (i, size) in [(0, 300), (99, 300), (123_456, 1000), (5, 64)] {
            let p = payload(t, i, size);
            assert_eq!(p.len(), size, "{p}");
            let v: serde_json::Value = serde_json::from_str(&p).unwrap();
            assert_eq!(v["t"].as_u64(), Some(t));
            assert_eq!(v["i"].as_u64(), Some(i));
        }
        // Too small to pad: the bare payload.
        assert_eq!(payload(1, 2, 3), r#"{"t":1,"i":2,"pad":""}"#);
    }
}
