//! Leaderboard runs (SPEC §7.2): a perpetual board has one run `[start, end]`; a repeating
//! board's run k starts `k × interval` units after `start` and ends the day before run k+1,
//! the last one cut at `end`. Months and years count from the original start (Jan 31
//! monthly → Feb 28/29, Mar 31, …): each run start is computed from `start`, never from
//! the previous run, so the day of month comes back after a short month.

use chrono::{Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunUnit {
    Day,
    Month,
    Year,
}

impl RunUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            RunUnit::Day => "day",
            RunUnit::Month => "month",
            RunUnit::Year => "year",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "day" => Some(RunUnit::Day),
            "month" => Some(RunUnit::Month),
            "year" => Some(RunUnit::Year),
            _ => None,
        }
    }
}

/// When a leaderboard's runs happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    /// `None`: perpetual (one run).
    pub every: Option<(RunUnit, u32)>,
}

/// One run: its index and inclusive dates (`end` open for the last run of an open board).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub index: u64,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
}

impl Schedule {
    /// The first day of run `k` (before any cut at `end`), if representable.
    fn run_start(&self, k: u64) -> Option<NaiveDate> {
        let (unit, interval) = self.every?;
        let steps = k.checked_mul(u64::from(interval))?;
        match unit {
            RunUnit::Day => self.start.checked_add_days(Days::new(steps)),
            RunUnit::Month => self
                .start
                .checked_add_months(Months::new(u32::try_from(steps).ok()?)),
            RunUnit::Year => self
                .start
                .checked_add_months(Months::new(u32::try_from(steps.checked_mul(12)?).ok()?)),
        }
    }

    /// Run `k`, if it starts on or before `end`.
    pub fn run(&self, k: u64) -> Option<Run> {
        if self.every.is_none() {
            return (k == 0).then_some(Run {
                index: 0,
                start: self.start,
                end: self.end,
            });
        }
        let start = self.run_start(k)?;
        if self.end.is_some_and(|end| start > end) {
            return None;
        }
        let natural_end = self
            .run_start(k + 1)
            .and_then(|next| next.checked_sub_days(Days::new(1)));
        let end = match (natural_end, self.end) {
            (Some(n), Some(e)) => Some(n.min(e)),
            (n, e) => n.or(e),
        };
        Some(Run {
            index: k,
            start,
            end,
        })
    }

    /// The run containing `date`, or `None` before `start` or after `end`.
    pub fn run_at(&self, date: NaiveDate) -> Option<Run> {
        if date < self.start || self.end.is_some_and(|end| date > end) {
            return None;
        }
        let Some((unit, interval)) = self.every else {
            return self.run(0);
        };
        let interval = i64::from(interval.max(1));
        // An estimate from the elapsed units, then corrected by at most a step or two.
        let elapsed = match unit {
            RunUnit::Day => (date - self.start).num_days(),
            RunUnit::Month | RunUnit::Year => {
                let months = (i64::from(date.year()) - i64::from(self.start.year())) * 12
                    + i64::from(date.month0())
                    - i64::from(self.start.month0());
                if unit == RunUnit::Year {
                    months / 12
                } else {
                    months
                }
            }
        };
        let mut k = u64::try_from(elapsed / interval).unwrap_or(0);
        while k > 0 && self.run_start(k).is_none_or(|s| s > date) {
            k -= 1;
        }
        while self.run_start(k + 1).is_some_and(|s| s <= date) {
            k += 1;
        }
        self.run(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn weekly() -> Schedule {
        Schedule {
            start: d("2025-01-05"),
            end: None,
            every: Some((RunUnit::Day, 7)),
        }
    }

    #[test]
    fn spec_7_8_weekly_runs() {
        let s = weekly();
        let r0 = s.run_at(d("2025-01-08")).expect("run 0");
        assert_eq!(
            (r0.index, r0.start, r0.end),
            (0, d("2025-01-05"), Some(d("2025-01-11")))
        );
        let r1 = s.run_at(d("2025-01-12")).expect("run 1");
        assert_eq!(
            (r1.index, r1.start, r1.end),
            (1, d("2025-01-12"), Some(d("2025-01-18")))
        );
        assert!(s.run_at(d("2025-01-04")).is_none(), "before start");
    }

    #[test]
    fn months_anchor_on_the_original_day_and_the_last_run_is_cut() {
        let s = Schedule {
            start: d("2024-01-31"),
            end: Some(d("2024-05-15")),
            every: Some((RunUnit::Month, 1)),
        };
        let starts: Vec<NaiveDate> = (0..5).filter_map(|k| s.run(k)).map(|r| r.start).collect();
        assert_eq!(
            starts,
            vec![
                d("2024-01-31"),
                d("2024-02-29"),
                d("2024-03-31"),
                d("2024-04-30")
            ]
        );
        assert_eq!(s.run(1).and_then(|r| r.end), Some(d("2024-03-30")));
        assert_eq!(
            s.run(3).and_then(|r| r.end),
            Some(d("2024-05-15")),
            "cut at end"
        );
        assert_eq!(s.run_at(d("2024-03-30")).map(|r| r.index), Some(1));
        assert_eq!(s.run_at(d("2024-05-16")), None, "after end");
        let yearly = Schedule {
            start: d("2024-02-29"),
            end: None,
            every: Some((RunUnit::Year, 1)),
        };
        assert_eq!(yearly.run(1).map(|r| r.start), Some(d("2025-02-28")));
        assert_eq!(yearly.run(4).map(|r| r.start), Some(d("2028-02-29")));
        let perpetual = Schedule {
            start: d("2024-01-01"),
            end: None,
            every: None,
        };
        assert_eq!(
            perpetual.run_at(d("2030-01-01")).map(|r| (r.index, r.end)),
            Some((0, None))
        );
    }

    proptest! {
        /// Runs tile the calendar: every date from `start` is in exactly one run, which
        /// contains it, and consecutive runs touch.
        #[test]
        fn runs_tile_the_days(offset in 0i64..3000, unit in 0u8..3, interval in 1u32..5, start_day in 0i64..800) {
            let start = d("2023-01-01") + chrono::Duration::days(start_day);
            let unit = [RunUnit::Day, RunUnit::Month, RunUnit::Year][usize::from(unit)];
            let s = Schedule { start, end: None, every: Some((unit, interval)) };
            let date = start + chrono::Duration::days(offset);
            let run = s.run_at(date).expect("a run");
            prop_assert!(run.start <= date && run.end.is_none_or(|e| date <= e));
            let next = s.run(run.index + 1).expect("next");
            prop_assert_eq!(run.end.map(|e| e + chrono::Duration::days(1)), Some(next.start));
        }
    }
}
