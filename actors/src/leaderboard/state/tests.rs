use chrono::TimeZone;

use super::*;
use crate::catalog::leaderboards::RankBy;
use crate::leaderboard::placement::BoardChange;
use crate::rules::runs::RunUnit;

fn def(max: u32, tie: TiePolicy) -> Leaderboard {
    Leaderboard {
        id: Uuid::from_u128(7),
        key: "weekly".into(),
        name: "Weekly".into(),
        description: None,
        status: LeaderboardStatus::Active,
        rank_by: RankBy::Metric {
            metric_id: Uuid::from_u128(1),
        },
        max_participants: max,
        start: NaiveDate::from_ymd_opt(2025, 1, 5).expect("date"),
        end: None,
        start_time: None,
        end_time: None,
        breakdown: Vec::new(),
        every: Some((RunUnit::Day, 7)),
        user_filters: Vec::new(),
        tie_policy: tie,
        created: Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("t"),
        deleted: false,
        ord: 1,
        activated: None,
    }
}

fn at(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, d, h, 0, 0)
        .single()
        .expect("t")
}

fn add(s: &mut BoardState, def: &Leaderboard, user: &str, v: f64, when: DateTime<Utc>) {
    s.apply(
        Some(def),
        &BoardRecord {
            user_id: user.into(),
            user_name: Some(user.to_uppercase()),
            tz: chrono_tz::UTC,
            at: when,
            placements: vec![Placement {
                board_id: def.id,
                run: 0,
                group: Vec::new(),
                change: BoardChange::Add(v),
                date: when.date_naive(),
            }],
        },
    );
}

