//! Typed identities and the byte layout of every key in the data tree.
//!
//! Everything a command writes lives in one sled tree so that one [`sled::Batch`] makes it
//! atomic. The first byte of a key says what the row is ([`Tag`]); the rest is built from
//! the pieces below, each length-prefixed or fixed-width so that no two rows can collide and
//! prefix scans return exactly one stream's rows.
//!
//! A [`StreamId`] is kind + scope + id. The scope (environment + tenant, SPEC §1.2, §9.1–9.2)
//! is in every key from the start, so multi-tenancy only adds scopes, never a key format.

use serde::{Deserialize, Serialize};

/// Where a stream, key or catalog lives: an environment plus an optional tenant.
///
/// Both are small numbers assigned when the environment or tenant is created (names live in
/// the catalog), so they cost 6 bytes per key. Tenant 0 means "no tenant".
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Scope {
    pub environment: u16,
    pub tenant: u32,
}

impl Scope {
    /// The production environment without tenants: the only scope until tenants exist.
    pub const DEFAULT: Scope = Scope {
        environment: 0,
        tenant: 0,
    };

    pub(crate) const LEN: usize = 6;

    /// The prefix of this scope's entries in the JSON meta tree (catalog, jobs, keys).
    pub fn meta_prefix(&self) -> String {
        format!("scope/{}/{}/", self.environment, self.tenant)
    }

    /// The scope a meta key of [`Scope::meta_prefix`] belongs to.
    pub fn of_meta_key(key: &str) -> Option<Scope> {
        let mut parts = key.strip_prefix("scope/")?.splitn(3, '/');
        let environment = parts.next()?.parse().ok()?;
        let tenant = parts.next()?.parse().ok()?;
        parts.next()?;
        Some(Scope {
            environment,
            tenant,
        })
    }

    /// The environment alone (admin keys belong to an environment, not a tenant).
    pub fn environment_only(&self) -> Scope {
        Scope {
            environment: self.environment,
            tenant: 0,
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.environment.to_be_bytes());
        out.extend_from_slice(&self.tenant.to_be_bytes());
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        Some(Self {
            environment: u16::from_be_bytes(b.get(0..2)?.try_into().ok()?),
            tenant: u32::from_be_bytes(b.get(2..6)?.try_into().ok()?),
        })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "env{}", self.environment)?;
        if self.tenant != 0 {
            write!(f, "/tenant{}", self.tenant)?;
        }
        Ok(())
    }
}

/// What owns a stream. The byte values are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum StreamKind {
    User = 1,
    Leaderboard = 2,
    WebhookOutbox = 3,
    Scheduler = 4,
}

impl StreamKind {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::User,
            2 => Self::Leaderboard,
            3 => Self::WebhookOutbox,
            4 => Self::Scheduler,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Leaderboard => "leaderboard",
            Self::WebhookOutbox => "webhook-outbox",
            Self::Scheduler => "scheduler",
        }
    }
}

/// Identity of one journal stream: kind + scope + id (a user id, a leaderboard id...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    pub kind: StreamKind,
    pub scope: Scope,
    pub id: String,
}

/// Longest id a stream may have (the length is stored in two bytes).
pub const MAX_ID_LEN: usize = u16::MAX as usize;

impl StreamId {
    pub fn new(kind: StreamKind, scope: Scope, id: impl Into<String>) -> Self {
        Self {
            kind,
            scope,
            id: id.into(),
        }
    }

    pub fn user(scope: Scope, id: impl Into<String>) -> Self {
        Self::new(StreamKind::User, scope, id)
    }

    /// `kind | scope | u16 length | id`. Ids longer than [`MAX_ID_LEN`] are refused at the
    /// HTTP edge long before they get here; they are cut rather than allowed to collide.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        self.scope.encode(out);
        let bytes = self.id.as_bytes();
        let len = bytes.len().min(MAX_ID_LEN);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&bytes[..len]);
    }

    /// Decodes a stream id at the start of `b`; returns it and the rest of the bytes.
    pub(crate) fn decode(b: &[u8]) -> Option<(Self, &[u8])> {
        let kind = StreamKind::from_byte(*b.first()?)?;
        let scope = Scope::decode(b.get(1..1 + Scope::LEN)?)?;
        let at = 1 + Scope::LEN;
        let len = usize::from(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?));
        let id = b.get(at + 2..at + 2 + len)?;
        let id = String::from_utf8(id.to_vec()).ok()?;
        Some((Self { kind, scope, id }, &b[at + 2 + len..]))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.scope, self.kind.name(), self.id)
    }
}

