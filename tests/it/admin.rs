use serde_json::json;

use crate::support::{assert_error, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_crud_in_bulk_conventions() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/admin/v1/metrics",
            json!([
                {"name": "Lessons", "key": "lessons"},
                {"name": "Revenue", "key": "revenue", "unitType": "currency", "units": "usd"},
                {"name": 5, "key": "x"},
                {"name": "Dup", "key": "lessons"},
                {"name": "Bad", "key": "bad key"},
                {"name": "Bad", "key": "cash", "unitType": "currency", "units": "doubloons"},
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = r.body["created"].as_array().expect("created");
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["unitType"], "number");
    assert_eq!(created[0]["units"], "");
    assert_eq!(created[1]["units"], "USD");
    let issues: Vec<_> = r.body["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            (
                i["index"].as_u64().expect("index"),
                i["severity"].as_str().expect("severity").to_string(),
                i["message"].as_str().expect("message").to_string(),
            )
        })
        .collect();
    assert_eq!(issues.len(), 4);
    assert_eq!(issues[0], (2, "error".into(), "Name not a string".into()));
    assert_eq!(
        issues[1],
        (
            3,
            "error".into(),
            "Key already in use by another metric".into()
        )
    );
    assert_eq!((issues[2].0, issues[3].0), (4, 5));

    let none = s
        .post(
            "/admin/v1/metrics",
            json!([{"name": "Dup", "key": "lessons"}]),
        )
        .await;
    assert_eq!(none.status, 200);
    assert_eq!(none.body["created"], json!([]));

    let id = created[0]["id"].as_str().expect("id").to_string();
    let got = s.get(&format!("/admin/v1/metrics/{id}")).await;
    assert_eq!(got.body, created[0]);
    assert_error(&s.get("/admin/v1/metrics/not-a-uuid").await, 404);
    assert_error(
        &s.get(&format!("/admin/v1/metrics/{}", uuid::Uuid::new_v4()))
            .await,
        404,
    );

    let list = s.get("/admin/v1/metrics").await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(2));
    let page = s.get("/admin/v1/metrics?limit=1&skip=1").await;
    assert_eq!(page.body[0]["key"], "revenue");
    for bad in ["limit=0", "limit=101", "skip=-1", "limit=x"] {
        assert_error(&s.get(&format!("/admin/v1/metrics?{bad}")).await, 422);
    }

    let upd = s
        .patch(
            "/admin/v1/metrics",
            json!([{"id": id, "name": "Lessons done"}, {"id": uuid::Uuid::new_v4(), "name": "x"}, {"id": id, "unitType": "currency", "units": "nope"}]),
        )
        .await;
    assert_eq!(upd.status, 200, "{:?}", upd.body);
    assert_eq!(upd.body["updated"][0]["name"], "Lessons done");
    assert_eq!(upd.body["updated"][0]["key"], "lessons");
    assert_eq!(upd.body["issues"][0]["message"], "Metric not found by ID");
    assert_eq!(upd.body["issues"].as_array().map(Vec::len), Some(2));
    let no_id = s.patch("/admin/v1/metrics", json!([{"name": "x"}])).await;
    assert_eq!(no_id.body["issues"][0]["index"], 0);

    let del = s
        .delete(&format!(
            "/admin/v1/metrics?ids={id}&ids=garbage,{}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(del.status, 200, "{:?}", del.body);
    assert_eq!(del.body["deleted"], json!([{"id": id}]));
    let msgs: Vec<_> = del.body["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| i["message"].clone())
        .collect();
    assert_eq!(
        msgs,
        vec![
            json!("id must be a valid UUID"),
            json!("Metric not found by ID")
        ]
    );
    assert_error(&s.get(&format!("/admin/v1/metrics/{id}")).await, 404);
    assert_error(&s.delete("/admin/v1/metrics").await, 422);
    let too_many = (0..101)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_error(
        &s.delete(&format!("/admin/v1/metrics?ids={too_many}")).await,
        422,
    );
    let items: Vec<_> = (0..101)
        .map(|i| json!({"name": "n", "key": format!("k{i}")}))
        .collect();
    assert_error(&s.post("/admin/v1/metrics", json!(items)).await, 422);
    assert_error(
        &s.post("/admin/v1/metrics", json!({"name": "n"})).await,
        400,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_crud_and_persistence() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/admin/v1/attributes",
            json!([
                {"name": "Plan", "key": "plan", "type": "user"},
                {"name": "Plan", "key": "plan", "type": "event"},
                {"name": "Plan", "key": "plan", "type": "user"},
                {"name": "Kind", "key": "k", "type": "other"},
            ]),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["created"].as_array().map(Vec::len), Some(2));
    assert_eq!(r.body["created"][0]["type"], "user");
    assert_eq!(
        r.body["issues"][0]["message"],
        "Key already in use by another attribute of this type"
    );
    assert_eq!(r.body["issues"][1]["index"], 3);
    let id = r.body["created"][0]["id"].as_str().expect("id").to_string();

    let upd = s
        .patch(
            "/admin/v1/attributes",
            json!([{"id": id, "name": "Subscription plan"}]),
        )
        .await;
    assert_eq!(upd.body["updated"][0]["name"], "Subscription plan");
    assert_eq!(upd.body["updated"][0]["key"], "plan");

    // Configuration survives a restart.
    let s = s.restart().await;
    let got = s.get(&format!("/admin/v1/attributes/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["name"], "Subscription plan");
    assert_eq!(
        s.get("/admin/v1/attributes")
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let holder = s
        .put("/v1/users/holder", json!({"attributes": {"plan": "gold"}}))
        .await;
    assert_eq!(holder.body["attributes"], json!({"plan": "gold"}));
    let del = s.delete(&format!("/admin/v1/attributes?ids={id}")).await;
    assert_eq!(del.body["deleted"], json!([{"id": id}]));
    assert_error(&s.get(&format!("/admin/v1/attributes/{id}")).await, 404);
    // A deleted user attribute can no longer be written.
    assert_error(
        &s.put("/v1/users/u", json!({"attributes": {"plan": "x"}}))
            .await,
        422,
    );
}
