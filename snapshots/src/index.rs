//! Small secondary indexes kept beside the journal: the set of users (backfills walk it, and
//! its size is the rarity denominator) and counters (achievement completions). Both are
//! written before the journal record that causes them, in the same fsync.

use crate::Result;

/// Every user id ever created.
#[derive(Clone)]
pub struct UserIndex {
    tree: sled::Tree,
}

impl UserIndex {
    pub(crate) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    pub fn insert(&self, id: &str) -> Result<()> {
        self.tree.insert(id.as_bytes(), &[])?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// All user ids, in key order.
    pub fn ids(&self) -> impl Iterator<Item = Result<String>> + '_ {
        self.tree
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
    }
}

/// Which stream owns an entity created inside it (e.g. pause id → user id), so admin calls
/// that address the entity by id can route to the right actor.
#[derive(Clone)]
pub struct Owners {
    tree: sled::Tree,
}

impl Owners {
    pub(crate) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    pub fn insert(&self, id: &str, owner: &str) -> Result<()> {
        self.tree.insert(id.as_bytes(), owner.as_bytes())?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .tree
            .get(id.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

/// Named counters with atomic increments.
#[derive(Clone)]
pub struct Counters {
    tree: sled::Tree,
}

impl Counters {
    pub(crate) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    pub fn increment(&self, name: &str) -> Result<u64> {
        let next = self.tree.update_and_fetch(name.as_bytes(), |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        Ok(next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    pub fn get(&self, name: &str) -> Result<u64> {
        Ok(self
            .tree
            .get(name.as_bytes())?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn users_and_counters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::Store::open(dir.path()).expect("open");
        let users = store.users();
        users.insert("b").expect("insert");
        users.insert("a").expect("insert");
        users.insert("a").expect("insert");
        let ids: Vec<String> = users.ids().collect::<Result<_, _>>().expect("ids");
        assert_eq!(ids, vec!["a".to_string(), "b".to_string()]);
        let counters = store.counters();
        assert_eq!(counters.get("x").expect("get"), 0);
        assert_eq!(counters.increment("x").expect("inc"), 1);
        assert_eq!(counters.increment("x").expect("inc"), 2);
        assert_eq!(counters.get("x").expect("get"), 2);
        let owners = store.owners();
        owners.insert("p1", "alice").expect("insert");
        assert_eq!(owners.get("p1").expect("get").as_deref(), Some("alice"));
        assert_eq!(owners.get("p2").expect("get"), None);
    }
}
