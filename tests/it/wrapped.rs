//! Wrapped through HTTP (SPEC §9.3) with the test clock: a Tokyo user whose year turns
//! while UTC's has not, a New York user and an idle one for the percentiles, attribute
//! breakdowns, points, an achievement, a leaderboard's best standing, the longest streak
//! across the boundary, validation, and the same answer after a restart.

use serde_json::{json, Value};

use crate::support::{assert_error, TestServer};

async fn words(s: &TestServer, user: &str, tz: &str, value: f64, device: &str) {
    let r = s
        .post(
            "/v1/metrics/words/event",
            json!({"user": {"id": user, "tz": tz}, "value": value, "attributes": {"device": device}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

async fn wrapped(s: &TestServer, user: &str, year: Option<i32>) -> Value {
    let path = match year {
        Some(y) => format!("/v1/users/{user}/wrapped?year={y}"),
        None => format!("/v1/users/{user}/wrapped"),
    };
    let r = s.get(&path).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

async fn setup() -> TestServer {
    let s = TestServer::start_with_test_clock().await;
    s.set_clock("2026-12-05T00:00:00Z").await;
    s.create_attributes(&[("device", "event")]).await;
    let metric = s.words_board("2026-12-01").await;
    let r = s
        .patch(
            "/admin/v1/streaks/settings",
            json!({"metrics": [{"key": "words", "threshold": 1}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = s
        .post(
            "/admin/v1/points",
            json!([{"name": "XP", "key": "xp", "description": "Experience",
                "triggers": [{"type": "metric", "points": 10, "metricId": metric, "metricThreshold": 1, "status": "active"}]}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    s.api_achievement("First draft", "first-draft").await;
    let r = s
        .post("/v1/users", json!({"id": "idle", "tz": "Europe/Paris"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_in_review_across_the_boundary_in_tokyo() {
    let s = setup().await;
    // 23:30 on Dec 31 in Tokyo.
    s.set_clock("2026-12-31T14:30:00Z").await;
    words(&s, "tk", "Asia/Tokyo", 5.0, "ios").await;
    // 00:30 on Jan 1 in Tokyo; UTC is still in 2026.
    s.set_clock("2026-12-31T15:30:00Z").await;
    words(&s, "tk", "Asia/Tokyo", 2.0, "web").await;
    words(&s, "tk", "Asia/Tokyo", 1.0, "ios").await;
    let now = wrapped(&s, "tk", None).await;
    assert_eq!(
        (
            &now["activity"]["daysActive"],
            &now["activity"]["mostActiveDay"]["date"]
        ),
        (&json!(1), &json!("2027-01-01")),
        "the default year is the user's own: {now}"
    );
    // New York is still on Dec 31: 2027 has not begun there.
    words(&s, "ny", "America/New_York", 1.0, "web").await;
    assert_error(&s.get("/v1/users/ny/wrapped?year=2027").await, 422);

    s.set_clock("2027-01-02T03:00:00Z").await;
    words(&s, "tk", "Asia/Tokyo", 4.0, "ios").await;
    let r = s
        .post(
            "/v1/achievements/first-draft/complete",
            json!({"user": {"id": "tk"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // 10:00 on Jan 2 in New York.
    s.set_clock("2027-01-02T15:00:00Z").await;
    words(&s, "ny", "America/New_York", 3.0, "web").await;
    // Saturday Jan 9 in Tokyo, after the streak was lost on Jan 3.
    s.set_clock("2027-01-09T03:00:00Z").await;
    words(&s, "tk", "Asia/Tokyo", 1.0, "web").await;
    s.settled().await;

    let body = wrapped(&s, "tk", Some(2027)).await;
    check_tokyo_2027(&body);
    let ny = wrapped(&s, "ny", Some(2027)).await;
    let ny_week = &ny["activity"]["mostActiveWeek"];
    assert_eq!(
        (&ny_week["start"], &ny_week["end"]),
        (&json!("2027-01-01"), &json!("2027-01-02"))
    );
    assert_eq!(
        ny_week["metrics"]["words"]["percentileThisPeriod"],
        json!(66.67),
        "ny (3) and idle (0) are at most 3; tk (7) is not"
    );
    let board = &ny["activity"]["entireYear"]["leaderboards"]["words"];
    assert_eq!(
        (&board["rank"], &board["value"]),
        (&json!(2), &json!(4)),
        "{board}"
    );

    let last_year = wrapped(&s, "tk", Some(2026)).await;
    let a = &last_year["activity"];
    assert_eq!(
        (&a["daysActive"], &a["mostActiveDay"]["date"]),
        (&json!(1), &json!("2026-12-31"))
    );
    let m = &a["entireYear"]["metrics"]["words"];
    assert_eq!(
        (
            &m["currentTotal"],
            &m["changeThisPeriod"],
            &m["percentChange"]
        ),
        (&json!(5.0), &json!(5.0), &json!(100.0))
    );
    assert_eq!(
        a["entireYear"]["longestStreak"]["length"],
        json!(3),
        "the chain that began on Dec 31 was active in 2026 too"
    );
    assert_eq!(a["entireYear"]["achievements"], json!([]));

    // The idle user: nothing happened, every period is the earliest.
    let idle = wrapped(&s, "idle", Some(2027)).await;
    let a = &idle["activity"];
    assert_eq!(
        (
            &a["daysActive"],
            &a["mostActiveDay"]["date"],
            &a["mostActiveMonth"]["month"]
        ),
        (&json!(0), &json!("2027-01-01"), &json!(0))
    );
    assert_eq!(
        a["entireYear"]["longestStreak"],
        json!({"length": 0, "frequency": "daily", "periodStart": null, "periodEnd": null, "started": null})
    );
    assert_eq!(a["entireYear"]["metrics"], json!({}));

    // A fourth user, below everyone active, placed in the distributions before the restart.
    words(&s, "low", "UTC", 1.0, "ios").await;
    let body = wrapped(&s, "tk", Some(2027)).await;

    // Same answer from what was written to disk.
    let s = s.restart().await;
    let again = wrapped(&s, "tk", Some(2027)).await;
    assert_eq!(again["activity"], body["activity"]);
    // And the distributions still move from where the reloaded users stand.
    words(&s, "ny", "America/New_York", 10.0, "web").await;
    let ny = wrapped(&s, "ny", Some(2027)).await;
    assert_eq!(
        ny["activity"]["entireYear"]["metrics"]["words"]["percentileThisPeriod"],
        json!(100.0),
        "ny (13) is now at the top: {ny}"
    );
    let tk = wrapped(&s, "tk", Some(2027)).await;
    assert_eq!(
        tk["activity"]["entireYear"]["metrics"]["words"]["percentileThisPeriod"],
        json!(75.0),
        "tk (8) is above low (1) and idle (0)"
    );
    // Were ny's old place (3) not taken back, it would still hold a user: low would be at 25.
    let low = wrapped(&s, "low", Some(2027)).await;
    assert_eq!(
        low["activity"]["entireYear"]["metrics"]["words"]["percentileThisPeriod"],
        json!(50.0),
        "low (1) and idle (0) of four"
    );
    // A year before tk's first event: no metric or points system is listed.
    let before = wrapped(&s, "tk", Some(2025)).await;
    let year = &before["activity"]["entireYear"];
    assert_eq!(
        (&year["metrics"], &year["points"]),
        (&json!({}), &json!({})),
        "{year}"
    );
}

/// The Tokyo user's 2027: Jan 1 (2 events), Jan 2 (1 event, the achievement), Jan 9.
fn check_tokyo_2027(body: &Value) {
    assert_eq!(body["user"]["id"], "tk");
    assert_eq!(body["user"]["tz"], "Asia/Tokyo");
    let a = &body["activity"];
    assert_eq!(
        (&a["daysActive"], &a["weeksActive"], &a["monthsActive"]),
        (&json!(3), &json!(2), &json!(1)),
        "{a}"
    );
    let day = &a["mostActiveDay"];
    assert_eq!(day["date"], "2027-01-01");
    let m = &day["metrics"]["words"];
    assert_eq!(
        (
            &m["currentTotal"],
            &m["changeThisPeriod"],
            &m["percentChange"]
        ),
        (&json!(8.0), &json!(3.0), &json!(60.0)),
        "{m}"
    );
    assert!(
        m.get("percentileThisPeriod").is_none(),
        "days have no percentile"
    );
    assert_eq!(m["name"], "Metric words");
    assert_eq!(m["units"], json!(null));
    assert_eq!(
        m["byAttribute"]["device"],
        json!({
            "ios": {"name": "Metric words", "units": null, "currentTotal": 6.0, "changeThisPeriod": 1.0, "percentChange": 20.0},
            "web": {"name": "Metric words", "units": null, "currentTotal": 2.0, "changeThisPeriod": 2.0, "percentChange": 100.0},
        })
    );
    assert_eq!(day["achievements"], json!([]));

    let week = &a["mostActiveWeek"];
    assert_eq!(
        (&week["start"], &week["end"]),
        (&json!("2027-01-01"), &json!("2027-01-02")),
        "Sunday–Saturday, clipped to the year"
    );
    let m = &week["metrics"]["words"];
    assert_eq!(
        (
            &m["currentTotal"],
            &m["changeThisPeriod"],
            &m["percentChange"]
        ),
        (&json!(12.0), &json!(7.0), &json!(140.0))
    );
    assert_eq!(
        m["percentileThisPeriod"],
        json!(100.0),
        "tk, ny and idle: all at most 7"
    );
    let xp = &week["points"]["xp"];
    assert_eq!(
        (
            &xp["name"],
            &xp["description"],
            &xp["currentTotal"],
            &xp["changeThisPeriod"]
        ),
        (
            &json!("XP"),
            &json!("Experience"),
            &json!(120.0),
            &json!(70.0)
        ),
        "{xp}"
    );
    assert_eq!(xp["percentileThisPeriod"], json!(100.0));
    let achievements = week["achievements"].as_array().expect("achievements");
    assert_eq!(achievements.len(), 1, "{achievements:?}");
    assert_eq!(achievements[0]["key"], "first-draft");
    assert_eq!(achievements[0]["achievedAt"], "2027-01-02T03:00:00.000Z");
    assert_eq!(achievements[0]["completions"], 1);

    assert_eq!(a["mostActiveMonth"]["month"], 0);
    let year = &a["entireYear"];
    let m = &year["metrics"]["words"];
    assert_eq!(
        (
            &m["currentTotal"],
            &m["changeThisPeriod"],
            &m["percentChange"]
        ),
        (&json!(13.0), &json!(8.0), &json!(160.0))
    );
    assert_eq!(
        year["longestStreak"],
        json!({"length": 3, "frequency": "daily", "periodStart": "2026-12-31",
               "periodEnd": "2027-01-02", "started": "2026-12-31"})
    );
    let board = &year["leaderboards"]["words"];
    assert_eq!(
        (
            &board["rank"],
            &board["value"],
            &board["start"],
            &board["end"]
        ),
        (&json!(1), &json!(8), &json!("2026-12-01"), &json!(null)),
        "the best rank, on its earliest day: {board}"
    );
    assert_eq!(board["key"], "words");
    assert!(board.get("status").is_none(), "{board}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn years_are_validated_and_unknown_users_are_404() {
    let s = setup().await;
    s.set_clock("2027-03-01T12:00:00Z").await;
    words(&s, "u1", "UTC", 1.0, "ios").await;
    for bad in ["0", "-1", "2028", "abc", "2027.5", ""] {
        let r = s.get(&format!("/v1/users/u1/wrapped?year={bad}")).await;
        assert_error(&r, 422);
        assert_eq!(
            r.body["error"], "year must be an integer between 1 and the current year",
            "year={bad}"
        );
    }
    assert_error(&s.get("/v1/users/nobody/wrapped").await, 404);
    // A year long before the user existed: empty, but well-formed.
    let old = wrapped(&s, "u1", Some(1)).await;
    assert_eq!(old["activity"]["daysActive"], 0);
    assert_eq!(old["activity"]["mostActiveDay"]["date"], "0001-01-01");
    assert_eq!(old["activity"]["entireYear"]["metrics"], json!({}));
    assert_eq!(
        old["activity"]["mostActiveWeek"]["end"], "0001-01-06",
        "0001-01-01 is a Monday: its week ends on Saturday the 6th"
    );
}
