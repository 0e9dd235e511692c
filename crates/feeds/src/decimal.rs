//! Exact decimal prices: the exchange's own digits, validated, never through `f64`.
//!
//! Exchanges send prices as strings (`"64250.10"`); a trader expects to see those digits, so a
//! [`Decimal`] keeps the text and only checks that it is a plain decimal. That check also makes
//! the text a valid JSON number, so [`crate::Tick::to_json`] writes it unquoted as it is.

use std::fmt;

/// Longest accepted decimal text; real prices are far shorter, this only bounds bad input.
const MAX_LEN: usize = 64;

/// A decimal number as text: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, at most 64 characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Decimal(Box<str>);

/// Why a text is not a [`Decimal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a plain decimal number: {0:?}")]
pub struct DecimalError(pub String);

impl Decimal {
    /// Checks `text` and keeps it as it is.
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        if is_plain_decimal(text) {
            Ok(Decimal(text.into()))
        } else {
            let shown: String = text.chars().take(MAX_LEN).collect();
            Err(DecimalError(shown))
        }
    }

    /// Builds `units / 10^scale` exactly, e.g. `(6425010, 2)` is `64250.10`.
    pub fn from_scaled(units: i64, scale: u32) -> Self {
        let negative = units < 0;
        let digits = units.unsigned_abs().to_string();
        let scale = scale as usize;
        let mut text = String::with_capacity(digits.len() + scale + 3);
        if negative {
            text.push('-');
        }
        if scale == 0 {
            text.push_str(&digits);
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            text.push_str(int);
            text.push('.');
            text.push_str(frac);
        } else {
            text.push_str("0.");
            text.extend(std::iter::repeat_n('0', scale - digits.len()));
            text.push_str(&digits);
        }
        Decimal(text.into())
    }

    /// The digits as the exchange sent them.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.0)
    }
}

fn is_plain_decimal(text: &str) -> bool {
    if text.is_empty() || text.len() > MAX_LEN {
        return false;
    }
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // A leading zero is only allowed alone ("0.5"): JSON numbers have no "007".
    let int_ok = all_digits(int) && (int == "0" || !int.starts_with('0'));
    int_ok && frac.is_none_or(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_trailing_zeros_and_long_digit_strings() {
        assert_eq!(Decimal::parse("64250.10").unwrap().as_str(), "64250.10");
        let long = "12345678901234567890.12345678901234567890";
        assert_eq!(Decimal::parse(long).unwrap().as_str(), long);
        assert_eq!(Decimal::parse("0.00000000").unwrap().as_str(), "0.00000000");
        assert_eq!(Decimal::parse("-1.5").unwrap().as_str(), "-1.5");
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for bad in [
            "", "-", ".5", "5.", "1e5", "007", "+1", "1,5", "NaN", "inf", " 1", "1.2.3", "0x10",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Decimal::parse(&"9".repeat(65)).is_err());
    }

    #[test]
    fn from_scaled_places_the_point_exactly() {
        assert_eq!(Decimal::from_scaled(6425010, 2).as_str(), "64250.10");
        assert_eq!(Decimal::from_scaled(108, 5).as_str(), "0.00108");
        assert_eq!(Decimal::from_scaled(-5, 1).as_str(), "-0.5");
        assert_eq!(Decimal::from_scaled(42, 0).as_str(), "42");
        assert_eq!(Decimal::from_scaled(100000, 5).as_str(), "1.00000");
    }
}
