use reqwest::Method;
use serde_json::json;

use crate::support::{assert_error, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_on_both_apis() {
    let s = TestServer::start().await;
    for path in ["/v1/users/u", "/admin/v1/metrics"] {
        let missing = s.call(Method::GET, path, None, &[("X-API-KEY", "")]).await;
        assert_error(&missing, 401);
        let wrong = s
            .call(Method::GET, path, None, &[("X-API-KEY", "testkey1.wrong")])
            .await;
        assert_error(&wrong, 401);
        let garbage = s
            .call(Method::GET, path, None, &[("X-API-KEY", "garbage")])
            .await;
        assert_error(&garbage, 401);
    }
    let health = s
        .call(Method::GET, "/healthz", None, &[("X-API-KEY", "")])
        .await;
    assert_eq!(
        (health.status, health.body.clone()),
        (200, json!({"status": "ok"}))
    );
    let ready = s
        .call(Method::GET, "/readyz", None, &[("X-API-KEY", "")])
        .await;
    assert_eq!(ready.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_methods_and_bodies_get_json_errors() {
    let s = TestServer::start().await;
    assert_error(&s.get("/v1/nothing-here").await, 404);
    assert_error(&s.get("/nothing").await, 404);
    let not_allowed = s.delete("/v1/users/u1").await;
    assert_error(&not_allowed, 405);
    assert!(
        not_allowed.headers.get("allow").is_some(),
        "405 keeps its Allow header"
    );
    assert_error(&s.post_raw("/v1/users", "{not json").await, 400);
    assert_error(&s.post_raw("/v1/users", "").await, 400);
    assert_error(&s.post_raw("/v1/users", "[1,2]").await, 400);
    // The test server's body limit is 64 KiB.
    let big = format!("{{\"id\": \"{}\"}}", "a".repeat(70 * 1024));
    assert_error(&s.post_raw("/v1/users", big).await, 413);
    // Still healthy, nothing written.
    assert_error(&s.get("/v1/users/a").await, 404);
    assert_eq!(s.get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_never_cause_500() {
    let s = TestServer::start().await;
    s.create_metrics(&["m"]).await;
    let bodies = [
        json!(null),
        json!(1),
        json!("s"),
        json!({"user": null, "value": 1}),
        json!({"user": {"id": "u", "tz": 5}, "value": 1}),
        json!({"user": {"id": "u"}, "value": 1e308, "attributes": []}),
        json!({"user": {"id": "u\u{0000}x"}, "value": -0.0}),
        json!({"user": {"id": "u", "deviceTokens": "a"}, "value": 1}),
    ];
    for body in bodies {
        let r = s.post("/v1/metrics/m/event", body.clone()).await;
        assert!(r.status < 500, "{body} -> {} {:?}", r.status, r.body);
        assert!(
            r.body.get("error").is_some() || r.status == 201,
            "{body} -> {:?}",
            r.body
        );
    }
    for path in [
        "/v1/users/%FF",
        "/v1/users/a%2Fb/metrics",
        "/admin/v1/metrics/not-a-uuid",
        "/admin/v1/metrics?limit=abc",
        "/v1/users/u/metrics/m/event-summary?aggregation=hourly",
    ] {
        let r = s.get(path).await;
        assert!((400..500).contains(&r.status), "{path} -> {}", r.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_need_no_key_and_use_route_templates() {
    let s = TestServer::start().await;
    s.create_metrics(&["m"]).await;
    assert_eq!(s.event("m", "u1", 1.0).await.status, 201);
    s.get("/v1/no/such/path/abc").await;
    let r = reqwest::get(format!("{}/metrics", s.base))
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    let text = r.text().await.expect("body");
    for line in [
        "kudos_http_requests_total{method=\"POST\",route=\"/v1/metrics/{key}/event\",status=\"201\"} 1",
        "kudos_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "kudos_events_ingested_total 1",
        "kudos_user_actors_live 1",
        "kudos_users 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("/v1/no/such/path"),
        "raw paths never become series"
    );
    assert!(text.contains("kudos_journal_fsyncs_total "));
}
