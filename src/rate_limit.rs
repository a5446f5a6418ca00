//! Request rate limits per API key (SPEC §1.4): a token bucket whose burst is one second of
//! its rate (at least one request). The bucket is a pure rule over instants it is given; [`Limiter`] keeps one per
//! key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// The tokens a bucket holds when full: one second's worth, and never less than one (a
/// rate below 1/s still admits a request once a token has refilled).
fn burst(rate: f64) -> f64 {
    rate.max(1.0)
}

/// A token bucket: `rate` tokens per second, at most [`burst`] held.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(rate: f64, now: Instant) -> Self {
        Self {
            tokens: burst(rate),
            at: now,
        }
    }

    /// Takes one token at `now`; when none is left, how long until one is.
    pub fn take(&mut self, rate: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst(rate));
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// Buckets by key id, for keys whose rate is limited.
#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_key: HashMap<Uuid, Bucket>,
    /// The size at which idle buckets are swept next.
    sweep_at: usize,
}

/// Buckets kept before the idle ones are first swept (a full bucket is the same as none).
const MIN_SWEEP: usize = 100_000;

impl Limiter {
    /// Admits one request of `key` at `now` under `rate` per second (`None`: unlimited);
    /// when refused, the whole seconds to wait (for `Retry-After`, at least 1).
    pub fn admit(&self, key: Uuid, rate: Option<f64>, now: Instant) -> Result<(), u64> {
        let Some(rate) = rate.filter(|r| *r > 0.0) else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = &mut *buckets;
        if b.by_key.len() >= b.sweep_at.max(MIN_SWEEP) {
            // Buckets idle long enough to have refilled are the same as none. The next sweep
            // waits until the map has doubled again, so sweeps cost O(1) per request.
            let refill = Duration::from_secs_f64(burst(rate) / rate);
            b.by_key
                .retain(|_, bucket| now.saturating_duration_since(bucket.at) < refill);
            b.sweep_at = b.by_key.len().saturating_mul(2);
        }
        let bucket = b
            .by_key
            .entry(key)
            .or_insert_with(|| Bucket::full(rate, now));
        bucket
            .take(rate, now)
            .map_err(|wait| wait.as_secs_f64().ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_bucket_admits_a_burst_of_one_second_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(20.0, t0);
        for _ in 0..20 {
            assert!(b.take(20.0, t0).is_ok());
        }
        let wait = b.take(20.0, t0).expect_err("the burst is spent");
        assert!((wait.as_secs_f64() - 0.05).abs() < 1e-9, "{wait:?}");
        assert!(b.take(20.0, t0 + Duration::from_millis(50)).is_ok());
        assert!(b.take(20.0, t0 + Duration::from_millis(50)).is_err());
        // Never more than the burst, however long it was idle.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..20 {
            assert!(b.take(20.0, later).is_ok());
        }
        assert!(b.take(20.0, later).is_err());
    }

    #[test]
    fn unlimited_keys_are_always_admitted_and_a_refusal_says_at_least_one_second() {
        let l = Limiter::default();
        let (k, now) = (Uuid::new_v4(), Instant::now());
        for _ in 0..1000 {
            assert!(l.admit(k, None, now).is_ok());
        }
        assert!(l.admit(k, Some(1.0), now).is_ok());
        assert_eq!(l.admit(k, Some(1.0), now), Err(1));
        // Another key has its own bucket.
        assert!(l.admit(Uuid::new_v4(), Some(1.0), now).is_ok());
    }

    #[test]
    fn a_rate_below_one_per_second_still_admits_a_request_per_interval() {
        let t0 = Instant::now();
        let mut b = Bucket::full(0.5, t0);
        assert!(b.take(0.5, t0).is_ok());
        let wait = b.take(0.5, t0).expect_err("spent");
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-9, "{wait:?}");
        assert!(b.take(0.5, t0 + Duration::from_secs(2)).is_ok());
    }

    proptest! {
        /// Over any schedule of requests, the admitted ones never exceed the burst plus
        /// the rate times the time elapsed.
        #[test]
        fn admissions_never_exceed_burst_plus_rate_times_elapsed(
            rate in 1u32..500,
            gaps in proptest::collection::vec(0u64..200, 1..300),
        ) {
            // 0.1 to 50 requests per second.
            let rate = f64::from(rate) / 10.0;
            let t0 = Instant::now();
            let mut b = Bucket::full(rate, t0);
            let (mut now, mut admitted) = (t0, 0u64);
            for gap in gaps {
                now += Duration::from_millis(gap);
                if b.take(rate, now).is_ok() {
                    admitted += 1;
                }
                let elapsed = now.duration_since(t0).as_secs_f64();
                prop_assert!(admitted as f64 <= burst(rate) + rate * elapsed + 1e-6);
            }
        }

        /// A request refused with a wait is admitted once that wait has passed.
        #[test]
        fn the_wait_given_is_enough(rate in 1u32..50, spent in 0u32..60) {
            let rate = f64::from(rate);
            let t0 = Instant::now();
            let mut b = Bucket::full(rate, t0);
            for _ in 0..spent {
                let _ = b.take(rate, t0);
            }
            if let Err(wait) = b.take(rate, t0) {
                prop_assert!(b.take(rate, t0 + wait + Duration::from_nanos(1)).is_ok());
            }
        }
    }
}
