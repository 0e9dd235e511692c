//! The line-based JSON protocol between the coordinator and its worker processes, and the
//! base64 V2 encoding of HDR histograms carried in it.
//!
//! Worker -> coordinator (stdout): `ready` once every connection was attempted, `done` when
//! every connection got its messages (or on `finish`), `closed` after closing them all.
//! Coordinator -> worker (stdin): `finish` (report now), `close` (close and exit).

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest value the histograms hold: one hour in microseconds.
const HIST_MAX: u64 = 3_600_000_000;

/// A histogram of microseconds with 3 significant figures.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_max(HIST_MAX, 3).expect("valid histogram bounds")
}

pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("serializing to memory");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub fn decode_hist(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("histogram base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("histogram: {e:?}"))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    Ready {
        /// Connect + subscribe times in microseconds.
        connect_hist: String,
        connected: u64,
        failed: u64,
        /// First few distinct failure reasons, for the log.
        errors: Vec<String>,
    },
    Done {
        /// Delivery latencies in microseconds.
        latency_hist: String,
        delivered: u64,
        in_order: bool,
        duplicates: u64,
        out_of_order: u64,
        /// Connections that ended before being told to close.
        disconnected: u64,
        last_delivery_unix_ns: u64,
        /// This worker's own CPU time (user + system) since `ready`, in microseconds.
        #[serde(default)]
        cpu_us: u64,
    },
    Closed,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Finish,
    Close,
}

/// One JSON line (with its newline).
pub fn to_line<T: Serialize>(msg: &T) -> String {
    let mut s = serde_json::to_string(msg).expect("serializing a protocol message");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_round_trip_and_merge() {
        let mut a = new_hist();
        for v in 1..=1000 {
            a.record(v).unwrap();
        }
        let b = decode_hist(&encode_hist(&a)).unwrap();
        assert_eq!(b.len(), 1000);
        assert_eq!(b.max(), a.max());
        let mut m = new_hist();
        m.add(&a).unwrap();
        m.add(&b).unwrap();
        assert_eq!(m.len(), 2000);
        assert_eq!(decode_hist(&encode_hist(&new_hist())).unwrap().len(), 0);
    }

    #[test]
    fn lines() {
        assert_eq!(to_line(&Command::Finish), "{\"cmd\":\"finish\"}\n");
        let c: Command = serde_json::from_str(r#"{"cmd":"close"}"#).unwrap();
        assert_eq!(c, Command::Close);
        let e = to_line(&WorkerEvent::Closed);
        assert_eq!(e, "{\"event\":\"closed\"}\n");
        let r: WorkerEvent = serde_json::from_str(
            r#"{"event":"ready","connect_hist":"","connected":1,"failed":0,"errors":[]}"#,
        )
        .unwrap();
        assert!(matches!(r, WorkerEvent::Ready { connected: 1, .. }));
    }
}
