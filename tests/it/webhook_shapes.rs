//! Every event type's payload, field by field, against SPEC Appendix A: the examples of
//! `/admin/v1/webhooks/event-types` come from the same renderers as real deliveries, so
//! with a catalog that has one of everything, all 18 are checked here: required fields
//! present (`f` and `f|null`), optional ones (`f?`) allowed, nothing else.

use serde_json::{json, Value};

use crate::support::TestServer;

/// Asserts that object `v` (named `what`) has every key of `required`, and no key outside
/// `required` and `optional`.
fn shape(what: &str, v: &Value, required: &[&str], optional: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"));
    for k in required {
        assert!(obj.contains_key(*k), "{what} lacks {k}: {v}");
    }
    for k in obj.keys() {
        assert!(
            required.contains(&k.as_str()) || optional.contains(&k.as_str()),
            "{what} has {k}, not in Appendix A: {v}"
        );
    }
}

const USER: &[&str] = &[
    "id",
    "email",
    "name",
    "tz",
    "subscribeToEmails",
    "attributes",
    "control",
    "created",
    "updated",
];
const USER_OPTIONAL: &[&str] = &["deviceTokens", "signUpDate"];
const ACHIEVEMENT: &[&str] = &[
    "id",
    "name",
    "trigger",
    "description",
    "badgeUrl",
    "userAttributes",
    "achievedAt",
];
const ACHIEVEMENT_OPTIONAL: &[&str] = &[
    "key",
    "streakLength",
    "achievementIds",
    "anniversaryYears",
    "metricId",
    "metricValue",
    "metricName",
    "eventAttributes",
    "eventAttribute",
];
const BASE_STREAK: &[&str] = &[
    "length",
    "frequency",
    "started",
    "periodStart",
    "periodEnd",
    "expires",
];
const BASE_STREAK_OPTIONAL: &[&str] = &[
    "freezes",
    "maxFreezes",
    "freezeAutoEarnInterval",
    "freezeAutoEarnAmount",
];
const POINTS: &[&str] = &["id", "key", "name", "description", "badgeUrl", "maxPoints"];
const LEVEL: &[&str] = &["id", "key", "name", "description", "badgeUrl", "points"];
const LEADERBOARD: &[&str] = &[
    "id",
    "name",
    "key",
    "rankBy",
    "breakdownAttribute",
    "breakdownAttributes",
    "description",
    "start",
    "end",
    "startTime",
    "endTime",
    "maxParticipants",
    "runUnit",
    "runInterval",
    "userAttributes",
];
const LEADERBOARD_OPTIONAL: &[&str] = &[
    "metricKey",
    "metricName",
    "pointsSystemKey",
    "pointsSystemName",
];

fn with(base: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(more).copied().collect()
}

