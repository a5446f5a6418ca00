//! `WrappedResponse` (SPEC §9.3): a user's year in review.

use std::collections::BTreeMap;

use chrono::Datelike;

use kudos_actors::catalog::Catalog;
use kudos_actors::user::wrapped::{Figures, PeriodFigures, SeriesFigures, WrappedFigures};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// What the caller read from the scope's rows for one period: percentiles by series, and
/// the best leaderboard standing by board key (`UserLeaderboardResponse`).
#[derive(Debug, Default)]
pub struct PeriodExtras {
    pub percentiles: BTreeMap<Uuid, f64>,
    pub leaderboards: Map<String, Value>,
    /// `UserAchievementResponse` of each achievement completed in the period, in order.
    pub achievements: Vec<Value>,
}

/// Percentages are shown with two decimals.
fn two_places(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn figures(name: &str, f: &Figures, percentile: Option<f64>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("currentTotal".into(), json!(f.total));
    m.insert("changeThisPeriod".into(), json!(f.change));
    m.insert("percentChange".into(), json!(two_places(f.percent_change)));
    if let Some(p) = percentile {
        m.insert("percentileThisPeriod".into(), json!(p));
    }
    m
}

fn metric(
    catalog: &Catalog,
    s: &SeriesFigures,
    percentile: Option<f64>,
) -> Option<(String, Value)> {
    let metric = catalog.metric(s.id)?;
    let units = Some(metric.units.as_str()).filter(|u| !u.is_empty());
    let with_units = |mut m: Map<String, Value>| {
        m.insert("units".into(), json!(units));
        m
    };
    let mut by_attribute: Map<String, Value> = Map::new();
    for (key, value, f) in &s.by_attribute {
        let values = by_attribute
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(values) = values {
            values.insert(
                value.clone(),
                Value::Object(with_units(figures(&metric.name, f, None))),
            );
        }
    }
    let mut m = with_units(figures(&metric.name, &s.figures, percentile));
    m.insert("byAttribute".into(), Value::Object(by_attribute));
    Some((metric.key.clone(), Value::Object(m)))
}

fn points(
    catalog: &Catalog,
    s: &SeriesFigures,
    percentile: Option<f64>,
) -> Option<(String, Value)> {
    let system = catalog.points_system(s.id)?;
    let mut m = figures(&system.name, &s.figures, percentile);
    let description = Some(system.description.as_str()).filter(|d| !d.is_empty());
    m.insert("description".into(), json!(description));
    Some((system.key.clone(), Value::Object(m)))
}

/// `WrappedActivityPeriod`, plus the fields of `extra` (`date`, `start`/`end`, `month`).
fn period(catalog: &Catalog, p: &PeriodFigures, extras: PeriodExtras, extra: Value) -> Value {
    // Days have no percentile (SPEC §9.3.6).
    let percentile = |id: &Uuid| p.kind.and(extras.percentiles.get(id).copied());
    let metrics: Map<String, Value> = p
        .metrics
        .iter()
        .filter_map(|s| metric(catalog, s, percentile(&s.id)))
        .collect();
    let points: Map<String, Value> = p
        .points
        .iter()
        .filter_map(|s| points(catalog, s, percentile(&s.id)))
        .collect();
    let mut m = match extra {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("metrics".into(), Value::Object(metrics));
    m.insert("points".into(), Value::Object(points));
    m.insert("achievements".into(), Value::Array(extras.achievements));
    m.insert("leaderboards".into(), Value::Object(extras.leaderboards));
    Value::Object(m)
}

/// The extras of the four periods, in the order day, week, month, year.
pub type Extras = [PeriodExtras; 4];

pub fn wrapped_response(
    user: Value,
    f: &WrappedFigures,
    catalog: &Catalog,
    extras: Extras,
) -> Value {
    let [day, week, month, year] = extras;
    let streak = match &f.longest_streak {
        Some(c) => json!({
            "length": c.length,
            "frequency": c.frequency.as_str(),
            "periodStart": c.period_start.to_string(),
            "periodEnd": c.period_end.to_string(),
            "started": c.started.map(|d| d.to_string()),
        }),
        None => json!({
            "length": 0,
            "frequency": f.frequency.as_str(),
            "periodStart": null,
            "periodEnd": null,
            "started": null,
        }),
    };
    let mut entire = period(catalog, &f.year, year, json!({}));
    if let Value::Object(m) = &mut entire {
        m.insert("longestStreak".into(), streak);
    }
    json!({
        "user": user,
        "activity": {
            "daysActive": f.days_active,
            "weeksActive": f.weeks_active,
            "monthsActive": f.months_active,
            "mostActiveDay": period(catalog, &f.day, day, json!({"date": f.day.start.to_string()})),
            "mostActiveWeek": period(catalog, &f.week, week, json!({
                "start": f.week.start.to_string(),
                "end": f.week.end.to_string(),
            })),
            "mostActiveMonth": period(catalog, &f.month_period, month, json!({"month": f.month_period.start.month0()})),
            "entireYear": entire,
        }
    })
}
