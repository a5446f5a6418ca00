//! The effect path: how what a committed record caused reaches the parts of Kudos that react
//! to it (leaderboards, the webhook dispatcher, the WebSocket hub), exactly once.
//!
//! Two halves (ARCHITECTURE.md, "Effects and their consumers"):
//! - **Inbox rows are the truth.** A user commit writes one row per registered consumer,
//!   holding the record's effects, in the same atomic batch as the record. A consumer applies
//!   a row and removes it in one batch together with the state the row changed, so a crash
//!   either keeps both the row and the old state (the row is applied again, to the old state)
//!   or neither.
//! - **The bus only wakes.** After the fsync, the actor publishes `(stream, seq, effects)` on
//!   an in-memory broadcast channel, so a consumer applies at once instead of polling. A
//!   consumer that was down, or lagged behind the channel, reads its rows instead.
//!
//! [`run_consumer`] joins the two: it subscribes first, then applies every row already
//! pending (catch-up), remembering the highest seq per stream it took from the rows, and
//! skips bus messages at or below it; after a lag it catches up again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kudos_snapshots::{Commit, ConsumerId, Store, StoreError, StreamId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::user::Effect;

/// Messages the bus holds for a slow consumer before it lags (and reads its rows instead).
const BUS_CAPACITY: usize = 8192;
/// Rows read and applied per consumer commit.
const BATCH: usize = 512;

/// The effects of one committed record.
#[derive(Debug)]
pub struct Published {
    pub stream: StreamId,
    pub seq: u64,
    pub effects: Vec<Effect>,
    /// The consumers the commit wrote an inbox row for. Only they apply it; anything else
    /// that sees it (the WebSocket push hub) only looks.
    pub consumers: Vec<ConsumerId>,
}

/// Publishes committed effects and names the consumers that get inbox rows (cheap to clone).
#[derive(Clone)]
pub struct EffectBus {
    tx: broadcast::Sender<Arc<Published>>,
    consumers: Arc<[ConsumerId]>,
    /// Whether any webhook endpoint is active: without one, records get no webhook rows.
    webhooks_live: Arc<std::sync::atomic::AtomicBool>,
    /// Whether an active endpoint wants `leaderboard.changed` or `rank_changed`: board
    /// writes give the webhook consumer their effects only then.
    webhooks_boards: Arc<std::sync::atomic::AtomicBool>,
    /// Live subscriptions to users' events (WebSocket `user:` topics): while there are any,
    /// every committed record with effects is published, consumers or not.
    live_topics: Arc<std::sync::atomic::AtomicUsize>,
}

impl EffectBus {
    /// A bus whose commits write inbox rows for `consumers`.
    pub fn new(consumers: Vec<ConsumerId>) -> Self {
        Self {
            tx: broadcast::Sender::new(BUS_CAPACITY),
            consumers: consumers.into(),
            webhooks_live: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            webhooks_boards: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            live_topics: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// The consumers each record with effects writes an inbox row for.
    pub fn consumers(&self) -> &[ConsumerId] {
        &self.consumers
    }

    /// The consumers that need a row for these effects: leaderboards only see records that
    /// ranked something, so ingest pays for their rows only when boards exist; webhooks
    /// only records with a delivered event, while an endpoint is active.
    pub fn consumers_for<'a>(
        &self,
        effects: impl IntoIterator<Item = &'a Effect> + Clone,
    ) -> Vec<ConsumerId> {
        let live = self
            .webhooks_live
            .load(std::sync::atomic::Ordering::Acquire);
        self.consumers
            .iter()
            .copied()
            .filter(|c| *c != ConsumerId::WEBHOOKS || live)
            .filter(|c| wants(*c, effects.clone()))
            .collect()
    }

    /// Says whether any webhook endpoint is active, and whether one wants board events
    /// (after every endpoint change, and at start).
    pub fn set_webhooks_live(&self, live: bool, boards: bool) {
        self.webhooks_live
            .store(live, std::sync::atomic::Ordering::Release);
        self.webhooks_boards
            .store(live && boards, std::sync::atomic::Ordering::Release);
    }

    /// The consumers of a leaderboard write's effects: not the leaderboards consumer that
    /// wrote them, and webhooks only while an active endpoint wants board events.
    pub fn board_consumers(&self) -> Arc<[ConsumerId]> {
        let boards = self
            .webhooks_boards
            .load(std::sync::atomic::Ordering::Acquire);
        self.consumers
            .iter()
            .copied()
            .filter(|c| *c != ConsumerId::LEADERBOARDS)
            .filter(|c| *c != ConsumerId::WEBHOOKS || boards)
            .collect()
    }

    /// Counts live `user:` subscriptions in (`delta` > 0) or out.
    pub fn add_live_topics(&self, delta: isize) {
        if delta >= 0 {
            self.live_topics
                .fetch_add(delta.unsigned_abs(), std::sync::atomic::Ordering::AcqRel);
        } else {
            let _ = self.live_topics.fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |n| Some(n.saturating_sub(delta.unsigned_abs())),
            );
        }
    }

