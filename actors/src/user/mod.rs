//! One user: state, the journal records that change it, the pure decisions that turn a
//! [`Command`] into a record, and the [`UserActor`] that serializes everything for one user.
//!
//! Processing follows one pattern (ARCHITECTURE.md, "The path of one event"):
//! [`decide`] (pure, may reject) → [`UserState::apply_collect`] (deterministic; also yields
//! the record's [`Effect`]s) → one atomic commit → reply. Replay after a restart folds the
//! same records with what was decided live, so recovered state equals live state.
//!
//! - [`state`]: what is known about a user, and facts derived from it;
//! - [`records`]: what is journaled (records, effects, journal entries);
//! - [`commands`]: what a user can be asked, and the typed answers;
//! - [`decide`]: command → record or answer (pure);
//! - [`apply`]: record → state change and effects (the replay rules);
//! - `notices`: the user's "due" notifications;
//! - [`queries`]: typed reads ([`UserQuery`] → [`UserView`]);
//! - [`wrapped`]: the year-in-review bookkeeping and its per-scope distributions;
//! - [`actor`]: the actor, its commit path and passivation.

mod actor;
mod apply;
mod commands;
mod decide;
mod notices;
mod points;
mod queries;
mod records;
mod state;
#[cfg(test)]
mod tests;
pub mod wrapped;

pub use actor::*;
pub use apply::*;
pub use commands::*;
pub use decide::*;
pub use points::{Award, PointsBalance, AWARDS_KEPT};
pub use queries::*;
pub use records::*;
pub use state::*;
