//! The webhook dispatcher: the durable outbox and the sender.
//!
//! - **Outbox.** [`WebhookConsumer`] is the `WEBHOOKS` effect consumer. For each record's
//!   effects it renders each event's payload once (with the user as they are now) and
//!   writes one delivery row per subscribed active endpoint, with a pending entry, in the
//!   same batch that removes the record's inbox row. So every acknowledged effect becomes
//!   its deliveries exactly once, across crashes.
//! - **Sender.** [`run_sender`] attempts pending deliveries whose time has come, on the
//!   Clock (so retries follow the test clock), with at most [`PER_ENDPOINT`] attempts in
//!   flight per endpoint. A failure is retried after 1, 2 and 4 minutes (SPEC §8.1.4), then
//!   marked failed. Attempts are recorded on the delivery row; a crash before the record
//!   only repeats an attempt (at least once), with the same event id and body.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kudos_actors::catalog::webhooks::Webhook;
use kudos_actors::catalog::Catalog;
use kudos_actors::clock::Clock;
use kudos_actors::effects::{EffectConsumer, Pending};
use kudos_actors::rules::notices::Notice;
use kudos_actors::rules::streak::StreakEvent;
use kudos_actors::space::{Space, Spaces};
use kudos_actors::user::{Effect, ProfileQuery, StreakQuery, StreakViewQuery};
use kudos_actors::user_shards::UserShards;
use kudos_snapshots::{Commit, ConsumerId, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::send::{Attempt, Delivery, Sender};
use super::{payloads, throttled};

/// Attempts in flight per endpoint.
pub const PER_ENDPOINT: usize = 4;
/// Minutes to wait after each failed attempt (SPEC §8.1.4: up to 3 retries).
pub const RETRY_MINUTES: [i64; 3] = [1, 2, 4];
/// How often the sender looks for due deliveries when nothing woke it.
const POLL: Duration = Duration::from_millis(200);

const DELIVERY: u8 = b'd';
const QUEUED: u8 = b'q';
const PAYLOAD: u8 = b'p';

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRow {
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub response_body: String,
}

/// One event for one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub endpoint: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    /// The payload JSON (the envelope, if any, is added per attempt). Kept in a row of its
    /// own ([`payload_key`]) since attempts rewrite this row: empty here in rows written so,
    /// and filled in when rows are read for the history.
    pub payload: Vec<u8>,
    pub created: DateTime<Utc>,
    pub status: DeliveryStatus,
    pub attempts: Vec<AttemptRow>,
    pub next_attempt: Option<DateTime<Utc>>,
}

