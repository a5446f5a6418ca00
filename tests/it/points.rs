//! Points through HTTP (SPEC §6): admin CRUD for systems, triggers, levels and boosts with
//! their validation, awards on events, boosts, levels, caps, and the application reads.

use serde_json::{json, Value};

use crate::support::{assert_error, TestServer};

fn created_ids(body: &Value) -> Vec<String> {
    body["created"]
        .as_array()
        .expect("created")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

fn messages(body: &Value) -> Vec<(Option<u64>, String)> {
    body["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            (
                i["index"].as_u64(),
                i["message"].as_str().expect("message").to_string(),
            )
        })
        .collect()
}

/// Creates a system with `key` (and optional `maxPoints`); returns its id.
pub async fn create_system(s: &TestServer, key: &str, max: Option<i64>) -> String {
    let r = s
        .post(
            "/admin/v1/points",
            json!([{"name": key.to_uppercase(), "key": key, "maxPoints": max}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    created_ids(&r.body).remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_crud_for_systems_triggers_levels_and_boosts() {
    let s = TestServer::start().await;
    let metric = s.create_metrics(&["lessons"]).await.remove(0);
    let r = s
        .post(
            "/admin/v1/points",
            json!([
                {"name": "XP", "key": "xp", "description": "Experience", "badge": {"url": "https://x/xp.png"},
                 "levels": [{"name": "Bronze", "key": "bronze", "points": 0}],
                 "triggers": [{"type": "metric", "points": 10, "metricId": metric, "metricThreshold": 1}]},
                {"name": "Dup", "key": "xp"},
                {"name": "Bad", "key": "no spaces"},
                {"name": "Zero", "key": "zero", "maxPoints": 0},
                {"key": "noname"},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let sys = &r.body["created"][0];
    assert_eq!(sys["key"], "xp");
    assert_eq!(sys["status"], "active");
    assert_eq!(sys["badge"], json!({"url": "https://x/xp.png"}));
    assert_eq!(sys["maxPoints"], json!(null));
    assert_eq!(sys["levels"][0]["key"], "bronze");
    assert_eq!(
        sys["triggers"][0]["status"], "inactive",
        "inactive by default"
    );
    assert!(sys.get("boosts").is_none(), "only lists that were sent");
    let msgs = messages(&r.body);
    assert_eq!(
        msgs.iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![Some(1), Some(2), Some(3), Some(4)]
    );
    assert_eq!(msgs[0].1, "Key already in use by another points system");
    assert_eq!(msgs[3].1, "Name is required");
    let id = sys["id"].as_str().expect("id").to_string();

    assert_eq!(
        s.get(&format!("/admin/v1/points/{id}")).await.body["name"],
        "XP"
    );
    assert_error(&s.get("/admin/v1/points/not-a-uuid").await, 404);
    let upd = s
        .patch(
            "/admin/v1/points",
            json!([{"id": id, "name": "XP!", "maxPoints": 500}, {"id": uuid::Uuid::new_v4(), "name": "x"}]),
        )
        .await;
    assert_eq!(upd.body["updated"][0]["maxPoints"], 500);
    assert_eq!(
        upd.body["issues"][0]["message"],
        "Points system not found by ID"
    );

    // Triggers: one issue per bad item, nothing written for it.
    let ach = s
        .post(
            "/admin/v1/achievements",
            json!([{"name": "A", "trigger": "api", "key": "a", "status": "active"}]),
        )
        .await;
    let ach = created_ids(&ach.body).remove(0);
    let base = format!("/admin/v1/points/{id}/triggers");
    let r = s
        .post(
            &base,
            json!([
                {"type": "streak", "points": 5, "streakLength": 3, "status": "active"},
                {"type": "achievement", "points": 7, "achievementId": ach},
                {"type": "time", "points": 1, "timeUnit": "hours", "timeInterval": 2},
                {"type": "user_creation", "points": 3, "blockIfOutOfPoints": true},
                {"type": "metric", "points": 0, "metricId": metric, "metricThreshold": 1},
                {"type": "metric", "points": 5, "metricId": uuid::Uuid::new_v4(), "metricThreshold": 1},
                {"type": "metric", "points": 5, "metricId": metric, "metricThreshold": 1, "streakLength": 2},
                {"type": "streak", "points": 5, "streakLength": 0},
                {"type": "achievement", "points": 5, "achievementId": uuid::Uuid::new_v4()},
                {"type": "time", "points": 5, "timeUnit": "weeks", "timeInterval": 1},
                {"type": "bogus", "points": 5},
                {"points": 5},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = r.body["created"].as_array().expect("created");
    assert_eq!(created.len(), 4, "{:?}", r.body);
    assert_eq!(created[0]["streakLength"], 3);
    assert_eq!(created[2]["timeUnit"], "hours");
    assert_eq!(created[3]["blockIfOutOfPoints"], true);
    let msgs = messages(&r.body);
    assert_eq!(msgs.len(), 8, "{msgs:?}");
    assert_eq!(msgs[0].1, "Points must not be zero");
    assert_eq!(msgs[1].1, "Metric not found by ID");
    assert_eq!(msgs[2].1, "streakLength is only allowed on streak triggers");
    let streak_trigger = created[0]["id"].as_str().expect("id").to_string();
    let list = s.get(&base).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(5));
    // The type of an active trigger cannot change; an inactive one's can, with its fields.
    let r = s
        .patch(
            &base,
            json!([{"id": streak_trigger, "type": "metric", "metricId": metric, "metricThreshold": 2}]),
        )
        .await;
    assert_eq!(
        r.body["issues"][0]["message"],
        "Trigger type can only be changed while the trigger is inactive"
    );
    let r = s
        .patch(
            &base,
            json!([{"id": streak_trigger, "points": 6, "status": "inactive"}]),
        )
        .await;
    assert_eq!(r.body["updated"][0]["points"], 6);
    assert_eq!(r.body["updated"][0]["status"], "inactive");
    let r = s.delete(&format!("{base}?ids={streak_trigger},nope")).await;
    assert_eq!(r.body["deleted"], json!([{"id": streak_trigger}]));
    assert_eq!(r.body["issues"][0]["message"], "id must be a valid UUID");
    assert_error(&s.get(&format!("{base}/{streak_trigger}")).await, 404);

    // Levels: keys unique within the system, thresholds ≥ 0.
    let lbase = format!("/admin/v1/points/{id}/levels");
    let r = s
        .post(
            &lbase,
            json!([
                {"name": "Silver", "key": "silver", "points": 100, "badge": {"url": "https://x/s.png"}},
                {"name": "Again", "key": "bronze", "points": 5},
                {"name": "Neg", "key": "neg", "points": -1},
            ]),
        )
        .await;
    assert_eq!(created_ids(&r.body).len(), 1);
    assert_eq!(
        messages(&r.body)[0].1,
        "Key already in use by another level"
    );
    let silver = created_ids(&r.body).remove(0);
    let r = s
        .patch(
            &lbase,
            json!([{"id": silver, "points": 150, "badge": null}]),
        )
        .await;
    assert_eq!(r.body["updated"][0]["points"], 150);
    assert_eq!(r.body["updated"][0]["badge"], json!(null));
    assert_eq!(
        s.get(&format!("{lbase}/{silver}")).await.body["description"],
        ""
    );

    // Boosts: user xor attributes, user must exist, multiplier bounds.
    s.event("lessons", "u1", 1.0).await;
    s.create_attributes(&[("plan", "user")]).await;
    let bbase = format!("/admin/v1/points/{id}/boosts");
    let r = s
        .post(
            &bbase,
            json!([
                {"name": "Double", "start": "2020-01-01", "end": "2020-01-03", "multiplier": 2},
                {"name": "Mine", "userId": "u1", "start": "2020-01-01", "multiplier": 1.5, "rounding": "up"},
                {"name": "Ghost", "userId": "nobody", "start": "2020-01-01", "multiplier": 2},
                {"name": "One", "start": "2020-01-01", "multiplier": 1},
                {"name": "Back", "start": "2020-01-05", "end": "2020-01-01", "multiplier": 2},
            ]),
        )
        .await;
    assert_eq!(created_ids(&r.body).len(), 2, "{:?}", r.body);
    let b = &r.body["created"];
    assert_eq!(b[0]["status"], "finished");
    assert_eq!(b[0]["userAttributes"], json!([]));
    assert_eq!(b[1]["userId"], "u1");
    assert!(
        b[1].get("userAttributes").is_none(),
        "omitted for user boosts"
    );
    assert_eq!(messages(&r.body)[0].1, "User does not exist");
    let mine = b[1]["id"].as_str().expect("id").to_string();
    let r = s
        .patch(
            &bbase,
            json!([{"id": mine, "userAttributes": []}, {"id": mine, "name": "Mine!", "end": "2099-01-01"}]),
        )
        .await;
    assert_eq!(
        r.body["issues"][0]["message"],
        "userAttributes cannot be set on a user-specific boost"
    );
    assert_eq!(r.body["updated"][0]["name"], "Mine!");

    // Unknown or deleted system: 404 for the whole sub-resource request.
    let ghost = uuid::Uuid::new_v4();
    assert_error(
        &s.get(&format!("/admin/v1/points/{ghost}/levels")).await,
        404,
    );
    let del = s.delete(&format!("/admin/v1/points?ids={id}")).await;
    assert_eq!(del.body["deleted"], json!([{"id": id}]));
    assert_error(&s.get(&lbase).await, 404);
    assert_error(
        &s.post(&lbase, json!([{"name": "n", "key": "k", "points": 1}]))
            .await,
        404,
    );
    // The configuration survives a restart.
    let s = s.restart().await;
    let list = s.get("/admin/v1/points").await;
    assert_eq!(list.body, json!([]), "deleted systems are not listed");
}

/// Creates triggers on `system` (active); returns their ids.
async fn triggers(s: &TestServer, system: &str, items: Value) -> Vec<String> {
    let r = s
        .post(&format!("/admin/v1/points/{system}/triggers"), items)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["issues"], json!([]), "{:?}", r.body);
    created_ids(&r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_award_points_with_boosts_caps_levels_and_blocking() {
    let s = TestServer::start().await;
    let metric = s.create_metrics(&["lessons"]).await.remove(0);
    s.create_metrics(&["spend"]).await;
    let spend = s.get("/admin/v1/metrics").await.body[1]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let xp = create_system(&s, "xp", Some(100)).await;
    triggers(
        &s,
        &xp,
        json!([
            {"type": "user_creation", "points": 5, "status": "active"},
            {"type": "metric", "points": 10, "metricId": metric, "metricThreshold": 3, "status": "active"},
            {"type": "metric", "points": -20, "metricId": spend, "metricThreshold": 1, "status": "active", "blockIfOutOfPoints": true},
        ]),
    )
    .await;
    let r = s
        .post(
            &format!("/admin/v1/points/{xp}/levels"),
            json!([{"name": "Rookie", "key": "rookie", "points": 0}, {"name": "Pro", "key": "pro", "points": 30}]),
        )
        .await;
    assert_eq!(r.status, 201);

    // SPEC §6.3.1: threshold 3, points 10; events 2, 2, 5 → 0, 10, 20 (+5 for creation).
    let first = s.event("lessons", "u1", 2.0).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let p = &first.body["points"]["xp"];
    assert_eq!(p["added"], 5, "{p}");
    assert_eq!(p["total"], 5);
    assert_eq!(p["awards"][0]["trigger"]["type"], "user_creation");
    assert_eq!(p["level"]["key"], "rookie");
    let second = s.event("lessons", "u1", 2.0).await;
    assert_eq!(second.body["points"]["xp"]["added"], 10);
    assert!(
        second.body["points"]["xp"].get("level").is_none(),
        "level unchanged"
    );
    // A 1.5× global boost on the third event: 20 × 1.5 = 30 (cap 100 leaves room).
    let r = s
        .post(
            &format!("/admin/v1/points/{xp}/boosts"),
            json!([{"name": "Weekend", "start": "2000-01-01", "multiplier": 1.5}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let third = s.event("lessons", "u1", 5.0).await;
    let p = &third.body["points"]["xp"];
    assert_eq!(p["added"], 30, "{p}");
    assert_eq!(p["total"], 45);
    assert_eq!(p["awards"][0]["boosts"][0]["name"], "Weekend");
    assert_eq!(p["level"]["key"], "pro");
    // maxPoints clamps: 45 + 300 × 1.5 → 100.
    let big = s.event("lessons", "u1", 90.0).await;
    assert_eq!(big.body["points"]["xp"]["total"], 100);
    assert_eq!(big.body["points"]["xp"]["added"], 55);
    // A capped award of 0 is not recorded: no entry at all.
    let none = s.event("lessons", "u1", 3.0).await;
    assert_eq!(none.body["points"], json!({}));

    // blockIfOutOfPoints: 100 − 20×6 < 0 → 422 and nothing recorded.
    let blocked = s.event("spend", "u1", 6.0).await;
    assert_error(&blocked, 422);
    assert_eq!(blocked.body["error"], "Insufficient points");
    let total = s.get("/v1/users/u1/metrics/spend").await;
    assert_eq!(total.body["current"], 0.0, "the event was not recorded");
    let ok = s.event("spend", "u1", 1.0).await;
    assert_eq!(ok.body["points"]["xp"]["added"], -20);

    // The user's points read back, newest award first, and survive a restart.
    let s = s.restart().await;
    let r = s.get("/v1/users/u1/points/xp?awards=2").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["total"], 80);
    assert_eq!(r.body["level"]["key"], "pro");
    assert_eq!(r.body["awards"].as_array().map(Vec::len), Some(2));
    assert_eq!(r.body["awards"][0]["awarded"], -20);
    assert_error(&s.get("/v1/users/u1/points/xp?awards=0").await, 422);
    assert_error(&s.get("/v1/users/u1/points/nope").await, 404);
    assert_error(&s.get("/v1/users/nobody/points/xp").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_reads_of_systems_boosts_levels_and_distributions() {
    let s = TestServer::start().await;
    let metric = s.create_metrics(&["lessons"]).await.remove(0);
    s.create_attributes(&[("plan", "user")]).await;
    let plan = s.get("/admin/v1/attributes").await.body[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let xp = create_system(&s, "xp", None).await;
    let ids = triggers(
        &s,
        &xp,
        json!([
            {"type": "metric", "points": 1, "metricId": metric, "metricThreshold": 1, "status": "active"},
            {"type": "streak", "points": 50, "streakLength": 1},
        ]),
    )
    .await;
    s.post(
        &format!("/admin/v1/points/{xp}/levels"),
        json!([{"name": "Gold", "key": "gold", "points": 500}, {"name": "Start", "key": "start", "points": 0}]),
    )
    .await;
    s.post(
        &format!("/admin/v1/points/{xp}/boosts"),
        json!([
            {"name": "Old", "start": "2000-01-01", "end": "2000-01-02", "multiplier": 2},
            {"name": "Pro only", "start": "2000-01-01", "multiplier": 2, "userAttributes": [{"attributeId": plan, "attributeValue": "pro"}]},
        ]),
    )
    .await;

    let sys = s.get("/v1/points/xp").await;
    assert_eq!(sys.status, 200);
    assert!(
        sys.body.get("key").is_none(),
        "PointsSystemResponse has no key"
    );
    assert_eq!(sys.body["description"], json!(null));
    let triggers = sys.body["triggers"].as_array().expect("triggers");
    assert_eq!(triggers.len(), 1, "active triggers only");
    assert_eq!(triggers[0]["id"], ids[0].as_str());
    assert_eq!(triggers[0]["metricThreshold"], 1);
    assert_eq!(triggers[0]["eventAttributes"], json!([]));
    assert_error(&s.get("/v1/points/nope").await, 404);

    let levels = s.get("/v1/points/xp/levels").await.body;
    assert_eq!(levels[0]["key"], "start", "ascending by threshold");
    let boosts = s.get("/v1/points/xp/boosts").await.body;
    assert_eq!(boosts.as_array().map(Vec::len), Some(1), "{boosts}");
    let all = s
        .get("/v1/points/xp/boosts?includeFinished=true")
        .await
        .body;
    assert_eq!(all[0]["status"], "finished");

    // Users: a pro user gets the cohort boost (×2), a free user does not.
    let pro = s
        .post(
            "/v1/metrics/lessons/event",
            json!({"user": {"id": "pro", "attributes": {"plan": "pro"}}, "value": 300}),
        )
        .await;
    assert_eq!(pro.body["points"]["xp"]["total"], 600, "{:?}", pro.body);
    s.event("lessons", "free", 7.0).await;
    s.post("/v1/users", json!({"id": "idle"})).await;
    let mine = s.get("/v1/users/pro/points/xp/boosts").await.body;
    assert_eq!(mine[0]["name"], "Pro only");
    assert_eq!(
        s.get("/v1/users/free/points/xp/boosts").await.body,
        json!([])
    );

    // Distribution: M = 600 → ranges of 100; the idle user counts at 0.
    let summary = s.get("/v1/points/xp/summary").await.body;
    assert_eq!(summary.as_array().map(Vec::len), Some(11));
    assert_eq!(summary[0], json!({"from": 0, "to": 0, "users": 1}));
    assert_eq!(summary[1], json!({"from": 1, "to": 100, "users": 1}));
    assert_eq!(summary[6], json!({"from": 501, "to": 600, "users": 1}));
    let filtered = s
        .get("/v1/points/xp/summary?userAttributes=plan:pro")
        .await
        .body;
    assert_eq!(filtered[6]["users"], 1);
    assert_eq!(filtered[1]["users"], 0);
    let by_level = s.get("/v1/points/xp/level-summary").await.body;
    assert_eq!(by_level[0]["level"]["key"], "start");
    assert_eq!(by_level[0]["users"], 2);
    assert_eq!(by_level[1]["users"], 1);

    // Points history by day, around the day of the award.
    let day = chrono::NaiveDate::parse_from_str(
        &pro.body["points"]["xp"]["awards"][0]["date"]
            .as_str()
            .expect("date")[..10],
        "%Y-%m-%d",
    )
    .expect("date");
    let rows = s
        .get(&format!(
            "/v1/users/pro/points/xp/event-summary?aggregation=daily&startDate={}&endDate={}",
            day - chrono::Days::new(2),
            day + chrono::Days::new(2)
        ))
        .await;
    assert_eq!(rows.status, 200, "{:?}", rows.body);
    let total: f64 = rows
        .body
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["change"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(total, 600.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_triggers_fire_on_the_clock_and_boost_windows_follow_local_dates_across_dst() {
    let s = TestServer::start_with_test_clock().await;
    // 2027-03-12 12:00 New York (EST, UTC−5); DST starts 2027-03-14 02:00.
    s.set_clock("2027-03-12T17:00:00Z").await;
    s.create_metrics(&["lessons"]).await;
    let xp = create_system(&s, "xp", None).await;
    let daily = create_system(&s, "daily", None).await;
    // A user created before the triggers: activation is the anchor for them.
    let r = s
        .put("/v1/users/ny", json!({"tz": "America/New_York"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    triggers(
        &s,
        &xp,
        json!([{"type": "time", "points": 3, "timeUnit": "hours", "timeInterval": 2, "status": "active"}]),
    )
    .await;
    triggers(
        &s,
        &daily,
        json!([{"type": "time", "points": 10, "timeUnit": "days", "timeInterval": 1, "status": "active"}]),
    )
    .await;
    // A ×2 boost on the local date 2027-03-15 only (the first day in EDT).
    let r = s
        .post(
            &format!("/admin/v1/points/{daily}/boosts"),
            json!([{"name": "Monday", "start": "2027-03-15", "end": "2027-03-15", "multiplier": 2}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let total = |key: &'static str| {
        let s = &s;
        async move {
            s.get(&format!("/v1/users/ny/points/{key}?awards=100"))
                .await
                .body
        }
    };
    assert_eq!(total("xp").await["total"], 0, "never retroactive");

    // 5 hours later: firings at +2 h and +4 h.
    s.set_clock("2027-03-12T22:00:00Z").await;
    // The existing user files the new trigger's firings through a background job; if it
    // runs after the clock move, its evaluation pays the same two firings.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let xp_now = loop {
        let body = total("xp").await;
        if body["total"] == 6 || tokio::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(xp_now["total"], 6, "{xp_now}");
    assert_eq!(xp_now["awards"][0]["trigger"]["timeUnit"], "hour");
    assert_eq!(xp_now["awards"][0]["date"], "2027-03-12T21:00:00.000Z");

    // Days: counted from the first local midnight after activation (Mar 13 00:00 EST);
    // firings at the local midnights of Mar 14 (EST: 05:00Z), Mar 15 and Mar 16 (EDT: 04:00Z).
    s.set_clock("2027-03-16T04:30:00Z").await;
    let d = total("daily").await;
    let awards = d["awards"].as_array().expect("awards");
    let dates: Vec<&str> = awards
        .iter()
        .map(|a| a["date"].as_str().expect("date"))
        .collect();
    assert_eq!(
        dates,
        vec![
            "2027-03-16T04:00:00.000Z",
            "2027-03-15T04:00:00.000Z",
            "2027-03-14T05:00:00.000Z"
        ],
        "local midnights on both sides of the DST change: {d}"
    );
    // Only the award on local date 2027-03-15 is boosted.
    let amounts: Vec<i64> = awards
        .iter()
        .map(|a| a["awarded"].as_i64().expect("n"))
        .collect();
    assert_eq!(amounts, vec![10, 20, 10]);
    assert_eq!(awards[1]["boosts"][0]["name"], "Monday");
    assert_eq!(d["total"], 40);

    // Deactivating stops the firings.
    let list = s.get(&format!("/admin/v1/points/{xp}/triggers")).await.body;
    let id = list[0]["id"].as_str().expect("id").to_string();
    s.patch(
        &format!("/admin/v1/points/{xp}/triggers"),
        json!([{"id": id, "status": "inactive"}]),
    )
    .await;
    let before = total("xp").await["total"].clone();
    s.set_clock("2027-03-17T04:30:00Z").await;
    assert_eq!(total("xp").await["total"], before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boosts_are_announced_at_the_spec_moments_exactly_once() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-06-01T12:00:00Z").await;
    let xp = create_system(&s, "xp", None).await;
    s.put("/v1/users/tokyo", json!({"tz": "Asia/Tokyo"})).await;
    let boosts = format!("/admin/v1/points/{xp}/boosts");
    let r = s
        .post(
            &boosts,
            json!([
                {"name": "Global", "start": "2027-06-10", "end": "2027-06-12", "multiplier": 2},
                {"name": "Past", "start": "2027-05-01", "multiplier": 1.5},
                {"name": "Mine", "userId": "tokyo", "start": "2027-06-10", "end": "2027-06-10", "multiplier": 3},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Created after its start moment: announced at once (and open-ended: never finished).
    let shared = s.tally("boost-clock").await;
    assert_eq!(shared["boostsStarted"], 1, "{shared}");

    // 10:00 UTC the day before the start: the global boost starts.
    s.set_clock("2027-06-09T09:59:00Z").await;
    assert_eq!(s.tally("boost-clock").await["boostsStarted"], 1);
    s.set_clock("2027-06-09T10:00:00Z").await;
    assert_eq!(s.tally("boost-clock").await["boostsStarted"], 2);
    // The user's boost starts at 00:00 Tokyo on its start date (15:00 UTC the day before)
    // and finishes at 00:00 Tokyo after its end date.
    s.set_clock("2027-06-09T15:00:00Z").await;
    let mine = s.tally("tokyo").await;
    assert_eq!(
        (
            mine["boostsStarted"].clone(),
            mine["boostsFinished"].clone()
        ),
        (json!(1), json!(0)),
        "{mine}"
    );
    // Its status follows the user's date too: already the 10th in Tokyo, still the 9th in
    // UTC.
    let listed = s.get(&boosts).await.body;
    let by_name = |name: &str| {
        listed
            .as_array()
            .expect("boosts")
            .iter()
            .find(|b| b["name"] == name)
            .cloned()
            .expect("listed")
    };
    assert_eq!(by_name("Mine")["status"], "active");
    assert_eq!(by_name("Global")["status"], "scheduled");
    let own = s.get("/v1/users/tokyo/points/xp/boosts").await.body;
    assert!(
        own.as_array()
            .expect("boosts")
            .iter()
            .any(|b| b["name"] == "Mine" && b["status"] == "active"),
        "{own}"
    );
    s.set_clock("2027-06-10T15:00:00Z").await;
    assert_eq!(s.tally("tokyo").await["boostsFinished"], 1);
    // 13:00 UTC the day after the end: the global boost finishes; nothing repeats after a
    // restart.
    s.set_clock("2027-06-13T12:59:00Z").await;
    assert_eq!(s.tally("boost-clock").await["boostsFinished"], 0);
    s.set_clock("2027-06-13T13:00:00Z").await;
    assert_eq!(s.tally("boost-clock").await["boostsFinished"], 1);
    let s = s.restart().await;
    let r = s
        .post(
            "/admin/v1/test-clock",
            json!({"now": "2027-07-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let shared = s.tally("boost-clock").await;
    assert_eq!(
        (
            shared["boostsStarted"].clone(),
            shared["boostsFinished"].clone()
        ),
        (json!(2), json!(1))
    );
    assert_eq!(s.tally("tokyo").await["boostsStarted"], 1);
}
