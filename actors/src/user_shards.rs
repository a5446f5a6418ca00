//! Routing from a user id to that user's [`UserActor`]: lazily spawned on the first message,
//! passivated (snapshotted and stopped) when idle, so memory follows the active set of users
//! rather than all users ever seen (SPEC §11.5.2).
//!
//! This is the seam where partition ownership goes when Kudos spans several nodes
//! (ARCHITECTURE.md, "Beyond one machine").

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kudos_snapshots::{Scope, Store, StreamId};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorId, ActorRef, RpcReplyPort};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::catalog::CatalogService;
use crate::clock::Clock;
use crate::effects::EffectBus;
use crate::user::{
    Ask, Asked, Command, Outcome, UserActor, UserActorArgs, UserDeps, UserError, UserMsg, UserQuery,
};

const SHARDS: usize = 64;
/// How long a call keeps retrying when it reaches actors that have just been passivated (each
/// retry first waits for that actor to stop, so this only bounds pathological churn).
const ROUTE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a caller waits for a passivated actor to finish stopping before it retries.
const RETIRE_WAIT: Duration = Duration::from_secs(5);

/// A registry entry: an actor being started (others wait for it) or a running one.
enum Slot {
    Starting(Arc<Notify>),
    Live(ActorRef<UserMsg>),
}

type Shard = Mutex<HashMap<String, Slot>>;

/// The live user actors, sharded so that lookups on different users rarely contend. A user
/// id maps to at most one actor: a start is announced in the registry before the actor is
/// spawned, and an actor leaves it only once it has stopped (in its `post_stop`).
pub struct Registry {
    shards: Vec<Shard>,
    hasher: std::collections::hash_map::RandomState,
}

impl Registry {
    fn shard(&self, user_id: &str) -> &Shard {
        // The modulo keeps the value below SHARDS, so the cast cannot truncate.
        &self.shards[(self.hasher.hash_one(user_id) % SHARDS as u64) as usize]
    }

    fn lock(&self, user_id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.shard(user_id)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, user_id: &str) -> Option<ActorRef<UserMsg>> {
        match self.lock(user_id).get(user_id) {
            Some(Slot::Live(a)) => Some(a.clone()),
            _ => None,
        }
    }

    /// Removes the entry for `user_id` if it still points at actor `id`.
    pub fn remove_if(&self, user_id: &str, id: ActorId) {
        let mut shard = self.lock(user_id);
        if matches!(shard.get(user_id), Some(Slot::Live(a)) if a.get_id() == id) {
            shard.remove(user_id);
        }
    }

