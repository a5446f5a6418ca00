//! Typed reads of one user: each query is a type whose answer is a domain view, computed
//! inside the user's actor against its current state and the current catalog. HTTP handlers
//! ask these questions; they never see [`UserState`]'s fields.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::*;
use crate::achievements::{Achievement, AchievementStatus, Trigger};
use crate::catalog::{Catalog, Metric};
use crate::rules::profile::UserProfile;
use crate::rules::streak::{self, HistoryRow, Pause, StreakView};
use crate::rules::summary::{summarize, Aggregation, SummaryRow};

/// A question about one existing user. Answered only for users that exist (a query for an
/// id never written, or written but not created, answers "not found" to its caller).
pub trait UserQuery: Send + Sync + 'static {
    type Answer: Send + 'static;
    /// `profile` is the user's (present: the query runs only for existing users).
    fn answer(
        &self,
        user: &UserState,
        profile: &UserProfile,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Self::Answer;
}

/// A query with its answer channel, as the actor's mailbox carries it.
pub trait PendingQuery: Send {
    /// Answers for an existing user; dropping it unanswered tells the caller to retry.
    fn run(self: Box<Self>, user: &UserState, catalog: &Catalog, now: DateTime<Utc>);
}

/// [`PendingQuery`] for any [`UserQuery`]: `None` when the user does not exist.
pub struct Asked<Q: UserQuery> {
    pub query: std::sync::Arc<Q>,
    pub reply: tokio::sync::oneshot::Sender<Option<Q::Answer>>,
}

impl<Q: UserQuery> PendingQuery for Asked<Q> {
    fn run(self: Box<Self>, user: &UserState, catalog: &Catalog, now: DateTime<Utc>) {
        let answer = user
            .profile
            .as_ref()
            .map(|profile| self.query.answer(user, profile, catalog, now));
        let _ = self.reply.send(answer);
    }
}

/// The user's profile (`GET /users/{id}`).
pub struct ProfileQuery;

impl UserQuery for ProfileQuery {
    type Answer = UserProfile;
    fn answer(
        &self,
        _: &UserState,
        profile: &UserProfile,
        _: &Catalog,
        _: DateTime<Utc>,
    ) -> UserProfile {
        profile.clone()
    }
}

/// The user's preferences (`GET /users/{id}/preferences`).
pub struct PreferencesQuery;

impl UserQuery for PreferencesQuery {
    type Answer = Preferences;
    fn answer(
        &self,
        user: &UserState,
        _: &UserProfile,
        _: &Catalog,
        _: DateTime<Utc>,
    ) -> Preferences {
        user.preferences.clone()
    }
}

/// The current streak as of now.
pub struct StreakViewQuery;

