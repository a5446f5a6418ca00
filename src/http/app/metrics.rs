//! `/v1/metrics/{key}/event` and the user's metric reads (SPEC §3.2, §3.5, §3.6).

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Datelike, NaiveDate};
use kudos_actors::catalog::Catalog;
use kudos_actors::rules::summary::{check_range, Aggregation};
use kudos_actors::user::{
    EventOutcome, MetricView, MetricsQuery, NewEvent, RecordEvent, Summarized, SummaryQuery,
    TotalQuery, UserQuery,
};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

use crate::http::app::achievements::completed_in;
use crate::http::app::users::check_user_id;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{JsonBody, QueryPairs};
use crate::http::scope::Scoped;
use crate::wire::achievements::user_achievement;
use crate::wire::events::{parse_event_body, EventResponse, MetricResponse, SummaryEntry};
use crate::wire::streaks::MetricEventStreak;
use crate::AppState;

/// Maximum `Idempotency-Key` length (SPEC §1.5.8).
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

pub fn check_idempotency_key(key: Option<String>) -> ApiResult<Option<String>> {
    match key {
        Some(k) if k.chars().count() > MAX_IDEMPOTENCY_KEY => Err(ApiError::unprocessable(
            "Idempotency-Key must be at most 255 characters",
        )),
        Some(k) if k.is_empty() => Ok(None),
        other => Ok(other),
    }
}

async fn send_event(
    state: Scoped,
    Path(key): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<EventResponse>)> {
    let catalog = state.catalog.get();
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?
                .trim()
                .to_string(),
        ),
    };
    let idempotency_key = check_idempotency_key(idempotency_key)?;
    let parsed = match parse_event_body(&body) {
        Ok(parsed) => parsed,
        Err(shape) => {
            // SPEC §1.5.7: a replay is recognised from the metric, `user.id` and the key
            // alone; the rest of a replayed body is not validated.
            if let Some(replay) =
                replay_of(&state, &catalog, &key, &body, idempotency_key.as_deref()).await?
            {
                return Ok(replay);
            }
            return Err(shape.into());
        }
    };
    let metric = catalog
        .metric_by_key(&key)
        .ok_or_else(|| ApiError::not_found("Metric not found"))?;
    check_user_id(&parsed.user_id)?;
    let event = NewEvent {
        metric_id: metric.id,
        value: parsed.value,
        user: parsed.user,
        attributes: parsed.attributes,
        idempotency_key: idempotency_key.clone(),
    };
    let outcome = record_event(&state, &parsed.user_id, event).await?;
    Ok(match outcome {
        EventOutcome::Recorded {
            seq,
            record,
            effects,
            total,
            streak,
            extended,
        } => {
            let mut resp = event_response(
                StatusCode::CREATED,
                record.event_id,
                metric.id,
                total,
                MetricEventStreak::new(&streak, extended),
                idempotency_key,
            );
            resp.1.achievements = completed_in(&effects, &catalog);
            // Boost statuses as of the user's local date of the event.
            let tz = record.tz.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC);
            resp.1.points = crate::wire::points::points_map(
                &effects,
                &catalog,
                record.at.with_timezone(&tz).date_naive(),
            );
            // The boards this event changed, applied now so the answer reflects it.
            if effects.iter().any(kudos_actors::user::Effect::is_ranked) {
                let outcomes = state
                    .boards
                    .apply_now(&state.users.stream(&parsed.user_id), seq, &effects)
                    .await?;
                resp.1.leaderboards = crate::wire::leaderboards::event_leaderboards(
                    &outcomes,
                    &catalog,
                    state.clock.now(),
                );
            }
            resp
        }
        EventOutcome::Replayed {
            event_id,
            total,
            streak,
        } => event_response(
            StatusCode::ACCEPTED,
            event_id,
            metric.id,
            total,
            MetricEventStreak::new(&streak, false),
            idempotency_key,
        ),
    })
}

fn event_response(
    status: StatusCode,
    event_id: Uuid,
    metric_id: Uuid,
    total: f64,
    current_streak: MetricEventStreak,
    idempotency_key: Option<String>,
) -> (StatusCode, Json<EventResponse>) {
    let replayed = status == StatusCode::ACCEPTED;
    (
        status,
        Json(EventResponse {
            event_id: event_id.to_string(),
            metric_id: metric_id.to_string(),
            total,
            achievements: Vec::new(),
            current_streak,
            points: BTreeMap::new(),
            leaderboards: BTreeMap::new(),
            idempotent_replayed: idempotency_key.as_ref().map(|_| replayed),
            idempotency_key,
        }),
    )
}

