//! # kudos-loadtest
//!
//! Measures Kudos on this machine and prints numbers we can publish:
//!
//! - `ingest`: the ceiling first (a bare axum JSON POST route in its own process), then
//!   durable ingest (`POST /v1/metrics/{key}/event` on the real `kudos` binary, every 201
//!   fsynced), with the same load generator, connections and duration. Reports requests/s
//!   and latency percentiles for both.
//! - `recovery`: journals N events for U users without snapshots (the worst case after a
//!   crash), then times a `kudos` start on that data dir until `/readyz` answers 200.
//! - `baseline`: the bare axum server used by `ingest` (not meant to be run by hand).
//!
//! The generator shares the machine with the server, so absolute numbers include its cost;
//! the comparison with the bare route is what makes them meaningful.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;

const KEY: &str = "loadtest.0123456789abcdefghij";
const METRIC: &str = "loadtest";

#[derive(Parser)]
#[command(name = "kudos-loadtest", about = "Measure Kudos ingest and recovery")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bare axum JSON POST route (the hello-world ceiling).
    Baseline {
        #[arg(long)]
        addr: SocketAddr,
    },
    /// Bare route vs durable ingest, same load.
    Ingest {
        /// Path of the kudos binary (build it with `cargo build --release`).
        #[arg(long, default_value = "target/release/kudos")]
        kudos_bin: PathBuf,
        /// Measured seconds per target.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Unmeasured seconds before measuring.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Concurrent connections (each keeps one request in flight).
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Distinct users the events are spread over.
        #[arg(long, default_value_t = 10_000)]
        users: usize,
    },
    /// Load an already running Kudos (the metric must exist) and print the result row.
    Load {
        /// Base URL, e.g. http://127.0.0.1:8080
        #[arg(long)]
        target: String,
        /// Admin key of that server.
        #[arg(long, default_value = KEY)]
        api_key: String,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10_000)]
        users: usize,
    },
    /// Recovery time for N journaled events not yet in snapshots.
    Recovery {
        #[arg(long, default_value = "target/release/kudos")]
        kudos_bin: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 10_000)]
        users: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Baseline { addr } => rt.block_on(baseline(addr)),
        Cmd::Ingest {
            kudos_bin,
            duration,
            warmup,
            connections,
            users,
        } => rt.block_on(ingest(&kudos_bin, duration, warmup, connections, users)),
        Cmd::Load {
            target,
            api_key,
            duration,
            connections,
            users,
        } => rt.block_on(async {
            let report = load(&target, &api_key, duration, 1, connections, users).await?;
            println!("{}", report.row(&target));
            Ok(())
        }),
        Cmd::Recovery {
            kudos_bin,
            events,
            users,
        } => rt.block_on(recovery(&kudos_bin, events, users)),
    }
}

async fn baseline(addr: SocketAddr) -> anyhow::Result<()> {
    use axum::routing::post;
    use axum::Json;
    async fn echo(
        Json(body): Json<serde_json::Value>,
    ) -> (axum::http::StatusCode, Json<serde_json::Value>) {
        let total = body.get("value").cloned().unwrap_or_default();
        (
            axum::http::StatusCode::CREATED,
            Json(
                serde_json::json!({"eventId": "00000000-0000-0000-0000-000000000000", "total": total}),
            ),
        )
    }
    let app = axum::Router::new().route("/v1/metrics/{key}/event", post(echo));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// A child process killed on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_until(
    client: &reqwest::Client,
    url: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() || r.status().as_u16() == 405 {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > limit {
            bail!("{url} did not answer within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn spawn_kudos(bin: &Path, data_dir: &Path, port: u16) -> anyhow::Result<ChildGuard> {
    let child = Command::new(bin)
        .env("KUDOS_ADDR", format!("127.0.0.1:{port}"))
        .env("KUDOS_DATA_DIR", data_dir)
        .env("KUDOS_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it with cargo build --release)",
                bin.display()
            )
        })?;
    Ok(ChildGuard(child))
}

struct Report {
    requests: u64,
    errors: u64,
    seconds: f64,
    hist: Histogram<u64>,
}

impl Report {
    fn row(&self, name: &str) -> String {
        let p = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            self.requests as f64 / self.seconds,
            p(0.50),
            p(0.90),
            p(0.99),
            p(0.999),
            self.errors
        )
    }
}

/// Runs `connections` loops of POSTs against `base` for `warmup + duration` seconds.
async fn load(
    base: &str,
    api_key: &str,
    duration: u64,
    warmup: u64,
    connections: usize,
    users: usize,
) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url: Arc<str> = format!("{base}/v1/metrics/{METRIC}/event").into();
    let api_key: Arc<str> = api_key.into();
    let started = Instant::now();
    let measure_from = started + Duration::from_secs(warmup);
    let end = measure_from + Duration::from_secs(duration);
    let mut tasks = Vec::new();
    for conn in 0..connections {
        let (client, url, api_key) = (client.clone(), url.clone(), api_key.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let (mut requests, mut errors) = (0u64, 0u64);
            let mut i = 0usize;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let user = (conn * 7919 + i * 31) % users;
                i += 1;
                let body = format!("{{\"user\":{{\"id\":\"user-{user}\"}},\"value\":1}}");
                let sent = Instant::now();
                let ok = match client
                    .post(&*url)
                    .header("X-API-KEY", &*api_key)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let ok = r.status().as_u16() == 201;
                        let _ = r.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                if sent >= measure_from {
                    requests += 1;
                    if !ok {
                        errors += 1;
                    }
                    let _ = hist.record(sent.elapsed().as_micros().max(1) as u64);
                }
            }
            (hist, requests, errors)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut requests, mut errors) = (0, 0);
    for t in tasks {
        let (h, r, e) = t.await?;
        hist.add(h)?;
        requests += r;
        errors += e;
    }
    Ok(Report {
        requests,
        errors,
        seconds: duration as f64,
        hist,
    })
}

