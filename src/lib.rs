//! # Kudos: a self-hosted, Trophy-compatible gamification engine
//!
//! ## Layout
//! - [`config`]: every `KUDOS_*` setting (SPEC §11.1), as env vars and flags.
//! - [`http`]: axum routers, one file per resource (`app/` under `/v1`, `admin/` under
//!   `/admin/v1`), auth and error handling. Handlers are thin: parse, route, shape.
//! - [`wire`]: the Trophy JSON contract (request parsing, response shapes).
//! - [`keys`]: API keys, stored hashed.
//! - `kudos-actors` (crate): catalog, pure rules, user actors, clock.
//! - `kudos-snapshots` (crate): sled journal with group commit, snapshots, recovery.
//!
//! ## Data flow
//! A request passes auth, is parsed by `wire`, and is sent to the user's actor through
//! `UserShards`. The actor decides (pure rules), applies, commits the record and every row it
//! implies as one atomic batch, waits for the group-commit fsync, and only then answers and
//! publishes the record's effects to their consumers. On start nothing is replayed: actors
//! load snapshot + journal tail when first used. On shutdown background loops stop, every
//! live actor snapshots, and the store flushes.
#![forbid(unsafe_code)]

pub mod config;
pub mod environments;
pub mod http;
pub mod keys;
pub mod ops;
pub mod push;
pub mod rate_limit;
pub mod webhooks;
pub mod wire;

use std::ops::Deref;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kudos_actors::clock::{wall_clock_now, Clock, ManualClock, SystemClock};
use kudos_actors::effects::{run_consumer, EffectBus, EffectTally, Tally};
use kudos_actors::scheduler::Scheduler;
use kudos_actors::space::{SpaceDeps, Spaces, SpacesLeaderboards};
use kudos_actors::supervisor::{RootSupervisor, SupervisorStats};
use kudos_actors::tasks::Background;
use kudos_actors::user_shards::ShardsConfig;
use kudos_snapshots::{ConsumerId, Scope, Store, StoreOptions};
use ractor::Actor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::Config;
use http::admin::test_clock::CLOCK_META_KEY;
use keys::KeyStore;
use ops::OpsCounters;

/// How long in-flight requests get to finish after a shutdown signal. SPEC §11.1.3 asks for
/// exit within 10 s: 5 s here, at most 3 s for user actors to snapshot and stop, then the
/// final flush.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the scheduler looks for due work (streak period ends are evaluated within this
/// long after local midnight; reads apply pending evaluations themselves, SPEC §5.5.1).
const SCHEDULER_TICK: Duration = Duration::from_secs(10);

/// How often expired idempotency keys are pruned (when a window is configured).
const IDEMPOTENCY_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long background loops get to stop at shutdown.
const BACKGROUND_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Start-up progress, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Recovering,
    Ready,
    /// Recovery hit a storage error; the server answers 503 until restarted.
    Failed,
}

/// Everything a handler can reach.
pub struct Inner {
    pub config: Config,
    pub store: Store,
    /// Every scope's catalog, users and boards (handlers reach theirs through
    /// [`http::scope::Scoped`]).
    pub spaces: Spaces,
    /// Due work and jobs of every scope.
    pub scheduler: Arc<Scheduler>,
    pub keys: KeyStore,
    /// Production and the environments operators made (`kudos environments`).
    pub environments: environments::Environments,
    pub clock: Arc<dyn Clock>,
    /// Serializes test-clock moves.
    pub clock_moves: tokio::sync::Mutex<()>,
    pub ops: OpsCounters,
    pub supervisor_stats: Arc<SupervisorStats>,
    pub background: Background,
    /// What the effect tally counted, when `KUDOS_TEST_EFFECT_TALLY=1`.
    pub effect_tally: Option<Arc<std::sync::Mutex<std::collections::HashMap<String, Tally>>>>,
    /// Sends webhook attempts (signed, SSRF-guarded).
    pub webhook_sender: webhooks::send::Sender,
    /// Wakes the webhook sender (deliveries queued or resent).
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// Held while webhook throttling windows are read and written.
    pub webhook_throttle: Arc<tokio::sync::Mutex<()>>,
    /// Live WebSocket updates.
    pub push: push::Hub,
    /// Open WebSocket connections per API key prefix.
    pub ws_connections: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    /// Webhook attempt counts for `/metrics`.
    pub webhook_stats: Arc<webhooks::dispatch::Stats>,
    /// Request rate limits per API key.
    pub limiter: rate_limit::Limiter,
    readiness: AtomicU8,
}

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn readiness(&self) -> Readiness {
        match self.readiness.load(Ordering::Acquire) {
            1 => Readiness::Ready,
            2 => Readiness::Failed,
            _ => Readiness::Recovering,
        }
    }

    /// Ready: start-up finished and storage can make writes durable.
    pub fn is_ready(&self) -> bool {
        self.readiness() == Readiness::Ready && self.store.healthy()
    }

    fn set_readiness(&self, r: Readiness) {
        let v = match r {
            Readiness::Recovering => 0,
            Readiness::Ready => 1,
            Readiness::Failed => 2,
        };
        self.readiness.store(v, Ordering::Release);
    }
}

