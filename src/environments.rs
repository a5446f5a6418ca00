//! Environments (SPEC §9.2): production (always there, priority 1), up to 4 staging
//! environments (priorities 2–5 in creation order) and up to 10 development environments
//! (one equal priority after staging). Each is an environment number in every scope, with
//! its own admin keys, data and configuration. Operators create them with
//! `kudos environments create` on the data directory.

use std::sync::RwLock;

use chrono::{DateTime, Utc};
use kudos_snapshots::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// Meta prefix of the environment records (`environments/{number}`).
const META_PREFIX: &str = "environments/";
pub const MAX_STAGING: usize = 4;
pub const MAX_DEVELOPMENT: usize = 10;
/// The priority every development environment shares (after every staging one).
const DEVELOPMENT_PRIORITY: u32 = 2 + MAX_STAGING as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Production,
    Staging,
    Development,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The scope's environment number (0: production).
    pub number: u16,
    pub name: String,
    /// Immutable machine-readable identifier.
    pub key: String,
    pub kind: Kind,
    pub created: DateTime<Utc>,
}

impl Environment {
    fn production() -> Self {
        Self {
            number: 0,
            name: "Production".into(),
            key: "production".into(),
            kind: Kind::Production,
            created: DateTime::<Utc>::UNIX_EPOCH,
        }
    }
}

