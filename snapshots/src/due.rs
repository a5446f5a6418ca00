//! The due index: when each stream next needs attention from the scheduler (a streak period
//! ending, a freeze to earn). Keys are `instant | stream id` so a range scan up to "now"
//! yields due work in time order. Entries are written before the journal fsync of the record
//! that scheduled them, so they are exactly as durable as that record.

use crate::Result;

#[derive(Clone)]
pub struct DueIndex {
    tree: sled::Tree,
}

/// Milliseconds since the epoch mapped to a big-endian key that sorts like the number.
fn key(at_ms: i64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.len());
    k.extend_from_slice(&((at_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn parse(k: &[u8]) -> Option<(i64, String)> {
    let head: [u8; 8] = k.get(..8)?.try_into().ok()?;
    let at = (u64::from_be_bytes(head) ^ (1 << 63)) as i64;
    Some((at, String::from_utf8_lossy(&k[8..]).into_owned()))
}

impl DueIndex {
    pub(crate) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// Moves `id` from `old` to `new` (either may be absent).
    pub fn reschedule(&self, id: &str, old: Option<i64>, new: Option<i64>) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        if let Some(o) = old {
            batch.remove(key(o, id));
        }
        if let Some(n) = new {
            batch.insert(key(n, id), &[]);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Up to `limit` entries due at or before `upto`, earliest first. They stay in the index
    /// until the caller moves or removes them (after the work is done).
    pub fn due_before(&self, upto: i64, limit: usize) -> Result<Vec<(i64, String)>> {
        let end = key(upto.saturating_add(1), "");
        let mut out = Vec::new();
        for item in self.tree.range(..end).take(limit) {
            let (k, _) = item?;
            if let Some(entry) = parse(&k) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn due_entries_come_out_in_time_order_and_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::Store::open(dir.path()).expect("open");
        let due = store.due();
        due.reschedule("user:b", None, Some(-5)).expect("schedule");
        due.reschedule("user:a", None, Some(20)).expect("schedule");
        due.reschedule("user:c", None, Some(10)).expect("schedule");
        due.reschedule("user:c", Some(10), Some(30)).expect("move");
        let first = due.due_before(25, 100).expect("read");
        assert_eq!(
            first,
            vec![(-5, "user:b".to_string()), (20, "user:a".to_string())]
        );
        assert_eq!(
            due.due_before(25, 100).expect("read"),
            first,
            "entries stay until done"
        );
        for (at, id) in first {
            due.reschedule(&id, Some(at), None).expect("done");
        }
        assert_eq!(due.due_before(25, 100).expect("read"), vec![]);
        assert_eq!(due.len(), 1);
    }
}