/// The first byte of every key in the data tree. The values are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    /// `j | stream | slot`: a journal record (slot = seq modulo the ring size).
    Journal = b'j',
    /// `s | stream`: the latest snapshot of a stream.
    Snapshot = b's',
    /// `d | instant | target`: scheduled work.
    Due = b'd',
    /// `m | stream`: a stream that exists (every created user).
    Member = b'm',
    /// `c | scope | name`: a counter.
    Counter = b'c',
    /// `o | scope | entity`: which stream owns an entity (a pause → its user).
    Owner = b'o',
    /// `i | stream | slot`: an idempotency key and what it produced.
    Idempotency = b'i',
    /// `t | instant | stream | slot`: idempotency keys by age, for pruning.
    IdempotencyAge = b't',
    /// `q | consumer | stream | seq`: an effect a consumer has not applied yet.
    Inbox = b'q',
    /// `k | consumer | key`: a consumer's own durable state.
    ConsumerState = b'k',
}

/// Milliseconds since the epoch as 8 bytes that sort like the number (negative included).
pub(crate) fn instant(at_ms: i64) -> [u8; 8] {
    ((at_ms as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn parse_instant(b: &[u8]) -> Option<i64> {
    let head: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(head) ^ (1 << 63)) as i64)
}

pub(crate) fn stream_key(tag: Tag, stream: &StreamId) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 1 + Scope::LEN + 2 + stream.id.len() + 8);
    k.push(tag as u8);
    stream.encode(&mut k);
    k
}

/// The ring slot a journal record of `seq` is written to (see [`crate::journal`]).
pub(crate) fn journal_key(stream: &StreamId, seq: u64) -> Vec<u8> {
    let mut k = stream_key(Tag::Journal, stream);
    // The modulo keeps the value below the ring size, which fits a byte.
    k.push((seq % crate::snapshot::JOURNAL_RING) as u8);
    k
}

pub(crate) fn scoped_key(tag: Tag, scope: Scope, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + Scope::LEN + name.len());
    k.push(tag as u8);
    scope.encode(&mut k);
    k.extend_from_slice(name);
    k
}

/// The 8-byte big-endian sequence number at the end of a journal or inbox key.
pub(crate) fn trailing_seq(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[start..].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn instants_sort_like_numbers() {
        let xs = [-5_i64, -1, 0, 1, 1_700_000_000_000];
        let keys: Vec<_> = xs.iter().map(|x| instant(*x)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(parse_instant(&instant(-5)), Some(-5));
    }

    proptest! {
        #[test]
        fn stream_ids_round_trip_and_prefixes_do_not_collide(
            a in "\\PC{0,12}", b in "\\PC{0,12}", tenant in 0u32..4, env in 0u16..3
        ) {
            let sa = StreamId::user(Scope { environment: env, tenant }, a.clone());
            let sb = StreamId::user(Scope::DEFAULT, b.clone());
            let scope = Scope { environment: env, tenant };
            prop_assert_eq!(Scope::of_meta_key(&format!("{}job/x", scope.meta_prefix())), Some(scope));
            let mut enc = Vec::new();
            sa.encode(&mut enc);
            enc.extend_from_slice(b"rest");
            let (back, rest) = StreamId::decode(&enc).expect("decodes");
            prop_assert_eq!(&back, &sa);
            prop_assert_eq!(rest, b"rest");
            if sa != sb {
                let ka = journal_key(&sa, 1);
                prop_assert!(!ka.starts_with(&stream_key(Tag::Journal, &sb)));
                prop_assert_eq!(ka.len(), stream_key(Tag::Journal, &sa).len() + 1);
            }
        }
    }
}
