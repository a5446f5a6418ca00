//! Points shapes (SPEC §6, Appendix A): the admin entities and their create/update items,
//! and the application views (`PointsResponse`, `PointsTrigger`, `PointsAward`, ...).

use chrono::NaiveDate;
use kudos_actors::catalog::points::{
    boost_status, BoostPatch, CreatedSystem, LevelPatch, NewBoost, NewLevel, NewPointsSystem,
    PointsBoost, PointsLevel, PointsSystem, PointsSystemPatch, PointsTrigger, TriggerFields,
    TriggerKind, TriggerPatch,
};
use kudos_actors::catalog::{Catalog, Issue, Item};
use kudos_actors::rules::points::Rounding;
use serde_json::{json, Map, Value};

use super::achievements::{badge, filters_as_ids, filters_as_keys, opt_filters, opt_int, opt_str};
use super::ts;

fn badge_object(url: &Option<String>) -> Value {
    url.as_ref().map_or(Value::Null, |u| json!({"url": u}))
}

/// `AdminPointsSystem`.
pub fn admin_system(s: &PointsSystem) -> Value {
    json!({
        "id": s.id.to_string(),
        "name": s.name,
        "key": s.key,
        "description": s.description,
        "status": if s.deleted { "archived" } else { "active" },
        "badge": badge_object(&s.badge_url),
        "maxPoints": s.max_points,
    })
}

/// `CreatedAdminPointsSystem`: nested lists only when the request had them.
pub fn created_system(c: &CreatedSystem, today: &dyn Fn(&PointsBoost) -> NaiveDate) -> Value {
    let mut v = admin_system(&c.system);
    if let Value::Object(m) = &mut v {
        if let Some(levels) = &c.levels {
            m.insert("levels".into(), levels.iter().map(admin_level).collect());
        }
        if let Some(boosts) = &c.boosts {
            m.insert(
                "boosts".into(),
                boosts.iter().map(|b| admin_boost_on(b, today(b))).collect(),
            );
        }
        if let Some(triggers) = &c.triggers {
            m.insert(
                "triggers".into(),
                triggers.iter().map(admin_trigger).collect(),
            );
        }
    }
    v
}

/// `AdminPointsTrigger`.
pub fn admin_trigger(t: &PointsTrigger) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(t.id.to_string()));
    m.insert("type".into(), json!(t.kind.name()));
    m.insert("points".into(), json!(t.points));
    m.insert(
        "status".into(),
        json!(if t.active { "active" } else { "inactive" }),
    );
    m.insert(
        "userAttributes".into(),
        Value::Array(filters_as_ids(&t.user_filters)),
    );
    m.insert("blockIfOutOfPoints".into(), json!(t.block_if_out_of_points));
    match &t.kind {
        TriggerKind::Metric {
            metric_id,
            threshold,
            event_filters,
        } => {
            m.insert("metricId".into(), json!(metric_id.to_string()));
            m.insert("metricThreshold".into(), json!(threshold));
            m.insert(
                "eventAttributes".into(),
                Value::Array(filters_as_ids(event_filters)),
            );
        }
        TriggerKind::Streak { length } => {
            m.insert("streakLength".into(), json!(length));
        }
        TriggerKind::Achievement { achievement_id } => {
            m.insert("achievementId".into(), json!(achievement_id.to_string()));
        }
        TriggerKind::Time { unit, interval } => {
            m.insert("timeUnit".into(), json!(unit.admin()));
            m.insert("timeInterval".into(), json!(interval));
        }
        TriggerKind::UserCreation => {}
    }
    Value::Object(m)
}

/// `AdminPointsLevel`.
pub fn admin_level(l: &PointsLevel) -> Value {
    json!({
        "id": l.id.to_string(),
        "name": l.name,
        "key": l.key,
        "points": l.points,
        "description": l.description,
        "badge": badge_object(&l.badge_url),
    })
}

/// `AdminPointsBoost`: the application shape plus `userId`, and `userAttributes` for
/// boosts that are not user-specific; status as of `today` (UTC for admin lists).
pub fn admin_boost_on(b: &PointsBoost, today: NaiveDate) -> Value {
    let mut v = app_boost(b, today);
    v["userId"] = json!(b.user_id);
    if b.user_id.is_none() {
        v["userAttributes"] = Value::Array(filters_as_ids(&b.user_filters));
    }
    v
}

