//! `User`, `UpdatedUser` and `UpsertedUser`.

use std::collections::BTreeMap;

use kudos_actors::catalog::{AttributeKind, Catalog};
use kudos_actors::rules::profile::{Patch, UserProfile, UserWrite};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{string_map, ts, ShapeError};

/// `User` (SPEC Appendix A).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub tz: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_tokens: Option<Vec<String>>,
    pub subscribe_to_emails: bool,
    pub attributes: BTreeMap<String, String>,
    pub control: bool,
    pub created: String,
    pub updated: String,
    pub sign_up_date: Option<String>,
}

impl User {
    /// The wire user. Attributes whose definition was deleted are hidden (SPEC §0.9); their
    /// values stay stored.
    pub fn from_profile(u: &UserProfile, catalog: &Catalog) -> Self {
        let mut user = Self::from(u);
        user.attributes
            .retain(|key, _| catalog.attribute(AttributeKind::User, key).is_some());
        user
    }
}

impl From<&UserProfile> for User {
    fn from(u: &UserProfile) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            tz: u.tz.clone(),
            device_tokens: u.device_tokens.clone(),
            subscribe_to_emails: u.subscribe_to_emails,
            attributes: u.attributes.clone(),
            control: u.control,
            created: ts(u.created),
            updated: ts(u.updated),
            sign_up_date: u.sign_up_date.map(|d| d.format("%Y-%m-%d").to_string()),
        }
    }
}

fn patch_string(obj: &Map<String, Value>, field: &str) -> Result<Patch<String>, ShapeError> {
    match obj.get(field) {
        None => Ok(Patch::Keep),
        Some(Value::Null) => Ok(Patch::Clear),
        Some(Value::String(s)) => Ok(Patch::Set(s.clone())),
        Some(_) => Err(ShapeError::new(format!("{field} must be a string or null"))),
    }
}

/// Parses the fields of `UpdatedUser` from a JSON object (an `id` in it is ignored here).
pub fn parse_user_write(obj: &Map<String, Value>) -> Result<UserWrite, ShapeError> {
    let device_tokens = match obj.get("deviceTokens") {
        None => Patch::Keep,
        Some(Value::Null) => Patch::Clear,
        Some(Value::Array(items)) => Patch::Set(
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ShapeError::new("deviceTokens must be an array of strings"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => {
            return Err(ShapeError::new(
                "deviceTokens must be an array of strings or null",
            ))
        }
    };
    let subscribe_to_emails = match obj.get("subscribeToEmails") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ShapeError::new("subscribeToEmails must be a boolean")),
    };
    Ok(UserWrite {
        email: patch_string(obj, "email")?,
        name: patch_string(obj, "name")?,
        tz: patch_string(obj, "tz")?,
        device_tokens,
        subscribe_to_emails,
        attributes: string_map(obj, "attributes")?,
        sign_up_date: patch_string(obj, "signUpDate")?,
    })
}

/// Parses `UpsertedUser` (`UpdatedUser` + required string `id`).
pub fn parse_upserted_user(value: &Value, what: &str) -> Result<(String, UserWrite), ShapeError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ShapeError::new(format!("{what} must be an object")))?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(ShapeError::new(format!("{what}.id is required"))),
        Some(_) => return Err(ShapeError::new(format!("{what}.id must be a string"))),
    };
    Ok((id, parse_user_write(obj)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_null_and_set_are_distinct() {
        let body = json!({"email": null, "name": "Ann", "id": "ignored"});
        let w = parse_user_write(body.as_object().expect("object")).expect("valid");
        assert_eq!(w.email, Patch::Clear);
        assert_eq!(w.name, Patch::Set("Ann".into()));
        assert_eq!(w.tz, Patch::Keep);
    }

    #[test]
    fn wrong_types_are_shape_errors() {
        for body in [
            json!({"email": 3}),
            json!({"attributes": {"plan": 1}}),
            json!({"deviceTokens": [1]}),
            json!({"subscribeToEmails": "yes"}),
        ] {
            assert!(
                parse_user_write(body.as_object().expect("object")).is_err(),
                "{body}"
            );
        }
        assert!(parse_upserted_user(&json!({"name": "x"}), "user").is_err());
        assert!(parse_upserted_user(&json!({"id": 5}), "user").is_err());
    }
}
