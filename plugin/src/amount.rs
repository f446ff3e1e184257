//! Exact money amounts in yuan with at most two decimal places.
//!
//! Alipay's `total_fee` is a decimal string in [0.01, 100000000.00]. Amounts are kept as whole fen
//! (hundredths of a yuan) in an integer, so no float ever touches money.

use std::fmt;

/// Smallest accepted amount, in fen (0.01 yuan).
pub const MIN_FEN: u64 = 1;
/// Largest accepted amount, in fen (100000000.00 yuan).
pub const MAX_FEN: u64 = 10_000_000_000;

/// An amount of money, in fen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u64);

/// Why a `total_fee` string was refused. The message reads after the field name.
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

impl Amount {
    /// Parses a decimal yuan string such as `0.01`, `12`, `12.5`, `100000000.00`.
    ///
    /// Refuses signs, exponents, spaces, a leading or trailing lone dot, more than two decimals
    /// (even `0.010`: the gateway compares strings), and anything outside [0.01, 100000000.00].
    pub fn parse(s: &str) -> Result<Amount, AmountError> {
        Amount::from_fen(parse_fen(s)?)
    }

    /// [`Amount::parse`] for a field where zero means "none" (a notify's `refund_fee=0.00` on a
    /// payment that was never refunded): `Ok(None)` for zero, the same errors otherwise.
    pub fn parse_or_zero(s: &str) -> Result<Option<Amount>, AmountError> {
        match parse_fen(s)? {
            0 => Ok(None),
            fen => Amount::from_fen(fen).map(Some),
        }
    }

    /// Builds an amount from fen, refusing values outside the accepted range.
    pub fn from_fen(fen: u64) -> Result<Amount, AmountError> {
        if (MIN_FEN..=MAX_FEN).contains(&fen) {
            Ok(Amount(fen))
        } else {
            Err(AmountError::OutOfRange)
        }
    }

    pub fn fen(self) -> u64 {
        self.0
    }
}

/// The fen a decimal yuan string names, any size up to 9 integer digits (the range is the
/// caller's rule).
fn parse_fen(s: &str) -> Result<u64, AmountError> {
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError::NotDecimal);
    }
    let frac = frac_part.unwrap_or("");
    if frac_part.is_some() && frac.is_empty() {
        return Err(AmountError::NotDecimal);
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError::NotDecimal);
    }
    if frac.len() > 2 {
        return Err(AmountError::TooManyDecimals);
    }
    // 100000000 has 9 digits; more (after stripping leading zeros) is out of range.
    let int_trimmed = int_part.trim_start_matches('0');
    if int_trimmed.len() > 9 {
        return Err(AmountError::OutOfRange);
    }
    let yuan: u64 = if int_trimmed.is_empty() {
        0
    } else {
        int_trimmed.parse().map_err(|_| AmountError::NotDecimal)?
    };
    let mut fen_part: u64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        let digit = u64::from(b - b'0');
        fen_part += if i == 0 { digit * 10 } else { digit };
    }
    Ok(yuan * 100 + fen_part)
}

/// Canonical form: always two decimals (`0.01`, `12.50`), as sent to the gateway.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimals_and_normalises() {
        for (input, fen, shown) in [
            ("0.01", 1, "0.01"),
            ("1", 100, "1.00"),
            ("12.5", 1250, "12.50"),
            ("12.50", 1250, "12.50"),
            ("007.10", 710, "7.10"),
            ("100000000.00", MAX_FEN, "100000000.00"),
            ("100000000", MAX_FEN, "100000000.00"),
        ] {
            let a = Amount::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(a.fen(), fen, "{input}");
            assert_eq!(a.to_string(), shown, "{input}");
        }
    }

    #[test]
    fn refuses_every_malformed_or_out_of_range_value() {
        for (input, err) in [
            ("", AmountError::Empty),
            ("1e3", AmountError::NotDecimal),
            ("-1", AmountError::NotDecimal),
            ("+1", AmountError::NotDecimal),
            ("abc", AmountError::NotDecimal),
            (" 1.00", AmountError::NotDecimal),
            ("1.00 ", AmountError::NotDecimal),
            (".5", AmountError::NotDecimal),
            ("5.", AmountError::NotDecimal),
            ("1.2.3", AmountError::NotDecimal),
            ("1,00", AmountError::NotDecimal),
            ("１.00", AmountError::NotDecimal),
            ("0.001", AmountError::TooManyDecimals),
            ("0.010", AmountError::TooManyDecimals),
            ("0", AmountError::OutOfRange),
            ("0.00", AmountError::OutOfRange),
            ("100000000.01", AmountError::OutOfRange),
            ("99999999999999999999999", AmountError::OutOfRange),
        ] {
            assert_eq!(Amount::parse(input), Err(err), "{input:?}");
        }
    }

    #[test]
    fn leading_zeros_do_not_overflow() {
        let long = format!("{}1.00", "0".repeat(10_000));
        assert_eq!(Amount::parse(&long).unwrap().fen(), 100);
    }

    #[test]
    fn zero_is_none_where_zero_means_none() {
        for zero in ["0", "0.0", "0.00", "000.00"] {
            assert_eq!(Amount::parse_or_zero(zero), Ok(None), "{zero:?}");
        }
        assert_eq!(Amount::parse_or_zero("0.01").unwrap().unwrap().fen(), 1);
        for (input, err) in [
            ("", AmountError::Empty),
            ("-0.00", AmountError::NotDecimal),
            ("0.000", AmountError::TooManyDecimals),
            ("100000000.01", AmountError::OutOfRange),
        ] {
            assert_eq!(Amount::parse_or_zero(input), Err(err), "{input:?}");
        }
    }
}
