//! The user: its state, the records that change it, the pure decisions that produce those
//! records, and the [`UserActor`] that serializes everything for one user (SPEC §0.8).
//!
//! Processing follows one pattern (ARCHITECTURE.md, "The path of one event"):
//! `decide_*` (pure, may reject) → journal append + fsync → [`UserState::apply`] → reply.
//! Replay after a restart uses the same `apply`, so recovered state equals live state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kudos_snapshots::{recovery, snapshot, Journal, Recoverable, StreamId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use crate::catalog::{AttributeKind, Catalog};
use crate::clock::Clock;
use crate::rules::profile::{apply_write, ProfileError, UserProfile, UserWrite};
use crate::rules::summary::{bucket_of, Buckets};
use crate::user_shards::Registry;

/// One metric of one user: the running total and its history by quarter-hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricHistory {
    pub total: f64,
    pub buckets: Buckets,
}

/// Everything Kudos knows about one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// `None` until the user is created.
    pub profile: Option<UserProfile>,
    pub metrics: BTreeMap<Uuid, MetricHistory>,
    /// `"{metric id}/{Idempotency-Key}"` → the event id it produced (SPEC §1.5).
    pub idempotency: HashMap<String, Uuid>,
}

fn idempotency_slot(metric_id: Uuid, key: &str) -> String {
    format!("{metric_id}/{key}")
}

impl UserState {
    pub fn total(&self, metric_id: Uuid) -> f64 {
        self.metrics.get(&metric_id).map_or(0.0, |m| m.total)
    }

    /// The event id recorded under `key` for this metric, if the key was used before.
    pub fn replayed(&self, metric_id: Uuid, key: &str) -> Option<Uuid> {
        self.idempotency
            .get(&idempotency_slot(metric_id, key))
            .copied()
    }
}

/// Something that happened to a user that other parts of the system react to (leaderboards,
/// webhooks, WebSocket pushes). Effects are journaled with the record that caused them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    UserCreated {
        user_id: String,
    },
    MetricTotalChanged {
        user_id: String,
        metric_id: Uuid,
        previous: f64,
        total: f64,
        at: DateTime<Utc>,
    },
}

/// A recorded metric event with everything it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event_id: Uuid,
    pub metric_id: Uuid,
    pub value: f64,
    pub at: DateTime<Utc>,
    /// The user's time zone when the event was processed (SPEC §3.2.3).
    pub tz: String,
    pub attributes: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    /// The profile after the inline upsert, when the request carried user fields.
    pub profile: Option<UserProfile>,
    pub user_created: bool,
    pub effects: Vec<Effect>,
}

/// A journal record of a user stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UserRecord {
    Profile {
        profile: UserProfile,
        created: bool,
        effects: Vec<Effect>,
    },
    Event(EventRecord),
}

impl Recoverable for UserState {
    type Record = UserRecord;

    fn apply(&mut self, record: &UserRecord) {
        match record {
            UserRecord::Profile { profile, .. } => self.profile = Some(profile.clone()),
            UserRecord::Event(ev) => {
                if let Some(profile) = &ev.profile {
                    self.profile = Some(profile.clone());
                }
                let metric = self.metrics.entry(ev.metric_id).or_default();
                metric.total += ev.value;
                if ev.value != 0.0 {
                    *metric.buckets.entry(bucket_of(ev.at)).or_default() += ev.value;
                }
                if let Some(key) = &ev.idempotency_key {
                    self.idempotency
                        .insert(idempotency_slot(ev.metric_id, key), ev.event_id);
                }
            }
        }
    }
}

/// Why a user operation was refused. Validation errors carry the message for the API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserError {
    #[error("User not found")]
    NotFound,
    #[error("User already exists")]
    AlreadyExists,
    #[error("{0}")]
    Profile(#[from] ProfileError),
    #[error("Invalid attribute keys: {}. Please ensure all attribute keys match those set up in Kudos.", .0.join(", "))]
    InvalidEventAttributes(Vec<String>),
    #[error("Metric not found")]
    MetricNotFound,
    #[error("value would make the metric total overflow")]
    TotalOutOfRange,
    #[error("storage failure: {0}")]
    Storage(String),
    /// The actor was passivated after the caller looked it up; the caller retries.
    #[error("user actor passivated")]
    Passivated,
    /// The actor stopped while handling the request (it may or may not have been applied).
    #[error("user actor unavailable")]
    Unavailable,
}

