//! Param values in canonical form: a param declared `"type": "number"` has one spelling per
//! value (`"1"`, `"01"`, `"1.0"`, `1e0` are all `1`), so they share one channel; values outside
//! a declared `allowed` list are refused at subscribe, before any poller or budget slot exists.
//!
//! Numbers are normalised as decimal text, not through `f64`: ids and coordinates keep every
//! digit they were given, and a value that was already canonical keeps its store key.

use serde::{Deserialize, Serialize};

use super::{ParamError, ParamSpec, MAX_VALUE_LEN};

/// What values a param takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// Any text, kept as given.
    #[default]
    String,
    /// A decimal number (`-12.5`, `1e3`), kept in canonical form.
    Number,
}

impl ParamKind {
    pub fn is_string(&self) -> bool {
        *self == ParamKind::String
    }
}

/// Longest exponent accepted (`1e9999`); the result must still fit `MAX_VALUE_LEN`.
const MAX_EXPONENT_DIGITS: usize = 4;

/// The canonical decimal text of `s`: no sign on zero, no `+`, no leading zeros before the
/// point, no trailing zeros after it, no point without a fraction, no exponent. `None` when
/// `s` is not a decimal number (spaces, `0x1`, `NaN`, `inf` are not) or its canonical form
/// is longer than [`MAX_VALUE_LEN`].
pub fn canonical_number(s: &str) -> Option<String> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
            if digits.is_empty() || digits.len() > MAX_EXPONENT_DIGITS || !all_digits(digits) {
                return None;
            }
            e.parse().ok()?
        }
    };
    // digits × 10^(point - digits.len()): the point sits `point` digits from the left.
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let mut point = int.len() as i64 + exponent;
    let leading = digits.iter().take_while(|d| **d == b'0').count();
    digits.drain(..leading);
    point -= leading as i64;
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        return Some("0".into());
    }
    let len = digits.len() as i64;
    let size = 1 + if point <= 0 {
        2 - point + len
    } else {
        point.max(len) + 1
    };
    if size > MAX_VALUE_LEN as i64 + 2 {
        return None;
    }
    let digits = String::from_utf8(digits).expect("ASCII digits");
    let mut out = String::with_capacity(size as usize);
    if negative {
        out.push('-');
    }
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else if point >= len {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - len) as usize));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
    (out.chars().count() <= MAX_VALUE_LEN).then_some(out)
}

impl ParamSpec {
    /// `value` (of the param `key`) in canonical form, or why it is refused.
    pub fn normalize(&self, key: &str, value: String) -> Result<String, ParamError> {
        let value = match self.kind {
            ParamKind::String => value,
            ParamKind::Number => {
                canonical_number(&value).ok_or_else(|| ParamError::NotANumber(key.to_string()))?
            }
        };
        match &self.allowed {
            Some(allowed) if !allowed.contains(&value) => Err(ParamError::NotAllowed(
                key.to_string(),
                allowed
                    .iter()
                    .take(20)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
            _ => Ok(value),
        }
    }

    /// This declaration with its default and allowed values in canonical form; an error when
    /// one of them is not of the declared type.
    pub fn canonical(mut self) -> Result<ParamSpec, ParamError> {
        if self.kind == ParamKind::Number {
            let number = |v: &String| {
                canonical_number(v)
                    .ok_or_else(|| ParamError::NotANumber(v.chars().take(64).collect()))
            };
            if let Some(d) = &self.default {
                self.default = Some(number(d)?);
            }
            if let Some(a) = &self.allowed {
                self.allowed = Some(a.iter().map(number).collect::<Result<_, _>>()?);
            }
        }
        if let (Some(d), Some(a)) = (&self.default, &self.allowed) {
            if !a.contains(d) {
                return Err(ParamError::NotAllowed("default".into(), a.join(", ")));
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_spelling_per_number() {
        for s in ["1", "01", "1.0", "+1", "1e0", "10e-1", "0.1e1", "001.000"] {
            assert_eq!(canonical_number(s).as_deref(), Some("1"), "{s}");
        }
        for (s, want) in [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0"),
            (".5", "0.5"),
            ("5.", "5"),
            ("-12.50", "-12.5"),
            ("52.52", "52.52"),
            ("1e3", "1000"),
            ("1.5E-3", "0.0015"),
            ("1234567890123456789012345", "1234567890123456789012345"),
        ] {
            assert_eq!(canonical_number(s).as_deref(), Some(want), "{s}");
        }
    }

    #[test]
    fn non_numbers_are_refused() {
        for s in [
            "", "-", ".", "1.2.3", " 1", "1 ", "0x10", "NaN", "inf", "1e", "1e+", "e5", "1_000",
            "١", "1e99999", "--1",
        ] {
            assert_eq!(canonical_number(s), None, "{s:?}");
        }
        assert_eq!(
            canonical_number("1e9999"),
            None,
            "longer than a value may be"
        );
    }

    #[test]
    fn allowed_values_are_checked_after_normalising() {
        let spec = ParamSpec {
            kind: ParamKind::Number,
            allowed: Some(vec!["10".into(), "20.5".into()]),
            ..Default::default()
        }
        .canonical()
        .unwrap();
        assert_eq!(spec.normalize("n", "010.0".into()), Ok("10".into()));
        assert_eq!(spec.normalize("n", "20.50".into()), Ok("20.5".into()));
        assert!(matches!(
            spec.normalize("n", "11".into()),
            Err(ParamError::NotAllowed(..))
        ));
        assert!(matches!(
            spec.normalize("n", "ten".into()),
            Err(ParamError::NotANumber(..))
        ));
    }

    #[test]
    fn a_default_outside_allowed_is_a_declaration_error() {
        let spec = ParamSpec {
            default: Some("c".into()),
            allowed: Some(vec!["a".into(), "b".into()]),
            ..Default::default()
        };
        assert!(spec.canonical().is_err());
    }

    proptest! {
        #[test]
        fn canonical_numbers_are_fixed_points_and_agree_with_f64(s in "[+-]?[0-9]{0,12}(\\.[0-9]{0,8})?([eE][+-]?[0-9]{1,2})?") {
            if let Some(c) = canonical_number(&s) {
                prop_assert_eq!(canonical_number(&c), Some(c.clone()));
                let (a, b): (f64, f64) = (s.parse().unwrap(), c.parse().unwrap());
                prop_assert!((a - b).abs() <= a.abs() * 1e-12);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
            let _ = canonical_number(&s);
        }
    }
}
