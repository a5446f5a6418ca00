use serde_json::json;

use crate::support::{assert_error, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_and_duplicate() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/v1/users",
            json!({"id": "u1", "name": "Ann", "email": "ann@example.com"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let u = &r.body;
    assert_eq!(u["id"], "u1");
    assert_eq!(u["name"], "Ann");
    assert_eq!(u["email"], "ann@example.com");
    assert_eq!(u["tz"], json!(null));
    assert_eq!(u["subscribeToEmails"], true);
    assert_eq!(u["attributes"], json!({}));
    assert_eq!(u["control"], false);
    assert_eq!(u["signUpDate"], json!(null));
    assert!(u.get("deviceTokens").is_none(), "omitted when never set");
    assert!(u["created"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(u["created"], u["updated"]);

    let got = s.get("/v1/users/u1").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, r.body);

    let dup = s.post("/v1/users", json!({"id": "u1"})).await;
    assert_error(&dup, 422);
    assert_eq!(dup.body["error"], "User already exists");
    assert_error(&s.get("/v1/users/nobody").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_upserts_and_patch_requires_existing_user() {
    let s = TestServer::start().await;
    s.create_attributes(&[("plan", "user"), ("country", "user"), ("device", "event")])
        .await;
    assert_error(&s.patch("/v1/users/u2", json!({"name": "x"})).await, 404);

    let created = s
        .put(
            "/v1/users/u2",
            json!({"tz": "Europe/London", "attributes": {"plan": "free"}, "deviceTokens": ["a", "b", "a"], "id": "ignored"}),
        )
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert_eq!(created.body["id"], "u2");
    assert_eq!(created.body["deviceTokens"], json!(["a", "b"]));

    let updated = s
        .patch(
            "/v1/users/u2",
            json!({"attributes": {"country": "UK"}, "tz": null, "name": "Bo"}),
        )
        .await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    assert_eq!(
        updated.body["attributes"],
        json!({"plan": "free", "country": "UK"})
    );
    assert_eq!(updated.body["tz"], json!(null));
    assert_eq!(updated.body["name"], "Bo");
    assert_eq!(
        updated.body["deviceTokens"],
        json!(["a", "b"]),
        "omitted fields are kept"
    );
    assert_eq!(updated.body["created"], created.body["created"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_user_fields_are_rejected_and_nothing_is_written() {
    let s = TestServer::start().await;
    s.create_attributes(&[("plan", "user"), ("device", "event")])
        .await;
    let cases = [
        (json!({"id": "v", "tz": "Mars/Base"}), 422),
        (json!({"id": "v", "email": "not-an-email"}), 422),
        (json!({"id": "v", "subscribeToEmails": true}), 422),
        (json!({"id": "v", "attributes": {"device": "ios"}}), 422),
        (
            json!({"id": "v", "attributes": {"unknown": "1", "plan": "x"}}),
            422,
        ),
        (json!({"id": "v", "signUpDate": "2999-01-01"}), 422),
        (json!({"id": "v", "signUpDate": "soon"}), 422),
        (json!({"id": "v", "attributes": {"plan": 3}}), 400),
        (json!({"id": "v", "email": 12}), 400),
        (json!({"id": 12}), 400),
        (json!({"name": "no id"}), 400),
        (json!({"id": "x".repeat(256)}), 422),
        (json!({"id": ""}), 422),
    ];
    for (body, status) in cases {
        let r = s.post("/v1/users", body.clone()).await;
        assert_error(&r, status);
        if body == json!({"id": "v", "attributes": {"unknown": "1", "plan": "x"}}) {
            assert!(r.body["error"]
                .as_str()
                .is_some_and(|m| m.starts_with("Invalid attribute keys: unknown.")));
        }
    }
    assert_error(&s.get("/v1/users/v").await, 404);
    // 255 characters is the longest id.
    let long = "y".repeat(255);
    assert_eq!(s.post("/v1/users", json!({"id": long})).await.status, 201);
    assert_eq!(s.get(&format!("/v1/users/{long}")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_discards_the_email() {
    let s = TestServer::start().await;
    let r = s
        .put(
            "/v1/users/e1",
            json!({"email": "a@b.co", "subscribeToEmails": false}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["email"], json!(null));
    assert_eq!(r.body["subscribeToEmails"], false);
    let r = s
        .put(
            "/v1/users/e1",
            json!({"email": "a@b.co", "subscribeToEmails": true}),
        )
        .await;
    assert_eq!(r.body["email"], "a@b.co");
    let r = s.patch("/v1/users/e1", json!({"email": null})).await;
    assert_eq!(r.body["email"], json!(null));
    // Only an email sent together with `subscribeToEmails: false` is discarded.
    s.patch("/v1/users/e1", json!({"subscribeToEmails": false}))
        .await;
    let r = s
        .patch("/v1/users/e1", json!({"email": "later@b.co"}))
        .await;
    assert_eq!(
        (r.body["email"].clone(), r.body["subscribeToEmails"].clone()),
        (json!("later@b.co"), json!(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_date_accepts_dates_and_date_times() {
    let s = TestServer::start().await;
    let r = s
        .put("/v1/users/d1", json!({"signUpDate": "2024-02-29"}))
        .await;
    assert_eq!(r.body["signUpDate"], "2024-02-29");
    let r = s
        .put(
            "/v1/users/d1",
            json!({"signUpDate": "2024-03-01T23:30:00-05:00"}),
        )
        .await;
    assert_eq!(r.body["signUpDate"], "2024-03-02");
    let r = s.put("/v1/users/d1", json!({"signUpDate": null})).await;
    assert_eq!(r.body["signUpDate"], json!(null));
}
