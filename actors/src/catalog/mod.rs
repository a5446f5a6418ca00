//! Configuration: metrics, attributes, achievements, streak settings, points, leaderboards
//! and webhook endpoints, one module per entity family ([`points`]; the
//! achievement rules in [`crate::achievements`]). Every entity is persisted the same way: a
//! [`Persisted`] type is one JSON meta entry under its prefix, written by [`Changed::of`]. The catalog is an immutable value behind an `Arc`; an admin change builds a new
//! catalog, makes it durable and swaps it in, so the event hot path reads configuration with
//! one atomic load and never sees a half-applied change.
//!
//! The bulk operations here are pure: they validate each item independently (SPEC §10.1) and
//! return what was applied plus the issues for what was not. Persistence is the job of
//! [`CatalogService`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kudos_snapshots::{Scope, Store, StoreError};
use serde::Serialize;
use uuid::Uuid;

mod attributes;
pub mod leaderboards;
mod metrics;
pub mod points;
pub mod settings;
mod streak;
pub mod tenants;
pub mod webhooks;

pub use attributes::*;
pub use metrics::*;
pub use streak::*;

use crate::achievements::Achievement;
use crate::rules::keys::{is_valid_key, KEY_RULE};
use points::{PointsBoost, PointsCatalog, PointsLevel, PointsSystem, PointsTrigger};

/// An item-level problem in a bulk admin request (SPEC §10.1). `index` for creates, `id` for
/// updates and deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub index: Option<usize>,
    pub id: Option<String>,
    pub user_id: Option<String>,
    /// A warning means the item was skipped benignly or applied partially (SPEC §10.1.6).
    pub warning: bool,
    pub message: String,
}

impl Issue {
    fn new(message: impl Into<String>) -> Self {
        Self {
            index: None,
            id: None,
            user_id: None,
            warning: false,
            message: message.into(),
        }
    }
    pub fn at_index(index: usize, message: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            ..Self::new(message)
        }
    }
    pub fn for_id(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            id: Some(id.into()),
            ..Self::new(message)
        }
    }
    pub fn for_user(user_id: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
            ..Self::new(message)
        }
    }
    /// Also names the item's position in the request.
    pub fn with_index(self, index: usize) -> Self {
        Self {
            index: Some(index),
            ..self
        }
    }
    pub fn warning(self) -> Self {
        Self {
            warning: true,
            ..self
        }
    }
}

/// An item of a bulk request that failed shape validation at the HTTP edge: it becomes an
/// issue and the other items still apply.
pub type Item<T> = Result<T, String>;

/// The whole configuration at one instant.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    metrics: Vec<Metric>,
    attributes: Vec<Attribute>,
    next_ord: u64,
    achievements: Vec<Achievement>,
    /// Metric id → positions in `achievements` of the metric achievements on it: the lookup
    /// every event makes (deleted ones are skipped when read).
    achievements_by_metric: HashMap<Uuid, Vec<usize>>,
    pub streak: StreakSettings,
    /// Branding, experimentation and the aggregation period (SPEC §9.5).
    pub settings: settings::OrgSettings,
    points: PointsCatalog,
    leaderboards: Vec<leaderboards::Leaderboard>,
    webhooks: Vec<webhooks::Webhook>,
    /// The environment's tenants (only in its own scope's catalog, tenant 0).
    tenants: Vec<tenants::Tenant>,
}

/// A catalog entity stored as one meta entry, `{scope prefix}{PREFIX}{id}`.
pub trait Persisted: Serialize {
    const PREFIX: &'static str;
    fn id(&self) -> Uuid;
}

impl Catalog {
    pub fn from_parts(mut metrics: Vec<Metric>, mut attributes: Vec<Attribute>) -> Self {
        metrics.sort_by_key(|m| m.ord);
        attributes.sort_by_key(|a| a.ord);
        let next_ord = metrics
            .iter()
            .map(|m| m.ord)
            .chain(attributes.iter().map(|a| a.ord))
            .max()
            .map_or(0, |o| o + 1);
        Self {
            metrics,
            attributes,
            next_ord,
            achievements: Vec::new(),
            achievements_by_metric: HashMap::new(),
            streak: StreakSettings::default(),
            settings: settings::OrgSettings::default(),
            points: PointsCatalog::default(),
            leaderboards: Vec::new(),
            webhooks: Vec::new(),
            tenants: Vec::new(),
        }
    }

