//! The boost clock: announces global and cohort boosts (SPEC §8.4.1), `points.boost_started`
//! at 10:00 UTC on the day before a boost's start and `points.boost_finished` at 13:00 UTC
//! on the day after its end, once per boost for everyone. (User-specific boosts are
//! announced in their user's stream, in the user's zone.)
//!
//! It is a stream like a user's (kind `scheduler`, id `boost-clock`): each announcement is a
//! journaled record whose effects go to consumers' inboxes in the same commit, and the
//! stream files its next announcement instant as one typed due entry (`BoostWindow`) that
//! the scheduler runs. Changes to boosts refile it, so a boost created after its start
//! moment is announced at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kudos_snapshots::{
    recovery, snapshot, Commit, DueKind, DueTarget, Recoverable, Scope, Store, StoreError,
    StreamId, StreamKind,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{Catalog, CatalogService};
use crate::clock::Clock;
use crate::effects::{EffectBus, Published};
use crate::rules::points::{boost_moments, due_announcements, next_announcement, BoostPhase};
use crate::user::Effect;

/// The boost clock's state: how far each shared boost's announcements went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BoostClockState {
    pub announced: BTreeMap<Uuid, BoostPhase>,
    /// The due instant (ms) filed with the last record or snapshot.
    pub filed_due: Option<i64>,
}

/// One journal entry: announcements made at one instant, and the due instant filed then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announced {
    pub effects: Vec<Effect>,
    pub due: Option<i64>,
}

impl BoostClockState {
    fn fold(&mut self, e: &Effect) {
        match e {
            Effect::BoostStarted { boost_id, .. } => {
                self.announced.insert(*boost_id, BoostPhase::Started);
            }
            Effect::BoostFinished { boost_id, .. } => {
                self.announced.insert(*boost_id, BoostPhase::Finished);
            }
            _ => {}
        }
    }

    /// The announcements due by `at`, in boost creation order.
    pub fn due(&self, catalog: &Catalog, at: DateTime<Utc>) -> Vec<Effect> {
        let mut out = Vec::new();
        for b in catalog.shared_boosts() {
            let moments = boost_moments(b.start, b.end, None);
            for phase in due_announcements(moments, self.announced.get(&b.id).copied(), at) {
                let (boost_id, system_id) = (b.id, b.system_id);
                out.push(match phase {
                    BoostPhase::Started => Effect::BoostStarted {
                        boost_id,
                        system_id,
                        user_id: None,
                        at,
                    },
                    BoostPhase::Finished => Effect::BoostFinished {
                        boost_id,
                        system_id,
                        user_id: None,
                        at,
                    },
                });
            }
        }
        out
    }

    /// The next announcement instant of any shared boost.
    pub fn next(&self, catalog: &Catalog) -> Option<DateTime<Utc>> {
        catalog
            .shared_boosts()
            .filter_map(|b| {
                next_announcement(
                    boost_moments(b.start, b.end, None),
                    self.announced.get(&b.id).copied(),
                )
            })
            .min()
    }
}

impl Recoverable for BoostClockState {
    type Record = Announced;

    fn apply(&mut self, entry: &Announced) {
        for e in &entry.effects {
            self.fold(e);
        }
        self.filed_due = entry.due;
    }
}

struct Inner {
    state: BoostClockState,
    seq: u64,
    snapshot_seq: u64,
}

/// Owns the boost clock stream; the scheduler and the admin API share it.
pub struct BoostClock {
    store: Store,
    catalog: Arc<CatalogService>,
    clock: Arc<dyn Clock>,
    bus: EffectBus,
    stream: StreamId,
    target: DueTarget,
    inner: tokio::sync::Mutex<Inner>,
}

impl BoostClock {
    pub fn load(
        store: Store,
        scope: Scope,
        catalog: Arc<CatalogService>,
        clock: Arc<dyn Clock>,
        bus: EffectBus,
    ) -> Result<Self, StoreError> {
        let stream = StreamId::new(StreamKind::Scheduler, scope, "boost-clock");
        let loaded = recovery::load::<BoostClockState>(&store.journal(), &stream)?;
        Ok(Self {
            target: DueTarget::new(DueKind::BoostWindow, stream.clone()),
            stream,
            store,
            catalog,
            clock,
            bus,
            inner: tokio::sync::Mutex::new(Inner {
                state: loaded.state,
                seq: loaded.seq,
                snapshot_seq: loaded.snapshot_seq,
            }),
        })
    }

    /// Announces everything due by `at` (never later than now) in one commit and files the
    /// next instant. Used by the scheduler (`at` = the due instant) and after boost changes.
    pub async fn run(&self, at: Option<DateTime<Utc>>) -> Result<usize, StoreError> {
        let catalog = self.catalog.get();
        let now = self.clock.now();
        let at = at.map_or(now, |t| t.min(now));
        let mut inner = self.inner.lock().await;
        let effects = inner.state.due(&catalog, at);
        let mut next_state = inner.state.clone();
        for e in &effects {
            next_state.fold(e);
        }
        let next = next_state.next(&catalog).map(|t| t.timestamp_millis());
        if effects.is_empty() && next == inner.state.filed_due {
            return Ok(0);
        }
        let mut c = Commit::new();
        c.due(&self.target, inner.state.filed_due, next);
        next_state.filed_due = next;
        let seq = inner.seq + 1;
        let made = effects.len();
        if effects.is_empty() {
            // Only the due instant moved: the snapshot carries it.
            c.snapshot(&self.stream, inner.seq, &next_state)?;
            self.store.commit(c).await?;
            inner.snapshot_seq = inner.seq;
            inner.state = next_state;
            return Ok(0);
        }
        let consumers = self.bus.consumers_for(&effects);
        c.inbox(&consumers, &self.stream, seq, &effects)?;
        let snapshot_now = snapshot::due(inner.snapshot_seq, seq);
        if snapshot_now {
            c.snapshot(&self.stream, seq, &next_state)?;
        } else {
            c.journal(
                &self.stream,
                seq,
                &Announced {
                    effects: effects.clone(),
                    due: next,
                },
            )?;
        }
        self.store.commit(c).await?;
        inner.seq = seq;
        if snapshot_now {
            inner.snapshot_seq = seq;
        }
        inner.state = next_state;
        tracing::info!(announcements = made, "boosts announced");
        if self.bus.has_subscribers() {
            self.bus.publish(Published {
                stream: self.stream.clone(),
                seq,
                effects,
                consumers,
            });
        }
        Ok(made)
    }

    /// After a boost change: announce what is already due, file the next instant.
    pub async fn refile(&self) -> Result<usize, StoreError> {
        self.run(None).await
    }
}
