//! The wire protocol's frames as the client reads and writes them.
//!
//! A publication's `data` is kept as raw JSON text ([`RawValue`]), so prices keep the digits
//! the server sent and printing an envelope gives back what came over the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// One publication as the server sends it: live, replayed, or from the history API. A
/// `locked` stub (the subscriber's tier is below the publication's) has `kind == "locked"`,
/// no `data`, and the publication's own type in `locked_kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The publication's type (`signal`, `price_update`, ..., a publisher's own), or `locked`.
    #[serde(rename = "type")]
    pub kind: String,
    pub channel: String,
    pub epoch: String,
    pub seq: u64,
    /// The publication id, the same on every channel it was routed to.
    pub id: String,
    pub timestamp: String,
    /// The tier needed to see `data`, when the publication has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
    /// For a `locked` stub: the type of the publication it stands for (JSON `kind`).
    #[serde(default, rename = "kind", skip_serializing_if = "Option::is_none")]
    pub locked_kind: Option<String>,
}

impl Envelope {
    /// True for a `locked` stub.
    pub fn is_locked(&self) -> bool {
        self.kind == "locked"
    }

    /// `data` parsed as `T` (`None` for a stub).
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, serde_json::Error> {
        self.data
            .as_deref()
            .map(|raw| serde_json::from_str(raw.get()))
            .transpose()
    }

    /// `data.signal_id` when `data` is an object carrying a string one.
    pub fn signal_id(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Probe {
            signal_id: Option<Value>,
        }
        let raw = self.data.as_deref()?;
        match serde_json::from_str::<Probe>(raw.get()).ok()?.signal_id? {
            Value::String(id) => Some(id),
            _ => None,
        }
    }

    /// The envelope as one line of JSON, fields in the server's order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .expect("an envelope of strings, numbers and raw JSON serializes")
    }
}

/// The server's `welcome`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Welcome {
    pub connection_id: String,
    #[serde(default)]
    pub heartbeat_interval_ms: Option<u64>,
}

/// One channel of a `subscribed` reply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct SubscribedChannel {
    pub channel: String,
    pub epoch: String,
    pub seq: u64,
    pub recovered: bool,
}

/// An `error` frame.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ErrorFrame {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
}

/// A frame from the server, by its `type`.
#[derive(Debug)]
pub(crate) enum ServerFrame {
    Welcome(Welcome),
    Subscribed(Vec<SubscribedChannel>),
    /// Without `id`, the server took the channels away (`reason` says why).
    Unsubscribed {
        id: Option<u64>,
        channels: Vec<String>,
        reason: Option<String>,
    },
    /// The connection's identity changed (an `auth` reply, or an admin tier change).
    Authenticated,
    Error(ErrorFrame),
    Publication(Envelope),
    /// `pong`, `stats`: nothing to do.
    Other,
}

/// Parses a text frame.
pub(crate) fn parse(text: &str) -> Result<ServerFrame, serde_json::Error> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Subscribed {
        channels: Vec<SubscribedChannel>,
    }
    #[derive(Deserialize)]
    struct Unsubscribed {
        #[serde(default)]
        id: Option<u64>,
        #[serde(default)]
        channels: Vec<String>,
        #[serde(default)]
        reason: Option<String>,
    }
    let head: Head<'_> = serde_json::from_str(text)?;
    Ok(match &*head.kind {
        "welcome" => ServerFrame::Welcome(serde_json::from_str(text)?),
        "subscribed" => ServerFrame::Subscribed(serde_json::from_str::<Subscribed>(text)?.channels),
        "unsubscribed" => {
            let u: Unsubscribed = serde_json::from_str(text)?;
            ServerFrame::Unsubscribed {
                id: u.id,
                channels: u.channels,
                reason: u.reason,
            }
        }
        "authenticated" => ServerFrame::Authenticated,
        "error" => ServerFrame::Error(serde_json::from_str(text)?),
        "pong" | "stats" => ServerFrame::Other,
        _ => ServerFrame::Publication(serde_json::from_str(text)?),
    })
}

/// A channel position sent in `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Position {
    pub epoch: String,
    pub seq: u64,
}

