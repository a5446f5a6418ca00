//! Group commit: callers ask for durability, one dedicated thread runs fsyncs, and each
//! fsync satisfies every request made before it started. Concurrent writers share fsyncs:
//! while one flush runs, later writes pile up and are all covered by the next one. That is
//! what makes per-request durability affordable (one fsync costs ~200 µs here; one flush per
//! write caps out at a few thousand writes per second). A plain OS thread (rather than a
//! tokio task handing each flush to the blocking pool) keeps one wake-up per flush.
//!
//! A failed fsync (disk full, I/O error) fails every request it would have covered, at once,
//! and marks the store unhealthy: later requests fail immediately instead of queueing. sled
//! refuses every write after an I/O error until the database is reopened, so the store stays
//! unhealthy until the process restarts; nothing acknowledged before the failure is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::{Result, StoreError};

/// How far the flusher got: tickets up to `done` are durable, tickets up to `failed` (and
/// above `done`) were covered by a flush that failed.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    done: u64,
    failed: u64,
}

pub struct Durability {
    /// Tickets handed out so far; a ticket is taken after the caller's write.
    requested: AtomicU64,
    progress: watch::Sender<Progress>,
    /// Set when there is work; the flusher sleeps on the condition variable otherwise.
    pending: Mutex<bool>,
    wake: std::sync::Condvar,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    failures: AtomicU64,
    healthy: AtomicBool,
    last_error: Mutex<Option<String>>,
    stopping: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Durability {
    pub(crate) fn start(
        flush: impl FnMut() -> std::result::Result<(), sled::Error> + Send + 'static,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            requested: AtomicU64::new(0),
            progress: watch::Sender::new(Progress::default()),
            pending: Mutex::new(false),
            wake: std::sync::Condvar::new(),
            fsyncs: AtomicU64::new(0),
            fsync_nanos: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            last_error: Mutex::new(None),
            stopping: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let weak = Arc::downgrade(&this);
        let thread = std::thread::Builder::new()
            .name("kudos-fsync".into())
            .spawn(move || flusher(weak, flush));
        match thread {
            Ok(handle) => *this.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the fsync thread; writes will fail");
                this.mark_failed(format!("cannot start the fsync thread: {e}"));
            }
        }
        this
    }

    fn signal(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_one();
    }

    fn mark_failed(&self, error: String) {
        self.healthy.store(false, Ordering::SeqCst);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// Records a failed write (not an fsync) so that the store reports unhealthy too.
    pub(crate) fn write_failed(&self, error: &sled::Error) {
        if self.healthy.swap(false, Ordering::SeqCst) {
            tracing::error!(error = %error, "storage write failed; answering 503 until restarted");
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
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

    fn unavailable(&self) -> StoreError {
        StoreError::Unavailable(
            self.last_error()
                .unwrap_or_else(|| "storage is unavailable".into()),
        )
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

    /// Returns once everything written before this call is fsynced, or fails (503 at the
    /// edge) if that fsync failed or the store is already known to be broken.
    pub async fn wait(&self) -> Result<()> {
        if !self.healthy() {
            return Err(self.unavailable());
        }
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.signal();
        let mut rx = self.progress.subscribe();
        let outcome = rx
            .wait_for(|p| p.done >= ticket || p.failed >= ticket)
            .await
            .map(|p| p.done >= ticket)
            .map_err(|_| StoreError::FlusherStopped)?;
        if outcome {
            Ok(())
        } else {
            Err(self.unavailable())
        }
    }

    /// Number of fsyncs run so far (group commit makes this far smaller than the write count).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Total time spent in fsyncs.
    pub fn fsync_seconds(&self) -> f64 {
        self.fsync_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Failed fsyncs so far.
    pub fn failure_count(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

fn flusher(
    weak: Weak<Durability>,
    mut flush: impl FnMut() -> std::result::Result<(), sled::Error>,
) {
    loop {
        let Some(this) = weak.upgrade() else { return };
        let target = this.requested.load(Ordering::SeqCst);
        let covered = {
            let p = *this.progress.borrow();
            p.done.max(p.failed)
        };
        if target <= covered {
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
        let result = if crate::failpoint::hit("fsync_error") {
            Err(sled::Error::Io(std::io::Error::other(
                "injected fsync failure",
            )))
        } else {
            flush()
        };
        match result {
            Ok(_) => {
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                this.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
                this.fsyncs.fetch_add(1, Ordering::Relaxed);
                this.progress.send_modify(|p| p.done = p.done.max(target));
            }
            Err(err) => {
                this.failures.fetch_add(1, Ordering::Relaxed);
                if this.healthy() {
                    tracing::error!(error = %err, "journal fsync failed; failing waiting requests and answering 503 until restarted");
                }
                this.mark_failed(format!("journal fsync failed: {err}"));
                // Everyone waiting on this flush is told now; nobody waits for a retry.
                this.progress
                    .send_modify(|p| p.failed = p.failed.max(target));
                drop(this);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[tokio::test]
    async fn a_failed_fsync_fails_its_waiters_and_every_later_write_at_once() {
        let fail = Arc::new(AtomicBool::new(false));
        let f = fail.clone();
        let d = Durability::start(move || {
            if f.load(Ordering::SeqCst) {
                Err(sled::Error::Io(std::io::Error::other("disk full")))
            } else {
                Ok(())
            }
        });
        d.wait().await.expect("a working fsync acknowledges");
        assert!(d.healthy());
        fail.store(true, Ordering::SeqCst);
        let r = d.wait().await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(!d.healthy());
        assert!(d.last_error().expect("error kept").contains("disk full"));
        assert!(d.failure_count() >= 1);
        // Known broken: later writes fail without queueing, even if the disk recovered.
        fail.store(false, Ordering::SeqCst);
        assert!(matches!(d.wait().await, Err(StoreError::Unavailable(_))));
        d.stop().await;
    }
}
