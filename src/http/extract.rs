//! Extractors whose rejections are our `{"error"}` bodies: JSON bodies (400, 413 over the
//! body limit), list paging and `ids` lists of the admin API (422 when out of range).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde_json::Value;

use super::error::ApiError;

/// A request body parsed as JSON, whatever the `Content-Type` (SDKs send
/// `application/json`; curl users often forget it).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            } else {
                ApiError::bad_request(format!("Could not read request body: {rejection}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("Request body is required"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("Malformed JSON: {e}")))
    }
}

fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
}

/// The raw query as ordered pairs (repeated keys kept).
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(QueryPairs(query_pairs(parts)))
    }
}

/// `limit` (1–100, default 10) and `skip` (≥ 0, default 0) of admin lists (SPEC §10.1.1).
pub struct Paging {
    pub limit: usize,
    pub skip: usize,
}

impl Paging {
    pub fn apply<T>(&self, items: impl Iterator<Item = T>) -> Vec<T> {
        items.skip(self.skip).take(self.limit).collect()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = QueryPairs(query_pairs(parts));
        let limit = match q.get("limit") {
            None => 10,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| {
                    ApiError::unprocessable("limit must be an integer between 1 and 100")
                })?,
        };
        let skip = match q.get("skip") {
            None => 0,
            Some(raw) => raw
                .parse::<usize>()
                .map_err(|_| ApiError::unprocessable("skip must be a non-negative integer"))?,
        };
        Ok(Paging { limit, skip })
    }
}

/// The `ids` of a bulk delete: repeated or comma-separated, 1–100 (SPEC §10.1.4).
pub struct Ids(pub Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ids: Vec<String> = query_pairs(parts)
            .into_iter()
            .filter(|(k, _)| k == "ids" || k == "ids[]")
            .flat_map(|(_, v)| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        if ids.is_empty() || ids.len() > 100 {
            return Err(ApiError::unprocessable(
                "ids must contain between 1 and 100 ids",
            ));
        }
        Ok(Ids(ids))
    }
}

/// The items of a bulk admin body: a JSON array of `min..=max` items.
pub fn bulk_items(body: &Value, max: usize) -> Result<&Vec<Value>, ApiError> {
    let items = body
        .as_array()
        .ok_or_else(|| ApiError::bad_request("Request body must be a JSON array"))?;
    if items.is_empty() || items.len() > max {
        return Err(ApiError::unprocessable(format!(
            "Request body must contain between 1 and {max} items"
        )));
    }
    Ok(items)
}
