//! The JSON frames of the WebSocket protocol: parsing client frames, building replies.
//!
//! Client frames are small and rare next to publications, so they are parsed through
//! `serde_json::Value` for precise error classification (spec section 9, items 1-3).
//! A `subscribe` or `unsubscribe` naming more than `max_channels` channels (or a `since`
//! with more entries) is refused here, before any per-channel work is built for it.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use signalhub_hub::{Position, Since};

/// A parsed client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Subscribe {
        id: Option<i64>,
        channels: Vec<String>,
        since: HashMap<String, Since>,
    },
    Unsubscribe {
        id: Option<i64>,
        channels: Vec<String>,
    },
    Auth {
        id: Option<i64>,
        token: String,
    },
    Ping {
        id: Option<i64>,
    },
    Stats {
        id: Option<i64>,
    },
}

/// A client frame that could not be used; answered with an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub id: Option<i64>,
    pub code: &'static str,
    pub message: String,
}

fn bad_request(id: Option<i64>, message: impl Into<String>) -> FrameError {
    FrameError {
        id,
        code: "bad_request",
        message: message.into(),
    }
}

fn too_many_channels(id: Option<i64>, max: usize) -> FrameError {
    bad_request(id, format!("a frame may name at most {max} channels"))
}

fn string_list(
    obj: &Map<String, Value>,
    id: Option<i64>,
    max: usize,
) -> Result<Vec<String>, FrameError> {
    let Some(list) = obj.get("channels") else {
        return Err(bad_request(id, "channels is required"));
    };
    let Some(list) = list.as_array() else {
        return Err(bad_request(id, "channels must be an array of strings"));
    };
    if list.len() > max {
        return Err(too_many_channels(id, max));
    }
    list.iter()
        .map(|v| {
            v.as_str()
                .map(String::from)
                .ok_or_else(|| bad_request(id, "channels must be an array of strings"))
        })
        .collect()
}

fn parse_since(
    obj: &Map<String, Value>,
    id: Option<i64>,
    max: usize,
) -> Result<HashMap<String, Since>, FrameError> {
    let mut out = HashMap::new();
    let Some(since) = obj.get("since") else {
        return Ok(out);
    };
    if since.is_null() {
        return Ok(out);
    }
    let Some(since) = since.as_object() else {
        return Err(bad_request(
            id,
            "since must be an object of channel -> {epoch, seq}",
        ));
    };
    if since.len() > max {
        return Err(too_many_channels(id, max));
    }
    for (channel, pos) in since {
        let epoch = pos.get("epoch").and_then(Value::as_str);
        let seq = pos.get("seq").and_then(Value::as_u64);
        match (epoch, seq) {
            (Some(epoch), Some(seq)) => {
                out.insert(
                    channel.clone(),
                    Since {
                        epoch: epoch.to_string(),
                        seq,
                    },
                );
            }
            _ => {
                return Err(bad_request(
                    id,
                    format!(
                    "since.{channel} must be {{\"epoch\": string, \"seq\": non-negative integer}}"
                ),
                ))
            }
        }
    }
    Ok(out)
}

