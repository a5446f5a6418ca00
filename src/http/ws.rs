//! `GET /v1/ws`: live subscriptions over WebSocket (SPEC §11.4).
//!
//! The key is checked before the upgrade (`X-API-KEY`, or `?apiKey=` for browsers): a bad
//! one is a 401 with the error body and no upgrade. On the socket, text frames carry JSON
//! ops: `ping`, `subscribe` to `leaderboard:<key>` (answered with a `snapshot` of the top
//! `limit` and, with `aroundUser`, the user's neighbourhood), and `unsubscribe`. A bad op
//! is answered with an `error` message; the connection stays open.
//!
//! After the snapshot, the push hub ([`crate::push`]) sends an `update` whenever the
//! window changes, at most 10 per second per subscription, the latest state replacing an
//! update not yet written. `user:<id>` topics carry that user's events as the webhooks
//! render them; a connection that lets 256 of them pile up is closed with 1013 `slow
//! consumer`. The server pings every 30 s and drops a peer that missed two pongs; shutdown
//! closes every socket with 1001; a key holds at most `KUDOS_WS_MAX_CONNECTIONS_PER_KEY`
//! connections (429 before the upgrade).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use kudos_actors::catalog::leaderboards::LeaderboardStatus;
use serde_json::{json, Value};

use crate::http::app::leaderboards::{selected_group, selected_run};
use crate::http::auth::{may_read, Topic};
use crate::http::error::ApiError;
use crate::http::extract::QueryPairs;
use crate::http::scope::{in_key_tenant, in_tenant, Scoped};
use crate::push::{HubMsg, Kind, Pending, WindowKey};
use crate::{AppState, Readiness};
use axum::extract::State;
use kudos_snapshots::Scope;

/// Subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// Largest `limit` of a leaderboard subscription.
const MAX_LIMIT: i64 = 100;
/// Longest subscription `id`.
const MAX_ID: usize = 128;
/// Longest wait for a socket to take one message.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest wait for a closing frame to go out before the connection is dropped anyway.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the server pings each connection (SPEC §11.4.5).
const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest text frame read (a subscribe op is a few hundred bytes).
const MAX_FRAME: usize = 16 * 1024;
/// Each connection's read buffer, and the write buffer's size before it is written out.
const BUFFER: usize = 4 * 1024;

/// The upgrade, after the key and readiness checks.
pub async fn upgrade(
    State(app): State<AppState>,
    headers: HeaderMap,
    q: QueryPairs,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match app.readiness() {
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
    let presented = presented.trim();
    let Some(principal) = app.keys.verify(presented) else {
        return ApiError::unauthorized("Invalid API key").into_response();
    };
    // The scope, as for REST (SPEC §1.2): a tenant's application key works in its tenant;
    // other keys name one with `Tenant-ID`, or `?tenantId=` where headers cannot be set.
    let env = Scope {
        environment: principal.environment,
        tenant: 0,
    };
    let scoped = match principal.tenant {
        Some(tenant) => in_key_tenant(&app, env, tenant),
        None => {
            let query = q
                .get("tenantId")
                .and_then(|t| axum::http::HeaderValue::from_str(t).ok());
            in_tenant(&app, env, headers.get("tenant-id").or(query.as_ref()))
        }
    };
    let state = match scoped {
        Ok(state) => state,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return ApiError::bad_request("Expected a WebSocket upgrade request").into_response()
        }
    };
    let key = presented.split('.').next().unwrap_or_default().to_string();
    let Some(seat) = Seat::take(&state, key) else {
        return ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many WebSocket connections for this API key (at most {})",
                state.config.ws_max_connections_per_key
            ),
        )
        .into_response();
    };
    // Small buffers: most connections hold many quiet subscriptions, and a frame is at
    // most MAX_FRAME in and a leaderboard page out (tungstenite's 128 KiB defaults cost
    // about 140 KiB per connection).
    ws.max_message_size(MAX_FRAME)
        .read_buffer_size(BUFFER)
        .write_buffer_size(BUFFER)
        .on_upgrade(move |socket| connection(state, socket, seat, principal))
}

