//! API keys (SPEC §1.1). A key is `{prefix}.{body}`; only its SHA-256 is stored, looked up by
//! its prefix and compared in constant time. Admin keys have an 8-character prefix;
//! application keys, each for one user (§1.1.3), `app_` and 5 more characters.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use kudos_snapshots::{Store, StoreError};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub const PREFIX_LEN: usize = 8;
/// The start of every application key's prefix.
pub const APP_PREFIX: &str = "app_";
/// Random characters after [`APP_PREFIX`].
const APP_PREFIX_RANDOM: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Admin,
    /// Valid on the application API only, for one user (SPEC §1.1.3).
    Application,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: Uuid,
    pub prefix: String,
    /// Hex SHA-256 of the full key.
    pub hash: String,
    pub kind: KeyKind,
    pub active: bool,
    pub created: DateTime<Utc>,
    /// The user an application key acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The value an admin key had before a rotation: never valid again, and refused as
    /// `KUDOS_API_KEY`.
    #[serde(default)]
    pub retired: bool,
    /// This key's own rate limit in requests per second (0: unlimited); `None`: the
    /// global one of its kind (SPEC §1.4.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// The tenant (its scope's number) an application key was made in, when it was made
    /// with a `Tenant-ID` (SPEC §1.2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<u32>,
    /// The environment the key belongs to (SPEC §9.2); it sees only that environment.
    #[serde(default)]
    pub environment: u16,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .field("kind", &self.kind)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Who a request authenticated as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: Uuid,
    pub kind: KeyKind,
    /// The user an application key acts for (`None` for admin keys).
    pub user_id: Option<String>,
    pub prefix: String,
    /// The key's own rate limit, if it has one.
    pub rate: Option<f64>,
    /// The tenant an application key was made in (it works there only).
    pub tenant: Option<u32>,
    /// The key's environment.
    pub environment: u16,
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Splits `prefix.body`; `None` when malformed.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let (prefix, body) = key.split_once('.')?;
    let len = if prefix.starts_with(APP_PREFIX) {
        APP_PREFIX.len() + APP_PREFIX_RANDOM
    } else {
        PREFIX_LEN
    };
    (prefix.len() == len
        && !body.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    .then_some((prefix, body))
}

/// Generates a new application key string, `app_XXXXX.{secret}`.
fn generate_application_key() -> String {
    let mut rng = rand::rng();
    format!(
        "{APP_PREFIX}{}.{}",
        Alphanumeric.sample_string(&mut rng, APP_PREFIX_RANDOM),
        Alphanumeric.sample_string(&mut rng, 40)
    )
}

/// An application key just created: the full key is known only now.
pub struct CreatedKey {
    pub id: Uuid,
    pub user_id: String,
    pub key: String,
    pub prefix: String,
}

/// Generates a new admin key string.
pub fn generate_admin_key() -> String {
    let mut rng = rand::rng();
    format!(
        "{}.{}",
        Alphanumeric.sample_string(&mut rng, PREFIX_LEN),
        Alphanumeric.sample_string(&mut rng, 40)
    )
}

