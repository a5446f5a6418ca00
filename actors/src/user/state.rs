//! The state of one user, and the facts about it that reads and rules need.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::PointsBalance;
use crate::achievements::{Achievement, AchievementStatus, Trigger};
use crate::catalog::Catalog;
use crate::rules::achievements::{self as achievement_rules, anniversary, UserFacts};
use crate::rules::profile::UserProfile;
use crate::rules::streak::{
    self, local_date, Frequency, Mode, StreakConfig, StreakState, StreakView,
};
use crate::rules::summary::Buckets;

/// One metric of one user: the running total and its history by quarter-hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricHistory {
    pub total: f64,
    pub buckets: Buckets,
}

/// The user's own streak settings (SPEC §2.4.2); `None` fields follow the org.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreakPreferences {
    pub enabled: Option<bool>,
    pub mode: Option<Mode>,
    pub metrics: Option<Vec<(Uuid, f64)>>,
    pub days_off: Option<Vec<u8>>,
}

/// `GET|PATCH /users/{id}/preferences` (SPEC §2.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preferences {
    /// Notification type → channels; a type never set is absent.
    pub notifications: BTreeMap<String, Vec<String>>,
    /// Present once any streak preference was set.
    pub streak: Option<StreakPreferences>,
}

/// Everything Kudos knows about one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// `None` until the user is created.
    pub profile: Option<UserProfile>,
    pub metrics: BTreeMap<Uuid, MetricHistory>,
    pub streak: StreakState,
    pub preferences: Preferences,
    /// Achievement id → its completion. Permanent (SPEC §4.1.3).
    pub completed: BTreeMap<Uuid, Completion>,
    /// Per metric: totals of events by their attribute combination (events with attributes
    /// only), for metric achievements with event filters over the full history.
    pub attr_totals: BTreeMap<Uuid, Vec<AttributeTotal>>,
    /// The due instant (ms) filed for this user with its last record, so that the next
    /// record moves exactly that entry of the due index.
    pub filed_due: Option<i64>,
    /// Points system id → the user's balance (SPEC §6). Added in codec version 2.
    pub points: BTreeMap<Uuid, PointsBalance>,
    /// "Due" notification bookkeeping (SPEC §8.5). Added in codec version 3.
    pub notices: crate::rules::notices::Notices,
    /// Wrapped bookkeeping (SPEC §9.3). Added in codec version 4.
    pub wrapped: super::wrapped::WrappedLog,
}

/// The total of a metric's events that carried exactly these attributes.
pub type AttributeTotal = (BTreeMap<String, String>, f64);

/// A completed achievement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub completion_id: Uuid,
    pub at: DateTime<Utc>,
}

/// The streak configuration in force for a user: org settings, with the user's overrides
/// while customization is enabled (SPEC §2.4.6). Deleted metrics drop out.
pub fn effective_streak(catalog: &Catalog, prefs: &Preferences) -> StreakConfig {
    let org = &catalog.streak;
    let own = prefs.streak.clone().unwrap_or_default();
    let custom = org.customization_enabled;
    let metrics = match (&own.metrics, custom) {
        (Some(m), true) => m.clone(),
        _ => org.metrics.clone(),
    };
    let days_off = match (&own.days_off, custom) {
        (Some(d), true) => d.clone(),
        _ => org.days_off.clone(),
    };
    StreakConfig {
        enabled: own.enabled.unwrap_or(true),
        frequency: org.frequency,
        mode: own.mode.filter(|_| custom).unwrap_or(org.mode),
        metrics: metrics
            .into_iter()
            .filter(|(id, _)| catalog.metric(*id).is_some())
            .collect(),
        days_off: if org.frequency == Frequency::Daily {
            days_off
        } else {
            Vec::new()
        },
        freezes: org.freezes.clone(),
    }
}

impl UserState {
    pub fn total(&self, metric_id: Uuid) -> f64 {
        self.metrics.get(&metric_id).map_or(0.0, |m| m.total)
    }

    pub fn time_zone(&self) -> Tz {
        self.profile
            .as_ref()
            .map_or(Tz::UTC, UserProfile::time_zone)
    }

