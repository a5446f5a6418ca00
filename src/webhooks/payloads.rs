//! Webhook payloads (SPEC §8.3, Appendix A), built with the same wire shapes the API
//! answers with, and the example payloads of test sends.

use chrono::{DateTime, Utc};
use kudos_actors::achievements::Achievement;
use kudos_actors::catalog::Catalog;
use kudos_actors::rules::profile::UserProfile;
use serde_json::{json, Value};

use kudos_actors::catalog::leaderboards::Leaderboard;
use kudos_actors::leaderboard::Standing;
use kudos_actors::rules::streak::{Frequency, StreakView};

use crate::wire::achievements::user_achievement;
use crate::wire::leaderboards::app_leaderboard;
use crate::wire::streaks::BaseStreak;
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

/// `streak.started` or `streak.extended`: the user and the streak as it is now.
pub fn streak_grew(
    event_type: &str,
    user: &UserProfile,
    catalog: &Catalog,
    streak: &StreakView,
) -> Value {
    json!({
        "type": event_type,
        "user": User::from_profile(user, catalog),
        "streak": BaseStreak::from(streak),
    })
}

/// `leaderboard.started`, `leaderboard.changed` or `leaderboard.finished`: the board
/// (configured dates, `status` when emitted) with the rankings of one group (SPEC §8.3.1).
pub fn leaderboard_rankings(
    event_type: &str,
    board: &Leaderboard,
    catalog: &Catalog,
    rankings: &[Standing],
    now: DateTime<Utc>,
) -> Value {
    let mut m = app_leaderboard(board, catalog, now);
    let rows: Vec<Value> = rankings
        .iter()
        .map(|r| {
            json!({
                "userId": r.user_id,
                "userName": r.user_name,
                "rank": r.rank,
                "value": r.value.floor() as i64,
            })
        })
        .collect();
    m.insert("rankings".into(), Value::Array(rows));
    json!({"type": event_type, "leaderboard": Value::Object(m)})
}

/// `leaderboard.rank_changed`: the user and `WebhookUserLeaderboardResponse`.
pub fn rank_changed(
    user: &UserProfile,
    board: &Leaderboard,
    catalog: &Catalog,
    (rank, value): (Option<u32>, Option<f64>),
    (previous_rank, previous_value): (Option<u32>, Option<f64>),
    now: DateTime<Utc>,
) -> Value {
    let mut m = app_leaderboard(board, catalog, now);
    m.remove("status");
    m.insert("rank".into(), json!(rank));
    m.insert("value".into(), json!(value.map(|v| v.floor() as i64)));
    m.insert("previousRank".into(), json!(previous_rank));
    m.insert(
        "previousValue".into(),
        json!(previous_value.map(|v| v.floor() as i64)),
    );
    json!({
        "type": "leaderboard.rank_changed",
        "user": User::from_profile(user, catalog),
        "leaderboard": Value::Object(m),
    })
}

/// `points.boost_started` / `points.boost_finished`: `PointsBoostWebhookPayload` (SPEC
/// §8.3.2) with the emission instant.
pub fn boost(
    event_type: &str,
    b: &kudos_actors::catalog::points::PointsBoost,
    system: &kudos_actors::catalog::points::PointsSystem,
    at: DateTime<Utc>,
) -> Value {
    let status = if event_type == "points.boost_started" {
        "active"
    } else {
        "finished"
    };
    json!({
        "type": event_type,
        "timestamp": crate::wire::ts(at),
        "boost": {
            "id": b.id.to_string(),
            "name": b.name,
            "status": status,
            "userId": b.user_id,
            "pointsSystemId": system.id.to_string(),
            "pointsSystemKey": system.key,
            "pointsSystemName": system.name,
            "start": b.start.to_string(),
            "end": b.end.map(|e| e.to_string()),
            "multiplier": b.multiplier,
            "rounding": b.rounding.as_str(),
        },
    })
}

/// `points.level_changed`: the system with the user's total, and the levels before and
/// after.
pub fn level_changed(
    user: &UserProfile,
    catalog: &Catalog,
    system: &kudos_actors::catalog::points::PointsSystem,
    total: i64,
    previous: Option<&kudos_actors::catalog::points::PointsLevel>,
    new: Option<&kudos_actors::catalog::points::PointsLevel>,
) -> Value {
    let mut points = crate::wire::points::points_response(system);
    points.insert("total".into(), json!(total));
    json!({
        "type": "points.level_changed",
        "user": User::from_profile(user, catalog),
        "points": Value::Object(points),
        "previousLevel": previous.map(crate::wire::points::app_level),
        "newLevel": new.map(crate::wire::points::app_level),
    })
}

