//! The push hub: live `update` messages for WebSocket leaderboard subscriptions (SPEC
//! §11.4).
//!
//! One task owns every watched window (a board's run, group, `limit` and `aroundUser`)
//! with its subscribers, and is told by messages ([`HubMsg`]): subscriptions come and go
//! from connections, and the boards say which of them changed as they apply records. A
//! change after a quiet [`TICK`] is read at once, later ones together one [`TICK`] after
//! that read: the hub reads each changed window once, serializes it once, and gives every
//! subscriber whose last message differs an update carrying it (so at most 10 updates per
//! second per subscription, always the latest state). Updates wait in each connection's
//! [`Pending`] slot, where a newer one replaces an older one not yet sent; the connection
//! numbers messages as it writes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use kudos_actors::leaderboard::actor::PageStart;
use kudos_actors::space::Spaces;
use kudos_actors::user::Effect;
use kudos_snapshots::{Scope, StreamKind};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::http::scope::Scoped;
use crate::AppState;

/// The least time between two reads of changed windows (so at most 10 updates per second
/// per subscription): a change after a quiet interval is read at once.
pub const TICK: Duration = Duration::from_millis(100);
/// How often the hub looks for catalog edits and a new day.
const WATCH: Duration = Duration::from_secs(1);
/// How soon a window that could not be read is tried again.
const UNREADABLE_RETRY: Duration = Duration::from_secs(1);

/// What a connection's subscription watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowKey {
    /// The subscriber's scope (the board is one of its catalog's).
    pub scope: Scope,
    pub board: Uuid,
    pub key: String,
    /// A run asked for by date; `None`: the current run, whichever it is at each read.
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
        scope: Scope,
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
    /// Cancelled when the hub failed and was restarted without its subscriptions: the
    /// connections of that epoch close (1011) so their clients subscribe again.
    epoch: Arc<Mutex<CancellationToken>>,
}

impl Default for Hub {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
            next_conn: Default::default(),
            epoch: Default::default(),
        }
    }
}

impl Hub {
    pub fn send(&self, msg: HubMsg) {
        let _ = self.tx.send(msg);
    }

