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

/// An envelope without its epoch and seq: the bytes before the epoch's value and the bytes
/// after the seq's, kept in one buffer. Joined once per publication (see `broker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    bytes: Bytes,
    split: usize,
}

/// The longest epoch a broker gives a channel.
pub const MAX_EPOCH_LEN: usize = 32;

/// What goes between the epoch and the seq in every envelope.
const BETWEEN: &[u8] = b"\",\"seq\":";

impl Template {
    /// A template from its two parts, as a networked broker receives them.
    pub fn new(prefix: &[u8], suffix: &[u8]) -> Template {
        let mut bytes = Vec::with_capacity(prefix.len() + suffix.len());
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(suffix);
        Template {
            bytes: Bytes::from(bytes),
            split: prefix.len(),
        }
    }

    /// Everything up to the epoch's value: `{"type":..,"channel":..,"epoch":"`.
    pub fn prefix(&self) -> &[u8] {
        &self.bytes[..self.split]
    }

    /// Everything after the seq's value: `,"id":..,...}`.
    pub fn suffix(&self) -> &[u8] {
        &self.bytes[self.split..]
    }

    /// The most bytes the joined envelope can have (an epoch of up to [`MAX_EPOCH_LEN`]
    /// bytes and any seq).
    pub fn joined_len_at_most(&self) -> usize {
        self.bytes.len() + MAX_EPOCH_LEN + BETWEEN.len() + 20
    }

    /// The final envelope: `prefix + epoch + "\",\"seq\":" + seq + suffix`.
    pub fn join(&self, epoch: &str, seq: u64) -> Bytes {
        let mut digits = itoa_u64(seq);
        let digits = digits.as_str();
        let mut out =
            Vec::with_capacity(self.bytes.len() + epoch.len() + BETWEEN.len() + digits.len());
        out.extend_from_slice(self.prefix());
        out.extend_from_slice(epoch.as_bytes());
        out.extend_from_slice(BETWEEN);
        out.extend_from_slice(digits.as_bytes());
        out.extend_from_slice(self.suffix());
        Bytes::from(out)
    }
}

/// A u64 in decimal, on the stack.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_str(&mut self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).expect("ASCII digits")
    }
}

fn itoa_u64(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start }
}

/// Appends `text` as a JSON string.
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("a string serializes");
}

/// The prefix shared by full envelopes and stubs: `{"type":..,"channel":..,"epoch":"`.
fn prefix_into(out: &mut Vec<u8>, kind: &str, channel: &str) {
    out.extend_from_slice(b"{\"type\":");
    push_json_str(out, kind);
    out.extend_from_slice(b",\"channel\":");
    push_json_str(out, channel);
    out.extend_from_slice(b",\"epoch\":\"");
}

/// The full envelope of `p` on `channel` as a template; `tier` is the canonical name of
/// `p.tier`. Joined, it is byte for byte what [`full`] gives.
pub fn full_template(p: &Publication<'_>, channel: &str, tier: Option<&str>) -> Template {
    let data = p.data.get();
    let mut out = Vec::with_capacity(
        64 + p.kind.len() + channel.len() + p.id.len() + p.timestamp.len() + data.len(),
    );
    prefix_into(&mut out, p.kind, channel);
    let split = out.len();
    out.extend_from_slice(b",\"id\":");
    push_json_str(&mut out, p.id);
    out.extend_from_slice(b",\"timestamp\":");
    push_json_str(&mut out, p.timestamp);
    if let Some(tier) = tier {
        out.extend_from_slice(b",\"tier\":");
        push_json_str(&mut out, tier);
    }
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
    Template {
        bytes: Bytes::from(out),
        split,
    }
}

/// The `locked` stub of `p` on `channel` as a template. Joined, it is byte for byte what
/// [`locked`] gives.
pub fn locked_template(p: &Publication<'_>, channel: &str, tier: &str) -> Template {
    let mut out =
        Vec::with_capacity(80 + channel.len() + p.id.len() + p.timestamp.len() + p.kind.len());
    prefix_into(&mut out, "locked", channel);
    let split = out.len();
    out.extend_from_slice(b",\"id\":");
    push_json_str(&mut out, p.id);
    out.extend_from_slice(b",\"timestamp\":");
    push_json_str(&mut out, p.timestamp);
    out.extend_from_slice(b",\"tier\":");
    push_json_str(&mut out, tier);
    out.extend_from_slice(b",\"kind\":");
    push_json_str(&mut out, p.kind);
    out.push(b'}');
    Template {
        bytes: Bytes::from(out),
        split,
    }
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
    fn joined_templates_are_the_serialized_envelopes_byte_for_byte() {
        let data =
            RawValue::from_string(r#"{"entry_price":1.0950,"note":"a \"q\""}"#.into()).unwrap();
        let mut p = publication(&data);
        p.kind = "sig\"nal";
        for seq in [0, 1, 9, 10, 42, u64::MAX] {
            assert_eq!(
                full_template(&p, "signals", Some("premium")).join("e1", seq),
                full(&p, "signals", "e1", seq, Some("premium"))
            );
            assert_eq!(
                full_template(&p, "signals", None).join("e1", seq),
                full(&p, "signals", "e1", seq, None)
            );
            assert_eq!(
                locked_template(&p, "signals", "premium").join("e1", seq),
                locked(&p, "signals", "e1", seq, "premium")
            );
        }
    }

    #[test]
    fn a_template_rebuilt_from_its_parts_joins_the_same() {
        let data = RawValue::from_string("{}".into()).unwrap();
        let t = full_template(&publication(&data), "signals", None);
        let rebuilt = Template::new(t.prefix(), t.suffix());
        assert_eq!(rebuilt.join("abc", 7), t.join("abc", 7));
        assert!(t.prefix().ends_with(b"\"epoch\":\""));
        assert!(t.suffix().starts_with(b",\"id\":"));
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
