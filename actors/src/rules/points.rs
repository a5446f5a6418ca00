//! Points arithmetic (SPEC §6.3–6.5): metric accumulators, streak multiples, boosted amounts,
//! clamping and levels. Pure: no catalog lookups, no time source.

use chrono::{DateTime, Days, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::rules::streak::local_date;
use crate::rules::summary::local_midnight;

/// How a boosted amount is rounded (SPEC §6.6.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    #[default]
    Down,
    Up,
    Nearest,
}

impl Rounding {
    pub fn as_str(self) -> &'static str {
        match self {
            Rounding::Down => "down",
            Rounding::Up => "up",
            Rounding::Nearest => "nearest",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "down" => Some(Rounding::Down),
            "up" => Some(Rounding::Up),
            "nearest" => Some(Rounding::Nearest),
            _ => None,
        }
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Rounding::Down => x.floor(),
            Rounding::Up => x.ceil(),
            // Half-up: 2.5 → 3, -2.5 is never rounded (boosts apply to positive amounts).
            Rounding::Nearest => (x + 0.5).floor(),
        }
    }
}

/// The per-(user, trigger) state of a metric trigger: qualifying progress and the number
/// of threshold multiples already paid (a high-water mark, SPEC §6.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Accumulator {
    pub progress: f64,
    pub paid: u64,
}

impl Accumulator {
    /// Adds an event's value; returns the accumulator after it and the number of new
    /// multiples to pay (0 when the value is negative or does not cross a multiple).
    pub fn add(self, value: f64, threshold: u64) -> (Accumulator, u64) {
        let progress = self.progress + value;
        let reached = (progress / threshold as f64).floor();
        let k = if reached.is_finite() && reached > 0.0 {
            // Saturates far beyond any reachable total.
            reached.min(u64::MAX as f64) as u64
        } else {
            0
        };
        if k > self.paid {
            (Accumulator { progress, paid: k }, k - self.paid)
        } else {
            (
                Accumulator {
                    progress,
                    paid: self.paid,
                },
                0,
            )
        }
    }
}

/// How often a time trigger fires (SPEC §6.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    Hours(u32),
    Days(u32),
}

/// The `k`-th firing (k ≥ 1) of a time trigger anchored at `anchor` = max(user creation,
/// trigger activation): hours → `anchor + k × interval` hours; days → local midnight,
/// `k × interval` days after the first local midnight following `anchor` (SPEC §6.3.4
/// DECISION: the count starts at that midnight). `None` beyond chrono's range.
pub fn time_firing(anchor: DateTime<Utc>, every: Every, tz: Tz, k: u64) -> Option<DateTime<Utc>> {
    match every {
        Every::Hours(h) => {
            let hours = i64::try_from(k.checked_mul(u64::from(h))?).ok()?;
            anchor.checked_add_signed(Duration::try_hours(hours)?)
        }
        Every::Days(d) => {
            let first = local_date(anchor, tz).checked_add_days(Days::new(1))?;
            let date = first.checked_add_days(Days::new(k.checked_mul(u64::from(d))?))?;
            Some(local_midnight(tz, date))
        }
    }
}

/// Where a user stands with one time trigger: the anchor it counts from, and how many
/// firings were paid. A new anchor (the trigger was re-activated) starts the count again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeCursor {
    pub anchor_ms: i64,
    pub paid: u64,
}

/// Most firings one evaluation pays (a long outage is caught up over several runs).
pub const MAX_CATCH_UP: usize = 1_000;

/// The firings due by `until` after `cursor` (anchored at `anchor`), at most `cap`, and the
/// cursor after paying them.
pub fn due_firings(
    cursor: TimeCursor,
    anchor: DateTime<Utc>,
    every: Every,
    tz: Tz,
    until: DateTime<Utc>,
    cap: usize,
) -> (Vec<DateTime<Utc>>, TimeCursor) {
    let mut cursor = if cursor.anchor_ms == anchor.timestamp_millis() {
        cursor
    } else {
        TimeCursor {
            anchor_ms: anchor.timestamp_millis(),
            paid: 0,
        }
    };
    let mut out = Vec::new();
    while out.len() < cap {
        match time_firing(anchor, every, tz, cursor.paid + 1) {
            Some(at) if at <= until => {
                out.push(at);
                cursor.paid += 1;
            }
            _ => break,
        }
    }
    (out, cursor)
}