    /// The streak state to read under `cfg`: rebuilt for a new frequency if the org switched
    /// since this user's last record (nothing is written by a read).
    pub fn streak_for(
        &self,
        cfg: &StreakConfig,
        now: DateTime<Utc>,
    ) -> std::borrow::Cow<'_, StreakState> {
        if self.streak.frequency.is_none_or(|f| f == cfg.frequency) {
            return std::borrow::Cow::Borrowed(&self.streak);
        }
        let mut copy = self.clone();
        copy.sync_frequency(cfg, now);
        std::borrow::Cow::Owned(copy.streak)
    }

    /// The streak as of `now` (pending period ends applied to a copy).
    pub fn streak_view(&self, catalog: &Catalog, now: DateTime<Utc>) -> StreakView {
        let cfg = effective_streak(catalog, &self.preferences);
        streak::view(&self.streak_for(&cfg, now), &cfg, now, self.time_zone())
    }

    /// Whether the user's current attributes satisfy every user filter of `a`.
    pub fn eligible(&self, catalog: &Catalog, a: &Achievement) -> bool {
        achievement_rules::matches_user_filters(&a.user_filters, catalog, &self.facts(catalog))
    }

    /// Whether the user satisfies the trigger of `a` now (api achievements never do).
    pub(crate) fn qualifies(&self, catalog: &Catalog, a: &Achievement, at: DateTime<Utc>) -> bool {
        achievement_rules::qualifies(a, catalog, &self.facts(catalog), at)
    }

    /// This state as seen by the pure rules.
    pub fn facts<'a>(&'a self, catalog: &'a Catalog) -> Facts<'a> {
        Facts {
            state: self,
            catalog,
        }
    }

    /// When time alone next changes this user: a streak period end, a freeze to earn, an
    /// anniversary achievement coming due, a time trigger firing, or a notice coming due.
    pub fn next_due(&self, catalog: &Catalog, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cfg = effective_streak(catalog, &self.preferences);
        let tz = self.time_zone();
        let streak = self.streak.next_due(&cfg, tz);
        let today = local_date(now, tz);
        let anniversary_due =
            self.profile
                .as_ref()
                .and_then(|p| p.sign_up_date)
                .and_then(|sign_up| {
                    catalog
                        .achievements()
                        .filter(|a| {
                            a.status == AchievementStatus::Active
                                && !self.completed.contains_key(&a.id)
                        })
                        .filter_map(|a| match a.trigger {
                            Trigger::Anniversary { years } => anniversary(sign_up, years),
                            _ => None,
                        })
                        .filter(|d| *d > today)
                        .min()
                        .map(|d| crate::rules::summary::local_midnight(tz, d))
                });
        [
            streak,
            anniversary_due,
            self.next_time_firing(catalog),
            self.next_boost_announcement(catalog),
            self.next_notice(catalog, now),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// A user's state with the catalog it is read under, as the pure rules see it.
pub struct Facts<'a> {
    state: &'a UserState,
    catalog: &'a Catalog,
}

impl UserFacts for Facts<'_> {
    fn metric_total(&self, metric_id: Uuid) -> f64 {
        self.state.total(metric_id)
    }

    fn attribute_totals(&self, metric_id: Uuid) -> &[(BTreeMap<String, String>, f64)] {
        self.state
            .attr_totals
            .get(&metric_id)
            .map_or(&[], Vec::as_slice)
    }

    // Pending period ends and a frequency switch applied.
    fn streak_length(&self, at: DateTime<Utc>) -> u32 {
        self.state.streak_view(self.catalog, at).length
    }

    fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        local_date(at, self.state.time_zone())
    }

    fn sign_up_date(&self) -> Option<NaiveDate> {
        self.state.profile.as_ref().and_then(|p| p.sign_up_date)
    }

    fn has_completed(&self, achievement_id: Uuid) -> bool {
        self.state.completed.contains_key(&achievement_id)
    }

    fn user_attribute(&self, key: &str) -> Option<&str> {
        self.state
            .profile
            .as_ref()
            .and_then(|p| p.attributes.get(key))
            .map(String::as_str)
    }
}
