//! `X-API-KEY` authentication as middleware: a request reaches a handler only with a valid
//! key, and the handler can read the [`Principal`] from the request extensions.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::{AppState, Readiness};

pub async fn require_api_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(raw) = req.headers().get("x-api-key") else {
        return ApiError::unauthorized("Missing X-API-KEY header").into_response();
    };
    let principal = raw
        .to_str()
        .ok()
        .and_then(|key| state.keys.verify(key.trim()));
    match principal {
        Some(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        None => ApiError::unauthorized("Invalid API key").into_response(),
    }
}

/// Until start-up recovery has finished, API requests are answered 503 (SPEC §11.1.2).
pub async fn require_ready(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.readiness() {
        Readiness::Ready => next.run(req).await,
        Readiness::Recovering => {
            ApiError::unavailable("Server is starting; recovery is not complete").into_response()
        }
        Readiness::Failed => {
            ApiError::unavailable("Recovery failed; see the server log").into_response()
        }
    }
}

/// What a WebSocket subscription reads (SPEC §11.4.3).
pub enum Topic<'a> {
    Leaderboard,
    User(&'a str),
}

/// Whether `principal` may subscribe to `topic`: the one place the WebSocket protocol
/// asks. Admin keys read everything. Application keys, when they come, read leaderboards
/// and their own user only.
pub fn may_read(principal: &crate::keys::Principal, topic: &Topic<'_>) -> bool {
    match principal.kind {
        crate::keys::KeyKind::Admin => {
            let _ = topic;
            true
        }
    }
}