/// The 202 answer for a body that would not validate but repeats a known idempotency key.
async fn replay_of(
    state: &Scoped,
    catalog: &Catalog,
    metric_key: &str,
    body: &Value,
    idempotency_key: Option<&str>,
) -> ApiResult<Option<(StatusCode, Json<EventResponse>)>> {
    let (Some(key), Some(metric), Some(user_id)) = (
        idempotency_key,
        catalog.metric_by_key(metric_key),
        body.pointer("/user/id").and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let metric_id = metric.id;
    let now = state.clock.now();
    let Some(event_id) = kudos_actors::user::lookup_idempotency(
        &state.store,
        &state.users.stream(user_id),
        metric_id,
        key,
        state.users.config().idempotency_window,
        now,
    )?
    else {
        return Ok(None);
    };
    // The row was read outside the user's actor: it may belong to a commit whose fsync is
    // still running. Answer "replayed" only once it is durable.
    state.store.durability().wait().await?;
    let found = state.users.query(user_id, TotalQuery { metric_id }).await?;
    Ok(found.map(|(total, streak)| {
        event_response(
            StatusCode::ACCEPTED,
            event_id,
            metric_id,
            total,
            MetricEventStreak::new(&streak, false),
            Some(key.to_string()),
        )
    }))
}

/// Routes one event to its user's actor (shared with the admin batch endpoint).
pub async fn record_event(
    state: &Scoped,
    user_id: &str,
    event: NewEvent,
) -> ApiResult<EventOutcome> {
    let outcome = state.users.ask(user_id, RecordEvent { event }).await?;
    if matches!(outcome, EventOutcome::Recorded { .. }) {
        state
            .ops
            .events_ingested
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(outcome)
}

fn metric_response(catalog: &Catalog, view: &MetricView) -> MetricResponse {
    MetricResponse {
        id: view.metric.id.to_string(),
        key: view.metric.key.clone(),
        name: view.metric.name.clone(),
        status: "active",
        current: view.total,
        achievements: view
            .achievements
            .iter()
            .map(|(a, at)| user_achievement(a, catalog, *at))
            .collect(),
    }
}

/// Asks an existing user `query`; 404 when the user does not exist.
pub async fn ask<Q: UserQuery>(state: &Scoped, id: &str, query: Q) -> ApiResult<Q::Answer> {
    state
        .users
        .query(id, query)
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))
}

async fn user_metrics(
    state: Scoped,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<MetricResponse>>> {
    let catalog = state.catalog.get();
    let list = ask(&state, &id, MetricsQuery { key: None }).await?;
    Ok(Json(
        list.iter().map(|v| metric_response(&catalog, v)).collect(),
    ))
}

async fn user_metric(
    state: Scoped,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<Json<MetricResponse>> {
    let catalog = state.catalog.get();
    if catalog.metric_by_key(&key).is_none() {
        return Err(ApiError::not_found("Metric not found"));
    }
    let found = ask(&state, &id, MetricsQuery { key: Some(key) }).await?;
    found
        .first()
        .map(|v| Json(metric_response(&catalog, v)))
        .ok_or_else(|| ApiError::not_found("Metric not found"))
}

/// `aggregation`, `startDate` and `endDate` of an event summary (SPEC §3.6).
pub fn summary_params(q: &QueryPairs) -> ApiResult<(Aggregation, NaiveDate, NaiveDate)> {
    let aggregation = q
        .get("aggregation")
        .and_then(Aggregation::parse)
        .ok_or_else(|| {
            ApiError::unprocessable("aggregation must be one of: daily, weekly, monthly")
        })?;
    let start = query_date(q, "startDate")?;
    let end = query_date(q, "endDate")?;
    check_range(start, end).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    Ok((aggregation, start, end))
}

fn query_date(q: &QueryPairs, name: &str) -> ApiResult<NaiveDate> {
    let raw = q
        .get(name)
        .ok_or_else(|| ApiError::unprocessable(format!("{name} is required")))?;
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        // Far-off years are refused rather than risking date arithmetic at chrono's limits.
        .filter(|d| (1900..=9999).contains(&d.year()))
        .ok_or_else(|| {
            ApiError::unprocessable(format!(
                "{name} must be a date (YYYY-MM-DD) between years 1900 and 9999"
            ))
        })
}

async fn metric_event_summary(
    state: Scoped,
    Path((id, key)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<Vec<SummaryEntry>>> {
    let catalog = state.catalog.get();
    let metric_id = catalog
        .metric_by_key(&key)
        .map(|m| m.id)
        .ok_or_else(|| ApiError::not_found("Metric not found"))?;
    let (aggregation, start, end) = summary_params(&q)?;
    let rows = ask(
        &state,
        &id,
        SummaryQuery {
            of: Summarized::Metric(metric_id),
            aggregation,
            start,
            end,
        },
    )
    .await?;
    Ok(Json(rows.iter().map(SummaryEntry::from).collect()))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metrics/{key}/event", post(send_event))
        .route("/users/{id}/metrics", get(user_metrics))
        .route("/users/{id}/metrics/{key}", get(user_metric))
        .route(
            "/users/{id}/metrics/{key}/event-summary",
            get(metric_event_summary),
        )
}
