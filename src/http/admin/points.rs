//! `/admin/v1/points` and its sub-resources `triggers`, `levels` and `boosts` (SPEC §6,
//! §10.3): bulk create, update and delete in the conventions of SPEC §10.1, list and get.
//! An unknown or deleted system answers 404 for the whole request (SPEC §10.1.7).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use kudos_actors::catalog::points::{CreatedSystem, PointsBoost, PointsChanges, PointsTrigger};
use kudos_actors::catalog::{Catalog, Changed};
use kudos_actors::scheduler::Job;
use kudos_actors::user::ProfileQuery;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

use super::metrics::{created_status, MAX_BULK};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{bulk_items, Ids, JsonBody, Paging};
use crate::http::scope::Scoped;
use crate::wire::admin::issues;
use crate::wire::points::{
    admin_boost_on, admin_level, admin_system, admin_trigger, created_system, parse_boost_patch,
    parse_level_patch, parse_new_boost, parse_new_level, parse_new_system, parse_system_patch,
    parse_trigger_fields, parse_trigger_patch,
};
use crate::AppState;

/// The dates boost statuses are evaluated on (SPEC §6.6.3): today in the user's zone for
/// user-specific boosts, in UTC for the others.
struct StatusDays {
    utc: NaiveDate,
    users: HashMap<String, NaiveDate>,
}

impl StatusDays {
    fn of(&self, b: &PointsBoost) -> NaiveDate {
        b.user_id
            .as_ref()
            .and_then(|u| self.users.get(u).copied())
            .unwrap_or(self.utc)
    }
}

/// The users of user-specific boosts among `boosts`, once each.
fn boost_users<'a>(boosts: impl IntoIterator<Item = &'a PointsBoost>) -> Vec<String> {
    let mut users: Vec<String> = boosts
        .into_iter()
        .filter_map(|b| b.user_id.clone())
        .collect();
    users.sort();
    users.dedup();
    users
}

/// [`StatusDays`] for boosts of `boost_users`, looking each user's zone up once.
async fn status_days(state: &Scoped, boost_users: Vec<String>) -> ApiResult<StatusDays> {
    let now = state.clock.now();
    let mut users: HashMap<String, NaiveDate> = HashMap::new();
    for user in boost_users {
        if let Some(profile) = state.users.query(&user, ProfileQuery).await? {
            users.insert(user, now.with_timezone(&profile.time_zone()).date_naive());
        }
    }
    Ok(StatusDays {
        utc: now.date_naive(),
        users,
    })
}

/// The live system addressed by a sub-resource path, or 404.
fn system_id(catalog: &Catalog, raw: &str) -> ApiResult<Uuid> {
    catalog
        .points_system_by_id(raw)
        .map(|s| s.id)
        .ok_or_else(|| ApiError::not_found("Points system not found"))
}

/// Whether a user exists (user-specific boosts must name one).
fn user_exists(state: &Scoped) -> impl Fn(&str) -> bool + '_ {
    move |id: &str| {
        state
            .store
            .indexes()
            .is_member(&state.users.stream(id))
            .unwrap_or(false)
    }
}

/// Runs a points change on the catalog and persists what it reports.
async fn change<T: Send + 'static>(
    state: &Scoped,
    op: impl FnOnce(&mut Catalog) -> PointsChanges<T>,
) -> ApiResult<(Vec<T>, Vec<kudos_actors::catalog::Issue>)> {
    change_refiling(state, |_| None, op).await
}

/// [`change`], then the job `refile` asks for (users filing their next due instant again:
/// an active time trigger is due work for every user, a boost for its user), recorded in
/// the same commit as the change. Boosts shared by many users are announced by the boost
/// clock, which files its next instant here too.
async fn change_refiling<T: Send + 'static>(
    state: &Scoped,
    refile: impl Fn(&[T]) -> Option<Job>,
    op: impl FnOnce(&mut Catalog) -> PointsChanges<T>,
) -> ApiResult<(Vec<T>, Vec<kudos_actors::catalog::Issue>)> {
    let (out, issues, job) = state
        .catalog
        .update(|cat| {
            let mut r = op(cat);
            let job = refile(&r.out).map(|job| {
                let (key, value) = job.record(state.users.scope());
                r.changed.push(Changed::Meta(key.clone(), value));
                (key, job)
            });
            ((r.out, r.issues, job), r.changed)
        })
        .await?;
    match job {
        // A boost's users are few: file their announcements before answering.
        Some((key, job @ Job::RefileUsers(_))) => state.scheduler.run_job_now(key, job).await,
        Some((key, job)) => state.scheduler.spawn_job(key, job),
        None => {}
    }
    state.space.boosts.refile().await?;
    Ok((out, issues))
}

/// Every user files again when an active time trigger was applied.
fn refile_for_time(triggers: &[PointsTrigger]) -> Option<Job> {
    triggers.iter().any(active_time).then_some(Job::Refile)
}

/// The users of user-specific boosts file again (their announcements are due work).
fn refile_for_boosts<'a>(boosts: impl IntoIterator<Item = &'a PointsBoost>) -> Option<Job> {
    let users = boost_users(boosts);
    (!users.is_empty()).then_some(Job::RefileUsers(users))
}

