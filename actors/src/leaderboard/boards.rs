//! [`Boards`]: the way to every [`LeaderboardActor`], and the leaderboards effect consumer.
//!
//! A user record that ranked something has one inbox row for the leaderboards consumer,
//! whatever the number of boards it touched. Records are applied to their boards through
//! one lock, in the order they arrive, either by the request that made them (so its answer
//! reflects them) or by the consumer, whichever comes first; the other finds it applied.
//! A write then collects, from every board that changed, the rows and effects of everything
//! applied so far, and removes the inbox rows of exactly those records, in one batch: what
//! is on disk always reflects whole records, across boards, however requests raced.
//!
//! A failed write or a failed board actor resets every board: they are stopped, reloaded
//! from their durable rows on next use, and the consumer restarts and catches up from the
//! inbox rows still there.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kudos_snapshots::{Commit, ConsumerId, Store, StoreError, StreamId};
use ractor::{Actor, ActorCell, ActorRef};
use uuid::Uuid;

use super::actor::{BoardDeps, BoardMsg, LeaderboardActor, PageStart};
use super::board::GroupKey;
use super::state::{BoardRecord, Outcome};
use super::Standing;
use crate::effects::{EffectConsumer, Pending};
use crate::user::Effect;

/// How many applied records keep their outcomes for the request that caused them.
const RECENT: usize = 4096;
/// Change signals a slow live reader may fall behind by before it lags (and reads
/// everything again).
const CHANGED_CAPACITY: usize = 1024;

/// An applied record.
struct Applied {
    outcomes: Vec<Outcome>,
    written: bool,
}

/// One board's share of a batch: (record index, its placements there), in order.
type BoardBatch = Vec<(usize, Arc<BoardRecord>)>;

/// A request's record waiting to be applied.
struct Queued {
    stream: StreamId,
    /// Earlier records of the same stream still pending when the request looked.
    earlier: Vec<(u64, Vec<Effect>)>,
    seq: u64,
    effects: Vec<Effect>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Outcome>, StoreError>>,
}

/// What the apply lock guards.
#[derive(Default)]
struct Router {
    applied: HashMap<(StreamId, u64), Applied>,
    order: VecDeque<(StreamId, u64)>,
    /// Applied records whose rows are not written yet, in order.
    unwritten: Vec<(StreamId, u64)>,
    /// Boards with changes not written yet.
    dirty: BTreeSet<Uuid>,
}

struct Inner {
    deps: BoardDeps,
    supervisor: ActorCell,
    actors: tokio::sync::Mutex<HashMap<Uuid, ActorRef<BoardMsg>>>,
    router: tokio::sync::Mutex<Router>,
    /// Requests' records waiting for whoever holds `router` next.
    queue: std::sync::Mutex<Vec<Queued>>,
    /// Held while a collected batch is written (taken before the apply lock is released).
    writing: tokio::sync::Mutex<()>,
    /// Bumped by every reset, so the consumer knows to restart and catch up.
    generation: AtomicU64,
    /// Boards whose memory just changed (records applied, runs announced): live readers
    /// (the WebSocket push hub) read them again.
    changed: tokio::sync::broadcast::Sender<Uuid>,
}

/// Errors of board operations.
fn unavailable(what: &str) -> StoreError {
    StoreError::Unavailable(format!("leaderboard {what}"))
}

/// The handle to every board (cheap to clone).
#[derive(Clone)]
pub struct Boards {
    inner: Arc<Inner>,
}

impl Boards {
    pub fn new(deps: BoardDeps, supervisor: ActorCell) -> Self {
        Self {
            inner: Arc::new(Inner {
                deps,
                supervisor,
                actors: tokio::sync::Mutex::new(HashMap::new()),
                router: tokio::sync::Mutex::new(Router::default()),
                queue: std::sync::Mutex::new(Vec::new()),
                writing: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
                changed: tokio::sync::broadcast::Sender::new(CHANGED_CAPACITY),
            }),
        }
    }