/// How a profile write treats a missing or existing user (SPEC §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// `PUT /users/{id}`: create or update.
    Identify,
    /// `POST /users`: create; an existing id is an error.
    Create,
    /// `PATCH /users/{id}`: update; a missing user is an error.
    Update,
}

/// A metric event as accepted by the HTTP layer (shape-validated, not yet rule-checked).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub metric_id: Uuid,
    pub value: f64,
    pub user: UserWrite,
    pub attributes: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
}

/// The result of a metric event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    Recorded {
        record: Box<EventRecord>,
        total: f64,
    },
    /// The idempotency key was seen before: nothing was processed (SPEC §1.5.5).
    Replayed { event_id: Uuid, total: f64 },
}

/// Decides a profile write. Pure: `now` and the control roll are passed in.
pub fn decide_profile(
    state: &UserState,
    user_id: &str,
    mode: WriteMode,
    write: &UserWrite,
    catalog: &Catalog,
    now: DateTime<Utc>,
    control: bool,
) -> Result<UserRecord, UserError> {
    let existing = state.profile.as_ref();
    match (mode, existing) {
        (WriteMode::Create, Some(_)) => return Err(UserError::AlreadyExists),
        (WriteMode::Update, None) => return Err(UserError::NotFound),
        _ => {}
    }
    let profile = apply_write(existing, user_id, write, catalog, now, control)?;
    let created = existing.is_none();
    let effects = if created {
        vec![Effect::UserCreated {
            user_id: user_id.to_string(),
        }]
    } else {
        Vec::new()
    };
    Ok(UserRecord::Profile {
        profile,
        created,
        effects,
    })
}

/// Decides a metric event (SPEC §3.2.4, the steps that exist so far: idempotency, upsert,
/// total). Pure: `now`, the new event id and the control roll are passed in.
pub fn decide_event(
    state: &UserState,
    user_id: &str,
    event: &NewEvent,
    catalog: &Catalog,
    now: DateTime<Utc>,
    event_id: Uuid,
    control: bool,
) -> Result<EventOutcome, UserError> {
    if catalog.metric(event.metric_id).is_none() {
        return Err(UserError::MetricNotFound);
    }
    if let Some(key) = &event.idempotency_key {
        if let Some(original) = state.replayed(event.metric_id, key) {
            return Ok(EventOutcome::Replayed {
                event_id: original,
                total: state.total(event.metric_id),
            });
        }
    }
    let unknown = catalog.unknown_attribute_keys(AttributeKind::Event, event.attributes.keys());
    if !unknown.is_empty() {
        return Err(UserError::InvalidEventAttributes(unknown));
    }
    let existing = state.profile.as_ref();
    let profile = apply_write(existing, user_id, &event.user, catalog, now, control)?;
    let user_created = existing.is_none();
    let previous = state.total(event.metric_id);
    let total = previous + event.value;
    // Totals and history stay finite: an infinite total could not be written as JSON and
    // would poison the journal.
    let bucket = state
        .metrics
        .get(&event.metric_id)
        .and_then(|m| m.buckets.get(&bucket_of(now)))
        .copied()
        .unwrap_or(0.0);
    if !total.is_finite() || !(bucket + event.value).is_finite() {
        return Err(UserError::TotalOutOfRange);
    }
    // The profile is journaled only when this event changes it, which keeps the per-event
    // record small on the hot path.
    let profile_changed = user_created || !event.user.is_empty();
    let mut effects = Vec::new();
    if user_created {
        effects.push(Effect::UserCreated {
            user_id: user_id.to_string(),
        });
    }
    if event.value != 0.0 {
        effects.push(Effect::MetricTotalChanged {
            user_id: user_id.to_string(),
            metric_id: event.metric_id,
            previous,
            total,
            at: now,
        });
    }
    let tz = profile.time_zone().name().to_string();
    let record = EventRecord {
        event_id,
        metric_id: event.metric_id,
        value: event.value,
        at: now,
        tz,
        attributes: event.attributes.clone(),
        idempotency_key: event.idempotency_key.clone(),
        profile: profile_changed.then_some(profile),
        user_created,
        effects,
    };
    Ok(EventOutcome::Recorded {
        record: Box::new(record),
        total,
    })
}

