//! Achievement shapes: `AchievementResponse` and its user/stats variants, `AdminAchievement`,
//! and parsing of admin create/update items (SPEC §4, Appendix A).

use chrono::{DateTime, Utc};
use kudos_actors::achievements::{
    Achievement, AchievementPatch, AchievementStatus, NewAchievement, Trigger, TriggerFields,
};
use kudos_actors::catalog::{Catalog, Issue};
use serde_json::{json, Map, Value};

use super::ts;

pub(crate) fn filters_as_keys(catalog: &Catalog, filters: &[(uuid::Uuid, String)]) -> Vec<Value> {
    filters
        .iter()
        .filter_map(|(id, v)| {
            catalog
                .attribute_key(*id)
                .map(|k| json!({"key": k, "value": v}))
        })
        .collect()
}

pub(crate) fn filters_as_ids(filters: &[(uuid::Uuid, String)]) -> Vec<Value> {
    filters
        .iter()
        .map(|(id, v)| json!({"attributeId": id.to_string(), "attributeValue": v}))
        .collect()
}

/// The trigger fields that the application and admin shapes spell the same way (metric
/// fields differ: keys vs attribute ids, and `metricName`).
fn other_trigger_fields(m: &mut Map<String, Value>, trigger: &Trigger) {
    match trigger {
        Trigger::Metric { .. } => {}
        Trigger::Streak { length } => {
            m.insert("streakLength".into(), json!(length));
        }
        Trigger::Api { key } => {
            m.insert("key".into(), json!(key));
        }
        Trigger::Achievement { prerequisites } => {
            let ids: Vec<String> = prerequisites.iter().map(ToString::to_string).collect();
            m.insert("achievementIds".into(), json!(ids));
        }
        Trigger::Anniversary { years } => {
            m.insert("anniversaryYears".into(), json!(years));
        }
    }
}

/// `AchievementResponse` as a JSON object (optional fields only for their trigger).
pub fn achievement(a: &Achievement, catalog: &Catalog) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(a.id.to_string()));
    m.insert("name".into(), json!(a.name));
    m.insert("trigger".into(), json!(a.trigger.name()));
    m.insert("description".into(), json!(a.description));
    m.insert("badgeUrl".into(), json!(a.badge_url));
    m.insert(
        "userAttributes".into(),
        Value::Array(filters_as_keys(catalog, &a.user_filters)),
    );
    if let Trigger::Metric {
        metric_id,
        value,
        event_filters,
    } = &a.trigger
    {
        m.insert("metricId".into(), json!(metric_id.to_string()));
        m.insert("metricValue".into(), json!(value));
        if let Some(metric) = catalog.metric(*metric_id) {
            m.insert("metricName".into(), json!(metric.name));
        }
        let filters = filters_as_keys(catalog, event_filters);
        if let Some(first) = filters.first() {
            m.insert("eventAttribute".into(), first.clone());
        }
        m.insert("eventAttributes".into(), Value::Array(filters));
    }
    other_trigger_fields(&mut m, &a.trigger);
    m
}

/// `UserAchievementResponse`.
pub fn user_achievement(
    a: &Achievement,
    catalog: &Catalog,
    achieved_at: Option<DateTime<Utc>>,
) -> Value {
    let mut m = achievement(a, catalog);
    m.insert("achievedAt".into(), json!(achieved_at.map(ts)));
    Value::Object(m)
}

/// Completion statistics (SPEC §4.5): `rarity` is a percentage of all users, 2 decimals.
pub fn with_stats(mut v: Value, completions: u64, users: usize) -> Value {
    let rarity = if users == 0 {
        0.0
    } else {
        ((completions as f64 / users as f64) * 10_000.0).round() / 100.0
    };
    if let Value::Object(m) = &mut v {
        m.insert("completions".into(), json!(completions));
        m.insert("rarity".into(), json!(rarity));
    }
    v
}

/// `AdminAchievement`.
pub fn admin_achievement(a: &Achievement) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(a.id.to_string()));
    m.insert("name".into(), json!(a.name));
    if let Some(d) = &a.description {
        m.insert("description".into(), json!(d));
    }
    m.insert("trigger".into(), json!(a.trigger.name()));
    m.insert("status".into(), json!(a.status.as_str()));
    m.insert(
        "badge".into(),
        a.badge_url
            .as_ref()
            .map_or(Value::Null, |u| json!({"url": u})),
    );
    m.insert(
        "userAttributes".into(),
        Value::Array(filters_as_ids(&a.user_filters)),
    );
    if let Trigger::Metric {
        metric_id,
        value,
        event_filters,
    } = &a.trigger
    {
        m.insert("metricId".into(), json!(metric_id.to_string()));
        m.insert("metricValue".into(), json!(value));
        m.insert(
            "eventAttributes".into(),
            Value::Array(filters_as_ids(event_filters)),
        );
    }
    other_trigger_fields(&mut m, &a.trigger);
    Value::Object(m)
}