    /// The board's actor, started (and loaded from its rows) if it is not running.
    async fn actor(&self, id: Uuid) -> Result<ActorRef<BoardMsg>, StoreError> {
        let mut actors = self.inner.actors.lock().await;
        if let Some(a) = actors.get(&id) {
            return Ok(a.clone());
        }
        let (actor, _) = Actor::spawn_linked(
            None,
            LeaderboardActor,
            (id, self.inner.deps.clone()),
            self.inner.supervisor.clone(),
        )
        .await
        .map_err(|e| unavailable(&format!("board {id} could not start: {e}")))?;
        actors.insert(id, actor.clone());
        Ok(actor)
    }

    async fn call<R: Send + 'static>(
        &self,
        id: Uuid,
        build: impl FnOnce(ractor::RpcReplyPort<R>) -> BoardMsg,
    ) -> Result<R, StoreError> {
        let actor = self.actor(id).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        actor
            .cast(build(tx.into()))
            .map_err(|_| unavailable(&format!("board {id} is not running")))?;
        rx.await
            .map_err(|_| unavailable(&format!("board {id} stopped while answering")))
    }

    /// Stops every board (they reload from disk on next use) and forgets what was applied
    /// in memory; the consumer then restarts and applies the inbox rows again.
    async fn reset(&self, router: &mut Router) {
        // After any batch in flight: a board reloaded before it lands would miss it.
        let _writing = self.inner.writing.lock().await;
        *router = Router::default();
        let mut actors = self.inner.actors.lock().await;
        for (_, a) in actors.drain() {
            a.stop(Some("reset".into()));
            let _ = a
                .get_cell()
                .wait(Some(std::time::Duration::from_secs(5)))
                .await;
        }
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(
            "leaderboards reset: boards reload from their rows and the inbox is applied again"
        );
    }

    /// Applies records in order, each unless it was applied already (or written and
    /// forgotten: its inbox row is gone), with one message per board for the whole batch.
    /// Returns what each did on each board.
    async fn apply_locked(
        &self,
        router: &mut Router,
        records: &[Pending<'_>],
    ) -> Result<Vec<Vec<Outcome>>, StoreError> {
        let inbox = self.inner.deps.store.inbox();
        let mut out: Vec<Option<Vec<Outcome>>> = vec![None; records.len()];
        // Per board, in order: (record index, its placements there).
        let mut per_board: Vec<(Uuid, BoardBatch)> = Vec::new();
        let mut fresh: Vec<usize> = Vec::new();
        let mut seen: std::collections::HashSet<(&StreamId, u64)> = Default::default();
        for (i, r) in records.iter().enumerate() {
            let id = (r.stream.clone(), r.seq);
            if let Some(a) = router.applied.get(&id) {
                out[i] = Some(a.outcomes.clone());
                continue;
            }
            if !seen.insert((r.stream, r.seq)) {
                // Twice in one batch (one request's own record, another's earlier one): it
                // gets the first one's outcomes below.
                continue;
            }
            if !inbox.has_row(ConsumerId::LEADERBOARDS, r.stream, r.seq)? {
                out[i] = Some(Vec::new());
                continue;
            }
            fresh.push(i);
            for (board, record) in board_records(r.effects) {
                let record = Arc::new(record);
                match per_board.iter_mut().find(|(b, _)| *b == board) {
                    Some((_, list)) => list.push((i, record)),
                    None => per_board.push((board, vec![(i, record)])),
                }
            }
        }
        // Outcomes per record in the order of its boards.
        let mut by_record: Vec<Vec<(usize, Vec<Outcome>)>> = vec![Vec::new(); records.len()];
        for (rank, (board, list)) in per_board.into_iter().enumerate() {
            let records_here: Vec<Arc<BoardRecord>> = list.iter().map(|(_, r)| r.clone()).collect();
            let done = self
                .call(board, |reply| BoardMsg::Apply {
                    records: records_here,
                    reply,
                })
                .await;
            match done {
                Ok(outcomes) => {
                    for ((i, _), o) in list.iter().zip(outcomes) {
                        by_record[*i].push((rank, o));
                    }
                }
                Err(e) => {
                    self.reset(router).await;
                    return Err(e);
                }
            }
            router.dirty.insert(board);
            // No live reader is fine.
            let _ = self.inner.changed.send(board);
        }
        for i in fresh {
            let mut parts = std::mem::take(&mut by_record[i]);
            parts.sort_by_key(|(rank, _)| *rank);
            let outcomes: Vec<Outcome> = parts.into_iter().flat_map(|(_, o)| o).collect();
            let id = (records[i].stream.clone(), records[i].seq);
            router.applied.insert(
                id.clone(),
                Applied {
                    outcomes: outcomes.clone(),
                    written: false,
                },
            );
            router.unwritten.push(id.clone());
            router.order.push_back(id);
            out[i] = Some(outcomes);
        }
        // Forget the oldest outcomes, never those of records not written yet.
        while router.order.len() > RECENT {
            let written = router
                .order
                .front()
                .and_then(|k| router.applied.get(k))
                .is_some_and(|a| a.written);
            if !written {
                break;
            }
            if let Some(old) = router.order.pop_front() {
                router.applied.remove(&old);
            }
        }
        Ok(out
            .into_iter()
            .zip(records)
            .map(|(o, r)| {
                o.or_else(|| {
                    router
                        .applied
                        .get(&(r.stream.clone(), r.seq))
                        .map(|a| a.outcomes.clone())
                })
                .unwrap_or_default()
            })
            .collect())
    }

    /// Writes the rows and effects of everything applied and not written, with the removal
    /// of those records' inbox rows, in one batch; then publishes the effects. The batch is
    /// collected under the apply lock and written after it is released (requests go on
    /// applying meanwhile); batches are written in the order they were collected, and a
    /// caller that returns has its batch on disk. `read`: a board a history read waits for
    /// (its displaced users' history rows are written too).
    async fn write(
        &self,
        mut router: tokio::sync::MutexGuard<'_, Router>,
        read: Option<Uuid>,
    ) -> Result<(), StoreError> {
        let mut commit = Commit::new();
        let mut published = Vec::new();
        let mut boards: Vec<Uuid> = std::mem::take(&mut router.dirty).into_iter().collect();
        if let Some(b) = read.filter(|b| !boards.contains(b)) {
            boards.push(b);
        }
        for board in boards {
            let consumers = self.inner.deps.bus.board_consumers();
            let live = self.inner.deps.bus.has_live_topics();
            let all = read == Some(board);
            match self
                .call(board, |reply| BoardMsg::Write {
                    consumers,
                    live,
                    all,
                    reply,
                })
                .await
            {
                Ok(Ok(w)) => {
                    commit.append(w.commit);
                    published.extend(w.published);
                }
                Ok(Err(e)) | Err(e) => {
                    self.reset(&mut router).await;
                    return Err(e);
                }
            }
        }
        let unwritten = std::mem::take(&mut router.unwritten);
        for id in &unwritten {
            commit.inbox_done(ConsumerId::LEADERBOARDS, &id.0, id.1);
        }
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let writing = self.inner.writing.lock().await;
        drop(router);
        // A batch collected before a failed write reflects memory the disk never got: drop
        // it (the reset that follows applies its records again from their inbox rows).
        if self.inner.generation.load(Ordering::SeqCst) != generation {
            return Err(unavailable("batch dropped: boards are being reset"));
        }
        if let Err(e) = self.inner.deps.store.write(commit) {
            self.inner.generation.fetch_add(1, Ordering::SeqCst);
            drop(writing);
            // Memory is ahead of the disk: start over from the disk.
            let mut router = self.inner.router.lock().await;
            self.reset(&mut router).await;
            return Err(e);
        }
        for p in published {
            self.inner.deps.bus.publish(p);
        }
        drop(writing);
        // Only now may their outcomes be forgotten (a late request then finds the inbox row
        // gone instead of applying the record again).
        let mut router = self.inner.router.lock().await;
        for id in &unwritten {
            if let Some(a) = router.applied.get_mut(id) {
                a.written = true;
            }
        }
        Ok(())
    }

    /// Applies a just-committed record now, for the request that made it, and returns what
    /// it did on each board. Its rows are written with the consumer's next batch; until
    /// then a crash loses only memory, and the inbox row is applied again at restart.
    ///
    /// Requests of one user may finish out of order, and a streak board's value is set, not
    /// added, so any earlier record of the same user still pending is applied first. (The
    /// consumer gets each user's records in order: from the bus in commit order, from the
    /// inbox in seq order.) The earlier rows are looked up before taking the lock; one
    /// applied or written meanwhile is found applied, or its row gone.
    ///
    /// Requests queue their records; whichever takes the lock applies every queued record in
    /// one pass (one message per board), and answers the others, so concurrent events do
    /// not each pay a lock hand-off and an actor round trip.
    pub async fn apply_now(
        &self,
        stream: &StreamId,
        seq: u64,
        effects: &[Effect],
    ) -> Result<Vec<Outcome>, StoreError> {
        let earlier = self.inner.deps.store.inbox().earlier::<Vec<Effect>>(
            ConsumerId::LEADERBOARDS,
            stream,
            seq,
        )?;
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.inner
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Queued {
                stream: stream.clone(),
                earlier: earlier.into_iter().map(|r| (r.seq, r.payload)).collect(),
                seq,
                effects: effects.to_vec(),
                reply: tx,
            });
        tokio::select! {
            biased;
            answered = &mut rx => {
                return answered.unwrap_or_else(|_| Err(unavailable("apply was dropped")));
            }
            mut router = self.inner.router.lock() => {
                self.drain(&mut router).await;
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(unavailable("apply was dropped")))
    }

    /// Applies every queued request's record (after its earlier pending ones) and answers
    /// each.
    async fn drain(&self, router: &mut Router) {
        let queued =
            std::mem::take(&mut *self.inner.queue.lock().unwrap_or_else(|e| e.into_inner()));
        if queued.is_empty() {
            return;
        }
        let mut records: Vec<Pending<'_>> = Vec::new();
        let mut answer_at: Vec<usize> = Vec::with_capacity(queued.len());
        for q in &queued {
            for (seq, effects) in &q.earlier {
                records.push(Pending {
                    stream: &q.stream,
                    seq: *seq,
                    effects,
                });
            }
            answer_at.push(records.len());
            records.push(Pending {
                stream: &q.stream,
                seq: q.seq,
                effects: &q.effects,
            });
        }
        let applied = self.apply_locked(router, &records).await;
        drop(records);
        for (q, at) in queued.into_iter().zip(answer_at) {
            let answer = match &applied {
                Ok(all) => Ok(all.get(at).cloned().unwrap_or_default()),
                Err(e) => Err(unavailable(&e.to_string())),
            };
            let _ = q.reply.send(answer);
        }
    }

    /// Writes every change applied in memory, with `board`'s pending history rows, so a
    /// read from disk sees them (a user's history right after their event).
    pub async fn flush(&self, board: Uuid) -> Result<(), StoreError> {
        let router = self.inner.router.lock().await;
        self.write(router, Some(board)).await
    }

    /// A page of a run's group.
    pub async fn page(
        &self,
        board: Uuid,
        key: GroupKey,
        start: PageStart,
        limit: usize,
    ) -> Result<Vec<Standing>, StoreError> {
        let read = self
            .call(board, |reply| BoardMsg::Page {
                key,
                start,
                limit,
                reply,
            })
            .await;
        self.reset_on_failure(read).await
    }

    /// A board that failed lost what it applied in memory: reset every board.
    async fn reset_on_failure<R>(&self, r: Result<R, StoreError>) -> Result<R, StoreError> {
        if r.is_err() {
            self.restart().await;
        }
        r
    }

    /// A user's rank and value in a run.
    pub async fn standing(
        &self,
        board: Uuid,
        run: u64,
        user: &str,
    ) -> Result<(Option<usize>, Option<f64>), StoreError> {
        let user = user.to_string();
        let read = self
            .call(board, |reply| BoardMsg::Standing { run, user, reply })
            .await;
        self.reset_on_failure(read).await
    }

    /// Makes the board's run announcements due by `at` (`None`: now) and files the next.
    pub async fn announce(
        &self,
        board: Uuid,
        at: Option<DateTime<Utc>>,
    ) -> Result<usize, StoreError> {
        let done = self
            .call(board, |reply| BoardMsg::Announce { at, reply })
            .await;
        let made = self.reset_on_failure(done).await??;
        if made > 0 {
            let _ = self.inner.changed.send(board);
        }
        Ok(made)
    }

    /// Boards as their memory changes: records applied, runs announced (a receiver that
    /// lags should read every board again).
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Uuid> {
        self.inner.changed.subscribe()
    }

    /// The consumer that feeds the boards from the inbox and the bus.
    pub fn consumer(&self) -> LeaderboardsConsumer {
        LeaderboardsConsumer {
            boards: self.clone(),
            generation: self.inner.generation.load(Ordering::SeqCst),
        }
    }

    /// Forgets everything in memory (the consumer's start: it then catches up).
    pub async fn restart(&self) {
        let mut router = self.inner.router.lock().await;
        self.reset(&mut router).await;
    }
}

