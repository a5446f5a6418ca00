//! Application points reads (SPEC §6.7): a system with its active triggers, its boosts and
//! levels, the distribution of totals and of levels, and one user's points, boosts and
//! points history.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kudos_actors::catalog::points::PointsSystem;
use kudos_actors::catalog::Catalog;
use kudos_actors::rules::points::summary_ranges;
use kudos_actors::user::{
    points_totals_prefix, ActiveBoostsQuery, PointsQuery, Summarized, SummaryQuery, UserState,
    USERS_COUNTER,
};
use serde_json::{json, Value};

use super::metrics::{ask, summary_params};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::QueryPairs;
use crate::http::scope::Scoped;
use crate::wire::events::SummaryEntry;
use crate::wire::points::{app_award, app_boost, app_level, app_trigger, points_response};
use crate::AppState;

fn system<'a>(catalog: &'a Catalog, key: &str) -> ApiResult<&'a PointsSystem> {
    catalog
        .points_system_by_key(key)
        .ok_or_else(|| ApiError::not_found("Points system not found"))
}

/// `GET /points/{key}`: `PointsSystemResponse` (no `key`), active triggers only.
async fn get_system(state: Scoped, Path(key): Path<String>) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    let s = system(&catalog, &key)?;
    let mut m = points_response(s);
    m.remove("key");
    let triggers: Vec<Value> = catalog
        .points_triggers(s.id)
        .filter(|t| t.fires())
        .map(|t| app_trigger(t, &catalog))
        .collect();
    m.insert("triggers".into(), Value::Array(triggers));
    Ok(Json(Value::Object(m)))
}

/// `GET /points/{key}/boosts`: global and cohort boosts, finished ones only with
/// `includeFinished=true`, by start date (statuses in UTC, SPEC §6.6.3/6.6.6).
async fn system_boosts(
    state: Scoped,
    Path(key): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Vec<Value>>> {
    let include_finished = match q.get("includeFinished") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "includeFinished must be true or false",
            ))
        }
    };
    let catalog = state.catalog.get();
    let s = system(&catalog, &key)?;
    let today = state.clock.now().date_naive();
    let mut list: Vec<_> = catalog
        .points_boosts(s.id)
        .filter(|b| b.user_id.is_none())
        .filter(|b| include_finished || b.end.is_none_or(|end| end >= today))
        .collect();
    list.sort_by_key(|b| (b.start, b.ord));
    Ok(Json(
        list.into_iter().map(|b| app_boost(b, today)).collect(),
    ))
}

/// `GET /points/{key}/levels`: ascending by threshold.
async fn system_levels(state: Scoped, Path(key): Path<String>) -> ApiResult<Json<Vec<Value>>> {
    let catalog = state.catalog.get();
    let s = system(&catalog, &key)?;
    Ok(Json(
        catalog
            .points_levels(s.id)
            .into_iter()
            .map(app_level)
            .collect(),
    ))
}

/// Users by total in a system: `(total, users)` for non-zero totals, ascending, and the
/// number of users at 0. Read from the counters every commit maintains (no user scan).
fn distribution(state: &Scoped, system_id: uuid::Uuid) -> ApiResult<(Vec<(i64, u64)>, u64)> {
    let indexes = state.store.indexes();
    let scope = state.users.scope();
    let users = indexes.counter(scope, USERS_COUNTER)?;
    let rows: Vec<(i64, u64)> = indexes
        .counters_with_prefix(scope, &points_totals_prefix(system_id))?
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .filter_map(|(name, n)| name.parse::<i64>().ok().map(|t| (t, n)))
        .collect();
    let counted: u64 = rows.iter().map(|(_, n)| n).sum();
    Ok((rows, users.saturating_sub(counted)))
}

/// Users by total with the `userAttributes` filter: every user's state is read (the
/// distribution counters do not know attributes).
fn filtered_distribution(
    state: &Scoped,
    system_id: uuid::Uuid,
    filters: &[(String, String)],
) -> ApiResult<(Vec<(i64, u64)>, u64)> {
    let store = &state.store;
    let scope = state.users.scope();
    let mut totals: std::collections::BTreeMap<i64, u64> = Default::default();
    let mut zero = 0u64;
    for id in store
        .indexes()
        .members(kudos_snapshots::StreamKind::User, scope)
    {
        let id = id?;
        let loaded = kudos_snapshots::recovery::load::<UserState>(
            &store.journal(),
            &state.users.stream(&id),
        )?;
        let Some(profile) = &loaded.state.profile else {
            continue;
        };
        if !kudos_actors::rules::achievements::matches_all(&profile.attributes, filters) {
            continue;
        }
        match loaded.state.balance(system_id).map_or(0, |b| b.total) {
            0 => zero += 1,
            t => *totals.entry(t).or_default() += 1,
        }
    }
    Ok((totals.into_iter().collect(), zero))
}