/// When a boost is announced as started and finished (SPEC §8.4). Global and cohort
/// boosts: 10:00 UTC on the day before `start`, 13:00 UTC on the day after `end`.
/// User-specific boosts (`tz` given): 00:00 local on `start`, 00:00 local on `end + 1`.
/// `None` for the finish of an open-ended boost.
pub fn boost_moments(
    start: NaiveDate,
    end: Option<NaiveDate>,
    tz: Option<Tz>,
) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    let utc_at = |date: Option<NaiveDate>, hour: u32| {
        date.and_then(|d| d.and_hms_opt(hour, 0, 0))
            .map(|t| t.and_utc())
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    match tz {
        None => (
            utc_at(start.checked_sub_days(Days::new(1)), 10),
            end.map(|e| utc_at(e.checked_add_days(Days::new(1)), 13)),
        ),
        Some(tz) => (
            local_midnight(tz, start),
            end.and_then(|e| e.checked_add_days(Days::new(1)))
                .map(|d| local_midnight(tz, d)),
        ),
    }
}

/// How far a boost's announcements have gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BoostPhase {
    Started,
    Finished,
}

/// The announcements of a boost due by `at`, in order, given the last one made.
pub fn due_announcements(
    moments: (DateTime<Utc>, Option<DateTime<Utc>>),
    announced: Option<BoostPhase>,
    at: DateTime<Utc>,
) -> Vec<BoostPhase> {
    let (started, finished) = moments;
    let mut out = Vec::new();
    if announced.is_none() && started <= at {
        out.push(BoostPhase::Started);
    }
    let has_started = announced.is_some() || !out.is_empty();
    if has_started && announced != Some(BoostPhase::Finished) && finished.is_some_and(|f| f <= at) {
        out.push(BoostPhase::Finished);
    }
    out
}

/// The next announcement instant of a boost after the last one made, if any.
pub fn next_announcement(
    moments: (DateTime<Utc>, Option<DateTime<Utc>>),
    announced: Option<BoostPhase>,
) -> Option<DateTime<Utc>> {
    match announced {
        None => Some(moments.0),
        Some(BoostPhase::Started) => moments.1,
        Some(BoostPhase::Finished) => None,
    }
}

/// Whether a streak that grew to `length` fires a trigger of `every` (every positive
/// multiple, SPEC §6.3.2).
pub fn streak_fires(length: u32, every: u32) -> bool {
    every > 0 && length > 0 && length.is_multiple_of(every)
}

/// Rounding when several boosts apply: theirs if they agree, else `down` (SPEC §6.6.4).
pub fn combined_rounding(roundings: &[Rounding]) -> Rounding {
    match roundings.split_first() {
        Some((first, rest)) if rest.iter().all(|r| r == first) => *first,
        _ => Rounding::Down,
    }
}

/// A positive base amount multiplied by every multiplier, then rounded once (SPEC §6.4.1).
/// Negative and zero amounts are returned unchanged: boosts never apply to them.
pub fn boosted(base: i64, multipliers: &[f64], rounding: Rounding) -> i64 {
    if base <= 0 || multipliers.is_empty() {
        return base;
    }
    let product = multipliers.iter().fold(base as f64, |acc, m| acc * m);
    let rounded = rounding.apply(product);
    if rounded >= i64::MAX as f64 {
        i64::MAX
    } else {
        rounded as i64
    }
}

/// What an amount actually changes a total by: never below 0, never above `max`
/// (SPEC §6.4.2–6.4.3).
pub fn clamp_award(total_before: i64, amount: i64, max: Option<i64>) -> i64 {
    let mut after = total_before.saturating_add(amount).max(0);
    if let Some(max) = max {
        after = after.min(max.max(total_before));
    }
    after - total_before
}

/// Whether a deduction must be refused under `blockIfOutOfPoints` (SPEC §6.4.2).
pub fn blocks(total_before: i64, amount: i64) -> bool {
    amount < 0 && total_before.saturating_add(amount) < 0
}

