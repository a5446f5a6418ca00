//! `ApiError`: the one error type at the HTTP edge. Every non-2xx body is
//! `{"error": "<message>"}` (SPEC §1.3). Internal errors are logged with their cause and
//! answered with an opaque message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kudos_actors::user::UserError;
use serde_json::json;

use crate::wire::ShapeError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400: malformed JSON, wrong types, missing required fields.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 422: semantically invalid input.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    /// 503 for a write storage could not make durable: logged with its cause; nothing was
    /// acknowledged, and a retry with the same Idempotency-Key is safe.
    pub fn storage_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(cause = %cause, "write refused: storage unavailable");
        Self::unavailable("Storage unavailable; retry later")
    }
    /// 500: logs the cause; the client sees a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<ShapeError> for ApiError {
    fn from(e: ShapeError) -> Self {
        Self::bad_request(e.0)
    }
}

impl From<kudos_snapshots::StoreError> for ApiError {
    fn from(e: kudos_snapshots::StoreError) -> Self {
        if e.is_unavailable() {
            Self::storage_unavailable(e)
        } else {
            Self::internal(e)
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match &e {
            UserError::NotFound => Self::not_found("User not found"),
            UserError::MetricNotFound => Self::not_found("Metric not found"),
            UserError::AchievementNotFound => Self::not_found("Achievement not found"),
            UserError::AchievementLocked
            | UserError::NotEligible
            | UserError::InsufficientPoints => Self::unprocessable(e.to_string()),
            UserError::AlreadyExists
            | UserError::Profile(_)
            | UserError::InvalidEventAttributes(_)
            | UserError::TotalOutOfRange
            | UserError::Invalid(_) => Self::unprocessable(e.to_string()),
            UserError::CustomizationDisabled => Self::new(StatusCode::FORBIDDEN, e.to_string()),
            UserError::StorageUnavailable(_) => Self::storage_unavailable(e),
            UserError::Passivated | UserError::Unavailable => {
                tracing::warn!(cause = %e, "user actor unavailable; answered 503");
                Self::unavailable(
                    "User temporarily unavailable; retry with the same Idempotency-Key",
                )
            }
            UserError::Storage(_) => Self::internal(e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
