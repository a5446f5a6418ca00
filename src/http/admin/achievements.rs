//! `/admin/v1/achievements` (SDK 1.27): bulk create, update, delete, list and get. Activating
//! an achievement (or editing an active one's trigger or filters) starts a background
//! backfill for every existing user (SPEC §4.4).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kudos_actors::achievements::AchievementChanges;
use kudos_actors::catalog::Changed;
use kudos_actors::scheduler::Job;
use serde_json::{json, Value};

use super::metrics::{created_status, MAX_BULK};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{bulk_items, Ids, JsonBody, Paging};
use crate::http::scope::Scoped;
use crate::wire::achievements::{
    admin_achievement, parse_achievement_patch, parse_new_achievement,
};
use crate::wire::admin::issues;
use crate::AppState;

async fn list(state: Scoped, paging: Paging) -> Json<Vec<Value>> {
    let catalog = state.catalog.get();
    Json(paging.apply(catalog.achievements().map(admin_achievement)))
}

async fn get_one(state: Scoped, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    catalog
        .achievement_by_id(&id)
        .map(|a| Json(admin_achievement(a)))
        .ok_or_else(|| ApiError::not_found("Achievement not found"))
}

/// Applies an achievement change. When achievements need a backfill, its job record is
/// written in the same commit as the change, then the job starts in the background (a restart
/// resumes it).
async fn apply(
    state: &Scoped,
    change: impl FnOnce(&mut kudos_actors::catalog::Catalog) -> AchievementChanges,
) -> ApiResult<AchievementChanges> {
    let (out, job) = state
        .catalog
        .update(|cat| {
            let out = change(cat);
            let mut changed: Vec<Changed> = out.changed.iter().map(Changed::of).collect();
            let job = (!out.backfill.is_empty()).then(|| {
                let job = Job::Backfill(out.backfill.clone());
                let (key, value) = job.record(state.users.scope());
                changed.push(Changed::Meta(key.clone(), value));
                (key, job)
            });
            ((out, job), changed)
        })
        .await?;
    if let Some((key, job)) = job {
        state.scheduler.spawn_job(key, job);
    }
    Ok(out)
}

async fn create(state: Scoped, JsonBody(body): JsonBody) -> ApiResult<(StatusCode, Json<Value>)> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .map(parse_new_achievement)
        .collect();
    let out = apply(&state, |cat| cat.create_achievements(items)).await?;
    let created: Vec<Value> = out.changed.iter().map(admin_achievement).collect();
    Ok((
        created_status(created.len()),
        Json(json!({"created": created, "issues": issues(out.issues)})),
    ))
}

async fn update(state: Scoped, JsonBody(body): JsonBody) -> ApiResult<Json<Value>> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .enumerate()
        .map(|(i, item)| parse_achievement_patch(i, item))
        .collect();
    let out = apply(&state, |cat| cat.update_achievements(items)).await?;
    let updated: Vec<Value> = out.changed.iter().map(admin_achievement).collect();
    Ok(Json(
        json!({"updated": updated, "issues": issues(out.issues)}),
    ))
}

async fn delete(state: Scoped, Ids(ids): Ids) -> ApiResult<Json<Value>> {
    let (deleted, problems) = state
        .catalog
        .update(|cat| {
            let (deleted, problems) = cat.delete_achievements(&ids);
            let changed = deleted.iter().map(Changed::of).collect();
            ((deleted, problems), changed)
        })
        .await?;
    let deleted: Vec<Value> = deleted
        .iter()
        .map(|a| json!({"id": a.id.to_string()}))
        .collect();
    Ok(Json(
        json!({"deleted": deleted, "issues": issues(problems)}),
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/achievements",
            get(list).post(create).patch(update).delete(delete),
        )
        .route("/achievements/{id}", get(get_one))
}