fn make_clock(config: &Config, store: &Store) -> anyhow::Result<Arc<dyn Clock>> {
    if !config.test_clock {
        return Ok(Arc::new(SystemClock));
    }
    let stored: Option<String> = store.meta_get(CLOCK_META_KEY)?;
    let start = match stored {
        Some(raw) => chrono::DateTime::parse_from_rfc3339(&raw)
            .with_context(|| format!("stored test clock value '{raw}' is not a date-time"))?
            .with_timezone(&chrono::Utc),
        None => wall_clock_now(),
    };
    tracing::warn!(now = %wire::ts(start), "test clock enabled: domain time moves only through /admin/v1/test-clock");
    Ok(Arc::new(ManualClock::new(start)))
}

/// Runs the server on `listener` until `shutdown` is cancelled.
///
/// The caller binds (tests bind port 0) and owns the shutdown signal.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let options = StoreOptions {
        cache_bytes: config.cache_mb.saturating_mul(1024 * 1024),
    };
    let store = Store::open(&config.data_dir, &options)
        .with_context(|| format!("cannot open sled database in {}", config.data_dir.display()))?;
    let clock = make_clock(&config, &store)?;
    let environments = environments::Environments::load(store.clone())?;
    let numbers: Vec<u16> = environments.all().iter().map(|e| e.number).collect();
    let keys = KeyStore::load(store.clone(), &numbers)?;
    if let Some(generated) = keys
        .bootstrap(config.api_key.as_deref(), clock.now())
        .await?
    {
        println!("Generated admin API key (shown once; store it now): {generated}");
    }
    let supervisor_stats = Arc::new(SupervisorStats::default());
    let (supervisor, supervisor_handle) =
        Actor::spawn(None, RootSupervisor, supervisor_stats.clone())
            .await
            .context("cannot start the root supervisor")?;
    let mut consumers = vec![ConsumerId::LEADERBOARDS, ConsumerId::WEBHOOKS];
    if config.test_effect_tally {
        consumers.push(ConsumerId::TEST_TALLY);
    }
    let bus = EffectBus::new(consumers);
    let background = Background::new(shutdown.clone());
    let spaces = Spaces::new(SpaceDeps {
        store: store.clone(),
        clock: clock.clone(),
        supervisor: supervisor.get_cell(),
        bus: bus.clone(),
        shards: ShardsConfig {
            idle_after: Duration::from_secs(config.user_idle_secs),
            idempotency_window: config.idempotency_window.0,
            ..ShardsConfig::default()
        },
        background: background.clone(),
    });
    // The default scope is always open, and so is every tenant's: their queued deliveries,
    // held webhook windows and due work go on after a restart without waiting for a request.
    for env in &numbers {
        let scope = Scope {
            environment: *env,
            tenant: 0,
        };
        let environment = spaces.get(scope)?;
        for tenant in environment.catalog.get().tenants() {
            spaces.get(Scope {
                environment: *env,
                tenant: tenant.number,
            })?;
        }
    }
    let scheduler = Arc::new(Scheduler::new(spaces.clone(), background.clone()));
    let webhook_sender = webhooks::send::Sender::new(
        Duration::from_secs(config.webhook_timeout_secs),
        config.webhook_allow_private,
    )
    .context("cannot build the webhook HTTP client")?;
    let effect_tally = config
        .test_effect_tally
        .then(|| Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())));
    let state = AppState(Arc::new(Inner {
        config,
        store,
        spaces,
        scheduler,
        keys,
        environments,
        clock,
        clock_moves: tokio::sync::Mutex::new(()),
        ops: OpsCounters::default(),
        supervisor_stats,
        background,
        effect_tally,
        webhook_sender,
        webhook_wake: Arc::new(tokio::sync::Notify::new()),
        webhook_throttle: Default::default(),
        push: Default::default(),
        ws_connections: Default::default(),
        webhook_stats: Arc::default(),
        limiter: Default::default(),
        readiness: AtomicU8::new(0),
    }));
    state
        .spaces
        .on_open(|spaces, _| webhooks::dispatch::refresh_live(spaces));
    start_background(&state, bus);
    start(&state);

    let router = http::router(state.clone());
    let token = shutdown.clone();
    let mut server = tokio::spawn(async move {
        // No Nagle delay: a response, or a WebSocket message, goes out as it is written.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
    });
    tokio::select! {
        result = &mut server => result.context("server task failed")??,
        _ = shutdown.cancelled() => {
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(result) => result.context("server task failed")??,
                Err(_) => {
                    tracing::warn!("in-flight requests did not finish in time; closing them");
                    server.abort();
                }
            }
        }
    }

    state.background.stop(BACKGROUND_STOP_TIMEOUT).await;
    tracing::info!("snapshotting live users");
    state.spaces.stop_all().await;
    supervisor.stop(None);
    let _ = supervisor_handle.await;
    let store = state.store.clone();
    // Drop every other handle on the database before closing it, so the same data dir can be
    // reopened at once (tests restart servers in one process).
    drop(state);
    store.close().await?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// The supervised background loops: passivation, the scheduler tick, idempotency pruning