/// One of a key's connections (`KUDOS_WS_MAX_CONNECTIONS_PER_KEY`), given back when the
/// connection ends or its upgrade fails.
struct Seat {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    key: String,
}

impl Seat {
    fn take(state: &Scoped, key: String) -> Option<Self> {
        let mut counts = state
            .ws_connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(key.clone()).or_default();
        if *n >= state.config.ws_max_connections_per_key {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: state.ws_connections.clone(),
            key,
        })
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Serves one connection until the client closes it: its ops, and the updates the hub
/// leaves in its pending slot.
/// One subscription of a connection.
struct Sub {
    /// Tells this subscription's messages from those of an earlier one with the same id.
    token: u64,
    /// The `seq` of its next message.
    next_seq: u64,
    /// A `user:` topic (counted in the bus's live topics).
    user: bool,
}

/// A connection's subscriptions, and what ends them when the connection ends, however it
/// ends: the hub is told, and the live `user:` topics are uncounted.
struct Subs {
    state: Scoped,
    conn: u64,
    /// Who the connection's key belongs to.
    principal: crate::keys::Principal,
    by_id: HashMap<String, Sub>,
    next_token: u64,
}

impl Subs {
    fn remove(&mut self, id: &str) -> Option<Sub> {
        let sub = self.by_id.remove(id)?;
        if sub.user {
            self.state.users.bus().add_live_topics(-1);
        }
        Some(sub)
    }
}

impl Drop for Subs {
    fn drop(&mut self) {
        let users = self.by_id.values().filter(|s| s.user).count();
        self.state.users.bus().add_live_topics(-(users as isize));
        self.state.push.send(HubMsg::Disconnect { conn: self.conn });
    }
}

async fn connection(
    state: Scoped,
    mut socket: WebSocket,
    _seat: Seat,
    principal: crate::keys::Principal,
) {
    let conn = state.push.connection();
    let pending = Arc::new(Pending::default());
    let mut subs = Subs {
        state: state.clone(),
        conn,
        principal,
        by_id: HashMap::new(),
        next_token: 0,
    };
    let shutdown = state.background.shutdown().clone();
    let epoch = state.push.epoch();
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut unanswered = 0u32;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => {
                send_within(&mut socket, close(1001, "server shutting down"), CLOSE_TIMEOUT).await;
                break;
            }
            _ = epoch.cancelled() => {
                send_within(&mut socket, close(1011, "live updates restarted; subscribe again"), CLOSE_TIMEOUT).await;
                break;
            }
            _ = pings.tick() => {
                // A key deleted, revoked or rotated since the upgrade ends its connections.
                if !state.keys.is_live(&subs.principal) {
                    send_within(&mut socket, close(1008, "API key no longer valid"), CLOSE_TIMEOUT).await;
                    break;
                }
                // Transport time, on the wall clock: peers that miss two pongs are dropped.
                if unanswered >= 2 {
                    send_within(&mut socket, close(1001, "no pong"), CLOSE_TIMEOUT).await;
                    break;
                }
                unanswered += 1;
                if !send_within(&mut socket, Message::Ping(Default::default()), SEND_TIMEOUT).await {
                    break;
                }
                continue;
            }
            msg = socket.recv() => msg,
            _ = pending.ready.notified() => {
                if pending.is_slow() {
                    tracing::info!("a WebSocket peer fell behind its events; dropped as a slow consumer");
                    state.ops.ws_slow_consumers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    send_within(&mut socket, close(1013, "slow consumer"), CLOSE_TIMEOUT).await;
                    break;
                }
                let mut failed = false;
                for out in pending.take() {
                    // Numbered as written; messages of an ended subscription are dropped.
                    let Some(sub) = subs.by_id.get_mut(&out.sub).filter(|s| s.token == out.token)
                    else {
                        continue;
                    };
                    let (kind, field) = match out.kind {
                        Kind::Update => ("update", ""),
                        Kind::Event => ("event", "\"event\":"),
                    };
                    let text = format!(
                        "{{\"type\":\"{kind}\",\"id\":{},\"seq\":{},{field}{}}}",
                        Value::String(out.sub.clone()),
                        sub.next_seq,
                        out.body
                    );
                    sub.next_seq += 1;
                    if !write(&mut socket, text, &pending, &state).await {
                        failed = true;
                        break;
                    }
                }
                if failed {
                    break;
                }
                continue;
            }
        };
        let Some(Ok(msg)) = msg else {
            break;
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            Message::Pong(_) => {
                unanswered = 0;
                continue;
            }
            // Pings are answered by the library; binary frames are not part of the protocol.
            Message::Binary(_) => {
                let e = error(None, "Messages must be JSON text frames").to_string();
                if !write(&mut socket, e, &pending, &state).await {
                    break;
                }
                continue;
            }
            _ => continue,
        };
        if !state.keys.is_live(&subs.principal) {
            send_within(
                &mut socket,
                close(1008, "API key no longer valid"),
                CLOSE_TIMEOUT,
            )
            .await;
            break;
        }
        let replies = handle(&state, &pending, &mut subs, text.as_str()).await;
        let mut failed = false;
        for reply in replies {
            if !write(&mut socket, reply, &pending, &state).await {
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
    }
}

/// Writes one text message; `false` when the connection is gone, or is dropped as a slow
/// consumer: it took longer than [`SEND_TIMEOUT`] to take the message, or its events
/// overflowed while it was being written (a peer that stopped reading is dropped rather
/// than let its messages pile up).
async fn write(socket: &mut WebSocket, text: String, pending: &Pending, state: &Scoped) -> bool {
    enum Outcome {
        Sent,
        Gone,
        Slow,
    }
    let mut woken = false;
    let outcome = {
        let send = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into())));
        tokio::pin!(send);
        loop {
            tokio::select! {
                r = &mut send => break match r {
                    Ok(Ok(())) => Outcome::Sent,
                    Ok(Err(_)) => Outcome::Gone,
                    Err(_) => Outcome::Slow,
                },
                _ = pending.ready.notified() => {
                    woken = true;
                    if pending.is_slow() {
                        break Outcome::Slow;
                    }
                }
            }
        }
    };
    // The wake-up taken here was for the connection's loop: given back.
    if woken {
        pending.ready.notify_one();
    }
    match outcome {
        Outcome::Sent => true,
        Outcome::Gone => false,
        Outcome::Slow => {
            tracing::info!("a WebSocket peer stopped reading; dropped as a slow consumer");
            state
                .ops
                .ws_slow_consumers
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            send_within(socket, close(1013, "slow consumer"), CLOSE_TIMEOUT).await;
            false
        }
    }
}

