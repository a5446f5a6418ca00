//! Recovery: a stream's state is its latest snapshot with the later journal entries applied.
//!
//! Actors call [`load`] when they start, so a restarted or re-activated actor sees exactly the
//! acknowledged history. At server start-up [`fold_all_tails`] runs the same thing for every
//! stream that has a tail and writes the result back as a snapshot, so the journal stays short
//! and later actor starts are a single read.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Journal, Result, StreamId};

/// State that is rebuilt by applying journal records in order.
pub trait Recoverable: Default + Serialize + DeserializeOwned {
    type Record: Serialize + DeserializeOwned;
    /// Applies one record. Must be deterministic: live processing uses the same function.
    fn apply(&mut self, record: &Self::Record);
}

/// A recovered stream: its state, the last seq included and the seq of its snapshot.
pub struct Loaded<S> {
    pub state: S,
    pub seq: u64,
    pub snapshot_seq: u64,
    pub replayed: usize,
}

/// Loads `stream` as snapshot + journal tail.
pub fn load<S: Recoverable>(journal: &Journal, stream: &StreamId) -> Result<Loaded<S>> {
    let (snapshot_seq, mut state) = journal.read_snapshot::<S>(stream)?.unwrap_or_default();
    let tail = journal.tail::<S::Record>(stream, snapshot_seq)?;
    let replayed = tail.len();
    let mut seq = snapshot_seq;
    for (s, record) in &tail {
        state.apply(record);
        seq = *s;
    }
    Ok(Loaded {
        state,
        seq,
        snapshot_seq,
        replayed,
    })
}

/// Summary of a start-up recovery pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct FoldReport {
    pub streams: usize,
    pub records: usize,
    /// Streams whose records could not be decoded: left as they are (their actor will fail to
    /// start and say why) so one bad stream does not keep the whole server down.
    pub failed: usize,
}

/// Folds every journal tail of streams named `kind:*` into its snapshot.
pub fn fold_all_tails<S: Recoverable>(journal: &Journal, kind: &str) -> Result<FoldReport> {
    let prefix = format!("{kind}:");
    let mut report = FoldReport::default();
    for stream in journal.streams_with_tail()? {
        if !stream.as_str().starts_with(&prefix) {
            continue;
        }
        let loaded = match load::<S>(journal, &stream) {
            Ok(loaded) => loaded,
            Err(e @ crate::StoreError::Corrupt { .. }) => {
                tracing::error!(stream = %stream, error = %e, "cannot recover stream; leaving its journal untouched");
                report.failed += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        journal.write_snapshot(&stream, loaded.seq, &loaded.state)?;
        report.streams += 1;
        report.records += loaded.replayed;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Sum(i64);
    impl Recoverable for Sum {
        type Record = i64;
        fn apply(&mut self, record: &i64) {
            self.0 += record;
        }
    }

    #[tokio::test]
    async fn load_is_snapshot_plus_tail_and_fold_compacts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::Store::open(dir.path()).expect("open");
        let j = store.journal();
        let s = StreamId::new("sum", "a");
        for seq in 1..=3u64 {
            j.append(&s, seq, &(seq as i64)).await.expect("append");
        }
        j.write_snapshot(&s, 2, &Sum(3)).expect("snapshot");
        j.append(&s, 4, &10i64).await.expect("append");
        let loaded = load::<Sum>(&j, &s).expect("load");
        assert_eq!((loaded.state, loaded.seq, loaded.replayed), (Sum(16), 4, 2));
        let report = fold_all_tails::<Sum>(&j, "sum").expect("fold");
        assert_eq!((report.streams, report.records), (1, 2));
        assert_eq!(j.pending_entries(), 0);
        let loaded = load::<Sum>(&j, &s).expect("load");
        assert_eq!((loaded.state, loaded.seq), (Sum(16), 4));
    }
}