    /// Adds achievements loaded from storage (creation order is kept by `ord`).
    pub fn with_achievements(mut self, mut list: Vec<Achievement>) -> Self {
        list.sort_by_key(|a| a.ord);
        if let Some(max) = list.iter().map(|a| a.ord).max() {
            self.next_ord = self.next_ord.max(max + 1);
        }
        self.achievements = list;
        self.index_achievements();
        self
    }

    fn index_achievements(&mut self) {
        self.achievements_by_metric.clear();
        for (i, a) in self.achievements.iter().enumerate() {
            if let crate::achievements::Trigger::Metric { metric_id, .. } = &a.trigger {
                self.achievements_by_metric
                    .entry(*metric_id)
                    .or_default()
                    .push(i);
            }
        }
    }

    /// Live metric achievements on `metric_id`, in creation order (indexed).
    pub fn achievements_on_metric(&self, metric_id: Uuid) -> impl Iterator<Item = &Achievement> {
        self.achievements_by_metric
            .get(&metric_id)
            .into_iter()
            .flatten()
            .map(|&i| &self.achievements[i])
            .filter(|a| !a.deleted)
    }

    /// Live (non-deleted) achievements in creation order.
    pub fn achievements(&self) -> impl Iterator<Item = &Achievement> {
        self.achievements.iter().filter(|a| !a.deleted)
    }

    pub fn achievement(&self, id: Uuid) -> Option<&Achievement> {
        self.achievements().find(|a| a.id == id)
    }

    pub fn achievement_by_id(&self, id: &str) -> Option<&Achievement> {
        Uuid::parse_str(id).ok().and_then(|id| self.achievement(id))
    }

    /// The live `api` achievement with this key.
    pub fn api_achievement(&self, key: &str) -> Option<&Achievement> {
        self.achievements().find(
            |a| matches!(&a.trigger, crate::achievements::Trigger::Api { key: k } if k == key),
        )
    }

    pub(crate) fn push_achievement(&mut self, a: Achievement) {
        self.achievements.push(a);
        self.index_achievements();
    }

    pub(crate) fn replace_achievement(&mut self, a: Achievement) {
        if let Some(slot) = self.achievements.iter_mut().find(|x| x.id == a.id) {
            *slot = a;
        }
        self.index_achievements();
    }

    pub fn delete_achievements(&mut self, ids: &[String]) -> (Vec<Achievement>, Vec<Issue>) {
        bulk_delete(&mut self.achievements, ids, "Achievement")
    }

    pub(crate) fn take_ord(&mut self) -> u64 {
        let ord = self.next_ord;
        self.next_ord += 1;
        ord
    }

    /// Bulk create (SPEC §10.1.2): each item is validated and built on its own against the
    /// catalog as it is after the items before it; failures become issues by index.
    fn bulk_create<N, T: Clone>(
        &mut self,
        items: Vec<Item<N>>,
        build: impl Fn(&mut Self, N) -> Result<T, String>,
        add: impl Fn(&mut Self, T),
    ) -> (Vec<T>, Vec<Issue>) {
        let mut created = Vec::new();
        let mut issues = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match item.and_then(|new| build(self, new)) {
                Ok(entity) => {
                    add(self, entity.clone());
                    created.push(entity);
                }
                Err(message) => issues.push(Issue::at_index(index, message)),
            }
        }
        (created, issues)
    }

    /// The checks every keyed entity shares: key format and a non-empty name.
    fn check_key_and_name(key: &str, name: &str) -> Result<(), String> {
        if !is_valid_key(key) {
            return Err(KEY_RULE.to_string());
        }
        if name.trim().is_empty() {
            return Err("Name must not be empty".into());
        }
        Ok(())
    }
}

