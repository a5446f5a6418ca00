//! `GET|PATCH /admin/v1/settings` (SPEC §9.5) and the control cohort it configures (§2.5).

use serde_json::{json, Value};

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_updated_in_part_validated_and_kept_across_a_restart() {
    let s = TestServer::start().await;
    let r = s.get("/admin/v1/settings").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["experimentation"]["controlRatio"], 0);
    assert_eq!(r.body["aggregationPeriod"], "weekly");
    assert_eq!(r.body["branding"]["logo"], Value::Null);

    let r = s
        .patch(
            "/admin/v1/settings",
            json!({"branding": {"appName": "Lingo", "brandColor": "rgb(10, 20, 30)",
                                "logo": {"url": "https://cdn.example.com/logo.png"}},
                   "aggregationPeriod": "monthly"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["branding"]["appName"], "Lingo");
    assert_eq!(r.body["branding"]["brandColor"], "rgb(10, 20, 30)");
    assert_eq!(
        r.body["branding"]["logo"]["url"],
        "https://cdn.example.com/logo.png"
    );
    assert_eq!(r.body["branding"]["font"], "MODERN_SANS", "untouched");
    assert_eq!(r.body["aggregationPeriod"], "monthly");

    // Omitted fields stay; null clears the logo.
    let r = s
        .patch(
            "/admin/v1/settings",
            json!({"branding": {"logo": null}, "experimentation": {"controlRatio": 25}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["branding"]["logo"], Value::Null);
    assert_eq!(r.body["branding"]["appName"], "Lingo");
    assert_eq!(r.body["experimentation"]["controlRatio"], 25);

    // Wrong JSON types are a 400, invalid values a 422; neither changes anything.
    for body in [
        json!({"experimentation": {"controlRatio": "ten"}}),
        json!({"branding": {"appName": 5}}),
        json!({"branding": "Lingo"}),
        json!({"branding": {"logo": {"url": 3}}}),
        json!([]),
    ] {
        let r = s.patch("/admin/v1/settings", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(r.body["error"].is_string(), "{:?}", r.body);
    }
    for (body, message) in [
        (
            json!({"experimentation": {"controlRatio": 101}}),
            "controlRatio",
        ),
        (
            json!({"experimentation": {"userActivationWindow": 0}}),
            "userActivationWindow",
        ),
        (json!({"branding": {"brandColor": "blue"}}), "brandColor"),
        (json!({"branding": {"font": "COMIC_SANS"}}), "font"),
        (json!({"branding": {"appUrl": "not a url"}}), "appUrl"),
        (json!({"aggregationPeriod": "daily"}), "aggregationPeriod"),
        (
            json!({"branding": {"appName": "Other", "brandColor": "#12"}}),
            "brandColor",
        ),
    ] {
        let r = s.patch("/admin/v1/settings", body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        let error = r.body["error"].as_str().expect("error");
        assert!(error.contains(message), "{error}");
    }
    let r = s.get("/admin/v1/settings").await;
    assert_eq!(
        r.body["branding"]["appName"], "Lingo",
        "nothing was applied"
    );
    assert_eq!(r.body["experimentation"]["controlRatio"], 25);

    let s = s.restart().await;
    let r = s.get("/admin/v1/settings").await;
    assert_eq!(r.body["branding"]["appName"], "Lingo");
    assert_eq!(r.body["experimentation"]["controlRatio"], 25);
    assert_eq!(r.body["aggregationPeriod"], "monthly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_ratio_places_new_users_only() {
    let s = TestServer::start().await;
    let created = |id: &'static str| {
        let s = &s;
        async move {
            let r = s.post("/v1/users", json!({"id": id})).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["control"].clone()
        }
    };
    assert_eq!(created("before").await, json!(false));
    let r = s
        .patch(
            "/admin/v1/settings",
            json!({"experimentation": {"controlRatio": 100}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Every new user is in control; the earlier one is never re-assigned.
    assert_eq!(created("after").await, json!(true));
    assert_eq!(s.get("/v1/users/after").await.body["control"], true);
    assert_eq!(s.get("/v1/users/before").await.body["control"], false);
    let r = s.patch("/v1/users/before", json!({"name": "Before"})).await;
    assert_eq!(r.body["control"], false, "{:?}", r.body);
    let r = s
        .patch(
            "/admin/v1/settings",
            json!({"experimentation": {"controlRatio": 0}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(created("later").await, json!(false));
    assert_eq!(s.get("/v1/users/after").await.body["control"], true);
}
