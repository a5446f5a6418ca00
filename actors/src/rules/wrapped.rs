//! Wrapped (year in review, SPEC §9.3): the pure rules over a user's activity in one
//! calendar year of their time zone. Counts come in per local day; the rules pick the active
//! days, weeks and months, the most active of each, and the change figures.
//!
//! DECISIONs followed (SPEC §9.3.4, §9.3.6): the most active period is the one with the most
//! events, ties going to the earliest; weeks run Sunday to Saturday and are clipped to the
//! year; `percentChange` is `change / totalAtPeriodStart × 100`, or 100 when the start total
//! is 0 and the change positive, or 0 when there is no change; `percentileThisPeriod` is the
//! share of users in scope whose change is at most this user's.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};

/// Events per local day of one year (days without events are absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YearActivity {
    pub year: i32,
    pub days: BTreeMap<NaiveDate, u32>,
}

/// A period of the year: its first and last local day (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

fn year_bounds(year: i32) -> Option<(NaiveDate, NaiveDate)> {
    Some((
        NaiveDate::from_ymd_opt(year, 1, 1)?,
        NaiveDate::from_ymd_opt(year, 12, 31)?,
    ))
}

/// The Sunday–Saturday week holding `day`, clipped to `day`'s year.
pub fn week_of(day: NaiveDate) -> Period {
    let back = i64::from(day.weekday().num_days_from_sunday());
    let start = day - Duration::days(back);
    let end = start + Duration::days(6);
    match year_bounds(day.year()) {
        Some((first, last)) => Period {
            start: start.max(first),
            end: end.min(last),
        },
        None => Period { start, end },
    }
}

/// The month (1–12) holding `day`, as a period.
pub fn month_of(day: NaiveDate) -> Period {
    let start = day.with_day(1).unwrap_or(day);
    let next = if day.month() == 12 {
        NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
    };
    Period {
        start,
        end: next.map_or(day, |n| n - Duration::days(1)),
    }
}

impl YearActivity {
    /// Adds `n` events on local day `day` (days outside the year are ignored).
    pub fn add(&mut self, day: NaiveDate, n: u32) {
        if day.year() == self.year && n > 0 {
            *self.days.entry(day).or_default() += n;
        }
    }

    pub fn days_active(&self) -> usize {
        self.days.len()
    }

    /// Events per period, keyed by the period's start, for periods with events.
    fn by(&self, period: impl Fn(NaiveDate) -> Period) -> BTreeMap<NaiveDate, (Period, u64)> {
        let mut out: BTreeMap<NaiveDate, (Period, u64)> = BTreeMap::new();
        for (day, n) in &self.days {
            let p = period(*day);
            out.entry(p.start).or_insert((p, 0)).1 += u64::from(*n);
        }
        out
    }

    pub fn weeks_active(&self) -> usize {
        self.by(week_of).len()
    }

    pub fn months_active(&self) -> usize {
        self.by(month_of).len()
    }

    /// The period with the most events, the earliest on a tie.
    fn most(&self, period: impl Fn(NaiveDate) -> Period) -> Option<Period> {
        let mut best: Option<(Period, u64)> = None;
        // Ascending order: only a strictly greater count replaces the earlier one.
        for (p, n) in self.by(period).into_values() {
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((p, n));
            }
        }
        best.map(|(p, _)| p)
    }

    pub fn most_active_day(&self) -> Option<NaiveDate> {
        self.most(|d| Period { start: d, end: d }).map(|p| p.start)
    }

    pub fn most_active_week(&self) -> Option<Period> {
        self.most(week_of)
    }

    /// The most active month, 0–11 as Wrapped reports it.
    pub fn most_active_month(&self) -> Option<u32> {
        self.most(month_of).map(|p| p.start.month0())
    }
}

/// `percentChange` of a period (SPEC §9.3.6).
pub fn percent_change(total_at_start: f64, change: f64) -> f64 {
    if change == 0.0 {
        0.0
    } else if total_at_start == 0.0 {
        if change > 0.0 {
            100.0
        } else {
            -100.0
        }
    } else {
        change / total_at_start * 100.0
    }
}

