//! Points configuration (SPEC §6): systems, their triggers, levels and boosts. Pure bulk
//! operations in the conventions of SPEC §10.1: each item is validated on its own and either
//! applied or reported as an issue, never half-applied.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{at_least_one, AttributeKind, Catalog, Issue, Item, Persisted};
use crate::rules::keys::{is_valid_key, KEY_RULE};
use crate::rules::points::Rounding;

/// Attribute filters as sent: `(attributeId, attributeValue)` pairs.
pub type RawFilters = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsSystem {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub description: String,
    pub badge_url: Option<String>,
    pub max_points: Option<i64>,
    pub deleted: bool,
    pub ord: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Hours,
    Days,
}

impl TriggerKind {
    /// A time trigger's schedule.
    pub fn every(&self) -> Option<crate::rules::points::Every> {
        use crate::rules::points::Every;
        match self {
            TriggerKind::Time {
                unit: TimeUnit::Hours,
                interval,
            } => Some(Every::Hours(*interval)),
            TriggerKind::Time {
                unit: TimeUnit::Days,
                interval,
            } => Some(Every::Days(*interval)),
            _ => None,
        }
    }
}

impl TimeUnit {
    /// The admin spelling (`hours|days`); the application API says `hour|day`.
    pub fn admin(self) -> &'static str {
        match self {
            TimeUnit::Hours => "hours",
            TimeUnit::Days => "days",
        }
    }

    pub fn app(self) -> &'static str {
        match self {
            TimeUnit::Hours => "hour",
            TimeUnit::Days => "day",
        }
    }
}

/// What makes a trigger fire (SPEC §6.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TriggerKind {
    /// `points` for every `threshold` units of qualifying events.
    Metric {
        metric_id: Uuid,
        threshold: u64,
        event_filters: Vec<(Uuid, String)>,
    },
    /// Every extension that makes the length a multiple of `length`.
    Streak { length: u32 },
    /// Once, when the user completes the achievement (not backdated).
    Achievement { achievement_id: Uuid },
    /// Every `interval` units after max(user creation, trigger activation).
    Time { unit: TimeUnit, interval: u32 },
    /// Once, when the user is created.
    UserCreation,
}