/// `PointsBoost` (application).
pub fn app_boost(b: &PointsBoost, today: NaiveDate) -> Value {
    json!({
        "id": b.id.to_string(),
        "name": b.name,
        "status": boost_status(b, today),
        "start": b.start.to_string(),
        "end": b.end.map(|e| e.to_string()),
        "multiplier": b.multiplier,
        "rounding": b.rounding.as_str(),
    })
}

/// `PointsResponse` fields of a system (application).
pub fn points_response(s: &PointsSystem) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(s.id.to_string()));
    m.insert("key".into(), json!(s.key));
    m.insert("name".into(), json!(s.name));
    m.insert(
        "description".into(),
        if s.description.is_empty() {
            Value::Null
        } else {
            json!(s.description)
        },
    );
    m.insert("badgeUrl".into(), json!(s.badge_url));
    m.insert("maxPoints".into(), json!(s.max_points));
    m
}

/// `PointsTrigger` (application): attribute keys, `streakLengthThreshold`, `hour|day`.
pub fn app_trigger(t: &PointsTrigger, catalog: &Catalog) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(t.id.to_string()));
    m.insert("type".into(), json!(t.kind.name()));
    m.insert("points".into(), json!(t.points));
    m.insert("status".into(), json!(t.status()));
    m.insert(
        "userAttributes".into(),
        Value::Array(filters_as_keys(catalog, &t.user_filters)),
    );
    m.insert("created".into(), json!(ts(t.created)));
    m.insert("updated".into(), json!(ts(t.updated)));
    match &t.kind {
        TriggerKind::Metric {
            metric_id,
            threshold,
            event_filters,
        } => {
            m.insert("metricId".into(), json!(metric_id.to_string()));
            if let Some(metric) = catalog.metric(*metric_id) {
                m.insert("metricName".into(), json!(metric.name));
            }
            m.insert("metricThreshold".into(), json!(threshold));
            let filters = filters_as_keys(catalog, event_filters);
            if let Some(first) = filters.first() {
                m.insert("eventAttribute".into(), first.clone());
            }
            m.insert("eventAttributes".into(), Value::Array(filters));
        }
        TriggerKind::Streak { length } => {
            m.insert("streakLengthThreshold".into(), json!(length));
        }
        TriggerKind::Achievement { achievement_id } => {
            m.insert("achievementId".into(), json!(achievement_id.to_string()));
            if let Some(a) = catalog.achievement(*achievement_id) {
                m.insert("achievementName".into(), json!(a.name));
            }
        }
        TriggerKind::Time { unit, interval } => {
            m.insert("timeUnit".into(), json!(unit.app()));
            m.insert("timeInterval".into(), json!(interval));
        }
        TriggerKind::UserCreation => {}
    }
    Value::Object(m)
}

/// `PointsLevel` (application).
pub fn app_level(l: &PointsLevel) -> Value {
    json!({
        "id": l.id.to_string(),
        "key": l.key,
        "name": l.name,
        "description": l.description,
        "badgeUrl": l.badge_url,
        "points": l.points,
    })
}

// ----- parsing -----

fn item_object(item: &Value) -> Result<(), String> {
    if item.is_object() {
        Ok(())
    } else {
        Err("Item must be an object".into())
    }
}

fn required_str(item: &Value, field: &str, label: &str) -> Result<String, String> {
    match item.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(format!("{label} is required")),
        Some(_) => Err(format!("{label} not a string")),
    }
}

fn opt_name(item: &Value) -> Result<Option<String>, String> {
    match item.get("name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err("Name not a string".into()),
    }
}

fn opt_bool(item: &Value, field: &str) -> Result<Option<bool>, String> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{field} must be a boolean")),
    }
}

/// An integer field that may be `null` (`Some(None)`) or absent (`None`).
fn nullable_int(item: &Value, field: &str) -> Result<Option<Option<i64>>, String> {
    match item.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => v
            .as_i64()
            .map(|i| Some(Some(i)))
            .ok_or_else(|| format!("{field} must be an integer")),
    }
}

fn date(raw: &Value, field: &str) -> Result<NaiveDate, String> {
    raw.as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| format!("{field} must be a date (YYYY-MM-DD)"))
}

fn rounding(item: &Value) -> Result<Option<Rounding>, String> {
    match item.get("rounding") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Rounding::parse(s)
            .map(Some)
            .ok_or_else(|| "rounding must be one of: down, up, nearest".to_string()),
        Some(_) => Err("rounding must be a string".into()),
    }
}

