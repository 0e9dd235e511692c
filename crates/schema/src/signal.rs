//! The trading-signal record (protocol section 7 and section 9, items 34-35): validating and
//! normalizing a publisher's request body, writing the canonical record, and choosing the
//! channels a signal is routed to.
//!
//! Decisions beyond the protocol text, all enforced by [`Signal::parse`]:
//!
//! * A body that is not JSON, not a JSON object, or repeats a known field is
//!   [`SignalError::Malformed`] (400); a field that breaks a rule, a wrong JSON type included,
//!   is [`SignalError::Invalid`] (422) naming the field.
//! * `null` is the same as an absent field (so a required field set to `null` is "required").
//! * Prices (`entry_price`, `stop_loss`, each `take_profit`) must be greater than 0.
//!   `take_profit` holds at most [`MAX_TAKE_PROFIT`] targets and is always written as a list,
//!   `[]` when absent. Numbers follow [`crate::decimal`]: digits are kept as given.
//! * `signal_type` and `pair` are trimmed before being upper-cased.
//! * `timeframe`, `strategy`, `source`: strings of 1 to [`MAX_TEXT_CHARS`] characters with no
//!   control characters, kept as given.
//! * `timestamp` is truncated (not rounded) to milliseconds after conversion to UTC, and must
//!   fall within the years 0000-9999 in UTC (so the record stays RFC 3339).
//! * Generated ids are `sig_` followed by a 26-character ULID (48-bit millisecond time, 80
//!   random bits, Crockford base32): time-ordered to the millisecond.
//! * Tier thresholds compare exactly: `0.8` in the rules means 8/10, so a confidence of
//!   `0.79999999999999999999` is below it.
//! * `metadata` must be an object; it is kept verbatim (digits and key order preserved, only
//!   insignificant whitespace removed), as a [`RawValue`].
//!
//! A record written by [`Signal::to_json`] parses back to the same [`Signal`].

use std::fmt;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decimal::Decimal;
use crate::typed::valid_channel_name;
use signalhub_hub::tier::{TierId, TierLadder};

/// The signal types every hub accepts; more come from [`SignalRules::extra_signal_types`].
pub const BUILTIN_SIGNAL_TYPES: [&str; 4] = ["BUY", "SELL", "HOLD", "CLOSE"];

/// The longest `timeframe`, `strategy` or `source`, in characters.
pub const MAX_TEXT_CHARS: usize = 128;

/// The most `take_profit` targets a signal may carry.
pub const MAX_TAKE_PROFIT: usize = 32;

/// The longest `signal_id`.
pub const MAX_SIGNAL_ID_LEN: usize = 128;

/// The longest `pair` (after normalization).
pub const MAX_PAIR_LEN: usize = 32;

/// The longest signal type (built-in or configured).
pub const MAX_SIGNAL_TYPE_LEN: usize = 32;

/// Configurable thresholds and extra signal types.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRules {
    /// Confidence at or above which a signal without a `tier` is `premium` (default 0.8).
    pub premium_min_confidence: f64,
    /// Confidence at or above which a signal without a `tier` is `whale` (default 0.9).
    pub whale_min_confidence: f64,
    /// Confidence at or above which a signal goes to `signals:high` (default 0.8).
    pub high_confidence: f64,
    /// Signal types accepted besides BUY, SELL, HOLD and CLOSE (matched case-insensitively).
    pub extra_signal_types: Vec<String>,
}

impl Default for SignalRules {
    fn default() -> Self {
        SignalRules {
            premium_min_confidence: 0.8,
            whale_min_confidence: 0.9,
            high_confidence: 0.8,
            extra_signal_types: Vec::new(),
        }
    }
}

impl SignalRules {
    /// Checks configured values: thresholds within 0..1 and extra types of `[A-Za-z0-9_-]`,
    /// 1-32 characters. The error names the offending key.
    pub fn validate(&self) -> Result<(), FieldError> {
        for (key, value) in [
            ("premium_min_confidence", self.premium_min_confidence),
            ("whale_min_confidence", self.whale_min_confidence),
            ("high_confidence", self.high_confidence),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(FieldError::new(key, format!("{key} must be within 0..1")));
            }
        }
        for extra in &self.extra_signal_types {
            if !valid_signal_type(&extra.trim().to_ascii_uppercase()) {
                return Err(FieldError::new(
                    "extra_signal_types",
                    format!("extra_signal_types: {extra:?} is not 1-32 of [A-Za-z0-9_-]"),
                ));
            }
        }
        Ok(())
    }

    /// True when `upper` (already upper-cased) is a built-in or configured type.
    pub fn allows_signal_type(&self, upper: &str) -> bool {
        BUILTIN_SIGNAL_TYPES.contains(&upper)
            || self
                .extra_signal_types
                .iter()
                .any(|t| t.trim().eq_ignore_ascii_case(upper))
    }
}

fn valid_signal_type(t: &str) -> bool {
    (1..=MAX_SIGNAL_TYPE_LEN).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A field that breaks a rule (HTTP 422 `invalid`); the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field, e.g. `confidence_score`.
    pub field: String,
    /// What is wrong, e.g. `confidence_score must be within 0..1`.
    pub message: String,
}

