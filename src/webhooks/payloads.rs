//! Webhook payloads (SPEC §8.3, Appendix A), built with the same wire shapes the API
//! answers with, and the example payloads of test sends.

use chrono::{DateTime, Utc};
use kudos_actors::achievements::Achievement;
use kudos_actors::catalog::Catalog;
use kudos_actors::rules::profile::UserProfile;
use serde_json::{json, Value};

use crate::wire::achievements::user_achievement;
use crate::wire::users::User;

/// `achievement.completed`: the full user and the completed achievement.
pub fn achievement_completed(
    user: &UserProfile,
    achievement: &Achievement,
    catalog: &Catalog,
    at: DateTime<Utc>,
) -> Value {
    json!({
        "type": "achievement.completed",
        "user": User::from_profile(user, catalog),
        "achievement": user_achievement(achievement, catalog, Some(at)),
    })
}

/// `streak.lost`: the user and the length lost.
pub fn streak_lost(user: &UserProfile, catalog: &Catalog, length: u32) -> Value {
    json!({
        "type": "streak.lost",
        "user": User::from_profile(user, catalog),
        "length": length,
    })
}

/// `streak.freeze_consumed`: freezes used and freezes left.
pub fn freeze_consumed(user: &UserProfile, catalog: &Catalog, consumed: u32, left: u32) -> Value {
    json!({
        "type": "streak.freeze_consumed",
        "user": User::from_profile(user, catalog),
        "consumed": consumed,
        "freezes": left,
    })
}

/// `streak.freeze_earned`: freezes earned and freezes after.
pub fn freeze_earned(user: &UserProfile, catalog: &Catalog, earned: u32, after: u32) -> Value {
    json!({
        "type": "streak.freeze_earned",
        "user": User::from_profile(user, catalog),
        "earned": earned,
        "freezes": after,
    })
}

/// The bytes sent for `payload` to endpoint `w` (the envelope of SPEC §11.3.7 around it
/// when the endpoint asks for one; `attempt` counts from 1).
pub fn body(
    w: &kudos_actors::catalog::webhooks::Webhook,
    event_id: &str,
    event_type: &str,
    payload: Value,
    created: DateTime<Utc>,
    attempt: u32,
) -> Vec<u8> {
    let value = match w.payload_format {
        kudos_actors::catalog::webhooks::PayloadFormat::Trophy => payload,
        kudos_actors::catalog::webhooks::PayloadFormat::Envelope => json!({
            "id": event_id,
            "type": event_type,
            "created": crate::wire::ts(created),
            "data": payload,
            "meta": {
                "webhook_url": w.url,
                "delivery_attempt": attempt,
                "api_version": "v1",
            },
        }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The user test sends are made for.
fn example_user(now: DateTime<Utc>) -> UserProfile {
    UserProfile {
        id: "example-user".into(),
        email: Some("user@example.com".into()),
        name: Some("Example User".into()),
        tz: Some("Europe/London".into()),
        device_tokens: None,
        subscribe_to_emails: true,
        attributes: Default::default(),
        control: false,
        created: now,
        updated: now,
        sign_up_date: None,
    }
}

/// The example payload of `event_type` for a test send, from this catalog (an achievement
/// of the org for `achievement.completed`). `Err`: why there is none.
pub fn example(event_type: &str, catalog: &Catalog, now: DateTime<Utc>) -> Result<Value, String> {
    let user = example_user(now);
    match event_type {
        "achievement.completed" => catalog
            .achievements()
            .next()
            .map(|a| achievement_completed(&user, a, catalog, now))
            .ok_or_else(|| {
                "A test achievement.completed needs an achievement: create one first".to_string()
            }),
        "streak.lost" => Ok(streak_lost(&user, catalog, 7)),
        "streak.freeze_consumed" => Ok(freeze_consumed(&user, catalog, 1, 2)),
        "streak.freeze_earned" => Ok(freeze_earned(&user, catalog, 1, 3)),
        other
            if kudos_actors::catalog::webhooks::EVENT_TYPES
                .iter()
                .any(|(t, _)| *t == other) =>
        {
            Err(format!("Test sends of {other} are not available yet"))
        }
        other => Err(format!("Unknown event type: {other}")),
    }
}
