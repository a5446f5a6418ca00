//! Leaderboards (SPEC §7):
//! - [`ranking`]: the order-statistic ranking of one group;
//! - [`placement`]: which board, run and group a user's change counts in (decided in the
//!   user's actor, recorded as an effect);
//! - [`board`]: one board's runs and groups, folding placements into rankings;
//! - [`state`]: a board's live state: applying records, the rows and effects each write
//!   carries, run announcements;
//! - [`actor`]: the `LeaderboardActor` owning one board's state;
//! - [`boards`]: routing to board actors, the leaderboards effect consumer, reads;
//! - [`standings`]: the durable rows (entries, daily history) and their keys.

pub mod actor;
pub mod board;
pub mod boards;
pub mod placement;
pub mod ranking;
pub mod standings;
pub mod state;

use serde::{Deserialize, Serialize};

/// One row of a ranking as effects carry it (the top 10 of `leaderboard.changed` and
/// `leaderboard.finished`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    pub user_id: String,
    pub user_name: Option<String>,
    pub rank: u32,
    pub value: f64,
}
