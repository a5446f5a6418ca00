//! `/admin/v1/webhooks` (SPEC §11.3): webhook endpoints in the bulk conventions of §10.1,
//! and secret rotation. With the SSRF guard on (unless `KUDOS_WEBHOOK_ALLOW_PRIVATE=1`), a
//! URL whose host resolves to a non-public address is refused here, per item.

use std::net::IpAddr;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use kudos_actors::catalog::webhooks::{check_url, WebhookChanges, WebhookFields, WebhookPatch};
use kudos_actors::catalog::{Catalog, Changed, Issue, Item};
use kudos_actors::rules::ssrf::is_public;
use serde_json::{json, Value};

use super::metrics::{created_status, MAX_BULK};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{bulk_items, Ids, JsonBody, Paging};
use crate::http::scope::Scoped;
use crate::wire::admin::issues;
use crate::wire::webhooks::{parse_new_webhook, parse_webhook_patch, webhook};
use crate::AppState;

/// How long one name may take to resolve when an endpoint is created or updated.
const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a destination is refused: its host does not resolve, or resolves (in any of its
/// addresses) to a non-public one. The dispatcher checks the address it dials again.
pub async fn check_destination(raw: &str) -> Result<(), String> {
    let url = check_url(raw)?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(url::Host::Domain(name)) => {
            match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((name, port))).await {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                Ok(Err(_)) => return Err("URL host does not resolve".into()),
                Err(_) => return Err("URL host did not resolve in time".into()),
            }
        }
        None => return Err("URL must have a host".into()),
    };
    if addresses.is_empty() {
        return Err("URL host does not resolve".into());
    }
    if addresses.iter().any(|ip| !is_public(*ip)) {
        return Err("URL resolves to a private address".into());
    }
    Ok(())
}

/// Applies the SSRF guard to an item's URL, when it has one and the guard is on.
async fn guarded(state: &Scoped, url: Option<&str>) -> Result<(), String> {
    match url {
        Some(u) if !state.config.webhook_allow_private => check_destination(u).await,
        _ => Ok(()),
    }
}

async fn apply(
    state: &Scoped,
    op: impl FnOnce(&mut Catalog) -> WebhookChanges,
) -> ApiResult<WebhookChanges> {
    let (out, refile) = state
        .catalog
        .update(|cat| {
            let before = cat.notices_wanted();
            let out = op(cat);
            let mut changed: Vec<Changed> = out.changed.iter().map(Changed::of).collect();
            // Users file their notices only while an endpoint wants them: the first such
            // endpoint has every user file theirs.
            let refile = (!before && cat.notices_wanted()).then(|| {
                let (key, value) = kudos_actors::scheduler::Job::Refile.record(state.users.scope());
                changed.push(Changed::Meta(key.clone(), value));
                key
            });
            ((out, refile), changed)
        })
        .await?;
    crate::webhooks::dispatch::refresh_live(&state.spaces);
    if let Some(key) = refile {
        tracing::info!("an endpoint wants \"due\" notifications: every user files theirs");
        state
            .scheduler
            .spawn_job(key, kudos_actors::scheduler::Job::Refile);
    }
    Ok(out)
}

async fn list(state: Scoped, paging: Paging) -> Json<Vec<Value>> {
    let catalog = state.catalog.get();
    Json(paging.apply(catalog.webhooks().map(|w| webhook(w, false))))
}

async fn get_one(state: Scoped, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let catalog = state.catalog.get();
    catalog
        .webhook_by_id(&id)
        .map(|w| Json(webhook(w, true)))
        .ok_or_else(|| ApiError::not_found("Webhook not found"))
}

async fn create(state: Scoped, JsonBody(body): JsonBody) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut items: Vec<Item<WebhookFields>> = Vec::new();
    for raw in bulk_items(&body, MAX_BULK)? {
        let item = parse_new_webhook(raw);
        items.push(match item {
            Ok(f) => guarded(&state, f.url.as_deref()).await.map(|()| f),
            Err(e) => Err(e),
        });
    }
    let now = state.clock.now();
    let out = apply(&state, |cat| cat.create_webhooks(items, now)).await?;
    let created: Vec<Value> = out.changed.iter().map(|w| webhook(w, true)).collect();
    Ok((
        created_status(created.len()),
        Json(json!({"created": created, "issues": issues(out.issues)})),
    ))
}

