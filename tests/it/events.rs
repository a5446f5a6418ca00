use reqwest::Method;
use serde_json::json;

use crate::support::{assert_error, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_creates_the_user_inline_and_accumulates() {
    let s = TestServer::start().await;
    let ids = s.create_metrics(&["lessons", "minutes"]).await;
    s.create_attributes(&[("plan", "user"), ("device", "event")])
        .await;
    let r = s
        .post(
            "/v1/metrics/lessons/event",
            json!({"user": {"id": "u1", "tz": "America/New_York", "attributes": {"plan": "pro"}}, "value": 2.5, "attributes": {"device": "ios"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let b = &r.body;
    assert_eq!(b["metricId"], ids[0].as_str());
    assert_eq!(b["total"], 2.5);
    assert!(uuid::Uuid::parse_str(b["eventId"].as_str().expect("eventId")).is_ok());
    assert_eq!(b["achievements"], json!([]));
    assert_eq!(b["points"], json!({}));
    assert_eq!(b["leaderboards"], json!({}));
    assert_eq!(
        b["currentStreak"],
        json!({"length": 0, "frequency": "daily", "started": null, "periodStart": null, "periodEnd": null, "expires": null, "extended": false})
    );
    assert!(b.get("idempotencyKey").is_none() && b.get("idempotentReplayed").is_none());

    let user = s.get("/v1/users/u1").await;
    assert_eq!(user.body["tz"], "America/New_York");
    assert_eq!(user.body["attributes"], json!({"plan": "pro"}));

    assert_eq!(s.event("lessons", "u1", -1.0).await.body["total"], 1.5);
    assert_eq!(s.event("lessons", "u1", 0.0).await.body["total"], 1.5);
    assert_eq!(s.event("minutes", "u1", 30.0).await.body["total"], 30.0);

    let metrics = s.get("/v1/users/u1/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.body,
        json!([
            {"id": ids[0], "key": "lessons", "name": "Metric lessons", "status": "active", "current": 1.5, "achievements": []},
            {"id": ids[1], "key": "minutes", "name": "Metric minutes", "status": "active", "current": 30.0, "achievements": []},
        ])
    );
    let one = s.get("/v1/users/u1/metrics/minutes").await;
    assert_eq!(one.body["current"], 30.0);
    assert_error(&s.get("/v1/users/u1/metrics/nope").await, 404);
    assert_error(&s.get("/v1/users/nobody/metrics").await, 404);
    assert_error(&s.get("/v1/users/nobody/metrics/lessons").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_with_202() {
    let s = TestServer::start().await;
    s.create_metrics(&["a", "b"]).await;
    let send = |metric: &'static str, user: &'static str, key: &'static str, value: f64| {
        let s = &s;
        async move {
            s.call(
                Method::POST,
                &format!("/v1/metrics/{metric}/event"),
                Some(json!({"user": {"id": user}, "value": value})),
                &[("Idempotency-Key", key)],
            )
            .await
        }
    };
    let first = send("a", "u1", "k1", 1.0).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["idempotencyKey"], "k1");
    assert_eq!(first.body["idempotentReplayed"], false);

    let replay = send("a", "u1", "k1", 100.0).await;
    assert_eq!(replay.status, 202, "{:?}", replay.body);
    assert_eq!(replay.body["eventId"], first.body["eventId"]);
    assert_eq!(replay.body["total"], 1.0);
    assert_eq!(replay.body["idempotentReplayed"], true);
    assert_eq!(replay.body["achievements"], json!([]));

    // Same key, other metric or other user: independent.
    assert_eq!(send("b", "u1", "k1", 1.0).await.status, 201);
    assert_eq!(send("a", "u2", "k1", 1.0).await.status, 201);
    // Empty key = no key; over-long key = 422 with nothing written.
    let empty = send("a", "u1", "", 1.0).await;
    assert_eq!(empty.status, 201);
    assert!(empty.body.get("idempotencyKey").is_none());
    let long: &'static str = Box::leak("k".repeat(256).into_boxed_str());
    assert_error(&send("a", "u1", long, 1.0).await, 422);
    assert_eq!(s.get("/v1/users/u1/metrics/a").await.body["current"], 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_write_nothing() {
    let s = TestServer::start().await;
    let ids = s.create_metrics(&["m", "gone"]).await;
    s.create_attributes(&[("device", "event"), ("plan", "user")])
        .await;
    assert_error(&s.event("unknown", "u1", 1.0).await, 404);
    let deleted = s.delete(&format!("/admin/v1/metrics?ids={}", ids[1])).await;
    assert_eq!(deleted.status, 200);
    assert_error(&s.event("gone", "u1", 1.0).await, 404);
    let cases = [
        (
            json!({"user": {"id": "u1"}, "value": 1, "attributes": {"plan": "x"}}),
            422,
        ),
        (
            json!({"user": {"id": "u1", "tz": "Nowhere/Land"}, "value": 1}),
            422,
        ),
        (
            json!({"user": {"id": "u1", "attributes": {"device": "x"}}, "value": 1}),
            422,
        ),
        (json!({"user": {"id": "u1"}, "value": "1"}), 400),
        (json!({"user": {"id": "u1"}}), 400),
        (json!({"value": 1}), 400),
        (
            json!({"user": {"id": "u1"}, "value": 1, "attributes": {"device": 1}}),
            400,
        ),
    ];
    for (body, status) in cases {
        assert_error(&s.post("/v1/metrics/m/event", body).await, status);
    }
    assert_error(&s.get("/v1/users/u1").await, 404);
    let ok = s
        .post(
            "/v1/metrics/m/event",
            json!({"user": {"id": "u1"}, "value": 1, "attributes": {"device": "web"}}),
        )
        .await;
    assert_eq!(ok.status, 201);
    assert_eq!(ok.body["total"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_summary_buckets_in_the_users_zone() {
    let s = TestServer::start_with_test_clock().await;
    s.create_metrics(&["m"]).await;
    // 2030-01-02 23:30 in New York is 2030-01-03 04:30 UTC.
    let set = s
        .post(
            "/admin/v1/test-clock",
            json!({"now": "2030-01-03T04:30:00Z"}),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    let r = s
        .post(
            "/v1/metrics/m/event",
            json!({"user": {"id": "ny", "tz": "America/New_York"}, "value": 3}),
        )
        .await;
    assert_eq!(r.status, 201);
    s.post("/admin/v1/test-clock", json!({"advanceSeconds": 3600}))
        .await;
    assert_eq!(s.event("m", "ny", 2.0).await.status, 201);

    let daily = s
        .get("/v1/users/ny/metrics/m/event-summary?aggregation=daily&startDate=2030-01-01&endDate=2030-01-04")
        .await;
    assert_eq!(daily.status, 200, "{:?}", daily.body);
    assert_eq!(
        daily.body,
        json!([
            {"date": "2030-01-01", "total": 0.0, "change": 0.0},
            {"date": "2030-01-02", "total": 3.0, "change": 3.0},
            {"date": "2030-01-03", "total": 5.0, "change": 2.0},
            {"date": "2030-01-04", "total": 5.0, "change": 0.0},
        ])
    );
    let weekly = s
        .get("/v1/users/ny/metrics/m/event-summary?aggregation=weekly&startDate=2030-01-01&endDate=2030-01-10")
        .await;
    assert_eq!(
        weekly.body,
        json!([
            {"date": "2029-12-30", "total": 5.0, "change": 5.0},
            {"date": "2030-01-06", "total": 5.0, "change": 0.0},
        ])
    );
    let monthly = s
        .get("/v1/users/ny/metrics/m/event-summary?aggregation=monthly&startDate=2029-12-15&endDate=2030-01-10")
        .await;
    assert_eq!(
        monthly.body[1],
        json!({"date": "2030-01-01", "total": 5.0, "change": 5.0})
    );

    for bad in [
        "aggregation=daily&startDate=2030-01-04&endDate=2030-01-04",
        "aggregation=daily&startDate=2030-01-01&endDate=2031-03-01",
        "aggregation=yearly&startDate=2030-01-01&endDate=2030-01-04",
        "startDate=2030-01-01&endDate=2030-01-04",
        "aggregation=daily&startDate=01/01/2025&endDate=2030-01-04",
        "aggregation=weekly&startDate=%2B262142-12-20&endDate=%2B262142-12-30",
        "aggregation=weekly&startDate=-262143-01-01&endDate=-262143-01-05",
    ] {
        assert_error(
            &s.get(&format!("/v1/users/ny/metrics/m/event-summary?{bad}"))
                .await,
            422,
        );
    }
    assert_error(
        &s.get("/v1/users/nobody/metrics/m/event-summary?aggregation=daily&startDate=2030-01-01&endDate=2030-01-04")
            .await,
        404,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_events_are_all_or_nothing_and_processed_like_single_events() {
    let s = TestServer::start().await;
    s.create_metrics(&["m", "n"]).await;
    s.create_attributes(&[("device", "event")]).await;
    let unknown = s
        .post(
            "/admin/v1/metrics/events",
            json!([{"key": "m", "user": {"id": "b1"}, "value": 1}, {"key": "zzz", "user": {"id": "b1"}, "value": 1}]),
        )
        .await;
    assert_error(&unknown, 404);
    assert_eq!(unknown.body["error"], "Metric not found");
    let bad_attr = s
        .post(
            "/admin/v1/metrics/events",
            json!([{"key": "m", "user": {"id": "b1"}, "value": 1}, {"key": "m", "user": {"id": "b1"}, "value": 1, "attributes": {"nope": "x"}}]),
        )
        .await;
    assert_error(&bad_attr, 422);
    assert_error(&s.post("/admin/v1/metrics/events", json!([])).await, 422);
    assert_error(
        &s.post("/admin/v1/metrics/events", json!({"key": "m"}))
            .await,
        400,
    );
    assert_error(
        &s.post(
            "/admin/v1/metrics/events",
            json!([{"key": "m", "value": 1}]),
        )
        .await,
        400,
    );
    assert_error(&s.get("/v1/users/b1").await, 404);

    let ok = s
        .post(
            "/admin/v1/metrics/events",
            json!([
                {"key": "m", "user": {"id": "b1", "name": "B"}, "value": 1, "idempotencyKey": "x"},
                {"key": "m", "user": {"id": "b1"}, "value": 5, "idempotencyKey": "x"},
                {"key": "n", "user": {"id": "b2"}, "value": 2, "attributes": {"device": "web"}},
                {"key": "m", "user": {"id": "b1"}, "value": 2},
            ]),
        )
        .await;
    assert_eq!(ok.status, 202, "{:?}", ok.body);
    assert_eq!(ok.body, json!({"accepted": 4}));
    assert_eq!(s.get("/v1/users/b1/metrics/m").await.body["current"], 3.0);
    assert_eq!(s.get("/v1/users/b1").await.body["name"], "B");
    assert_eq!(s.get("/v1/users/b2/metrics/n").await.body["current"], 2.0);
    // The batch key shares the namespace of the Idempotency-Key header.
    let replay = s
        .call(
            Method::POST,
            "/v1/metrics/m/event",
            Some(json!({"user": {"id": "b1"}, "value": 9})),
            &[("Idempotency-Key", "x")],
        )
        .await;
    assert_eq!(replay.status, 202);
    let too_many: Vec<_> = (0..1001)
        .map(|i| json!({"key": "m", "user": {"id": format!("u{i}")}, "value": 1}))
        .collect();
    assert_error(
        &s.post("/admin/v1/metrics/events", json!(too_many)).await,
        422,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_totals_are_rejected() {
    let s = TestServer::start().await;
    s.create_metrics(&["m"]).await;
    assert_eq!(s.event("m", "big", 1e308).await.status, 201);
    assert_error(&s.event("m", "big", 1e308).await, 422);
    assert_eq!(
        s.get("/v1/users/big/metrics/m").await.body["current"],
        1e308
    );
    // Sums by event attributes and streak period sums must stay finite too.
    s.create_attributes(&[("device", "event")]).await;
    s.patch(
        "/admin/v1/streaks/settings",
        json!({"metrics": [{"key": "m", "threshold": 1}]}),
    )
    .await;
    let neg = s.event("m", "split", -1.7e308).await;
    assert_eq!(neg.status, 201);
    let tagged = json!({"user": {"id": "split"}, "value": 1.7e308, "attributes": {"device": "a"}});
    assert_eq!(
        s.post("/v1/metrics/m/event", tagged.clone()).await.status,
        201
    );
    assert_error(&s.post("/v1/metrics/m/event", tagged).await, 422);
    // Still recoverable after a restart.
    let s = s.restart().await;
    assert_eq!(
        s.get("/v1/users/big/metrics/m").await.body["current"],
        1e308
    );
    assert_eq!(s.get("/v1/users/split").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_key_is_answered_before_the_rest_of_the_body_is_validated() {
    let s = TestServer::start().await;
    s.create_metrics(&["m"]).await;
    let first = s
        .call(
            Method::POST,
            "/v1/metrics/m/event",
            Some(json!({"user": {"id": "r"}, "value": 4})),
            &[("Idempotency-Key", "once")],
        )
        .await;
    assert_eq!(first.status, 201);
    let replay = s
        .call(
            Method::POST,
            "/v1/metrics/m/event",
            Some(json!({"user": {"id": "r", "tz": 5}, "value": "x"})),
            &[("Idempotency-Key", "once")],
        )
        .await;
    assert_eq!(replay.status, 202, "{:?}", replay.body);
    assert_eq!(replay.body["eventId"], first.body["eventId"]);
    assert_eq!(replay.body["total"], 4.0);
    // Without a known key the same body is a 400.
    let fresh = s
        .call(
            Method::POST,
            "/v1/metrics/m/event",
            Some(json!({"user": {"id": "r", "tz": 5}, "value": "x"})),
            &[("Idempotency-Key", "new")],
        )
        .await;
    assert_error(&fresh, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_validation_includes_rules_that_depend_on_the_user() {
    let s = TestServer::start().await;
    s.create_metrics(&["m"]).await;
    for bad in [
        json!({"key": "m", "user": {"id": "nomail", "subscribeToEmails": true}, "value": 1}),
        json!({"key": "m", "user": {"id": "nomail", "signUpDate": "someday"}, "value": 1}),
        json!({"key": "m", "user": {"id": "nomail"}, "value": 1e308}),
    ] {
        let r = s
            .post("/admin/v1/metrics/events", json!([{"key": "m", "user": {"id": "fine"}, "value": 1}, {"key": "m", "user": {"id": "nomail"}, "value": 1e308}, bad]))
            .await;
        assert_error(&r, 422);
    }
    assert_error(&s.get("/v1/users/fine").await, 404);
    assert_error(&s.get("/v1/users/nomail").await, 404);
    // A user whose stored email makes the subscription valid passes.
    s.put("/v1/users/hasmail", json!({"email": "a@b.co"})).await;
    let ok = s
        .post(
            "/admin/v1/metrics/events",
            json!([{"key": "m", "user": {"id": "hasmail", "subscribeToEmails": true}, "value": 1}]),
        )
        .await;
    assert_eq!(ok.status, 202, "{:?}", ok.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_expire_after_the_configured_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("KUDOS_TEST_CLOCK", "1"),
        ("KUDOS_IDEMPOTENCY_WINDOW", "1h"),
    ];
    let server = crate::binary::Binary::start(dir.path(), &env).await;
    let (status, _) = server
        .post("/admin/v1/metrics", json!([{"name": "Win", "key": "win"}]))
        .await;
    assert_eq!(status, 201);
    assert_eq!(server.event("win", "w1", "same").await, Some(201));
    assert_eq!(
        server.event("win", "w1", "same").await,
        Some(202),
        "inside the window"
    );
    let (status, _) = server
        .post("/admin/v1/test-clock", json!({"advanceSeconds": 1800}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server.event("win", "w1", "same").await,
        Some(202),
        "30 min on"
    );
    let (status, _) = server
        .post("/admin/v1/test-clock", json!({"advanceSeconds": 3600}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server.event("win", "w1", "same").await,
        Some(201),
        "90 min after first use the key is new again"
    );
    assert_eq!(server.total("w1", "win").await, 2.0);
    // The window survives a restart (keys are rows with their first-seen time).
    drop(server);
    let server = crate::binary::Binary::start(dir.path(), &env).await;
    assert_eq!(server.event("win", "w1", "same").await, Some(202));
}
