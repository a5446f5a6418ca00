//! What a user keeps for Wrapped (SPEC §9.3): event counts by quarter-hour, metric changes
//! by event attribute, the user's change per week, month and year of every metric and points
//! system (the positions in the per-scope distributions percentiles are read from), and the
//! longest streak chain of each year. Updated by the one apply path, so replay rebuilds it.
//!
//! The distributions themselves are counters written in the user's commit: one counter per
//! (series, period, change bucket) holding how many users in scope changed by that much in
//! that period of their own time zone. Buckets are exact for changes up to 100 and 1% wide
//! above, so a period has at most a few thousand counters however many users it has. Users
//! at 0 are not counted (they are the rest of the users counter), so a user's first event in
//! a period is one increment.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Effect, UserRecord};
use crate::rules::streak::{local_date, Frequency, StreakEvent, StreakState};
use crate::rules::summary::{bucket_of, Buckets};
use crate::rules::wrapped::{month_of, week_of};

/// The first codec version whose journal entries moved distribution counters: the positions
/// of entries written before it were never counted.
pub const COUNTED_SINCE: u8 = 4;

/// Changes are kept in millionths, so that the position a commit moves a user from is
/// exactly the one it moved them to before (floats would drift between the two).
pub const MICROS: f64 = 1_000_000.0;

pub fn micros(v: f64) -> i64 {
    // `as` saturates (and maps NaN to 0).
    (v * MICROS).round() as i64
}

/// The periods a distribution is kept for (days have no percentile, SPEC §9.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PeriodKind {
    Week,
    Month,
    Year,
}

impl PeriodKind {
    pub const ALL: [Self; 3] = [Self::Week, Self::Month, Self::Year];

    fn letter(self) -> char {
        match self {
            Self::Week => 'w',
            Self::Month => 'm',
            Self::Year => 'y',
        }
    }

    /// The first day of the period of this kind holding `day` (weeks clipped to the year).
    pub fn start_of(self, day: NaiveDate) -> NaiveDate {
        match self {
            Self::Week => week_of(day).start,
            Self::Month => month_of(day).start,
            Self::Year => day.with_ordinal(1).unwrap_or(day),
        }
    }
}

/// A user's change in one series (a metric or a points system) over one period.
pub type PeriodKey = (Uuid, PeriodKind, i32);

fn period_key(series: Uuid, kind: PeriodKind, start: NaiveDate) -> PeriodKey {
    (series, kind, start.num_days_from_ce())
}

/// The prefix of the distribution counters of `series` in one period.
pub fn distribution_prefix(series: Uuid, kind: PeriodKind, start: NaiveDate) -> String {
    format!("wrapped/{series}/{}{start}/", kind.letter())
}

fn distribution_counter(key: &PeriodKey, bucket: i32) -> String {
    let start = NaiveDate::from_num_days_from_ce_opt(key.2).unwrap_or_default();
    format!("{}{bucket}", distribution_prefix(key.0, key.1, start))
}

/// The lower bounds (millionths) of the positive buckets: 1.01^k rounded up, by repeated
/// multiplication (IEEE-exact, so every build draws the same lines).
fn bucket_bounds() -> &'static [i64] {
    static BOUNDS: std::sync::OnceLock<Vec<i64>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        let mut out = Vec::new();
        let mut x = 1.0f64;
        while x < i64::MAX as f64 {
            out.push(x.ceil() as i64);
            x *= 1.01;
        }
        out
    })
}

/// The distribution bucket of a change in millionths: 0 for 0, then ±k, growing with the
/// magnitude. Two changes more than 1% apart never share one, so integer changes up to 100
/// each have their own.
pub fn bucket(change: i64) -> i32 {
    if change == 0 {
        return 0;
    }
    let magnitude = i64::try_from(change.unsigned_abs()).unwrap_or(i64::MAX);
    let k = i32::try_from(bucket_bounds().partition_point(|b| *b <= magnitude)).unwrap_or(i32::MAX);
    if change < 0 {
        -k
    } else {
        k
    }
}

/// Keeps its value in memory only: never stored, and equal to any other (it is scratch
/// space between an apply and the commit that journals it).
#[derive(Debug, Clone, Default)]
pub struct Unstored<T>(pub T);

impl<T> PartialEq for Unstored<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One position a record moved: (period, before, after), in millionths.
pub type Move = (PeriodKey, i64, i64);

