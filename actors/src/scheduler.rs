//! The scheduler: runs work that is due because time passed, not because a request came in
//! (a streak period ending unsatisfied, a freeze being earned, an anniversary), and the
//! background jobs that visit every user (achievement backfills, re-filing due dates after a
//! settings change).
//!
//! Users file their next due instant in the durable due index whenever they change. An entry
//! is removed only after the user has advanced past it, so an interrupted run (shutdown,
//! crash, a dropped request) leaves it for the next run. Jobs are recorded in the meta tree
//! before they start (in the same fsync as the admin change that caused them) and removed when
//! done, so a restart resumes them; every job is idempotent.
//!
//! Under the test clock, `POST /admin/v1/test-clock` runs [`Scheduler::run_due`] before it
//! answers, and each user is evaluated at the instant it was due, so a move over several
//! midnights steps through them in order (SPEC §11.2.3). Under the system clock, overdue work
//! (after downtime) is evaluated at "now" as one catch-up (SPEC §5.5.2).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kudos_snapshots::{Commit, DueIndex, DueKind, DueTarget, Scope, Store, StreamKind};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::Clock;
use crate::space::Spaces;
use crate::tasks::Background;
use crate::user::{Command, UserError};

/// Due entries read from the index per round.
const BATCH: usize = 256;
/// A failed evaluation is retried this much later.
const RETRY_MS: i64 = 60_000;
/// First pause before a job visits its failed users again, and the longest one.
const JOB_RETRY_FIRST: Duration = Duration::from_secs(60);
const JOB_RETRY_MAX: Duration = Duration::from_secs(3600);
/// Prefix of job records in the meta tree, after the scope's prefix.
pub const JOB_PREFIX: &str = "job/";

/// A background job that visits every user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Complete these achievements silently for every user who qualifies (SPEC §4.4).
    Backfill(Vec<Uuid>),
    /// Let every user recompute and file its next due instant (freeze auto-earn changed).
    Refile,
    /// [`Job::Refile`] for these users only (a boost was created for them).
    RefileUsers(Vec<String>),
    /// Place every user's activity from before `until` on a board activated then (SPEC
    /// §7.5.3).
    SeedBoard {
        board_id: Uuid,
        until: DateTime<Utc>,
    },
}

impl Job {
    /// The meta key and value that record a new job of `scope`.
    pub fn record(&self, scope: Scope) -> (String, Option<serde_json::Value>) {
        (
            format!("{}{JOB_PREFIX}{}", scope.meta_prefix(), Uuid::new_v4()),
            serde_json::to_value(self).ok(),
        )
    }
}

/// What became of one due entry.
enum Handled {
    /// The work ran; the handler moved the entry itself (or it is removed now).
    Done,
    /// The work failed; try again later.
    Retry,
}

pub struct Scheduler {
    due: DueIndex,
    store: Store,
    spaces: Spaces,
    clock: Arc<dyn Clock>,
    background: Background,
    /// One run at a time: the periodic tick and test-clock moves never interleave.
    running: tokio::sync::Mutex<()>,
}

