//! The single JSON line a bench run prints, and the percentile summary of its histograms.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::{Mode, ReaderKind};

/// p50/p90/p99/max in milliseconds of a histogram of microseconds (null when empty).
#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn percentiles_ms(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles {
            p50: None,
            p90: None,
            p99: None,
            max: None,
        };
    }
    let q = |q: f64| Some(ms(h.value_at_quantile(q)));
    Percentiles {
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: Some(ms(h.max())),
    }
}

/// Rounds to 3 decimals for printing.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    /// The subscribers' WebSocket client (`--reader`).
    pub reader: ReaderKind,
    pub connections: usize,
    pub workers: usize,
    pub channels: usize,
    /// The one channel every connection subscribed to (`--channel`, `--mode signals`).
    pub channel: Option<String>,
    pub source_ips: usize,
    pub concurrency: usize,
    pub connected: u64,
    pub connect_failed: u64,
    pub connect_ms: Percentiles,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    /// (after - before) / connected.
    pub rss_per_connection_bytes: Option<i64>,
    pub messages: u64,
    pub rate: f64,
    /// `--mode publish` only.
    pub payload_bytes: Option<usize>,
    /// `--mode signals`: signal ids are `bench_{run_id}_{i}`.
    pub run_id: Option<String>,
    /// Requests the run was to send (messages x channels, or messages signals).
    pub requests: u64,
    /// Requests answered 2xx.
    pub published: u64,
    pub publish_errors: u64,
    /// Answers by HTTP status, `"error"` for requests that got none.
    pub publish_status: BTreeMap<String, u64>,
    /// First request sent to last answer received.
    pub publish_s: f64,
    /// Requests answered 2xx per second of `publish_s`.
    pub published_per_sec: Option<f64>,
    /// `--mode signals`: signals stored (answered 2xx) per second of `publish_s`.
    pub stored_per_sec: Option<f64>,
    /// Request times (send to full answer).
    pub request_ms: Percentiles,
    /// messages x connections.
    pub expected: u64,
    pub delivered: u64,
    pub in_order: bool,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub disconnected: u64,
    pub timed_out: bool,
    pub latency_ms: Percentiles,
    pub full_delivery_ms: Option<f64>,
    pub deliveries_per_sec: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Server CPU time over the same window per request answered 2xx (fan-out included).
    pub server_cpu_us_per_publish: Option<f64>,
    /// The workers' own CPU time per delivery (they share the machine with the server).
    pub bench_cpu_us_per_delivery: Option<f64>,
    pub server_pid: Option<u32>,
}

impl Report {
    /// Every request was answered 2xx and every expected message arrived, in order, once.
    pub fn all_delivered(&self) -> bool {
        self.published == self.requests
            && self.delivered == self.expected
            && self.in_order
            && self.duplicates == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::new_hist;

    #[test]
    fn percentiles_of_known_data() {
        let mut h = new_hist();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap(); // 1..=1000 ms
        }
        let p = percentiles_ms(&h);
        let near = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() <= b * 0.001 + 0.001;
        assert!(near(p.p50, 500.0), "{p:?}");
        assert!(near(p.p90, 900.0), "{p:?}");
        assert!(near(p.p99, 990.0), "{p:?}");
        assert!(near(p.max, 1000.0), "{p:?}");
    }

    #[test]
    fn empty_histogram_is_null() {
        let p = percentiles_ms(&new_hist());
        assert_eq!(p.p50, None);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"p50":null,"p90":null,"p99":null,"max":null}"#
        );
    }

    #[test]
    fn rounding() {
        assert_eq!(ms(1234), 1.234);
        assert_eq!(round3(2.00049), 2.0);
    }
}
