//! The HTTP edge: one router per resource merged here, plus the cross-cutting layers
//! (request log, JSON error bodies, panic catcher, timeout, body limit).

pub mod admin;
pub mod app;
pub mod auth;
pub mod error;
pub mod extract;
pub mod scope;
pub mod ws;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{AppState, Readiness};
use error::ApiError;

/// Requests running longer than this are answered 503 so shutdown and clients never hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The backlog gauges of `/metrics` count at most this many entries (never a full scan).
const OVERDUE_GAUGE_CAP: usize = 10_000;

/// Routes that, once they start changing state, run to completion before they answer
/// instead of being cut off by [`REQUEST_TIMEOUT`]: a 503 from them would leave the client
/// unable to tell whether to retry (a retried clock advance or batch would apply twice).
/// They bound their own validation phase instead.
fn runs_to_completion(path: &str) -> bool {
    matches!(path, "/admin/v1/test-clock" | "/admin/v1/metrics/events")
}

/// [`REQUEST_TIMEOUT`] for every route but [`runs_to_completion`] ones.
async fn request_timeout(req: Request, next: Next) -> Response {
    if runs_to_completion(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable("Request timed out").into_response(),
    }
}

pub fn router(state: AppState) -> Router {
    // Layers run from the last added: readiness, the key, then what the key may do.
    let application = app::router()
        .layer(from_fn_with_state(state.clone(), auth::application_scope))
        .layer(from_fn_with_state(state.clone(), auth::rate_limit))
        .layer(from_fn_with_state(state.clone(), auth::require_api_key))
        .layer(from_fn_with_state(state.clone(), auth::require_ready));
    let admin = admin::router()
        .layer(from_fn_with_state(state.clone(), auth::rate_limit))
        .layer(from_fn(auth::admin_only))
        .layer(from_fn_with_state(state.clone(), auth::require_api_key))
        .layer(from_fn_with_state(state.clone(), auth::require_ready));
    Router::new()
        // Authenticated by the upgrade itself (the key may come as `?apiKey=`).
        .route("/v1/ws", get(ws::upgrade))
        .route("/live/{key}", get(ws::live_page))
        .nest("/v1", application)
        .nest("/admin/v1", admin)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        // Layers wrap outwards: the body limit and panic catcher sit closest to handlers, the
        // timeout around them, then JSON error bodies (so a timeout's 503 gets one too) and
        // the request log outermost (so it sees every final status).
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn(request_timeout))
        .layer(from_fn(json_error_bodies))
        .layer(from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.store.healthy() {
        let cause = state.store.durability().last_error().unwrap_or_default();
        return ApiError::unavailable(format!(
            "Storage unavailable ({cause}); restart Kudos once the disk is writable"
        ))
        .into_response();
    }
    match state.readiness() {
        Readiness::Ready => Json(json!({"status": "ready"})).into_response(),
        Readiness::Recovering => ApiError::unavailable("Recovery in progress").into_response(),
        Readiness::Failed => {
            ApiError::unavailable("Recovery failed; see the server log").into_response()
        }
    }
}

/// `GET /metrics` (no auth; `KUDOS_METRICS=0` turns it off, SPEC §11.1.5).
async fn prometheus(State(state): State<AppState>) -> Response {
    if !state.config.metrics {
        return ApiError::not_found("Not found").into_response();
    }
    // Counting queues and backlogs reads storage: off the request workers, so a scrape
    // never stalls other requests.
    match tokio::task::spawn_blocking(move || render_metrics(&state)).await {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// The whole `/metrics` body.
fn render_metrics(state: &AppState) -> String {
    let durability = state.store.durability();
    let spaces = state.spaces.all();
    let gauges = crate::ops::Gauges {
        fsyncs: durability.fsync_count(),
        fsync_seconds: durability.fsync_seconds(),
        commits: durability.commit_count(),
        live_users: spaces.iter().map(|s| s.users.registry().live_count()).sum(),
        actor_failures: state
            .supervisor_stats
            .failures
            .load(std::sync::atomic::Ordering::Relaxed),
        overdue: state
            .store
            .due()
            .overdue(state.clock.now().timestamp_millis(), OVERDUE_GAUGE_CAP)
            .unwrap_or(0),
        users: spaces
            .iter()
            .map(|s| {
                state
                    .store
                    .indexes()
                    .counter(s.scope, kudos_actors::user::USERS_COUNTER)
                    .unwrap_or(0)
            })
            .sum(),
        fsync_failures: durability.failure_count(),
        storage_healthy: state.store.healthy(),
        jobs: spaces
            .iter()
            .map(|s| {
                state
                    .store
                    .meta_keys(&format!(
                        "{}{}",
                        s.scope.meta_prefix(),
                        kudos_actors::scheduler::JOB_PREFIX
                    ))
                    .map_or(0, |k| k.len())
            })
            .sum(),
        effect_backlog: state.effect_tally.as_ref().map(|_| {
            state
                .store
                .inbox()
                .backlog(kudos_snapshots::ConsumerId::TEST_TALLY, OVERDUE_GAUGE_CAP)
        }),
        inbox_backlog: [
            ("leaderboards", kudos_snapshots::ConsumerId::LEADERBOARDS),
            ("webhooks", kudos_snapshots::ConsumerId::WEBHOOKS),
        ]
        .into_iter()
        .map(|(name, c)| (name, state.store.inbox().backlog(c, OVERDUE_GAUGE_CAP)))
        .collect(),
        ws_connections: state
            .ws_connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum(),
    };
    let mut body = crate::ops::render(&state.ops, &gauges);
    let catalogs: Vec<_> = spaces.iter().map(|s| s.catalog.get()).collect();
    body.push_str(&crate::webhooks::dispatch::render_metrics(
        &state.store,
        &catalogs,
        &state.webhook_stats,
        state.clock.now(),
    ));
    body
}

/// Paths no route matches: a 404 that names the request, so a wrong base URL or a typo
/// is plain (and distinct from a missing resource's 404).
async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("No such endpoint: {method} {}", uri.path()))
}

fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = %detail, "request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into_response()
}

/// Error responses produced outside our handlers (405 from the router, 503 from the
/// timeout layer...) get the `{"error": ...}` body too.
async fn json_error_bodies(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let message = status.canonical_reason().unwrap_or("Error");
        let mut replaced = ApiError::new(status, message).into_response();
        for name in [header::ALLOW, header::RETRY_AFTER] {
            if let Some(v) = response.headers().get(&name) {
                replaced.headers_mut().insert(name, v.clone());
            }
        }
        return replaced;
    }
    response
}

/// One log line per request: method, route, status, latency.
async fn log_request(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let route = template
        .clone()
        .unwrap_or_else(|| req.uri().path().to_string());
    let mut response = next.run(req).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let latency_us = elapsed.as_micros();
    // Metrics use the route template only, so unknown paths cannot create new series.
    let series = template.as_deref().unwrap_or("unmatched");
    state
        .ops
        .record_request(method.as_str(), series, status, elapsed);
    if status == 500 {
        tracing::error!(%method, %route, status, latency_us, "request");
    } else {
        tracing::info!(%method, %route, status, latency_us, "request");
    }
    response.headers_mut().insert(
        "x-kudos-version",
        HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    response
}
