//! Inbox rows: the durable half of the effect path (ARCHITECTURE.md, "Effects and their
//! consumers"). A producer's commit writes one row per consumer that must see a record's
//! effects; the consumer applies the row and removes it in its own commit, together with the
//! state the row changed. A consumer that was down finds its rows on start, so nothing
//! acknowledged loses an effect, and since "applied" and "removed" are one batch, nothing is
//! applied twice. The in-memory effect bus only wakes consumers early.

use serde::de::DeserializeOwned;

use crate::keys::{self, StreamId, Tag};
use crate::{codec, Result};

/// Which consumer an inbox row is for. The values are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(pub u8);

impl ConsumerId {
    /// Leaderboard actors (one inbox per board is the board's own key space).
    pub const LEADERBOARDS: ConsumerId = ConsumerId(1);
    /// The webhook dispatcher.
    pub const WEBHOOKS: ConsumerId = ConsumerId(2);
    /// The effect tally used by the durability tests.
    pub const TEST_TALLY: ConsumerId = ConsumerId(200);
}

pub(crate) fn row_key(consumer: ConsumerId, stream: &StreamId, seq: u64) -> Vec<u8> {
    let mut k = vec![Tag::Inbox as u8, consumer.0];
    stream.encode(&mut k);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn state_key(consumer: ConsumerId, key: &[u8]) -> Vec<u8> {
    let mut k = vec![Tag::ConsumerState as u8, consumer.0];
    k.extend_from_slice(key);
    k
}

/// One pending inbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxRow<P> {
    pub stream: StreamId,
    pub seq: u64,
    pub payload: P,
}

/// Read access to inbox rows and consumer state.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) tree: sled::Tree,
}

impl Inbox {
    /// Up to `limit` pending rows of `consumer`, per stream in seq order.
    pub fn pending<P: DeserializeOwned>(
        &self,
        consumer: ConsumerId,
        limit: usize,
    ) -> Result<Vec<InboxRow<P>>> {
        let mut out = Vec::new();
        for item in self
            .tree
            .scan_prefix([Tag::Inbox as u8, consumer.0])
            .take(limit)
        {
            let (k, v) = item?;
            let Some((stream, rest)) = StreamId::decode(&k[2..]) else {
                continue;
            };
            let Some(seq) = keys::trailing_seq(rest) else {
                continue;
            };
            let payload = codec::decode(&v, || format!("inbox row {stream}#{seq}"))?;
            out.push(InboxRow {
                stream,
                seq,
                payload,
            });
        }
        Ok(out)
    }

    /// Like [`Inbox::state_with_prefix`], but at most the first `limit` rows in key order.
    pub fn state_with_prefix_first<V: DeserializeOwned>(
        &self,
        consumer: ConsumerId,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, V)>> {
        let mut out = Vec::new();
        let full = state_key(consumer, prefix);
        for item in self.tree.scan_prefix(&full).take(limit) {
            let (k, v) = item?;
            let key = k[full.len()..].to_vec();
            let value = codec::decode(&v, || format!("consumer {} state", consumer.0))?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// The pending rows of `consumer` for entries of `stream` before `seq`, in seq order.
    pub fn earlier<P: DeserializeOwned>(
        &self,
        consumer: ConsumerId,
        stream: &StreamId,
        seq: u64,
    ) -> Result<Vec<InboxRow<P>>> {
        let mut out = Vec::new();
        for item in self
            .tree
            .range(row_key(consumer, stream, 0)..row_key(consumer, stream, seq))
        {
            let (k, v) = item?;
            let Some(earlier) = keys::trailing_seq(&k) else {
                continue;
            };
            let payload = codec::decode(&v, || format!("inbox row {stream}#{earlier}"))?;
            out.push(InboxRow {
                stream: stream.clone(),
                seq: earlier,
                payload,
            });
        }
        Ok(out)
    }

    /// Whether `consumer` still has the row of entry `seq` of `stream` (not applied yet).
    pub fn has_row(&self, consumer: ConsumerId, stream: &StreamId, seq: u64) -> Result<bool> {
        Ok(self.tree.contains_key(row_key(consumer, stream, seq))?)
    }

    /// Number of pending rows of `consumer`, counting at most `cap`.
    pub fn backlog(&self, consumer: ConsumerId, cap: usize) -> usize {
        self.tree
            .scan_prefix([Tag::Inbox as u8, consumer.0])
            .keys()
            .take(cap)
            .count()
    }

    /// The state rows of `consumer` whose key starts with `prefix` (keys without it).
    pub fn state_with_prefix<V: DeserializeOwned>(
        &self,
        consumer: ConsumerId,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, V)>> {
        let mut out = Vec::new();
        let full = state_key(consumer, prefix);
        for item in self.tree.scan_prefix(&full) {
            let (k, v) = item?;
            let key = k[full.len()..].to_vec();
            let value = codec::decode(&v, || format!("consumer {} state", consumer.0))?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// How many state rows of `consumer` start with `prefix` (counting at most `cap`), and
    /// the first one's key (without the prefix): keys only, no value is read.
    pub fn count_prefix(
        &self,
        consumer: ConsumerId,
        prefix: &[u8],
        cap: usize,
    ) -> Result<(usize, Option<Vec<u8>>)> {
        let full = state_key(consumer, prefix);
        let mut first = None;
        let mut n = 0;
        for k in self.tree.scan_prefix(&full).keys().take(cap) {
            let k = k?;
            if first.is_none() {
                first = Some(k[full.len()..].to_vec());
            }
            n += 1;
        }
        Ok((n, first))
    }

    /// The state row of `consumer` at exactly `key`.
    pub fn state_get<V: DeserializeOwned>(
        &self,
        consumer: ConsumerId,
        key: &[u8],
    ) -> Result<Option<V>> {
        match self.tree.get(state_key(consumer, key))? {
            Some(v) => Ok(Some(codec::decode(&v, || {
                format!("consumer {} state", consumer.0)
            })?)),
            None => Ok(None),
        }
    }

    /// The state rows of `consumer` with keys in `from..to`, lazily, in key order or
    /// newest-key first (`reverse`); keys are returned whole (without the consumer's tag).
    /// Lets a consumer page through rows it keeps on disk without loading them all.
    pub fn state_range<V: DeserializeOwned>(
        &self,
        consumer: ConsumerId,
        from: &[u8],
        to: &[u8],
        reverse: bool,
    ) -> impl Iterator<Item = Result<(Vec<u8>, V)>> + '_ {
        let range = self
            .tree
            .range(state_key(consumer, from)..state_key(consumer, to));
        let rows: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        rows.map(move |item| {
            let (k, v) = item?;
            let value = codec::decode(&v, || format!("consumer {} state", consumer.0))?;
            Ok((k[2..].to_vec(), value))
        })
    }

    /// Every state row of `consumer` (loaded once when the consumer starts).
    pub fn state<V: DeserializeOwned>(&self, consumer: ConsumerId) -> Result<Vec<(Vec<u8>, V)>> {
        let mut out = Vec::new();
        for item in self
            .tree
            .scan_prefix([Tag::ConsumerState as u8, consumer.0])
        {
            let (k, v) = item?;
            let key = k[2..].to_vec();
            let value = codec::decode(&v, || format!("consumer {} state", consumer.0))?;
            out.push((key, value));
        }
        Ok(out)
    }
}
