//! "Due" notifications through HTTP (SPEC §8.5): `emails.achievement_due`,
//! `emails.reactivation_due`, `emails.recap_due` and `emails.streak_reminder_due` come at
//! their local hours on the test clock, as webhooks, and not for a user whose preference
//! for the type excludes email.

use serde_json::{json, Value};

use crate::support::TestServer;
use crate::webhooks::{received, Receiver};

/// The deliveries queued for endpoint `hook` as (type, user id, payload), oldest first.
async fn queued(s: &TestServer, hook: &str) -> Vec<(String, String, Value)> {
    s.settled().await;
    let list = s
        .get(&format!("/admin/v1/webhooks/{hook}/deliveries?limit=100"))
        .await
        .body;
    let mut out: Vec<(String, String, Value)> = list
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            (
                d["type"].as_str().expect("type").to_string(),
                d["payload"]["user"]["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                d["payload"].clone(),
            )
        })
        .collect();
    out.reverse();
    out
}

/// One event of `value` on `metric` for `user`, who lives in `tz`.
async fn event_in(s: &TestServer, metric: &str, user: &str, tz: &str, value: f64) {
    let r = s
        .post(
            &format!("/v1/metrics/{metric}/event"),
            json!({"user": {"id": user, "tz": tz}, "value": value}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

async fn clock(s: &TestServer, now: &str) {
    s.set_clock(now).await;
    s.jobs_done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn achievement_reactivation_and_recap_notices_come_at_local_hours() {
    let s = TestServer::start_with_test_clock().await;
    // Monday 2027-05-03, 10:00 in Tokyo.
    clock(&s, "2027-05-03T01:00:00Z").await;
    s.create_metrics(&["words"]).await;
    s.api_achievement("Beta tester", "beta").await;
    for user in ["ada", "bob"] {
        let r = s
            .post(
                "/v1/metrics/words/event",
                json!({"user": {"id": user, "tz": "Asia/Tokyo"}, "value": 5}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    // Bob wants reactivation messages by push only: no webhook for them.
    let r = s
        .patch(
            "/v1/users/bob/preferences",
            json!({"notifications": {"reactivation": ["push"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = s
        .post(
            "/v1/achievements/beta/complete",
            json!({"user": {"id": "ada"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let achieved_at = r.body["achievement"]["achievedAt"].clone();

    // The endpoint comes after the users: creating it has every user file its notices.
    let receiver = Receiver::start().await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": receiver.url,
                    "events": ["emails.achievement_due", "emails.reactivation_due", "emails.recap_due"]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let hook = r.body["created"][0]["id"].as_str().expect("id").to_string();
    s.jobs_done().await;

    // Completed at 10:00 local: due at 17:00 local (08:00 UTC), not before.
    clock(&s, "2027-05-03T07:59:00Z").await;
    assert_eq!(queued(&s, &hook).await, vec![]);
    clock(&s, "2027-05-03T08:00:00Z").await;
    let got = queued(&s, &hook).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let (t, user, payload) = &got[0];
    assert_eq!(
        (t.as_str(), user.as_str()),
        ("emails.achievement_due", "ada")
    );
    assert_eq!(payload["type"], "emails.achievement_due");
    assert_eq!(payload["timestamp"], "2027-05-03T08:00:00.000Z");
    assert_eq!(payload["achievement"]["key"], "beta");
    assert_eq!(payload["achievement"]["achievedAt"], achieved_at);
    assert_eq!(payload["user"]["tz"], "Asia/Tokyo");
    assert!(payload["user"]["subscribeToEmails"].is_boolean());

    // Three full local days without an event (4th–6th): the 7th at 09:00 local. Bob's is
    // suppressed by his preference.
    clock(&s, "2027-05-07T00:00:00Z").await;
    let got = queued(&s, &hook).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let (t, user, payload) = &got[1];
    assert_eq!(
        (t.as_str(), user.as_str()),
        ("emails.reactivation_due", "ada")
    );
    assert_eq!(
        payload["reactivation"],
        json!({"messageNumber": 1, "daysSinceLastActive": 3})
    );
    assert_eq!(payload["timestamp"], "2027-05-07T00:00:00.000Z");

    // Sunday 09:00 local: the recap of the week with activity, for both users (Bob's
    // preference is about reactivation only), and Ada's second reactivation message.
    clock(&s, "2027-05-09T00:00:00Z").await;
    let got = queued(&s, &hook).await;
    let recaps: Vec<&(String, String, Value)> = got
        .iter()
        .filter(|(t, ..)| t == "emails.recap_due")
        .collect();
    let mut recap_users: Vec<&str> = recaps.iter().map(|(_, u, _)| u.as_str()).collect();
    recap_users.sort();
    assert_eq!(recap_users, vec!["ada", "bob"]);
    assert_eq!(
        recaps[0].2["recap"],
        json!({"periodStart": "2027-05-02", "periodEnd": "2027-05-08"})
    );
    let reactivations: Vec<(String, Value)> = got
        .iter()
        .filter(|(t, ..)| t == "emails.reactivation_due")
        .map(|(_, u, p)| (u.clone(), p["reactivation"]["messageNumber"].clone()))
        .collect();
    assert_eq!(
        reactivations,
        vec![("ada".to_string(), json!(1)), ("ada".to_string(), json!(2))]
    );
    // A week without events has no recap; an event restarts the reactivation sequence.
    let r = s
        .post(
            "/v1/metrics/words/event",
            json!({"user": {"id": "ada"}, "value": 1}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    clock(&s, "2027-05-13T00:00:00Z").await;
    let got = queued(&s, &hook).await;
    let last = got.last().expect("one more");
    assert_eq!(
        (
            last.0.as_str(),
            last.2["reactivation"]["messageNumber"].clone()
        ),
        ("emails.reactivation_due", json!(1))
    );
    // They were delivered, too.
    received(&receiver, got.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streak_reminder_comes_at_eight_in_the_evening_of_a_day_still_to_extend() {
    let s = TestServer::start_with_test_clock().await;
    clock(&s, "2027-05-03T09:00:00Z").await;
    s.create_metrics(&["lessons"]).await;
    let r = s
        .patch(
            "/admin/v1/streaks/settings",
            json!({"metrics": [{"key": "lessons", "threshold": 1}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let receiver = Receiver::start().await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": receiver.url, "events": ["emails.streak_reminder_due"]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let hook = r.body["created"][0]["id"].as_str().expect("id").to_string();
    let lesson = |user: &'static str| event_in(&s, "lessons", user, "Europe/London", 1.0);
    lesson("ada").await;
    lesson("bob").await;
    // The day of the first lesson is extended: no reminder that evening.
    clock(&s, "2027-05-03T19:00:00Z").await;
    assert_eq!(queued(&s, &hook).await, vec![]);
    // The next day Bob extends in the morning; Ada does not: 20:00 London (19:00 UTC).
    clock(&s, "2027-05-04T08:00:00Z").await;
    lesson("bob").await;
    clock(&s, "2027-05-04T18:59:00Z").await;
    assert_eq!(queued(&s, &hook).await, vec![]);
    clock(&s, "2027-05-04T19:00:00Z").await;
    let got = queued(&s, &hook).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let (t, user, payload) = &got[0];
    assert_eq!(
        (t.as_str(), user.as_str()),
        ("emails.streak_reminder_due", "ada")
    );
    let streak = &payload["streak"];
    assert_eq!(
        (
            streak["length"].clone(),
            streak["frequency"].clone(),
            streak["periodStart"].clone(),
            streak["expires"].clone()
        ),
        (
            json!(1),
            json!("daily"),
            json!("2027-05-04"),
            json!("2027-05-04")
        )
    );
    assert!(streak["streakHistory"].is_array(), "{streak}");
    assert!(streak["pauses"].is_array(), "{streak}");
    assert_eq!(payload["timestamp"], "2027-05-04T19:00:00.000Z");
    // One per period: nothing more that day.
    clock(&s, "2027-05-04T22:00:00Z").await;
    assert_eq!(queued(&s, &hook).await.len(), 1);
    received(&receiver, 1).await;

    // One move of the clock over three days runs as if time had passed: Bob's streak is at
    // risk on the 5th, and its reminder comes at 20:00 that day, before the streak is lost.
    clock(&s, "2027-05-07T12:00:00Z").await;
    let got = queued(&s, &hook).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let (t, user, payload) = &got[1];
    assert_eq!(
        (t.as_str(), user.as_str()),
        ("emails.streak_reminder_due", "bob")
    );
    assert_eq!(payload["timestamp"], "2027-05-05T19:00:00.000Z");
    // (Its `streak` is read when the delivery is rendered: after this jump, as lost.)
    assert!(payload["streak"]["length"].is_number(), "{payload}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_users_get_no_notices_and_recaps_follow_the_aggregation_period() {
    let s = TestServer::start_with_test_clock().await;
    // Monday 2027-05-03, 10:00 in Tokyo.
    clock(&s, "2027-05-03T01:00:00Z").await;
    s.create_metrics(&["words"]).await;
    let r = s
        .patch(
            "/admin/v1/settings",
            json!({"experimentation": {"controlRatio": 100}, "aggregationPeriod": "monthly"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let event = |user: &'static str| event_in(&s, "words", user, "Asia/Tokyo", 5.0);
    event("control").await;
    let r = s
        .patch(
            "/admin/v1/settings",
            json!({"experimentation": {"controlRatio": 0}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    event("treated").await;
    assert_eq!(s.get("/v1/users/control").await.body["control"], true);
    assert_eq!(s.get("/v1/users/treated").await.body["control"], false);

    let receiver = Receiver::start().await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": receiver.url, "events": ["emails.recap_due", "emails.reactivation_due"]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let hook = r.body["created"][0]["id"].as_str().expect("id").to_string();
    s.jobs_done().await;

    // Sunday the 9th: no weekly recap (the period is monthly). The control user is
    // tracked (their reactivation would be due) but told nothing.
    clock(&s, "2027-05-09T00:00:00Z").await;
    let got = queued(&s, &hook).await;
    assert!(got.iter().all(|(t, ..)| t != "emails.recap_due"), "{got:?}");
    assert!(got.iter().all(|(_, u, _)| u == "treated"), "{got:?}");
    assert!(
        !got.is_empty(),
        "the treated user's reactivation messages: {got:?}"
    );
    // June 1st, 09:00 in Tokyo: May's recap, for the treated user only.
    clock(&s, "2027-06-01T00:00:00Z").await;
    let recaps: Vec<(String, Value)> = queued(&s, &hook)
        .await
        .into_iter()
        .filter(|(t, ..)| t == "emails.recap_due")
        .map(|(_, u, p)| (u, p["recap"].clone()))
        .collect();
    assert_eq!(
        recaps,
        vec![(
            "treated".to_string(),
            json!({"periodStart": "2027-05-01", "periodEnd": "2027-05-31"})
        )]
    );
}
