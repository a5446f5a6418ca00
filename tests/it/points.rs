//! Points through HTTP (SPEC §6): admin CRUD for systems, triggers, levels and boosts with
//! their validation, awards on events, boosts, levels, caps, and the application reads.

use serde_json::{json, Value};

use crate::support::{assert_error, TestServer};

fn created_ids(body: &Value) -> Vec<String> {
    body["created"]
        .as_array()
        .expect("created")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_string())
        .collect()
}

fn messages(body: &Value) -> Vec<(Option<u64>, String)> {
    body["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            (
                i["index"].as_u64(),
                i["message"].as_str().expect("message").to_string(),
            )
        })
        .collect()
}

/// Creates a system with `key` (and optional `maxPoints`); returns its id.
pub async fn create_system(s: &TestServer, key: &str, max: Option<i64>) -> String {
    let r = s
        .post(
            "/admin/v1/points",
            json!([{"name": key.to_uppercase(), "key": key, "maxPoints": max}]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    created_ids(&r.body).remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_crud_for_systems_triggers_levels_and_boosts() {
    let s = TestServer::start().await;
    let metric = s.create_metrics(&["lessons"]).await.remove(0);
    let r = s
        .post(
            "/admin/v1/points",
            json!([
                {"name": "XP", "key": "xp", "description": "Experience", "badge": {"url": "https://x/xp.png"},
                 "levels": [{"name": "Bronze", "key": "bronze", "points": 0}],
                 "triggers": [{"type": "metric", "points": 10, "metricId": metric, "metricThreshold": 1}]},
                {"name": "Dup", "key": "xp"},
                {"name": "Bad", "key": "no spaces"},
                {"name": "Zero", "key": "zero", "maxPoints": 0},
                {"key": "noname"},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let sys = &r.body["created"][0];
    assert_eq!(sys["key"], "xp");
    assert_eq!(sys["status"], "active");
    assert_eq!(sys["badge"], json!({"url": "https://x/xp.png"}));
    assert_eq!(sys["maxPoints"], json!(null));
    assert_eq!(sys["levels"][0]["key"], "bronze");
    assert_eq!(sys["triggers"][0]["status"], "inactive", "inactive by default");
    assert!(sys.get("boosts").is_none(), "only lists that were sent");
    let msgs = messages(&r.body);
    assert_eq!(
        msgs.iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![Some(1), Some(2), Some(3), Some(4)]
    );
    assert_eq!(msgs[0].1, "Key already in use by another points system");
    assert_eq!(msgs[3].1, "Name is required");
    let id = sys["id"].as_str().expect("id").to_string();

    assert_eq!(s.get(&format!("/admin/v1/points/{id}")).await.body["name"], "XP");
    assert_error(&s.get("/admin/v1/points/not-a-uuid").await, 404);
    let upd = s
        .patch(
            "/admin/v1/points",
            json!([{"id": id, "name": "XP!", "maxPoints": 500}, {"id": uuid::Uuid::new_v4(), "name": "x"}]),
        )
        .await;
    assert_eq!(upd.body["updated"][0]["maxPoints"], 500);
    assert_eq!(upd.body["issues"][0]["message"], "Points system not found by ID");

    // Triggers: one issue per bad item, nothing written for it.
    let ach = s
        .post(
            "/admin/v1/achievements",
            json!([{"name": "A", "trigger": "api", "key": "a", "status": "active"}]),
        )
        .await;
    let ach = created_ids(&ach.body).remove(0);
    let base = format!("/admin/v1/points/{id}/triggers");
    let r = s
        .post(
            &base,
            json!([
                {"type": "streak", "points": 5, "streakLength": 3, "status": "active"},
                {"type": "achievement", "points": 7, "achievementId": ach},
                {"type": "time", "points": 1, "timeUnit": "hours", "timeInterval": 2},
                {"type": "user_creation", "points": 3, "blockIfOutOfPoints": true},
                {"type": "metric", "points": 0, "metricId": metric, "metricThreshold": 1},
                {"type": "metric", "points": 5, "metricId": uuid::Uuid::new_v4(), "metricThreshold": 1},
                {"type": "metric", "points": 5, "metricId": metric, "metricThreshold": 1, "streakLength": 2},
                {"type": "streak", "points": 5, "streakLength": 0},
                {"type": "achievement", "points": 5, "achievementId": uuid::Uuid::new_v4()},
                {"type": "time", "points": 5, "timeUnit": "weeks", "timeInterval": 1},
                {"type": "bogus", "points": 5},
                {"points": 5},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = r.body["created"].as_array().expect("created");
    assert_eq!(created.len(), 4, "{:?}", r.body);
    assert_eq!(created[0]["streakLength"], 3);
    assert_eq!(created[2]["timeUnit"], "hours");
    assert_eq!(created[3]["blockIfOutOfPoints"], true);
    let msgs = messages(&r.body);
    assert_eq!(msgs.len(), 8, "{msgs:?}");
    assert_eq!(msgs[0].1, "Points must not be zero");
    assert_eq!(msgs[1].1, "Metric not found by ID");
    assert_eq!(msgs[2].1, "streakLength is only allowed on streak triggers");
    let streak_trigger = created[0]["id"].as_str().expect("id").to_string();
    let list = s.get(&base).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(5));
    // The type of an active trigger cannot change; an inactive one's can, with its fields.
    let r = s
        .patch(
            &base,
            json!([{"id": streak_trigger, "type": "metric", "metricId": metric, "metricThreshold": 2}]),
        )
        .await;
    assert_eq!(
        r.body["issues"][0]["message"],
        "Trigger type can only be changed while the trigger is inactive"
    );
    let r = s
        .patch(&base, json!([{"id": streak_trigger, "points": 6, "status": "inactive"}]))
        .await;
    assert_eq!(r.body["updated"][0]["points"], 6);
    assert_eq!(r.body["updated"][0]["status"], "inactive");
    let r = s.delete(&format!("{base}?ids={streak_trigger},nope")).await;
    assert_eq!(r.body["deleted"], json!([{"id": streak_trigger}]));
    assert_eq!(r.body["issues"][0]["message"], "id must be a valid UUID");
    assert_error(&s.get(&format!("{base}/{streak_trigger}")).await, 404);

    // Levels: keys unique within the system, thresholds ≥ 0.
    let lbase = format!("/admin/v1/points/{id}/levels");
    let r = s
        .post(
            &lbase,
            json!([
                {"name": "Silver", "key": "silver", "points": 100, "badge": {"url": "https://x/s.png"}},
                {"name": "Again", "key": "bronze", "points": 5},
                {"name": "Neg", "key": "neg", "points": -1},
            ]),
        )
        .await;
    assert_eq!(created_ids(&r.body).len(), 1);
    assert_eq!(
        messages(&r.body)[0].1,
        "Key already in use by another level"
    );
    let silver = created_ids(&r.body).remove(0);
    let r = s
        .patch(&lbase, json!([{"id": silver, "points": 150, "badge": null}]))
        .await;
    assert_eq!(r.body["updated"][0]["points"], 150);
    assert_eq!(r.body["updated"][0]["badge"], json!(null));
    assert_eq!(
        s.get(&format!("{lbase}/{silver}")).await.body["description"],
        ""
    );

    // Boosts: user xor attributes, user must exist, multiplier bounds.
    s.event("lessons", "u1", 1.0).await;
    s.create_attributes(&[("plan", "user")]).await;
    let bbase = format!("/admin/v1/points/{id}/boosts");
    let r = s
        .post(
            &bbase,
            json!([
                {"name": "Double", "start": "2020-01-01", "end": "2020-01-03", "multiplier": 2},
                {"name": "Mine", "userId": "u1", "start": "2020-01-01", "multiplier": 1.5, "rounding": "up"},
                {"name": "Ghost", "userId": "nobody", "start": "2020-01-01", "multiplier": 2},
                {"name": "One", "start": "2020-01-01", "multiplier": 1},
                {"name": "Back", "start": "2020-01-05", "end": "2020-01-01", "multiplier": 2},
            ]),
        )
        .await;
    assert_eq!(created_ids(&r.body).len(), 2, "{:?}", r.body);
    let b = &r.body["created"];
    assert_eq!(b[0]["status"], "finished");
    assert_eq!(b[0]["userAttributes"], json!([]));
    assert_eq!(b[1]["userId"], "u1");
    assert!(b[1].get("userAttributes").is_none(), "omitted for user boosts");
    assert_eq!(messages(&r.body)[0].1, "User does not exist");
    let mine = b[1]["id"].as_str().expect("id").to_string();
    let r = s
        .patch(
            &bbase,
            json!([{"id": mine, "userAttributes": []}, {"id": mine, "name": "Mine!", "end": "2099-01-01"}]),
        )
        .await;
    assert_eq!(
        r.body["issues"][0]["message"],
        "userAttributes cannot be set on a user-specific boost"
    );
    assert_eq!(r.body["updated"][0]["name"], "Mine!");

    // Unknown or deleted system: 404 for the whole sub-resource request.
    let ghost = uuid::Uuid::new_v4();
    assert_error(&s.get(&format!("/admin/v1/points/{ghost}/levels")).await, 404);
    let del = s.delete(&format!("/admin/v1/points?ids={id}")).await;
    assert_eq!(del.body["deleted"], json!([{"id": id}]));
    assert_error(&s.get(&lbase).await, 404);
    assert_error(
        &s.post(&lbase, json!([{"name": "n", "key": "k", "points": 1}])).await,
        404,
    );
    // The configuration survives a restart.
    let s = s.restart().await;
    let list = s.get("/admin/v1/points").await;
    assert_eq!(list.body, json!([]), "deleted systems are not listed");
}
