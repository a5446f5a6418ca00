//! Streak rules (SPEC §5): periods in the user's time zone, satisfaction, extension,
//! end-of-period evaluation with days off, pauses and freezes, auto-earned freezes, time-zone
//! re-anchoring, restore and reset, and the derived fields every streak object shows.
//!
//! The state keeps a ledger of consecutive periods; the last entry is the current period.
//! Continuity is the ledger's order, not date arithmetic, which is what makes a time-zone
//! change safe: the current entry is relabelled to the period containing the change instant
//! in the new zone (SPEC §5.9), and the next period follows it in the new zone.
//!
//! Every function takes the effective configuration and `now`; nothing here reads a clock.
//! Callers journal the inputs (configuration, instant, zone), and replay calls the same
//! functions, so a recovered streak equals the live one.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::summary::local_midnight;

/// Periods kept in the ledger: enough for `historyPeriods` (capped at 1000) and for the
/// restore windows (90 days, this year's weeks, two years of months).
pub const MAX_PERIODS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
}

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }

    /// The period `[start, end]` containing `date` (weeks run Sunday to Saturday).
    pub fn period_of(self, date: NaiveDate) -> (NaiveDate, NaiveDate) {
        match self {
            Frequency::Daily => (date, date),
            Frequency::Weekly => {
                let start = date - Days::new(u64::from(date.weekday().num_days_from_sunday()));
                (start, start + Days::new(6))
            }
            Frequency::Monthly => {
                let start = date.with_day(1).unwrap_or(date);
                let next = start + Months::new(1);
                (start, next - Days::new(1))
            }
        }
    }

    /// The period after the one ending on `end`.
    pub fn next_period(self, end: NaiveDate) -> (NaiveDate, NaiveDate) {
        self.period_of(end + Days::new(1))
    }

    /// The period before the one starting on `start`.
    pub fn previous_period(self, start: NaiveDate) -> (NaiveDate, NaiveDate) {
        self.period_of(start - Days::new(1))
    }
}

/// How several streak metrics combine (SPEC §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "AND")]
    And,
    #[serde(rename = "OR")]
    Or,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::And => "AND",
            Mode::Or => "OR",
        }
    }

    /// `AND`, `OR`, and `ALL` as an alias of `AND` (SPEC Appendix B.1).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "AND" | "ALL" => Some(Mode::And),
            "OR" => Some(Mode::Or),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeConfig {
    pub start_count: u32,
    pub max_count: u32,
    /// Days between auto-earned freezes, counted from the user's creation date.
    pub auto_earn_interval: Option<u32>,
    pub auto_earn_amount: Option<u32>,
}

impl FreezeConfig {
    fn auto_earn(&self) -> Option<(u32, u32)> {
        match (self.auto_earn_interval, self.auto_earn_amount) {
            (Some(i), Some(a)) if i > 0 => Some((i, a)),
            _ => None,
        }
    }
}

/// The streak configuration in force for one user: org settings with the user's overrides
/// applied (SPEC §2.4.6). Journaled with every record that moves a streak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreakConfig {
    /// `false` when the user disabled streaks: length is always 0 (SPEC §2.4.4).
    pub enabled: bool,
    pub frequency: Frequency,
    pub mode: Mode,
    /// Metric id and threshold (> 0). Empty: the streak never extends (SPEC §5.1.2).
    pub metrics: Vec<(Uuid, f64)>,
    /// Weekdays off, 0 = Sunday; only meaningful for daily streaks.
    pub days_off: Vec<u8>,
    pub freezes: Option<FreezeConfig>,
}

impl StreakConfig {
    /// Whether `sums` (per metric, for one period) satisfy the period.
    pub fn satisfied_by(&self, sums: &BTreeMap<Uuid, f64>) -> bool {
        if !self.enabled || self.metrics.is_empty() {
            return false;
        }
        let meets =
            |(id, threshold): &(Uuid, f64)| sums.get(id).copied().unwrap_or(0.0) >= *threshold;
        match self.mode {
            Mode::Or => self.metrics.iter().any(meets),
            Mode::And => self.metrics.iter().all(meets),
        }
    }

    fn is_day_off(&self, start: NaiveDate) -> bool {
        self.frequency == Frequency::Daily
            && self
                .days_off
                .contains(&(start.weekday().num_days_from_sunday() as u8))
    }
}

/// How a period that ended unsatisfied was treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bridge {
    DayOff,
    Pause,
    Freeze,
}

/// One period of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodEntry {
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Net sums per metric of the events in this period.
    pub sums: BTreeMap<Uuid, f64>,
    /// Sticky: once satisfied, later negative events do not undo it (SPEC §5.2.4).
    pub satisfied: bool,
    /// Set when the period ended unsatisfied and was bridged.
    pub bridged: Option<Bridge>,
    /// The streak length after this period (history's `length`).
    pub length: u32,
    pub reset_at: Option<DateTime<Utc>>,
    /// Relabelled by a time-zone change: it directly follows the previous entry whatever
    /// the dates say.
    #[serde(default)]
    pub continues: bool,
}

impl PeriodEntry {
    fn new((start, end): (NaiveDate, NaiveDate)) -> Self {
        Self {
            start,
            end,
            sums: BTreeMap::new(),
            satisfied: false,
            bridged: None,
            length: 0,
            reset_at: None,
            continues: false,
        }
    }
}

/// A scheduled streak pause (SPEC §5.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub id: Uuid,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub archived: bool,
}

impl Pause {
    fn overlaps(&self, start: NaiveDate, end: NaiveDate) -> bool {
        !self.archived && self.start <= end && start <= self.end
    }
}

