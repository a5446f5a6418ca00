//! Webhook throttling (SPEC §8.2): at most one delivery per key per window. The first
//! change after a quiet period is delivered at once (leading edge); further changes inside
//! the window are coalesced into one held change, delivered when the window ends (trailing
//! edge), which opens the next window. A window that ends with nothing held closes.
//!
//! The rule knows nothing of payloads: what is held and how two changes coalesce is the
//! caller's ([`Coalesce`]).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How long a window lasts (SPEC §8.2: 15 minutes).
pub fn window() -> Duration {
    Duration::minutes(15)
}

/// A change that can absorb a later one, keeping the latest state.
pub trait Coalesce {
    fn coalesce(&mut self, later: Self);
}

/// One key's open window: when it ends and what is held for its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window<H> {
    pub ends: DateTime<Utc>,
    pub held: Option<H>,
}

/// A change arrives at `now`: returns it when it is delivered now (and opens a window), or
/// `None` when it was coalesced into the held change of the open window.
pub fn admit<H: Coalesce>(
    window: &mut Option<Window<H>>,
    change: H,
    now: DateTime<Utc>,
) -> Option<H> {
    match window {
        // A window whose end passed with nothing held is closed, even if its closing has not
        // run yet; one whose held change is still waiting takes this one too.
        Some(w) if w.ends > now || w.held.is_some() => {
            match &mut w.held {
                Some(held) => held.coalesce(change),
                None => w.held = Some(change),
            }
            None
        }
        _ => {
            *window = Some(Window {
                ends: now + self::window(),
                held: None,
            });
            Some(change)
        }
    }
}

/// The window's end is reached at `now` (no-op before it): returns the held change to
/// deliver, opening the next window, or closes the window when nothing is held.
pub fn close<H>(window: &mut Option<Window<H>>, now: DateTime<Utc>) -> Option<H> {
    let w = window.as_mut()?;
    if w.ends > now {
        return None;
    }
    match w.held.take() {
        Some(held) => {
            w.ends = now + self::window();
            Some(held)
        }
        None => {
            *window = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl Coalesce for Vec<u32> {
        fn coalesce(&mut self, later: Self) {
            self.extend(later);
        }
    }

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    #[test]
    fn the_first_change_goes_at_once_and_the_rest_of_the_window_waits_for_its_end() {
        let mut w = None;
        assert_eq!(admit(&mut w, vec![1], t(0)), Some(vec![1]));
        assert_eq!(admit(&mut w, vec![2], t(3)), None);
        assert_eq!(admit(&mut w, vec![3], t(14)), None);
        assert_eq!(close(&mut w, t(14)), None, "not before the end");
        assert_eq!(close(&mut w, t(15)), Some(vec![2, 3]));
        // The trailing delivery opened a window: a change right after it waits.
        assert_eq!(admit(&mut w, vec![4], t(16)), None);
        assert_eq!(close(&mut w, t(30)), Some(vec![4]));
        // A window ending with nothing held closes; the next change is a leading edge.
        assert_eq!(close(&mut w, t(45)), None);
        assert_eq!(w, None);
        assert_eq!(admit(&mut w, vec![5], t(50)), Some(vec![5]));
    }

    #[test]
    fn a_change_after_an_unclosed_quiet_window_is_a_leading_edge() {
        let mut w = None;
        admit(&mut w, vec![1], t(0));
        // The closing did not run (the server was down), nothing was held.
        assert_eq!(admit(&mut w, vec![2], t(20)), Some(vec![2]));
        assert_eq!(w.as_ref().map(|w| w.ends), Some(t(35)));
    }

    #[test]
    fn a_held_change_whose_closing_is_late_takes_later_changes_too() {
        let mut w = None;
        admit(&mut w, vec![1], t(0));
        admit(&mut w, vec![2], t(5));
        assert_eq!(admit(&mut w, vec![3], t(40)), None);
        assert_eq!(close(&mut w, t(41)), Some(vec![2, 3]));
        assert_eq!(w.as_ref().map(|w| w.ends), Some(t(56)));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Change(i64),
        Close(i64),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        proptest::collection::vec(
            prop_oneof![
                (0i64..40).prop_map(Step::Change),
                (0i64..40).prop_map(Step::Close)
            ],
            0..60,
        )
    }

    proptest! {
        /// Deliveries of one key are at least a window apart, every change is delivered
        /// exactly once and in order, and the last delivery carries the latest change.
        #[test]
        fn deliveries_are_spaced_and_lose_nothing(steps in steps()) {
            let mut w: Option<Window<Vec<u32>>> = None;
            let mut now = t(0);
            let mut delivered: Vec<(DateTime<Utc>, Vec<u32>)> = Vec::new();
            let mut next = 0u32;
            for s in steps {
                match s {
                    Step::Change(gap) => {
                        now += Duration::minutes(gap);
                        if let Some(d) = admit(&mut w, vec![next], now) {
                            delivered.push((now, d));
                        }
                        next += 1;
                    }
                    Step::Close(gap) => {
                        now += Duration::minutes(gap);
                        // The closing runs only once the window's end is reached.
                        if let Some(d) = close(&mut w, now) {
                            delivered.push((now, d));
                        }
                    }
                }
            }
            // Drain: the closing eventually runs at each window's end.
            while let Some(ends) = w.as_ref().map(|w| w.ends) {
                now = now.max(ends);
                if let Some(d) = close(&mut w, now) {
                    delivered.push((now, d));
                }
            }
            for pair in delivered.windows(2) {
                prop_assert!(pair[1].0 - pair[0].0 >= window(), "{:?}", delivered);
            }
            let all: Vec<u32> = delivered.iter().flat_map(|(_, d)| d.clone()).collect();
            prop_assert_eq!(all, (0..next).collect::<Vec<_>>());
        }
    }
}
