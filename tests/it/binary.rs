//! The real `kudos` binary as a child process, for the tests that crash it (`kill -9`, fail
//! points) or give it a file system of its own. Killed with SIGKILL on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::KEY;

pub struct Binary {
    child: Child,
    pub base: String,
    client: reqwest::Client,
}

impl Binary {
    /// Starts the binary on `dir` with extra environment and waits until `/readyz` is 200.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let bin = Self::spawn(dir, env);
        bin.wait_ready().await;
        bin
    }

    /// Starts the binary without waiting for it.
    pub fn spawn(dir: &Path, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kudos"));
        cmd.env("KUDOS_ADDR", format!("127.0.0.1:{port}"))
            .env("KUDOS_DATA_DIR", dir)
            .env("KUDOS_API_KEY", KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("spawn kudos"),
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
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
            assert!(
                tokio::time::Instant::now() < deadline,
                "kudos binary not ready in time"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn kill9(&mut self) {
        // std's Child::kill sends SIGKILL on Unix.
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Waits for the process to exit by itself (a fail point aborted it).
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the binary did not stop at its fail point"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A request with the admin key; `None` when the server is gone.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Option<(u16, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("X-API-KEY", KEY)
            .timeout(Duration::from_secs(60));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.ok()?;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        Some((status, body))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None, &[])
            .await
            .expect("server answers")
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body), &[])
            .await
            .expect("server answers")
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body), &[])
            .await
            .expect("server answers")
    }

    /// `POST /v1/metrics/{metric}/event` of value 1 with an Idempotency-Key.
    pub async fn event(&self, metric: &str, user: &str, key: &str) -> Option<u16> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/metrics/{metric}/event"),
            Some(serde_json::json!({"user": {"id": user}, "value": 1})),
            &[("Idempotency-Key", key)],
        )
        .await
        .map(|(s, _)| s)
    }

    /// The user's total of `metric` (0 for an unknown user).
    pub async fn total(&self, user: &str, metric: &str) -> f64 {
        let (_, body) = self
            .get(&format!("/v1/users/{user}/metrics/{metric}"))
            .await;
        body["current"].as_f64().unwrap_or(0.0)
    }

    /// The effect tally once it has applied every inbox row (`KUDOS_TEST_EFFECT_TALLY=1`).
    pub async fn settled_tally(&self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.get("/admin/v1/test-effect-tally").await;
            assert_eq!(status, 200, "{body}");
            if body["backlog"] == 0 {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the effect tally did not catch up: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
