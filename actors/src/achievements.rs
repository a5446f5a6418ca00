//! Achievement definitions (SPEC §4.1–4.2) and their admin bulk operations (SDK 1.27
//! `/achievements`). Validation is pure and per item; an item that fails becomes an issue.
//! Operations report which achievements need a backfill (SPEC §4.4): those that became
//! `active`, and active ones whose trigger or filters changed.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{at_least_one, AttributeKind, Catalog, Issue};
use crate::rules::keys::{is_valid_key, KEY_RULE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AchievementStatus {
    Inactive,
    Active,
    Locked,
}

impl AchievementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Active => "active",
            Self::Locked => "locked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "inactive" => Some(Self::Inactive),
            "active" => Some(Self::Active),
            "locked" => Some(Self::Locked),
            _ => None,
        }
    }
}

/// What completes an achievement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    /// Qualifying total ≥ `value`; with event filters, only matching events count.
    Metric {
        metric_id: Uuid,
        value: f64,
        event_filters: Vec<(Uuid, String)>,
    },
    Streak {
        length: u32,
    },
    Api {
        key: String,
    },
    /// Completes when every prerequisite is completed.
    Achievement {
        prerequisites: Vec<Uuid>,
    },
    Anniversary {
        years: u32,
    },
}

impl Trigger {
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Metric { .. } => "metric",
            Trigger::Streak { .. } => "streak",
            Trigger::Api { .. } => "api",
            Trigger::Achievement { .. } => "achievement",
            Trigger::Anniversary { .. } => "anniversary",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Achievement {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub badge_url: Option<String>,
    pub status: AchievementStatus,
    /// User attribute id and required value: all must match (SPEC §4.1.2).
    pub user_filters: Vec<(Uuid, String)>,
    pub trigger: Trigger,
    pub deleted: bool,
    pub ord: u64,
}

/// The trigger fields of a create or update item, as sent.
#[derive(Debug, Clone, Default)]
pub struct TriggerFields {
    pub trigger: Option<String>,
    pub key: Option<String>,
    pub metric_id: Option<String>,
    pub metric_value: Option<f64>,
    /// `Some(None)`: explicit `null` (clears).
    pub event_filters: Option<Option<Vec<(String, String)>>>,
    pub streak_length: Option<i64>,
    pub anniversary_years: Option<i64>,
    pub achievement_ids: Option<Vec<String>>,
}

/// A create item after shape validation.
#[derive(Debug, Clone, Default)]
pub struct NewAchievement {
    pub name: String,
    pub description: Option<String>,
    pub badge_url: Option<String>,
    pub status: Option<AchievementStatus>,
    pub user_filters: Vec<(String, String)>,
    pub fields: TriggerFields,
}

/// An update item after shape validation; `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default)]
pub struct AchievementPatch {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub badge_url: Option<Option<String>>,
    pub status: Option<AchievementStatus>,
    pub user_filters: Option<Option<Vec<(String, String)>>>,
    pub fields: TriggerFields,
}

/// What an achievement operation changed, and which achievements to backfill.
#[derive(Debug, Default)]
pub struct AchievementChanges {
    pub changed: Vec<Achievement>,
    pub issues: Vec<Issue>,
    pub backfill: Vec<Uuid>,
}

impl Catalog {
    /// Filters of an update item: the sent list checked, `null` cleared, or `base` kept.
    pub(crate) fn filters_patch(
        &self,
        kind: AttributeKind,
        sent: &Option<Option<Vec<(String, String)>>>,
        base: Vec<(Uuid, String)>,
    ) -> Result<Vec<(Uuid, String)>, String> {
        match sent {
            Some(Some(raw)) => self.filters(kind, raw),
            Some(None) => Ok(Vec::new()),
            None => Ok(base),
        }
    }

