//! One leaderboard's standings: per run and breakdown group, the users' values and their
//! ranking. Pure: it folds placements (SPEC §7.4) and reports what each one changed (the
//! event response's rank, previous rank and threshold, and who was evicted), which the board
//! actor turns into effects and durable entries.

use std::collections::HashMap;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::placement::BoardChange;
use super::ranking::{Moved, Ranking, TiePolicy};

/// A run and breakdown group.
pub type GroupKey = (u64, Vec<String>);

/// What one placement did, for the event response and the rank-change effects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub previous_rank: Option<usize>,
    pub rank: Option<usize>,
    pub previous_value: Option<f64>,
    pub value: f64,
    /// The threshold after the change (SPEC §7.7).
    pub threshold: f64,
    /// A participant pushed out of the cut by this change (SPEC §7.4.4).
    pub evicted: Option<String>,
    /// The reach sequence number given to the user's value.
    pub reached: u64,
    /// The user's 0-based positions in the group's order before and after (who else moved).
    #[serde(skip)]
    pub moved: Moved,
    /// The group the user left for this one (new attributes), and their position there.
    #[serde(skip)]
    pub left: Option<(Vec<String>, usize)>,
}

/// A user's durable entry in a group: what the ranking is rebuilt from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub value: f64,
    pub reached: u64,
}

/// A borrowed `(run, user)` key: looks up `member_of` without allocating (it hashes like
/// the owned tuple).
#[derive(Hash)]
struct Member<'a>(u64, &'a str);

