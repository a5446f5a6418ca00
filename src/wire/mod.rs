//! The Trophy JSON contract: request parsing and response shapes (camelCase, `null` vs
//! omitted exactly as SPEC Appendix A says). Nothing outside this module knows Trophy's
//! spelling; actors and rules speak domain types.

pub mod achievements;
pub mod admin;
pub mod events;
pub mod leaderboards;
pub mod points;
pub mod streaks;
pub mod users;
pub mod webhooks;
pub mod wrapped;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// `date-time` on the wire: ISO-8601 UTC with milliseconds and `Z`.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A request body problem that maps to 400 (wrong JSON types, missing required fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl ShapeError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The body as a JSON object, or a 400.
pub fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ShapeError> {
    value
        .as_object()
        .ok_or_else(|| ShapeError::new(format!("{what} must be a JSON object")))
}

/// The body as a JSON array, or a 400.
pub fn array<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<Value>, ShapeError> {
    value
        .as_array()
        .ok_or_else(|| ShapeError::new(format!("{what} must be a JSON array")))
}

/// An optional string field: absent or `null` → `None`.
pub fn opt_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, ShapeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ShapeError::new(format!("{field} must be a string"))),
    }
}

/// A `{string: string}` map field; non-string values are a 400 (SPEC §2.2.2 DECISION).
pub fn string_map(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<std::collections::BTreeMap<String, String>, ShapeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ShapeError::new(format!("{field}.{k} must be a string"))),
            })
            .collect(),
        Some(_) => Err(ShapeError::new(format!(
            "{field} must be an object of strings"
        ))),
    }
}
