//! `/admin/v1/streaks/*`: org streak settings, freezes, pauses, restore and reset
//! (SPEC §5.1, §5.5.6, §5.6, §5.10).

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use kudos_actors::catalog::{Changed, FreezesPatch, Issue, StreakSettingsPatch};
use kudos_actors::rules::streak::{Frequency, Mode};
use kudos_actors::scheduler::Job;
use kudos_actors::user::{
    AddPause, GrantFreezes, RemovePause, ResetStreak, RestoreStreak, UserError,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::metrics::created_status;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Ids, JsonBody};
use crate::http::scope::Scoped;
use crate::wire::admin::{issues, AdminIssue, DeletedResource};
use crate::wire::streaks::{int_list, metric_thresholds, streak_settings, AdminStreakPause};
use crate::wire::{object, ShapeError};
use crate::AppState;

const MAX_ITEMS: usize = 100;

async fn get_settings(state: Scoped) -> Json<Value> {
    let catalog = state.catalog.get();
    Json(streak_settings(&catalog.streak, &catalog))
}

fn opt_u32(v: Option<&Value>, what: &str) -> Result<Option<Option<u32>>, ShapeError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| Some(Some(n)))
            .ok_or_else(|| ShapeError::new(format!("{what} must be a non-negative integer"))),
    }
}

fn parse_settings(body: &Value) -> ApiResult<StreakSettingsPatch> {
    let obj = object(body, "Request body")?;
    let mut patch = StreakSettingsPatch::default();
    if let Some(v) = obj.get("frequency").filter(|v| !v.is_null()) {
        let raw = v
            .as_str()
            .ok_or_else(|| ShapeError::new("frequency must be a string"))?;
        patch.frequency = Some(Frequency::parse(raw).ok_or_else(|| {
            ApiError::unprocessable("frequency must be daily, weekly or monthly")
        })?);
    }
    if let Some(v) = obj.get("evaluationMode").filter(|v| !v.is_null()) {
        let raw = v
            .as_str()
            .ok_or_else(|| ShapeError::new("evaluationMode must be a string"))?;
        patch.mode = Some(
            Mode::parse(raw)
                .ok_or_else(|| ApiError::unprocessable("evaluationMode must be AND or OR"))?,
        );
    }
    if let Some(v) = obj.get("customizationEnabled").filter(|v| !v.is_null()) {
        patch.customization_enabled = Some(
            v.as_bool()
                .ok_or_else(|| ShapeError::new("customizationEnabled must be a boolean"))?,
        );
    }
    if let Some(v) = obj.get("daysOff").filter(|v| !v.is_null()) {
        patch.days_off = Some(int_list(v, "daysOff")?);
    }
    if let Some(v) = obj.get("metrics").filter(|v| !v.is_null()) {
        let metrics = metric_thresholds(v, "metrics")?;
        // Org thresholds are integers (`StreakSettingsMetric.threshold` in SDK 1.27); user
        // preferences may use fractions.
        if metrics.iter().any(|(_, t)| t.fract() != 0.0) {
            return Err(ApiError::unprocessable(
                "metrics[].threshold must be a whole number",
            ));
        }
        patch.metrics = Some(metrics);
    }
    match obj.get("freezes") {
        None => {}
        Some(Value::Null) => patch.freezes = Some(None),
        Some(f) => {
            let f = object(f, "freezes")?;
            let count = |name: &str| -> Result<Option<u32>, ShapeError> {
                Ok(opt_u32(f.get(name), &format!("freezes.{name}"))?.flatten())
            };
            patch.freezes = Some(Some(FreezesPatch {
                start_count: count("startCount")?,
                max_count: count("maxCount")?,
                auto_earn_interval: opt_u32(f.get("autoEarnInterval"), "freezes.autoEarnInterval")?,
                auto_earn_amount: opt_u32(f.get("autoEarnAmount"), "freezes.autoEarnAmount")?,
            }));
        }
    }
    Ok(patch)
}