impl hashbrown::Equivalent<(u64, String)> for Member<'_> {
    fn equivalent(&self, key: &(u64, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// The standings of one board.
#[derive(Default)]
pub struct Board {
    groups: HashMap<GroupKey, Ranking>,
    /// Which group each user of a run is in (a user with new attributes moves, §7.4.6), and
    /// their zone (the days of their history when others move them).
    member_of: hashbrown::HashMap<(u64, String), (Vec<String>, Tz), std::hash::RandomState>,
    /// The last reach sequence number handed out.
    seq: u64,
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores one durable entry (at start; entries come in any order).
    pub fn restore(&mut self, key: &GroupKey, user: &str, entry: Entry, tz: Tz) {
        self.seq = self.seq.max(entry.reached);
        self.groups
            .entry(key.clone())
            .or_default()
            .set(user, entry.value, entry.reached);
        self.member_of
            .insert((key.0, user.to_string()), (key.1.clone(), tz));
    }

    pub fn group(&self, key: &GroupKey) -> Option<&Ranking> {
        self.groups.get(key)
    }

    pub fn group_mut(&mut self, key: &GroupKey) -> Option<&mut Ranking> {
        self.groups.get_mut(key)
    }

    /// Every group of every run.
    pub fn groups_mut(&mut self) -> impl Iterator<Item = (&GroupKey, &mut Ranking)> {
        self.groups.iter_mut()
    }

    /// The group `user` is in for `run`, if they have a value there.
    pub fn group_of(&self, run: u64, user: &str) -> Option<&Vec<String>> {
        self.member_of.get(&Member(run, user)).map(|(g, _)| g)
    }

    /// The zone `user` had at their last change in `run`.
    pub fn zone_of(&self, run: u64, user: &str) -> Option<Tz> {
        self.member_of.get(&Member(run, user)).map(|(_, tz)| *tz)
    }

    /// Every group of `run`.
    pub fn groups_of(&self, run: u64) -> impl Iterator<Item = (&Vec<String>, &Ranking)> {
        self.groups
            .iter()
            .filter(move |((r, _), _)| *r == run)
            .map(|((_, g), ranking)| (g, ranking))
    }

    /// Applies `change` for `user` in `run`/`group` with the board's cut `max`. A user whose
    /// group changed takes their value along (SPEC §7.4.6). Returns what changed, and the
    /// durable entries to write (`None`: remove) keyed by group.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        user: &str,
        tz: Tz,
        run: u64,
        group: &[String],
        change: BoardChange,
        max: usize,
        tie: TiePolicy,
    ) -> (Applied, Vec<(GroupKey, Option<Entry>)>) {
        let mut writes = Vec::new();
        let key: GroupKey = (run, group.to_vec());
        let mut carried = None;
        let moved_from = self
            .member_of
            .get(&Member(run, user))
            .map(|(g, _)| g)
            .filter(|g| g.as_slice() != group)
            .cloned();
        let mut left = None;
        if let Some(old) = moved_from {
            let old_key = (run, old);
            if let Some(ranking) = self.groups.get_mut(&old_key) {
                carried = ranking.value(user);
                if let Some(position) = ranking.remove(user) {
                    left = Some((old_key.1.clone(), position));
                }
            }
            writes.push((old_key, None));
        }
        let ranking = self.groups.entry(key.clone()).or_default();
        let previous_rank = ranking.rank(user, max, tie);
        let previous_value = ranking.value(user).or(carried);
        let value = match change {
            BoardChange::Add(delta) => previous_value.unwrap_or(0.0) + delta,
            BoardChange::Set(v) => v,
        };
        // The last participant before the change: evicted if a newcomer pushes it out.
        let last_before = ranking
            .page(max.saturating_sub(1), 1, max, tie)
            .first()
            .map(|(u, _, _)| (*u).to_string());
        let reached = if Some(value) == previous_value {
            ranking.reached(user).unwrap_or(self.seq)
        } else {
            self.seq += 1;
            self.seq
        };
        let moved = ranking.set(user, value, reached);
        let rank = ranking.rank(user, max, tie);
        let evicted = last_before.filter(|last| {
            last != user
                && previous_rank.is_none()
                && rank.is_some()
                && ranking.rank(last, max, tie).is_none()
        });
        let threshold = ranking.threshold(max);
        match self.member_of.get_mut(&Member(run, user)) {
            Some(m) => {
                if m.0.as_slice() != group {
                    m.0 = group.to_vec();
                }
                m.1 = tz;
            }
            None => {
                self.member_of
                    .insert((run, user.to_string()), (group.to_vec(), tz));
            }
        }
        writes.push((key, (value > 0.0).then_some(Entry { value, reached })));
        (
            Applied {
                previous_rank,
                rank,
                previous_value,
                value,
                threshold,
                evicted,
                reached,
                moved,
                left,
            },
            writes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_7_8_step_by_step() {
        let mut b = Board::new();
        let tie = TiePolicy::FirstReached;
        let add = |b: &mut Board, u: &str, v: f64| {
            b.apply(u, Tz::UTC, 0, &[], BoardChange::Add(v), 2, tie).0
        };
        assert_eq!(add(&mut b, "alice", 500.0).rank, Some(1));
        let bob = add(&mut b, "bob", 300.0);
        assert_eq!((bob.rank, bob.threshold), (Some(2), 300.0));
        let carol = add(&mut b, "carol", 300.0);
        assert_eq!((carol.rank, carol.threshold), (None, 300.0), "not > 300");
        let carol = add(&mut b, "carol", 1.0);
        assert_eq!(carol.rank, Some(2));
        assert_eq!(carol.evicted.as_deref(), Some("bob"));
        assert_eq!(carol.previous_rank, None);
        // Alice reaches 600 first, then Carol: Alice stays first.
        add(&mut b, "alice", 100.0);
        let carol = add(&mut b, "carol", 299.0);
        assert_eq!(
            (carol.value, carol.rank, carol.previous_rank),
            (600.0, Some(2), Some(2))
        );
    }

    #[test]
    fn a_new_group_takes_the_value_along_and_entries_follow() {
        let mut b = Board::new();
        let tie = TiePolicy::FirstReached;
        let fr = vec!["FR".to_string()];
        let de = vec!["DE".to_string()];
        b.apply("u", Tz::UTC, 0, &fr, BoardChange::Add(10.0), 10, tie);
        let (moved, writes) = b.apply("u", Tz::UTC, 0, &de, BoardChange::Add(5.0), 10, tie);
        assert_eq!((moved.previous_value, moved.value), (Some(10.0), 15.0));
        assert_eq!(writes[0], ((0, fr.clone()), None), "left the old group");
        assert!(b.group(&(0, fr)).is_some_and(Ranking::is_empty));
        // Restoring the written entries gives the same standing.
        let mut restored = Board::new();
        for (key, entry) in writes {
            if let Some(e) = entry {
                restored.restore(&key, "u", e, Tz::UTC);
            }
        }
        let ranking = restored.group(&(0, de)).expect("group");
        assert_eq!(ranking.value("u"), Some(15.0));
        // Values at or below zero leave the ranking.
        let (gone, _) = b.apply(
            "u",
            Tz::UTC,
            0,
            &["DE".to_string()],
            BoardChange::Add(-15.0),
            10,
            tie,
        );
        assert_eq!((gone.rank, gone.value), (None, 0.0));
    }
}
