//! Event summaries (SPEC §3.6): per-day/week/month change and running total in the user's
//! time zone.
//!
//! Values are kept per quarter-hour of UTC. Every current IANA offset is a multiple of
//! 15 minutes, so a local midnight always falls on a quarter-hour boundary and the buckets
//! answer any time zone exactly, while a busy user's history stays small (many events in one
//! quarter-hour collapse into one entry).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, LocalResult, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Seconds per history bucket.
pub const BUCKET_SECS: i64 = 900;

/// Value changes per quarter-hour index (`unix seconds / 900`).
pub type Buckets = BTreeMap<i64, f64>;

pub fn bucket_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(BUCKET_SECS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Daily,
    Weekly,
    Monthly,
}

impl Aggregation {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }

    /// First day of the period containing `date` (weeks start on Sunday, SPEC §0.6).
    pub fn period_start(self, date: NaiveDate) -> NaiveDate {
        match self {
            Self::Daily => date,
            Self::Weekly => date - Days::new(u64::from(date.weekday().num_days_from_sunday())),
            Self::Monthly => date.with_day(1).unwrap_or(date),
        }
    }

    /// First day of the following period.
    pub fn next_start(self, start: NaiveDate) -> NaiveDate {
        match self {
            Self::Daily => start + Days::new(1),
            Self::Weekly => start + Days::new(7),
            Self::Monthly => start + Months::new(1),
        }
    }
}

/// One summary row.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub date: NaiveDate,
    pub total: f64,
    pub change: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    #[error("startDate must be before endDate")]
    StartNotBeforeEnd,
    #[error("The range between startDate and endDate cannot exceed 400 days")]
    RangeTooLong,
}

/// The maximum `endDate - startDate` in days.
pub const MAX_RANGE_DAYS: i64 = 400;

pub fn check_range(start: NaiveDate, end: NaiveDate) -> Result<(), SummaryError> {
    if start >= end {
        return Err(SummaryError::StartNotBeforeEnd);
    }
    if (end - start).num_days() > MAX_RANGE_DAYS {
        return Err(SummaryError::RangeTooLong);
    }
    Ok(())
}

/// The UTC instant of local midnight at the start of `date` in `tz`. Where midnight does not
/// exist (a DST gap at 00:00) the day starts at the first valid quarter-hour after it.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut local = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Up to a whole day: Pacific/Apia skipped 2011-12-30 entirely, whose "midnight" is then
    // the next day's.
    for _ in 0..=96 {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => local += chrono::Duration::minutes(15),
        }
    }
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn sum<'a>(values: impl Iterator<Item = (&'a i64, &'a f64)>) -> f64 {
    values.fold(0.0, |acc, (_, v)| acc + v)
}

