//! Leaderboards (SPEC §7):
//! - [`ranking`]: the order-statistic ranking of one group;
//! - [`placement`]: which board, run and group a user's change counts in (decided in the
//!   user's actor, recorded as an effect);
//! - [`board`]: one board's runs and groups, folding placements into rankings.

pub mod board;
pub mod placement;
pub mod ranking;
pub mod standings;
