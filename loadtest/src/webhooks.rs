//! `webhooks`: webhook delivery on the real binary, to a receiver in this process.
//!
//! 1. **Throughput.** Endpoints whose receiver holds every request until a gate opens: a
//!    backlog builds up on disk (completions posted over REST, each delivered to every
//!    endpoint), then the gate opens and the time to drain it gives deliveries/s.
//! 2. **Latency and isolation.** Completions at a fixed rate, from the REST
//!    acknowledgement of each completion to its delivery's arrival at a healthy endpoint:
//!    alone, then beside an endpoint that always hangs (never answers, so every attempt
//!    runs into the timeout), alone again, beside a second healthy endpoint (the control:
//!    the same storage work per event as the hanging one), and alone again. Reports the
//!    healthy endpoint's latency and the REST latency of the completions in each phase.
//!
//! Latency is measured from the acknowledgement of the event that caused the delivery,
//! so it includes the outbox (payload rendering, the fsynced delivery rows) as well as the
//! sender: an upper bound of enqueue-to-first-attempt.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::{free_port, spawn_kudos_with, wait_until, ChildGuard, KEY};

const ACHIEVEMENT: &str = "loadtest-api";
/// The attempt timeout the server runs with (a gated or hanging request ends by then).
const TIMEOUT_SECS: u64 = 30;

/// What the receiver saw: per endpoint path, the arrival of each user's first delivery.
#[derive(Default)]
struct Seen {
    first: HashMap<(usize, String), Instant>,
    total: usize,
}

struct Receiver {
    url: String,
    seen: Arc<Mutex<Seen>>,
    /// Requests wait while this is false.
    open: Arc<tokio::sync::watch::Sender<bool>>,
    /// Endpoint numbers that never answer.
    hanging: Arc<Mutex<Vec<usize>>>,
}

#[derive(serde::Deserialize)]
struct Payload {
    user: PayloadUser,
}

#[derive(serde::Deserialize)]
struct PayloadUser {
    id: String,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        use axum::extract::{Path as UrlPath, State};
        type Shared = (
            Arc<Mutex<Seen>>,
            tokio::sync::watch::Receiver<bool>,
            Arc<Mutex<Vec<usize>>>,
        );
        async fn hook(
            State((seen, mut open, hanging)): State<Shared>,
            UrlPath(n): UrlPath<usize>,
            body: axum::body::Bytes,
        ) -> &'static str {
            let at = Instant::now();
            if let Ok(p) = serde_json::from_slice::<Payload>(&body) {
                let mut s = seen.lock().expect("lock");
                s.total += 1;
                s.first.entry((n, p.user.id)).or_insert(at);
            }
            if hanging.lock().expect("lock").contains(&n) {
                std::future::pending::<()>().await;
            }
            let _ = open.wait_for(|o| *o).await;
            "ok"
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (open, gate) = tokio::sync::watch::channel(true);
        let hanging = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/h/{n}", axum::routing::post(hook))
            .with_state((seen.clone(), gate, hanging.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            url,
            seen,
            open: Arc::new(open),
            hanging,
        })
    }

    fn total(&self) -> usize {
        self.seen.lock().expect("lock").total
    }

    fn first(&self, endpoint: usize, user: &str) -> Option<Instant> {
        self.seen
            .lock()
            .expect("lock")
            .first
            .get(&(endpoint, user.to_string()))
            .copied()
    }
}

async fn admin(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = client.request(method, &url).header("X-API-KEY", KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await?;
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("{url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Endpoints `numbers` on the receiver, subscribed to `achievement.completed`; their ids.
async fn create_endpoints(
    client: &reqwest::Client,
    base: &str,
    receiver: &Receiver,
    numbers: std::ops::Range<usize>,
) -> anyhow::Result<Vec<String>> {
    let items: Vec<Value> = numbers
        .map(|n| json!({"url": format!("{}/h/{n}", receiver.url), "events": ["achievement.completed"]}))
        .collect();
    let body = admin(
        client,
        reqwest::Method::POST,
        format!("{base}/admin/v1/webhooks"),
        Some(Value::Array(items)),
    )
    .await?;
    Ok(body["created"]
        .as_array()
        .context("created endpoints")?
        .iter()
        .filter_map(|w| w["id"].as_str().map(str::to_string))
        .collect())
}

/// Posts completions of the load test's achievement for users `user-{from}…` on a fixed
/// schedule (`rate`/s, or as fast as answers come with `None`) until `count` were sent or
/// `until`; returns each acknowledged user with its acknowledgement, and the REST latency
/// (from the scheduled send, µs).
async fn complete(
    base: &str,
    from: usize,
    count: usize,
    rate: Option<f64>,
    until: Option<Instant>,
    connections: usize,
) -> anyhow::Result<(Vec<(usize, Instant)>, Histogram<u64>)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url: Arc<str> = format!("{base}/v1/achievements/{ACHIEVEMENT}/complete").into();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let scheduled = rate.map(|r| started + Duration::from_secs_f64(i as f64 / r));
                if let Some(at) = scheduled {
                    tokio::time::sleep_until(at.into()).await;
                }
                if until.is_some_and(|u| Instant::now() >= u) {
                    break;
                }
                let sent = scheduled.unwrap_or_else(Instant::now);
                let user = from + i;
                let r = client
                    .post(&*url)
                    .header("X-API-KEY", KEY)
                    .header("Content-Type", "application/json")
                    .body(format!("{{\"user\":{{\"id\":\"user-{user}\"}}}}"))
                    .send()
                    .await;
                if let Ok(r) = r {
                    let ok = r.status().as_u16() == 201;
                    let _ = r.bytes().await;
                    if ok {
                        acks.push((user, Instant::now()));
                        let _ = hist.record(sent.elapsed().as_micros().max(1) as u64);
                    }
                }
            }
            (acks, hist)
        }));
    }
    let mut acks = Vec::new();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        let (a, h) = t.await?;
        acks.extend(a);
        hist.add(h)?;
    }
    Ok((acks, hist))
}

