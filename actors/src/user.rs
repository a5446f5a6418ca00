//! The [`UserActor`]: one per active user, serializing everything that happens to that user
//! (SPEC §0.8). It owns the user's [`UserState`]; each command is decided by the pure
//! [`decide`], applied, journaled (and fsynced) and only then answered. After each change it
//! files the user's next due instant (a streak period end, a freeze to earn) with the
//! scheduler's due index, in the same fsync as the record.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kudos_snapshots::{
    recovery, snapshot, Counters, DueIndex, Journal, Owners, StreamId, UserIndex,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;
use uuid::Uuid;

use crate::catalog::{Catalog, CatalogService};
use crate::clock::Clock;
use crate::rules::streak::{self, StreakEvent};
use crate::user_shards::Registry;
pub use crate::user_state::*;

/// A read-only query run inside the actor. It answers through its own channel; dropping it
/// unanswered tells the caller to retry elsewhere.
pub type ReadFn = Box<dyn FnOnce(&UserState) + Send>;

/// The counter holding an achievement's number of completions.
pub fn completions_counter(achievement_id: Uuid) -> String {
    format!("achievement/{achievement_id}/completions")
}

/// Messages of [`UserActor`].
// Each message is moved once into the mailbox; boxing the command would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum UserMsg {
    /// Decide, apply and journal a command; answers with its outcome.
    Execute {
        command: Command,
        reply: RpcReplyPort<Result<Outcome, UserError>>,
    },
    /// Run a read-only query against the current state.
    Read(ReadFn),
    /// Snapshot and stop if no message arrived for this long.
    PassivateIfIdle(Duration),
    /// Sent by a passivated actor to itself: every message queued before it has been
    /// answered ("passivated", so callers retry), and the actor can stop.
    Retire,
}

/// What a user actor needs from the rest of the system.
#[derive(Clone)]
pub struct UserDeps {
    pub journal: Journal,
    pub due: DueIndex,
    pub users: UserIndex,
    pub counters: Counters,
    pub owners: Owners,
    /// The configuration; read when a command is processed, so it is never older than the
    /// caller's view.
    pub catalog: Arc<CatalogService>,
    pub clock: Arc<dyn Clock>,
    pub registry: Weak<Registry>,
    /// Percentage (0–100) of new users placed in the control cohort (SPEC §2.5).
    pub control_ratio: u8,
}

pub struct UserActor;

/// Answers a message that reached an actor after it passivated: callers are told to retry
/// (they reach the user's next actor, which loads the snapshot written on passivation);
/// reads are dropped unanswered, which means the same to their caller.
fn refuse_after_passivation(myself: &ActorRef<UserMsg>, message: UserMsg) {
    match message {
        UserMsg::Execute { reply, .. } => {
            let _ = reply.send(Err(UserError::Passivated));
        }
        UserMsg::Read(_) | UserMsg::PassivateIfIdle(_) => {}
        UserMsg::Retire => myself.stop(Some("passivated".into())),
    }
}

pub struct UserActorArgs {
    pub user_id: String,
    pub deps: UserDeps,
}

pub struct UserActorState {
    user_id: String,
    stream: StreamId,
    deps: UserDeps,
    state: UserState,
    seq: u64,
    snapshot_seq: u64,
    /// The due-index entry this actor filed last (ms since the epoch).
    scheduled: Option<i64>,
    last_active: Instant,
    passivated: bool,
}

impl UserActorState {
    fn control_roll(&self) -> bool {
        self.deps.control_ratio > 0 && rand::random_range(0u8..100) < self.deps.control_ratio
    }

