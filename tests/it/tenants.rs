//! Tenants (SPEC §9.1, §1.2) through HTTP: `/admin/v1/tenants` CRUD with archive, the
//! `Tenant-ID` rules, and two tenants with the same user id, metric key and leaderboard key
//! that never see each other's data, configuration, webhooks or WebSocket topics.

use futures_util::SinkExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{assert_error, Resp, TestServer, KEY};
use crate::webhooks::{received, Receiver};
use crate::websocket::next;

/// Requests in one tenant (its `customerId` as `Tenant-ID`).
struct In<'a> {
    s: &'a TestServer,
    tenant: &'a str,
}

impl In<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.s
            .call(method, path, body, &[("Tenant-ID", self.tenant)])
            .await
    }
    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// The metric `words` and an active board `words` on it.
    async fn words_board(&self) {
        let r = self
            .post(
                "/admin/v1/metrics",
                json!([{"name": "Words", "key": "words"}]),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let metric = r.body["created"][0]["id"].as_str().expect("id").to_string();
        let r = self
            .post(
                "/admin/v1/leaderboards",
                json!([{"name": "Words", "key": "words", "rankBy": "metric",
                    "metricId": metric, "start": "2020-01-01", "status": "active"}]),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    async fn event(&self, user: &str, value: f64) -> Resp {
        self.post(
            "/v1/metrics/words/event",
            json!({"user": {"id": user}, "value": value}),
        )
        .await
    }
}

/// Creates tenants by `customerId`; their ids.
async fn create_tenants(s: &TestServer, customers: &[&str]) -> Vec<String> {
    let items: Vec<Value> = customers
        .iter()
        .map(|c| json!({"customerId": c, "name": format!("Tenant {c}")}))
        .collect();
    let r = s.post("/admin/v1/tenants", Value::Array(items)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["issues"], json!([]));
    r.body["created"]
        .as_array()
        .expect("created")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_crud_archive_and_the_tenant_header() {
    let s = TestServer::start().await;
    // Single-tenant: the header is ignored.
    let r = s
        .call(
            Method::GET,
            "/admin/v1/metrics",
            None,
            &[("Tenant-ID", "nobody")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(s.get("/admin/v1/tenants").await.body, json!([]));

    let r = s
        .post(
            "/admin/v1/tenants",
            json!([
                {"customerId": "acme", "name": "Acme"},
                {"customerId": "acme", "name": "Acme again"},
                {"customerId": "beta", "name": "Beta"},
                {"customerId": "x".repeat(256), "name": "Long"},
                {"name": "No customer"},
                {"customerId": 7, "name": "Wrong type"}
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = r.body["created"].as_array().expect("created");
    assert_eq!(created.len(), 2);
    let acme = &created[0];
    for field in ["id", "customerId", "name", "status", "created", "updated"] {
        assert!(acme[field].is_string(), "{field} in {acme}");
    }
    assert_eq!(acme["status"], "active");
    let issues = r.body["issues"].as_array().expect("issues");
    assert_eq!(issues.len(), 4, "{issues:?}");
    assert_eq!(issues[0]["index"], 1);
    assert_eq!(
        issues[0]["message"],
        "Customer ID \"acme\" already exists in this environment"
    );
    let beta_id = created[1]["id"].as_str().expect("id").to_string();
    let acme_id = acme["id"].as_str().expect("id").to_string();

    // Now multi-tenant: every other call needs a valid Tenant-ID.
    let r = s.get("/admin/v1/metrics").await;
    assert_error(&r, 422);
    assert_eq!(r.body["error"], "Tenant-ID header is required");
    let r = s.get("/v1/users/u1").await;
    assert_eq!(r.body["error"], "Tenant-ID header is required");
    for unknown in ["nobody", &acme_id] {
        let r = s
            .call(
                Method::GET,
                "/admin/v1/metrics",
                None,
                &[("Tenant-ID", unknown)],
            )
            .await;
        assert_error(&r, 422);
        assert_eq!(r.body["error"], "Invalid Tenant-ID");
    }
    let acme_in = In {
        s: &s,
        tenant: "acme",
    };
    assert_eq!(acme_in.get("/admin/v1/metrics").await.status, 200);
    // `/tenants*` ignore the header.
    let r = s
        .call(
            Method::GET,
            "/admin/v1/tenants",
            None,
            &[("Tenant-ID", "nobody")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_array().map(Vec::len), Some(2));
    let r = s.get("/admin/v1/tenants?limit=1&skip=1").await;
    assert_eq!(r.body[0]["customerId"], "beta");

    // Get, update (a free customerId, then a taken one), 404 and 422.
    let r = s.get(&format!("/admin/v1/tenants/{acme_id}")).await;
    assert_eq!(r.body["name"], "Acme");
    assert_error(
        &s.get(&format!("/admin/v1/tenants/{}", uuid::Uuid::new_v4()))
            .await,
        404,
    );
    let r = s
        .patch(
            "/admin/v1/tenants",
            json!([{"id": beta_id, "name": "Beta Inc", "customerId": "beta-inc"},
                   {"id": acme_id, "customerId": "beta-inc"},
                   {"id": uuid::Uuid::new_v4(), "name": "Ghost"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["updated"][0]["name"], "Beta Inc");
    assert_eq!(r.body["issues"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        r.body["issues"][0]["message"],
        "Customer ID \"beta-inc\" already exists in this environment"
    );
    let beta_in = In {
        s: &s,
        tenant: "beta-inc",
    };
    assert_eq!(beta_in.get("/admin/v1/metrics").await.status, 200);
    let r = s.post("/admin/v1/tenants", json!([])).await;
    assert_error(&r, 422);

    // A key made in beta, used before and after beta is archived.
    let r = beta_in
        .post("/admin/v1/application-api-keys", json!([{"userId": "u9"}]))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let beta_key = r.body["created"][0]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let beta_headers = [("X-API-KEY", beta_key.as_str())];
    let with_beta_key = || {
        s.call(
            Method::PUT,
            "/v1/users/u9",
            Some(json!({"name": "Nine"})),
            &beta_headers,
        )
    };
    assert_eq!(with_beta_key().await.status, 200);
    // A renamed tenant's former customerId stays taken.
    let r = s
        .post(
            "/admin/v1/tenants",
            json!([{"customerId": "beta", "name": "New beta"}]),
        )
        .await;
    assert_eq!(
        r.body["issues"].as_array().map(Vec::len),
        Some(1),
        "{:?}",
        r.body
    );

    // Delete archives: the tenant is listed as archived and its header refused; the
    // environment stays multi-tenant.
    let r = s
        .delete(&format!(
            "/admin/v1/tenants?ids={beta_id},{}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["deleted"], json!([{"id": beta_id}]));
    assert_eq!(r.body["issues"].as_array().map(Vec::len), Some(1));
    let r = s.get(&format!("/admin/v1/tenants/{beta_id}")).await;
    assert_eq!(r.body["status"], "archived");
    assert_eq!(
        beta_in.get("/admin/v1/metrics").await.body["error"],
        "Invalid Tenant-ID"
    );
    let r = with_beta_key().await;
    assert_error(&r, 422);
    assert_eq!(
        r.body["error"], "Invalid Tenant-ID",
        "an archived tenant's key stops working"
    );

    // Everything survives a restart.
    let s = s.restart().await;
    let acme_in = In {
        s: &s,
        tenant: "acme",
    };
    assert_eq!(acme_in.get("/admin/v1/metrics").await.status, 200);
    assert_eq!(
        s.get(&format!("/admin/v1/tenants/{beta_id}")).await.body["status"],
        "archived"
    );
    assert_eq!(s.get("/admin/v1/metrics").await.status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_with_the_same_keys_never_see_each_other() {
    // The test clock lets webhooks reach the loopback receiver; the clock does not move.
    let s = TestServer::start_with_test_clock().await;
    create_tenants(&s, &["a", "b"]).await;
    let a = In { s: &s, tenant: "a" };
    let b = In { s: &s, tenant: "b" };
    a.words_board().await;
    b.words_board().await;

    // A webhook in tenant a only.
    let receiver = Receiver::start().await;
    let r = a
        .post(
            "/admin/v1/webhooks",
            json!([{"url": receiver.url, "events": ["achievement.completed"]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(b.get("/admin/v1/webhooks").await.body, json!([]));
    for t in [&a, &b] {
        let r = t
            .post(
                "/admin/v1/achievements",
                json!([{"name": "Starter", "trigger": "api", "key": "starter", "status": "active"}]),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    // The same user id in both, with different totals.
    assert_eq!(a.event("u0", 50.0).await.status, 201);
    assert_eq!(a.event("u1", 5.0).await.status, 201);
    assert_eq!(b.event("u1", 2.0).await.status, 201);
    assert_eq!(b.event("u2", 9.0).await.status, 201);
    assert_eq!(
        a.get("/v1/users/u1/metrics/words").await.body["current"],
        5.0
    );
    assert_eq!(
        b.get("/v1/users/u1/metrics/words").await.body["current"],
        2.0
    );
    assert_error(&a.get("/v1/users/u2").await, 404);
    assert_eq!(b.get("/v1/users/u2").await.status, 200);

    // Boards rank their own tenant's users only.
    s.settled().await;
    let ranks = |r: Resp| -> Vec<(String, f64)> {
        r.body["rankings"]
            .as_array()
            .expect("rankings")
            .iter()
            .map(|e| {
                (
                    e["userId"].as_str().expect("user").to_string(),
                    e["value"].as_f64().expect("value"),
                )
            })
            .collect()
    };
    assert_eq!(
        ranks(a.get("/v1/leaderboards/words").await),
        [("u0".to_string(), 50.0), ("u1".to_string(), 5.0)]
    );
    assert_eq!(
        ranks(b.get("/v1/leaderboards/words").await),
        [("u2".to_string(), 9.0), ("u1".to_string(), 2.0)]
    );

    // Settings are per tenant.
    let r = a
        .patch(
            "/admin/v1/settings",
            json!({"branding": {"appName": "A app"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = b.get("/admin/v1/settings").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_ne!(r.body["branding"]["appName"], "A app", "{:?}", r.body);
    assert_eq!(
        a.get("/admin/v1/settings").await.body["branding"]["appName"],
        "A app"
    );

    // The webhook hears tenant a's completion, never tenant b's (b's is for another user,
    // and comes first).
    let hook = a.get("/admin/v1/webhooks").await.body[0]["id"]
        .as_str()
        .expect("webhook id")
        .to_string();
    let r = b
        .post(
            "/v1/achievements/starter/complete",
            json!({"user": {"id": "u2"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = a
        .post(
            "/v1/achievements/starter/complete",
            json!({"user": {"id": "u1"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let got = received(&receiver, 1).await;
    let payload: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(payload["user"]["id"], "u1");
    assert_eq!(payload["achievement"]["key"], "starter");
    // Every delivery the endpoint has (queued ones included) is tenant a's one.
    s.settled().await;
    let log = a
        .get(&format!("/admin/v1/webhooks/{hook}/deliveries"))
        .await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    assert_eq!(log.body.as_array().map(Vec::len), Some(1), "{:?}", log.body);
    // Tenant b cannot reach tenant a's endpoint at all.
    for path in [
        format!("/admin/v1/webhooks/{hook}"),
        format!("/admin/v1/webhooks/{hook}/deliveries"),
    ] {
        assert_error(&b.get(&path).await, 404);
    }

    // An application key made in tenant a works there, without the header.
    let r = a
        .post("/admin/v1/application-api-keys", json!([{"userId": "u1"}]))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let app_key = r.body["created"][0]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let r = s
        .call(
            Method::GET,
            "/v1/users/u1/metrics/words",
            None,
            &[("X-API-KEY", &app_key)],
        )
        .await;
    assert_eq!(r.body["current"], 5.0, "{:?}", r.body);
    let r = s
        .call(
            Method::GET,
            "/v1/users/u1/metrics/words",
            None,
            &[("X-API-KEY", &app_key), ("Tenant-ID", "b")],
        )
        .await;
    assert_eq!(
        r.body["current"], 5.0,
        "the key's tenant wins: {:?}",
        r.body
    );
    let r = s
        .call(
            Method::POST,
            "/admin/v1/application-api-keys",
            Some(json!([{"userId": "u1"}])),
            &[("Tenant-ID", "zzz")],
        )
        .await;
    assert_eq!(r.body["error"], "Invalid Tenant-ID");

    // WebSocket: a subscription in tenant b sees b's board and only b's updates.
    let url = format!(
        "{}/v1/ws?apiKey={KEY}&tenantId=b",
        s.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let op = json!({"op": "subscribe", "id": "s1", "topic": "leaderboard:words"});
    ws.send(Message::Text(op.to_string().into()))
        .await
        .expect("send");
    let snapshot = next(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(
        snapshot["leaderboard"]["rankings"][0]["userId"], "u2",
        "{snapshot}"
    );
    let user_op = json!({"op": "subscribe", "id": "s2", "topic": "user:u1"});
    ws.send(Message::Text(user_op.to_string().into()))
        .await
        .expect("send");
    ws.send(Message::Text(json!({"op": "ping"}).to_string().into()))
        .await
        .expect("send");
    assert_eq!(next(&mut ws).await, json!({"type": "pong"}));
    // Tenant a's u1 overtakes a's u0, then tenant b's u1 overtakes u2: tenant b's topics
    // hear only the second (b's u1 is at 52; a's would be at 105).
    assert_eq!(a.event("u1", 100.0).await.status, 201);
    assert_eq!(b.event("u1", 50.0).await.status, 201);
    let (mut update, mut rank_event) = (None, None);
    while update.is_none() || rank_event.is_none() {
        let m = next(&mut ws).await;
        match (m["type"].as_str(), m["id"].as_str()) {
            (Some("update"), Some("s1")) => update = Some(m),
            (Some("event"), Some("s2")) => {
                assert_eq!(m["event"]["leaderboard"]["value"], 52, "only b's u1: {m}");
                if m["event"]["type"] == "leaderboard.rank_changed" {
                    rank_event = Some(m);
                }
            }
            _ => panic!("unexpected message {m}"),
        }
    }
    let update = update.expect("update");
    assert_eq!(update["leaderboard"]["rankings"][0]["userId"], "u1");
    assert_eq!(
        update["leaderboard"]["rankings"][0]["value"], 52.0,
        "{update}"
    );
    assert_eq!(
        rank_event.expect("event")["event"]["leaderboard"]["rank"],
        1
    );
}
