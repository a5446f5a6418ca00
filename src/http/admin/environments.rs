//! `GET /admin/v1/environments` (SPEC §9.2.4): the environments, by priority. Operators
//! create them with `kudos environments create`; there is no HTTP route to (Trophy has
//! none either).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::AppState;

/// `AdminEnvironment`.
#[derive(Serialize)]
struct AdminEnvironment {
    name: String,
    key: String,
    priority: u32,
}

async fn list_environments(State(state): State<AppState>) -> Json<Vec<AdminEnvironment>> {
    let all = state.environments.all();
    Json(
        crate::environments::ordered(&all)
            .into_iter()
            .map(|(e, priority)| AdminEnvironment {
                name: e.name.clone(),
                key: e.key.clone(),
                priority,
            })
            .collect(),
    )
}

pub fn router() -> Router<AppState> {
    Router::new().route("/environments", get(list_environments))
}
