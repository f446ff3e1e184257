//! Money as the host keeps it: an exact decimal with at most two places, stored as whole minor
//! units (cents, fen) in an integer, so no float ever touches an amount. The host checks every
//! amount a shop sends before any component sees it; the component checks again by its
//! provider's rules.

use std::fmt;

/// Largest amount the host accepts: 100,000,000.00.
pub const MAX_MINOR: u64 = 10_000_000_000;

/// An amount in minor units (hundredths).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u64);

/// Why an amount was refused; the message reads after the field name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmountError {
    Empty,
    NotDecimal,
    TooManyDecimals,
    OutOfRange,
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AmountError::Empty => "must not be empty",
            AmountError::NotDecimal => {
                "must be a plain decimal number such as 12.50 (digits, at most one '.', no sign or exponent)"
            }
            AmountError::TooManyDecimals => "must have at most two decimal places",
            AmountError::OutOfRange => "must be between 0.01 and 100000000.00",
        })
    }
}

impl std::error::Error for AmountError {}

impl Amount {
    /// Parses `0.01`, `12`, `12.5`, `100000000.00`. Refuses signs, exponents, spaces (the API trims a
    /// field's surrounding whitespace first, as for every text field), a lone
    /// dot, more than two decimals (even `0.010`) and anything outside [0.01, 100000000.00].
    pub fn parse(s: &str) -> Result<Amount, AmountError> {
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        let (int_part, frac) = match s.split_once('.') {
            Some((_, "")) => return Err(AmountError::NotDecimal),
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty() || !digits(int_part) || !digits(frac) {
            return Err(AmountError::NotDecimal);
        }
        if frac.len() > 2 {
            return Err(AmountError::TooManyDecimals);
        }
        let int_trimmed = int_part.trim_start_matches('0');
        if int_trimmed.len() > 9 {
            return Err(AmountError::OutOfRange);
        }
        let whole: u64 = if int_trimmed.is_empty() {
            0
        } else {
            int_trimmed.parse().map_err(|_| AmountError::NotDecimal)?
        };
        let mut minor = whole * 100;
        for (i, b) in frac.bytes().enumerate() {
            minor += u64::from(b - b'0') * if i == 0 { 10 } else { 1 };
        }
        if !(1..=MAX_MINOR).contains(&minor) {
            return Err(AmountError::OutOfRange);
        }
        Ok(Amount(minor))
    }

    pub fn from_minor(minor: u64) -> Amount {
        Amount(minor)
    }

    pub fn minor(self) -> u64 {
        self.0
    }
}

/// Always two decimals: `12.50`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// `deserialize_with` for an amount field of a JSON request: a JSON number is kept as the string
/// of its exact literal, never read as a float (which would turn `19.999999999999999999` into 20,
/// and `1e2` into 100); a string, `null` or anything else is the JSON value it is. The amount's
/// own parse then accepts or refuses the text.
pub fn exact_json_amount<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    use serde::Deserialize;
    let Some(raw) = Option::<Box<serde_json::value::RawValue>>::deserialize(d)? else {
        return Ok(None);
    };
    let text = raw.get();
    if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Ok(Some(serde_json::Value::String(text.to_owned())));
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_amounts() {
        for (text, minor) in [
            ("0.01", 1),
            ("12", 1200),
            ("12.5", 1250),
            ("12.50", 1250),
            ("007.05", 705),
            ("100000000.00", MAX_MINOR),
        ] {
            assert_eq!(Amount::parse(text), Ok(Amount(minor)), "{text}");
        }
        assert_eq!(Amount::from_minor(1250).to_string(), "12.50");
        assert_eq!(Amount::from_minor(1).to_string(), "0.01");
    }

    #[test]
    fn refused_amounts_say_why() {
        use AmountError::*;
        for (text, why) in [
            ("", Empty),
            ("1.", NotDecimal),
            (".5", NotDecimal),
            ("-1", NotDecimal),
            ("+1", NotDecimal),
            ("1e2", NotDecimal),
            (" 1", NotDecimal),
            ("1.2.3", NotDecimal),
            ("0.010", TooManyDecimals),
            ("0", OutOfRange),
            ("0.00", OutOfRange),
            ("100000000.01", OutOfRange),
            ("1000000000", OutOfRange),
        ] {
            assert_eq!(Amount::parse(text), Err(why), "{text:?}");
        }
    }

    #[test]
    fn a_json_number_is_its_exact_text_never_a_float() {
        #[derive(serde::Deserialize)]
        struct Req {
            #[serde(default, deserialize_with = "exact_json_amount")]
            total_fee: Option<serde_json::Value>,
        }
        let fee = |json: &str| serde_json::from_str::<Req>(json).unwrap().total_fee;
        let text = |literal: &str| match fee(&format!(r#"{{"total_fee":{literal}}}"#)) {
            Some(serde_json::Value::String(s)) => s,
            other => panic!("{literal}: {other:?}"),
        };
        assert_eq!(text(r#""12.50""#), "12.50");
        assert_eq!(text("12.5"), "12.5");
        // A float would make these 20, 100 and 0.01.
        for literal in [
            "19.999999999999999999",
            "1e2",
            "0.0099999999999999999999",
            "-0",
        ] {
            assert_eq!(text(literal), literal);
            assert!(Amount::parse(literal).is_err(), "{literal} is refused");
        }
        assert_eq!(
            text(r#""\u0031.00""#),
            "1.00",
            "a string's escapes are decoded"
        );
        assert_eq!(fee(r#"{"total_fee":null}"#), None);
        assert_eq!(fee("{}"), None);
        assert_eq!(
            fee(r#"{"total_fee":true}"#),
            Some(serde_json::Value::Bool(true))
        );
        assert_eq!(
            fee(r#"{"total_fee":["1"]}"#),
            Some(serde_json::json!(["1"]))
        );
    }
}