async fn update(state: Scoped, JsonBody(body): JsonBody) -> ApiResult<Json<Value>> {
    let mut items: Vec<Result<WebhookPatch, Issue>> = Vec::new();
    for (i, raw) in bulk_items(&body, MAX_BULK)?.iter().enumerate() {
        let item = match parse_webhook_patch(i, raw) {
            Ok(p) => match guarded(&state, p.fields.url.as_deref()).await {
                Ok(()) => Ok(p),
                Err(m) => Err(Issue::for_id(&p.id, m)),
            },
            Err(issue) => Err(issue),
        };
        items.push(item);
    }
    let now = state.clock.now();
    let out = apply(&state, |cat| cat.update_webhooks(items, now)).await?;
    let updated: Vec<Value> = out.changed.iter().map(|w| webhook(w, false)).collect();
    Ok(Json(
        json!({"updated": updated, "issues": issues(out.issues)}),
    ))
}

async fn delete(state: Scoped, Ids(ids): Ids) -> ApiResult<Json<Value>> {
    let out = apply(&state, |cat| cat.delete_webhooks(&ids)).await?;
    let deleted: Vec<Value> = out
        .changed
        .iter()
        .map(|w| json!({"id": w.id.to_string()}))
        .collect();
    Ok(Json(
        json!({"deleted": deleted, "issues": issues(out.issues)}),
    ))
}

/// `POST /webhooks/{id}/rotate-secret` → `{secret}`; the previous secret still signs for
/// 24 hours (SPEC §11.3.4).
async fn rotate(state: Scoped, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::not_found("Webhook not found"))?;
    let now = state.clock.now();
    let rotated = state
        .catalog
        .update(|cat| {
            let w = cat.rotate_webhook_secret(id, now);
            let changed = w.iter().map(Changed::of).collect();
            (w, changed)
        })
        .await?;
    rotated
        .map(|w| Json(json!({"secret": w.secret})))
        .ok_or_else(|| ApiError::not_found("Webhook not found"))
}

/// `POST /webhooks/{id}/test` with `{type}` (default `achievement.completed`): sends an
/// example payload of that type now, signed like any delivery, outside the retry
/// machinery, and answers with the attempt (SPEC §11.3.5).
async fn test_send(
    state: Scoped,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let event_type = if body.iter().all(u8::is_ascii_whitespace) {
        "achievement.completed".to_string()
    } else {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("Malformed JSON: {e}")))?;
        match v.get("type") {
            None | Some(Value::Null) => "achievement.completed".to_string(),
            Some(Value::String(t)) => t.clone(),
            Some(_) => return Err(ApiError::bad_request("type must be a string")),
        }
    };
    let catalog = state.catalog.get();
    let w = catalog
        .webhook_by_id(&id)
        .ok_or_else(|| ApiError::not_found("Webhook not found"))?;
    let now = state.clock.now();
    let payload = crate::webhooks::payloads::example(&event_type, &catalog, now)
        .map_err(ApiError::unprocessable)?;
    let event_id = uuid::Uuid::new_v4().to_string();
    let payload = serde_json::to_vec(&payload).unwrap_or_default();
    let bytes = crate::webhooks::payloads::body(w, &event_id, &event_type, &payload, now, 1);
    let delivery = crate::webhooks::send::Delivery {
        endpoint: w.id,
        url: &w.url,
        method: w.method,
        headers: &w.headers,
        secrets: w.signing_secrets(now),
        event_id: &event_id,
        event_type: &event_type,
        body: &bytes,
    };
    let attempt = state.webhook_sender.attempt(&delivery, now).await;
    tracing::info!(webhook = %w.id, event_type, status = ?attempt.status_code, error = ?attempt.error, "test webhook sent");
    Ok(Json(json!({
        "eventId": event_id,
        "type": event_type,
        "at": crate::wire::ts(attempt.at),
        "statusCode": attempt.status_code,
        "error": attempt.error,
        "durationMs": attempt.duration_ms,
        "responseBody": attempt.response_body,
    })))
}

/// `GET /webhooks/event-types`: every event type of SPEC §8.3 with its description and an
/// example payload built from this organization's configuration (`null` where one cannot be
/// built yet, with `exampleUnavailable` saying why).
async fn event_types(state: Scoped) -> Json<Vec<Value>> {
    let catalog = state.catalog.get();
    let now = state.clock.now();
    Json(
        kudos_actors::catalog::webhooks::EVENT_TYPES
            .iter()
            .map(
                |(t, description)| match crate::webhooks::payloads::example(t, &catalog, now) {
                    Ok(example) => {
                        json!({"type": t, "description": description, "example": example})
                    }
                    Err(why) => json!({
                        "type": t,
                        "description": description,
                        "example": null,
                        "exampleUnavailable": why,
                    }),
                },
            )
            .collect(),
    )
}