/// `emails.recap_due`: the complete period the recap is for (SPEC §8.5.1).
pub fn recap_due(
    user: &UserProfile,
    catalog: &Catalog,
    (start, end): (chrono::NaiveDate, chrono::NaiveDate),
    at: DateTime<Utc>,
) -> Value {
    json!({
        "type": "emails.recap_due",
        "timestamp": crate::wire::ts(at),
        "user": User::from_profile(user, catalog),
        "recap": {"periodStart": start.to_string(), "periodEnd": end.to_string()},
    })
}

/// `emails.reactivation_due`: which message of the sequence, after how many quiet days
/// (SPEC §8.5.2).
pub fn reactivation_due(
    user: &UserProfile,
    catalog: &Catalog,
    number: u8,
    days: u32,
    at: DateTime<Utc>,
) -> Value {
    json!({
        "type": "emails.reactivation_due",
        "timestamp": crate::wire::ts(at),
        "user": User::from_profile(user, catalog),
        "reactivation": {"messageNumber": number, "daysSinceLastActive": days},
    })
}

/// `emails.streak_reminder_due`: the streak as `StreakResponse` with 7 periods of history
/// (SPEC §8.5.3).
pub fn streak_reminder_due(
    user: &UserProfile,
    catalog: &Catalog,
    streak: &crate::wire::streaks::StreakResponse,
    at: DateTime<Utc>,
) -> Value {
    json!({
        "type": "emails.streak_reminder_due",
        "timestamp": crate::wire::ts(at),
        "user": User::from_profile(user, catalog),
        "streak": streak,
    })
}

/// `emails.achievement_due`: the completed achievement (SPEC §8.5.4).
pub fn achievement_due(
    user: &UserProfile,
    achievement: &Achievement,
    catalog: &Catalog,
    completed: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Value {
    json!({
        "type": "emails.achievement_due",
        "timestamp": crate::wire::ts(at),
        "user": User::from_profile(user, catalog),
        "achievement": user_achievement(achievement, catalog, Some(completed)),
    })
}

/// What a `points.changed` delivery reports: the awards since the last delivery (the
/// latest of them, when many were held), what they added, the total after them, and the
/// level when it changed.
pub struct PointsChange<'a> {
    pub awards: &'a [kudos_actors::user::Award],
    pub added: i64,
    pub total: i64,
    pub level: Option<Option<&'a kudos_actors::catalog::points::PointsLevel>>,
}

/// `points.changed`: `MetricEventPointsResponse` of the awards since the last delivery
/// (`level` only when it changed).
pub fn points_changed(
    user: &UserProfile,
    catalog: &Catalog,
    system: &kudos_actors::catalog::points::PointsSystem,
    change: PointsChange<'_>,
    today: chrono::NaiveDate,
) -> Value {
    let mut points = crate::wire::points::points_response(system);
    points.insert("total".into(), json!(change.total));
    points.insert("added".into(), json!(change.added));
    points.insert(
        "awards".into(),
        Value::Array(
            change
                .awards
                .iter()
                .map(|a| crate::wire::points::app_award(a, catalog, today))
                .collect(),
        ),
    );
    if let Some(level) = change.level {
        points.insert(
            "level".into(),
            json!(level.map(crate::wire::points::app_level)),
        );
    }
    json!({
        "type": "points.changed",
        "user": User::from_profile(user, catalog),
        "points": Value::Object(points),
    })
}

