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
                {"url": "https://example.com/", "events": ["*", "bogus"]},
                {"url": "https://example.com/", "headers": {"X-A": "1", "x-a": "2"}},
                {"url": "https://example.com/", "headers": {"Transfer-Encoding": "gzip"}},
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
            (json!(10), "Unknown event type: bogus".to_string()),
            (json!(11), "Header x-a is given twice".to_string()),
            (
                json!(12),
                "Header Transfer-Encoding is reserved".to_string()
            ),
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

/// A loopback webhook receiver: records every request and answers with `status`.
pub struct Receiver {
    pub url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Captured>>>,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    /// Milliseconds to wait before answering (a slow or hanging endpoint).
    pub delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Headers added to every answer.
    pub answer_headers: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// Paths (after the receiver's URL) that never answer.
    pub hanging_paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[derive(Clone, Debug)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Receiver {
    pub async fn start() -> Self {
        use axum::extract::State;
        type Shared = (
            std::sync::Arc<std::sync::Mutex<Vec<Captured>>>,
            std::sync::Arc<std::sync::atomic::AtomicU16>,
            std::sync::Arc<std::sync::atomic::AtomicU64>,
            std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
            std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        );
        async fn record(
            State((got, status, delay, extra, hanging)): State<Shared>,
            method: axum::http::Method,
            uri: axum::http::Uri,
            headers: axum::http::HeaderMap,
            body: axum::body::Bytes,
        ) -> (axum::http::StatusCode, axum::http::HeaderMap, &'static str) {
            got.lock().expect("lock").push(Captured {
                method: method.to_string(),
                path: uri.path().to_string(),
                headers,
                body: body.to_vec(),
            });
            let hangs = {
                let paths = hanging.lock().expect("lock");
                paths.iter().any(|p| uri.path().ends_with(p.as_str()))
            };
            if hangs {
                std::future::pending::<()>().await;
            }
            let wait = delay.load(std::sync::atomic::Ordering::SeqCst);
            if wait > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            let code = status.load(std::sync::atomic::Ordering::SeqCst);
            let mut headers = axum::http::HeaderMap::new();
            for (k, v) in extra.lock().expect("lock").iter() {
                headers.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    axum::http::HeaderValue::from_str(v).expect("value"),
                );
            }
            (
                axum::http::StatusCode::from_u16(code).expect("status"),
                headers,
                "received",
            )
        }
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let answer_headers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let hanging_paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let app = axum::Router::new().fallback(record).with_state((
            got.clone(),
            status.clone(),
            delay_ms.clone(),
            answer_headers.clone(),
            hanging_paths.clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            got,
            status,
            delay_ms,
            answer_headers,
            hanging_paths,
        }
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.got.lock().expect("lock").clone()
    }
}

pub fn header(c: &Captured, name: &str) -> String {
    c.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Both signatures, computed here from the secret (not with the server's signing code).
fn check_signatures(c: &Captured, secret: &str) {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(&c.body);
    assert_eq!(
        header(c, "x-trophy-signature"),
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        "X-Trophy-Signature over the raw body with the secret's UTF-8 bytes"
    );
    check_standard_signature(c, secret);
}

/// `webhook-signature` holds `v1,` + HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with
/// the base64-decoded secret.
fn check_standard_signature(c: &Captured, secret: &str) {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").expect("whsec_"))
        .expect("base64 secret");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(
        format!(
            "{}.{}.",
            header(c, "webhook-id"),
            header(c, "webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&c.body);
    let want = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    assert!(
        header(c, "webhook-signature").split(' ').any(|s| s == want),
        "webhook-signature {} lacks {want}",
        header(c, "webhook-signature")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sends_are_signed_both_ways_and_report_the_attempt() {
    let s = TestServer::start_with_test_clock().await;
    let receiver = Receiver::start().await;
    let r = s
        .post(
            "/admin/v1/achievements",
            json!([{"name": "Beta tester", "trigger": "api", "key": "beta"}]),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{:?}", r.body);
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([
                {"url": receiver.url, "headers": {"Authorization": "Bearer abc"}},
                {"url": receiver.url, "method": "PUT", "payloadFormat": "envelope"},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let plain = r.body["created"][0].clone();
    let enveloped = r.body["created"][1].clone();
    let (id, secret) = (
        plain["id"].as_str().expect("id").to_string(),
        plain["secret"].as_str().expect("secret").to_string(),
    );

    let r = s
        .post(&format!("/admin/v1/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            r.body["statusCode"].clone(),
            r.body["error"].clone(),
            r.body["responseBody"].clone()
        ),
        (json!(200), Value::Null, json!("received")),
        "{:?}",
        r.body
    );
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    let c = &got[0];
    assert_eq!(c.method, "POST");
    assert_eq!(header(c, "content-type"), "application/json");
    assert!(header(c, "user-agent").starts_with("Kudos-Webhooks/"));
    assert_eq!(header(c, "authorization"), "Bearer abc");
    assert_eq!(header(c, "x-trophy-event-type"), "achievement.completed");
    let event_id = r.body["eventId"].as_str().expect("eventId");
    assert_eq!(header(c, "x-trophy-event-id"), event_id);
    assert_eq!(header(c, "webhook-id"), event_id);
    check_signatures(c, &secret);
    let body: Value = serde_json::from_slice(&c.body).expect("json body");
    assert_eq!(body["type"], "achievement.completed");
    assert_eq!(body["user"]["id"], "example-user");
    assert_eq!(body["user"]["subscribeToEmails"], true);
    assert_eq!(body["achievement"]["key"], "beta");
    assert!(body["achievement"]["achievedAt"].is_string(), "{body}");

    // A PUT endpoint with the envelope; a failing receiver is reported, not retried.
    receiver
        .status
        .store(500, std::sync::atomic::Ordering::SeqCst);
    let eid = enveloped["id"].as_str().expect("id");
    let r = s
        .post(
            &format!("/admin/v1/webhooks/{eid}/test"),
            json!({"type": "streak.lost"}),
        )
        .await;
    assert_eq!(
        (
            r.status,
            r.body["statusCode"].clone(),
            r.body["error"].clone()
        ),
        (200, json!(500), json!("HTTP 500")),
        "{:?}",
        r.body
    );
    let got = receiver.requests();
    assert_eq!(got.len(), 2);
    let c = &got[1];
    assert_eq!(c.method, "PUT");
    check_signatures(c, enveloped["secret"].as_str().expect("secret"));
    let body: Value = serde_json::from_slice(&c.body).expect("json body");
    assert_eq!(
        (
            body["type"].clone(),
            body["data"]["type"].clone(),
            body["data"]["length"].clone()
        ),
        (json!("streak.lost"), json!("streak.lost"), json!(7))
    );
    assert_eq!(body["meta"]["webhook_url"], json!(receiver.url));
    assert_eq!(body["id"], r.body["eventId"]);

    // After a rotation both secrets sign for 24 hours.
    let rotated = s
        .post(&format!("/admin/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await
        .body["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    receiver
        .status
        .store(204, std::sync::atomic::Ordering::SeqCst);
    let r = s
        .post(&format!("/admin/v1/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(r.body["statusCode"], 204, "{:?}", r.body);
    let got = receiver.requests();
    let c = &got[2];
    check_signatures(c, &rotated);
    check_standard_signature(c, &secret);
    assert_eq!(header(c, "webhook-signature").split(' ').count(), 2);

    // Under a test clock moved far ahead, webhook-timestamp stays on the wall clock, so
    // receivers' verifiers (which refuse timestamps far from their own clock) accept it:
    // it stays next to the first send's (made while the test clock still read the start-up
    // time), while the attempt's recorded time follows the test clock.
    let before: i64 = header(&got[0], "webhook-timestamp")
        .parse()
        .expect("seconds");
    s.set_clock("2099-01-01T00:00:00Z").await;
    let r = s
        .post(&format!("/admin/v1/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(r.body["at"], "2099-01-01T00:00:00.000Z", "{:?}", r.body);
    let got = receiver.requests();
    let sent: i64 = header(&got[3], "webhook-timestamp")
        .parse()
        .expect("seconds");
    assert!(
        (0..300).contains(&(sent - before)),
        "webhook-timestamp {sent} should stay near {before}, not follow the test clock"
    );

    // Errors: unknown type, unknown endpoint, bad body.
    let r = s
        .post(
            &format!("/admin/v1/webhooks/{id}/test"),
            json!({"type": "nope"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (422, json!("Unknown event type: nope"))
    );
    let r = s
        .post(
            &format!("/admin/v1/webhooks/{}/test", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = s
        .post(&format!("/admin/v1/webhooks/{id}/test"), json!({"type": 3}))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sends_cover_streak_leaderboard_and_points_payload_shapes() {
    let s = TestServer::start_with_test_clock().await;
    let receiver = Receiver::start().await;
    let r = s
        // Test sends go out whatever the subscription; this one keeps real deliveries
        // (the board's leaderboard.started) away from the receiver.
        .post(
            "/admin/v1/webhooks",
            json!([{"url": receiver.url, "events": ["emails.recap_due"]}]),
        )
        .await;
    let id = r.body["created"][0]["id"].as_str().expect("id").to_string();
    let send = |t: &'static str| {
        let (s, id) = (&s, id.clone());
        async move {
            s.post(
                &format!("/admin/v1/webhooks/{id}/test"),
                json!({ "type": t }),
            )
            .await
        }
    };
    // Leaderboard types need a board to show.
    let r = send("leaderboard.finished").await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let metric = s.create_metrics(&["words"]).await.remove(0);
    let r = s
        .post(
            "/admin/v1/leaderboards",
            json!([{"name": "Weekly", "key": "weekly", "rankBy": "metric", "metricId": metric,
                    "runUnit": "day", "runInterval": 7, "status": "active"}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    sent_ok(
        &s,
        &id,
        &[
            "streak.started",
            "streak.extended",
            "leaderboard.started",
            "leaderboard.finished",
            "leaderboard.rank_changed",
        ],
    )
    .await;
    let bodies: Vec<Value> = receiver
        .requests()
        .iter()
        .map(|c| serde_json::from_slice(&c.body).expect("json"))
        .collect();
    let streak = &bodies[0]["streak"];
    assert_eq!(
        (streak["length"].clone(), streak["frequency"].clone()),
        (json!(1), json!("daily"))
    );
    for field in ["started", "periodStart", "periodEnd", "expires"] {
        assert!(streak[field].is_string(), "{field}: {streak}");
    }
    assert_eq!(bodies[1]["streak"]["length"], 8);
    assert_eq!(bodies[1]["user"]["id"], "example-user");
    let started = &bodies[2]["leaderboard"];
    assert_eq!(
        (
            started["key"].clone(),
            started["status"].clone(),
            started["rankings"].clone()
        ),
        (json!("weekly"), json!("active"), json!([]))
    );
    let finished = &bodies[3]["leaderboard"];
    assert_eq!(finished["rankings"].as_array().map(Vec::len), Some(10));
    let first = &finished["rankings"][0];
    assert_eq!(
        (
            first["rank"].clone(),
            first["userId"].is_string(),
            first["value"].is_i64()
        ),
        (json!(1), true, true)
    );
    let ranked = &bodies[4];
    assert_eq!(ranked["type"], "leaderboard.rank_changed");
    let l = &ranked["leaderboard"];
    assert_eq!(
        (
            l["rank"].clone(),
            l["previousRank"].clone(),
            l["value"].clone(),
            l["previousValue"].clone()
        ),
        (json!(2), json!(3), json!(86), json!(79))
    );
    assert!(l.get("status").is_none(), "{l}");
    assert_eq!(l["runUnit"], "day");

    // The event-type list has all 18, with examples where the catalog allows one.
    let types = s.get("/admin/v1/webhooks/event-types").await.body;
    let list = types.as_array().expect("types");
    assert_eq!(list.len(), 18, "{types}");
    let by_type = |t: &str| list.iter().find(|x| x["type"] == t).cloned().expect("type");
    assert_eq!(
        by_type("leaderboard.finished")["example"]["leaderboard"]["key"],
        "weekly"
    );
    assert!(by_type("points.changed")["example"].is_null());
    assert!(by_type("points.changed")["exampleUnavailable"].is_string());
    assert!(by_type("streak.lost")["description"].is_string());

    // Points types, from the org's first system.
    let r = s
        .post(
            "/admin/v1/points",
            json!([{"name": "XP", "key": "xp",
                    "levels": [{"name": "Bronze", "key": "bronze", "points": 0},
                               {"name": "Silver", "key": "silver", "points": 100}],
                    "triggers": [{"type": "metric", "points": 10, "metricId": metric, "metricThreshold": 1}],
                    "boosts": [{"name": "Double", "start": "2030-01-01", "end": "2030-01-07", "multiplier": 2}]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    sent_ok(
        &s,
        &id,
        &[
            "points.changed",
            "points.level_changed",
            "points.boost_started",
            "points.boost_finished",
        ],
    )
    .await;
    let bodies: Vec<Value> = receiver
        .requests()
        .iter()
        .skip(5)
        .map(|c| serde_json::from_slice(&c.body).expect("json"))
        .collect();
    let changed = &bodies[0]["points"];
    assert_eq!(
        (
            changed["key"].clone(),
            changed["added"].clone(),
            changed["total"].clone()
        ),
        (json!("xp"), json!(10), json!(130))
    );
    assert_eq!(changed["awards"][0]["trigger"]["type"], "metric");
    assert_eq!(changed["level"]["key"], "bronze");
    let level = &bodies[1];
    assert_eq!(
        (
            level["previousLevel"]["key"].clone(),
            level["newLevel"]["key"].clone(),
            level["points"]["total"].clone()
        ),
        (json!("bronze"), json!("silver"), json!(100))
    );
    let (started, finished) = (&bodies[2], &bodies[3]);
    assert!(started["timestamp"].is_string());
    assert_eq!(
        (
            started["boost"]["status"].clone(),
            finished["boost"]["status"].clone()
        ),
        (json!("active"), json!("finished"))
    );
    assert_eq!(
        (
            started["boost"]["pointsSystemKey"].clone(),
            started["boost"]["multiplier"].clone(),
            started["boost"]["userId"].clone()
        ),
        (json!("xp"), json!(2.0), Value::Null)
    );

    // The "due" notifications.
    sent_ok(
        &s,
        &id,
        &[
            "emails.recap_due",
            "emails.reactivation_due",
            "emails.streak_reminder_due",
        ],
    )
    .await;
    let bodies: Vec<Value> = receiver
        .requests()
        .iter()
        .skip(9)
        .map(|c| serde_json::from_slice(&c.body).expect("json"))
        .collect();
    let (recap, reactivation, reminder) = (&bodies[0], &bodies[1], &bodies[2]);
    assert!(recap["recap"]["periodStart"].is_string(), "{recap}");
    assert!(recap["recap"]["periodEnd"].is_string(), "{recap}");
    assert_eq!(
        reactivation["reactivation"],
        json!({"messageNumber": 1, "daysSinceLastActive": 3})
    );
    assert_eq!(reminder["streak"]["length"], 4);
    assert!(reminder["streak"]["streakHistory"].is_array(), "{reminder}");
    for b in &bodies {
        assert!(b["timestamp"].is_string(), "{b}");
        assert_eq!(b["user"]["id"], "example-user");
    }
    // The achievement one needs an achievement to show.
    let r = send("emails.achievement_due").await;
    assert_eq!(r.status, 422, "{:?}", r.body);
}

/// Test-sends each type to endpoint `id`; every send reaches the receiver (200, 200).
async fn sent_ok(s: &TestServer, id: &str, types: &[&str]) {
    for t in types {
        let r = s
            .post(
                &format!("/admin/v1/webhooks/{id}/test"),
                json!({ "type": t }),
            )
            .await;
        assert_eq!(
            (r.status, r.body["statusCode"].clone()),
            (200, json!(200)),
            "{t}: {:?}",
            r.body
        );
    }
}

/// Waits until the receiver has at least `n` requests.
pub async fn received(receiver: &Receiver, n: usize) -> Vec<Captured> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got = receiver.requests();
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} deliveries arrived",
            got.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_signed_and_retried_on_the_clock_with_the_same_id_and_body() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-05-01T12:00:00Z").await;
    let receiver = Receiver::start().await;
    s.api_achievement("Beta tester", "beta").await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([
                {"url": receiver.url, "events": ["achievement.completed"]},
                {"url": receiver.url, "events": ["streak.lost"]},
                {"url": receiver.url, "status": "inactive"},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let secret = r.body["created"][0]["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    // The receiver fails the first attempt.
    receiver
        .status
        .store(500, std::sync::atomic::Ordering::SeqCst);
    let r = s
        .post(
            "/v1/achievements/beta/complete",
            json!({"user": {"id": "ada", "name": "Ada"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let got = received(&receiver, 1).await;
    let first = got[0].clone();
    assert_eq!(
        header(&first, "x-trophy-event-type"),
        "achievement.completed"
    );
    check_signatures(&first, &secret);
    let body: Value = serde_json::from_slice(&first.body).expect("json");
    assert_eq!(
        (
            body["user"]["id"].clone(),
            body["user"]["name"].clone(),
            body["achievement"]["key"].clone()
        ),
        (json!("ada"), json!("Ada"), json!("beta"))
    );
    // Only the endpoint subscribed to the type got it (the inactive one gets nothing).
    assert_eq!(receiver.requests().len(), 1);

    // The retry is due one minute later, on the clock; it carries the same id and body.
    receiver
        .status
        .store(200, std::sync::atomic::Ordering::SeqCst);
    s.set_clock("2027-05-01T12:00:59Z").await;
    assert_eq!(receiver.requests().len(), 1, "not before its minute");
    s.set_clock("2027-05-01T12:01:01Z").await;
    let got = received(&receiver, 2).await;
    let retry = &got[1];
    assert_eq!(header(retry, "webhook-id"), header(&first, "webhook-id"));
    assert_eq!(retry.body, first.body, "the same body on every retry");
    check_signatures(retry, &secret);
    // Delivered: nothing more comes.
    s.set_clock("2027-05-01T12:10:00Z").await;
    tokio::task::yield_now().await;
    assert_eq!(receiver.requests().len(), 2);

    // The delivery history shows both attempts; a resend makes one more, same id and body.
    let hook = r_created_id(&s, 0).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let history = loop {
        let h = s
            .get(&format!("/admin/v1/webhooks/{hook}/deliveries"))
            .await
            .body;
        if h[0]["status"] == "succeeded" || tokio::time::Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let d = &history[0];
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(
        (
            d["status"].clone(),
            d["type"].clone(),
            d["eventId"].clone(),
            d["nextAttemptAt"].clone()
        ),
        (
            json!("succeeded"),
            json!("achievement.completed"),
            json!(header(&first, "webhook-id")),
            Value::Null
        )
    );
    let codes: Vec<Value> = d["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["statusCode"].clone())
        .collect();
    assert_eq!(codes, vec![json!(500), json!(200)]);
    assert_eq!(d["payload"]["user"]["id"], "ada");
    assert_eq!(
        s.get(&format!(
            "/admin/v1/webhooks/{hook}/deliveries?status=failed"
        ))
        .await
        .body,
        json!([])
    );
    assert_eq!(
        s.get(&format!("/admin/v1/webhooks/{hook}/deliveries?status=nope"))
            .await
            .status,
        422
    );
    let delivery = d["id"].as_str().expect("id");
    let r = s
        .post(
            &format!("/admin/v1/webhooks/{hook}/deliveries/{delivery}/resend"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let got = received(&receiver, 3).await;
    assert_eq!(header(&got[2], "webhook-id"), header(&first, "webhook-id"));
    assert_eq!(got[2].body, first.body);
    let r = s
        .post(
            &format!(
                "/admin/v1/webhooks/{hook}/deliveries/{}/resend",
                uuid::Uuid::new_v4()
            ),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
}

/// The id of the `n`th endpoint in the list.
async fn r_created_id(s: &TestServer, n: usize) -> String {
    s.get("/admin/v1/webhooks").await.body[n]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_hold_up_another() {
    let s = TestServer::start_with_test_clock().await;
    let (hanging, healthy) = (Receiver::start().await, Receiver::start().await);
    // Far longer than the test: only the attempt's own timeout would end it.
    hanging
        .delay_ms
        .store(600_000, std::sync::atomic::Ordering::SeqCst);
    let r = s
        .post(
            "/admin/v1/achievements",
            json!([{"name": "One", "trigger": "api", "key": "one", "status": "active"},
                   {"name": "Two", "trigger": "api", "key": "two", "status": "active"}]),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{:?}", r.body);
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": hanging.url}, {"url": healthy.url}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    for key in ["one", "two"] {
        let r = s
            .post(
                &format!("/v1/achievements/{key}/complete"),
                json!({"user": {"id": "ada"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        // The healthy endpoint gets each event while the hanging one still holds the first.
        let n = if key == "one" { 1 } else { 2 };
        received(&healthy, n).await;
    }
    assert_eq!(
        received(&hanging, 1).await.len(),
        1,
        "the hanging endpoint is still on its first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_on_the_same_host_does_not_hold_up_another() {
    let s = TestServer::start_with_test_clock().await;
    // One receiver, two paths: each endpoint has its own connection pool, so requests
    // hanging on one never hold up the other's, though host and port are the same.
    let receiver = Receiver::start().await;
    receiver
        .hanging_paths
        .lock()
        .expect("lock")
        .push("/stuck".into());
    s.api_achievement("One", "one").await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": format!("{}/stuck", receiver.url)},
                   {"url": format!("{}/fine", receiver.url)}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // More events than the attempts one endpoint may have in flight.
    let users = 12;
    for i in 0..users {
        let r = s
            .post(
                "/v1/achievements/one/complete",
                json!({"user": {"id": format!("user-{i}")}}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let fine = receiver
            .requests()
            .iter()
            .filter(|c| {
                let body: Value = serde_json::from_slice(&c.body).expect("json");
                body["type"] == "achievement.completed"
            })
            .count();
        // The stuck endpoint holds at most 4; the fine one gets all 12.
        if fine >= users + 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {fine} requests arrived: {:?}",
            receiver
                .requests()
                .iter()
                .map(|c| c.path.clone())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        receiver.requests().len(),
        users + 4,
        "4 in flight on /stuck"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_within_the_clamp_and_410_disables_the_endpoint() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-05-01T12:00:00Z").await;
    let (busy, gone) = (Receiver::start().await, Receiver::start().await);
    busy.status.store(429, std::sync::atomic::Ordering::SeqCst);
    busy.answer_headers
        .lock()
        .expect("lock")
        .push(("Retry-After".into(), "600".into()));
    gone.status.store(410, std::sync::atomic::Ordering::SeqCst);
    s.api_achievement("One", "one").await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": busy.url}, {"url": gone.url}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let gone_id = r.body["created"][1]["id"].as_str().expect("id").to_string();
    let r = s
        .post(
            "/v1/achievements/one/complete",
            json!({"user": {"id": "ada"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    received(&busy, 1).await;
    received(&gone, 1).await;

    // 410: the endpoint is set inactive with the reason.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let w = s.get(&format!("/admin/v1/webhooks/{gone_id}")).await.body;
        if w["status"] == "inactive" {
            assert_eq!(w["disabledReason"], "410 Gone");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{w}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // 429 with Retry-After 600: the first retry waits twice the scheduled minute, not ten.
    busy.status.store(200, std::sync::atomic::Ordering::SeqCst);
    s.set_clock("2027-05-01T12:01:30Z").await;
    assert_eq!(busy.requests().len(), 1, "not after one minute");
    s.set_clock("2027-05-01T12:02:01Z").await;
    received(&busy, 2).await;
    // The disabled endpoint gets nothing more.
    s.set_clock("2027-05-01T12:30:00Z").await;
    assert_eq!(gone.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_fails_after_three_retries_and_recover_sends_it_again() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-05-01T12:00:00Z").await;
    let receiver = Receiver::start().await;
    receiver
        .status
        .store(500, std::sync::atomic::Ordering::SeqCst);
    s.api_achievement("One", "one").await;
    let r = s
        .post("/admin/v1/webhooks", json!([{"url": receiver.url}]))
        .await;
    let hook = r.body["created"][0]["id"].as_str().expect("id").to_string();
    let r = s
        .post(
            "/v1/achievements/one/complete",
            json!({"user": {"id": "ada"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // The first attempt and three retries, at +1, +2 and +4 minutes.
    received(&receiver, 1).await;
    for (n, at) in [
        (2, "2027-05-01T12:01:00Z"),
        (3, "2027-05-01T12:03:00Z"),
        (4, "2027-05-01T12:07:00Z"),
    ] {
        s.set_clock(at).await;
        received(&receiver, n).await;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let h = s
            .get(&format!(
                "/admin/v1/webhooks/{hook}/deliveries?status=failed"
            ))
            .await
            .body;
        if h.as_array().is_some_and(|l| l.len() == 1) {
            assert_eq!(h[0]["attempts"].as_array().map(Vec::len), Some(4));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{h}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.set_clock("2027-05-01T13:00:00Z").await;
    assert_eq!(receiver.requests().len(), 4, "no retry after the last one");
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains(&format!(
            "kudos_webhook_attempts_total{{endpoint=\"{hook}\",outcome=\"http_error\"}} 4"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "kudos_webhook_queue_depth{{endpoint=\"{hook}\"}} 0"
        )),
        "{metrics}"
    );

    // Recover sends it again.
    receiver
        .status
        .store(200, std::sync::atomic::Ordering::SeqCst);
    let r = s
        .post(
            &format!("/admin/v1/webhooks/{hook}/recover"),
            json!({"since": "2027-05-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let got = received(&receiver, 5).await;
    assert_eq!(header(&got[4], "webhook-id"), header(&got[0], "webhook-id"));
    assert_eq!(
        s.post(
            &format!("/admin/v1/webhooks/{hook}/recover"),
            json!({"since": "yesterday"})
        )
        .await
        .status,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderboard_runs_and_boosts_are_delivered_when_announced() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-06-01T12:00:00Z").await;
    let receiver = Receiver::start().await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": receiver.url, "events": ["leaderboard.started", "points.boost_started"]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let metric = s.create_metrics(&["words"]).await.remove(0);
    // Activated after run 0's start moment: leaderboard.started at once.
    let r = s
        .post(
            "/admin/v1/leaderboards",
            json!([{"name": "Weekly", "key": "weekly", "rankBy": "metric", "metricId": metric,
                    "start": "2027-06-01", "runUnit": "day", "runInterval": 7, "status": "active"}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let got = received(&receiver, 1).await;
    let started: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(
        (
            started["type"].clone(),
            started["leaderboard"]["key"].clone(),
            started["leaderboard"]["rankings"].clone()
        ),
        (json!("leaderboard.started"), json!("weekly"), json!([]))
    );
    // A global boost starts at 10:00 UTC the day before its start date.
    let r = s
        .post(
            "/admin/v1/points",
            json!([{"name": "XP", "key": "xp",
                    "boosts": [{"name": "Double", "start": "2027-06-10", "end": "2027-06-12", "multiplier": 2}]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Moving to then also passes run 1's start moment (06-07 10:00): its started comes too.
    s.set_clock("2027-06-09T10:00:00Z").await;
    let got = received(&receiver, 3).await;
    let by_type = |t: &str| -> Vec<Value> {
        got.iter()
            .filter(|c| header(c, "x-trophy-event-type") == t)
            .map(|c| serde_json::from_slice(&c.body).expect("json"))
            .collect()
    };
    assert_eq!(by_type("leaderboard.started").len(), 2);
    let boost = by_type("points.boost_started").remove(0);
    assert_eq!(
        (
            boost["boost"]["name"].clone(),
            boost["boost"]["status"].clone(),
            boost["boost"]["pointsSystemKey"].clone()
        ),
        (json!("Double"), json!("active"), json!("xp"))
    );
    assert_eq!(boost["timestamp"], "2027-06-09T10:00:00.000Z");
}
