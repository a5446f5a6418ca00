//! User write rules (SPEC §2.2): identify, create, update and inline upserts all go through
//! [`apply_write`], which validates the whole write first and only then builds the new
//! profile, so a rejected write changes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::catalog::{AttributeKind, Catalog};

/// A field in a write: left alone, cleared with explicit `null`, or set.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Clone> Patch<T> {
    fn resolve(&self, current: Option<&T>) -> Option<T> {
        match self {
            Patch::Keep => current.cloned(),
            Patch::Clear => None,
            Patch::Set(v) => Some(v.clone()),
        }
    }
}

/// The fields a caller may send for a user (`UpdatedUser`), already split into "keep",
/// "clear" and "set".
#[derive(Debug, Clone, Default)]
pub struct UserWrite {
    pub email: Patch<String>,
    pub name: Patch<String>,
    pub tz: Patch<String>,
    pub device_tokens: Patch<Vec<String>>,
    pub subscribe_to_emails: Option<bool>,
    pub attributes: BTreeMap<String, String>,
    pub sign_up_date: Patch<String>,
}

impl UserWrite {
    /// Whether the write sets nothing (an inline `user` object with only an `id`).
    pub fn is_empty(&self) -> bool {
        self.email == Patch::Keep
            && self.name == Patch::Keep
            && self.tz == Patch::Keep
            && self.device_tokens == Patch::Keep
            && self.subscribe_to_emails.is_none()
            && self.attributes.is_empty()
            && self.sign_up_date == Patch::Keep
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserProfile {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub tz: Option<String>,
    pub device_tokens: Option<Vec<String>>,
    pub subscribe_to_emails: bool,
    pub attributes: BTreeMap<String, String>,
    pub control: bool,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub sign_up_date: Option<NaiveDate>,
}

impl UserProfile {
    /// The user's time zone; UTC when unset (SPEC §0.5).
    pub fn time_zone(&self) -> Tz {
        self.tz
            .as_deref()
            .and_then(|tz| tz.parse::<Tz>().ok())
            .unwrap_or(Tz::UTC)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("Invalid attribute keys: {}. Please ensure all attribute keys match those set up in Kudos.", .0.join(", "))]
    InvalidAttributeKeys(Vec<String>),
    #[error("Invalid timezone: {0}")]
    InvalidTz(String),
    #[error("Invalid email address")]
    InvalidEmail,
    #[error("Cannot subscribe a user without an email address to emails")]
    SubscribeWithoutEmail,
    #[error("signUpDate must be a date (YYYY-MM-DD) or an ISO 8601 date-time")]
    InvalidSignUpDate,
    #[error("signUpDate cannot be in the future")]
    SignUpDateInFuture,
}

/// Basic `x@y` validation (SPEC §2.1 DECISION).
pub fn is_valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// `YYYY-MM-DD`, or an ISO date-time taken as its UTC calendar date (SPEC §2.6).
pub fn parse_sign_up_date(raw: &str) -> Option<NaiveDate> {
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Some(date);
    }
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|dt| dt.with_timezone(&Utc).date_naive())
}

