//! `X-API-KEY` authentication as middleware: a request reaches a handler only with a valid
//! key, and the handler can read the [`Principal`] from the request extensions.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::keys::{KeyKind, Principal};
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

/// Whether `principal` may act for, or read the data of, user `user` (SPEC §1.1.4): admin
/// keys for every user, application keys for their own user only. The one rule the
/// application API and the WebSocket protocol both ask.
pub fn may_act_for(principal: &Principal, user: &str) -> bool {
    match principal.kind {
        KeyKind::Admin => true,
        KeyKind::Application => principal.user_id.as_deref() == Some(user),
    }
}

/// Whether `principal` may subscribe to `topic`: leaderboards are account-level reads;
/// a user's events follow [`may_act_for`].
pub fn may_read(principal: &Principal, topic: &Topic<'_>) -> bool {
    match topic {
        Topic::Leaderboard => true,
        Topic::User(user) => may_act_for(principal, user),
    }
}

/// The admin API takes admin keys only: an application key there is a 401 (SPEC §1.1.3).
pub async fn admin_only(req: Request, next: Next) -> Response {
    match req.extensions().get::<Principal>().map(|p| p.kind) {
        Some(KeyKind::Admin) => next.run(req).await,
        _ => ApiError::unauthorized("Application API keys are valid on the application API only")
            .into_response(),
    }
}

/// The key's token bucket (SPEC §1.4): `KUDOS_APP_KEY_RATE` for application keys,
/// `KUDOS_ADMIN_KEY_RATE` for admin keys (0: unlimited). A refusal is a 429 with
/// `Retry-After` in seconds.
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(p) = req.extensions().get::<Principal>() else {
        return next.run(req).await;
    };
    let rate = p.rate.unwrap_or(match p.kind {
        KeyKind::Admin => state.config.admin_key_rate,
        KeyKind::Application => state.config.app_key_rate,
    });
    match state
        .limiter
        .admit(p.key_id, Some(rate), std::time::Instant::now())
    {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let mut r =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests").into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            r
        }
    }
}

/// The user an application request is about, when the body names it: `POST /users`
/// (`id`), events and completions (`user.id`).
fn body_user_pointer(method: &Method, segments: &[&str]) -> Option<&'static str> {
    match (method, segments) {
        (&Method::POST, ["users"]) => Some("/id"),
        (&Method::POST, ["metrics", _, "event"])
        | (&Method::POST, ["achievements", _, "complete"]) => Some("/user/id"),
        _ => None,
    }
}

/// What an application key may do on the application API (SPEC §1.1.4), checked before
/// any handler runs: a user in the path (`/users/{id}/…`) or in the body (`POST /users`,
/// events, completions) must be the key's own, else a 403; account-level reads pass.
/// Admin keys pass untouched.
pub async fn application_scope(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return next.run(req).await;
    };
    if principal.kind == KeyKind::Admin {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "API key is not authorized for this user",
        )
        .into_response()
    };
    if segments.len() >= 2 && segments[0] == "users" {
        let user = percent_encoding::percent_decode_str(segments[1]).decode_utf8_lossy();
        return if may_act_for(&principal, &user) {
            next.run(req).await
        } else {
            forbidden()
        };
    }
    let Some(pointer) = body_user_pointer(req.method(), &segments) else {
        return next.run(req).await;
    };
    // The body is read here, within the body limit, and handed on as it was.
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
                    .into_response()
            } else {
                ApiError::bad_request("The request body could not be read").into_response()
            };
        }
    };
    let named = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.pointer(pointer)
                .and_then(|u| u.as_str())
                .map(str::to_string)
        });
    // A body without a user is the handler's to refuse (400).
    if named.is_some_and(|u| !may_act_for(&principal, &u)) {
        return forbidden();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}