/// Whether a trigger is an active time trigger: users must file its firings.
fn active_time(t: &PointsTrigger) -> bool {
    t.fires() && t.kind.every().is_some()
}

fn created(
    list: Vec<Value>,
    problems: Vec<kudos_actors::catalog::Issue>,
) -> (StatusCode, Json<Value>) {
    (
        created_status(list.len()),
        Json(json!({"created": list, "issues": issues(problems)})),
    )
}

fn updated(list: Vec<Value>, problems: Vec<kudos_actors::catalog::Issue>) -> Json<Value> {
    Json(json!({"updated": list, "issues": issues(problems)}))
}

fn deleted(ids: Vec<Uuid>, problems: Vec<kudos_actors::catalog::Issue>) -> Json<Value> {
    let list: Vec<Value> = ids.iter().map(|id| json!({"id": id.to_string()})).collect();
    Json(json!({"deleted": list, "issues": issues(problems)}))
}

// ----- systems -----

async fn list_systems(state: Scoped, paging: Paging) -> Json<Vec<Value>> {
    let catalog = state.catalog.get();
    Json(paging.apply(catalog.points_systems().map(admin_system)))
}

async fn get_system(state: Scoped, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    catalog
        .points_system_by_id(&id)
        .map(|s| Json(admin_system(s)))
        .ok_or_else(|| ApiError::not_found("Points system not found"))
}

async fn create_systems(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .map(parse_new_system)
        .collect();
    let now = state.clock.now();
    let exists = user_exists(&state);
    let (out, problems) = change_refiling(
        &state,
        |created: &[CreatedSystem]| {
            let time = created
                .iter()
                .flat_map(|c| c.triggers.iter().flatten())
                .any(active_time);
            if time {
                Some(Job::Refile)
            } else {
                refile_for_boosts(created.iter().flat_map(|c| c.boosts.iter().flatten()))
            }
        },
        |cat| cat.create_points_systems(items, now, &exists),
    )
    .await?;
    let day = status_days(
        &state,
        boost_users(out.iter().flat_map(|c| c.boosts.iter().flatten())),
    )
    .await?;
    Ok(created(
        out.iter()
            .map(|c| created_system(c, &|b| day.of(b)))
            .collect(),
        problems,
    ))
}

async fn update_systems(state: Scoped, JsonBody(body): JsonBody) -> ApiResult<Json<Value>> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .enumerate()
        .map(|(i, item)| parse_system_patch(i, item))
        .collect();
    let (out, problems) = change(&state, |cat| cat.update_points_systems(items)).await?;
    Ok(updated(out.iter().map(admin_system).collect(), problems))
}

async fn delete_systems(state: Scoped, Ids(ids): Ids) -> ApiResult<Json<Value>> {
    let (out, problems) = change(&state, |cat| cat.delete_points_systems(&ids)).await?;
    Ok(deleted(out.iter().map(|s| s.id).collect(), problems))
}

// ----- triggers -----

async fn list_triggers(
    state: Scoped,
    Path(sys): Path<String>,
    paging: Paging,
) -> ApiResult<Json<Vec<Value>>> {
    let catalog = state.catalog.get();
    let id = system_id(&catalog, &sys)?;
    Ok(Json(
        paging.apply(catalog.points_triggers(id).map(admin_trigger)),
    ))
}