    /// Cancelled if the hub loses this epoch's subscriptions (a connection takes it when
    /// it opens).
    pub fn epoch(&self) -> CancellationToken {
        self.epoch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ends the current epoch and starts the next.
    pub(crate) fn renew_epoch(&self) {
        let old = std::mem::take(&mut *self.epoch.lock().unwrap_or_else(|e| e.into_inner()));
        old.cancel();
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
    /// To be read at the next edge.
    dirty: bool,
}

/// Starts the hub of `state.push` and the listeners that tell it which boards changed and
/// which records were committed (once; later calls do nothing).
pub fn start(state: &AppState, shutdown: CancellationToken) {
    let hub = state.push.clone();
    let Some(rx) = hub.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    // Records for `user:` topics: users' own records, and board writes with rank changes.
    {
        let (hub, mut published, shutdown) = (
            hub.clone(),
            state.spaces.bus().subscribe(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            loop {
                let p = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = published.recv() => p,
                };
                match p {
                    Ok(p) => {
                        let wanted = match p.stream.kind {
                            StreamKind::User => true,
                            StreamKind::Leaderboard => p
                                .effects
                                .iter()
                                .any(|e| matches!(e, Effect::LeaderboardRankChanged { .. })),
                            _ => false,
                        };
                        if wanted {
                            hub.send(HubMsg::Record(p));
                        }
                    }
                    // Missed records: `user:` subscribers would miss events without a gap
                    // in `seq`, so every connection is closed (1011) to subscribe again.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "live user topics missed records; connections closed to resubscribe"
                        );
                        hub.renew_epoch();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
    // Boards whose memory changed, as the boards of each space apply records.
    {
        let (hub, shutdown) = (hub.clone(), shutdown.clone());
        state.spaces.on_open(move |_, space| {
            let (hub, mut changes, shutdown) =
                (hub.clone(), space.boards.changes(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    let board = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        b = changes.recv() => b,
                    };
                    match board {
                        Ok(board) => hub.send(HubMsg::Changed { board }),
                        // Missed signals: every window is read again.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            hub.send(HubMsg::Changed { board: Uuid::nil() })
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        });
    }
    tokio::spawn(supervise(state.clone(), rx, shutdown));
}

/// Runs the hub, and restarts it if it panics: its windows and subscriptions are lost, so
/// the connections of that epoch are closed (1011) and their clients subscribe again.
async fn supervise(
    state: AppState,
    mut rx: mpsc::UnboundedReceiver<HubMsg>,
    shutdown: CancellationToken,
) {
    use futures_util::FutureExt;
    loop {
        let run = std::panic::AssertUnwindSafe(run(state.clone(), &mut rx, shutdown.clone()));
        match run.catch_unwind().await {
            Ok(()) => return,
            Err(_) => {
                tracing::error!(
                    "the WebSocket push hub failed; restarted, live connections are closed so clients subscribe again"
                );
                // Messages still queued from the ended epoch's connections are harmless:
                // those connections close now, and their disconnects remove what they add.
                state.push.renew_epoch();
                // A failure that repeats (one bad window, read again as soon as clients
                // resubscribe) costs a restart per second at most.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A `user:` subscription.
struct UserSub {
    conn: u64,
    sub: String,
    token: u64,
    pending: Arc<Pending>,
}

/// When the next read is due: at once after a quiet [`TICK`] (the leading edge), else one
/// [`TICK`] after the last read began (the trailing edge, carrying every change since).
fn next_read(last: Option<Instant>, now: Instant) -> Instant {
    last.map_or(now, |l| (l + TICK).max(now))
}

async fn run(
    state: AppState,
    rx: &mut mpsc::UnboundedReceiver<HubMsg>,
    shutdown: CancellationToken,
) {
    let mut windows: HashMap<WindowKey, Window> = HashMap::new();
    let mut users: HashMap<(Scope, String), Vec<UserSub>> = HashMap::new();
    // Boards changed since the last read (nil: all), marked on their windows when the read
    // is due, so a busy board costs one set insert per change, not a pass over every window.
    let mut changed: std::collections::HashSet<Uuid> = Default::default();
    let mut last: Option<Instant> = None;
    let mut due: Option<Instant> = None;
    // Changes that come from no record: a catalog edit (a board renamed, its window or
    // breakdown changed), a new day (a new current run). Looked for every second.
    let mut watch = tokio::time::interval(WATCH);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = (catalogs(&state.spaces), state.clock.now().date_naive());
    loop {
        let read_at = due;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = watch.tick() => {
                let now = (catalogs(&state.spaces), state.clock.now().date_naive());
                let edited = now.0.len() != seen.0.len()
                    || now.0.iter().zip(&seen.0).any(|(a, b)| !Arc::ptr_eq(a, b));
                if edited || now.1 != seen.1 {
                    seen = now;
                    if !windows.is_empty() {
                        changed.insert(Uuid::nil());
                        due.get_or_insert_with(|| next_read(last, Instant::now()));
                    }
                }
            }
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                match msg {
                    HubMsg::Changed { board } => {
                        changed.insert(board);
                        due.get_or_insert_with(|| next_read(last, Instant::now()));
                    }
                    HubMsg::Record(p) => deliver(&state, &users, &p).await,
                    HubMsg::SubscribeUser { conn, scope, sub, token, user, pending } => {
                        users.entry((scope, user)).or_default().push(UserSub { conn, sub, token, pending });
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
                        if apply(&mut windows, other) {
                            due.get_or_insert_with(|| next_read(last, Instant::now()));
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(read_at.unwrap_or_else(Instant::now)), if read_at.is_some() => {
                due = None;
                if !changed.is_empty() {
                    let all = changed.contains(&Uuid::nil());
                    for (k, w) in windows.iter_mut() {
                        if all || changed.contains(&k.board) {
                            w.dirty = true;
                        }
                    }
                    changed.clear();
                }
                let began = Instant::now();
                if windows.values().any(|w| w.dirty) {
                    last = Some(began);
                }
                if refresh(&state, &mut windows).await {
                    // Some window could not be read (storage is failing, and the boards
                    // reset): again in a second, not at the next edge.
                    due = Some(Instant::now() + UNREADABLE_RETRY);
                }
            }
        }
    }
}

/// The webhook event types a `user:` topic carries from the user's own records (SPEC
/// §11.4.3); `points.changed` and `leaderboard.rank_changed` are added unthrottled.
fn topic_wants(t: &str) -> bool {
    t == "achievement.completed" || t == "points.level_changed" || t.starts_with("streak.")
}

/// Gives a record's events to the subscribers of the users it concerns, each event
/// rendered and serialized once: a user's own record to that user; a board write's rank
/// changes each to its user.
async fn deliver(
    state: &AppState,
    users: &HashMap<(Scope, String), Vec<UserSub>>,
    p: &kudos_actors::effects::Published,
) {
    let scope = p.stream.scope;
    // The record's space is open: it made the record.
    let Some(space) = state.spaces.open_space(scope) else {
        return;
    };
    let catalog = space.catalog.get();
    let now = state.clock.now();
    let watched = |user: &str| users.contains_key(&(scope, user.to_string()));
    let mut targets: Vec<(&str, Vec<Effect>)> = Vec::new();
    if p.stream.kind == StreamKind::User {
        if watched(&p.stream.id) {
            targets.push((&p.stream.id, p.effects.clone()));
        }
    } else {
        for e in &p.effects {
            let Effect::LeaderboardRankChanged { user_id, .. } = e else {
                continue;
            };
            if !watched(user_id) {
                continue;
            }
            match targets.iter_mut().find(|(u, _)| *u == user_id.as_str()) {
                Some((_, effects)) => effects.push(e.clone()),
                None => targets.push((user_id, vec![e.clone()])),
            }
        }
    }
    for (user, effects) in targets {
        let Some(subs) = users.get(&(scope, user.to_string())) else {
            continue;
        };
        let mut events = crate::webhooks::dispatch::WebhookConsumer::render_events(
            &space.users,
            &catalog,
            &effects,
            &topic_wants,
        )
        .await;
        match crate::webhooks::throttled::live_events(&space.users, &catalog, &effects, now).await {
            Ok(more) => events.extend(more),
            Err(e) => {
                tracing::warn!(user, error = %e, "points and rank events for live subscribers skipped")
            }
        }
        for event in events {
            let payload: Arc<str> = event.payload.to_string().into();
            for s in subs {
                s.pending.put_event(&s.sub, s.token, payload.clone());
            }
        }
    }
}

/// Every open space's catalog, in scope order (the hub's watch compares them by pointer).
fn catalogs(spaces: &Spaces) -> Vec<Arc<kudos_actors::catalog::Catalog>> {
    spaces.all().iter().map(|s| s.catalog.get()).collect()
}

/// Applies a subscription change; `true` when a window must be read.
fn apply(windows: &mut HashMap<WindowKey, Window>, msg: HubMsg) -> bool {
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
                dirty: false,
            });
            // Read once more: a change between the snapshot's read and now is not missed.
            w.dirty = true;
            w.subscribers.push(Subscriber {
                conn,
                sub,
                token,
                seen: digest(&body),
                pending,
            });
            return true;
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
    false
}

/// Reads every changed window once and gives its subscribers the update when it moved;
/// `true` when some window could not be read (it stays marked).
async fn refresh(state: &AppState, windows: &mut HashMap<WindowKey, Window>) -> bool {
    let mut unread = false;
    for (key, w) in windows.iter_mut().filter(|(_, w)| w.dirty) {
        let Ok(scoped) = Scoped::of(state, key.scope) else {
            unread = true;
            continue;
        };
        // A deleted board has nothing more to show: its subscribers keep their last state.
        if scoped.catalog.get().leaderboard(key.board).is_none() {
            w.dirty = false;
            continue;
        }
        let Some(body) = read(&scoped, key).await else {
            unread = true;
            continue;
        };
        w.dirty = false;
        let seen = digest(&body);
        let body: Arc<str> = body.into();
        for s in w.subscribers.iter_mut().filter(|s| s.seen != seen) {
            s.pending.put_update(&s.sub, s.token, body.clone());
            s.seen = seen;
        }
    }
    unread
}

/// The `"leaderboard":…` (and `"around":…`) part of a window's message, as it is now.
pub async fn read(state: &Scoped, key: &WindowKey) -> Option<String> {
    let catalog = state.catalog.get();
    let now = state.clock.now();
    let board = catalog.leaderboard(key.board)?;
    let run = match key.run {
        Some(index) => board.schedule().run(index),
        None => crate::http::app::leaderboards::current_run(board, now.date_naive()),
    };
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