/// Runs `events` in order against a copy of `state` without journaling anything.
pub fn check_events(
    state: &UserState,
    user_id: &str,
    events: &[NewEvent],
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Result<(), UserError> {
    let mut sim = state.clone();
    for event in events {
        if let EventOutcome::Recorded { record, .. } =
            decide_event(&sim, user_id, event, catalog, now, Uuid::nil(), false)?
        {
            sim.apply(&UserRecord::Event(*record));
        }
    }
    Ok(())
}

/// A read-only query run inside the actor. It answers through its own channel; dropping it
/// unanswered tells the caller to retry elsewhere.
pub type ReadFn = Box<dyn FnOnce(&UserState) + Send>;

/// Messages of [`UserActor`].
pub enum UserMsg {
    /// Identify, create or update the profile.
    WriteProfile {
        mode: WriteMode,
        write: UserWrite,
        catalog: Arc<Catalog>,
        reply: RpcReplyPort<Result<UserProfile, UserError>>,
    },
    /// Record one metric event, with its inline user upsert.
    RecordEvent {
        event: NewEvent,
        catalog: Arc<Catalog>,
        reply: RpcReplyPort<Result<EventOutcome, UserError>>,
    },
    /// Dry-run events in order against a copy of the state (batch validation): the first
    /// rejection, or `Ok` if every event would be accepted now.
    CheckEvents {
        events: Vec<NewEvent>,
        catalog: Arc<Catalog>,
        reply: RpcReplyPort<Result<(), UserError>>,
    },
    /// Run a read-only query against the current state.
    Read(ReadFn),
    /// Fold the journal tail into a snapshot now (shutdown, checkpoints).
    Snapshot(RpcReplyPort<()>),
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
        UserMsg::WriteProfile { reply, .. } => {
            let _ = reply.send(Err(UserError::Passivated));
        }
        UserMsg::RecordEvent { reply, .. } => {
            let _ = reply.send(Err(UserError::Passivated));
        }
        UserMsg::CheckEvents { reply, .. } => {
            let _ = reply.send(Err(UserError::Passivated));
        }
        UserMsg::Snapshot(reply) => {
            let _ = reply.send(());
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
    last_active: Instant,
    passivated: bool,
}

impl UserActorState {
    fn control_roll(&self) -> bool {
        self.deps.control_ratio > 0 && rand::random_range(0u8..100) < self.deps.control_ratio
    }

    /// Journals `record`, then applies it. On a storage failure the record is not applied and
    /// the error is returned so the actor stops and is reloaded from disk.
    async fn commit(&mut self, record: UserRecord) -> Result<(), kudos_snapshots::StoreError> {
        let seq = self.seq + 1;
        self.deps.journal.append(&self.stream, seq, &record).await?;
        self.seq = seq;
        self.state.apply(&record);
        if snapshot::due(self.snapshot_seq, self.seq) {
            self.snapshot()?;
        }
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
            UserMsg::WriteProfile {
                mode,
                write,
                catalog,
                reply,
            } => {
                let now = st.deps.clock.now();
                let control = st.control_roll();
                match decide_profile(&st.state, &st.user_id, mode, &write, &catalog, now, control) {
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                    Ok(record) => {
                        if let Err(e) = st.commit(record).await {
                            let _ = reply.send(Err(UserError::Storage(e.to_string())));
                            return Err(e.into());
                        }
                        let _ = reply.send(st.state.profile.clone().ok_or(UserError::NotFound));
                    }
                }
            }
            UserMsg::RecordEvent {
                event,
                catalog,
                reply,
            } => {
                let now = st.deps.clock.now();
                let control = st.control_roll();
                let decided = decide_event(
                    &st.state,
                    &st.user_id,
                    &event,
                    &catalog,
                    now,
                    Uuid::new_v4(),
                    control,
                );
                match decided {
                    Ok(EventOutcome::Recorded { record, total }) => {
                        if let Err(e) = st.commit(UserRecord::Event((*record).clone())).await {
                            let _ = reply.send(Err(UserError::Storage(e.to_string())));
                            return Err(e.into());
                        }
                        let _ = reply.send(Ok(EventOutcome::Recorded { record, total }));
                    }
                    other => {
                        let _ = reply.send(other);
                    }
                }
            }
            UserMsg::CheckEvents {
                events,
                catalog,
                reply,
            } => {
                let _ = reply.send(check_events(
                    &st.state,
                    &st.user_id,
                    &events,
                    &catalog,
                    st.deps.clock.now(),
                ));
            }
            UserMsg::Read(query) => query(&st.state),
            UserMsg::Snapshot(reply) => {
                st.snapshot()?;
                let _ = reply.send(());
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{NewAttribute, NewMetric, UnitType};
    use crate::rules::profile::Patch;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn catalog() -> (Catalog, Uuid) {
        let mut cat = Catalog::default();
        let (metrics, _) = cat.create_metrics(
            vec![Ok(NewMetric {
                key: "lessons".into(),
                name: "Lessons".into(),
                unit_type: UnitType::Number,
                units: None,
            })],
            Utc.timestamp_opt(0, 0).single().expect("valid"),
        );
        cat.create_attributes(vec![Ok(NewAttribute {
            key: "device".into(),
            name: "Device".into(),
            kind: AttributeKind::Event,
        })]);
        (cat, metrics[0].id)
    }

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_735_689_600 + secs, 0)
            .single()
            .expect("valid")
    }

    fn event(metric_id: Uuid, value: f64, key: Option<&str>) -> NewEvent {
        NewEvent {
            metric_id,
            value,
            user: UserWrite::default(),
            attributes: BTreeMap::new(),
            idempotency_key: key.map(str::to_string),
        }
    }

    fn record(
        state: &mut UserState,
        cat: &Catalog,
        ev: &NewEvent,
        at: DateTime<Utc>,
    ) -> EventOutcome {
        let out = decide_event(state, "u1", ev, cat, at, Uuid::new_v4(), false).expect("valid");
        if let EventOutcome::Recorded { record, .. } = &out {
            state.apply(&UserRecord::Event((**record).clone()));
        }
        out
    }

    #[test]
    fn first_event_creates_the_user_and_adds_the_value() {
        let (cat, metric) = catalog();
        let mut state = UserState::default();
        let out = record(&mut state, &cat, &event(metric, 2.5, None), t(0));
        let EventOutcome::Recorded { record, total } = out else {
            panic!("expected a recorded event");
        };
        assert_eq!(total, 2.5);
        assert!(record.user_created);
        assert_eq!(record.tz, "UTC");
        assert!(matches!(record.effects[0], Effect::UserCreated { .. }));
        assert!(
            matches!(record.effects[1], Effect::MetricTotalChanged { total, .. } if total == 2.5)
        );
        assert_eq!(state.total(metric), 2.5);
        assert!(state.profile.is_some());
    }

    #[test]
    fn idempotent_replay_changes_nothing_and_returns_the_original_id() {
        let (cat, metric) = catalog();
        let mut state = UserState::default();
        let first = record(&mut state, &cat, &event(metric, 1.0, Some("k")), t(0));
        let EventOutcome::Recorded {
            record: original, ..
        } = first
        else {
            panic!("expected a recorded event");
        };
        let before = state.clone();
        let again = record(&mut state, &cat, &event(metric, 5.0, Some("k")), t(10));
        assert_eq!(
            again,
            EventOutcome::Replayed {
                event_id: original.event_id,
                total: 1.0
            }
        );
        assert_eq!(state, before);
        // The same key on another user's stream or metric is independent: a new key records.
        let other = record(&mut state, &cat, &event(metric, 1.0, Some("k2")), t(20));
        assert!(matches!(other, EventOutcome::Recorded { total, .. } if total == 2.0));
    }

    #[test]
    fn unknown_event_attributes_and_bad_user_fields_are_rejected_without_change() {
        let (cat, metric) = catalog();
        let state = UserState::default();
        let mut ev = event(metric, 1.0, None);
        ev.attributes.insert("nope".into(), "x".into());
        assert_eq!(
            decide_event(&state, "u1", &ev, &cat, t(0), Uuid::new_v4(), false),
            Err(UserError::InvalidEventAttributes(vec!["nope".into()]))
        );
        let mut ev = event(metric, 1.0, None);
        ev.user.tz = Patch::Set("Not/AZone".into());
        assert!(matches!(
            decide_event(&state, "u1", &ev, &cat, t(0), Uuid::new_v4(), false),
            Err(UserError::Profile(ProfileError::InvalidTz(_)))
        ));
    }

    #[test]
    fn overflowing_totals_are_rejected_and_profiles_are_journaled_only_when_changed() {
        let (cat, metric) = catalog();
        let mut state = UserState::default();
        let first = record(&mut state, &cat, &event(metric, 1e308, None), t(0));
        let EventOutcome::Recorded { record: first, .. } = first else {
            panic!("expected a recorded event");
        };
        assert!(
            first.profile.is_some(),
            "the creating event carries the profile"
        );
        assert_eq!(
            decide_event(
                &state,
                "u1",
                &event(metric, 1e308, None),
                &cat,
                t(1),
                Uuid::new_v4(),
                false
            ),
            Err(UserError::TotalOutOfRange)
        );
        let out = decide_event(
            &state,
            "u1",
            &event(metric, -1.0, None),
            &cat,
            t(2),
            Uuid::new_v4(),
            false,
        );
        let Ok(EventOutcome::Recorded { record, .. }) = out else {
            panic!("expected a recorded event");
        };
        assert!(
            record.profile.is_none(),
            "an id-only user object changes nothing"
        );
        let batch = [event(metric, 1.0, Some("a")), event(metric, 1e308, None)];
        assert_eq!(
            check_events(&state, "u1", &batch, &cat, t(3)),
            Err(UserError::TotalOutOfRange)
        );
        assert_eq!(check_events(&state, "u1", &batch[..1], &cat, t(3)), Ok(()));
    }

    #[test]
    fn profile_modes() {
        let (cat, _) = catalog();
        let mut state = UserState::default();
        let w = UserWrite::default();
        assert_eq!(
            decide_profile(&state, "u1", WriteMode::Update, &w, &cat, t(0), false),
            Err(UserError::NotFound)
        );
        let rec =
            decide_profile(&state, "u1", WriteMode::Create, &w, &cat, t(0), false).expect("create");
        state.apply(&rec);
        assert_eq!(
            decide_profile(&state, "u1", WriteMode::Create, &w, &cat, t(1), false),
            Err(UserError::AlreadyExists)
        );
        assert!(decide_profile(&state, "u1", WriteMode::Identify, &w, &cat, t(1), false).is_ok());
    }

    proptest! {
        /// Replaying the journal (records serialized and read back) gives the same state as
        /// live processing, and the total is the sum of the non-replayed values.
        #[test]
        fn replay_equals_live(events in proptest::collection::vec((-1000i32..1000, 0i64..100_000, proptest::option::of(0u8..5)), 1..40)) {
            let (cat, metric) = catalog();
            let mut live = UserState::default();
            let mut journal = Vec::new();
            let mut expected = 0.0;
            let mut seen = std::collections::HashSet::new();
            for (value, secs, key) in &events {
                let key = key.map(|k| format!("key-{k}"));
                let ev = event(metric, f64::from(*value) / 4.0, key.as_deref());
                let out = decide_event(&live, "u1", &ev, &cat, t(*secs), Uuid::new_v4(), false).expect("valid");
                if let EventOutcome::Recorded { record, .. } = out {
                    let rec = UserRecord::Event(*record);
                    live.apply(&rec);
                    journal.push(serde_json::to_string(&rec).expect("encode"));
                }
                if key.as_ref().is_none_or(|k| seen.insert(k.clone())) {
                    expected += f64::from(*value) / 4.0;
                }
            }
            let mut replayed = UserState::default();
            for line in &journal {
                let rec: UserRecord = serde_json::from_str(line).expect("decode");
                replayed.apply(&rec);
            }
            prop_assert_eq!(&replayed, &live);
            prop_assert!((live.total(metric) - expected).abs() < 1e-9);
        }
    }
}
