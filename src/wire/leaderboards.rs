//! Leaderboard shapes (SPEC §7, Appendix A): `AdminLeaderboard` and the admin create and
//! update items.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use kudos_actors::catalog::leaderboards::{
    Leaderboard, LeaderboardFields, LeaderboardPatch, LeaderboardStatus, RankBy,
};
use kudos_actors::catalog::{Issue, Item};
use kudos_actors::leaderboard::ranking::TiePolicy;
use kudos_actors::rules::runs::RunUnit;
use serde_json::{json, Map, Value};

use super::achievements::{filters_as_ids, opt_filters, opt_str};

fn time(t: NaiveTime) -> String {
    t.format("%H:%M").to_string()
}

/// `AdminLeaderboard`, with its status as of `now`, and `tiePolicy` (Kudos extension).
pub fn admin_leaderboard(l: &Leaderboard, now: DateTime<Utc>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(l.id.to_string()));
    m.insert("name".into(), json!(l.name));
    m.insert("key".into(), json!(l.key));
    if let Some(d) = &l.description {
        m.insert("description".into(), json!(d));
    }
    m.insert("status".into(), json!(l.status_at(now).as_str()));
    m.insert("rankBy".into(), json!(l.rank_by.name()));
    match l.rank_by {
        RankBy::Metric { metric_id } => {
            m.insert("metricId".into(), json!(metric_id.to_string()));
        }
        RankBy::Points { system_id } => {
            m.insert("pointsSystemId".into(), json!(system_id.to_string()));
        }
        RankBy::Streak => {}
    }
    m.insert("maxParticipants".into(), json!(l.max_participants));
    m.insert("start".into(), json!(l.start.to_string()));
    if let Some(e) = l.end {
        m.insert("end".into(), json!(e.to_string()));
    }
    if let Some(t) = l.start_time {
        m.insert("startTime".into(), json!(time(t)));
    }
    if let Some(t) = l.end_time {
        m.insert("endTime".into(), json!(time(t)));
    }
    let breakdown: Vec<String> = l.breakdown.iter().map(ToString::to_string).collect();
    m.insert("breakdownAttributes".into(), json!(breakdown));
    if let Some((unit, interval)) = l.every {
        m.insert("runUnit".into(), json!(unit.as_str()));
        m.insert("runInterval".into(), json!(interval));
    }
    m.insert(
        "userAttributes".into(),
        Value::Array(filters_as_ids(&l.user_filters)),
    );
    m.insert(
        "tiePolicy".into(),
        json!(match l.tie_policy {
            TiePolicy::FirstReached => "first-reached",
            TiePolicy::Shared => "shared",
        }),
    );
    Value::Object(m)
}

fn opt_date(item: &Value, field: &str) -> Result<Option<Option<NaiveDate>>, String> {
    match item.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(|d| Some(Some(d)))
            .map_err(|_| format!("{field} must be a date (YYYY-MM-DD)")),
        Some(_) => Err(format!("{field} must be a date (YYYY-MM-DD)")),
    }
}

fn opt_time(item: &Value, field: &str) -> Result<Option<Option<NaiveTime>>, String> {
    match item.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => NaiveTime::parse_from_str(s, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
            .map(|t| Some(Some(t)))
            .map_err(|_| format!("{field} must be a time (HH:mm or HH:mm:ss)")),
        Some(_) => Err(format!("{field} must be a time (HH:mm or HH:mm:ss)")),
    }
}

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

fn fields(item: &Value) -> Result<LeaderboardFields, String> {
    if !item.is_object() {
        return Err("Item must be an object".into());
    }
    let name = match item.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("Name not a string".into()),
    };
    let status = match opt_str(item, "status")?.flatten() {
        None => None,
        Some(s) => Some(
            LeaderboardStatus::parse(&s)
                .ok_or("status must be one of: inactive, active, scheduled, finished")?,
        ),
    };
    let run_unit = match item.get("runUnit") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(
            RunUnit::parse(s).ok_or("runUnit must be one of: day, month, year")?,
        )),
        Some(_) => return Err("runUnit must be one of: day, month, year".into()),
    };
    let breakdown = match item.get("breakdownAttributes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ids)) => Some(
            ids.iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or("breakdownAttributes must be an array of attribute ids")?,
        ),
        Some(_) => return Err("breakdownAttributes must be an array of attribute ids".into()),
    };
    let tie_policy = match opt_str(item, "tiePolicy")?.flatten().as_deref() {
        None => None,
        Some("first-reached") => Some(TiePolicy::FirstReached),
        Some("shared") => Some(TiePolicy::Shared),
        Some(_) => return Err("tiePolicy must be one of: first-reached, shared".into()),
    };
    Ok(LeaderboardFields {
        name,
        key: opt_str(item, "key")?.flatten(),
        description: opt_str(item, "description")?,
        status,
        rank_by: opt_str(item, "rankBy")?.flatten(),
        metric_id: opt_str(item, "metricId")?.flatten(),
        points_system_id: opt_str(item, "pointsSystemId")?.flatten(),
        max_participants: nullable_int(item, "maxParticipants")?,
        start: opt_date(item, "start")?.flatten(),
        end: opt_date(item, "end")?,
        start_time: opt_time(item, "startTime")?,
        end_time: opt_time(item, "endTime")?,
        breakdown,
        run_unit,
        run_interval: nullable_int(item, "runInterval")?,
        user_filters: opt_filters(item, "userAttributes")?,
        tie_policy,
    })
}

