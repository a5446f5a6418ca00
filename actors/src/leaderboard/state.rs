//! One leaderboard's live state, owned by its `LeaderboardActor`: the rankings of every run
//! and group (rebuilt from durable entries at start), what was applied since the last write,
//! and how far its run announcements went.
//!
//! Applying a record changes memory only. A write then hands out, as one [`Commit`] part,
//! the rows of everything applied since the previous write (entries and history rows, taken
//! from the standings as they are at write time) and the effects those changes caused:
//! `leaderboard.rank_changed` for every user whose rank differs from the previous write
//! (own changes, entering, evictions, and users the movers passed), and
//! `leaderboard.changed` per group with its top 10. The effects go to the consumers'
//! inboxes in the same batch as the rows, so they are exactly as durable as the standings.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Days, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use kudos_snapshots::{Commit, ConsumerId, Scope, Store, StoreError, StreamId, StreamKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::board::{Applied, Board, Entry, GroupKey};
use super::placement::Placement;
use super::ranking::TiePolicy;
use super::standings::{self, HistoryRow, StoredEntry, CONSUMER};
use super::Standing;
use crate::catalog::leaderboards::{Leaderboard, LeaderboardStatus};
use crate::effects::Published;
use crate::rules::runs::Run;
use crate::user::Effect;

/// Users around a mover whose rank change is tracked, per change: boards up to Trophy's
/// size of 1,000 are exact; beyond, users more than this many places away from the mover's
/// old and new positions are not reported as displaced (their rank moved by one).
pub const DISPLACED_MAX: usize = 1000;
/// Rows in the top list of `leaderboard.changed` and `leaderboard.finished` (SPEC §8.3).
pub const TOP: usize = 10;
/// How often the history rows of users displaced by others (not by their own change) are
/// written by the consumer's batches; a history read writes them at once. Dense boards
/// displace hundreds of users per event: writing each one's row in every batch cost more
/// than the rest of the write.
const DISPLACED_HISTORY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Finished runs announced per evaluation (catch-up after a long downtime continues at once).
const FINISH_BATCH: usize = 100;

/// What applying one placement did (for the event response).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub placement: Placement,
    pub applied: Applied,
}

/// One user record's changes to one board.
#[derive(Debug, Clone)]
pub struct BoardRecord {
    pub user_id: String,
    pub user_name: Option<String>,
    pub tz: Tz,
    pub at: DateTime<Utc>,
    /// This board's placements only.
    pub placements: Vec<Placement>,
}

/// What changed in one group since the last write: who moved (with their value at the
/// last write), and the span of positions whose occupant changed.
#[derive(Debug, Default)]
struct Dirty {
    movers: HashMap<String, Option<f64>>,
    /// Positions (0-based, after each move) whose occupant changed: every user whose
    /// position changed since the last write is now inside `lo..=hi`.
    span: Option<(usize, usize)>,
    /// Moves since the last write (how far past the cut a reported user may have been
    /// pushed).
    moves: usize,
    /// Whether a participant's rank or value changed (`leaderboard.changed`).
    visible: bool,
}

/// How far a board's run announcements went (durable, `r` row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunsState {
    /// The last sequence number of the board's runs stream.
    pub seq: u64,
    /// The first run announced as started (no run before it is announced as finished).
    pub first: Option<u64>,
    pub started: Option<u64>,
    pub finished: Option<u64>,
    /// The due instant (ms) filed for the next announcement.
    pub due: Option<i64>,
}

/// What one write hands out.
pub struct BoardWrite {
    pub commit: Commit,
    pub published: Option<Published>,
}

