//! The standings of every leaderboard, kept by the leaderboards effect consumer: it folds
//! the `Ranked` effects of acknowledged user records into each board's rankings, exactly
//! once (the inbox row is removed in the same batch as the entries it changed), and
//! rebuilds the rankings at start from those entries, never by replaying history.
//!
//! Durable state: one consumer-state row per (board, run, group, user) holding the user's
//! value, reach sequence number and name.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use kudos_snapshots::{Commit, ConsumerId, Store, StoreError, StreamId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::board::{Applied, Board, Entry, GroupKey};
use super::placement::Placement;
use crate::catalog::CatalogService;
use crate::effects::EffectConsumer;
use crate::user::Effect;

/// One durable entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub value: f64,
    pub reached: u64,
    pub name: Option<String>,
}

/// What applying one placement did (for the event response).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub placement: Placement,
    pub applied: Applied,
}

/// A record applied in memory: what it did, and the rows it changed until the consumer
/// writes them (with the removal of its inbox row, in one batch).
struct Recent {
    outcomes: Vec<Outcome>,
    unwritten: Option<Vec<Touched>>,
}

/// A (board, run and group, user, local date) a record changed. Its rows are written from
/// the standings as they are at write time, not as the record left them: requests may apply
/// a user's records in another order than their seq, and only the latest state is right.
type Touched = (Uuid, GroupKey, String, chrono::NaiveDate);

/// How many recently applied records keep their outcomes for the request that caused them.
const RECENT: usize = 4096;

/// Every board's standings, and the names rankings show.
#[derive(Default)]
pub struct Standings {
    boards: HashMap<Uuid, Board>,
    names: HashMap<String, String>,
    /// Outcomes of recently applied records, by (stream, seq): whichever of the request
    /// and the consumer applies a record first, the request reads what it did here.
    recent: HashMap<(StreamId, u64), Recent>,
    recent_order: VecDeque<(StreamId, u64)>,
}

impl Standings {
    pub fn board(&self, id: Uuid) -> Option<&Board> {
        self.boards.get(&id)
    }

    pub fn name(&self, user: &str) -> Option<&str> {
        self.names.get(user).map(String::as_str)
    }

    /// Folds the `Ranked` effects of entry `seq` of `stream` into the rankings, adding the
    /// entries it changed to `commit`, unless it was applied already (in memory).
    pub fn apply_record(
        &mut self,
        catalog: &crate::catalog::Catalog,
        stream: &StreamId,
        seq: u64,
        effects: &[Effect],
        commit: &mut Commit,
    ) -> Result<(), StoreError> {
        let id = (stream.clone(), seq);
        if let Some(recent) = self.recent.get_mut(&id) {
            // Applied by its request: its rows go out with this batch.
            if let Some(touched) = recent.unwritten.take() {
                self.write_touched(catalog, &touched, commit)?;
            }
            return Ok(());
        }
        let (outcomes, touched) = self.fold_record(catalog, effects);
        self.write_touched(catalog, &touched, commit)?;
        self.remember(id, outcomes, None);
        Ok(())
    }

    /// Applies a record in memory for the request that made it; its rows are kept until
    /// the consumer writes them.
    fn apply_in_memory(
        &mut self,
        catalog: &crate::catalog::Catalog,
        stream: &StreamId,
        seq: u64,
        effects: &[Effect],
    ) -> Result<(), StoreError> {
        let (outcomes, touched) = self.fold_record(catalog, effects);
        self.remember((stream.clone(), seq), outcomes, Some(touched));
        Ok(())
    }

