//! The throttled event types (SPEC §8.2): `points.changed` per (user, points system),
//! `leaderboard.changed` per (leaderboard, run, breakdown group) and
//! `leaderboard.rank_changed` per (user, leaderboard), at most one delivery per key per
//! 15 minutes ([`kudos_actors::rules::throttle`]).
//!
//! Each key's window is a consumer row (`h` + key) with what is held for its end; each
//! window has one timer row (`u` + end + key). The outbox consumer admits changes (a
//! leading edge is queued with the record's other events); [`run_trailing`] closes windows
//! whose end is reached and queues the held change with the latest state. Both hold
//! [`WebhookConsumer::throttle`] while they read and write windows, and each writes its
//! windows, timers and deliveries in one batch, so a crash repeats a closing or a record,
//! never half of one.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kudos_actors::catalog::Catalog;
use kudos_actors::leaderboard::Standing;
use kudos_actors::rules::throttle::{self, Coalesce, Window};
use kudos_actors::space::Space;
use kudos_actors::user::{Award, Effect, ProfileQuery};
use kudos_actors::user_shards::UserShards;
use kudos_snapshots::{Commit, ConsumerId, Scope, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::dispatch::{queue, Event, WebhookConsumer};
use super::payloads;

const WINDOW_ROW: u8 = b'h';
const TIMER_ROW: u8 = b'u';
/// Awards a held `points.changed` keeps (the latest; `added` still sums every one).
pub const HELD_AWARDS: usize = 100;
/// How often ended windows are looked for.
const POLL: Duration = Duration::from_millis(200);
/// Windows closed per batch.
const CLOSE_BATCH: usize = 256;

/// A change of a throttled type, as held until its window ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Held {
    Points {
        user_id: String,
        system_id: Uuid,
        /// The latest awards since the last delivery, oldest first (at most
        /// [`HELD_AWARDS`]).
        awards: Vec<Award>,
        added: i64,
        total: i64,
        /// The level before the first change and after the last, when a change moved it.
        level: Option<(Option<Uuid>, Option<Uuid>)>,
    },
    Board {
        board_id: Uuid,
        run: u64,
        group: Vec<String>,
        top: Vec<Standing>,
    },
    Rank {
        board_id: Uuid,
        run: u64,
        group: Vec<String>,
        user_id: String,
        rank: Option<u32>,
        value: f64,
        /// The standing before the first change held.
        previous_rank: Option<u32>,
        previous_value: Option<f64>,
    },
}

impl Held {
    fn event_type(&self) -> &'static str {
        match self {
            Held::Points { .. } => "points.changed",
            Held::Board { .. } => "leaderboard.changed",
            Held::Rank { .. } => "leaderboard.rank_changed",
        }
    }

    /// The throttling key (after the window-row tag).
    fn key(&self) -> Vec<u8> {
        let mut k = Vec::new();
        let text = |k: &mut Vec<u8>, s: &str| {
            k.extend_from_slice(&(s.len() as u32).to_be_bytes());
            k.extend_from_slice(s.as_bytes());
        };
        match self {
            Held::Points {
                user_id, system_id, ..
            } => {
                k.push(b'p');
                text(&mut k, user_id);
                k.extend_from_slice(system_id.as_bytes());
            }
            Held::Board {
                board_id,
                run,
                group,
                ..
            } => {
                k.push(b'b');
                k.extend_from_slice(board_id.as_bytes());
                k.extend_from_slice(&run.to_be_bytes());
                for g in group {
                    text(&mut k, g);
                }
            }
            Held::Rank {
                board_id, user_id, ..
            } => {
                k.push(b'r');
                k.extend_from_slice(board_id.as_bytes());
                text(&mut k, user_id);
            }
        }
        k
    }
}