impl Scheduler {
    /// Due entries and jobs of every scope, each run in its own space.
    pub fn new(spaces: Spaces, background: Background) -> Self {
        Self {
            due: spaces.store().due(),
            store: spaces.store().clone(),
            clock: spaces.clock().clone(),
            spaces,
            background,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs the work of one due entry, by kind. Later features add a kind here.
    async fn handle(&self, target: &DueTarget, at: Option<DateTime<Utc>>) -> Handled {
        let space = match self.spaces.get(target.stream.scope) {
            Ok(space) => space,
            Err(e) => {
                tracing::warn!(stream = %target.stream, error = %e, "cannot open the scope of due work; retrying in a minute");
                return Handled::Retry;
            }
        };
        match target.kind {
            DueKind::UserPeriodEnd => {
                match space
                    .users
                    .execute(&target.stream.id, Command::Advance { at })
                    .await
                {
                    Ok(_) | Err(UserError::NotFound) => Handled::Done,
                    Err(e) => {
                        tracing::warn!(user = %target.stream.id, error = %e, "scheduled evaluation failed; retrying in a minute");
                        Handled::Retry
                    }
                }
            }
            DueKind::LeaderboardRunBoundary => {
                let Some(board) = crate::leaderboard::state::board_of(&target.stream) else {
                    tracing::warn!(stream = %target.stream, "a run boundary for no board; dropping it");
                    return Handled::Done;
                };
                match space.boards.announce(board, at).await {
                    Ok(_) => Handled::Done,
                    Err(e) => {
                        tracing::warn!(%board, error = %e, "leaderboard run announcements failed; retrying in a minute");
                        Handled::Retry
                    }
                }
            }
            DueKind::BoostWindow => match space.boosts.run(at).await {
                Ok(_) => Handled::Done,
                Err(e) => {
                    tracing::warn!(error = %e, "boost announcements failed; retrying in a minute");
                    Handled::Retry
                }
            },
            other => {
                tracing::warn!(kind = ?other, stream = %target.stream, "no handler for this kind of due work yet; retrying later");
                Handled::Retry
            }
        }
    }

    /// Runs every job due at or before `now`, earliest first. Returns how many ran, or the
    /// storage error that stopped the run (the entries left are run next time).
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<usize, kudos_snapshots::StoreError> {
        let _one_at_a_time = self.running.lock().await;
        let stepwise = self.clock.as_manual().is_some();
        let now_ms = now.timestamp_millis();
        let mut ran = 0;
        loop {
            let batch = self.due.due_before(now_ms, BATCH)?;
            if batch.is_empty() {
                return Ok(ran);
            }
            for (due_ms, target) in batch {
                let at = if stepwise {
                    DateTime::<Utc>::from_timestamp_millis(due_ms)
                } else {
                    None
                };
                let handled = self.handle(&target, at).await;
                // The handler's own commit moves its entry; one still filed at this instant
                // is removed (done) or moved a minute on (retry), so a run always ends.
                if self.due.contains(&target, due_ms)? {
                    let mut c = Commit::new();
                    let next = match handled {
                        Handled::Done => None,
                        Handled::Retry => Some(now_ms.max(due_ms) + RETRY_MS),
                    };
                    c.due(&target, Some(due_ms), next);
                    self.store.commit(c).await?;
                }
                ran += 1;
            }
        }
    }

    /// Records `job` durably and runs it in the background.
    pub async fn start_job(
        self: &Arc<Self>,
        scope: Scope,
        job: Job,
    ) -> Result<(), kudos_snapshots::StoreError> {
        let (key, value) = job.record(scope);
        self.store.meta_commit(vec![(key.clone(), value)]).await?;
        self.spawn_job(key, job);
        Ok(())
    }

    /// Runs an already recorded job, supervised, until every user succeeded; then removes
    /// its record. Users that failed are visited again after a pause (1 min, doubling up to
    /// 1 h), the others are not; a pass that could not walk the user index runs again whole.
    /// Jobs are idempotent, and a restart resumes a job from its record.
    pub fn spawn_job(self: &Arc<Self>, key: String, job: Job) {
        let this = self.clone();
        self.background.supervise("job", move || {
            let (this, key, job) = (this.clone(), key.clone(), job.clone());
            async move {
                let shutdown = this.background.shutdown().clone();
                let mut only: Option<Vec<String>> = None;
                let mut pause = JOB_RETRY_FIRST;
                loop {
                    let report = this.run_job(&key, &job, only.as_deref(), &shutdown).await;
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    if report.failed.is_empty() && !report.incomplete {
                        break;
                    }
                    tracing::warn!(
                        failed = report.failed.len(),
                        incomplete = report.incomplete,
                        users = report.visited,
                        job = ?job,
                        retry_in_s = pause.as_secs(),
                        "background job not done; retrying what failed"
                    );
                    only = (!report.incomplete).then_some(report.failed);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                    pause = (pause * 2).min(JOB_RETRY_MAX);
                }
                this.store
                    .meta_commit(vec![(key.clone(), None)])
                    .await
                    .map_err(|e| format!("cannot remove a finished job: {e}"))
            }
        });
    }

    /// Runs a small job (a few listed users) before returning, so its effect is visible to
    /// the caller's next request; what fails is retried in the background like any job.
    /// The job's record (written with the change that caused it) is removed when done, and
    /// resumes it after a crash.
    pub async fn run_job_now(self: &Arc<Self>, key: String, job: Job) {
        let shutdown = self.background.shutdown().clone();
        let report = self.run_job(&key, &job, None, &shutdown).await;
        if !report.failed.is_empty() || report.incomplete {
            self.spawn_job(key, job);
            return;
        }
        if let Err(e) = self.store.meta_commit(vec![(key, None)]).await {
            tracing::warn!(error = %e, "cannot remove a finished job record; it will run again after a restart");
        }
    }

    /// Resumes the jobs recorded before a restart, in every open space (start-up opens every
    /// environment and tenant first).
    pub fn resume_jobs(self: &Arc<Self>) -> Result<usize, kudos_snapshots::StoreError> {
        let mut keys: Vec<String> = Vec::new();
        for space in self.spaces.all() {
            let prefix = format!("{}{JOB_PREFIX}", space.scope.meta_prefix());
            keys.extend(self.store.meta_keys(&prefix)?);
        }
        let mut resumed = 0;
        for key in keys {
            if let Some(job) = self.store.meta_get::<Job>(&key)? {
                tracing::info!(job = ?job, "resuming background job");
                self.spawn_job(key, job);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Visits every existing user of the job's scope (or only `only`) with the job's
    /// command, until done or `shutdown`. `key` is the job's record, under its scope.
    pub async fn run_job(
        &self,
        key: &str,
        job: &Job,
        only: Option<&[String]>,
        shutdown: &CancellationToken,
    ) -> JobReport {
        let commands: Vec<Command> = match job {
            Job::Backfill(ids) => ids
                .iter()
                .map(|achievement_id| Command::Backfill {
                    achievement_id: *achievement_id,
                })
                .collect(),
            Job::Refile | Job::RefileUsers(_) => vec![Command::Advance { at: None }],
            Job::SeedBoard { board_id, until } => vec![Command::SeedBoard {
                board_id: *board_id,
                until: *until,
            }],
        };
        let mut report = JobReport::default();
        let space = match Scope::of_meta_key(key).map(|scope| self.spaces.get(scope)) {
            Some(Ok(space)) => space,
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot open the job's scope; job stopped");
                report.incomplete = true;
                return report;
            }
            None => {
                tracing::error!(key, "a job record outside any scope; it never runs");
                return report;
            }
        };
        let indexes = self.store.indexes();
        let users: Box<
            dyn Iterator<Item = Result<String, kudos_snapshots::StoreError>> + Send + '_,
        > = match (only, job) {
            (Some(ids), _) => Box::new(ids.iter().cloned().map(Ok)),
            (None, Job::RefileUsers(ids)) => Box::new(ids.iter().cloned().map(Ok)),
            (None, _) => Box::new(indexes.members(StreamKind::User, space.scope)),
        };
        for id in users {
            if shutdown.is_cancelled() {
                return report;
            }
            let user = match id {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the user index; job stopped");
                    // Everything not visited yet is retried: the whole job again.
                    report.failed = Vec::new();
                    report.incomplete = true;
                    return report;
                }
            };
            let mut ok = true;
            for command in &commands {
                if let Err(e) = space.users.execute(&user, command.clone()).await {
                    tracing::warn!(user = %user, error = %e, "background job failed for this user");
                    ok = false;
                }
            }
            report.visited += 1;
            if !ok {
                report.failed.push(user);
            }
        }
        tracing::info!(users = report.visited, failed = report.failed.len(), job = ?job, "background job pass done");
        report
    }

    /// Runs due work every `every` until `shutdown`, skipping ticks while `ready` is false
    /// (start-up must finish before users are touched).
    pub async fn tick_loop(
        &self,
        every: Duration,
        ready: impl Fn() -> bool,
        shutdown: CancellationToken,
    ) -> Result<(), String> {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    if !ready() {
                        continue;
                    }
                    let ran = self.run_due(self.clock.now()).await.map_err(|e| e.to_string())?;
                    if ran > 0 {
                        tracing::debug!(ran, "scheduled work done");
                    }
                }
            }
        }
    }
}

