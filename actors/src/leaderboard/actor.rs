//! The [`LeaderboardActor`]: one per leaderboard, owning its [`BoardState`] (every run and
//! breakdown group). It is fed records by [`super::boards::Boards`], which serializes them
//! and writes what boards hand out; it answers reads from memory; and it makes its own run
//! announcements (`leaderboard.started` / `finished`), each one commit with the due instant
//! of the next, fsynced before it is published.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kudos_snapshots::{Commit, ConsumerId, DueKind, DueTarget, Scope, Store, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use super::board::GroupKey;
use super::standings::{self, CONSUMER};
use super::state::{runs_stream, BoardRecord, BoardState, BoardWrite, Outcome};
use super::Standing;
use crate::catalog::CatalogService;
use crate::clock::Clock;
use crate::effects::{EffectBus, Published};

/// Where a page starts.
#[derive(Debug, Clone)]
pub enum PageStart {
    /// At this 0-based position.
    Offset(usize),
    /// At the user's position plus `offset` (clamped at 0); an empty page if not ranked.
    AroundUser { user: String, offset: i64 },
}

/// Messages of [`LeaderboardActor`].
pub enum BoardMsg {
    /// Apply records' placements in memory, in order; answers what each did.
    Apply {
        records: Vec<Arc<BoardRecord>>,
        reply: RpcReplyPort<Vec<Vec<Outcome>>>,
    },
    /// Hand out the rows and effects of everything applied since the last write.
    Write {
        consumers: Arc<[ConsumerId]>,
        /// Live `user:` subscribers exist: rank changes are published for them too.
        live: bool,
        /// Also every pending history row of displaced users (a read is waiting for them).
        all: bool,
        reply: RpcReplyPort<Result<BoardWrite, StoreError>>,
    },
    /// A page of a run's group.
    Page {
        key: GroupKey,
        start: PageStart,
        limit: usize,
        reply: RpcReplyPort<Vec<Standing>>,
    },
    /// A user's rank and value in a run (in the group they are in).
    Standing {
        run: u64,
        user: String,
        reply: RpcReplyPort<(Option<usize>, Option<f64>)>,
    },
    /// Make the run announcements due by `at` (`None`: now) and file the next one.
    Announce {
        at: Option<DateTime<Utc>>,
        reply: RpcReplyPort<Result<usize, StoreError>>,
    },
}

/// What a board actor needs.
#[derive(Clone)]
pub struct BoardDeps {
    pub store: Store,
    pub scope: Scope,
    pub catalog: Arc<CatalogService>,
    pub clock: Arc<dyn Clock>,
    pub bus: EffectBus,
}

pub struct LeaderboardActor;

pub struct BoardActorState {
    deps: BoardDeps,
    board: BoardState,
}

impl Actor for LeaderboardActor {
    type Msg = BoardMsg;
    type State = BoardActorState;
    type Arguments = (Uuid, BoardDeps);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (id, deps): (Uuid, BoardDeps),
    ) -> Result<Self::State, ActorProcessingErr> {
        let board = BoardState::load(&deps.store, id)?;
        Ok(BoardActorState { deps, board })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: BoardMsg,
        st: &mut BoardActorState,
    ) -> Result<(), ActorProcessingErr> {
        let catalog = st.deps.catalog.get();
        let def = catalog.leaderboard(st.board.id);
        match msg {
            BoardMsg::Apply { records, reply } => {
                let done = records.iter().map(|r| st.board.apply(def, r)).collect();
                let _ = reply.send(done);
            }
            BoardMsg::Write {
                consumers,
                live,
                all,
                reply,
            } => {
                let _ = reply.send(st.board.write(def, st.deps.scope, &consumers, live, all));
            }
            BoardMsg::Page {
                key,
                start,
                limit,
                reply,
            } => {
                let page = def.map(|def| page(&st.board, def, &key, start, limit));
                let _ = reply.send(page.unwrap_or_default());
            }
            BoardMsg::Standing { run, user, reply } => {
                let b = st.board.board();
                let found = def.and_then(|def| {
                    let group = b.group_of(run, &user)?;
                    let ranking = b.group(&(run, group.clone()))?;
                    let max = usize::try_from(def.max_participants).unwrap_or(usize::MAX);
                    Some((
                        ranking.rank(&user, max, def.tie_policy),
                        ranking.value(&user),
                    ))
                });
                let _ = reply.send(found.unwrap_or((None, None)));
            }
            BoardMsg::Announce { at, reply } => {
                let now = st.deps.clock.now();
                let at = at.map_or(now, |t| t.min(now));
                let _ = reply.send(announce(st, def, at).await);
            }
        }
        Ok(())
    }
}

fn page(
    board: &BoardState,
    def: &crate::catalog::leaderboards::Leaderboard,
    key: &GroupKey,
    start: PageStart,
    limit: usize,
) -> Vec<Standing> {
    let Some(ranking) = board.board().group(key) else {
        return Vec::new();
    };
    let max = usize::try_from(def.max_participants).unwrap_or(usize::MAX);
    let start = match start {
        PageStart::Offset(o) => Some(o),
        PageStart::AroundUser { user, offset } => {
            ranking.rank(&user, max, def.tie_policy).map(|_| {
                let position = ranking.position(&user).unwrap_or(0) as i64;
                usize::try_from((position + offset).max(0)).unwrap_or(0)
            })
        }
    };
    match start {
        Some(start) => board.page(key, start, limit, def),
        None => Vec::new(),
    }
}

/// Commits the announcements due by `at` with the next due instant, then publishes them.
async fn announce(
    st: &mut BoardActorState,
    def: Option<&crate::catalog::leaderboards::Leaderboard>,
    at: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let (effects, mut runs, next) = st.board.announcements(def, at);
    let next = next.map(|t| t.timestamp_millis());
    if effects.is_empty() && next == st.board.runs.due && runs == st.board.runs {
        return Ok(0);
    }
    let stream = runs_stream(st.deps.scope, st.board.id);
    let mut c = Commit::new();
    c.due(
        &DueTarget::new(DueKind::LeaderboardRunBoundary, stream.clone()),
        st.board.runs.due,
        next,
    );
    runs.due = next;
    let made = effects.len();
    let consumers = st.deps.bus.consumers_for(&effects);
    if !effects.is_empty() {
        runs.seq += 1;
        c.inbox(&consumers, &stream, runs.seq, &effects)?;
    }
    c.consumer_state(CONSUMER, &standings::runs_key(st.board.id), Some(&runs))?;
    st.deps.store.commit(c).await?;
    st.board.runs = runs;
    if made > 0 {
        tracing::info!(board = %st.board.id, announcements = made, "leaderboard runs announced");
        st.deps.bus.publish(Published {
            stream,
            seq: runs.seq,
            effects,
            consumers,
        });
    }
    Ok(made)
}