impl FieldError {
    /// A field error with its message.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    fn required(field: &str) -> FieldError {
        FieldError::new(field, format!("{field} is required"))
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// Not JSON, not a JSON object, or a known field repeated: HTTP 400 `bad_request`.
    #[error("{0}")]
    Malformed(String),
    /// A field breaks a rule: HTTP 422 `invalid`.
    #[error(transparent)]
    Invalid(#[from] FieldError),
}

impl SignalError {
    /// The HTTP status: 400 or 422.
    pub fn status(&self) -> u16 {
        match self {
            SignalError::Malformed(_) => 400,
            SignalError::Invalid(_) => 422,
        }
    }

    /// The error code of the HTTP error body: `bad_request` or `invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            SignalError::Malformed(_) => "bad_request",
            SignalError::Invalid(_) => "invalid",
        }
    }

    /// The offending field, for `invalid` errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            SignalError::Malformed(_) => None,
            SignalError::Invalid(e) => Some(&e.field),
        }
    }
}

/// A validated, normalized trading signal.
#[derive(Debug, Clone)]
pub struct Signal {
    /// 1-128 of `[A-Za-z0-9_.:-]`; generated (`sig_` + ULID) when absent.
    pub signal_id: String,
    /// Upper case, `/` replaced by `-`, `^[A-Z0-9._-]{1,32}$`.
    pub pair: String,
    /// Upper case: BUY, SELL, HOLD, CLOSE or a configured extra type.
    pub signal_type: String,
    /// Greater than 0.
    pub entry_price: Option<Decimal>,
    /// Greater than 0.
    pub stop_loss: Option<Decimal>,
    /// Each greater than 0; empty when absent.
    pub take_profit: Vec<Decimal>,
    /// Within 0..1 inclusive.
    pub confidence_score: Decimal,
    /// 1-128 characters.
    pub timeframe: Option<String>,
    /// 1-128 characters.
    pub strategy: Option<String>,
    /// 1-128 characters; `bot:{id}` routes to the `bot:{id}` channel.
    pub source: Option<String>,
    /// UTC, millisecond precision.
    pub timestamp: DateTime<Utc>,
    /// Explicit, else derived from the confidence.
    pub tier: TierId,
    /// A JSON object, compact, digits and key order as given.
    pub metadata: Option<Box<RawValue>>,
}

impl PartialEq for Signal {
    fn eq(&self, other: &Self) -> bool {
        self.signal_id == other.signal_id
            && self.pair == other.pair
            && self.signal_type == other.signal_type
            && self.entry_price == other.entry_price
            && self.stop_loss == other.stop_loss
            && self.take_profit == other.take_profit
            && self.confidence_score == other.confidence_score
            && self.timeframe == other.timeframe
            && self.strategy == other.strategy
            && self.source == other.source
            && self.timestamp == other.timestamp
            && self.tier == other.tier
            && self.metadata.as_ref().map(|m| m.get()) == other.metadata.as_ref().map(|m| m.get())
    }
}

/// The known top-level fields of a signal body; everything else is ignored.
#[derive(Deserialize)]
struct SignalBody<'a> {
    #[serde(borrow)]
    signal_id: Option<&'a RawValue>,
    #[serde(borrow)]
    pair: Option<&'a RawValue>,
    #[serde(borrow)]
    signal_type: Option<&'a RawValue>,
    #[serde(borrow)]
    entry_price: Option<&'a RawValue>,
    #[serde(borrow)]
    stop_loss: Option<&'a RawValue>,
    #[serde(borrow)]
    take_profit: Option<&'a RawValue>,
    #[serde(borrow)]
    confidence_score: Option<&'a RawValue>,
    #[serde(borrow)]
    timeframe: Option<&'a RawValue>,
    #[serde(borrow)]
    strategy: Option<&'a RawValue>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    tier: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

/// The canonical record, in section 7's field order.
#[derive(Serialize)]
struct Record<'a> {
    signal_id: &'a str,
    pair: &'a str,
    signal_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_price: Option<&'a Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_loss: Option<&'a Decimal>,
    take_profit: &'a [Decimal],
    confidence_score: &'a Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeframe: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    timestamp: String,
    tier: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
}

