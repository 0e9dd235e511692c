//! The typed publish bodies of the HTTP API (protocol section 9, item 24): alerts, market data,
//! agent insights and narratives, validated and turned into a publication type, its `data` and
//! the channels it goes to. Also the channel-name rule of section 1.
//!
//! Rules (errors as in [`crate::signal`]: 400 for a body that is not a JSON object, 422 naming
//! the field otherwise; `null` counts as absent; unknown fields are dropped):
//!
//! | endpoint | fields | type | channels | `data` |
//! |---|---|---|---|---|
//! | `/api/v1/alerts` | `alert_type`, `source`, `content`, `symbol?`, `embed?` | `alert` | `alerts`, `alerts:{alert_type}`, `unified`, `market:{symbol}` | `{alert_type, source, symbol?, content, embed?}` |
//! | `/api/v1/market-data` | `symbol`, `data` | `market_data` | `market:{symbol}` | `{symbol, data}` |
//! | `/api/v1/agent-insights` | `agent`, `insight` | `agent_insight` | `agents:{agent}` | `{agent, insight}` |
//! | `/api/v1/narratives` | `narrative` | `narrative` | `narrative` | `{narrative}` |
//!
//! * `alert_type`, `symbol` and `agent` are kept as given (case included) and must make the
//!   channel name valid: `[A-Za-z0-9_.:@-]`, at most 128 characters with the prefix.
//! * `source`: 1-128 characters; `content`: 1-4096 characters; neither blank nor holding
//!   control characters. `embed`: a JSON object.
//! * `data`, `insight`, `narrative`: any JSON value except `null`; a string must not be blank.
//!   JSON values are kept verbatim (digits and key order), minus insignificant whitespace.
//! * Every body may carry `tier` (a tier name or alias of the ladder; the publication is then
//!   locked for lower tiers) and `idempotency_key` (1-128 characters, no control characters).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::signal::{compact_json, json_string, parse_object, required, text, tier_field};
use crate::signal::{FieldError, SignalError};
use signalhub_hub::tier::{TierId, TierLadder};

pub use signalhub_hub::channel::MAX_CHANNEL_LEN;

/// The longest alert `content`, in characters.
pub const MAX_CONTENT_CHARS: usize = 4096;

/// The longest alert `source` and `idempotency_key`, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Publication type of `/api/v1/alerts`.
pub const KIND_ALERT: &str = "alert";
/// Publication type of `/api/v1/market-data`.
pub const KIND_MARKET_DATA: &str = "market_data";
/// Publication type of `/api/v1/agent-insights`.
pub const KIND_AGENT_INSIGHT: &str = "agent_insight";
/// Publication type of `/api/v1/narratives`.
pub const KIND_NARRATIVE: &str = "narrative";

/// True when the whole name matches `^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$` (section 1).
pub fn valid_channel_name(name: &str) -> bool {
    signalhub_hub::channel::is_valid(name)
}

/// A validated typed publish, ready to hand to the hub.
#[derive(Debug, Clone)]
pub struct TypedPublish {
    /// The publication `type`: one of the `KIND_*` constants.
    pub kind: &'static str,
    /// Where it goes, in order; all valid channel names.
    pub channels: Vec<String>,
    /// The publication `data`: a compact JSON object.
    pub data: Box<RawValue>,
    /// The tier the publication is locked to, when given.
    pub tier: Option<TierId>,
    /// The publisher's idempotency key, when given in the body.
    pub idempotency_key: Option<String>,
}

#[derive(Deserialize)]
struct AlertBody<'a> {
    #[serde(borrow)]
    alert_type: Option<&'a RawValue>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
    #[serde(borrow)]
    symbol: Option<&'a RawValue>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    embed: Option<&'a RawValue>,
    #[serde(borrow)]
    tier: Option<&'a RawValue>,
    #[serde(borrow)]
    idempotency_key: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct AlertData<'a> {
    alert_type: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a str>,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    embed: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MarketDataBody<'a> {
    #[serde(borrow)]
    symbol: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    tier: Option<&'a RawValue>,
    #[serde(borrow)]
    idempotency_key: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct MarketData<'a> {
    symbol: &'a str,
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct AgentInsightBody<'a> {
    #[serde(borrow)]
    agent: Option<&'a RawValue>,
    #[serde(borrow)]
    insight: Option<&'a RawValue>,
    #[serde(borrow)]
    tier: Option<&'a RawValue>,
    #[serde(borrow)]
    idempotency_key: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct AgentInsight<'a> {
    agent: &'a str,
    insight: &'a RawValue,
}