/// A required integer field of at least 1 in a create or update item: the value sent, else
/// the one the entity already had (`base`); `what` names the items (`streak triggers`).
pub(crate) fn at_least_one(
    sent: Option<i64>,
    base: Option<u32>,
    field: &str,
    what: &str,
) -> Result<u32, String> {
    match sent {
        Some(v) => u32::try_from(v)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| format!("{field} must be at least 1")),
        None => base.ok_or_else(|| format!("{field} is required for {what}")),
    }
}

/// A configuration entity with a UUID that is soft-deleted (SPEC §0.9).
pub(crate) trait Entity: Clone {
    fn id(&self) -> Uuid;
    fn is_deleted(&self) -> bool;
    fn mark_deleted(&mut self);
}

macro_rules! entity {
    ($t:ty) => {
        impl $crate::catalog::Entity for $t {
            fn id(&self) -> uuid::Uuid {
                self.id
            }
            fn is_deleted(&self) -> bool {
                self.deleted
            }
            fn mark_deleted(&mut self) {
                self.deleted = true;
            }
        }
    };
}
pub(crate) use entity;

fn find_live<'a, T: Entity>(list: &'a mut [T], raw_id: &str) -> Option<&'a mut T> {
    let id = Uuid::parse_str(raw_id).ok()?;
    list.iter_mut().find(|e| e.id() == id && !e.is_deleted())
}

/// Bulk PATCH (SPEC §10.1.3): each item is applied on its own; `apply` validates before it
/// changes anything, so an item that fails leaves its entity untouched.
pub(crate) fn bulk_update<T: Entity, P>(
    list: &mut [T],
    items: Vec<Result<P, Issue>>,
    id_of: impl Fn(&P) -> &String,
    entity: &str,
    apply: impl Fn(&mut T, P) -> Result<(), String>,
) -> (Vec<T>, Vec<Issue>) {
    let mut updated = Vec::new();
    let mut issues = Vec::new();
    for item in items {
        let patch = match item {
            Ok(p) => p,
            Err(issue) => {
                issues.push(issue);
                continue;
            }
        };
        let id = id_of(&patch).clone();
        let Some(target) = find_live(list, &id) else {
            issues.push(Issue::for_id(&id, format!("{entity} not found by ID")));
            continue;
        };
        match apply(target, patch) {
            Ok(()) => updated.push(target.clone()),
            Err(message) => issues.push(Issue::for_id(&id, message)),
        }
    }
    (updated, issues)
}

/// Bulk soft delete (SPEC §10.1.4).
pub(crate) fn bulk_delete<T: Entity>(
    list: &mut [T],
    ids: &[String],
    entity: &str,
) -> (Vec<T>, Vec<Issue>) {
    let mut deleted = Vec::new();
    let mut issues = Vec::new();
    for raw in ids {
        if Uuid::parse_str(raw).is_err() {
            issues.push(Issue::for_id(raw, "id must be a valid UUID"));
            continue;
        }
        match find_live(list, raw) {
            Some(e) => {
                e.mark_deleted();
                deleted.push(e.clone());
            }
            None => issues.push(Issue::for_id(raw, format!("{entity} not found by ID"))),
        }
    }
    (deleted, issues)
}

/// An entity changed by an admin operation, to be persisted.
pub enum Changed {
    /// The org's streak settings (one entry, not a list).
    StreakSettings(StreakSettings),
    /// The org's settings (one entry).
    Settings(settings::OrgSettings),
    /// Another meta entry written in the same commit (e.g. a background job record).
    Meta(String, Option<serde_json::Value>),
    /// A [`Persisted`] entity: its key after the scope prefix, and its JSON (or why it
    /// could not be encoded, which fails the commit).
    Entity(String, Result<serde_json::Value, String>),
}

impl Changed {
    /// The change that stores `entity`.
    pub fn of<T: Persisted>(entity: &T) -> Self {
        Changed::Entity(
            format!("{}{}", T::PREFIX, entity.id()),
            serde_json::to_value(entity).map_err(|e| e.to_string()),
        )
    }