impl TriggerKind {
    pub fn name(&self) -> &'static str {
        match self {
            TriggerKind::Metric { .. } => "metric",
            TriggerKind::Streak { .. } => "streak",
            TriggerKind::Achievement { .. } => "achievement",
            TriggerKind::Time { .. } => "time",
            TriggerKind::UserCreation => "user_creation",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsTrigger {
    pub id: Uuid,
    pub system_id: Uuid,
    /// Non-zero; negative deducts.
    pub points: i64,
    pub active: bool,
    pub user_filters: Vec<(Uuid, String)>,
    pub block_if_out_of_points: bool,
    pub kind: TriggerKind,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// When the trigger last became active: time triggers count from here.
    pub active_since: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub ord: u64,
}

impl PointsTrigger {
    /// `active`, `inactive`, or `archived` once deleted (application reads of old awards).
    pub fn status(&self) -> &'static str {
        match (self.deleted, self.active) {
            (true, _) => "archived",
            (false, true) => "active",
            (false, false) => "inactive",
        }
    }

    /// Whether it fires now: active and not deleted.
    pub fn fires(&self) -> bool {
        self.active && !self.deleted
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsLevel {
    pub id: Uuid,
    pub system_id: Uuid,
    pub key: String,
    pub name: String,
    pub description: String,
    pub badge_url: Option<String>,
    /// The threshold (≥ 0).
    pub points: i64,
    pub deleted: bool,
    pub ord: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsBoost {
    pub id: Uuid,
    pub system_id: Uuid,
    pub name: String,
    /// A user-specific boost; then `user_filters` is empty.
    pub user_id: Option<String>,
    pub user_filters: Vec<(Uuid, String)>,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    pub multiplier: f64,
    pub rounding: Rounding,
    pub created: DateTime<Utc>,
    pub deleted: bool,
    pub ord: u64,
}

/// The status of a boost on `today` (SPEC §6.6.3).
pub fn boost_status(boost: &PointsBoost, today: NaiveDate) -> &'static str {
    if today < boost.start {
        "scheduled"
    } else if boost.end.is_some_and(|end| today > end) {
        "finished"
    } else {
        "active"
    }
}

use super::persisted;
persisted!(PointsSystem, "catalog/points_system/");
persisted!(PointsTrigger, "catalog/points_trigger/");
persisted!(PointsLevel, "catalog/points_level/");
persisted!(PointsBoost, "catalog/points_boost/");

/// Every points entity, with the lookup every event makes indexed.
#[derive(Debug, Clone, Default)]
pub struct PointsCatalog {
    pub(super) systems: Vec<PointsSystem>,
    /// All triggers ever created (deleted ones stay: old awards name them).
    pub(super) triggers: Vec<PointsTrigger>,
    pub(super) levels: Vec<PointsLevel>,
    pub(super) boosts: Vec<PointsBoost>,
    /// Metric id → positions in `triggers` of the metric triggers on it.
    by_metric: HashMap<Uuid, Vec<usize>>,
    /// Whether an active deduction with `blockIfOutOfPoints` exists: only then does an
    /// event need the trial evaluation that may refuse it.
    may_block: bool,
    /// Positions in `triggers` of time triggers (every commit asks for the next firing).
    time: Vec<usize>,
    /// User id → positions in `boosts` of that user's boosts.
    by_user: HashMap<String, Vec<usize>>,
}

impl PointsCatalog {
    pub(super) fn from_parts(
        mut systems: Vec<PointsSystem>,
        mut triggers: Vec<PointsTrigger>,
        mut levels: Vec<PointsLevel>,
        mut boosts: Vec<PointsBoost>,
    ) -> Self {
        systems.sort_by_key(|s| s.ord);
        triggers.sort_by_key(|t| t.ord);
        levels.sort_by_key(|l| l.ord);
        boosts.sort_by_key(|b| b.ord);
        let mut out = Self {
            systems,
            triggers,
            levels,
            boosts,
            by_metric: HashMap::new(),
            may_block: false,
            time: Vec::new(),
            by_user: HashMap::new(),
        };
        out.reindex();
        out
    }

    pub(super) fn max_ord(&self) -> Option<u64> {
        let s = self.systems.iter().map(|x| x.ord);
        let t = self.triggers.iter().map(|x| x.ord);
        let l = self.levels.iter().map(|x| x.ord);
        let b = self.boosts.iter().map(|x| x.ord);
        s.chain(t).chain(l).chain(b).max()
    }

    fn reindex(&mut self) {
        self.may_block = self
            .triggers
            .iter()
            .any(|t| t.fires() && t.block_if_out_of_points && t.points < 0);
        self.by_user.clear();
        for (i, b) in self.boosts.iter().enumerate() {
            if let Some(user) = &b.user_id {
                self.by_user.entry(user.clone()).or_default().push(i);
            }
        }
        self.by_metric.clear();
        self.time = (0..self.triggers.len())
            .filter(|&i| matches!(self.triggers[i].kind, TriggerKind::Time { .. }))
            .collect();
        for (i, t) in self.triggers.iter().enumerate() {
            if let TriggerKind::Metric { metric_id, .. } = t.kind {
                self.by_metric.entry(metric_id).or_default().push(i);
            }
        }
    }
}

/// A `CreatePointsSystemRequestItem` after shape validation.
#[derive(Debug, Clone, Default)]
pub struct NewPointsSystem {
    pub name: String,
    pub key: String,
    pub description: Option<String>,
    pub badge_url: Option<String>,
    pub max_points: Option<i64>,
    pub levels: Option<Vec<Item<NewLevel>>>,
    pub boosts: Option<Vec<Item<NewBoost>>>,
    pub triggers: Option<Vec<Item<TriggerFields>>>,
}

#[derive(Debug, Clone, Default)]
pub struct PointsSystemPatch {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub badge_url: Option<Option<String>>,
    pub max_points: Option<Option<i64>>,
}

/// The fields of a trigger create or update item, as sent (`None`: absent).
#[derive(Debug, Clone, Default)]
pub struct TriggerFields {
    pub kind: Option<String>,
    pub points: Option<i64>,
    pub active: Option<bool>,
    /// `Some(None)`: explicit `null` (clears).
    pub user_filters: Option<Option<RawFilters>>,
    pub metric_id: Option<String>,
    pub metric_threshold: Option<i64>,
    pub event_filters: Option<Option<RawFilters>>,
    pub achievement_id: Option<String>,
    pub streak_length: Option<i64>,
    pub time_unit: Option<String>,
    pub time_interval: Option<i64>,
    pub block_if_out_of_points: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct TriggerPatch {
    pub id: String,
    pub fields: TriggerFields,
}

#[derive(Debug, Clone, Default)]
pub struct NewLevel {
    pub name: String,
    pub key: String,
    pub points: i64,
    pub description: Option<String>,
    pub badge_url: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LevelPatch {
    pub id: String,
    pub name: Option<String>,
    pub points: Option<i64>,
    pub description: Option<String>,
    pub badge_url: Option<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct NewBoost {
    pub name: String,
    pub user_id: Option<String>,
    pub user_filters: Option<RawFilters>,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    pub multiplier: f64,
    pub rounding: Option<Rounding>,
}

#[derive(Debug, Clone, Default)]
pub struct BoostPatch {
    pub id: String,
    pub name: Option<String>,
    pub start: Option<NaiveDate>,
    pub end: Option<Option<NaiveDate>>,
    pub multiplier: Option<f64>,
    pub rounding: Option<Rounding>,
    pub user_filters: Option<Option<RawFilters>>,
}

/// A created system with what was created inside it (`CreatedAdminPointsSystem`).
#[derive(Debug, Clone)]
pub struct CreatedSystem {
    pub system: PointsSystem,
    pub levels: Option<Vec<PointsLevel>>,
    pub boosts: Option<Vec<PointsBoost>>,
    pub triggers: Option<Vec<PointsTrigger>>,
}

/// What a points operation changed, for persistence and the response.
pub struct PointsChanges<T> {
    pub out: Vec<T>,
    pub issues: Vec<Issue>,
    pub changed: Vec<super::Changed>,
}

impl<T: Persisted> PointsChanges<T> {
    /// What was applied (each stored through [`super::Changed::of`]) and the issues.
    fn of(out: Vec<T>, issues: Vec<Issue>) -> Self {
        Self {
            changed: out.iter().map(super::Changed::of).collect(),
            out,
            issues,
        }
    }
}

impl<T> Default for PointsChanges<T> {
    fn default() -> Self {
        Self {
            out: Vec::new(),
            issues: Vec::new(),
            changed: Vec::new(),
        }
    }
}

const MAX_NAME: usize = 255;

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("Name must not be empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err("Name must be at most 255 characters".into());
    }
    Ok(())
}

fn check_multiplier(m: f64) -> Result<f64, String> {
    if m.is_finite() && m > 0.0 && m < 100.0 && m != 1.0 {
        Ok(m)
    } else {
        Err("Multiplier must be greater than 0, less than 100 and not equal to 1".into())
    }
}

fn check_max_points(m: Option<i64>) -> Result<Option<i64>, String> {
    match m {
        Some(v) if v < 1 => Err("maxPoints must be at least 1".into()),
        other => Ok(other),
    }
}

impl Catalog {
    /// Live points systems in creation order.
    pub fn points_systems(&self) -> impl Iterator<Item = &PointsSystem> {
        self.points.systems.iter().filter(|s| !s.deleted)
    }

    pub fn points_system(&self, id: Uuid) -> Option<&PointsSystem> {
        self.points_systems().find(|s| s.id == id)
    }

    pub fn points_system_by_id(&self, raw: &str) -> Option<&PointsSystem> {
        Uuid::parse_str(raw)
            .ok()
            .and_then(|id| self.points_system(id))
    }

    pub fn points_system_by_key(&self, key: &str) -> Option<&PointsSystem> {
        self.points_systems().find(|s| s.key == key)
    }

    /// Live triggers of a system in creation order.
    pub fn points_triggers(&self, system_id: Uuid) -> impl Iterator<Item = &PointsTrigger> {
        self.points
            .triggers
            .iter()
            .filter(move |t| !t.deleted && t.system_id == system_id)
    }

    /// Any trigger ever created, deleted ones included (awards name them).
    pub fn points_trigger_any(&self, id: Uuid) -> Option<&PointsTrigger> {
        self.points.triggers.iter().find(|t| t.id == id)
    }

    /// Triggers that fire now, of live systems, in creation order.
    pub fn firing_triggers(&self) -> impl Iterator<Item = &PointsTrigger> {
        self.points
            .triggers
            .iter()
            .filter(|t| t.fires() && self.points_system(t.system_id).is_some())
    }

    /// Whether some firing trigger may refuse an event (`blockIfOutOfPoints` deduction).
    pub fn may_block_events(&self) -> bool {
        self.points.may_block
    }

    /// Firing time triggers of live systems, in creation order (indexed).
    pub fn time_triggers(&self) -> impl Iterator<Item = &PointsTrigger> {
        self.points
            .time
            .iter()
            .map(|&i| &self.points.triggers[i])
            .filter(|t| t.fires() && self.points_system(t.system_id).is_some())
    }

    /// Firing metric triggers on `metric_id`, in creation order (indexed).
    pub fn metric_triggers(&self, metric_id: Uuid) -> impl Iterator<Item = &PointsTrigger> {
        self.points
            .by_metric
            .get(&metric_id)
            .into_iter()
            .flatten()
            .map(|&i| &self.points.triggers[i])
            .filter(|t| t.fires() && self.points_system(t.system_id).is_some())
    }

    /// Live levels of a system, ascending by threshold (ties: creation order).
    pub fn points_levels(&self, system_id: Uuid) -> Vec<&PointsLevel> {
        let mut list: Vec<&PointsLevel> = self
            .points
            .levels
            .iter()
            .filter(|l| !l.deleted && l.system_id == system_id)
            .collect();
        list.sort_by_key(|l| (l.points, l.ord));
        list
    }

    /// The level a total reaches in a system under the current levels (SPEC §6.5.2).
    pub fn level_for(&self, system_id: Uuid, total: i64) -> Option<&PointsLevel> {
        let levels = self.points_levels(system_id);
        let thresholds: Vec<(i64, u64)> = levels.iter().map(|l| (l.points, l.ord)).collect();
        crate::rules::points::level_of(total, &thresholds).map(|i| levels[i])
    }

    /// Live levels in creation order (admin lists).
    pub fn points_levels_created(&self, system_id: Uuid) -> impl Iterator<Item = &PointsLevel> {
        self.points
            .levels
            .iter()
            .filter(move |l| !l.deleted && l.system_id == system_id)
    }

    pub fn points_level_any(&self, id: Uuid) -> Option<&PointsLevel> {
        self.points.levels.iter().find(|l| l.id == id)
    }

    /// Live boosts of a system in creation order.
    pub fn points_boosts(&self, system_id: Uuid) -> impl Iterator<Item = &PointsBoost> {
        self.points
            .boosts
            .iter()
            .filter(move |b| !b.deleted && b.system_id == system_id)
    }

    /// Live boosts created for `user_id`, of live systems (indexed).
    pub fn boosts_for_user(&self, user_id: &str) -> impl Iterator<Item = &PointsBoost> {
        self.points
            .by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .map(|&i| &self.points.boosts[i])
            .filter(|b| !b.deleted && self.points_system(b.system_id).is_some())
    }

    /// Live global and cohort boosts of live systems (the boost clock announces these).
    pub fn shared_boosts(&self) -> impl Iterator<Item = &PointsBoost> {
        self.points
            .boosts
            .iter()
            .filter(|b| !b.deleted && b.user_id.is_none())
            .filter(|b| self.points_system(b.system_id).is_some())
    }

    /// Any boost ever created (awards name the boosts they used).
    pub fn points_boost_any(&self, id: Uuid) -> Option<&PointsBoost> {
        self.points.boosts.iter().find(|b| b.id == id)
    }

    // ----- systems -----

    /// `POST /points`, with nested levels, boosts and triggers. A system is created when its
    /// own fields are valid; nested items that fail become issues of the system's index.
    pub fn create_points_systems(
        &mut self,
        items: Vec<Item<NewPointsSystem>>,
        now: DateTime<Utc>,
        user_exists: &dyn Fn(&str) -> bool,
    ) -> PointsChanges<CreatedSystem> {
        let mut out = PointsChanges::default();
        for (index, item) in items.into_iter().enumerate() {
            let built = item.and_then(|new| {
                check_name(&new.name)?;
                if !is_valid_key(&new.key) {
                    return Err(KEY_RULE.to_string());
                }
                if self.points_system_by_key(&new.key).is_some() {
                    return Err("Key already in use by another points system".into());
                }
                let system = PointsSystem {
                    id: Uuid::new_v4(),
                    key: new.key.clone(),
                    name: new.name.clone(),
                    description: new.description.clone().unwrap_or_default(),
                    badge_url: new.badge_url.clone(),
                    max_points: check_max_points(new.max_points)?,
                    deleted: false,
                    ord: self.take_ord(),
                };
                Ok((system, new))
            });
            let (system, new) = match built {
                Ok(b) => b,
                Err(message) => {
                    out.issues.push(Issue::at_index(index, message));
                    continue;
                }
            };
            self.points.systems.push(system.clone());
            out.changed.push(super::Changed::of(&system));
            let mut nested_issue = |issues: Vec<Issue>, what: &str| {
                for i in issues {
                    out.issues.push(Issue::at_index(
                        index,
                        format!(
                            "{what} {}: {}",
                            i.index.map_or_else(String::new, |n| n.to_string()),
                            i.message
                        ),
                    ));
                }
            };
            let levels = new.levels.map(|items| {
                let r = self.create_points_levels(system.id, items);
                nested_issue(r.issues, "levels");
                out.changed.extend(r.changed);
                r.out
            });
            let boosts = new.boosts.map(|items| {
                let r = self.create_points_boosts(system.id, items, now, user_exists);
                nested_issue(r.issues, "boosts");
                out.changed.extend(r.changed);
                r.out
            });
            let triggers = new.triggers.map(|items| {
                let r = self.create_points_triggers(system.id, items, now);
                nested_issue(r.issues, "triggers");
                out.changed.extend(r.changed);
                r.out
            });
            out.out.push(CreatedSystem {
                system,
                levels,
                boosts,
                triggers,
            });
        }
        out
    }

    pub fn update_points_systems(
        &mut self,
        items: Vec<Result<PointsSystemPatch, Issue>>,
    ) -> PointsChanges<PointsSystem> {
        let (updated, issues) = super::bulk_update(
            &mut self.points.systems,
            items,
            |p| &p.id,
            "Points system",
            |s, p| {
                if let Some(name) = &p.name {
                    check_name(name)?;
                }
                let max_points = match p.max_points {
                    Some(m) => Some(check_max_points(m)?),
                    None => None,
                };
                if let Some(name) = p.name {
                    s.name = name;
                }
                if let Some(d) = p.description {
                    s.description = d;
                }
                if let Some(b) = p.badge_url {
                    s.badge_url = b;
                }
                if let Some(m) = max_points {
                    s.max_points = m;
                }
                Ok(())
            },
        );
        PointsChanges::of(updated, issues)
    }

    pub fn delete_points_systems(&mut self, ids: &[String]) -> PointsChanges<PointsSystem> {
        let (deleted, issues) = super::bulk_delete(&mut self.points.systems, ids, "Points system");
        PointsChanges::of(deleted, issues)
    }

    // ----- triggers -----

    /// Builds a trigger kind from `fields`, starting from `base` (updates), and validates
    /// that only the chosen type's fields are set.
    fn build_points_trigger_kind(
        &self,
        fields: &TriggerFields,
        base: Option<&TriggerKind>,
    ) -> Result<TriggerKind, String> {
        let kind = fields
            .kind
            .as_deref()
            .or(base.map(TriggerKind::name))
            .ok_or("Type is required")?;
        let same = base.filter(|b| b.name() == kind);
        let foreign = |field: &str, set: bool, owner: &str| -> Result<(), String> {
            if set && kind != owner {
                Err(format!("{field} is only allowed on {owner} triggers"))
            } else {
                Ok(())
            }
        };
        foreign("metricId", fields.metric_id.is_some(), "metric")?;
        foreign(
            "metricThreshold",
            fields.metric_threshold.is_some(),
            "metric",
        )?;
        foreign(
            "eventAttributes",
            fields
                .event_filters
                .as_ref()
                .is_some_and(|f| f.as_ref().is_some_and(|f| !f.is_empty())),
            "metric",
        )?;
        foreign(
            "achievementId",
            fields.achievement_id.is_some(),
            "achievement",
        )?;
        foreign("streakLength", fields.streak_length.is_some(), "streak")?;
        foreign("timeUnit", fields.time_unit.is_some(), "time")?;
        foreign("timeInterval", fields.time_interval.is_some(), "time")?;
        Ok(match kind {
            "metric" => {
                let (b_metric, b_threshold, b_filters) = match same {
                    Some(TriggerKind::Metric {
                        metric_id,
                        threshold,
                        event_filters,
                    }) => (Some(*metric_id), Some(*threshold), event_filters.clone()),
                    _ => (None, None, Vec::new()),
                };
                let metric_id = match &fields.metric_id {
                    Some(raw) => self
                        .metric_by_id(raw)
                        .map(|m| m.id)
                        .ok_or("Metric not found by ID")?,
                    None => b_metric.ok_or("metricId is required for metric triggers")?,
                };
                let threshold = match fields.metric_threshold {
                    Some(t) => u64::try_from(t)
                        .ok()
                        .filter(|t| *t >= 1)
                        .ok_or("metricThreshold must be at least 1")?,
                    None => b_threshold.ok_or("metricThreshold is required for metric triggers")?,
                };
                let event_filters =
                    self.filters_patch(AttributeKind::Event, &fields.event_filters, b_filters)?;
                TriggerKind::Metric {
                    metric_id,
                    threshold,
                    event_filters,
                }
            }
            "streak" => {
                let base = match same {
                    Some(TriggerKind::Streak { length }) => Some(*length),
                    _ => None,
                };
                TriggerKind::Streak {
                    length: at_least_one(
                        fields.streak_length,
                        base,
                        "streakLength",
                        "streak triggers",
                    )?,
                }
            }
            "achievement" => {
                let base_id = match same {
                    Some(TriggerKind::Achievement { achievement_id }) => Some(*achievement_id),
                    _ => None,
                };
                let achievement_id = match &fields.achievement_id {
                    Some(raw) => self
                        .achievement_by_id(raw)
                        .map(|a| a.id)
                        .ok_or("Achievement not found by ID")?,
                    None => base_id.ok_or("achievementId is required for achievement triggers")?,
                };
                TriggerKind::Achievement { achievement_id }
            }
            "time" => {
                let (b_unit, b_interval) = match same {
                    Some(TriggerKind::Time { unit, interval }) => (Some(*unit), Some(*interval)),
                    _ => (None, None),
                };
                let unit = match fields.time_unit.as_deref() {
                    Some("hours") => TimeUnit::Hours,
                    Some("days") => TimeUnit::Days,
                    Some(_) => return Err("timeUnit must be one of: hours, days".into()),
                    None => b_unit.ok_or("timeUnit is required for time triggers")?,
                };
                let interval = at_least_one(
                    fields.time_interval,
                    b_interval,
                    "timeInterval",
                    "time triggers",
                )?;
                TriggerKind::Time { unit, interval }
            }
            "user_creation" => TriggerKind::UserCreation,
            other => {
                return Err(format!(
                    "Unknown trigger type: {other} (one of: metric, achievement, streak, time, user_creation)"
                ))
            }
        })
    }

    fn build_points_trigger(
        &self,
        system_id: Uuid,
        fields: &TriggerFields,
        base: Option<&PointsTrigger>,
        now: DateTime<Utc>,
    ) -> Result<PointsTrigger, String> {
        let kind = self.build_points_trigger_kind(fields, base.map(|b| &b.kind))?;
        if let Some(b) = base {
            if b.active && kind.name() != b.kind.name() {
                return Err(
                    "Trigger type can only be changed while the trigger is inactive".into(),
                );
            }
        }
        let points = match fields.points {
            Some(0) => return Err("Points must not be zero".into()),
            Some(p) => p,
            None => base.map(|b| b.points).ok_or("Points is required")?,
        };
        let user_filters = self.filters_patch(
            AttributeKind::User,
            &fields.user_filters,
            base.map(|b| b.user_filters.clone()).unwrap_or_default(),
        )?;
        let active = fields
            .active
            .unwrap_or_else(|| base.is_some_and(|b| b.active));
        let was_active = base.is_some_and(|b| b.active);
        Ok(PointsTrigger {
            id: base.map_or_else(Uuid::new_v4, |b| b.id),
            system_id,
            points,
            active,
            user_filters,
            block_if_out_of_points: fields
                .block_if_out_of_points
                .unwrap_or_else(|| base.is_some_and(|b| b.block_if_out_of_points)),
            kind,
            created: base.map_or(now, |b| b.created),
            updated: now,
            active_since: match (active, was_active) {
                (true, false) => Some(now),
                (true, true) => base.and_then(|b| b.active_since),
                (false, _) => None,
            },
            deleted: false,
            ord: base.map_or(0, |b| b.ord),
        })
    }

    pub fn create_points_triggers(
        &mut self,
        system_id: Uuid,
        items: Vec<Item<TriggerFields>>,
        now: DateTime<Utc>,
    ) -> PointsChanges<PointsTrigger> {
        let (created, issues) = self.bulk_create(
            items,
            |cat, f| {
                let mut t = cat.build_points_trigger(system_id, &f, None, now)?;
                t.ord = cat.take_ord();
                Ok(t)
            },
            |cat, t| cat.points.triggers.push(t),
        );
        self.points.reindex();
        PointsChanges::of(created, issues)
    }

    pub fn update_points_triggers(
        &mut self,
        system_id: Uuid,
        items: Vec<Result<TriggerPatch, Issue>>,
        now: DateTime<Utc>,
    ) -> PointsChanges<PointsTrigger> {
        let mut out = PointsChanges::default();
        for item in items {
            let patch = match item {
                Ok(p) => p,
                Err(issue) => {
                    out.issues.push(issue);
                    continue;
                }
            };
            let found = Uuid::parse_str(&patch.id).ok().and_then(|id| {
                self.points
                    .triggers
                    .iter()
                    .position(|t| t.id == id && !t.deleted && t.system_id == system_id)
            });
            let Some(pos) = found else {
                out.issues
                    .push(Issue::for_id(&patch.id, "Points trigger not found by ID"));
                continue;
            };
            let base = self.points.triggers[pos].clone();
            match self.build_points_trigger(system_id, &patch.fields, Some(&base), now) {
                Ok(t) => {
                    self.points.triggers[pos] = t.clone();
                    out.changed.push(super::Changed::of(&t));
                    out.out.push(t);
                }
                Err(message) => out.issues.push(Issue::for_id(&patch.id, message)),
            }
        }
        self.points.reindex();
        out
    }

    pub fn delete_points_triggers(
        &mut self,
        system_id: Uuid,
        ids: &[String],
    ) -> PointsChanges<PointsTrigger> {
        let mut out = PointsChanges::default();
        for raw in ids {
            let Ok(id) = Uuid::parse_str(raw) else {
                out.issues
                    .push(Issue::for_id(raw, "id must be a valid UUID"));
                continue;
            };
            match self
                .points
                .triggers
                .iter_mut()
                .find(|t| t.id == id && !t.deleted && t.system_id == system_id)
            {
                Some(t) => {
                    t.deleted = true;
                    t.active = false;
                    out.changed.push(super::Changed::of(&*t));
                    out.out.push(t.clone());
                }
                None => out
                    .issues
                    .push(Issue::for_id(raw, "Points trigger not found by ID")),
            }
        }
        self.points.reindex();
        out
    }

    // ----- levels -----

    pub fn create_points_levels(
        &mut self,
        system_id: Uuid,
        items: Vec<Item<NewLevel>>,
    ) -> PointsChanges<PointsLevel> {
        let (created, issues) = self.bulk_create(
            items,
            |cat, new| {
                check_name(&new.name)?;
                if !is_valid_key(&new.key) {
                    return Err(KEY_RULE.to_string());
                }
                if cat
                    .points_levels_created(system_id)
                    .any(|l| l.key == new.key)
                {
                    return Err("Key already in use by another level".into());
                }
                if new.points < 0 {
                    return Err("Points must be at least 0".into());
                }
                Ok(PointsLevel {
                    id: Uuid::new_v4(),
                    system_id,
                    key: new.key,
                    name: new.name,
                    description: new.description.unwrap_or_default(),
                    badge_url: new.badge_url,
                    points: new.points,
                    deleted: false,
                    ord: cat.take_ord(),
                })
            },
            |cat, l| cat.points.levels.push(l),
        );
        PointsChanges::of(created, issues)
    }

    pub fn update_points_levels(
        &mut self,
        system_id: Uuid,
        items: Vec<Result<LevelPatch, Issue>>,
    ) -> PointsChanges<PointsLevel> {
        let items = items
            .into_iter()
            .map(|i| i.and_then(|p| self.own(&self.points.levels, system_id, p, "Points level")))
            .collect();
        let (updated, issues) = super::bulk_update(
            &mut self.points.levels,
            items,
            |p: &LevelPatch| &p.id,
            "Points level",
            |l, p| {
                if let Some(name) = &p.name {
                    check_name(name)?;
                }
                if p.points.is_some_and(|v| v < 0) {
                    return Err("Points must be at least 0".into());
                }
                if let Some(name) = p.name {
                    l.name = name;
                }
                if let Some(v) = p.points {
                    l.points = v;
                }
                if let Some(d) = p.description {
                    l.description = d;
                }
                if let Some(b) = p.badge_url {
                    l.badge_url = b;
                }
                Ok(())
            },
        );
        PointsChanges::of(updated, issues)
    }

    /// Checks that a patch addresses an entity of `system_id` (others are "not found").
    fn own<T: HasSystem, P: HasId>(
        &self,
        list: &[T],
        system_id: Uuid,
        patch: P,
        entity: &str,
    ) -> Result<P, Issue> {
        let ok = Uuid::parse_str(patch.id()).ok().is_some_and(|id| {
            list.iter()
                .any(|e| e.entity_id() == id && e.system() == system_id)
        });
        if ok {
            Ok(patch)
        } else {
            Err(Issue::for_id(
                patch.id(),
                format!("{entity} not found by ID"),
            ))
        }
    }

    pub fn delete_points_levels(
        &mut self,
        system_id: Uuid,
        ids: &[String],
    ) -> PointsChanges<PointsLevel> {
        let (ids, mut issues) = self.split_own(&self.points.levels, system_id, ids, "Points level");
        let (deleted, more) = super::bulk_delete(&mut self.points.levels, &ids, "Points level");
        issues.extend(more);
        PointsChanges::of(deleted, issues)
    }

    /// Ids that belong to `system_id` (or are not UUIDs: bulk delete reports those), and
    /// "not found" issues for the rest.
    fn split_own<T: HasSystem>(
        &self,
        list: &[T],
        system_id: Uuid,
        ids: &[String],
        entity: &str,
    ) -> (Vec<String>, Vec<Issue>) {
        let mut keep = Vec::new();
        let mut issues = Vec::new();
        for raw in ids {
            match Uuid::parse_str(raw) {
                Ok(id)
                    if !list
                        .iter()
                        .any(|e| e.entity_id() == id && e.system() == system_id) =>
                {
                    issues.push(Issue::for_id(raw, format!("{entity} not found by ID")));
                }
                _ => keep.push(raw.clone()),
            }
        }
        (keep, issues)
    }

    // ----- boosts -----

    fn build_boost(
        &self,
        system_id: Uuid,
        new: NewBoost,
        now: DateTime<Utc>,
        user_exists: &dyn Fn(&str) -> bool,
    ) -> Result<PointsBoost, String> {
        check_name(&new.name)?;
        let multiplier = check_multiplier(new.multiplier)?;
        if new.end.is_some_and(|end| end < new.start) {
            return Err("End date must not be before the start date".into());
        }
        if new.user_id.is_some() && new.user_filters.as_ref().is_some_and(|f| !f.is_empty()) {
            return Err("userId and userAttributes cannot both be set".into());
        }
        if let Some(user) = &new.user_id {
            if !user_exists(user) {
                return Err("User does not exist".into());
            }
        }
        let user_filters = match &new.user_filters {
            Some(raw) => self.filters(AttributeKind::User, raw)?,
            None => Vec::new(),
        };
        Ok(PointsBoost {
            id: Uuid::new_v4(),
            system_id,
            name: new.name,
            user_id: new.user_id,
            user_filters,
            start: new.start,
            end: new.end,
            multiplier,
            rounding: new.rounding.unwrap_or_default(),
            created: now,
            deleted: false,
            ord: 0,
        })
    }

    pub fn create_points_boosts(
        &mut self,
        system_id: Uuid,
        items: Vec<Item<NewBoost>>,
        now: DateTime<Utc>,
        user_exists: &dyn Fn(&str) -> bool,
    ) -> PointsChanges<PointsBoost> {
        let (created, issues) = self.bulk_create(
            items,
            |cat, new| {
                let mut b = cat.build_boost(system_id, new, now, user_exists)?;
                b.ord = cat.take_ord();
                Ok(b)
            },
            |cat, b| cat.points.boosts.push(b),
        );
        self.points.reindex();
        PointsChanges::of(created, issues)
    }

    pub fn update_points_boosts(
        &mut self,
        system_id: Uuid,
        items: Vec<Result<BoostPatch, Issue>>,
    ) -> PointsChanges<PointsBoost> {
        let mut out = PointsChanges::default();
        for item in items {
            let patch = match item
                .and_then(|p| self.own(&self.points.boosts, system_id, p, "Points boost"))
            {
                Ok(p) => p,
                Err(issue) => {
                    out.issues.push(issue);
                    continue;
                }
            };
            let Some(pos) = Uuid::parse_str(&patch.id).ok().and_then(|id| {
                self.points
                    .boosts
                    .iter()
                    .position(|b| b.id == id && !b.deleted)
            }) else {
                out.issues
                    .push(Issue::for_id(&patch.id, "Points boost not found by ID"));
                continue;
            };
            let mut b = self.points.boosts[pos].clone();
            let result = (|| -> Result<(), String> {
                if let Some(name) = &patch.name {
                    check_name(name)?;
                    b.name = name.clone();
                }
                if let Some(m) = patch.multiplier {
                    b.multiplier = check_multiplier(m)?;
                }
                if let Some(r) = patch.rounding {
                    b.rounding = r;
                }
                if let Some(s) = patch.start {
                    b.start = s;
                }
                if let Some(e) = patch.end {
                    b.end = e;
                }
                if b.end.is_some_and(|end| end < b.start) {
                    return Err("End date must not be before the start date".into());
                }
                if let Some(filters) = &patch.user_filters {
                    if b.user_id.is_some() {
                        return Err("userAttributes cannot be set on a user-specific boost".into());
                    }
                    b.user_filters = match filters {
                        Some(raw) => self.filters(AttributeKind::User, raw)?,
                        None => Vec::new(),
                    };
                }
                Ok(())
            })();
            match result {
                Ok(()) => {
                    self.points.boosts[pos] = b.clone();
                    out.changed.push(super::Changed::of(&b));
                    out.out.push(b);
                }
                Err(message) => out.issues.push(Issue::for_id(&patch.id, message)),
            }
        }
        out
    }

    pub fn delete_points_boosts(
        &mut self,
        system_id: Uuid,
        ids: &[String],
    ) -> PointsChanges<PointsBoost> {
        let (ids, mut issues) = self.split_own(&self.points.boosts, system_id, ids, "Points boost");
        let (deleted, more) = super::bulk_delete(&mut self.points.boosts, &ids, "Points boost");
        issues.extend(more);
        PointsChanges::of(deleted, issues)
    }
}

/// Entities that belong to one points system.
trait HasSystem {
    fn entity_id(&self) -> Uuid;
    fn system(&self) -> Uuid;
}

impl HasSystem for PointsLevel {
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn system(&self) -> Uuid {
        self.system_id
    }
}

impl HasSystem for PointsBoost {
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn system(&self) -> Uuid {
        self.system_id
    }
}

/// Patches that address an entity by id.
trait HasId {
    fn id(&self) -> &str;
}

impl HasId for LevelPatch {
    fn id(&self) -> &str {
        &self.id
    }
}

impl HasId for BoostPatch {
    fn id(&self) -> &str {
        &self.id
    }
}