/// Why an environment cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("an environment with key \"{0}\" already exists")]
    KeyTaken(String),
    #[error("environment keys are 1-64 lowercase letters, digits, '-' or '_'")]
    BadKey,
    #[error("the name must be 1-255 characters")]
    BadName,
    #[error("there is exactly one production environment")]
    Production,
    #[error("at most {0} {1} environments")]
    Full(usize, &'static str),
    #[error("no environment has key \"{0}\"")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a new environment against the existing ones; its number when it may be made.
pub fn admit(existing: &[Environment], key: &str, name: &str, kind: Kind) -> Result<u16, EnvError> {
    let key_ok = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !key_ok {
        return Err(EnvError::BadKey);
    }
    if name.trim().is_empty() || name.chars().count() > 255 {
        return Err(EnvError::BadName);
    }
    if existing.iter().any(|e| e.key == key) {
        return Err(EnvError::KeyTaken(key.to_string()));
    }
    let of_kind = existing.iter().filter(|e| e.kind == kind).count();
    match kind {
        Kind::Production => return Err(EnvError::Production),
        Kind::Staging if of_kind >= MAX_STAGING => {
            return Err(EnvError::Full(MAX_STAGING, "staging"))
        }
        Kind::Development if of_kind >= MAX_DEVELOPMENT => {
            return Err(EnvError::Full(MAX_DEVELOPMENT, "development"))
        }
        _ => {}
    }
    let next = existing.iter().map(|e| e.number).max().unwrap_or(0);
    Ok(next + 1)
}

/// The environments with their priorities, highest priority (lowest number) first: production
/// 1, staging 2… in creation order, development all after them at one priority.
pub fn ordered(existing: &[Environment]) -> Vec<(&Environment, u32)> {
    let mut out: Vec<(&Environment, u32)> = Vec::with_capacity(existing.len());
    let mut staging = 0;
    let mut sorted: Vec<&Environment> = existing.iter().collect();
    sorted.sort_by_key(|e| (e.kind != Kind::Production, e.number));
    for e in &sorted {
        let priority = match e.kind {
            Kind::Production => 1,
            Kind::Staging => {
                staging += 1;
                1 + staging
            }
            Kind::Development => DEVELOPMENT_PRIORITY,
        };
        out.push((e, priority));
    }
    out.sort_by_key(|(e, p)| (*p, e.number));
    out
}

/// The environment table, cached.
pub struct Environments {
    list: RwLock<Vec<Environment>>,
    store: Store,
}

impl Environments {
    pub fn load(store: Store) -> Result<Self, StoreError> {
        let mut list: Vec<Environment> = store.meta_scan(META_PREFIX)?;
        if !list.iter().any(|e| e.number == 0) {
            list.push(Environment::production());
        }
        list.sort_by_key(|e| e.number);
        Ok(Self {
            list: RwLock::new(list),
            store,
        })
    }

    pub fn all(&self) -> Vec<Environment> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn by_key(&self, key: &str) -> Result<Environment, EnvError> {
        self.all()
            .into_iter()
            .find(|e| e.key == key)
            .ok_or_else(|| EnvError::Unknown(key.to_string()))
    }

    /// Creates an environment (durably) and returns it.
    pub async fn create(
        &self,
        key: &str,
        name: &str,
        kind: Kind,
        now: DateTime<Utc>,
    ) -> Result<Environment, EnvError> {
        let number = admit(&self.all(), key, name, kind)?;
        let env = Environment {
            number,
            name: name.to_string(),
            key: key.to_string(),
            kind,
            created: now,
        };
        let value = serde_json::to_value(&env).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.store
            .meta_commit(vec![(format!("{META_PREFIX}{number}"), Some(value))])
            .await?;
        self.list
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(env.clone());
        Ok(env)
    }
}

/// `kudos environments …` on the data directory.
pub async fn run_command(
    action: &crate::config::EnvironmentsAction,
    store: Store,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    use crate::config::EnvironmentsAction;
    let environments = Environments::load(store)?;
    match action {
        EnvironmentsAction::Create { key, name, kind } => {
            let env = environments.create(key, name, *kind, now).await?;
            println!(
                "Created environment {} ({:?}); create its admin key with: kudos keys create --environment {}",
                env.key, env.kind, env.key
            );
        }
        EnvironmentsAction::List => {
            println!("{:<10} {:<20} {:<12} name", "priority", "key", "type");
            for (e, priority) in ordered(&environments.all()) {
                println!(
                    "{:<10} {:<20} {:<12} {}",
                    priority,
                    e.key,
                    format!("{:?}", e.kind).to_lowercase(),
                    e.name
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(number: u16, key: &str, kind: Kind) -> Environment {
        Environment {
            number,
            name: key.into(),
            key: key.into(),
            kind,
            created: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn limits_keys_and_numbers() {
        let mut list = vec![Environment::production()];
        assert_eq!(
            admit(&list, "staging", "Staging", Kind::Staging).ok(),
            Some(1)
        );
        assert_eq!(
            admit(&list, "production", "P", Kind::Staging).map_err(|e| e.to_string()),
            Err(EnvError::KeyTaken("production".into()).to_string())
        );
        assert_eq!(
            admit(&list, "p2", "P", Kind::Production).map_err(|e| e.to_string()),
            Err(EnvError::Production.to_string())
        );
        assert_eq!(
            admit(&list, "Bad Key", "x", Kind::Staging).map_err(|e| e.to_string()),
            Err(EnvError::BadKey.to_string())
        );
        assert_eq!(
            admit(&list, "ok", " ", Kind::Staging).map_err(|e| e.to_string()),
            Err(EnvError::BadName.to_string())
        );
        for i in 0..MAX_STAGING {
            list.push(env(i as u16 + 1, &format!("s{i}"), Kind::Staging));
        }
        assert_eq!(
            admit(&list, "s9", "S", Kind::Staging).map_err(|e| e.to_string()),
            Err(EnvError::Full(MAX_STAGING, "staging").to_string())
        );
        assert_eq!(admit(&list, "dev", "Dev", Kind::Development).ok(), Some(5));
    }

    #[test]
    fn production_first_staging_in_creation_order_then_development() {
        let list = vec![
            env(3, "dev-a", Kind::Development),
            env(2, "qa", Kind::Staging),
            Environment::production(),
            env(1, "staging", Kind::Staging),
            env(4, "dev-b", Kind::Development),
        ];
        let got: Vec<(&str, u32)> = ordered(&list)
            .into_iter()
            .map(|(e, p)| (e.key.as_str(), p))
            .collect();
        assert_eq!(
            got,
            [
                ("production", 1),
                ("staging", 2),
                ("qa", 3),
                ("dev-a", 6),
                ("dev-b", 6)
            ]
        );
    }
}
