//! Environments (SPEC §9.2) with the real binary: `kudos environments create|list` and
//! `kudos keys create --environment` on the data directory, `GET /admin/v1/environments`,
//! and two environments whose keys see only their own data, configuration and tenants.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::binary::Binary;
use crate::support::KEY;

/// Runs `kudos <args>` on `dir`: (success, stdout, stderr).
fn kudos(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kudos"))
        .args(args)
        .env("KUDOS_DATA_DIR", dir)
        .env_remove("KUDOS_API_KEY")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run kudos");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn call(
    server: &Binary,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", server.base))
        .header("X-API-KEY", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_are_created_by_operators_and_fully_isolated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Binary::start(dir.path(), &[]).await;
    server.kill9();

    for (args, ok) in [
        (
            &[
                "environments",
                "create",
                "staging",
                "Staging",
                "--type",
                "staging",
            ][..],
            true,
        ),
        (
            &[
                "environments",
                "create",
                "dev-1",
                "Dev 1",
                "--type",
                "development",
            ][..],
            true,
        ),
        (
            &[
                "environments",
                "create",
                "staging",
                "Again",
                "--type",
                "staging",
            ][..],
            false,
        ),
        (
            &[
                "environments",
                "create",
                "prod2",
                "P",
                "--type",
                "production",
            ][..],
            false,
        ),
        (&["keys", "create", "--environment", "nope"][..], false),
    ] {
        let (success, _, err) = kudos(dir.path(), args);
        assert_eq!(success, ok, "{args:?}: {err}");
    }
    let (ok, out, err) = kudos(dir.path(), &["keys", "create", "--environment", "staging"]);
    assert!(ok, "{err}");
    let staging = out.trim().rsplit(' ').next().expect("a key").to_string();
    let (ok, out, _) = kudos(dir.path(), &["environments", "list"]);
    assert!(ok);
    let keys: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(keys, ["production", "staging", "dev-1"], "{out}");
    let (ok, out, _) = kudos(dir.path(), &["keys", "list"]);
    assert!(ok && out.contains("staging"), "{out}");

    let server = Binary::start(dir.path(), &[]).await;
    use reqwest::Method;
    let (status, body) = call(&server, Method::GET, "/admin/v1/environments", KEY, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!([
            {"name": "Production", "key": "production", "priority": 1},
            {"name": "Staging", "key": "staging", "priority": 2},
            {"name": "Dev 1", "key": "dev-1", "priority": 6}
        ])
    );

    // The same metric key and user id in both environments.
    for (key, value) in [(KEY, 3.0), (staging.as_str(), 7.0)] {
        let (status, body) = call(
            &server,
            Method::POST,
            "/admin/v1/metrics",
            key,
            Some(json!([{"name": "Words", "key": "words"}])),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = call(
            &server,
            Method::POST,
            "/v1/metrics/words/event",
            key,
            Some(json!({"user": {"id": "u1"}, "value": value})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for (key, total) in [(KEY, 3.0), (staging.as_str(), 7.0)] {
        let (_, body) = call(
            &server,
            Method::GET,
            "/v1/users/u1/metrics/words",
            key,
            None,
        )
        .await;
        assert_eq!(body["current"], total, "{body}");
        let (_, body) = call(&server, Method::GET, "/admin/v1/metrics", key, None).await;
        assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    }

    // Tenants belong to one environment: production becomes multi-tenant, staging does not.
    let (status, body) = call(
        &server,
        Method::POST,
        "/admin/v1/tenants",
        KEY,
        Some(json!([{"customerId": "acme", "name": "Acme"}])),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = call(&server, Method::GET, "/admin/v1/metrics", KEY, None).await;
    assert_eq!(status, 422, "production now needs a Tenant-ID");
    let (status, _) = call(&server, Method::GET, "/admin/v1/metrics", &staging, None).await;
    assert_eq!(status, 200);
    let (_, body) = call(&server, Method::GET, "/admin/v1/tenants", &staging, None).await;
    assert_eq!(body, json!([]));

    // An application key made with the staging admin key reads staging's data, and the
    // production key cannot delete it.
    let (status, body) = call(
        &server,
        Method::POST,
        "/admin/v1/application-api-keys",
        &staging,
        Some(json!([{"userId": "u1"}])),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let app_key = body["created"][0]["key"].as_str().expect("key").to_string();
    let app_id = body["created"][0]["id"].as_str().expect("id").to_string();
    let (_, body) = call(
        &server,
        Method::GET,
        "/v1/users/u1/metrics/words",
        &app_key,
        None,
    )
    .await;
    assert_eq!(body["current"], 7.0, "{body}");
    let path = format!("/admin/v1/application-api-keys?ids={app_id}");
    let (_, body) = call(&server, Method::DELETE, &path, KEY, None).await;
    assert_eq!(body["deleted"], json!([]), "{body}");
    let (_, body) = call(&server, Method::DELETE, &path, &staging, None).await;
    assert_eq!(body["deleted"], json!([{"id": app_id}]), "{body}");
}