fn item_id(index: usize, item: &Value) -> Result<String, Issue> {
    match item.get("id") {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(Issue::at_index(
            index,
            "id is required and must be a string",
        )),
    }
}

fn nested<T>(
    item: &Value,
    field: &str,
    parse: fn(&Value) -> Item<T>,
) -> Result<Option<Vec<Item<T>>>, String> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) => Ok(Some(list.iter().map(parse).collect())),
        Some(_) => Err(format!("{field} must be an array")),
    }
}

/// A `CreatePointsSystemRequestItem`.
pub fn parse_new_system(item: &Value) -> Item<NewPointsSystem> {
    item_object(item)?;
    Ok(NewPointsSystem {
        name: required_str(item, "name", "Name")?,
        key: required_str(item, "key", "Key")?,
        description: opt_str(item, "description")?.flatten(),
        badge_url: badge(item)?.flatten(),
        max_points: nullable_int(item, "maxPoints")?.flatten(),
        levels: nested(item, "levels", parse_new_level)?,
        boosts: nested(item, "boosts", parse_new_boost)?,
        triggers: nested(item, "triggers", parse_trigger_fields)?,
    })
}

pub fn parse_system_patch(index: usize, item: &Value) -> Result<PointsSystemPatch, Issue> {
    let id = item_id(index, item)?;
    let fail = |m: String| Issue::for_id(&id, m);
    Ok(PointsSystemPatch {
        name: opt_name(item).map_err(fail)?,
        description: opt_str(item, "description").map_err(fail)?.flatten(),
        badge_url: badge(item).map_err(fail)?,
        max_points: nullable_int(item, "maxPoints").map_err(fail)?,
        id: id.clone(),
    })
}

fn trigger_fields(item: &Value) -> Result<TriggerFields, String> {
    let active = match item.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "active" => Some(true),
        Some(Value::String(s)) if s == "inactive" => Some(false),
        Some(_) => return Err("status must be one of: active, inactive".into()),
    };
    let points = match item.get("points") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or("Points must be a non-zero integer")?),
    };
    Ok(TriggerFields {
        kind: opt_str(item, "type")?.flatten(),
        points,
        active,
        user_filters: opt_filters(item, "userAttributes")?,
        metric_id: opt_str(item, "metricId")?.flatten(),
        metric_threshold: opt_int(item, "metricThreshold")?,
        event_filters: opt_filters(item, "eventAttributes")?,
        achievement_id: opt_str(item, "achievementId")?.flatten(),
        streak_length: opt_int(item, "streakLength")?,
        time_unit: opt_str(item, "timeUnit")?.flatten(),
        time_interval: opt_int(item, "timeInterval")?,
        block_if_out_of_points: opt_bool(item, "blockIfOutOfPoints")?,
    })
}

/// A `CreatePointsTriggerRequestItem`.
pub fn parse_trigger_fields(item: &Value) -> Item<TriggerFields> {
    item_object(item)?;
    let fields = trigger_fields(item)?;
    if fields.kind.is_none() {
        return Err("Type is required".into());
    }
    if fields.points.is_none() {
        return Err("Points is required".into());
    }
    Ok(fields)
}

pub fn parse_trigger_patch(index: usize, item: &Value) -> Result<TriggerPatch, Issue> {
    let id = item_id(index, item)?;
    Ok(TriggerPatch {
        fields: trigger_fields(item).map_err(|m| Issue::for_id(&id, m))?,
        id,
    })
}

/// A `CreatePointsLevelRequestItem`.
pub fn parse_new_level(item: &Value) -> Item<NewLevel> {
    item_object(item)?;
    let points = match item.get("points") {
        None | Some(Value::Null) => return Err("Points is required".into()),
        Some(v) => v.as_i64().ok_or("Points must be an integer")?,
    };
    Ok(NewLevel {
        name: required_str(item, "name", "Name")?,
        key: required_str(item, "key", "Key")?,
        points,
        description: opt_str(item, "description")?.flatten(),
        badge_url: badge(item)?.flatten(),
    })
}

pub fn parse_level_patch(index: usize, item: &Value) -> Result<LevelPatch, Issue> {
    let id = item_id(index, item)?;
    let fail = |m: String| Issue::for_id(&id, m);
    Ok(LevelPatch {
        name: opt_name(item).map_err(fail)?,
        points: opt_int(item, "points").map_err(fail)?,
        description: opt_str(item, "description").map_err(fail)?.flatten(),
        badge_url: badge(item).map_err(fail)?,
        id: id.clone(),
    })
}