    /// Applies `record`, files the next due instant, journals the record with its effects and
    /// waits for the fsync. On a storage failure the caller stops the actor, which is then
    /// reloaded from disk: memory never keeps a change the journal lacks.
    async fn commit(
        &mut self,
        record: UserRecord,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Result<Journaled, kudos_snapshots::StoreError> {
        let effects = self.state.apply_collect(&record, Apply::Live(catalog));
        // Indexes first: they are covered by the same fsync as the record below.
        for e in &effects {
            match e {
                Effect::UserCreated { user_id } => self.deps.users.insert(user_id)?,
                Effect::AchievementCompleted { achievement_id, .. } => {
                    self.deps
                        .counters
                        .increment(&completions_counter(*achievement_id))?;
                }
                _ => {}
            }
        }
        if let UserRecord::PauseAdded { pause, .. } = &record {
            self.deps
                .owners
                .insert(&pause.id.to_string(), &self.user_id)?;
        }
        self.reschedule(catalog, now)?;
        let entry = Journaled { record, effects };
        let seq = self.seq + 1;
        self.deps.journal.append(&self.stream, seq, &entry).await?;
        self.seq = seq;
        if snapshot::due(self.snapshot_seq, self.seq) {
            self.snapshot()?;
        }
        Ok(entry)
    }

    /// Files the user's next due instant with the scheduler (if it changed).
    fn reschedule(
        &mut self,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Result<(), kudos_snapshots::StoreError> {
        let next = self
            .state
            .next_due(catalog, now)
            .map(|t| t.timestamp_millis());
        self.deps
            .due
            .reschedule(&self.user_id, self.scheduled, next)?;
        self.scheduled = next;
        Ok(())
    }

    fn snapshot(&mut self) -> Result<(), kudos_snapshots::StoreError> {
        if self.seq > self.snapshot_seq {
            self.deps
                .journal
                .write_snapshot(&self.stream, self.seq, &self.state)?;
            self.snapshot_seq = self.seq;
        }
        Ok(())
    }

    /// The caller's view of a command that was journaled as `entry`.
    fn outcome(
        &self,
        command: &Command,
        entry: Journaled,
        catalog: &Catalog,
        now: DateTime<Utc>,
        freezes_before: u32,
    ) -> Outcome {
        let state = &self.state;
        let Journaled { record, effects } = entry;
        match (command, record) {
            (Command::RecordEvent(_), UserRecord::Event(ev)) => {
                let extended = effects.iter().any(|e| {
                    matches!(
                        e,
                        Effect::Streak {
                            event: StreakEvent::Started { .. } | StreakEvent::Extended { .. },
                            ..
                        }
                    )
                });
                Outcome::Event(EventOutcome::Recorded {
                    total: state.total(ev.metric_id),
                    streak: streak::view(&state.streak, &ev.streak, now, state.time_zone()),
                    extended,
                    record: Box::new(ev),
                    effects,
                })
            }
            (Command::SetPreferences(_), _) => Outcome::Preferences(state.preferences.clone()),
            (Command::GrantFreezes { .. }, _) => Outcome::FreezesGranted {
                granted: state.streak.freezes.saturating_sub(freezes_before),
            },
            (_, UserRecord::PauseAdded { pause, .. }) => Outcome::PauseAdded(pause),
            (Command::RemovePause { .. }, _) => Outcome::PauseRemoved,
            (Command::RestoreStreak, _) => {
                Outcome::Restored(Some(state.streak_view(catalog, now).length))
            }
            (Command::ResetStreak, _) => Outcome::Reset,
            (Command::Advance { .. } | Command::Backfill { .. }, _) => Outcome::Advanced,
            (
                Command::CompleteAchievement { .. },
                UserRecord::ApiCompleted {
                    achievement_id,
                    completion_id,
                    at,
                    ..
                },
            ) => Outcome::Completed {
                achievement_id,
                completion: Completion { completion_id, at },
            },
            _ => state
                .profile
                .clone()
                .map_or(Outcome::Advanced, Outcome::Profile),
        }
    }
}

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = UserActorState;
    type Arguments = UserActorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: UserActorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let stream = StreamId::new("user", &args.user_id);
        let loaded = recovery::load::<UserState>(&args.deps.journal, &stream)?;
        if loaded.replayed > 0 {
            tracing::debug!(user = %args.user_id, replayed = loaded.replayed, "user recovered from journal tail");
        }
        Ok(UserActorState {
            user_id: args.user_id,
            stream,
            deps: args.deps,
            state: loaded.state,
            seq: loaded.seq,
            snapshot_seq: loaded.snapshot_seq,
            scheduled: None,
            last_active: Instant::now(),
            passivated: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if st.passivated {
            refuse_after_passivation(&myself, message);
            return Ok(());
        }
        if !matches!(message, UserMsg::PassivateIfIdle(_) | UserMsg::Retire) {
            st.last_active = Instant::now();
        }
        match message {
            UserMsg::Execute { command, reply } => {
                let catalog = st.deps.catalog.get();
                let now = st.deps.clock.now();
                let ctx = Context {
                    user_id: &st.user_id,
                    catalog: &catalog,
                    now,
                    new_id: Uuid::new_v4(),
                    control: st.control_roll(),
                };
                match decide(&st.state, &command, &ctx) {
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                    Ok(Decision::Answer(outcome)) => {
                        // A backfill that completes nothing may still make a future date due
                        // (an anniversary ahead): file it.
                        if matches!(command, Command::Backfill { .. }) {
                            if let Err(e) = st.reschedule(&catalog, now) {
                                let _ = reply.send(Err(UserError::Storage(e.to_string())));
                                return Err(e.into());
                            }
                        }
                        let _ = reply.send(Ok(outcome));
                    }
                    Ok(Decision::Record(record)) => {
                        let freezes_before = st.state.streak.freezes;
                        match st.commit(record, &catalog, now).await {
                            Ok(record) => {
                                let outcome =
                                    st.outcome(&command, record, &catalog, now, freezes_before);
                                let _ = reply.send(Ok(outcome));
                            }
                            Err(e) => {
                                let _ = reply.send(Err(UserError::Storage(e.to_string())));
                                return Err(e.into());
                            }
                        }
                    }
                }
            }
            UserMsg::Read(query) => query(&st.state),
            UserMsg::PassivateIfIdle(idle) => {
                if st.last_active.elapsed() < idle {
                    return Ok(());
                }
                st.snapshot()?;
                st.passivated = true;
                if let Some(registry) = st.deps.registry.upgrade() {
                    registry.remove_if(&st.user_id, myself.get_id());
                }
                // Callers that looked this actor up just before its removal have queued their
                // messages already; they are answered "passivated" (and retry) before Retire.
                let _ = myself.send_message(UserMsg::Retire);
            }
            // Only sent by a passivated actor to itself, so handled above.
            UserMsg::Retire => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Best effort: a stop (shutdown, passivation) folds the tail into a snapshot. If this
        // fails, the journal still holds everything.
        if let Err(e) = st.snapshot() {
            tracing::warn!(user = %st.user_id, error = %e, "snapshot on stop failed");
        }
        Ok(())
    }
}
