//! Exact decimal numbers for prices and confidence scores: read from JSON numbers or decimal
//! strings without binary floating-point rounding, and written back as JSON numbers carrying
//! the digits they were given.
//!
//! What is accepted (protocol section 9, item 35), and how a decimal *string* is normalized to
//! JSON number text:
//!
//! * a JSON number token is kept exactly as written (`1.0950` stays `1.0950`, `1E-3` stays
//!   `1E-3`);
//! * a JSON string is accepted when, after trimming surrounding ASCII whitespace, it is
//!   `[+-]? digits [. digits]? ([eE] [+-]? digits)?`, with digits allowed on only one side of
//!   the point (`.5`, `5.`). It is then rewritten to the JSON number grammar: a leading `+` is
//!   dropped (`"+1.5"` -> `1.5`), redundant leading zeros of the integer part are dropped
//!   (`"01.5"` -> `1.5`, `"007"` -> `7`), a missing integer part becomes `0` (`".5"` -> `0.5`)
//!   and a point with no digits after it is dropped (`"5."` -> `5`). Fraction digits, trailing
//!   zeros included, and the exponent are kept as written;
//! * the sign of a zero is dropped (`-0.0` -> `0.0`), so no output ever carries a negative zero;
//! * refused: empty or blank strings, `NaN`, `Infinity` and every other word, hex (`0x1A`),
//!   digit separators (`1_000`, `1,000`), inner whitespace, other JSON types;
//! * refused as out of range: more than [`MAX_LEN`] characters after normalization, an
//!   exponent beyond +-[`MAX_EXPONENT`], and any value too large for an `f64` (so every
//!   accepted value converts to a finite `f64`; tiny values may convert to 0.0, comparisons
//!   made with [`Decimal::cmp_value`] and [`Decimal::cmp_f64`] stay exact).
//!
//! [`Decimal`]'s `Deserialize` goes through [`RawValue`], so it works with `serde_json` only.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The longest accepted number text, in characters, after normalization.
pub const MAX_LEN: usize = 64;

/// The largest accepted exponent magnitude (`1e9999`, `1e-9999`).
pub const MAX_EXPONENT: i64 = 9999;

/// Why a value is not an acceptable decimal. The messages read after a field name:
/// `"entry_price must be a finite decimal number"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// The JSON value is neither a number nor a string.
    #[error("must be a number or a decimal string")]
    WrongType,
    /// A string that is not a decimal number (NaN, Infinity, hex, garbage, empty).
    #[error("must be a finite decimal number")]
    Invalid,
    /// Too many characters, too large an exponent, or too large for an `f64`.
    #[error("is out of range")]
    OutOfRange,
}

/// A finite decimal number held as canonical JSON number text.
#[derive(Debug, Clone)]
pub struct Decimal {
    raw: Box<RawValue>,
    value: f64,
}

impl Decimal {
    /// Reads a JSON value: a number token (kept as written) or a string holding a decimal
    /// number (normalized as described in the module documentation).
    pub fn from_raw(raw: &RawValue) -> Result<Decimal, DecimalError> {
        let text = raw.get().trim_matches(|c: char| c.is_ascii_whitespace());
        match text.as_bytes().first() {
            Some(b'"') => {
                let s: String = serde_json::from_str(text).map_err(|_| DecimalError::Invalid)?;
                Decimal::parse_text(&s)
            }
            Some(b'-' | b'0'..=b'9') => Decimal::parse_text(text),
            _ => Err(DecimalError::WrongType),
        }
    }

    /// The exact value of an `f64` (its shortest round-trip digits); `None` for NaN and the
    /// infinities.
    pub fn from_f64(x: f64) -> Option<Decimal> {
        if !x.is_finite() {
            return None;
        }
        Decimal::parse_text(&format!("{x:e}")).ok()
    }

    fn parse_text(input: &str) -> Result<Decimal, DecimalError> {
        let text = normalize(input)?;
        if text.len() > MAX_LEN {
            return Err(DecimalError::OutOfRange);
        }
        let value: f64 = text.parse().map_err(|_| DecimalError::Invalid)?;
        if !value.is_finite() {
            return Err(DecimalError::OutOfRange);
        }
        let raw = RawValue::from_string(text).map_err(|_| DecimalError::Invalid)?;
        Ok(Decimal { raw, value })
    }

    /// The canonical JSON number text, e.g. `1.0950`.
    pub fn as_str(&self) -> &str {
        self.raw.get()
    }

    /// The number as JSON, for building documents by hand.
    pub fn as_raw(&self) -> &RawValue {
        &self.raw
    }

    /// The nearest `f64` (always finite; may be 0.0 for values below `f64`'s range).
    pub fn as_f64(&self) -> f64 {
        self.value
    }

    /// Compares the exact values (`1.0` equals `1`, `0.80000000000000000001` is above `0.8`).
    pub fn cmp_value(&self, other: &Decimal) -> Ordering {
        Parts::of(self.as_str()).cmp(&Parts::of(other.as_str()))
    }