pub(crate) fn opt_str(item: &Value, field: &str) -> Result<Option<Option<String>>, String> {
    match item.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

pub(crate) fn opt_int(item: &Value, field: &str) -> Result<Option<i64>, String> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{field} must be an integer")),
    }
}

/// Attribute filters as sent: `(attributeId, attributeValue)` pairs.
pub(crate) type RawFilters = Vec<(String, String)>;

/// Absent → `None`; `null` → `Some(None)`; a list → `Some(Some(list))`.
pub(crate) fn opt_filters(item: &Value, field: &str) -> Result<Option<Option<RawFilters>>, String> {
    match item.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Array(list)) => list
            .iter()
            .map(|f| {
                let id = f.get("attributeId").and_then(Value::as_str);
                let value = f.get("attributeValue").and_then(Value::as_str);
                match (id, value) {
                    (Some(id), Some(v)) => Ok((id.to_string(), v.to_string())),
                    _ => Err(format!(
                        "{field} items need string attributeId and attributeValue"
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| Some(Some(v))),
        Some(_) => Err(format!("{field} must be an array")),
    }
}

pub(crate) fn badge(item: &Value) -> Result<Option<Option<String>>, String> {
    match item.get("badge") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(b) => b
            .get("url")
            .and_then(Value::as_str)
            .map(|u| Some(Some(u.to_string())))
            .ok_or_else(|| "badge must be an object with a url".to_string()),
    }
}

fn status(item: &Value) -> Result<Option<AchievementStatus>, String> {
    match item.get("status") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => AchievementStatus::parse(s)
            .map(Some)
            .ok_or_else(|| "status must be one of: active, inactive, locked".to_string()),
        Some(_) => Err("status must be a string".into()),
    }
}

fn trigger_fields(item: &Value) -> Result<TriggerFields, String> {
    let metric_value = match item.get("metricValue") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().ok_or("metricValue must be a number")?),
    };
    let achievement_ids = match item.get("achievementIds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ids)) => Some(
            ids.iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or("achievementIds must be an array of strings")?,
        ),
        Some(_) => return Err("achievementIds must be an array of strings".into()),
    };
    Ok(TriggerFields {
        trigger: opt_str(item, "trigger")?.flatten(),
        key: opt_str(item, "key")?.flatten(),
        metric_id: opt_str(item, "metricId")?.flatten(),
        metric_value,
        event_filters: opt_filters(item, "eventAttributes")?,
        streak_length: opt_int(item, "streakLength")?,
        anniversary_years: opt_int(item, "anniversaryYears")?,
        achievement_ids,
    })
}

/// A `CreateAchievementRequestItem`; problems become the item's issue.
pub fn parse_new_achievement(item: &Value) -> Result<NewAchievement, String> {
    if !item.is_object() {
        return Err("Item must be an object".into());
    }
    let name = match item.get("name") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err("Name is required".into()),
        Some(_) => return Err("Name not a string".into()),
    };
    if item.get("trigger").and_then(Value::as_str).is_none() {
        return Err("Trigger is required".into());
    }
    Ok(NewAchievement {
        name,
        description: opt_str(item, "description")?.flatten(),
        badge_url: badge(item)?.flatten(),
        status: status(item)?,
        user_filters: opt_filters(item, "userAttributes")?
            .flatten()
            .unwrap_or_default(),
        fields: trigger_fields(item)?,
    })
}

/// An `UpdateAchievementRequestItem`.
pub fn parse_achievement_patch(index: usize, item: &Value) -> Result<AchievementPatch, Issue> {
    let id = match item.get("id") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(Issue::at_index(
                index,
                "id is required and must be a string",
            ))
        }
    };
    let fail = |m: String| Issue::for_id(&id, m);
    let name = match item.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(fail("Name not a string".into())),
    };
    Ok(AchievementPatch {
        name,
        description: opt_str(item, "description").map_err(fail)?,
        badge_url: badge(item).map_err(fail)?,
        status: status(item).map_err(fail)?,
        user_filters: opt_filters(item, "userAttributes").map_err(fail)?,
        fields: trigger_fields(item).map_err(fail)?,
        id: id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rarity_is_a_rounded_percentage() {
        let v = with_stats(json!({}), 1, 3);
        assert_eq!(v["rarity"], 33.33);
        assert_eq!(with_stats(json!({}), 0, 0)["rarity"], 0.0);
    }

    #[test]
    fn create_items_need_name_and_trigger() {
        assert_eq!(
            parse_new_achievement(&json!({"trigger": "api"}))
                .err()
                .as_deref(),
            Some("Name is required")
        );
        assert_eq!(
            parse_new_achievement(&json!({"name": "x"}))
                .err()
                .as_deref(),
            Some("Trigger is required")
        );
        assert!(parse_new_achievement(
            &json!({"name": "x", "trigger": "streak", "streakLength": "3"})
        )
        .is_err());
        let ok = parse_new_achievement(
            &json!({"name": "x", "trigger": "streak", "streakLength": 3, "badge": {"url": "u"}}),
        )
        .expect("valid");
        assert_eq!(ok.badge_url.as_deref(), Some("u"));
    }
}
