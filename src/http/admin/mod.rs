//! The admin API, served under `/admin/v1`.

pub mod achievements;
pub mod app_keys;
pub mod attributes;
pub mod effect_tally;
pub mod environments;
pub mod leaderboards;
pub mod metrics;
pub mod points;
pub mod settings;
pub mod streaks;
pub mod tenants;
pub mod test_clock;
pub mod webhooks;

use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(metrics::router())
        .merge(app_keys::router())
        .merge(attributes::router())
        .merge(streaks::router())
        .merge(settings::router())
        .merge(tenants::router())
        .merge(environments::router())
        .merge(achievements::router())
        .merge(points::router())
        .merge(leaderboards::router())
        .merge(webhooks::router())
        .merge(test_clock::router())
        .merge(effect_tally::router())
}
