//! The read side of the journal: per-stream records and snapshots.
//!
//! Every actor owns one stream and is its only writer, so a stream's sequence numbers are
//! assigned by the actor without any global counter. Records are written by
//! [`crate::Store::commit`] and acknowledged only after the group-commit fsync that covers
//! them. A snapshot holds the state after some seq and is written in the same batch that
//! drops the entries it covers; the snapshot value starts with that seq, so it can be
//! checked without decoding the state.

use serde::de::DeserializeOwned;

use crate::keys::{self, StreamId, Tag};
use crate::{codec, Result};

/// Handle to journal entries and snapshots (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    pub(crate) tree: sled::Tree,
}

impl Journal {
    /// Journal entries of `stream` with a sequence number above `after`, in order.
    pub fn tail<R: DeserializeOwned>(
        &self,
        stream: &StreamId,
        after: u64,
    ) -> Result<Vec<(u64, R)>> {
        let prefix = keys::stream_key(Tag::Journal, stream);
        let start = keys::journal_key(stream, after.saturating_add(1));
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (key, bytes) = item?;
            if !key.starts_with(&prefix) || key.len() != prefix.len() + 8 {
                break;
            }
            let Some(seq) = keys::trailing_seq(&key) else {
                break;
            };
            let record = codec::decode(&bytes, || format!("{stream}#{seq}"))?;
            out.push((seq, record));
        }
        Ok(out)
    }

    /// The latest snapshot of `stream` and the journal seq it includes.
    pub fn read_snapshot<S: DeserializeOwned>(
        &self,
        stream: &StreamId,
    ) -> Result<Option<(u64, S)>> {
        let Some(bytes) = self.tree.get(keys::stream_key(Tag::Snapshot, stream))? else {
            return Ok(None);
        };
        let seq = snapshot_seq_of(&bytes).ok_or_else(|| crate::StoreError::Corrupt {
            key: format!("snapshot {stream}"),
            reason: "value shorter than its header".into(),
        })?;
        let state = codec::decode_after(&bytes, 8, || format!("snapshot {stream}"))?;
        Ok(Some((seq, state)))
    }

    /// The seq the stored snapshot of `stream` includes (0 when there is none).
    pub fn snapshot_seq(&self, stream: &StreamId) -> Result<u64> {
        Ok(self
            .tree
            .get(keys::stream_key(Tag::Snapshot, stream))?
            .and_then(|b| snapshot_seq_of(&b))
            .unwrap_or(0))
    }

    /// Whether `stream` has ever been written (a snapshot or a journal entry).
    pub fn exists(&self, stream: &StreamId) -> Result<bool> {
        if self
            .tree
            .contains_key(keys::stream_key(Tag::Snapshot, stream))?
        {
            return Ok(true);
        }
        let prefix = keys::stream_key(Tag::Journal, stream);
        Ok(self
            .tree
            .scan_prefix(&prefix)
            .keys()
            .next()
            .transpose()?
            .is_some_and(|k| k.len() == prefix.len() + 8))
    }

    /// Number of journal entries not yet folded into snapshots (tests and diagnostics only:
    /// a scan).
    pub fn pending_entries(&self) -> usize {
        self.tree.scan_prefix([Tag::Journal as u8]).count()
    }
}

fn snapshot_seq_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?))
}
