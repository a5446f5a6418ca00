//! Spaces: everything one scope (environment + tenant, SPEC §9.1–9.2) owns in memory.
//!
//! A [`Space`] holds a scope's catalog, its user actors, its leaderboards and its boost
//! clock. Nothing is shared between two spaces but the store (whose keys carry the scope),
//! the clock, the effect bus (whose records name their stream, and so their scope) and the
//! supervisor. A space is opened when it is first needed (a request carrying its tenant, a
//! due entry or an inbox row of its streams) and stays open; opening loads its catalog.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kudos_snapshots::{ConsumerId, Scope, Store, StoreError};
use ractor::ActorCell;

use crate::boosts::BoostClock;
use crate::catalog::CatalogService;
use crate::clock::Clock;
use crate::effects::{EffectBus, EffectConsumer, Pending};
use crate::leaderboard::actor::BoardDeps;
use crate::leaderboard::boards::{Boards, LeaderboardsConsumer};
use crate::tasks::Background;
use crate::user_shards::{ShardsConfig, UserShards};

/// One scope's catalog, users, boards and boost clock.
pub struct Space {
    pub scope: Scope,
    pub catalog: Arc<CatalogService>,
    pub users: UserShards,
    pub boards: Boards,
    pub boosts: BoostClock,
}

/// Called with every space as it opens (the webhook flags, the push hub).
/// Hooks are given the registry rather than holding it (a hook holding it would keep
/// every space, and the store, alive after shutdown).
type OnOpen = Box<dyn Fn(&Spaces, &Arc<Space>) + Send + Sync>;

/// What every space is built from.
pub struct SpaceDeps {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub supervisor: ActorCell,
    pub bus: EffectBus,
    pub shards: ShardsConfig,
    pub background: Background,
}

struct Inner {
    deps: SpaceDeps,
    open: RwLock<HashMap<Scope, Arc<Space>>>,
    /// Serializes opening, so a scope is loaded once.
    opening: std::sync::Mutex<()>,
    on_open: RwLock<Vec<OnOpen>>,
}

/// The open spaces, by scope (cheap to clone).
#[derive(Clone)]
pub struct Spaces {
    inner: Arc<Inner>,
}

impl Spaces {
    pub fn new(deps: SpaceDeps) -> Self {
        Self {
            inner: Arc::new(Inner {
                deps,
                open: RwLock::new(HashMap::new()),
                opening: std::sync::Mutex::new(()),
                on_open: RwLock::new(Vec::new()),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.deps.store
    }

    pub fn bus(&self) -> &EffectBus {
        &self.inner.deps.bus
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.deps.clock
    }

    /// The space of `scope` if it is open.
    pub fn open_space(&self, scope: Scope) -> Option<Arc<Space>> {
        self.inner
            .open
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&scope)
            .cloned()
    }

    /// Whether `scope` is a tenant that was archived (its environment's catalog says so).
    /// Archived tenants keep their data, but nothing leaves them any more (no webhooks).
    pub fn is_archived(&self, scope: Scope) -> bool {
        scope.tenant != 0
            && self
                .open_space(scope.environment_only())
                .is_some_and(|env| !env.catalog.get().tenant_active(scope.tenant))
    }

    /// The open spaces of active scopes (archived tenants left out), in scope order.
    pub fn active(&self) -> Vec<Arc<Space>> {
        let mut all = self.all();
        all.retain(|s| !self.is_archived(s.scope));
        all
    }

    /// Every open space, in scope order.
    pub fn all(&self) -> Vec<Arc<Space>> {
        let mut all: Vec<Arc<Space>> = self
            .inner
            .open
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|s| s.scope);
        all
    }

    /// Registers `f` to run for every space already open and every one opened later.
    pub fn on_open(&self, f: impl Fn(&Spaces, &Arc<Space>) + Send + Sync + 'static) {
        let _opening = self.inner.opening.lock().unwrap_or_else(|e| e.into_inner());
        for space in self.all() {
            f(self, &space);
        }
        self.inner
            .on_open
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// The space of `scope`, opened (its catalog loaded) if it is not open yet.
    pub fn get(&self, scope: Scope) -> Result<Arc<Space>, StoreError> {
        if let Some(space) = self.open_space(scope) {
            return Ok(space);
        }
        let _opening = self.inner.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(space) = self.open_space(scope) {
            return Ok(space);
        }
        let d = &self.inner.deps;
        let catalog = Arc::new(CatalogService::load(d.store.clone(), scope)?);
        let users = UserShards::new(
            d.store.clone(),
            scope,
            catalog.clone(),
            d.clock.clone(),
            d.supervisor.clone(),
            d.bus.clone(),
            d.shards.clone(),
        );
        let boards = Boards::new(
            BoardDeps {
                store: d.store.clone(),
                scope,
                catalog: catalog.clone(),
                clock: d.clock.clone(),
                bus: d.bus.clone(),
            },
            d.supervisor.clone(),
        );
        let boosts = BoostClock::load(
            d.store.clone(),
            scope,
            catalog.clone(),
            d.clock.clone(),
            d.bus.clone(),
        )?;
        let space = Arc::new(Space {
            scope,
            catalog,
            users,
            boards,
            boosts,
        });
        self.inner
            .open
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scope, space.clone());
        let (passivating, token) = (space.users.clone(), d.background.shutdown().clone());
        d.background.supervise("passivator", move || {
            let (users, t) = (passivating.clone(), token.clone());
            async move { users.passivate_idle(t).await }
        });
        for f in self
            .inner
            .on_open
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            f(self, &space);
        }
        tracing::debug!(%scope, "space opened");
        Ok(space)
    }

    /// Snapshots and stops every live user of every space.
    pub async fn stop_all(&self) {
        for space in self.all() {
            space.users.stop_all().await;
        }
    }
}

/// The leaderboards effect consumer of every space: records go to the boards of their
/// stream's scope, each scope's part of a batch written by its own boards.
pub struct SpacesLeaderboards {
    spaces: Spaces,
    consumers: HashMap<Scope, LeaderboardsConsumer>,
}

impl SpacesLeaderboards {
    /// Forgets what the open boards hold in memory (they then catch up from their rows and
    /// the inbox, like a board opened later).
    pub async fn start(spaces: Spaces) -> Self {
        for space in spaces.all() {
            space.boards.restart().await;
        }
        Self {
            spaces,
            consumers: HashMap::new(),
        }
    }
}

impl EffectConsumer for SpacesLeaderboards {
    const ID: ConsumerId = LeaderboardsConsumer::ID;
    const LINGER: std::time::Duration = LeaderboardsConsumer::LINGER;

    async fn process(&mut self, store: &Store, records: &[Pending<'_>]) -> Result<(), StoreError> {
        let mut by_scope: Vec<(Scope, Vec<Pending<'_>>)> = Vec::new();
        for r in records {
            let scope = r.stream.scope;
            let part = match by_scope.iter_mut().position(|(s, _)| *s == scope) {
                Some(i) => &mut by_scope[i].1,
                None => {
                    by_scope.push((scope, Vec::new()));
                    &mut by_scope.last_mut().expect("just pushed").1
                }
            };
            part.push(Pending {
                stream: r.stream,
                seq: r.seq,
                effects: r.effects,
            });
        }
        for (scope, part) in by_scope {
            let consumer = match self.consumers.entry(scope) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(self.spaces.get(scope)?.boards.consumer())
                }
            };
            consumer.process(store, &part).await?;
        }
        Ok(())
    }
}
