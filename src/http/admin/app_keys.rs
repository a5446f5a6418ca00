//! `POST|DELETE /admin/v1/application-api-keys` (SPEC §1.1.3): keys for single users, to
//! ship inside client apps. The full key is returned once, at creation; only its hash is
//! stored. Deletion takes effect at once. What a key may then do is in `http::auth`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use kudos_actors::catalog::Issue;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::metrics::created_status;
use crate::http::error::ApiResult;
use crate::http::extract::{bulk_items, Ids, JsonBody};
use crate::http::scope::{tenant_scope, Environment};
use crate::wire::admin::{issues, AdminIssue, DeletedResource};
use crate::AppState;

/// Longest user id a key may be made for (the user id limit, SPEC §0.3).
const MAX_USER_ID: usize = 255;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedApplicationKey {
    id: Uuid,
    user_id: String,
    key: String,
    prefix: String,
}

#[derive(Serialize)]
struct CreatedKeys {
    created: Vec<CreatedApplicationKey>,
    issues: Vec<AdminIssue>,
}

#[derive(Serialize)]
struct DeletedKeys {
    deleted: Vec<DeletedResource>,
    issues: Vec<AdminIssue>,
}

async fn create(
    State(state): State<AppState>,
    Environment(env): Environment,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // A `Tenant-ID`, when sent, makes keys that work in that tenant only (SPEC §1.2.3).
    let tenant = match headers.get("tenant-id") {
        Some(header) => {
            Some(tenant_scope(&state, env.scope, Some(header))?.tenant).filter(|&t| t != 0)
        }
        None => None,
    };
    let items = bulk_items(&body, 100)?;
    let mut users = Vec::new();
    let mut problems = Vec::new();
    for (index, item) in items.iter().enumerate() {
        // The user need not exist yet (SPEC §1.1.3 DECISION): it may be created by the key.
        match item.get("userId") {
            // The rule user ids follow everywhere (1–255 characters).
            Some(Value::String(u)) if kudos_actors::rules::keys::is_valid_user_id(u) => {
                users.push(u.clone())
            }
            Some(Value::String(_)) => problems.push(Issue::at_index(
                index,
                format!("userId must be 1 to {MAX_USER_ID} characters"),
            )),
            _ => problems.push(Issue::at_index(index, "userId not a string")),
        }
    }
    let created = if users.is_empty() {
        Vec::new()
    } else {
        state
            .keys
            .create_application_keys(&users, env.scope.environment, tenant, state.clock.now())
            .await?
    };
    tracing::info!(created = created.len(), "application API keys created");
    let created: Vec<CreatedApplicationKey> = created
        .into_iter()
        .map(|k| CreatedApplicationKey {
            id: k.id,
            user_id: k.user_id,
            key: k.key,
            prefix: k.prefix,
        })
        .collect();
    let status = created_status(created.len());
    let body = serde_json::to_value(CreatedKeys {
        created,
        issues: issues(problems),
    })
    .unwrap_or_default();
    Ok((status, Json(body)))
}

async fn delete(
    State(state): State<AppState>,
    Environment(env): Environment,
    Ids(raw): Ids,
) -> ApiResult<Json<Value>> {
    let mut problems = Vec::new();
    let mut ids = Vec::new();
    for r in &raw {
        match Uuid::parse_str(r) {
            Ok(id) => ids.push(id),
            Err(_) => problems.push(Issue::for_id(r, "id must be a valid UUID")),
        }
    }
    let deleted = state
        .keys
        .delete_application_keys(&ids, env.scope.environment)
        .await?;
    for id in ids.iter().filter(|id| !deleted.contains(id)) {
        problems.push(Issue::for_id(
            id.to_string(),
            "Application API key not found by ID",
        ));
    }
    tracing::info!(deleted = deleted.len(), "application API keys deleted");
    let body = serde_json::to_value(DeletedKeys {
        deleted: deleted
            .into_iter()
            .map(|id| DeletedResource { id: id.to_string() })
            .collect(),
        issues: issues(problems),
    })
    .unwrap_or_default();
    Ok(Json(body))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/application-api-keys", post(create).delete(delete))
}
