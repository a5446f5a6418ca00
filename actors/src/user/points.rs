//! A user's points (SPEC §6): balances per system, and the live evaluation that turns what a
//! record did (a metric event, a streak extension, an achievement completion, the user's
//! creation) into awards. Awards, accumulator updates and level changes are decided here
//! once, recorded as effects, and only folded on replay.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;
use crate::catalog::points::{PointsBoost, PointsTrigger, TriggerKind};
use crate::catalog::Catalog;
use crate::rules::achievements::{event_filter_keys, matches_all, matches_user_filters};
use crate::rules::points::{
    blocks, boosted, clamp_award, combined_rounding, due_firings, in_window, streak_fires,
    time_firing, Accumulator, TimeCursor, MAX_CATCH_UP,
};
use crate::rules::points::{boost_moments, due_announcements, next_announcement, BoostPhase};
use crate::rules::streak::{local_date, StreakEvent};
use crate::rules::summary::{bucket_of, Buckets};

/// How many recent awards a balance keeps for reads (`awards` is 1–100, SPEC §6.7.2); the
/// journal keeps every award.
pub const AWARDS_KEPT: usize = 100;

/// One award (SPEC §6.2.3): what a trigger firing added, and the total after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Award {
    pub id: Uuid,
    pub trigger_id: Uuid,
    pub awarded: i64,
    pub total: i64,
    pub at: DateTime<Utc>,
    /// The boosts that multiplied it.
    pub boosts: Vec<Uuid>,
}

/// A user's standing in one points system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PointsBalance {
    pub total: i64,
    /// The level last reached (changes are recorded with the award that caused them).
    pub level: Option<Uuid>,
    /// The most recent awards, oldest first.
    pub awards: VecDeque<Award>,
    /// Points added by quarter-hour, for the event summary.
    pub buckets: Buckets,
    /// Metric trigger id → its accumulator for this user.
    pub accumulators: BTreeMap<Uuid, Accumulator>,
    /// Time trigger id → the firings paid to this user.
    pub time: BTreeMap<Uuid, TimeCursor>,
    /// The user's own boost id → how far its announcements went (SPEC §8.4).
    pub announced: BTreeMap<Uuid, BoostPhase>,
}

/// What a record gave the points evaluation to react to.
#[derive(Default)]
struct Firing<'a> {
    created: bool,
    event: Option<&'a EventRecord>,
    streak_length: Option<u32>,
    completed: Vec<Uuid>,
    /// Time passed (an `Advanced` record): time triggers due by then fire.
    until: Option<DateTime<Utc>>,
}

/// The result of a live points evaluation.
pub(crate) struct PointsOutcome {
    /// A `blockIfOutOfPoints` deduction would have gone below zero (SPEC §6.4.2).
    pub blocked: bool,
}

impl UserState {
    pub fn balance(&self, system_id: Uuid) -> Option<&PointsBalance> {
        self.points.get(&system_id)
    }

    /// Folds a points effect decided live (the only points change replay makes).
    pub(crate) fn fold_points(&mut self, effect: &Effect) {
        match effect {
            Effect::PointsAwarded {
                system_id, award, ..
            } => {
                let b = self.points.entry(*system_id).or_default();
                b.total = award.total;
                *b.buckets.entry(bucket_of(award.at)).or_default() += award.awarded as f64;
                b.awards.push_back(award.clone());
                while b.awards.len() > AWARDS_KEPT {
                    b.awards.pop_front();
                }
            }
            Effect::PointsProgress {
                system_id,
                trigger_id,
                accumulator,
            } => {
                self.points
                    .entry(*system_id)
                    .or_default()
                    .accumulators
                    .insert(*trigger_id, *accumulator);
            }
            Effect::BoostStarted {
                boost_id,
                system_id,
                user_id: Some(_),
                ..
            }
            | Effect::BoostFinished {
                boost_id,
                system_id,
                user_id: Some(_),
                ..
            } => {
                let phase = if matches!(effect, Effect::BoostStarted { .. }) {
                    BoostPhase::Started
                } else {
                    BoostPhase::Finished
                };
                self.points
                    .entry(*system_id)
                    .or_default()
                    .announced
                    .insert(*boost_id, phase);
            }
            Effect::PointsTimeProgress {
                system_id,
                trigger_id,
                cursor,
            } => {
                self.points
                    .entry(*system_id)
                    .or_default()
                    .time
                    .insert(*trigger_id, *cursor);
            }
            Effect::PointsLevelChanged { system_id, new, .. } => {
                self.points.entry(*system_id).or_default().level = *new;
            }
            _ => {}
        }
    }