fn user(what: &str, v: &Value) {
    shape(&format!("{what}.user"), &v["user"], USER, USER_OPTIONAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_has_the_fields_of_appendix_a() {
    let s = TestServer::start().await;
    let metric = s.create_metrics(&["words"]).await.remove(0);
    s.api_achievement("Beta", "beta").await;
    let r = s
        .post(
            "/admin/v1/points",
            json!([{"name": "XP", "key": "xp",
                    "levels": [{"name": "Bronze", "key": "bronze", "points": 0},
                               {"name": "Silver", "key": "silver", "points": 100}],
                    "triggers": [{"type": "metric", "points": 10, "metricId": metric, "metricThreshold": 1}],
                    "boosts": [{"name": "Double", "start": "2030-01-01", "end": "2030-01-07", "multiplier": 2}]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = s
        .post(
            "/admin/v1/leaderboards",
            json!([{"name": "Weekly", "key": "weekly", "rankBy": "metric", "metricId": metric,
                    "runUnit": "day", "runInterval": 7, "status": "active"}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let types = s.get("/admin/v1/webhooks/event-types").await.body;
    let list = types.as_array().expect("types");
    assert_eq!(list.len(), 18, "{types}");
    let mut checked = 0;
    for item in list {
        let t = item["type"].as_str().expect("type");
        let p = &item["example"];
        assert!(p.is_object(), "{t} has no example: {item}");
        assert_eq!(p["type"], t);
        match t {
            "achievement.completed" => {
                shape(t, p, &["type", "user", "achievement"], &[]);
                user(t, p);
                shape(
                    &format!("{t}.achievement"),
                    &p["achievement"],
                    ACHIEVEMENT,
                    ACHIEVEMENT_OPTIONAL,
                );
            }
            "streak.started" | "streak.extended" => {
                shape(t, p, &["type", "user", "streak"], &[]);
                user(t, p);
                shape(
                    &format!("{t}.streak"),
                    &p["streak"],
                    BASE_STREAK,
                    BASE_STREAK_OPTIONAL,
                );
            }
            "streak.lost" => {
                shape(t, p, &["type", "user", "length"], &[]);
                user(t, p);
            }
            "streak.freeze_consumed" => {
                shape(t, p, &["type", "user", "consumed", "freezes"], &[]);
                user(t, p);
            }
            "streak.freeze_earned" => {
                shape(t, p, &["type", "user", "earned", "freezes"], &[]);
                user(t, p);
            }
            "points.changed" => {
                shape(t, p, &["type", "user", "points"], &[]);
                user(t, p);
                shape(
                    &format!("{t}.points"),
                    &p["points"],
                    &with(POINTS, &["total", "added", "awards"]),
                    &["level"],
                );
                let award = &p["points"]["awards"][0];
                shape(
                    &format!("{t}.points.awards[0]"),
                    award,
                    &["id", "awarded", "date", "total", "trigger", "boosts"],
                    &[],
                );
                if !p["points"]["level"].is_null() {
                    shape(
                        &format!("{t}.points.level"),
                        &p["points"]["level"],
                        LEVEL,
                        &[],
                    );
                }
            }
            "points.level_changed" => {
                shape(
                    t,
                    p,
                    &["type", "user", "points", "previousLevel", "newLevel"],
                    &[],
                );
                user(t, p);
                shape(
                    &format!("{t}.points"),
                    &p["points"],
                    &with(POINTS, &["total"]),
                    &[],
                );
                shape(&format!("{t}.newLevel"), &p["newLevel"], LEVEL, &[]);
            }
            "points.boost_started" | "points.boost_finished" => {
                shape(t, p, &["type", "timestamp", "boost"], &[]);
                shape(
                    &format!("{t}.boost"),
                    &p["boost"],
                    &[
                        "id",
                        "name",
                        "status",
                        "userId",
                        "pointsSystemId",
                        "pointsSystemKey",
                        "pointsSystemName",
                        "start",
                        "end",
                        "multiplier",
                        "rounding",
                    ],
                    &[],
                );
            }
            "leaderboard.started" | "leaderboard.changed" | "leaderboard.finished" => {
                shape(t, p, &["type", "leaderboard"], &[]);
                shape(
                    &format!("{t}.leaderboard"),
                    &p["leaderboard"],
                    &with(LEADERBOARD, &["status", "rankings"]),
                    LEADERBOARD_OPTIONAL,
                );
                if let Some(first) = p["leaderboard"]["rankings"].get(0) {
                    shape(
                        &format!("{t}.rankings[0]"),
                        first,
                        &["userId", "userName", "rank", "value"],
                        &[],
                    );
                }
            }
            "leaderboard.rank_changed" => {
                shape(t, p, &["type", "user", "leaderboard"], &[]);
                user(t, p);
                shape(
                    &format!("{t}.leaderboard"),
                    &p["leaderboard"],
                    &with(
                        LEADERBOARD,
                        &["rank", "value", "previousRank", "previousValue"],
                    ),
                    LEADERBOARD_OPTIONAL,
                );
            }
            "emails.recap_due" => {
                shape(t, p, &["type", "timestamp", "user", "recap"], &[]);
                user(t, p);
                shape(
                    &format!("{t}.recap"),
                    &p["recap"],
                    &["periodStart", "periodEnd"],
                    &[],
                );
            }
            "emails.reactivation_due" => {
                shape(t, p, &["type", "timestamp", "user", "reactivation"], &[]);
                user(t, p);
                shape(
                    &format!("{t}.reactivation"),
                    &p["reactivation"],
                    &["messageNumber", "daysSinceLastActive"],
                    &[],
                );
            }
            "emails.streak_reminder_due" => {
                shape(t, p, &["type", "timestamp", "user", "streak"], &[]);
                user(t, p);
                shape(
                    &format!("{t}.streak"),
                    &p["streak"],
                    &with(BASE_STREAK, &["extended", "streakHistory", "pauses"]),
                    BASE_STREAK_OPTIONAL,
                );
            }
            "emails.achievement_due" => {
                shape(t, p, &["type", "timestamp", "user", "achievement"], &[]);
                user(t, p);
                shape(
                    &format!("{t}.achievement"),
                    &p["achievement"],
                    ACHIEVEMENT,
                    ACHIEVEMENT_OPTIONAL,
                );
            }
            other => panic!("unexpected event type {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 18);
}
