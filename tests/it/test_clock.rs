use serde_json::json;

use crate::support::{assert_error, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_clock_moves_forward_and_survives_restart() {
    let s = TestServer::start_with_test_clock().await;
    let now = s.get("/admin/v1/test-clock").await;
    assert_eq!(now.status, 200);
    assert!(now.body["now"].as_str().is_some_and(|t| t.ends_with('Z')));

    let set = s
        .post(
            "/admin/v1/test-clock",
            json!({"now": "2030-05-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(set.body, json!({"now": "2030-05-01T10:00:00.000Z"}));
    let adv = s
        .post("/admin/v1/test-clock", json!({"advanceSeconds": 90}))
        .await;
    assert_eq!(adv.body, json!({"now": "2030-05-01T10:01:30.000Z"}));

    assert_error(
        &s.post(
            "/admin/v1/test-clock",
            json!({"now": "2030-05-01T09:00:00Z"}),
        )
        .await,
        422,
    );
    assert_error(
        &s.post("/admin/v1/test-clock", json!({"advanceSeconds": 0}))
            .await,
        422,
    );
    assert_error(
        &s.post("/admin/v1/test-clock", json!({"advanceSeconds": -5}))
            .await,
        422,
    );
    assert_error(
        &s.post("/admin/v1/test-clock", json!({"now": "yesterday"}))
            .await,
        422,
    );
    assert_error(&s.post("/admin/v1/test-clock", json!({})).await, 400);
    assert_error(
        &s.post("/admin/v1/test-clock", json!({"advanceSeconds": "5"}))
            .await,
        400,
    );

    // Domain time follows the clock: user timestamps come from it.
    let user = s.put("/v1/users/t1", json!({})).await;
    assert_eq!(user.body["created"], "2030-05-01T10:01:30.000Z");

    let s = s.restart().await;
    assert_eq!(
        s.get("/admin/v1/test-clock").await.body,
        json!({"now": "2030-05-01T10:01:30.000Z"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_clock_is_absent_without_the_flag() {
    let s = TestServer::start().await;
    assert_error(&s.get("/admin/v1/test-clock").await, 404);
    assert_error(
        &s.post("/admin/v1/test-clock", json!({"advanceSeconds": 5}))
            .await,
        404,
    );
}
