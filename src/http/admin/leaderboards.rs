//! `/admin/v1/leaderboards`: bulk create, update, delete, list and get (SPEC §7.1, §7.5,
//! §10.3), `maxParticipants` up to 1,000,000 and `tiePolicy` (SPEC §11.5).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kudos_actors::catalog::leaderboards::LeaderboardChanges;
use kudos_actors::catalog::{Catalog, Changed};
use kudos_actors::scheduler::Job;
use serde_json::{json, Value};

use super::metrics::{created_status, MAX_BULK};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{bulk_items, Ids, JsonBody, Paging};
use crate::http::scope::Scoped;
use crate::wire::admin::issues;
use crate::wire::leaderboards::{
    admin_leaderboard, parse_leaderboard_patch, parse_new_leaderboard,
};
use crate::AppState;

async fn list(state: Scoped, paging: Paging) -> Json<Vec<Value>> {
    let catalog = state.catalog.get();
    let now = state.clock.now();
    Json(paging.apply(catalog.leaderboards().map(|l| admin_leaderboard(l, now))))
}

async fn get_one(state: Scoped, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    let found = catalog
        .leaderboard_by_id(&id)
        .map(|l| admin_leaderboard(l, state.clock.now()));
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Leaderboard not found"))
}

/// Applies a catalog change, then lets every changed board make the run announcements now
/// due (a board activated after its run's start moment announces it at once, a manual
/// finish finishes the run) and file its next one.
///
/// A board activated for the first time (created active or scheduled, or leaving
/// `inactive` for the first time) also gets the activity from before that moment (SPEC
/// §7.5.3): a background job, recorded in the same commit as the change, has every user
/// place it once.
async fn apply(
    state: &Scoped,
    op: impl FnOnce(&mut Catalog) -> LeaderboardChanges,
) -> ApiResult<LeaderboardChanges> {
    let now = state.clock.now();
    let scope = state.users.scope();
    let (out, jobs) = state
        .catalog
        .update(|cat| {
            let out = op(cat);
            let mut changed: Vec<Changed> = out.changed.iter().map(Changed::of).collect();
            let mut jobs = Vec::new();
            for l in &out.changed {
                // The first activation only: a board paused and activated again was tracking
                // live before its pause.
                if let Some(marked) = cat.mark_activated(l.id, now) {
                    changed.push(Changed::of(&marked));
                    let job = Job::SeedBoard {
                        board_id: l.id,
                        until: now,
                    };
                    let (key, value) = job.record(scope);
                    changed.push(Changed::Meta(key.clone(), value));
                    jobs.push((key, job));
                }
            }
            ((out, jobs), changed)
        })
        .await?;
    for (key, job) in jobs {
        state.scheduler.spawn_job(key, job);
    }
    for l in &out.changed {
        state.boards.announce(l.id, None).await?;
    }
    Ok(out)
}

async fn create(state: Scoped, JsonBody(body): JsonBody) -> ApiResult<(StatusCode, Json<Value>)> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .map(parse_new_leaderboard)
        .collect();
    let now = state.clock.now();
    let out = apply(&state, |cat| cat.create_leaderboards(items, now)).await?;
    let created: Vec<Value> = out
        .changed
        .iter()
        .map(|l| admin_leaderboard(l, now))
        .collect();
    Ok((
        created_status(created.len()),
        Json(json!({"created": created, "issues": issues(out.issues)})),
    ))
}

async fn update(state: Scoped, JsonBody(body): JsonBody) -> ApiResult<Json<Value>> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .enumerate()
        .map(|(i, item)| parse_leaderboard_patch(i, item))
        .collect();
    let now = state.clock.now();
    let out = apply(&state, |cat| cat.update_leaderboards(items, now)).await?;
    let updated: Vec<Value> = out
        .changed
        .iter()
        .map(|l| admin_leaderboard(l, now))
        .collect();
    Ok(Json(
        json!({"updated": updated, "issues": issues(out.issues)}),
    ))
}

async fn delete(state: Scoped, Ids(ids): Ids) -> ApiResult<Json<Value>> {
    let out = apply(&state, |cat| cat.delete_leaderboards(&ids)).await?;
    let deleted: Vec<Value> = out
        .changed
        .iter()
        .map(|l| json!({"id": l.id.to_string()}))
        .collect();
    Ok(Json(
        json!({"deleted": deleted, "issues": issues(out.issues)}),
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/leaderboards",
            get(list).post(create).patch(update).delete(delete),
        )
        .route("/leaderboards/{id}", get(get_one))
}