/// `percentileThisPeriod` of a user at `position` in `series` over the period of `kind`
/// starting on `start`, among the `users` of `scope` (SPEC §9.3.6).
pub fn percentile_in(
    indexes: &kudos_snapshots::Indexes,
    scope: kudos_snapshots::Scope,
    (series, kind, start): (Uuid, PeriodKind, NaiveDate),
    position: i64,
    users: u64,
) -> Result<f64, kudos_snapshots::StoreError> {
    let distribution: Vec<(i64, u64)> = indexes
        .counters_with_prefix(scope, &distribution_prefix(series, kind, start))?
        .into_iter()
        .filter_map(|(change, n)| Some((change.parse().ok()?, n)))
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(crate::rules::wrapped::percentile(
        i64::from(bucket(position)),
        &distribution,
        users,
    ))
}

/// One streak chain: its length (as of its last extension), the frequency, the local date
/// of its first satisfying event, and the first and last days of its periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreakChain {
    pub length: u32,
    pub frequency: Frequency,
    pub started: Option<NaiveDate>,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
}

/// See the module docs. Added to user snapshots in codec version 4.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WrappedLog {
    /// Events per quarter-hour index.
    pub events: BTreeMap<i64, u32>,
    /// Metric → (event attribute key, value) → value changes per quarter-hour.
    pub by_attribute: BTreeMap<Uuid, BTreeMap<(String, String), Buckets>>,
    /// The user's change per series and period, in millionths.
    pub periods: BTreeMap<PeriodKey, i64>,
    /// Year → the longest streak chain active in it (the earliest on a tie).
    pub streaks: BTreeMap<i32, StreakChain>,
    /// The positions the last applied record moved, for its commit's counter moves.
    #[serde(skip)]
    pub last_moves: Unstored<Vec<Move>>,
}

/// What a record added to each series: (series, when, millionths).
fn contributions(record: &UserRecord, effects: &[Effect]) -> Vec<(Uuid, DateTime<Utc>, i64)> {
    let mut out = Vec::new();
    if let UserRecord::Event(ev) = record {
        if ev.value != 0.0 {
            out.push((ev.metric_id, ev.at, micros(ev.value)));
        }
    }
    for e in effects {
        if let Effect::PointsAwarded {
            system_id, award, ..
        } = e
        {
            if award.awarded != 0 {
                out.push((
                    *system_id,
                    award.at,
                    award.awarded.saturating_mul(1_000_000),
                ));
            }
        }
    }
    out
}

/// The change a record makes to each of the user's periods, in the user's zone `tz`.
fn period_deltas(record: &UserRecord, effects: &[Effect], tz: Tz) -> BTreeMap<PeriodKey, i64> {
    let mut out: BTreeMap<PeriodKey, i64> = BTreeMap::new();
    for (series, at, change) in contributions(record, effects) {
        let day = local_date(at, tz);
        for kind in PeriodKind::ALL {
            let slot = out
                .entry(period_key(series, kind, kind.start_of(day)))
                .or_default();
            *slot = slot.saturating_add(change);
        }
    }
    out.retain(|_, d| *d != 0);
    out
}

/// The counter moves of one committed record: `(counter, delta)`, from the bucket of each
/// position before the record to the bucket after it.
pub fn distribution_moves(moves: &[Move]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (key, before, after) in moves {
        let (from, to) = (bucket(*before), bucket(*after));
        if from == to {
            continue;
        }
        if from != 0 {
            out.push((distribution_counter(key, from), -1));
        }
        if to != 0 {
            out.push((distribution_counter(key, to), 1));
        }
    }
    out
}

/// Adds `deltas` to the positions; returns what moved (positions at 0 are dropped).
fn move_positions(
    periods: &mut BTreeMap<PeriodKey, i64>,
    deltas: BTreeMap<PeriodKey, i64>,
) -> Vec<Move> {
    let mut moved = Vec::new();
    for (key, delta) in deltas {
        let slot = periods.entry(key).or_default();
        let before = *slot;
        *slot = slot.saturating_add(delta);
        if *slot != before {
            moved.push((key, before, *slot));
        }
        if *slot == 0 {
            periods.remove(&key);
        }
    }
    moved
}

