//! Integer fields of requests, read from any JSON number with a whole
//! value: JSON does not tell `886` from `886.0` or `8.86e2` (JSON Schema's
//! `integer` takes all three), so neither does the API. A number with a
//! fraction, a negative one, or one too large for the field is refused.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Number;

/// The whole value of `n`, if it has one that `T` holds.
fn whole<T: TryFrom<u64>, E: Error>(n: &Number) -> Result<T, E> {
    // `u64::MAX as f64` is 2^64, one past the largest `u64`: the bound is
    // strict, so a float never saturates into range.
    let v = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    });
    let v = v.ok_or_else(|| {
        E::custom(format!(
            "invalid value: {n}, expected a whole number of 0 or more"
        ))
    })?;
    T::try_from(v).map_err(|_| E::custom(format!("invalid value: {n}, the number is too large")))
}

/// A `u64` field.
pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole(&Number::deserialize(d)?)
}

/// A `u32` field.
pub(crate) fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    whole(&Number::deserialize(d)?)
}

/// An optional `u64` field (`null` is `None`).
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<Number>::deserialize(d)?
        .map(|n| whole(&n))
        .transpose()
}

/// An optional `u32` field (`null` is `None`).
pub(crate) fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<Number>::deserialize(d)?
        .map(|n| whole(&n))
        .transpose()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::u32")]
        n: u32,
        #[serde(default, deserialize_with = "super::opt_u64")]
        o: Option<u64>,
    }

    fn read(s: &str) -> Result<T, String> {
        serde_json::from_str::<T>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_in_any_spelling() {
        for s in [r#"{"n": 886}"#, r#"{"n": 886.0}"#, r#"{"n": 8.86e2}"#] {
            assert_eq!(read(s).unwrap().n, 886, "{s}");
        }
        assert_eq!(read(r#"{"n": 1, "o": 2.0}"#).unwrap().o, Some(2));
        assert_eq!(read(r#"{"n": 1, "o": null}"#).unwrap().o, None);
        assert_eq!(read(r#"{"n": 1}"#).unwrap().o, None);
        let max = r#"{"n": 1, "o": 18446744073709551615}"#;
        assert_eq!(read(max).unwrap().o, Some(u64::MAX));
    }

    /// Found by schemathesis: 2^64 read as a float passed a bound of
    /// `u64::MAX as f64` (which is 2^64) and saturated to `u64::MAX`.
    #[test]
    fn one_past_the_largest_u64_is_refused() {
        for o in [
            "18446744073709551616",
            "1.8446744073709552e19",
            "18446744073709551616.0",
        ] {
            let s = format!(r#"{{"n": 1, "o": {o}}}"#);
            assert!(read(&s).is_err(), "{s}");
        }
    }

    #[test]
    fn fractions_negatives_and_overflow_are_refused() {
        for s in [
            r#"{"n": 1.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": 1e30}"#,
            r#"{"n": "1"}"#,
        ] {
            assert!(read(s).is_err(), "{s}");
        }
    }
}
