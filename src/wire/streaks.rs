//! Streak shapes: `BaseStreakResponse` and its variants, history, bulk streaks, streak
//! settings and preferences (SPEC §5, Appendix A).

use kudos_actors::catalog::{Catalog, StreakSettings};
use kudos_actors::rules::streak::{HistoryRow, Pause, StreakView};
use kudos_actors::user::Preferences;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{ts, ShapeError};

fn date(d: chrono::NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// `BaseStreakResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseStreak {
    pub length: u32,
    pub frequency: &'static str,
    pub started: Option<String>,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freezes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_freezes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze_auto_earn_interval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze_auto_earn_amount: Option<u32>,
}

impl From<&StreakView> for BaseStreak {
    fn from(v: &StreakView) -> Self {
        Self {
            length: v.length,
            frequency: v.frequency.as_str(),
            started: v.started.map(date),
            period_start: v.period_start.map(date),
            period_end: v.period_end.map(date),
            expires: v.expires.map(date),
            freezes: v.freezes,
            max_freezes: v.max_freezes,
            freeze_auto_earn_interval: v.auto_earn.map(|(i, _)| i),
            freeze_auto_earn_amount: v.auto_earn.map(|(_, a)| a),
        }
    }
}

/// `MetricEventStreakResponse`.
#[derive(Debug, Serialize)]
pub struct MetricEventStreak {
    #[serde(flatten)]
    pub base: BaseStreak,
    pub extended: bool,
}

impl MetricEventStreak {
    pub fn new(view: &StreakView, extended: bool) -> Self {
        Self {
            base: BaseStreak::from(view),
            extended,
        }
    }
}

/// One `streakHistory` entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItem {
    pub period_start: String,
    pub period_end: String,
    pub length: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_freeze: Option<bool>,
    pub used_pause: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<String>,
}

impl HistoryItem {
    pub fn new(row: &HistoryRow, freezes_enabled: bool) -> Self {
        Self {
            period_start: date(row.period_start),
            period_end: date(row.period_end),
            length: row.length,
            used_freeze: freezes_enabled.then_some(row.used_freeze),
            used_pause: row.used_pause,
            reset_at: row.reset_at.map(ts),
        }
    }
}

/// `{id, start, end}` of `StreakResponse.pauses`.
#[derive(Debug, Serialize)]
pub struct PauseItem {
    pub id: String,
    pub start: String,
    pub end: String,
}

impl From<&Pause> for PauseItem {
    fn from(p: &Pause) -> Self {
        Self {
            id: p.id.to_string(),
            start: date(p.start),
            end: date(p.end),
        }
    }
}

/// `StreakResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreakResponse {
    #[serde(flatten)]
    pub base: BaseStreak,
    pub extended: Option<String>,
    pub streak_history: Vec<HistoryItem>,
    pub pauses: Vec<PauseItem>,
}

impl From<&kudos_actors::user::StreakDetail> for StreakResponse {
    fn from(s: &kudos_actors::user::StreakDetail) -> Self {
        StreakResponse {
            base: BaseStreak::from(&s.view),
            extended: s.view.extended.map(crate::wire::ts),
            streak_history: s
                .history
                .iter()
                .map(|h| HistoryItem::new(h, s.freezes_enabled))
                .collect(),
            pauses: s.pauses.iter().map(PauseItem::from).collect(),
        }
    }
}

/// `BulkStreakResponse` item.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkStreakItem {
    pub user_id: String,
    pub streak_length: u32,
    pub extended: Option<String>,
}

/// `AdminStreakPause`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminStreakPause {
    pub id: String,
    pub user_id: String,
    pub start: String,
    pub end: String,
    pub status: &'static str,
}

impl AdminStreakPause {
    pub fn new(user_id: &str, p: &Pause) -> Self {
        Self {
            id: p.id.to_string(),
            user_id: user_id.to_string(),
            start: date(p.start),
            end: date(p.end),
            status: if p.archived { "archived" } else { "active" },
        }
    }
}

/// `StreakSettings` (SDK 1.27). `metrics` lists keys of live metrics; `freezes` is `null`
/// when disabled.
pub fn streak_settings(s: &StreakSettings, catalog: &Catalog) -> Value {
    let metrics: Vec<Value> = s
        .metrics
        .iter()
        .filter_map(|(id, threshold)| {
            catalog
                .metric(*id)
                .map(|m| serde_json::json!({"key": m.key, "threshold": *threshold as i64}))
        })
        .collect();
    let freezes = s.freezes.as_ref().map(|f| {
        serde_json::json!({
            "startCount": f.start_count,
            "maxCount": f.max_count,
            "autoEarnInterval": f.auto_earn_interval,
            "autoEarnAmount": f.auto_earn_amount,
        })
    });
    serde_json::json!({
        "frequency": s.frequency.as_str(),
        "evaluationMode": s.mode.as_str(),
        "customizationEnabled": s.customization_enabled,
        "daysOff": s.days_off,
        "metrics": metrics,
        "freezes": freezes,
    })
}

/// `UserPreferencesResponse`.
pub fn preferences(p: &Preferences, catalog: &Catalog) -> Value {
    let mut body = Map::new();
    body.insert(
        "notifications".into(),
        serde_json::to_value(&p.notifications).unwrap_or_default(),
    );
    if let Some(s) = &p.streak {
        let mut streak = Map::new();
        if let Some(e) = s.enabled {
            streak.insert("enabled".into(), Value::Bool(e));
        }
        if let Some(m) = s.mode {
            streak.insert("evaluationMode".into(), Value::String(m.as_str().into()));
        }
        if let Some(metrics) = &s.metrics {
            let list: Vec<Value> = metrics
                .iter()
                .filter_map(|(id, t)| {
                    catalog
                        .metric(*id)
                        .map(|m| serde_json::json!({"key": m.key, "threshold": t}))
                })
                .collect();
            streak.insert("metrics".into(), Value::Array(list));
        }
        if let Some(days) = &s.days_off {
            streak.insert("daysOff".into(), serde_json::json!(days));
        }
        body.insert("streak".into(), Value::Object(streak));
    }
    Value::Object(body)
}

/// `[{key, threshold}]` → pairs; wrong types are a 400.
pub fn metric_thresholds(v: &Value, what: &str) -> Result<Vec<(String, f64)>, ShapeError> {
    let items = v
        .as_array()
        .ok_or_else(|| ShapeError::new(format!("{what} must be an array")))?;
    items
        .iter()
        .map(|item| {
            let key = item
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| ShapeError::new(format!("{what}[].key must be a string")))?;
            let threshold = item
                .get("threshold")
                .and_then(Value::as_f64)
                .ok_or_else(|| ShapeError::new(format!("{what}[].threshold must be a number")))?;
            Ok((key.to_string(), threshold))
        })
        .collect()
}

/// An array of integers (e.g. `daysOff`); wrong types are a 400.
pub fn int_list(v: &Value, what: &str) -> Result<Vec<i64>, ShapeError> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| ShapeError::new(format!("{what} must be an array of integers")))
}