    /// Compares the exact value with an `f64` threshold taken at its shortest round-trip
    /// digits (so `0.8` means 8/10); `None` when `x` is NaN.
    pub fn cmp_f64(&self, x: f64) -> Option<Ordering> {
        if x.is_nan() {
            None
        } else if x == f64::INFINITY {
            Some(Ordering::Less)
        } else if x == f64::NEG_INFINITY {
            Some(Ordering::Greater)
        } else {
            Decimal::from_f64(x).map(|d| self.cmp_value(&d))
        }
    }

    /// True when the value is exactly zero.
    pub fn is_zero(&self) -> bool {
        Parts::of(self.as_str()).digits.is_empty()
    }

    /// True when the value is above zero.
    pub fn is_positive(&self) -> bool {
        let p = Parts::of(self.as_str());
        !p.negative && !p.digits.is_empty()
    }

    /// True when the value is below zero.
    pub fn is_negative(&self) -> bool {
        let p = Parts::of(self.as_str());
        p.negative && !p.digits.is_empty()
    }
}

/// Rewrites a decimal string to JSON number text, or refuses it.
fn normalize(input: &str) -> Result<String, DecimalError> {
    let s = input.trim_matches(|c: char| c.is_ascii_whitespace());
    let b = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if let Some(&c @ (b'+' | b'-')) = b.first() {
        negative = c == b'-';
        i = 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &s[int_start..i];
    let mut frac_digits = "";
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &s[frac_start..i];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(DecimalError::Invalid);
    }
    let mut exponent = "";
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let exp_start = i;
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let digits_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == digits_start {
            return Err(DecimalError::Invalid);
        }
        exponent = &s[exp_start..i];
        if exponent_value(exponent).is_none() {
            return Err(DecimalError::OutOfRange);
        }
    }
    if i != b.len() {
        return Err(DecimalError::Invalid);
    }
    let int_digits = int_digits.trim_start_matches('0');
    let zero = int_digits.is_empty() && frac_digits.bytes().all(|d| d == b'0');
    let mut out = String::with_capacity(s.len() + 1);
    if negative && !zero {
        out.push('-');
    }
    out.push_str(if int_digits.is_empty() {
        "0"
    } else {
        int_digits
    });
    if !frac_digits.is_empty() {
        out.push('.');
        out.push_str(frac_digits);
    }
    out.push_str(exponent);
    Ok(out)
}

/// The value of an exponent part such as `e-07`, if within +-[`MAX_EXPONENT`].
fn exponent_value(exponent: &str) -> Option<i64> {
    let body = &exponent[1..];
    let (negative, digits) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let digits = digits.trim_start_matches('0');
    if digits.len() > 4 {
        return None;
    }
    let magnitude: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    (magnitude <= MAX_EXPONENT).then_some(if negative { -magnitude } else { magnitude })
}

/// A canonical number split for exact comparison: the value is `0.DIGITS x 10^scale`, with no
/// leading or trailing zeros in `digits` (empty for zero).
#[derive(Debug, PartialEq, Eq)]
struct Parts {
    negative: bool,
    scale: i64,
    digits: String,
}

impl Parts {
    /// Splits text already in the JSON number grammar.
    fn of(text: &str) -> Parts {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], exponent_value(&rest[at..]).unwrap_or(0)),
            None => (rest, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all: String = int_part.chars().chain(frac_part.chars()).collect();
        let leading = all.len() - all.trim_start_matches('0').len();
        let digits = all
            .trim_start_matches('0')
            .trim_end_matches('0')
            .to_string();
        let scale = int_part.len() as i64 - leading as i64 + exponent;
        Parts {
            negative: negative && !digits.is_empty(),
            scale,
            digits,
        }
    }

    fn cmp_magnitude(&self, other: &Parts) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => self
                .scale
                .cmp(&other.scale)
                .then_with(|| self.digits.cmp(&other.digits)),
        }
    }
}

impl PartialOrd for Parts {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Parts {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

/// Equality of the canonical text: `1.0` and `1` are different records. Use
/// [`Decimal::cmp_value`] to compare values.
impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Decimal {}

impl Hash for Decimal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a decimal string, normalized as a JSON string input would be.
impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse_text(s)
    }
}

/// Writes the digits as a raw JSON number (with `serde_json`).
impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

