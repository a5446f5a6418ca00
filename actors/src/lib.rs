//! # kudos-actors: the Kudos domain
//!
//! ## Layout
//! - [`rules`]: pure functions (user write rules, event summaries, key formats). No actors,
//!   no I/O, time passed in.
//! - [`catalog`]: configuration as an immutable `Arc<Catalog>`, swapped on admin changes.
//! - [`user`]: user state, journal records, effects, and the `UserActor` that serializes all
//!   processing for one user.
//! - [`user_shards`]: user id → actor routing, lazy spawn, passivation of idle users.
//! - [`supervisor`]: the root of the actor tree.
//! - [`effects`]: the effect bus and inbox consumers (effects applied exactly once).
//! - [`tasks`]: supervised background loops (restart with backoff, tracked shutdown).
//! - [`space`]: one scope's catalog, users, boards and boost clock, opened on demand.
//! - [`scheduler`]: typed due work on the clock, and jobs that visit every user.
//! - [`clock`]: the only source of domain time (system or manual test clock).
//!
//! A request flows `http` → `UserShards::call` → `UserActor` (`decide` → `apply` → one
//! atomic commit of the record and every row it implies → group-commit fsync) → reply, then
//! the record's effects are published to their consumers.
#![forbid(unsafe_code)]

pub mod achievements;
pub mod boosts;
pub mod catalog;
pub mod clock;
pub mod effects;
pub mod leaderboard;
pub mod rules;
pub mod scheduler;
pub mod space;
pub mod supervisor;
pub mod tasks;
#[cfg(test)]
mod testing;
pub mod user;
pub mod user_shards;