async fn update_settings(state: Scoped, JsonBody(body): JsonBody) -> ApiResult<Json<Value>> {
    let patch = parse_settings(&body)?;
    let result = state
        .catalog
        .update(|cat| {
            let before = cat.streak.clone();
            match cat.update_streak_settings(patch) {
                Ok(settings) => {
                    let mut changed = vec![Changed::StreakSettings(settings.clone())];
                    // Users file their next due instant when they change; a new freeze
                    // schedule needs every user to file again.
                    let refile = (settings.freezes != before.freezes).then(|| {
                        let (key, value) = Job::Refile.record(state.users.scope());
                        changed.push(Changed::Meta(key.clone(), value));
                        key
                    });
                    (Ok(refile), changed)
                }
                Err(message) => (Err(message), Vec::new()),
            }
        })
        .await?;
    if let Some(key) = result.map_err(ApiError::unprocessable)? {
        state.scheduler.spawn_job(key, Job::Refile);
    }
    tracing::info!("streak settings updated");
    let catalog = state.catalog.get();
    Ok(Json(streak_settings(&catalog.streak, &catalog)))
}

/// The items of `{<field>: [...]}` bodies, 1–100.
fn items<'a>(body: &'a Value, field: &str) -> ApiResult<&'a Vec<Value>> {
    let list = object(body, "Request body")?
        .get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| ShapeError::new(format!("{field} must be an array")))?;
    if list.is_empty() || list.len() > MAX_ITEMS {
        return Err(ApiError::unprocessable(format!(
            "{field} must contain between 1 and 100 items"
        )));
    }
    Ok(list)
}

fn string_field(item: &Value, field: &str, what: &str) -> Result<String, ShapeError> {
    item.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ShapeError::new(format!("{what}.{field} must be a string")))
}

/// Maps a user-level refusal to the issue of a bulk request.
fn user_issue(user_id: &str, e: UserError) -> ApiResult<Issue> {
    match e {
        UserError::NotFound => Ok(Issue::for_user(user_id, "User does not exist")),
        UserError::Invalid(m) => Ok(Issue::for_user(user_id, m)),
        other => Err(other.into()),
    }
}

#[derive(Serialize)]
struct IssuesOnly {
    issues: Vec<AdminIssue>,
}

async fn grant_freezes(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<IssuesOnly>)> {
    let list = items(&body, "freezes")?;
    let mut per_user: Vec<(String, u32)> = Vec::new();
    for item in list {
        let user = string_field(item, "userId", "freezes[]")?;
        match per_user.iter_mut().find(|(u, _)| *u == user) {
            Some((_, n)) => *n += 1,
            None => per_user.push((user, 1)),
        }
    }
    let catalog = state.catalog.get();
    if catalog.streak.freezes.is_none() {
        return Err(ApiError::unprocessable("Streak freezes are not enabled"));
    }
    let mut problems = Vec::new();
    let mut granted_total = 0;
    for (user, count) in per_user {
        if !state.users.known(&user)? {
            problems.push(Issue::for_user(&user, "User does not exist"));
            continue;
        }
        match state.users.ask(&user, GrantFreezes { count }).await {
            Ok(granted) => {
                granted_total += granted;
                for _ in granted..count {
                    problems.push(
                        Issue::for_user(&user, "Would exceed maximum freeze limit").warning(),
                    );
                }
            }
            Err(e) => problems.push(user_issue(&user, e)?),
        }
    }
    Ok((
        created_status(granted_total as usize),
        Json(IssuesOnly {
            issues: issues(problems),
        }),
    ))
}

#[derive(Serialize)]
struct CreatedPauses {
    created: Vec<AdminStreakPause>,
    issues: Vec<AdminIssue>,
}