    fn all(&self) -> Vec<ActorRef<UserMsg>> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .filter_map(|slot| match slot {
                        Slot::Live(a) => Some(a.clone()),
                        Slot::Starting(_) => None,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn live_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Clears a `Starting` slot if the start is abandoned (the spawn failed or the caller's
/// future was dropped), waking whoever waits for it.
struct StartGuard<'a> {
    registry: &'a Registry,
    user_id: &'a str,
    armed: bool,
}

impl StartGuard<'_> {
    fn finish(mut self, actor: ActorRef<UserMsg>) {
        self.armed = false;
        let previous = self
            .registry
            .lock(self.user_id)
            .insert(self.user_id.to_string(), Slot::Live(actor));
        if let Some(Slot::Starting(n)) = previous {
            n.notify_waiters();
        }
    }
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut shard = self.registry.lock(self.user_id);
        if let Some(Slot::Starting(n)) = shard.get(self.user_id) {
            n.notify_waiters();
            shard.remove(self.user_id);
        }
    }
}

/// Configuration of [`UserShards`].
#[derive(Clone)]
pub struct ShardsConfig {
    /// Users idle this long are snapshotted and stopped.
    pub idle_after: Duration,
    /// How often idle users are looked for.
    pub sweep_every: Duration,
    /// How long idempotency keys are remembered (`None`: forever).
    pub idempotency_window: Option<Duration>,
}

impl Default for ShardsConfig {
    fn default() -> Self {
        Self {
            idle_after: Duration::from_secs(300),
            sweep_every: Duration::from_secs(30),
            idempotency_window: None,
        }
    }
}

/// Handle used by the HTTP layer to talk to users.
#[derive(Clone)]
pub struct UserShards {
    registry: Arc<Registry>,
    store: Store,
    scope: Scope,
    catalog: Arc<CatalogService>,
    clock: Arc<dyn Clock>,
    supervisor: ActorCell,
    bus: EffectBus,
    config: ShardsConfig,
}

impl UserShards {
    pub fn new(
        store: Store,
        scope: Scope,
        catalog: Arc<CatalogService>,
        clock: Arc<dyn Clock>,
        supervisor: ActorCell,
        bus: EffectBus,
        config: ShardsConfig,
    ) -> Self {
        Self {
            registry: Arc::new(Registry {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: Default::default(),
            }),
            store,
            scope,
            catalog,
            clock,
            supervisor,
            bus,
            config,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The scope these users live in.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The stream of `user_id` in this scope.
    pub fn stream(&self, user_id: &str) -> StreamId {
        StreamId::user(self.scope, user_id)
    }

    pub fn catalog(&self) -> &Arc<CatalogService> {
        &self.catalog
    }

    pub fn bus(&self) -> &EffectBus {
        &self.bus
    }

    pub fn config(&self) -> &ShardsConfig {
        &self.config
    }

    /// Whether the user has ever been written (live actor, snapshot or journal).
    pub fn known(&self, user_id: &str) -> Result<bool, UserError> {
        if self.registry.get(user_id).is_some() {
            return Ok(true);
        }
        self.store
            .journal()
            .exists(&self.stream(user_id))
            .map_err(|e| UserError::from_store(&e))
    }

    /// The user's actor: the running one, the one being started, or a new one.
    async fn actor(&self, user_id: &str) -> Result<ActorRef<UserMsg>, UserError> {
        let guard = loop {
            let wait = {
                let mut shard = self.registry.lock(user_id);
                match shard.get(user_id) {
                    Some(Slot::Live(a)) => return Ok(a.clone()),
                    Some(Slot::Starting(n)) => n.clone().notified_owned(),
                    None => {
                        shard.insert(user_id.to_string(), Slot::Starting(Arc::new(Notify::new())));
                        break StartGuard {
                            registry: &self.registry,
                            user_id,
                            armed: true,
                        };
                    }
                }
            };
            wait.await;
        };
        let args = UserActorArgs {
            user_id: user_id.to_string(),
            deps: UserDeps {
                store: self.store.clone(),
                scope: self.scope,
                catalog: self.catalog.clone(),
                clock: self.clock.clone(),
                registry: Arc::downgrade(&self.registry),
                bus: self.bus.clone(),
                idempotency_window: self.config.idempotency_window,
            },
        };
        let (actor, _handle) = Actor::spawn_linked(None, UserActor, args, self.supervisor.clone())
            .await
            .map_err(|e| UserError::Storage(format!("could not start user actor: {e}")))?;
        guard.finish(actor.clone());
        Ok(actor)
    }

    /// Waits until `actor` (passivated or failed) has stopped, and takes it out of the
    /// registry. An actor that does not stop in time stays registered (so no second actor
    /// can start beside it) and the caller gives up.
    async fn retire(&self, user_id: &str, actor: &ActorRef<UserMsg>) -> Result<(), UserError> {
        if actor.get_cell().wait(Some(RETIRE_WAIT)).await.is_err() {
            tracing::warn!(user = %user_id, "a passivated user actor is slow to stop");
            return Err(UserError::Unavailable);
        }
        self.registry.remove_if(user_id, actor.get_id());
        Ok(())
    }

    /// Sends a state-changing message and waits for its answer. Retries only when the message
    /// provably was not processed (actor gone before delivery, or passivated).
    pub async fn call<R: Send + 'static>(
        &self,
        user_id: &str,
        build: impl Fn(RpcReplyPort<Result<R, UserError>>) -> UserMsg,
    ) -> Result<R, UserError> {
        let deadline = tokio::time::Instant::now() + ROUTE_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            let actor = self.actor(user_id).await?;
            match actor.call(&build, None).await {
                Err(_) => self.retire(user_id, &actor).await?,
                Ok(CallResult::Success(Err(UserError::Passivated))) => {
                    self.retire(user_id, &actor).await?
                }
                Ok(CallResult::Success(result)) => return result,
                Ok(CallResult::SenderError) | Ok(CallResult::Timeout) => {
                    // The actor stopped while handling the message: it may have been
                    // committed, so it is not retried here.
                    self.retire(user_id, &actor).await?;
                    return Err(UserError::Unavailable);
                }
            }
        }
        Err(UserError::Unavailable)
    }