/// Reads a JSON number or decimal string (with `serde_json` only).
impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Decimal::from_raw(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn number_token_keeps_its_digits() {
        for token in [
            "1.0950",
            "0.30000000000000004",
            "12345678901234567890",
            "1E-3",
            "-2",
        ] {
            assert_eq!(Decimal::from_raw(&raw(token)).unwrap().as_str(), token);
        }
    }

    #[test]
    fn decimal_string_keeps_its_digits() {
        let d = Decimal::from_raw(&raw("\"1.0950\"")).unwrap();
        assert_eq!(d.as_str(), "1.0950");
        assert_eq!(d.as_f64(), 1.095);
    }

    #[test]
    fn decimal_string_is_normalized_to_json_number_text() {
        for (input, out) in [
            ("+1.5", "1.5"),
            ("01.5", "1.5"),
            ("007", "7"),
            ("00.5", "0.5"),
            (".5", "0.5"),
            ("5.", "5"),
            ("-.25", "-0.25"),
            (" 2.50 ", "2.50"),
            ("1e-3", "1e-3"),
            ("1E+07", "1E+07"),
            ("-0.0", "0.0"),
            ("-0", "0"),
        ] {
            assert_eq!(dec(input).as_str(), out, "{input}");
        }
    }

    #[test]
    fn negative_zero_token_loses_its_sign() {
        assert_eq!(Decimal::from_raw(&raw("-0.00")).unwrap().as_str(), "0.00");
    }

    #[test]
    fn nan_infinity_hex_and_garbage_are_refused() {
        for input in [
            "NaN",
            "nan",
            "Infinity",
            "-Infinity",
            "inf",
            "",
            "   ",
            "0x1A",
            "1_000",
            "1,5",
            "1 5",
            "1.2.3",
            "e5",
            "1e",
            "1e+",
            "+",
            "-",
            ".",
            "abc",
            "1.5x",
            "١",
        ] {
            assert_eq!(
                input.parse::<Decimal>().unwrap_err(),
                DecimalError::Invalid,
                "{input:?}"
            );
        }
    }

    #[test]
    fn other_json_types_are_wrong_type() {
        for json in ["true", "null", "[1]", "{}"] {
            assert_eq!(
                Decimal::from_raw(&raw(json)).unwrap_err(),
                DecimalError::WrongType
            );
        }
    }

    #[test]
    fn overflowing_or_overlong_values_are_out_of_range() {
        assert_eq!(dec_err("1e400"), DecimalError::OutOfRange);
        assert_eq!(dec_err("1e99999"), DecimalError::OutOfRange);
        assert_eq!(dec_err(&"9".repeat(65)), DecimalError::OutOfRange);
        assert_eq!(
            Decimal::from_raw(&raw("1e400")).unwrap_err(),
            DecimalError::OutOfRange
        );
    }

    fn dec_err(s: &str) -> DecimalError {
        s.parse::<Decimal>().unwrap_err()
    }

    #[test]
    fn tiny_values_are_accepted_and_still_positive() {
        let d = dec("1e-400");
        assert_eq!(d.as_f64(), 0.0);
        assert!(d.is_positive());
    }

    #[test]
    fn serializes_as_a_raw_json_number() {
        let v = vec![dec("1.0950"), dec("12345678901234567890.123")];
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "[1.0950,12345678901234567890.123]"
        );
    }

    #[test]
    fn deserializes_from_number_or_string() {
        let v: Vec<Decimal> = serde_json::from_str(r#"[1.0950, "2.50"]"#).unwrap();
        assert_eq!(v[0].as_str(), "1.0950");
        assert_eq!(v[1].as_str(), "2.50");
        assert!(serde_json::from_str::<Decimal>("\"NaN\"").is_err());
    }

    #[test]
    fn exact_comparison_ignores_notation() {
        assert_eq!(dec("1.0").cmp_value(&dec("1")), Ordering::Equal);
        assert_eq!(dec("0.1e1").cmp_value(&dec("1")), Ordering::Equal);
        assert_eq!(dec("100").cmp_value(&dec("1e2")), Ordering::Equal);
        assert_eq!(dec("0.0").cmp_value(&dec("0e5")), Ordering::Equal);
        assert_eq!(dec("0.09").cmp_value(&dec("0.1")), Ordering::Less);
        assert_eq!(dec("-2").cmp_value(&dec("-10")), Ordering::Greater);
        assert_eq!(dec("-0.5").cmp_value(&dec("0")), Ordering::Less);
        assert_eq!(dec("12").cmp_value(&dec("9.99")), Ordering::Greater);
    }

    #[test]
    fn comparison_with_f64_uses_the_shortest_digits() {
        assert_eq!(dec("0.8").cmp_f64(0.8), Some(Ordering::Equal));
        assert_eq!(
            dec("0.80000000000000000001").cmp_f64(0.8),
            Some(Ordering::Greater)
        );
        assert_eq!(
            dec("0.79999999999999999999").cmp_f64(0.8),
            Some(Ordering::Less)
        );
        assert_eq!(dec("5").cmp_f64(f64::INFINITY), Some(Ordering::Less));
        assert_eq!(dec("5").cmp_f64(f64::NAN), None);
    }

    #[test]
    fn sign_predicates_are_exact() {
        assert!(dec("0.000").is_zero());
        assert!(!dec("0.000").is_positive());
        assert!(dec("0.001").is_positive());
        assert!(dec("-1e-9").is_negative());
    }
}