/// (user, previous rank, rank) of every rank change a write hands out, sorted.
fn rank_changes(s: &mut BoardState, def: &Leaderboard) -> Vec<(String, Option<u32>, Option<u32>)> {
    let w = s
        .write(
            Some(def),
            Scope::DEFAULT,
            &[ConsumerId::TEST_TALLY],
            false,
            true,
        )
        .expect("write");
    let mut out: Vec<_> = w
        .published
        .map(|p| p.effects)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e {
            Effect::LeaderboardRankChanged {
                user_id,
                previous_rank,
                rank,
                ..
            } => Some((user_id, previous_rank, rank)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn ch(u: &str, p: Option<u32>, r: Option<u32>) -> (String, Option<u32>, Option<u32>) {
    (u.to_string(), p, r)
}

#[test]
fn spec_7_8_entering_and_eviction_are_rank_changes() {
    let d = def(2, TiePolicy::FirstReached);
    let mut s = BoardState::new(d.id);
    add(&mut s, &d, "alice", 500.0, at(6, 9));
    add(&mut s, &d, "bob", 300.0, at(6, 10));
    assert_eq!(
        rank_changes(&mut s, &d),
        vec![ch("alice", None, Some(1)), ch("bob", None, Some(2))]
    );
    // Carol at 300 is not > 300: nobody's rank changes.
    add(&mut s, &d, "carol", 300.0, at(6, 11));
    assert_eq!(rank_changes(&mut s, &d), vec![]);
    add(&mut s, &d, "carol", 1.0, at(6, 12));
    assert_eq!(
        rank_changes(&mut s, &d),
        vec![ch("bob", Some(2), None), ch("carol", None, Some(2))]
    );
}

#[test]
fn users_passed_by_a_mover_are_displaced_and_changes_coalesce_per_write() {
    let d = def(10, TiePolicy::FirstReached);
    let mut s = BoardState::new(d.id);
    for (u, v) in [("a", 10.0), ("b", 20.0), ("c", 30.0), ("d", 40.0)] {
        add(&mut s, &d, u, v, at(6, 9));
    }
    rank_changes(&mut s, &d);
    // a (4th) passes c and b: they move down one, d (above) is untouched.
    add(&mut s, &d, "a", 25.0, at(6, 10));
    assert_eq!(
        rank_changes(&mut s, &d),
        vec![
            ch("a", Some(4), Some(2)),
            ch("b", Some(3), Some(4)),
            ch("c", Some(2), Some(3))
        ]
    );
    // Two moves before one write: b passes a and c, then falls back. Nobody's rank differs
    // from the last write, so nothing is reported.
    add(&mut s, &d, "b", 16.0, at(6, 11));
    add(&mut s, &d, "b", -16.0, at(6, 12));
    assert_eq!(rank_changes(&mut s, &d), vec![]);
    // A user leaving (value to 0) moves everyone below up.
    add(&mut s, &d, "d", -40.0, at(6, 13));
    assert_eq!(
        rank_changes(&mut s, &d),
        vec![
            ch("a", Some(2), Some(1)),
            ch("b", Some(4), Some(3)),
            ch("c", Some(3), Some(2)),
            ch("d", Some(1), None)
        ]
    );
}

#[test]
fn shared_ranks_change_only_when_the_values_above_change() {
    let d = def(10, TiePolicy::Shared);
    let mut s = BoardState::new(d.id);
    for (u, v) in [("a", 10.0), ("b", 10.0), ("c", 30.0)] {
        add(&mut s, &d, u, v, at(6, 9));
    }
    rank_changes(&mut s, &d);
    // a rises to 30: ties c (both 1st); b drops from a shared 2nd to 3rd.
    add(&mut s, &d, "a", 20.0, at(6, 10));
    assert_eq!(
        rank_changes(&mut s, &d),
        vec![ch("a", Some(2), Some(1)), ch("b", Some(2), Some(3))]
    );
}

#[test]
fn rank_changes_are_exact_against_a_full_recount() {
    // Random moves on a small board: after each write, every user's reported previous rank
    // equals their rank at the previous write, and everyone whose rank changed is reported.
    for tie in [TiePolicy::FirstReached, TiePolicy::Shared] {
        recount(tie);
    }
}

fn recount(tie: TiePolicy) {
    let d = def(5, tie);
    let mut s = BoardState::new(d.id);
    let users = ["a", "b", "c", "d", "e", "f", "g"];
    let mut last: HashMap<String, Option<u32>> = HashMap::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for step in 0..300 {
        for _ in 0..(step % 3 + 1) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = users[(x % 7) as usize];
            // Small integers, so that shared ranks see ties.
            let v = ((x >> 8) % 8) as f64 - 3.0;
            add(&mut s, &d, u, v, at(6, 9));
        }
        let changes = rank_changes(&mut s, &d);
        let key: GroupKey = (0, Vec::new());
        let mut expected = Vec::new();
        for u in users {
            let now = s
                .board()
                .group(&key)
                .and_then(|r| r.rank(u, 5, tie))
                .map(|r| r as u32);
            let before = last.get(u).copied().flatten();
            if now != before {
                expected.push(ch(u, before, now));
            }
            last.insert(u.to_string(), now);
        }
        expected.sort();
        assert_eq!(changes, expected, "{tie:?} step {step}");
    }
}

#[test]
fn displaced_users_get_a_history_row_on_their_own_local_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &Default::default()).expect("open");
    let d = def(10, TiePolicy::FirstReached);
    let mut s = BoardState::new(d.id);
    // Bob in Tokyo at 20 (Jan 6 local), Alice in UTC passes him on Jan 6 at 20:00 UTC,
    // which is Jan 7 in Tokyo.
    s.apply(
        Some(&d),
        &BoardRecord {
            user_id: "bob".into(),
            user_name: None,
            tz: chrono_tz::Asia::Tokyo,
            at: at(6, 1),
            placements: vec![Placement {
                board_id: d.id,
                run: 0,
                group: Vec::new(),
                change: BoardChange::Add(20.0),
                date: NaiveDate::from_ymd_opt(2025, 1, 6).expect("d"),
            }],
        },
    );
    store
        .write(
            s.write(Some(&d), Scope::DEFAULT, &[], false, true)
                .expect("w")
                .commit,
        )
        .expect("write");
    add(&mut s, &d, "alice", 30.0, at(6, 20));
    store
        .write(
            s.write(Some(&d), Scope::DEFAULT, &[], false, true)
                .expect("w")
                .commit,
        )
        .expect("write");
    let h = standings::history(&store, d.id, 0, "bob", 10).expect("history");
    let days: Vec<(String, Option<u32>)> = h
        .iter()
        .map(|(date, row)| (date.to_string(), row.rank))
        .collect();
    assert_eq!(
        days,
        vec![
            ("2025-01-06".into(), Some(1)),
            ("2025-01-07".into(), Some(2))
        ]
    );
    // The rows rebuild the same standings, zone included.
    let mut loaded = BoardState::load(&store, d.id).expect("load");
    let key: GroupKey = (0, Vec::new());
    let r = loaded.board().group(&key).expect("group");
    assert_eq!(
        (
            r.rank("alice", 10, d.tie_policy),
            r.rank("bob", 10, d.tie_policy)
        ),
        (Some(1), Some(2))
    );
    assert_eq!(
        loaded.board().zone_of(0, "bob"),
        Some(chrono_tz::Asia::Tokyo)
    );
    // After a rebuild, the rebuilt ranks count as reported: a move that changes nobody's
    // rank reports nothing.
    add(&mut loaded, &d, "alice", 1.0, at(6, 21));
    assert_eq!(rank_changes(&mut loaded, &d), vec![]);
    add(&mut loaded, &d, "bob", 20.0, at(6, 22));
    assert_eq!(
        rank_changes(&mut loaded, &d),
        vec![ch("alice", Some(1), Some(2)), ch("bob", Some(2), Some(1))]
    );
}