    /// Runs `command` in the user's actor, which decides with the newest catalog (so an
    /// admin change is seen by every command processed after it, which backfills rely on).
    pub async fn execute(&self, user_id: &str, command: Command) -> Result<Outcome, UserError> {
        self.call(user_id, |reply| UserMsg::Execute {
            command: command.clone(),
            reply,
        })
        .await
    }

    /// Runs a typed command and returns its typed answer.
    pub async fn ask<A: Ask>(&self, user_id: &str, ask: A) -> Result<A::Reply, UserError> {
        let outcome = self.execute(user_id, ask.into_command()).await?;
        A::reply(outcome).ok_or_else(|| {
            tracing::error!(user = %user_id, command = std::any::type_name::<A>(), "bug: a command was answered with another command's outcome");
            UserError::Unavailable
        })
    }

    /// Asks the user's actor `query`. `Ok(None)` when the user does not exist.
    pub async fn query<Q: UserQuery>(
        &self,
        user_id: &str,
        query: Q,
    ) -> Result<Option<Q::Answer>, UserError> {
        if !self.known(user_id)? {
            return Ok(None);
        }
        let query = Arc::new(query);
        let deadline = tokio::time::Instant::now() + ROUTE_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            let actor = self.actor(user_id).await?;
            let (reply, rx) = tokio::sync::oneshot::channel();
            let msg = UserMsg::Query(Box::new(Asked {
                query: query.clone(),
                reply,
            }));
            if actor.send_message(msg).is_err() {
                self.retire(user_id, &actor).await?;
                continue;
            }
            match rx.await {
                Ok(answer) => return Ok(answer),
                // Dropped unanswered: passivated or stopped. Reads are safe to retry.
                Err(_) => self.retire(user_id, &actor).await?,
            }
        }
        Err(UserError::Unavailable)
    }

