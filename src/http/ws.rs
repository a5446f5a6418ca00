//! `GET /v1/ws`: live subscriptions over WebSocket (SPEC §11.4).
//!
//! The key is checked before the upgrade (`X-API-KEY`, or `?apiKey=` for browsers): a bad
//! one is a 401 with the error body and no upgrade. On the socket, text frames carry JSON
//! ops: `ping`, `subscribe` to `leaderboard:<key>` (answered with a `snapshot` of the top
//! `limit` and, with `aroundUser`, the user's neighbourhood), and `unsubscribe`. A bad op
//! is answered with an `error` message; the connection stays open.
//!
//! Built so far: the upgrade, the ops and the snapshots. The `update` messages after
//! changes, `user:` topics and backpressure come with the push hub (the WebSocket issue).

use std::collections::HashSet;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use kudos_actors::catalog::leaderboards::LeaderboardStatus;
use kudos_actors::leaderboard::actor::PageStart;
use serde_json::{json, Value};

use crate::http::app::leaderboards::{rankings, selected_group, selected_run};
use crate::http::error::ApiError;
use crate::http::extract::QueryPairs;
use crate::wire::leaderboards::app_leaderboard;
use crate::{AppState, Readiness};

/// Subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// Largest `limit` of a leaderboard subscription.
const MAX_LIMIT: i64 = 100;
/// Longest subscription `id`.
const MAX_ID: usize = 128;
/// Largest text frame read (a subscribe op is a few hundred bytes).
const MAX_FRAME: usize = 16 * 1024;

/// The upgrade, after the key and readiness checks.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: QueryPairs,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match state.readiness() {
        Readiness::Ready => {}
        _ => {
            return ApiError::unavailable("Server is starting; recovery is not complete")
                .into_response()
        }
    }
    let presented = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| q.get("apiKey"));
    let Some(presented) = presented else {
        return ApiError::unauthorized("Missing X-API-KEY header or apiKey parameter")
            .into_response();
    };
    if state.keys.verify(presented.trim()).is_none() {
        return ApiError::unauthorized("Invalid API key").into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return ApiError::bad_request("Expected a WebSocket upgrade request").into_response()
        }
    };
    ws.max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| connection(state, socket))
}

/// Serves one connection until the client closes it.
async fn connection(state: AppState, mut socket: WebSocket) {
    let mut subs: HashSet<String> = HashSet::new();
    while let Some(Ok(msg)) = socket.recv().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            // Pings are answered by the library; binary frames are not part of the protocol.
            Message::Binary(_) => {
                if send(
                    &mut socket,
                    &error(None, "Messages must be JSON text frames"),
                )
                .await
                .is_err()
                {
                    break;
                }
                continue;
            }
            _ => continue,
        };
        let replies = handle(&state, &mut subs, text.as_str()).await;
        let mut failed = false;
        for reply in replies {
            if send(&mut socket, &reply).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
    }
}

async fn send(socket: &mut WebSocket, v: &Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(v.to_string().into())).await
}

fn error(id: Option<&str>, message: &str) -> Value {
    match id {
        Some(id) => json!({"type": "error", "id": id, "error": message}),
        None => json!({"type": "error", "error": message}),
    }
}

/// The messages one client op is answered with.
async fn handle(state: &AppState, subs: &mut HashSet<String>, text: &str) -> Vec<Value> {
    let Ok(Value::Object(op)) = serde_json::from_str::<Value>(text) else {
        return vec![error(None, "Messages must be JSON objects")];
    };
    let id = op.get("id").and_then(Value::as_str);
    match op.get("op").and_then(Value::as_str) {
        Some("ping") => vec![json!({"type": "pong"})],
        Some("unsubscribe") => match id {
            Some(id) if subs.remove(id) => Vec::new(),
            Some(id) => vec![error(Some(id), "No subscription with this id")],
            None => vec![error(None, "unsubscribe needs the subscription's id")],
        },
        Some("subscribe") => match subscribe(state, subs, &op).await {
            Ok(snapshot) => vec![snapshot],
            Err(message) => vec![error(id, &message)],
        },
        Some(other) => vec![error(id, &format!("Unknown op: {other}"))],
        None => vec![error(
            id,
            "Messages need an op (subscribe, unsubscribe or ping)",
        )],
    }
}

/// Registers a subscription and answers with its snapshot.
async fn subscribe(
    state: &AppState,
    subs: &mut HashSet<String>,
    op: &serde_json::Map<String, Value>,
) -> Result<Value, String> {
    let id = match op.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID => id.clone(),
        _ => return Err(format!("id must be a string of 1 to {MAX_ID} characters")),
    };
    if subs.contains(&id) {
        return Err("A subscription with this id already exists".into());
    }
    if subs.len() >= MAX_SUBSCRIPTIONS {
        return Err(format!(
            "At most {MAX_SUBSCRIPTIONS} subscriptions per connection"
        ));
    }
    let topic = op
        .get("topic")
        .and_then(Value::as_str)
        .ok_or("topic must be leaderboard:<key> or user:<userId>")?;
    let snapshot = if let Some(key) = topic.strip_prefix("leaderboard:") {
        leaderboard_snapshot(state, &id, key, op).await?
    } else if topic.starts_with("user:") {
        return Err("user topics are not available yet".into());
    } else {
        return Err("topic must be leaderboard:<key> or user:<userId>".into());
    };
    subs.insert(id);
    Ok(snapshot)
}

fn optional_string<'a>(
    op: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, String> {
    match op.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// The `snapshot` of a leaderboard subscription: the board with its top `limit` of the run
/// and group asked for, and `around` the user asked for (their rank ±2).
async fn leaderboard_snapshot(
    state: &AppState,
    id: &str,
    key: &str,
    op: &serde_json::Map<String, Value>,
) -> Result<Value, String> {
    let limit = match op.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => v
            .as_i64()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| format!("limit must be an integer between 1 and {MAX_LIMIT}"))?,
    };
    let limit = usize::try_from(limit).unwrap_or(10);
    let catalog = state.catalog.get();
    let now = state.clock.now();
    let board = catalog
        .leaderboard_by_key(key)
        .filter(|l| l.status_at(now) != LeaderboardStatus::Inactive)
        .ok_or("Leaderboard not found")?;
    // The same selection rules as `GET /v1/leaderboards/{key}`.
    let mut pairs = Vec::new();
    if let Some(run) = optional_string(op, "run")? {
        pairs.push(("run".to_string(), run.to_string()));
    }
    if let Some(attrs) = optional_string(op, "userAttributes")? {
        pairs.push(("userAttributes".to_string(), attrs.to_string()));
    }
    let q = QueryPairs(pairs);
    let run = selected_run(board, &q, now.date_naive()).map_err(|e| e.message)?;
    let group = selected_group(board, &catalog, &q).map_err(|e| e.message)?;
    let top = rankings(
        state,
        board,
        now,
        run,
        group.clone(),
        PageStart::Offset(0),
        limit,
    )
    .await
    .map_err(|e| e.message)?;
    let mut body = app_leaderboard(board, &catalog, now);
    body.insert("rankings".into(), Value::Array(top));
    let mut snapshot = json!({"type": "snapshot", "id": id, "seq": 0, "leaderboard": body});
    if let Some(user) = optional_string(op, "aroundUser")? {
        let around = rankings(
            state,
            board,
            now,
            run,
            group,
            PageStart::AroundUser {
                user: user.to_string(),
                offset: -2,
            },
            5,
        )
        .await
        .map_err(|e| e.message)?;
        snapshot["around"] = Value::Array(around);
    }
    Ok(snapshot)
}
