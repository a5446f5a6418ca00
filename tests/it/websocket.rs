//! `GET /v1/ws` with a real WebSocket client (SPEC §11.4): the key checked before the
//! upgrade, ping, leaderboard snapshots with `limit`, `run` and `aroundUser`, unsubscribe,
//! and errors as messages on a connection that stays open.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestServer, KEY};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    s: &TestServer,
    query: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = format!("{}/v1/ws{query}", s.base.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(ws, _)| ws)
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// Sends a `subscribe` op that has no immediate answer (a `user:` topic) and waits until
/// it is registered (the `pong` of a ping sent after it is answered after it).
async fn subscribed(ws: &mut Socket, op: Value) {
    send(ws, op).await;
    send(ws, json!({"op": "ping"})).await;
    assert_eq!(next(ws).await, json!({"type": "pong"}));
}

/// The next JSON message (within 10 s).
pub async fn next(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("json");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_checked_before_the_upgrade() {
    let s = TestServer::start().await;
    // No key, a bad key: a 401 with the error body, no upgrade.
    for query in ["", "?apiKey=nope.nope"] {
        match connect(&s, query).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401);
                let body: Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                        .expect("json body");
                assert!(body["error"].is_string(), "{body}");
            }
            other => panic!("expected a 401, got {:?}", other.map(|_| ())),
        }
    }
    // The key as a query parameter (browsers), or as the header.
    let mut ws = connect(&s, &format!("?apiKey={KEY}"))
        .await
        .expect("upgrade");
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(next(&mut ws).await, json!({"type": "pong"}));
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("{}/v1/ws", s.base.replace("http://", "ws://")),
    )
    .expect("request");
    req.headers_mut()
        .insert("x-api-key", KEY.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(next(&mut ws).await, json!({"type": "pong"}));
    // A plain GET (no upgrade) with a good key is a 400.
    let r = s.get("/v1/ws").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_starts_with_a_snapshot_and_bad_ops_are_answered_with_errors() {
    let s = TestServer::start().await;
    s.words_board("2020-01-01").await;
    for (i, user) in ["ada", "bob", "cy", "dee", "eve", "fay", "gus"]
        .iter()
        .enumerate()
    {
        let r = s.event("words", user, 10.0 * (i as f64 + 1.0)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let mut ws = connect(&s, &format!("?apiKey={KEY}"))
        .await
        .expect("upgrade");

    send(
        &mut ws,
        json!({"op": "subscribe", "id": "top", "topic": "leaderboard:words", "limit": 3}),
    )
    .await;
    let snap = next(&mut ws).await;
    assert_eq!(
        (
            snap["type"].clone(),
            snap["id"].clone(),
            snap["seq"].clone()
        ),
        (json!("snapshot"), json!("top"), json!(0))
    );
    assert_eq!(snap["leaderboard"]["key"], "words");
    assert_eq!(snap["leaderboard"]["status"], "active");
    let ranked: Vec<(Value, Value)> = snap["leaderboard"]["rankings"]
        .as_array()
        .expect("rankings")
        .iter()
        .map(|r| (r["userId"].clone(), r["rank"].clone()))
        .collect();
    assert_eq!(
        ranked,
        vec![
            (json!("gus"), json!(1)),
            (json!("fay"), json!(2)),
            (json!("eve"), json!(3))
        ]
    );
    assert!(snap.get("around").is_none());

    // Around a user: their rank ±2.
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "me", "topic": "leaderboard:words", "aroundUser": "cy"}),
    )
    .await;
    let snap = next(&mut ws).await;
    let around: Vec<Value> = snap["around"]
        .as_array()
        .expect("around")
        .iter()
        .map(|r| r["userId"].clone())
        .collect();
    assert_eq!(
        around,
        vec![
            json!("eve"),
            json!("dee"),
            json!("cy"),
            json!("bob"),
            json!("ada")
        ]
    );
    assert_eq!(
        snap["leaderboard"]["rankings"].as_array().map(Vec::len),
        Some(7),
        "the default limit is 10"
    );

    // Errors are messages; the connection stays open.
    for (op, id, needle) in [
        (
            json!({"op": "subscribe", "id": "top", "topic": "leaderboard:words"}),
            Some("top"),
            "already",
        ),
        (
            json!({"op": "subscribe", "id": "x", "topic": "leaderboard:nope"}),
            Some("x"),
            "not found",
        ),
        (
            json!({"op": "subscribe", "id": "x", "topic": "leaderboard:words", "limit": 101}),
            Some("x"),
            "limit",
        ),
        (
            json!({"op": "subscribe", "id": "x", "topic": "leaderboard:words", "run": "soon"}),
            Some("x"),
            "run",
        ),
        (
            json!({"op": "subscribe", "id": "x", "topic": "elsewhere"}),
            Some("x"),
            "topic",
        ),
        (
            json!({"op": "subscribe", "topic": "leaderboard:words"}),
            None,
            "id",
        ),
        (json!({"op": "dance", "id": "x"}), Some("x"), "Unknown op"),
        (
            json!({"op": "unsubscribe", "id": "never"}),
            Some("never"),
            "No subscription",
        ),
        (json!(["not", "an", "object"]), None, "JSON objects"),
    ] {
        send(&mut ws, op.clone()).await;
        let e = next(&mut ws).await;
        assert_eq!(e["type"], "error", "{op}: {e}");
        assert_eq!(e.get("id").and_then(Value::as_str), id, "{op}: {e}");
        let text = e["error"].as_str().expect("error text");
        assert!(text.contains(needle), "{op}: {text}");
    }
    ws.send(Message::Text("{not json".into()))
        .await
        .expect("send");
    assert_eq!(next(&mut ws).await["type"], "error");

    // Unsubscribe frees the id.
    send(&mut ws, json!({"op": "unsubscribe", "id": "top"})).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "top", "topic": "leaderboard:words", "limit": 1}),
    )
    .await;
    let snap = next(&mut ws).await;
    assert_eq!(
        (
            snap["type"].clone(),
            snap["leaderboard"]["rankings"].as_array().map(Vec::len)
        ),
        (json!("snapshot"), Some(1))
    );
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(next(&mut ws).await, json!({"type": "pong"}));
}