    /// Whether `boost` applies to this user at `at` (window in the user's zone, SPEC §6.6).
    pub fn boost_applies(&self, catalog: &Catalog, boost: &PointsBoost, at: DateTime<Utc>) -> bool {
        let Some(profile) = &self.profile else {
            return false;
        };
        let date = local_date(at, profile.time_zone());
        if boost.deleted || !in_window(date, boost.start, boost.end) {
            return false;
        }
        match &boost.user_id {
            Some(user) => *user == profile.id,
            None => matches_user_filters(&boost.user_filters, catalog, &self.facts(catalog)),
        }
    }

    /// Decides the awards of one record (SPEC §3.2.4 step 5): user creation, then metric,
    /// streak and achievement triggers, each in creation order; boosts, caps and levels
    /// applied per award. Every decision is pushed to `out` and folded at once.
    pub(crate) fn evaluate_points(
        &mut self,
        catalog: &Catalog,
        record: &UserRecord,
        at: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) -> PointsOutcome {
        let mut firing = Firing::default();
        match record {
            UserRecord::Event(ev) => firing.event = Some(ev),
            UserRecord::Advanced { at, .. } => firing.until = Some(*at),
            _ => {}
        }
        for e in out.iter() {
            match e {
                Effect::UserCreated { .. } => firing.created = true,
                Effect::Streak {
                    event: StreakEvent::Started { length } | StreakEvent::Extended { length },
                    ..
                } => firing.streak_length = Some(*length),
                Effect::AchievementCompleted {
                    achievement_id,
                    silent: false,
                    ..
                } => firing.completed.push(*achievement_id),
                _ => {}
            }
        }
        let mut outcome = PointsOutcome { blocked: false };
        if self.profile.is_none()
            || (!firing.created
                && firing.event.is_none()
                && firing.streak_length.is_none()
                && firing.completed.is_empty()
                && firing.until.is_none())
        {
            return outcome;
        }
        let user_id = self
            .profile
            .as_ref()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        // (trigger, multiples, instant) in the order they apply.
        let mut fired: Vec<(&PointsTrigger, u64, DateTime<Utc>)> = Vec::new();
        let eligible = |s: &Self, t: &PointsTrigger| {
            matches_user_filters(&t.user_filters, catalog, &s.facts(catalog))
        };
        if firing.created {
            fired.extend(
                catalog
                    .firing_triggers()
                    .filter(|t| matches!(t.kind, TriggerKind::UserCreation))
                    .filter(|t| eligible(self, t))
                    .map(|t| (t, 1, at)),
            );
        }
        if let Some(ev) = firing.event {
            for t in catalog.metric_triggers(ev.metric_id) {
                let TriggerKind::Metric {
                    threshold,
                    event_filters,
                    ..
                } = &t.kind
                else {
                    continue;
                };
                let matches = event_filters.is_empty()
                    || event_filter_keys(event_filters, catalog)
                        .is_some_and(|f| matches_all(&ev.attributes, &f));
                if !matches || !eligible(self, t) || ev.value == 0.0 {
                    continue;
                }
                let before = self
                    .points
                    .get(&t.system_id)
                    .and_then(|b| b.accumulators.get(&t.id))
                    .copied()
                    .unwrap_or_default();
                let (after, multiples) = before.add(ev.value, *threshold);
                let progress = Effect::PointsProgress {
                    system_id: t.system_id,
                    trigger_id: t.id,
                    accumulator: after,
                };
                self.fold_points(&progress);
                out.push(progress);
                if multiples > 0 {
                    fired.push((t, multiples, at));
                }
            }
        }
        if let Some(length) = firing.streak_length {
            fired.extend(
                catalog
                    .firing_triggers()
                    .filter(|t| matches!(t.kind, TriggerKind::Streak { length: n } if streak_fires(length, n)))
                    .filter(|t| eligible(self, t))
                    .map(|t| (t, 1, at)),
            );
        }
        for achievement in &firing.completed {
            fired.extend(
                catalog
                    .firing_triggers()
                    .filter(|t| matches!(t.kind, TriggerKind::Achievement { achievement_id } if achievement_id == *achievement))
                    .filter(|t| eligible(self, t))
                    .map(|t| (t, 1, at)),
            );
        }
        if let Some(until) = firing.until {
            let tz = self.time_zone();
            let mut budget = MAX_CATCH_UP;
            for t in catalog.time_triggers() {
                let (Some(anchor), Some(every)) = (self.time_anchor(t), t.kind.every()) else {
                    continue;
                };
                let before = self.time_cursor(t);
                let (instants, after) = due_firings(before, anchor, every, tz, until, budget);
                if after == before {
                    continue;
                }
                budget -= instants.len();
                let progress = Effect::PointsTimeProgress {
                    system_id: t.system_id,
                    trigger_id: t.id,
                    cursor: after,
                };
                self.fold_points(&progress);
                out.push(progress);
                // Filters are checked when the firing is paid: users who do not match at
                // that moment miss it (no retroactive awards).
                if eligible(self, t) {
                    fired.extend(instants.into_iter().map(|i| (t, 1, i)));
                }
            }
        }
        let mut touched: Vec<Uuid> = Vec::new();
        for (trigger, multiples, at) in fired {
            let base = trigger
                .points
                .saturating_mul(i64::try_from(multiples).unwrap_or(i64::MAX));
            let Some(system) = catalog.points_system(trigger.system_id) else {
                continue;
            };
            let before = self.points.get(&system.id).map_or(0, |b| b.total);
            if trigger.block_if_out_of_points && blocks(before, base) {
                outcome.blocked = true;
            }
            let (amount, boosts) = if base > 0 {
                let applied: Vec<&PointsBoost> = catalog
                    .points_boosts(system.id)
                    .filter(|b| self.boost_applies(catalog, b, at))
                    .collect();
                let multipliers: Vec<f64> = applied.iter().map(|b| b.multiplier).collect();
                let roundings: Vec<_> = applied.iter().map(|b| b.rounding).collect();
                (
                    boosted(base, &multipliers, combined_rounding(&roundings)),
                    applied.iter().map(|b| b.id).collect(),
                )
            } else {
                (base, Vec::new())
            };
            let awarded = clamp_award(before, amount, system.max_points);
            if awarded == 0 {
                continue;
            }
            let award = Effect::PointsAwarded {
                user_id: user_id.clone(),
                system_id: system.id,
                award: Award {
                    id: Uuid::new_v4(),
                    trigger_id: trigger.id,
                    awarded,
                    total: before + awarded,
                    at,
                    boosts,
                },
                from_creation: matches!(trigger.kind, TriggerKind::UserCreation),
            };
            self.fold_points(&award);
            out.push(award);
            if !touched.contains(&system.id) {
                touched.push(system.id);
            }
        }
        for system_id in touched {
            let balance = self.points.get(&system_id);
            let total = balance.map_or(0, |b| b.total);
            let new = catalog.level_for(system_id, total).map(|l| l.id);
            let previous = balance.and_then(|b| b.level);
            if new != previous {
                let change = Effect::PointsLevelChanged {
                    user_id: user_id.clone(),
                    system_id,
                    previous,
                    new,
                };
                self.fold_points(&change);
                out.push(change);
            }
        }
        outcome
    }
}

