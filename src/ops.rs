//! Ops metrics in the Prometheus text format (`GET /metrics`, SPEC §11.1.5): request counts
//! and latency histograms by route and status, events ingested, journal fsyncs and their
//! latency, live user actors, actor failures and pending due work. Kept in plain atomics and
//! one small map; rendering reads them without stopping anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct RouteStats {
    /// Count per status code.
    by_status: BTreeMap<u16, u64>,
    /// Cumulative-style counts per bucket are computed at render time from these.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// Counters for the logs and `/metrics`.
#[derive(Default)]
pub struct OpsCounters {
    pub events_ingested: AtomicU64,
    /// WebSocket connections closed as slow consumers (1013).
    pub ws_slow_consumers: AtomicU64,
    /// Method → route template → stats. Nested so that a lookup borrows the strings and
    /// only a new series allocates.
    routes: Mutex<BTreeMap<String, BTreeMap<String, RouteStats>>>,
}

impl OpsCounters {
    /// Records one request. `route` is the route template (never the raw path, so the
    /// number of series stays bounded).
    pub fn record_request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let secs = latency.as_secs_f64();
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if !routes.contains_key(method) {
            routes.insert(method.to_string(), BTreeMap::new());
        }
        let Some(by_route) = routes.get_mut(method) else {
            return;
        };
        if !by_route.contains_key(route) {
            by_route.insert(route.to_string(), RouteStats::default());
        }
        let Some(stats) = by_route.get_mut(route) else {
            return;
        };
        *stats.by_status.entry(status).or_default() += 1;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            stats.buckets[i] += 1;
        }
        stats.count += 1;
        stats.sum_seconds += secs;
    }

    pub fn events(&self) -> u64 {
        self.events_ingested.load(Ordering::Relaxed)
    }

    /// The request series in the Prometheus text format.
    fn render_requests(&self, out: &mut String) {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP kudos_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE kudos_http_requests_total counter\n");
        let series = || {
            routes
                .iter()
                .flat_map(|(m, r)| r.iter().map(move |(route, stats)| (m, route, stats)))
        };
        for (method, route, stats) in series() {
            for (status, n) in &stats.by_status {
                let _ = writeln!(
                    out,
                    "kudos_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP kudos_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE kudos_http_request_duration_seconds histogram\n");
        for (method, route, stats) in series() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(stats.buckets.iter()) {
                cumulative += n;
                let _ = writeln!(out, "kudos_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(
                out,
                "kudos_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                stats.count
            );
            let _ = writeln!(
                out,
                "kudos_http_request_duration_seconds_sum{{{labels}}} {}",
                stats.sum_seconds
            );
            let _ = writeln!(
                out,
                "kudos_http_request_duration_seconds_count{{{labels}}} {}",
                stats.count
            );
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Values read from other parts of the server at render time.
pub struct Gauges {
    pub fsyncs: u64,
    pub fsync_seconds: f64,
    pub commits: u64,
    pub live_users: usize,
    pub actor_failures: u64,
    /// Due entries at or before now (capped).
    pub overdue: usize,
    pub users: u64,
    pub fsync_failures: u64,
    pub storage_healthy: bool,
    /// Inbox rows the effect tally has not applied (capped), when it runs.
    pub effect_backlog: Option<usize>,
    /// Background jobs recorded and not finished (backfills, re-filing, board seeding).
    pub jobs: usize,
    /// Inbox rows each effect consumer has not applied yet (capped), by consumer name.
    pub inbox_backlog: Vec<(&'static str, usize)>,
    /// Open WebSocket connections.
    pub ws_connections: u64,
}

/// The whole `/metrics` body.
pub fn render(counters: &OpsCounters, g: &Gauges) -> String {
    let mut out = String::new();
    counters.render_requests(&mut out);
    let mut single = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    single(
        "kudos_events_ingested_total",
        "counter",
        "Metric events recorded (replays excluded).",
        counters.events().to_string(),
    );
    single(
        "kudos_journal_fsyncs_total",
        "counter",
        "Group-commit fsyncs of the journal.",
        g.fsyncs.to_string(),
    );
    single(
        "kudos_journal_commits_total",
        "counter",
        "Commits (one per state-changing command) written by group commit.",
        g.commits.to_string(),
    );
    single(
        "kudos_journal_fsync_seconds_total",
        "counter",
        "Time spent in journal fsyncs.",
        g.fsync_seconds.to_string(),
    );
    single(
        "kudos_user_actors_live",
        "gauge",
        "User actors in memory.",
        g.live_users.to_string(),
    );
    single(
        "kudos_actor_failures_total",
        "counter",
        "Actors that failed (panic or storage error).",
        g.actor_failures.to_string(),
    );
    single(
        "kudos_due_overdue",
        "gauge",
        "Due entries at or before now, not yet run (counted up to 10000).",
        g.overdue.to_string(),
    );
    single(
        "kudos_journal_fsync_failures_total",
        "counter",
        "Group-commit fsyncs that failed.",
        g.fsync_failures.to_string(),
    );
    single(
        "kudos_storage_healthy",
        "gauge",
        "1 while writes can be made durable, 0 after a storage failure.",
        u8::from(g.storage_healthy).to_string(),
    );
    if let Some(backlog) = g.effect_backlog {
        single(
            "kudos_effect_tally_backlog",
            "gauge",
            "Inbox rows the effect tally has not applied yet (counted up to 10000).",
            backlog.to_string(),
        );
    }
    single(
        "kudos_ws_connections",
        "gauge",
        "Open WebSocket connections.",
        g.ws_connections.to_string(),
    );
    single(
        "kudos_ws_slow_consumers_total",
        "counter",
        "WebSocket connections closed as slow consumers (1013).",
        counters
            .ws_slow_consumers
            .load(Ordering::Relaxed)
            .to_string(),
    );
    single(
        "kudos_users",
        "gauge",
        "Users ever created.",
        g.users.to_string(),
    );
    single(
        "kudos_background_jobs",
        "gauge",
        "Background jobs that visit every user, recorded and not finished yet.",
        g.jobs.to_string(),
    );
    let _ = writeln!(
        out,
        "# HELP kudos_inbox_backlog Records whose effects a consumer has not applied yet (counted up to 10000).\n# TYPE kudos_inbox_backlog gauge"
    );
    for (consumer, n) in &g.inbox_backlog {
        let _ = writeln!(out, "kudos_inbox_backlog{{consumer=\"{consumer}\"}} {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let c = OpsCounters::default();
        c.record_request(
            "POST",
            "/v1/metrics/{key}/event",
            201,
            Duration::from_millis(3),
        );
        c.record_request(
            "POST",
            "/v1/metrics/{key}/event",
            201,
            Duration::from_millis(30),
        );
        c.record_request(
            "POST",
            "/v1/metrics/{key}/event",
            404,
            Duration::from_micros(100),
        );
        let g = Gauges {
            fsyncs: 2,
            fsync_seconds: 0.5,
            commits: 7,
            live_users: 1,
            actor_failures: 0,
            overdue: 0,
            users: 1,
            fsync_failures: 0,
            storage_healthy: true,
            effect_backlog: None,
            inbox_backlog: vec![("webhooks", 3)],
            jobs: 0,
            ws_connections: 4,
        };
        let text = render(&c, &g);
        assert!(text.contains("kudos_http_requests_total{method=\"POST\",route=\"/v1/metrics/{key}/event\",status=\"201\"} 2"));
        assert!(text.contains("kudos_http_requests_total{method=\"POST\",route=\"/v1/metrics/{key}/event\",status=\"404\"} 1"));
        assert!(text.contains("le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("kudos_journal_fsyncs_total 2\n"));
        assert!(text.contains("kudos_journal_commits_total 7\n"));
        assert!(
            text.contains("kudos_inbox_backlog{consumer=\"webhooks\"} 3\n"),
            "{text}"
        );
    }
}