impl Coalesce for Held {
    fn coalesce(&mut self, later: Self) {
        match (self, later) {
            (
                Held::Points {
                    awards,
                    added,
                    total,
                    level,
                    ..
                },
                Held::Points {
                    awards: more,
                    added: more_added,
                    total: latest,
                    level: moved,
                    ..
                },
            ) => {
                awards.extend(more);
                let over = awards.len().saturating_sub(HELD_AWARDS);
                awards.drain(..over);
                *added += more_added;
                *total = latest;
                *level = match (*level, moved) {
                    (Some((from, _)), Some((_, to))) => Some((from, to)),
                    (None, moved) => moved,
                    (kept, None) => kept,
                };
            }
            (
                Held::Rank {
                    run,
                    group,
                    rank,
                    value,
                    previous_rank,
                    previous_value,
                    ..
                },
                Held::Rank {
                    run: later_run,
                    group: later_group,
                    rank: later_rank,
                    value: later_value,
                    previous_rank: later_previous_rank,
                    previous_value: later_previous_value,
                    ..
                },
            ) => {
                // The standing before the window, unless the change is in another run.
                if *run != later_run {
                    *previous_rank = later_previous_rank;
                    *previous_value = later_previous_value;
                }
                *run = later_run;
                *group = later_group;
                *rank = later_rank;
                *value = later_value;
            }
            (held, later) => *held = later,
        }
    }
}

/// What a key's window row holds: the window, and for `rank_changed` the standing last
/// delivered (the trailing delivery's `previousRank`/`previousValue`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    window: Window<Held>,
    reported: Option<Reported>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Reported {
    run: u64,
    rank: Option<u32>,
    value: Option<f64>,
}

/// Marks a key of a scope other than the default one (whose keys, older than tenants, are
/// unmarked): `S`, the scope, then the key.
const SCOPED: u8 = b'S';

/// The window key of `key` in `scope`: a change's key, marked with its scope unless it is
/// the default one (so a window held before tenants is found again).
fn scoped_key(scope: Scope, key: Vec<u8>) -> Vec<u8> {
    if scope == Scope::DEFAULT {
        return key;
    }
    let mut k = vec![SCOPED];
    k.extend_from_slice(&scope.environment.to_be_bytes());
    k.extend_from_slice(&scope.tenant.to_be_bytes());
    k.extend_from_slice(&key);
    k
}

/// The scope of a key made by [`scoped_key`].
fn scope_of_key(key: &[u8]) -> Scope {
    match key {
        [SCOPED, e0, e1, t0, t1, t2, t3, ..] => Scope {
            environment: u16::from_be_bytes([*e0, *e1]),
            tenant: u32::from_be_bytes([*t0, *t1, *t2, *t3]),
        },
        _ => Scope::DEFAULT,
    }
}

fn window_key(key: &[u8]) -> Vec<u8> {
    let mut k = vec![WINDOW_ROW];
    k.extend_from_slice(key);
    k
}

