//! The [`UserActor`]: one per active user, serializing everything that happens to that user
//! (SPEC §0.8). It owns the user's [`UserState`]; each command is decided by the pure
//! [`decide`], applied, and committed with every row it implies (index entries, counters,
//! its next due instant, its idempotency key, inbox rows for effect consumers) as one atomic
//! batch, fsynced, and only then answered and published on the effect bus.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kudos_snapshots::{
    recovery, snapshot, Commit, DueKind, DueTarget, Scope, Store, StoreError, StreamId,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;
use uuid::Uuid;

use super::*;
use crate::catalog::{Catalog, CatalogService};
use crate::clock::Clock;
use crate::effects::{EffectBus, Published};
use crate::rules::streak::{self, StreakEvent};
use crate::user_shards::Registry;

/// The counter holding an achievement's number of completions.
pub fn completions_counter(achievement_id: Uuid) -> String {
    format!("achievement/{achievement_id}/completions")
}

/// The counter of users whose total in `system_id` is exactly `total` (non-zero totals
/// only; users at 0 are the rest of the users counter). Zero-padded so that a prefix scan
/// reads the distribution in ascending order.
pub fn points_total_counter(system_id: Uuid, total: i64) -> String {
    format!("{}{total:020}", points_totals_prefix(system_id))
}

/// The prefix of [`points_total_counter`] names of one system.
pub fn points_totals_prefix(system_id: Uuid) -> String {
    format!("points/{system_id}/total/")
}

/// The counter holding the number of users ever created in a scope.
pub const USERS_COUNTER: &str = "users";

/// Messages of [`UserActor`].
// Each message is moved once into the mailbox; boxing the command would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum UserMsg {
    /// Decide, apply and journal a command; answers with its outcome.
    Execute {
        command: Command,
        reply: RpcReplyPort<Result<Outcome, UserError>>,
    },
    /// Answer a typed query from the current state (it carries its own reply channel).
    Query(Box<dyn PendingQuery>),
    /// Snapshot and stop if no message arrived for this long.
    PassivateIfIdle(Duration),
}

/// What a user actor needs from the rest of the system.
#[derive(Clone)]
pub struct UserDeps {
    pub store: Store,
    pub scope: Scope,
    /// The configuration; read when a command is processed, so it is never older than the
    /// caller's view.
    pub catalog: Arc<CatalogService>,
    pub clock: Arc<dyn Clock>,
    pub registry: Weak<Registry>,
    /// Where committed effects are published, and which consumers get inbox rows.
    pub bus: EffectBus,
    /// How long an idempotency key is remembered (`None`: forever, SPEC §1.5.3).
    pub idempotency_window: Option<Duration>,
}

pub struct UserActor;

/// Answers a message that was queued before the actor passivated: callers are told to retry
/// (they wait for this actor to stop, then reach the user's next actor, which loads the
/// snapshot written on passivation); reads are dropped unanswered, which means the same to
/// their caller. Messages sent after passivation are refused by the mailbox itself.
fn refuse_after_passivation(message: UserMsg) {
    match message {
        UserMsg::Execute { reply, .. } => {
            let _ = reply.send(Err(UserError::Passivated));
        }
        UserMsg::Query(_) | UserMsg::PassivateIfIdle(_) => {}
    }
}

pub struct UserActorArgs {
    pub user_id: String,
    pub deps: UserDeps,
}

pub struct UserActorState {
    user_id: String,
    stream: StreamId,
    due_target: DueTarget,
    deps: UserDeps,
    state: UserState,
    seq: u64,
    snapshot_seq: u64,
    last_active: Instant,
    passivated: bool,
    /// Memory holds a change that is not durable (its commit failed): never snapshot it.
    dirty: bool,
}

impl UserActorState {
    /// Whether a user created now joins the control cohort (SPEC §2.5).
    fn control_roll(catalog: &Catalog) -> bool {
        let ratio = catalog.settings.experimentation.control_ratio;
        ratio > 0 && rand::random_range(0u8..100) < ratio
    }

