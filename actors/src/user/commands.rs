//! What a user can be asked to do, and what it answers.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::*;
use crate::rules::profile::{ProfileError, UserProfile, UserWrite};
use crate::rules::streak::{Mode, Pause, StreakView};

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
    #[error("Achievement not found")]
    AchievementNotFound,
    #[error("Achievement is locked")]
    AchievementLocked,
    #[error("User is not eligible for this achievement")]
    NotEligible,
    /// A `blockIfOutOfPoints` deduction would take a total below zero (422, SPEC §3.2.5).
    #[error("Insufficient points")]
    InsufficientPoints,
    /// A rule of SPEC §2.4/§5 rejected the request (422 with this message).
    #[error("{0}")]
    Invalid(String),
    /// Streak customization is disabled for the org (403, SPEC §2.4.3).
    #[error("Streak customization is not enabled for this organisation")]
    CustomizationDisabled,
    #[error("storage failure: {0}")]
    Storage(String),
    /// Storage cannot make writes durable right now (503): nothing was acknowledged.
    #[error("{0}")]
    StorageUnavailable(String),
    /// The actor was passivated after the caller looked it up; the caller retries.
    #[error("user actor passivated")]
    Passivated,
    /// The actor stopped while handling the request (it may or may not have been applied).
    #[error("user actor unavailable")]
    Unavailable,
}

impl UserError {
    /// A storage failure, split into "unavailable" (503, retry later) and anything else.
    pub fn from_store(e: &kudos_snapshots::StoreError) -> Self {
        if e.is_unavailable() {
            UserError::StorageUnavailable(e.to_string())
        } else {
            UserError::Storage(e.to_string())
        }
    }
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

/// A `PATCH /users/{id}/preferences` body; `None` keeps a part.
#[derive(Debug, Clone, Default)]
pub struct PreferencesWrite {
    /// Notification type → channels (each provided type replaces that type's list).
    pub notifications: BTreeMap<String, Vec<String>>,
    pub streak_enabled: Option<bool>,
    pub streak_mode: Option<Mode>,
    /// Metric keys and thresholds.
    pub streak_metrics: Option<Vec<(String, f64)>>,
    pub streak_days_off: Option<Vec<i64>>,
}

/// Everything a user can be asked to do.
#[derive(Debug, Clone)]
pub enum Command {
    WriteProfile {
        mode: WriteMode,
        write: UserWrite,
    },
    RecordEvent(NewEvent),
    /// Dry-run events in order against a copy of the state (batch validation).
    CheckEvents(Vec<NewEvent>),
    /// Time passed: run period ends, freeze earning and anniversaries due by `at` (the due
    /// instant the scheduler filed; never later than now).
    Advance {
        at: Option<DateTime<Utc>>,
    },
    SetPreferences(PreferencesWrite),
    GrantFreezes {
        count: u32,
    },
    AddPause {
        id: Uuid,
        start: NaiveDate,
        end: NaiveDate,
    },
    RemovePause {
        id: Uuid,
    },
    RestoreStreak,
    ResetStreak,
    /// `POST /achievements/{key}/complete` (SPEC §4.8).
    CompleteAchievement {
        key: String,
        user: UserWrite,
    },
    /// Complete one achievement silently if the user qualifies now (SPEC §4.4).
    Backfill {
        achievement_id: Uuid,
    },
    /// Place the user's activity from before `until` (a board's activation) on that board,
    /// once per board (SPEC §7.5.3).
    SeedBoard {
        board_id: Uuid,
        until: DateTime<Utc>,
    },
}

/// What a command produced, for the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Profile(UserProfile),
    Event(EventOutcome),
    Checked,
    Advanced,
    Preferences(Preferences),
    FreezesGranted {
        granted: u32,
    },
    PauseAdded(Pause),
    PauseRemoved,
    /// The restored length, or `None` when there was nothing longer to restore.
    Restored(Option<u32>),
    Reset,
    /// An api completion: new, or the original one repeated.
    Completed {
        achievement_id: Uuid,
        completion: Completion,
        /// What a new completion caused (points awards among them); empty on a repeat.
        effects: Vec<Effect>,
    },
}