fn timer_key(ends: DateTime<Utc>, key: &[u8]) -> Vec<u8> {
    let mut k = vec![TIMER_ROW];
    k.extend_from_slice(&ends.timestamp_millis().to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn read_row(store: &Store, key: &[u8]) -> Result<Option<Row>, StoreError> {
    store
        .inbox()
        .state_get(ConsumerId::WEBHOOKS, &window_key(key))
}

/// The record's `points.changed` events (one per system it awarded in, `user_creation`
/// awards excepted) and `leaderboard.rank_changed` events, without throttling, for live
/// subscribers.
pub async fn live_events(
    users: &UserShards,
    catalog: &Catalog,
    effects: &[Effect],
    now: DateTime<Utc>,
) -> Result<Vec<Event>, StoreError> {
    let mut changes = points_changes(effects);
    for change in effects.iter().filter_map(rank_change) {
        merge(&mut changes, change);
    }
    let mut out = Vec::new();
    for change in changes {
        if let Some(e) = render(users, catalog, &change, None, now).await? {
            out.push(e);
        }
    }
    Ok(out)
}

/// One `points.changed` per system the record awarded in, with its level change.
fn points_changes(effects: &[Effect]) -> Vec<Held> {
    let mut out: Vec<Held> = Vec::new();
    for e in effects {
        let Effect::PointsAwarded {
            user_id,
            system_id,
            award,
            from_creation: false,
        } = e
        else {
            continue;
        };
        merge(
            &mut out,
            Held::Points {
                user_id: user_id.clone(),
                system_id: *system_id,
                awards: vec![award.clone()],
                added: award.awarded,
                total: award.total,
                level: None,
            },
        );
    }
    for e in effects {
        let Effect::PointsLevelChanged {
            system_id,
            previous,
            new,
            ..
        } = e
        else {
            continue;
        };
        for held in &mut out {
            if let Held::Points {
                system_id: s,
                level,
                ..
            } = held
            {
                if s == system_id {
                    *level = Some((level.map_or(*previous, |(from, _)| from), *new));
                }
            }
        }
    }
    out
}

/// Adds `change` to the record's changes, coalesced with one of the same key (a user
/// moved between groups, or out of one run and into the next, in one board write: one
/// change with the latest standing).
fn merge(out: &mut Vec<Held>, change: Held) {
    match out.iter_mut().find(|h| h.key() == change.key()) {
        Some(held) => held.coalesce(change),
        None => out.push(change),
    }
}

/// The throttled changes of one record, one per key, for the types some endpoint wants:
/// one `points.changed` per system the record awarded in (never for `user_creation`
/// awards), and the board's rank and top-10 changes as they are.
pub fn changes(effects: &[Effect], catalog: &Catalog) -> Vec<Held> {
    let wants = |t: &str| catalog.webhooks().any(|w| w.wants(t));
    let mut out: Vec<Held> = if wants("points.changed") {
        points_changes(effects)
    } else {
        Vec::new()
    };
    for e in effects {
        match e {
            Effect::LeaderboardChanged {
                board_id,
                run,
                group,
                top,
                ..
            } if wants("leaderboard.changed") => merge(
                &mut out,
                Held::Board {
                    board_id: *board_id,
                    run: *run,
                    group: group.clone(),
                    top: top.clone(),
                },
            ),
            Effect::LeaderboardRankChanged { .. } if wants("leaderboard.rank_changed") => {
                if let Some(change) = rank_change(e) {
                    merge(&mut out, change);
                }
            }
            _ => {}
        }
    }
    out
}

/// A rank change effect as a change to report.
fn rank_change(e: &Effect) -> Option<Held> {
    let Effect::LeaderboardRankChanged {
        board_id,
        run,
        group,
        user_id,
        rank,
        previous_rank,
        value,
        previous_value,
        ..
    } = e
    else {
        return None;
    };
    Some(Held::Rank {
        board_id: *board_id,
        run: *run,
        group: group.clone(),
        user_id: user_id.clone(),
        rank: *rank,
        value: *value,
        previous_rank: *previous_rank,
        previous_value: *previous_value,
    })
}

/// The windows one batch of the outbox consumer reads and writes, written back with the
/// batch.
#[derive(Default)]
pub struct Batch {
    rows: HashMap<Vec<u8>, Slot>,
}

/// One key in a batch: the window's end as stored, and the row now.
type Slot = (Option<DateTime<Utc>>, Option<Row>);

impl Batch {
    /// Admits `change` at `now`: the event to deliver now when it is a leading edge.
    pub async fn admit(
        &mut self,
        space: &Space,
        store: &Store,
        catalog: &Catalog,
        change: Held,
        now: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        let key = scoped_key(space.scope, change.key());
        let row = match self.rows.get(&key) {
            Some((_, row)) => row.clone(),
            None => {
                let row = read_row(store, &key)?;
                self.rows.insert(
                    key.clone(),
                    (row.as_ref().map(|r| r.window.ends), row.clone()),
                );
                row
            }
        };
        let mut reported = row.as_ref().and_then(|r| r.reported);
        let mut window = row.map(|r| r.window);
        let event = match throttle::admit(&mut window, change, now) {
            Some(change) => {
                reported = reported_after(&change).or(reported);
                render(&space.users, catalog, &change, None, now).await?
            }
            None => None,
        };
        if let Some(slot) = self.rows.get_mut(&key) {
            slot.1 = window.map(|window| Row { window, reported });
        }
        Ok(event)
    }

    /// Writes the windows and their timers into `commit`.
    pub fn write(self, commit: &mut Commit) -> Result<(), StoreError> {
        for (key, (stored, row)) in self.rows {
            write_row(commit, &key, stored, row.as_ref())?;
        }
        Ok(())
    }
}

/// Writes `key`'s window row (or removes it) and moves its timer from `stored` to the
/// window's end.
fn write_row(
    commit: &mut Commit,
    key: &[u8],
    stored: Option<DateTime<Utc>>,
    row: Option<&Row>,
) -> Result<(), StoreError> {
    let ends = row.map(|r| r.window.ends);
    commit.consumer_state(ConsumerId::WEBHOOKS, &window_key(key), row)?;
    if stored != ends {
        if let Some(old) = stored {
            commit.consumer_state::<u8>(ConsumerId::WEBHOOKS, &timer_key(old, key), None)?;
        }
        if let Some(new) = ends {
            commit.consumer_state(ConsumerId::WEBHOOKS, &timer_key(new, key), Some(&0u8))?;
        }
    }
    Ok(())
}

/// The standing a delivered `rank_changed` reported as current.
fn reported_after(held: &Held) -> Option<Reported> {
    match held {
        Held::Rank {
            run, rank, value, ..
        } => Some(Reported {
            run: *run,
            rank: *rank,
            value: rank.map(|_| *value),
        }),
        _ => None,
    }
}

/// The id of the trailing delivery of `key`'s window ending at `ends`: derived, so a
/// closing repeated after a crash gives the same id.
fn trailing_event_id(key: &[u8], ends: DateTime<Utc>) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"kudos-webhook-trailing/");
    h.update(key);
    h.update(ends.timestamp_millis().to_be_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The payload of a throttled change, with the user as they are now. `reported`: what the
/// previous delivery of a `rank_changed` said (its `previous*` otherwise come from the
/// change). `None` when there is nothing to say (the board, system or user is gone, or a
/// rank that moved and came back).
async fn render(
    users: &UserShards,
    catalog: &Catalog,
    held: &Held,
    reported: Option<Reported>,
    now: DateTime<Utc>,
) -> Result<Option<Event>, StoreError> {
    // A user that cannot be read now fails the batch (it is retried); one that does not
    // exist has nothing to be told.
    let profile = |user_id: &str| {
        let users = users.clone();
        let user_id = user_id.to_string();
        async move {
            users
                .query(&user_id, ProfileQuery)
                .await
                .map_err(|e| StoreError::Unavailable(format!("user {user_id}: {e}")))
        }
    };
    let event_type = held.event_type();
    let payload = match held {
        Held::Points {
            user_id,
            system_id,
            awards,
            added,
            total,
            level,
        } => {
            let Some(system) = catalog.points_system(*system_id) else {
                return Ok(None);
            };
            let Some(user) = profile(user_id).await? else {
                return Ok(None);
            };
            let tz = user
                .tz
                .as_deref()
                .and_then(|t| t.parse::<chrono_tz::Tz>().ok())
                .unwrap_or(chrono_tz::UTC);
            let level = level
                .filter(|(from, to)| from != to)
                .map(|(_, to)| to.and_then(|id| catalog.points_level_any(id)));
            payloads::points_changed(
                &user,
                catalog,
                system,
                payloads::PointsChange {
                    awards,
                    added: *added,
                    total: *total,
                    level,
                },
                now.with_timezone(&tz).date_naive(),
            )
        }
        Held::Board { board_id, top, .. } => {
            let Some(board) = catalog.leaderboard(*board_id) else {
                return Ok(None);
            };
            payloads::leaderboard_rankings(event_type, board, catalog, top, now)
        }
        Held::Rank {
            board_id,
            run,
            user_id,
            rank,
            value,
            previous_rank,
            previous_value,
            ..
        } => {
            let previous = match reported {
                Some(r) if r.run == *run => (r.rank, r.value),
                _ => (*previous_rank, *previous_value),
            };
            if previous.0 == *rank {
                return Ok(None);
            }
            let Some(board) = catalog.leaderboard(*board_id) else {
                return Ok(None);
            };
            let Some(user) = profile(user_id).await? else {
                return Ok(None);
            };
            payloads::rank_changed(
                &user,
                board,
                catalog,
                (*rank, rank.map(|_| *value)),
                previous,
                now,
            )
        }
    };
    Ok(Some(Event {
        event_type,
        payload,
    }))
}

/// Closes windows whose end is reached, queueing each held change with the latest state
/// (see the module docs), until shutdown.
pub async fn run_trailing(
    consumer: WebhookConsumer,
    store: Store,
    shutdown: CancellationToken,
) -> Result<(), String> {
    // Under the test clock, windows close when the clock is moved ([`close_until`]).
    let manual = consumer.clock.as_manual().is_some();
    loop {
        if !manual {
            let now = consumer.clock.now();
            let (_, queued) = close_due(&consumer, &store, now, false)
                .await
                .map_err(|e| e.to_string())?;
            if queued > 0 {
                consumer.wake.notify_one();
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Closes every window ended by `now` as if time had passed: each at its own end, in
/// order, including the windows those closings open (the test clock's move, SPEC §11.2.3).
/// Returns how many deliveries were queued.
pub async fn close_until(
    consumer: &WebhookConsumer,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    loop {
        let (closed, n) = close_due(consumer, store, now, true).await?;
        queued += n;
        if closed == 0 {
            break;
        }
    }
    if queued > 0 {
        consumer.wake.notify_one();
    }
    Ok(queued)
}

/// One pass: the windows ended by `now`, in one batch, each closed at `now` or, `stepwise`,
/// at its own end. Returns how many windows it closed and how many deliveries it queued.
async fn close_due(
    consumer: &WebhookConsumer,
    store: &Store,
    now: DateTime<Utc>,
    stepwise: bool,
) -> Result<(usize, usize), StoreError> {
    let timers: Vec<(Vec<u8>, u8)> =
        store
            .inbox()
            .state_with_prefix_first(ConsumerId::WEBHOOKS, &[TIMER_ROW], CLOSE_BATCH)?;
    let due: Vec<(DateTime<Utc>, Vec<u8>)> = timers
        .into_iter()
        .filter_map(|(rest, _)| {
            let millis = i64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
            Some((DateTime::from_timestamp_millis(millis)?, rest[8..].to_vec()))
        })
        .take_while(|(ends, _)| *ends <= now)
        .collect();
    if due.is_empty() {
        return Ok((0, 0));
    }
    let closed = due.len();
    let _windows = consumer.throttle.lock().await;
    let mut commit = Commit::new();
    let mut queued = 0;
    for (ends, key) in due {
        let now = if stepwise { ends } else { now };
        let Some(row) = read_row(store, &key)?.filter(|r| r.window.ends == ends) else {
            // A timer left behind by a window that moved on: nothing to close.
            commit.consumer_state::<u8>(ConsumerId::WEBHOOKS, &timer_key(ends, &key), None)?;
            continue;
        };
        let mut reported = row.reported;
        let mut window = Some(row.window);
        if let Some(held) = throttle::close(&mut window, now) {
            let space = consumer.spaces.get(scope_of_key(&key))?;
            let catalog = space.catalog.get();
            match render(&space.users, &catalog, &held, reported, now).await? {
                Some(event) => {
                    let id = trailing_event_id(&key, ends);
                    queued += queue(&mut commit, &catalog, &event, id, now)?;
                    reported = reported_after(&held).or(reported);
                }
                // Nothing to deliver: the key is quiet again.
                None => window = None,
            }
        }
        let row = window.map(|window| Row { window, reported });
        write_row(&mut commit, &key, Some(ends), row.as_ref())?;
    }
    store.commit(commit).await?;
    Ok((closed, queued))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn award(awarded: i64, total: i64) -> Award {
        Award {
            id: Uuid::new_v4(),
            trigger_id: Uuid::nil(),
            awarded,
            total,
            at: DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap(),
            boosts: Vec::new(),
        }
    }

    fn points(awards: Vec<Award>, level: Option<(Option<Uuid>, Option<Uuid>)>) -> Held {
        Held::Points {
            user_id: "u".into(),
            system_id: Uuid::nil(),
            added: awards.iter().map(|a| a.awarded).sum(),
            total: awards.last().map_or(0, |a| a.total),
            awards,
            level,
        }
    }

    #[test]
    fn held_points_sum_what_was_added_keep_the_latest_total_and_the_level_span() {
        let (l1, l2, l3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut held = points(vec![award(5, 5)], Some((None, Some(l1))));
        held.coalesce(points(vec![award(3, 8)], None));
        held.coalesce(points(vec![award(10, 18)], Some((Some(l1), Some(l2)))));
        held.coalesce(points(vec![award(2, 20)], Some((Some(l2), Some(l3)))));
        let Held::Points {
            awards,
            added,
            total,
            level,
            ..
        } = held
        else {
            unreachable!()
        };
        assert_eq!((added, total, awards.len()), (20, 20, 4));
        assert_eq!(level, Some((None, Some(l3))));
    }

    #[test]
    fn held_points_keep_only_the_latest_awards_but_count_them_all() {
        let mut held = points(vec![award(1, 1)], None);
        for i in 2..=(HELD_AWARDS as i64 + 50) {
            held.coalesce(points(vec![award(1, i)], None));
        }
        let Held::Points {
            awards,
            added,
            total,
            ..
        } = held
        else {
            unreachable!()
        };
        assert_eq!(awards.len(), HELD_AWARDS);
        assert_eq!(awards.last().map(|a| a.total), Some(total));
        assert_eq!(added, HELD_AWARDS as i64 + 50);
    }

    #[test]
    fn a_held_rank_keeps_the_standing_before_the_window_within_a_run() {
        let rank = |run, rank, previous_rank| Held::Rank {
            board_id: Uuid::nil(),
            run,
            group: Vec::new(),
            user_id: "u".into(),
            rank: Some(rank),
            value: f64::from(rank),
            previous_rank: Some(previous_rank),
            previous_value: Some(f64::from(previous_rank)),
        };
        let mut held = rank(1, 4, 5);
        held.coalesce(rank(1, 2, 4));
        assert!(matches!(
            held,
            Held::Rank {
                rank: Some(2),
                previous_rank: Some(5),
                ..
            }
        ));
        held.coalesce(rank(2, 1, 3));
        assert!(matches!(
            held,
            Held::Rank {
                run: 2,
                rank: Some(1),
                previous_rank: Some(3),
                ..
            }
        ));
    }

    #[test]
    fn keys_separate_users_systems_boards_and_groups() {
        let board = |group: Vec<&str>| Held::Board {
            board_id: Uuid::nil(),
            run: 1,
            group: group.into_iter().map(String::from).collect(),
            top: Vec::new(),
        };
        // Length prefixes: ["ab"] and ["a", "b"] are different groups.
        assert_ne!(board(vec!["ab"]).key(), board(vec!["a", "b"]).key());
        assert_eq!(board(vec!["a"]).key(), board(vec!["a"]).key());
        let tenant = Scope {
            environment: 1,
            tenant: 7,
        };
        let key = board(vec!["a"]).key();
        assert_eq!(scope_of_key(&scoped_key(tenant, key.clone())), tenant);
        assert_eq!(scoped_key(Scope::DEFAULT, key.clone()), key);
        assert_eq!(scope_of_key(&key), Scope::DEFAULT);
        assert_ne!(scoped_key(tenant, key.clone()), key);
        let mut other = points(vec![award(1, 1)], None);
        if let Held::Points { user_id, .. } = &mut other {
            *user_id = "v".into();
        }
        assert_ne!(points(vec![award(1, 1)], None).key(), other.key());
    }
}