/// A board's live state.
pub struct BoardState {
    pub id: Uuid,
    board: Board,
    names: HashMap<String, String>,
    /// (run and group, user, local date) changed by users' own records since the last write.
    touched: Vec<(GroupKey, String, NaiveDate)>,
    /// Participants whose zone is new or changed since the last write.
    zones: Vec<(String, Tz)>,
    /// Groups changed since the last write.
    dirty: BTreeMap<GroupKey, Dirty>,
    /// Days on which users were displaced by others, whose history rows are not written yet.
    displaced_days: BTreeMap<(u64, String), BTreeSet<NaiveDate>>,
    displaced_written: Option<std::time::Instant>,
    /// Rebuilt from entries: the ranks they give are the last reported ones, taken before
    /// the first change (which knows the board's cut and tie policy).
    reports_pending: bool,
    /// The latest instant among the records applied since the last write.
    last_at: Option<DateTime<Utc>>,
    /// The last sequence number of the board's effect stream (durable, `s` row).
    seq: u64,
    pub runs: RunsState,
}

/// The stream a board's rank and change effects are written in.
pub fn effect_stream(scope: Scope, board: Uuid) -> StreamId {
    StreamId::new(StreamKind::Leaderboard, scope, board.to_string())
}

/// The stream a board's run announcements are written in (and its due target's stream).
pub fn runs_stream(scope: Scope, board: Uuid) -> StreamId {
    StreamId::new(StreamKind::Leaderboard, scope, format!("{board}/runs"))
}

/// The board a board stream belongs to.
pub fn board_of(stream: &StreamId) -> Option<Uuid> {
    stream.id.split('/').next()?.parse().ok()
}

fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(chrono_tz::UTC)
}

fn cut(def: &Leaderboard) -> usize {
    usize::try_from(def.max_participants).unwrap_or(usize::MAX)
}

fn rank32(rank: Option<usize>) -> Option<u32> {
    rank.and_then(|r| u32::try_from(r).ok())
}

impl BoardState {
    /// An empty board (no durable rows).
    pub fn new(id: Uuid) -> Self {
        Self {
            id,
            board: Board::new(),
            names: HashMap::new(),
            touched: Vec::new(),
            zones: Vec::new(),
            dirty: BTreeMap::new(),
            reports_pending: false,
            displaced_days: BTreeMap::new(),
            displaced_written: None,
            last_at: None,
            seq: 0,
            runs: RunsState::default(),
        }
    }

    /// Rebuilds the board from its durable rows.
    pub fn load(store: &Store, id: Uuid) -> Result<Self, StoreError> {
        let mut s = Self::new(id);
        let zones: HashMap<String, String> = standings::zones(store, id)?.into_iter().collect();
        for (key, user, e) in standings::entries(store, id)? {
            let tz = zones.get(&user).map_or(chrono_tz::UTC, |z| zone(z));
            s.board.restore(
                &key,
                &user,
                Entry {
                    value: e.value,
                    reached: e.reached,
                },
                tz,
            );
            if let Some(name) = e.name {
                s.names.insert(user, name);
            }
        }
        s.reports_pending = true;
        s.seq = standings::read_row(store, &standings::seq_key(id))?.unwrap_or(0);
        s.runs = standings::read_row(store, &standings::runs_key(id))?.unwrap_or_default();
        Ok(s)
    }

    pub fn board(&self) -> &Board {
        &self.board
    }

    pub fn name(&self, user: &str) -> Option<&str> {
        self.names.get(user).map(String::as_str)
    }

