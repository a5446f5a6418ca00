//! # kudos-snapshots: everything that touches sled
//!
//! Kudos keeps hot state in actors and uses sled only for durability. This crate owns the
//! on-disk layout so that no other crate needs to know a key format.
//!
//! ## Layout
//! - [`keys`]: typed identities ([`Scope`], [`StreamKind`], [`StreamId`]) and the byte layout
//!   of every row. Everything a command writes lives in one tree, `data`.
//! - [`commit`]: the commit unit, one atomic batch per command ([`Commit`]).
//! - [`durability`]: the group-commit fsync thread; a failed fsync fails its waiters.
//! - [`codec`]: the versioned binary encoding (postcard) of records, snapshots and rows.
//! - [`journal`]: reading per-stream records and snapshots.
//! - [`recovery`]: a stream's state as snapshot + journal tail, loaded on demand.
//! - [`due`]: the due index of typed targets ([`DueTarget`]).
//! - [`index`]: members, counters, owners and idempotency keys.
//! - [`inbox`]: rows that carry effects to their consumers exactly once.
//! - [`snapshot`]: when a stream snapshots.
//! - [`failpoint`]: test-only crash and fault injection on the commit path.
//! - [`Store`]: opens the database, commits, and hands out read handles, plus a small JSON
//!   `meta` tree (configuration catalog, API keys, the test clock, jobs).
//!
//! Data flows one way: an actor decides, builds a [`Commit`] of its record and every row the
//! record implies, awaits [`Store::commit`] (one batch + group-commit fsync), and only then
//! answers and publishes the record's effects. On restart the same records are applied to the
//! last snapshot, so live processing and replay share one `apply` function.
#![forbid(unsafe_code)]

pub mod codec;
pub mod commit;
pub mod due;
pub mod durability;
pub mod failpoint;
pub mod inbox;
pub mod index;
pub mod journal;
pub mod keys;
pub mod recovery;
pub mod snapshot;

use std::path::Path;
use std::sync::Arc;

pub use commit::Commit;
pub use due::{DueIndex, DueKind, DueTarget};
pub use durability::Durability;
pub use inbox::{ConsumerId, Inbox, InboxRow};
pub use index::Indexes;
pub use journal::Journal;
pub use keys::{Scope, StreamId, StreamKind};
pub use recovery::Recoverable;

/// The on-disk format this build reads and writes (meta key [`FORMAT_KEY`]).
pub const FORMAT: u32 = 2;
const FORMAT_KEY: &str = "storage/format";

/// Errors from the storage layer. They keep sled's cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// Writes cannot be made durable (a failed fsync or write); answered 503.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("could not encode record: {0}")]
    Encode(String),
    #[error("the durability flusher has stopped")]
    FlusherStopped,
    #[error("{0}")]
    Format(String),
}

impl StoreError {
    /// Whether the failure is the storage being unavailable (503) rather than bad data.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Sled(sled::Error::Io(_))
                | StoreError::Unavailable(_)
                | StoreError::FlusherStopped
        )
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Settings of [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache in bytes (its own default is 1 GiB).
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 128 * 1024 * 1024,
        }
    }
}

/// The opened database: one sled instance with a data tree and a meta tree.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// Journal, snapshots and every row a command implies: one tree, so one batch is atomic.
    data: sled::Tree,
    meta: sled::Tree,
    durability: Arc<Durability>,
}