fn multiplier(item: &Value) -> Result<Option<f64>, String> {
    match item.get("multiplier") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| "Multiplier must be a number".to_string()),
    }
}

/// A `CreatePointsBoostRequestItem`.
pub fn parse_new_boost(item: &Value) -> Item<NewBoost> {
    item_object(item)?;
    let start = match item.get("start") {
        None | Some(Value::Null) => return Err("Start date is required".into()),
        Some(v) => date(v, "start")?,
    };
    let end = match item.get("end") {
        None | Some(Value::Null) => None,
        Some(v) => Some(date(v, "end")?),
    };
    Ok(NewBoost {
        name: required_str(item, "name", "Name")?,
        user_id: opt_str(item, "userId")?.flatten(),
        user_filters: opt_filters(item, "userAttributes")?.flatten(),
        start,
        end,
        multiplier: multiplier(item)?.ok_or("Multiplier is required")?,
        rounding: rounding(item)?,
    })
}

pub fn parse_boost_patch(index: usize, item: &Value) -> Result<BoostPatch, Issue> {
    let id = item_id(index, item)?;
    let fail = |m: String| Issue::for_id(&id, m);
    let start = match item.get("start") {
        None | Some(Value::Null) => None,
        Some(v) => Some(date(v, "start").map_err(fail)?),
    };
    let end = match item.get("end") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => Some(Some(date(v, "end").map_err(fail)?)),
    };
    Ok(BoostPatch {
        name: opt_name(item).map_err(fail)?,
        start,
        end,
        multiplier: multiplier(item).map_err(fail)?,
        rounding: rounding(item).map_err(fail)?,
        user_filters: opt_filters(item, "userAttributes").map_err(fail)?,
        id: id.clone(),
    })
}

/// `PointsAward` (application): the trigger as it is now (`archived` once deleted) and the
/// boosts the award used.
pub fn app_award(award: &kudos_actors::user::Award, catalog: &Catalog, today: NaiveDate) -> Value {
    json!({
        "id": award.id.to_string(),
        "awarded": award.awarded,
        "date": ts(award.at),
        "total": award.total,
        "trigger": catalog
            .points_trigger_any(award.trigger_id)
            .map_or(Value::Null, |t| app_trigger(t, catalog)),
        "boosts": award
            .boosts
            .iter()
            .filter_map(|id| catalog.points_boost_any(*id))
            .map(|b| app_boost(b, today))
            .collect::<Vec<_>>(),
    })
}

/// The `points` map of an event or completion response: systemKey →
/// `MetricEventPointsResponse` for every system with an award in `effects` (SPEC §3.2.6),
/// with `level` only when the level changed.
pub fn points_map(
    effects: &[kudos_actors::user::Effect],
    catalog: &Catalog,
    today: NaiveDate,
) -> std::collections::BTreeMap<String, Value> {
    use kudos_actors::user::Effect;
    let mut out: std::collections::BTreeMap<String, Map<String, Value>> = Default::default();
    for e in effects {
        match e {
            Effect::PointsAwarded {
                system_id, award, ..
            } => {
                let Some(system) = catalog.points_system(*system_id) else {
                    continue;
                };
                let entry = out.entry(system.key.clone()).or_insert_with(|| {
                    let mut m = points_response(system);
                    m.insert("total".into(), json!(0));
                    m.insert("added".into(), json!(0));
                    m.insert("awards".into(), json!([]));
                    m
                });
                let added = entry["added"].as_i64().unwrap_or(0) + award.awarded;
                entry.insert("added".into(), json!(added));
                entry.insert("total".into(), json!(award.total));
                if let Some(Value::Array(list)) = entry.get_mut("awards") {
                    list.push(app_award(award, catalog, today));
                }
            }
            Effect::PointsLevelChanged { system_id, new, .. } => {
                let Some(system) = catalog.points_system(*system_id) else {
                    continue;
                };
                if let Some(entry) = out.get_mut(&system.key) {
                    let level = new
                        .and_then(|id| catalog.points_level_any(id))
                        .map_or(Value::Null, app_level);
                    entry.insert("level".into(), level);
                }
            }
            _ => {}
        }
    }
    out.into_iter()
        .map(|(k, m)| (k, Value::Object(m)))
        .collect()
}
