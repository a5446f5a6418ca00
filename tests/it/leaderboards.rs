//! Leaderboards through HTTP (SPEC §7): admin CRUD and validation.

use serde_json::{json, Value};

use crate::support::{assert_error, TestServer};

fn messages(body: &Value) -> Vec<(Value, String)> {
    body["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            (
                i.get("index").cloned().unwrap_or(i["id"].clone()),
                i["message"].as_str().expect("message").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_crud_validation_and_editability() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-01-07T12:00:00Z").await;
    let metric = s.create_metrics(&["words"]).await.remove(0);
    s.create_attributes(&[("country", "user")]).await;
    let country = s.get("/admin/v1/attributes").await.body[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = s
        .post(
            "/admin/v1/leaderboards",
            json!([
                {"name": "Weekly words", "key": "weekly", "rankBy": "metric", "metricId": metric,
                 "start": "2027-01-03", "runUnit": "day", "runInterval": 7, "maxParticipants": 1000000,
                 "breakdownAttributes": [country], "startTime": "09:00", "endTime": "17:30",
                 "status": "active", "tiePolicy": "shared"},
                {"name": "Streaks", "key": "streaks", "rankBy": "streak", "runUnit": "month", "runInterval": 1},
                {"name": "Dup", "key": "weekly", "rankBy": "streak"},
                {"name": "Ghost", "key": "ghost", "rankBy": "metric", "metricId": uuid::Uuid::new_v4()},
                {"name": "Window", "key": "win", "rankBy": "metric", "metricId": metric, "startTime": "18:00", "endTime": "09:00"},
                {"name": "Huge", "key": "huge", "rankBy": "streak", "maxParticipants": 1000001},
                {"name": "Later", "key": "later", "rankBy": "streak", "start": "2027-02-01", "status": "active"},
                {"name": "Soon", "key": "soon", "rankBy": "streak", "start": "2027-02-01", "status": "scheduled"},
                {"key": "noname", "rankBy": "streak"},
                {"name": "Bad type", "key": "bad", "rankBy": "streak", "maxParticipants": "ten"},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = r.body["created"].as_array().expect("created");
    assert_eq!(created.len(), 2, "{:?}", r.body);
    let weekly = &created[0];
    assert_eq!(weekly["status"], "active");
    assert_eq!(weekly["maxParticipants"], 1_000_000);
    assert_eq!(weekly["startTime"], "09:00");
    assert_eq!(weekly["runUnit"], "day");
    assert_eq!(weekly["breakdownAttributes"], json!([country]));
    assert_eq!(weekly["tiePolicy"], "shared");
    assert_eq!(weekly["userAttributes"], json!([]));
    assert!(weekly.get("end").is_none() && weekly.get("description").is_none());
    let soon = &created[1];
    assert_eq!(soon["status"], "scheduled");
    let msgs: Vec<String> = messages(&r.body).into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        msgs,
        vec![
            "Streak leaderboards cannot repeat (runUnit must be null)",
            "Key already in use by another leaderboard",
            "Metric not found by ID",
            "startTime must be before endTime",
            "maxParticipants must be between 1 and 1000000",
            "A leaderboard starting in the future must be scheduled, not active",
            "Name is required",
            "maxParticipants must be an integer",
        ]
    );

    let id = weekly["id"].as_str().expect("id").to_string();
    assert_eq!(
        s.get(&format!("/admin/v1/leaderboards/{id}")).await.body["key"],
        "weekly"
    );
    assert_error(&s.get("/admin/v1/leaderboards/nope").await, 404);
    assert_eq!(
        s.get("/admin/v1/leaderboards?limit=1")
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Active: the key and the ranking cannot change; the name can; finishing ends it today.
    let r = s
        .patch(
            "/admin/v1/leaderboards",
            json!([{"id": id, "key": "other"}, {"id": id, "name": "Words", "description": "Most words"}]),
        )
        .await;
    assert_eq!(
        r.body["issues"][0]["message"],
        "key can only be changed while the leaderboard is inactive"
    );
    assert_eq!(r.body["updated"][0]["description"], "Most words");
    let r = s
        .patch(
            "/admin/v1/leaderboards",
            json!([{"id": id, "status": "finished"}]),
        )
        .await;
    assert_eq!(r.body["updated"][0]["status"], "finished");
    // A finished board stays readable; a page is at most 1,000 rows whatever the cap.
    let wide = s
        .get("/v1/leaderboards/weekly?limit=1001&userAttributes=country:FR")
        .await;
    assert_error(&wide, 422);
    let ok = s
        .get("/v1/leaderboards/weekly?limit=1000&userAttributes=country:FR")
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(r.body["updated"][0]["end"], "2027-01-07");
    // The scheduled one becomes active at 10:00 UTC on the day before its start.
    s.set_clock("2027-01-31T10:00:00Z").await;
    let soon_id = soon["id"].as_str().expect("id");
    assert_eq!(
        s.get(&format!("/admin/v1/leaderboards/{soon_id}"))
            .await
            .body["status"],
        "active"
    );
    let del = s
        .delete(&format!("/admin/v1/leaderboards?ids={soon_id},nope"))
        .await;
    assert_eq!(del.body["deleted"], json!([{"id": soon_id}]));
    assert_eq!(del.body["issues"][0]["message"], "id must be a valid UUID");
    let s = s.restart().await;
    let list = s.get("/admin/v1/leaderboards").await.body;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["name"], "Words");
}

/// The rankings of `path` once they equal `want` (the leaderboards consumer applies
/// acknowledged events beside the request path), or what they were at the deadline.
async fn rankings_settle(s: &TestServer, path: &str, want: &Value) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        let got: Vec<Value> = r.body["rankings"]
            .as_array()
            .expect("rankings")
            .iter()
            .map(|x| json!([x["userId"], x["rank"], x["value"]]))
            .collect();
        let got = Value::Array(got);
        if &got == want || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The board of SPEC §7.8 (weekly from Sunday 2027-01-03, two places, ranking `words`);
/// returns its id.
async fn spec_7_8_board(s: &TestServer) -> String {
    let metric = s.create_metrics(&["words"]).await.remove(0);
    let r = s
        .post(
            "/admin/v1/leaderboards",
            json!([{"name": "Weekly", "key": "weekly", "rankBy": "metric", "metricId": metric,
                    "start": "2027-01-03", "runUnit": "day", "runInterval": 7,
                    "maxParticipants": 2, "status": "active"}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["created"][0]["id"].as_str().expect("id").to_string()
}

/// Sends `value` words for `user`; returns the event response.
async fn words(s: &TestServer, user: &str, value: f64) -> Value {
    let r = s
        .post(
            "/v1/metrics/words/event",
            json!({"user": {"id": user, "name": user.to_uppercase()}, "value": value}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_7_8_example_runs_evictions_and_a_restart() {
    let s = TestServer::start_with_test_clock().await;
    // Sunday 2027-01-03, noon UTC.
    s.set_clock("2027-01-03T12:00:00Z").await;
    spec_7_8_board(&s).await;
    let board = "/v1/leaderboards/weekly";
    words(&s, "alice", 500.0).await;
    words(&s, "bob", 300.0).await;
    let want = json!([["alice", 1, 500], ["bob", 2, 300]]);
    assert_eq!(rankings_settle(&s, board, &want).await, want);
    // Carol at 300 does not exceed the threshold; one more word and Bob is evicted. The
    // event response shows the board as the event left it (SPEC §7.7).
    let at_300 = words(&s, "carol", 300.0).await;
    let entry = &at_300["leaderboards"]["weekly"];
    assert_eq!(
        (
            entry["rank"].clone(),
            entry["previousRank"].clone(),
            entry["threshold"].clone()
        ),
        (json!(null), json!(null), json!(300)),
        "{at_300}"
    );
    assert_eq!(
        (entry["start"].clone(), entry["end"].clone()),
        (json!("2027-01-03"), json!("2027-01-09"))
    );
    let at_301 = words(&s, "carol", 1.0).await;
    let entry = &at_301["leaderboards"]["weekly"];
    assert_eq!(
        (
            entry["rank"].clone(),
            entry["previousRank"].clone(),
            entry["threshold"].clone()
        ),
        (json!(2), json!(null), json!(301))
    );
    let alice = words(&s, "alice", 0.5).await;
    assert_eq!(alice["leaderboards"]["weekly"]["previousRank"], 1);
    let want = json!([["alice", 1, 500], ["carol", 2, 301]]);
    assert_eq!(rankings_settle(&s, board, &want).await, want);
    let full = s.get(board).await.body;
    assert_eq!(full["rankings"][0]["userName"], "ALICE");
    assert_eq!(full["status"], "active");
    assert_eq!(full["runUnit"], "day");
    assert_eq!(full["breakdownAttributes"], json!([]));
    // Around a user, and reads that are refused.
    let around = rankings_settle(
        &s,
        &format!("{board}?userId=carol&offset=-1&limit=1"),
        &json!([["alice", 1, 500]]),
    )
    .await;
    assert_eq!(around, json!([["alice", 1, 500]]));
    assert_eq!(
        s.get(&format!("{board}?limit=3")).await.status,
        422,
        "above maxParticipants"
    );
    assert_eq!(s.get(&format!("{board}?offset=-1")).await.status, 422);
    assert_eq!(
        s.get(&format!("{board}?userAttributes=a:b")).await.status,
        422
    );
    assert_eq!(s.get(&format!("{board}?run=2026-12-01")).await.status, 422);
    assert_error(&s.get("/v1/leaderboards/nope").await, 404);
    let list = s.get("/v1/leaderboards").await.body;
    assert_eq!(list[0]["key"], "weekly");

    // The user's own standing and daily history (two changes on one day: the last wins).
    let carol = s.get("/v1/users/carol/leaderboards/weekly").await;
    assert_eq!(carol.status, 200, "{:?}", carol.body);
    assert_eq!(
        (carol.body["rank"].clone(), carol.body["value"].clone()),
        (json!(2), json!(301))
    );
    assert_eq!(
        carol.body["history"],
        json!([{"date": "2027-01-03", "timestamp": "2027-01-03T00:00:00.000Z",
                "previousRank": null, "rank": 2, "previousValue": null, "value": 301}])
    );
    let bob = s.get("/v1/users/bob/leaderboards/weekly").await.body;
    assert_eq!(
        (bob["rank"].clone(), bob["value"].clone()),
        (json!(null), json!(300)),
        "evicted, value kept"
    );
    assert_error(&s.get("/v1/users/nobody/leaderboards/weekly").await, 404);
    assert_error(
        &s.get("/v1/users/carol/leaderboards/weekly?numEvents=101")
            .await,
        422,
    );

    // The ranking is rebuilt from its entries after a restart.
    let s = s.restart().await;
    let want = json!([["alice", 1, 500], ["carol", 2, 301]]);
    assert_eq!(rankings_settle(&s, board, &want).await, want);
    // Run 1 starts on 2027-01-10: the current run is empty, run 0 stays readable.
    s.set_clock("2027-01-10T12:00:00Z").await;
    words(&s, "bob", 5.0).await;
    let want = json!([["bob", 1, 5]]);
    assert_eq!(rankings_settle(&s, board, &want).await, want);
    let old = json!([["alice", 1, 500], ["carol", 2, 301]]);
    assert_eq!(
        rankings_settle(&s, &format!("{board}?run=2027-01-05"), &old).await,
        old
    );
    let bob = s.get("/v1/users/bob/leaderboards/weekly").await.body;
    assert_eq!(
        (bob["rank"].clone(), bob["value"].clone()),
        (json!(1), json!(5))
    );
    assert_eq!(bob["history"][0]["date"], "2027-01-10");
    let bob_then = s
        .get("/v1/users/bob/leaderboards/weekly?run=2027-01-04")
        .await
        .body;
    assert_eq!(bob_then["value"], 300);
}

/// Sends words and makes the boards write what the event changed (a history read writes
/// pending rows first), so the effects of each event are counted on their own.
async fn words_written(s: &TestServer, user: &str, value: f64) {
    words(s, user, value).await;
    let r = s
        .get(&format!("/v1/users/{user}/leaderboards/weekly?numEvents=1"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_start_and_finish_on_the_clock_and_rank_changes_are_effects() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-01-03T12:00:00Z").await;
    let id = spec_7_8_board(&s).await;
    let runs = format!("{id}/runs");
    // Activated after run 0's start moment (10:00 UTC the day before): started at once.
    assert_eq!(s.tally(&runs).await["runsStarted"], 1);

    // SPEC §7.8: Alice and Bob enter; Carol enters and evicts Bob: four rank changes, and
    // each event changed the rankings.
    words_written(&s, "alice", 500.0).await;
    words_written(&s, "bob", 300.0).await;
    words_written(&s, "carol", 300.0).await;
    let t = s.tally(&id).await;
    assert_eq!(
        (t["rankChanges"].clone(), t["boardChanges"].clone()),
        (json!(2), json!(2)),
        "{t}"
    );
    words_written(&s, "carol", 1.0).await;
    let t = s.tally(&id).await;
    assert_eq!(
        (t["rankChanges"].clone(), t["boardChanges"].clone()),
        (json!(4), json!(3)),
        "{t}"
    );
    // Bob's history shows the day he was evicted.
    let bob = s
        .get("/v1/users/bob/leaderboards/weekly?numEvents=5")
        .await
        .body;
    assert_eq!(bob["rank"], Value::Null, "{bob}");
    assert_eq!(bob["history"].as_array().map(Vec::len), Some(1), "{bob}");
    assert_eq!(bob["history"][0]["rank"], Value::Null, "{bob}");

    // Run 1 (01-10..01-16) starts at 10:00 UTC on 01-09; run 0 finishes at 13:00 UTC on
    // 01-10, once.
    s.set_clock("2027-01-09T09:59:00Z").await;
    assert_eq!(s.tally(&runs).await["runsStarted"], 1);
    s.set_clock("2027-01-09T10:00:00Z").await;
    assert_eq!(s.tally(&runs).await["runsStarted"], 2);
    s.set_clock("2027-01-10T12:59:00Z").await;
    assert_eq!(s.tally(&runs).await["runsFinished"], 0);
    s.set_clock("2027-01-10T13:00:00Z").await;
    assert_eq!(s.tally(&runs).await["runsFinished"], 1);
    s.set_clock("2027-01-11T13:00:00Z").await;
    let t = s.tally(&runs).await;
    assert_eq!(
        (t["runsStarted"].clone(), t["runsFinished"].clone()),
        (json!(2), json!(1))
    );

    // A manual finish finishes the current run at once, and nothing starts after it.
    let r = s
        .patch(
            "/admin/v1/leaderboards",
            json!([{"id": id, "status": "finished"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(s.tally(&runs).await["runsFinished"], 2);
    s.set_clock("2027-01-20T13:00:00Z").await;
    let t = s.tally(&runs).await;
    assert_eq!(
        (t["runsStarted"].clone(), t["runsFinished"].clone()),
        (json!(2), json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_before_activation_counts_once_in_its_run() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-02-28T11:00:00Z").await;
    let metric = s.create_metrics(&["words"]).await.remove(0);
    // Before the board exists: Alice writes on Feb 28 (before the run) and Mar 1; Bob on
    // Mar 1.
    s.set_clock("2027-02-28T12:00:00Z").await;
    words(&s, "alice", 1000.0).await;
    s.set_clock("2027-03-01T08:00:00Z").await;
    words(&s, "alice", 40.0).await;
    words(&s, "bob", 50.0).await;
    s.set_clock("2027-03-01T09:00:00Z").await;
    let r = s
        .post(
            "/admin/v1/leaderboards",
            json!([{"name": "March", "key": "weekly", "rankBy": "metric", "metricId": metric,
                    "start": "2027-03-01", "runUnit": "month", "runInterval": 1,
                    "status": "active"}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["created"][0]["id"].as_str().expect("id").to_string();
    let board = "/v1/leaderboards/weekly";
    let want = json!([["bob", 1, 50], ["alice", 2, 40]]);
    assert_eq!(rankings_settle(&s, board, &want).await, want);
    // Live activity adds to the seeded values.
    words(&s, "alice", 20.0).await;
    let want = json!([["alice", 1, 60], ["bob", 2, 50]]);
    assert_eq!(rankings_settle(&s, board, &want).await, want);
    // Paused and activated again: nobody is seeded a second time.
    for status in ["inactive", "active"] {
        let r = s
            .patch(
                "/admin/v1/leaderboards",
                json!([{"id": id, "status": status}]),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // Once the second job visited everyone, nothing moved.
    s.jobs_done().await;
    words(&s, "bob", 1.0).await;
    let want = json!([["alice", 1, 60], ["bob", 2, 51]]);
    assert_eq!(rankings_settle(&s, board, &want).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_roll_over_at_each_users_local_midnight() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-01-05T12:00:00Z").await;
    let metric = s.create_metrics(&["words"]).await.remove(0);
    let r = s
        .post(
            "/admin/v1/leaderboards",
            json!([{"name": "Daily", "key": "weekly", "rankBy": "metric", "metricId": metric,
                    "start": "2027-01-01", "runUnit": "day", "runInterval": 1,
                    "status": "active"}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    for (user, tz) in [("tokyo", "Asia/Tokyo"), ("la", "America/Los_Angeles")] {
        let r = s
            .put(&format!("/v1/users/{user}"), json!({ "tz": tz }))
            .await;
        assert!(r.status == 200 || r.status == 201, "{:?}", r.body);
    }
    // 16:00 UTC on Jan 5: already Jan 6 in Tokyo (01:00), still Jan 5 in Los Angeles (08:00).
    s.set_clock("2027-01-05T16:00:00Z").await;
    let tokyo = words(&s, "tokyo", 10.0).await;
    let la = words(&s, "la", 20.0).await;
    assert_eq!(
        tokyo["leaderboards"]["weekly"]["start"], "2027-01-06",
        "{tokyo}"
    );
    assert_eq!(la["leaderboards"]["weekly"]["start"], "2027-01-05", "{la}");
    let board = "/v1/leaderboards/weekly";
    // Today (UTC) is Jan 5: the current run holds Los Angeles only, and Tokyo's run is
    // not readable yet (after the current run, SPEC §7.2.4).
    let want = json!([["la", 1, 20]]);
    assert_eq!(rankings_settle(&s, board, &want).await, want);
    assert_eq!(s.get(&format!("{board}?run=2027-01-06")).await.status, 422);
    s.set_clock("2027-01-06T01:00:00Z").await;
    let want = json!([["tokyo", 1, 10]]);
    assert_eq!(rankings_settle(&s, board, &want).await, want);
    let want = json!([["la", 1, 20]]);
    assert_eq!(
        rankings_settle(&s, &format!("{board}?run=2027-01-05"), &want).await,
        want
    );
    let mine = s
        .get("/v1/users/la/leaderboards/weekly?run=2027-01-05&numEvents=3")
        .await
        .body;
    assert_eq!(
        (mine["rank"].clone(), mine["value"].clone()),
        (json!(1), json!(20)),
        "{mine}"
    );
    assert_eq!(mine["history"][0]["date"], "2027-01-05", "{mine}");
}
