//! `/admin/v1/webhooks` (SPEC §11.3): endpoint CRUD in the bulk conventions, validation
//! issues, secret rotation, and the SSRF guard at creation.

use serde_json::{json, Value};

use crate::support::TestServer;

fn messages(body: &Value) -> Vec<(Value, String)> {
    body["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            (
                i.get("index")
                    .or_else(|| i.get("id"))
                    .cloned()
                    .unwrap_or(Value::Null),
                i["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_crud_validation_and_rotation() {
    let s = TestServer::start_with_test_clock().await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([
                {"url": "http://127.0.0.1:9/hooks", "name": "Receiver"},
                {"url": "https://hooks.example.com/x", "events": ["streak.lost", "achievement.completed"],
                 "method": "PUT", "headers": {"Authorization": "Bearer t"}, "payloadFormat": "envelope",
                 "status": "inactive", "description": "ops"},
                {"url": "ftp://example.com/"},
                {"url": "https://example.com/", "events": ["streak.nope"]},
                {"url": "https://example.com/", "headers": {"User-Agent": "me"}},
                {"url": "https://example.com/", "method": "GET"},
                {"url": "https://example.com/", "payloadFormat": "xml"},
                {"url": 7},
                {"name": "no url"},
                {"url": "https://user:pw@example.com/"},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = r.body["created"].as_array().expect("created").clone();
    assert_eq!(created.len(), 2, "{:?}", r.body);
    let a = &created[0];
    assert_eq!(
        (
            a["method"].clone(),
            a["status"].clone(),
            a["payloadFormat"].clone(),
            a["events"].clone()
        ),
        (
            json!("POST"),
            json!("active"),
            json!("trophy"),
            json!(["*"])
        )
    );
    assert_eq!(
        (a["name"].clone(), a["description"].clone()),
        (json!("Receiver"), Value::Null)
    );
    assert_eq!(a["headers"], json!({}));
    let secret = a["secret"].as_str().expect("secret").to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() == "whsec_".len() + 44,
        "{secret}"
    );
    let b = &created[1];
    assert_eq!(
        (
            b["method"].clone(),
            b["status"].clone(),
            b["payloadFormat"].clone()
        ),
        (json!("PUT"), json!("inactive"), json!("envelope"))
    );
    assert_eq!(b["events"], json!(["streak.lost", "achievement.completed"]));
    assert_eq!(b["headers"], json!({"Authorization": "Bearer t"}));
    assert_eq!(
        messages(&r.body),
        vec![
            (json!(2), "URL must use http or https".to_string()),
            (json!(3), "Unknown event type: streak.nope".to_string()),
            (json!(4), "Header User-Agent is reserved".to_string()),
            (json!(5), "method must be POST or PUT".to_string()),
            (
                json!(6),
                "payloadFormat must be trophy or envelope".to_string()
            ),
            (json!(7), "url must be a string".to_string()),
            (json!(8), "url is required".to_string()),
            (json!(9), "URL must not contain credentials".to_string()),
        ]
    );
    let id = a["id"].as_str().expect("id").to_string();

    // The list leaves secrets out; get shows it.
    let list = s.get("/admin/v1/webhooks").await.body;
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert!(list[0].get("secret").is_none(), "{list}");
    let one = s.get(&format!("/admin/v1/webhooks/{id}")).await;
    assert_eq!(one.body["secret"], json!(secret));
    assert_eq!(s.get("/admin/v1/webhooks/not-a-uuid").await.status, 404);
    assert_eq!(
        s.get(&format!("/admin/v1/webhooks/{}", uuid::Uuid::new_v4()))
            .await
            .status,
        404
    );

    // Update: fields change, the secret does not; bad items are issues.
    let r = s
        .patch(
            "/admin/v1/webhooks",
            json!([
                {"id": id, "events": ["points.changed"], "status": "inactive", "name": null},
                {"id": uuid::Uuid::new_v4().to_string(), "name": "x"},
                {"id": id, "headers": {"Webhook-Signature": "forged"}},
                {"name": "no id"},
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let updated = &r.body["updated"][0];
    assert_eq!(
        (
            updated["events"].clone(),
            updated["status"].clone(),
            updated["name"].clone()
        ),
        (json!(["points.changed"]), json!("inactive"), Value::Null)
    );
    assert_eq!(messages(&r.body).len(), 3, "{:?}", r.body);
    assert_eq!(
        s.get(&format!("/admin/v1/webhooks/{id}")).await.body["secret"],
        json!(secret)
    );

    // Rotation: a new secret, shown by get.
    let r = s
        .post(&format!("/admin/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rotated = r.body["secret"].as_str().expect("secret").to_string();
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    assert_eq!(
        s.get(&format!("/admin/v1/webhooks/{id}")).await.body["secret"],
        json!(rotated)
    );
    assert_eq!(
        s.post(
            &format!("/admin/v1/webhooks/{}/rotate-secret", uuid::Uuid::new_v4()),
            json!({})
        )
        .await
        .status,
        404
    );

    // Endpoints survive a restart; delete removes them.
    let s = s.restart().await;
    assert_eq!(
        s.get(&format!("/admin/v1/webhooks/{id}")).await.body["secret"],
        json!(rotated)
    );
    let r = s.delete(&format!("/admin/v1/webhooks?ids={id},nope")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["deleted"], json!([{"id": id}]));
    assert_eq!(messages(&r.body).len(), 1);
    assert_eq!(s.get(&format!("/admin/v1/webhooks/{id}")).await.status, 404);
    assert_eq!(
        s.get("/admin/v1/webhooks")
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_refuses_non_public_destinations() {
    // A plain server keeps the guard on.
    let s = TestServer::start().await;
    let refused = [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
    ];
    let items: Vec<Value> = refused.iter().map(|u| json!({"url": u})).collect();
    let r = s.post("/admin/v1/webhooks", Value::Array(items)).await;
    assert_eq!(r.status, 200, "nothing created: {:?}", r.body);
    let got = messages(&r.body);
    assert_eq!(got.len(), refused.len(), "{:?}", r.body);
    for (i, (index, message)) in got.iter().enumerate() {
        assert_eq!(
            (index.clone(), message.as_str()),
            (json!(i), "URL resolves to a private address"),
            "{}",
            refused[i]
        );
    }
    // Public literal addresses pass (no DNS needed); an update to a private URL is refused.
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": "https://93.184.216.34/hook"}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["created"][0]["id"].as_str().expect("id").to_string();
    let r = s
        .patch(
            "/admin/v1/webhooks",
            json!([{"id": id, "url": "http://192.168.0.10/"}]),
        )
        .await;
    assert_eq!(
        messages(&r.body),
        vec![(json!(id), "URL resolves to a private address".to_string())]
    );
}