    /// Stops every user actor (each snapshots in `post_stop`) and waits for them, so that
    /// nothing holds the store afterwards.
    pub async fn stop_all(&self) {
        // Actors that do not stop within the timeout keep their tails in the journal.
        self.supervisor
            .stop_children_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
            .await;
        for shard in &self.registry.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// Asks every live user to passivate if idle, every `sweep_every`, until `shutdown`.
    pub async fn passivate_idle(&self, shutdown: CancellationToken) -> Result<(), String> {
        let mut tick = tokio::time::interval(self.config.sweep_every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    for actor in self.registry.all() {
                        let _ = actor.send_message(UserMsg::PassivateIfIdle(self.config.idle_after));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::rules::profile::UserWrite;
    use crate::user::{EventOutcome, NewEvent, TotalQuery, UserState};
    use chrono::TimeZone;

    /// Shards over a fresh store with metric "m", whose sweeper passivates every actor it
    /// finds (idle after zero) every `sweep_every`.
    async fn passivating_shards(
        dir: &tempfile::TempDir,
        sweep_every: Duration,
    ) -> (kudos_snapshots::Store, UserShards, uuid::Uuid) {
        let store = kudos_snapshots::Store::open(dir.path(), &Default::default()).expect("open");
        let start = chrono::Utc
            .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(start));
        let (catalog, metric) =
            crate::testing::catalog_with_metric(&store, "m", start, false).await;
        let shards = UserShards::new(
            store.clone(),
            Scope::DEFAULT,
            catalog,
            clock,
            crate::testing::supervisor().await,
            EffectBus::new(Vec::new()),
            ShardsConfig {
                idle_after: Duration::ZERO,
                sweep_every,
                ..ShardsConfig::default()
            },
        );
        (store, shards, metric)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_users_are_passivated_and_come_back_with_their_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, shards, metric) = passivating_shards(&dir, Duration::from_millis(10)).await;
        let event = NewEvent {
            metric_id: metric,
            value: 2.0,
            user: UserWrite::default(),
            attributes: Default::default(),
            idempotency_key: Some("k".into()),
        };
        let send = || shards.execute("u1", Command::RecordEvent(event.clone()));
        assert!(matches!(
            send().await,
            Ok(Outcome::Event(EventOutcome::Recorded { .. }))
        ));
        assert_eq!(shards.registry().live_count(), 1);

        let token = CancellationToken::new();
        let sweeping = shards.clone();
        let t = token.clone();
        let sweeper = tokio::spawn(async move { sweeping.passivate_idle(t).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while shards.registry().live_count() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "user was not passivated"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        token.cancel();
        let _ = sweeper.await;
        // The snapshot written on passivation holds the total and the idempotency key.
        let stream = shards.stream("u1");
        let folded = store.journal().snapshot_seq(&stream).expect("seq");
        assert!(
            store
                .journal()
                .tail::<crate::user::Journaled>(&stream, folded)
                .expect("tail")
                .is_empty(),
            "nothing newer than the snapshot"
        );
        let replay = send().await.expect("replay");
        assert!(
            matches!(replay, Outcome::Event(EventOutcome::Replayed { total, .. }) if total == 2.0),
            "{replay:?}"
        );
        let total = shards
            .query("u1", TotalQuery { metric_id: metric })
            .await
            .expect("read");
        assert_eq!(total.map(|t| t.0), Some(2.0));
        assert_eq!(
            shards
                .query(
                    "nobody",
                    TotalQuery {
                        metric_id: uuid::Uuid::nil()
                    }
                )
                .await
                .expect("read")
                .map(|t| t.0),
            None
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_requests_and_passivation_races_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Every sweep passivates every actor: requests keep meeting actors that are
        // snapshotting and stopping, and new ones starting from their snapshots.
        let (store, shards, metric) = passivating_shards(&dir, Duration::from_millis(1)).await;
        let token = CancellationToken::new();
        let sweeping = shards.clone();
        let t = token.clone();
        let sweeper = tokio::spawn(async move { sweeping.passivate_idle(t).await });
        const TASKS: usize = 6;
        const EACH: usize = 60;
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let shards = shards.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let event = NewEvent {
                        metric_id: metric,
                        value: 1.0,
                        user: UserWrite::default(),
                        attributes: Default::default(),
                        idempotency_key: Some(format!("t{task}-{i}")),
                    };
                    let outcome = shards
                        .execute("hot", Command::RecordEvent(event))
                        .await
                        .expect("every event is accepted");
                    assert!(matches!(
                        outcome,
                        Outcome::Event(EventOutcome::Recorded { .. })
                    ));
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        token.cancel();
        let _ = sweeper.await;
        let expected = (TASKS * EACH) as f64;
        let live = shards
            .query("hot", TotalQuery { metric_id: metric })
            .await
            .expect("read");
        assert_eq!(live.map(|t| t.0), Some(expected));
        // What is on disk (snapshot + tail) holds every acknowledged event exactly once.
        let loaded =
            kudos_snapshots::recovery::load::<UserState>(&store.journal(), &shards.stream("hot"))
                .expect("load");
        assert_eq!(loaded.state.total(metric), expected);
        assert_eq!(
            loaded.seq,
            (TASKS * EACH) as u64,
            "one record per event, no gaps"
        );
    }
}