/// Splits a record's `Ranked` effects by board, in order of first appearance.
fn board_records(effects: &[Effect]) -> Vec<(Uuid, BoardRecord)> {
    let mut out: Vec<(Uuid, BoardRecord)> = Vec::new();
    for e in effects {
        let (user_id, user_name, tz, at, placements) = match e {
            Effect::Ranked {
                user_id,
                user_name,
                tz,
                at,
                placements,
            } => (
                user_id,
                user_name,
                tz.parse().unwrap_or(chrono_tz::UTC),
                at,
                placements,
            ),
            Effect::RankedWithoutZone {
                user_id,
                user_name,
                at,
                placements,
            } => (user_id, user_name, chrono_tz::UTC, at, placements),
            _ => continue,
        };
        for p in placements {
            match out.iter_mut().find(|(b, _)| *b == p.board_id) {
                Some((_, r)) => r.placements.push(p.clone()),
                None => out.push((
                    p.board_id,
                    BoardRecord {
                        user_id: user_id.clone(),
                        user_name: user_name.clone(),
                        tz,
                        at: *at,
                        placements: vec![p.clone()],
                    },
                )),
            }
        }
    }
    out
}

/// The leaderboards effect consumer: applies records (unless their request did) and writes
/// them in batches.
pub struct LeaderboardsConsumer {
    boards: Boards,
    generation: u64,
}

impl EffectConsumer for LeaderboardsConsumer {
    const ID: ConsumerId = ConsumerId::LEADERBOARDS;
    // Event requests apply their records in memory at once; the consumer makes them
    // durable in batches.
    const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

    async fn process(&mut self, _store: &Store, records: &[Pending<'_>]) -> Result<(), StoreError> {
        let boards = &self.boards;
        if boards.inner.generation.load(Ordering::SeqCst) != self.generation {
            return Err(unavailable("boards were reset; catching up again"));
        }
        let mut router = boards.inner.router.lock().await;
        // Requests waiting behind this batch are applied with it.
        boards.drain(&mut router).await;
        boards.apply_locked(&mut router, records).await?;
        boards.write(router, None).await
    }
}
