//! Pure domain rules: no actors, no I/O, time passed in. One file per rule family, each with
//! its unit tests at the bottom.

pub mod achievements;
pub mod keys;
pub mod notices;
pub mod points;
pub mod profile;
pub mod runs;
pub mod ssrf;
pub mod streak;
pub mod summary;
pub mod throttle;
pub mod wrapped;