#[derive(Deserialize)]
struct NarrativeBody<'a> {
    #[serde(borrow)]
    narrative: Option<&'a RawValue>,
    #[serde(borrow)]
    tier: Option<&'a RawValue>,
    #[serde(borrow)]
    idempotency_key: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct Narrative<'a> {
    narrative: &'a RawValue,
}

/// Validates a `/api/v1/alerts` body.
pub fn parse_alert(body: &[u8], ladder: &TierLadder) -> Result<TypedPublish, SignalError> {
    let b: AlertBody = parse_object(body)?;
    let alert_type = channel_part(
        required(b.alert_type, "alert_type")?,
        "alert_type",
        "alerts:",
    )?;
    let source = text(required(b.source, "source")?, "source", MAX_NAME_CHARS)?;
    let content = text(
        required(b.content, "content")?,
        "content",
        MAX_CONTENT_CHARS,
    )?;
    let symbol = b
        .symbol
        .map(|r| channel_part(r, "symbol", "market:"))
        .transpose()?;
    let embed = match b.embed {
        None => None,
        Some(raw) if raw.get().trim_start().starts_with('{') => Some(compact_json(raw)),
        Some(_) => return Err(FieldError::new("embed", "embed must be an object").into()),
    };
    let (tier, idempotency_key) = common(b.tier, b.idempotency_key, ladder)?;

    let mut channels = vec![
        "alerts".to_string(),
        format!("alerts:{alert_type}"),
        "unified".to_string(),
    ];
    if let Some(symbol) = &symbol {
        channels.push(format!("market:{symbol}"));
    }
    let data = to_raw(&AlertData {
        alert_type: &alert_type,
        source: &source,
        symbol: symbol.as_deref(),
        content: &content,
        embed: embed.as_deref(),
    });
    Ok(TypedPublish {
        kind: KIND_ALERT,
        channels,
        data,
        tier,
        idempotency_key,
    })
}

/// Validates a `/api/v1/market-data` body.
pub fn parse_market_data(body: &[u8], ladder: &TierLadder) -> Result<TypedPublish, SignalError> {
    let b: MarketDataBody = parse_object(body)?;
    let symbol = channel_part(required(b.symbol, "symbol")?, "symbol", "market:")?;
    let data = any_value(required(b.data, "data")?, "data")?;
    let (tier, idempotency_key) = common(b.tier, b.idempotency_key, ladder)?;
    Ok(TypedPublish {
        kind: KIND_MARKET_DATA,
        channels: vec![format!("market:{symbol}")],
        data: to_raw(&MarketData {
            symbol: &symbol,
            data: &data,
        }),
        tier,
        idempotency_key,
    })
}

/// Validates a `/api/v1/agent-insights` body.
pub fn parse_agent_insight(body: &[u8], ladder: &TierLadder) -> Result<TypedPublish, SignalError> {
    let b: AgentInsightBody = parse_object(body)?;
    let agent = channel_part(required(b.agent, "agent")?, "agent", "agents:")?;
    let insight = any_value(required(b.insight, "insight")?, "insight")?;
    let (tier, idempotency_key) = common(b.tier, b.idempotency_key, ladder)?;
    Ok(TypedPublish {
        kind: KIND_AGENT_INSIGHT,
        channels: vec![format!("agents:{agent}")],
        data: to_raw(&AgentInsight {
            agent: &agent,
            insight: &insight,
        }),
        tier,
        idempotency_key,
    })
}

/// Validates a `/api/v1/narratives` body.
pub fn parse_narrative(body: &[u8], ladder: &TierLadder) -> Result<TypedPublish, SignalError> {
    let b: NarrativeBody = parse_object(body)?;
    let narrative = any_value(required(b.narrative, "narrative")?, "narrative")?;
    let (tier, idempotency_key) = common(b.tier, b.idempotency_key, ladder)?;
    Ok(TypedPublish {
        kind: KIND_NARRATIVE,
        channels: vec!["narrative".to_string()],
        data: to_raw(&Narrative {
            narrative: &narrative,
        }),
        tier,
        idempotency_key,
    })
}

