//! Crashes on the commit path: the binary dies at a chosen step of the N-th commit (fail
//! points), or with `kill -9` mid-load. After the restart, everything derived from the
//! journal (totals, completion and user counters, due entries, effects delivered to a
//! consumer, and a leaderboard's values) must agree exactly with the records that survived, every acknowledged record
//! must have survived, and re-sending every request with its Idempotency-Key must complete
//! the work exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::binary::Binary;

const METRIC: &str = "steps";
/// Users reaching this total complete the achievement.
const ACHIEVEMENT_AT: f64 = 3.0;

/// A metric that is also the daily streak metric, and an achievement at 3.
async fn configure(server: &Binary) -> String {
    let (status, body) = server
        .post(
            "/admin/v1/metrics",
            json!([{"name": "Steps", "key": METRIC}]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let metric = body["created"][0]["id"].as_str().expect("id").to_string();
    let (status, body) = server
        .patch(
            "/admin/v1/streaks/settings",
            json!({"metrics": [{"key": METRIC, "threshold": 1}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .post(
            "/admin/v1/achievements",
            json!([{"name": "Three", "trigger": "metric", "metricId": metric, "metricValue": ACHIEVEMENT_AT, "status": "active"}]),
        )
        .await;
    assert!(status == 201 || status == 200, "{body}");
    let achievement = body["created"][0]["id"].as_str().expect("id").to_string();
    let (status, body) = server
        .post(
            "/admin/v1/leaderboards",
            json!([{"name": "Steps", "key": "steps", "rankBy": "metric", "metricId": metric,
                    "start": "2000-01-01", "status": "active", "maxParticipants": 1000}]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    achievement
}

/// Every user's leaderboard value equals their total, once the board has applied every
/// inbox row: each surviving record counted on the board exactly once.
async fn check_board(server: &Binary, totals: &HashMap<String, f64>) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    for (user, total) in totals {
        let want = if *total > 0.0 {
            json!(*total as i64)
        } else {
            json!(null)
        };
        loop {
            let (status, body) = server
                .get(&format!("/v1/users/{user}/leaderboards/steps?numEvents=0"))
                .await;
            let got = if status == 404 {
                json!(null)
            } else {
                body["value"].clone()
            };
            if got == want {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{user}: leaderboard value {got} != total {want} ({status} {body})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// What the clients sent (keys per user) and which were acknowledged with 201.
#[derive(Default, Clone)]
struct Sent {
    keys: HashMap<String, Vec<String>>,
    acked: HashMap<String, usize>,
}

/// `clients` loops posting events with fresh keys over `users` users until the server is
/// gone (or `stop_after` acknowledgements, then the caller kills it).
async fn hammer(
    server: &Binary,
    clients: usize,
    users: usize,
    stop_after: Option<usize>,
) -> (Arc<Mutex<Sent>>, tokio::task::JoinHandle<()>) {
    let sent: Arc<Mutex<Sent>> = Arc::default();
    let acked_total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let base = server.base.clone();
        let (sent, acked_total) = (sent.clone(), acked_total.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0usize.. {
                if stop_after.is_some_and(|n| acked_total.load(Ordering::SeqCst) >= n) {
                    return;
                }
                let user = format!("user-{}", (c * 7 + i) % users);
                let key = format!("c{c}-{i}");
                sent.lock()
                    .expect("lock")
                    .keys
                    .entry(user.clone())
                    .or_default()
                    .push(key.clone());
                let r = client
                    .post(format!("{base}/v1/metrics/{METRIC}/event"))
                    .header("X-API-KEY", crate::support::KEY)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"user": {"id": user}, "value": 1}))
                    .send()
                    .await;
                match r.map(|r| r.status().as_u16()) {
                    Ok(201) => {
                        *sent.lock().expect("lock").acked.entry(user).or_default() += 1;
                        acked_total.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(other) => panic!("unexpected status {other} before the crash"),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    if let Some(n) = stop_after {
        while acked_total.load(Ordering::SeqCst) < n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    // With `stop_after`, the caller kills the server now, while these clients still have
    // requests in flight; they end on the connection errors.
    let clients = tokio::spawn(async move {
        for t in tasks {
            t.await.expect("client task");
        }
    });
    (sent, clients)
}

/// Every check of the module docs, on a restarted server.
async fn check_recovered(server: &Binary, achievement: &str, sent: &Sent) {
    let mut totals = HashMap::new();
    for (user, keys) in &sent.keys {
        let total = server.total(user, METRIC).await;
        let acked = sent.acked.get(user).copied().unwrap_or(0) as f64;
        assert!(total >= acked, "{user}: {total} < {acked} acknowledged");
        assert!(
            total <= keys.len() as f64,
            "{user}: {total} > {} sent",
            keys.len()
        );
        totals.insert(user.clone(), total);
    }
    check_derived(server, achievement, &totals).await;

    // Re-send every key: what was not recorded is recorded now, the rest replays.
    for (user, keys) in &sent.keys {
        for key in keys {
            let status = server.event(METRIC, user, key).await.expect("answer");
            assert!(status == 201 || status == 202, "{status}");
        }
        let total = server.total(user, METRIC).await;
        assert_eq!(total, keys.len() as f64, "{user}: each key exactly once");
        totals.insert(user.clone(), total);
    }
    check_derived(server, achievement, &totals).await;

    // Every user with a streak has its period end filed: three days on, each loses it once.
    let (status, body) = server
        .post(
            "/admin/v1/test-clock",
            json!({"advanceSeconds": 3 * 86_400}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let tally = server.settled_tally().await;
    for (user, total) in &totals {
        if *total > 0.0 {
            assert_eq!(
                tally["users"][user]["streaksLost"], 1,
                "{user}: one streak.lost from the scheduler: {}",
                tally["users"][user]
            );
        }
    }
}

/// Counters and delivered effects agree exactly with the users' totals.
async fn check_derived(server: &Binary, achievement: &str, totals: &HashMap<String, f64>) {
    let users = totals.values().filter(|t| **t > 0.0).count();
    let completed = totals.values().filter(|t| **t >= ACHIEVEMENT_AT).count();
    let (status, list) = server.get("/v1/achievements").await;
    assert_eq!(status, 200, "{list}");
    let a = list
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == achievement)
        .cloned()
        .expect("the achievement is listed");
    assert_eq!(a["completions"], completed, "completion counter: {a}");
    let rarity = if users == 0 {
        0.0
    } else {
        ((completed as f64 / users as f64) * 10_000.0).round() / 100.0
    };
    assert_eq!(a["rarity"], json!(rarity), "user counter (rarity): {a}");
    check_board(server, totals).await;
    let tally = server.settled_tally().await;
    for (user, total) in totals {
        let t: &Value = &tally["users"][user];
        if *total == 0.0 {
            assert!(t.is_null() || t["metricChanges"] == 0, "{user}: {t}");
            continue;
        }
        assert_eq!(
            t["metricChanges"],
            json!(*total as u64),
            "{user}: one effect per record: {t}"
        );
        assert_eq!(t["metricDelta"], json!(*total), "{user}: {t}");
        assert_eq!(
            t["achievements"],
            json!(u64::from(*total >= ACHIEVEMENT_AT)),
            "{user}: {t}"
        );
    }
}

const ENV: [(&str, &str); 2] = [("KUDOS_TEST_CLOCK", "1"), ("KUDOS_TEST_EFFECT_TALLY", "1")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_of_a_commit_leaves_derived_state_equal_to_the_records() {
    for point in [
        "commit_before_write",
        "commit_after_write",
        "commit_after_fsync",
    ] {
        for n in [1usize, 9, 60, 150] {
            let dir = tempfile::tempdir().expect("tempdir");
            let server = Binary::start(dir.path(), &ENV).await;
            let achievement = configure(&server).await;
            drop(server);
            let spec = format!("{point}:{n}");
            let mut env = ENV.to_vec();
            env.push(("KUDOS_TEST_FAILPOINTS", &spec));
            let mut server = Binary::start(dir.path(), &env).await;
            let (sent, clients) = hammer(&server, 6, 10, None).await;
            let status = server.wait_exit().await;
            assert!(
                !status.success(),
                "{spec}: the fail point aborted the process"
            );
            clients.await.expect("clients");
            let sent = sent.lock().expect("lock").clone();
            let server = Binary::start(dir.path(), &ENV).await;
            check_recovered(&server, &achievement, &sent).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_delivers_every_effect_of_every_acknowledged_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Binary::start(dir.path(), &ENV).await;
    let achievement = configure(&server).await;
    let (sent, clients) = hammer(&server, 16, 40, Some(1500)).await;
    server.kill9();
    clients.await.expect("clients");
    let sent = sent.lock().expect("lock").clone();
    let server = Binary::start(dir.path(), &ENV).await;
    check_recovered(&server, &achievement, &sent).await;
}

/// Moves the binary's test clock.
async fn set(server: &Binary, now: &str) {
    let (status, body) = server
        .post("/admin/v1/test-clock", json!({ "now": now }))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Run announcements are one fsynced commit each, with their progress: a `kill -9` after
/// them neither loses nor repeats one, and the scheduler goes on from where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderboard_run_announcements_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Binary::start(dir.path(), &ENV).await;
    set(&server, "2027-01-03T12:00:00Z").await;
    let (status, body) = server
        .post(
            "/admin/v1/metrics",
            json!([{"name": "Words", "key": "words"}]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let metric = body["created"][0]["id"].as_str().expect("id").to_string();
    let (status, body) = server
        .post(
            "/admin/v1/leaderboards",
            json!([{"name": "Weekly", "key": "weekly", "rankBy": "metric", "metricId": metric,
                    "start": "2027-01-03", "runUnit": "day", "runInterval": 7,
                    "maxParticipants": 2, "status": "active"}]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let runs = format!("{}/runs", body["created"][0]["id"].as_str().expect("id"));
    for (user, value) in [("alice", 500), ("bob", 300)] {
        let (status, body) = server
            .post(
                "/v1/metrics/words/event",
                json!({"user": {"id": user}, "value": value}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    set(&server, "2027-01-09T10:00:00Z").await;
    let counted = |t: &Value| {
        (
            t["users"][&runs]["runsStarted"].clone(),
            t["users"][&runs]["runsFinished"].clone(),
        )
    };
    assert_eq!(counted(&server.settled_tally().await), (json!(2), json!(0)));

    server.kill9();
    server.wait_exit().await;
    let mut server = Binary::start(dir.path(), &ENV).await;
    assert_eq!(counted(&server.settled_tally().await), (json!(2), json!(0)));
    set(&server, "2027-01-10T13:00:00Z").await;
    assert_eq!(counted(&server.settled_tally().await), (json!(2), json!(1)));
    // Run 0's final standings are still there to read.
    let (_, board) = server.get("/v1/leaderboards/weekly?run=2027-01-03").await;
    let ranked: Vec<Value> = board["rankings"]
        .as_array()
        .expect("rankings")
        .iter()
        .map(|r| json!([r["userId"], r["rank"]]))
        .collect();
    assert_eq!(
        ranked,
        vec![json!(["alice", 1]), json!(["bob", 2])],
        "{board}"
    );

    server.kill9();
    server.wait_exit().await;
    let server = Binary::start(dir.path(), &ENV).await;
    set(&server, "2027-01-11T12:00:00Z").await;
    assert_eq!(counted(&server.settled_tally().await), (json!(2), json!(1)));
}

/// Deliveries pending when the server is killed are delivered after the restart, with the
/// same event id and body (at least once, SPEC §8.1.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_webhook_deliveries_survive_kill_9_with_the_same_id() {
    use crate::webhooks::{header, received, Receiver};
    let receiver = Receiver::start().await;
    receiver
        .status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("KUDOS_TEST_CLOCK", "1"),
        ("KUDOS_WEBHOOK_ALLOW_PRIVATE", "1"),
    ];
    let mut server = Binary::start(dir.path(), &env).await;
    set(&server, "2027-05-01T12:00:00Z").await;
    let (status, body) = server
        .post(
            "/admin/v1/achievements",
            json!([{"name": "Beta", "trigger": "api", "key": "beta", "status": "active"}]),
        )
        .await;
    assert!(status == 201 || status == 200, "{body}");
    let (status, body) = server
        .post(
            "/admin/v1/webhooks",
            json!([{"url": receiver.url, "events": ["achievement.completed"]}]),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .post(
            "/v1/achievements/beta/complete",
            json!({"user": {"id": "ada"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // The first attempt fails; the delivery is pending when the server dies.
    let first = received(&receiver, 1).await[0].clone();
    server.kill9();
    server.wait_exit().await;

    receiver
        .status
        .store(200, std::sync::atomic::Ordering::SeqCst);
    let server = Binary::start(dir.path(), &env).await;
    set(&server, "2027-05-01T12:05:00Z").await;
    let got = received(&receiver, 2).await;
    let retry = got.last().expect("retry");
    assert_eq!(header(retry, "webhook-id"), header(&first, "webhook-id"));
    assert_eq!(retry.body, first.body);
    drop(server);
}