#[test]
fn runs_are_announced_at_their_moments_spec_7_8() {
    let d = def(2, TiePolicy::FirstReached);
    let mut s = BoardState::new(d.id);
    let kinds = |e: &[Effect]| -> Vec<String> {
        e.iter()
            .map(|e| match e {
                Effect::LeaderboardStarted { run, .. } => format!("started {run}"),
                Effect::LeaderboardFinished { run, top, .. } => {
                    format!("finished {run} top {}", top.len())
                }
                other => format!("{other:?}"),
            })
            .collect()
    };
    // Before 10:00 UTC on the day before the start: nothing, due at that moment.
    let (e, runs, next) = s.announcements(Some(&d), at(4, 9));
    assert!(e.is_empty());
    assert_eq!(next, Some(at(4, 10)));
    s.runs = runs;
    let (e, runs, next) = s.announcements(Some(&d), at(4, 10));
    assert_eq!(kinds(&e), vec!["started 0"]);
    // Next: run 1 starts on Jan 11 10:00, before run 0 finishes on Jan 12 13:00.
    assert_eq!(next, Some(at(11, 10)));
    s.runs = runs;
    add(&mut s, &d, "alice", 500.0, at(6, 9));
    let (e, runs, next) = s.announcements(Some(&d), at(11, 10));
    assert_eq!(kinds(&e), vec!["started 1"]);
    assert_eq!(next, Some(at(12, 13)));
    s.runs = runs;
    let (e, runs, next) = s.announcements(Some(&d), at(12, 13));
    assert_eq!(kinds(&e), vec!["finished 0 top 1"]);
    assert_eq!(next, Some(at(18, 10)));
    s.runs = runs;
    // Nothing twice.
    let (e, _, _) = s.announcements(Some(&d), at(12, 14));
    assert!(e.is_empty());
}

#[test]
fn a_board_activated_late_starts_its_current_run_at_once_and_a_manual_finish_finishes_it() {
    let mut d = def(2, TiePolicy::FirstReached);
    let s0 = BoardState::new(d.id);
    // Activated on Jan 20 (run 2 = Jan 19..25): only run 2 is announced.
    let (e, runs, _) = s0.announcements(Some(&d), at(20, 8));
    assert!(matches!(
        e.as_slice(),
        [Effect::LeaderboardStarted { run: 2, .. }]
    ));
    let mut s = BoardState::new(d.id);
    s.runs = runs;
    // Finished by hand on Jan 21: run 2 ends that day and is finished at once.
    d.status = LeaderboardStatus::Finished;
    d.end = NaiveDate::from_ymd_opt(2025, 1, 21);
    let (e, _, next) = s.announcements(Some(&d), at(21, 8));
    assert!(matches!(
        e.as_slice(),
        [Effect::LeaderboardFinished { run: 2, .. }]
    ));
    assert_eq!(next, None);
    // Inactive boards announce nothing.
    d.status = LeaderboardStatus::Inactive;
    let (e, _, next) = BoardState::new(d.id).announcements(Some(&d), at(21, 8));
    assert!(e.is_empty() && next.is_none());
}

