//! The order-statistic ranking of one leaderboard group (SPEC §7.4): every user with a
//! value > 0, ordered by value descending, then by who reached that value first. "Reached"
//! is a sequence number the board assigns in the order it applies updates, unique within a
//! group, so the user-id tie-break of §7.4.5 (equal reach instants) never has to decide. Update, rank of a user and the page at an offset are O(log n) (a two-level
//! B-tree with a Fenwick index, `indexset`).
//!
//! Participants are the first `max_participants` of that order; the threshold a newcomer
//! must exceed is the last participant's value once the group is full, else 0. Users
//! beyond the cut keep their values, so one whose value rises above the threshold enters
//! and the last participant is evicted (§7.4.4), and one evicted may re-enter.
//!
//! Memory per user: user ids are interned once in an arena (no `String` per entry), each
//! set entry is 24 bytes, each user's slot 24 bytes.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use indexset::BTreeSet;
use serde::{Deserialize, Serialize};

/// How equal values rank (Kudos extension, SPEC §11.5.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TiePolicy {
    /// The first to reach a value ranks higher (Trophy, §7.4.5): ranks 1, 2, 3, 4.
    #[default]
    FirstReached,
    /// Equal values share the better rank: 1, 2, 2, 4.
    Shared,
}

/// An `f64` as a `u64` whose natural order is the value's order, descending.
fn desc_key(value: f64) -> u64 {
    let bits = value.to_bits();
    let ascending = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    !ascending
}

fn value_of(key: u64) -> f64 {
    let ascending = !key;
    let bits = if ascending >> 63 == 1 {
        ascending & !(1 << 63)
    } else {
        !ascending
    };
    f64::from_bits(bits)
}

/// One ranked user: value (descending), when it was reached, interned id (identity only:
/// `reached` is unique within a group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    key: u64,
    reached: u64,
    user: u32,
}

/// User ids stored once, in one arena.
#[derive(Default)]
struct Interner {
    arena: String,
    spans: Vec<(u32, u32)>,
    table: HashTable<u32>,
    hasher: RandomState,
}

impl Interner {
    fn name(&self, id: u32) -> &str {
        let (start, len) = self.spans[id as usize];
        &self.arena[start as usize..(start + len) as usize]
    }

    fn find(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.table.find(hash, |&id| self.name(id) == name).copied()
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.find(name) {
            return id;
        }
        let id = u32::try_from(self.spans.len()).unwrap_or(u32::MAX);
        let start = u32::try_from(self.arena.len()).unwrap_or(u32::MAX);
        self.arena.push_str(name);
        self.spans
            .push((start, u32::try_from(name.len()).unwrap_or(u32::MAX)));
        let hash = self.hasher.hash_one(name);
        let (arena, spans, hasher) = (&self.arena, &self.spans, &self.hasher);
        self.table.insert_unique(hash, id, |&other| {
            let (s, l) = spans[other as usize];
            hasher.hash_one(&arena[s as usize..(s + l) as usize])
        });
        id
    }

    fn bytes(&self) -> usize {
        self.arena.capacity() + self.spans.capacity() * 8 + self.table.capacity() * 5
    }
}

/// What an update did to a user's standing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moved {
    /// 0-based positions before and after (`None`: not in the order, value ≤ 0).
    pub before: Option<usize>,
    pub after: Option<usize>,
}

/// Entries per B-tree node. Smaller nodes move less memory on insert and remove; larger
/// ones keep the index shallower. A sweep at 1M participants (`kudos-loadtest ranks`, see
/// docs/performance.md) put update + rank at p50 2.9 µs / p99 4.2 µs with 128, against
/// 3.9 / 6.9 µs with the crate's default of 1024.
const NODE_SIZE: usize = 128;

/// One group's ranking.
pub struct Ranking {
    set: BTreeSet<Entry>,
    /// Per interned user: its current entry, if ranked (value > 0).
    slots: Vec<Option<Entry>>,
    /// Per interned user: the rank last reported for it (0: none), so a board can tell
    /// whose rank changed since its last write.
    reported: Vec<u32>,
    names: Interner,
}

impl Default for Ranking {
    fn default() -> Self {
        Self {
            set: BTreeSet::with_maximum_node_size(NODE_SIZE),
            slots: Vec::new(),
            reported: Vec::new(),
            names: Interner::default(),
        }
    }
}

impl Ranking {
    pub fn new() -> Self {
        Self::default()
    }