impl WrappedLog {
    /// Folds one applied record and its effects; `streak` is the state after it.
    pub fn note(&mut self, record: &UserRecord, effects: &[Effect], tz: Tz, streak: &StreakState) {
        if let UserRecord::Event(ev) = record {
            let bucket = bucket_of(ev.at);
            let n = self.events.entry(bucket).or_default();
            *n = n.saturating_add(1);
            if ev.value != 0.0 && !ev.attributes.is_empty() {
                let metric = self.by_attribute.entry(ev.metric_id).or_default();
                for (k, v) in &ev.attributes {
                    *metric
                        .entry((k.clone(), v.clone()))
                        .or_default()
                        .entry(bucket)
                        .or_default() += ev.value;
                }
            }
        }
        let moved = move_positions(&mut self.periods, period_deltas(record, effects, tz));
        self.last_moves = Unstored(moved);
        for e in effects {
            if let Effect::Streak {
                event: StreakEvent::Started { length } | StreakEvent::Extended { length },
                ..
            } = e
            {
                self.note_chain(*length, streak);
            }
        }
    }

    /// Records the current chain as the longest of every year it is active in, unless a
    /// longer (or equally long, earlier) one is there.
    fn note_chain(&mut self, length: u32, streak: &StreakState) {
        let (Some(current), Some(frequency)) = (streak.periods.back(), streak.frequency) else {
            return;
        };
        let period_start = streak
            .started
            .map_or(current.start, |s| frequency.period_of(s).0)
            .min(current.start);
        let chain = StreakChain {
            length,
            frequency,
            started: streak.started,
            period_start,
            period_end: current.end,
        };
        for year in period_start.year()..=current.end.year() {
            // The same chain only ever grows (a zone change may relabel its periods); another
            // one must be longer.
            let replace = self.streaks.get(&year).is_none_or(|held| {
                let same = (held.started, held.period_start) == (chain.started, chain.period_start);
                if same {
                    held.length <= chain.length
                } else {
                    held.length < chain.length
                }
            });
            if replace {
                self.streaks.insert(year, chain.clone());
            }
        }
    }

    /// What snapshots written before this log existed imply: one event in every
    /// quarter-hour a metric changed, and the current streak chain. Attribute histories
    /// and distribution positions start empty.
    pub fn from_history<'a>(
        metric_buckets: impl Iterator<Item = &'a Buckets>,
        streak: &StreakState,
    ) -> Self {
        let mut log = Self::default();
        for buckets in metric_buckets {
            for (b, v) in buckets {
                if *v != 0.0 {
                    log.events.entry(*b).or_insert(1);
                }
            }
        }
        if streak.length > 0 {
            log.note_chain(streak.length, streak);
        }
        log
    }
}

/// One series' figures over a period (SPEC §9.3.6): the total at the period's end, the
/// change in it and `percentChange`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub total: f64,
    pub change: f64,
    pub percent_change: f64,
}

fn figures(buckets: &Buckets, from: i64, to: i64) -> Figures {
    // Summed from +0.0: an empty float sum is -0.0.
    let before = buckets.range(..from).fold(0.0, |a, (_, v)| a + v);
    let change = buckets.range(from..to).fold(0.0, |a, (_, v)| a + v);
    Figures {
        total: before + change,
        change,
        percent_change: crate::rules::wrapped::percent_change(before, change),
    }
}

/// A metric or points system over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesFigures {
    pub id: Uuid,
    pub figures: Figures,
    /// The user's position in the scope's distribution for this period (millionths).
    pub position: i64,
    /// Metrics only: per event attribute key and value.
    pub by_attribute: Vec<(String, String, Figures)>,
}

/// One Wrapped period of a user: its days, its kind (`None` for a day), and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodFigures {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub kind: Option<PeriodKind>,
    pub metrics: Vec<SeriesFigures>,
    pub points: Vec<SeriesFigures>,
    /// Achievements completed in the period, in completion order.
    pub achievements: Vec<(Uuid, DateTime<Utc>)>,
}

/// `GET /users/{id}/wrapped` as far as one user's state answers it (percentiles and
/// leaderboard standings are read from the scope's rows by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct WrappedFigures {
    pub days_active: usize,
    pub weeks_active: usize,
    pub months_active: usize,
    pub day: PeriodFigures,
    pub week: PeriodFigures,
    /// The most active month (its number is the start's, 0–11).
    pub month_period: PeriodFigures,
    pub year: PeriodFigures,
    pub longest_streak: Option<StreakChain>,
    /// The streak frequency in force (for a year without a streak).
    pub frequency: Frequency,
}