    fn remember(
        &mut self,
        id: (StreamId, u64),
        outcomes: Vec<Outcome>,
        unwritten: Option<Vec<Touched>>,
    ) {
        self.recent.insert(
            id.clone(),
            Recent {
                outcomes,
                unwritten,
            },
        );
        self.recent_order.push_back(id);
        // Forget the oldest outcomes, but never rows the consumer has not written yet: it
        // would apply their record a second time.
        while self.recent_order.len() > RECENT {
            let pending = self
                .recent_order
                .front()
                .and_then(|k| self.recent.get(k))
                .is_some_and(|r| r.unwritten.is_some());
            if pending {
                break;
            }
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    /// Writes the current entry (or its removal) and the day's history row of every
    /// touched (board, group, user, date).
    fn write_touched(
        &self,
        catalog: &crate::catalog::Catalog,
        touched: &[Touched],
        commit: &mut Commit,
    ) -> Result<(), StoreError> {
        for (board_id, key, user, date) in touched {
            let ranking = self.boards.get(board_id).and_then(|b| b.group(key));
            let value = ranking.and_then(|r| r.value(user));
            let stored = value.map(|v| StoredEntry {
                value: v,
                reached: ranking.and_then(|r| r.reached(user)).unwrap_or(0),
                name: self.names.get(user).cloned(),
            });
            commit.consumer_state(
                LeaderboardsConsumer::ID,
                &row_key(*board_id, key, user),
                stored.as_ref(),
            )?;
            // The history is the user's standing in the group they are in now.
            let current = self
                .boards
                .get(board_id)
                .and_then(|b| b.group_of(key.0, user).map(|g| (b, g.clone())))
                .and_then(|(b, g)| b.group(&(key.0, g)));
            if let (Some(def), Some(r)) = (catalog.leaderboard(*board_id), current) {
                let max = usize::try_from(def.max_participants).unwrap_or(usize::MAX);
                let day = HistoryRow {
                    rank: r
                        .rank(user, max, def.tie_policy)
                        .and_then(|x| u32::try_from(x).ok()),
                    value: r.value(user).unwrap_or(0.0),
                };
                commit.consumer_state(
                    LeaderboardsConsumer::ID,
                    &history_key(*board_id, key.0, user, *date),
                    Some(&day),
                )?;
            }
        }
        Ok(())
    }

    fn fold_record(
        &mut self,
        catalog: &crate::catalog::Catalog,
        effects: &[Effect],
    ) -> (Vec<Outcome>, Vec<Touched>) {
        let mut outcomes = Vec::new();
        let mut touched = Vec::new();
        for e in effects {
            let Effect::Ranked {
                user_id,
                user_name,
                placements,
                ..
            } = e
            else {
                continue;
            };
            match user_name {
                Some(n) => {
                    self.names.insert(user_id.clone(), n.clone());
                }
                None => {
                    self.names.remove(user_id);
                }
            }
            for p in placements {
                // A board deleted since the record was applied no longer ranks anything.
                let Some(def) = catalog.leaderboard(p.board_id) else {
                    continue;
                };
                let max = usize::try_from(def.max_participants).unwrap_or(usize::MAX);
                let board = self.boards.entry(p.board_id).or_default();
                let (applied, writes) =
                    board.apply(user_id, p.run, &p.group, p.change, max, def.tie_policy);
                for (key, _) in writes {
                    touched.push((p.board_id, key, user_id.clone(), p.date));
                }
                outcomes.push(Outcome {
                    placement: p.clone(),
                    applied,
                });
            }
        }
        (outcomes, touched)
    }

    /// What applying entry `seq` of `stream` did, if it was applied recently.
    pub fn outcomes(&self, stream: &StreamId, seq: u64) -> Option<&[Outcome]> {
        self.recent
            .get(&(stream.clone(), seq))
            .map(|r| r.outcomes.as_slice())
    }
}

/// Applies a just-committed record now, in memory, for the request that made it, and
/// returns what it did on each board. Exactly once with the consumer: both apply under the
/// same lock and skip a record already applied (in memory, or removed from the inbox). The
/// rows it changed are written by the consumer with the record's inbox row, in its next
/// batch; until then a crash loses only memory, and the row is applied again at restart.
pub fn apply_now(
    store: &Store,
    standings: &SharedStandings,
    catalog: &crate::catalog::Catalog,
    stream: &StreamId,
    seq: u64,
    effects: &[Effect],
) -> Result<Vec<Outcome>, StoreError> {
    let mut s = standings.lock().unwrap_or_else(|e| e.into_inner());
    if s.outcomes(stream, seq).is_none()
        && store
            .inbox()
            .has_row(LeaderboardsConsumer::ID, stream, seq)?
    {
        s.apply_in_memory(catalog, stream, seq, effects)?;
    }
    Ok(s.outcomes(stream, seq)
        .map(<[Outcome]>::to_vec)
        .unwrap_or_default())
}

/// Writes the rows of every record applied in memory but not yet written (with their inbox
/// rows' removal, in one batch), so a read from disk sees them: a user's history right
/// after their event.
pub fn flush(
    store: &Store,
    standings: &SharedStandings,
    catalog: &crate::catalog::Catalog,
) -> Result<(), StoreError> {
    let mut s = standings.lock().unwrap_or_else(|e| e.into_inner());
    let mut commit = Commit::new();
    let mut pending: Vec<((StreamId, u64), Vec<Touched>)> = Vec::new();
    for (id, recent) in &mut s.recent {
        if let Some(touched) = recent.unwritten.take() {
            pending.push((id.clone(), touched));
        }
    }
    for ((stream, seq), touched) in &pending {
        s.write_touched(catalog, touched, &mut commit)?;
        commit.inbox_done(LeaderboardsConsumer::ID, stream, *seq);
    }
    if commit.is_empty() {
        return Ok(());
    }
    if let Err(e) = store.write(commit) {
        // Memory holds what the disk lacks: start over from the disk (the consumer reloads
        // when its own write fails too).
        *s = Standings::default();
        return Err(e);
    }
    Ok(())
}

/// Shared with the HTTP reads (locked briefly per read or applied batch).
pub type SharedStandings = Arc<Mutex<Standings>>;

/// Row kinds of the consumer's state.
const ENTRY: u8 = b'e';
const HISTORY: u8 = b'h';

/// A user's standing at the end of one of their days in a run (SPEC §7.6.3), as recorded
/// when their own changes were applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub rank: Option<u32>,
    pub value: f64,
}

/// The history key: board, run, user (length-prefixed), local date.
fn history_prefix(board: Uuid, run: u64, user: &str) -> Vec<u8> {
    let mut k = vec![HISTORY];
    k.extend_from_slice(board.as_bytes());
    k.extend_from_slice(&run.to_be_bytes());
    let len = u16::try_from(user.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&user.as_bytes()[..usize::from(len)]);
    k
}

fn history_key(board: Uuid, run: u64, user: &str, date: chrono::NaiveDate) -> Vec<u8> {
    let mut k = history_prefix(board, run, user);
    k.extend_from_slice(date.format("%Y-%m-%d").to_string().as_bytes());
    k
}

/// Up to `n` most recent history rows of `user` in `run`, oldest first.
pub fn history(
    store: &Store,
    board: Uuid,
    run: u64,
    user: &str,
    n: usize,
) -> Result<Vec<(chrono::NaiveDate, HistoryRow)>, StoreError> {
    let rows: Vec<(Vec<u8>, HistoryRow)> = store
        .inbox()
        .state_with_prefix(LeaderboardsConsumer::ID, &history_prefix(board, run, user))?;
    let mut out: Vec<(chrono::NaiveDate, HistoryRow)> = rows
        .into_iter()
        .filter_map(|(k, v)| {
            let date = chrono::NaiveDate::parse_from_str(std::str::from_utf8(&k).ok()?, "%Y-%m-%d")
                .ok()?;
            Some((date, v))
        })
        .collect();
    let skip = out.len().saturating_sub(n);
    out.drain(..skip);
    Ok(out)
}

/// The row key: kind, board id, run, the group's values (length-prefixed), then the user.
fn row_key(board: Uuid, key: &GroupKey, user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 16 + 8 + 1 + user.len() + 16);
    k.push(ENTRY);
    k.extend_from_slice(board.as_bytes());
    k.extend_from_slice(&key.0.to_be_bytes());
    k.push(u8::try_from(key.1.len()).unwrap_or(u8::MAX));
    for v in &key.1 {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        k.extend_from_slice(&len.to_be_bytes());
        k.extend_from_slice(&v.as_bytes()[..usize::from(len)]);
    }
    k.extend_from_slice(user.as_bytes());
    k
}