/// The result of a metric event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    Recorded {
        /// The journal seq of the record (its effects' inbox rows carry it).
        seq: u64,
        record: Box<EventRecord>,
        /// What the event caused, in order (achievement completions among them).
        effects: Vec<Effect>,
        total: f64,
        streak: StreakView,
        /// Whether this event started or extended the streak.
        extended: bool,
    },
    /// The idempotency key was seen before: nothing was processed (SPEC §1.5.5).
    Replayed {
        event_id: Uuid,
        total: f64,
        streak: StreakView,
    },
}

/// A command together with the type of its answer: callers get that type, never an
/// [`Outcome`] to match. The actor answers every command with the outcome variant its
/// `reply` expects (one place builds outcomes, keyed by the command), so `reply` returns
/// `None` only on a bug, which the caller sees as [`UserError::Unavailable`] and the log as
/// an error.
pub trait Ask: Send + 'static {
    type Reply: Send + 'static;
    fn into_command(self) -> Command;
    fn reply(outcome: Outcome) -> Option<Self::Reply>;
}

macro_rules! ask {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* } => $reply:ty,
     |$cmd:ident| $build:expr, |$o:ident| $pick:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $(pub $field: $ty),*
        }

        impl Ask for $name {
            type Reply = $reply;
            fn into_command(self) -> Command {
                let $cmd = self;
                $build
            }
            fn reply($o: Outcome) -> Option<$reply> {
                $pick
            }
        }
    };
}

ask!(
    /// A metric event (SPEC §3.2).
    RecordEvent { event: NewEvent } => EventOutcome,
    |c| Command::RecordEvent(c.event),
    |o| match o { Outcome::Event(e) => Some(e), _ => None }
);

ask!(
    /// `POST|PUT|PATCH /users` (SPEC §2.3).
    WriteProfile { mode: WriteMode, write: UserWrite } => UserProfile,
    |c| Command::WriteProfile { mode: c.mode, write: c.write },
    |o| match o { Outcome::Profile(p) => Some(p), _ => None }
);

ask!(
    /// `PATCH /users/{id}/preferences` (SPEC §2.4).
    SetPreferences { write: PreferencesWrite } => Preferences,
    |c| Command::SetPreferences(c.write),
    |o| match o { Outcome::Preferences(p) => Some(p), _ => None }
);

ask!(
    /// Admin freeze grant (SPEC §5.5.6): answers how many were granted (the cap may cut).
    GrantFreezes { count: u32 } => u32,
    |c| Command::GrantFreezes { count: c.count },
    |o| match o { Outcome::FreezesGranted { granted } => Some(granted), _ => None }
);

ask!(
    /// Admin streak pause (SPEC §5.6).
    AddPause { id: Uuid, start: NaiveDate, end: NaiveDate } => Pause,
    |c| Command::AddPause { id: c.id, start: c.start, end: c.end },
    |o| match o { Outcome::PauseAdded(p) => Some(p), _ => None }
);

/// What `POST /achievements/{key}/complete` answers.
#[derive(Debug, Clone)]
pub struct Completed {
    pub achievement_id: Uuid,
    pub completion: Completion,
    /// What a new completion caused (points awards among them); empty on a repeat.
    pub effects: Vec<Effect>,
}

ask!(
    /// `POST /achievements/{key}/complete` (SPEC §4.8).
    CompleteAchievement { key: String, user: UserWrite } => Completed,
    |c| Command::CompleteAchievement { key: c.key, user: c.user },
    |o| match o {
        Outcome::Completed { achievement_id, completion, effects } => Some(Completed {
            achievement_id,
            completion,
            effects,
        }),
        _ => None,
    }
);

ask!(
    /// Admin pause removal (SPEC §5.6).
    RemovePause { id: Uuid } => (),
    |c| Command::RemovePause { id: c.id },
    |o| matches!(o, Outcome::PauseRemoved).then_some(())
);

ask!(
    /// Admin streak restore (SPEC §5.10): the restored length, or `None` when there was
    /// nothing longer to restore.
    RestoreStreak {} => Option<u32>,
    |_c| Command::RestoreStreak,
    |o| match o { Outcome::Restored(length) => Some(length), _ => None }
);

ask!(
    /// Admin streak reset (SPEC §5.10.2).
    ResetStreak {} => (),
    |_c| Command::ResetStreak,
    |o| matches!(o, Outcome::Reset).then_some(())
);