/// A string that, after `prefix`, makes a valid channel name.
fn channel_part(raw: &RawValue, field: &str, prefix: &str) -> Result<String, FieldError> {
    let s = json_string(raw, field)?;
    if s.is_empty() || !valid_channel_name(&format!("{prefix}{s}")) {
        return Err(FieldError::new(
            field,
            format!(
                "{field} must be 1-{} of [A-Za-z0-9_.:@-]",
                MAX_CHANNEL_LEN - prefix.len()
            ),
        ));
    }
    Ok(s)
}

/// Any JSON value but `null` (already excluded by the caller) or a blank string.
fn any_value(raw: &RawValue, field: &str) -> Result<Box<RawValue>, FieldError> {
    if raw.get().trim_start().starts_with('"') {
        let s = json_string(raw, field)?;
        if s.trim().is_empty() {
            return Err(FieldError::new(field, format!("{field} must not be blank")));
        }
    }
    Ok(compact_json(raw))
}

/// The optional `tier` and `idempotency_key` every typed body may carry.
fn common(
    tier: Option<&RawValue>,
    idempotency_key: Option<&RawValue>,
    ladder: &TierLadder,
) -> Result<(Option<TierId>, Option<String>), FieldError> {
    let tier = tier.map(|r| tier_field(r, ladder)).transpose()?;
    let key = idempotency_key
        .map(|r| text(r, "idempotency_key", MAX_NAME_CHARS))
        .transpose()?;
    Ok((tier, key))
}