    /// Applies one record's placements in memory (`def`: the board now; `None` when it was
    /// deleted, which ranks nothing).
    pub fn apply(&mut self, def: Option<&Leaderboard>, rec: &BoardRecord) -> Vec<Outcome> {
        let Some(def) = def else {
            return Vec::new();
        };
        match &rec.user_name {
            Some(n) => {
                self.names.insert(rec.user_id.clone(), n.clone());
            }
            None => {
                self.names.remove(&rec.user_id);
            }
        }
        self.last_at = Some(self.last_at.map_or(rec.at, |a| a.max(rec.at)));
        let max = cut(def);
        if std::mem::take(&mut self.reports_pending) {
            for (_, ranking) in self.board.groups_mut() {
                ranking.report_all(max, def.tie_policy);
            }
        }
        let mut outcomes = Vec::with_capacity(rec.placements.len());
        for p in &rec.placements {
            if self.board.zone_of(p.run, &rec.user_id) != Some(rec.tz) {
                self.zones.push((rec.user_id.clone(), rec.tz));
            }
            let (applied, writes) = self.board.apply(
                &rec.user_id,
                rec.tz,
                p.run,
                &p.group,
                p.change,
                max,
                def.tie_policy,
            );
            for (key, _) in writes {
                self.touched.push((key, rec.user_id.clone(), p.date));
            }
            // Left another group (new attributes): everyone below moved up one there.
            if let Some((old_group, position)) = &applied.left {
                let old_key: GroupKey = (p.run, old_group.clone());
                let len = self.board.group(&old_key).map_or(0, |r| r.len());
                let dirty = self.dirty.entry(old_key).or_default();
                dirty
                    .movers
                    .entry(rec.user_id.clone())
                    .or_insert(applied.previous_value);
                dirty.moves += 1;
                dirty.visible |= *position < max;
                dirty.span = Some(match dirty.span {
                    Some((a, b)) => (a.min(*position), b.max(len)),
                    None => (*position, len),
                });
            }
            let key: GroupKey = (p.run, p.group.clone());
            let span = self.moved_span(&key, &applied, def.tie_policy);
            let dirty = self.dirty.entry(key).or_default();
            dirty
                .movers
                .entry(rec.user_id.clone())
                .or_insert(applied.previous_value);
            dirty.moves += 1;
            dirty.visible |= applied.previous_rank.is_some() || applied.rank.is_some();
            if let Some((lo, hi)) = span {
                dirty.span = Some(match dirty.span {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
            outcomes.push(Outcome {
                placement: p.clone(),
                applied,
            });
        }
        outcomes
    }

    /// The positions whose occupant this change moved: between the mover's old and new
    /// places (everyone below, when they entered or left), and with shared ranks also the
    /// users whose value lies between the mover's old and new values (one more or one fewer
    /// above them).
    fn moved_span(
        &self,
        key: &GroupKey,
        applied: &Applied,
        tie: TiePolicy,
    ) -> Option<(usize, usize)> {
        let ranking = self.board.group(key)?;
        let last = ranking.len();
        let by_position = match (applied.moved.before, applied.moved.after) {
            (Some(a), Some(b)) if a != b => Some((a.min(b), a.max(b))),
            (None, Some(b)) => Some((b, last)),
            (Some(a), None) => Some((a, last)),
            _ => None,
        };
        let by_value = match tie {
            TiePolicy::Shared => {
                let old = applied.previous_value.unwrap_or(0.0);
                let (lo_v, hi_v) = (old.min(applied.value), old.max(applied.value));
                let (from, to) = (ranking.count_at_least(hi_v), ranking.count_at_least(lo_v));
                (from < to).then_some((from, to))
            }
            TiePolicy::FirstReached => None,
        };
        match (by_position, by_value) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (one, other) => one.or(other),
        }
    }

    /// The user's standing (rank, value) in `key`.
    fn standing(
        &self,
        key: &GroupKey,
        user: &str,
        def: &Leaderboard,
    ) -> (Option<usize>, Option<f64>) {
        match self.board.group(key) {
            Some(r) => (r.rank(user, cut(def), def.tie_policy), r.value(user)),
            None => (None, None),
        }
    }

    /// The top `n` of a group.
    pub fn top(&self, key: &GroupKey, n: usize, def: &Leaderboard) -> Vec<Standing> {
        self.page(key, 0, n, def)
    }

    /// The participants of a group at positions `offset..offset+limit`.
    pub fn page(
        &self,
        key: &GroupKey,
        offset: usize,
        limit: usize,
        def: &Leaderboard,
    ) -> Vec<Standing> {
        let Some(ranking) = self.board.group(key) else {
            return Vec::new();
        };
        ranking
            .page(offset, limit, cut(def), def.tie_policy)
            .into_iter()
            .map(|(user, value, rank)| Standing {
                user_id: user.to_string(),
                user_name: self.name(user).map(str::to_string),
                rank: u32::try_from(rank).unwrap_or(u32::MAX),
                value,
            })
            .collect()
    }

    /// Hands out the rows and effects of everything applied since the last write (see the
    /// module docs), and forgets it. `consumers`: who gets the effects (none: they are not
    /// built, unless `live`: rank changes are then built and published for live `user:`
    /// subscribers, with no inbox row). `all`: also the history rows of displaced users (else at most every
    /// [`DISPLACED_HISTORY_EVERY`]). The caller writes the commit; if that fails, the board
    /// must be reloaded.
    pub fn write(
        &mut self,
        def: Option<&Leaderboard>,
        scope: Scope,
        consumers: &[ConsumerId],
        live: bool,
        all: bool,
    ) -> Result<BoardWrite, StoreError> {
        let mut commit = Commit::new();
        let touched = std::mem::take(&mut self.touched);
        let zones = std::mem::take(&mut self.zones);
        let dirty = std::mem::take(&mut self.dirty);
        let at = self.last_at.take();
        let Some(def) = def else {
            return Ok(BoardWrite {
                commit,
                published: None,
            });
        };
        let mut days: BTreeMap<(u64, String), BTreeSet<NaiveDate>> = BTreeMap::new();
        let mut seen_rows: BTreeSet<(GroupKey, String)> = BTreeSet::new();
        for (key, user, date) in touched {
            days.entry((key.0, user.clone())).or_default().insert(date);
            if !seen_rows.insert((key.clone(), user.clone())) {
                continue;
            }
            let ranking = self.board.group(&key);
            let stored = ranking
                .and_then(|r| r.value(&user))
                .map(|value| StoredEntry {
                    value,
                    reached: ranking.and_then(|r| r.reached(&user)).unwrap_or(0),
                    name: self.names.get(&user).cloned(),
                });
            commit.consumer_state(
                CONSUMER,
                &standings::row_key(self.id, &key, &user),
                stored.as_ref(),
            )?;
        }
        for (user, tz) in zones {
            commit.consumer_state(
                CONSUMER,
                &standings::zone_key(self.id, &user),
                Some(&tz.name().to_string()),
            )?;
        }
        let mut effects = Vec::new();
        let max = cut(def);
        let mut changed_groups = Vec::new();
        for (key, d) in dirty {
            if d.visible {
                changed_groups.push(key.clone());
            }
            let Some(ranking) = self.board.group(&key) else {
                continue;
            };
            // Whose rank may differ from the one last reported: the movers, and the users
            // now in the span of moved positions (past the cut by at most one place per
            // move, and at most DISPLACED_MAX places in all).
            let mut moved = Vec::new();
            for (user, previous_value) in &d.movers {
                let rank = rank32(ranking.rank(user, max, def.tie_policy));
                let previous = ranking.reported(user);
                if rank != previous {
                    let value = ranking.value(user).unwrap_or(0.0);
                    moved.push((user.clone(), rank, previous, value, *previous_value, true));
                }
            }
            if let Some((lo, hi)) = d.span {
                let hi = hi
                    .min(max.saturating_add(d.moves))
                    .min(lo.saturating_add(DISPLACED_MAX + d.moves));
                if lo <= hi {
                    // Ranks come with the page (no lookup per user); only users whose rank
                    // changed are copied out.
                    for (i, (user, value, rank_now)) in ranking
                        .page(lo, hi - lo + 1, usize::MAX, def.tie_policy)
                        .into_iter()
                        .enumerate()
                    {
                        let rank = rank32((lo + i < max).then_some(rank_now));
                        if rank == ranking.reported(user) || d.movers.contains_key(user) {
                            continue;
                        }
                        let previous = ranking.reported(user);
                        moved.push((user.to_string(), rank, previous, value, Some(value), false));
                    }
                }
            }
            for (user, rank, previous, value, previous_value, mover) in moved {
                if let Some(r) = self.board.group_mut(&key) {
                    r.set_reported(&user, rank);
                }
                // Displaced on a day of theirs without a change of their own: that day's
                // history row, in their zone.
                if let (Some(at), false) = (at, mover) {
                    let tz = self.board.zone_of(key.0, &user).unwrap_or(chrono_tz::UTC);
                    self.displaced_days
                        .entry((key.0, user.clone()))
                        .or_default()
                        .insert(at.with_timezone(&tz).date_naive());
                }
                if let (true, Some(at)) = (live || !consumers.is_empty(), at) {
                    effects.push(Effect::LeaderboardRankChanged {
                        board_id: self.id,
                        run: key.0,
                        group: key.1.clone(),
                        user_name: self.names.get(&user).cloned(),
                        user_id: user,
                        rank,
                        previous_rank: previous,
                        value,
                        previous_value,
                        at,
                    });
                }
            }
        }
        let due = self
            .displaced_written
            .is_none_or(|t| t.elapsed() >= DISPLACED_HISTORY_EVERY);
        if all || due {
            self.displaced_written = Some(std::time::Instant::now());
            for (k, dates) in std::mem::take(&mut self.displaced_days) {
                days.entry(k).or_default().extend(dates);
            }
        }
        // The history: each day's row is the user's standing, now, in the group they are in.
        for ((run, user), dates) in days {
            let row = self.board.group_of(run, &user).and_then(|g| {
                let key = (run, g.clone());
                let (rank, value) = self.standing(&key, &user, def);
                Some(HistoryRow {
                    rank: rank32(rank),
                    value: value?,
                })
            });
            let row = row.unwrap_or(HistoryRow {
                rank: None,
                value: 0.0,
            });
            for date in dates {
                commit.consumer_state(
                    CONSUMER,
                    &standings::history_key(self.id, run, &user, date),
                    Some(&row),
                )?;
            }
        }
        if let (false, Some(at)) = (consumers.is_empty(), at) {
            for key in changed_groups {
                effects.push(Effect::LeaderboardChanged {
                    board_id: self.id,
                    run: key.0,
                    top: self.top(&key, TOP, def),
                    group: key.1,
                    at,
                });
            }
        }
        let mut published = None;
        if !effects.is_empty() {
            self.seq += 1;
            let stream = effect_stream(scope, self.id);
            commit.inbox(consumers, &stream, self.seq, &effects)?;
            commit.consumer_state(CONSUMER, &standings::seq_key(self.id), Some(&self.seq))?;
            published = Some(Published {
                stream,
                seq: self.seq,
                effects,
                consumers: consumers.to_vec(),
            });
        }
        Ok(BoardWrite { commit, published })
    }

    /// The announcements due by `at` (SPEC §7.5.2, §8.3) and the instant of the next one,
    /// as a new [`RunsState`] to commit with them (the caller keeps it once written).
    pub fn announcements(
        &self,
        def: Option<&Leaderboard>,
        at: DateTime<Utc>,
    ) -> (Vec<Effect>, RunsState, Option<DateTime<Utc>>) {
        let mut runs = self.runs;
        let mut effects = Vec::new();
        let Some(def) = def else {
            return (effects, runs, None);
        };
        if def.status_at(at) == LeaderboardStatus::Inactive {
            return (effects, runs, None);
        }
        let schedule = def.schedule();
        let manual = def.status == LeaderboardStatus::Finished;
        // Started: the newest run whose start moment has come (older ones are skipped).
        if !manual {
            let day = at.date_naive() + Days::new(u64::from(at.hour() >= 10));
            let day = def.end.map_or(day, |e| day.min(e));
            if let Some(run) = schedule.run_at(day) {
                if runs.started.is_none_or(|s| s < run.index) {
                    effects.push(Effect::LeaderboardStarted {
                        board_id: self.id,
                        run: run.index,
                        at,
                    });
                    runs.started = Some(run.index);
                    runs.first.get_or_insert(run.index);
                }
            }
        }
        // Finished: every run since the first announced one whose finish moment has come.
        let mut catching_up = false;
        if let Some(first) = runs.first {
            let last = if manual {
                // The run holding the end, or a later one already announced as started.
                let by_end = def.end.and_then(|e| schedule.run_at(e)).map(|r| r.index);
                match (by_end, runs.started) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                }
            } else {
                last_finished(&schedule, def.end, at)
            };
            let from = runs.finished.map_or(first, |f| f + 1);
            if let Some(last) = last.filter(|l| *l >= from) {
                catching_up = last - from >= FINISH_BATCH as u64;
                for k in (from..=last).take(FINISH_BATCH) {
                    let mut groups: Vec<&Vec<String>> = self
                        .board
                        .groups_of(k)
                        .filter(|(_, r)| !r.is_empty())
                        .map(|(g, _)| g)
                        .collect();
                    groups.sort();
                    if groups.is_empty() {
                        effects.push(Effect::LeaderboardFinished {
                            board_id: self.id,
                            run: k,
                            group: Vec::new(),
                            top: Vec::new(),
                            at,
                        });
                    }
                    for g in groups {
                        effects.push(Effect::LeaderboardFinished {
                            board_id: self.id,
                            run: k,
                            group: g.clone(),
                            top: self.top(&(k, g.clone()), TOP, def),
                            at,
                        });
                    }
                    runs.finished = Some(k);
                }
            }
        }
        // Next: the following run's start, or the next unfinished run's finish.
        let next_start = if manual {
            None
        } else {
            schedule
                .run(runs.started.map_or(0, |s| s + 1))
                .map(start_moment)
        };
        let next_finish = if catching_up {
            // More runs to finish than one evaluation announces: go on at once.
            Some(at)
        } else {
            runs.first
                .and_then(|first| schedule.run(runs.finished.map_or(first, |f| f + 1)))
                .and_then(finish_moment)
                .filter(|_| !manual)
        };
        let next = match (next_start, next_finish) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (effects, runs, next)
    }
}

/// When run `run` is announced as started: 10:00 UTC on the day before its start.
pub fn start_moment(run: Run) -> DateTime<Utc> {
    let day = run
        .start
        .checked_sub_days(Days::new(1))
        .unwrap_or(run.start);
    day.and_hms_opt(10, 0, 0).unwrap_or_default().and_utc()
}

/// When run `run` is finished: 13:00 UTC on the day after its end (never for an open run).
pub fn finish_moment(run: Run) -> Option<DateTime<Utc>> {
    let day = run.end?.checked_add_days(Days::new(1))?;
    Some(day.and_hms_opt(13, 0, 0)?.and_utc())
}

/// The newest run whose finish moment is at or before `at`.
fn last_finished(
    schedule: &crate::rules::runs::Schedule,
    end: Option<NaiveDate>,
    at: DateTime<Utc>,
) -> Option<u64> {
    // finish_moment(run) <= at  <=>  run.end <= latest
    let back = 1 + u64::from(at.hour() < 13);
    let latest = at.date_naive().checked_sub_days(Days::new(back))?;
    let probe = end.map_or(latest, |e| latest.min(e));
    let run = schedule.run_at(probe)?;
    if run.end.is_some_and(|e| e <= latest) {
        Some(run.index)
    } else {
        run.index.checked_sub(1)
    }
}

#[cfg(test)]
mod tests;
