//! Snapshot policy: when an actor should fold its journal tail into a snapshot.
//!
//! A snapshot is written through a [`crate::Commit`] (in place of the record that reaches the
//! interval, or on passivation and stop); this module only decides *when*, so every actor
//! kind snapshots on the same terms, and how large the journal ring is.

/// Snapshot after this many journal entries since the last snapshot. Small enough that
/// restarting an actor replays little and the journal ring stays small on disk, large enough
/// that snapshot writes (a whole state object) stay a small fraction of ingest work.
pub const SNAPSHOT_EVERY: u64 = 32;

/// Slots of a stream's journal ring: record `seq` is written to slot `seq % JOURNAL_RING`,
/// overwriting a record that an earlier snapshot already covers. At most
/// `SNAPSHOT_EVERY - 1` records are ever newer than the snapshot, so they never share a slot.
pub const JOURNAL_RING: u64 = SNAPSHOT_EVERY;

/// Whether a stream whose last snapshot includes `snapshot_seq` and whose latest record is
/// `seq` should snapshot now.
pub fn due(snapshot_seq: u64, seq: u64) -> bool {
    seq.saturating_sub(snapshot_seq) >= SNAPSHOT_EVERY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_due_every_n_records() {
        assert!(!due(0, SNAPSHOT_EVERY - 1));
        assert!(due(0, SNAPSHOT_EVERY));
        assert!(!due(SNAPSHOT_EVERY, SNAPSHOT_EVERY + 1));
    }
}