fn parse_key(k: &[u8]) -> Option<(Uuid, GroupKey, String)> {
    let k = k.strip_prefix(&[ENTRY])?;
    let board = Uuid::from_slice(k.get(..16)?).ok()?;
    let run = u64::from_be_bytes(k.get(16..24)?.try_into().ok()?);
    let count = *k.get(24)?;
    let mut at = 25;
    let mut group = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes(k.get(at..at + 2)?.try_into().ok()?));
        at += 2;
        group.push(String::from_utf8(k.get(at..at + len)?.to_vec()).ok()?);
        at += len;
    }
    let user = String::from_utf8(k.get(at..)?.to_vec()).ok()?;
    Some((board, (run, group), user))
}

/// The leaderboards effect consumer.
pub struct LeaderboardsConsumer {
    standings: SharedStandings,
    catalog: Arc<CatalogService>,
}

impl LeaderboardsConsumer {
    /// Rebuilds every board's standings from its durable entries into `standings`.
    pub fn load(
        store: &Store,
        catalog: Arc<CatalogService>,
        standings: SharedStandings,
    ) -> Result<Self, StoreError> {
        let rows: Vec<(Vec<u8>, StoredEntry)> =
            store.inbox().state_with_prefix(Self::ID, &[ENTRY])?;
        let mut fresh = Standings::default();
        for (k, v) in rows {
            let mut full = vec![ENTRY];
            full.extend_from_slice(&k);
            let Some((board, key, user)) = parse_key(&full) else {
                tracing::warn!("skipping a leaderboard entry with an unreadable key");
                continue;
            };
            fresh.boards.entry(board).or_default().restore(
                &key,
                &user,
                Entry {
                    value: v.value,
                    reached: v.reached,
                },
            );
            if let Some(name) = v.name {
                fresh.names.insert(user, name);
            }
        }
        *standings.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(Self { standings, catalog })
    }
}

impl EffectConsumer for LeaderboardsConsumer {
    const ID: ConsumerId = ConsumerId::LEADERBOARDS;
    // Event requests apply their records in memory at once; the consumer makes them
    // durable in batches.
    const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

    fn apply(
        &mut self,
        stream: &StreamId,
        seq: u64,
        effects: &[Effect],
        commit: &mut Commit,
    ) -> Result<(), StoreError> {
        let catalog = self.catalog.get();
        let mut standings = self.standings.lock().unwrap_or_else(|e| e.into_inner());
        standings.apply_record(&catalog, stream, seq, effects, commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_round_trip() {
        let board = Uuid::new_v4();
        let key: GroupKey = (7, vec!["FR".into(), "pro plan".into()]);
        let k = row_key(board, &key, "user:42");
        assert_eq!(parse_key(&k), Some((board, key, "user:42".to_string())));
        let empty: GroupKey = (0, Vec::new());
        assert_eq!(
            parse_key(&row_key(board, &empty, "u")),
            Some((board, empty, "u".to_string()))
        );
    }
}
