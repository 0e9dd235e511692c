//! Publishing the bench messages over HTTP at a fixed rate (or as fast as possible), each
//! stamped with its send time: plain publications padded to a fixed payload size, or signal
//! records (`--mode signals`) carrying the stamp in their `metadata`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use hdrhistogram::Histogram;
use reqwest::header::CONTENT_TYPE;

use crate::protocol::new_hist;
use crate::subscriber::unix_ns;

/// What one publish run did.
#[derive(Debug)]
pub struct PublishStats {
    /// Requests answered 2xx.
    pub published: u64,
    pub errors: u64,
    /// Answers by HTTP status (`"200"`, `"503"`, ...); `"error"` for requests that got none.
    pub status: BTreeMap<String, u64>,
    /// Request times (send to full answer) in microseconds.
    pub request_hist: Histogram<u64>,
    pub first_error: Option<String>,
    /// Send time of the earliest request (unix nanoseconds), 0 if none was sent.
    pub first_send_unix_ns: u64,
    pub elapsed: Duration,
    /// Stopped at the deadline before sending everything.
    pub cut_short: bool,
}

impl Default for PublishStats {
    fn default() -> Self {
        PublishStats {
            published: 0,
            errors: 0,
            status: BTreeMap::new(),
            request_hist: new_hist(),
            first_error: None,
            first_send_unix_ns: 0,
            elapsed: Duration::ZERO,
            cut_short: false,
        }
    }
}

/// What each request carries.
pub enum Payload<'a> {
    /// `POST /api/v1/publish` of `{"t","i","pad"}` data of `payload_bytes` to each channel.
    Publish {
        channels: &'a [String],
        payload_bytes: usize,
    },
    /// `POST /api/v1/signals` of one signal per index, `signal_id` `bench_{run_id}_{i}`.
    Signals { run_id: &'a str, pair: &'a str },
}

pub struct PublishPlan<'a> {
    pub http_base: &'a str,
    pub api_key: &'a str,
    pub payload: Payload<'a>,
    pub messages: u64,
    /// Message indexes per second (each index goes to every channel); 0 = no pacing.
    pub rate: f64,
    pub concurrency: usize,
    pub deadline: Instant,
}

impl PublishPlan<'_> {
    /// Requests per message index.
    fn per_index(&self) -> u64 {
        match self.payload {
            Payload::Publish { channels, .. } => channels.len() as u64,
            Payload::Signals { .. } => 1,
        }
    }

    /// Requests the whole run sends.
    pub fn requests(&self) -> u64 {
        self.messages.saturating_mul(self.per_index())
    }

    fn url(&self) -> String {
        match self.payload {
            Payload::Publish { .. } => format!("{}/api/v1/publish", self.http_base),
            Payload::Signals { .. } => format!("{}/api/v1/signals", self.http_base),
        }
    }

    /// The request body of message `i` for the `job % per_index`-th channel, sent at `t`.
    fn body(&self, t: u64, i: u64, k: usize) -> String {
        match self.payload {
            Payload::Publish {
                channels,
                payload_bytes,
            } => {
                let data = payload(t, i, payload_bytes);
                let channel = &channels[k];
                format!(r#"{{"channel":"{channel}","type":"bench","data":{data}}}"#)
            }
            Payload::Signals { run_id, pair } => signal_body(run_id, pair, t, i),
        }
    }
}