    /// The idempotency keys `command` mentions that were used before (inside the window).
    fn seen_keys(&self, command: &Command, now: DateTime<Utc>) -> Result<SeenKeys, StoreError> {
        let events: &[NewEvent] = match command {
            Command::RecordEvent(ev) => std::slice::from_ref(ev),
            Command::CheckEvents(evs) => evs,
            _ => &[],
        };
        let mut seen = SeenKeys::new();
        if let Command::SeedBoard { board_id, .. } = command {
            if let Some((_, value)) = self
                .deps
                .store
                .indexes()
                .idempotency(&self.stream, &idempotency_slot(*board_id, SEED_KEY))?
            {
                seen.insert(
                    (*board_id, SEED_KEY.to_string()),
                    Uuid::from_slice(&value).unwrap_or_default(),
                );
            }
        }
        for ev in events {
            let Some(key) = &ev.idempotency_key else {
                continue;
            };
            if let Some(event_id) = lookup_idempotency(
                &self.deps.store,
                &self.stream,
                ev.metric_id,
                key,
                self.deps.idempotency_window,
                now,
            )? {
                seen.insert((ev.metric_id, key.clone()), event_id);
            }
        }
        Ok(seen)
    }

    /// Applies `record` and commits it with every row it implies (index, counters, due
    /// entry, idempotency key, inbox rows, and every 32 records the snapshot) as one atomic
    /// batch, waits for the fsync, then publishes its effects. On a storage failure the
    /// caller stops the actor, which is then reloaded from disk: memory never keeps a change
    /// the journal lacks.
    async fn commit(
        &mut self,
        record: UserRecord,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Result<Journaled, StoreError> {
        let effects = self.state.apply_collect(&record, Apply::Live(catalog));
        self.dirty = true;
        let filed = self.state.filed_due;
        // As of the record's own time: a scheduled record run at its due instant after the
        // test clock jumped finds what comes due next from there, not from the jump's end
        // (a streak reminder between the two would otherwise be judged too late).
        let as_of = record.at().map_or(now, |t| t.min(now));
        let next = self
            .state
            .next_due(catalog, as_of)
            .map(|t| t.timestamp_millis());
        let seq = self.seq + 1;
        let scope = self.deps.scope;
        let mut c = Commit::new();
        for e in &effects {
            match e {
                Effect::UserCreated { .. } => {
                    c.member(&self.stream);
                    c.count(scope, USERS_COUNTER, 1);
                }
                Effect::AchievementCompleted { achievement_id, .. } => {
                    c.count(scope, &completions_counter(*achievement_id), 1);
                }
                _ => {}
            }
        }
        // The distribution of totals per system moves from the total before the record's
        // first award to the total after its last (awards carry both).
        let mut moved: Vec<(Uuid, i64, i64)> = Vec::new();
        for e in &effects {
            if let Effect::PointsAwarded {
                system_id, award, ..
            } = e
            {
                match moved.iter_mut().find(|(id, _, _)| id == system_id) {
                    Some(m) => m.2 = award.total,
                    None => moved.push((*system_id, award.total - award.awarded, award.total)),
                }
            }
        }
        for (system_id, before, after) in moved {
            if before != 0 {
                c.count(scope, &points_total_counter(system_id, before), -1);
            }
            if after != 0 {
                c.count(scope, &points_total_counter(system_id, after), 1);
            }
        }
        // Wrapped's distributions: the user moves from their change before the record to
        // the one after, in every week, month and year it touched (as the apply moved them).
        let moved = std::mem::take(&mut self.state.wrapped.last_moves.0);
        for (counter, delta) in wrapped::distribution_moves(&moved) {
            c.count(scope, &counter, delta);
        }
        match &record {
            UserRecord::PauseAdded { pause, .. } => {
                c.owner(scope, &pause.id.to_string(), &self.stream);
            }
            UserRecord::BoardSeeded { board_id, .. } => {
                // Seeded once per board, forever: a job that runs again skips this user.
                c.idempotency(
                    &self.stream,
                    &idempotency_slot(*board_id, SEED_KEY),
                    Uuid::nil().as_bytes(),
                    now.timestamp_millis(),
                    false,
                );
            }
            UserRecord::Event(ev) => {
                if let Some(key) = &ev.idempotency_key {
                    c.idempotency(
                        &self.stream,
                        &idempotency_slot(ev.metric_id, key),
                        ev.event_id.as_bytes(),
                        now.timestamp_millis(),
                        self.deps.idempotency_window.is_some(),
                    );
                }
            }
            _ => {}
        }
        c.due(&self.due_target, filed, next);
        // Internal bookkeeping (accumulator moves) is journaled but never delivered.
        let delivered: Vec<&Effect> = effects.iter().filter(|e| !e.is_internal()).collect();
        let consumers = self.deps.bus.consumers_for(delivered.iter().copied());
        if !delivered.is_empty() {
            c.inbox(&consumers, &self.stream, seq, &delivered)?;
        }
        // Published only when a consumer or a live subscriber wants it (no copy per event
        // otherwise).
        let publish =
            !delivered.is_empty() && (!consumers.is_empty() || self.deps.bus.has_live_topics());
        drop(delivered);
        let entry = Journaled {
            record,
            effects,
            due: next,
        };
        self.state.filed_due = next;
        let snapshot_now = snapshot::due(self.snapshot_seq, seq);
        if snapshot_now {
            // The snapshot includes this record, so the record itself need not be written.
            c.snapshot(&self.stream, seq, &self.state)?;
        } else {
            c.journal(&self.stream, seq, &entry)?;
        }
        if let Err(e) = self.deps.store.commit(c).await {
            self.state.filed_due = filed;
            return Err(e);
        }
        self.seq = seq;
        if snapshot_now {
            self.snapshot_seq = seq;
        }
        self.dirty = false;
        if publish && self.deps.bus.has_subscribers() {
            self.deps.bus.publish(Published {
                stream: self.stream.clone(),
                seq,
                effects: entry
                    .effects
                    .iter()
                    .filter(|e| !e.is_internal())
                    .cloned()
                    .collect(),
                consumers,
            });
        }
        Ok(entry)
    }

    /// Files the user's next due instant when no record changed (a backfill that completed
    /// nothing may still make a future anniversary due).
    async fn reschedule(
        &mut self,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let next = self
            .state
            .next_due(catalog, now)
            .map(|t| t.timestamp_millis());
        if next == self.state.filed_due {
            return Ok(());
        }
        let filed = self.state.filed_due;
        self.state.filed_due = next;
        // No record carries this instant, so the snapshot (at the current seq) does: a
        // reload then moves exactly the entry filed here.
        let mut c = Commit::new();
        c.due(&self.due_target, filed, next);
        if !self.dirty {
            c.snapshot(&self.stream, self.seq, &self.state)?;
        }
        if let Err(e) = self.deps.store.commit(c).await {
            self.state.filed_due = filed;
            return Err(e);
        }
        self.snapshot_seq = self.seq;
        Ok(())
    }

    /// Folds the journal tail into a snapshot (on passivation and stop). Never writes state
    /// that is not durable, and never replaces a snapshot that includes more.
    fn snapshot(&mut self) -> Result<(), StoreError> {
        if self.dirty || self.seq <= self.snapshot_seq {
            return Ok(());
        }
        let stored = self.deps.store.journal().snapshot_seq(&self.stream)?;
        if stored > self.seq {
            tracing::error!(user = %self.user_id, stored, ours = self.seq, "a newer snapshot exists; not overwriting it");
            return Ok(());
        }
        let mut c = Commit::new();
        c.snapshot(&self.stream, self.seq, &self.state)?;
        self.deps.store.write(c)?;
        self.snapshot_seq = self.seq;
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
        let Journaled {
            record, effects, ..
        } = entry;
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
                    seq: self.seq,
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
            (Command::Advance { .. } | Command::Backfill { .. } | Command::SeedBoard { .. }, _) => {
                Outcome::Advanced
            }
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
                effects,
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
        let stream = StreamId::user(args.deps.scope, args.user_id.clone());
        let loaded = recovery::load::<UserState>(&args.deps.store.journal(), &stream)?;
        if loaded.replayed > 0 {
            tracing::debug!(user = %args.user_id, replayed = loaded.replayed, "user recovered from journal tail");
        }
        Ok(UserActorState {
            user_id: args.user_id,
            due_target: DueTarget::new(DueKind::UserPeriodEnd, stream.clone()),
            stream,
            deps: args.deps,
            state: loaded.state,
            seq: loaded.seq,
            snapshot_seq: loaded.snapshot_seq,
            last_active: Instant::now(),
            passivated: false,
            dirty: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if st.passivated {
            refuse_after_passivation(message);
            return Ok(());
        }
        if !matches!(message, UserMsg::PassivateIfIdle(_)) {
            st.last_active = Instant::now();
        }
        match message {
            UserMsg::Execute { command, reply } => {
                let catalog = st.deps.catalog.get();
                let now = st.deps.clock.now();
                let seen = match st.seen_keys(&command, now) {
                    Ok(seen) => seen,
                    Err(e) => {
                        let _ = reply.send(Err(UserError::from_store(&e)));
                        return Ok(());
                    }
                };
                let ctx = Context {
                    user_id: &st.user_id,
                    catalog: &catalog,
                    now,
                    new_id: Uuid::new_v4(),
                    control: UserActorState::control_roll(&catalog),
                    seen: &seen,
                };
                match decide(&st.state, &command, &ctx) {
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                    Ok(Decision::Answer(outcome)) => {
                        // A backfill that completes nothing may still make a future date due
                        // (an anniversary ahead): file it.
                        if matches!(command, Command::Backfill { .. }) {
                            if let Err(e) = st.reschedule(&catalog, now).await {
                                let _ = reply.send(Err(UserError::from_store(&e)));
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
                                let _ = reply.send(Err(UserError::from_store(&e)));
                                return Err(e.into());
                            }
                        }
                    }
                }
            }
            UserMsg::Query(query) => {
                query.run(&st.state, &st.deps.catalog.get(), st.deps.clock.now());
            }
            UserMsg::PassivateIfIdle(idle) => {
                if st.last_active.elapsed() < idle {
                    return Ok(());
                }
                if let Err(e) = st.snapshot() {
                    // Stay alive: the journal still has everything, and queued callers
                    // are served instead of failing with the actor.
                    tracing::warn!(user = %st.user_id, error = %e, "snapshot before passivation failed; staying active");
                    return Ok(());
                }
                st.passivated = true;
                // The mailbox refuses new messages from now on, and the ones already queued
                // are answered "passivated"; their callers wait for this actor to stop (it
                // leaves the registry in post_stop) and retry, so a user never has two
                // actors at once.
                let _ = myself.drain();
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Best effort: a stop (shutdown, passivation) folds the tail into a snapshot. If this
        // fails, the journal still holds everything.
        if let Err(e) = st.snapshot() {
            tracing::warn!(user = %st.user_id, error = %e, "snapshot on stop failed");
        }
        if let Some(registry) = st.deps.registry.upgrade() {
            registry.remove_if(&st.user_id, myself.get_id());
        }
        Ok(())
    }
}

/// The event id an idempotency key produced for this user and metric, if it was used within
/// `window` (SPEC §1.5).
pub fn lookup_idempotency(
    store: &Store,
    stream: &StreamId,
    metric_id: Uuid,
    key: &str,
    window: Option<Duration>,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, StoreError> {
    let Some((at_ms, value)) = store
        .indexes()
        .idempotency(stream, &idempotency_slot(metric_id, key))?
    else {
        return Ok(None);
    };
    if let Some(window) = window {
        let age_ms = now.timestamp_millis().saturating_sub(at_ms);
        if u128::try_from(age_ms).unwrap_or(0) > window.as_millis() {
            return Ok(None);
        }
    }
    Ok(Uuid::from_slice(&value).ok())
}