/// Sends a control frame, giving up after `limit` (a peer that stopped reading must not
/// hold its connection open); whether it was sent.
async fn send_within(socket: &mut WebSocket, msg: Message, limit: std::time::Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, socket.send(msg)).await,
        Ok(Ok(()))
    )
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn error(id: Option<&str>, message: &str) -> Value {
    match id {
        Some(id) => json!({"type": "error", "id": id, "error": message}),
        None => json!({"type": "error", "error": message}),
    }
}

/// The messages one client op is answered with.
async fn handle(
    state: &Scoped,
    pending: &Arc<Pending>,
    subs: &mut Subs,
    text: &str,
) -> Vec<String> {
    let conn = subs.conn;
    let Ok(Value::Object(op)) = serde_json::from_str::<Value>(text) else {
        return vec![error(None, "Messages must be JSON objects").to_string()];
    };
    let id = op.get("id").and_then(Value::as_str);
    let replies = match op.get("op").and_then(Value::as_str) {
        Some("ping") => vec![json!({"type": "pong"})],
        Some("unsubscribe") => match id {
            Some(id) if subs.by_id.contains_key(id) => {
                if let Some(sub) = subs.remove(id) {
                    state.push.send(HubMsg::Unsubscribe {
                        conn,
                        sub: id.to_string(),
                        token: sub.token,
                    });
                }
                Vec::new()
            }
            Some(id) => vec![error(Some(id), "No subscription with this id")],
            None => vec![error(None, "unsubscribe needs the subscription's id")],
        },
        Some("subscribe") => match subscribe(state, &subs.principal, &subs.by_id, &op).await {
            Ok(Subscribed::User { sub, user }) => {
                let token = subs.next_token;
                subs.next_token += 1;
                // Counted before the op is answered: records published from now on reach
                // the hub, which has this subscription before any of them.
                state.spaces.bus().add_live_topics(1);
                subs.by_id.insert(
                    sub.clone(),
                    Sub {
                        token,
                        next_seq: 0,
                        user: true,
                    },
                );
                state.push.send(HubMsg::SubscribeUser {
                    conn,
                    scope: state.scope,
                    sub,
                    token,
                    user,
                    pending: pending.clone(),
                });
                Vec::new()
            }
            Ok(Subscribed::Board { sub, key, body }) => {
                let token = subs.next_token;
                subs.next_token += 1;
                subs.by_id.insert(
                    sub.clone(),
                    Sub {
                        token,
                        next_seq: 1,
                        user: false,
                    },
                );
                let snapshot = format!(
                    "{{\"type\":\"snapshot\",\"id\":{},\"seq\":0,{body}}}",
                    Value::String(sub.clone())
                );
                state.push.send(HubMsg::Subscribe {
                    conn,
                    sub,
                    token,
                    key,
                    body,
                    pending: pending.clone(),
                });
                return vec![snapshot];
            }
            Err(message) => vec![error(id, &message)],
        },
        Some(other) => vec![error(id, &format!("Unknown op: {other}"))],
        None => vec![error(
            id,
            "Messages need an op (subscribe, unsubscribe or ping)",
        )],
    };
    replies.iter().map(Value::to_string).collect()
}

