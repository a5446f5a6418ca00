//! Coverage of the Trophy surface: every operation of both OpenAPI files
//! (`tests/spec/trophy-*-openapi.json`, copies of the contract) and every HTTP call the
//! Trophy Python SDK 1.27 can make (`tests/spec/sdk-1.27-calls.json`, checked against the
//! installed SDK by `tests/sdk_compat.rs`) is sent to the real server, and must reach a
//! route: not a 405, and not the fallback's `No such endpoint` 404.
//!
//! Operations still to be built are listed in [`PENDING`]; the test also fails when one of
//! them answers, so the list only shrinks. The table in `docs/compatibility.md` is rendered
//! from the same data and must match (`KUDOS_WRITE_DOCS=1` rewrites it).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{TestServer, KEY};

/// (api, method, path) of operations not built yet.
const PENDING: &[(&str, &str, &str)] = &[];

#[derive(Default)]
struct Op {
    summary: String,
    in_openapi: bool,
    in_sdk: bool,
}

fn spec(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/spec")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("spec file")).expect("json")
}

/// Every operation, by (api, method, path).
fn operations() -> BTreeMap<(String, String, String), Op> {
    let mut ops: BTreeMap<(String, String, String), Op> = BTreeMap::new();
    for (file, api) in [
        ("trophy-application-openapi.json", "application"),
        ("trophy-admin-openapi.json", "admin"),
    ] {
        let doc = spec(file);
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let e = ops
                    .entry((api.into(), method.to_uppercase(), path.clone()))
                    .or_default();
                e.in_openapi = true;
                e.summary = op["summary"].as_str().unwrap_or_default().to_string();
            }
        }
    }
    for call in spec("sdk-1.27-calls.json").as_array().expect("calls") {
        let key = (
            call["api"].as_str().expect("api").to_string(),
            call["method"].as_str().expect("method").to_string(),
            call["path"].as_str().expect("path").to_string(),
        );
        ops.entry(key).or_default().in_sdk = true;
    }
    ops
}

/// The path with every `{param}` filled in.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("closing brace") + open;
        out.push_str("0190d1c2-7a3b-7c4d-8e5f-123456789abc");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether the server has a route for the operation.
async fn routed(client: &reqwest::Client, base: &str, api: &str, method: &str, path: &str) -> bool {
    let prefix = if api == "admin" { "/admin/v1" } else { "/v1" };
    let url = format!("{base}{prefix}{}", concrete(path));
    let method: reqwest::Method = method.parse().expect("method");
    let mut req = client
        .request(method.clone(), &url)
        .header("X-API-KEY", KEY);
    if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
        // An empty object: refused by validation wherever something is required. A few
        // operations accept it (an upsert of a user, an empty settings patch) and change
        // this throwaway server's data, which nothing reads.
        req = req.header("content-type", "application/json").body("{}");
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let fallback = status == 404
        && body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("No such endpoint"));
    status != 405 && !fallback
}

fn render(rows: &[(String, String, String, &Op, bool)]) -> String {
    let mut out = String::from(
        "| API | Method | Path | Summary | In | Status |\n|---|---|---|---|---|---|\n",
    );
    for (api, method, path, op, ok) in rows {
        let source = match (op.in_openapi, op.in_sdk) {
            (true, true) => "OpenAPI, SDK",
            (true, false) => "OpenAPI",
            _ => "SDK 1.27 only",
        };
        let prefix = if api == "admin" { "/admin/v1" } else { "/v1" };
        let status = if *ok {
            "implemented"
        } else {
            "not yet (issue 12)"
        };
        out.push_str(&format!(
            "| {api} | {method} | `{prefix}{path}` | {} | {source} | {status} |\n",
            if op.summary.is_empty() {
                "–".to_string()
            } else {
                op.summary.replace('|', "/")
            }
        ));
    }
    let done = rows.iter().filter(|r| r.4).count();
    out.push_str(&format!(
        "\n{done} of {} operations implemented.\n",
        rows.len()
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trophy_operation_reaches_a_route() {
    let s = TestServer::start().await;
    let client = reqwest::Client::new();
    let ops = operations();
    assert!(ops.len() >= 85, "{} operations", ops.len());
    let mut rows = Vec::new();
    let mut unrouted = Vec::new();
    let mut stale = Vec::new();
    for ((api, method, path), op) in &ops {
        let ok = routed(&client, &s.base, api, method, path).await;
        let pending = PENDING.contains(&(api.as_str(), method.as_str(), path.as_str()));
        match (ok, pending) {
            (false, false) => unrouted.push(format!("{api} {method} {path}")),
            (true, true) => stale.push(format!("{api} {method} {path}")),
            _ => {}
        }
        rows.push((api.clone(), method.clone(), path.clone(), op, ok));
    }
    assert!(
        unrouted.is_empty(),
        "operations with no route: {unrouted:#?}"
    );
    assert!(
        stale.is_empty(),
        "built now, remove them from PENDING: {stale:#?}"
    );

    // Application API first, then by path, then GET, POST, PUT, PATCH, DELETE.
    let order = |m: &str| {
        ["GET", "POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .position(|x| *x == m)
    };
    rows.sort_by(|a, b| {
        (a.0 == "admin", &a.2, order(&a.1)).cmp(&(b.0 == "admin", &b.2, order(&b.1)))
    });
    let table = render(&rows);
    let doc_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compatibility.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/compatibility.md");
    let (start, end) = ("<!-- coverage:start -->\n", "<!-- coverage:end -->");
    let (head, rest) = doc.split_once(start).expect("coverage:start marker");
    let (_, tail) = rest.split_once(end).expect("coverage:end marker");
    let expected = format!("{head}{start}{table}{end}{tail}");
    if expected != doc {
        if std::env::var_os("KUDOS_WRITE_DOCS").is_some() {
            std::fs::write(&doc_path, expected).expect("write docs/compatibility.md");
        } else {
            panic!(
                "docs/compatibility.md is out of date; regenerate it with\n  KUDOS_WRITE_DOCS=1 cargo test --test it coverage\n\n{table}"
            );
        }
    }
}
