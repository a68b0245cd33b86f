//! Timestamps as providers send them, normalised to UTC milliseconds since the Unix epoch.
//!
//! Milliseconds keep every figure exact (PagerDuty and GitLab send milliseconds) while fitting in an
//! `i64` and sorting as plain integers.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer};

/// UTC milliseconds since the Unix epoch.
pub type Millis = i64;

/// Offsets appear with and without a colon, and GitLab also writes ` UTC` or a space before the offset.
const OFFSET_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f %z",
    "%Y-%m-%d %H:%M:%S%.f%z",
];
const NAIVE_UTC_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f UTC",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
];

/// The wall clock, in the unit every timestamp here uses.
/// Where a component reads the time: the system's clock, or one a test moves by hand.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> Millis + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(std::sync::Arc::new(now_millis))
    }

    /// A clock that reads `f`.
    pub fn from_fn(f: impl Fn() -> Millis + Send + Sync + 'static) -> Clock {
        Clock(std::sync::Arc::new(f))
    }

    pub fn now(&self) -> Millis {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or_default()
}

/// Parses a timestamp in any of the shapes the providers are known to send. A bare date is midnight UTC.
pub fn parse_timestamp(raw: &str) -> Option<Millis> {
    let s = raw.trim();
    if misplaced_space(s) {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in OFFSET_FORMATS {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_millis());
        }
    }
    for f in NAIVE_UTC_FORMATS {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| Utc.from_utc_datetime(&t).timestamp_millis());
    }
    // Epoch seconds or milliseconds sent as a string (Datadog, Jira).
    s.parse::<i64>().ok().map(epoch_to_millis)
}

/// chrono lets any numeric field start with spaces, which would read a typo like `21: 00:25` as a time. In every
/// known shape a space before a digit only separates the date (10 bytes) from the time.
fn misplaced_space(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .enumerate()
        .any(|(i, w)| i != 10 && w[0].is_ascii_whitespace() && w[1].is_ascii_digit())
}

/// Epoch values above 10^11 cannot be seconds before the year 5138, so they are milliseconds.
pub fn epoch_to_millis(v: i64) -> Millis {
    // `unsigned_abs`: `i64::MIN.abs()` overflows (a hostile or broken body can send it).
    if v.unsigned_abs() >= 100_000_000_000 {
        v
    } else {
        v.saturating_mul(1000)
    }
}

/// RFC 3339 with milliseconds, in UTC.
pub fn format_millis(ms: Millis) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Serde for an instant as the documented fact format writes it: RFC 3339 in UTC (`2025-03-04T01:25:32Z`,
/// with the fraction only when there is one). Reading also takes integer milliseconds since the epoch, the
/// shape stores wrote before.
pub mod rfc3339 {
    use chrono::{SecondsFormat, TimeZone, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Millis;

    pub fn format(ms: Millis) -> String {
        match Utc.timestamp_millis_opt(ms).single() {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            None => ms.to_string(),
        }
    }

    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Int(i64),
            #[serde(borrow)]
            Str(std::borrow::Cow<'a, str>),
        }
        match Raw::deserialize(d)? {
            Raw::Int(v) => Ok(v),
            Raw::Str(s) => chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| t.timestamp_millis())
                .map_err(|e| serde::de::Error::custom(format!("{s:?} is not RFC 3339: {e}"))),
        }
    }

    /// The same for an optional instant: `null` when absent.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        use super::super::Millis;

        pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => super::serialize(ms, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] Millis);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// A timestamp field that may be a string in any known shape or an epoch number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub Millis);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Int(i64),
            Float(f64),
            #[serde(borrow)]
            Str(std::borrow::Cow<'a, str>),
        }
        match Raw::deserialize(d)? {
            Raw::Int(v) => Ok(Timestamp(epoch_to_millis(v))),
            Raw::Float(v) => Ok(Timestamp(epoch_to_millis(v as i64))),
            Raw::Str(s) => parse_timestamp(&s)
                .map(Timestamp)
                .ok_or_else(|| serde::de::Error::custom(format!("unrecognised timestamp {s:?}"))),
        }
    }
}

/// An identifier that providers send as a number in one payload and a string in another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Int(i64),
            Uint(u64),
            #[serde(borrow)]
            Str(std::borrow::Cow<'a, str>),
        }
        Ok(Id(match Raw::deserialize(d)? {
            Raw::Int(v) => v.to_string(),
            Raw::Uint(v) => v.to_string(),
            Raw::Str(s) => s.into_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Millis {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn parses_every_known_shape() {
        let cases = [
            ("2013-12-03T17:23:34Z", "2013-12-03T17:23:34Z"),
            ("2016-08-12 15:23:28 UTC", "2016-08-12T15:23:28Z"),
            ("2021-04-28 21:50:00 +0200", "2021-04-28T19:50:00Z"),
            ("2021-02-23T02:41:37.886Z", "2021-02-23T02:41:37.886Z"),
            ("2022-02-03T20:04:45.243+0100", "2022-02-03T19:04:45.243Z"),
            ("2015-05-05T23:40:15+01:00", "2015-05-05T22:40:15Z"),
            ("2022-05-27T16:20:13.954328Z", "2022-05-27T16:20:13.954Z"),
            ("2025-04-02", "2025-04-02T00:00:00Z"),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_timestamp(raw), Some(ms(want)), "{raw}");
        }
        assert_eq!(parse_timestamp("not a time"), None);
        assert_eq!(parse_timestamp("2015-04-08T21: 00:25-07:00"), None);
    }

    #[test]
    fn epoch_numbers_are_seconds_or_millis() {
        let t: Timestamp = serde_json::from_str("1462879124").unwrap();
        assert_eq!(t.0, 1_462_879_124_000);
        let t: Timestamp = serde_json::from_str("1462879124123").unwrap();
        assert_eq!(t.0, 1_462_879_124_123);
        let t: Timestamp = serde_json::from_str("\"1462879124123\"").unwrap();
        assert_eq!(t.0, 1_462_879_124_123);
        // The extremes read without overflow (the aggregator drops them as out of range).
        let t: Timestamp = serde_json::from_str(&i64::MIN.to_string()).unwrap();
        assert_eq!(t.0, i64::MIN);
    }

    #[test]
    fn fact_instants_are_rfc3339_in_utc() {
        assert_eq!(
            rfc3339::format(ms("2025-03-04T01:25:32+05:30")),
            "2025-03-03T19:55:32Z"
        );
        assert_eq!(
            rfc3339::format(ms("2021-02-23T02:41:37.886Z")),
            "2021-02-23T02:41:37.886Z"
        );
        #[derive(serde::Deserialize)]
        struct T(#[serde(with = "rfc3339")] Millis);
        let t: T = serde_json::from_str("\"2025-03-03T19:55:32Z\"").unwrap();
        assert_eq!(t.0, ms("2025-03-03T19:55:32Z"));
        let t: T = serde_json::from_str("1741031732000").unwrap();
        assert_eq!(t.0, ms("2025-03-03T19:55:32Z"));
        assert!(serde_json::from_str::<T>("\"2025-03-03 19:55:32\"").is_err());
    }

    #[test]
    fn ids_accept_numbers_and_strings() {
        let a: Id = serde_json::from_str("1000").unwrap();
        let b: Id = serde_json::from_str("\"1000\"").unwrap();
        assert_eq!(a, b);
    }
}