impl UserState {
    /// What a time trigger counts from for this user: max(creation, activation).
    fn time_anchor(&self, t: &PointsTrigger) -> Option<DateTime<Utc>> {
        let created = self.profile.as_ref()?.created;
        Some(t.active_since?.max(created))
    }

    fn time_cursor(&self, t: &PointsTrigger) -> TimeCursor {
        self.points
            .get(&t.system_id)
            .and_then(|b| b.time.get(&t.id))
            .copied()
            .unwrap_or_default()
    }

    fn announced(&self, b: &PointsBoost) -> Option<BoostPhase> {
        self.points
            .get(&b.system_id)
            .and_then(|p| p.announced.get(&b.id))
            .copied()
    }

    /// Announces the user's own boosts whose start or end moment passed by `at` (00:00
    /// local on `start` and on `end + 1`, SPEC §8.4.2). A boost created after its start is
    /// announced by the user's next record (the admin API sends one at once).
    pub(crate) fn announce_boosts(
        &mut self,
        catalog: &Catalog,
        at: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        let Some(profile) = &self.profile else {
            return;
        };
        let (user_id, tz) = (profile.id.clone(), profile.time_zone());
        let mut made = Vec::new();
        for b in catalog.boosts_for_user(&user_id) {
            let moments = boost_moments(b.start, b.end, Some(tz));
            for phase in due_announcements(moments, self.announced(b), at) {
                let (boost_id, system_id, user_id) = (b.id, b.system_id, Some(user_id.clone()));
                made.push(match phase {
                    BoostPhase::Started => Effect::BoostStarted {
                        boost_id,
                        system_id,
                        user_id,
                        at,
                    },
                    BoostPhase::Finished => Effect::BoostFinished {
                        boost_id,
                        system_id,
                        user_id,
                        at,
                    },
                });
            }
        }
        for e in made {
            self.fold_points(&e);
            out.push(e);
        }
    }

