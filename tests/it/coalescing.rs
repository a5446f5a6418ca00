//! Webhook throttling through HTTP (SPEC §8.2): `points.changed`, `leaderboard.changed`
//! and `leaderboard.rank_changed` go at once after a quiet period, then at most once per
//! 15 minutes per key, the held changes coalesced into one delivery at the window's end
//! with the latest state. Driven by the test clock; `settled` waits until every
//! acknowledged record was turned into deliveries, so "nothing was sent" is checked, not
//! hoped for.

use serde_json::{json, Value};

use crate::support::TestServer;
use crate::webhooks::{header, received, Receiver};

fn bodies(receiver: &Receiver) -> Vec<Value> {
    receiver
        .requests()
        .iter()
        .map(|c| serde_json::from_slice(&c.body).expect("json"))
        .collect()
}

/// How many deliveries are queued for the only endpoint, once every acknowledged record
/// was turned into deliveries (those the sender has not made yet included).
async fn queued(s: &TestServer) -> usize {
    s.settled().await;
    let hook = s.get("/admin/v1/webhooks").await.body[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    s.get(&format!("/admin/v1/webhooks/{hook}/deliveries?limit=100"))
        .await
        .body
        .as_array()
        .expect("deliveries")
        .len()
}

async fn event_at(s: &TestServer, at: &str, metric: &str, user: &str, value: f64) {
    s.set_clock(at).await;
    let r = s.event(metric, user, value).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    s.settled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_changed_goes_at_once_then_once_per_window_with_the_net_change() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-05-01T12:00:00Z").await;
    let receiver = Receiver::start().await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": receiver.url, "events": ["points.changed"]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let metric = s.create_metrics(&["lessons"]).await.remove(0);
    let r = s
        .post(
            "/admin/v1/points",
            json!([{"name": "XP", "key": "xp",
                    "levels": [{"name": "Silver", "key": "silver", "points": 25}],
                    "triggers": [
                        {"type": "metric", "points": 10, "metricId": metric, "metricThreshold": 1,
                         "status": "active"},
                        {"type": "user_creation", "points": 5, "status": "active"}]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Leading edge: the creation award is not reported, the lesson's is.
    event_at(&s, "2027-05-01T12:00:00Z", "lessons", "ada", 1.0).await;
    let got = received(&receiver, 1).await;
    assert_eq!(header(&got[0], "x-trophy-event-type"), "points.changed");
    let first = &bodies(&receiver)[0];
    assert_eq!(first["type"], "points.changed");
    assert_eq!(first["user"]["id"], "ada");
    let points = &first["points"];
    assert_eq!(
        (
            points["key"].clone(),
            points["total"].clone(),
            points["added"].clone(),
            points["awards"].as_array().map(Vec::len)
        ),
        (json!("xp"), json!(15), json!(10), Some(1))
    );
    assert_eq!(points["awards"][0]["trigger"]["type"], "metric");
    assert!(points.get("level").is_none(), "no level change: {points}");

    // Two more changes inside the window: held.
    event_at(&s, "2027-05-01T12:05:00Z", "lessons", "ada", 1.0).await;
    event_at(&s, "2027-05-01T12:10:00Z", "lessons", "ada", 1.0).await;
    assert_eq!(queued(&s).await, 1, "held until the window ends");

    // The window's end: one delivery with the net change and the level reached.
    s.set_clock("2027-05-01T12:15:00Z").await;
    received(&receiver, 2).await;
    let trailing = &bodies(&receiver)[1];
    let points = &trailing["points"];
    assert_eq!(
        (
            points["total"].clone(),
            points["added"].clone(),
            points["awards"].as_array().map(Vec::len),
            points["level"]["key"].clone()
        ),
        (json!(35), json!(20), Some(2), json!("silver")),
        "{trailing}"
    );
    let totals: Vec<Value> = points["awards"]
        .as_array()
        .expect("awards")
        .iter()
        .map(|a| a["total"].clone())
        .collect();
    assert_eq!(totals, vec![json!(25), json!(35)]);
    assert_ne!(
        header(&receiver.requests()[1], "webhook-id"),
        header(&receiver.requests()[0], "webhook-id")
    );

    // The trailing delivery opened the next window: a change in it waits for its end.
    event_at(&s, "2027-05-01T12:20:00Z", "lessons", "ada", 1.0).await;
    assert_eq!(queued(&s).await, 2);
    s.set_clock("2027-05-01T12:30:00Z").await;
    received(&receiver, 3).await;
    let points = &bodies(&receiver)[2]["points"];
    assert_eq!(
        (points["total"].clone(), points["added"].clone()),
        (json!(45), json!(10))
    );
    assert!(points.get("level").is_none(), "level as last delivered");

    // A window that ends with nothing held closes: the next change goes at once.
    s.set_clock("2027-05-01T12:50:00Z").await;
    event_at(&s, "2027-05-01T13:00:00Z", "lessons", "ada", 1.0).await;
    received(&receiver, 4).await;
    assert_eq!(bodies(&receiver)[3]["points"]["total"], 55);
    // Another user has their own window.
    event_at(&s, "2027-05-01T13:01:00Z", "lessons", "bob", 1.0).await;
    received(&receiver, 5).await;
    assert_eq!(bodies(&receiver)[4]["user"]["id"], "bob");

    // One move of the clock past the window's end: the trailing delivery is queued before
    // the move is answered, made at the window's end.
    event_at(&s, "2027-05-01T14:00:00Z", "lessons", "ada", 1.0).await;
    event_at(&s, "2027-05-01T14:05:00Z", "lessons", "ada", 1.0).await;
    s.set_clock("2027-05-01T16:00:00Z").await;
    let hook = s.get("/admin/v1/webhooks").await.body[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let newest = &s
        .get(&format!("/admin/v1/webhooks/{hook}/deliveries?limit=1"))
        .await
        .body[0];
    assert_eq!(
        (
            newest["created"].clone(),
            newest["payload"]["points"]["total"].clone()
        ),
        (json!("2027-05-01T14:15:00.000Z"), json!(75))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_and_rank_changes_are_throttled_per_board_and_per_user() {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2027-05-01T12:00:00Z").await;
    let receiver = Receiver::start().await;
    let r = s
        .post(
            "/admin/v1/webhooks",
            json!([{"url": receiver.url,
                    "events": ["leaderboard.changed", "leaderboard.rank_changed"]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    s.words_board("2027-05-01").await;
    let of_type = |t: &str| -> Vec<Value> {
        bodies(&receiver)
            .into_iter()
            .filter(|b| b["type"] == t)
            .collect()
    };

    // Ada enters: the board changed and her rank changed, both at once.
    event_at(&s, "2027-05-01T12:00:00Z", "words", "ada", 10.0).await;
    received(&receiver, 2).await;
    let changed = of_type("leaderboard.changed").remove(0);
    assert_eq!(changed["leaderboard"]["key"], "words");
    assert_eq!(
        changed["leaderboard"]["rankings"],
        json!([{"userId": "ada", "userName": null, "rank": 1, "value": 10}])
    );
    let ada = of_type("leaderboard.rank_changed").remove(0);
    assert_eq!(ada["user"]["id"], "ada");
    assert_eq!(
        (
            ada["leaderboard"]["rank"].clone(),
            ada["leaderboard"]["previousRank"].clone(),
            ada["leaderboard"]["value"].clone(),
            ada["leaderboard"]["previousValue"].clone()
        ),
        (json!(1), Value::Null, json!(10), Value::Null)
    );

    // Bob passes her: his entry goes at once; the board's change and Ada's displacement
    // are inside their windows.
    event_at(&s, "2027-05-01T12:05:00Z", "words", "bob", 20.0).await;
    received(&receiver, 3).await;
    let bob = of_type("leaderboard.rank_changed").remove(1);
    assert_eq!(
        (
            bob["user"]["id"].clone(),
            bob["leaderboard"]["rank"].clone()
        ),
        (json!("bob"), json!(1))
    );
    // Ada takes first place back: held for her and for Bob (displaced in his window).
    event_at(&s, "2027-05-01T12:06:00Z", "words", "ada", 15.0).await;
    assert_eq!(queued(&s).await, 3, "{:?}", bodies(&receiver));

    // 12:15 ends the board's and Ada's windows: the board's latest top; Ada is where she
    // was last reported (first), so nothing is said about her.
    s.set_clock("2027-05-01T12:15:00Z").await;
    received(&receiver, 4).await;
    let changed = of_type("leaderboard.changed");
    assert_eq!(changed.len(), 2);
    assert_eq!(
        changed[1]["leaderboard"]["rankings"],
        json!([{"userId": "ada", "userName": null, "rank": 1, "value": 25},
               {"userId": "bob", "userName": null, "rank": 2, "value": 20}])
    );
    // 12:20 ends Bob's: first when last reported, second now.
    s.set_clock("2027-05-01T12:20:00Z").await;
    received(&receiver, 5).await;
    let ranks = of_type("leaderboard.rank_changed");
    assert_eq!(ranks.len(), 3, "{ranks:?}");
    let bob = &ranks[2]["leaderboard"];
    assert_eq!(ranks[2]["user"]["id"], "bob");
    assert_eq!(
        (
            bob["rank"].clone(),
            bob["previousRank"].clone(),
            bob["value"].clone(),
            bob["previousValue"].clone()
        ),
        (json!(2), json!(1), json!(20), json!(20))
    );
    assert_eq!(queued(&s).await, 5);
    assert_eq!(receiver.requests().len(), 5);
}
