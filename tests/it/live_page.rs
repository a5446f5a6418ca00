//! The live page in a real browser: headless Chromium (Debian's `chromium`) loads
//! `/live/{key}` with the key in the fragment, renders the snapshot, and re-renders when
//! an event arrives over REST; a screenshot is saved as `target/live-page.png`.
//!
//! Chromium is driven over the DevTools protocol with the WebSocket client the other tests
//! use. Where Chromium is missing it is installed with apt when running as root in CI
//! (`CI` set); otherwise the test says so and is skipped.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestServer, KEY};

fn chromium() -> Option<String> {
    let find = || {
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find(|c| {
                Command::new("which")
                    .arg(c)
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .map(|c| c.to_string())
    };
    if let Some(c) = find() {
        return Some(c);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if std::env::var_os("CI").is_some() && root {
        eprintln!("installing Debian's chromium for the live-page test...");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !apt(&["install", "-y", "-q", "chromium"]) {
            apt(&["update", "-q"]);
            apt(&["install", "-y", "-q", "chromium"]);
        }
    }
    find()
}

/// Kills the browser when the test ends, however it ends.
struct Browser(std::process::Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One DevTools call and its result.
async fn cdp(ws: &mut Socket, id: &mut u64, method: &str, params: Value) -> Value {
    *id += 1;
    let call = json!({"id": *id, "method": method, "params": params});
    ws.send(Message::Text(call.to_string().into()))
        .await
        .expect("send");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a DevTools answer in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).expect("json");
            if v["id"] == json!(*id) {
                return v["result"].clone();
            }
        }
    }
}

/// The page's table as text, row by row.
async fn rows(ws: &mut Socket, id: &mut u64) -> String {
    let r = cdp(
        ws,
        id,
        "Runtime.evaluate",
        json!({"expression": "document.getElementById('rows').innerText", "returnByValue": true}),
    )
    .await;
    r["result"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the first row of the table names `user`.
async fn first_row_is(ws: &mut Socket, id: &mut u64, user: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = rows(ws, id).await;
        if text.lines().next().is_some_and(|l| l.contains(user)) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed {user} first: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_renders_the_board_and_follows_rest_events() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED: no chromium on this machine (install Debian's chromium, or run in CI as root)"
        );
        return;
    };
    let s = TestServer::start().await;
    s.words_board("2020-01-01").await;
    for (user, value) in [("ada", 10.0), ("bob", 20.0), ("cy", 30.0)] {
        assert_eq!(s.event("words", user, value).await.status, 201);
    }

    let profile = tempfile::tempdir().expect("tempdir");
    let url = format!("{}/live/words#apiKey={KEY}", s.base);
    let mut child = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=800,500",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().expect("stderr");
    let _browser = Browser(child);
    // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…"
    let devtools = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split("ws://")
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .map(str::to_string)
            })
    })
    .await
    .expect("join")
    .expect("chromium's DevTools address");
    let targets: Value = reqwest::get(format!("http://{devtools}/json/list"))
        .await
        .expect("targets")
        .json()
        .await
        .expect("json");
    let page = targets
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .expect("the page's DevTools socket")
        .to_string();
    let (mut ws, _) = tokio_tungstenite::connect_async(page)
        .await
        .expect("DevTools");
    let mut id = 0;

    // The snapshot, rendered.
    let text = first_row_is(&mut ws, &mut id, "cy").await;
    let order: Vec<&str> = text.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    assert_eq!(order, vec!["cy", "bob", "ada"], "{text:?}");
    // The key given in the fragment is gone from the address bar.
    let r = cdp(
        &mut ws,
        &mut id,
        "Runtime.evaluate",
        json!({"expression": "location.href", "returnByValue": true}),
    )
    .await;
    assert!(
        !r["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .contains(KEY),
        "{r}"
    );

    // An event over REST: the table changes.
    assert_eq!(s.event("words", "ada", 100.0).await.status, 201);
    let text = first_row_is(&mut ws, &mut id, "ada").await;
    assert!(text.contains("110"), "{text:?}");

    let shot = cdp(
        &mut ws,
        &mut id,
        "Page.captureScreenshot",
        json!({"format": "png"}),
    )
    .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("base64");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).expect("target dir");
    std::fs::write(target.join("live-page.png"), png).expect("write the screenshot");
    eprintln!("screenshot: {}", target.join("live-page.png").display());
}