    /// Whether records should be published even when no consumer gets a row for them.
    pub fn has_live_topics(&self) -> bool {
        self.live_topics.load(std::sync::atomic::Ordering::Acquire) > 0
    }

    /// Whether anything listens (so a producer can skip building the message).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Wakes the consumers with a committed record's effects (after its fsync).
    pub fn publish(&self, published: Published) {
        // No receiver (no consumer running yet) is fine: the rows are the truth.
        let _ = self.tx.send(Arc::new(published));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }
}

/// Whether `consumer` needs to see a record with these effects: leaderboards only records
/// that ranked something, webhooks only records with an event they deliver; every other
/// consumer everything.
pub fn wants<'a>(consumer: ConsumerId, effects: impl IntoIterator<Item = &'a Effect>) -> bool {
    let mut effects = effects.into_iter();
    match consumer {
        ConsumerId::LEADERBOARDS => effects.any(Effect::is_ranked),
        ConsumerId::WEBHOOKS => effects.any(|e| e.webhook_type().is_some()),
        _ => true,
    }
}

/// One record a consumer is given: entry `seq` of `stream` and its effects.
pub struct Pending<'a> {
    pub stream: &'a StreamId,
    pub seq: u64,
    pub effects: &'a [Effect],
}

/// Something that applies effects exactly once, keeping its own state in consumer rows.
pub trait EffectConsumer: Send + 'static {
    const ID: ConsumerId;
    /// How long to wait after a wake-up for more records, so that one write carries many
    /// (a consumer whose results are read from memory before they are written can linger).
    const LINGER: std::time::Duration = std::time::Duration::ZERO;
    /// Applies a batch of records and writes, as one batch, the state rows they changed and
    /// the removal of their inbox rows.
    fn process(
        &mut self,
        store: &Store,
        records: &[Pending<'_>],
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

/// Runs `consumer` until shutdown: catch-up from its rows, then the bus (see module docs).
/// Returns an error (and the supervisor restarts it, reloading its state) if storage fails.
pub async fn run_consumer<C: EffectConsumer>(
    store: Store,
    bus: EffectBus,
    mut consumer: C,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut rx = bus.subscribe();
    let mut taken: HashMap<StreamId, u64> = HashMap::new();
    catch_up(&store, &mut consumer, &mut taken)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = rx.recv() => m,
        };
        let mut batch = Vec::new();
        if !C::LINGER.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(C::LINGER) => {}
            }
        }
        match first {
            Ok(p) => batch.push(p),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    consumer = C::ID.0,
                    missed,
                    "effect consumer lagged; reading its inbox"
                );
                catch_up(&store, &mut consumer, &mut taken)
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(batch.len());
        for p in &batch {
            // Records this consumer has no row for (it does not want them, or they were
            // published for live subscribers only): applying them would not be exactly once.
            if !p.consumers.contains(&C::ID) || !wants(C::ID, &p.effects) {
                continue;
            }
            if let Some(&upto) = taken.get(&p.stream) {
                if p.seq <= upto {
                    continue;
                }
                taken.remove(&p.stream);
            }
            records.push(Pending {
                stream: &p.stream,
                seq: p.seq,
                effects: &p.effects,
            });
        }
        if !records.is_empty() {
            consumer
                .process(&store, &records)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
}

/// Applies every pending inbox row of `consumer`, in batches.
async fn catch_up<C: EffectConsumer>(
    store: &Store,
    consumer: &mut C,
    taken: &mut HashMap<StreamId, u64>,
) -> Result<usize, StoreError> {
    let inbox = store.inbox();
    let mut applied = 0;
    loop {
        let rows = inbox.pending::<Vec<Effect>>(C::ID, BATCH)?;
        if rows.is_empty() {
            return Ok(applied);
        }
        let records: Vec<Pending<'_>> = rows
            .iter()
            .map(|row| Pending {
                stream: &row.stream,
                seq: row.seq,
                effects: &row.payload,
            })
            .collect();
        consumer.process(store, &records).await?;
        for row in &rows {
            let upto = taken.entry(row.stream.clone()).or_default();
            *upto = (*upto).max(row.seq);
        }
        applied += rows.len();
    }
}

/// What the tally consumer counted for one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Effects of any kind.
    pub effects: u64,
    /// Metric total changes, and the sum of their deltas.
    pub metric_changes: u64,
    pub metric_delta: f64,
    pub achievements: u64,
    pub streaks_lost: u64,
    /// Points awards and the sum of their amounts.
    pub points_awards: u64,
    pub points_awarded: i64,
    pub boosts_started: u64,
    pub boosts_finished: u64,
    /// Leaderboard effects (counted under the board's streams: `{id}` and `{id}/runs`).
    pub runs_started: u64,
    pub runs_finished: u64,
    pub board_changes: u64,
    pub rank_changes: u64,
}

