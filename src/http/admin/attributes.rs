//! `/admin/v1/attributes`: custom user and event attributes (SPEC §10.3).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kudos_actors::catalog::Changed;

use super::metrics::{created_status, MAX_BULK};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{bulk_items, Ids, JsonBody, Paging};
use crate::http::scope::Scoped;
use crate::wire::admin::{
    issues, parse_attribute_patch, parse_new_attribute, AdminAttribute, Created, Deleted,
    DeletedResource, Updated,
};
use crate::AppState;

async fn list_attributes(state: Scoped, paging: Paging) -> Json<Vec<AdminAttribute>> {
    let catalog = state.catalog.get();
    Json(paging.apply(catalog.attributes().map(AdminAttribute::from)))
}

async fn get_attribute(state: Scoped, Path(id): Path<String>) -> ApiResult<Json<AdminAttribute>> {
    let catalog = state.catalog.get();
    catalog
        .attribute_by_id(&id)
        .map(|a| Json(AdminAttribute::from(a)))
        .ok_or_else(|| ApiError::not_found("Attribute not found"))
}

async fn create_attributes(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Created<AdminAttribute>>)> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .map(parse_new_attribute)
        .collect();
    let (created, problems) = state
        .catalog
        .update(|cat| {
            let (created, problems) = cat.create_attributes(items);
            let changed = created.iter().map(Changed::of).collect();
            ((created, problems), changed)
        })
        .await?;
    Ok((
        created_status(created.len()),
        Json(Created {
            created: created.iter().map(AdminAttribute::from).collect(),
            issues: issues(problems),
        }),
    ))
}

async fn update_attributes(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Updated<AdminAttribute>>> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .enumerate()
        .map(|(i, item)| parse_attribute_patch(i, item))
        .collect();
    let (updated, problems) = state
        .catalog
        .update(|cat| {
            let (updated, problems) = cat.update_attributes(items);
            let changed = updated.iter().map(Changed::of).collect();
            ((updated, problems), changed)
        })
        .await?;
    Ok(Json(Updated {
        updated: updated.iter().map(AdminAttribute::from).collect(),
        issues: issues(problems),
    }))
}

async fn delete_attributes(state: Scoped, Ids(ids): Ids) -> ApiResult<Json<Deleted>> {
    let (deleted, problems) = state
        .catalog
        .update(|cat| {
            let (deleted, problems) = cat.delete_attributes(&ids);
            let changed = deleted.iter().map(Changed::of).collect();
            ((deleted, problems), changed)
        })
        .await?;
    Ok(Json(Deleted {
        deleted: deleted
            .iter()
            .map(|a| DeletedResource {
                id: a.id.to_string(),
            })
            .collect(),
        issues: issues(problems),
    }))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/attributes",
            get(list_attributes)
                .post(create_attributes)
                .patch(update_attributes)
                .delete(delete_attributes),
        )
        .route("/attributes/{id}", get(get_attribute))
}