    /// The meta entry of this change in `scope` (`Meta` keys are given whole).
    fn entry(&self, scope: Scope) -> Result<(String, Option<serde_json::Value>), StoreError> {
        let p = scope.meta_prefix();
        let encode = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map(Some).map_err(|e| StoreError::Encode(e.to_string()))
        };
        Ok(match self {
            Changed::StreakSettings(st) => (
                format!("{p}{STREAK_SETTINGS_KEY}"),
                encode(serde_json::to_value(st))?,
            ),
            Changed::Settings(st) => (
                format!("{p}{SETTINGS_KEY}"),
                encode(serde_json::to_value(st))?,
            ),
            Changed::Meta(key, value) => (key.clone(), value.clone()),
            Changed::Entity(key, value) => (
                format!("{p}{key}"),
                Some(value.clone().map_err(StoreError::Encode)?),
            ),
        })
    }
}

/// Every stored entity of type `T` in `scope`.
fn load_all<T: Persisted + serde::de::DeserializeOwned>(
    store: &Store,
    scope: Scope,
) -> Result<Vec<T>, StoreError> {
    store.meta_scan(&format!("{}{}", scope.meta_prefix(), T::PREFIX))
}

/// The meta key of the streak settings, after the scope's prefix (`scope/{env}/{tenant}/`).
const STREAK_SETTINGS_KEY: &str = "catalog/streak_settings";
/// The meta key of the org settings, after the scope's prefix.
const SETTINGS_KEY: &str = "catalog/settings";

macro_rules! persisted {
    ($t:ty, $prefix:literal) => {
        impl $crate::catalog::Persisted for $t {
            const PREFIX: &'static str = $prefix;
            fn id(&self) -> uuid::Uuid {
                self.id
            }
        }
        $crate::catalog::entity!($t);
    };
}
pub(crate) use persisted;
persisted!(Metric, "catalog/metric/");
persisted!(Attribute, "catalog/attribute/");
persisted!(Achievement, "catalog/achievement/");
persisted!(tenants::Tenant, "catalog/tenant/");

/// Owns the current catalog: reads are a lock-free-ish `Arc` clone, writes are serialized,
/// made durable, then published.
pub struct CatalogService {
    current: RwLock<Arc<Catalog>>,
    write: tokio::sync::Mutex<()>,
    store: Store,
    scope: Scope,
}

impl CatalogService {
    /// Loads the catalog of `scope`.
    pub fn load(store: Store, scope: Scope) -> Result<Self, StoreError> {
        let p = scope.meta_prefix();
        let mut catalog = Catalog::from_parts(
            load_all::<Metric>(&store, scope)?,
            load_all::<Attribute>(&store, scope)?,
        )
        .with_achievements(load_all::<Achievement>(&store, scope)?);
        catalog.points = PointsCatalog::from_parts(
            load_all::<PointsSystem>(&store, scope)?,
            load_all::<PointsTrigger>(&store, scope)?,
            load_all::<PointsLevel>(&store, scope)?,
            load_all::<PointsBoost>(&store, scope)?,
        );
        let mut boards: Vec<leaderboards::Leaderboard> = load_all(&store, scope)?;
        boards.sort_by_key(|l| l.ord);
        if let Some(max) = boards.iter().map(|l| l.ord).max() {
            catalog.next_ord = catalog.next_ord.max(max + 1);
        }
        catalog.leaderboards = boards;
        let mut hooks: Vec<webhooks::Webhook> = load_all(&store, scope)?;
        hooks.sort_by_key(|w| w.ord);
        if let Some(max) = hooks.iter().map(|w| w.ord).max() {
            catalog.next_ord = catalog.next_ord.max(max + 1);
        }
        catalog.webhooks = hooks;
        let mut tenants: Vec<tenants::Tenant> = load_all(&store, scope)?;
        tenants.sort_by_key(|t| t.number);
        catalog.tenants = tenants;
        if let Some(max) = catalog.points.max_ord() {
            catalog.next_ord = catalog.next_ord.max(max + 1);
        }
        catalog.streak = store
            .meta_get(&format!("{p}{STREAK_SETTINGS_KEY}"))?
            .unwrap_or_default();
        catalog.settings = store
            .meta_get(&format!("{p}{SETTINGS_KEY}"))?
            .unwrap_or_default();
        Ok(Self {
            current: RwLock::new(Arc::new(catalog)),
            write: tokio::sync::Mutex::new(()),
            store,
            scope,
        })
    }

