//! The durable rows of the leaderboards consumer (consumer-state rows of
//! `ConsumerId::LEADERBOARDS`), and their keys:
//! - `e`: one entry per (board, run, group, user): the user's value, reach sequence number,
//!   name and zone; a board's rankings are rebuilt from these at start, never by replaying
//!   history;
//! - `h`: one history row per (board, run, user, local date): the user's end-of-day rank
//!   and value (SPEC §7.6.3);
//! - `z`: per (board, user), the user's zone at their last change (a participant without
//!   one, written before zones were kept, is taken as UTC);
//! - `s`: per board, the last sequence number of its effect stream;
//! - `r`: per board, how far its run announcements went.

use kudos_snapshots::{ConsumerId, Store, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::board::GroupKey;

/// The consumer whose state rows these are.
pub const CONSUMER: ConsumerId = ConsumerId::LEADERBOARDS;

/// One durable entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub value: f64,
    pub reached: u64,
    pub name: Option<String>,
}

/// Row kinds of the consumer's state.
const ENTRY: u8 = b'e';
const HISTORY: u8 = b'h';
const SEQ: u8 = b's';
const ZONE: u8 = b'z';

/// The key of a participant's zone row.
pub fn zone_key(board: Uuid, user: &str) -> Vec<u8> {
    let mut k = vec![ZONE];
    k.extend_from_slice(board.as_bytes());
    k.extend_from_slice(user.as_bytes());
    k
}

/// Every participant zone of `board` (user → IANA name).
pub fn zones(store: &Store, board: Uuid) -> Result<Vec<(String, String)>, StoreError> {
    let mut prefix = vec![ZONE];
    prefix.extend_from_slice(board.as_bytes());
    let rows: Vec<(Vec<u8>, String)> = store.inbox().state_with_prefix(CONSUMER, &prefix)?;
    Ok(rows
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
        .collect())
}
const RUNS: u8 = b'r';

/// The key of a board's effect-stream sequence row.
pub fn seq_key(board: Uuid) -> Vec<u8> {
    let mut k = vec![SEQ];
    k.extend_from_slice(board.as_bytes());
    k
}

/// The key of a board's run-announcement row.
pub fn runs_key(board: Uuid) -> Vec<u8> {
    let mut k = vec![RUNS];
    k.extend_from_slice(board.as_bytes());
    k
}

/// Reads one of a board's single rows (`seq_key`, `runs_key`).
pub fn read_row<V: serde::de::DeserializeOwned>(
    store: &Store,
    key: &[u8],
) -> Result<Option<V>, StoreError> {
    let rows: Vec<(Vec<u8>, V)> = store.inbox().state_with_prefix(CONSUMER, key)?;
    Ok(rows.into_iter().find(|(k, _)| k.is_empty()).map(|(_, v)| v))
}

/// Every durable entry of `board`: (run and group, user, entry).
pub fn entries(
    store: &Store,
    board: Uuid,
) -> Result<Vec<(GroupKey, String, StoredEntry)>, StoreError> {
    let mut prefix = vec![ENTRY];
    prefix.extend_from_slice(board.as_bytes());
    let rows: Vec<(Vec<u8>, StoredEntry)> = store.inbox().state_with_prefix(CONSUMER, &prefix)?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        let mut full = prefix.clone();
        full.extend_from_slice(&k);
        match parse_key(&full) {
            Some((_, key, user)) => out.push((key, user, v)),
            None => tracing::warn!(%board, "skipping a leaderboard entry with an unreadable key"),
        }
    }
    Ok(out)
}

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

pub fn history_key(board: Uuid, run: u64, user: &str, date: chrono::NaiveDate) -> Vec<u8> {
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
        .state_with_prefix(CONSUMER, &history_prefix(board, run, user))?;
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
pub fn row_key(board: Uuid, key: &GroupKey, user: &str) -> Vec<u8> {
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