/// Summary rows for every period overlapping `[start, end]`.
pub fn summarize(
    buckets: &Buckets,
    tz: Tz,
    aggregation: Aggregation,
    start: NaiveDate,
    end: NaiveDate,
) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    let mut period = aggregation.period_start(start);
    let first_bucket = bucket_of(local_midnight(tz, period));
    // Summed from +0.0: `Iterator::sum` of no floats is -0.0, which would print as `-0.0`.
    let mut total = sum(buckets.range(..first_bucket));
    while period <= end {
        let next = aggregation.next_start(period);
        let from = bucket_of(local_midnight(tz, period));
        let to = bucket_of(local_midnight(tz, next));
        let change = sum(buckets.range(from..to));
        total += change;
        rows.push(SummaryRow {
            date: period,
            total,
            change,
        });
        period = next;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn add(b: &mut Buckets, when: &str, v: f64) {
        *b.entry(bucket_of(at(when))).or_default() += v;
    }

    #[test]
    fn daily_buckets_follow_the_users_zone() {
        let mut b = Buckets::new();
        add(&mut b, "2025-01-01T10:00:00Z", 5.0); // history before the range
        add(&mut b, "2025-01-03T04:30:00Z", 1.0); // Jan 2, 23:30 in New York
        add(&mut b, "2025-01-03T05:00:00Z", 2.0); // Jan 3, 00:00 in New York
        let ny: Tz = "America/New_York".parse().expect("tz");
        let rows = summarize(&b, ny, Aggregation::Daily, d(2025, 1, 2), d(2025, 1, 4));
        let got: Vec<_> = rows.iter().map(|r| (r.date, r.change, r.total)).collect();
        assert_eq!(
            got,
            vec![
                (d(2025, 1, 2), 1.0, 6.0),
                (d(2025, 1, 3), 2.0, 8.0),
                (d(2025, 1, 4), 0.0, 8.0)
            ]
        );
    }

    #[test]
    fn weeks_start_on_sunday_and_months_on_the_first() {
        assert_eq!(
            Aggregation::Weekly.period_start(d(2025, 4, 2)),
            d(2025, 3, 30)
        );
        assert_eq!(
            Aggregation::Weekly.period_start(d(2025, 3, 30)),
            d(2025, 3, 30)
        );
        assert_eq!(
            Aggregation::Monthly.period_start(d(2024, 2, 29)),
            d(2024, 2, 1)
        );
        assert_eq!(
            Aggregation::Monthly.next_start(d(2024, 1, 1)),
            d(2024, 2, 1)
        );
        let rows = summarize(
            &Buckets::new(),
            Tz::UTC,
            Aggregation::Monthly,
            d(2024, 1, 15),
            d(2024, 3, 1),
        );
        let dates: Vec<_> = rows.iter().map(|r| r.date).collect();
        assert_eq!(dates, vec![d(2024, 1, 1), d(2024, 2, 1), d(2024, 3, 1)]);
    }

    #[test]
    fn quarter_hour_offsets_are_exact() {
        // Asia/Kathmandu is UTC+5:45: 18:15Z on Jan 1 is local midnight of Jan 2.
        let mut b = Buckets::new();
        add(&mut b, "2025-01-01T18:14:59Z", 1.0);
        add(&mut b, "2025-01-01T18:15:00Z", 10.0);
        let tz: Tz = "Asia/Kathmandu".parse().expect("tz");
        let rows = summarize(&b, tz, Aggregation::Daily, d(2025, 1, 1), d(2025, 1, 2));
        assert_eq!(rows[0].change, 1.0);
        assert_eq!(rows[1].change, 10.0);
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let london: Tz = "Europe/London".parse().expect("tz");
        let spring =
            local_midnight(london, d(2025, 3, 31)) - local_midnight(london, d(2025, 3, 30));
        let autumn =
            local_midnight(london, d(2025, 10, 27)) - local_midnight(london, d(2025, 10, 26));
        assert_eq!((spring.num_hours(), autumn.num_hours()), (23, 25));
        // America/Santiago skips midnight when DST starts (2024-09-08 00:00 does not exist).
        let santiago: Tz = "America/Santiago".parse().expect("tz");
        assert_eq!(
            local_midnight(santiago, d(2024, 9, 8)),
            at("2024-09-08T04:00:00Z")
        );
    }

    #[test]
    fn range_validation() {
        assert_eq!(
            check_range(d(2025, 1, 1), d(2025, 1, 1)),
            Err(SummaryError::StartNotBeforeEnd)
        );
        assert_eq!(
            check_range(d(2025, 1, 1), d(2026, 2, 6)),
            Err(SummaryError::RangeTooLong)
        );
        assert_eq!(check_range(d(2025, 1, 1), d(2026, 2, 5)), Ok(()));
    }

    proptest! {
        /// The changes of consecutive daily rows add up to the difference of the totals, and
        /// the last total equals everything recorded up to the end of the range.
        #[test]
        fn changes_and_totals_agree(
            events in proptest::collection::vec((0i64..(60 * 24 * 3600), -100i32..100), 0..50),
            tz_idx in 0usize..4,
        ) {
            let zones = ["UTC", "Europe/London", "Australia/Lord_Howe", "Pacific/Apia"];
            let tz: Tz = zones[tz_idx].parse().expect("tz");
            let base = at("2025-01-01T00:00:00Z");
            let mut b = Buckets::new();
            for (secs, v) in &events {
                *b.entry(bucket_of(base + chrono::Duration::seconds(*secs))).or_default() += f64::from(*v);
            }
            let rows = summarize(&b, tz, Aggregation::Daily, d(2025, 1, 10), d(2025, 2, 10));
            for pair in rows.windows(2) {
                prop_assert!((pair[1].total - pair[0].total - pair[1].change).abs() < 1e-9);
            }
            let end = local_midnight(tz, d(2025, 2, 11));
            let expected: f64 = events.iter()
                .filter(|(s, _)| base + chrono::Duration::seconds(*s) < end)
                .map(|(_, v)| f64::from(*v)).sum();
            let last = rows.last().map(|r| r.total).unwrap_or_default();
            prop_assert!((last - expected).abs() < 1e-9);
        }
    }
}