/// The Wrapped figures of one calendar year of the user's zone.
pub struct WrappedQuery {
    pub year: i32,
}

impl super::UserQuery for WrappedQuery {
    type Answer = Option<WrappedFigures>;

    fn answer(
        &self,
        user: &super::UserState,
        _: &crate::rules::profile::UserProfile,
        catalog: &crate::catalog::Catalog,
        _: DateTime<Utc>,
    ) -> Option<WrappedFigures> {
        wrapped_figures(user, catalog, self.year)
    }
}

/// `None` only for a year chrono cannot represent.
pub fn wrapped_figures(
    user: &super::UserState,
    catalog: &crate::catalog::Catalog,
    year: i32,
) -> Option<WrappedFigures> {
    use crate::rules::summary::{local_midnight, BUCKET_SECS};
    use crate::rules::wrapped::{Period, YearActivity};
    let tz = user.time_zone();
    let first = NaiveDate::from_ymd_opt(year, 1, 1)?;
    let last = NaiveDate::from_ymd_opt(year, 12, 31)?;
    let lo = bucket_of(local_midnight(tz, first));
    let hi = bucket_of(local_midnight(tz, last.succ_opt()?));
    let mut activity = YearActivity {
        year,
        ..Default::default()
    };
    for (b, n) in user.wrapped.events.range(lo..hi) {
        if let Some(at) = DateTime::<Utc>::from_timestamp(b * BUCKET_SECS, 0) {
            activity.add(local_date(at, tz), *n);
        }
    }
    // Ties go to the earliest: a year without events has January 1st, its week and January.
    let day = activity.most_active_day().unwrap_or(first);
    let week = activity
        .most_active_week()
        .unwrap_or_else(|| week_of(first));
    let month = activity.most_active_month().unwrap_or(0);
    let month_start = first.with_month0(month).unwrap_or(first);
    let period = |start: NaiveDate, end: NaiveDate, kind: Option<PeriodKind>| {
        period_figures(user, catalog, tz, Period { start, end }, kind)
    };
    let cfg = super::effective_streak(catalog, &user.preferences);
    Some(WrappedFigures {
        days_active: activity.days_active(),
        weeks_active: activity.weeks_active(),
        months_active: activity.months_active(),
        day: period(day, day, None),
        week: period(week.start, week.end, Some(PeriodKind::Week)),
        month_period: period(
            month_start,
            month_of(month_start).end,
            Some(PeriodKind::Month),
        ),
        year: period(first, last, Some(PeriodKind::Year)),
        longest_streak: user.wrapped.streaks.get(&year).cloned(),
        frequency: cfg.frequency,
    })
}

