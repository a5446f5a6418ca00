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
//! `UserShards`. The actor decides (pure rules), appends the record to the journal, waits for
//! the group-commit fsync, applies it in memory and answers; only then does the handler
//! reply. On start, [`run`] folds every journal tail into its snapshot before `/readyz`
//! turns green; on shutdown it snapshots every live actor and flushes.
#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod keys;
pub mod ops;
pub mod wire;

use std::ops::Deref;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kudos_actors::catalog::CatalogService;
use kudos_actors::clock::{wall_clock_now, Clock, ManualClock, SystemClock};
use kudos_actors::scheduler::Scheduler;
use kudos_actors::supervisor::{RootSupervisor, SupervisorStats};
use kudos_actors::user::UserState;
use kudos_actors::user_shards::{ShardsConfig, UserShards};
use kudos_snapshots::{recovery, Store};
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
    pub catalog: Arc<CatalogService>,
    pub scheduler: Arc<Scheduler>,
    pub users: UserShards,
    pub keys: KeyStore,
    pub clock: Arc<dyn Clock>,
    /// Serializes test-clock moves.
    pub clock_moves: tokio::sync::Mutex<()>,
    pub ops: OpsCounters,
    pub supervisor_stats: Arc<SupervisorStats>,
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

    pub fn is_ready(&self) -> bool {
        self.readiness() == Readiness::Ready
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
    let store = Store::open(&config.data_dir)
        .with_context(|| format!("cannot open sled database in {}", config.data_dir.display()))?;
    let clock = make_clock(&config, &store)?;
    let catalog = Arc::new(CatalogService::load(store.clone())?);
    let keys = KeyStore::load(store.clone())?;
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
    let users = UserShards::new(
        store.clone(),
        catalog.clone(),
        clock.clone(),
        supervisor.get_cell(),
        ShardsConfig {
            idle_after: Duration::from_secs(config.user_idle_secs),
            ..ShardsConfig::default()
        },
    );
    let scheduler = Arc::new(Scheduler::new(store.clone(), users.clone(), clock.clone()));
    let state = AppState(Arc::new(Inner {
        config,
        store,
        catalog,
        scheduler,
        users,
        keys,
        clock,
        clock_moves: tokio::sync::Mutex::new(()),
        ops: OpsCounters::default(),
        supervisor_stats,
        readiness: AtomicU8::new(0),
    }));
    tokio::spawn(recover(state.clone()));
    let passivator = state.users.spawn_passivator(shutdown.clone());
    let ready_state = state.clone();
    let scheduler_task = state.scheduler.spawn(
        SCHEDULER_TICK,
        move || ready_state.is_ready(),
        shutdown.clone(),
    );

    let router = http::router(state.clone());
    let token = shutdown.clone();
    let mut server = tokio::spawn(async move {
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

    tracing::info!("snapshotting live users");
    passivator.abort();
    let _ = passivator.await;
    scheduler_task.abort();
    let _ = scheduler_task.await;
    state.users.stop_all().await;
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

/// Folds every journal tail into its snapshot, then marks the server ready.
async fn recover(state: AppState) {
    let journal = state.store.journal();
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        recovery::fold_all_tails::<UserState>(&journal, "user")
    })
    .await;
    match result {
        Ok(Ok(report)) => {
            tracing::info!(
                users = report.streams,
                records = report.records,
                unrecoverable_users = report.failed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "recovery complete"
            );
            state.set_readiness(Readiness::Ready);
            match state.scheduler.resume_jobs() {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "background jobs resumed"),
                Err(e) => tracing::error!(error = %e, "cannot read background jobs"),
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "recovery failed; the server stays not ready");
            state.set_readiness(Readiness::Failed);
        }
        Err(e) => {
            tracing::error!(error = %e, "recovery task failed; the server stays not ready");
            state.set_readiness(Readiness::Failed);
        }
    }
}
