//! What is journaled for a user: records, the effects they had, journal entries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;
use crate::rules::profile::UserProfile;
use crate::rules::streak::{Pause, StreakConfig, StreakEvent};

/// Something that happened that other parts of Kudos react to (leaderboards, webhooks,
/// WebSocket pushes): to a user (journaled with the user's record that caused it), or to a
/// leaderboard (written by its board with the standings that caused it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    Streak {
        user_id: String,
        at: DateTime<Utc>,
        event: StreakEvent,
    },
    AchievementCompleted {
        user_id: String,
        achievement_id: Uuid,
        completion_id: Uuid,
        at: DateTime<Utc>,
        /// Backdated or restored: counted, but not reported or notified (SPEC §4.4.2).
        silent: bool,
    },
    /// A trigger fired and changed the user's total (SPEC §6.2.3).
    PointsAwarded {
        user_id: String,
        system_id: Uuid,
        award: Award,
        /// From a `user_creation` trigger: no `points.changed` webhook (SPEC §8.3).
        from_creation: bool,
    },
    /// A metric trigger's accumulator moved (internal: replay folds it, consumers never
    /// see it).
    PointsProgress {
        system_id: Uuid,
        trigger_id: Uuid,
        accumulator: crate::rules::points::Accumulator,
    },
    /// A time trigger's firings were paid up to `cursor` (internal, as `PointsProgress`).
    PointsTimeProgress {
        system_id: Uuid,
        trigger_id: Uuid,
        cursor: crate::rules::points::TimeCursor,
    },
    /// A boost began (SPEC §8.4): user-specific boosts in the user's stream, global and
    /// cohort boosts in the boost clock's (`user_id` is then `None`).
    BoostStarted {
        boost_id: Uuid,
        system_id: Uuid,
        user_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// A boost with an end date ended (SPEC §8.4).
    BoostFinished {
        boost_id: Uuid,
        system_id: Uuid,
        user_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// [`Effect::Ranked`] as recorded before it carried the user's zone: still read from
    /// older journals (as UTC), never written.
    RankedWithoutZone {
        user_id: String,
        user_name: Option<String>,
        at: DateTime<Utc>,
        placements: Vec<crate::leaderboard::placement::Placement>,
    },
    /// The user's level in a system changed (SPEC §6.5.3).
    PointsLevelChanged {
        user_id: String,
        system_id: Uuid,
        previous: Option<Uuid>,
        new: Option<Uuid>,
    },
    /// A run of a leaderboard started (SPEC §8.3: 10:00 UTC on the day before its start, or
    /// at once when activated later).
    LeaderboardStarted {
        board_id: Uuid,
        run: u64,
        at: DateTime<Utc>,
    },
    /// A run ended (13:00 UTC on the day after its end, or at once on a manual finish):
    /// the final top 10 of one breakdown group.
    LeaderboardFinished {
        board_id: Uuid,
        run: u64,
        group: Vec<String>,
        top: Vec<crate::leaderboard::Standing>,
        at: DateTime<Utc>,
    },
    /// The rankings or values of a run's group changed: its top 10 afterwards (one per
    /// group per applied batch; webhooks throttle further, SPEC §8.2).
    LeaderboardChanged {
        board_id: Uuid,
        run: u64,
        group: Vec<String>,
        top: Vec<crate::leaderboard::Standing>,
        at: DateTime<Utc>,
    },
    /// A user's rank changed: by their own change, by entering or being evicted, or by
    /// others passing them (SPEC §8.3). `previous_*` is the standing before the batch.
    LeaderboardRankChanged {
        board_id: Uuid,
        run: u64,
        group: Vec<String>,
        user_id: String,
        user_name: Option<String>,
        rank: Option<u32>,
        previous_rank: Option<u32>,
        value: f64,
        previous_value: Option<f64>,
        at: DateTime<Utc>,
    },
    /// A change that counts on leaderboards, placed in its board, run and group when the
    /// record was applied (SPEC §7.2.3, §7.4). (Appended last: postcard stores the variant's
    /// index, so older records keep decoding.)
    Ranked {
        user_id: String,
        user_name: Option<String>,
        /// The user's time zone at the change (their history days when others displace
        /// them).
        tz: String,
        at: DateTime<Utc>,
        placements: Vec<crate::leaderboard::placement::Placement>,
    },
    /// A "due" notification came due (SPEC §8.5). `suppressed`: for a control user or one
    /// whose preference for it excludes email, so recorded (it is not due again) but not
    /// delivered. (Appended last, as `Ranked`.)
    NoticeDue {
        user_id: String,
        notice: crate::rules::notices::Notice,
        at: DateTime<Utc>,
        suppressed: bool,
    },
}

impl Effect {
    /// The webhook event type it is delivered as (SPEC §8.3); the throttled types go
    /// through the windows of §8.2 first.
    pub fn webhook_type(&self) -> Option<&'static str> {
        Some(match self {
            Effect::AchievementCompleted { silent: false, .. } => "achievement.completed",
            Effect::PointsLevelChanged { .. } => "points.level_changed",
            Effect::BoostStarted { .. } => "points.boost_started",
            Effect::BoostFinished { .. } => "points.boost_finished",
            Effect::LeaderboardStarted { .. } => "leaderboard.started",
            Effect::LeaderboardFinished { .. } => "leaderboard.finished",
            Effect::LeaderboardChanged { .. } => "leaderboard.changed",
            Effect::LeaderboardRankChanged { .. } => "leaderboard.rank_changed",
            Effect::PointsAwarded {
                from_creation: false,
                ..
            } => "points.changed",
            Effect::NoticeDue {
                notice,
                suppressed: false,
                ..
            } => notice.webhook_type(),
            Effect::Streak { event, .. } => match event {
                StreakEvent::Started { .. } => "streak.started",
                StreakEvent::Extended { .. } => "streak.extended",
                StreakEvent::Lost { .. } => "streak.lost",
                StreakEvent::FreezeConsumed { .. } => "streak.freeze_consumed",
                StreakEvent::FreezeEarned { .. } => "streak.freeze_earned",
            },
            _ => return None,
        })
    }

    /// Whether it places the user on leaderboards.
    pub fn is_ranked(&self) -> bool {
        matches!(
            self,
            Effect::Ranked { .. } | Effect::RankedWithoutZone { .. }
        )
    }

    /// Bookkeeping that only replay needs: not delivered to consumers.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Effect::PointsProgress { .. } | Effect::PointsTimeProgress { .. }
        )
    }

    /// Decided live and folded as recorded on replay (never re-evaluated).
    pub fn is_decision(&self) -> bool {
        matches!(
            self,
            Effect::AchievementCompleted { .. }
                | Effect::PointsAwarded { .. }
                | Effect::PointsProgress { .. }
                | Effect::PointsTimeProgress { .. }
                | Effect::PointsLevelChanged { .. }
                | Effect::BoostStarted { .. }
                | Effect::BoostFinished { .. }
                | Effect::NoticeDue { .. }
                | Effect::Ranked { .. }
                | Effect::RankedWithoutZone { .. }
        )
    }
}

