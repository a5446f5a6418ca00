//! The pure decisions that turn a [`Command`] into a record or an answer.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::achievements::AchievementStatus;
use crate::catalog::leaderboards::LeaderboardStatus;
use crate::catalog::{check_days_off, AttributeKind, Catalog};
use crate::rules::profile::{apply_write, UserProfile};
use crate::rules::streak::{self, local_date, Pause, StreakConfig};
use crate::rules::summary::bucket_of;

/// Idempotency keys already used that a command mentions: (metric id, key) → the event id
/// they produced (SPEC §1.5). The actor looks them up before deciding; they are stored as
/// their own rows, not in the state every snapshot rewrites.
pub type SeenKeys = HashMap<(Uuid, String), Uuid>;

/// The idempotency key (under the board's id) that marks a user as seeded on a board.
pub const SEED_KEY: &str = "leaderboard-seed";

/// The index slot of an idempotency key: the metric id's 16 bytes, then the key.
pub fn idempotency_slot(metric_id: Uuid, key: &str) -> Vec<u8> {
    let mut slot = metric_id.as_bytes().to_vec();
    slot.extend_from_slice(key.as_bytes());
    slot
}

/// What [`decide`] concluded: a record to journal, or an answer that changes nothing.
#[derive(Debug)]
// Returned once per command and consumed at once; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    Record(UserRecord),
    Answer(Outcome),
}

/// The inputs of a decision that are not in the state or the command.
pub struct Context<'a> {
    pub user_id: &'a str,
    pub catalog: &'a Catalog,
    pub now: DateTime<Utc>,
    /// Fresh id for a new event or completion.
    pub new_id: Uuid,
    /// Whether a user created now joins the control cohort.
    pub control: bool,
    /// The idempotency keys of the command that were used before.
    pub seen: &'a SeenKeys,
}

fn require_user(state: &UserState) -> Result<&UserProfile, UserError> {
    state.profile.as_ref().ok_or(UserError::NotFound)
}