/// The level for `total` among `(threshold, creation order)` levels: the greatest threshold
/// ≤ total, earliest created on ties (SPEC §6.5.2). Returns its index in `levels`.
pub fn level_of(total: i64, levels: &[(i64, u64)]) -> Option<usize> {
    levels
        .iter()
        .enumerate()
        .filter(|(_, (threshold, _))| *threshold <= total)
        .max_by(|(_, a), (_, b)| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(i, _)| i)
}

/// Whether a boost window `[start, end]` (inclusive, `end` open when `None`) holds `date`.
pub fn in_window(date: NaiveDate, start: NaiveDate, end: Option<NaiveDate>) -> bool {
    date >= start && end.is_none_or(|e| date <= e)
}

/// The 11 ranges of `GET /points/{key}/summary` (SPEC §6.7.3) for a maximum total `max`:
/// `[0,0]`, then ten equal ranges up to the smallest power of ten ≥ max (at least 10).
pub fn summary_ranges(max: i64) -> Vec<(i64, i64)> {
    let mut upper: i64 = 10;
    while upper < max {
        upper = upper.saturating_mul(10);
    }
    let width = upper / 10;
    let mut out = vec![(0, 0)];
    for i in 1..=10 {
        out.push(((i - 1) * width + 1, i * width));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn metric_accumulator_pays_every_multiple_once() {
        // SPEC §6.3.1 example: threshold 3, events 2, 2, 5 → 0, 1, 2 multiples.
        let a = Accumulator::default();
        let (a, k1) = a.add(2.0, 3);
        let (a, k2) = a.add(2.0, 3);
        let (a, k3) = a.add(5.0, 3);
        assert_eq!((k1, k2, k3), (0, 1, 2));
        // Negative events reduce progress but never revoke; gains must recover first.
        let (a, k) = a.add(-4.0, 3);
        assert_eq!((k, a.paid), (0, 3));
        let (_, k) = a.add(4.0, 3);
        assert_eq!(k, 0, "progress 9 again: nothing new");
    }

    #[test]
    fn fractional_values_accumulate_to_whole_awards() {
        let mut a = Accumulator::default();
        let mut paid = 0;
        for _ in 0..10 {
            let (next, k) = a.add(0.3, 1);
            a = next;
            paid += k;
        }
        assert_eq!(paid, 2, "3.0 in floats is just under 3");
        let (_, k) = a.add(0.01, 1);
        assert_eq!(paid + k, 3);
    }

    #[test]
    fn streak_triggers_fire_on_multiples() {
        assert!(streak_fires(3, 3) && streak_fires(6, 3));
        assert!(!streak_fires(4, 3) && !streak_fires(0, 3));
    }

    #[test]
    fn boosts_multiply_then_round_once() {
        assert_eq!(boosted(10, &[1.5, 1.5], Rounding::Down), 22);
        assert_eq!(boosted(10, &[1.5, 1.5], Rounding::Up), 23);
        assert_eq!(boosted(5, &[1.5], Rounding::Nearest), 8);
        assert_eq!(boosted(5, &[1.1], Rounding::Nearest), 6);
        assert_eq!(
            boosted(-10, &[2.0], Rounding::Up),
            -10,
            "never on deductions"
        );
        assert_eq!(
            combined_rounding(&[Rounding::Up, Rounding::Nearest]),
            Rounding::Down
        );
        assert_eq!(
            combined_rounding(&[Rounding::Up, Rounding::Up]),
            Rounding::Up
        );
    }

    #[test]
    fn awards_clamp_at_zero_and_max() {
        assert_eq!(clamp_award(5, -10, None), -5);
        assert_eq!(clamp_award(90, 20, Some(100)), 10);
        assert_eq!(clamp_award(100, 20, Some(100)), 0);
        assert!(blocks(5, -10) && !blocks(10, -10) && !blocks(0, 5));
    }

    #[test]
    fn levels_take_the_greatest_threshold_earliest_on_ties() {
        let levels = [(0, 1), (100, 2), (100, 3), (500, 4)];
        assert_eq!(level_of(50, &levels), Some(0));
        assert_eq!(level_of(100, &levels), Some(1));
        assert_eq!(level_of(9999, &levels), Some(3));
        assert_eq!(level_of(-1, &levels), None);
        assert_eq!(level_of(5, &[]), None);
    }

    #[test]
    fn time_triggers_fire_every_interval_from_the_anchor() {
        use chrono::TimeZone;
        let anchor = Utc
            .with_ymd_and_hms(2025, 3, 1, 10, 30, 0)
            .single()
            .expect("valid");
        let h = time_firing(anchor, Every::Hours(2), Tz::UTC, 1).expect("in range");
        assert_eq!(h, anchor + Duration::hours(2));
        // Days: counted from the first local midnight after the anchor (2025-03-02 00:00).
        let tz: Tz = "America/New_York".parse().expect("tz");
        let d1 = time_firing(anchor, Every::Days(1), tz, 1).expect("in range");
        assert_eq!(d1.with_timezone(&tz).to_string(), "2025-03-03 00:00:00 EST");
        // Across the DST change of 2025-03-09 the firing stays at local midnight.
        let d7 = time_firing(anchor, Every::Days(1), tz, 8).expect("in range");
        assert_eq!(d7.with_timezone(&tz).to_string(), "2025-03-10 00:00:00 EDT");
        // Catch-up pays each elapsed interval once; a new anchor restarts the count.
        let until = anchor + Duration::hours(7);
        let (fired, cur) = due_firings(
            TimeCursor::default(),
            anchor,
            Every::Hours(2),
            Tz::UTC,
            until,
            10,
        );
        assert_eq!((fired.len(), cur.paid), (3, 3));
        let (again, same) = due_firings(cur, anchor, Every::Hours(2), Tz::UTC, until, 10);
        assert!(again.is_empty() && same == cur);
        let (capped, c2) = due_firings(
            TimeCursor::default(),
            anchor,
            Every::Hours(1),
            Tz::UTC,
            until,
            2,
        );
        assert_eq!((capped.len(), c2.paid), (2, 2));
        let later = anchor + Duration::hours(1);
        let (_, reset) = due_firings(cur, later, Every::Hours(2), Tz::UTC, until, 10);
        assert_eq!(reset.anchor_ms, later.timestamp_millis());
        assert_eq!(
            reset.paid, 3,
            "7h − 1h = 6h: three firings from the new anchor"
        );
    }

    #[test]
    fn boost_announcements_follow_spec_8_4() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        let (started, finished) = boost_moments(d("2025-06-10"), Some(d("2025-06-12")), None);
        assert_eq!(started.to_rfc3339(), "2025-06-09T10:00:00+00:00");
        assert_eq!(
            finished.expect("end").to_rfc3339(),
            "2025-06-13T13:00:00+00:00"
        );
        let tz: Tz = "Asia/Tokyo".parse().expect("tz");
        let (s, f) = boost_moments(d("2025-06-10"), Some(d("2025-06-12")), Some(tz));
        assert_eq!(s.to_rfc3339(), "2025-06-09T15:00:00+00:00");
        assert_eq!(f.expect("end").to_rfc3339(), "2025-06-12T15:00:00+00:00");
        assert!(
            boost_moments(d("2025-06-10"), None, None).1.is_none(),
            "open-ended"
        );
    }

    #[test]
    fn summary_ranges_follow_the_spec_example() {
        let r = summary_ranges(600);
        assert_eq!(r.len(), 11);
        assert_eq!((r[0], r[1], r[10]), ((0, 0), (1, 100), (901, 1000)));
        assert_eq!(summary_ranges(3)[1], (1, 1));
    }

    proptest! {
        /// The sum of paid multiples equals floor(max progress seen / threshold).
        #[test]
        fn accumulator_pays_the_high_water_mark(values in proptest::collection::vec(-50i32..50, 1..60), threshold in 1u64..20) {
            let mut a = Accumulator::default();
            let mut paid = 0u64;
            let mut high = 0.0f64;
            for v in values {
                let (next, k) = a.add(f64::from(v), threshold);
                a = next;
                paid += k;
                high = high.max(a.progress);
                prop_assert_eq!(paid, (high / threshold as f64).floor() as u64);
            }
        }

        /// A total fed by clamped awards stays within [0, max].
        #[test]
        fn clamped_totals_stay_in_bounds(amounts in proptest::collection::vec(-1000i64..1000, 1..60), max in proptest::option::of(1i64..5000)) {
            let mut total = 0i64;
            for a in amounts {
                total += clamp_award(total, a, max);
                prop_assert!(total >= 0);
                if let Some(m) = max { prop_assert!(total <= m); }
            }
        }
    }
}
