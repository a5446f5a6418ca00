//! Recovery: a stream's state is its latest snapshot with the later journal entries applied.
//!
//! Actors call [`load`] when they start, so a restarted or re-activated actor sees exactly the
//! acknowledged history. Nothing is replayed at server start: a stream's tail is at most one
//! snapshot interval long, so loading on demand costs one read and a few dozen applies, and
//! `/readyz` does not wait for streams nobody asked for.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Journal, Result, StreamId};

/// State that is rebuilt by applying journal records in order.
pub trait Recoverable: Default + Serialize + DeserializeOwned {
    type Record: Serialize + DeserializeOwned;
    /// Applies one record. Must be deterministic and only fold what the record says was
    /// decided: live processing uses the same function.
    fn apply(&mut self, record: &Self::Record);

    /// Applies a record journaled in codec `version` < [`crate::codec::VERSION`] (written by
    /// an older Kudos); the default applies it as any other.
    fn apply_legacy(&mut self, version: u8, record: &Self::Record) {
        let _ = version;
        self.apply(record);
    }

    /// Decodes a snapshot body written in codec `version` < [`crate::codec::VERSION`]; the
    /// default reads it as the current layout (for types whose layout never changed).
    fn decode_legacy(version: u8, body: &[u8]) -> std::result::Result<Self, String> {
        let _ = version;
        postcard::from_bytes(body).map_err(|e| e.to_string())
    }
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
    let tail = journal.tail_versioned::<S::Record>(stream, snapshot_seq)?;
    let replayed = tail.len();
    let mut seq = snapshot_seq;
    for (s, version, record) in &tail {
        if *version < crate::codec::VERSION {
            state.apply_legacy(*version, record);
        } else {
            state.apply(record);
        }
        seq = *s;
    }
    Ok(Loaded {
        state,
        seq,
        snapshot_seq,
        replayed,
    })
}