impl UserQuery for StreakViewQuery {
    type Answer = StreakView;
    fn answer(
        &self,
        user: &UserState,
        _: &UserProfile,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> StreakView {
        user.streak_view(catalog, now)
    }
}

/// The streak with its history and upcoming pauses (`GET /users/{id}/streak`).
pub struct StreakQuery {
    pub history_periods: usize,
}

/// The answer of [`StreakQuery`].
#[derive(Debug, Clone)]
pub struct StreakDetail {
    pub view: StreakView,
    pub history: Vec<HistoryRow>,
    /// Active pauses not yet over, by start.
    pub pauses: Vec<Pause>,
    pub freezes_enabled: bool,
}

impl UserQuery for StreakQuery {
    type Answer = StreakDetail;
    fn answer(
        &self,
        user: &UserState,
        _: &UserProfile,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> StreakDetail {
        let cfg = effective_streak(catalog, &user.preferences);
        let tz = user.time_zone();
        let current = user.streak_for(&cfg, now);
        let today = streak::local_date(now, tz);
        let mut pauses: Vec<Pause> = user
            .streak
            .pauses
            .iter()
            .filter(|p| !p.archived && p.end >= today)
            .cloned()
            .collect();
        pauses.sort_by_key(|p| p.start);
        StreakDetail {
            view: streak::view(&current, &cfg, now, tz),
            history: streak::history(&current, &cfg, now, tz, self.history_periods),
            pauses,
            freezes_enabled: cfg.freezes.is_some(),
        }
    }
}

/// A metric total with the current streak (an idempotent replay's answer).
pub struct TotalQuery {
    pub metric_id: Uuid,
}

impl UserQuery for TotalQuery {
    type Answer = (f64, StreakView);
    fn answer(
        &self,
        user: &UserState,
        _: &UserProfile,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Self::Answer {
        (user.total(self.metric_id), user.streak_view(catalog, now))
    }
}

/// An achievement as one user sees it: `None` when not completed.
pub type AchievementRow = (Achievement, Option<DateTime<Utc>>);

/// `GET /users/{id}/achievements`: completed achievements (not inactive ones) by completion
/// time, then, with `include_incomplete`, the active ones the user may still earn.
pub struct AchievementsQuery {
    pub include_incomplete: bool,
}

impl UserQuery for AchievementsQuery {
    type Answer = Vec<AchievementRow>;
    fn answer(
        &self,
        user: &UserState,
        _: &UserProfile,
        catalog: &Catalog,
        _: DateTime<Utc>,
    ) -> Self::Answer {
        let mut done: Vec<AchievementRow> = user
            .completed
            .iter()
            .filter_map(|(aid, c)| catalog.achievement(*aid).map(|a| (a.clone(), Some(c.at))))
            .filter(|(a, _)| a.status != AchievementStatus::Inactive)
            .collect();
        // By completion time; completions of one instant in creation order.
        done.sort_by_key(|(a, at)| (*at, a.ord));
        if self.include_incomplete {
            done.extend(
                catalog
                    .achievements()
                    .filter(|a| a.status == AchievementStatus::Active)
                    .filter(|a| !user.completed.contains_key(&a.id) && user.eligible(catalog, a))
                    .map(|a| (a.clone(), None)),
            );
        }
        done
    }
}

/// One metric as one user sees it (`MetricResponse`, SPEC §3.5).
#[derive(Debug, Clone)]
pub struct MetricView {
    pub metric: Metric,
    pub total: f64,
    /// The metric's active achievements the user may earn, plus locked ones they completed,
    /// by threshold.
    pub achievements: Vec<AchievementRow>,
}

/// `GET /users/{id}/metrics[/{key}]`: every live metric, or the one with `key`.
pub struct MetricsQuery {
    pub key: Option<String>,
}

fn metric_view(catalog: &Catalog, user: &UserState, m: &Metric) -> MetricView {
    let mut list: Vec<(f64, AchievementRow)> = catalog
        .achievements_on_metric(m.id)
        .filter_map(|a| match &a.trigger {
            Trigger::Metric { value, .. } => Some((a, *value)),
            _ => None,
        })
        .filter_map(|(a, value)| {
            let done = user.completed.get(&a.id);
            let visible = match a.status {
                AchievementStatus::Active => done.is_some() || user.eligible(catalog, a),
                AchievementStatus::Locked => done.is_some(),
                AchievementStatus::Inactive => false,
            };
            visible.then(|| (value, (a.clone(), done.map(|c| c.at))))
        })
        .collect();
    list.sort_by(|a, b| a.0.total_cmp(&b.0));
    MetricView {
        metric: m.clone(),
        total: user.total(m.id),
        achievements: list.into_iter().map(|(_, row)| row).collect(),
    }
}

impl UserQuery for MetricsQuery {
    type Answer = Vec<MetricView>;
    fn answer(
        &self,
        user: &UserState,
        _: &UserProfile,
        catalog: &Catalog,
        _: DateTime<Utc>,
    ) -> Self::Answer {
        match &self.key {
            Some(key) => catalog
                .metric_by_key(key)
                .map(|m| metric_view(catalog, user, m))
                .into_iter()
                .collect(),
            None => catalog
                .metrics()
                .map(|m| metric_view(catalog, user, m))
                .collect(),
        }
    }
}

/// What an event summary sums: a metric's events or a points system's awards.
#[derive(Debug, Clone, Copy)]
pub enum Summarized {
    Metric(Uuid),
    Points(Uuid),
}

/// `GET /users/{id}/metrics/{key}/event-summary` and
/// `GET /users/{id}/points/{key}/event-summary` (SPEC §3.6, §6.7.4), in the user's zone.
pub struct SummaryQuery {
    pub of: Summarized,
    pub aggregation: Aggregation,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl UserQuery for SummaryQuery {
    type Answer = Vec<SummaryRow>;
    fn answer(
        &self,
        user: &UserState,
        _: &UserProfile,
        _: &Catalog,
        _: DateTime<Utc>,
    ) -> Self::Answer {
        let buckets = match self.of {
            Summarized::Metric(id) => user.metrics.get(&id).map(|m| &m.buckets),
            Summarized::Points(id) => user.balance(id).map(|b| &b.buckets),
        };
        summarize(
            buckets.unwrap_or(&Default::default()),
            user.time_zone(),
            self.aggregation,
            self.start,
            self.end,
        )
    }
}

/// `GET /users/{id}/points/{key}`: the balance, with the `awards` most recent awards.
pub struct PointsQuery {
    pub system_id: Uuid,
    pub awards: usize,
}

/// The answer of [`PointsQuery`].
#[derive(Debug, Clone)]
pub struct PointsView {
    pub total: i64,
    /// Computed from the current total and the current levels (SPEC §6.5.4).
    pub level: Option<Uuid>,
    /// Newest first.
    pub awards: Vec<Award>,
    /// Today in the user's zone (boost statuses are evaluated on it).
    pub today: NaiveDate,
}

impl UserQuery for PointsQuery {
    type Answer = PointsView;
    fn answer(
        &self,
        user: &UserState,
        _: &UserProfile,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> PointsView {
        let balance = user.balance(self.system_id);
        let total = balance.map_or(0, |b| b.total);

        PointsView {
            total,
            level: catalog.level_for(self.system_id, total).map(|l| l.id),
            awards: balance
                .map(|b| b.awards.iter().rev().take(self.awards).cloned().collect())
                .unwrap_or_default(),
            today: streak::local_date(now, user.time_zone()),
        }
    }
}

/// `GET /users/{id}/points/{key}/boosts`: boosts active for the user now (global, matching
/// cohort, and the user's own), in creation order.
pub struct ActiveBoostsQuery {
    pub system_id: Uuid,
}

impl UserQuery for ActiveBoostsQuery {
    /// The boosts, and today in the user's zone (their statuses are evaluated on it).
    type Answer = (Vec<crate::catalog::points::PointsBoost>, NaiveDate);
    fn answer(
        &self,
        user: &UserState,
        _: &UserProfile,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Self::Answer {
        let boosts = catalog
            .points_boosts(self.system_id)
            .filter(|b| user.boost_applies(catalog, b, now))
            .cloned()
            .collect::<Vec<_>>();
        (boosts, streak::local_date(now, user.time_zone()))
    }
}