/// `percentileThisPeriod`: the percentage of the `users` in scope whose change is at most
/// `mine`, from the distribution of the non-zero changes (`(change, users)`); the users not
/// in it changed by 0. 100 when there is no one to compare with. Two decimals.
pub fn percentile(mine: i64, distribution: &[(i64, u64)], users: u64) -> f64 {
    let counted: u64 = distribution.iter().map(|(_, n)| *n).sum();
    // The distribution counts the user asking too: at least as many users as it holds.
    let users = users.max(counted);
    if users == 0 {
        return 100.0;
    }
    let below: u64 = distribution
        .iter()
        .filter(|(change, _)| *change <= mine)
        .map(|(_, n)| *n)
        .sum();
    let zeros = if mine >= 0 { users - counted } else { 0 };
    let share = (below + zeros) as f64 / users as f64 * 100.0;
    (share * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
    }

    #[test]
    fn weeks_run_sunday_to_saturday_clipped_to_the_year() {
        // 2026-01-01 is a Thursday: its week is clipped to start on Jan 1.
        assert_eq!(
            week_of(d(2026, 1, 1)),
            Period {
                start: d(2026, 1, 1),
                end: d(2026, 1, 3)
            }
        );
        assert_eq!(
            week_of(d(2026, 1, 4)),
            Period {
                start: d(2026, 1, 4),
                end: d(2026, 1, 10)
            }
        );
        // 2026-12-31 is a Thursday: clipped to end on Dec 31.
        assert_eq!(week_of(d(2026, 12, 31)).end, d(2026, 12, 31));
        assert_eq!(week_of(d(2026, 12, 31)).start, d(2026, 12, 27));
        assert_eq!(month_of(d(2028, 2, 10)).end, d(2028, 2, 29));
    }

    #[test]
    fn most_active_periods_take_the_earliest_on_a_tie() {
        let mut a = YearActivity {
            year: 2026,
            ..Default::default()
        };
        a.add(d(2026, 3, 2), 2);
        a.add(d(2026, 3, 9), 2);
        a.add(d(2026, 5, 1), 1);
        a.add(d(2025, 12, 31), 50);
        assert_eq!(a.days_active(), 3, "another year's day is not counted");
        assert_eq!(a.most_active_day(), Some(d(2026, 3, 2)));
        assert_eq!(a.most_active_week().map(|w| w.start), Some(d(2026, 3, 1)));
        assert_eq!(a.most_active_month(), Some(2), "March is month 2");
        assert_eq!((a.weeks_active(), a.months_active()), (3, 2));
        assert_eq!(YearActivity::default().most_active_day(), None);
        // Sunday Nov 26 and Friday Dec 1, 2028: one week, two months.
        let mut b = YearActivity {
            year: 2028,
            ..Default::default()
        };
        b.add(d(2028, 11, 26), 1);
        b.add(d(2028, 12, 1), 1);
        assert_eq!((b.weeks_active(), b.months_active()), (1, 2));
    }

    #[test]
    fn change_figures_follow_the_decisions() {
        assert_eq!(percent_change(0.0, 0.0), 0.0);
        assert_eq!(percent_change(0.0, 5.0), 100.0);
        assert_eq!(percent_change(10.0, 5.0), 50.0);
        assert_eq!(percent_change(10.0, 0.0), 0.0);
        assert_eq!(percentile(3, &[(1, 1), (3, 2), (5, 1)], 4), 75.0);
        // Two users who did nothing are at or below anyone who did not lose.
        assert_eq!(percentile(1, &[(1, 1), (5, 1)], 4), 75.0);
        assert_eq!(percentile(-1, &[(-1, 1)], 3), 33.33);
        assert_eq!(percentile(0, &[], 0), 100.0);
    }

    proptest! {
        /// Counts and periods stay consistent whatever the days: at least as many days as
        /// weeks or months (a week can span two months, so weeks may be fewer than months),
        /// each ≥ 1 once active, no more than the calendar holds, and the most active day
        /// has the largest count of all.
        #[test]
        fn activity_invariants(days in proptest::collection::vec((0u32..366, 1u32..5), 0..80)) {
            let mut a = YearActivity { year: 2028, ..Default::default() };
            for (offset, n) in &days {
                a.add(d(2028, 1, 1) + Duration::days(i64::from(*offset)), *n);
            }
            let (dd, w, m) = (a.days_active(), a.weeks_active(), a.months_active());
            prop_assert!(dd >= w && dd >= m && (dd == 0) == (w == 0) && (w == 0) == (m == 0));
            prop_assert!(dd <= 366 && w <= 54 && m <= 12);
            prop_assert_eq!(dd == 0, a.most_active_day().is_none());
            if let Some(best) = a.most_active_day() {
                let top = a.days[&best];
                prop_assert!(a.days.values().all(|n| *n <= top));
                prop_assert!(a.days.iter().filter(|(_, n)| **n == top).all(|(day, _)| *day >= best));
            }
            if let Some(week) = a.most_active_week() {
                prop_assert!(week.start <= week.end && week.start.year() == 2028 && week.end.year() == 2028);
            }
        }

        /// The percentile is within 0–100, never falls as the user's change grows, and equals
        /// the share counted one user at a time.
        #[test]
        fn percentile_is_monotone(
            changes in proptest::collection::vec(-50i64..50, 1..30),
            idle in 0u64..10,
            a in -60i64..60,
            b in -60i64..60,
        ) {
            let mut distribution: BTreeMap<i64, u64> = BTreeMap::new();
            for c in changes.iter().filter(|c| **c != 0) {
                *distribution.entry(*c).or_default() += 1;
            }
            let distribution: Vec<(i64, u64)> = distribution.into_iter().collect();
            let users = changes.len() as u64 + idle;
            let (lo, hi) = (a.min(b), a.max(b));
            let (p_lo, p_hi) = (percentile(lo, &distribution, users), percentile(hi, &distribution, users));
            prop_assert!((0.0..=100.0).contains(&p_lo) && p_lo <= p_hi);
            let at_most = changes.iter().filter(|c| **c <= lo).count() as u64 + if lo >= 0 { idle } else { 0 };
            let expected = ((at_most as f64 / users as f64 * 100.0) * 100.0).round() / 100.0;
            prop_assert_eq!(p_lo, expected);
        }
    }
}