/// Active admin keys an environment may have (SPEC §1.1.2, DECISION: per environment).
pub const MAX_ADMIN_KEYS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("KUDOS_API_KEY must look like '<8 characters>.<secret>'")]
    Malformed,
    #[error("this environment already has {MAX_ADMIN_KEYS} active admin keys; revoke one first (kudos keys revoke <prefix>)")]
    TooMany,
    #[error("no admin key has the prefix {0}")]
    UnknownPrefix(String),
    #[error("KUDOS_API_KEY is the admin key {0}, which was revoked; activate it (kudos keys activate {0}) or configure another")]
    Revoked(String),
    #[error("KUDOS_API_KEY is the old value of the admin key {0}, which was rotated; configure its new value")]
    Retired(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key table, cached in memory.
pub struct KeyStore {
    by_prefix: RwLock<HashMap<String, StoredKey>>,
    store: Store,
}

/// Where a key is stored: `scope/{env}/0/key/{id}` (keys belong to an environment, SPEC
/// §9.2).
fn key_path(environment: u16, id: Uuid) -> String {
    let scope = kudos_snapshots::Scope {
        environment,
        tenant: 0,
    };
    format!("{}key/{id}", scope.meta_prefix())
}

impl KeyStore {
    /// Loads the keys of these environments.
    pub fn load(store: Store, environments: &[u16]) -> Result<Self, StoreError> {
        let mut by_prefix = HashMap::new();
        for &environment in environments {
            let prefix = key_path(environment, Uuid::nil());
            let prefix = prefix.trim_end_matches(&Uuid::nil().to_string());
            for mut k in store.meta_scan::<StoredKey>(prefix)? {
                k.environment = environment;
                by_prefix.insert(k.prefix.clone(), k);
            }
        }
        Ok(Self {
            by_prefix: RwLock::new(by_prefix),
            store,
        })
    }

    fn has_prefix(&self, prefix: &str) -> bool {
        self.by_prefix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(prefix)
    }

    fn active_admin_keys(&self, environment: u16) -> usize {
        self.by_prefix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|k| k.kind == KeyKind::Admin && k.active && k.environment == environment)
            .count()
    }

    /// The admin keys of every environment, oldest first (hashes only).
    pub fn admin_keys(&self) -> Vec<StoredKey> {
        let mut keys: Vec<StoredKey> = self
            .by_prefix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|k| k.kind == KeyKind::Admin && !k.retired)
            .cloned()
            .collect();
        keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.prefix.cmp(&b.prefix)));
        keys
    }

    /// Creates a new admin key (at most [`MAX_ADMIN_KEYS`] active); the full key, shown
    /// once.
    pub async fn create_admin_key(
        &self,
        environment: u16,
        now: DateTime<Utc>,
    ) -> Result<String, KeyError> {
        if self.active_admin_keys(environment) >= MAX_ADMIN_KEYS {
            return Err(KeyError::TooMany);
        }
        let key = loop {
            let key = generate_admin_key();
            if split_key(&key).is_some_and(|(p, _)| !self.has_prefix(p)) {
                break key;
            }
        };
        self.insert(&key, KeyKind::Admin, environment, now).await?;
        Ok(key)
    }

    /// Replaces the admin key with `prefix` by a new prefix and secret (same id): the old
    /// value stops working at once. The new full key, shown once.
    pub async fn rotate_admin_key(
        &self,
        prefix: &str,
        now: DateTime<Utc>,
    ) -> Result<String, KeyError> {
        let old = self.admin_by_prefix(prefix)?;
        let key = loop {
            let key = generate_admin_key();
            if split_key(&key).is_some_and(|(p, _)| !self.has_prefix(p)) {
                break key;
            }
        };
        let (new_prefix, _) = split_key(&key).ok_or(KeyError::Malformed)?;
        let stored = StoredKey {
            prefix: new_prefix.to_string(),
            hash: digest(&key),
            created: now,
            ..old.clone()
        };
        // The old value stays known as retired, so it is never accepted again.
        let retired = StoredKey {
            id: Uuid::new_v4(),
            active: false,
            retired: true,
            ..old.clone()
        };
        self.put_all(&[&stored, &retired]).await?;
        let mut keys = self.by_prefix.write().unwrap_or_else(|e| e.into_inner());
        keys.insert(retired.prefix.clone(), retired);
        keys.insert(stored.prefix.clone(), stored);
        Ok(key)
    }

    /// Revokes (`active` false) or re-activates the admin key with `prefix`; its prefix and
    /// secret stay the same. Re-activating counts towards [`MAX_ADMIN_KEYS`].
    pub async fn set_admin_key_active(&self, prefix: &str, active: bool) -> Result<(), KeyError> {
        let old = self.admin_by_prefix(prefix)?;
        if active && !old.active && self.active_admin_keys(old.environment) >= MAX_ADMIN_KEYS {
            return Err(KeyError::TooMany);
        }
        self.replace(StoredKey { active, ..old }).await
    }

    /// Writes a changed key durably, then uses it.
    async fn replace(&self, stored: StoredKey) -> Result<(), KeyError> {
        self.put(&stored).await?;
        self.by_prefix
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stored.prefix.clone(), stored);
        Ok(())
    }

    /// Gives the key with `prefix` (admin or application) its own rate limit, or (`None`)
    /// the global one again.
    pub async fn set_rate(&self, prefix: &str, rate: Option<f64>) -> Result<(), KeyError> {
        let old = self
            .by_prefix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
            .filter(|k| !k.retired)
            .cloned()
            .ok_or_else(|| KeyError::UnknownPrefix(prefix.to_string()))?;
        self.replace(StoredKey { rate, ..old }).await
    }

    fn admin_by_prefix(&self, prefix: &str) -> Result<StoredKey, KeyError> {
        self.by_prefix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
            .filter(|k| k.kind == KeyKind::Admin && !k.retired)
            .cloned()
            .ok_or_else(|| KeyError::UnknownPrefix(prefix.to_string()))
    }

    /// Writes one key durably.
    async fn put(&self, stored: &StoredKey) -> Result<(), StoreError> {
        self.put_all(&[stored]).await
    }

    /// Writes keys durably, in one commit.
    async fn put_all(&self, keys: &[&StoredKey]) -> Result<(), StoreError> {
        let entries = keys
            .iter()
            .map(|k| {
                serde_json::to_value(k)
                    .map(|v| (key_path(k.environment, k.id), Some(v)))
                    .map_err(|e| StoreError::Encode(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.store.meta_commit(entries).await
    }

    fn has_admin_key(&self) -> bool {
        self.by_prefix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|k| k.kind == KeyKind::Admin && k.active && k.environment == 0)
    }

    /// Makes sure an admin key exists (SPEC §11.1): the configured one is stored if new;
    /// with none configured and none stored, one is generated and returned so the caller can
    /// print it once.
    pub async fn bootstrap(
        &self,
        configured: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, KeyError> {
        if let Some(key) = configured {
            if split_key(key).is_none() {
                return Err(KeyError::Malformed);
            }
            if self.verify(key).is_none() {
                let (prefix, _) = split_key(key).ok_or(KeyError::Malformed)?;
                let stored = self
                    .by_prefix
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(prefix)
                    .cloned();
                match stored {
                    // A revoke or a rotation made with `kudos keys` is not undone by the
                    // configuration.
                    Some(k) if k.retired => return Err(KeyError::Retired(prefix.into())),
                    Some(k) if !k.active => return Err(KeyError::Revoked(prefix.into())),
                    // A stored prefix with a new secret replaces that key.
                    Some(_) => {}
                    None if self.active_admin_keys(0) >= MAX_ADMIN_KEYS => {
                        return Err(KeyError::TooMany)
                    }
                    None => {}
                }
                self.insert(key, KeyKind::Admin, 0, now).await?;
            }
            return Ok(None);
        }
        if self.has_admin_key() {
            return Ok(None);
        }
        let key = generate_admin_key();
        self.insert(&key, KeyKind::Admin, 0, now).await?;
        Ok(Some(key))
    }

    /// Stores `key`. A stored key with the same prefix is replaced (same id): prefixes
    /// identify keys, so a configured key that reuses one is a rotation of that key.
    async fn insert(
        &self,
        key: &str,
        kind: KeyKind,
        environment: u16,
        now: DateTime<Utc>,
    ) -> Result<(), KeyError> {
        let (prefix, _) = split_key(key).ok_or(KeyError::Malformed)?;
        let existing = self
            .by_prefix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
            .map(|k| k.id);
        if existing.is_some() {
            tracing::warn!(
                prefix,
                "KUDOS_API_KEY replaces the stored key with the same prefix"
            );
        }
        let stored = StoredKey {
            id: existing.unwrap_or_else(Uuid::new_v4),
            prefix: prefix.to_string(),
            hash: digest(key),
            kind,
            active: true,
            created: now,
            user_id: None,
            retired: false,
            rate: None,
            tenant: None,
            environment,
        };
        self.put(&stored).await?;
        self.by_prefix
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stored.prefix.clone(), stored);
        Ok(())
    }

    /// The principal for a presented key, if it is a known, active key.
    pub fn verify(&self, presented: &str) -> Option<Principal> {
        let (prefix, _) = split_key(presented)?;
        let keys = self.by_prefix.read().unwrap_or_else(|e| e.into_inner());
        let stored = keys.get(prefix)?;
        let matches: bool = digest(presented)
            .as_bytes()
            .ct_eq(stored.hash.as_bytes())
            .into();
        (matches && stored.active).then_some(Principal {
            key_id: stored.id,
            kind: stored.kind,
            user_id: stored.user_id.clone(),
            prefix: stored.prefix.clone(),
            rate: stored.rate,
            tenant: stored.tenant,
            environment: stored.environment,
        })
    }

    /// Whether the key with this id is still valid (not deleted, revoked or rotated): long
    /// connections ask again.
    pub fn is_live(&self, principal: &Principal) -> bool {
        self.by_prefix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&principal.prefix)
            .is_some_and(|k| k.id == principal.key_id && k.active && !k.retired)
    }

    /// Creates one application key per user id, stored (hashed) in one durable commit
    /// before any is returned.
    pub async fn create_application_keys(
        &self,
        users: &[String],
        environment: u16,
        tenant: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Vec<CreatedKey>, StoreError> {
        let mut created = Vec::with_capacity(users.len());
        let mut stored = Vec::with_capacity(users.len());
        {
            let taken = self.by_prefix.read().unwrap_or_else(|e| e.into_inner());
            for user in users {
                // A fresh prefix (one in 916 million; drawn again on a clash).
                let key = loop {
                    let key = generate_application_key();
                    let prefix = split_key(&key).map(|(p, _)| p.to_string());
                    if prefix.is_some_and(|p| {
                        !taken.contains_key(&p) && !stored.iter().any(|s: &StoredKey| s.prefix == p)
                    }) {
                        break key;
                    }
                };
                let (prefix, _) =
                    split_key(&key).ok_or_else(|| StoreError::Encode("key".into()))?;
                let s = StoredKey {
                    id: Uuid::new_v4(),
                    prefix: prefix.to_string(),
                    hash: digest(&key),
                    kind: KeyKind::Application,
                    active: true,
                    created: now,
                    user_id: Some(user.clone()),
                    retired: false,
                    rate: None,
                    tenant,
                    environment,
                };
                created.push(CreatedKey {
                    id: s.id,
                    user_id: user.clone(),
                    prefix: s.prefix.clone(),
                    key,
                });
                stored.push(s);
            }
        }
        self.put_all(&stored.iter().collect::<Vec<_>>()).await?;
        let mut keys = self.by_prefix.write().unwrap_or_else(|e| e.into_inner());
        for s in stored {
            keys.insert(s.prefix.clone(), s);
        }
        Ok(created)
    }

    /// Deletes the application keys with these ids (durably, then at once in memory); the
    /// ids that were deleted. Admin keys are not found this way.
    pub async fn delete_application_keys(
        &self,
        ids: &[Uuid],
        environment: u16,
    ) -> Result<Vec<Uuid>, StoreError> {
        let found: Vec<(Uuid, String)> = {
            let keys = self.by_prefix.read().unwrap_or_else(|e| e.into_inner());
            keys.values()
                .filter(|k| {
                    k.kind == KeyKind::Application
                        && k.environment == environment
                        && ids.contains(&k.id)
                })
                .map(|k| (k.id, k.prefix.clone()))
                .collect()
        };
        if found.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .meta_commit(
                found
                    .iter()
                    .map(|(id, _)| (key_path(environment, *id), None))
                    .collect(),
            )
            .await?;
        // Only the ids this call removed (a concurrent delete of the same key reports it
        // once).
        let mut keys = self.by_prefix.write().unwrap_or_else(|e| e.into_inner());
        Ok(found
            .into_iter()
            .filter(|(_, prefix)| keys.remove(prefix).is_some())
            .map(|(id, _)| id)
            .collect())
    }
}

/// `kudos keys …`: admin key management on the data directory. Prints what it did; a new
/// or rotated key is printed once, on standard output.
pub async fn run_command(
    action: &crate::config::KeysAction,
    store: Store,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    use crate::config::KeysAction;
    let environments = crate::environments::Environments::load(store.clone())?;
    let numbers: Vec<u16> = environments.all().iter().map(|e| e.number).collect();
    let keys = KeyStore::load(store, &numbers)?;
    match action {
        KeysAction::Create { environment } => {
            let env = environments.by_key(environment)?;
            let key = keys.create_admin_key(env.number, now).await?;
            println!(
                "Created admin API key for environment {} (shown once; store it now): {key}",
                env.key
            );
        }
        KeysAction::List => {
            let env_key = |n: u16| {
                environments
                    .all()
                    .into_iter()
                    .find(|e| e.number == n)
                    .map_or_else(|| n.to_string(), |e| e.key)
            };
            println!(
                "{:<10} {:<8} {:<30} {:<10} {:<14} id",
                "prefix", "status", "created", "rate", "environment"
            );
            for k in keys.admin_keys() {
                let status = if k.active { "active" } else { "revoked" };
                let rate = k.rate.map_or("default".to_string(), |r| r.to_string());
                println!(
                    "{:<10} {:<8} {:<30} {:<10} {:<14} {}",
                    k.prefix,
                    status,
                    k.created.to_rfc3339(),
                    rate,
                    env_key(k.environment),
                    k.id
                );
            }
        }
        KeysAction::Rotate { prefix } => {
            let key = keys.rotate_admin_key(prefix, now).await?;
            println!("Rotated admin API key {prefix} (shown once; store it now): {key}");
        }
        KeysAction::Revoke { prefix } => {
            keys.set_admin_key_active(prefix, false).await?;
            println!("Revoked admin API key {prefix}");
        }
        KeysAction::Activate { prefix } => {
            keys.set_admin_key_active(prefix, true).await?;
            println!("Activated admin API key {prefix}");
        }
        KeysAction::Limit { prefix, rate } => {
            let rate = match rate.as_str() {
                "default" => None,
                raw => Some(crate::config::parse_rate(raw).map_err(anyhow::Error::msg)?),
            };
            keys.set_rate(prefix, rate).await?;
            match rate {
                None => println!("API key {prefix} follows the global rate limit"),
                Some(r) if r > 0.0 => println!("API key {prefix} is limited to {r} requests/s"),
                Some(_) => println!("API key {prefix} is unlimited"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bootstrap_generates_once_and_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Default::default()).expect("open");
        let keys = KeyStore::load(store.clone(), &[0]).expect("load");
        let now = DateTime::<Utc>::MIN_UTC;
        let generated = keys
            .bootstrap(None, now)
            .await
            .expect("bootstrap")
            .expect("a new key");
        assert!(keys.verify(&generated).is_some());
        assert!(keys.verify(&format!("{generated}x")).is_none());
        assert!(keys.verify("garbage").is_none());
        assert!(keys
            .bootstrap(None, now)
            .await
            .expect("bootstrap")
            .is_none());
        // Stored hashed, and survives a reload.
        let reloaded = KeyStore::load(store, &[0]).expect("load");
        assert!(reloaded.verify(&generated).is_some());
    }

    #[tokio::test]
    async fn configured_key_must_be_well_formed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::load(
            Store::open(dir.path(), &Default::default()).expect("open"),
            &[0],
        )
        .expect("load");
        let now = DateTime::<Utc>::MIN_UTC;
        assert!(matches!(
            keys.bootstrap(Some("short.x"), now).await,
            Err(KeyError::Malformed)
        ));
        keys.bootstrap(Some("abcd1234.secret"), now)
            .await
            .expect("ok");
        assert!(keys.verify("abcd1234.secret").is_some());
        assert!(keys.verify("abcd1234.other").is_none());
        // Same prefix, new secret: a rotation; the old secret stops working, also after reload.
        keys.bootstrap(Some("abcd1234.rotated"), now)
            .await
            .expect("ok");
        assert!(keys.verify("abcd1234.secret").is_none());
        assert!(keys.verify("abcd1234.rotated").is_some());
        let reloaded = KeyStore::load(keys.store.clone(), &[0]).expect("load");
        assert!(reloaded.verify("abcd1234.secret").is_none());
        assert!(reloaded.verify("abcd1234.rotated").is_some());
    }

    #[tokio::test]
    async fn application_keys_are_created_for_a_user_stored_hashed_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &Default::default()).expect("open");
        let keys = KeyStore::load(store.clone(), &[0]).expect("load");
        let now = DateTime::<Utc>::MIN_UTC;
        let made = keys
            .create_application_keys(&["ada".into(), "bob".into()], 0, None, now)
            .await
            .expect("create");
        assert_eq!(made.len(), 2);
        assert_ne!(made[0].prefix, made[1].prefix);
        let p = keys.verify(&made[0].key).expect("valid");
        assert_eq!(
            (p.kind, p.user_id.as_deref()),
            (KeyKind::Application, Some("ada"))
        );
        // Only the hash is stored.
        let raw = format!(
            "{:?}",
            store.meta_scan::<serde_json::Value>("scope/0/0/key/")
        );
        assert!(
            !raw.contains(made[0].key.split('.').nth(1).expect("secret")),
            "{raw}"
        );
        // Deleted at once, and still after a reload; an unknown id is not deleted.
        let gone = keys
            .delete_application_keys(&[made[0].id, Uuid::new_v4()], 0)
            .await
            .expect("delete");
        assert_eq!(gone, vec![made[0].id]);
        assert!(keys.verify(&made[0].key).is_none());
        let reloaded = KeyStore::load(store, &[0]).expect("load");
        assert!(reloaded.verify(&made[0].key).is_none());
        assert_eq!(
            reloaded.verify(&made[1].key).and_then(|p| p.user_id),
            Some("bob".to_string())
        );
    }
}
