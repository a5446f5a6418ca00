//! `/admin/v1/metrics`: metric CRUD in the bulk conventions of SPEC §10.1, and batch events
//! (SPEC §3.4).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use kudos_actors::catalog::Changed;
use kudos_actors::user::{Command, NewEvent};

use crate::http::app::metrics::{check_idempotency_key, record_event};

/// The dry run of a batch must finish within this (the route has no request timeout, since
/// its apply phase runs to completion).
const BATCH_VALIDATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);
use crate::http::app::users::check_user_id;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{bulk_items, Ids, JsonBody, Paging};
use crate::http::scope::Scoped;
use crate::wire::admin::{
    issues, parse_metric_patch, parse_new_metric, BatchEventsResponse, Created, CreatedMetric,
    Deleted, DeletedResource, Updated,
};
use crate::wire::events::parse_batch_item;
use crate::AppState;

/// Largest batch of events (SPEC §3.4.1).
const MAX_BATCH_EVENTS: usize = 1000;
/// Largest bulk admin request (SPEC §10.1.2).
pub const MAX_BULK: usize = 100;

/// 201 when at least one item was created, else 200 (SPEC §10.1.2).
pub fn created_status(created: usize) -> StatusCode {
    if created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn list_metrics(state: Scoped, paging: Paging) -> Json<Vec<CreatedMetric>> {
    let catalog = state.catalog.get();
    Json(paging.apply(catalog.metrics().map(CreatedMetric::from)))
}

async fn get_metric(state: Scoped, Path(id): Path<String>) -> ApiResult<Json<CreatedMetric>> {
    let catalog = state.catalog.get();
    catalog
        .metric_by_id(&id)
        .map(|m| Json(CreatedMetric::from(m)))
        .ok_or_else(|| ApiError::not_found("Metric not found"))
}

async fn create_metrics(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Created<CreatedMetric>>)> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .map(parse_new_metric)
        .collect();
    let now = state.clock.now();
    let (created, problems) = state
        .catalog
        .update(|cat| {
            let (created, problems) = cat.create_metrics(items, now);
            let changed = created.iter().map(Changed::of).collect();
            ((created, problems), changed)
        })
        .await?;
    tracing::info!(
        created = created.len(),
        issues = problems.len(),
        "metrics created"
    );
    Ok((
        created_status(created.len()),
        Json(Created {
            created: created.iter().map(CreatedMetric::from).collect(),
            issues: issues(problems),
        }),
    ))
}

async fn update_metrics(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Updated<CreatedMetric>>> {
    let items = bulk_items(&body, MAX_BULK)?
        .iter()
        .enumerate()
        .map(|(i, item)| parse_metric_patch(i, item))
        .collect();
    let (updated, problems) = state
        .catalog
        .update(|cat| {
            let (updated, problems) = cat.update_metrics(items);
            let changed = updated.iter().map(Changed::of).collect();
            ((updated, problems), changed)
        })
        .await?;
    Ok(Json(Updated {
        updated: updated.iter().map(CreatedMetric::from).collect(),
        issues: issues(problems),
    }))
}

async fn delete_metrics(state: Scoped, Ids(ids): Ids) -> ApiResult<Json<Deleted>> {
    let (deleted, problems) = state
        .catalog
        .update(|cat| {
            let (deleted, problems) = cat.delete_metrics(&ids);
            let changed = deleted.iter().map(Changed::of).collect();
            ((deleted, problems), changed)
        })
        .await?;
    Ok(Json(Deleted {
        deleted: deleted
            .iter()
            .map(|m| DeletedResource {
                id: m.id.to_string(),
            })
            .collect(),
        issues: issues(problems),
    }))
}

/// `POST /admin/v1/metrics/events`: the whole batch is validated first (all or nothing:
/// every user's events are dry-run in order against that user's current state), then every
/// event is processed exactly like a single event, in array order per user, and the answer is
/// sent once all of them are durable.
async fn batch_events(
    state: Scoped,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<BatchEventsResponse>)> {
    let raw = bulk_items(&body, MAX_BATCH_EVENTS)?;
    let parsed = raw
        .iter()
        .enumerate()
        .map(|(i, item)| parse_batch_item(i, item))
        .collect::<Result<Vec<_>, _>>()?;
    let catalog = state.catalog.get();
    let mut per_user: Vec<(String, Vec<NewEvent>)> = Vec::new();
    let mut slot: HashMap<String, usize> = HashMap::new();
    for item in parsed {
        let metric = catalog
            .metric_by_key(&item.key)
            .ok_or_else(|| ApiError::not_found("Metric not found"))?;
        check_user_id(&item.event.user_id)?;
        let event = NewEvent {
            metric_id: metric.id,
            value: item.event.value,
            user: item.event.user,
            attributes: item.event.attributes,
            idempotency_key: check_idempotency_key(item.idempotency_key)?,
        };
        let next = per_user.len();
        let at = *slot.entry(item.event.user_id.clone()).or_insert(next);
        if at == next {
            per_user.push((item.event.user_id, Vec::new()));
        }
        per_user[at].1.push(event);
    }
    let per_user = Arc::new(per_user);

    // Validate: dry-run each user's events; report the first failing user in batch order.
    let mut checks = tokio::task::JoinSet::new();
    for index in 0..per_user.len() {
        let (state, per_user) = (state.clone(), per_user.clone());
        checks.spawn(async move {
            let (user_id, events) = &per_user[index];
            let result = state
                .users
                .execute(user_id, Command::CheckEvents(events.clone()))
                .await;
            (index, result)
        });
    }
    // Validation changes nothing, so it is the phase that may time out (answered 503 having
    // done nothing); the apply phase below always runs to completion before the answer.
    let mut failures = Vec::new();
    let validation = async {
        while let Some(joined) = checks.join_next().await {
            let (index, result) = joined.map_err(ApiError::internal)?;
            if let Err(e) = result {
                failures.push((index, e));
            }
        }
        Ok::<(), ApiError>(())
    };
    tokio::time::timeout(BATCH_VALIDATION_TIMEOUT, validation)
        .await
        .map_err(|_| ApiError::unavailable("Batch validation timed out; nothing was applied"))??;
    if let Some((_, e)) = failures.into_iter().min_by_key(|(i, _)| *i) {
        return Err(e.into());
    }

    // Apply, in a task of its own: once validated, the batch is applied in full even if the
    // client disconnects, and the answer waits for it (no request timeout on this route). A user changed by another request since
    // the dry run may still reject an event; that event is logged and skipped.
    let apply_state = state.clone();
    let applied = tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..per_user.len() {
            let (state, per_user) = (apply_state.clone(), per_user.clone());
            tasks.spawn(async move {
                let (user_id, events) = &per_user[index];
                for event in events {
                    match record_event(&state, user_id, event.clone()).await {
                        Ok(_) => {}
                        Err(e) if e.status.is_client_error() => {
                            tracing::warn!(user = %user_id, error = %e.message, "batch event rejected after validation (user changed concurrently)");
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.map_err(ApiError::internal)??;
        }
        Ok::<(), ApiError>(())
    });
    applied.await.map_err(ApiError::internal)??;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchEventsResponse {
            accepted: raw.len(),
        }),
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/metrics",
            get(list_metrics)
                .post(create_metrics)
                .patch(update_metrics)
                .delete(delete_metrics),
        )
        .route("/metrics/events", post(batch_events))
        .route("/metrics/{id}", get(get_metric))
}