impl Store {
    /// Opens (or creates) the database in `dir` and starts the group-commit flusher.
    /// Refuses a data directory written in an older format, with a message saying so.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes)
            // Acknowledged writes are flushed explicitly by the group committer; the background
            // flush only bounds how much un-acknowledged work (snapshots on stop, consumer
            // progress) a crash can make redo.
            .flush_every_ms(Some(1000))
            .open()?;
        let old_format = db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == b"streams" || n.as_ref() == b"users");
        if old_format {
            return Err(StoreError::Format(format!(
                "{} holds a Kudos data directory in storage format 1 (JSON journal); this \
                 version reads format {FORMAT} only. Start with an empty data directory \
                 (there is no migration: format 1 predates any release)",
                dir.display()
            )));
        }
        let data = db.open_tree("data")?;
        let meta = db.open_tree("meta")?;
        let durability = Durability::start(durability::SledSink {
            db: db.clone(),
            data: data.clone(),
        });
        let store = Self {
            db,
            data,
            meta,
            durability,
        };
        match store.meta_get::<u32>(FORMAT_KEY)? {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(StoreError::Format(format!(
                    "{} is in storage format {other}; this version reads format {FORMAT}",
                    dir.display()
                )))
            }
            None => {
                store.meta.insert(
                    FORMAT_KEY,
                    serde_json::to_vec(&FORMAT).map_err(|e| StoreError::Encode(e.to_string()))?,
                )?;
            }
        }
        Ok(store)
    }

    /// Writes `commit` atomically (in one batch with the other commits of its group) and
    /// waits until it is fsynced. Only then may the caller acknowledge anything in it.
    pub async fn commit(&self, commit: Commit) -> Result<()> {
        self.durability.commit(commit).await
    }

    /// Writes `commit` as one atomic batch now, without waiting for an fsync: for writes that
    /// acknowledge nothing (a snapshot on stop, a consumer's progress). A crash may lose
    /// them, which only means redoing work: the rows they would have removed are still there.
    pub fn write(&self, commit: Commit) -> Result<()> {
        if commit.is_empty() {
            return Ok(());
        }
        if !self.healthy() {
            return Err(self.durability.unavailable());
        }
        let mut cache = self
            .durability
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (batch, counters) = durability::to_batch(
            [commit],
            &mut cache,
            |k| index::read_counter(&self.data, k),
            |k| Ok(self.data.get(k)?.map(|v| v.to_vec())),
        )?;
        match self.data.apply_batch(batch) {
            Ok(()) => {
                cache.extend(counters);
                Ok(())
            }
            Err(e) => {
                self.durability.write_failed(&e);
                Err(e.into())
            }
        }
    }

    /// Journal entries and snapshots.
    pub fn journal(&self) -> Journal {
        Journal {
            tree: self.data.clone(),
        }
    }

    /// The due index.
    pub fn due(&self) -> DueIndex {
        DueIndex {
            tree: self.data.clone(),
        }
    }

    /// Members, counters, owners, idempotency keys.
    pub fn indexes(&self) -> Indexes {
        Indexes {
            tree: self.data.clone(),
        }
    }

    /// Inbox rows and consumer state.
    pub fn inbox(&self) -> Inbox {
        Inbox {
            tree: self.data.clone(),
        }
    }

    pub fn durability(&self) -> &Arc<Durability> {
        &self.durability
    }

    /// Whether writes can currently be made durable (`/readyz` turns 503 otherwise).
    pub fn healthy(&self) -> bool {
        self.durability.healthy()
    }

    /// Reads a JSON value from the meta tree.
    pub fn meta_get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.meta.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: key.to_string(),
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// Writes JSON values (and removals) to the meta tree atomically and waits until they are
    /// fsynced. Used for admin configuration, keys, jobs and the test clock.
    pub async fn meta_commit(&self, puts: Vec<(String, Option<serde_json::Value>)>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (key, value) in puts {
            match value {
                Some(v) => {
                    let bytes =
                        serde_json::to_vec(&v).map_err(|e| StoreError::Encode(e.to_string()))?;
                    batch.insert(key.as_bytes(), bytes);
                }
                None => batch.remove(key.as_bytes()),
            }
        }
        self.meta.apply_batch(batch).map_err(|e| {
            self.durability.write_failed(&e);
            StoreError::from(e)
        })?;
        self.durability.wait().await
    }

    /// All meta entries whose key starts with `prefix`, decoded as JSON, in key order.
    pub fn meta_scan<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.meta.scan_prefix(prefix.as_bytes()) {
            let (key, bytes) = item?;
            let value = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: e.to_string(),
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
        let flushed = self.db.flush_async().await;
        self.durability.stop().await;
        flushed?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Store {
        Store::open(dir, &StoreOptions::default()).expect("open")
    }

    #[derive(Default, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Sum(i64);
    impl Recoverable for Sum {
        type Record = i64;
        fn apply(&mut self, record: &i64) {
            self.0 += record;
        }
    }

    /// Counts how its records were applied: (current, legacy with their versions).
    #[derive(Default, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Applied(u32, Vec<u8>);
    impl Recoverable for Applied {
        type Record = i64;
        fn apply(&mut self, _: &i64) {
            self.0 += 1;
        }
        fn apply_legacy(&mut self, version: u8, _: &i64) {
            self.1.push(version);
        }
    }

    #[tokio::test]
    async fn recovery_hands_entries_of_older_versions_to_apply_legacy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let s = StreamId::user(Scope::DEFAULT, "u1");
        for seq in 1..=3u64 {
            let mut c = Commit::new();
            c.journal(&s, seq, &(seq as i64)).expect("journal");
            store.commit(c).await.expect("commit");
        }
        // Rewrite entry 2 as an older Kudos wrote it: the same bytes behind version 3.
        let journal = store.journal();
        let prefix = keys::stream_key(keys::Tag::Journal, &s);
        let mut rewritten = 0;
        for item in journal.tree.scan_prefix(&prefix) {
            let (key, bytes) = item.expect("row");
            if bytes.get(1..9) == Some(&2u64.to_be_bytes()[..]) {
                let mut old = bytes.to_vec();
                old[0] = codec::VERSION - 1;
                journal.tree.insert(key, old).expect("insert");
                rewritten += 1;
            }
        }
        assert_eq!(rewritten, 1);
        let loaded = recovery::load::<Applied>(&journal, &s).expect("load");
        assert_eq!(loaded.state, Applied(2, vec![codec::VERSION - 1]));
        assert_eq!(loaded.seq, 3);
    }

    #[tokio::test]
    async fn a_commit_writes_journal_rows_and_counters_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let s = StreamId::user(Scope::DEFAULT, "u1");
        let other = StreamId::user(Scope::DEFAULT, "u10");
        assert!(!store.journal().exists(&s).expect("exists"));
        for seq in 1..=3u64 {
            let mut c = Commit::new();
            c.journal(&s, seq, &(seq as i64)).expect("journal");
            c.count(Scope::DEFAULT, "events", 1);
            if seq == 1 {
                c.member(&s);
                c.owner(Scope::DEFAULT, "pause-1", &s);
            }
            store.commit(c).await.expect("commit");
        }
        let mut c = Commit::new();
        c.journal(&other, 1, &99i64).expect("journal");
        store.commit(c).await.expect("commit");
        let tail: Vec<(u64, i64)> = store.journal().tail(&s, 1).expect("tail");
        assert_eq!(tail, vec![(2, 2), (3, 3)]);
        let idx = store.indexes();
        assert_eq!(idx.counter(Scope::DEFAULT, "events").expect("counter"), 3);
        assert!(idx.is_member(&s).expect("member"));
        assert!(!idx.is_member(&other).expect("member"));
        assert_eq!(
            idx.owner(Scope::DEFAULT, "pause-1").expect("owner"),
            Some(s.clone())
        );
        let members: Vec<String> = idx
            .members(StreamKind::User, Scope::DEFAULT)
            .collect::<Result<_>>()
            .expect("members");
        assert_eq!(members, vec!["u1".to_string()]);

        // A snapshot covers the entries up to its seq; load is snapshot + tail.
        let mut c = Commit::new();
        c.snapshot(&s, 2, &Sum(3)).expect("snapshot");
        store.write(c).expect("write");
        let loaded = recovery::load::<Sum>(&store.journal(), &s).expect("load");
        assert_eq!((loaded.state, loaded.seq, loaded.replayed), (Sum(6), 3, 1));
        assert_eq!(store.journal().snapshot_seq(&s).expect("seq"), 2);
        assert!(store.durability().fsync_count() >= 1);
    }

    #[tokio::test]
    async fn the_journal_ring_overwrites_only_what_a_snapshot_covers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let s = StreamId::user(Scope::DEFAULT, "ring");
        let ring = snapshot::JOURNAL_RING;
        let mut expected = Sum(0);
        let mut snapshot_seq = 0;
        // Three and a half rings, snapshotting like an actor does (in place of the record
        // that reaches the interval), with an early snapshot (passivation) in between.
        for seq in 1..=(ring * 7 / 2) {
            expected.0 += seq as i64;
            let mut c = Commit::new();
            if snapshot::due(snapshot_seq, seq) || seq == ring + 5 {
                c.snapshot(&s, seq, &expected).expect("snapshot");
                snapshot_seq = seq;
            } else {
                c.journal(&s, seq, &(seq as i64)).expect("journal");
            }
            store.commit(c).await.expect("commit");
            let loaded = recovery::load::<Sum>(&store.journal(), &s).expect("load");
            assert_eq!(
                (loaded.state.0, loaded.seq),
                (expected.0, seq),
                "after {seq}"
            );
            assert!(loaded.replayed < ring as usize);
        }
        let slots = store
            .data
            .scan_prefix(keys::stream_key(keys::Tag::Journal, &s))
            .count();
        assert!(slots <= ring as usize, "{slots} slots");
    }

    #[tokio::test]
    async fn due_entries_come_out_in_time_order_and_stay_until_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let t =
            |id: &str| DueTarget::new(DueKind::UserPeriodEnd, StreamId::user(Scope::DEFAULT, id));
        let mut c = Commit::new();
        c.due(&t("b"), None, Some(-5));
        c.due(&t("a"), None, Some(20));
        c.due(&t("c"), None, Some(10));
        store.commit(c).await.expect("commit");
        let mut c = Commit::new();
        c.due(&t("c"), Some(10), Some(30));
        store.commit(c).await.expect("commit");
        let due = store.due();
        let first = due.due_before(25, 100).expect("read");
        assert_eq!(first, vec![(-5, t("b")), (20, t("a"))]);
        assert_eq!(due.due_before(25, 100).expect("read"), first);
        assert!(due.contains(&t("c"), 30).expect("contains"));
        assert_eq!(due.overdue(100, 2).expect("overdue"), 2);
    }

    #[tokio::test]
    async fn idempotency_keys_expire_through_their_age_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let s = StreamId::user(Scope::DEFAULT, "u1");
        let mut c = Commit::new();
        c.idempotency(&s, b"m/k1", b"event-1", 1_000, true);
        c.idempotency(&s, b"m/k2", b"event-2", 5_000, true);
        store.commit(c).await.expect("commit");
        let idx = store.indexes();
        assert_eq!(
            idx.idempotency(&s, b"m/k1").expect("get"),
            Some((1_000, b"event-1".to_vec()))
        );
        let prune = idx.expired_idempotency(2_000, 100).expect("expired");
        store.write(prune).expect("prune");
        assert_eq!(idx.idempotency(&s, b"m/k1").expect("get"), None);
        assert!(idx.idempotency(&s, b"m/k2").expect("get").is_some());
        // Re-used after it expired: the old age entry must not take the new row with it.
        let mut c = Commit::new();
        c.idempotency(&s, b"m/k2", b"event-3", 9_000, true);
        store.commit(c).await.expect("commit");
        let prune = idx.expired_idempotency(6_000, 100).expect("expired");
        assert!(!prune.is_empty(), "the old age entry goes");
        store.write(prune).expect("prune");
        assert_eq!(
            idx.idempotency(&s, b"m/k2").expect("get"),
            Some((9_000, b"event-3".to_vec()))
        );
    }

    #[tokio::test]
    async fn inbox_rows_and_consumer_state_are_removed_and_written_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let s = StreamId::user(Scope::DEFAULT, "u1");
        let mut c = Commit::new();
        c.inbox(&[ConsumerId::TEST_TALLY], &s, 1, &vec![1u32, 2])
            .expect("row");
        c.inbox(&[ConsumerId::TEST_TALLY], &s, 2, &vec![3u32])
            .expect("row");
        store.commit(c).await.expect("commit");
        let rows: Vec<InboxRow<Vec<u32>>> = store
            .inbox()
            .pending(ConsumerId::TEST_TALLY, 10)
            .expect("rows");
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        let mut c = Commit::new();
        c.inbox_done(ConsumerId::TEST_TALLY, &s, 1);
        c.consumer_state(ConsumerId::TEST_TALLY, b"u1", Some(&3u64))
            .expect("state");
        store.write(c).expect("write");
        assert_eq!(store.inbox().backlog(ConsumerId::TEST_TALLY, 10), 1);
        let state: Vec<(Vec<u8>, u64)> =
            store.inbox().state(ConsumerId::TEST_TALLY).expect("state");
        assert_eq!(state, vec![(b"u1".to_vec(), 3)]);
    }

    #[tokio::test]
    async fn a_format_1_data_directory_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::open(dir.path()).expect("sled");
            db.open_tree("streams")
                .expect("tree")
                .insert("j", "x")
                .expect("insert");
            db.flush().expect("flush");
        }
        // sled's flusher thread can hold the directory lock a moment after the handle is
        // dropped: wait for it (a lock error is not the answer under test).
        let mut tries = 0;
        let err = loop {
            let err = Store::open(dir.path(), &StoreOptions::default())
                .err()
                .expect("refused");
            if !err.to_string().contains("could not acquire lock") || tries == 100 {
                break err;
            }
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(err.to_string().contains("storage format 1"), "{err}");
    }
}
