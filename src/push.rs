//! The push hub: live `update` messages for WebSocket leaderboard subscriptions (SPEC
//! §11.4).
//!
//! One task owns every watched window (a board's run, group, `limit` and `aroundUser`)
//! with its subscribers, and is told by messages ([`HubMsg`]): subscriptions come and go
//! from connections, and committed records that placed someone on a board mark that
//! board's windows changed. Every [`TICK`] the hub reads each changed window once,
//! serializes it once, and when it differs from what was last sent, gives every
//! subscriber whose last message differs an update carrying it (so at most 10 updates per
//! second per subscription, always the latest state). Updates wait in each connection's
//! [`Pending`] slot, where a newer one replaces an older one not yet sent; the connection
//! numbers messages as it writes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kudos_actors::leaderboard::actor::PageStart;
use kudos_actors::user::Effect;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::AppState;

/// How often changed windows are read (the coalescing interval: 10 per second).
pub const TICK: Duration = Duration::from_millis(100);

/// What a connection's subscription watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowKey {
    pub board: Uuid,
    pub key: String,
    pub run: Option<u64>,
    pub group: Vec<String>,
    pub limit: usize,
    pub around: Option<String>,
}

/// What kind of message an [`Outgoing`] becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Update,
    Event,
}

/// A message for one subscription, not yet numbered: the connection gives it the
/// subscription's next `seq` when it writes it, so `seq` rises by exactly 1 per message
/// sent, whatever was coalesced before.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub sub: String,
    /// Which subscription of that id (a resubscription gets a new token: messages of the
    /// old one are dropped).
    pub token: u64,
    pub kind: Kind,
    /// The update's `"leaderboard":…` part, or the event's payload.
    pub body: Arc<str>,
}

/// A connection's messages not yet written to its socket: updates by subscription (a
/// newer one replaces the one waiting) and events in order.
#[derive(Default)]
pub struct Pending {
    updates: Mutex<Vec<Outgoing>>,
    /// At most [`EVENT_QUEUE`].
    events: Mutex<std::collections::VecDeque<Outgoing>>,
    /// Set when `events` overflowed: the connection is closed as a slow consumer.
    slow: std::sync::atomic::AtomicBool,
    pub ready: Notify,
}

/// `event` messages one connection may have waiting before it counts as a slow consumer.
pub const EVENT_QUEUE: usize = 256;

impl Pending {
    fn put_update(&self, sub: &str, token: u64, body: Arc<str>) {
        let mut u = self.updates.lock().unwrap_or_else(|e| e.into_inner());
        match u.iter_mut().find(|o| o.sub == sub && o.token == token) {
            Some(slot) => slot.body = body,
            None => u.push(Outgoing {
                sub: sub.to_string(),
                token,
                kind: Kind::Update,
                body,
            }),
        }
        drop(u);
        self.ready.notify_one();
    }

    /// Queues an event (events are never coalesced: a connection that lets
    /// [`EVENT_QUEUE`] pile up is a slow consumer).
    fn put_event(&self, sub: &str, token: u64, body: Arc<str>) {
        let mut q = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= EVENT_QUEUE {
            self.slow.store(true, std::sync::atomic::Ordering::Release);
        } else {
            q.push_back(Outgoing {
                sub: sub.to_string(),
                token,
                kind: Kind::Event,
                body,
            });
        }
        drop(q);
        self.ready.notify_one();
    }

    /// Whether the connection fell behind its events (close it with 1013).
    pub fn is_slow(&self) -> bool {
        self.slow.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes every waiting message: events in order, then updates.
    pub fn take(&self) -> Vec<Outgoing> {
        let mut out: Vec<Outgoing> =
            std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        out.extend(std::mem::take(
            &mut *self.updates.lock().unwrap_or_else(|e| e.into_inner()),
        ));
        out
    }
}

/// Messages of the hub.
pub enum HubMsg {
    /// A subscription answered with `body` (the snapshot's `"leaderboard":…` part).
    Subscribe {
        conn: u64,
        sub: String,
        token: u64,
        key: WindowKey,
        body: String,
        pending: Arc<Pending>,
    },
    /// A `user:<id>` subscription.
    SubscribeUser {
        conn: u64,
        sub: String,
        token: u64,
        user: String,
        pending: Arc<Pending>,
    },
    Unsubscribe {
        conn: u64,
        sub: String,
        token: u64,
    },
    /// A committed record (its user's subscribers get its events).
    Record(Arc<kudos_actors::effects::Published>),
    /// The connection closed: all its subscriptions end.
    Disconnect {
        conn: u64,
    },
    /// A committed record placed someone on this board.
    Changed {
        board: Uuid,
    },
}

/// A handle to the hub (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    tx: mpsc::UnboundedSender<HubMsg>,
    /// The hub's end of the channel, until [`start`] takes it.
    rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<HubMsg>>>>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Hub {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
            next_conn: Default::default(),
        }
    }
}