impl Signal {
    /// Parses and validates a request body (raw JSON bytes).
    pub fn parse(
        body: &[u8],
        ladder: &TierLadder,
        rules: &SignalRules,
    ) -> Result<Signal, SignalError> {
        let b: SignalBody = parse_object(body)?;

        let pair = required(b.pair, "pair")?;
        let pair = parse_pair(&json_string(pair, "pair")?)?;

        let signal_type = required(b.signal_type, "signal_type")?;
        let signal_type = json_string(signal_type, "signal_type")?
            .trim()
            .to_ascii_uppercase();
        if !rules.allows_signal_type(&signal_type) {
            let mut known: Vec<String> =
                BUILTIN_SIGNAL_TYPES.iter().map(|s| s.to_string()).collect();
            known.extend(
                rules
                    .extra_signal_types
                    .iter()
                    .map(|t| t.trim().to_ascii_uppercase()),
            );
            return Err(FieldError::new(
                "signal_type",
                format!("signal_type must be one of {}", known.join(", ")),
            )
            .into());
        }

        let confidence = required(b.confidence_score, "confidence_score")?;
        let confidence_score = decimal(confidence, "confidence_score")?;
        if confidence_score.is_negative()
            || confidence_score.cmp_f64(1.0) == Some(std::cmp::Ordering::Greater)
        {
            return Err(FieldError::new(
                "confidence_score",
                "confidence_score must be within 0..1",
            )
            .into());
        }

        let signal_id = match b.signal_id {
            None => generate_signal_id(),
            Some(raw) => {
                let id = json_string(raw, "signal_id")?;
                if !valid_signal_id(&id) {
                    return Err(FieldError::new(
                        "signal_id",
                        "signal_id must be 1-128 of [A-Za-z0-9_.:-]",
                    )
                    .into());
                }
                id
            }
        };

        let entry_price = b.entry_price.map(|r| price(r, "entry_price")).transpose()?;
        let stop_loss = b.stop_loss.map(|r| price(r, "stop_loss")).transpose()?;
        let take_profit = match b.take_profit {
            None => Vec::new(),
            Some(raw) => take_profit(raw)?,
        };

        let timeframe = b
            .timeframe
            .map(|r| text(r, "timeframe", MAX_TEXT_CHARS))
            .transpose()?;
        let strategy = b
            .strategy
            .map(|r| text(r, "strategy", MAX_TEXT_CHARS))
            .transpose()?;
        let source = b
            .source
            .map(|r| text(r, "source", MAX_TEXT_CHARS))
            .transpose()?;

        let timestamp = match b.timestamp {
            None => truncate_to_millis(Utc::now()),
            Some(raw) => {
                let s = json_string(raw, "timestamp")?;
                let t = DateTime::parse_from_rfc3339(s.trim()).map_err(|_| {
                    FieldError::new("timestamp", "timestamp must be an RFC 3339 time")
                })?;
                let t = t.with_timezone(&Utc);
                if !(0..=9999).contains(&t.year()) {
                    return Err(FieldError::new(
                        "timestamp",
                        "timestamp must fall within years 0000-9999 in UTC",
                    )
                    .into());
                }
                truncate_to_millis(t)
            }
        };

        let tier = match b.tier {
            Some(raw) => tier_field(raw, ladder)?,
            None => default_tier(&confidence_score, ladder, rules),
        };

        let metadata = match b.metadata {
            None => None,
            Some(raw) => {
                if !raw.get().trim_start().starts_with('{') {
                    return Err(FieldError::new("metadata", "metadata must be an object").into());
                }
                Some(compact_json(raw))
            }
        };

        Ok(Signal {
            signal_id,
            pair,
            signal_type,
            entry_price,
            stop_loss,
            take_profit,
            confidence_score,
            timeframe,
            strategy,
            source,
            timestamp,
            tier,
            metadata,
        })
    }

    /// The canonical record as compact JSON (section 7 field order; prices as JSON numbers with
    /// their original digits; `take_profit` always a list; timestamp RFC 3339 UTC with
    /// milliseconds; tier by canonical name; absent optional fields omitted).
    pub fn to_json(&self, ladder: &TierLadder) -> String {
        let record = Record {
            signal_id: &self.signal_id,
            pair: &self.pair,
            signal_type: &self.signal_type,
            entry_price: self.entry_price.as_ref(),
            stop_loss: self.stop_loss.as_ref(),
            take_profit: &self.take_profit,
            confidence_score: &self.confidence_score,
            timeframe: self.timeframe.as_deref(),
            strategy: self.strategy.as_deref(),
            source: self.source.as_deref(),
            timestamp: self.timestamp_rfc3339(),
            tier: ladder.name(self.tier),
            metadata: self.metadata.as_deref(),
        };
        // Only strings, raw JSON and string-keyed structs: serialization cannot fail.
        serde_json::to_string(&record).expect("a signal record always serializes")
    }

