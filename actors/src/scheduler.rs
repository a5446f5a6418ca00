//! The scheduler: runs work that is due because time passed, not because a request came in
//! (a streak period ending unsatisfied, a freeze being earned). Users file their next due
//! instant in the durable due index whenever they change; the scheduler takes everything due
//! up to "now" from the [`Clock`] and asks each user to advance. With the test clock,
//! `POST /admin/v1/test-clock` calls [`Scheduler::run_due`] before it answers, so everything
//! due by the new time has run (SPEC §11.2.3).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kudos_snapshots::DueIndex;
use tokio_util::sync::CancellationToken;

use crate::catalog::CatalogService;
use crate::clock::Clock;
use crate::user::{Command, UserError};
use crate::user_shards::UserShards;

/// Due entries taken from the index per round.
const BATCH: usize = 256;

pub struct Scheduler {
    due: DueIndex,
    users: UserShards,
    catalog: Arc<CatalogService>,
    clock: Arc<dyn Clock>,
    /// One run at a time: the periodic tick and test-clock moves never interleave.
    running: tokio::sync::Mutex<()>,
}

impl Scheduler {
    pub fn new(
        due: DueIndex,
        users: UserShards,
        catalog: Arc<CatalogService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            due,
            users,
            catalog,
            clock,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs every job due at or before `now`, earliest first. Returns how many ran.
    pub async fn run_due(&self, now: DateTime<Utc>) -> usize {
        let _one_at_a_time = self.running.lock().await;
        let mut ran = 0;
        loop {
            let batch = match self.due.take_due(now.timestamp_millis(), BATCH) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the due index");
                    return ran;
                }
            };
            if batch.is_empty() {
                return ran;
            }
            for (_, user_id) in batch {
                let catalog = self.catalog.get();
                match self
                    .users
                    .execute(&user_id, Command::Advance, &catalog)
                    .await
                {
                    Ok(_) | Err(UserError::NotFound) => ran += 1,
                    Err(e) => {
                        tracing::warn!(user = %user_id, error = %e, "scheduled streak evaluation failed; it runs again on the user's next request")
                    }
                }
            }
        }
    }

    /// Runs due work every `every` until `shutdown`, skipping ticks while `ready` is false
    /// (start-up recovery must finish before users are touched).
    pub fn spawn(
        self: &Arc<Self>,
        every: Duration,
        ready: impl Fn() -> bool + Send + 'static,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if !ready() {
                            continue;
                        }
                        let ran = this.run_due(this.clock.now()).await;
                        if ran > 0 {
                            tracing::debug!(ran, "scheduled work done");
                        }
                    }
                }
            }
        })
    }
}