fn to_raw<T: Serialize>(value: &T) -> Box<RawValue> {
    // Only strings and raw JSON in string-keyed structs: serialization cannot fail.
    serde_json::value::to_raw_value(value).expect("typed publish data always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ladder() -> TierLadder {
        TierLadder::default()
    }

    type Parser = fn(&[u8], &TierLadder) -> Result<TypedPublish, SignalError>;

    fn run(parser: Parser, body: &Value) -> Result<TypedPublish, SignalError> {
        parser(body.to_string().as_bytes(), &ladder())
    }

    fn data(p: &TypedPublish) -> Value {
        serde_json::from_str(p.data.get()).unwrap()
    }

    fn alert() -> Value {
        json!({"alert_type": "whale_move", "source": "monitor", "content": "BTC moved"})
    }

    #[test]
    fn channel_names_follow_section_1() {
        for ok in [
            "a",
            "signals",
            "bot:7",
            "user:0xabc@x",
            "A.b_c-d",
            &"a".repeat(128),
        ] {
            assert!(valid_channel_name(ok), "{ok}");
        }
        for bad in ["", ":a", "-a", "a b", "a/b", "é", "a$", &"a".repeat(129)] {
            assert!(!valid_channel_name(bad), "{bad}");
        }
    }

    #[test]
    fn alert_is_routed_to_alerts_type_and_unified() {
        let p = run(parse_alert, &alert()).unwrap();
        assert_eq!(p.kind, "alert");
        assert_eq!(p.channels, ["alerts", "alerts:whale_move", "unified"]);
        assert_eq!(data(&p), alert());
        assert_eq!(p.tier, None);
        assert_eq!(p.idempotency_key, None);
    }

    #[test]
    fn alert_with_symbol_also_goes_to_market_channel() {
        let body = r#"{"alert_type":"whale_move","source":"monitor","content":"BTC moved",
            "symbol":"BTC-USD","embed":{ "title": "t", "fields": [1.50] },"unknown":1}"#;
        let p = parse_alert(body.as_bytes(), &ladder()).unwrap();
        assert_eq!(
            p.channels,
            ["alerts", "alerts:whale_move", "unified", "market:BTC-USD"]
        );
        assert_eq!(
            p.data.get(),
            r#"{"alert_type":"whale_move","source":"monitor","symbol":"BTC-USD","content":"BTC moved","embed":{"title":"t","fields":[1.50]}}"#
        );
    }

    #[test]
    fn alert_missing_each_required_field_is_refused() {
        for field in ["alert_type", "source", "content"] {
            let mut body = alert();
            body.as_object_mut().unwrap().remove(field);
            let err = run(parse_alert, &body).unwrap_err();
            assert_eq!(err.field(), Some(field));
            assert_eq!(err.to_string(), format!("{field} is required"));
        }
    }

    #[test]
    fn alert_field_rules_are_enforced() {
        for (field, value) in [
            ("alert_type", json!("")),
            ("alert_type", json!("has space")),
            ("alert_type", json!(5)),
            ("source", json!("")),
            ("content", json!("   ")),
            ("content", json!("x".repeat(4097))),
            ("symbol", json!("BTC/USD")),
            ("embed", json!("not an object")),
            ("tier", json!("platinum")),
            ("idempotency_key", json!("")),
        ] {
            let mut body = alert();
            body[field] = value.clone();
            let err = run(parse_alert, &body).unwrap_err();
            assert_eq!(err.field(), Some(field), "{field} = {value}");
        }
    }

    #[test]
    fn tier_and_idempotency_key_are_passed_through() {
        let mut body = alert();
        body["tier"] = json!("Institutional");
        body["idempotency_key"] = json!("k-1");
        let p = run(parse_alert, &body).unwrap();
        assert_eq!(p.tier, ladder().parse("whale"));
        assert_eq!(p.idempotency_key.as_deref(), Some("k-1"));
        assert!(data(&p).get("tier").is_none());
    }

    #[test]
    fn market_data_goes_to_its_market_channel() {
        let body = r#"{"symbol":"BTC-USD","data":{ "price" : 65000.50, "volume": 12 }}"#;
        let p = parse_market_data(body.as_bytes(), &ladder()).unwrap();
        assert_eq!(p.kind, "market_data");
        assert_eq!(p.channels, ["market:BTC-USD"]);
        assert_eq!(
            p.data.get(),
            r#"{"symbol":"BTC-USD","data":{"price":65000.50,"volume":12}}"#
        );
    }

    #[test]
    fn market_data_missing_each_field_is_refused() {
        for (body, field) in [
            (json!({"data": {}}), "symbol"),
            (json!({"symbol": "BTC-USD"}), "data"),
            (json!({"symbol": "BTC-USD", "data": null}), "data"),
        ] {
            assert_eq!(
                run(parse_market_data, &body).unwrap_err().field(),
                Some(field)
            );
        }
    }

    #[test]
    fn agent_insight_goes_to_its_agent_channel() {
        let body = json!({"agent": "sentinel", "insight": {"text": "bullish", "score": 0.7}});
        let p = run(parse_agent_insight, &body).unwrap();
        assert_eq!(p.kind, "agent_insight");
        assert_eq!(p.channels, ["agents:sentinel"]);
        assert_eq!(data(&p), body);
    }

    #[test]
    fn agent_insight_missing_each_field_is_refused() {
        for (body, field) in [
            (json!({"insight": "x"}), "agent"),
            (json!({"agent": "sentinel"}), "insight"),
            (json!({"agent": "sentinel", "insight": " "}), "insight"),
            (json!({"agent": "bad name", "insight": "x"}), "agent"),
        ] {
            assert_eq!(
                run(parse_agent_insight, &body).unwrap_err().field(),
                Some(field)
            );
        }
    }

    #[test]
    fn narrative_goes_to_the_narrative_channel() {
        let body = json!({"narrative": "Risk-on across majors", "tier": "premium"});
        let p = run(parse_narrative, &body).unwrap();
        assert_eq!(p.kind, "narrative");
        assert_eq!(p.channels, ["narrative"]);
        assert_eq!(data(&p), json!({"narrative": "Risk-on across majors"}));
        assert_eq!(p.tier, ladder().parse("premium"));
    }

    #[test]
    fn narrative_missing_is_refused() {
        let err = run(parse_narrative, &json!({"text": "x"})).unwrap_err();
        assert_eq!(err.field(), Some("narrative"));
        assert_eq!(err.status(), 422);
    }

    #[test]
    fn typed_body_not_an_object_is_malformed() {
        let parsers: [Parser; 4] = [
            parse_alert,
            parse_market_data,
            parse_agent_insight,
            parse_narrative,
        ];
        for parser in parsers {
            for body in ["[]", "1", "{", ""] {
                let err = parser(body.as_bytes(), &ladder()).unwrap_err();
                assert_eq!(err.status(), 400, "{body:?}");
            }
        }
    }

    #[test]
    fn long_names_that_overflow_the_channel_limit_are_refused() {
        let ok = json!({"symbol": "A".repeat(121), "data": 1});
        assert!(run(parse_market_data, &ok).is_ok());
        let too_long = json!({"symbol": "A".repeat(122), "data": 1});
        assert_eq!(
            run(parse_market_data, &too_long).unwrap_err().to_string(),
            "symbol must be 1-121 of [A-Za-z0-9_.:@-]"
        );
    }
}
