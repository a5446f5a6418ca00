//! Secondary state kept beside the journal, written only in commits: members (every created
//! user; jobs walk them), counters (users, achievement completions), owners (pause → user)
//! and idempotency keys. This module holds the read side and the key formats.

use crate::keys::{self, Scope, StreamId, StreamKind, Tag};
use crate::Result;

/// `t | instant | stream | slot`: an idempotency key by the time it was first seen.
pub(crate) fn age_key(at_ms: i64, stream: &StreamId, slot: &[u8]) -> Vec<u8> {
    let mut k = vec![Tag::IdempotencyAge as u8];
    k.extend_from_slice(&keys::instant(at_ms));
    stream.encode(&mut k);
    k.extend_from_slice(slot);
    k
}

pub(crate) fn idempotency_key(stream: &StreamId, slot: &[u8]) -> Vec<u8> {
    let mut k = keys::stream_key(Tag::Idempotency, stream);
    k.extend_from_slice(slot);
    k
}

/// Read access to members, counters, owners and idempotency keys.
#[derive(Clone)]
pub struct Indexes {
    pub(crate) tree: sled::Tree,
}

impl Indexes {
    /// Whether `stream` was marked as a member (a created user).
    pub fn is_member(&self, stream: &StreamId) -> Result<bool> {
        Ok(self
            .tree
            .contains_key(keys::stream_key(Tag::Member, stream))?)
    }

    /// Ids of every member stream of `kind` in `scope`, in key order.
    pub fn members(
        &self,
        kind: StreamKind,
        scope: Scope,
    ) -> impl Iterator<Item = Result<String>> + '_ {
        let mut prefix = vec![Tag::Member as u8, kind as u8];
        scope.encode(&mut prefix);
        self.tree
            .scan_prefix(prefix)
            .keys()
            .filter_map(|k| match k {
                Err(e) => Some(Err(e.into())),
                Ok(k) => StreamId::decode(&k[1..]).map(|(s, _)| Ok(s.id)),
            })
    }

    /// Every counter of `scope` whose name starts with `prefix`, in name order, with the
    /// name after the prefix (counters at 0 included).
    pub fn counters_with_prefix(&self, scope: Scope, prefix: &str) -> Result<Vec<(String, u64)>> {
        let key = keys::scoped_key(Tag::Counter, scope, prefix.as_bytes());
        let skip = key.len();
        let mut out = Vec::new();
        for row in self.tree.scan_prefix(&key) {
            let (k, v) = row?;
            let name = String::from_utf8_lossy(&k[skip..]).into_owned();
            let value = <[u8; 8]>::try_from(v.as_ref()).map_or(0, u64::from_be_bytes);
            out.push((name, value));
        }
        Ok(out)
    }

    /// The current value of counter `name` in `scope` (0 when never counted).
    pub fn counter(&self, scope: Scope, name: &str) -> Result<u64> {
        Ok(read_counter(
            &self.tree,
            &keys::scoped_key(Tag::Counter, scope, name.as_bytes()),
        )?)
    }

    /// The stream that owns `entity`, if recorded.
    pub fn owner(&self, scope: Scope, entity: &str) -> Result<Option<StreamId>> {
        Ok(self
            .tree
            .get(keys::scoped_key(Tag::Owner, scope, entity.as_bytes()))?
            .and_then(|v| StreamId::decode(&v).map(|(s, _)| s)))
    }

    /// What idempotency `slot` of `stream` produced, and when it was first seen (ms).
    pub fn idempotency(&self, stream: &StreamId, slot: &[u8]) -> Result<Option<(i64, Vec<u8>)>> {
        Ok(self.tree.get(idempotency_key(stream, slot))?.and_then(|v| {
            let at = i64::from_be_bytes(v.get(..8)?.try_into().ok()?);
            Some((at, v[8..].to_vec()))
        }))
    }

    /// Up to `limit` idempotency keys first seen before `before_ms`, as a commit that removes
    /// them (with their age entries). Empty when nothing expired. A key used again after it
    /// expired has a newer row: only its old age entry goes (checked when the commit is
    /// written, so a re-use racing with the pruning is safe too).
    pub fn expired_idempotency(&self, before_ms: i64, limit: usize) -> Result<crate::Commit> {
        let mut commit = crate::Commit::new();
        let start = vec![Tag::IdempotencyAge as u8];
        let mut end = start.clone();
        end.extend_from_slice(&keys::instant(before_ms));
        for item in self.tree.range(start..end).take(limit) {
            let (age, _) = item?;
            let Some((stream, slot)) = StreamId::decode(&age[9..]) else {
                continue;
            };
            commit.idempotency_expired(&age, idempotency_key(&stream, slot), before_ms);
        }
        Ok(commit)
    }
}

pub(crate) fn read_counter(tree: &sled::Tree, key: &[u8]) -> std::result::Result<u64, sled::Error> {
    Ok(tree
        .get(key)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
}