/// A recorded metric event.
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
    /// The profile after the inline upsert, when the request changed it.
    pub profile: Option<UserProfile>,
    pub user_created: bool,
    pub streak: StreakConfig,
}

/// What happened to a user: the input a change was decided from. Journaled inside a
/// [`Journaled`] together with the effects it had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserRecord {
    Profile {
        profile: UserProfile,
        streak: StreakConfig,
    },
    Event(EventRecord),
    /// Time passed: periods that ended and freezes earned up to `at`.
    Advanced {
        at: DateTime<Utc>,
        tz: String,
        streak: StreakConfig,
    },
    Preferences {
        preferences: Preferences,
    },
    FreezesGranted {
        count: u32,
        streak: StreakConfig,
    },
    PauseAdded {
        pause: Pause,
    },
    PauseRemoved {
        id: Uuid,
    },
    StreakRestored {
        at: DateTime<Utc>,
        tz: String,
        streak: StreakConfig,
    },
    StreakReset {
        at: DateTime<Utc>,
        tz: String,
        streak: StreakConfig,
    },
    /// `POST /achievements/{key}/complete`, with its inline user upsert.
    ApiCompleted {
        profile: Option<UserProfile>,
        streak: StreakConfig,
        achievement_id: Uuid,
        completion_id: Uuid,
        at: DateTime<Utc>,
    },
    /// A backfill of one achievement (SPEC §4.4).
    Backfill {
        achievement_id: Uuid,
        at: DateTime<Utc>,
    },
    /// The user's activity before `until` was placed on a board activated then (SPEC
    /// §7.5.3); the placements are its recorded `Ranked` effect.
    BoardSeeded {
        board_id: Uuid,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

/// One journal entry of a user stream: the record and the effects it had when it was
/// applied live (leaderboards, webhooks and pushes consume these; replay reads the recorded
/// achievement completions from them instead of re-evaluating against today's catalog).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journaled {
    pub record: UserRecord,
    pub effects: Vec<Effect>,
    /// The due instant (ms) filed with this record.
    pub due: Option<i64>,
}

impl UserRecord {
    /// The effective streak configuration the record was decided with, where it has one.
    pub fn streak_config(&self) -> Option<&StreakConfig> {
        match self {
            UserRecord::Event(ev) => Some(&ev.streak),
            UserRecord::Profile { streak, .. }
            | UserRecord::Advanced { streak, .. }
            | UserRecord::FreezesGranted { streak, .. }
            | UserRecord::StreakRestored { streak, .. }
            | UserRecord::StreakReset { streak, .. }
            | UserRecord::ApiCompleted { streak, .. } => Some(streak),
            _ => None,
        }
    }

    /// The instant the record happened, where it has one.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        match self {
            UserRecord::Event(ev) => Some(ev.at),
            UserRecord::Profile { profile, .. } => Some(profile.updated),
            UserRecord::Advanced { at, .. }
            | UserRecord::StreakRestored { at, .. }
            | UserRecord::StreakReset { at, .. }
            | UserRecord::ApiCompleted { at, .. }
            | UserRecord::Backfill { at, .. }
            | UserRecord::BoardSeeded { at, .. } => Some(*at),
            _ => None,
        }
    }
}
