//! Streaks through HTTP with the test clock (SPEC §5): settings, extension, a streak lost
//! overnight without any new event, freezes, pauses, restore/reset, bulk reads, preferences,
//! and a restart in the middle of a streak.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_error, TestServer};

async fn setup(freezes: Value) -> TestServer {
    let s = TestServer::start_with_test_clock().await;
    s.create_metrics(&["lessons", "minutes"]).await;
    let r = s
        .patch(
            "/admin/v1/streaks/settings",
            json!({"metrics": [{"key": "lessons", "threshold": 1}], "freezes": freezes}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    s
}

async fn clock(s: &TestServer, now: &str) {
    let r = s.post("/admin/v1/test-clock", json!({"now": now})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

async fn lesson(s: &TestServer, user: &str) -> Value {
    let r = s
        .post(
            "/v1/metrics/lessons/event",
            json!({"user": {"id": user, "tz": "Europe/London"}, "value": 1}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_defaults_and_validation() {
    let s = TestServer::start_with_test_clock().await;
    s.create_metrics(&["lessons"]).await;
    let r = s.get("/admin/v1/streaks/settings").await;
    assert_eq!(
        r.body,
        json!({"frequency": "daily", "evaluationMode": "OR", "customizationEnabled": false, "daysOff": [], "metrics": [], "freezes": null})
    );
    for bad in [
        json!({"metrics": [{"key": "nope", "threshold": 1}]}),
        json!({"metrics": [{"key": "lessons", "threshold": 0}]}),
        json!({"metrics": [{"key": "lessons", "threshold": 1.5}]}),
        json!({"frequency": "weekly", "daysOff": [0]}),
        json!({"daysOff": [7]}),
        json!({"frequency": "hourly"}),
        json!({"evaluationMode": "XOR"}),
        json!({"freezes": {"startCount": 1, "maxCount": 101}}),
        json!({"freezes": {"startCount": 3, "maxCount": 2}}),
        json!({"freezes": {"startCount": 1, "maxCount": 2, "autoEarnInterval": 7}}),
    ] {
        assert_error(&s.patch("/admin/v1/streaks/settings", bad).await, 422);
    }
    assert_error(
        &s.patch("/admin/v1/streaks/settings", json!({"daysOff": "x"}))
            .await,
        400,
    );
    let r = s
        .patch(
            "/admin/v1/streaks/settings",
            json!({"evaluationMode": "ALL", "daysOff": [6, 0, 0], "metrics": [{"key": "lessons", "threshold": 2}],
                   "freezes": {"startCount": 1, "maxCount": 3, "autoEarnInterval": 7, "autoEarnAmount": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["evaluationMode"], "AND");
    assert_eq!(r.body["daysOff"], json!([0, 6]));
    assert_eq!(
        r.body["metrics"],
        json!([{"key": "lessons", "threshold": 2}])
    );
    assert_eq!(r.body["freezes"]["autoEarnInterval"], 7);
    // Switching away from daily clears daysOff; freezes: null disables them. Durable.
    s.patch(
        "/admin/v1/streaks/settings",
        json!({"frequency": "weekly", "freezes": null}),
    )
    .await;
    let s = s.restart().await;
    let r = s.get("/admin/v1/streaks/settings").await;
    assert_eq!(
        (
            r.body["frequency"].clone(),
            r.body["daysOff"].clone(),
            r.body["freezes"].clone()
        ),
        (json!("weekly"), json!([]), json!(null))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_a_streak_extends_and_is_lost_overnight_without_an_event() {
    let s = setup(json!(null)).await;
    clock(&s, "2030-04-02T09:00:00Z").await;
    let first = lesson(&s, "ann").await;
    assert_eq!(
        first["currentStreak"],
        json!({"length": 1, "frequency": "daily", "started": "2030-04-02", "periodStart": "2030-04-02",
               "periodEnd": "2030-04-02", "expires": "2030-04-03", "extended": true})
    );
    let again = lesson(&s, "ann").await;
    assert_eq!(again["currentStreak"]["extended"], false);
    clock(&s, "2030-04-03T08:00:00Z").await;
    let second = lesson(&s, "ann").await;
    assert_eq!(
        (
            second["currentStreak"]["length"].clone(),
            second["currentStreak"]["expires"].clone()
        ),
        (json!(2), json!("2030-04-04"))
    );

    // No activity on 04-04; at 04-05 00:00 London (23:00Z) the streak is lost, with no event.
    clock(&s, "2030-04-04T22:59:00Z").await;
    assert_eq!(s.get("/v1/users/ann/streak").await.body["length"], 2);
    clock(&s, "2030-04-04T23:00:00Z").await;
    let streak = s.get("/v1/users/ann/streak?historyPeriods=4").await;
    assert_eq!(streak.status, 200, "{:?}", streak.body);
    assert_eq!(streak.body["length"], 0);
    assert_eq!(streak.body["started"], json!(null));
    assert_eq!(streak.body["extended"], json!(null));
    let lengths: Vec<_> = streak.body["streakHistory"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| (h["periodStart"].clone(), h["length"].clone()))
        .collect();
    assert_eq!(
        lengths,
        vec![
            (json!("2030-04-02"), json!(1)),
            (json!("2030-04-03"), json!(2)),
            (json!("2030-04-04"), json!(0)),
            (json!("2030-04-05"), json!(0)),
        ]
    );
    assert!(
        streak.body["streakHistory"][0].get("usedFreeze").is_none(),
        "only while freezes are enabled"
    );
    // The loss was evaluated by the scheduler and journaled: it survives a restart.
    let s = s.restart().await;
    assert_eq!(s.get("/v1/users/ann/streak").await.body["length"], 0);
    clock(&s, "2030-04-05T10:00:00Z").await;
    let restart = lesson(&s, "ann").await;
    assert_eq!(
        (
            restart["currentStreak"]["length"].clone(),
            restart["currentStreak"]["started"].clone()
        ),
        (json!(1), json!("2030-04-05"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezes_are_granted_consumed_and_shown() {
    let s = setup(json!({"startCount": 1, "maxCount": 2})).await;
    clock(&s, "2030-04-01T10:00:00Z").await;
    let first = lesson(&s, "bo").await;
    assert_eq!(
        (
            first["currentStreak"]["freezes"].clone(),
            first["currentStreak"]["maxFreezes"].clone()
        ),
        (json!(1), json!(2))
    );
    assert!(first["currentStreak"]
        .get("freezeAutoEarnInterval")
        .is_none());
    let r = s
        .post(
            "/admin/v1/streaks/freezes",
            json!({"freezes": [{"userId": "bo"}, {"userId": "bo"}, {"userId": "ghost"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let issues = r.body["issues"].as_array().expect("issues");
    assert_eq!(issues.len(), 2);
    assert_eq!(issues[0]["message"], "Would exceed maximum freeze limit");
    assert_eq!(
        (issues[0]["userId"].clone(), issues[0]["severity"].clone()),
        (json!("bo"), json!("warning"))
    );
    assert_eq!(
        (issues[1]["userId"].clone(), issues[1]["severity"].clone()),
        (json!("ghost"), json!("error"))
    );
    assert_eq!(issues[1]["message"], "User does not exist");
    // Two missed days: both bridged by freezes, the streak survives.
    clock(&s, "2030-04-04T10:00:00Z").await;
    let streak = s.get("/v1/users/bo/streak?historyPeriods=4").await;
    assert_eq!(
        (
            streak.body["length"].clone(),
            streak.body["freezes"].clone()
        ),
        (json!(1), json!(0))
    );
    assert_eq!(streak.body["streakHistory"][1]["usedFreeze"], true);
    assert_eq!(streak.body["streakHistory"][2]["usedFreeze"], true);
    let next = lesson(&s, "bo").await;
    assert_eq!(next["currentStreak"]["length"], 2);
    // Freezes disabled: 422.
    s.patch("/admin/v1/streaks/settings", json!({"freezes": null}))
        .await;
    assert_error(
        &s.post(
            "/admin/v1/streaks/freezes",
            json!({"freezes": [{"userId": "bo"}]}),
        )
        .await,
        422,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_bridge_missed_days_and_can_be_deleted() {
    let s = setup(json!(null)).await;
    clock(&s, "2030-08-19T10:00:00Z").await;
    lesson(&s, "cy").await;
    let r = s
        .post(
            "/admin/v1/streaks/pauses",
            json!({"pauses": [
                {"userId": "cy", "start": "2030-08-20", "end": "2030-08-27"},
                {"userId": "cy", "start": "2030-08-25", "end": "2030-08-30"},
                {"userId": "cy", "start": "2030-08-01", "end": "2030-08-02"},
                {"userId": "ghost", "start": "2030-08-20", "end": "2030-08-21"},
                {"userId": "cy", "start": "2030-09-02", "end": "2030-09-01"},
            ]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["created"].as_array().map(Vec::len), Some(1));
    let pause = r.body["created"][0].clone();
    assert_eq!(
        (pause["userId"].clone(), pause["status"].clone()),
        (json!("cy"), json!("active"))
    );
    assert_eq!(r.body["issues"].as_array().map(Vec::len), Some(4));
    let streak = s.get("/v1/users/cy/streak").await;
    assert_eq!(
        streak.body["pauses"],
        json!([{"id": pause["id"], "start": "2030-08-20", "end": "2030-08-27"}])
    );
    clock(&s, "2030-08-28T10:00:00Z").await;
    let streak = s.get("/v1/users/cy/streak?historyPeriods=3").await;
    assert_eq!(streak.body["length"], 1);
    assert_eq!(streak.body["streakHistory"][0]["usedPause"], true);
    assert_eq!(lesson(&s, "cy").await["currentStreak"]["length"], 2);
    let id = pause["id"].as_str().expect("id");
    let del = s
        .delete(&format!(
            "/admin/v1/streaks/pauses?ids={id},{}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(del.status, 200, "{:?}", del.body);
    assert_eq!(del.body["deleted"], json!([{"id": id}]));
    assert_eq!(
        del.body["issues"][0]["message"],
        "Streak pause not found by ID"
    );
    assert_eq!(s.get("/v1/users/cy/streak").await.body["pauses"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_reset_and_bulk_streaks() {
    let s = setup(json!(null)).await;
    for (day, users) in [
        ("2030-04-01", vec!["a", "b"]),
        ("2030-04-02", vec!["a", "b"]),
        ("2030-04-03", vec!["a"]),
    ] {
        clock(&s, &format!("{day}T10:00:00Z")).await;
        for u in users {
            lesson(&s, u).await;
        }
    }
    let bulk = s.get("/v1/streaks?userIds=b,a&userIds=nobody").await;
    assert_eq!(
        bulk.body,
        json!([
            {"userId": "a", "streakLength": 3, "extended": "2030-04-03T10:00:00.000Z"},
            {"userId": "b", "streakLength": 2, "extended": "2030-04-02T10:00:00.000Z"},
        ])
    );
    assert_error(&s.get("/v1/streaks").await, 422);
    let many = (0..101)
        .map(|i| format!("u{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_error(&s.get(&format!("/v1/streaks?userIds={many}")).await, 422);

    clock(&s, "2030-04-06T10:00:00Z").await;
    assert_eq!(s.get("/v1/users/a/streak").await.body["length"], 0);
    let r = s
        .post(
            "/admin/v1/streaks/restore",
            json!({"users": [{"id": "a"}, {"id": "ghost"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["restoredUsers"], json!(["a"]));
    assert_eq!(r.body["issues"][0]["message"], "User does not exist");
    let streak = s.get("/v1/users/a/streak").await;
    assert_eq!(
        (
            streak.body["length"].clone(),
            streak.body["started"].clone()
        ),
        (json!(3), json!("2030-04-03"))
    );
    let again = s
        .post("/admin/v1/streaks/restore", json!({"users": [{"id": "a"}]}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        (
            again.body["issues"][0]["message"].clone(),
            again.body["issues"][0]["severity"].clone()
        ),
        (json!("No streak to restore"), json!("warning"))
    );

    let r = s
        .post("/admin/v1/streaks/reset", json!({"users": [{"id": "a"}]}))
        .await;
    assert_eq!(
        (r.status, r.body["resetUsers"].clone()),
        (201, json!(["a"]))
    );
    let streak = s.get("/v1/users/a/streak?historyPeriods=1").await;
    assert_eq!(streak.body["length"], 0);
    assert!(streak.body["streakHistory"][0]["resetAt"]
        .as_str()
        .is_some());
    assert_error(
        &s.post("/admin/v1/streaks/reset", json!({"users": []}))
            .await,
        422,
    );
    assert_error(
        &s.post("/admin/v1/streaks/reset", json!({"users": "a"}))
            .await,
        400,
    );
    assert_error(&s.get("/v1/users/ghost/streak").await, 404);
    assert_error(&s.get("/v1/users/a/streak?historyPeriods=0").await, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_and_customization() {
    let s = setup(json!(null)).await;
    clock(&s, "2030-04-01T10:00:00Z").await;
    lesson(&s, "dee").await;
    assert_eq!(
        s.get("/v1/users/dee/preferences").await.body,
        json!({"notifications": {}})
    );
    let r = s
        .patch(
            "/v1/users/dee/preferences",
            json!({"notifications": {"streak_reminder": ["push", "push", "email"], "recap": []}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"notifications": {"recap": [], "streak_reminder": ["push", "email"]}})
    );
    assert_error(
        &s.patch(
            "/v1/users/dee/preferences",
            json!({"notifications": {"recap": ["sms"]}}),
        )
        .await,
        422,
    );
    assert_error(
        &s.patch(
            "/v1/users/dee/preferences",
            json!({"notifications": {"recap": "email"}}),
        )
        .await,
        400,
    );
    let custom = json!({"streak": {"metrics": [{"key": "minutes", "threshold": 10}]}});
    let r = s.patch("/v1/users/dee/preferences", custom.clone()).await;
    assert_error(&r, 403);
    assert_eq!(
        r.body["error"],
        "Streak customization is not enabled for this organisation"
    );
    s.patch(
        "/admin/v1/streaks/settings",
        json!({"customizationEnabled": true}),
    )
    .await;
    let r = s.patch("/v1/users/dee/preferences", custom).await;
    assert_eq!(
        r.body["streak"],
        json!({"metrics": [{"key": "minutes", "threshold": 10.0}]})
    );
    assert_error(
        &s.patch(
            "/v1/users/dee/preferences",
            json!({"streak": {"metrics": [{"key": "nope", "threshold": 1}]}}),
        )
        .await,
        422,
    );
    // The user's own metric now drives the streak.
    clock(&s, "2030-04-02T10:00:00Z").await;
    assert_eq!(lesson(&s, "dee").await["currentStreak"]["extended"], false);
    let r = s
        .call(
            Method::POST,
            "/v1/metrics/minutes/event",
            Some(json!({"user": {"id": "dee"}, "value": 10})),
            &[],
        )
        .await;
    assert_eq!(r.body["currentStreak"]["length"], 2);
    // Disabling streaks is always allowed and zeroes the streak.
    let r = s
        .patch(
            "/v1/users/dee/preferences",
            json!({"streak": {"enabled": false}}),
        )
        .await;
    assert_eq!(r.body["streak"]["enabled"], false);
    assert_eq!(s.get("/v1/users/dee/streak").await.body["length"], 0);
    assert_error(&s.get("/v1/users/ghost/preferences").await, 404);
    assert_error(
        &s.patch("/v1/users/ghost/preferences", json!({})).await,
        404,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weekly_streak_and_a_restart_mid_streak() {
    let s = setup(json!(null)).await;
    s.patch("/admin/v1/streaks/settings", json!({"frequency": "weekly"}))
        .await;
    clock(&s, "2030-04-03T10:00:00Z").await; // Wednesday
    let first = lesson(&s, "eve").await;
    assert_eq!(
        (
            first["currentStreak"]["periodStart"].clone(),
            first["currentStreak"]["periodEnd"].clone(),
            first["currentStreak"]["expires"].clone()
        ),
        (
            json!("2030-03-31"),
            json!("2030-04-06"),
            json!("2030-04-13")
        )
    );
    let s = s.restart().await;
    clock(&s, "2030-04-11T10:00:00Z").await;
    let second = lesson(&s, "eve").await;
    assert_eq!(
        (
            second["currentStreak"]["length"].clone(),
            second["currentStreak"]["frequency"].clone()
        ),
        (json!(2), json!("weekly"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frequency_switch_recomputes_from_activity() {
    let s = setup(json!(null)).await;
    for day in ["2030-04-01", "2030-04-02", "2030-04-03", "2030-04-08"] {
        clock(&s, &format!("{day}T10:00:00Z")).await;
        lesson(&s, "fay").await;
    }
    assert_eq!(
        s.get("/v1/users/fay/streak").await.body["length"],
        1,
        "daily: broken on 04-04"
    );
    s.patch("/admin/v1/streaks/settings", json!({"frequency": "weekly"}))
        .await;
    // Weeks of 03-31 and 04-07 both had activity: a weekly streak of 2, read before any event.
    let streak = s.get("/v1/users/fay/streak").await;
    assert_eq!(
        (
            streak.body["length"].clone(),
            streak.body["frequency"].clone()
        ),
        (json!(2), json!("weekly"))
    );
    clock(&s, "2030-04-15T10:00:00Z").await;
    assert_eq!(lesson(&s, "fay").await["currentStreak"]["length"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_freeze_maximum_keeps_counts_and_grants_warn() {
    let s = setup(json!({"startCount": 3, "maxCount": 3})).await;
    clock(&s, "2030-04-01T10:00:00Z").await;
    lesson(&s, "gil").await;
    s.patch(
        "/admin/v1/streaks/settings",
        json!({"freezes": {"startCount": 1, "maxCount": 1}}),
    )
    .await;
    let r = s
        .post(
            "/admin/v1/streaks/freezes",
            json!({"freezes": [{"userId": "gil"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["issues"][0]["severity"], "warning");
    assert_eq!(s.get("/v1/users/gil/streak").await.body["freezes"], 3);
}
