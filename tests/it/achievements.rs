//! Achievements through HTTP (SPEC §4): admin CRUD and validation, automatic completion on
//! events and streaks, composites, api completion, statistics, user lists, backfill.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{assert_error, TestServer};

async fn create(s: &TestServer, items: Value) -> Value {
    let r = s.post("/admin/v1/achievements", items).await;
    assert!(r.status == 201 || r.status == 200, "{:?}", r.body);
    r.body
}

fn ids(body: &Value) -> Vec<String> {
    body["created"]
        .as_array()
        .expect("created")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_crud_and_validation() {
    let s = TestServer::start().await;
    let metric = s.create_metrics(&["lessons"]).await.remove(0);
    s.create_attributes(&[("plan", "user"), ("device", "event")])
        .await;
    let body = create(
        &s,
        json!([
            {"name": "Five lessons", "trigger": "metric", "metricId": metric, "metricValue": 5, "description": "d", "badge": {"url": "https://x/b.png"}},
            {"name": "Week", "trigger": "streak", "streakLength": 7, "status": "active"},
            {"name": "Beta", "trigger": "api", "key": "beta"},
            {"name": "Zero", "trigger": "metric", "metricId": metric, "metricValue": 0},
            {"name": "Ghost", "trigger": "metric", "metricId": uuid::Uuid::new_v4(), "metricValue": 1},
            {"name": "Beta2", "trigger": "api", "key": "beta"},
            {"name": "Bad", "trigger": "api", "key": "no spaces"},
            {"name": "Years", "trigger": "anniversary", "anniversaryYears": 0},
            {"name": "Comp", "trigger": "achievement", "achievementIds": [uuid::Uuid::new_v4()]},
            {"name": "Filt", "trigger": "streak", "streakLength": 2, "eventAttributes": [{"attributeId": uuid::Uuid::new_v4(), "attributeValue": "x"}]},
            {"trigger": "streak", "streakLength": 2},
        ]),
    )
    .await;
    let created = body["created"].as_array().expect("created");
    assert_eq!(created.len(), 3, "{body}");
    assert_eq!(created[0]["status"], "inactive", "inactive by default");
    assert_eq!(created[0]["badge"], json!({"url": "https://x/b.png"}));
    assert_eq!(created[0]["eventAttributes"], json!([]));
    assert_eq!(created[1]["status"], "active");
    assert_eq!(created[2]["key"], "beta");
    let issue_indexes: Vec<_> = body["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| i["index"].as_u64())
        .collect();
    assert_eq!(issue_indexes, (3..=10).map(Some).collect::<Vec<_>>());

    let id = created[0]["id"].as_str().expect("id");
    assert_eq!(
        s.get(&format!("/admin/v1/achievements/{id}")).await.body["name"],
        "Five lessons"
    );
    assert_eq!(
        s.get("/admin/v1/achievements?limit=2")
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Composite cycles are rejected at configuration time.
    let week = created[1]["id"].as_str().expect("id");
    let comp = ids(&create(
        &s,
        json!([{"name": "C1", "trigger": "achievement", "achievementIds": [week]}]),
    )
    .await)
    .remove(0);
    let comp2 = ids(&create(
        &s,
        json!([{"name": "C2", "trigger": "achievement", "achievementIds": [comp]}]),
    )
    .await)
    .remove(0);
    let cyc = s
        .patch(
            "/admin/v1/achievements",
            json!([{"id": comp, "achievementIds": [comp2]}]),
        )
        .await;
    assert_eq!(
        cyc.body["issues"][0]["message"],
        "achievementIds would create a cycle of prerequisites"
    );
    let upd = s
        .patch("/admin/v1/achievements", json!([{"id": id, "name": "Renamed", "description": null, "badge": null, "status": "active"}]))
        .await;
    assert_eq!(upd.status, 200, "{:?}", upd.body);
    assert_eq!(upd.body["updated"][0]["name"], "Renamed");
    assert!(upd.body["updated"][0].get("description").is_none());
    assert_eq!(upd.body["updated"][0]["badge"], json!(null));
    let del = s
        .delete(&format!("/admin/v1/achievements?ids={comp2}"))
        .await;
    assert_eq!(del.body["deleted"], json!([{"id": comp2}]));
    assert_error(
        &s.get(&format!("/admin/v1/achievements/{comp2}")).await,
        404,
    );
    // Durable.
    let s = s.restart().await;
    assert_eq!(
        s.get(&format!("/admin/v1/achievements/{id}")).await.body["name"],
        "Renamed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_complete_metric_streak_and_composite_achievements() {
    let s = TestServer::start_with_test_clock().await;
    let metric = s.create_metrics(&["lessons"]).await.remove(0);
    s.patch(
        "/admin/v1/streaks/settings",
        json!({"metrics": [{"key": "lessons", "threshold": 1}]}),
    )
    .await;
    let body = create(
        &s,
        json!([
            {"name": "Two", "trigger": "metric", "metricId": metric, "metricValue": 2, "status": "active"},
            {"name": "Ten", "trigger": "metric", "metricId": metric, "metricValue": 10, "status": "active"},
            {"name": "Streak 2", "trigger": "streak", "streakLength": 2, "status": "active"},
        ]),
    )
    .await;
    let [two, ten, streak2] = <[String; 3]>::try_from(ids(&body)).expect("three");
    let both = ids(&create(&s, json!([{"name": "Both", "trigger": "achievement", "achievementIds": [two, streak2], "status": "active"}])).await).remove(0);

    s.post(
        "/admin/v1/test-clock",
        json!({"now": "2030-01-01T10:00:00Z"}),
    )
    .await;
    let first = s.event("lessons", "u", 1.0).await;
    assert_eq!(first.body["achievements"], json!([]));
    s.post(
        "/admin/v1/test-clock",
        json!({"now": "2030-01-02T10:00:00Z"}),
    )
    .await;
    let second = s.event("lessons", "u", 1.0).await;
    let got: Vec<_> = second.body["achievements"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(
        got,
        vec![two.clone(), streak2.clone(), both.clone()],
        "metric, then streak, then composite"
    );
    let a = &second.body["achievements"][0];
    assert_eq!(a["trigger"], "metric");
    assert_eq!(a["metricName"], "Metric lessons");
    assert_eq!(a["achievedAt"], "2030-01-02T10:00:00.000Z");
    assert_eq!(second.body["achievements"][1]["streakLength"], 2);

    let m = s.get("/v1/users/u/metrics/lessons").await;
    let list = m.body["achievements"].as_array().expect("achievements");
    assert_eq!(
        (list[0]["id"].as_str(), list[1]["id"].as_str()),
        (Some(two.as_str()), Some(ten.as_str()))
    );
    assert_eq!(list[1]["achievedAt"], json!(null));

    let mine = s.get("/v1/users/u/achievements").await;
    assert_eq!(mine.body.as_array().map(Vec::len), Some(3));
    assert_eq!(mine.body[0]["completions"], 1);
    assert_eq!(mine.body[0]["rarity"], 100.0);
    let all = s
        .get("/v1/users/u/achievements?includeIncomplete=true")
        .await;
    assert_eq!(all.body.as_array().map(Vec::len), Some(4));
    assert_eq!(all.body[3]["id"], ten.as_str());
    assert_eq!(all.body[3]["achievedAt"], json!(null));
    assert_error(&s.get("/v1/users/nobody/achievements").await, 404);
    // Completions survive a restart.
    let s = s.restart().await;
    assert_eq!(
        s.get("/v1/users/u/achievements")
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_completion_statuses_and_filters() {
    let s = TestServer::start().await;
    s.create_attributes(&[("plan", "user")]).await;
    let attrs = s.get("/admin/v1/attributes").await.body;
    let plan = attrs[0]["id"].as_str().expect("id").to_string();
    let body = create(
        &s,
        json!([
            {"name": "Beta", "trigger": "api", "key": "beta", "status": "active"},
            {"name": "Off", "trigger": "api", "key": "off"},
            {"name": "Locked", "trigger": "api", "key": "locked", "status": "locked"},
            {"name": "Pro", "trigger": "api", "key": "pro", "status": "active", "userAttributes": [{"attributeId": plan, "attributeValue": "pro"}]},
        ]),
    )
    .await;
    let beta = ids(&body).remove(0);
    let after_beta = ids(&create(&s, json!([{"name": "After beta", "trigger": "achievement", "achievementIds": [beta], "status": "active"}])).await).remove(0);
    let r = s
        .post(
            "/v1/achievements/beta/complete",
            json!({"user": {"id": "ann", "name": "Ann"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["achievement"]["id"], beta.as_str());
    assert_eq!(r.body["achievement"]["key"], "beta");
    assert_eq!(r.body["points"], json!({}));
    assert_eq!(
        s.get("/v1/users/ann").await.body["name"],
        "Ann",
        "inline upsert"
    );
    // The composite that needs "beta" completes too (not listed in the completion response).
    let mine = s.get("/v1/users/ann/achievements").await;
    let got: Vec<_> = mine
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(got, vec![json!(beta), json!(after_beta)]);
    let again = s
        .post(
            "/v1/achievements/beta/complete",
            json!({"user": {"id": "ann"}}),
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["completionId"], r.body["completionId"]);
    assert_eq!(
        again.body["achievement"]["achievedAt"],
        r.body["achievement"]["achievedAt"]
    );

    assert_error(
        &s.post(
            "/v1/achievements/nope/complete",
            json!({"user": {"id": "ann"}}),
        )
        .await,
        404,
    );
    assert_error(
        &s.post(
            "/v1/achievements/off/complete",
            json!({"user": {"id": "ann"}}),
        )
        .await,
        404,
    );
    let locked = s
        .post(
            "/v1/achievements/locked/complete",
            json!({"user": {"id": "ann"}}),
        )
        .await;
    assert_error(&locked, 422);
    assert_eq!(locked.body["error"], "Achievement is locked");
    let pro = s
        .post(
            "/v1/achievements/pro/complete",
            json!({"user": {"id": "ann"}}),
        )
        .await;
    assert_eq!(
        pro.body["error"],
        "User is not eligible for this achievement"
    );
    let pro = s
        .post(
            "/v1/achievements/pro/complete",
            json!({"user": {"id": "ann", "attributes": {"plan": "pro"}}}),
        )
        .await;
    assert_eq!(pro.status, 201, "{:?}", pro.body);
    assert_error(
        &s.post("/v1/achievements/beta/complete", json!({})).await,
        400,
    );
    assert_error(
        &s.post(
            "/v1/achievements/beta/complete",
            json!({"user": {"id": ""}}),
        )
        .await,
        422,
    );

    // Statistics: 1 of 2 users completed "beta".
    s.put("/v1/users/bob", json!({})).await;
    let list = s.get("/v1/achievements").await;
    assert_eq!(list.status, 200);
    let names: Vec<_> = list
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("Beta"), json!("Pro"), json!("After beta")],
        "active only"
    );
    assert_eq!(
        (
            list.body[0]["completions"].clone(),
            list.body[0]["rarity"].clone()
        ),
        (json!(1), json!(50.0))
    );
    assert!(list.body[0].get("achievedAt").is_none());
    let free = s.get("/v1/achievements?userAttributes=plan:free").await;
    assert_eq!(
        free.body.as_array().map(Vec::len),
        Some(2),
        "Pro needs plan=pro"
    );
    assert_error(&s.get("/v1/achievements?userAttributes=plan").await, 422);
    assert_error(&s.get("/v1/achievements?userAttributes=nope:x").await, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_backfills_existing_users_silently() {
    let s = TestServer::start().await;
    let metric = s.create_metrics(&["m"]).await.remove(0);
    s.event("m", "rich", 5.0).await;
    s.event("m", "poor", 1.0).await;
    let id = ids(&create(
        &s,
        json!([{"name": "Three", "trigger": "metric", "metricId": metric, "metricValue": 3}]),
    )
    .await)
    .remove(0);
    assert_eq!(
        s.get("/v1/users/rich/achievements").await.body,
        json!([]),
        "inactive: no backfill"
    );
    s.patch(
        "/admin/v1/achievements",
        json!([{"id": id, "status": "active"}]),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mine = s.get("/v1/users/rich/achievements").await;
        if mine.body.as_array().is_some_and(|l| l.len() == 1) {
            assert_eq!(mine.body[0]["completions"], 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backfill did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.get("/v1/users/poor/achievements").await.body, json!([]));
    // Later events do not report the backdated completion.
    assert_eq!(
        s.event("m", "rich", 1.0).await.body["achievements"],
        json!([])
    );
    // The poor user completes it normally (reported) when qualifying.
    let r = s.event("m", "poor", 2.0).await;
    assert_eq!(r.body["achievements"][0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anniversaries_complete_at_local_midnight_when_the_clock_passes_it() {
    let s = TestServer::start_with_test_clock().await;
    s.post(
        "/admin/v1/test-clock",
        json!({"now": "2030-01-05T12:00:00Z"}),
    )
    .await;
    create(&s, json!([{"name": "One year", "trigger": "anniversary", "anniversaryYears": 1, "status": "active"}])).await;
    let r = s
        .put(
            "/v1/users/sam",
            json!({"signUpDate": "2029-01-10", "tz": "Europe/Paris"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(s.get("/v1/users/sam/achievements").await.body, json!([]));
    // One clock move over several midnights: evaluated at the due instant, 2030-01-10 00:00
    // in Paris, not at the target time.
    s.post(
        "/admin/v1/test-clock",
        json!({"now": "2030-01-12T12:00:00Z"}),
    )
    .await;
    let mine = s.get("/v1/users/sam/achievements").await;
    assert_eq!(mine.body[0]["anniversaryYears"], 1);
    assert_eq!(mine.body[0]["achievedAt"], "2030-01-09T23:00:00.000Z");
}
