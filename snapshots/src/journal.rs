//! The read side of the journal: per-stream records and snapshots.
//!
//! Every actor owns one stream and is its only writer, so a stream's sequence numbers are
//! assigned by the actor without any global counter. Records are written by
//! [`crate::Store::commit`] and acknowledged only after the group-commit fsync that covers
//! them. A snapshot holds the state after some seq; its value starts with that seq, so it
//! can be checked without decoding the state.
//!
//! A stream's journal is a **ring** of [`crate::snapshot::JOURNAL_RING`] slots: record `seq`
//! goes to slot `seq % JOURNAL_RING` (its value starts with `seq`), and a snapshot is taken
//! before any record could overwrite one that no snapshot covers yet. The tail is the slots
//! newer than the snapshot, in seq order. Nothing is ever deleted, so the journal costs at
//! most one ring of records per stream on disk, and snapshots never cause a burst of
//! removals (which made sled stall for seconds under load).

use serde::de::DeserializeOwned;

use crate::keys::{self, StreamId, Tag};
use crate::{codec, Result};

/// Handle to journal entries and snapshots (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    pub(crate) tree: sled::Tree,
}

impl Journal {
    /// Journal entries of `stream` with a sequence number above `after`, in order. A gap in
    /// the sequence is reported as corruption (it cannot happen: see the module docs).
    pub fn tail<R: DeserializeOwned>(
        &self,
        stream: &StreamId,
        after: u64,
    ) -> Result<Vec<(u64, R)>> {
        Ok(self
            .tail_versioned(stream, after)?
            .into_iter()
            .map(|(seq, _, record)| (seq, record))
            .collect())
    }

    /// [`Journal::tail`] with the codec version each entry was written in.
    pub fn tail_versioned<R: DeserializeOwned>(
        &self,
        stream: &StreamId,
        after: u64,
    ) -> Result<Vec<(u64, u8, R)>> {
        let prefix = keys::stream_key(Tag::Journal, stream);
        let mut found: Vec<(u64, sled::IVec)> = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (key, bytes) = item?;
            if key.len() != prefix.len() + 1 {
                continue;
            }
            let seq = seq_header(&bytes).ok_or_else(|| crate::StoreError::Corrupt {
                key: format!("{stream} slot {}", key[prefix.len()]),
                reason: "value shorter than its header".into(),
            })?;
            if seq > after {
                found.push((seq, bytes));
            }
        }
        found.sort_by_key(|(seq, _)| *seq);
        let mut out = Vec::with_capacity(found.len());
        for (i, (seq, bytes)) in found.into_iter().enumerate() {
            if seq != after + 1 + i as u64 {
                return Err(crate::StoreError::Corrupt {
                    key: format!("{stream}#{seq}"),
                    reason: format!("journal gap: expected seq {}", after + 1 + i as u64),
                });
            }
            let record = codec::decode_after(&bytes, 8, || format!("{stream}#{seq}"))?;
            out.push((
                seq,
                bytes.first().copied().unwrap_or(codec::VERSION),
                record,
            ));
        }
        Ok(out)
    }

    /// The latest snapshot of `stream` and the journal seq it includes.
    pub fn read_snapshot<S: crate::Recoverable>(
        &self,
        stream: &StreamId,
    ) -> Result<Option<(u64, S)>> {
        let Some(bytes) = self.tree.get(keys::stream_key(Tag::Snapshot, stream))? else {
            return Ok(None);
        };
        let seq = seq_header(&bytes).ok_or_else(|| crate::StoreError::Corrupt {
            key: format!("snapshot {stream}"),
            reason: "value shorter than its header".into(),
        })?;
        let state = match bytes.first() {
            Some(&v) if v < codec::VERSION && bytes.len() >= 9 => S::decode_legacy(v, &bytes[9..])
                .map_err(|reason| crate::StoreError::Corrupt {
                    key: format!("snapshot {stream}"),
                    reason,
                })?,
            _ => codec::decode_after(&bytes, 8, || format!("snapshot {stream}"))?,
        };
        Ok(Some((seq, state)))
    }

    /// The seq the stored snapshot of `stream` includes (0 when there is none).
    pub fn snapshot_seq(&self, stream: &StreamId) -> Result<u64> {
        Ok(self
            .tree
            .get(keys::stream_key(Tag::Snapshot, stream))?
            .and_then(|b| seq_header(&b))
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
            .is_some_and(|k| k.len() == prefix.len() + 1))
    }
}

/// The seq in front of a snapshot or journal value (after the version byte).
fn seq_header(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?))
}