async fn create_pauses(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<CreatedPauses>)> {
    let list = items(&body, "pauses")?;
    let mut parsed = Vec::new();
    for item in list {
        let user = string_field(item, "userId", "pauses[]")?;
        let start = string_field(item, "start", "pauses[]")?;
        let end = string_field(item, "end", "pauses[]")?;
        parsed.push((user, start, end));
    }
    let mut created = Vec::new();
    let mut problems = Vec::new();
    for (index, (user, start, end)) in parsed.into_iter().enumerate() {
        let date = |raw: &str| NaiveDate::parse_from_str(raw, "%Y-%m-%d");
        let (Ok(start), Ok(end)) = (date(&start), date(&end)) else {
            problems.push(Issue::for_user(
                &user,
                "start and end must be dates (YYYY-MM-DD)",
            ));
            continue;
        };
        if !state.users.known(&user)? {
            problems.push(Issue::for_user(&user, "User does not exist").with_index(index));
            continue;
        }
        let id = Uuid::new_v4();
        match state.users.ask(&user, AddPause { id, start, end }).await {
            Ok(pause) => created.push(AdminStreakPause::new(&user, &pause)),
            Err(e) => problems.push(user_issue(&user, e)?.with_index(index)),
        }
    }
    Ok((
        created_status(created.len()),
        Json(CreatedPauses {
            created,
            issues: issues(problems),
        }),
    ))
}

#[derive(Serialize)]
struct DeletedPauses {
    deleted: Vec<DeletedResource>,
    issues: Vec<AdminIssue>,
}

async fn delete_pauses(state: Scoped, Ids(ids): Ids) -> ApiResult<Json<DeletedPauses>> {
    let mut deleted = Vec::new();
    let mut problems = Vec::new();
    for raw in ids {
        let Ok(id) = Uuid::parse_str(&raw) else {
            problems.push(Issue::for_id(&raw, "id must be a valid UUID"));
            continue;
        };
        // Written by the user's actor in the same fsync as the pause itself.
        let Some(user) = state
            .store
            .indexes()
            .owner(state.users.scope(), &id.to_string())?
            .map(|stream| stream.id)
        else {
            problems.push(Issue::for_id(&raw, "Streak pause not found by ID"));
            continue;
        };
        match state.users.ask(&user, RemovePause { id }).await {
            Ok(_) => deleted.push(DeletedResource { id: id.to_string() }),
            Err(UserError::Invalid(_) | UserError::NotFound) => {
                problems.push(Issue::for_id(&raw, "Streak pause not found by ID"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(DeletedPauses {
        deleted,
        issues: issues(problems),
    }))
}

/// The user ids of `{users: [{id}]}`.
fn user_list(body: &Value) -> ApiResult<Vec<String>> {
    items(body, "users")?
        .iter()
        .map(|u| string_field(u, "id", "users[]").map_err(ApiError::from))
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Restored {
    restored_users: Vec<String>,
    issues: Vec<AdminIssue>,
}

async fn restore(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Restored>)> {
    let users = user_list(&body)?;
    let mut restored = Vec::new();
    let mut problems = Vec::new();
    for user in users {
        if !state.users.known(&user)? {
            problems.push(Issue::for_user(&user, "User does not exist"));
            continue;
        }
        match state.users.ask(&user, RestoreStreak {}).await {
            Ok(Some(_)) => restored.push(user),
            Ok(None) => problems.push(Issue::for_user(&user, "No streak to restore").warning()),
            Err(e) => problems.push(user_issue(&user, e)?),
        }
    }
    Ok((
        created_status(restored.len()),
        Json(Restored {
            restored_users: restored,
            issues: issues(problems),
        }),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResetDone {
    reset_users: Vec<String>,
    issues: Vec<AdminIssue>,
}

async fn reset(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<ResetDone>)> {
    let users = user_list(&body)?;
    let mut done = Vec::new();
    let mut problems = Vec::new();
    for user in users {
        if !state.users.known(&user)? {
            problems.push(Issue::for_user(&user, "User does not exist"));
            continue;
        }
        match state.users.ask(&user, ResetStreak {}).await {
            Ok(_) => done.push(user),
            Err(e) => problems.push(user_issue(&user, e)?),
        }
    }
    Ok((
        created_status(done.len()),
        Json(ResetDone {
            reset_users: done,
            issues: issues(problems),
        }),
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/streaks/settings",
            get(get_settings).patch(update_settings),
        )
        .route("/streaks/freezes", post(grant_freezes))
        .route("/streaks/pauses", post(create_pauses).delete(delete_pauses))
        .route("/streaks/restore", post(restore))
        .route("/streaks/reset", post(reset))
}