/// One user's streak.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreakState {
    pub length: u32,
    /// Local date of the first satisfying event of the current chain.
    pub started: Option<NaiveDate>,
    pub last_extended: Option<DateTime<Utc>>,
    /// Consecutive periods; the last one is the current period.
    pub periods: VecDeque<PeriodEntry>,
    /// The frequency the ledger was built with.
    pub frequency: Option<Frequency>,
    pub freezes: u32,
    /// Next local date on which freezes are auto-earned.
    pub next_earn: Option<NaiveDate>,
    pub last_lost: u32,
    pub pauses: Vec<Pause>,
    /// The user's creation date (auto-earn counts from it).
    #[serde(default)]
    pub created: Option<NaiveDate>,
    /// The auto-earn interval `next_earn` was computed with.
    #[serde(default)]
    pub earn_interval: Option<u32>,
}

/// Something a streak did that the rest of Kudos reacts to (webhooks, pushes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreakEvent {
    Started { length: u32 },
    Extended { length: u32 },
    Lost { length: u32 },
    FreezeConsumed { consumed: u32, freezes: u32 },
    FreezeEarned { earned: u32, freezes: u32 },
}

pub fn local_date(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

impl StreakState {
    fn current(&self) -> Option<&PeriodEntry> {
        self.periods.back()
    }

    fn push(&mut self, entry: PeriodEntry) {
        self.periods.push_back(entry);
        while self.periods.len() > MAX_PERIODS {
            self.periods.pop_front();
        }
    }

    fn active_pauses(&self) -> impl Iterator<Item = &Pause> {
        self.pauses.iter().filter(|p| !p.archived)
    }

    fn paused(&self, start: NaiveDate, end: NaiveDate) -> bool {
        self.active_pauses().any(|p| p.overlaps(start, end))
    }

    /// Freezes granted when the user is created (no event, SPEC §5.5.4).
    pub fn on_user_created(&mut self, cfg: &StreakConfig, created: NaiveDate) {
        self.created = Some(created);
        if let Some(f) = &cfg.freezes {
            self.freezes = f.start_count.min(f.max_count);
            if let Some((interval, _)) = f.auto_earn() {
                self.next_earn = Some(created + Days::new(u64::from(interval)));
                self.earn_interval = Some(interval);
            }
        }
    }

    /// Adds `amount` freezes up to `max`; a count already above `max` (the maximum was
    /// lowered) is left as it is. Returns how many were added.
    fn add_freezes(&mut self, amount: u32, max: u32) -> u32 {
        let before = self.freezes;
        if before < max {
            self.freezes = before.saturating_add(amount).min(max);
        }
        self.freezes - before
    }

    /// Keeps the auto-earn schedule in line with the configuration: turned on (or its
    /// interval changed) after the user was created, the next date is the next multiple of
    /// the interval after `date`, counted from the creation date (SPEC §5.5.5).
    fn align_earn_schedule(&mut self, cfg: &StreakConfig, date: NaiveDate) {
        let interval = cfg
            .freezes
            .as_ref()
            .and_then(FreezeConfig::auto_earn)
            .map(|(i, _)| i);
        if interval == self.earn_interval {
            return;
        }
        self.earn_interval = interval;
        self.next_earn = interval.map(|i| {
            let origin = self.created.unwrap_or(date);
            let elapsed = (date - origin).num_days().max(0) as u64;
            origin + Days::new((elapsed / u64::from(i) + 1) * u64::from(i))
        });
    }

    /// Earns auto freezes due on or before `date`.
    fn earn_until(&mut self, cfg: &StreakConfig, date: NaiveDate, out: &mut Vec<StreakEvent>) {
        let Some(freezes) = &cfg.freezes else { return };
        let Some((interval, amount)) = freezes.auto_earn() else {
            return;
        };
        while let Some(due) = self.next_earn.filter(|d| *d <= date) {
            let before = self.freezes;
            self.add_freezes(amount, freezes.max_count);
            if self.freezes > before {
                out.push(StreakEvent::FreezeEarned {
                    earned: self.freezes - before,
                    freezes: self.freezes,
                });
            }
            self.next_earn = Some(due + Days::new(u64::from(interval)));
        }
    }

    /// Ends the current period (SPEC §5.5.1): kept if satisfied; otherwise bridged by a day
    /// off, a pause or a freeze, or lost. Returns freezes consumed.
    fn finalize_current(&mut self, cfg: &StreakConfig, out: &mut Vec<StreakEvent>) -> u32 {
        let length = self.length;
        let day_off_or_pause = self.current().map(|c| {
            if cfg.is_day_off(c.start) {
                Some(Bridge::DayOff)
            } else if self.paused(c.start, c.end) {
                Some(Bridge::Pause)
            } else {
                None
            }
        });
        let freezes_on = cfg.freezes.is_some();
        let Some(cur) = self.periods.back_mut() else {
            return 0;
        };
        if cur.satisfied || length == 0 {
            return 0;
        }
        if let Some(Some(bridge)) = day_off_or_pause {
            cur.bridged = Some(bridge);
            cur.length = length;
            return 0;
        }
        if freezes_on && self.freezes > 0 {
            self.freezes -= 1;
            cur.bridged = Some(Bridge::Freeze);
            cur.length = length;
            return 1;
        }
        cur.length = 0;
        out.push(StreakEvent::Lost { length });
        self.last_lost = length;
        self.length = 0;
        self.started = None;
        0
    }

    /// Brings the ledger up to `now`: ends every period that is over (in order, earning
    /// freezes as their dates pass) and opens the current one. Idempotent for a given `now`.
    pub fn advance(&mut self, cfg: &StreakConfig, now: DateTime<Utc>, tz: Tz) -> Vec<StreakEvent> {
        let mut out = Vec::new();
        if !cfg.enabled {
            // A user who turned streaks off has length 0 and gets no streak events (§2.4.4).
            self.length = 0;
            self.started = None;
        }
        let today = local_date(now, tz);
        self.align_earn_schedule(cfg, today);
        if self.frequency != Some(cfg.frequency) || self.periods.is_empty() {
            // First use, or the frequency changed: a fresh ledger; the bookkeeping of the old
            // frequency is discarded (SPEC §5.1.3).
            if self.frequency.is_some() && self.frequency != Some(cfg.frequency) {
                self.periods.clear();
                self.length = 0;
                self.started = None;
            }
            self.frequency = Some(cfg.frequency);
            self.earn_until(cfg, today, &mut out);
            self.push(PeriodEntry::new(cfg.frequency.period_of(today)));
            return out;
        }
        let mut consumed = 0;
        while let Some(end) = self.current().map(|c| c.end).filter(|end| *end < today) {
            self.earn_until(cfg, end, &mut out);
            consumed += self.finalize_current(cfg, &mut out);
            // Past periods keep their outcome, not their sums: satisfaction is sticky and
            // settled, and small entries keep snapshots small.
            if let Some(done) = self.periods.back_mut() {
                done.sums.clear();
            }
            let mut next = cfg.frequency.next_period(end);
            // A local date that never happened (Samoa skipped 2011-12-30) is not a period.
            while local_midnight(tz, next.0) >= local_midnight(tz, next.1 + Days::new(1))
                && next.1 < today
            {
                next = cfg.frequency.next_period(next.1);
            }
            if self.length == 0 && next.1 < today {
                // Nothing left to lose: jump to the current period (history shows the skipped
                // periods as length 0 anyway).
                self.push(PeriodEntry::new(cfg.frequency.period_of(today)));
                break;
            }
            self.push(PeriodEntry::new(next));
        }
        self.earn_until(cfg, today, &mut out);
        if consumed > 0 {
            let at = out
                .iter()
                .position(|e| matches!(e, StreakEvent::Lost { .. }))
                .unwrap_or(out.len());
            out.insert(
                at,
                StreakEvent::FreezeConsumed {
                    consumed,
                    freezes: self.freezes,
                },
            );
        }
        out
    }

    /// Rebuilds the ledger for a new frequency from per-period activity (SPEC §5.1.3): the
    /// periods from `from` (the user's first day, at most [`MAX_PERIODS`] periods back) to
    /// `now` are replayed with the sums `sums_of(start, end)` returns. Freeze and pause
    /// bookkeeping of the old frequency is discarded: no freezes are consumed by the replay,
    /// and the freeze count is kept as it is.
    pub fn rebuild(
        &mut self,
        cfg: &StreakConfig,
        from: NaiveDate,
        now: DateTime<Utc>,
        tz: Tz,
        sums_of: impl Fn(NaiveDate, NaiveDate) -> BTreeMap<Uuid, f64>,
    ) {
        let replay_cfg = StreakConfig {
            freezes: None,
            ..cfg.clone()
        };
        let today = local_date(now, tz);
        let mut period = cfg.frequency.period_of(today);
        for _ in 0..MAX_PERIODS {
            if period.0 <= from {
                break;
            }
            period = cfg.frequency.previous_period(period.0);
        }
        let mut fresh = StreakState {
            pauses: self.pauses.clone(),
            ..StreakState::default()
        };
        while period.0 <= today {
            let at = local_midnight(tz, period.0).max(local_midnight(tz, from));
            fresh.advance(&replay_cfg, at, tz);
            for (metric, sum) in sums_of(period.0, period.1) {
                fresh.record(&replay_cfg, at, tz, metric, sum);
            }
            period = cfg.frequency.next_period(period.1);
        }
        fresh.advance(&replay_cfg, now, tz);
        // The replay only knows period sums, not event times: keep the real instant of the
        // last extension when the rebuilt chain is still running.
        if fresh.length > 0 && self.last_extended.is_some() {
            fresh.last_extended = self.last_extended;
        }
        fresh.freezes = self.freezes;
        fresh.next_earn = self.next_earn;
        fresh.earn_interval = self.earn_interval;
        fresh.created = self.created;
        fresh.last_lost = self.last_lost;
        *self = fresh;
    }

    /// Records an event's value in the current period; extends or starts the streak when the
    /// period becomes satisfied (SPEC §5.4). Returns the events and whether it extended.
    pub fn record(
        &mut self,
        cfg: &StreakConfig,
        now: DateTime<Utc>,
        tz: Tz,
        metric: Uuid,
        value: f64,
    ) -> (Vec<StreakEvent>, bool) {
        let mut out = self.advance(cfg, now, tz);
        let Some(cur) = self.periods.back_mut() else {
            return (out, false);
        };
        *cur.sums.entry(metric).or_insert(0.0) += value;
        if cur.satisfied || !cfg.satisfied_by(&cur.sums) {
            return (out, false);
        }
        cur.satisfied = true;
        if self.length > 0 {
            self.length += 1;
            out.push(StreakEvent::Extended {
                length: self.length,
            });
        } else {
            self.length = 1;
            self.started = Some(local_date(now, tz));
            out.push(StreakEvent::Started { length: 1 });
        }
        cur.length = self.length;
        self.last_extended = Some(now);
        (out, true)
    }

    /// A time-zone change at `now` (SPEC §5.9): the period containing `now` in the new zone is
    /// the same period as the one containing it in the old zone.
    pub fn change_tz(
        &mut self,
        cfg: &StreakConfig,
        now: DateTime<Utc>,
        old: Tz,
        new: Tz,
    ) -> Vec<StreakEvent> {
        let out = self.advance(cfg, now, old);
        let relabelled = cfg.frequency.period_of(local_date(now, new));
        if let Some(cur) = self.periods.back_mut() {
            if (cur.start, cur.end) != relabelled {
                cur.start = relabelled.0;
                cur.end = relabelled.1;
                cur.continues = true;
            }
        }
        out
    }

    /// Adds admin-granted freezes, up to the maximum; returns how many were added.
    pub fn grant_freezes(&mut self, cfg: &StreakConfig, count: u32) -> u32 {
        let Some(f) = &cfg.freezes else { return 0 };
        self.add_freezes(count, f.max_count)
    }

    /// Restores the longest streak reached within the restore window (SPEC §5.10.1).
    /// Returns the new length, or `None` when there is nothing longer to restore.
    pub fn restore(&mut self, cfg: &StreakConfig, now: DateTime<Utc>, tz: Tz) -> Option<u32> {
        self.advance(cfg, now, tz);
        let today = local_date(now, tz);
        let window_start = match cfg.frequency {
            Frequency::Daily => today - Days::new(90),
            Frequency::Weekly => {
                let jan1 = NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today);
                Frequency::Weekly.period_of(jan1).0
            }
            Frequency::Monthly => NaiveDate::from_ymd_opt(today.year() - 1, 1, 1).unwrap_or(today),
        };
        let best = self
            .periods
            .iter()
            .filter(|p| p.end >= window_start)
            .map(|p| p.length)
            .max()
            .unwrap_or(0);
        if best <= self.length {
            return None;
        }
        self.length = best;
        let cur = self.periods.back()?;
        // The restored chain ends with the last completed period, or with `cur` if it is
        // already satisfied.
        let back = if cur.satisfied { best - 1 } else { best };
        let mut start = cur.start;
        for _ in 0..back {
            start = cfg.frequency.previous_period(start).0;
        }
        self.started = Some(start);
        if let Some(cur) = self.periods.back_mut() {
            if cur.satisfied {
                cur.length = best;
            }
        }
        Some(best)
    }

    /// Resets the streak to 0 now, without a `streak.lost` (SPEC §5.10.2).
    pub fn reset(&mut self, cfg: &StreakConfig, now: DateTime<Utc>, tz: Tz) {
        self.advance(cfg, now, tz);
        self.length = 0;
        self.started = None;
        if let Some(cur) = self.periods.back_mut() {
            cur.reset_at = Some(now);
            cur.length = 0;
        }
    }

    /// The next instant at which time alone changes this streak: the end of the current
    /// period while there is a streak to keep or lose, or the next auto-earn date.
    pub fn next_due(&self, cfg: &StreakConfig, tz: Tz) -> Option<DateTime<Utc>> {
        let period_end = self
            .current()
            .filter(|_| self.length > 0)
            .map(|c| local_midnight(tz, c.end + Days::new(1)));
        let earn = cfg
            .freezes
            .as_ref()
            .and_then(FreezeConfig::auto_earn)
            .and(self.next_earn)
            .map(|d| local_midnight(tz, d));
        match (period_end, earn) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The derived fields of a streak object (SPEC §5.7), as of `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreakView {
    pub length: u32,
    pub frequency: Frequency,
    pub started: Option<NaiveDate>,
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    pub expires: Option<NaiveDate>,
    pub extended: Option<DateTime<Utc>>,
    pub freezes: Option<u32>,
    pub max_freezes: Option<u32>,
    pub auto_earn: Option<(u32, u32)>,
}

/// One history row (SPEC §5.8).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub length: u32,
    pub used_freeze: bool,
    pub used_pause: bool,
    pub reset_at: Option<DateTime<Utc>>,
}

/// A read of the streak: evaluations pending up to `now` are applied to a copy first, so a
/// read equals "evaluated exactly at midnight" even before the scheduler ran.
pub fn view(state: &StreakState, cfg: &StreakConfig, now: DateTime<Utc>, tz: Tz) -> StreakView {
    let today = local_date(now, tz);
    // Right after an event the state is already current; copying the ledger is only needed
    // when evaluations are pending.
    let current = state.frequency == Some(cfg.frequency)
        && state.current().is_some_and(|c| c.end >= today)
        && (cfg.enabled || state.length == 0)
        && state.next_earn.is_none_or(|d| d > today);
    let advanced;
    let s = if current {
        state
    } else {
        let mut copy = state.clone();
        copy.advance(cfg, now, tz);
        advanced = copy;
        &advanced
    };
    let freeze_fields = cfg.freezes.as_ref();
    let mut v = StreakView {
        length: s.length,
        frequency: cfg.frequency,
        started: None,
        period_start: None,
        period_end: None,
        expires: None,
        extended: None,
        freezes: freeze_fields.map(|_| s.freezes),
        max_freezes: freeze_fields.map(|f| f.max_count),
        auto_earn: freeze_fields.and_then(FreezeConfig::auto_earn),
    };
    let Some(cur) = s.current().filter(|_| s.length > 0) else {
        return v;
    };
    v.started = s.started;
    v.period_start = Some(cur.start);
    v.period_end = Some(cur.end);
    v.extended = s.last_extended;
    let mut required = if cur.satisfied {
        cfg.frequency.next_period(cur.end)
    } else {
        (cur.start, cur.end)
    };
    // Skip days off one period at a time (a week of them at most, unless every day is off),
    // and a pause in one jump to the period after it, however long it is.
    for _ in 0..MAX_PERIODS {
        if let Some(pause) = s
            .active_pauses()
            .find(|p| p.overlaps(required.0, required.1))
        {
            required = cfg.frequency.next_period(pause.end.max(required.1));
        } else if cfg.is_day_off(required.0) {
            required = cfg.frequency.next_period(required.1);
        } else {
            break;
        }
    }
    v.expires = Some(required.1);
    v
}

/// The `n` most recent periods ending with the current one, ascending.
pub fn history(
    state: &StreakState,
    cfg: &StreakConfig,
    now: DateTime<Utc>,
    tz: Tz,
    n: usize,
) -> Vec<HistoryRow> {
    let mut s = state.clone();
    s.advance(cfg, now, tz);
    let empty = |(start, end): (NaiveDate, NaiveDate)| HistoryRow {
        period_start: start,
        period_end: end,
        length: 0,
        used_freeze: false,
        used_pause: false,
        reset_at: None,
    };
    let mut rows: Vec<HistoryRow> = Vec::with_capacity(n);
    let entries: Vec<&PeriodEntry> = s.periods.iter().collect();
    for (i, e) in entries.iter().enumerate().rev() {
        if rows.len() >= n {
            break;
        }
        let current = i + 1 == entries.len();
        rows.push(HistoryRow {
            period_start: e.start,
            period_end: e.end,
            length: match (current, e.satisfied) {
                (true, true) => s.length,
                (true, false) => 0,
                _ => e.length,
            },
            used_freeze: e.bridged == Some(Bridge::Freeze),
            used_pause: e.bridged == Some(Bridge::Pause),
            reset_at: e.reset_at,
        });
        // Periods skipped while there was no streak (or before the first entry) show as 0.
        // An entry relabelled by a time-zone change follows its predecessor directly.
        if e.continues {
            continue;
        }
        let floor = i.checked_sub(1).map(|p| entries[p].end);
        let mut period = cfg.frequency.previous_period(e.start);
        while rows.len() < n && floor.is_none_or(|f| period.1 > f) {
            rows.push(empty(period));
            period = cfg.frequency.previous_period(period.0);
        }
    }
    rows.truncate(n);
    rows.reverse();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const LONDON: Tz = chrono_tz::Europe::London;

    fn metric() -> Uuid {
        Uuid::from_u128(1)
    }

    fn cfg(frequency: Frequency) -> StreakConfig {
        StreakConfig {
            enabled: true,
            frequency,
            mode: Mode::Or,
            metrics: vec![(metric(), 1.0)],
            days_off: vec![],
            freezes: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("valid date")
    }

    fn event(
        s: &mut StreakState,
        c: &StreakConfig,
        when: &str,
        tz: Tz,
    ) -> (Vec<StreakEvent>, bool) {
        s.record(c, at(when), tz, metric(), 1.0)
    }

    #[test]
    fn example_a_basic_daily() {
        let c = cfg(Frequency::Daily);
        let mut s = StreakState::default();
        let (ev, ext) = event(&mut s, &c, "2025-04-02T09:00:00Z", LONDON); // 10:00 BST
        assert_eq!((ev, ext), (vec![StreakEvent::Started { length: 1 }], true));
        let v = view(&s, &c, at("2025-04-02T09:00:00Z"), LONDON);
        assert_eq!(
            (v.length, v.started, v.period_start, v.period_end, v.expires),
            (
                1,
                Some(d("2025-04-02")),
                Some(d("2025-04-02")),
                Some(d("2025-04-02")),
                Some(d("2025-04-03"))
            )
        );
        assert_eq!(
            event(&mut s, &c, "2025-04-02T14:00:00Z", LONDON),
            (vec![], false)
        );
        let (ev, _) = event(&mut s, &c, "2025-04-03T08:00:00Z", LONDON);
        assert_eq!(ev, vec![StreakEvent::Extended { length: 2 }]);
        assert_eq!(
            view(&s, &c, at("2025-04-03T08:00:00Z"), LONDON).expires,
            Some(d("2025-04-04"))
        );
        // No activity on 04-04: lost at 04-05 00:00 local (23:00Z on 04-04).
        assert_eq!(s.next_due(&c, LONDON), Some(at("2025-04-03T23:00:00Z")));
        assert_eq!(s.advance(&c, at("2025-04-04T22:59:00Z"), LONDON), vec![]);
        assert_eq!(
            s.advance(&c, at("2025-04-04T23:00:00Z"), LONDON),
            vec![StreakEvent::Lost { length: 2 }]
        );
        let (ev, _) = event(&mut s, &c, "2025-04-05T10:00:00Z", LONDON);
        assert_eq!(ev, vec![StreakEvent::Started { length: 1 }]);
        assert_eq!(s.started, Some(d("2025-04-05")));
    }

    #[test]
    fn example_b_freezes() {
        let mut c = cfg(Frequency::Daily);
        c.freezes = Some(FreezeConfig {
            start_count: 1,
            max_count: 2,
            auto_earn_interval: Some(7),
            auto_earn_amount: Some(1),
        });
        let mut s = StreakState::default();
        s.on_user_created(&c, d("2025-04-01"));
        assert_eq!(s.freezes, 1);
        event(&mut s, &c, "2025-04-01T10:00:00Z", LONDON);
        event(&mut s, &c, "2025-04-02T10:00:00Z", LONDON);
        assert_eq!(s.length, 2);
        let ev = s.advance(&c, at("2025-04-03T23:00:00Z"), LONDON);
        assert_eq!(
            ev,
            vec![StreakEvent::FreezeConsumed {
                consumed: 1,
                freezes: 0
            }]
        );
        let hist = history(&s, &c, at("2025-04-03T23:00:00Z"), LONDON, 3);
        assert_eq!(hist[1].period_start, d("2025-04-03"));
        assert_eq!((hist[1].length, hist[1].used_freeze), (2, true));
        let (ev, _) = event(&mut s, &c, "2025-04-04T10:00:00Z", LONDON);
        assert_eq!(ev, vec![StreakEvent::Extended { length: 3 }]);
        event(&mut s, &c, "2025-04-05T10:00:00Z", LONDON);
        event(&mut s, &c, "2025-04-06T10:00:00Z", LONDON);
        event(&mut s, &c, "2025-04-07T10:00:00Z", LONDON);
        // 04-08 00:00 local (23:00Z on 04-07): a freeze is earned.
        assert_eq!(s.next_due(&c, LONDON), Some(at("2025-04-07T23:00:00Z")));
        let ev = s.advance(&c, at("2025-04-07T23:05:00Z"), LONDON);
        assert_eq!(
            ev,
            vec![StreakEvent::FreezeEarned {
                earned: 1,
                freezes: 1
            }]
        );
        let v = view(&s, &c, at("2025-04-07T23:05:00Z"), LONDON);
        assert_eq!(
            (v.freezes, v.max_freezes, v.auto_earn),
            (Some(1), Some(2), Some((7, 1)))
        );
    }

    #[test]
    fn example_c_weekly_and_d_monthly() {
        let c = cfg(Frequency::Weekly);
        let mut s = StreakState::default();
        event(&mut s, &c, "2025-04-02T10:00:00Z", LONDON);
        let v = view(&s, &c, at("2025-04-02T10:00:00Z"), LONDON);
        assert_eq!(
            (v.period_start, v.period_end, v.expires),
            (
                Some(d("2025-03-30")),
                Some(d("2025-04-05")),
                Some(d("2025-04-12"))
            )
        );
        let (ev, _) = event(&mut s, &c, "2025-04-10T10:00:00Z", LONDON);
        assert_eq!(ev, vec![StreakEvent::Extended { length: 2 }]);
        assert_eq!(
            view(&s, &c, at("2025-04-10T10:00:00Z"), LONDON).expires,
            Some(d("2025-04-19"))
        );
        assert_eq!(s.advance(&c, at("2025-04-19T22:59:00Z"), LONDON), vec![]);
        assert_eq!(
            s.advance(&c, at("2025-04-19T23:00:00Z"), LONDON),
            vec![StreakEvent::Lost { length: 2 }]
        );

        let c = cfg(Frequency::Monthly);
        let mut s = StreakState::default();
        event(&mut s, &c, "2025-01-31T10:00:00Z", LONDON);
        assert_eq!(
            view(&s, &c, at("2025-01-31T10:00:00Z"), LONDON).expires,
            Some(d("2025-02-28"))
        );
        let (ev, _) = event(&mut s, &c, "2025-02-01T10:00:00Z", LONDON);
        assert_eq!(ev, vec![StreakEvent::Extended { length: 2 }]);
        assert_eq!(
            view(&s, &c, at("2025-02-01T10:00:00Z"), LONDON).expires,
            Some(d("2025-03-31"))
        );
    }

    #[test]
    fn example_e_pause() {
        let c = cfg(Frequency::Daily);
        let mut s = StreakState::default();
        for day in 15..=19 {
            event(&mut s, &c, &format!("2026-08-{day}T10:00:00Z"), LONDON);
        }
        assert_eq!(s.length, 5);
        s.pauses.push(Pause {
            id: Uuid::nil(),
            start: d("2026-08-20"),
            end: d("2026-08-27"),
            archived: false,
        });
        assert_eq!(s.advance(&c, at("2026-08-28T10:00:00Z"), LONDON), vec![]);
        assert_eq!(s.length, 5);
        let hist = history(&s, &c, at("2026-08-28T10:00:00Z"), LONDON, 9);
        assert!(
            hist[..8].iter().all(|h| h.used_pause && h.length == 5),
            "{hist:?}"
        );
        let (ev, _) = event(&mut s, &c, "2026-08-28T10:00:00Z", LONDON);
        assert_eq!(ev, vec![StreakEvent::Extended { length: 6 }]);
    }

    #[test]
    fn expires_skips_a_long_pause_in_one_step() {
        let c = cfg(Frequency::Daily);
        let mut s = StreakState::default();
        event(&mut s, &c, "2027-02-09T10:00:00Z", Tz::UTC);
        s.pauses.push(Pause {
            id: Uuid::nil(),
            start: d("2027-02-10"),
            end: d("2032-12-31"),
            archived: false,
        });
        assert_eq!(
            view(&s, &c, at("2027-02-09T12:00:00Z"), Tz::UTC).expires,
            Some(d("2033-01-01"))
        );
    }

    #[test]
    fn activity_during_a_pause_extends() {
        let c = cfg(Frequency::Daily);
        let mut s = StreakState::default();
        event(&mut s, &c, "2026-08-19T10:00:00Z", LONDON);
        s.pauses.push(Pause {
            id: Uuid::nil(),
            start: d("2026-08-20"),
            end: d("2026-08-27"),
            archived: false,
        });
        let (ev, _) = event(&mut s, &c, "2026-08-22T10:00:00Z", LONDON);
        assert_eq!(ev, vec![StreakEvent::Extended { length: 2 }]);
    }

    #[test]
    fn example_f_days_off() {
        let mut c = cfg(Frequency::Daily);
        c.days_off = vec![0, 6];
        let mut s = StreakState::default();
        // Mon 2025-04-07 .. Fri 04-11.
        for day in 7..=11 {
            event(&mut s, &c, &format!("2025-04-{day:02}T10:00:00Z"), LONDON);
        }
        assert_eq!(s.length, 5);
        // On Friday, with Friday satisfied, the next required day is Monday.
        assert_eq!(
            view(&s, &c, at("2025-04-11T12:00:00Z"), LONDON).expires,
            Some(d("2025-04-14"))
        );
        assert_eq!(s.advance(&c, at("2025-04-14T08:00:00Z"), LONDON), vec![]);
        assert_eq!(s.length, 5);
        let (ev, _) = event(&mut s, &c, "2025-04-14T08:00:00Z", LONDON);
        assert_eq!(ev, vec![StreakEvent::Extended { length: 6 }]);
    }

    #[test]
    fn example_g_tz_change_reanchors() {
        let c = cfg(Frequency::Daily);
        let ny: Tz = chrono_tz::America::New_York;
        let tokyo: Tz = chrono_tz::Asia::Tokyo;
        let mut s = StreakState::default();
        let (ev, _) = event(&mut s, &c, "2025-04-03T03:30:00Z", ny); // 04-02 23:30 NY
        assert_eq!(ev, vec![StreakEvent::Started { length: 1 }]);
        let now = at("2025-04-03T23:00:00Z"); // 04-03 19:00 NY, 04-04 08:00 Tokyo
        assert_eq!(s.change_tz(&c, now, ny, tokyo), vec![]);
        let (ev, ext) = s.record(&c, now, tokyo, metric(), 1.0);
        assert_eq!((ev, ext), (vec![StreakEvent::Extended { length: 2 }], true));
        // The next period follows in Tokyo time: 04-05.
        let (ev, _) = s.record(&c, at("2025-04-05T01:00:00Z"), tokyo, metric(), 1.0);
        assert_eq!(ev, vec![StreakEvent::Extended { length: 3 }]);
        let hist = history(&s, &c, at("2025-04-05T01:00:00Z"), tokyo, 3);
        let lengths: Vec<_> = hist.iter().map(|h| (h.period_start, h.length)).collect();
        assert_eq!(
            lengths,
            vec![
                (d("2025-04-02"), 1),
                (d("2025-04-04"), 2),
                (d("2025-04-05"), 3)
            ],
            "no phantom missed day after moving east"
        );
        // And a westward change never allows two extensions for one elapsed period.
        let now = at("2025-04-05T02:00:00Z"); // 04-05 11:00 Tokyo, 04-04 22:00 NY
        s.change_tz(&c, now, tokyo, ny);
        assert_eq!(s.record(&c, now, ny, metric(), 1.0), (vec![], false));
    }

    #[test]
    fn and_mode_thresholds_and_sticky_satisfaction() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let c = StreakConfig {
            mode: Mode::And,
            metrics: vec![(a, 2.0), (b, 1.0)],
            ..cfg(Frequency::Daily)
        };
        let mut s = StreakState::default();
        let now = at("2025-04-02T10:00:00Z");
        assert_eq!(s.record(&c, now, Tz::UTC, a, 2.0), (vec![], false));
        let (ev, ext) = s.record(&c, now, Tz::UTC, b, 1.0);
        assert!(ext);
        assert_eq!(ev, vec![StreakEvent::Started { length: 1 }]);
        // A negative event later does not un-satisfy the period.
        s.record(&c, now, Tz::UTC, a, -5.0);
        assert_eq!(s.advance(&c, at("2025-04-03T10:00:00Z"), Tz::UTC), vec![]);
        assert_eq!(s.length, 1);
    }

    #[test]
    fn catch_up_consumes_one_freeze_per_period_then_loses() {
        let mut c = cfg(Frequency::Daily);
        c.freezes = Some(FreezeConfig {
            start_count: 2,
            max_count: 5,
            auto_earn_interval: None,
            auto_earn_amount: None,
        });
        let mut s = StreakState::default();
        s.on_user_created(&c, d("2025-04-01"));
        event(&mut s, &c, "2025-04-01T10:00:00Z", Tz::UTC);
        let ev = s.advance(&c, at("2025-04-10T10:00:00Z"), Tz::UTC);
        assert_eq!(
            ev,
            vec![
                StreakEvent::FreezeConsumed {
                    consumed: 2,
                    freezes: 0
                },
                StreakEvent::Lost { length: 1 }
            ]
        );
        assert_eq!(s.length, 0);
    }

    #[test]
    fn restore_and_reset() {
        let c = cfg(Frequency::Daily);
        let mut s = StreakState::default();
        for day in 1..=3 {
            event(&mut s, &c, &format!("2025-04-{day:02}T10:00:00Z"), Tz::UTC);
        }
        s.advance(&c, at("2025-04-06T10:00:00Z"), Tz::UTC);
        assert_eq!(s.length, 0);
        assert_eq!(s.restore(&c, at("2025-04-06T10:00:00Z"), Tz::UTC), Some(3));
        assert_eq!(s.started, Some(d("2025-04-03")));
        assert_eq!(s.restore(&c, at("2025-04-06T10:00:00Z"), Tz::UTC), None);
        let (ev, _) = event(&mut s, &c, "2025-04-06T11:00:00Z", Tz::UTC);
        assert_eq!(ev, vec![StreakEvent::Extended { length: 4 }]);
        s.reset(&c, at("2025-04-06T12:00:00Z"), Tz::UTC);
        assert_eq!(s.length, 0);
        let hist = history(&s, &c, at("2025-04-06T12:00:00Z"), Tz::UTC, 1);
        assert_eq!(hist[0].reset_at, Some(at("2025-04-06T12:00:00Z")));
    }

    #[test]
    fn dst_transitions_do_not_break_daily_streaks() {
        let c = cfg(Frequency::Daily);
        for (tz, days) in [
            (
                chrono_tz::Europe::London,
                ["2025-03-29", "2025-03-30", "2025-03-31"],
            ),
            (
                chrono_tz::America::New_York,
                ["2025-11-01", "2025-11-02", "2025-11-03"],
            ),
            (
                chrono_tz::Australia::Lord_Howe,
                ["2025-04-05", "2025-04-06", "2025-04-07"],
            ),
            (
                chrono_tz::Pacific::Apia,
                ["2011-12-29", "2011-12-31", "2012-01-01"],
            ),
        ] {
            let mut s = StreakState::default();
            for day in days {
                // Local noon of each day.
                let local = NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .expect("date")
                    .and_hms_opt(12, 0, 0)
                    .expect("time");
                let when = tz
                    .from_local_datetime(&local)
                    .earliest()
                    .expect("valid")
                    .with_timezone(&Utc);
                s.record(&c, when, tz, metric(), 1.0);
            }
            // Samoa skipped 2011-12-30 entirely, so its three calendar days are consecutive.
            assert_eq!(s.length, 3, "{tz}");
        }
    }

    #[test]
    fn a_frequency_change_recomputes_from_activity() {
        let daily = cfg(Frequency::Daily);
        let mut s = StreakState::default();
        // Activity on Wed 2025-04-02 and Thu 2025-04-10: two consecutive weeks.
        let days = [d("2025-04-02"), d("2025-04-10")];
        for day in days {
            s.record(
                &daily,
                local_midnight(Tz::UTC, day) + chrono::Duration::hours(10),
                Tz::UTC,
                metric(),
                1.0,
            );
        }
        let weekly = cfg(Frequency::Weekly);
        let sums = |start: NaiveDate, end: NaiveDate| {
            let n = days.iter().filter(|x| **x >= start && **x <= end).count();
            let mut m = BTreeMap::new();
            if n > 0 {
                m.insert(metric(), n as f64);
            }
            m
        };
        s.rebuild(
            &weekly,
            d("2025-04-01"),
            at("2025-04-11T10:00:00Z"),
            Tz::UTC,
            sums,
        );
        assert_eq!(s.frequency, Some(Frequency::Weekly));
        assert_eq!(s.length, 2);
        assert_eq!(
            s.advance(&weekly, at("2025-04-11T11:00:00Z"), Tz::UTC),
            vec![]
        );
    }

    #[test]
    fn freeze_counts_above_a_lowered_maximum_are_kept_and_grants_add_nothing() {
        let mut c = cfg(Frequency::Daily);
        c.freezes = Some(FreezeConfig {
            start_count: 3,
            max_count: 3,
            auto_earn_interval: Some(1),
            auto_earn_amount: Some(1),
        });
        let mut s = StreakState::default();
        s.on_user_created(&c, d("2025-04-01"));
        if let Some(f) = c.freezes.as_mut() {
            f.max_count = 1;
        }
        assert_eq!(s.grant_freezes(&c, 2), 0);
        assert_eq!(s.advance(&c, at("2025-04-05T10:00:00Z"), Tz::UTC), vec![]);
        assert_eq!(s.freezes, 3);
    }

    #[test]
    fn auto_earn_turned_on_later_counts_from_creation() {
        let mut c = cfg(Frequency::Daily);
        let mut s = StreakState::default();
        s.on_user_created(&c, d("2025-04-01"));
        s.advance(&c, at("2025-04-10T10:00:00Z"), Tz::UTC);
        c.freezes = Some(FreezeConfig {
            start_count: 0,
            max_count: 5,
            auto_earn_interval: Some(7),
            auto_earn_amount: Some(1),
        });
        assert_eq!(s.advance(&c, at("2025-04-10T11:00:00Z"), Tz::UTC), vec![]);
        assert_eq!(s.next_earn, Some(d("2025-04-15")), "creation + 2 × 7 days");
        let ev = s.advance(&c, at("2025-04-15T00:30:00Z"), Tz::UTC);
        assert_eq!(
            ev,
            vec![StreakEvent::FreezeEarned {
                earned: 1,
                freezes: 1
            }]
        );
    }

    #[test]
    fn leap_day_months() {
        let c = cfg(Frequency::Monthly);
        let mut s = StreakState::default();
        event(&mut s, &c, "2024-02-29T10:00:00Z", Tz::UTC);
        assert_eq!(
            view(&s, &c, at("2024-02-29T10:00:00Z"), Tz::UTC).period_end,
            Some(d("2024-02-29"))
        );
        assert_eq!(
            view(&s, &c, at("2024-02-29T10:00:00Z"), Tz::UTC).expires,
            Some(d("2024-03-31"))
        );
    }

    proptest! {
        /// For random event days and zones: the length never exceeds the number of satisfied
        /// periods, advancing twice to the same instant changes nothing the second time, and
        /// replaying the same inputs gives the same state.
        #[test]
        fn invariants(days in proptest::collection::vec((0u32..60, 0u32..24), 1..40), tz_idx in 0usize..5) {
            let zones = [Tz::UTC, chrono_tz::Europe::London, chrono_tz::Australia::Lord_Howe, chrono_tz::Pacific::Apia, chrono_tz::America::New_York];
            let tz = zones[tz_idx];
            let c = cfg(Frequency::Daily);
            let base = at("2025-03-01T00:00:00Z");
            let mut sorted = days.clone();
            sorted.sort();
            let mut s = StreakState::default();
            let mut replay = StreakState::default();
            for (day, hour) in &sorted {
                let when = base + chrono::Duration::hours(i64::from(day * 24 + hour));
                s.record(&c, when, tz, metric(), 1.0);
                replay.record(&c, when, tz, metric(), 1.0);
                let satisfied = s.periods.iter().filter(|p| p.satisfied).count() as u32;
                prop_assert!(s.length <= satisfied);
                let again = s.clone();
                prop_assert_eq!(s.advance(&c, when, tz), vec![]);
                prop_assert_eq!(&s, &again);
            }
            prop_assert_eq!(&s, &replay);
            let end = base + chrono::Duration::days(70);
            let mut a = s.clone();
            a.advance(&c, end, tz);
            let mut b = s.clone();
            b.advance(&c, end - chrono::Duration::days(5), tz);
            b.advance(&c, end, tz);
            prop_assert_eq!(a.length, b.length);
            prop_assert_eq!(a.length, 0);
        }
    }
}
