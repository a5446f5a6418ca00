//! Test fixtures shared by the actor tests: a durable catalog with one metric, and a root
//! supervisor to link user actors to.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kudos_snapshots::Store;
use ractor::{Actor, ActorCell};
use uuid::Uuid;

use crate::catalog::{CatalogService, Changed, NewMetric, StreakSettingsPatch, UnitType};
use crate::supervisor::{RootSupervisor, SupervisorStats};

/// A catalog in `store` with metric `key`; with `streak`, it is also the org's streak metric
/// (threshold 1).
pub async fn catalog_with_metric(
    store: &Store,
    key: &str,
    now: DateTime<Utc>,
    streak: bool,
) -> (Arc<CatalogService>, Uuid) {
    let catalog = Arc::new(
        CatalogService::load(store.clone(), kudos_snapshots::Scope::DEFAULT).expect("catalog"),
    );
    let metric = catalog
        .update(|c| {
            let (m, _) = c.create_metrics(
                vec![Ok(NewMetric {
                    key: key.into(),
                    name: key.to_uppercase(),
                    unit_type: UnitType::Number,
                    units: None,
                })],
                now,
            );
            let mut changed = vec![Changed::of(&m[0])];
            if streak {
                c.update_streak_settings(StreakSettingsPatch {
                    metrics: Some(vec![(key.into(), 1.0)]),
                    ..Default::default()
                })
                .expect("settings");
                changed.push(Changed::StreakSettings(c.streak.clone()));
            }
            (m[0].id, changed)
        })
        .await
        .expect("catalog update");
    (catalog, metric)
}

/// A running root supervisor (it stops when the test's runtime ends).
pub async fn supervisor() -> ActorCell {
    let (sup, _handle) = Actor::spawn(None, RootSupervisor, Arc::new(SupervisorStats::default()))
        .await
        .expect("supervisor");
    sup.get_cell()
}
