//! Leaderboards (SPEC §7): the order-statistic ranking of a group.

pub mod ranking;
