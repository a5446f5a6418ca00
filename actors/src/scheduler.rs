//! The scheduler: runs work that is due because time passed, not because a request came in
//! (a streak period ending unsatisfied, a freeze being earned). Users file their next due
//! instant in the durable due index whenever they change; the scheduler takes everything due
//! up to "now" from the [`Clock`] and asks each user to advance. With the test clock,
//! `POST /admin/v1/test-clock` calls [`Scheduler::run_due`] before it answers, so everything
//! due by the new time has run (SPEC §11.2.3).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kudos_snapshots::{DueIndex, UserIndex};
use tokio_util::sync::CancellationToken;

use crate::catalog::CatalogService;
use crate::clock::Clock;
use crate::user::{Command, UserError};
use crate::user_shards::UserShards;

/// Due entries taken from the index per round.
const BATCH: usize = 256;

pub struct Scheduler {
    due: DueIndex,
    all_users: UserIndex,
    users: UserShards,
    catalog: Arc<CatalogService>,
    clock: Arc<dyn Clock>,
    /// One run at a time: the periodic tick and test-clock moves never interleave.
    running: tokio::sync::Mutex<()>,
}

impl Scheduler {
    pub fn new(
        due: DueIndex,
        all_users: UserIndex,
        users: UserShards,
        catalog: Arc<CatalogService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            due,
            all_users,
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
            for (due_ms, user_id) in batch {
                let catalog = self.catalog.get();
                // Evaluate at the due instant, so a clock move over several midnights steps
                // through each of them in order (the user files its next due time, which this
                // loop picks up again while it is not after `now`).
                let at = DateTime::<Utc>::from_timestamp_millis(due_ms);
                match self
                    .users
                    .execute(&user_id, Command::Advance { at }, &catalog)
                    .await
                {
                    Ok(_) | Err(UserError::NotFound) => ran += 1,
                    Err(e) => {
                        tracing::warn!(user = %user_id, error = %e, "scheduled evaluation failed; it runs again after the user's next change")
                    }
                }
            }
        }
    }

    /// Backfills achievements for every existing user (SPEC §4.4): each user who qualifies now
    /// completes them silently. Returns how many users were visited.
    pub async fn backfill(&self, achievement_ids: &[uuid::Uuid]) -> usize {
        let mut visited = 0;
        for id in self.all_users.ids() {
            let user = match id {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the user index; backfill stopped");
                    return visited;
                }
            };
            let catalog = self.catalog.get();
            for achievement_id in achievement_ids {
                let command = Command::Backfill {
                    achievement_id: *achievement_id,
                };
                if let Err(e) = self.users.execute(&user, command, &catalog).await {
                    tracing::warn!(user = %user, error = %e, "backfill failed for this user");
                }
            }
            visited += 1;
        }
        tracing::info!(
            users = visited,
            achievements = achievement_ids.len(),
            "backfill done"
        );
        visited
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Changed, NewMetric, StreakSettingsPatch, UnitType};
    use crate::clock::ManualClock;
    use crate::rules::profile::UserWrite;
    use crate::rules::streak::StreakEvent;
    use crate::supervisor::{RootSupervisor, SupervisorStats};
    use crate::user::{Effect, NewEvent, UserRecord};
    use crate::user_shards::ShardsConfig;
    use chrono::TimeZone;
    use kudos_snapshots::{Store, StreamId};
    use ractor::Actor;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_period_ending_unsatisfied_is_evaluated_and_journaled_without_any_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let start = Utc
            .with_ymd_and_hms(2030, 4, 2, 10, 0, 0)
            .single()
            .expect("valid");
        let manual = Arc::new(ManualClock::new(start));
        let clock: Arc<dyn Clock> = manual.clone();
        let (sup, _h) = Actor::spawn(None, RootSupervisor, Arc::new(SupervisorStats::default()))
            .await
            .expect("supervisor");
        let users = UserShards::new(
            store.clone(),
            clock.clone(),
            sup.get_cell(),
            ShardsConfig::default(),
        );
        let catalog = Arc::new(CatalogService::load(store.clone()).expect("catalog"));
        let metric = catalog
            .update(|c| {
                let (m, _) = c.create_metrics(
                    vec![Ok(NewMetric {
                        key: "m".into(),
                        name: "M".into(),
                        unit_type: UnitType::Number,
                        units: None,
                    })],
                    start,
                );
                c.update_streak_settings(StreakSettingsPatch {
                    metrics: Some(vec![("m".into(), 1.0)]),
                    ..Default::default()
                })
                .expect("settings");
                (
                    m[0].id,
                    vec![
                        Changed::Metric(m[0].clone()),
                        Changed::StreakSettings(c.streak.clone()),
                    ],
                )
            })
            .await
            .expect("update");
        let scheduler = Scheduler::new(
            store.due(),
            store.users(),
            users.clone(),
            catalog.clone(),
            clock,
        );
        let event = NewEvent {
            metric_id: metric,
            value: 1.0,
            user: UserWrite::default(),
            attributes: Default::default(),
            idempotency_key: None,
        };
        users
            .execute("u1", Command::RecordEvent(event), &catalog.get())
            .await
            .expect("event");
        assert_eq!(store.due().len(), 1, "the period end is filed");
        assert_eq!(scheduler.run_due(manual.now()).await, 0, "nothing due yet");

        let next_day_end = Utc
            .with_ymd_and_hms(2030, 4, 4, 0, 0, 0)
            .single()
            .expect("valid");
        manual.set(next_day_end).expect("forward");
        // Due at 04-03 00:00 (the streak is kept while 04-03 runs), then at 04-04 00:00 lost.
        assert!(scheduler.run_due(manual.now()).await >= 1);
        let records: Vec<(u64, UserRecord)> = store
            .journal()
            .tail(&StreamId::new("user", "u1"), 0)
            .expect("tail");
        let lost = records.iter().flat_map(|(_, r)| r.effects()).any(|e| {
            matches!(
                e,
                Effect::Streak {
                    event: StreakEvent::Lost { length: 1 },
                    ..
                }
            )
        });
        assert!(lost, "streak.lost journaled by the scheduler: {records:?}");
        assert!(store.due().is_empty(), "no streak left to watch");
    }
}
