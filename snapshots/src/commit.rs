//! The commit unit: everything one command changes, as one atomic sled batch.
//!
//! A [`Commit`] collects the journal record of a command and every row it implies: the
//! snapshot that folds the stream's tail (every [`crate::snapshot::SNAPSHOT_EVERY`]
//! records, in place of the record), index and counter changes, due entries, idempotency keys and inbox rows for
//! the consumers that must see its effects. [`crate::Store::commit`] writes it as one batch
//! on one tree and waits for the group-commit fsync, so after a crash either all of it is
//! there or none of it is: a counter can never count a record that was lost.
//!
//! Counters are the one read-modify-write: the store adds the deltas to the current values
//! under one lock held across the batch write, so the order of counter values on disk is the
//! order of the batches in sled's log, and any prefix that survives a crash is consistent.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::codec;
use crate::due::DueTarget;
use crate::inbox::ConsumerId;
use crate::keys::{self, Scope, StreamId, Tag};
use crate::Result;

/// Rows to write atomically (see the module docs).
#[derive(Default)]
pub struct Commit {
    /// Puts and removals in order (a later op on the same key wins).
    pub(crate) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Counter key → delta, turned into absolute values by the committer.
    pub(crate) counters: BTreeMap<Vec<u8>, i64>,
    /// Keys to remove only if their value (first 8 bytes: ms) is older than the given ms.
    pub(crate) remove_if_older: Vec<(Vec<u8>, i64)>,
}

impl Commit {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.counters.is_empty() && self.remove_if_older.is_empty()
    }

    /// Adds everything `other` holds after what this commit holds (later ops on a key win,
    /// counter deltas add up).
    pub fn append(&mut self, other: Commit) {
        self.ops.extend(other.ops);
        for (k, d) in other.counters {
            *self.counters.entry(k).or_default() += d;
        }
        self.remove_if_older.extend(other.remove_if_older);
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// Journal entry `seq` of `stream`, in its ring slot (see [`crate::journal`]).
    pub fn journal<R: Serialize>(&mut self, stream: &StreamId, seq: u64, record: &R) -> Result<()> {
        let bytes = codec::encode_with_header(&seq.to_be_bytes(), record)?;
        self.put(keys::journal_key(stream, seq), bytes);
        Ok(())
    }

    /// A snapshot of `stream` that includes every entry up to `seq`. The journal slots it
    /// covers are not removed: later records overwrite them (removing keys in bulk made
    /// sled stall for seconds, see docs/performance.md).
    pub fn snapshot<S: Serialize>(&mut self, stream: &StreamId, seq: u64, state: &S) -> Result<()> {
        let bytes = codec::encode_with_header(&seq.to_be_bytes(), state)?;
        self.put(keys::stream_key(Tag::Snapshot, stream), bytes);
        Ok(())
    }

    /// Marks `stream` as existing (a created user), so that jobs can walk every member.
    pub fn member(&mut self, stream: &StreamId) {
        self.put(keys::stream_key(Tag::Member, stream), Vec::new());
    }

    /// Adds `delta` to the counter `name` of `scope`.
    pub fn count(&mut self, scope: Scope, name: &str, delta: i64) {
        *self
            .counters
            .entry(keys::scoped_key(Tag::Counter, scope, name.as_bytes()))
            .or_default() += delta;
    }

    /// Records that `owner` owns the entity `entity` (for example a streak pause).
    pub fn owner(&mut self, scope: Scope, entity: &str, owner: &StreamId) {
        let mut value = Vec::new();
        owner.encode(&mut value);
        self.put(
            keys::scoped_key(Tag::Owner, scope, entity.as_bytes()),
            value,
        );
    }

    /// Moves `target` in the due index from `old` to `new` (either may be absent).
    pub fn due(&mut self, target: &DueTarget, old: Option<i64>, new: Option<i64>) {
        if old == new {
            return;
        }
        if let Some(o) = old {
            self.remove(target.key(o));
        }
        if let Some(n) = new {
            self.put(target.key(n), Vec::new());
        }
    }

    /// Stores what idempotency `slot` of `stream` produced, seen at `at_ms`. With
    /// `track_age`, the key is also indexed by age so that it can be pruned later.
    pub fn idempotency(
        &mut self,
        stream: &StreamId,
        slot: &[u8],
        value: &[u8],
        at_ms: i64,
        track_age: bool,
    ) {
        let mut key = keys::stream_key(Tag::Idempotency, stream);
        key.extend_from_slice(slot);
        let mut v = Vec::with_capacity(8 + value.len());
        v.extend_from_slice(&at_ms.to_be_bytes());
        v.extend_from_slice(value);
        self.put(key, v);
        if track_age {
            self.put(crate::index::age_key(at_ms, stream, slot), Vec::new());
        }
    }

    /// Removes an age entry, and the key it dates if the key was not used again since:
    /// decided when the commit is written, so a key re-used meanwhile survives.
    pub(crate) fn idempotency_expired(&mut self, age_key: &[u8], key: Vec<u8>, before_ms: i64) {
        self.remove(age_key.to_vec());
        self.remove_if_older.push((key, before_ms));
    }

    /// One inbox row per consumer: each must apply `payload` (the effects of entry `seq` of
    /// `stream`) and then remove its row in its own commit. The payload is encoded once.
    pub fn inbox<P: Serialize + ?Sized>(
        &mut self,
        consumers: &[ConsumerId],
        stream: &StreamId,
        seq: u64,
        payload: &P,
    ) -> Result<()> {
        if consumers.is_empty() {
            return Ok(());
        }
        let bytes = codec::encode(payload)?;
        for consumer in consumers {
            self.put(crate::inbox::row_key(*consumer, stream, seq), bytes.clone());
        }
        Ok(())
    }

    /// Removes an inbox row once its consumer has applied it.
    pub fn inbox_done(&mut self, consumer: ConsumerId, stream: &StreamId, seq: u64) {
        self.remove(crate::inbox::row_key(consumer, stream, seq));
    }

    /// Writes (or with `None` removes) one row of a consumer's own state.
    pub fn consumer_state<V: Serialize>(
        &mut self,
        consumer: ConsumerId,
        key: &[u8],
        value: Option<&V>,
    ) -> Result<()> {
        let k = crate::inbox::state_key(consumer, key);
        match value {
            Some(v) => {
                let bytes = codec::encode(v)?;
                self.put(k, bytes);
            }
            None => self.remove(k),
        }
        Ok(())
    }
}