/// How a job pass went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub visited: usize,
    /// Users whose command failed (visited again later).
    pub failed: Vec<String>,
    /// The pass could not walk every user (storage error): the job must run again whole.
    pub incomplete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Changed, StreakSettingsPatch};
    use crate::clock::ManualClock;
    use crate::rules::profile::UserWrite;
    use crate::rules::streak::StreakEvent;
    use crate::user::{Effect, Journaled, NewEvent};
    use crate::user_shards::ShardsConfig;
    use chrono::TimeZone;
    use kudos_snapshots::{Store, StreamId};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_period_ending_unsatisfied_is_evaluated_and_journaled_without_any_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Default::default()).expect("open");
        let start = Utc
            .with_ymd_and_hms(2030, 4, 2, 10, 0, 0)
            .single()
            .expect("valid");
        let manual = Arc::new(ManualClock::new(start));
        let clock: Arc<dyn Clock> = manual.clone();
        let (_, metric) = crate::testing::catalog_with_metric(&store, "m", start, true).await;
        let background = Background::new(CancellationToken::new());
        let spaces = Spaces::new(crate::space::SpaceDeps {
            store: store.clone(),
            clock: clock.clone(),
            supervisor: crate::testing::supervisor().await,
            bus: crate::effects::EffectBus::new(Vec::new()),
            shards: ShardsConfig::default(),
            background: background.clone(),
        });
        let space = spaces.get(kudos_snapshots::Scope::DEFAULT).expect("space");
        let (users, catalog) = (space.users.clone(), space.catalog.clone());
        let scheduler = Scheduler::new(spaces, background.clone());
        let event = NewEvent {
            metric_id: metric,
            value: 1.0,
            user: UserWrite::default(),
            attributes: Default::default(),
            idempotency_key: None,
        };
        users
            .execute("u1", Command::RecordEvent(event))
            .await
            .expect("event");
        assert_eq!(
            store.due().all().expect("due").len(),
            1,
            "the period end is filed"
        );
        assert_eq!(
            scheduler.run_due(manual.now()).await.expect("run"),
            0,
            "nothing due yet"
        );

        let next_day_end = Utc
            .with_ymd_and_hms(2030, 4, 4, 0, 0, 0)
            .single()
            .expect("valid");
        manual.set(next_day_end).expect("forward");
        // Due at 04-03 00:00 (the streak is kept while 04-03 runs), then at 04-04 00:00 lost.
        assert!(scheduler.run_due(manual.now()).await.expect("run") >= 1);
        let records: Vec<(u64, Journaled)> = store
            .journal()
            .tail(&StreamId::user(kudos_snapshots::Scope::DEFAULT, "u1"), 0)
            .expect("tail");
        let lost = records.iter().flat_map(|(_, r)| &r.effects).any(|e| {
            matches!(
                e,
                Effect::Streak {
                    event: StreakEvent::Lost { length: 1 },
                    ..
                }
            )
        });
        assert!(lost, "streak.lost journaled by the scheduler: {records:?}");
        assert!(
            store.due().all().expect("due").is_empty(),
            "no streak left to watch"
        );

        // A recorded job runs after a restart (here: resumed by hand) and removes its record;
        // a refile lets users file due instants again.
        catalog
            .update(|c| {
                c.update_streak_settings(StreakSettingsPatch {
                    freezes: Some(Some(crate::catalog::FreezesPatch {
                        max_count: Some(5),
                        auto_earn_interval: Some(Some(1)),
                        auto_earn_amount: Some(Some(1)),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .expect("settings");
                ((), vec![Changed::StreakSettings(c.streak.clone())])
            })
            .await
            .expect("update");
        let (key, value) = Job::Refile.record(kudos_snapshots::Scope::DEFAULT);
        store
            .meta_commit(vec![(key, value)])
            .await
            .expect("record job");
        let scheduler = Arc::new(scheduler);
        assert_eq!(scheduler.resume_jobs().expect("resume"), 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !store
            .meta_keys(&format!(
                "{}{JOB_PREFIX}",
                kudos_snapshots::Scope::DEFAULT.meta_prefix()
            ))
            .expect("keys")
            .is_empty()
        {
            assert!(tokio::time::Instant::now() < deadline, "job did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            store.due().all().expect("due").len(),
            1,
            "the next auto-earn date is filed"
        );
    }
}
