//! The journal: per-stream append-only records plus the group-commit flusher.
//!
//! Every actor owns one stream (`user:alice`) and is its only writer, so a stream's sequence
//! numbers are assigned by the actor without any global counter. A record is acknowledged only
//! after [`Durability::wait`] returns, i.e. after an fsync that started after the insert.
//! Concurrent writers share fsyncs: while one flush runs, later inserts pile up and are all
//! covered by the next one. That is what makes per-request durability affordable (one fsync
//! costs ~200 µs here; one flush per insert caps out at a few thousand writes per second).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::{Result, StoreError};

/// Identity of one journal stream, e.g. `user:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(String);

impl StreamId {
    pub fn new(kind: &str, id: &str) -> Self {
        Self(format!("{kind}:{id}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn from_raw(raw: &[u8]) -> Self {
        Self(String::from_utf8_lossy(raw).into_owned())
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const JOURNAL_TAG: u8 = b'j';
const SNAPSHOT_TAG: u8 = b's';

/// `tag | u16 length | stream bytes`: the length prefix keeps arbitrary user ids (which may
/// contain any byte) from colliding with each other in prefix scans.
fn stream_prefix(tag: u8, stream: &StreamId) -> Vec<u8> {
    let bytes = stream.0.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(3 + bytes.len() + 8);
    key.push(tag);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&bytes[..usize::from(len)]);
    key
}

fn journal_key(stream: &StreamId, seq: u64) -> Vec<u8> {
    let mut key = stream_prefix(JOURNAL_TAG, stream);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn parse_journal_key(key: &[u8]) -> Option<(StreamId, u64)> {
    if key.first() != Some(&JOURNAL_TAG) || key.len() < 3 + 8 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([key[1], key[2]]));
    if key.len() != 3 + len + 8 {
        return None;
    }
    let stream = StreamId::from_raw(&key[3..3 + len]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&key[3 + len..]);
    Some((stream, u64::from_be_bytes(seq)))
}

#[derive(Serialize, serde::Deserialize)]
struct SnapshotEnvelope<S> {
    seq: u64,
    state: S,
}

/// Handle to the journal and snapshots (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    tree: sled::Tree,
    durability: Arc<Durability>,
}

impl Journal {
    pub(crate) fn new(tree: sled::Tree, durability: Arc<Durability>) -> Self {
        Self { tree, durability }
    }

    /// Appends `record` as entry `seq` of `stream` and waits until it is fsynced.
    pub async fn append<R: Serialize>(
        &self,
        stream: &StreamId,
        seq: u64,
        record: &R,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(StoreError::Encode)?;
        self.tree.insert(journal_key(stream, seq), bytes)?;
        self.durability.wait().await
    }

    /// Journal entries of `stream` with a sequence number above `after`, in order.
    pub fn tail<R: DeserializeOwned>(
        &self,
        stream: &StreamId,
        after: u64,
    ) -> Result<Vec<(u64, R)>> {
        let prefix = stream_prefix(JOURNAL_TAG, stream);
        let start = journal_key(stream, after.saturating_add(1));
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (key, bytes) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some((_, seq)) = parse_journal_key(&key) else {
                break;
            };
            let record = serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                key: format!("{stream}#{seq}"),
                source,
            })?;
            out.push((seq, record));
        }
        Ok(out)
    }

    /// The latest snapshot of `stream` and the journal seq it includes.
    pub fn read_snapshot<S: DeserializeOwned>(
        &self,
        stream: &StreamId,
    ) -> Result<Option<(u64, S)>> {
        match self.tree.get(stream_prefix(SNAPSHOT_TAG, stream))? {
            None => Ok(None),
            Some(bytes) => {
                let env: SnapshotEnvelope<S> =
                    serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                        key: format!("snapshot {stream}"),
                        source,
                    })?;
                Ok(Some((env.seq, env.state)))
            }
        }
    }

    /// Writes a snapshot that includes every entry up to `seq` and drops those entries, in one
    /// atomic batch. Not fsynced on purpose: if the batch is lost in a crash, the journal
    /// entries it would have dropped are still there, so nothing acknowledged is lost.
    pub fn write_snapshot<S: Serialize>(
        &self,
        stream: &StreamId,
        seq: u64,
        state: &S,
    ) -> Result<()> {
        let bytes =
            serde_json::to_vec(&SnapshotEnvelope { seq, state }).map_err(StoreError::Encode)?;
        let mut batch = sled::Batch::default();
        batch.insert(stream_prefix(SNAPSHOT_TAG, stream), bytes);
        let prefix = stream_prefix(JOURNAL_TAG, stream);
        for item in self.tree.scan_prefix(&prefix) {
            let (key, _) = item?;
            match parse_journal_key(&key) {
                Some((_, s)) if s <= seq => batch.remove(key),
                _ => break,
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Whether `stream` has ever been written (a snapshot or a journal entry).
    pub fn exists(&self, stream: &StreamId) -> Result<bool> {
        if self
            .tree
            .contains_key(stream_prefix(SNAPSHOT_TAG, stream))?
        {
            return Ok(true);
        }
        Ok(self
            .tree
            .scan_prefix(stream_prefix(JOURNAL_TAG, stream))
            .next()
            .transpose()?
            .is_some())
    }

    /// Every stream that has journal entries not yet folded into a snapshot.
    pub fn streams_with_tail(&self) -> Result<Vec<StreamId>> {
        let mut out: Vec<StreamId> = Vec::new();
        let mut cursor = vec![JOURNAL_TAG];
        loop {
            let next = self.tree.range(cursor.clone()..).next().transpose()?;
            let Some((key, _)) = next else { break };
            let Some((stream, _)) = parse_journal_key(&key) else {
                break;
            };
            // Jump past this stream's entries: its prefix followed by the largest seq.
            cursor = journal_key(&stream, u64::MAX);
            cursor.push(0);
            out.push(stream);
        }
        Ok(out)
    }

    /// Number of journal entries not yet folded into snapshots (for tests and ops).
    pub fn pending_entries(&self) -> usize {
        self.tree.scan_prefix([JOURNAL_TAG]).count()
    }
}

/// Group-commit flusher: callers ask for durability, one dedicated thread runs fsyncs, and
/// each fsync satisfies every request made before it started. A plain OS thread (rather than
/// a tokio task handing each flush to the blocking pool) keeps one wake-up per flush.
pub struct Durability {
    /// Tickets handed out so far; a ticket is taken after the caller's write.
    requested: AtomicU64,
    /// Highest ticket covered by a completed fsync.
    completed: watch::Sender<u64>,
    /// Set when there is work; the flusher sleeps on the condition variable otherwise.
    pending: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    stopping: std::sync::atomic::AtomicBool,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Durability {
    pub(crate) fn start(db: sled::Db) -> Arc<Self> {
        let this = Arc::new(Self {
            requested: AtomicU64::new(0),
            completed: watch::Sender::new(0),
            pending: std::sync::Mutex::new(false),
            wake: std::sync::Condvar::new(),
            fsyncs: AtomicU64::new(0),
            fsync_nanos: AtomicU64::new(0),
            stopping: std::sync::atomic::AtomicBool::new(false),
            thread: std::sync::Mutex::new(None),
        });
        let weak = Arc::downgrade(&this);
        let thread = std::thread::Builder::new()
            .name("kudos-fsync".into())
            .spawn(move || flusher(weak, db));
        match thread {
            Ok(handle) => *this.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the fsync thread; writes will wait")
            }
        }
        this
    }

    fn signal(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_one();
    }

    /// Stops the flusher (after serving every pending request) and waits for it.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.signal();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Returns once everything written before this call is fsynced.
    pub async fn wait(&self) -> Result<()> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.signal();
        let mut rx = self.completed.subscribe();
        rx.wait_for(|done| *done >= ticket)
            .await
            .map_err(|_| StoreError::FlusherStopped)?;
        Ok(())
    }

    /// Number of fsyncs run so far (group commit makes this far smaller than the write count).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Total time spent in fsyncs.
    pub fn fsync_seconds(&self) -> f64 {
        self.fsync_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }
}

fn flusher(weak: Weak<Durability>, db: sled::Db) {
    loop {
        let Some(this) = weak.upgrade() else { return };
        let target = this.requested.load(Ordering::SeqCst);
        if target <= *this.completed.borrow() {
            if this.stopping.load(Ordering::SeqCst) {
                return;
            }
            // Sleep until signalled, waking now and then to notice that the store is gone.
            let guard = this.pending.lock().unwrap_or_else(|e| e.into_inner());
            let (mut guard, _) = this
                .wake
                .wait_timeout_while(guard, Duration::from_millis(500), |pending| !*pending)
                .unwrap_or_else(|e| e.into_inner());
            *guard = false;
            continue;
        }
        let started = std::time::Instant::now();
        match db.flush() {
            Ok(_) => {
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                this.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
                this.fsyncs.fetch_add(1, Ordering::Relaxed);
                this.completed.send_replace(target);
            }
            Err(err) => {
                tracing::error!(error = %err, "journal fsync failed; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_keys_round_trip_and_do_not_collide() {
        let a = StreamId::new("user", "ab");
        let b = StreamId::new("user", "a");
        let ka = journal_key(&a, 7);
        assert_eq!(parse_journal_key(&ka), Some((a.clone(), 7)));
        assert!(!ka.starts_with(&stream_prefix(JOURNAL_TAG, &b)));
    }

    #[tokio::test]
    async fn append_tail_snapshot_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::Store::open(dir.path()).expect("open");
        let j = store.journal();
        let s = StreamId::new("user", "u1");
        let other = StreamId::new("user", "u10");
        assert!(!j.exists(&s).expect("exists"));
        for seq in 1..=5u64 {
            j.append(&s, seq, &seq).await.expect("append");
        }
        j.append(&other, 1, &99u64).await.expect("append");
        assert!(j.exists(&s).expect("exists"));
        let tail: Vec<(u64, u64)> = j.tail(&s, 2).expect("tail");
        assert_eq!(tail, vec![(3, 3), (4, 4), (5, 5)]);
        j.write_snapshot(&s, 4, &"state-at-4").expect("snapshot");
        let tail: Vec<(u64, u64)> = j.tail(&s, 0).expect("tail");
        assert_eq!(tail, vec![(5, 5)]);
        let snap: Option<(u64, String)> = j.read_snapshot(&s).expect("read");
        assert_eq!(snap, Some((4, "state-at-4".to_string())));
        let mut streams = j.streams_with_tail().expect("streams");
        streams.sort();
        assert_eq!(streams, vec![s.clone(), other.clone()]);
        assert!(store.durability().fsync_count() >= 1);
    }
}