/// Waits until the outbox has turned every acknowledged record into deliveries.
async fn outbox_drained(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        if text
            .lines()
            .any(|l| l == "kudos_inbox_backlog{consumer=\"webhooks\"} 0")
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the webhook outbox did not drain in 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the receiver has `n` requests in all (or `limit` passed); returns when.
async fn received(receiver: &Receiver, n: usize, limit: Duration) -> Option<Instant> {
    let started = Instant::now();
    loop {
        if receiver.total() >= n {
            return Some(Instant::now());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// What `webhooks` is run with.
#[derive(clap::Args)]
pub struct Options {
    /// Endpoints the backlog is delivered to (each completion goes to every one).
    #[arg(long, default_value_t = 8)]
    pub endpoints: usize,
    /// Completions in the backlog.
    #[arg(long, default_value_t = 5_000)]
    pub backlog: usize,
    /// Completions per second in the full-rate latency phase (one delivery each to the
    /// healthy endpoint).
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Completions per second in the isolation phases (alone, beside a hanging endpoint,
    /// beside a second healthy one), below saturation so only the neighbour differs.
    #[arg(long, default_value_t = 500.0)]
    pub isolation_rate: f64,
    /// Measured seconds per latency phase.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Also sample the outbox backlog and the healthy queue from /metrics.
    #[arg(long)]
    pub sample: bool,
}

pub async fn run(bin: &Path, o: Options) -> anyhow::Result<()> {
    let Options {
        endpoints,
        backlog,
        rate,
        isolation_rate,
        duration,
        connections,
        sample,
    } = o;
    let client = reqwest::Client::new();
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let timeout = TIMEOUT_SECS.to_string();
    let _kudos: ChildGuard = spawn_kudos_with(
        bin,
        dir.path(),
        port,
        &[
            ("KUDOS_WEBHOOK_ALLOW_PRIVATE", "1"),
            ("KUDOS_WEBHOOK_TIMEOUT_SECS", &timeout),
        ],
    )?;
    let base = format!("http://127.0.0.1:{port}");
    wait_until(&client, &format!("{base}/readyz"), Duration::from_secs(60)).await?;
    admin(
        &client,
        reqwest::Method::POST,
        format!("{base}/admin/v1/achievements"),
        Some(json!([{"name": "Load test", "trigger": "api", "key": ACHIEVEMENT, "status": "active"}])),
    )
    .await?;
    println!(
        "cores={} endpoints={endpoints} backlog={backlog} rate={rate}/s isolation-rate={isolation_rate}/s duration={duration}s connections={connections}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Throughput: a gated backlog, then the drain.
    let ids = create_endpoints(&client, &base, &receiver, 0..endpoints).await?;
    receiver.open.send_replace(false);
    eprintln!("building a backlog of {backlog} completions x {endpoints} endpoints...");
    let build = Instant::now();
    let (acks, _) = complete(&base, 0, backlog, None, None, connections).await?;
    outbox_drained(&client, &base).await?;
    let built = build.elapsed();
    if built > Duration::from_secs(TIMEOUT_SECS - 5) {
        eprintln!("warning: the backlog took {built:?}; held attempts may have timed out");
    }
    let expected = acks.len() * endpoints;
    let early = receiver.total();
    let opened = Instant::now();
    receiver.open.send_replace(true);
    let done = received(&receiver, expected, Duration::from_secs(300))
        .await
        .context("the backlog was not delivered in 5 minutes")?;
    let drain = done - opened;
    let rate_drained = (expected - early) as f64 / drain.as_secs_f64();
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| backlog built (REST + outbox) | {} completions, {} deliveries, {:.1} s |",
        acks.len(),
        expected,
        built.as_secs_f64()
    );
    println!(
        "| **deliveries/s draining the backlog** | **{rate_drained:.0}** ({} in {:.2} s, {endpoints} endpoints x 4 in flight) |",
        expected - early,
        drain.as_secs_f64()
    );
    admin(
        &client,
        reqwest::Method::DELETE,
        format!("{base}/admin/v1/webhooks?ids={}", ids.join(",")),
        None,
    )
    .await?;

    // Let the drain's aftermath (sled's background writes of the backlog's rows) settle.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // 2. Latency at a fixed rate to one healthy endpoint, alone and beside another.
    let healthy_id = create_endpoints(&client, &base, &receiver, 100..101)
        .await?
        .remove(0);
    receiver.hanging.lock().expect("lock").push(101);
    let mut hanging_ids = Vec::new();
    let mut from = 1_000_000;
    println!();
    println!(
        "| phase | completions/s (= deliveries/s to the healthy endpoint) | healthy p50 ms | healthy p99 ms | healthy max ms | lost | REST p50 ms | REST p99 ms | outbox backlog max | healthy queue max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // The other endpoint in each phase: none, one that always hangs (101), one that
    // answers at once (102, the same storage work as the hanging one, plus its deliveries).
    for (name, other, rate) in [
        ("the healthy endpoint alone, at the full rate", None, rate),
        ("alone", None, isolation_rate),
        (
            "beside an endpoint that always hangs",
            Some(101),
            isolation_rate,
        ),
        ("alone again", None, isolation_rate),
        (
            "beside a second healthy endpoint (control)",
            Some(102),
            isolation_rate,
        ),
        ("alone again", None, isolation_rate),
    ] {
        let per_phase = (rate * duration as f64) as usize;
        if !hanging_ids.is_empty() {
            admin(
                &client,
                reqwest::Method::DELETE,
                format!("{base}/admin/v1/webhooks?ids={}", hanging_ids.join(",")),
                None,
            )
            .await?;
            hanging_ids.clear();
        }
        if let Some(n) = other {
            hanging_ids = create_endpoints(&client, &base, &receiver, n..n + 1).await?;
        }
        // A short unmeasured warm-up at the same rate.
        complete(
            &base,
            from,
            (rate * 2.0) as usize,
            Some(rate),
            None,
            connections,
        )
        .await?;
        from += (rate * 2.0) as usize;
        // With `sample`, the outbox backlog and the healthy endpoint's queue, read from
        // `/metrics` twice a second (a scrape counts the hanging endpoint's growing queue,
        // which costs the server CPU: off by default).
        let sampling = Arc::new(std::sync::atomic::AtomicBool::new(sample));
        let sampler = {
            let (client, base, sampling) = (client.clone(), base.clone(), sampling.clone());
            let healthy = healthy_id.clone();
            tokio::spawn(async move {
                let (mut outbox, mut queue) = (0u64, 0u64);
                while sampling.load(Ordering::Relaxed) {
                    if let Ok(r) = client.get(format!("{base}/metrics")).send().await {
                        let text = r.text().await.unwrap_or_default();
                        let value = |prefix: &str| {
                            text.lines()
                                .find_map(|l| l.strip_prefix(prefix))
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .unwrap_or(0)
                        };
                        outbox = outbox.max(value("kudos_inbox_backlog{consumer=\"webhooks\"}"));
                        queue = queue.max(value(&format!(
                            "kudos_webhook_queue_depth{{endpoint=\"{healthy}\"}}"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                (outbox, queue)
            })
        };
        let (acks, rest) = complete(&base, from, per_phase, Some(rate), None, connections).await?;
        from += per_phase;
        sampling.store(false, Ordering::Relaxed);
        let (outbox_max, queue_max) = sampler.await?;
        // Let every delivery of the phase arrive (or be lost).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut lat = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        let mut lost = 0;
        for (user, ack) in &acks {
            let id = format!("user-{user}");
            let arrived = loop {
                if let Some(t) = receiver.first(100, &id) {
                    break Some(t);
                }
                if Instant::now() > deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            match arrived {
                Some(t) => {
                    let _ = lat.record(t.saturating_duration_since(*ack).as_micros().max(1) as u64);
                }
                None => lost += 1,
            }
        }
        println!(
            "| {name} | {rate:.0} | {:.2} | {:.2} | {:.2} | {lost} | {:.2} | {:.2} | {outbox_max} | {queue_max} |",
            ms(&lat, 0.5),
            ms(&lat, 0.99),
            lat.max() as f64 / 1000.0,
            ms(&rest, 0.5),
            ms(&rest, 0.99),
        );
    }
    Ok(())
}