/// The bytes sent for `payload` (its JSON bytes, as stored) to endpoint `w`: the payload
/// itself, byte for byte, or the envelope of SPEC §11.3.7 around it when the endpoint asks
/// for one (`attempt` counts from 1).
pub fn body(
    w: &kudos_actors::catalog::webhooks::Webhook,
    event_id: &str,
    event_type: &str,
    payload: &[u8],
    created: DateTime<Utc>,
    attempt: u32,
) -> Vec<u8> {
    match w.payload_format {
        kudos_actors::catalog::webhooks::PayloadFormat::Trophy => payload.to_vec(),
        kudos_actors::catalog::webhooks::PayloadFormat::Envelope => {
            let data: Value = serde_json::from_slice(payload).unwrap_or_default();
            serde_json::to_vec(&json!({
                "id": event_id,
                "type": event_type,
                "created": crate::wire::ts(created),
                "data": data,
                "meta": {
                    "webhook_url": w.url,
                    "delivery_attempt": attempt,
                    "api_version": "v1",
                },
            }))
            .unwrap_or_default()
        }
    }
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
        "streak.started" | "streak.extended" => {
            let today = now.date_naive();
            let length = if event_type == "streak.started" { 1 } else { 8 };
            let streak = StreakView {
                length,
                frequency: Frequency::Daily,
                started: today.checked_sub_days(chrono::Days::new(u64::from(length) - 1)),
                period_start: Some(today),
                period_end: Some(today),
                expires: today.checked_add_days(chrono::Days::new(1)),
                extended: Some(now),
                freezes: None,
                max_freezes: None,
                auto_earn: None,
            };
            Ok(streak_grew(event_type, &user, catalog, &streak))
        }
        "points.changed"
        | "points.level_changed"
        | "points.boost_started"
        | "points.boost_finished" => {
            let system = catalog.points_systems().next().ok_or_else(|| {
                format!("A test {event_type} needs a points system: create one first")
            })?;
            let levels = catalog.points_levels(system.id);
            match event_type {
                "points.changed" => {
                    let trigger = catalog.points_triggers(system.id).next().ok_or_else(|| {
                        "A test points.changed needs a trigger on the system: create one first"
                            .to_string()
                    })?;
                    let award = kudos_actors::user::Award {
                        id: uuid::Uuid::new_v4(),
                        trigger_id: trigger.id,
                        awarded: trigger.points,
                        total: 120 + trigger.points,
                        at: now,
                        boosts: Vec::new(),
                    };
                    Ok(points_changed(
                        &user,
                        catalog,
                        system,
                        PointsChange {
                            added: award.awarded,
                            total: award.total,
                            awards: std::slice::from_ref(&award),
                            level: levels.first().map(|l| Some(*l)),
                        },
                        now.date_naive(),
                    ))
                }
                "points.level_changed" => Ok(level_changed(
                    &user,
                    catalog,
                    system,
                    levels.get(1).map_or(150, |l| l.points),
                    levels.first().copied(),
                    levels.get(1).or(levels.first()).copied(),
                )),
                _ => {
                    let b = catalog.points_boosts(system.id).next().ok_or_else(|| {
                        format!("A test {event_type} needs a boost on the system: create one first")
                    })?;
                    Ok(boost(event_type, b, system, now))
                }
            }
        }
        "leaderboard.started"
        | "leaderboard.changed"
        | "leaderboard.finished"
        | "leaderboard.rank_changed" => {
            let board = catalog.leaderboards().next().ok_or_else(|| {
                format!("A test {event_type} needs a leaderboard: create one first")
            })?;
            let top = |n: u32| -> Vec<Standing> {
                (1..=n)
                    .map(|rank| Standing {
                        user_id: format!("example-user-{rank}"),
                        user_name: Some(format!("Example User {rank}")),
                        rank,
                        value: f64::from(100 - rank * 7),
                    })
                    .collect()
            };
            Ok(match event_type {
                "leaderboard.started" => leaderboard_rankings(event_type, board, catalog, &[], now),
                "leaderboard.rank_changed" => rank_changed(
                    &user,
                    board,
                    catalog,
                    (Some(2), Some(86.0)),
                    (Some(3), Some(79.0)),
                    now,
                ),
                _ => leaderboard_rankings(event_type, board, catalog, &top(10), now),
            })
        }
        "emails.recap_due" => {
            let end = now.date_naive() - chrono::Days::new(1);
            Ok(recap_due(
                &user,
                catalog,
                (end - chrono::Days::new(6), end),
                now,
            ))
        }
        "emails.reactivation_due" => Ok(reactivation_due(&user, catalog, 1, 3, now)),
        "emails.streak_reminder_due" => {
            let today = now.date_naive();
            let view = StreakView {
                length: 4,
                frequency: Frequency::Daily,
                started: today.checked_sub_days(chrono::Days::new(4)),
                period_start: Some(today),
                period_end: Some(today),
                expires: Some(today),
                extended: Some(now - chrono::Duration::days(1)),
                freezes: None,
                max_freezes: None,
                auto_earn: None,
            };
            let streak = crate::wire::streaks::StreakResponse {
                base: BaseStreak::from(&view),
                extended: view.extended.map(crate::wire::ts),
                streak_history: Vec::new(),
                pauses: Vec::new(),
            };
            Ok(streak_reminder_due(&user, catalog, &streak, now))
        }
        "emails.achievement_due" => catalog
            .achievements()
            .next()
            .map(|a| achievement_due(&user, a, catalog, now, now))
            .ok_or_else(|| {
                "A test emails.achievement_due needs an achievement: create one first".to_string()
            }),
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