/// The next message that is not a `pong`.
async fn next_update(ws: &mut Socket) -> Value {
    loop {
        let m = next(ws).await;
        if m["type"] != "pong" {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_follow_rest_events_with_seq_rising_by_one_until_unsubscribed() {
    let s = TestServer::start().await;
    s.words_board("2020-01-01").await;
    for (user, value) in [("ada", 10.0), ("bob", 20.0), ("cy", 30.0)] {
        assert_eq!(s.event("words", user, value).await.status, 201);
    }
    let mut ws = connect(&s, &format!("?apiKey={KEY}"))
        .await
        .expect("upgrade");
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "top", "topic": "leaderboard:words", "limit": 2}),
    )
    .await;
    let snap = next(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "ada", "topic": "leaderboard:words", "aroundUser": "ada", "limit": 1}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "snapshot");

    // Ada climbs to first: both windows move.
    assert_eq!(s.event("words", "ada", 100.0).await.status, 201);
    let mut got = [next_update(&mut ws).await, next_update(&mut ws).await];
    got.sort_by_key(|m| m["id"].as_str().unwrap_or_default().to_string());
    let (ada, top) = (&got[0], &got[1]);
    assert_eq!(
        (top["type"].clone(), top["id"].clone(), top["seq"].clone()),
        (json!("update"), json!("top"), json!(1))
    );
    let first: Vec<Value> = top["leaderboard"]["rankings"]
        .as_array()
        .expect("rankings")
        .iter()
        .map(|r| r["userId"].clone())
        .collect();
    assert_eq!(first, vec![json!("ada"), json!("cy")]);
    assert_eq!(
        (ada["id"].clone(), ada["seq"].clone()),
        (json!("ada"), json!(1))
    );
    assert_eq!(ada["around"][0]["userId"], "ada");

    // More moves: seq rises by exactly one per update.
    for (i, value) in [50.0, 100.0].into_iter().enumerate() {
        assert_eq!(s.event("words", "bob", value).await.status, 201);
        loop {
            let m = next_update(&mut ws).await;
            if m["id"] == "top" {
                assert_eq!(m["seq"], json!(i + 2), "{m}");
                break;
            }
        }
    }

    // Unsubscribed: "top" gets nothing more, while "ada" still moves.
    send(&mut ws, json!({"op": "unsubscribe", "id": "top"})).await;
    send(&mut ws, json!({"op": "ping"})).await;
    loop {
        let m = next(&mut ws).await;
        if m["type"] == "pong" {
            break;
        }
    }
    assert_eq!(s.event("words", "dee", 1000.0).await.status, 201);
    let m = next_update(&mut ws).await;
    assert_eq!(m["id"], "ada", "{m}");
    // Anything "top" would have got came with "ada"'s update (same tick): the pong that
    // follows is the next message, with nothing of "top" before it.
    send(&mut ws, json!({"op": "ping"})).await;
    loop {
        let m = next(&mut ws).await;
        assert_ne!(m["id"], "top", "{m}");
        if m["type"] == "pong" {
            break;
        }
    }

    // Resubscribing with the same id starts over at seq 0 and gets no message of the old
    // subscription.
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "ada", "topic": "leaderboard:words", "limit": 1}),
    )
    .await;
    let e = next(&mut ws).await;
    assert_eq!(e["type"], "error", "the id is still in use: {e}");
    send(&mut ws, json!({"op": "unsubscribe", "id": "ada"})).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "ada", "topic": "leaderboard:words", "limit": 1}),
    )
    .await;
    let snap = next(&mut ws).await;
    assert_eq!(
        (snap["type"].clone(), snap["seq"].clone()),
        (json!("snapshot"), json!(0))
    );
    assert_eq!(s.event("words", "eve", 5000.0).await.status, 201);
    let m = next_update(&mut ws).await;
    assert_eq!(
        (m["id"].clone(), m["seq"].clone()),
        (json!("ada"), json!(1)),
        "{m}"
    );
    assert_eq!(m["leaderboard"]["rankings"][0]["userId"], "eve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_key_are_limited_and_shutdown_closes_with_1001() {
    let s = TestServer::start_with(|c| c.ws_max_connections_per_key = 2).await;
    let query = format!("?apiKey={KEY}");
    let first = connect(&s, &query).await.expect("upgrade");
    let mut second = connect(&s, &query).await.expect("upgrade");
    match connect(&s, &query).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                .expect("json body");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("at most 2"),
                "{body}"
            );
        }
        other => panic!("expected a 429, got {:?}", other.map(|_| ())),
    }
    // A closed connection gives its seat back.
    drop(first);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut third = loop {
        match connect(&s, &query).await {
            Ok(ws) => break ws,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the seat was not given back: {e}"),
        }
    };
    send(&mut third, json!({"op": "ping"})).await;
    assert_eq!(next(&mut third).await, json!({"type": "pong"}));

    // A graceful stop closes every socket with 1001.
    s.stop().await.expect("stop");
    for ws in [&mut second, &mut third] {
        let close = loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
                .await
                .expect("a close in time");
            match msg {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_topic_carries_that_users_events_unthrottled() {
    let s = TestServer::start().await;
    let metric = s.create_metrics(&["lessons"]).await.remove(0);
    s.api_achievement("Beta", "beta").await;
    let r = s
        .post(
            "/admin/v1/points",
            json!([{"name": "XP", "key": "xp",
                    "triggers": [{"type": "metric", "points": 10, "metricId": metric,
                                  "metricThreshold": 1, "status": "active"}]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut ws = connect(&s, &format!("?apiKey={KEY}"))
        .await
        .expect("upgrade");
    // The pong says the subscription was registered (it is answered after it).
    subscribed(
        &mut ws,
        json!({"op": "subscribe", "id": "me", "topic": "user:ada"}),
    )
    .await;

    let r = s
        .post(
            "/v1/achievements/beta/complete",
            json!({"user": {"id": "ada"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let m = next(&mut ws).await;
    assert_eq!(
        (m["type"].clone(), m["id"].clone(), m["seq"].clone()),
        (json!("event"), json!("me"), json!(0))
    );
    assert_eq!(m["event"]["type"], "achievement.completed");
    assert_eq!(m["event"]["user"]["id"], "ada");
    assert_eq!(m["event"]["achievement"]["key"], "beta");

    // Two awards in a row: two points.changed (no 15-minute window here).
    for expected in [10, 20] {
        assert_eq!(s.event("lessons", "ada", 1.0).await.status, 201);
        let m = next(&mut ws).await;
        assert_eq!(m["event"]["type"], "points.changed", "{m}");
        assert_eq!(m["event"]["points"]["total"], expected, "{m}");
    }
    // Another user's events are not sent.
    assert_eq!(s.event("lessons", "bob", 1.0).await.status, 201);
    assert_eq!(s.event("lessons", "ada", 1.0).await.status, 201);
    let m = next(&mut ws).await;
    assert_eq!(
        (m["event"]["user"]["id"].clone(), m["seq"].clone()),
        (json!("ada"), json!(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_topic_carries_rank_changes_of_the_user_unthrottled() {
    let s = TestServer::start().await;
    s.words_board("2020-01-01").await;
    let mut ws = connect(&s, &format!("?apiKey={KEY}"))
        .await
        .expect("upgrade");
    subscribed(
        &mut ws,
        json!({"op": "subscribe", "id": "bob", "topic": "user:bob"}),
    )
    .await;

    // Bob enters first; ada passes him, then he passes her back: one change each time,
    // with no 15-minute window, and none for ada's own move (she is not subscribed).
    assert_eq!(s.event("words", "bob", 10.0).await.status, 201);
    let m = next(&mut ws).await;
    assert_eq!(m["event"]["type"], "leaderboard.rank_changed", "{m}");
    assert_eq!(m["event"]["user"]["id"], "bob", "{m}");
    assert_eq!(m["event"]["leaderboard"]["key"], "words", "{m}");
    assert_eq!(
        (
            m["event"]["leaderboard"]["rank"].clone(),
            m["event"]["leaderboard"]["previousRank"].clone()
        ),
        (json!(1), Value::Null),
        "{m}"
    );
    assert_eq!(m["seq"], 0);
    for (user, value, bob_rank) in [("ada", 20.0, 2), ("bob", 15.0, 1)] {
        assert_eq!(s.event("words", user, value).await.status, 201);
        let m = next(&mut ws).await;
        assert_eq!(m["event"]["type"], "leaderboard.rank_changed", "{m}");
        assert_eq!(m["event"]["user"]["id"], "bob", "{m}");
        assert_eq!(
            m["event"]["leaderboard"]["rank"], bob_rank,
            "bob's rank after {user}'s event: {m}"
        );
        assert_eq!(
            m["event"]["leaderboard"]["previousRank"],
            3 - bob_rank,
            "{m}"
        );
    }
    // No webhook endpoint exists: the changes were built for the live topic only, and
    // wrote no webhook outbox rows.
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains("kudos_inbox_backlog{consumer=\"webhooks\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_follows_edits_and_the_current_run_as_runs_roll_over() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-01-07T12:00:00Z").await;
    let metric = s.create_metrics(&["words"]).await.remove(0);
    let r = s
        .post(
            "/admin/v1/leaderboards",
            json!([{"name": "Daily", "key": "daily", "rankBy": "metric", "metricId": metric,
                    "start": "2027-01-01", "runUnit": "day", "runInterval": 1, "status": "active"}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["created"][0]["id"].as_str().expect("id").to_string();
    assert_eq!(s.event("words", "ada", 10.0).await.status, 201);
    let mut ws = connect(&s, &format!("?apiKey={KEY}"))
        .await
        .expect("upgrade");
    send(
        &mut ws,
        json!({"op": "subscribe", "id": "today", "topic": "leaderboard:daily"}),
    )
    .await;
    let snap = next(&mut ws).await;
    assert_eq!(
        snap["leaderboard"]["rankings"][0]["userId"], "ada",
        "{snap}"
    );

    // An admin edit with no event: the window shows the new name.
    let r = s
        .patch(
            "/admin/v1/leaderboards",
            json!([{"id": id, "name": "Words today"}]),
        )
        .await;
    assert_eq!(r.body["updated"][0]["name"], "Words today", "{:?}", r.body);
    let m = next_update(&mut ws).await;
    assert_eq!(
        (m["seq"].clone(), m["leaderboard"]["name"].clone()),
        (json!(1), json!("Words today")),
        "{m}"
    );

    // The next day: the window moves to the new, empty run, and fills as it gets events.
    s.set_clock("2027-01-08T12:00:00Z").await;
    let m = next_update(&mut ws).await;
    assert_eq!(m["seq"], 2, "{m}");
    assert_eq!(m["leaderboard"]["rankings"], json!([]), "{m}");
    assert_eq!(s.event("words", "bob", 3.0).await.status, 201);
    let m = next_update(&mut ws).await;
    assert_eq!(m["seq"], 3, "{m}");
    assert_eq!(m["leaderboard"]["rankings"][0]["userId"], "bob", "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_all_receive_the_update() {
    use futures_util::stream::{self, StreamExt as _};
    let s = TestServer::start().await;
    s.words_board("2020-01-01").await;
    assert_eq!(s.event("words", "ada", 10.0).await.status, 201);
    let subscribe =
        json!({"op": "subscribe", "id": "top", "topic": "leaderboard:words", "limit": 3});
    let mut sockets: Vec<Socket> = stream::iter(0..1000)
        .map(|_| async {
            let mut ws = connect(&s, &format!("?apiKey={KEY}"))
                .await
                .expect("upgrade");
            send(&mut ws, subscribe.clone()).await;
            assert_eq!(next(&mut ws).await["type"], "snapshot");
            ws
        })
        .buffer_unordered(50)
        .collect()
        .await;
    assert_eq!(sockets.len(), 1000);

    assert_eq!(s.event("words", "bob", 20.0).await.status, 201);
    let updates = futures_util::future::join_all(sockets.iter_mut().map(next_update)).await;
    for m in &updates {
        assert_eq!(
            (m["type"].clone(), m["seq"].clone()),
            (json!("update"), json!(1)),
            "{m}"
        );
        assert_eq!(m["leaderboard"]["rankings"][0]["userId"], "bob", "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_without_slowing_others() {
    let s = TestServer::start().await;
    let metric = s.create_metrics(&["lessons"]).await.remove(0);
    // Ten points systems: each event is ten `points.changed` messages (about 12 KB), so the
    // kernel's buffers (up to 4 MiB on the server's side) fill within a few hundred events.
    let systems: Vec<Value> = (0..SYSTEMS)
        .map(|i| {
            json!({"name": format!("XP {i}"), "key": format!("xp{i}"),
                   "triggers": [{"type": "metric", "points": 10, "metricId": metric,
                                 "metricThreshold": 1, "status": "active"}]})
        })
        .collect();
    let r = s.post("/admin/v1/points", Value::Array(systems)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let topic = json!({"op": "subscribe", "id": "ada", "topic": "user:ada"});
    let mut good = connect(&s, &format!("?apiKey={KEY}"))
        .await
        .expect("upgrade");
    send(&mut good, topic.clone()).await;
    send(&mut good, json!({"op": "ping"})).await;
    assert_eq!(next(&mut good).await, json!({"type": "pong"}));
    // A peer with a tiny receive buffer that stops reading once subscribed.
    let addr: std::net::SocketAddr = s.base.trim_start_matches("http://").parse().expect("addr");
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = tcp.connect(addr).await.expect("connect");
    let (mut slow, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/v1/ws?apiKey={KEY}"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .expect("upgrade");
    send(&mut slow, topic).await;
    send(&mut slow, json!({"op": "ping"})).await;
    assert_eq!(next(&mut slow).await, json!({"type": "pong"}));

    // Far more events than the slow peer's buffers and queue hold; the good one reads
    // each, in order, as they come.
    const SYSTEMS: usize = 10;
    let posts = 700;
    let n = posts * SYSTEMS;
    let reader = tokio::spawn(async move {
        for i in 0..n {
            let m = next(&mut good).await;
            assert_eq!(
                (m["type"].clone(), m["seq"].clone()),
                (json!("event"), json!(i)),
                "{m}"
            );
            assert_eq!(m["event"]["type"], "points.changed", "{m}");
        }
    });
    let started = std::time::Instant::now();
    for _ in 0..posts {
        assert_eq!(s.event("lessons", "ada", 1.0).await.status, 201);
    }
    reader.await.expect("the good subscriber got every event");
    // Cut off for falling behind its events, while it was still not reading: sooner than
    // the 10 s a blocked write is allowed.
    loop {
        let metrics = s.metrics_text().await;
        if metrics.contains("kudos_ws_slow_consumers_total 1\n") {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "the slow peer was not cut off for its queue"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The slow peer was cut off: what it reads now ends before the last event, with a
    // 1013 close when that frame made it out, else the end of the stream.
    let mut events = 0;
    let ended = loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(15), slow.next())
            .await
            .expect("the slow peer's stream ends");
        match msg {
            Some(Ok(Message::Text(_))) => events += 1,
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(events < n, "the slow peer got all {events} events");
    assert!(matches!(ended, None | Some(1013)), "{ended:?}");
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains("kudos_ws_slow_consumers_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_is_served_without_a_key_in_it() {
    let s = TestServer::start().await;
    let r = reqwest::get(format!("{}/live/words", s.base))
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(r.headers().contains_key("content-security-policy"));
    let page = r.text().await.expect("body");
    // The protocol of docs/websocket.md, the board from the address, no external assets.
    assert!(
        page.contains("/v1/ws?apiKey="),
        "the page connects to the socket"
    );
    assert!(page.contains("\"leaderboard:\" + boardKey"));
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    assert!(!page.contains(KEY), "no key is put in the page");
}