fn period_figures(
    user: &super::UserState,
    catalog: &crate::catalog::Catalog,
    tz: Tz,
    p: crate::rules::wrapped::Period,
    kind: Option<PeriodKind>,
) -> PeriodFigures {
    use crate::rules::summary::local_midnight;
    let from = bucket_of(local_midnight(tz, p.start));
    let to = bucket_of(local_midnight(tz, p.end.succ_opt().unwrap_or(p.end)));
    let position = |series: Uuid| {
        kind.and_then(|k| {
            user.wrapped
                .periods
                .get(&period_key(series, k, p.start))
                .copied()
        })
        .unwrap_or(0)
    };
    // Series and attribute values the user had nothing in by the period's end are left out.
    let seen = |b: &Buckets| b.range(..to).next().is_some();
    let metrics = catalog
        .metrics()
        .filter_map(|m| {
            let history = user.metrics.get(&m.id).filter(|h| seen(&h.buckets))?;
            let by_attribute = user
                .wrapped
                .by_attribute
                .get(&m.id)
                .into_iter()
                .flatten()
                .filter(|(_, b)| seen(b))
                .map(|((k, v), b)| (k.clone(), v.clone(), figures(b, from, to)))
                .collect();
            Some(SeriesFigures {
                id: m.id,
                figures: figures(&history.buckets, from, to),
                position: position(m.id),
                by_attribute,
            })
        })
        .collect();
    let points = catalog
        .points_systems()
        .filter_map(|s| {
            let balance = user.points.get(&s.id).filter(|p| seen(&p.buckets))?;
            Some(SeriesFigures {
                id: s.id,
                figures: figures(&balance.buckets, from, to),
                position: position(s.id),
                by_attribute: Vec::new(),
            })
        })
        .collect();
    let mut achievements: Vec<(Uuid, DateTime<Utc>)> = user
        .completed
        .iter()
        .filter(|(id, c)| {
            let day = local_date(c.at, tz);
            day >= p.start && day <= p.end && catalog.achievement(**id).is_some()
        })
        .map(|(id, c)| (*id, c.at))
        .collect();
    achievements.sort_by_key(|(id, at)| (*at, *id));
    PeriodFigures {
        start: p.start,
        end: p.end,
        kind,
        metrics,
        points,
        achievements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
    }

    #[test]
    fn period_starts_clip_weeks_to_the_year() {
        // 2026-01-01 is a Thursday.
        assert_eq!(PeriodKind::Week.start_of(d(2026, 1, 2)), d(2026, 1, 1));
        assert_eq!(PeriodKind::Week.start_of(d(2025, 12, 31)), d(2025, 12, 28));
        assert_eq!(PeriodKind::Month.start_of(d(2026, 2, 28)), d(2026, 2, 1));
        assert_eq!(PeriodKind::Year.start_of(d(2026, 7, 4)), d(2026, 1, 1));
    }

    #[test]
    fn moves_go_from_the_old_bucket_to_the_new() {
        let series = Uuid::from_u128(7);
        let key = period_key(series, PeriodKind::Year, d(2026, 1, 1));
        let prefix = distribution_prefix(series, PeriodKind::Year, d(2026, 1, 1));
        let (three, five) = (bucket(3_000_000), bucket(5_000_000));
        assert_eq!(
            distribution_moves(&[(key, 3_000_000, 5_000_000)]),
            vec![
                (format!("{prefix}{three}"), -1),
                (format!("{prefix}{five}"), 1)
            ]
        );
        // From nothing: only the increment; back to nothing: only the decrement; within a
        // bucket: nothing.
        assert_eq!(distribution_moves(&[(key, 0, 5_000_000)]).len(), 1);
        assert_eq!(
            distribution_moves(&[(key, -2_000_000, 0)]),
            vec![(format!("{prefix}{}", bucket(-2_000_000)), -1)]
        );
        assert!(distribution_moves(&[(key, 1_000_000_000, 1_000_000_001)]).is_empty());
    }

    #[test]
    fn buckets_keep_small_integers_apart_and_big_changes_within_a_percent() {
        let ints: Vec<i32> = (1..=100).map(|n| bucket(n * 1_000_000)).collect();
        assert!(ints.windows(2).all(|w| w[0] < w[1]), "{ints:?}");
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(-5_000_000), -bucket(5_000_000));
        assert!(bucket(i64::MAX) < 5000 && bucket(i64::MIN) > -5000);
    }

    proptest::proptest! {
        /// Buckets preserve order, and values more than 1% apart never share one.
        #[test]
        fn buckets_are_monotone(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000) {
            let (lo, hi) = (a.min(b), a.max(b));
            proptest::prop_assert!(bucket(lo) <= bucket(hi));
            if lo > 0 && (hi as f64) > (lo as f64) * 1.0101 {
                proptest::prop_assert!(bucket(lo) < bucket(hi));
            }
        }

        /// Whatever the records (values of both signs, several series and days), the counter
        /// moves of all of them add up to the histogram of the final positions.
        #[test]
        fn moves_add_up_to_the_final_positions(
            steps in proptest::collection::vec((0u128..3, 0i64..40, -50i64..50), 1..60),
        ) {
            let mut periods: BTreeMap<PeriodKey, i64> = BTreeMap::new();
            let mut counters: BTreeMap<String, i64> = BTreeMap::new();
            for (series, day, value) in steps {
                let day = d(2026, 1, 1) + chrono::Days::new(day as u64);
                let deltas = PeriodKind::ALL
                    .into_iter()
                    .map(|kind| (period_key(Uuid::from_u128(series), kind, kind.start_of(day)), value * 1_000_000))
                    .collect();
                let moved = move_positions(&mut periods, deltas);
                for (c, delta) in distribution_moves(&moved) {
                    *counters.entry(c).or_default() += delta;
                }
            }
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for (key, v) in &periods {
                if bucket(*v) != 0 {
                    *expected.entry(distribution_counter(key, bucket(*v))).or_default() += 1;
                }
            }
            counters.retain(|_, n| *n != 0);
            proptest::prop_assert_eq!(counters, expected);
        }
    }
}