    /// The timestamp as written in the record: `2025-08-11T00:23:15.123Z`.
    pub fn timestamp_rfc3339(&self) -> String {
        self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The channels this signal is routed to, in order: `signals`, `signals:high` (when the
    /// confidence is at least `high_confidence`), `signals:type:{TYPE}`, `signals:pair:{PAIR}`, `public`,
    /// `premium` (tier >= premium), `whale` (tier >= whale), `unified`, then `bot:{id}` when
    /// `source` is `bot:{id}` and forms a valid channel name. `premium` and `whale` are looked up
    /// in the ladder and skipped when it does not know them.
    pub fn channels(&self, ladder: &TierLadder, rules: &SignalRules) -> Vec<String> {
        let mut out = vec!["signals".to_string()];
        if at_least(&self.confidence_score, rules.high_confidence) {
            out.push("signals:high".to_string());
        }
        out.push(format!("signals:type:{}", self.signal_type));
        out.push(format!("signals:pair:{}", self.pair));
        out.push("public".to_string());
        for name in ["premium", "whale"] {
            if ladder.parse(name).is_some_and(|t| self.tier >= t) {
                out.push(name.to_string());
            }
        }
        out.push("unified".to_string());
        if let Some(source) = &self.source {
            if source.len() > 4 && source.starts_with("bot:") && valid_channel_name(source) {
                out.push(source.clone());
            }
        }
        out.retain(|c| valid_channel_name(c));
        out
    }
}

/// A new signal id: `sig_` and a 26-character ULID (Crockford base32 of 48 bits of Unix
/// milliseconds and 80 random bits).
pub fn generate_signal_id() -> String {
    signalhub_hub::ids::ulid("sig_")
}

/// True for 1-128 of `[A-Za-z0-9_.:-]`.
pub fn valid_signal_id(id: &str) -> bool {
    (1..=MAX_SIGNAL_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Normalizes a pair (trim, upper-case, `/` -> `-`) and checks `^[A-Z0-9._-]{1,32}$`.
pub fn normalize_pair(input: &str) -> Option<String> {
    let pair = input.trim().to_ascii_uppercase().replace('/', "-");
    let ok = (1..=MAX_PAIR_LEN).contains(&pair.len())
        && pair.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    ok.then_some(pair)
}

fn parse_pair(input: &str) -> Result<String, FieldError> {
    normalize_pair(input)
        .ok_or_else(|| FieldError::new("pair", "pair must match ^[A-Z0-9._-]{1,32}$"))
}

fn at_least(value: &Decimal, threshold: f64) -> bool {
    value
        .cmp_f64(threshold)
        .is_some_and(|o| o != std::cmp::Ordering::Less)
}

/// The tier a signal without an explicit `tier` gets from its confidence.
pub fn default_tier(confidence: &Decimal, ladder: &TierLadder, rules: &SignalRules) -> TierId {
    if let Some(whale) = ladder.parse("whale") {
        if at_least(confidence, rules.whale_min_confidence) {
            return whale;
        }
    }
    if let Some(premium) = ladder.parse("premium") {
        if at_least(confidence, rules.premium_min_confidence) {
            return premium;
        }
    }
    TierId::LOWEST
}

fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.nanosecond();
    t.with_nanosecond(nanos - nanos % 1_000_000).unwrap_or(t)
}

fn price(raw: &RawValue, field: &str) -> Result<Decimal, FieldError> {
    let d = decimal(raw, field)?;
    if !d.is_positive() {
        return Err(FieldError::new(
            field,
            format!("{field} must be greater than 0"),
        ));
    }
    Ok(d)
}

fn take_profit(raw: &RawValue) -> Result<Vec<Decimal>, FieldError> {
    const FIELD: &str = "take_profit";
    if !raw.get().trim_start().starts_with('[') {
        return Ok(vec![price(raw, FIELD)?]);
    }
    let items: Vec<&RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| FieldError::new(FIELD, "take_profit must be a number or a list of numbers"))?;
    if items.len() > MAX_TAKE_PROFIT {
        return Err(FieldError::new(
            FIELD,
            format!("take_profit must have at most {MAX_TAKE_PROFIT} targets"),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            price(item, FIELD).map_err(|e| {
                FieldError::new(
                    FIELD,
                    e.message.replacen(FIELD, &format!("{FIELD}[{i}]"), 1),
                )
            })
        })
        .collect()
}

// ---- helpers shared with `crate::typed` ----

/// Deserializes a JSON object body into a struct of borrowed raw fields.
pub(crate) fn parse_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, SignalError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() || e.is_io() {
            return SignalError::Malformed(format!("malformed JSON: {e}"));
        }
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            SignalError::Malformed("body must be a JSON object".to_string())
        } else {
            SignalError::Malformed(format!("body: {e}"))
        }
    })
}

/// A required field's value (absent and `null` are both "required").
pub(crate) fn required<'a>(
    raw: Option<&'a RawValue>,
    field: &str,
) -> Result<&'a RawValue, FieldError> {
    raw.ok_or_else(|| FieldError::required(field))
}

/// A JSON string's value.
pub(crate) fn json_string(raw: &RawValue, field: &str) -> Result<String, FieldError> {
    serde_json::from_str(raw.get())
        .map_err(|_| FieldError::new(field, format!("{field} must be a string")))
}

