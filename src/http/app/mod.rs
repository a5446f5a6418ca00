//! The application API, served under `/v1`.

pub mod achievements;
pub mod leaderboards;
pub mod metrics;
pub mod points;
pub mod streaks;
pub mod users;
pub mod wrapped;

use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(metrics::router())
        .merge(streaks::router())
        .merge(achievements::router())
        .merge(points::router())
        .merge(leaderboards::router())
        .merge(wrapped::router())
}
