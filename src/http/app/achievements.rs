//! `/v1/achievements`, `/v1/users/{id}/achievements` and
//! `/v1/achievements/{key}/complete` (SPEC §4.5–4.8).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use kudos_actors::achievements::{Achievement, AchievementStatus};
use kudos_actors::catalog::{AttributeKind, Catalog};
use kudos_actors::user::{
    completions_counter, AchievementsQuery, CompleteAchievement, Completed, Effect, USERS_COUNTER,
};
use serde_json::{json, Value};

use crate::http::app::users::check_user_id;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{JsonBody, QueryPairs};
use crate::http::scope::Scoped;
use crate::wire::achievements::{user_achievement, with_stats};
use crate::wire::object;
use crate::wire::users::parse_upserted_user;
use crate::AppState;

/// Completions of `a` and the number of users, for `completions` and `rarity`.
fn stats(state: &Scoped, a: &Achievement) -> ApiResult<(u64, usize)> {
    let (indexes, scope) = (state.store.indexes(), state.users.scope());
    Ok((
        indexes.counter(scope, &completions_counter(a.id))?,
        usize::try_from(indexes.counter(scope, USERS_COUNTER)?).unwrap_or(usize::MAX),
    ))
}

/// `userAttributes=k:v,k2:v2` (SPEC §4.6.2); malformed pairs or unknown keys are a 422.
fn parse_user_attributes(
    catalog: &Catalog,
    raw: Option<&str>,
) -> ApiResult<Option<BTreeMap<String, String>>> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for pair in raw.split(',') {
        let (k, v) = pair
            .split_once(':')
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .ok_or_else(|| {
                ApiError::unprocessable(format!("Invalid userAttributes pair: {pair}"))
            })?;
        if catalog.attribute(AttributeKind::User, k).is_none() {
            return Err(ApiError::unprocessable(format!(
                "Invalid attribute keys: {k}"
            )));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(Some(out))
}

async fn list(state: Scoped, q: QueryPairs) -> ApiResult<Json<Vec<Value>>> {
    let catalog = state.catalog.get();
    let filter = parse_user_attributes(&catalog, q.get("userAttributes"))?;
    let mut out = Vec::new();
    for a in catalog
        .achievements()
        .filter(|a| a.status == AchievementStatus::Active)
    {
        if let Some(attrs) = &filter {
            let accessible = a.user_filters.iter().all(|(id, value)| {
                catalog
                    .attribute_key(*id)
                    .and_then(|k| attrs.get(k))
                    .is_some_and(|v| v == value)
            });
            if !accessible {
                continue;
            }
        }
        let (completions, users) = stats(&state, a)?;
        let mut v = with_stats(user_achievement(a, &catalog, None), completions, users);
        if let Value::Object(m) = &mut v {
            m.remove("achievedAt");
        }
        out.push(v);
    }
    Ok(Json(out))
}

async fn user_achievements(
    state: Scoped,
    Path(id): Path<String>,
    q: QueryPairs,
) -> ApiResult<Json<Vec<Value>>> {
    let include_incomplete = q.get("includeIncomplete") == Some("true");
    let catalog = state.catalog.get();
    let rows = state
        .users
        .query(&id, AchievementsQuery { include_incomplete })
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    let mut out = Vec::with_capacity(rows.len());
    for (a, at) in rows {
        let (completions, users) = stats(&state, &a)?;
        out.push(with_stats(
            user_achievement(&a, &catalog, at),
            completions,
            users,
        ));
    }
    Ok(Json(out))
}

/// The achievements a record completed that the caller should see, in completion order.
pub fn completed_in(effects: &[Effect], catalog: &Arc<Catalog>) -> Vec<Value> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::AchievementCompleted {
                achievement_id,
                at,
                silent: false,
                ..
            } => catalog
                .achievement(*achievement_id)
                .map(|a| user_achievement(a, catalog, Some(*at))),
            _ => None,
        })
        .collect()
}

async fn complete(
    state: Scoped,
    Path(key): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let obj = object(&body, "Request body")?;
    let user = obj
        .get("user")
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::bad_request("user is required"))?;
    let (user_id, write) = parse_upserted_user(user, "user")?;
    check_user_id(&user_id)?;
    let catalog = state.catalog.get();
    if catalog
        .api_achievement(&key)
        .is_none_or(|a| a.status == AchievementStatus::Inactive)
    {
        return Err(ApiError::not_found("Achievement not found"));
    }
    let Completed {
        achievement_id,
        completion,
        effects,
    } = state
        .users
        .ask(&user_id, CompleteAchievement { key, user: write })
        .await?;
    let achievement = catalog
        .achievement(achievement_id)
        .ok_or_else(|| ApiError::not_found("Achievement not found"))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "completionId": completion.completion_id.to_string(),
            "achievement": user_achievement(achievement, &catalog, Some(completion.at)),
            "points": crate::wire::points::points_map(
                &effects,
                &catalog,
                state.clock.now().date_naive(),
            ),
        })),
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/achievements", get(list))
        .route("/achievements/{key}/complete", post(complete))
        .route("/users/{id}/achievements", get(user_achievements))
}
