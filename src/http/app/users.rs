//! `/v1/users`: create, identify (PUT), update (PATCH) and read users (SPEC §2.3).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use kudos_actors::rules::keys::is_valid_user_id;
use kudos_actors::rules::profile::UserWrite;
use kudos_actors::user::{ProfileQuery, WriteMode, WriteProfile};

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::JsonBody;
use crate::http::scope::Scoped;
use crate::wire::object;
use crate::wire::users::{parse_upserted_user, parse_user_write, User};
use crate::AppState;

pub fn check_user_id(id: &str) -> ApiResult<()> {
    if is_valid_user_id(id) {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "User id must be between 1 and 255 characters",
        ))
    }
}

async fn write_profile(
    state: &Scoped,
    id: &str,
    mode: WriteMode,
    write: UserWrite,
) -> ApiResult<User> {
    check_user_id(id)?;
    let catalog = state.catalog.get();
    let profile = state.users.ask(id, WriteProfile { mode, write }).await?;
    Ok(User::from_profile(&profile, &catalog))
}

async fn create_user(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<User>)> {
    let (id, write) = parse_upserted_user(&body, "Request body")?;
    let user = write_profile(&state, &id, WriteMode::Create, write).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `PUT` (identify) and `PATCH` (update) take the same body and differ only in `mode`.
async fn write_by_path(
    state: Scoped,
    id: String,
    body: serde_json::Value,
    mode: WriteMode,
) -> ApiResult<Json<User>> {
    let write = parse_user_write(object(&body, "Request body")?)?;
    Ok(Json(write_profile(&state, &id, mode, write).await?))
}

async fn identify_user(
    state: Scoped,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<User>> {
    write_by_path(state, id, body, WriteMode::Identify).await
}

async fn update_user(
    state: Scoped,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<User>> {
    write_by_path(state, id, body, WriteMode::Update).await
}

async fn get_user(state: Scoped, Path(id): Path<String>) -> ApiResult<Json<User>> {
    let catalog = state.catalog.get();
    let profile = state
        .users
        .query(&id, ProfileQuery)
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    Ok(Json(User::from_profile(&profile, &catalog)))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/users", post(create_user)).route(
        "/users/{id}",
        get(get_user).put(identify_user).patch(update_user),
    )
}