/// A subscription accepted.
enum Subscribed {
    /// A leaderboard window, and how it is now.
    Board {
        sub: String,
        key: WindowKey,
        body: String,
    },
    /// A user's events.
    User { sub: String, user: String },
}

/// Registers a subscription.
async fn subscribe(
    state: &Scoped,
    principal: &crate::keys::Principal,
    subs: &HashMap<String, Sub>,
    op: &serde_json::Map<String, Value>,
) -> Result<Subscribed, String> {
    let id = match op.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID => id.clone(),
        _ => return Err(format!("id must be a string of 1 to {MAX_ID} characters")),
    };
    if subs.contains_key(&id) {
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
    let readable = |t: Topic<'_>| {
        if may_read(principal, &t) {
            Ok(())
        } else {
            Err("This key may not read this topic".to_string())
        }
    };
    if let Some(user) = topic.strip_prefix("user:") {
        if user.is_empty() || user.len() > 255 {
            return Err("user:<userId> needs a user id of 1 to 255 characters".into());
        }
        readable(Topic::User(user))?;
        return Ok(Subscribed::User {
            sub: id,
            user: user.to_string(),
        });
    }
    let Some(key) = topic.strip_prefix("leaderboard:") else {
        return Err("topic must be leaderboard:<key> or user:<userId>".into());
    };
    readable(Topic::Leaderboard)?;
    let window = leaderboard_window(state, key, op)?;
    let body = crate::push::read(state, &window)
        .await
        .ok_or("The leaderboard cannot be read now")?;
    Ok(Subscribed::Board {
        sub: id,
        key: window,
        body,
    })
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

/// The window a leaderboard subscription watches: the board's run and group asked for,
/// its top `limit`, and `aroundUser`.
fn leaderboard_window(
    state: &Scoped,
    key: &str,
    op: &serde_json::Map<String, Value>,
) -> Result<WindowKey, String> {
    let limit = match op.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => v
            .as_i64()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| format!("limit must be an integer between 1 and {MAX_LIMIT}"))?,
    };
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
    // Without `run`, the window follows the current run as runs roll over.
    let run = if op.get("run").is_some_and(|r| !r.is_null()) {
        Some(run.ok_or("The run cannot be selected")?.index)
    } else {
        None
    };
    Ok(WindowKey {
        scope: state.scope,
        board: board.id,
        key: board.key.clone(),
        run,
        group,
        limit: usize::try_from(limit).unwrap_or(10),
        around: optional_string(op, "aroundUser")?.map(str::to_string),
    })
}

/// The live page (`GET /live/{leaderboardKey}`): plain HTML and JavaScript, no build step,
/// no external assets. The page reads the board's key from its own address and the API key
/// from the person using it; the server puts no key in it.
pub async fn live_page() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("live.html"),
    )
        .into_response()
}