/// A `CreateLeaderboardRequestItem`.
pub fn parse_new_leaderboard(item: &Value) -> Item<LeaderboardFields> {
    let f = fields(item)?;
    if f.name.is_none() {
        return Err("Name is required".into());
    }
    if f.key.is_none() {
        return Err("Key is required".into());
    }
    if f.rank_by.is_none() {
        return Err("rankBy is required".into());
    }
    Ok(f)
}

/// An `UpdateLeaderboardRequestItem`.
pub fn parse_leaderboard_patch(index: usize, item: &Value) -> Result<LeaderboardPatch, Issue> {
    let id = super::admin::item_id(index, item)?;
    Ok(LeaderboardPatch {
        fields: fields(item).map_err(|m| Issue::for_id(&id, m))?,
        id,
    })
}

/// `LeaderboardResponse` (application) with `status` as of `now`: attribute keys, metric
/// or points system names, configured dates (SPEC §7.6.4–5).
pub fn app_leaderboard(
    l: &Leaderboard,
    catalog: &kudos_actors::catalog::Catalog,
    now: DateTime<Utc>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(l.id.to_string()));
    m.insert("name".into(), json!(l.name));
    m.insert("key".into(), json!(l.key));
    m.insert("status".into(), json!(l.status_at(now).as_str()));
    m.insert("rankBy".into(), json!(l.rank_by.name()));
    let keys: Vec<&str> = l
        .breakdown
        .iter()
        .filter_map(|id| catalog.attribute_key(*id))
        .collect();
    m.insert("breakdownAttribute".into(), json!(keys.first()));
    m.insert("breakdownAttributes".into(), json!(keys));
    match l.rank_by {
        RankBy::Metric { metric_id } => {
            if let Some(metric) = catalog.metric(metric_id) {
                m.insert("metricKey".into(), json!(metric.key));
                m.insert("metricName".into(), json!(metric.name));
            }
        }
        RankBy::Points { system_id } => {
            if let Some(system) = catalog.points_system(system_id) {
                m.insert("pointsSystemKey".into(), json!(system.key));
                m.insert("pointsSystemName".into(), json!(system.name));
            }
        }
        RankBy::Streak => {}
    }
    m.insert("description".into(), json!(l.description));
    m.insert("start".into(), json!(l.start.to_string()));
    m.insert("end".into(), json!(l.end.map(|e| e.to_string())));
    m.insert("startTime".into(), json!(l.start_time.map(time)));
    m.insert("endTime".into(), json!(l.end_time.map(time)));
    m.insert("maxParticipants".into(), json!(l.max_participants));
    m.insert("runUnit".into(), json!(l.every.map(|e| e.0.as_str())));
    m.insert("runInterval".into(), json!(l.every.map(|e| e.1)));
    m.insert(
        "userAttributes".into(),
        Value::Array(super::achievements::filters_as_keys(
            catalog,
            &l.user_filters,
        )),
    );
    m
}

/// The `leaderboards` map of an event response (SPEC §7.7): one
/// `MetricEventLeaderboardResponse` per board the event changed, with the run's dates, the
/// rank after and before (null when not ranked), the threshold after, and the group's
/// breakdown values.
pub fn event_leaderboards(
    outcomes: &[kudos_actors::leaderboard::state::Outcome],
    catalog: &kudos_actors::catalog::Catalog,
    now: DateTime<Utc>,
) -> std::collections::BTreeMap<String, Value> {
    let mut out: std::collections::BTreeMap<String, Value> = Default::default();
    let mut first_previous: std::collections::HashMap<uuid::Uuid, Option<usize>> =
        Default::default();
    for o in outcomes {
        let Some(l) = catalog.leaderboard(o.placement.board_id) else {
            continue;
        };
        let previous = *first_previous
            .entry(l.id)
            .or_insert(o.applied.previous_rank);
        let mut m = app_leaderboard(l, catalog, now);
        m.remove("status");
        if let Some(run) = l.schedule().run(o.placement.run) {
            m.insert("start".into(), json!(run.start.to_string()));
            m.insert("end".into(), json!(run.end.map(|e| e.to_string())));
        }
        m.insert("rank".into(), json!(o.applied.rank));
        m.insert("previousRank".into(), json!(previous));
        m.insert(
            "threshold".into(),
            json!(o.applied.threshold.floor() as i64),
        );
        if !l.breakdown.is_empty() {
            let values: Vec<Value> = l
                .breakdown
                .iter()
                .zip(&o.placement.group)
                .map(|(id, v)| json!({"key": catalog.attribute_key(*id), "value": v}))
                .collect();
            if let [single] = o.placement.group.as_slice() {
                m.insert("breakdownAttributeValue".into(), json!(single));
            }
            m.insert("breakdownAttributeValues".into(), Value::Array(values));
        }
        out.insert(l.key.clone(), Value::Object(m));
    }
    out
}