fn delivery_key(endpoint: Uuid, created: DateTime<Utc>, id: Uuid) -> Vec<u8> {
    let mut k = vec![DELIVERY];
    k.extend_from_slice(endpoint.as_bytes());
    k.extend_from_slice(&created.timestamp_millis().to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The row of a delivery's payload, written once when the delivery is created (attempts
/// rewrite only the small delivery row).
fn payload_key(delivery_key: &[u8]) -> Vec<u8> {
    let mut k = vec![PAYLOAD];
    k.extend_from_slice(&delivery_key[1..]);
    k
}

/// The payload of the delivery at `key`: inline in rows written before payloads had rows
/// of their own.
fn payload_of(store: &Store, key: &[u8], row: &DeliveryRow) -> Result<Vec<u8>, StoreError> {
    if !row.payload.is_empty() {
        return Ok(row.payload.clone());
    }
    Ok(store
        .inbox()
        .state_get::<Vec<u8>>(ConsumerId::WEBHOOKS, &payload_key(key))?
        .unwrap_or_default())
}

/// The queue entry of a pending delivery: per endpoint, due instant first, so an
/// endpoint's scan stops at its first entry not due; its value is the delivery's key.
fn queued_key(endpoint: Uuid, due: DateTime<Utc>, id: Uuid) -> Vec<u8> {
    let mut k = queue_prefix(endpoint);
    k.extend_from_slice(&due.timestamp_millis().to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn queue_prefix(endpoint: Uuid) -> Vec<u8> {
    let mut k = vec![QUEUED];
    k.extend_from_slice(endpoint.as_bytes());
    k
}

/// The id of the `index`th delivered event of entry `seq` of `stream`: derived, not drawn,
/// so an outbox batch applied again after a crash gives its events the same ids.
fn event_id(stream: &kudos_snapshots::StreamId, seq: u64, index: usize) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"kudos-webhook-event/");
    h.update(stream.to_string().as_bytes());
    h.update(seq.to_be_bytes());
    h.update((index as u64).to_be_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

fn endpoint_prefix(endpoint: Uuid) -> Vec<u8> {
    let mut k = vec![DELIVERY];
    k.extend_from_slice(endpoint.as_bytes());
    k
}

/// A page of the deliveries of `endpoint` that `keep` accepts, newest first: the rows are
/// read from disk one by one and no further than the page needs.
pub fn deliveries(
    store: &Store,
    endpoint: Uuid,
    keep: impl Fn(&DeliveryRow) -> bool,
    skip: usize,
    limit: usize,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let inbox = store.inbox();
    let prefix = endpoint_prefix(endpoint);
    let mut out = Vec::new();
    let mut skipped = 0;
    for item in
        inbox.state_range::<DeliveryRow>(ConsumerId::WEBHOOKS, &prefix, &prefix_end(&prefix), true)
    {
        let (key, mut row) = item?;
        if !keep(&row) {
            continue;
        }
        if skipped < skip {
            skipped += 1;
            continue;
        }
        row.payload = payload_of(store, &key, &row)?;
        out.push(row);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// A new delivery id: time-ordered (UUID v7 from `now`), so its row's key can be found
/// from the id alone.
fn delivery_id(now: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid()
}

/// Delivery `id` of `endpoint` and its key: read directly for time-ordered ids (the key
/// holds the id's instant), by a scan of the endpoint's rows for older ids.
fn find_delivery(
    store: &Store,
    endpoint: Uuid,
    id: Uuid,
) -> Result<Option<(Vec<u8>, DeliveryRow)>, StoreError> {
    let inbox = store.inbox();
    if id.get_version_num() == 7 {
        let b = id.as_bytes();
        let millis = b[..6].iter().fold(0i64, |m, x| (m << 8) | i64::from(*x));
        if let Some(created) = DateTime::from_timestamp_millis(millis) {
            let key = delivery_key(endpoint, created, id);
            if let Some(row) = inbox.state_get::<DeliveryRow>(ConsumerId::WEBHOOKS, &key)? {
                return Ok(Some((key, row)));
            }
        }
    }
    let prefix = endpoint_prefix(endpoint);
    for item in
        inbox.state_range::<DeliveryRow>(ConsumerId::WEBHOOKS, &prefix, &prefix_end(&prefix), true)
    {
        let (key, row) = item?;
        if row.id == id {
            return Ok(Some((key, row)));
        }
    }
    Ok(None)
}

/// Puts `row` (at `key`) back in its endpoint's queue for an attempt at `now`, with the
/// same event id and body.
fn requeue(
    commit: &mut Commit,
    key: &[u8],
    mut row: DeliveryRow,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Some(old) = row.next_attempt {
        commit.consumer_state::<Vec<u8>>(
            ConsumerId::WEBHOOKS,
            &queued_key(row.endpoint, old, row.id),
            None,
        )?;
    }
    row.status = DeliveryStatus::Pending;
    row.next_attempt = Some(now);
    commit.consumer_state(
        ConsumerId::WEBHOOKS,
        &queued_key(row.endpoint, now, row.id),
        Some(&key.to_vec()),
    )?;
    commit.consumer_state(ConsumerId::WEBHOOKS, key, Some(&row))
}

/// Queues one new attempt of delivery `id` of `endpoint` now, with the same event id and
/// body (SPEC §11.3.8). `false` if there is no such delivery.
pub async fn resend(
    store: &Store,
    endpoint: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
    wake: &tokio::sync::Notify,
) -> Result<bool, StoreError> {
    let Some((key, row)) = find_delivery(store, endpoint, id)? else {
        return Ok(false);
    };
    let mut c = Commit::new();
    requeue(&mut c, &key, row, now)?;
    store.commit(c).await?;
    wake.notify_one();
    Ok(true)
}

/// Deliveries requeued per commit by [`recover`].
const RECOVER_BATCH: usize = 500;

/// Resends every delivery of `endpoint` created at or after `since` that never succeeded
/// (SPEC §11.3.9), reading forward from `since` in batches; returns how many.
pub async fn recover(
    store: &Store,
    endpoint: Uuid,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    wake: &tokio::sync::Notify,
) -> Result<usize, StoreError> {
    let prefix = endpoint_prefix(endpoint);
    let mut from = prefix.clone();
    from.extend_from_slice(&since.timestamp_millis().max(0).to_be_bytes());
    let end = prefix_end(&prefix);
    let mut n = 0;
    loop {
        let mut batch = Vec::new();
        let mut next = None;
        for item in
            store
                .inbox()
                .state_range::<DeliveryRow>(ConsumerId::WEBHOOKS, &from, &end, false)
        {
            let (key, row) = item?;
            if batch.len() >= RECOVER_BATCH {
                next = Some(key);
                break;
            }
            if row.status != DeliveryStatus::Succeeded && row.created >= since {
                batch.push((key, row));
            }
        }
        let mut c = Commit::new();
        n += batch.len();
        for (key, row) in batch {
            requeue(&mut c, &key, row, now)?;
        }
        store.commit(c).await?;
        wake.notify_one();
        match next {
            Some(key) => from = key,
            None => return Ok(n),
        }
    }
}

/// Removals per write of [`purge`].
const PURGE_BATCH: usize = 1000;

/// Removes deliveries created before `before` that are not pending (the delivery log is
/// kept `KUDOS_DELIVERY_LOG_DAYS`, SPEC §8.1.6); returns how many. Each endpoint's rows
/// are read in creation order and only up to `before`.
pub fn purge(store: &Store, before: DateTime<Utc>) -> Result<usize, StoreError> {
    let inbox = store.inbox();
    let all_end = [DELIVERY + 1];
    let mut from = vec![DELIVERY];
    let mut c = Commit::new();
    let (mut n, mut in_batch) = (0, 0);
    'endpoints: loop {
        for item in inbox.state_range::<DeliveryRow>(ConsumerId::WEBHOOKS, &from, &all_end, false) {
            let (key, row) = item?;
            if row.created >= before {
                // The rest of this endpoint is newer: on to the next endpoint (named by the
                // key, which is what orders the rows).
                from = prefix_end(&key[..17.min(key.len())]);
                continue 'endpoints;
            }
            if row.status != DeliveryStatus::Pending {
                c.consumer_state::<DeliveryRow>(ConsumerId::WEBHOOKS, &key, None)?;
                c.consumer_state::<Vec<u8>>(ConsumerId::WEBHOOKS, &payload_key(&key), None)?;
                n += 1;
                in_batch += 1;
                if in_batch >= PURGE_BATCH {
                    store.write(std::mem::take(&mut c))?;
                    in_batch = 0;
                }
            }
        }
        break;
    }
    store.write(c)?;
    Ok(n)
}

/// Attempt counts per endpoint and outcome, for `/metrics`.
#[derive(Default)]
pub struct Stats {
    attempts: std::sync::Mutex<std::collections::BTreeMap<(Uuid, &'static str), u64>>,
}

impl Stats {
    fn record(&self, endpoint: Uuid, done: &Attempt) {
        let outcome = match done.status_code {
            Some(c) if (200..300).contains(&c) => "success",
            Some(_) => "http_error",
            None => "network_error",
        };
        *self
            .attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((endpoint, outcome))
            .or_default() += 1;
    }
}

/// The webhook series of `/metrics`: attempts by endpoint and outcome, and per endpoint
/// the queue depth (capped) and the age of its oldest due entry.
pub fn render_metrics(
    store: &Store,
    catalogs: &[Arc<Catalog>],
    stats: &Stats,
    now: DateTime<Utc>,
) -> String {
    use std::fmt::Write;
    const CAP: usize = 100_000;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP kudos_webhook_attempts_total Webhook delivery attempts by endpoint and outcome.\n# TYPE kudos_webhook_attempts_total counter"
    );
    for ((endpoint, outcome), n) in stats
        .attempts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "kudos_webhook_attempts_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP kudos_webhook_queue_depth Deliveries waiting for an attempt, per endpoint (counted up to {CAP}).\n# TYPE kudos_webhook_queue_depth gauge"
    );
    let mut ages = Vec::new();
    for w in catalogs.iter().flat_map(|c| c.webhooks()) {
        let (depth, first) = store
            .inbox()
            .count_prefix(ConsumerId::WEBHOOKS, &queue_prefix(w.id), CAP)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "kudos_webhook_queue_depth{{endpoint=\"{}\"}} {depth}",
            w.id,
        );
        let oldest = first
            .and_then(|k| k.get(..8)?.try_into().ok())
            .map(i64::from_be_bytes)
            .map_or(0.0, |due| {
                ((now.timestamp_millis() - due).max(0) as f64) / 1000.0
            });
        ages.push((w.id, oldest));
    }
    let _ = writeln!(
        out,
        "# HELP kudos_webhook_queue_age_seconds How long the oldest queued delivery of an endpoint has been due.\n# TYPE kudos_webhook_queue_age_seconds gauge"
    );
    for (id, age) in ages {
        let _ = writeln!(
            out,
            "kudos_webhook_queue_age_seconds{{endpoint=\"{id}\"}} {age}"
        );
    }
    out
}

/// An event to deliver: its type and payload, rendered once.
pub struct Event {
    pub event_type: &'static str,
    pub payload: serde_json::Value,
}

/// The `WEBHOOKS` effect consumer.
#[derive(Clone)]
pub struct WebhookConsumer {
    /// Each record is rendered with its scope's catalog and users.
    pub spaces: Spaces,
    pub clock: Arc<dyn Clock>,
    pub wake: Arc<tokio::sync::Notify>,
    /// Held while throttling windows are read and written (here and by
    /// [`super::throttled::run_trailing`]).
    pub throttle: Arc<tokio::sync::Mutex<()>>,
}

impl WebhookConsumer {
    pub fn of(state: &crate::AppState) -> Self {
        Self {
            spaces: state.spaces.clone(),
            clock: state.clock.clone(),
            wake: state.webhook_wake.clone(),
            throttle: state.webhook_throttle.clone(),
        }
    }

    /// Renders the events of one record that some endpoint wants.
    async fn events(
        &self,
        users: &UserShards,
        catalog: &Catalog,
        effects: &[Effect],
    ) -> Vec<Event> {
        Self::render_events(users, catalog, effects, &|t| {
            catalog.webhooks().any(|w| w.wants(t))
        })
        .await
    }

    /// Renders the events of one record whose type `wants` accepts (the throttled types
    /// excepted), with the user as they are now.
    pub async fn render_events(
        users: &UserShards,
        catalog: &Catalog,
        effects: &[Effect],
        wants: &(dyn Fn(&str) -> bool + Sync),
    ) -> Vec<Event> {
        let mut out = Vec::new();
        for e in effects {
            let Some(t) = e.webhook_type() else {
                continue;
            };
            if !wants(t) {
                continue;
            }
            // Events about no user: boosts for everyone, leaderboard runs.
            let shared = match e {
                Effect::BoostStarted {
                    boost_id,
                    system_id,
                    user_id: None,
                    at,
                }
                | Effect::BoostFinished {
                    boost_id,
                    system_id,
                    user_id: None,
                    at,
                } => boost_payload(catalog, t, *boost_id, *system_id, *at),
                Effect::LeaderboardStarted { board_id, at, .. } => catalog
                    .leaderboard(*board_id)
                    .map(|b| payloads::leaderboard_rankings(t, b, catalog, &[], *at)),
                Effect::LeaderboardFinished {
                    board_id, top, at, ..
                } => catalog
                    .leaderboard(*board_id)
                    .map(|b| payloads::leaderboard_rankings(t, b, catalog, top, *at)),
                _ => None,
            };
            if let Some(payload) = shared {
                out.push(Event {
                    event_type: t,
                    payload,
                });
                continue;
            }
            let user_id = match e {
                Effect::AchievementCompleted { user_id, .. }
                | Effect::Streak { user_id, .. }
                | Effect::PointsLevelChanged { user_id, .. }
                | Effect::NoticeDue { user_id, .. } => user_id,
                Effect::BoostStarted {
                    boost_id,
                    system_id,
                    user_id: Some(_),
                    at,
                }
                | Effect::BoostFinished {
                    boost_id,
                    system_id,
                    user_id: Some(_),
                    at,
                } => {
                    if let Some(payload) = boost_payload(catalog, t, *boost_id, *system_id, *at) {
                        out.push(Event {
                            event_type: t,
                            payload,
                        });
                    }
                    continue;
                }
                _ => continue,
            };
            // The full user at emission (SPEC §8.1.7).
            let Ok(Some(user)) = users.query(user_id, ProfileQuery).await else {
                tracing::warn!(user = %user_id, event_type = t, "webhook event for a user that cannot be read; skipped");
                continue;
            };
            let payload = match e {
                Effect::AchievementCompleted {
                    achievement_id, at, ..
                } => match catalog.achievement(*achievement_id) {
                    Some(a) => payloads::achievement_completed(&user, a, catalog, *at),
                    None => continue,
                },
                Effect::PointsLevelChanged {
                    system_id,
                    previous,
                    new,
                    ..
                } => {
                    let Some(system) = catalog.points_system(*system_id) else {
                        continue;
                    };
                    // The total the change came with: the record's last award in the system.
                    let total = effects
                        .iter()
                        .filter_map(|x| match x {
                            Effect::PointsAwarded {
                                system_id: s,
                                award,
                                ..
                            } if s == system_id => Some(award.total),
                            _ => None,
                        })
                        .next_back()
                        .unwrap_or(0);
                    payloads::level_changed(
                        &user,
                        catalog,
                        system,
                        total,
                        previous.and_then(|id| catalog.points_level_any(id)),
                        new.and_then(|id| catalog.points_level_any(id)),
                    )
                }
                Effect::NoticeDue { notice, at, .. } => match notice {
                    Notice::Recap { start, end } => {
                        payloads::recap_due(&user, catalog, (*start, *end), *at)
                    }
                    Notice::Reactivation { number, days } => {
                        payloads::reactivation_due(&user, catalog, *number, *days, *at)
                    }
                    Notice::StreakReminder { .. } => {
                        let asked = StreakQuery { history_periods: 7 };
                        let Ok(Some(detail)) = users.query(user_id, asked).await else {
                            continue;
                        };
                        let streak = crate::wire::streaks::StreakResponse::from(&detail);
                        payloads::streak_reminder_due(&user, catalog, &streak, *at)
                    }
                    Notice::Achievement {
                        achievement_id,
                        completed,
                        ..
                    } => match catalog.achievement(*achievement_id) {
                        Some(a) => payloads::achievement_due(&user, a, catalog, *completed, *at),
                        None => continue,
                    },
                },
                Effect::Streak { event, .. } => match event {
                    StreakEvent::Started { .. } | StreakEvent::Extended { .. } => {
                        let Ok(Some(view)) = users.query(user_id, StreakViewQuery).await else {
                            continue;
                        };
                        payloads::streak_grew(t, &user, catalog, &view)
                    }
                    StreakEvent::Lost { length } => payloads::streak_lost(&user, catalog, *length),
                    StreakEvent::FreezeConsumed { consumed, freezes } => {
                        payloads::freeze_consumed(&user, catalog, *consumed, *freezes)
                    }
                    StreakEvent::FreezeEarned { earned, freezes } => {
                        payloads::freeze_earned(&user, catalog, *earned, *freezes)
                    }
                },
                _ => continue,
            };
            out.push(Event {
                event_type: t,
                payload,
            });
        }
        out
    }
}

/// `points.boost_started` / `finished` of a boost that still exists (deleted boosts are
/// not announced, SPEC §8.3).
fn boost_payload(
    catalog: &Catalog,
    event_type: &str,
    boost_id: Uuid,
    system_id: Uuid,
    at: DateTime<Utc>,
) -> Option<serde_json::Value> {
    let b = catalog
        .points_boosts(system_id)
        .find(|b| b.id == boost_id)?;
    let system = catalog.points_system(system_id)?;
    Some(payloads::boost(event_type, b, system, at))
}

impl EffectConsumer for WebhookConsumer {
    const ID: ConsumerId = ConsumerId::WEBHOOKS;

    async fn process(&mut self, store: &Store, records: &[Pending<'_>]) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut commit = Commit::new();
        let mut queued = 0usize;
        let _windows = self.throttle.lock().await;
        let mut windows = throttled::Batch::default();
        for r in records {
            // The record's scope: its endpoints, its users.
            let space = self.spaces.get(r.stream.scope)?;
            let catalog = space.catalog.get();
            let mut events = self.events(&space.users, &catalog, r.effects).await;
            // Throttled types: a leading edge goes with the record's other events.
            for change in throttled::changes(r.effects, &catalog) {
                if let Some(event) = windows.admit(&space, store, &catalog, change, now).await? {
                    events.push(event);
                }
            }
            for (index, event) in events.into_iter().enumerate() {
                let event_id = event_id(r.stream, r.seq, index);
                queued += queue(&mut commit, &catalog, &event, event_id, now)?;
            }
            commit.inbox_done(Self::ID, r.stream, r.seq);
        }
        windows.write(&mut commit)?;
        // Durable before any attempt: an attempt is never made for a delivery a crash could
        // forget.
        store.commit(commit).await?;
        if queued > 0 {
            tracing::debug!(queued, "webhook deliveries queued");
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// Writes one pending delivery of `event` per endpoint that wants it into `commit`;
/// returns how many.
pub(super) fn queue(
    commit: &mut Commit,
    catalog: &Catalog,
    event: &Event,
    event_id: Uuid,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let payload = serde_json::to_vec(&event.payload).unwrap_or_default();
    let mut n = 0;
    for w in catalog.webhooks().filter(|w| w.wants(event.event_type)) {
        let row = DeliveryRow {
            id: delivery_id(now),
            endpoint: w.id,
            event_id,
            event_type: event.event_type.to_string(),
            payload: Vec::new(),
            created: now,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            next_attempt: Some(now),
        };
        let key = delivery_key(w.id, now, row.id);
        commit.consumer_state(ConsumerId::WEBHOOKS, &payload_key(&key), Some(&payload))?;
        commit.consumer_state(ConsumerId::WEBHOOKS, &key, Some(&row))?;
        commit.consumer_state(
            ConsumerId::WEBHOOKS,
            &queued_key(w.id, now, row.id),
            Some(&key),
        )?;
        n += 1;
    }
    Ok(n)
}

/// Tells the effect bus whether any endpoint is active, so records get webhook inbox rows
/// only then (records with no endpoint to go to cost ingest nothing).
pub fn refresh_live(spaces: &Spaces) {
    set_live(spaces);
}

/// What the sender and its attempts share (cheap to clone).
#[derive(Clone)]
pub struct SenderDeps {
    pub store: Store,
    pub stats: Arc<Stats>,
    /// The endpoints of every open scope.
    pub spaces: Spaces,
    pub clock: Arc<dyn Clock>,
    pub sender: Sender,
}

/// Endpoint `id` as it is now, and the space it belongs to.
fn find_hook(spaces: &Spaces, id: Uuid) -> Option<(Arc<Space>, Webhook)> {
    spaces.active().into_iter().find_map(|space| {
        let hook = space.catalog.get().webhook(id).cloned()?;
        Some((space, hook))
    })
}

/// Tells `bus` whether any endpoint is active (records get webhook rows only then) and
/// whether an active one wants board events (board writes give them to webhooks only then).
/// The flags are the same for every scope: a record of a scope without endpoints then costs
/// an inbox row, which its consumer removes without queueing anything.
fn set_live(spaces: &Spaces) {
    let catalogs: Vec<Arc<Catalog>> = spaces.active().iter().map(|s| s.catalog.get()).collect();
    let active = || {
        catalogs.iter().flat_map(|c| {
            c.webhooks()
                .filter(|w| w.status == kudos_actors::catalog::webhooks::WebhookStatus::Active)
        })
    };
    let boards =
        active().any(|w| w.wants("leaderboard.changed") || w.wants("leaderboard.rank_changed"));
    spaces
        .bus()
        .set_webhooks_live(active().next().is_some(), boards);
}

/// Sends due deliveries until shutdown (see the module docs): one task per endpoint with
/// due deliveries, so a slow or hanging endpoint holds up only its own.
pub async fn run_sender(
    deps: SenderDeps,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut running: HashMap<Uuid, tokio::task::JoinHandle<Result<(), StoreError>>> =
        HashMap::new();
    loop {
        // Endpoints whose task ended: a storage failure stops the sender (it is restarted).
        let finished: Vec<Uuid> = running
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in finished {
            if let Some(h) = running.remove(&id) {
                if let Ok(Err(e)) = h.await {
                    return Err(e.to_string());
                }
            }
        }
        let now = deps.clock.now();
        // Archived tenants' endpoints receive nothing more.
        let catalogs: Vec<Arc<Catalog>> = deps
            .spaces
            .active()
            .iter()
            .map(|s| s.catalog.get())
            .collect();
        // Deleted endpoints' connection pools are let go.
        deps.sender
            .retain(|id| catalogs.iter().any(|c| c.webhook(*id).is_some()));
        for hook in catalogs.iter().flat_map(|c| c.webhooks()) {
            if running.contains_key(&hook.id) {
                continue;
            }
            let due = due_deliveries(&deps.store, hook.id, now, 1, &Default::default())
                .map_err(|e| e.to_string())?;
            if due.is_empty() {
                continue;
            }
            let (deps, id, wake) = (deps.clone(), hook.id, wake.clone());
            running.insert(
                hook.id,
                tokio::spawn(async move {
                    let drained = drain(&deps, id).await;
                    // Deliveries queued while it was finishing are picked up at once.
                    wake.notify_one();
                    drained
                }),
            );
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                for (_, h) in running.drain() {
                    h.abort();
                }
                return Ok(());
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Attempts the due deliveries of endpoint `id` with at most [`PER_ENDPOINT`] in flight,
/// taking the next due one as each attempt ends (or, with a slot free, every [`POLL`]),
/// until none is due and none is in flight.
async fn drain(deps: &SenderDeps, id: Uuid) -> Result<(), StoreError> {
    let mut attempts = tokio::task::JoinSet::new();
    let mut in_flight: std::collections::HashSet<Vec<u8>> = Default::default();
    loop {
        let free = PER_ENDPOINT - attempts.len();
        if free > 0 {
            // The endpoint as it is now (deleted: nothing more is attempted).
            if let Some((_, hook)) = find_hook(&deps.spaces, id) {
                let now = deps.clock.now();
                let next = due_deliveries(&deps.store, id, now, free, &in_flight)?;
                for (qkey, dkey, row) in next {
                    in_flight.insert(qkey.clone());
                    let (deps, hook) = (deps.clone(), hook.clone());
                    attempts.spawn(async move {
                        let done = attempt(&deps, &hook, qkey.clone(), dkey, row).await;
                        (qkey, done)
                    });
                }
            }
        }
        // With a slot free, look again for due deliveries after a while even if no attempt
        // ends (one hanging attempt must not keep the others from starting).
        let next = if attempts.len() < PER_ENDPOINT && !attempts.is_empty() {
            tokio::select! {
                next = attempts.join_next() => next,
                _ = tokio::time::sleep(POLL) => continue,
            }
        } else {
            attempts.join_next().await
        };
        match next {
            None => return Ok(()),
            Some(Ok((qkey, done))) => {
                in_flight.remove(&qkey);
                done?;
            }
            // An attempt that panicked: its delivery stays queued and is tried again.
            Some(Err(e)) => {
                tracing::error!(webhook = %id, error = %e, "a webhook attempt failed unexpectedly");
                return Ok(());
            }
        }
    }
}

/// A due delivery: its queue key, its row's key, and the row.
type Due = (Vec<u8>, Vec<u8>, DeliveryRow);

/// Up to `limit` pending deliveries of `endpoint` due at `now` and not in `in_flight`
/// (queue keys), oldest due first (the scan reads no further than that, and reads rows
/// only of the deliveries it returns).
fn due_deliveries(
    store: &Store,
    endpoint: Uuid,
    now: DateTime<Utc>,
    limit: usize,
    in_flight: &std::collections::HashSet<Vec<u8>>,
) -> Result<Vec<Due>, StoreError> {
    let inbox = store.inbox();
    let prefix = queue_prefix(endpoint);
    let queued: Vec<(Vec<u8>, Vec<u8>)> =
        inbox.state_with_prefix_first(ConsumerId::WEBHOOKS, &prefix, limit + in_flight.len())?;
    let mut out = Vec::new();
    let mut stale = Vec::new();
    for (rest, dkey) in queued {
        if out.len() >= limit {
            break;
        }
        let Some(due) = rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes)
        else {
            continue;
        };
        if due > now.timestamp_millis() {
            break;
        }
        let mut qkey = prefix.clone();
        qkey.extend_from_slice(&rest);
        if in_flight.contains(&qkey) {
            continue;
        }
        let row = inbox.state_get::<DeliveryRow>(ConsumerId::WEBHOOKS, &dkey)?;
        match row {
            // The entry its row says is current.
            Some(row)
                if row.status == DeliveryStatus::Pending
                    && row
                        .next_attempt
                        .is_some_and(|t| queued_key(endpoint, t, row.id) == qkey) =>
            {
                out.push((qkey, dkey, row));
            }
            // Left behind (the row was purged, ended, or requeued while an attempt was in
            // flight): removed, so it never stands at the head of the queue.
            _ => stale.push(qkey),
        }
    }
    if !stale.is_empty() {
        let mut c = Commit::new();
        for k in &stale {
            c.consumer_state::<Vec<u8>>(ConsumerId::WEBHOOKS, k, None)?;
        }
        store.write(c)?;
    }
    Ok(out)
}

/// One attempt of one delivery, and its record: succeeded, retried later, or failed.
async fn attempt(
    deps: &SenderDeps,
    hook: &Webhook,
    qkey: Vec<u8>,
    dkey: Vec<u8>,
    mut row: DeliveryRow,
) -> Result<(), StoreError> {
    let SenderDeps {
        store,
        stats,
        spaces,
        clock,
        sender,
    } = deps;
    let now = clock.now();
    let mut commit = Commit::new();
    commit.consumer_state::<Vec<u8>>(ConsumerId::WEBHOOKS, &qkey, None)?;
    if hook.status != kudos_actors::catalog::webhooks::WebhookStatus::Active {
        // Inactive endpoints receive nothing; the delivery waits (SPEC §11.3.3).
        let later = now + chrono::Duration::minutes(1);
        row.next_attempt = Some(later);
        commit.consumer_state(
            ConsumerId::WEBHOOKS,
            &queued_key(row.endpoint, later, row.id),
            Some(&dkey),
        )?;
        commit.consumer_state(ConsumerId::WEBHOOKS, &dkey, Some(&row))?;
        return store.write(commit);
    }
    let number = u32::try_from(row.attempts.len() + 1).unwrap_or(u32::MAX);
    let event_id = row.event_id.to_string();
    let payload = payload_of(store, &dkey, &row)?;
    let body = payloads::body(
        hook,
        &event_id,
        &row.event_type,
        &payload,
        row.created,
        number,
    );
    let done: Attempt = sender
        .attempt(
            &Delivery {
                endpoint: hook.id,
                url: &hook.url,
                method: hook.method,
                headers: &hook.headers,
                secrets: hook.signing_secrets(now),
                event_id: &event_id,
                event_type: &row.event_type,
                body: &body,
            },
            now,
        )
        .await;
    stats.record(hook.id, &done);
    let ok = done.succeeded();
    row.attempts.push(AttemptRow {
        at: done.at,
        status_code: done.status_code,
        error: done.error.clone(),
        duration_ms: done.duration_ms,
        response_body: done.response_body.clone(),
    });
    let retries_used = row.attempts.len() - 1;
    if ok {
        row.status = DeliveryStatus::Succeeded;
        row.next_attempt = None;
    } else if done.status_code == Some(410) {
        // The receiver is gone: the endpoint is disabled, this delivery waits with the
        // others until it is activated again.
        let space = find_hook(spaces, hook.id).map(|(space, _)| space);
        let disabled = match &space {
            Some(space) => {
                space
                    .catalog
                    .update(|cat| {
                        let w = cat.disable_webhook(hook.id, "410 Gone", now);
                        let changed = w.iter().map(kudos_actors::catalog::Changed::of).collect();
                        (w, changed)
                    })
                    .await?
            }
            None => None,
        };
        if let Some(w) = disabled {
            tracing::warn!(webhook = %w.id, url = %w.url, "endpoint answered 410 Gone; set inactive");
            set_live(spaces);
        }
        let later = now + chrono::Duration::minutes(1);
        row.next_attempt = Some(later);
        commit.consumer_state(
            ConsumerId::WEBHOOKS,
            &queued_key(row.endpoint, later, row.id),
            Some(&dkey),
        )?;
    } else if done.abort || retries_used >= RETRY_MINUTES.len() {
        row.status = DeliveryStatus::Failed;
        row.next_attempt = None;
    } else {
        // The schedule's wait, or the receiver's Retry-After clamped between it and twice it.
        let scheduled = RETRY_MINUTES[retries_used] * 60;
        let secs = done.retry_after.map_or(scheduled, |asked| {
            i64::try_from(asked)
                .unwrap_or(i64::MAX)
                .clamp(scheduled, scheduled * 2)
        });
        let later = now + chrono::Duration::seconds(secs);
        row.next_attempt = Some(later);
        commit.consumer_state(
            ConsumerId::WEBHOOKS,
            &queued_key(row.endpoint, later, row.id),
            Some(&dkey),
        )?;
    }
    tracing::info!(
        webhook = %hook.id,
        event_type = %row.event_type,
        attempt = number,
        status = ?done.status_code,
        error = ?done.error,
        "webhook attempt"
    );
    commit.consumer_state(ConsumerId::WEBHOOKS, &dkey, Some(&row))?;
    store.write(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(endpoint: Uuid, created: DateTime<Utc>, status: DeliveryStatus) -> DeliveryRow {
        DeliveryRow {
            id: delivery_id(created),
            endpoint,
            event_id: Uuid::new_v4(),
            event_type: "streak.lost".into(),
            payload: b"{}".to_vec(),
            created,
            status,
            attempts: Vec::new(),
            next_attempt: None,
        }
    }

    #[test]
    fn the_purge_removes_ended_deliveries_older_than_the_cutoff_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Default::default()).expect("store");
        let endpoint = Uuid::new_v4();
        let t = |d: u32| {
            chrono::TimeZone::with_ymd_and_hms(&Utc, 2027, 5, d, 12, 0, 0)
                .single()
                .expect("t")
        };
        let rows = [
            row(endpoint, t(1), DeliveryStatus::Succeeded),
            row(endpoint, t(1), DeliveryStatus::Failed),
            row(endpoint, t(1), DeliveryStatus::Pending),
            row(endpoint, t(9), DeliveryStatus::Succeeded),
        ];
        let mut c = Commit::new();
        for r in &rows {
            c.consumer_state(
                ConsumerId::WEBHOOKS,
                &delivery_key(endpoint, r.created, r.id),
                Some(r),
            )
            .expect("row");
        }
        store.write(c).expect("write");
        assert_eq!(purge(&store, t(8)).expect("purge"), 2);
        let left: Vec<DeliveryStatus> = deliveries(&store, endpoint, |_| true, 0, usize::MAX)
            .expect("rows")
            .into_iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(
            left,
            vec![DeliveryStatus::Succeeded, DeliveryStatus::Pending]
        );
    }

    fn write_rows(store: &Store, rows: &[DeliveryRow]) {
        let mut c = Commit::new();
        for r in rows {
            c.consumer_state(
                ConsumerId::WEBHOOKS,
                &delivery_key(r.endpoint, r.created, r.id),
                Some(r),
            )
            .expect("row");
        }
        store.write(c).expect("write");
    }

    #[tokio::test]
    async fn the_log_is_paged_found_recovered_and_purged_from_disk_in_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Default::default()).expect("store");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = chrono::TimeZone::with_ymd_and_hms(&Utc, 2027, 5, 1, 0, 0, 0)
            .single()
            .expect("t");
        let at = |i: usize| t0 + chrono::Duration::seconds(i as i64);
        // More rows than a recover or purge batch, on two endpoints.
        let total = RECOVER_BATCH + PURGE_BATCH + 7;
        let rows_a: Vec<DeliveryRow> = (0..total)
            .map(|i| row(a, at(i), DeliveryStatus::Failed))
            .collect();
        write_rows(&store, &rows_a);
        write_rows(&store, &[row(b, at(0), DeliveryStatus::Succeeded)]);

        // Newest first, skip and limit, a filter.
        let page = deliveries(&store, a, |_| true, 2, 3).expect("page");
        let ids: Vec<Uuid> = page.iter().map(|r| r.id).collect();
        let newest: Vec<Uuid> = rows_a.iter().rev().skip(2).take(3).map(|r| r.id).collect();
        assert_eq!(ids, newest);
        assert!(
            deliveries(&store, a, |r| r.status == DeliveryStatus::Succeeded, 0, 10)
                .expect("page")
                .is_empty()
        );
        assert_eq!(
            deliveries(&store, b, |_| true, 0, 10).expect("page").len(),
            1
        );

        // Found by id (read directly: the id carries its instant).
        let wanted = &rows_a[17];
        let (key, found) = find_delivery(&store, a, wanted.id)
            .expect("find")
            .expect("there");
        assert_eq!(
            (key, found.id),
            (delivery_key(a, wanted.created, wanted.id), wanted.id)
        );
        assert!(find_delivery(&store, b, wanted.id).expect("find").is_none());

        // Recover from row 10 on: every later row, across several batches.
        let wake = tokio::sync::Notify::new();
        let n = recover(&store, a, at(10), at(total), &wake)
            .await
            .expect("recover");
        assert_eq!(n, total - 10);
        let pending = deliveries(
            &store,
            a,
            |r| r.status == DeliveryStatus::Pending,
            0,
            usize::MAX,
        )
        .expect("rows");
        assert_eq!(pending.len(), total - 10);
        assert!(pending.iter().all(|r| r.next_attempt == Some(at(total))));

        // More ended rows than one purge write, on a third endpoint, with payload rows.
        let c_endpoint = Uuid::new_v4();
        let rows_c: Vec<DeliveryRow> = (0..PURGE_BATCH + 5)
            .map(|i| row(c_endpoint, at(i), DeliveryStatus::Succeeded))
            .collect();
        write_rows(&store, &rows_c);
        let mut c = Commit::new();
        for r in &rows_c {
            let key = delivery_key(r.endpoint, r.created, r.id);
            c.consumer_state(
                ConsumerId::WEBHOOKS,
                &payload_key(&key),
                Some(&b"{}".to_vec()),
            )
            .expect("payload");
        }
        store.write(c).expect("write");

        // Purge before row 5 + one batch: the ended rows before it, not the pending ones.
        let cut = 5 + PURGE_BATCH;
        assert_eq!(
            purge(&store, at(cut)).expect("purge"),
            10 + 1 + PURGE_BATCH + 5
        );
        assert_eq!(
            deliveries(&store, a, |_| true, 0, usize::MAX)
                .expect("rows")
                .len(),
            total - 10
        );
        assert!(deliveries(&store, b, |_| true, 0, 10)
            .expect("rows")
            .is_empty());
        assert!(deliveries(&store, c_endpoint, |_| true, 0, 10)
            .expect("rows")
            .is_empty());
        let (payloads, _) = store
            .inbox()
            .count_prefix(ConsumerId::WEBHOOKS, &[PAYLOAD], usize::MAX)
            .expect("count");
        assert_eq!(payloads, 0, "payload rows go with their deliveries");
    }
}