/// The most channels the server takes in one `subscribe` or `unsubscribe` frame by default
/// (`limits.max_channels_per_frame`); more are sent in several frames.
pub(crate) const MAX_CHANNELS_PER_FRAME: usize = 100;

/// `{"type":"subscribe","id":..,"channels":[..],"since":{..}}`.
pub(crate) fn subscribe_frame(
    id: u64,
    channels: &[String],
    since: &BTreeMap<String, Position>,
) -> String {
    json!({"type": "subscribe", "id": id, "channels": channels, "since": since}).to_string()
}

/// `{"type":"unsubscribe","id":..,"channels":[..]}`.
pub(crate) fn unsubscribe_frame(id: u64, channels: &[String]) -> String {
    json!({"type": "unsubscribe", "id": id, "channels": channels}).to_string()
}

/// `{"type":"auth","id":..,"token":..}`.
pub(crate) fn auth_frame(id: u64, token: &str) -> String {
    json!({"type": "auth", "id": id, "token": token}).to_string()
}

/// `{"type":"ping","id":..}`.
pub(crate) fn ping_frame(id: u64) -> String {
    json!({"type": "ping", "id": id}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNAL: &str = r#"{"type":"signal","channel":"signals","epoch":"e1","seq":42,"id":"sig_01","timestamp":"2025-08-11T00:23:15.123Z","tier":"premium","data":{"signal_id":"test_001","entry_price":1.0950}}"#;

    #[test]
    fn a_publication_prints_back_as_received_with_its_digits() {
        let ServerFrame::Publication(env) = parse(SIGNAL).unwrap() else {
            panic!("a publication")
        };
        assert_eq!((env.channel.as_str(), env.seq), ("signals", 42));
        assert_eq!(env.signal_id().as_deref(), Some("test_001"));
        assert_eq!(env.to_json(), SIGNAL);
    }

    #[test]
    fn a_locked_stub_keeps_its_kind_and_has_no_data() {
        let text = r#"{"type":"locked","channel":"signals","epoch":"e1","seq":43,"id":"sig_02","timestamp":"t","tier":"premium","kind":"signal"}"#;
        let ServerFrame::Publication(env) = parse(text).unwrap() else {
            panic!("a publication")
        };
        assert!(env.is_locked());
        assert_eq!(env.locked_kind.as_deref(), Some("signal"));
        assert_eq!(env.signal_id(), None);
        assert_eq!(env.to_json(), text);
    }

    #[test]
    fn control_frames_parse_by_type() {
        let subscribed = r#"{"type":"subscribed","id":1,"channels":[{"channel":"a","epoch":"e","seq":3,"recovered":true}]}"#;
        match parse(subscribed).unwrap() {
            ServerFrame::Subscribed(chs) => assert_eq!(
                chs,
                [SubscribedChannel {
                    channel: "a".into(),
                    epoch: "e".into(),
                    seq: 3,
                    recovered: true
                }]
            ),
            other => panic!("{other:?}"),
        }
        let unsub = r#"{"type":"unsubscribed","channels":["premium"],"reason":"tier_changed"}"#;
        assert!(matches!(
            parse(unsub).unwrap(),
            ServerFrame::Unsubscribed { id: None, reason: Some(r), .. } if r == "tier_changed"
        ));
        assert!(matches!(
            parse(r#"{"type":"pong","id":4,"server_time":"t"}"#).unwrap(),
            ServerFrame::Other
        ));
        assert!(parse(r#"{"no":"type"}"#).is_err());
    }

    #[test]
    fn subscribe_frames_carry_since_per_channel() {
        let mut since = BTreeMap::new();
        since.insert(
            "a".to_string(),
            Position {
                epoch: "e1".into(),
                seq: 41,
            },
        );
        let frame: Value =
            serde_json::from_str(&subscribe_frame(7, &["a".into(), "b".into()], &since)).unwrap();
        assert_eq!(
            frame,
            json!({"type":"subscribe","id":7,"channels":["a","b"],"since":{"a":{"epoch":"e1","seq":41}}})
        );
    }
}