/// `GET /webhooks/{id}/deliveries?limit&skip&status&type`: newest first, with attempts.
async fn list_deliveries(
    state: Scoped,
    Path(id): Path<String>,
    paging: Paging,
    q: crate::http::extract::QueryPairs,
) -> ApiResult<Json<Vec<Value>>> {
    let catalog = state.catalog.get();
    let w = catalog
        .webhook_by_id(&id)
        .ok_or_else(|| ApiError::not_found("Webhook not found"))?;
    let status = q.get("status");
    if let Some(s) = status.filter(|s| !matches!(*s, "pending" | "succeeded" | "failed")) {
        return Err(ApiError::unprocessable(format!(
            "status must be pending, succeeded or failed, not {s}"
        )));
    }
    let kind = q.get("type");
    let rows = crate::webhooks::dispatch::deliveries(
        &state.store,
        w.id,
        |r| {
            status.is_none_or(|s| s == delivery_status(r)) && kind.is_none_or(|t| t == r.event_type)
        },
        paging.skip,
        paging.limit,
    )?;
    Ok(Json(rows.iter().map(delivery).collect()))
}

fn delivery_status(r: &crate::webhooks::dispatch::DeliveryRow) -> &'static str {
    use crate::webhooks::dispatch::DeliveryStatus;
    match r.status {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Succeeded => "succeeded",
        DeliveryStatus::Failed => "failed",
    }
}

fn delivery(r: &crate::webhooks::dispatch::DeliveryRow) -> Value {
    use crate::wire::ts;
    json!({
        "id": r.id.to_string(),
        "eventId": r.event_id.to_string(),
        "type": r.event_type,
        "status": delivery_status(r),
        "attempts": r.attempts.iter().map(|a| json!({
            "at": ts(a.at),
            "statusCode": a.status_code,
            "error": a.error,
            "durationMs": a.duration_ms,
            "responseBody": a.response_body,
        })).collect::<Vec<_>>(),
        "nextAttemptAt": r.next_attempt.map(ts),
        "created": ts(r.created),
        "payload": serde_json::from_slice::<Value>(&r.payload).unwrap_or(Value::Null),
    })
}

/// `POST /webhooks/{id}/deliveries/{deliveryId}/resend` → 202: one new attempt now, with
/// the same event id and body.
async fn resend(
    state: Scoped,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let catalog = state.catalog.get();
    let w = catalog
        .webhook_by_id(&id)
        .ok_or_else(|| ApiError::not_found("Webhook not found"))?;
    let delivery_id = uuid::Uuid::parse_str(&delivery_id)
        .map_err(|_| ApiError::not_found("Delivery not found"))?;
    let now = state.clock.now();
    if !crate::webhooks::dispatch::resend(&state.store, w.id, delivery_id, now, &state.webhook_wake)
        .await?
    {
        return Err(ApiError::not_found("Delivery not found"));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": delivery_id.to_string(), "status": "pending"})),
    ))
}

/// `POST /webhooks/{id}/recover` with `{since}` → 202: every delivery since then that never
/// succeeded is sent again, in the background (SPEC §11.3.9).
async fn recover(
    state: Scoped,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let catalog = state.catalog.get();
    let w = catalog
        .webhook_by_id(&id)
        .ok_or_else(|| ApiError::not_found("Webhook not found"))?;
    let since = body
        .get("since")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        .ok_or_else(|| ApiError::bad_request("since must be a date-time"))?;
    let (store, wake, endpoint, now) = (
        state.store.clone(),
        state.webhook_wake.clone(),
        w.id,
        state.clock.now(),
    );
    tokio::spawn(async move {
        match crate::webhooks::dispatch::recover(&store, endpoint, since, now, &wake).await {
            Ok(n) => tracing::info!(webhook = %endpoint, resent = n, "webhook recover done"),
            Err(e) => tracing::warn!(webhook = %endpoint, error = %e, "webhook recover failed"),
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": w.id.to_string(), "since": crate::wire::ts(since)})),
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/webhooks",
            get(list).post(create).patch(update).delete(delete),
        )
        .route("/webhooks/event-types", get(event_types))
        .route("/webhooks/{id}", get(get_one))
        .route("/webhooks/{id}/rotate-secret", post(rotate))
        .route("/webhooks/{id}/test", post(test_send))
        .route("/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/webhooks/{id}/recover", post(recover))
        .route("/webhooks/{id}/deliveries/{delivery}/resend", post(resend))
}