async fn get_trigger(
    state: Scoped,
    Path((sys, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    let system = system_id(&catalog, &sys)?;
    let found = catalog
        .points_triggers(system)
        .find(|t| t.id.to_string() == id)
        .map(admin_trigger);
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Points trigger not found"))
}

async fn create_triggers(
    state: Scoped,
    Path(sys): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let system = system_id(&state.catalog.get(), &sys)?;
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .map(parse_trigger_fields)
        .collect();
    let now = state.clock.now();
    let (out, problems) = change_refiling(&state, refile_for_time, |cat| {
        cat.create_points_triggers(system, items, now)
    })
    .await?;
    Ok(created(out.iter().map(admin_trigger).collect(), problems))
}

async fn update_triggers(
    state: Scoped,
    Path(sys): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let system = system_id(&state.catalog.get(), &sys)?;
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .enumerate()
        .map(|(i, item)| parse_trigger_patch(i, item))
        .collect();
    let now = state.clock.now();
    let (out, problems) = change_refiling(&state, refile_for_time, |cat| {
        cat.update_points_triggers(system, items, now)
    })
    .await?;
    Ok(updated(out.iter().map(admin_trigger).collect(), problems))
}

async fn delete_triggers(
    state: Scoped,
    Path(sys): Path<String>,
    Ids(ids): Ids,
) -> ApiResult<Json<Value>> {
    let system = system_id(&state.catalog.get(), &sys)?;
    let (out, problems) = change(&state, |cat| cat.delete_points_triggers(system, &ids)).await?;
    Ok(deleted(out.iter().map(|t| t.id).collect(), problems))
}

// ----- levels -----

async fn list_levels(
    state: Scoped,
    Path(sys): Path<String>,
    paging: Paging,
) -> ApiResult<Json<Vec<Value>>> {
    let catalog = state.catalog.get();
    let id = system_id(&catalog, &sys)?;
    Ok(Json(
        paging.apply(catalog.points_levels_created(id).map(admin_level)),
    ))
}

async fn get_level(
    state: Scoped,
    Path((sys, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    let system = system_id(&catalog, &sys)?;
    let found = catalog
        .points_levels_created(system)
        .find(|l| l.id.to_string() == id)
        .map(admin_level);
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Points level not found"))
}

async fn create_levels(
    state: Scoped,
    Path(sys): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let system = system_id(&state.catalog.get(), &sys)?;
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .map(parse_new_level)
        .collect();
    let (out, problems) = change(&state, |cat| cat.create_points_levels(system, items)).await?;
    Ok(created(out.iter().map(admin_level).collect(), problems))
}

async fn update_levels(
    state: Scoped,
    Path(sys): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let system = system_id(&state.catalog.get(), &sys)?;
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .enumerate()
        .map(|(i, item)| parse_level_patch(i, item))
        .collect();
    let (out, problems) = change(&state, |cat| cat.update_points_levels(system, items)).await?;
    Ok(updated(out.iter().map(admin_level).collect(), problems))
}

async fn delete_levels(
    state: Scoped,
    Path(sys): Path<String>,
    Ids(ids): Ids,
) -> ApiResult<Json<Value>> {
    let system = system_id(&state.catalog.get(), &sys)?;
    let (out, problems) = change(&state, |cat| cat.delete_points_levels(system, &ids)).await?;
    Ok(deleted(out.iter().map(|l| l.id).collect(), problems))
}

// ----- boosts -----

async fn list_boosts(
    state: Scoped,
    Path(sys): Path<String>,
    paging: Paging,
) -> ApiResult<Json<Vec<Value>>> {
    let catalog = state.catalog.get();
    let id = system_id(&catalog, &sys)?;
    let page = paging.apply(catalog.points_boosts(id));
    let day = status_days(&state, boost_users(page.iter().copied())).await?;
    Ok(Json(
        page.into_iter()
            .map(|b| admin_boost_on(b, day.of(b)))
            .collect(),
    ))
}

async fn get_boost(
    state: Scoped,
    Path((sys, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    let system = system_id(&catalog, &sys)?;
    let found = catalog
        .points_boosts(system)
        .find(|b| b.id.to_string() == id)
        .ok_or_else(|| ApiError::not_found("Points boost not found"))?;
    let day = status_days(&state, boost_users([found])).await?;
    Ok(Json(admin_boost_on(found, day.of(found))))
}

async fn create_boosts(
    state: Scoped,
    Path(sys): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let system = system_id(&state.catalog.get(), &sys)?;
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .map(parse_new_boost)
        .collect();
    let now = state.clock.now();
    let exists = user_exists(&state);
    let (out, problems) = change_refiling(
        &state,
        |b: &[PointsBoost]| refile_for_boosts(b),
        |cat| cat.create_points_boosts(system, items, now, &exists),
    )
    .await?;
    let day = status_days(&state, boost_users(&out)).await?;
    Ok(created(
        out.iter().map(|b| admin_boost_on(b, day.of(b))).collect(),
        problems,
    ))
}

async fn update_boosts(
    state: Scoped,
    Path(sys): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let system = system_id(&state.catalog.get(), &sys)?;
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .enumerate()
        .map(|(i, item)| parse_boost_patch(i, item))
        .collect();
    let (out, problems) = change_refiling(
        &state,
        |b: &[PointsBoost]| refile_for_boosts(b),
        |cat| cat.update_points_boosts(system, items),
    )
    .await?;
    let day = status_days(&state, boost_users(&out)).await?;
    Ok(updated(
        out.iter().map(|b| admin_boost_on(b, day.of(b))).collect(),
        problems,
    ))
}

async fn delete_boosts(
    state: Scoped,
    Path(sys): Path<String>,
    Ids(ids): Ids,
) -> ApiResult<Json<Value>> {
    let system = system_id(&state.catalog.get(), &sys)?;
    let (out, problems) = change(&state, |cat| cat.delete_points_boosts(system, &ids)).await?;
    Ok(deleted(out.iter().map(|b| b.id).collect(), problems))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/points",
            get(list_systems)
                .post(create_systems)
                .patch(update_systems)
                .delete(delete_systems),
        )
        .route("/points/{id}", get(get_system))
        .route(
            "/points/{system}/triggers",
            get(list_triggers)
                .post(create_triggers)
                .patch(update_triggers)
                .delete(delete_triggers),
        )
        .route("/points/{system}/triggers/{id}", get(get_trigger))
        .route(
            "/points/{system}/levels",
            get(list_levels)
                .post(create_levels)
                .patch(update_levels)
                .delete(delete_levels),
        )
        .route("/points/{system}/levels/{id}", get(get_level))
        .route(
            "/points/{system}/boosts",
            get(list_boosts)
                .post(create_boosts)
                .patch(update_boosts)
                .delete(delete_boosts),
        )
        .route("/points/{system}/boosts/{id}", get(get_boost))
}
