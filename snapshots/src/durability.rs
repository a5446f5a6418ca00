//! Group commit: writers hand their [`Commit`]s to one committer thread, which merges every
//! commit waiting at that moment into **one** sled batch, applies it, fsyncs once, and then
//! answers all of them. While one group is being written, later commits pile up and form the
//! next group.
//!
//! Why one thread and one batch per group: sled makes a batch atomic with a global
//! reader-writer lock that every other operation then has to take too; one batch per group
//! takes it once per fsync instead of once per command, and one fsync covers the whole
//! group (one fsync costs ~200 µs to 1 ms here; one per command caps out at a few thousand
//! commands per second). The committer is also the only writer of counters, so adding a
//! delta to a counter needs no lock around the batch.
//!
//! A failed write or fsync (disk full, I/O error) fails every commit of its group at once
//! and marks the store unhealthy: later commits fail immediately instead of queueing. sled
//! refuses every write after an I/O error until the database is reopened, so the store
//! stays unhealthy until the process restarts; nothing acknowledged before is lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::commit::Commit;
use crate::{failpoint, index, Result, StoreError};

/// What the committer writes to: the data tree and a way to fsync everything.
pub(crate) trait Sink: Send + 'static {
    fn apply(&mut self, batch: sled::Batch) -> std::result::Result<(), sled::Error>;
    fn read_counter(&self, key: &[u8]) -> std::result::Result<u64, sled::Error>;
    fn read_value(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, sled::Error>;
    fn flush(&mut self) -> std::result::Result<(), sled::Error>;
}

/// The real sink: sled's data tree and database.
pub(crate) struct SledSink {
    pub(crate) db: sled::Db,
    pub(crate) data: sled::Tree,
}

impl Sink for SledSink {
    fn apply(&mut self, batch: sled::Batch) -> std::result::Result<(), sled::Error> {
        self.data.apply_batch(batch)
    }
    fn read_counter(&self, key: &[u8]) -> std::result::Result<u64, sled::Error> {
        index::read_counter(&self.data, key)
    }
    fn read_value(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, sled::Error> {
        Ok(self.data.get(key)?.map(|v| v.to_vec()))
    }
    fn flush(&mut self) -> std::result::Result<(), sled::Error> {
        self.db.flush().map(|_| ())
    }
}

struct Pending {
    /// `None`: only wait for everything written before to be durable.
    commit: Option<Commit>,
    done: oneshot::Sender<Result<()>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    stopping: bool,
}

pub struct Durability {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Current counter values, shared with direct (non-durable) writes.
    pub(crate) counters: Mutex<HashMap<Vec<u8>, u64>>,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    commits: AtomicU64,
    failures: AtomicU64,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Durability {
    pub(crate) fn start(sink: impl Sink) -> Arc<Self> {
        let this = Arc::new(Self {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            counters: Mutex::new(HashMap::new()),
            fsyncs: AtomicU64::new(0),
            fsync_nanos: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            thread: Mutex::new(None),
        });
        let weak = Arc::downgrade(&this);
        let thread = std::thread::Builder::new()
            .name("kudos-commit".into())
            .spawn(move || committer(weak, sink));
        match thread {
            Ok(handle) => *this.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the commit thread; writes will fail");
                this.mark_failed(format!("cannot start the commit thread: {e}"));
            }
        }
        this
    }

