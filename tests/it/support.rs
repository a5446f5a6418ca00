//! `TestServer`: the real Kudos server on a free loopback port with a temporary data dir,
//! driven over real HTTP. `restart` reopens the same data dir, as an operator would.

use std::sync::Arc;
use std::time::Duration;

use kudos::config::Config;
use reqwest::Method;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "testkey1.integration-secret";

pub struct TestServer {
    pub base: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    dir: Arc<tempfile::TempDir>,
    test_clock: bool,
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::launch(Arc::new(tempfile::tempdir().expect("tempdir")), false).await
    }

    /// A server whose configuration `tweak` changes first.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::launch_with(
            Arc::new(tempfile::tempdir().expect("tempdir")),
            false,
            tweak,
        )
        .await
    }

    pub async fn start_with_test_clock() -> Self {
        Self::launch(Arc::new(tempfile::tempdir().expect("tempdir")), true).await
    }

    async fn launch(dir: Arc<tempfile::TempDir>, test_clock: bool) -> Self {
        Self::launch_with(dir, test_clock, |_| {}).await
    }

    async fn launch_with(
        dir: Arc<tempfile::TempDir>,
        test_clock: bool,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config::for_data_dir(dir.path());
        config.api_key = Some(KEY.to_string());
        config.test_clock = test_clock;
        // Test-clock servers also count effects, so tests can see what was announced.
        config.test_effect_tally = test_clock;
        // ... and may send webhooks to loopback receivers; plain servers keep the SSRF guard.
        config.webhook_allow_private = test_clock;
        config.max_body_bytes = 64 * 1024;
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(kudos::run(config, listener, shutdown.clone()));
        let mut server = Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            shutdown,
            handle: Some(handle),
            dir,
            test_clock,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
                if let Some(h) = self.handle.take() {
                    panic!("server exited during start-up: {:?}", h.await);
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server not ready in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful stop (as on SIGTERM); returns the server's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let handle = self.handle.take().expect("running");
        handle.await.expect("server task")
    }

    /// Stops gracefully and starts again on the same data dir.
    pub async fn restart(self) -> Self {
        let dir = self.dir.clone();
        let test_clock = self.test_clock;
        self.stop().await.expect("clean shutdown");
        Self::launch(dir, test_clock).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        let mut has_key = false;
        for (k, v) in headers {
            has_key |= k.eq_ignore_ascii_case("x-api-key");
            req = req.header(*k, *v);
        }
        if !has_key {
            req = req.header("X-API-KEY", KEY);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body), &[]).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body), &[]).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body), &[]).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None, &[]).await
    }

    /// Sends raw bytes as the body (for malformed JSON tests).
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Resp {
        let resp = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("X-API-KEY", KEY)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body =
            serde_json::from_slice(&resp.bytes().await.expect("body")).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            headers,
        }
    }

    /// Moves the test clock to `now`.
    pub async fn set_clock(&self, now: &str) {
        let r = self
            .post("/admin/v1/test-clock", serde_json::json!({ "now": now }))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    /// The effect tally of one stream (a user id, `boost-clock`, a board id or
    /// `{board id}/runs`), once the tally has applied every inbox row it has.
    pub async fn tally(&self, stream: &str) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let r = self.get("/admin/v1/test-effect-tally").await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            if r.body["backlog"] == 0 || tokio::time::Instant::now() > deadline {
                return r.body["users"][stream].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body")
    }

    /// Waits until no background job is recorded (`kudos_background_jobs` 0 in `/metrics`).
    pub async fn jobs_done(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = self.metrics_text().await;
            if text.lines().any(|l| l == "kudos_background_jobs 0") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "background jobs did not finish"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Waits until every acknowledged record's effects were applied by the leaderboards
    /// and turned into deliveries by the webhook outbox (both `kudos_inbox_backlog` 0; the
    /// boards' are read first, so rows their writes gave the outbox are counted).
    pub async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = self.metrics_text().await;
            let zero = |c: &str| {
                text.lines()
                    .any(|l| l == format!("kudos_inbox_backlog{{consumer=\"{c}\"}} 0"))
            };
            if zero("leaderboards") && zero("webhooks") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "effects were not applied: {}",
                text.lines()
                    .filter(|l| l.starts_with("kudos_inbox_backlog"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Creates the metric `words` and an active leaderboard `words` ranking it from
    /// `start` (a date); returns the metric's id.
    pub async fn words_board(&self, start: &str) -> String {
        let metric = self.create_metrics(&["words"]).await.remove(0);
        let r = self
            .post(
                "/admin/v1/leaderboards",
                serde_json::json!([{"name": "Words", "key": "words", "rankBy": "metric",
                    "metricId": metric, "start": start, "status": "active"}]),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        metric
    }

    /// Creates metrics by key and returns their ids.
    pub async fn create_metrics(&self, keys: &[&str]) -> Vec<String> {
        let items: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::json!({"name": format!("Metric {k}"), "key": k}))
            .collect();
        let r = self.post("/admin/v1/metrics", Value::Array(items)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["created"]
            .as_array()
            .expect("created")
            .iter()
            .map(|m| m["id"].as_str().expect("id").to_string())
            .collect()
    }

    pub async fn create_attributes(&self, attrs: &[(&str, &str)]) {
        let items: Vec<Value> = attrs
            .iter()
            .map(|(k, t)| serde_json::json!({"name": k, "key": k, "type": t}))
            .collect();
        let r = self.post("/admin/v1/attributes", Value::Array(items)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["issues"], serde_json::json!([]));
    }

    /// Creates an active achievement completed through the API.
    pub async fn api_achievement(&self, name: &str, key: &str) {
        let r = self
            .post(
                "/admin/v1/achievements",
                serde_json::json!([{"name": name, "trigger": "api", "key": key, "status": "active"}]),
            )
            .await;
        assert!(r.status == 201 || r.status == 200, "{:?}", r.body);
    }

    pub async fn event(&self, metric: &str, user: &str, value: f64) -> Resp {
        self.post(
            &format!("/v1/metrics/{metric}/event"),
            serde_json::json!({"user": {"id": user}, "value": value}),
        )
        .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Asserts an error response: status and the `{"error": "..."}` body.
pub fn assert_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "unexpected status, body {:?}", r.body);
    let obj = r
        .body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not JSON: {:?}", r.body));
    assert_eq!(
        obj.len(),
        1,
        "error body has exactly one field: {:?}",
        r.body
    );
    assert!(
        obj.get("error")
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "error message present: {:?}",
        r.body
    );
}