/// and effect consumers.
fn start_background(state: &AppState, bus: EffectBus) {
    let bg = &state.background;
    let token = bg.shutdown().clone();
    push::start(state, token.clone());
    let (s, t) = (state.clone(), token.clone());
    bg.supervise("scheduler", move || {
        let (s, t) = (s.clone(), t.clone());
        async move {
            let ready = s.clone();
            s.scheduler
                .tick_loop(SCHEDULER_TICK, move || ready.is_ready(), t)
                .await
        }
    });
    if let Some(window) = state.config.idempotency_window.0 {
        let (s, t) = (state.clone(), token.clone());
        bg.supervise("idempotency-pruner", move || {
            let (s, t) = (s.clone(), t.clone());
            async move { prune_idempotency(&s, window, t).await }
        });
    }
    {
        let (store, spaces, t) = (state.store.clone(), state.spaces.clone(), token.clone());
        let bus = bus.clone();
        bg.supervise("leaderboards", move || {
            let (store, bus, spaces, t) = (store.clone(), bus.clone(), spaces.clone(), t.clone());
            async move {
                // Start from the durable rows, then apply what the inbox still holds.
                let consumer = SpacesLeaderboards::start(spaces).await;
                run_consumer(store, bus, consumer, t).await
            }
        });
    }
    {
        let wake = state.webhook_wake.clone();
        let (store, t) = (state.store.clone(), token.clone());
        let consumer = webhooks::dispatch::WebhookConsumer::of(state);
        let (store2, bus2, consumer2, t2) =
            (store.clone(), bus.clone(), consumer.clone(), t.clone());
        bg.supervise("webhook-outbox", move || {
            run_consumer(store2.clone(), bus2.clone(), consumer2.clone(), t2.clone())
        });
        bg.supervise("webhook-trailing", move || {
            webhooks::throttled::run_trailing(consumer.clone(), store.clone(), t.clone())
        });
        let deps = webhooks::dispatch::SenderDeps {
            store: state.store.clone(),
            stats: state.webhook_stats.clone(),
            spaces: state.spaces.clone(),
            clock: state.clock.clone(),
            sender: state.webhook_sender.clone(),
        };
        let t = token.clone();
        bg.supervise("webhook-sender", move || {
            webhooks::dispatch::run_sender(deps.clone(), wake.clone(), t.clone())
        });
    }
    {
        let (s, t) = (state.clone(), token.clone());
        bg.supervise("webhook-log-purge", move || {
            let (s, t) = (s.clone(), t.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(600));
                loop {
                    tokio::select! {
                        _ = t.cancelled() => return Ok(()),
                        _ = tick.tick() => {}
                    }
                    let days = i64::try_from(s.config.delivery_log_days).unwrap_or(7);
                    let before = s.clock.now() - chrono::Duration::days(days);
                    let n =
                        webhooks::dispatch::purge(&s.store, before).map_err(|e| e.to_string())?;
                    if n > 0 {
                        tracing::info!(purged = n, "webhook delivery log purged");
                    }
                }
            }
        });
    }
    if let Some(view) = &state.effect_tally {
        let (store, view, t) = (state.store.clone(), view.clone(), token.clone());
        bg.supervise("effect-tally", move || {
            let (store, bus, view, t) = (store.clone(), bus.clone(), view.clone(), t.clone());
            async move {
                let tally = EffectTally::load(&store, view).map_err(|e| e.to_string())?;
                run_consumer(store, bus, tally, t).await
            }
        });
    }
}

/// Removes idempotency keys older than `window`, in small batches, every minute.
async fn prune_idempotency(
    state: &AppState,
    window: Duration,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut tick = tokio::time::interval(IDEMPOTENCY_PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let before = state
            .clock
            .now()
            .timestamp_millis()
            .saturating_sub(window_ms);
        loop {
            let commit = state
                .store
                .indexes()
                .expired_idempotency(before, 1024)
                .map_err(|e| e.to_string())?;
            if commit.is_empty() {
                break;
            }
            // Through the committer: the "not used again" check then runs in the same
            // thread as the commits that could re-use a key.
            state
                .store
                .commit(commit)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
}

/// Start-up after the store is open: nothing is replayed (actors load snapshot + tail on
/// demand, and a tail is at most one snapshot interval long), so the server is ready as
/// soon as the jobs recorded before a restart are resumed.
fn start(state: &AppState) {
    let started = Instant::now();
    match state.scheduler.resume_jobs() {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "background jobs resumed"),
        Err(e) => {
            tracing::error!(error = %e, "cannot read background jobs; the server stays not ready");
            state.set_readiness(Readiness::Failed);
            return;
        }
    }
    state.set_readiness(Readiness::Ready);
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "ready");
}