    /// The scope this catalog belongs to.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    pub fn get(&self) -> Arc<Catalog> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies `change` to a copy of the catalog, persists the entities it reports as changed,
    /// waits for the fsync and only then publishes the new catalog.
    pub async fn update<T>(
        &self,
        change: impl FnOnce(&mut Catalog) -> (T, Vec<Changed>),
    ) -> Result<T, StoreError> {
        let _guard = self.write.lock().await;
        let mut next = (*self.get()).clone();
        let (out, changed) = change(&mut next);
        if !changed.is_empty() {
            let entries = changed
                .iter()
                .map(|c| c.entry(self.scope))
                .collect::<Result<Vec<_>, _>>()?;
            self.store.meta_commit(entries).await?;
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn new_metric(key: &str) -> Item<NewMetric> {
        Ok(NewMetric {
            key: key.into(),
            name: "Lessons".into(),
            unit_type: UnitType::Number,
            units: None,
        })
    }

    #[test]
    fn bulk_create_applies_items_independently() {
        let mut cat = Catalog::default();
        let (created, issues) = cat.create_metrics(
            vec![
                new_metric("lessons"),
                new_metric("lessons"),
                new_metric("bad key"),
                Err("Name not a string".into()),
            ],
            DateTime::<Utc>::MIN_UTC,
        );
        assert_eq!(created.len(), 1);
        let msgs: Vec<_> = issues
            .iter()
            .map(|i| (i.index, i.message.as_str()))
            .collect();
        assert_eq!(
            msgs,
            vec![
                (Some(1), "Key already in use by another metric"),
                (Some(2), KEY_RULE),
                (Some(3), "Name not a string"),
            ]
        );
    }

    #[test]
    fn deleted_metric_disappears_and_frees_its_key() {
        let mut cat = Catalog::default();
        let (created, _) = cat.create_metrics(vec![new_metric("x")], DateTime::<Utc>::MIN_UTC);
        let id = created[0].id.to_string();
        let (deleted, issues) = cat.delete_metrics(&[id.clone(), "nope".into()]);
        assert_eq!(deleted.len(), 1);
        assert_eq!(issues[0].message, "id must be a valid UUID");
        assert!(cat.metric_by_key("x").is_none());
        assert!(cat.metric_by_id(&id).is_none());
        let (again, _) = cat.create_metrics(vec![new_metric("x")], DateTime::<Utc>::MIN_UTC);
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn currency_metrics_need_an_iso_code() {
        let mut cat = Catalog::default();
        let item = |units: &str| {
            Ok(NewMetric {
                key: format!("k{units}"),
                name: "Revenue".into(),
                unit_type: UnitType::Currency,
                units: Some(units.into()),
            })
        };
        let (created, issues) =
            cat.create_metrics(vec![item("usd"), item("XXX")], DateTime::<Utc>::MIN_UTC);
        assert_eq!(created[0].units, "USD");
        assert_eq!(issues.len(), 1);
    }

    #[test]
    fn attribute_keys_are_unique_per_type() {
        let mut cat = Catalog::default();
        let attr = |kind| {
            Ok(NewAttribute {
                key: "plan".into(),
                name: "Plan".into(),
                kind,
            })
        };
        let (created, issues) = cat.create_attributes(vec![
            attr(AttributeKind::User),
            attr(AttributeKind::Event),
            attr(AttributeKind::User),
        ]);
        assert_eq!(created.len(), 2);
        assert_eq!(
            issues[0].message,
            "Key already in use by another attribute of this type"
        );
        let keys = vec!["plan".to_string(), "zzz".to_string()];
        assert_eq!(
            cat.unknown_attribute_keys(AttributeKind::User, &keys),
            vec!["zzz".to_string()]
        );
    }
}