/// `userAttributes=key:value,key:value` (every pair must match).
fn attribute_filters(q: &QueryPairs, catalog: &Catalog) -> ApiResult<Vec<(String, String)>> {
    let Some(raw) = q.get("userAttributes").filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(|pair| {
            let (k, v) = pair
                .split_once(':')
                .ok_or_else(|| ApiError::unprocessable("userAttributes must be key:value pairs"))?;
            if catalog
                .attribute(kudos_actors::catalog::AttributeKind::User, k)
                .is_none()
            {
                return Err(ApiError::unprocessable(format!(
                    "Invalid attribute keys: {k}. Please ensure all attribute keys match those set up in Kudos."
                )));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// `GET /points/{key}/summary`: 11 ranges of totals (SPEC §6.7.3).
async fn summary(
    state: Scoped,
    Path(key): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Vec<Value>>> {
    let catalog = state.catalog.get();
    let s = system(&catalog, &key)?;
    let filters = attribute_filters(&q, &catalog)?;
    let (rows, zero) = if filters.is_empty() {
        distribution(&state, s.id)?
    } else {
        filtered_distribution(&state, s.id, &filters)?
    };
    let max = rows.last().map_or(0, |(t, _)| *t);
    let out = summary_ranges(max)
        .into_iter()
        .map(|(from, to)| {
            let users: u64 = if to == 0 {
                zero
            } else {
                rows.iter()
                    .filter(|(t, _)| (from..=to).contains(t))
                    .map(|(_, n)| n)
                    .sum()
            };
            json!({"from": from, "to": to, "users": users})
        })
        .collect();
    Ok(Json(out))
}

/// `GET /points/{key}/level-summary`: users per level from current totals and current
/// levels; 422 when the system has no levels (SPEC §6.5.5).
async fn level_summary(state: Scoped, Path(key): Path<String>) -> ApiResult<Json<Vec<Value>>> {
    let catalog = state.catalog.get();
    let s = system(&catalog, &key)?;
    let levels = catalog.points_levels(s.id);
    if levels.is_empty() {
        return Err(ApiError::unprocessable("Points system has no levels"));
    }
    let (rows, zero) = distribution(&state, s.id)?;
    let mut counts: std::collections::HashMap<uuid::Uuid, u64> = Default::default();
    for (total, n) in rows.iter().copied().chain(std::iter::once((0, zero))) {
        if let Some(level) = catalog.level_for(s.id, total) {
            *counts.entry(level.id).or_default() += n;
        }
    }
    Ok(Json(
        levels
            .iter()
            .map(|l| json!({"level": app_level(l), "users": counts.get(&l.id).copied().unwrap_or(0)}))
            .collect(),
    ))
}

/// `GET /users/{id}/points/{key}?awards=N` (1–100, default 10).
async fn user_points(
    state: Scoped,
    Path((id, key)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<Json<Value>> {
    let awards = match q.get("awards") {
        None => 10,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable("awards must be an integer between 1 and 100")
            })?,
    };
    let catalog = state.catalog.get();
    let s = system(&catalog, &key)?;
    let view = ask(
        &state,
        &id,
        PointsQuery {
            system_id: s.id,
            awards,
        },
    )
    .await?;
    let today = view.today;
    let mut m = points_response(s);
    m.insert("total".into(), json!(view.total));
    m.insert(
        "level".into(),
        view.level
            .and_then(|l| catalog.points_level_any(l))
            .map_or(Value::Null, app_level),
    );
    m.insert(
        "awards".into(),
        view.awards
            .iter()
            .map(|a| app_award(a, &catalog, today))
            .collect(),
    );
    Ok(Json(Value::Object(m)))
}

/// `GET /users/{id}/points/{key}/boosts`: boosts active for the user now.
async fn user_boosts(
    state: Scoped,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Value>>> {
    let catalog = state.catalog.get();
    let s = system(&catalog, &key)?;
    let (boosts, today) = ask(&state, &id, ActiveBoostsQuery { system_id: s.id }).await?;
    Ok(Json(boosts.iter().map(|b| app_boost(b, today)).collect()))
}

/// `GET /users/{id}/points/{key}/event-summary` (as the metric summary, SPEC §3.6).
async fn user_points_summary(
    state: Scoped,
    Path((id, key)): Path<(String, String)>,
    q: QueryPairs,
) -> ApiResult<(StatusCode, Json<Vec<SummaryEntry>>)> {
    let catalog = state.catalog.get();
    let s = system(&catalog, &key)?;
    let (aggregation, start, end) = summary_params(&q)?;
    let rows = ask(
        &state,
        &id,
        SummaryQuery {
            of: Summarized::Points(s.id),
            aggregation,
            start,
            end,
        },
    )
    .await?;
    Ok((
        StatusCode::OK,
        Json(rows.iter().map(SummaryEntry::from).collect()),
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/points/{key}", get(get_system))
        .route("/points/{key}/boosts", get(system_boosts))
        .route("/points/{key}/levels", get(system_levels))
        .route("/points/{key}/summary", get(summary))
        .route("/points/{key}/level-summary", get(level_summary))
        .route("/users/{id}/points/{key}", get(user_points))
        .route("/users/{id}/points/{key}/boosts", get(user_boosts))
        .route(
            "/users/{id}/points/{key}/event-summary",
            get(user_points_summary),
        )
}
