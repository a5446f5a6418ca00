//! Test-only fault injection on the commit path.
//!
//! `KUDOS_TEST_FAILPOINTS=point:n[,point:n...]` arms a point from its n-th hit on. The crash
//! tests start the real binary with it to die at a chosen step of a commit (after the batch
//! is written but before its fsync, after the fsync but before the reply...), then check
//! that what survived agrees with what was acknowledged. Unset (always, outside tests), a
//! hit costs one relaxed load of an empty list.
//!
//! Points: `commit_before_write`, `commit_after_write`, `commit_after_fsync` (crash: the
//! process aborts), `fsync_error` (the fsync reports an I/O error instead of running).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms fail points.
pub const ENV: &str = "KUDOS_TEST_FAILPOINTS";

struct Armed {
    name: String,
    from: u64,
    hits: AtomicU64,
}

fn armed() -> &'static [Armed] {
    static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let Ok(spec) = std::env::var(ENV) else {
            return Vec::new();
        };
        let points: Vec<Armed> = spec
            .split(',')
            .filter_map(|p| {
                let (name, n) = p.trim().split_once(':')?;
                Some(Armed {
                    name: name.to_string(),
                    from: n.parse().ok()?,
                    hits: AtomicU64::new(0),
                })
            })
            .collect();
        if !points.is_empty() {
            tracing::warn!(spec = %spec, "test fail points armed");
        }
        points
    })
}

/// Counts a hit of `name`; true once the point is armed and reached.
pub fn hit(name: &str) -> bool {
    armed()
        .iter()
        .any(|a| a.name == name && a.hits.fetch_add(1, Ordering::Relaxed) + 1 >= a.from.max(1))
}

/// Aborts the process (no destructors, no flush: a crash) when `name` is reached.
pub fn crash(name: &str) {
    if hit(name) {
        eprintln!("fail point {name} reached: aborting");
        std::process::abort();
    }
}