/// The `data` JSON `{"t":..,"i":..,"pad":"xx.."}`, padded to `size` bytes when it can be.
pub fn payload(t: u64, i: u64, size: usize) -> String {
    let bare = format!(r#"{{"t":{t},"i":{i},"pad":""}}"#);
    let pad = "x".repeat(size.saturating_sub(bare.len()));
    format!(r#"{{"t":{t},"i":{i},"pad":"{pad}"}}"#)
}

/// A free-tier (confidence 0.5) BUY signal for `pair` with the bench stamp in `metadata`.
pub fn signal_body(run_id: &str, pair: &str, t: u64, i: u64) -> String {
    format!(
        concat!(
            r#"{{"signal_id":"bench_{run_id}_{i}","pair":"{pair}","signal_type":"BUY","#,
            r#""entry_price":1.0950,"stop_loss":1.0900,"take_profit":[1.1000,1.1050],"#,
            r#""confidence_score":0.5,"timeframe":"1h","strategy":"bench","#,
            r#""metadata":{{"t":{t},"i":{i}}}}}"#
        ),
        run_id = run_id,
        pair = pair,
        t = t,
        i = i
    )
}

/// One request's result.
struct Outcome {
    /// Send time, unix nanoseconds.
    t: u64,
    /// The HTTP status, None when no answer came.
    status: Option<u16>,
    micros: u64,
    /// Set for a non-2xx status or no answer.
    error: Option<String>,
}

/// Sends every request of `plan`; `concurrency` requests in flight at most.
pub async fn publish(plan: &PublishPlan<'_>) -> Result<PublishStats, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(plan.concurrency.max(1))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let url = plan.url();
    let k = plan.per_index();
    let start = Instant::now();
    let mut stats = PublishStats::default();
    let mut results = std::pin::pin!(stream::iter(0..plan.requests())
        .then(|job| async move {
            let i = job / k;
            if plan.rate > 0.0 {
                let at = start + Duration::from_secs_f64(i as f64 / plan.rate);
                tokio::time::sleep_until(at.into()).await;
            }
            (i, (job % k) as usize)
        })
        .take_while(|_| std::future::ready(Instant::now() < plan.deadline))
        .map(|(i, ch)| send_one(&client, &url, plan, i, ch))
        .buffer_unordered(plan.concurrency.max(1)));
    while let Some(o) = results.next().await {
        if stats.first_send_unix_ns == 0 || o.t < stats.first_send_unix_ns {
            stats.first_send_unix_ns = o.t;
        }
        let key = o
            .status
            .map_or_else(|| "error".to_string(), |s| s.to_string());
        *stats.status.entry(key).or_default() += 1;
        stats.request_hist.saturating_record(o.micros);
        match o.error {
            None => stats.published += 1,
            Some(e) => {
                stats.errors += 1;
                if stats.first_error.is_none() {
                    eprintln!("publish error: {e}");
                    stats.first_error = Some(e);
                }
            }
        }
    }
    stats.elapsed = start.elapsed();
    stats.cut_short = stats.published + stats.errors < plan.requests();
    Ok(stats)
}

/// One request: message `i` to the `k`-th channel (publish mode) or signal `i`.
async fn send_one(
    client: &reqwest::Client,
    url: &str,
    plan: &PublishPlan<'_>,
    i: u64,
    k: usize,
) -> Outcome {
    let t = unix_ns();
    let sent = Instant::now();
    let body = plan.body(t, i, k);
    let result = client
        .post(url)
        .bearer_auth(plan.api_key)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let (status, error) = match result {
        Err(e) => (None, Some(format!("POST {url}: {e}"))),
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let error = (!status.is_success()).then(|| {
                let text: String = text.chars().take(300).collect();
                format!("POST {url}: HTTP {status}: {text}")
            });
            (Some(status.as_u16()), error)
        }
    };
    Outcome {
        t,
        status,
        micros: sent.elapsed().as_micros() as u64,
        error,
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

    #[test]
    fn signal_body_is_a_free_signal_with_the_stamp_in_metadata() {
        let body = signal_body("r1", "BENCH-USD", 123, 7);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["signal_id"], "bench_r1_7");
        assert_eq!(v["pair"], "BENCH-USD");
        assert_eq!(v["signal_type"], "BUY");
        assert_eq!(v["confidence_score"].as_f64(), Some(0.5));
        assert_eq!(v["metadata"], serde_json::json!({"t": 123, "i": 7}));
    }

    #[test]
    fn plan_shapes() {
        let channels = ["a".to_string(), "b".to_string()];
        let mut plan = PublishPlan {
            http_base: "http://127.0.0.1:1",
            api_key: "k",
            payload: Payload::Publish {
                channels: &channels,
                payload_bytes: 100,
            },
            messages: 5,
            rate: 0.0,
            concurrency: 1,
            deadline: Instant::now(),
        };
        assert_eq!(plan.requests(), 10);
        assert_eq!(plan.url(), "http://127.0.0.1:1/api/v1/publish");
        let v: serde_json::Value = serde_json::from_str(&plan.body(1, 2, 1)).unwrap();
        assert_eq!(v["channel"], "b");
        assert_eq!(v["data"]["i"], 2);
        plan.payload = Payload::Signals {
            run_id: "r",
            pair: "P",
        };
        assert_eq!(plan.requests(), 5);
        assert_eq!(plan.url(), "http://127.0.0.1:1/api/v1/signals");
    }
}
