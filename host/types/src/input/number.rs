//! DynamoDB numbers, exactly.
//!
//! Hand-written rather than a decimal crate (`rust_decimal` holds 28 digits,
//! `bigdecimal` brings arbitrary-precision arithmetic prism never does): the
//! only operations are validate, normalize, compare and print, on text.
//!
//! A DynamoDB `N` has up to 38 significant digits and a magnitude between
//! 1E-130 and 9.99…E+125. prism never converts one to floating point: the text
//! is validated, normalized (no leading zeros, no trailing fraction zeros,
//! `-0` is `0`) and written into the JSON image as a JSON number token with
//! exactly those digits. Plain notation is used while the number has at most
//! 40 digits before or 20 zeros after the point; beyond that it is written as
//! `d.ddde±x` (lowercase `e`, as serde_json prints it). Two numbers are equal in the image iff they are equal as
//! decimals, so the changed-path diff never reports `1.0` → `1` as a change.

use std::cmp::Ordering;

/// Max significant digits DynamoDB stores.
pub const MAX_DIGITS: usize = 38;

/// A validated decimal: `(-1)^negative × coefficient × 10^scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// Significant digits, no leading or trailing zeros; empty for zero.
    coefficient: String,
    scale: i64,
}

impl Decimal {
    /// Parse DynamoDB number text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a number");
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => {
                let e = &rest[i + 1..];
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty()
                    || digits.len() > 6
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(bad());
                }
                (&rest[..i], e.parse::<i64>().map_err(|_| bad())?)
            }
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let mut scale = exp - frac.len() as i64;
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let trimmed = digits.trim_end_matches('0');
        scale += (digits.len() - trimmed.len()) as i64;
        if trimmed.is_empty() {
            return Ok(Self {
                negative: false,
                coefficient: String::new(),
                scale: 0,
            });
        }
        if trimmed.len() > MAX_DIGITS {
            return Err(format!(
                "{text:?} has {} significant digits; DynamoDB numbers have at most {MAX_DIGITS}",
                trimmed.len()
            ));
        }
        let d = Self {
            negative,
            coefficient: trimmed.to_owned(),
            scale,
        };
        let adjusted = d.adjusted_exponent();
        if !(-130..=125).contains(&adjusted) {
            return Err(format!(
                "{text:?} is out of DynamoDB's range (1E-130 to 9.99E+125)"
            ));
        }
        Ok(d)
    }

    /// The exponent of the leading digit (`123.4` → 2).
    fn adjusted_exponent(&self) -> i64 {
        self.coefficient.len() as i64 - 1 + self.scale
    }

    /// Is this zero?
    pub fn is_zero(&self) -> bool {
        self.coefficient.is_empty()
    }

    /// The normalized JSON number text.
    pub fn to_json_text(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let sign = if self.negative { "-" } else { "" };
        let c = &self.coefficient;
        let len = c.len() as i64;
        if self.scale >= 0 && len + self.scale <= 40 {
            format!("{sign}{c}{}", "0".repeat(self.scale as usize))
        } else if self.scale < 0 && self.adjusted_exponent() >= -20 {
            let point = len + self.scale;
            if point > 0 {
                format!("{sign}{}.{}", &c[..point as usize], &c[point as usize..])
            } else {
                format!("{sign}0.{}{c}", "0".repeat((-point) as usize))
            }
        } else {
            let (head, tail) = c.split_at(1);
            let dot = if tail.is_empty() { "" } else { "." };
            let e = self.adjusted_exponent();
            let esign = if e < 0 { "-" } else { "+" };
            format!("{sign}{head}{dot}{tail}e{esign}{}", e.abs())
        }
    }

    /// Numeric order (used to sort number sets).
    pub fn cmp_value(&self, other: &Self) -> Ordering {
        let sign = |d: &Self| {
            if d.is_zero() {
                0
            } else if d.negative {
                -1
            } else {
                1
            }
        };
        match sign(self).cmp(&sign(other)) {
            Ordering::Equal if sign(self) == 0 => Ordering::Equal,
            Ordering::Equal => {
                let mag = self
                    .adjusted_exponent()
                    .cmp(&other.adjusted_exponent())
                    .then_with(|| self.coefficient.as_str().cmp(other.coefficient.as_str()));
                if self.negative { mag.reverse() } else { mag }
            }
            o => o,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        Decimal::parse(s).unwrap().to_json_text()
    }

    #[test]
    fn normalizes_without_rounding() {
        assert_eq!(n("19.990"), "19.99");
        assert_eq!(n("007"), "7");
        assert_eq!(n("-0.0"), "0");
        assert_eq!(n("1.0"), "1");
        assert_eq!(n("12300"), "12300");
        assert_eq!(n("1.5e3"), "1500");
        assert_eq!(n("0.000123"), "0.000123");
        assert_eq!(n("-.5"), "-0.5");
        assert_eq!(
            n("12345678901234567890123456789012345678"),
            "12345678901234567890123456789012345678"
        );
        assert_eq!(
            n("0.12345678901234567890123456789012345678"),
            "0.12345678901234567890123456789012345678"
        );
        assert_eq!(n("1E+125"), "1e+125");
        assert_eq!(n("-1.25E-130"), "-1.25e-130");
    }

    #[test]
    fn output_is_valid_json_with_the_same_digits() {
        for s in [
            "9.9999999999999999999999999999999999999E+125",
            "1E-130",
            "123.456",
            "-1E+50",
        ] {
            let text = n(s);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v.to_string(), text);
        }
    }

    #[test]
    fn rejects_39_digits_out_of_range_and_junk() {
        let e = Decimal::parse("123456789012345678901234567890123456789").unwrap_err();
        assert!(e.contains("39 significant digits"), "{e}");
        assert!(Decimal::parse("1E+126").unwrap_err().contains("range"));
        assert!(Decimal::parse("1E-131").unwrap_err().contains("range"));
        for junk in [
            "", "-", "1.2.3", "abc", "1e", "0x10", "NaN", "Infinity", " 1",
        ] {
            assert!(Decimal::parse(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn orders_numerically() {
        let mut v: Vec<Decimal> = ["10", "-2", "0", "9.5", "-10", "1E+3"]
            .iter()
            .map(|s| Decimal::parse(s).unwrap())
            .collect();
        v.sort_by(Decimal::cmp_value);
        let out: Vec<String> = v.iter().map(Decimal::to_json_text).collect();
        assert_eq!(out, ["-10", "-2", "0", "9.5", "10", "1000"]);
    }
}