/// A string of 1..=`max` characters, not blank, with no control characters.
pub(crate) fn text(raw: &RawValue, field: &str, max: usize) -> Result<String, FieldError> {
    let s = json_string(raw, field)?;
    let n = s.chars().count();
    if n == 0 || n > max || s.trim().is_empty() {
        return Err(FieldError::new(
            field,
            format!("{field} must be 1-{max} characters, not blank"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(s)
}

/// A number or decimal string.
pub(crate) fn decimal(raw: &RawValue, field: &str) -> Result<Decimal, FieldError> {
    Decimal::from_raw(raw).map_err(|e| FieldError::new(field, format!("{field} {e}")))
}

/// A tier name or alias known to the ladder.
pub(crate) fn tier_field(raw: &RawValue, ladder: &TierLadder) -> Result<TierId, FieldError> {
    let name = json_string(raw, "tier")?;
    ladder.parse(&name).ok_or_else(|| {
        let names: Vec<&str> = ladder.names().collect();
        FieldError::new("tier", format!("tier must be one of {}", names.join(", ")))
    })
}

/// Valid JSON with insignificant whitespace removed (strings, digits and key order kept).
pub(crate) fn compact_json(raw: &RawValue) -> Box<RawValue> {
    let src = raw.get();
    let mut out = String::with_capacity(src.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in src.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    // Removing whitespace outside strings keeps valid JSON valid.
    RawValue::from_string(out).unwrap_or_else(|_| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ladder() -> TierLadder {
        TierLadder::default()
    }

    fn parse_with(body: Value, rules: &SignalRules) -> Result<Signal, SignalError> {
        Signal::parse(body.to_string().as_bytes(), &ladder(), rules)
    }

    fn parse(body: Value) -> Result<Signal, SignalError> {
        parse_with(body, &SignalRules::default())
    }

    fn parse_str(body: &str) -> Result<Signal, SignalError> {
        Signal::parse(body.as_bytes(), &ladder(), &SignalRules::default())
    }

    fn minimal() -> Value {
        json!({"pair": "EUR_USD", "signal_type": "BUY", "confidence_score": 0.5})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = minimal();
        body[field] = value;
        body
    }

    /// The field an `Invalid` error names; panics on success or `Malformed`.
    fn invalid_field(result: Result<Signal, SignalError>) -> String {
        match result {
            Err(SignalError::Invalid(e)) => e.field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    fn record(signal: &Signal) -> Value {
        serde_json::from_str(&signal.to_json(&ladder())).unwrap()
    }

    fn tier_name(signal: &Signal) -> String {
        ladder().name(signal.tier).to_string()
    }

    #[test]
    fn minimal_signal_is_accepted() {
        let s = parse(minimal()).unwrap();
        assert_eq!(s.pair, "EUR_USD");
        assert_eq!(s.signal_type, "BUY");
        assert_eq!(s.confidence_score.as_str(), "0.5");
        assert!(s.take_profit.is_empty());
    }

    #[test]
    fn each_required_field_missing_is_refused_naming_it() {
        for field in ["pair", "signal_type", "confidence_score"] {
            let mut body = minimal();
            body.as_object_mut().unwrap().remove(field);
            let err = parse(body).unwrap_err();
            assert_eq!(err.field(), Some(field));
            assert_eq!(err.status(), 422);
            assert_eq!(err.to_string(), format!("{field} is required"));
        }
    }

    #[test]
    fn required_field_null_counts_as_missing() {
        assert_eq!(invalid_field(parse(with("pair", Value::Null))), "pair");
    }

    #[test]
    fn each_wrong_type_is_refused_naming_the_field() {
        let cases = [
            ("pair", json!(5)),
            ("signal_type", json!(["BUY"])),
            ("confidence_score", json!(true)),
            ("confidence_score", json!({"v": 0.5})),
            ("signal_id", json!(42)),
            ("entry_price", json!(false)),
            ("stop_loss", json!({})),
            ("take_profit", json!({"a": 1})),
            ("take_profit", json!([1.1, true])),
            ("take_profit", json!([[1.1]])),
            ("timeframe", json!(1)),
            ("strategy", json!(["x"])),
            ("source", json!(7)),
            ("timestamp", json!(1_754_871_795)),
            ("tier", json!(2)),
            ("metadata", json!([1, 2])),
        ];
        for (field, value) in cases {
            let err = parse(with(field, value.clone())).unwrap_err();
            assert_eq!(err.field(), Some(field), "{field} = {value}");
            assert_eq!(err.code(), "invalid");
        }
    }

    #[test]
    fn body_not_a_json_object_is_malformed() {
        for body in [
            "[1,2]",
            "\"x\"",
            "42",
            "null",
            "",
            "{",
            "{\"pair\":}",
            "not json",
        ] {
            let err = parse_str(body).unwrap_err();
            assert!(matches!(err, SignalError::Malformed(_)), "{body:?}");
            assert_eq!(err.status(), 400);
            assert_eq!(err.code(), "bad_request");
        }
        assert_eq!(
            parse_str("[1]").unwrap_err().to_string(),
            "body must be a JSON object"
        );
    }

    #[test]
    fn repeated_known_field_is_malformed() {
        let err = parse_str(r#"{"pair":"A","pair":"B","signal_type":"BUY","confidence_score":1}"#)
            .unwrap_err();
        assert!(matches!(err, SignalError::Malformed(_)));
    }

    #[test]
    fn confidence_outside_zero_to_one_is_refused() {
        for c in [
            json!(-0.01),
            json!(1.01),
            json!("1.0000000000000000001"),
            json!(-1e-30),
        ] {
            let err = parse(with("confidence_score", c)).unwrap_err();
            assert_eq!(err.field(), Some("confidence_score"));
            assert_eq!(err.to_string(), "confidence_score must be within 0..1");
        }
    }

    #[test]
    fn confidence_bounds_zero_and_one_are_accepted() {
        for c in [json!(0), json!(1), json!(0.0), json!("1.000"), json!(-0.0)] {
            assert!(parse(with("confidence_score", c.clone())).is_ok(), "{c}");
        }
    }

    #[test]
    fn decimal_strings_are_accepted_and_digits_preserved() {
        let mut body = with("entry_price", json!("1.0950"));
        body["stop_loss"] = json!("1.0900");
        body["confidence_score"] = json!("0.850");
        let s = parse(body).unwrap();
        let out = s.to_json(&ladder());
        assert!(out.contains(r#""entry_price":1.0950,"#), "{out}");
        assert!(out.contains(r#""stop_loss":1.0900,"#), "{out}");
        assert!(out.contains(r#""confidence_score":0.850,"#), "{out}");
    }

    #[test]
    fn number_digits_are_not_rounded_through_floating_point() {
        let body = r#"{"pair":"X","signal_type":"BUY","confidence_score":0.30000000000000004,
            "entry_price":0.1,"stop_loss":0.30000000000000004,"take_profit":[1.10000000000000000001]}"#;
        let out = parse_str(body).unwrap().to_json(&ladder());
        assert!(out.contains(r#""entry_price":0.1,"#), "{out}");
        assert!(out.contains(r#""stop_loss":0.30000000000000004,"#), "{out}");
        assert!(
            out.contains(r#""take_profit":[1.10000000000000000001],"#),
            "{out}"
        );
        assert!(
            out.contains(r#""confidence_score":0.30000000000000004,"#),
            "{out}"
        );
    }

    #[test]
    fn twenty_digit_price_is_kept() {
        let body = r#"{"pair":"X","signal_type":"BUY","confidence_score":0.5,
            "entry_price":12345678901234567890,"stop_loss":"98765432109876543210.5"}"#;
        let out = parse_str(body).unwrap().to_json(&ladder());
        assert!(
            out.contains(r#""entry_price":12345678901234567890,"#),
            "{out}"
        );
        assert!(
            out.contains(r#""stop_loss":98765432109876543210.5,"#),
            "{out}"
        );
    }

    #[test]
    fn nan_and_infinity_strings_are_refused() {
        for field in [
            "entry_price",
            "stop_loss",
            "take_profit",
            "confidence_score",
        ] {
            for bad in ["NaN", "Infinity", "-Infinity", "inf", "", "0x10", "1e999"] {
                let err = parse(with(field, json!(bad))).unwrap_err();
                assert_eq!(err.field(), Some(field), "{field} = {bad:?}");
            }
        }
    }

    #[test]
    fn prices_must_be_greater_than_zero() {
        for field in ["entry_price", "stop_loss", "take_profit"] {
            for bad in [json!(0), json!(-1.5), json!("0.000")] {
                let err = parse(with(field, bad)).unwrap_err();
                assert_eq!(err.field(), Some(field));
            }
        }
        let err = parse(with("take_profit", json!([1.1, 0]))).unwrap_err();
        assert_eq!(err.to_string(), "take_profit[1] must be greater than 0");
    }

    #[test]
    fn take_profit_number_becomes_a_list() {
        let s = parse(with("take_profit", json!(1.1))).unwrap();
        assert_eq!(s.take_profit.len(), 1);
        assert_eq!(record(&s)["take_profit"], json!([1.1]));
        let s = parse(with("take_profit", json!(["1.1000", 1.105]))).unwrap();
        assert!(s
            .to_json(&ladder())
            .contains(r#""take_profit":[1.1000,1.105]"#));
    }

    #[test]
    fn take_profit_absent_is_written_as_empty_list() {
        assert_eq!(record(&parse(minimal()).unwrap())["take_profit"], json!([]));
    }

    #[test]
    fn take_profit_over_the_limit_is_refused() {
        let many: Vec<f64> = (1..=33).map(f64::from).collect();
        assert_eq!(
            invalid_field(parse(with("take_profit", json!(many)))),
            "take_profit"
        );
    }

    #[test]
    fn pair_is_trimmed_upper_cased_and_slash_becomes_dash() {
        let s = parse(with("pair", json!("btc/usd "))).unwrap();
        assert_eq!(s.pair, "BTC-USD");
        assert_eq!(
            parse(with("pair", json!("eur_usd"))).unwrap().pair,
            "EUR_USD"
        );
    }

    #[test]
    fn bad_pair_is_refused() {
        for bad in [
            "",
            "   ",
            "BTC USD",
            "BTC:USD",
            "ÉUR",
            &"A".repeat(33),
            "btc$",
        ] {
            assert_eq!(
                invalid_field(parse(with("pair", json!(bad)))),
                "pair",
                "{bad:?}"
            );
        }
        assert!(parse(with("pair", json!("A".repeat(32)))).is_ok());
    }

    #[test]
    fn lower_case_signal_type_is_accepted_and_upper_cased() {
        for (input, out) in [
            ("buy", "BUY"),
            ("Sell", "SELL"),
            (" hold ", "HOLD"),
            ("close", "CLOSE"),
        ] {
            assert_eq!(
                parse(with("signal_type", json!(input)))
                    .unwrap()
                    .signal_type,
                out
            );
        }
    }

    #[test]
    fn unknown_signal_type_is_refused_unless_configured() {
        let err = parse(with("signal_type", json!("scalp"))).unwrap_err();
        assert_eq!(err.field(), Some("signal_type"));
        assert_eq!(
            err.to_string(),
            "signal_type must be one of BUY, SELL, HOLD, CLOSE"
        );
        let rules = SignalRules {
            extra_signal_types: vec!["Scalp".into()],
            ..SignalRules::default()
        };
        let s = parse_with(with("signal_type", json!("scalp")), &rules).unwrap();
        assert_eq!(s.signal_type, "SCALP");
        assert!(s
            .channels(&ladder(), &rules)
            .contains(&"signals:type:SCALP".to_string()));
    }

    #[test]
    fn tier_derives_from_confidence_at_the_boundaries() {
        for (c, tier) in [
            (json!(0.79), "free"),
            (json!(0.8), "premium"),
            (json!(0.89), "premium"),
            (json!(0.9), "whale"),
            (json!(1), "whale"),
            (json!("0.79999999999999999999"), "free"),
            (json!("0.800"), "premium"),
        ] {
            let s = parse(with("confidence_score", c.clone())).unwrap();
            assert_eq!(tier_name(&s), tier, "confidence {c}");
        }
    }

    #[test]
    fn tier_thresholds_are_configurable() {
        let rules = SignalRules {
            premium_min_confidence: 0.5,
            whale_min_confidence: 0.7,
            ..SignalRules::default()
        };
        let s = parse_with(with("confidence_score", json!(0.6)), &rules).unwrap();
        assert_eq!(tier_name(&s), "premium");
    }

    #[test]
    fn explicit_tier_overrides_confidence() {
        let mut body = with("tier", json!("free"));
        body["confidence_score"] = json!(0.95);
        assert_eq!(tier_name(&parse(body).unwrap()), "free");
        let s = parse(with("tier", json!("holder"))).unwrap();
        assert_eq!(tier_name(&s), "holder");
        assert_eq!(record(&s)["tier"], "holder");
    }

    #[test]
    fn tier_alias_professional_is_premium() {
        let s = parse(with("tier", json!("PROFESSIONAL"))).unwrap();
        assert_eq!(tier_name(&s), "premium");
        assert_eq!(record(&s)["tier"], "premium");
    }

    #[test]
    fn unknown_tier_is_refused() {
        let err = parse(with("tier", json!("platinum"))).unwrap_err();
        assert_eq!(err.field(), Some("tier"));
        assert_eq!(err.status(), 422);
        assert_eq!(
            err.to_string(),
            "tier must be one of free, premium, holder, whale"
        );
    }

    #[test]
    fn ladder_without_whale_derives_the_highest_known_tier() {
        let ladder = TierLadder::new(&["free", "premium"], &[]).unwrap();
        let body = with("confidence_score", json!(0.95)).to_string();
        let s = Signal::parse(body.as_bytes(), &ladder, &SignalRules::default()).unwrap();
        assert_eq!(ladder.name(s.tier), "premium");
        let channels = s.channels(&ladder, &SignalRules::default());
        assert!(channels.contains(&"premium".to_string()));
        assert!(!channels.contains(&"whale".to_string()));
    }

    #[test]
    fn timestamp_with_offset_is_normalized_to_utc_millis() {
        let s = parse(with("timestamp", json!("2025-08-11T02:23:15.123456+02:00"))).unwrap();
        assert_eq!(s.timestamp_rfc3339(), "2025-08-11T00:23:15.123Z");
        assert_eq!(record(&s)["timestamp"], "2025-08-11T00:23:15.123Z");
        let s = parse(with("timestamp", json!("2025-08-11T00:23:15Z"))).unwrap();
        assert_eq!(s.timestamp_rfc3339(), "2025-08-11T00:23:15.000Z");
    }

    #[test]
    fn timestamp_outside_rfc3339_years_after_utc_conversion_is_refused() {
        for bad in ["9999-12-31T23:00:00-02:00", "0000-01-01T00:00:00+01:00"] {
            assert_eq!(
                invalid_field(parse(with("timestamp", json!(bad)))),
                "timestamp"
            );
        }
    }

    #[test]
    fn high_confidence_channel_starts_at_the_threshold() {
        let rules = SignalRules::default();
        for (c, high) in [
            (json!(0.79), false),
            (json!(0.8), true),
            (json!("0.8000"), true),
        ] {
            let channels = parse(with("confidence_score", c))
                .unwrap()
                .channels(&ladder(), &rules);
            assert_eq!(channels.contains(&"signals:high".to_string()), high);
        }
    }

    #[test]
    fn timestamp_defaults_to_now() {
        let before = Utc::now() - chrono::Duration::seconds(1);
        let s = parse(minimal()).unwrap();
        assert!(s.timestamp >= before && s.timestamp <= Utc::now());
        assert_eq!(s.timestamp.timestamp_subsec_nanos() % 1_000_000, 0);
    }

    #[test]
    fn bad_timestamp_is_refused() {
        for bad in [
            "yesterday",
            "2025-08-11",
            "2025-08-11T00:23:15",
            "2025-13-01T00:00:00Z",
        ] {
            assert_eq!(
                invalid_field(parse(with("timestamp", json!(bad)))),
                "timestamp"
            );
        }
    }

    #[test]
    fn signal_id_is_generated_when_absent_and_unique() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| parse(minimal()).unwrap().signal_id)
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert!(id.starts_with("sig_") && id.len() == 30, "{id}");
            assert!(valid_signal_id(id));
        }
    }

    #[test]
    fn generated_signal_ids_are_time_ordered() {
        let a = generate_signal_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = generate_signal_id();
        assert!(a < b, "{a} {b}");
    }

    #[test]
    fn given_signal_id_is_kept() {
        let s = parse(with("signal_id", json!("test_001"))).unwrap();
        assert_eq!(s.signal_id, "test_001");
        assert!(parse(with("signal_id", json!("a.b:c-d_E9"))).is_ok());
        assert!(parse(with("signal_id", json!("x".repeat(128)))).is_ok());
    }

    #[test]
    fn bad_signal_id_is_refused() {
        for bad in [
            String::new(),
            "has space".into(),
            "slash/id".into(),
            "x".repeat(129),
            "é".into(),
        ] {
            assert_eq!(
                invalid_field(parse(with("signal_id", json!(bad)))),
                "signal_id"
            );
        }
    }

    #[test]
    fn routes_a_whale_buy_to_every_channel() {
        let mut body = with("confidence_score", json!(0.95));
        body["source"] = json!("bot:7");
        let s = parse(body).unwrap();
        assert_eq!(tier_name(&s), "whale");
        assert_eq!(
            s.channels(&ladder(), &SignalRules::default()),
            [
                "signals",
                "signals:high",
                "signals:type:BUY",
                "signals:pair:EUR_USD",
                "public",
                "premium",
                "whale",
                "unified",
                "bot:7"
            ]
        );
    }

    #[test]
    fn routes_a_free_signal_to_public_channels_only() {
        let mut body = with("confidence_score", json!(0.5));
        body["signal_type"] = json!("sell");
        body["pair"] = json!("btc/usd");
        body["source"] = json!("tradingview");
        let s = parse(body).unwrap();
        assert_eq!(
            s.channels(&ladder(), &SignalRules::default()),
            [
                "signals",
                "signals:type:SELL",
                "signals:pair:BTC-USD",
                "public",
                "unified"
            ]
        );
    }

    #[test]
    fn explicit_tier_decides_routing_not_confidence() {
        let mut body = with("confidence_score", json!(0.95));
        body["tier"] = json!("premium");
        let channels = parse(body)
            .unwrap()
            .channels(&ladder(), &SignalRules::default());
        assert!(channels.contains(&"signals:high".to_string()));
        assert!(channels.contains(&"premium".to_string()));
        assert!(!channels.contains(&"whale".to_string()));
    }

    #[test]
    fn bot_source_with_invalid_id_gets_no_bot_channel() {
        for source in ["bot:", "bot:a b", "bot:$x", "Bot:7"] {
            let s = parse(with("source", json!(source))).unwrap();
            let channels = s.channels(&ladder(), &SignalRules::default());
            assert!(!channels.iter().any(|c| c.starts_with("bot")), "{source}");
        }
    }

    #[test]
    fn unknown_fields_are_dropped() {
        let mut body = minimal();
        body["extra"] = json!({"x": 1});
        body["channel"] = json!("whale");
        let r = record(&parse(body).unwrap());
        assert!(r.get("extra").is_none() && r.get("channel").is_none());
    }

    #[test]
    fn metadata_non_object_is_refused() {
        for bad in [json!([1]), json!("x"), json!(3), json!(true)] {
            let err = parse(with("metadata", bad)).unwrap_err();
            assert_eq!(err.field(), Some("metadata"));
            assert_eq!(err.to_string(), "metadata must be an object");
        }
    }

    #[test]
    fn metadata_object_is_kept_verbatim_and_compact() {
        let body = r#"{"pair":"X","signal_type":"BUY","confidence_score":0.5,
            "metadata": { "z" : 1.0950, "a" : [ "s p a c e", 12345678901234567890123 ] }}"#;
        let out = parse_str(body).unwrap().to_json(&ladder());
        assert!(
            out.ends_with(r#""metadata":{"z":1.0950,"a":["s p a c e",12345678901234567890123]}}"#),
            "{out}"
        );
    }

    #[test]
    fn text_fields_are_bounded() {
        for field in ["timeframe", "strategy", "source"] {
            assert!(parse(with(field, json!("x".repeat(128)))).is_ok());
            for bad in [
                json!("x".repeat(129)),
                json!(""),
                json!("  "),
                json!("a\nb"),
            ] {
                assert_eq!(invalid_field(parse(with(field, bad))), field);
            }
        }
    }

    #[test]
    fn record_has_the_section_7_shape() {
        let body = json!({
            "signal_id": "test_001", "pair": "EUR_USD", "signal_type": "BUY",
            "entry_price": 1.095, "stop_loss": 1.09, "take_profit": [1.1, 1.105],
            "confidence_score": 0.85, "timeframe": "1h", "strategy": "sma_cross",
            "source": "bot:7", "timestamp": "2025-08-11T00:23:15.123Z", "metadata": {}
        });
        let out = parse(body).unwrap().to_json(&ladder());
        assert_eq!(
            out,
            r#"{"signal_id":"test_001","pair":"EUR_USD","signal_type":"BUY","entry_price":1.095,"stop_loss":1.09,"take_profit":[1.1,1.105],"confidence_score":0.85,"timeframe":"1h","strategy":"sma_cross","source":"bot:7","timestamp":"2025-08-11T00:23:15.123Z","tier":"premium","metadata":{}}"#
        );
    }

    #[test]
    fn absent_optional_fields_are_omitted() {
        let r = record(&parse(minimal()).unwrap());
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "confidence_score",
            "pair",
            "signal_id",
            "signal_type",
            "take_profit",
            "tier",
            "timestamp",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn record_parses_back_to_the_same_signal() {
        let body = json!({
            "pair": "btc/usd", "signal_type": "sell", "entry_price": "65000.50",
            "take_profit": 64000, "confidence_score": "0.91", "source": "bot:x",
            "timestamp": "2025-08-11T02:23:15.123+02:00", "metadata": {"k": [1, 2]}
        });
        let s = parse(body).unwrap();
        let again = parse_str(&s.to_json(&ladder())).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn rules_validation_names_the_key() {
        assert!(SignalRules::default().validate().is_ok());
        let bad = SignalRules {
            high_confidence: 1.5,
            ..SignalRules::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "high_confidence");
        let bad = SignalRules {
            extra_signal_types: vec!["take profit".into()],
            ..SignalRules::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "extra_signal_types");
    }
}