/// A consumer for tests and diagnostics (`KUDOS_TEST_EFFECT_TALLY=1`): counts every effect
/// per user, so a test can check that each acknowledged record's effects arrived exactly
/// once across crashes. It exercises the same path leaderboards and webhooks use.
pub struct EffectTally {
    view: Arc<Mutex<HashMap<String, Tally>>>,
}

impl EffectTally {
    /// Loads the durable tally; `view` is replaced with it and then kept current.
    pub fn load(
        store: &Store,
        view: Arc<Mutex<HashMap<String, Tally>>>,
    ) -> Result<Self, StoreError> {
        let rows: Vec<(Vec<u8>, Tally)> = store.inbox().state(Self::ID)?;
        let loaded = rows
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect();
        *view.lock().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(Self { view })
    }
}

impl EffectConsumer for EffectTally {
    const ID: ConsumerId = ConsumerId::TEST_TALLY;

    async fn process(&mut self, store: &Store, records: &[Pending<'_>]) -> Result<(), StoreError> {
        let mut commit = Commit::new();
        for r in records {
            self.apply(r.stream, r.effects, &mut commit)?;
            commit.inbox_done(Self::ID, r.stream, r.seq);
        }
        store.write(commit)
    }
}

impl EffectTally {
    fn apply(
        &mut self,
        stream: &StreamId,
        effects: &[Effect],
        commit: &mut Commit,
    ) -> Result<(), StoreError> {
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let tally = view.entry(stream.id.clone()).or_default();
        for e in effects {
            tally.effects += 1;
            match e {
                Effect::MetricTotalChanged {
                    previous, total, ..
                } => {
                    tally.metric_changes += 1;
                    tally.metric_delta += total - previous;
                }
                Effect::AchievementCompleted { .. } => tally.achievements += 1,
                Effect::Streak {
                    event: crate::rules::streak::StreakEvent::Lost { .. },
                    ..
                } => tally.streaks_lost += 1,
                Effect::PointsAwarded { award, .. } => {
                    tally.points_awards += 1;
                    tally.points_awarded += award.awarded;
                }
                Effect::BoostStarted { .. } => tally.boosts_started += 1,
                Effect::BoostFinished { .. } => tally.boosts_finished += 1,
                Effect::LeaderboardStarted { .. } => tally.runs_started += 1,
                Effect::LeaderboardFinished { .. } => tally.runs_finished += 1,
                Effect::LeaderboardChanged { .. } => tally.board_changes += 1,
                Effect::LeaderboardRankChanged { .. } => tally.rank_changes += 1,
                _ => {}
            }
        }
        commit.consumer_state(Self::ID, stream.id.as_bytes(), Some(&*tally))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kudos_snapshots::{Scope, StreamKind};

    fn boost(at: chrono::DateTime<chrono::Utc>) -> Effect {
        Effect::BoostStarted {
            boost_id: uuid::Uuid::new_v4(),
            system_id: uuid::Uuid::new_v4(),
            user_id: None,
            at,
        }
    }

    /// A record published for live subscribers only (no inbox row for the consumer) is not
    /// applied by it; one with its row is, once.
    #[tokio::test]
    async fn a_consumer_applies_only_records_it_has_a_row_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Default::default()).expect("open");
        let bus = EffectBus::new(vec![ConsumerId::TEST_TALLY]);
        let view = Arc::new(Mutex::new(HashMap::new()));
        let tally = EffectTally::load(&store, view.clone()).expect("tally");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_consumer(
            store.clone(),
            bus.clone(),
            tally,
            shutdown.clone(),
        ));
        let at = chrono::DateTime::UNIX_EPOCH;
        let ghost = StreamId::new(StreamKind::User, Scope::DEFAULT, "ghost");
        let real = StreamId::new(StreamKind::User, Scope::DEFAULT, "real");
        // Wait until the consumer listens.
        while bus.tx.receiver_count() == 0 {
            tokio::task::yield_now().await;
        }
        bus.publish(Published {
            stream: ghost.clone(),
            seq: 1,
            effects: vec![boost(at)],
            consumers: Vec::new(),
        });
        let effects = vec![boost(at)];
        let mut commit = Commit::new();
        commit
            .inbox(&[ConsumerId::TEST_TALLY], &real, 1, &effects)
            .expect("row");
        store.write(commit).expect("write");
        bus.publish(Published {
            stream: real.clone(),
            seq: 1,
            effects,
            consumers: vec![ConsumerId::TEST_TALLY],
        });
        // Records are applied in order: once "real" is in, "ghost" was seen and skipped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if view.lock().expect("view").contains_key("real") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the real record was not applied"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let v = view.lock().expect("view").clone();
        assert_eq!(v["real"].boosts_started, 1);
        assert!(
            !v.contains_key("ghost"),
            "applied a record it has no row for"
        );
        shutdown.cancel();
        let _ = task.await;
    }
}
