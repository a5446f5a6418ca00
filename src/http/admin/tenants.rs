//! `/admin/v1/tenants` (SPEC §9.1): the customers of a multi-tenant environment. These
//! routes work on the environment itself and ignore `Tenant-ID` (SPEC §1.2.3).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kudos_actors::catalog::Changed;
use kudos_snapshots::Scope;

use super::metrics::{created_status, MAX_BULK};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{bulk_items, Ids, JsonBody, Paging};
use crate::http::scope::Environment;
use crate::wire::admin::{
    issues, parse_new_tenant, parse_tenant_patch, AdminTenant, Created, Deleted, DeletedResource,
    Updated,
};
use crate::AppState;

async fn list_tenants(Environment(env): Environment, paging: Paging) -> Json<Vec<AdminTenant>> {
    let catalog = env.catalog.get();
    Json(paging.apply(catalog.tenants().map(AdminTenant::from)))
}

async fn get_tenant(
    Environment(env): Environment,
    Path(id): Path<String>,
) -> ApiResult<Json<AdminTenant>> {
    env.catalog
        .get()
        .tenant_by_id(&id)
        .map(|t| Json(AdminTenant::from(t)))
        .ok_or_else(|| ApiError::not_found("Tenant not found"))
}

async fn create_tenants(
    Environment(env): Environment,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Created<AdminTenant>>)> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .map(parse_new_tenant)
        .collect();
    let now = env.clock.now();
    let (created, problems) = env
        .catalog
        .update(|cat| {
            let (created, problems) = cat.create_tenants(items, now);
            let changed = created.iter().map(Changed::of).collect();
            ((created, problems), changed)
        })
        .await?;
    // Open the new tenants' spaces now, so their first request finds them loaded.
    for t in &created {
        let scope = Scope {
            environment: env.scope.environment,
            tenant: t.number,
        };
        if let Err(e) = env.spaces.get(scope) {
            tracing::warn!(%scope, error = %e, "a new tenant's space could not be opened yet");
        }
        tracing::info!(tenant = %t.id, customer_id = %t.customer_id, %scope, "tenant created");
    }
    Ok((
        created_status(created.len()),
        Json(Created {
            created: created.iter().map(AdminTenant::from).collect(),
            issues: issues(problems),
        }),
    ))
}

async fn update_tenants(
    Environment(env): Environment,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Updated<AdminTenant>>> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .enumerate()
        .map(|(i, item)| parse_tenant_patch(i, item))
        .collect();
    let now = env.clock.now();
    let (updated, problems) = env
        .catalog
        .update(|cat| {
            let (updated, problems) = cat.update_tenants(items, now);
            let changed = updated.iter().map(Changed::of).collect();
            ((updated, problems), changed)
        })
        .await?;
    Ok(Json(Updated {
        updated: updated.iter().map(AdminTenant::from).collect(),
        issues: issues(problems),
    }))
}

/// Archives: the tenant's data stays, its `Tenant-ID` is refused from now on.
async fn delete_tenants(Environment(env): Environment, Ids(ids): Ids) -> ApiResult<Json<Deleted>> {
    let now = env.clock.now();
    let (archived, problems) = env
        .catalog
        .update(|cat| {
            let (archived, problems) = cat.archive_tenants(&ids, now);
            let changed = archived.iter().map(Changed::of).collect();
            ((archived, problems), changed)
        })
        .await?;
    for t in &archived {
        tracing::info!(tenant = %t.id, customer_id = %t.customer_id, "tenant archived");
    }
    Ok(Json(Deleted {
        deleted: archived
            .iter()
            .map(|t| DeletedResource {
                id: t.id.to_string(),
            })
            .collect(),
        issues: issues(problems),
    }))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/tenants",
            get(list_tenants)
                .post(create_tenants)
                .patch(update_tenants)
                .delete(delete_tenants),
        )
        .route("/tenants/{id}", get(get_tenant))
}
