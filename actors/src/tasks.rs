//! Supervised background loops: the scheduler tick, the passivator, background jobs,
//! idempotency pruning and effect consumers all run through [`Background::supervise`].
//!
//! A loop that returns an error or panics is logged and started again after a backoff
//! (100 ms doubling up to 30 s, back to 100 ms once a run lasted a minute), so one bad tick
//! cannot silently stop due work. A loop that returns `Ok` is finished (a job that completed
//! every item, or a loop that saw the shutdown token). Shutdown cancels the token and waits
//! for every loop through one `TaskTracker`.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that lasted this long counts as healthy: the next failure backs off from the start.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The set of supervised background loops (cheap to clone).
#[derive(Clone)]
pub struct Background {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Every task started, so that `stop` can abort the ones that outlive its timeout (they
    /// hold the store, which must be released for the data directory to be reopened).
    aborts: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Background {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            shutdown,
            aborts: Default::default(),
        }
    }

    fn remember(&self, handle: tokio::task::AbortHandle) {
        let mut aborts = self.aborts.lock().unwrap_or_else(|e| e.into_inner());
        aborts.retain(|h| !h.is_finished());
        aborts.push(handle);
    }

    /// The token every loop watches.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Runs `make()` until it returns `Ok` or shutdown, restarting it with backoff when it
    /// fails or panics.
    pub fn supervise<F, Fut>(&self, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        let this = self.clone();
        let supervisor = self.tracker.spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let started = tokio::time::Instant::now();
                // Bodies watch the shutdown token themselves and return `Ok` when it fires;
                // `stop` bounds the wait for one that does not.
                let body = this.tracker.spawn(make());
                this.remember(body.abort_handle());
                let result = body.await;
                match result {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => tracing::error!(task = name, error = %e, "background task failed; restarting"),
                    Err(e) if e.is_panic() => tracing::error!(task = name, error = %e, "background task panicked; restarting"),
                    Err(_) => return,
                }
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = FIRST_BACKOFF;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        self.remember(supervisor.abort_handle());
    }

    /// Cancels every loop and waits up to `timeout` for them to finish; the ones still
    /// running then are aborted (a job resumes from its record at the next start).
    pub async fn stop(&self, timeout: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time; aborting them");
            for h in self
                .aborts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                h.abort();
            }
            self.tracker.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_failing_or_panicking_task_is_restarted_until_it_succeeds() {
        let bg = Background::new(CancellationToken::new());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        bg.supervise("flaky", move || {
            let r = r.clone();
            async move {
                match r.fetch_add(1, Ordering::SeqCst) {
                    0 => Err("first run fails".to_string()),
                    1 => panic!("second run panics"),
                    _ => Ok(()),
                }
            }
        });
        bg.tracker.close();
        tokio::time::timeout(Duration::from_secs(60), bg.tracker.wait())
            .await
            .expect("the task finished after its restarts");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_ignores_shutdown_is_aborted_after_the_timeout() {
        let bg = Background::new(CancellationToken::new());
        bg.supervise("stubborn", || async {
            std::future::pending::<()>().await;
            Ok(())
        });
        tokio::task::yield_now().await;
        bg.stop(Duration::from_secs(2)).await;
        assert!(bg.tracker.is_empty(), "aborted and gone");
    }

    #[tokio::test(start_paused = true)]
    async fn stop_cancels_loops_and_waits_for_them() {
        let bg = Background::new(CancellationToken::new());
        let token = bg.shutdown().clone();
        let stopped = Arc::new(AtomicU32::new(0));
        let s = stopped.clone();
        bg.supervise("loop", move || {
            let (token, s) = (token.clone(), s.clone());
            async move {
                token.cancelled().await;
                s.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
        tokio::task::yield_now().await;
        bg.stop(Duration::from_secs(5)).await;
        assert!(bg.tracker.is_empty());
        assert_eq!(
            stopped.load(Ordering::SeqCst),
            1,
            "the body saw the token and returned"
        );
    }
}
