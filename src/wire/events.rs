//! Metric events and metric reads: `EventResponse`, `MetricResponse`, event summaries.

use std::collections::BTreeMap;

use kudos_actors::rules::profile::UserWrite;
use kudos_actors::rules::summary::SummaryRow;
use serde::Serialize;
use serde_json::Value;

use super::streaks::MetricEventStreak;
use super::users::parse_upserted_user;
use super::{object, string_map, ShapeError};

/// `EventResponse` (SPEC §3.2.6).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventResponse {
    pub event_id: String,
    pub metric_id: String,
    pub total: f64,
    /// `UserAchievementResponse[]`: filled by the achievements issue.
    pub achievements: Vec<Value>,
    pub current_streak: MetricEventStreak,
    /// systemKey → `MetricEventPointsResponse`: filled by the points issue.
    pub points: BTreeMap<String, Value>,
    /// leaderboardKey → `MetricEventLeaderboardResponse`: filled by the leaderboards issue.
    pub leaderboards: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent_replayed: Option<bool>,
}

/// `MetricResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResponse {
    pub id: String,
    pub key: String,
    pub name: String,
    /// Required by `@trophyso/node` (`MetricStatus`); deleted metrics are never listed.
    pub status: &'static str,
    pub current: f64,
    /// `UserAchievementResponse[]`: filled by the achievements issue.
    pub achievements: Vec<Value>,
}

/// One event-summary row `{date, total, change}`.
#[derive(Debug, Serialize)]
pub struct SummaryEntry {
    pub date: String,
    pub total: f64,
    pub change: f64,
}

impl From<&SummaryRow> for SummaryEntry {
    fn from(r: &SummaryRow) -> Self {
        Self {
            date: r.date.format("%Y-%m-%d").to_string(),
            total: r.total,
            change: r.change,
        }
    }
}

/// A parsed metric event body (single or one batch item).
#[derive(Debug)]
pub struct EventBody {
    pub user_id: String,
    pub user: UserWrite,
    pub value: f64,
    pub attributes: BTreeMap<String, String>,
}

fn parse_value(obj: &serde_json::Map<String, Value>) -> Result<f64, ShapeError> {
    match obj.get("value") {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .ok_or_else(|| ShapeError::new("value must be a finite number")),
        None | Some(Value::Null) => Err(ShapeError::new("value is required")),
        Some(_) => Err(ShapeError::new("value must be a number")),
    }
}

/// `{user: UpsertedUser, value: number, attributes?: {string: string}}`.
pub fn parse_event_body(body: &Value) -> Result<EventBody, ShapeError> {
    let obj = object(body, "Request body")?;
    let user = obj
        .get("user")
        .filter(|v| !v.is_null())
        .ok_or_else(|| ShapeError::new("user is required"))?;
    let (user_id, user) = parse_upserted_user(user, "user")?;
    Ok(EventBody {
        user_id,
        user,
        value: parse_value(obj)?,
        attributes: string_map(obj, "attributes")?,
    })
}

/// A batch item: the event body plus `key` and `idempotencyKey`.
#[derive(Debug)]
pub struct BatchItem {
    pub key: String,
    pub event: EventBody,
    pub idempotency_key: Option<String>,
}

pub fn parse_batch_item(index: usize, item: &Value) -> Result<BatchItem, ShapeError> {
    let at = |e: ShapeError| ShapeError::new(format!("Item {index}: {}", e.0));
    let obj = object(item, "item").map_err(at)?;
    let key = match obj.get("key") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(at(ShapeError::new("key is required"))),
        Some(_) => return Err(at(ShapeError::new("key must be a string"))),
    };
    let idempotency_key = super::opt_string(obj, "idempotencyKey")
        .map_err(at)?
        .filter(|k| !k.is_empty());
    Ok(BatchItem {
        key,
        event: parse_event_body(item).map_err(at)?,
        idempotency_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_body_shapes() {
        let ok =
            parse_event_body(&json!({"user": {"id": "u"}, "value": 1.5, "attributes": {"a": "b"}}))
                .expect("valid");
        assert_eq!((ok.user_id.as_str(), ok.value), ("u", 1.5));
        for bad in [
            json!({"value": 1}),
            json!({"user": {"id": "u"}}),
            json!({"user": {"id": "u"}, "value": "1"}),
            json!({"user": "u", "value": 1}),
            json!([1]),
        ] {
            assert!(parse_event_body(&bad).is_err(), "{bad}");
        }
    }

    fn none_view() -> kudos_actors::rules::streak::StreakView {
        kudos_actors::rules::streak::StreakView {
            length: 0,
            frequency: kudos_actors::rules::streak::Frequency::Daily,
            started: None,
            period_start: None,
            period_end: None,
            expires: None,
            extended: None,
            freezes: None,
            max_freezes: None,
            auto_earn: None,
        }
    }

    #[test]
    fn replay_fields_are_omitted_without_a_key() {
        let resp = EventResponse {
            event_id: "e".into(),
            metric_id: "m".into(),
            total: 1.0,
            achievements: vec![],
            current_streak: MetricEventStreak::new(&none_view(), false),
            points: BTreeMap::new(),
            leaderboards: BTreeMap::new(),
            idempotency_key: None,
            idempotent_replayed: None,
        };
        let v = serde_json::to_value(&resp).expect("encode");
        assert!(v.get("idempotencyKey").is_none());
        assert_eq!(v["currentStreak"]["started"], Value::Null);
        assert_eq!(v["currentStreak"]["frequency"], "daily");
    }
}
