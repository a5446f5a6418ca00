//! Domain time. Every timestamp Kudos records (event times, periods, schedules) comes from a
//! [`Clock`]; nothing else reads the wall clock. `ManualClock` is the test clock of SPEC §11.2:
//! it starts at the real time of start-up and moves only when told.

use std::sync::RwLock;

use chrono::{DateTime, SubsecRound, Utc};

/// A source of domain time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// The manual clock, when this is one (test-clock endpoints need it).
    fn as_manual(&self) -> Option<&ManualClock> {
        None
    }
}

/// The wall clock, truncated to milliseconds (the precision of the wire format), so a value
/// read back from the API equals the value used in rules.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(3)
    }
}

/// Reads the wall clock once; the server uses it to seed the manual clock.
pub fn wall_clock_now() -> DateTime<Utc> {
    SystemClock.now()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClockError {
    #[error("The test clock cannot move backwards")]
    Backwards,
}

/// The manual (test) clock.
pub struct ManualClock {
    now: RwLock<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: RwLock::new(start.trunc_subsecs(3)),
        }
    }

    /// Moves the clock to `to`; it never moves backwards.
    pub fn set(&self, to: DateTime<Utc>) -> Result<DateTime<Utc>, ClockError> {
        let to = to.trunc_subsecs(3);
        let mut now = self.now.write().unwrap_or_else(|e| e.into_inner());
        if to < *now {
            return Err(ClockError::Backwards);
        }
        *now = to;
        Ok(to)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.read().unwrap_or_else(|e| e.into_inner())
    }
    fn as_manual(&self) -> Option<&ManualClock> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn manual_clock_moves_forward_only() {
        let start = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        let later = start + chrono::Duration::hours(1);
        assert_eq!(clock.set(later), Ok(later));
        assert_eq!(clock.set(start), Err(ClockError::Backwards));
        assert_eq!(clock.now(), later);
    }
}
