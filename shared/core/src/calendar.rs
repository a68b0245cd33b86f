//! Digest periods on a team's calendar: days and weeks (from Monday) that start at local midnight in the
//! team's time zone, so a Berlin team's week is Berlin's, daylight saving time included (docs/digests.md).

use chrono::{Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
pub use chrono_tz::{Tz, UTC};
use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// How long a digest's period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }

    fn days(self) -> i64 {
        match self {
            Period::Day => 1,
            Period::Week => 7,
        }
    }
}

/// A time zone by its IANA name (`Europe/Berlin`), or `None` when the name is unknown.
pub fn time_zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// The instant local midnight of `date` is in `tz`. Where the clocks skip midnight (a daylight saving
/// change at 00:00), the first instant of the day that exists.
pub fn midnight(date: NaiveDate, tz: Tz) -> Millis {
    let mut local: NaiveDateTime = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A gap is at most a few hours: step through it a quarter of an hour at a time.
    for _ in 0..(4 * 24) {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.timestamp_millis(),
            LocalResult::Ambiguous(first, _) => return first.timestamp_millis(),
            LocalResult::None => local += Duration::minutes(15),
        }
    }
    local.and_utc().timestamp_millis()
}

/// The local date of an instant in `tz`.
pub fn local_date(t: Millis, tz: Tz) -> NaiveDate {
    tz.timestamp_millis_opt(t)
        .single()
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

/// The first local date of the period that contains `date`: the date itself, or that week's Monday.
fn period_start(date: NaiveDate, period: Period) -> NaiveDate {
    match period {
        Period::Day => date,
        Period::Week => date - Duration::days(date.weekday().num_days_from_monday() as i64),
    }
}

/// The start of the period that contains `t`: local midnight today, or on this week's Monday.
pub fn boundary(t: Millis, period: Period, tz: Tz) -> Millis {
    midnight(period_start(local_date(t, tz), period), tz)
}

/// `n + 1` period boundaries, latest first: `to` (a local midnight, any day of the week) and the starts of
/// the `n` periods before it. Each period is a run of local days, so one around a daylight saving change is
/// an hour longer or shorter.
pub fn boundaries(to: Millis, period: Period, tz: Tz, n: usize) -> Vec<Millis> {
    let end = local_date(to, tz);
    std::iter::once(to)
        .chain((1..=n as i64).map(|k| midnight(end - Duration::days(k * period.days()), tz)))
        .collect()
}

/// When a digest of the period that ended at the last boundary goes out: `hour` o'clock local time on the
/// first day of the next period.
pub fn send_time(boundary: Millis, hour: u32, tz: Tz) -> Millis {
    let date = local_date(boundary, tz);
    let local = date.and_hms_opt(hour.min(23), 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp_millis(),
        // In a skipped hour: the hour after.
        LocalResult::None => midnight(date, tz) + (hour as i64 + 1) * 3_600_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_timestamp;

    fn at(s: &str) -> Millis {
        parse_timestamp(s).expect("a timestamp")
    }

    #[test]
    fn weeks_start_on_local_mondays() {
        let utc = UTC;
        // Wednesday 2025-04-16 15:00 UTC is in the week of Monday 2025-04-14.
        assert_eq!(
            boundary(at("2025-04-16T15:00:00Z"), Period::Week, utc),
            at("2025-04-14T00:00:00Z")
        );
        assert_eq!(
            boundary(at("2025-04-16T15:00:00Z"), Period::Day, utc),
            at("2025-04-16T00:00:00Z")
        );
        // Monday 00:30 in Berlin (CEST, +02:00) is still Sunday in UTC: Berlin's week has begun.
        let berlin = time_zone("Europe/Berlin").expect("a zone");
        assert_eq!(
            boundary(at("2025-04-13T22:30:00Z"), Period::Week, berlin),
            at("2025-04-13T22:00:00Z")
        );
        // And in New York (EDT, -04:00) Monday 02:00 UTC is Sunday evening: last week's Monday.
        let ny = time_zone("America/New_York").expect("a zone");
        assert_eq!(
            boundary(at("2025-04-14T02:00:00Z"), Period::Week, ny),
            at("2025-04-07T04:00:00Z")
        );
        assert!(time_zone("Mars/Olympus_Mons").is_none());
    }

    #[test]
    fn a_week_across_a_daylight_saving_change_is_an_hour_short() {
        // Europe moved to summer time on Sunday 2025-03-30.
        let berlin = time_zone("Europe/Berlin").expect("a zone");
        let b = boundaries(at("2025-03-30T22:00:00Z"), Period::Week, berlin, 2);
        assert_eq!(
            b,
            vec![
                at("2025-03-30T22:00:00Z"),
                at("2025-03-23T23:00:00Z"),
                at("2025-03-16T23:00:00Z"),
            ]
        );
        assert_eq!(b[0] - b[1], (7 * 24 - 1) * 3_600_000);
        assert_eq!(b[1] - b[2], 7 * 24 * 3_600_000);
    }

    #[test]
    fn a_midnight_the_clocks_skip_starts_at_the_first_local_instant() {
        // Santiago skipped 2024-09-08 00:00 -> 01:00 (from -04:00 to -03:00).
        let santiago = time_zone("America/Santiago").expect("a zone");
        let date = NaiveDate::from_ymd_opt(2024, 9, 8).expect("a date");
        assert_eq!(midnight(date, santiago), at("2024-09-08T04:00:00Z"));
    }

    #[test]
    fn digests_go_out_at_the_local_hour_after_the_boundary() {
        let berlin = time_zone("Europe/Berlin").expect("a zone");
        assert_eq!(
            send_time(at("2025-04-13T22:00:00Z"), 9, berlin),
            at("2025-04-14T07:00:00Z")
        );
        assert_eq!(
            send_time(at("2025-04-14T00:00:00Z"), 9, UTC),
            at("2025-04-14T09:00:00Z")
        );
    }
}
