//! `GET /admin/v1/test-effect-tally` (only with `KUDOS_TEST_EFFECT_TALLY=1`): what the
//! effect tally consumer counted per user, and how many inbox rows it has not applied yet.
//! The durability tests use it to check that every acknowledged record's effects arrived
//! exactly once across `kill -9`. Not part of the Trophy API.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use kudos_snapshots::ConsumerId;
use serde::Serialize;

use crate::http::error::{ApiError, ApiResult};
use crate::AppState;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserTally {
    effects: u64,
    metric_changes: u64,
    metric_delta: f64,
    achievements: u64,
    streaks_lost: u64,
    points_awards: u64,
    points_awarded: i64,
    boosts_started: u64,
    boosts_finished: u64,
    runs_started: u64,
    runs_finished: u64,
    board_changes: u64,
    rank_changes: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TallyResponse {
    /// Inbox rows not applied yet (counted up to 1,000,000).
    backlog: usize,
    users: BTreeMap<String, UserTally>,
}

async fn get_tally(State(state): State<AppState>) -> ApiResult<Json<TallyResponse>> {
    let Some(view) = &state.effect_tally else {
        return Err(ApiError::not_found("Not found"));
    };
    let backlog = state
        .store
        .inbox()
        .backlog(ConsumerId::TEST_TALLY, 1_000_000);
    let users = view
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(id, t)| {
            (
                id.clone(),
                UserTally {
                    effects: t.effects,
                    metric_changes: t.metric_changes,
                    metric_delta: t.metric_delta,
                    achievements: t.achievements,
                    streaks_lost: t.streaks_lost,
                    points_awards: t.points_awards,
                    points_awarded: t.points_awarded,
                    boosts_started: t.boosts_started,
                    boosts_finished: t.boosts_finished,
                    runs_started: t.runs_started,
                    runs_finished: t.runs_finished,
                    board_changes: t.board_changes,
                    rank_changes: t.rank_changes,
                },
            )
        })
        .collect();
    Ok(Json(TallyResponse { backlog, users }))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/test-effect-tally", get(get_tally))
}