/// Parses one text frame; `max_channels` bounds the channels a (un)subscribe may name.
pub fn parse(text: &str, max_channels: usize) -> Result<Command, FrameError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| bad_request(None, format!("malformed JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(bad_request(None, "a frame must be a JSON object"));
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(id) => Some(id),
            None => return Err(bad_request(None, "id must be an integer")),
        },
    };
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return Err(bad_request(id, "type must be a string"));
    };
    match kind {
        "subscribe" => {
            let channels = string_list(&obj, id, max_channels)?;
            // A subscribe with nothing in it would get no answer at all (no channel to
            // refuse, `subscribed` omitted when none is allowed): say so instead.
            if channels.is_empty() {
                return Err(bad_request(id, "channels must name at least one channel"));
            }
            Ok(Command::Subscribe {
                id,
                channels,
                since: parse_since(&obj, id, max_channels)?,
            })
        }
        "unsubscribe" => Ok(Command::Unsubscribe {
            id,
            channels: string_list(&obj, id, max_channels)?,
        }),
        "auth" => match obj.get("token").and_then(Value::as_str) {
            Some(token) => Ok(Command::Auth {
                id,
                token: token.to_string(),
            }),
            None => Err(bad_request(id, "token must be a string")),
        },
        "ping" => Ok(Command::Ping { id }),
        "stats" => Ok(Command::Stats { id }),
        other => Err(FrameError {
            id,
            code: "unknown_type",
            message: format!("unknown frame type {:?}", truncate(other, 64)),
        }),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn to_bytes(value: Value) -> Bytes {
    Bytes::from(value.to_string())
}

fn with_id(mut value: Value, id: Option<i64>) -> Value {
    if let (Some(id), Some(obj)) = (id, value.as_object_mut()) {
        obj.insert("id".into(), id.into());
    }
    value
}

/// An `error` frame; `channel` is set for per-channel refusals.
pub fn error_frame(id: Option<i64>, code: &str, channel: Option<&str>, message: &str) -> Bytes {
    let mut v = json!({"type": "error", "code": code, "message": message});
    if let Some(channel) = channel {
        v["channel"] = channel.into();
    }
    to_bytes(with_id(v, id))
}

/// The `subscribed` reply.
pub fn subscribed_frame(id: Option<i64>, positions: &[Position]) -> Bytes {
    let channels: Vec<Value> = positions
        .iter()
        .map(|p| json!({"channel": &*p.channel, "epoch": &*p.epoch, "seq": p.seq, "recovered": p.recovered}))
        .collect();
    to_bytes(with_id(
        json!({"type": "subscribed", "channels": channels}),
        id,
    ))
}

/// The `unsubscribed` reply (or, with `reason`, a server-initiated removal).
pub fn unsubscribed_frame(id: Option<i64>, channels: &[&str], reason: Option<&str>) -> Bytes {
    let mut v = json!({"type": "unsubscribed", "channels": channels});
    if let Some(reason) = reason {
        v["reason"] = reason.into();
    }
    to_bytes(with_id(v, id))
}

/// The `authenticated` frame: the reply to an `auth` frame, or (without `id`) a notice
/// that the connection's identity or tier changed.
pub fn authenticated_frame(id: Option<i64>, auth: &str, tier: &str, user: Option<&str>) -> Bytes {
    let mut v = json!({"type": "authenticated", "auth": auth, "tier": tier});
    if let Some(user) = user {
        v["user"] = user.into();
    }
    to_bytes(with_id(v, id))
}

/// The `pong` reply to a `ping` frame.
pub fn pong_frame(id: Option<i64>) -> Bytes {
    to_bytes(with_id(
        json!({"type": "pong", "server_time": now_rfc3339()}),
        id,
    ))
}

/// The `stats` reply.
pub fn stats_frame(id: Option<i64>, connections: usize, channels: usize, uptime_s: u64) -> Bytes {
    to_bytes(with_id(
        json!({"type": "stats", "connections": connections, "channels": channels, "uptime_s": uptime_s}),
        id,
    ))
}

/// The `welcome` frame sent first on every connection.
pub fn welcome_frame(
    connection_id: &str,
    auth: &str,
    tier: &str,
    user: Option<&str>,
    heartbeat_ms: u64,
    max_message_bytes: usize,
) -> Bytes {
    let mut v = json!({
        "type": "welcome",
        "connection_id": connection_id,
        "auth": auth,
        "tier": tier,
        "heartbeat_interval_ms": heartbeat_ms,
        "max_message_bytes": max_message_bytes,
        "server_time": now_rfc3339(),
    });
    if let Some(user) = user {
        v["user"] = user.into();
    }
    to_bytes(v)
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Command, FrameError> {
        super::parse(text, 100)
    }

    fn err(text: &str) -> FrameError {
        parse(text).unwrap_err()
    }

    fn frame_naming(kind: &str, n: usize) -> String {
        let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        json!({"type": kind, "id": 8, "channels": names}).to_string()
    }

    #[test]
    fn a_frame_naming_more_channels_than_the_limit_is_one_bad_request_naming_it() {
        for kind in ["subscribe", "unsubscribe"] {
            let e = err(&frame_naming(kind, 101));
            assert_eq!((e.code, e.id), ("bad_request", Some(8)), "{kind}");
            assert_eq!(e.message, "a frame may name at most 100 channels");
            match parse(&frame_naming(kind, 100)).unwrap() {
                Command::Subscribe { channels, .. } | Command::Unsubscribe { channels, .. } => {
                    assert_eq!(channels.len(), 100)
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_since_with_more_entries_than_the_limit_is_a_bad_request() {
        let since: Map<String, Value> = (0..101)
            .map(|i| (format!("c{i}"), json!({"epoch": "e", "seq": 1})))
            .collect();
        let text = json!({"type": "subscribe", "channels": ["c0"], "since": since}).to_string();
        assert_eq!(err(&text).message, "a frame may name at most 100 channels");
    }

    #[test]
    fn parses_every_client_frame_type() {
        assert_eq!(
            parse(r#"{"type":"subscribe","id":1,"channels":["a"],"since":{"a":{"epoch":"e","seq":4}}}"#).unwrap(),
            Command::Subscribe {
                id: Some(1),
                channels: vec!["a".into()],
                since: [("a".to_string(), Since { epoch: "e".into(), seq: 4 })].into(),
            }
        );
        assert_eq!(
            parse(r#"{"type":"unsubscribe","channels":[]}"#).unwrap(),
            Command::Unsubscribe {
                id: None,
                channels: vec![]
            }
        );
        assert_eq!(
            parse(r#"{"type":"auth","id":3,"token":"t"}"#).unwrap(),
            Command::Auth {
                id: Some(3),
                token: "t".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"ping","id":4}"#).unwrap(),
            Command::Ping { id: Some(4) }
        );
        assert_eq!(
            parse(r#"{"type":"stats"}"#).unwrap(),
            Command::Stats { id: None }
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(
            parse(r#"{"type":"ping","id":1,"extra":[1,2]}"#).unwrap(),
            Command::Ping { id: Some(1) }
        );
    }

    #[test]
    fn malformed_json_and_non_objects_are_bad_requests() {
        for text in ["{", "[]", "\"x\"", "42", "null", ""] {
            assert_eq!(err(text).code, "bad_request", "{text}");
        }
    }

    #[test]
    fn missing_or_non_string_type_is_a_bad_request() {
        assert_eq!(err(r#"{"id":1}"#).code, "bad_request");
        assert_eq!(err(r#"{"type":5}"#).code, "bad_request");
    }

    #[test]
    fn unknown_type_is_unknown_type_and_echoes_the_id() {
        let e = err(r#"{"type":"publish","id":9}"#);
        assert_eq!((e.code, e.id), ("unknown_type", Some(9)));
    }

    #[test]
    fn non_integer_id_is_a_bad_request() {
        for text in [
            r#"{"type":"ping","id":"1"}"#,
            r#"{"type":"ping","id":1.5}"#,
            r#"{"type":"ping","id":[1]}"#,
        ] {
            assert_eq!(err(text).code, "bad_request", "{text}");
        }
    }

    #[test]
    fn wrong_shapes_are_bad_requests() {
        for text in [
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","channels":"signals"}"#,
            r#"{"type":"subscribe","channels":[1]}"#,
            r#"{"type":"subscribe","channels":["a"],"since":[]}"#,
            r#"{"type":"subscribe","channels":["a"],"since":{"a":{"seq":1}}}"#,
            r#"{"type":"subscribe","channels":["a"],"since":{"a":{"epoch":"e","seq":-1}}}"#,
            r#"{"type":"unsubscribe","channels":{}}"#,
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","token":7}"#,
        ] {
            assert_eq!(err(text).code, "bad_request", "{text}");
        }
    }

    #[test]
    fn replies_carry_the_id_only_when_given() {
        let v: Value = serde_json::from_slice(&pong_frame(Some(4))).unwrap();
        assert_eq!(v["id"], 4);
        let v: Value = serde_json::from_slice(&pong_frame(None)).unwrap();
        assert!(v.get("id").is_none());
    }
}