#[test]
fn a_user_moving_to_another_group_moves_everyone_below_up_in_the_old_one() {
    let d = def(10, TiePolicy::FirstReached);
    let mut s = BoardState::new(d.id);
    let place = |s: &mut BoardState, user: &str, group: &str, v: f64| {
        s.apply(
            Some(&d),
            &BoardRecord {
                user_id: user.into(),
                user_name: None,
                tz: chrono_tz::UTC,
                at: at(6, 9),
                placements: vec![Placement {
                    board_id: d.id,
                    run: 0,
                    group: vec![group.to_string()],
                    change: BoardChange::Add(v),
                    date: at(6, 9).date_naive(),
                }],
            },
        );
    };
    for (u, v) in [("a", 50.0), ("b", 40.0), ("c", 30.0)] {
        place(&mut s, u, "FR", v);
    }
    rank_changes(&mut s, &d);
    place(&mut s, "a", "DE", 0.0);
    let w = s
        .write(
            Some(&d),
            Scope::DEFAULT,
            &[ConsumerId::TEST_TALLY],
            false,
            true,
        )
        .expect("write");
    type Change = (Vec<String>, String, Option<u32>, Option<u32>);
    let mut got: Vec<Change> = Vec::new();
    let mut changed: Vec<Vec<String>> = Vec::new();
    for e in w.published.map(|p| p.effects).unwrap_or_default() {
        match e {
            Effect::LeaderboardRankChanged {
                group,
                user_id,
                previous_rank,
                rank,
                ..
            } => got.push((group, user_id, previous_rank, rank)),
            Effect::LeaderboardChanged { group, .. } => changed.push(group),
            _ => {}
        }
    }
    got.sort();
    let g = |x: &str| vec![x.to_string()];
    assert_eq!(
        got,
        vec![
            (g("DE"), "a".into(), None, Some(1)),
            (g("FR"), "a".into(), Some(1), None),
            (g("FR"), "b".into(), Some(2), Some(1)),
            (g("FR"), "c".into(), Some(3), Some(2)),
        ]
    );
    changed.sort();
    assert_eq!(changed, vec![g("DE"), g("FR")]);
}

#[test]
fn a_manual_finish_after_the_next_run_was_announced_finishes_that_run_too() {
    let mut d = def(2, TiePolicy::FirstReached);
    let mut s = BoardState::new(d.id);
    let (_, runs, _) = s.announcements(Some(&d), at(20, 8));
    s.runs = runs;
    // Run 3 (Jan 26..Feb 1) is announced at 10:00 UTC on Jan 25.
    let (e, runs, _) = s.announcements(Some(&d), at(25, 10));
    assert!(matches!(
        e.as_slice(),
        [Effect::LeaderboardStarted { run: 3, .. }]
    ));
    s.runs = runs;
    // Finished by hand that afternoon: the end (Jan 25) is in run 2, but run 3 was
    // announced, so both are finished.
    d.status = LeaderboardStatus::Finished;
    d.end = NaiveDate::from_ymd_opt(2025, 1, 25);
    let (e, _, next) = s.announcements(Some(&d), at(25, 14));
    let finished: Vec<u64> = e
        .iter()
        .filter_map(|e| match e {
            Effect::LeaderboardFinished { run, .. } => Some(*run),
            _ => None,
        })
        .collect();
    assert_eq!(finished, vec![2, 3]);
    assert_eq!(next, None);
}