impl Hub {
    pub fn send(&self, msg: HubMsg) {
        let _ = self.tx.send(msg);
    }

    /// A new connection's number.
    pub fn connection(&self) -> u64 {
        self.next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

struct Subscriber {
    conn: u64,
    sub: String,
    token: u64,
    /// A hash of what this subscriber last got (its snapshot, or its last update).
    seen: u64,
    pending: Arc<Pending>,
}

fn digest(body: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

struct Window {
    subscribers: Vec<Subscriber>,
    /// Ticks left to read it again (a change is read on two ticks, in case the board had
    /// not applied it yet at the first).
    dirty: u8,
}

/// Starts the hub of `state.push` and the listener that tells it which boards changed
/// (once; later calls do nothing).
pub fn start(state: &AppState, shutdown: CancellationToken) {
    let hub = state.push.clone();
    let Some(rx) = hub.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    {
        let (hub, mut published, shutdown) =
            (hub.clone(), state.users.bus().subscribe(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let p = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = published.recv() => p,
                };
                match p {
                    Ok(p) => {
                        if p.stream.kind == kudos_snapshots::StreamKind::User {
                            hub.send(HubMsg::Record(p.clone()));
                        }
                        for e in &p.effects {
                            if let Effect::Ranked { placements, .. }
                            | Effect::RankedWithoutZone { placements, .. } = e
                            {
                                for pl in placements {
                                    hub.send(HubMsg::Changed { board: pl.board_id });
                                }
                            }
                        }
                    }
                    // Missed records: every window is read again.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        hub.send(HubMsg::Changed { board: Uuid::nil() });
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
    tokio::spawn(run(state.clone(), rx, shutdown));
}

/// A `user:` subscription.
struct UserSub {
    conn: u64,
    sub: String,
    token: u64,
    pending: Arc<Pending>,
}

async fn run(
    state: AppState,
    mut rx: mpsc::UnboundedReceiver<HubMsg>,
    shutdown: CancellationToken,
) {
    let mut windows: HashMap<WindowKey, Window> = HashMap::new();
    let mut users: HashMap<String, Vec<UserSub>> = HashMap::new();
    // Boards changed since the last tick (nil: all), marked on their windows at the tick,
    // so a busy board costs one set insert per record, not a pass over every window.
    let mut changed: std::collections::HashSet<Uuid> = Default::default();
    let consumer = crate::webhooks::dispatch::WebhookConsumer::of(&state);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                match msg {
                    HubMsg::Changed { board } => {
                        changed.insert(board);
                    }
                    HubMsg::Record(p) => deliver(&state, &consumer, &mut users, &p).await,
                    HubMsg::SubscribeUser { conn, sub, token, user, pending } => {
                        users.entry(user).or_default().push(UserSub { conn, sub, token, pending });
                    }
                    other => {
                        if let HubMsg::Unsubscribe { conn, token, .. } = &other {
                            for subs in users.values_mut() {
                                subs.retain(|s| !(s.conn == *conn && s.token == *token));
                            }
                        }
                        if let HubMsg::Disconnect { conn } = &other {
                            for subs in users.values_mut() {
                                subs.retain(|s| s.conn != *conn);
                            }
                        }
                        users.retain(|_, subs| !subs.is_empty());
                        apply(&mut windows, other);
                    }
                }
            }
            _ = tick.tick() => {
                if !changed.is_empty() {
                    let all = changed.contains(&Uuid::nil());
                    for (k, w) in windows.iter_mut() {
                        if all || changed.contains(&k.board) {
                            w.dirty = 2;
                        }
                    }
                    changed.clear();
                }
                refresh(&state, &mut windows).await
            }
        }
    }
}

/// The webhook event types a `user:` topic carries (SPEC §11.4.3; `points.changed` is
/// added unthrottled, `leaderboard.rank_changed` is not produced for topics yet).
fn topic_wants(t: &str) -> bool {
    t == "achievement.completed" || t == "points.level_changed" || t.starts_with("streak.")
}

/// Gives a record's events to its user's subscribers, rendered and serialized once.
async fn deliver(
    state: &AppState,
    consumer: &crate::webhooks::dispatch::WebhookConsumer,
    users: &mut HashMap<String, Vec<UserSub>>,
    p: &kudos_actors::effects::Published,
) {
    let Some(subs) = users.get(&p.stream.id) else {
        return;
    };
    let catalog = state.catalog.get();
    let mut events = consumer
        .render_events(&catalog, &p.effects, &topic_wants)
        .await;
    let now = state.clock.now();
    match crate::webhooks::throttled::points_events(consumer, &catalog, &p.effects, now).await {
        Ok(more) => events.extend(more),
        Err(e) => {
            tracing::warn!(user = %p.stream.id, error = %e, "points events for live subscribers skipped")
        }
    }
    for event in events {
        let payload: Arc<str> = event.payload.to_string().into();
        for s in subs.iter() {
            s.pending.put_event(&s.sub, s.token, payload.clone());
        }
    }
}

fn apply(windows: &mut HashMap<WindowKey, Window>, msg: HubMsg) {
    match msg {
        HubMsg::Subscribe {
            conn,
            sub,
            token,
            key,
            body,
            pending,
        } => {
            let w = windows.entry(key).or_insert_with(|| Window {
                subscribers: Vec::new(),
                dirty: 0,
            });
            // Read once more: a change between the snapshot's read and now is not missed.
            w.dirty = w.dirty.max(1);
            w.subscribers.push(Subscriber {
                conn,
                sub,
                token,
                seen: digest(&body),
                pending,
            });
        }
        HubMsg::Unsubscribe { conn, token, .. } => {
            for w in windows.values_mut() {
                w.subscribers
                    .retain(|s| !(s.conn == conn && s.token == token));
            }
            windows.retain(|_, w| !w.subscribers.is_empty());
        }
        HubMsg::Disconnect { conn } => {
            for w in windows.values_mut() {
                w.subscribers.retain(|s| s.conn != conn);
            }
            windows.retain(|_, w| !w.subscribers.is_empty());
        }
        // Handled by the hub's loop.
        HubMsg::SubscribeUser { .. } | HubMsg::Record(_) | HubMsg::Changed { .. } => {}
    }
}

/// Reads every changed window once and gives its subscribers the update when it moved.
async fn refresh(state: &AppState, windows: &mut HashMap<WindowKey, Window>) {
    for (key, w) in windows.iter_mut().filter(|(_, w)| w.dirty > 0) {
        w.dirty -= 1;
        let Some(body) = read(state, key).await else {
            // Not readable now: tried again next tick.
            w.dirty = w.dirty.max(1);
            continue;
        };
        let seen = digest(&body);
        let body: Arc<str> = body.into();
        for s in w.subscribers.iter_mut().filter(|s| s.seen != seen) {
            s.pending.put_update(&s.sub, s.token, body.clone());
            s.seen = seen;
        }
    }
}

/// The `"leaderboard":…` (and `"around":…`) part of a window's message, as it is now.
pub async fn read(state: &AppState, key: &WindowKey) -> Option<String> {
    let catalog = state.catalog.get();
    let now = state.clock.now();
    let board = catalog.leaderboard(key.board)?;
    let run = key.run.and_then(|index| board.schedule().run(index));
    let top = crate::http::app::leaderboards::rankings(
        state,
        board,
        now,
        run,
        key.group.clone(),
        PageStart::Offset(0),
        key.limit,
    )
    .await
    .ok()?;
    let mut body = crate::wire::leaderboards::app_leaderboard(board, &catalog, now);
    body.insert("rankings".into(), Value::Array(top));
    let mut out = format!("\"leaderboard\":{}", Value::Object(body));
    if let Some(user) = &key.around {
        let around = crate::http::app::leaderboards::rankings(
            state,
            board,
            now,
            run,
            key.group.clone(),
            PageStart::AroundUser {
                user: user.clone(),
                offset: -2,
            },
            5,
        )
        .await
        .ok()?;
        out.push_str(&format!(",\"around\":{}", Value::Array(around)));
    }
    Some(out)
}
