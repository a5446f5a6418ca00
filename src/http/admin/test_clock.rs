//! `/admin/v1/test-clock` (SPEC §11.2): read and move the manual clock. Present only when
//! the server runs with `KUDOS_TEST_CLOCK=1`; otherwise these paths answer 404.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use kudos_actors::clock::ManualClock;
use serde::Serialize;
use serde_json::Value;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::JsonBody;
use crate::wire::{object, ts};
use crate::AppState;

/// Where the clock value is kept so it survives a restart (SPEC §11.2.4).
pub const CLOCK_META_KEY: &str = "test_clock";

#[derive(Serialize)]
struct ClockResponse {
    now: String,
}

fn manual(state: &AppState) -> ApiResult<&ManualClock> {
    state.clock.as_manual().ok_or_else(|| {
        ApiError::not_found("The test clock is not enabled (start Kudos with KUDOS_TEST_CLOCK=1)")
    })
}

async fn get_clock(State(state): State<AppState>) -> ApiResult<Json<ClockResponse>> {
    let clock = manual(&state)?;
    Ok(Json(ClockResponse {
        now: ts(kudos_actors::clock::Clock::now(clock)),
    }))
}

fn target(body: &Value, current: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    let obj = object(body, "Request body")?;
    match (obj.get("now"), obj.get("advanceSeconds")) {
        (Some(Value::String(raw)), None) => {
            let to = DateTime::parse_from_rfc3339(raw)
                .map_err(|_| ApiError::unprocessable("now must be an ISO 8601 date-time"))?
                .with_timezone(&Utc);
            if to < current {
                return Err(ApiError::unprocessable(
                    "The test clock cannot move backwards",
                ));
            }
            Ok(to)
        }
        (None, Some(Value::Number(n))) => {
            let secs = n.as_f64().unwrap_or(0.0);
            if !(secs > 0.0 && secs < 1.0e11) {
                return Err(ApiError::unprocessable(
                    "advanceSeconds must be a positive number",
                ));
            }
            // Bounded above, so the conversion to milliseconds cannot overflow.
            Ok(current + chrono::Duration::milliseconds((secs * 1000.0).round() as i64))
        }
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "Send either now or advanceSeconds, not both",
        )),
        (Some(_), None) => Err(ApiError::bad_request("now must be a string")),
        (None, Some(_)) => Err(ApiError::bad_request("advanceSeconds must be a number")),
        (None, None) => Err(ApiError::bad_request("now or advanceSeconds is required")),
    }
}

async fn set_clock(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<ClockResponse>> {
    let clock = manual(&state)?;
    // Serialize clock moves so the persisted value is always the latest one.
    let _guard = state.clock_moves.lock().await;
    let current = kudos_actors::clock::Clock::now(clock);
    let to = target(&body, current)?;
    state
        .store
        .meta_commit(vec![(
            CLOCK_META_KEY.to_string(),
            Some(Value::String(ts(to))),
        )])
        .await?;
    let now = clock
        .set(to)
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    // Everything due by the new time runs before the answer (SPEC §11.2.3). This route has
    // no request timeout (see `http::runs_to_completion`), and the run is a task of its own,
    // so a client that disconnects cannot cut it short either (entries stay due until done).
    let scheduler = state.scheduler.clone();
    let s = state.clone();
    let ran = tokio::spawn(async move {
        let ran = scheduler.run_due(now).await?;
        // The webhooks of what ran are durably queued, then the throttling windows that
        // ended by now are closed, each at its own end.
        settle_outbox(&s).await;
        crate::webhooks::throttled::close_until(
            &crate::webhooks::dispatch::WebhookConsumer::of(&s),
            &s.store,
            now,
        )
        .await?;
        Ok::<_, kudos_snapshots::StoreError>(ran)
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(now = %ts(now), due_jobs = ran, "test clock moved");
    Ok(Json(ClockResponse { now: ts(now) }))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/test-clock", get(get_clock).post(set_clock))
}

/// Waits until the leaderboards and the webhook outbox have applied every record written so
/// far (their inbox rows are gone), for at most 30 s.
async fn settle_outbox(state: &AppState) {
    use kudos_snapshots::ConsumerId;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let inbox = state.store.inbox();
    while inbox.backlog(ConsumerId::LEADERBOARDS, 1) > 0
        || inbox.backlog(ConsumerId::WEBHOOKS, 1) > 0
    {
        if tokio::time::Instant::now() > deadline {
            tracing::warn!("the test clock moved before the effect consumers caught up");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