async fn ingest(
    bin: &Path,
    duration: u64,
    warmup: u64,
    connections: usize,
    users: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();

    let port = free_port()?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args(["baseline", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()?;
    let guard = ChildGuard(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_until(
        &client,
        &format!("{base}/v1/metrics/{METRIC}/event"),
        Duration::from_secs(10),
    )
    .await?;
    eprintln!("measuring the bare axum route for {duration}s...");
    let bare = load(&base, KEY, duration, warmup, connections, users).await?;
    drop(guard);

    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let _kudos = spawn_kudos(bin, dir.path(), port)?;
    let base = format!("http://127.0.0.1:{port}");
    wait_until(&client, &format!("{base}/readyz"), Duration::from_secs(60)).await?;
    let r = client
        .post(format!("{base}/admin/v1/metrics"))
        .header("X-API-KEY", KEY)
        .json(&serde_json::json!([{"name": "Load test", "key": METRIC}]))
        .send()
        .await?;
    if r.status().as_u16() != 201 {
        bail!("could not create the metric: {}", r.status());
    }
    eprintln!("measuring durable ingest on kudos for {duration}s...");
    let durable = load(&base, KEY, duration, warmup, connections, users).await?;

    println!(
        "connections={connections} users={users} duration={duration}s warmup={warmup}s cores={}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| target | requests/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors |");
    println!("|---|---|---|---|---|---|---|");
    println!("{}", bare.row("bare axum JSON POST (ceiling)"));
    println!(
        "{}",
        durable.row("kudos POST /v1/metrics/{key}/event (fsynced)")
    );
    Ok(())
}

async fn recovery(bin: &Path, events: usize, users: usize) -> anyhow::Result<()> {
    use kudos_actors::catalog::{Catalog, NewMetric, UnitType};
    use kudos_actors::rules::profile::UserWrite;
    use kudos_actors::user::{
        decide, Apply, Command, Context, Decision, Journaled, NewEvent, UserState,
    };
    use kudos_snapshots::{Store, StreamId};

    let dir = tempfile::tempdir()?;
    let mut catalog = Catalog::default();
    let t0 =
        chrono::DateTime::<chrono::Utc>::from_timestamp(1_767_225_600, 0).context("timestamp")?;
    let (metrics, _) = catalog.create_metrics(
        vec![Ok(NewMetric {
            key: METRIC.into(),
            name: "Load test".into(),
            unit_type: UnitType::Number,
            units: None,
        })],
        t0,
    );
    let metric_id = metrics[0].id;
    let catalog = Arc::new(catalog);
    eprintln!("journaling {events} events for {users} users (no snapshots)...");
    let started = Instant::now();
    {
        let store = Store::open(dir.path())?;
        let journal = store.journal();
        let per_user = events.div_ceil(users);
        let mut tasks = tokio::task::JoinSet::new();
        for u in 0..users {
            let (journal, catalog) = (journal.clone(), catalog.clone());
            let count = per_user.min(events.saturating_sub(u * per_user));
            tasks.spawn(async move {
                let user_id = format!("user-{u}");
                let stream = StreamId::new("user", &user_id);
                let mut state = UserState::default();
                for seq in 1..=count as u64 {
                    let event = NewEvent {
                        metric_id,
                        value: 1.0,
                        user: UserWrite::default(),
                        attributes: Default::default(),
                        idempotency_key: Some(format!("k{seq}")),
                    };
                    let at = t0 + chrono::Duration::seconds(seq as i64);
                    let ctx = Context {
                        user_id: &user_id,
                        catalog: &catalog,
                        now: at,
                        new_id: uuid::Uuid::new_v4(),
                        control: false,
                    };
                    if let Decision::Record(record) =
                        decide(&state, &Command::RecordEvent(event), &ctx)?
                    {
                        let effects = state.apply_collect(&record, Apply::Live(&catalog));
                        journal
                            .append(&stream, seq, &Journaled { record, effects })
                            .await?;
                    }
                }
                anyhow::Ok(())
            });
            // Bound concurrency so memory stays flat while still sharing fsyncs.
            while tasks.len() >= 2000 {
                if let Some(r) = tasks.join_next().await {
                    r??;
                }
            }
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        eprintln!(
            "journaled in {:.1}s ({} fsyncs)",
            started.elapsed().as_secs_f64(),
            store.durability().fsync_count()
        );
        store.close().await?;
    }
    let size: u64 = std::fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let port = free_port()?;
    let started = Instant::now();
    let _kudos = spawn_kudos(bin, dir.path(), port)?;
    let client = reqwest::Client::new();
    wait_until(
        &client,
        &format!("http://127.0.0.1:{port}/readyz"),
        Duration::from_secs(600),
    )
    .await?;
    let ready = started.elapsed();
    let r = client
        .get(format!("http://127.0.0.1:{port}/v1/users/user-0"))
        .header("X-API-KEY", KEY)
        .send()
        .await?;
    println!(
        "| journaled events | users | data dir (top level) | start to /readyz 200 | first read |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {events} | {users} | {:.0} MiB | {:.2} s | {} |",
        size as f64 / (1024.0 * 1024.0),
        ready.as_secs_f64(),
        r.status()
    );
    Ok(())
}
