//! `/v1/users/{id}/streak`, `/v1/streaks` and `/v1/users/{id}/preferences` (SPEC §5.7–5.11,
//! §2.4).

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use kudos_actors::rules::streak::Mode;
use kudos_actors::user::{
    PreferencesQuery, PreferencesWrite, SetPreferences, StreakQuery, StreakViewQuery,
};
use serde_json::Value;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{JsonBody, QueryPairs};
use crate::http::scope::Scoped;
use crate::wire::streaks::{
    int_list, metric_thresholds, preferences, BulkStreakItem, StreakResponse,
};
use crate::wire::{object, ts, ShapeError};
use crate::AppState;

/// Largest `historyPeriods` (SPEC §5.8 DECISION).
const MAX_HISTORY: usize = 1000;

async fn user_streak(
    state: Scoped,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<StreakResponse>> {
    let periods = match q.get("historyPeriods") {
        None => 7,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY).contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable("historyPeriods must be an integer between 1 and 1000")
            })?,
    };
    let s = state
        .users
        .query(
            &id,
            StreakQuery {
                history_periods: periods,
            },
        )
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    Ok(Json(StreakResponse::from(&s)))
}

/// `userIds`, repeated or comma-separated, 1–100.
pub fn user_ids(q: &QueryPairs, name: &str) -> ApiResult<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    for (_, v) in q.0.iter().filter(|(k, _)| k == name) {
        for id in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !ids.iter().any(|x| x == id) {
                ids.push(id.to_string());
            }
        }
    }
    if ids.is_empty() || ids.len() > 100 {
        return Err(ApiError::unprocessable(format!(
            "{name} must contain between 1 and 100 user ids"
        )));
    }
    Ok(ids)
}

async fn bulk_streaks(state: Scoped, q: QueryPairs) -> ApiResult<Json<Vec<BulkStreakItem>>> {
    let ids = user_ids(&q, "userIds")?;
    let mut items = Vec::new();
    for id in ids {
        let found = state.users.query(&id, StreakViewQuery).await?;
        if let Some(view) = found {
            items.push(BulkStreakItem {
                user_id: id,
                streak_length: view.length,
                extended: view.extended.map(ts),
            });
        }
    }
    items.sort_by(|a, b| {
        b.streak_length
            .cmp(&a.streak_length)
            .then_with(|| a.user_id.cmp(&b.user_id))
    });
    Ok(Json(items))
}

async fn get_preferences(state: Scoped, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    state
        .users
        .query(&id, PreferencesQuery)
        .await?
        .map(|p| Json(preferences(&p, &catalog)))
        .ok_or_else(|| ApiError::not_found("User not found"))
}

fn parse_preferences(body: &Value) -> ApiResult<PreferencesWrite> {
    let obj = object(body, "Request body")?;
    let mut write = PreferencesWrite::default();
    if let Some(n) = obj.get("notifications").filter(|v| !v.is_null()) {
        let n = object(n, "notifications")?;
        for (kind, channels) in n {
            let list = channels
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|c| c.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    ShapeError::new(format!("notifications.{kind} must be an array of strings"))
                })?;
            write.notifications.insert(kind.clone(), list);
        }
    }
    if let Some(st) = obj.get("streak").filter(|v| !v.is_null()) {
        let st = object(st, "streak")?;
        if let Some(v) = st.get("enabled").filter(|v| !v.is_null()) {
            write.streak_enabled = Some(
                v.as_bool()
                    .ok_or_else(|| ShapeError::new("streak.enabled must be a boolean"))?,
            );
        }
        if let Some(v) = st.get("evaluationMode").filter(|v| !v.is_null()) {
            let raw = v
                .as_str()
                .ok_or_else(|| ShapeError::new("streak.evaluationMode must be a string"))?;
            write.streak_mode = Some(Mode::parse(raw).ok_or_else(|| {
                ApiError::unprocessable("streak.evaluationMode must be AND or OR")
            })?);
        }
        if let Some(v) = st.get("metrics").filter(|v| !v.is_null()) {
            write.streak_metrics = Some(metric_thresholds(v, "streak.metrics")?);
        }
        if let Some(v) = st.get("daysOff").filter(|v| !v.is_null()) {
            write.streak_days_off = Some(int_list(v, "streak.daysOff")?);
        }
    }
    Ok(write)
}

async fn update_preferences(
    state: Scoped,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let write = parse_preferences(&body)?;
    let catalog = state.catalog.get();
    if !state.users.known(&id)? {
        return Err(ApiError::not_found("User not found"));
    }
    let p = state.users.ask(&id, SetPreferences { write }).await?;
    Ok(Json(preferences(&p, &catalog)))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/{id}/streak", get(user_streak))
        .route("/streaks", get(bulk_streaks))
        .route(
            "/users/{id}/preferences",
            get(get_preferences).patch(update_preferences),
        )
}