    /// Attribute filters as `(attribute id, value)`, each naming a live attribute of `kind`.
    pub(crate) fn filters(
        &self,
        kind: AttributeKind,
        raw: &[(String, String)],
    ) -> Result<Vec<(Uuid, String)>, String> {
        raw.iter()
            .map(|(id, value)| {
                self.attribute_by_id(id)
                    .filter(|a| a.kind == kind)
                    .map(|a| (a.id, value.clone()))
                    .ok_or_else(|| format!("Attribute {id} is not a {} attribute", kind.as_str()))
            })
            .collect()
    }

    /// Builds a trigger from `fields`, starting from `base` (for updates), and validates it.
    fn build_trigger(
        &self,
        fields: &TriggerFields,
        base: Option<&Trigger>,
        own_id: Uuid,
    ) -> Result<Trigger, String> {
        let kind = fields
            .trigger
            .as_deref()
            .or(base.map(Trigger::name))
            .ok_or("Trigger is required")?;
        let same = base.filter(|b| b.name() == kind);
        let trigger = match kind {
            "metric" => {
                let (b_metric, b_value, b_filters) = match same {
                    Some(Trigger::Metric {
                        metric_id,
                        value,
                        event_filters,
                    }) => (Some(*metric_id), Some(*value), event_filters.clone()),
                    _ => (None, None, Vec::new()),
                };
                let metric_id = match &fields.metric_id {
                    Some(raw) => self
                        .metric_by_id(raw)
                        .map(|m| m.id)
                        .ok_or("Metric not found by ID")?,
                    None => b_metric.ok_or("metricId is required for metric achievements")?,
                };
                let value = fields
                    .metric_value
                    .or(b_value)
                    .ok_or("metricValue is required for metric achievements")?;
                if !(value.is_finite() && value >= 1.0) {
                    return Err("metricValue must be at least 1".into());
                }
                let event_filters =
                    self.filters_patch(AttributeKind::Event, &fields.event_filters, b_filters)?;
                Trigger::Metric {
                    metric_id,
                    value,
                    event_filters,
                }
            }
            "streak" => {
                let base = match same {
                    Some(Trigger::Streak { length }) => Some(*length),
                    _ => None,
                };
                Trigger::Streak {
                    length: at_least_one(
                        fields.streak_length,
                        base,
                        "streakLength",
                        "streak achievements",
                    )?,
                }
            }
            "anniversary" => {
                let base = match same {
                    Some(Trigger::Anniversary { years }) => Some(*years),
                    _ => None,
                };
                Trigger::Anniversary {
                    years: at_least_one(
                        fields.anniversary_years,
                        base,
                        "anniversaryYears",
                        "anniversary achievements",
                    )?,
                }
            }
            "api" => {
                let base_key = match same {
                    Some(Trigger::Api { key }) => Some(key.clone()),
                    _ => None,
                };
                let key = fields
                    .key
                    .clone()
                    .or(base_key)
                    .ok_or("key is required for api achievements")?;
                if !is_valid_key(&key) {
                    return Err(KEY_RULE.into());
                }
                if self.achievements().any(|a| {
                    a.id != own_id && matches!(&a.trigger, Trigger::Api { key: k } if *k == key)
                }) {
                    return Err("Key already in use by another achievement".into());
                }
                Trigger::Api { key }
            }
            "achievement" => {
                let base_ids = match same {
                    Some(Trigger::Achievement { prerequisites }) => Some(prerequisites.clone()),
                    _ => None,
                };
                let ids = match &fields.achievement_ids {
                    Some(raw) => raw
                        .iter()
                        .map(|id| {
                            self.achievement_by_id(id)
                                .map(|a| a.id)
                                .ok_or_else(|| format!("Achievement not found by ID: {id}"))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    None => {
                        base_ids.ok_or("achievementIds is required for achievement triggers")?
                    }
                };
                if ids.is_empty() {
                    return Err("achievementIds must not be empty".into());
                }
                if ids.contains(&own_id) || self.reaches(&ids, own_id) {
                    return Err("achievementIds would create a cycle of prerequisites".into());
                }
                let mut seen = BTreeSet::new();
                Trigger::Achievement {
                    prerequisites: ids.into_iter().filter(|id| seen.insert(*id)).collect(),
                }
            }
            other => return Err(format!("Unknown trigger: {other}")),
        };
        Ok(trigger)
    }

    /// Whether `target` is reachable from `from` through prerequisite links.
    fn reaches(&self, from: &[Uuid], target: Uuid) -> bool {
        let links: HashMap<Uuid, &Vec<Uuid>> = self
            .achievements()
            .filter_map(|a| match &a.trigger {
                Trigger::Achievement { prerequisites } => Some((a.id, prerequisites)),
                _ => None,
            })
            .collect();
        let mut stack: Vec<Uuid> = from.to_vec();
        let mut seen = BTreeSet::new();
        while let Some(id) = stack.pop() {
            if id == target {
                return true;
            }
            if seen.insert(id) {
                if let Some(next) = links.get(&id) {
                    stack.extend(next.iter().copied());
                }
            }
        }
        false
    }

    pub fn create_achievements(
        &mut self,
        items: Vec<Result<NewAchievement, String>>,
    ) -> AchievementChanges {
        let mut out = AchievementChanges::default();
        for (index, item) in items.into_iter().enumerate() {
            let id = Uuid::new_v4();
            let built = item.and_then(|new| {
                if new.name.trim().is_empty() {
                    return Err("Name must not be empty".to_string());
                }
                let trigger = self.build_trigger(&new.fields, None, id)?;
                if new
                    .fields
                    .event_filters
                    .as_ref()
                    .is_some_and(|f| f.as_ref().is_some_and(|f| !f.is_empty()))
                    && !matches!(trigger, Trigger::Metric { .. })
                {
                    return Err("eventAttributes are only allowed on metric achievements".into());
                }
                Ok(Achievement {
                    id,
                    name: new.name,
                    description: new.description,
                    badge_url: new.badge_url,
                    status: new.status.unwrap_or(AchievementStatus::Inactive),
                    user_filters: self.filters(AttributeKind::User, &new.user_filters)?,
                    trigger,
                    deleted: false,
                    ord: self.take_ord(),
                })
            });
            match built {
                Ok(a) => {
                    if a.status == AchievementStatus::Active {
                        out.backfill.push(a.id);
                    }
                    self.push_achievement(a.clone());
                    out.changed.push(a);
                }
                Err(message) => out.issues.push(Issue::at_index(index, message)),
            }
        }
        out
    }

    pub fn update_achievements(
        &mut self,
        items: Vec<Result<AchievementPatch, Issue>>,
    ) -> AchievementChanges {
        let mut out = AchievementChanges::default();
        for item in items {
            let patch = match item {
                Ok(p) => p,
                Err(issue) => {
                    out.issues.push(issue);
                    continue;
                }
            };
            let Some(current) = self.achievement_by_id(&patch.id).cloned() else {
                out.issues
                    .push(Issue::for_id(&patch.id, "Achievement not found by ID"));
                continue;
            };
            let merged = (|| {
                let mut next = current.clone();
                if let Some(name) = &patch.name {
                    if name.trim().is_empty() {
                        return Err("Name must not be empty".to_string());
                    }
                    next.name = name.clone();
                }
                if let Some(d) = &patch.description {
                    next.description = d.clone();
                }
                if let Some(b) = &patch.badge_url {
                    next.badge_url = b.clone();
                }
                if let Some(s) = patch.status {
                    next.status = s;
                }
                if let Some(f) = &patch.user_filters {
                    next.user_filters =
                        self.filters(AttributeKind::User, f.as_deref().unwrap_or(&[]))?;
                }
                next.trigger =
                    self.build_trigger(&patch.fields, Some(&current.trigger), current.id)?;
                Ok(next)
            })();
            match merged {
                Ok(next) => {
                    let activated = next.status == AchievementStatus::Active
                        && current.status != AchievementStatus::Active;
                    let edited = next.status == AchievementStatus::Active
                        && (next.trigger != current.trigger
                            || next.user_filters != current.user_filters);
                    if activated || edited {
                        out.backfill.push(next.id);
                    }
                    self.replace_achievement(next.clone());
                    out.changed.push(next);
                }
                Err(message) => out.issues.push(Issue::for_id(&patch.id, message)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{NewMetric, UnitType};

    fn catalog() -> (Catalog, String) {
        let mut c = Catalog::default();
        let (m, _) = c.create_metrics(
            vec![Ok(NewMetric {
                key: "m".into(),
                name: "M".into(),
                unit_type: UnitType::Number,
                units: None,
            })],
            chrono::DateTime::<chrono::Utc>::MIN_UTC,
        );
        (c, m[0].id.to_string())
    }

    fn metric_item(metric: &str, value: f64) -> Result<NewAchievement, String> {
        Ok(NewAchievement {
            name: "A".into(),
            fields: TriggerFields {
                trigger: Some("metric".into()),
                metric_id: Some(metric.into()),
                metric_value: Some(value),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn create_validates_each_trigger() {
        let (mut c, metric) = catalog();
        let api = |key: &str| {
            Ok(NewAchievement {
                name: "Api".into(),
                fields: TriggerFields {
                    trigger: Some("api".into()),
                    key: Some(key.into()),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        let out = c.create_achievements(vec![
            metric_item(&metric, 5.0),
            metric_item(&metric, 0.5),
            metric_item("nope", 5.0),
            api("ok-key"),
            api("ok-key"),
            api("bad key"),
            Ok(NewAchievement {
                name: "S".into(),
                status: Some(AchievementStatus::Active),
                fields: TriggerFields {
                    trigger: Some("streak".into()),
                    streak_length: Some(0),
                    ..Default::default()
                },
                ..Default::default()
            }),
        ]);
        assert_eq!(out.changed.len(), 2);
        assert_eq!(
            out.changed[0].status,
            AchievementStatus::Inactive,
            "inactive by default"
        );
        let indexes: Vec<_> = out.issues.iter().map(|i| i.index).collect();
        assert_eq!(indexes, vec![Some(1), Some(2), Some(4), Some(5), Some(6)]);
        assert!(out.backfill.is_empty());
    }

    #[test]
    fn composite_cycles_are_rejected_and_activation_backfills() {
        let (mut c, metric) = catalog();
        let base = c
            .create_achievements(vec![metric_item(&metric, 1.0)])
            .changed[0]
            .id;
        let composite = |ids: Vec<String>| NewAchievement {
            name: "C".into(),
            fields: TriggerFields {
                trigger: Some("achievement".into()),
                achievement_ids: Some(ids),
                ..Default::default()
            },
            ..Default::default()
        };
        let a = c
            .create_achievements(vec![Ok(composite(vec![base.to_string()]))])
            .changed[0]
            .id;
        let b = c
            .create_achievements(vec![Ok(composite(vec![a.to_string()]))])
            .changed[0]
            .id;
        // a -> b would close the loop a -> b -> a.
        let out = c.update_achievements(vec![Ok(AchievementPatch {
            id: a.to_string(),
            fields: TriggerFields {
                achievement_ids: Some(vec![b.to_string()]),
                ..Default::default()
            },
            ..Default::default()
        })]);
        assert_eq!(
            out.issues[0].message,
            "achievementIds would create a cycle of prerequisites"
        );
        let out = c.update_achievements(vec![Ok(AchievementPatch {
            id: base.to_string(),
            status: Some(AchievementStatus::Active),
            ..Default::default()
        })]);
        assert_eq!(out.backfill, vec![base]);
        // Editing the trigger of an active achievement backfills again; renaming does not.
        let out = c.update_achievements(vec![Ok(AchievementPatch {
            id: base.to_string(),
            name: Some("Renamed".into()),
            ..Default::default()
        })]);
        assert!(out.backfill.is_empty());
        let out = c.update_achievements(vec![Ok(AchievementPatch {
            id: base.to_string(),
            fields: TriggerFields {
                metric_value: Some(2.0),
                ..Default::default()
            },
            ..Default::default()
        })]);
        assert_eq!(out.backfill, vec![base]);
    }
}