    /// The next announcement of one of the user's own boosts.
    pub(crate) fn next_boost_announcement(&self, catalog: &Catalog) -> Option<DateTime<Utc>> {
        let profile = self.profile.as_ref()?;
        let tz = profile.time_zone();
        catalog
            .boosts_for_user(&profile.id)
            .filter_map(|b| {
                next_announcement(boost_moments(b.start, b.end, Some(tz)), self.announced(b))
            })
            .min()
    }

    /// The next instant a time trigger fires for this user (it files a due entry for it).
    pub(crate) fn next_time_firing(&self, catalog: &Catalog) -> Option<DateTime<Utc>> {
        let tz = self.time_zone();
        catalog
            .time_triggers()
            .filter_map(|t| {
                let anchor = self.time_anchor(t)?;
                let cursor = self.time_cursor(t);
                let paid = if cursor.anchor_ms == anchor.timestamp_millis() {
                    cursor.paid
                } else {
                    0
                };
                time_firing(anchor, t.kind.every()?, tz, paid + 1)
            })
            .min()
    }
}

/// The `UserState` layout of codec version 1 (before points), for old snapshots.
#[derive(Deserialize)]
pub(crate) struct UserStateV1 {
    profile: Option<crate::rules::profile::UserProfile>,
    metrics: BTreeMap<Uuid, MetricHistory>,
    streak: crate::rules::streak::StreakState,
    preferences: Preferences,
    completed: BTreeMap<Uuid, Completion>,
    attr_totals: BTreeMap<Uuid, Vec<AttributeTotal>>,
    filed_due: Option<i64>,
}

/// The `UserState` layout of codec version 2: version 1's, then points. (Postcard writes a
/// struct as its fields one after the other, so a nested struct reads the same bytes.)
#[derive(Deserialize)]
pub(crate) struct UserStateV2 {
    v1: UserStateV1,
    points: BTreeMap<Uuid, PointsBalance>,
}

/// The `UserState` layout of codec version 3: version 2's, then the notice bookkeeping.
#[derive(Deserialize)]
pub(crate) struct UserStateV3 {
    v2: UserStateV2,
    notices: crate::rules::notices::Notices,
}

impl From<UserStateV3> for UserState {
    fn from(v: UserStateV3) -> Self {
        let UserStateV2 { v1, points } = v.v2;
        let wrapped = super::wrapped::WrappedLog::from_history(
            v1.metrics.values().map(|m| &m.buckets),
            &v1.streak,
        );
        UserState {
            profile: v1.profile,
            metrics: v1.metrics,
            streak: v1.streak,
            preferences: v1.preferences,
            completed: v1.completed,
            attr_totals: v1.attr_totals,
            filed_due: v1.filed_due,
            points,
            notices: v.notices,
            wrapped,
        }
    }
}

impl From<UserStateV2> for UserState {
    fn from(v2: UserStateV2) -> Self {
        UserStateV3 {
            v2,
            notices: Default::default(),
        }
        .into()
    }
}

impl From<UserStateV1> for UserState {
    fn from(v1: UserStateV1) -> Self {
        UserStateV2 {
            v1,
            points: BTreeMap::new(),
        }
        .into()
    }
}
