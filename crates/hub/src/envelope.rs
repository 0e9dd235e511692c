//! Publication envelopes, serialized once per (publication, channel) and shared by every
//! subscriber, history and every transport.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::tier::TierId;

/// A publication as accepted from a source, before it is sequenced on a channel.
#[derive(Debug, Clone, Copy)]
pub struct Publication<'a> {
    /// The envelope `type` (`signal`, `price_update`, or a publisher's own).
    pub kind: &'a str,
    /// The publication id, the same on every channel it is routed to.
    pub id: &'a str,
    /// When the server accepted it (RFC 3339, UTC, milliseconds).
    pub timestamp: &'a str,
    /// The tier a subscriber needs to see `data`; lower tiers get a `locked` stub.
    pub tier: Option<TierId>,
    /// The `data` payload, already valid JSON.
    pub data: &'a RawValue,
}

#[derive(Serialize)]
struct Full<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    channel: &'a str,
    epoch: &'a str,
    seq: u64,
    id: &'a str,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    data: &'a RawValue,
}

#[derive(Serialize)]
struct Locked<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    channel: &'a str,
    epoch: &'a str,
    seq: u64,
    id: &'a str,
    timestamp: &'a str,
    tier: &'a str,
    kind: &'a str,
}

/// The full envelope as JSON; `tier` is the canonical name of `p.tier`.
pub fn full(
    p: &Publication<'_>,
    channel: &str,
    epoch: &str,
    seq: u64,
    tier: Option<&str>,
) -> Bytes {
    let env = Full {
        kind: p.kind,
        channel,
        epoch,
        seq,
        id: p.id,
        timestamp: p.timestamp,
        tier,
        data: p.data,
    };
    Bytes::from(serde_json::to_vec(&env).expect("envelope serializes"))
}

/// The `locked` stub sent in place of a publication to subscribers below its tier.
pub fn locked(p: &Publication<'_>, channel: &str, epoch: &str, seq: u64, tier: &str) -> Bytes {
    let env = Locked {
        type_: "locked",
        channel,
        epoch,
        seq,
        id: p.id,
        timestamp: p.timestamp,
        tier,
        kind: p.kind,
    };
    Bytes::from(serde_json::to_vec(&env).expect("locked stub serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(data: &RawValue) -> Publication<'_> {
        Publication {
            kind: "signal",
            id: "sig_1",
            timestamp: "2025-08-11T00:23:15.123Z",
            tier: Some(TierId(1)),
            data,
        }
    }

    #[test]
    fn full_envelope_has_every_field_and_the_raw_data() {
        let data = RawValue::from_string(r#"{"entry_price":1.0950}"#.into()).unwrap();
        let json = full(&publication(&data), "signals", "e1", 42, Some("premium"));
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["type"], "signal");
        assert_eq!(v["channel"], "signals");
        assert_eq!(v["epoch"], "e1");
        assert_eq!(v["seq"], 42);
        assert_eq!(v["id"], "sig_1");
        assert_eq!(v["tier"], "premium");
        // Digits are kept exactly as given.
        assert!(std::str::from_utf8(&json).unwrap().contains("1.0950"));
    }

    #[test]
    fn locked_stub_has_no_data_and_names_tier_and_kind() {
        let data = RawValue::from_string("{}".into()).unwrap();
        let json = locked(&publication(&data), "signals", "e1", 43, "premium");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["type"], "locked");
        assert_eq!(v["seq"], 43);
        assert_eq!(v["tier"], "premium");
        assert_eq!(v["kind"], "signal");
        assert!(v.get("data").is_none());
    }
}
