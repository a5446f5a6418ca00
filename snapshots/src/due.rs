//! The due index: when a stream next needs attention because time passed (a streak period
//! ending, a leaderboard run boundary, a webhook retry). Keys are `instant | target`, so a
//! range scan up to "now" yields due work in time order. Entries are written in the commit
//! of the record that scheduled them, so they are exactly as durable as that record.
//!
//! A target is typed: what kind of work ([`DueKind`]) for which stream. Later features add a
//! kind and a handler in the scheduler, not a new index.

use crate::keys::{self, StreamId, Tag};
use crate::Result;

/// What is due. The byte values are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DueKind {
    /// A user's streak period ends, a freeze is earned, an anniversary comes round.
    UserPeriodEnd = 1,
    /// A leaderboard run starts or ends.
    LeaderboardRunBoundary = 2,
    /// A points boost starts or ends.
    BoostWindow = 3,
    /// A webhook delivery is retried.
    WebhookRetry = 4,
    /// A "due" notification (streak about to be lost).
    NotificationDue = 5,
}

impl DueKind {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::UserPeriodEnd,
            2 => Self::LeaderboardRunBoundary,
            3 => Self::BoostWindow,
            4 => Self::WebhookRetry,
            5 => Self::NotificationDue,
            _ => return None,
        })
    }
}

/// One kind of due work for one stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DueTarget {
    pub kind: DueKind,
    pub stream: StreamId,
}

impl DueTarget {
    pub fn new(kind: DueKind, stream: StreamId) -> Self {
        Self { kind, stream }
    }

    pub(crate) fn key(&self, at_ms: i64) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + 8 + 1 + 9 + self.stream.id.len());
        k.push(Tag::Due as u8);
        k.extend_from_slice(&keys::instant(at_ms));
        k.push(self.kind as u8);
        self.stream.encode(&mut k);
        k
    }

    fn parse(k: &[u8]) -> Option<(i64, Self)> {
        if k.first() != Some(&(Tag::Due as u8)) {
            return None;
        }
        let at = keys::parse_instant(k.get(1..9)?)?;
        let kind = DueKind::from_byte(*k.get(9)?)?;
        let (stream, rest) = StreamId::decode(k.get(10..)?)?;
        rest.is_empty().then_some((at, Self { kind, stream }))
    }
}

/// Read access to the due index (writes go through a [`crate::Commit`]).
#[derive(Clone)]
pub struct DueIndex {
    pub(crate) tree: sled::Tree,
}

impl DueIndex {
    /// Up to `limit` entries due at or before `upto`, earliest first. They stay in the index
    /// until a commit moves or removes them (after the work is done).
    pub fn due_before(&self, upto: i64, limit: usize) -> Result<Vec<(i64, DueTarget)>> {
        let start = [Tag::Due as u8];
        let mut end = vec![Tag::Due as u8];
        end.extend_from_slice(&keys::instant(upto.saturating_add(1)));
        let mut out = Vec::new();
        for item in self.tree.range(start.to_vec()..end).take(limit) {
            let (k, _) = item?;
            match DueTarget::parse(&k) {
                Some(entry) => out.push(entry),
                None => tracing::warn!(key = ?k, "unreadable due entry skipped"),
            }
        }
        Ok(out)
    }

    /// Whether `target` is filed at `at_ms`.
    pub fn contains(&self, target: &DueTarget, at_ms: i64) -> Result<bool> {
        Ok(self.tree.contains_key(target.key(at_ms))?)
    }

    /// Entries due at or before `upto`, counting at most `cap` (an ops gauge of backlog that
    /// never scans the whole index).
    pub fn overdue(&self, upto: i64, cap: usize) -> Result<usize> {
        Ok(self.due_before(upto, cap)?.len())
    }

    /// Every filed entry (tests and diagnostics only: a full scan).
    pub fn all(&self) -> Result<Vec<(i64, DueTarget)>> {
        self.due_before(i64::MAX - 1, usize::MAX)
    }
}