    fn mark_failed(&self, error: String) {
        if self.healthy.swap(false, Ordering::SeqCst) {
            tracing::error!(error = %error, "storage failed; failing waiting writes and answering 503 until restarted");
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// Records a failed direct write so that the store reports unhealthy too.
    pub(crate) fn write_failed(&self, error: &sled::Error) {
        self.mark_failed(format!("storage write failed: {error}"));
    }

    /// Whether writes can currently be made durable.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// The last storage error, for `/readyz` and logs.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn unavailable(&self) -> StoreError {
        StoreError::Unavailable(
            self.last_error()
                .unwrap_or_else(|| "storage is unavailable".into()),
        )
    }

    fn submit(&self, commit: Option<Commit>) -> oneshot::Receiver<Result<()>> {
        let (done, rx) = oneshot::channel();
        if !self.healthy() {
            let _ = done.send(Err(self.unavailable()));
            return rx;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.stopping {
            let _ = done.send(Err(StoreError::FlusherStopped));
            return rx;
        }
        q.pending.push(Pending { commit, done });
        drop(q);
        self.wake.notify_one();
        rx
    }

    /// Writes `commit` in the next group and returns once that group is fsynced.
    pub(crate) async fn commit(&self, commit: Commit) -> Result<()> {
        self.submit(Some(commit))
            .await
            .map_err(|_| StoreError::FlusherStopped)?
    }

    /// Returns once everything written before this call is fsynced, or fails (503 at the
    /// edge) if that fsync failed or the store is already known to be broken.
    pub async fn wait(&self) -> Result<()> {
        self.submit(None)
            .await
            .map_err(|_| StoreError::FlusherStopped)?
    }

    /// Stops the committer (after serving every queued commit) and waits for it.
    pub async fn stop(&self) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopping = true;
        self.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Number of fsyncs run so far (group commit makes this far smaller than the commits).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Total time spent in fsyncs.
    pub fn fsync_seconds(&self) -> f64 {
        self.fsync_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Commits written so far.
    pub fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Failed writes or fsyncs so far.
    pub fn failure_count(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Counter keys and the absolute values a batch writes for them.
pub(crate) type CounterValues = Vec<(Vec<u8>, u64)>;

/// Builds one batch from `commits`; counter deltas become absolute values read from (and
/// stored back into) `cache`. The caller holds the counter lock until the batch is applied,
/// so the order of counter values is the order of batches in sled's log.
pub(crate) fn to_batch(
    commits: impl IntoIterator<Item = Commit>,
    cache: &mut HashMap<Vec<u8>, u64>,
    read_counter: impl Fn(&[u8]) -> std::result::Result<u64, sled::Error>,
    read_value: impl Fn(&[u8]) -> std::result::Result<Option<Vec<u8>>, sled::Error>,
) -> std::result::Result<(sled::Batch, CounterValues), sled::Error> {
    let mut batch = sled::Batch::default();
    let mut deltas: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let commits: Vec<Commit> = commits.into_iter().collect();
    // Conditional removals (expired idempotency keys) are decided here, in commit order,
    // against what earlier commits of this group wrote and then what is stored: a key
    // re-used after it expired is never removed by a pruning pass racing with its use.
    let conditional = commits.iter().any(|c| !c.remove_if_older.is_empty());
    let mut written: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    for commit in commits {
        for (key, value) in commit.ops {
            if conditional {
                written.insert(key.clone(), value.clone());
            }
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        for (key, before_ms) in commit.remove_if_older {
            let current = match written.get(&key) {
                Some(v) => v.clone(),
                None => read_value(&key)?,
            };
            let stamped = current
                .as_deref()
                .and_then(|v| Some(i64::from_be_bytes(v.get(..8)?.try_into().ok()?)));
            if stamped.is_some_and(|at| at < before_ms) {
                written.insert(key.clone(), None);
                batch.remove(key);
            }
        }
        for (key, delta) in commit.counters {
            *deltas.entry(key).or_default() += delta;
        }
    }
    let mut values = Vec::with_capacity(deltas.len());
    for (key, delta) in deltas {
        let current = match cache.get(&key) {
            Some(v) => *v,
            None => read_counter(&key)?,
        };
        let value = current.saturating_add_signed(delta);
        batch.insert(key.clone(), &value.to_be_bytes());
        values.push((key, value));
    }
    Ok((batch, values))
}

fn committer(weak: Weak<Durability>, mut sink: impl Sink) {
    loop {
        let Some(this) = weak.upgrade() else { return };
        let mut group = {
            let mut q = this.queue.lock().unwrap_or_else(|e| e.into_inner());
            while q.pending.is_empty() && !q.stopping {
                // Wake now and then to notice that the store is gone.
                let (guard, _) = this
                    .wake
                    .wait_timeout(q, Duration::from_millis(500))
                    .unwrap_or_else(|e| e.into_inner());
                q = guard;
                if weak.strong_count() <= 1 && q.pending.is_empty() {
                    return;
                }
            }
            if q.pending.is_empty() && q.stopping {
                return;
            }
            std::mem::take(&mut q.pending)
        };
        // A panic in sled or in batch building must not leave the queue waiting forever:
        // the group fails, and the store is marked broken like after an I/O error.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_group(&this, &mut sink, &mut group)
        }))
        .unwrap_or_else(|_| Err("the commit thread panicked".to_string()));
        if let Err(e) = &result {
            this.failures.fetch_add(1, Ordering::Relaxed);
            this.mark_failed(e.clone());
        }
        for p in group {
            let _ = p.done.send(result.clone().map_err(StoreError::Unavailable));
        }
    }
}

/// Applies and fsyncs one group; the error is the message every commit of it fails with.
fn write_group(
    this: &Durability,
    sink: &mut impl Sink,
    group: &mut [Pending],
) -> std::result::Result<(), String> {
    if !this.healthy() {
        return Err(this
            .last_error()
            .unwrap_or_else(|| "storage is unavailable".into()));
    }
    let commits = group.iter().filter(|p| p.commit.is_some()).count() as u64;
    if commits > 0 {
        failpoint::crash("commit_before_write");
        let mut cache = this.counters.lock().unwrap_or_else(|e| e.into_inner());
        let (batch, counters) = to_batch(
            group.iter_mut().filter_map(|p| p.commit.take()),
            &mut cache,
            |k| sink.read_counter(k),
            |k| sink.read_value(k),
        )
        .map_err(|e| format!("storage write failed: {e}"))?;
        sink.apply(batch)
            .map_err(|e| format!("storage write failed: {e}"))?;
        cache.extend(counters);
        drop(cache);
        failpoint::crash("commit_after_write");
    }
    let started = std::time::Instant::now();
    let flushed = if failpoint::hit("fsync_error") {
        Err(sled::Error::Io(std::io::Error::other(
            "injected fsync failure",
        )))
    } else {
        sink.flush()
    };
    flushed.map_err(|e| format!("journal fsync failed: {e}"))?;
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    this.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
    this.fsyncs.fetch_add(1, Ordering::Relaxed);
    this.commits.fetch_add(commits, Ordering::Relaxed);
    if commits > 0 {
        failpoint::crash("commit_after_fsync");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose writes and fsyncs can be made to fail.
    struct FakeSink {
        fail: Arc<AtomicBool>,
        applied: Arc<AtomicU64>,
    }

    impl Sink for FakeSink {
        fn apply(&mut self, _batch: sled::Batch) -> std::result::Result<(), sled::Error> {
            self.applied.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn read_counter(&self, _key: &[u8]) -> std::result::Result<u64, sled::Error> {
            Ok(0)
        }
        fn read_value(&self, _key: &[u8]) -> std::result::Result<Option<Vec<u8>>, sled::Error> {
            Ok(None)
        }
        fn flush(&mut self) -> std::result::Result<(), sled::Error> {
            if self.fail.load(Ordering::SeqCst) {
                Err(sled::Error::Io(std::io::Error::other("disk full")))
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_its_waiters_and_every_later_write_at_once() {
        let fail = Arc::new(AtomicBool::new(false));
        let applied = Arc::new(AtomicU64::new(0));
        let d = Durability::start(FakeSink {
            fail: fail.clone(),
            applied: applied.clone(),
        });
        d.commit(Commit::new())
            .await
            .expect("a working fsync acknowledges");
        d.wait().await.expect("waits work too");
        assert!(d.healthy());
        fail.store(true, Ordering::SeqCst);
        let r = d.commit(Commit::new()).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(!d.healthy());
        assert!(d.last_error().expect("error kept").contains("disk full"));
        assert!(d.failure_count() >= 1);
        // Known broken: later writes fail without reaching the sink, even if the disk
        // recovered.
        fail.store(false, Ordering::SeqCst);
        let before = applied.load(Ordering::SeqCst);
        assert!(matches!(
            d.commit(Commit::new()).await,
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(applied.load(Ordering::SeqCst), before);
        d.stop().await;
    }

    #[tokio::test]
    async fn concurrent_commits_share_groups_and_counters_add_up() {
        let d = Durability::start(FakeSink {
            fail: Arc::new(AtomicBool::new(false)),
            applied: Arc::new(AtomicU64::new(0)),
        });
        let mut waits = Vec::new();
        for _ in 0..200 {
            let mut c = Commit::new();
            c.count(crate::Scope::DEFAULT, "n", 1);
            waits.push(d.submit(Some(c)));
        }
        for w in waits {
            w.await.expect("answered").expect("committed");
        }
        assert_eq!(d.commit_count(), 200);
        assert!(d.fsync_count() <= 200);
        let key = crate::keys::scoped_key(crate::keys::Tag::Counter, crate::Scope::DEFAULT, b"n");
        assert_eq!(d.counters.lock().expect("lock").get(&key), Some(&200));
        d.stop().await;
    }

    #[test]
    fn a_pruning_removal_never_takes_a_key_rewritten_in_the_same_group() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("t").expect("tree");
        let stamped = |at: i64| {
            let mut v = at.to_be_bytes().to_vec();
            v.extend_from_slice(b"event");
            v
        };
        tree.insert(b"k", stamped(1_000)).expect("old row");
        for reuse_first in [true, false] {
            let mut reuse = Commit::new();
            reuse.ops.push((b"k".to_vec(), Some(stamped(9_000))));
            let mut prune = Commit::new();
            prune.remove_if_older.push((b"k".to_vec(), 6_000));
            let group = if reuse_first {
                vec![reuse, prune]
            } else {
                vec![prune, reuse]
            };
            let (batch, _) = to_batch(
                group,
                &mut HashMap::new(),
                |_| Ok(0),
                |k| Ok(tree.get(k)?.map(|v| v.to_vec())),
            )
            .expect("batch");
            tree.apply_batch(batch).expect("apply");
            let now = tree
                .get(b"k")
                .expect("get")
                .expect("the re-used key survives");
            assert_eq!(
                &now[..8],
                &9_000i64.to_be_bytes(),
                "reuse first: {reuse_first}"
            );
            tree.insert(b"k", stamped(1_000)).expect("reset");
        }
        // Alone, an expired key goes.
        let mut prune = Commit::new();
        prune.remove_if_older.push((b"k".to_vec(), 6_000));
        let (batch, _) = to_batch(
            [prune],
            &mut HashMap::new(),
            |_| Ok(0),
            |k| Ok(tree.get(k)?.map(|v| v.to_vec())),
        )
        .expect("batch");
        tree.apply_batch(batch).expect("apply");
        assert!(tree.get(b"k").expect("get").is_none());
    }
}