    /// Users with a value > 0.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn entry(&self, user: &str) -> Option<Entry> {
        let id = self.names.find(user)?;
        self.slots.get(id as usize).copied().flatten()
    }

    /// Sets `user`'s value, reached at `reached` (a sequence number, unique in the group,
    /// growing with time: the earlier reach ranks higher on equal values). A value ≤ 0
    /// leaves the order.
    pub fn set(&mut self, user: &str, value: f64, reached: u64) -> Moved {
        let before = self.position(user);
        let id = self.names.intern(user);
        let idx = id as usize;
        if self.slots.len() <= idx {
            self.slots.resize(idx + 1, None);
        }
        if let Some(old) = self.slots[idx].take() {
            self.set.remove(&old);
        }
        if value > 0.0 && value.is_finite() {
            let entry = Entry {
                key: desc_key(value),
                reached,
                user: id,
            };
            self.set.insert(entry);
            self.slots[idx] = Some(entry);
        }
        Moved {
            before,
            after: self.position(user),
        }
    }

    /// Removes `user` from the order (their value is forgotten).
    pub fn remove(&mut self, user: &str) -> Option<usize> {
        let before = self.position(user);
        if let Some(id) = self.names.find(user) {
            if let Some(old) = self.slots.get_mut(id as usize).and_then(Option::take) {
                self.set.remove(&old);
            }
        }
        before
    }

    pub fn value(&self, user: &str) -> Option<f64> {
        self.entry(user).map(|e| value_of(e.key))
    }

    /// When the user reached their current value.
    pub fn reached(&self, user: &str) -> Option<u64> {
        self.entry(user).map(|e| e.reached)
    }

    /// 0-based position in the full order (participants or not).
    pub fn position(&self, user: &str) -> Option<usize> {
        let entry = self.entry(user)?;
        Some(self.position_of(&entry))
    }

    fn position_of(&self, entry: &Entry) -> usize {
        self.set.rank(entry)
    }

    /// The 1-based rank of `user` among the first `max` (participants), or `None`.
    pub fn rank(&self, user: &str, max: usize, tie: TiePolicy) -> Option<usize> {
        let entry = self.entry(user)?;
        let position = self.position_of(&entry);
        if position >= max {
            return None;
        }
        Some(match tie {
            TiePolicy::FirstReached => position + 1,
            TiePolicy::Shared => self.first_with_value(entry.key) + 1,
        })
    }

    /// The position of the first user with the value of `key`.
    fn first_with_value(&self, key: u64) -> usize {
        self.set.rank(&Entry {
            key,
            reached: 0,
            user: 0,
        })
    }

    /// The rank last reported for `user` (see [`Ranking::set_reported`]).
    pub fn reported(&self, user: &str) -> Option<u32> {
        let id = self.names.find(user)?;
        self.reported.get(id as usize).copied().filter(|r| *r > 0)
    }

    /// Records the rank reported for `user` (kept when they leave the order).
    pub fn set_reported(&mut self, user: &str, rank: Option<u32>) {
        let idx = self.names.intern(user) as usize;
        if self.reported.len() <= idx {
            self.reported.resize(idx + 1, 0);
        }
        self.reported[idx] = rank.unwrap_or(0);
    }

    /// Takes every participant's current rank as reported (after a rebuild from entries).
    pub fn report_all(&mut self, max: usize, tie: TiePolicy) {
        let ranked: Vec<(u32, u32)> = self
            .page(0, max, max, tie)
            .into_iter()
            .filter_map(|(user, _, rank)| Some((self.names.find(user)?, u32::try_from(rank).ok()?)))
            .collect();
        for (id, rank) in ranked {
            let idx = id as usize;
            if self.reported.len() <= idx {
                self.reported.resize(idx + 1, 0);
            }
            self.reported[idx] = rank;
        }
    }

    /// How many users have a value of at least `value`.
    pub fn count_at_least(&self, value: f64) -> usize {
        self.set.rank(&Entry {
            key: desc_key(value),
            reached: u64::MAX,
            user: u32::MAX,
        })
    }

    /// The value a newcomer must exceed to be a participant (SPEC §7.4.3): 0 until `max`
    /// users rank, then the last participant's value.
    pub fn threshold(&self, max: usize) -> f64 {
        if max == 0 || self.set.len() < max {
            return 0.0;
        }
        self.set.get_index(max - 1).map_or(0.0, |e| value_of(e.key))
    }

    /// Users at positions `offset..offset+limit`, cut at `max`: (user, value, rank).
    pub fn page(
        &self,
        offset: usize,
        limit: usize,
        max: usize,
        tie: TiePolicy,
    ) -> Vec<(&str, f64, usize)> {
        let end = offset.saturating_add(limit).min(max).min(self.set.len());
        if offset >= end {
            return Vec::new();
        }
        let mut shared_rank = 0;
        let mut last_key = None;
        self.set
            .range_idx(offset..end)
            .enumerate()
            .map(|(i, e)| {
                let position = offset + i;
                let rank = match tie {
                    TiePolicy::FirstReached => position + 1,
                    TiePolicy::Shared => {
                        if last_key != Some(e.key) {
                            shared_rank = self.first_with_value(e.key) + 1;
                            last_key = Some(e.key);
                        }
                        shared_rank
                    }
                };
                (self.names.name(e.user), value_of(e.key), rank)
            })
            .collect()
    }

    /// Approximate heap bytes held (entries, slots, interned ids).
    pub fn heap_bytes(&self) -> usize {
        self.set.len() * std::mem::size_of::<Entry>()
            + self.slots.capacity() * std::mem::size_of::<Option<Entry>>()
            + self.reported.capacity() * std::mem::size_of::<u32>()
            + self.names.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_order_values_descending() {
        let values = [-3.5, -0.0, 0.0, 0.25, 1.0, 300.0, 301.0, 1e9];
        for w in values.windows(2) {
            assert!(desc_key(w[0]) > desc_key(w[1]), "{w:?}");
        }
        for v in values {
            assert_eq!(value_of(desc_key(v)).to_bits(), v.to_bits());
        }
    }

    #[test]
    fn spec_7_8_example() {
        let mut r = Ranking::new();
        let max = 2;
        r.set("alice", 500.0, 1);
        r.set("bob", 300.0, 2);
        assert_eq!(r.threshold(max), 300.0);
        r.set("carol", 300.0, 3);
        assert_eq!(
            r.rank("carol", max, TiePolicy::FirstReached),
            None,
            "not > 300"
        );
        r.set("carol", 301.0, 4);
        assert_eq!(r.rank("carol", max, TiePolicy::FirstReached), Some(2));
        assert_eq!(r.rank("bob", max, TiePolicy::FirstReached), None, "evicted");
        r.set("alice", 600.0, 5);
        r.set("carol", 600.0, 6);
        assert_eq!(r.rank("alice", max, TiePolicy::FirstReached), Some(1));
        assert_eq!(r.rank("carol", max, TiePolicy::FirstReached), Some(2));
        assert_eq!(r.rank("carol", max, TiePolicy::Shared), Some(1));
        // Values ≤ 0 leave.
        r.set("alice", 0.0, 7);
        assert_eq!(r.value("alice"), None);
        assert_eq!(r.rank("carol", max, TiePolicy::FirstReached), Some(1));
        assert_eq!(
            r.rank("bob", max, TiePolicy::FirstReached),
            Some(2),
            "re-entered"
        );
    }

    #[test]
    fn shared_ties_rank_1_2_2_4() {
        let mut r = Ranking::new();
        r.set("d", 10.0, 1);
        r.set("b", 5.0, 2);
        r.set("c", 5.0, 3);
        r.set("a", 1.0, 4);
        let page = r.page(0, 10, 100, TiePolicy::Shared);
        let got: Vec<(&str, usize)> = page.iter().map(|(u, _, rank)| (*u, *rank)).collect();
        assert_eq!(got, vec![("d", 1), ("b", 2), ("c", 2), ("a", 4)]);
        let first: Vec<usize> = r
            .page(0, 10, 100, TiePolicy::FirstReached)
            .iter()
            .map(|(_, _, rank)| *rank)
            .collect();
        assert_eq!(first, vec![1, 2, 3, 4]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, i16, u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u8..40, -5i16..30, 0u8..3).prop_map(|(u, v, t)| Op::Set(u, v, t)),
            1 => (0u8..40).prop_map(Op::Remove),
        ]
    }

    fn user(u: u8) -> String {
        format!("user-{u}")
    }

    proptest! {
        /// Ranks, positions, pages and thresholds agree with a sorted `Vec` model.
        #[test]
        fn agrees_with_a_sorted_vec(ops in proptest::collection::vec(op(), 1..200), max in 1usize..12) {
            let mut r = Ranking::new();
            // user → (value, reached)
            let mut model: std::collections::BTreeMap<String, (f64, u64)> = Default::default();
            let mut clock = 0u64;
            for op in ops {
                match op {
                    Op::Set(u, v, t) => {
                        // Reach sequence numbers are unique; values tie often.
                        clock += 1 + u64::from(t);
                        let (name, value) = (user(u), f64::from(v) / 2.0);
                        r.set(&name, value, clock);
                        if value > 0.0 { model.insert(name, (value, clock)); } else { model.remove(&name); }
                    }
                    Op::Remove(u) => {
                        r.remove(&user(u));
                        model.remove(&user(u));
                    }
                }
                let mut sorted: Vec<(&String, &(f64, u64))> = model.iter().collect();
                sorted.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
                prop_assert_eq!(r.len(), sorted.len());
                for (i, (name, (value, _))) in sorted.iter().enumerate() {
                    prop_assert_eq!(r.position(name), Some(i));
                    prop_assert_eq!(r.rank(name, max, TiePolicy::FirstReached), (i < max).then_some(i + 1));
                    let shared = sorted.iter().position(|(_, (v, _))| v == value).map(|p| p + 1);
                    prop_assert_eq!(r.rank(name, max, TiePolicy::Shared), if i < max { shared } else { None });
                }
                let expected_threshold = if sorted.len() >= max { sorted[max - 1].1.0 } else { 0.0 };
                prop_assert_eq!(r.threshold(max), expected_threshold);
                let page: Vec<(String, f64)> = r.page(1, 5, max, TiePolicy::FirstReached).into_iter().map(|(u, v, _)| (u.to_string(), v)).collect();
                let want: Vec<(String, f64)> = sorted.iter().take(max).skip(1).take(5).map(|(u, (v, _))| ((*u).clone(), *v)).collect();
                prop_assert_eq!(page, want);
            }
        }
    }
}