/// Decides `command` against `state`. Pure: time, ids and randomness come in `ctx`.
pub fn decide(
    state: &UserState,
    command: &Command,
    ctx: &Context<'_>,
) -> Result<Decision, UserError> {
    let cfg = effective_streak(ctx.catalog, &state.preferences);
    let tz_name = || state.time_zone().name().to_string();
    let record = match command {
        Command::WriteProfile { mode, write } => {
            let existing = state.profile.as_ref();
            match (mode, existing) {
                (WriteMode::Create, Some(_)) => return Err(UserError::AlreadyExists),
                (WriteMode::Update, None) => return Err(UserError::NotFound),
                _ => {}
            }
            UserRecord::Profile {
                profile: apply_write(
                    existing,
                    ctx.user_id,
                    write,
                    ctx.catalog,
                    ctx.now,
                    ctx.control,
                )?,
                streak: cfg,
            }
        }
        Command::RecordEvent(event) => return decide_event(state, event, ctx, cfg),
        Command::CheckEvents(events) => {
            let mut sim = state.clone();
            let mut seen = ctx.seen.clone();
            for event in events {
                let sim_ctx = Context {
                    seen: &seen,
                    ..*ctx
                };
                if let Decision::Record(record) = decide_event(&sim, event, &sim_ctx, cfg.clone())?
                {
                    sim.apply_collect(&record, Apply::Live(ctx.catalog));
                    if let (UserRecord::Event(ev), Some(key)) = (&record, &event.idempotency_key) {
                        seen.insert((ev.metric_id, key.clone()), ev.event_id);
                    }
                }
            }
            return Ok(Decision::Answer(Outcome::Checked));
        }
        Command::Advance { at } => {
            require_user(state)?;
            UserRecord::Advanced {
                at: at.map_or(ctx.now, |t| t.min(ctx.now)),
                tz: tz_name(),
                streak: cfg,
            }
        }
        Command::SetPreferences(write) => UserRecord::Preferences {
            preferences: decide_preferences(state, write, ctx.catalog)?,
        },
        Command::GrantFreezes { count } => {
            require_user(state)?;
            UserRecord::FreezesGranted {
                count: *count,
                streak: cfg,
            }
        }
        Command::AddPause { id, start, end } => {
            let profile = require_user(state)?;
            let today = local_date(ctx.now, profile.time_zone());
            if *start < today {
                return Err(UserError::Invalid(
                    "Pause start cannot be in the past".into(),
                ));
            }
            if end < start {
                return Err(UserError::Invalid(
                    "Pause end must not be before its start".into(),
                ));
            }
            let overlaps = state
                .streak
                .pauses
                .iter()
                .any(|p| !p.archived && p.start <= *end && *start <= p.end);
            if overlaps {
                return Err(UserError::Invalid(
                    "Pause overlaps another pause of this user".into(),
                ));
            }
            UserRecord::PauseAdded {
                pause: Pause {
                    id: *id,
                    start: *start,
                    end: *end,
                    archived: false,
                },
            }
        }
        Command::RemovePause { id } => {
            if !state
                .streak
                .pauses
                .iter()
                .any(|p| p.id == *id && !p.archived)
            {
                return Err(UserError::Invalid("Streak pause not found by ID".into()));
            }
            UserRecord::PauseRemoved { id: *id }
        }
        Command::RestoreStreak => {
            require_user(state)?;
            let mut trial = state.streak_for(&cfg, ctx.now).into_owned();
            if trial.restore(&cfg, ctx.now, state.time_zone()).is_none() {
                return Ok(Decision::Answer(Outcome::Restored(None)));
            }
            UserRecord::StreakRestored {
                at: ctx.now,
                tz: tz_name(),
                streak: cfg,
            }
        }
        Command::CompleteAchievement { key, user } => {
            let a = ctx
                .catalog
                .api_achievement(key)
                .filter(|a| a.status != AchievementStatus::Inactive)
                .ok_or(UserError::AchievementNotFound)?;
            if let Some(done) = state.completed.get(&a.id) {
                return Ok(Decision::Answer(Outcome::Completed {
                    achievement_id: a.id,
                    completion: done.clone(),
                    effects: Vec::new(),
                }));
            }
            let existing = state.profile.as_ref();
            let profile = apply_write(
                existing,
                ctx.user_id,
                user,
                ctx.catalog,
                ctx.now,
                ctx.control,
            )?;
            if a.status == AchievementStatus::Locked {
                return Err(UserError::AchievementLocked);
            }
            let mut trial = state.clone();
            trial.profile = Some(profile.clone());
            if !trial.eligible(ctx.catalog, a) {
                return Err(UserError::NotEligible);
            }
            UserRecord::ApiCompleted {
                profile: (existing.is_none() || !user.is_empty()).then_some(profile),
                streak: cfg,
                achievement_id: a.id,
                completion_id: ctx.new_id,
                at: ctx.now,
            }
        }
        Command::Backfill { achievement_id } => {
            let Some(a) = ctx.catalog.achievement(*achievement_id) else {
                return Ok(Decision::Answer(Outcome::Advanced));
            };
            if state.profile.is_none()
                || state.completed.contains_key(achievement_id)
                || a.status != AchievementStatus::Active
                || !state.eligible(ctx.catalog, a)
                || !state.qualifies(ctx.catalog, a, ctx.now)
            {
                return Ok(Decision::Answer(Outcome::Advanced));
            }
            UserRecord::Backfill {
                achievement_id: *achievement_id,
                at: ctx.now,
            }
        }
        Command::SeedBoard { board_id, until } => {
            let active = ctx
                .catalog
                .leaderboard(*board_id)
                .is_some_and(|b| b.status_at(ctx.now) != LeaderboardStatus::Inactive);
            if state.profile.is_none()
                || !active
                || ctx.seen.contains_key(&(*board_id, SEED_KEY.to_string()))
            {
                return Ok(Decision::Answer(Outcome::Advanced));
            }
            UserRecord::BoardSeeded {
                board_id: *board_id,
                until: *until,
                at: ctx.now,
            }
        }
        Command::ResetStreak => {
            require_user(state)?;
            UserRecord::StreakReset {
                at: ctx.now,
                tz: tz_name(),
                streak: cfg,
            }
        }
    };
    Ok(Decision::Record(record))
}

