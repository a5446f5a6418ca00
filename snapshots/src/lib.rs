//! # kudos-snapshots: everything that touches sled
//!
//! Kudos keeps hot state in actors and uses sled only for durability. This crate owns the
//! on-disk layout so that no other crate needs to know a key format:
//!
//! - [`journal`]: per-stream append-only records (one stream per actor, e.g. `user:alice`),
//!   made durable by a shared group-commit flusher ([`journal::Durability`]).
//! - [`snapshot`]: the latest state of a stream together with the journal sequence number it
//!   includes; written in the same sled batch that drops the journal entries it covers.
//! - [`recovery`]: rebuilds a stream's state as snapshot + journal tail, and the start-up
//!   pass that folds every pending tail into its snapshot.
//! - [`Store`]: opens the database and hands out the trees above plus a small `meta` tree
//!   (configuration catalog, API keys, the test clock).
//!
//! Data flows one way: an actor appends a record, awaits [`journal::Durability::wait`], then
//! applies the record to its in-memory state. On restart the same records are applied to the
//! last snapshot, so live processing and replay share one `apply` function.
#![forbid(unsafe_code)]

pub mod due;
pub mod index;
pub mod journal;
pub mod recovery;
pub mod snapshot;

use std::path::Path;
use std::sync::Arc;

pub use due::DueIndex;
pub use index::{Counters, Owners, UserIndex};
pub use journal::{Durability, Journal, StreamId};
pub use recovery::Recoverable;

/// Errors from the storage layer. They keep sled's or serde's cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record {key}: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("could not encode record: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("the durability flusher has stopped")]
    FlusherStopped,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The opened database: one sled instance with named trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Journal entries and snapshots share one tree so that "write snapshot, drop the entries
    /// it covers" is a single atomic batch.
    streams: sled::Tree,
    meta: sled::Tree,
    due: sled::Tree,
    users: sled::Tree,
    counters: sled::Tree,
    owners: sled::Tree,
    durability: Arc<Durability>,
}

impl Store {
    /// Opens (or creates) the database in `dir` and starts the group-commit flusher.
    /// Must be called inside a tokio runtime.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            // Acknowledged writes are flushed explicitly by the group committer; the background
            // flush only bounds how much un-acknowledged work a crash can lose.
            .flush_every_ms(Some(1000))
            .open()?;
        let streams = db.open_tree("streams")?;
        let meta = db.open_tree("meta")?;
        let due = db.open_tree("due")?;
        let users = db.open_tree("users")?;
        let counters = db.open_tree("counters")?;
        let owners = db.open_tree("owners")?;
        let durability = Durability::start(db.clone());
        Ok(Self {
            db,
            streams,
            meta,
            due,
            users,
            counters,
            owners,
            durability,
        })
    }

    pub fn journal(&self) -> Journal {
        Journal::new(self.streams.clone(), self.durability.clone())
    }

    /// The scheduler's due index.
    pub fn due(&self) -> DueIndex {
        DueIndex::new(self.due.clone())
    }

    /// Every user id ever created.
    pub fn users(&self) -> UserIndex {
        UserIndex::new(self.users.clone())
    }

    /// Named counters (achievement completions).
    pub fn counters(&self) -> Counters {
        Counters::new(self.counters.clone())
    }

    /// Entity id → owning stream (streak pauses → users).
    pub fn owners(&self) -> Owners {
        Owners::new(self.owners.clone())
    }

    pub fn durability(&self) -> &Arc<Durability> {
        &self.durability
    }

    /// Reads a JSON value from the meta tree.
    pub fn meta_get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.meta.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StoreError::Corrupt {
                        key: key.to_string(),
                        source,
                    })
            }
        }
    }

    /// Writes JSON values (and removals) to the meta tree atomically and waits until they are
    /// fsynced. Used for admin configuration, keys and the test clock.
    pub async fn meta_commit(&self, puts: Vec<(String, Option<serde_json::Value>)>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (key, value) in puts {
            match value {
                Some(v) => {
                    let bytes = serde_json::to_vec(&v).map_err(StoreError::Encode)?;
                    batch.insert(key.as_bytes(), bytes);
                }
                None => batch.remove(key.as_bytes()),
            }
        }
        self.meta.apply_batch(batch)?;
        self.durability.wait().await
    }

    /// All meta entries whose key starts with `prefix`, decoded as JSON, in key order.
    pub fn meta_scan<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.meta.scan_prefix(prefix.as_bytes()) {
            let (key, bytes) = item?;
            let value = serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                source,
            })?;
            out.push(value);
        }
        Ok(out)
    }

    /// Keys of the meta entries starting with `prefix`.
    pub fn meta_keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.meta
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// Flushes everything to disk and stops the group-commit flusher. Other clones of this
    /// store must be dropped by the caller for sled to release the directory.
    pub async fn close(self) -> Result<()> {
        self.db.flush_async().await?;
        self.durability.stop().await;
        Ok(())
    }
}
