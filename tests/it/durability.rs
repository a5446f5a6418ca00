//! Durability: state survives restarts, and `kill -9` mid-load loses no acknowledged event
//! and counts none twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::binary::Binary;
use crate::support::{TestServer, KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_users_totals_and_idempotency_keys() {
    let s = TestServer::start().await;
    s.create_metrics(&["m"]).await;
    // More events than one snapshot interval, so state is snapshot + tail.
    for i in 0..150 {
        let r = s
            .call(
                reqwest::Method::POST,
                "/v1/metrics/m/event",
                Some(json!({"user": {"id": "r1", "name": "R"}, "value": 1})),
                &[("Idempotency-Key", &format!("k{i}"))],
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let s = s.restart().await;
    assert_eq!(s.get("/v1/users/r1/metrics/m").await.body["current"], 150.0);
    assert_eq!(s.get("/v1/users/r1").await.body["name"], "R");
    let replay = s
        .call(
            reqwest::Method::POST,
            "/v1/metrics/m/event",
            Some(json!({"user": {"id": "r1"}, "value": 1})),
            &[("Idempotency-Key", "k7")],
        )
        .await;
    assert_eq!(replay.status, 202);
    assert_eq!(replay.body["total"], 150.0);
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    key: &str,
) -> Result<u16, reqwest::Error> {
    let r = client
        .post(format!("{base}/v1/metrics/ingest/event"))
        .header("X-API-KEY", KEY)
        .header("Idempotency-Key", key)
        .json(&json!({"user": {"id": user}, "value": 1}))
        .send()
        .await?;
    Ok(r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_acknowledged_event_and_counts_none_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Binary::start(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/admin/v1/metrics", server.base))
        .header("X-API-KEY", KEY)
        .json(&json!([{"name": "Ingest", "key": "ingest"}]))
        .send()
        .await
        .expect("create metric");
    assert_eq!(r.status().as_u16(), 201);

    const CLIENTS: usize = 16;
    const USERS: usize = 40;
    const KILL_AFTER: usize = 1500;
    // Every key ever sent, per user; and the keys acknowledged before the crash.
    let sent: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let acked: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let acked_total = Arc::new(AtomicUsize::new(0));
    let killed = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, base) = (client.clone(), server.base.clone());
        let (sent, acked, acked_total, killed) = (
            sent.clone(),
            acked.clone(),
            acked_total.clone(),
            killed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !killed.is_cancelled() {
                let user = format!("user-{}", (c * 7 + i) % USERS);
                // Every fifth request re-sends an earlier key of this client: a replay.
                let key = if i % 5 == 4 {
                    format!("c{c}-{}", i - 2)
                } else {
                    format!("c{c}-{i}")
                };
                let replay_of_own = i % 5 == 4;
                let user = if replay_of_own {
                    format!("user-{}", (c * 7 + i - 2) % USERS)
                } else {
                    user
                };
                if !replay_of_own {
                    sent.lock()
                        .expect("lock")
                        .entry(user.clone())
                        .or_default()
                        .push(key.clone());
                }
                match send(&client, &base, &user, &key).await {
                    Ok(201) => {
                        *acked.lock().expect("lock").entry(user).or_default() += 1;
                        acked_total.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(202) => {}
                    Ok(other) => panic!("unexpected status {other}"),
                    Err(_) => break, // the server is gone
                }
                i += 1;
            }
        }));
    }
    while acked_total.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    killed.cancel();
    for t in tasks {
        t.await.expect("client task");
    }

    let server = Binary::start(dir.path(), &[]).await;
    let totals = |user: String| {
        let (client, base) = (client.clone(), server.base.clone());
        async move {
            let r = client
                .get(format!("{base}/v1/users/{user}/metrics/ingest"))
                .header("X-API-KEY", KEY)
                .send()
                .await
                .expect("read");
            let v: Value = r.json().await.expect("json");
            v["current"].as_f64().unwrap_or(0.0)
        }
    };
    let sent = sent.lock().expect("lock").clone();
    let acked = acked.lock().expect("lock").clone();
    for (user, keys) in &sent {
        let after_crash = totals(user.clone()).await;
        let acked_n = acked.get(user).copied().unwrap_or(0) as f64;
        assert!(
            after_crash >= acked_n,
            "{user}: {after_crash} < {acked_n} acknowledged"
        );
        assert!(
            after_crash <= keys.len() as f64,
            "{user}: {after_crash} > {} sent",
            keys.len()
        );
        // Re-send every key: unacknowledged ones are recorded now (201), the rest replay (202).
        for key in keys {
            let status = send(&client, &server.base, user, key)
                .await
                .expect("resend");
            assert!(status == 201 || status == 202, "{status}");
        }
        assert_eq!(
            totals(user.clone()).await,
            keys.len() as f64,
            "{user}: each key exactly once"
        );
    }
}