/// SPEC §3.2.4 steps that exist so far: idempotency, validation, upsert, total, streak.
fn decide_event(
    state: &UserState,
    event: &NewEvent,
    ctx: &Context<'_>,
    cfg: StreakConfig,
) -> Result<Decision, UserError> {
    if ctx.catalog.metric(event.metric_id).is_none() {
        return Err(UserError::MetricNotFound);
    }
    if let Some(key) = &event.idempotency_key {
        if let Some(&original) = ctx.seen.get(&(event.metric_id, key.clone())) {
            return Ok(Decision::Answer(Outcome::Event(EventOutcome::Replayed {
                event_id: original,
                total: state.total(event.metric_id),
                streak: streak::view(
                    &state.streak_for(&cfg, ctx.now),
                    &cfg,
                    ctx.now,
                    state.time_zone(),
                ),
            })));
        }
    }
    let unknown = ctx
        .catalog
        .unknown_attribute_keys(AttributeKind::Event, event.attributes.keys());
    if !unknown.is_empty() {
        return Err(UserError::InvalidEventAttributes(unknown));
    }
    let existing = state.profile.as_ref();
    let profile = apply_write(
        existing,
        ctx.user_id,
        &event.user,
        ctx.catalog,
        ctx.now,
        ctx.control,
    )?;
    let user_created = existing.is_none();
    let total = state.total(event.metric_id) + event.value;
    // Totals and history stay finite: an infinite total could not be written as JSON and
    // would poison the journal.
    let bucket = state
        .metrics
        .get(&event.metric_id)
        .and_then(|m| m.buckets.get(&bucket_of(ctx.now)))
        .copied()
        .unwrap_or(0.0);
    // Every running sum the event feeds must stay finite too: per-attribute totals and the
    // current streak period's sum.
    let attr_sum = state
        .attr_totals
        .get(&event.metric_id)
        .and_then(|rows| rows.iter().find(|(attrs, _)| *attrs == event.attributes))
        .map_or(0.0, |(_, v)| *v);
    let period_sum = state
        .streak
        .periods
        .back()
        .and_then(|p| p.sums.get(&event.metric_id))
        .copied()
        .unwrap_or(0.0);
    if !total.is_finite()
        || !(bucket + event.value).is_finite()
        || !(attr_sum + event.value).is_finite()
        || !(period_sum + event.value).is_finite()
    {
        return Err(UserError::TotalOutOfRange);
    }
    // The profile is journaled only when this event changes it, which keeps the per-event
    // record small on the hot path.
    let profile_changed = user_created || !event.user.is_empty();
    let record = UserRecord::Event(EventRecord {
        event_id: ctx.new_id,
        metric_id: event.metric_id,
        value: event.value,
        at: ctx.now,
        tz: profile.time_zone().name().to_string(),
        attributes: event.attributes.clone(),
        idempotency_key: event.idempotency_key.clone(),
        profile: profile_changed.then_some(profile),
        user_created,
        streak: cfg,
    });
    // A deduction that may not overdraw is checked on a copy, only when one exists.
    if ctx.catalog.may_block_events() && state.clone().apply_live(&record, ctx.catalog).1 {
        return Err(UserError::InsufficientPoints);
    }
    Ok(Decision::Record(record))
}

/// Notification types and channels of SPEC §2.4.1.
const NOTIFICATION_TYPES: &[&str] = &[
    "achievement_completed",
    "recap",
    "reactivation",
    "streak_reminder",
];
const CHANNELS: &[&str] = &["email", "push"];

fn decide_preferences(
    state: &UserState,
    write: &PreferencesWrite,
    catalog: &Catalog,
) -> Result<Preferences, UserError> {
    require_user(state)?;
    let mut prefs = state.preferences.clone();
    for (kind, channels) in &write.notifications {
        if !NOTIFICATION_TYPES.contains(&kind.as_str()) {
            return Err(UserError::Invalid(format!(
                "Unknown notification type: {kind}"
            )));
        }
        let mut list: Vec<String> = Vec::new();
        for c in channels {
            if !CHANNELS.contains(&c.as_str()) {
                return Err(UserError::Invalid(format!(
                    "Unknown notification channel: {c}"
                )));
            }
            if !list.contains(c) {
                list.push(c.clone());
            }
        }
        prefs.notifications.insert(kind.clone(), list);
    }
    let customizes = write.streak_mode.is_some()
        || write.streak_metrics.is_some()
        || write.streak_days_off.is_some();
    if customizes && !catalog.streak.customization_enabled {
        return Err(UserError::CustomizationDisabled);
    }
    if customizes || write.streak_enabled.is_some() {
        let mut own = prefs.streak.clone().unwrap_or_default();
        if let Some(e) = write.streak_enabled {
            own.enabled = Some(e);
        }
        if let Some(m) = write.streak_mode {
            own.mode = Some(m);
        }
        if let Some(items) = &write.streak_metrics {
            own.metrics = Some(catalog.streak_metrics(items).map_err(UserError::Invalid)?);
        }
        if let Some(days) = &write.streak_days_off {
            own.days_off = Some(check_days_off(days).map_err(UserError::Invalid)?);
        }
        prefs.streak = Some(own);
    }
    Ok(prefs)
}