/// Validates `write` against `existing` and returns the resulting profile.
/// `control` is used only when the user is created (the cohort is assigned once).
pub fn apply_write(
    existing: Option<&UserProfile>,
    id: &str,
    write: &UserWrite,
    catalog: &Catalog,
    now: DateTime<Utc>,
    control: bool,
) -> Result<UserProfile, ProfileError> {
    let unknown = catalog.unknown_attribute_keys(AttributeKind::User, write.attributes.keys());
    if !unknown.is_empty() {
        return Err(ProfileError::InvalidAttributeKeys(unknown));
    }
    let tz = write.tz.resolve(existing.and_then(|u| u.tz.as_ref()));
    let zone = match &tz {
        Some(name) => name
            .parse::<Tz>()
            .map_err(|_| ProfileError::InvalidTz(name.clone()))?,
        None => Tz::UTC,
    };
    if let Patch::Set(email) = &write.email {
        if !is_valid_email(email) {
            return Err(ProfileError::InvalidEmail);
        }
    }
    let subscribe = write
        .subscribe_to_emails
        .unwrap_or_else(|| existing.is_none_or(|u| u.subscribe_to_emails));
    // `subscribeToEmails: false` in this request discards the stored email and any email sent
    // with it (SPEC §2.2.3); an email sent later, without the flag, is stored.
    let email = if write.subscribe_to_emails == Some(false) {
        None
    } else {
        write.email.resolve(existing.and_then(|u| u.email.as_ref()))
    };
    if write.subscribe_to_emails == Some(true) && email.is_none() {
        return Err(ProfileError::SubscribeWithoutEmail);
    }
    let sign_up_date = match &write.sign_up_date {
        Patch::Keep => existing.and_then(|u| u.sign_up_date),
        Patch::Clear => None,
        Patch::Set(raw) => {
            let date = parse_sign_up_date(raw).ok_or(ProfileError::InvalidSignUpDate)?;
            if date > now.with_timezone(&zone).date_naive() {
                return Err(ProfileError::SignUpDateInFuture);
            }
            Some(date)
        }
    };
    let device_tokens = write
        .device_tokens
        .resolve(existing.and_then(|u| u.device_tokens.as_ref()))
        .map(|tokens| {
            let mut seen = std::collections::HashSet::new();
            tokens
                .into_iter()
                .filter(|t| seen.insert(t.clone()))
                .collect()
        });
    let mut attributes = existing.map(|u| u.attributes.clone()).unwrap_or_default();
    attributes.extend(write.attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(UserProfile {
        id: id.to_string(),
        email,
        name: write.name.resolve(existing.and_then(|u| u.name.as_ref())),
        tz,
        device_tokens,
        subscribe_to_emails: subscribe,
        attributes,
        control: existing.map_or(control, |u| u.control),
        created: existing.map_or(now, |u| u.created),
        updated: now,
        sign_up_date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::NewAttribute;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0)
            .single()
            .expect("valid")
    }

    fn catalog() -> Catalog {
        let mut cat = Catalog::default();
        let (_, issues) = cat.create_attributes(vec![
            Ok(NewAttribute {
                key: "plan".into(),
                name: "Plan".into(),
                kind: AttributeKind::User,
            }),
            Ok(NewAttribute {
                key: "source".into(),
                name: "Source".into(),
                kind: AttributeKind::Event,
            }),
        ]);
        assert!(issues.is_empty());
        cat
    }

    fn created(write: &UserWrite) -> Result<UserProfile, ProfileError> {
        apply_write(None, "u1", write, &catalog(), now(), false)
    }

    #[test]
    fn creation_defaults() {
        let user = created(&UserWrite::default()).expect("valid");
        assert!(user.subscribe_to_emails);
        assert_eq!((user.created, user.updated), (now(), now()));
        assert!(user.attributes.is_empty());
        assert_eq!(user.device_tokens, None);
    }

    #[test]
    fn only_provided_fields_change_and_null_clears() {
        let first = created(&UserWrite {
            email: Patch::Set("a@b.co".into()),
            name: Patch::Set("Ann".into()),
            tz: Patch::Set("Europe/London".into()),
            ..Default::default()
        })
        .expect("valid");
        let later = now() + chrono::Duration::minutes(5);
        let second = apply_write(
            Some(&first),
            "u1",
            &UserWrite {
                tz: Patch::Clear,
                ..Default::default()
            },
            &catalog(),
            later,
            true,
        )
        .expect("valid");
        assert_eq!(second.email.as_deref(), Some("a@b.co"));
        assert_eq!(second.name.as_deref(), Some("Ann"));
        assert_eq!(second.tz, None);
        assert_eq!(second.created, now());
        assert_eq!(second.updated, later);
        assert!(!second.control, "the cohort is assigned once, at creation");
    }

    #[test]
    fn attributes_merge_and_must_be_user_attributes() {
        let mut write = UserWrite::default();
        write.attributes.insert("plan".into(), "pro".into());
        let user = created(&write).expect("valid");
        assert_eq!(user.attributes.get("plan").map(String::as_str), Some("pro"));
        let mut bad = UserWrite::default();
        bad.attributes.insert("source".into(), "x".into());
        bad.attributes.insert("nope".into(), "x".into());
        let err = created(&bad).expect_err("event attribute on a user");
        assert_eq!(
            err,
            ProfileError::InvalidAttributeKeys(vec!["nope".into(), "source".into()])
        );
        assert!(err
            .to_string()
            .starts_with("Invalid attribute keys: nope, source."));
    }

    #[test]
    fn tz_email_and_subscription_rules() {
        let bad_tz = UserWrite {
            tz: Patch::Set("Mars/Olympus".into()),
            ..Default::default()
        };
        assert_eq!(
            created(&bad_tz),
            Err(ProfileError::InvalidTz("Mars/Olympus".into()))
        );
        let bad_email = UserWrite {
            email: Patch::Set("nope".into()),
            ..Default::default()
        };
        assert_eq!(created(&bad_email), Err(ProfileError::InvalidEmail));
        let subscribe = UserWrite {
            subscribe_to_emails: Some(true),
            ..Default::default()
        };
        assert_eq!(
            created(&subscribe),
            Err(ProfileError::SubscribeWithoutEmail)
        );
        let unsubscribe = UserWrite {
            email: Patch::Set("a@b.co".into()),
            subscribe_to_emails: Some(false),
            ..Default::default()
        };
        let user = created(&unsubscribe).expect("valid");
        assert_eq!(user.email, None);
        assert!(!user.subscribe_to_emails);
    }

    #[test]
    fn device_tokens_are_deduplicated() {
        let write = UserWrite {
            device_tokens: Patch::Set(vec!["a".into(), "b".into(), "a".into()]),
            ..Default::default()
        };
        let user = created(&write).expect("valid");
        assert_eq!(user.device_tokens, Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn sign_up_date_forms_and_future_check_in_user_tz() {
        assert_eq!(
            parse_sign_up_date("2025-01-02T23:30:00-05:00"),
            NaiveDate::from_ymd_opt(2025, 1, 3)
        );
        let tomorrow = UserWrite {
            sign_up_date: Patch::Set("2025-03-11".into()),
            ..Default::default()
        };
        assert_eq!(created(&tomorrow), Err(ProfileError::SignUpDateInFuture));
        // At 12:00 UTC it is already 2025-03-11 in Pacific/Kiritimati (UTC+14).
        let kiritimati = UserWrite {
            tz: Patch::Set("Pacific/Kiritimati".into()),
            ..tomorrow
        };
        assert!(created(&kiritimati).is_ok());
        let garbage = UserWrite {
            sign_up_date: Patch::Set("yesterday".into()),
            ..Default::default()
        };
        assert_eq!(created(&garbage), Err(ProfileError::InvalidSignUpDate));
    }
}
