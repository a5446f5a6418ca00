//! # kudos-loadtest
//!
//! Measures Kudos on this machine and prints numbers we can publish:
//!
//! - `ingest`: the ceiling first (a bare axum JSON POST route in its own process), then
//!   durable ingest (`POST /v1/metrics/{key}/event` on the real `kudos` binary, every 201
//!   fsynced), with the same load generator, connections and duration. Reports requests/s
//!   and latency percentiles for both.
//! - `recovery --kill`: posts N events for U users to the real binary, kills it with SIGKILL
//!   mid-load, restarts it on the same data dir, and times `/readyz` and first reads.
//! - `memory`: resident memory per active user with the page cache at a stated size.
//! - `ranks`: the leaderboard ranking at N participants in process, beside Redis's sorted
//!   set (ZADD/ZREVRANK/ZREVRANGE) on the same machine in the same run.
//! - `webhooks`: deliveries/s draining a backlog, and delivery latency at a fixed rate with
//!   and without a hanging endpoint beside the healthy one.
//! - `baseline`: the bare axum server used by `ingest` (not meant to be run by hand).
//!
//! The generator shares the machine with the server, so absolute numbers include its cost;
//! the comparison with the bare route is what makes them meaningful.

mod ranks;
mod webhooks;
mod websocket;

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
        /// Then configure points on the metric (two metric triggers, a global boost, three
        /// levels) and measure again on the same server: the cost of awarding points.
        #[arg(long)]
        points: bool,
        /// Then add a leaderboard ranking the metric and measure again (every event moves
        /// a rank and is answered with it).
        #[arg(long)]
        leaderboard: bool,
    },
    /// Load an already running Kudos (the metric must exist) and print the result row.
    Load {
        /// Requests per second over all connections, on a fixed schedule (default: as fast
        /// as answers come back).
        #[arg(long)]
        rate: Option<f64>,
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
    /// Load N events over U users on the real binary, `kill -9` it mid-load, restart it, and
    /// time `/readyz` and the first reads.
    Recovery {
        #[arg(long, default_value = "target/release/kudos")]
        kudos_bin: PathBuf,
        /// Stop the loaded server with SIGKILL mid-load (a crash); without it, SIGTERM after
        /// the load (a clean shutdown).
        #[arg(long)]
        kill: bool,
        /// Keep the data here (reuse it with --events 0 to time restarts only).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Leaderboard reads over HTTP (top page, a user's rank) against a bare GET route, on a
    /// board of N participants loaded through events.
    Reads {
        #[arg(long, default_value = "target/release/kudos")]
        kudos_bin: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        participants: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// The leaderboard ranking at N participants, and Redis's sorted set beside it.
    Ranks {
        #[arg(long, default_value_t = 1_000_000)]
        participants: usize,
        /// Timed operations of each kind.
        #[arg(long, default_value_t = 200_000)]
        ops: usize,
        /// Also measure redis-server (skipped with a message when it is not installed).
        #[arg(long)]
        redis: bool,
    },
    /// Webhook deliveries/s, delivery latency, and a hanging endpoint's effect on both.
    Webhooks {
        #[arg(long, default_value = "target/release/kudos")]
        kudos_bin: PathBuf,
        #[command(flatten)]
        options: webhooks::Options,
    },
    /// Live leaderboard updates over WebSocket: event-to-update latency at many
    /// subscribers, messages/s, memory and CPU per connection.
    Websocket {
        #[arg(long, default_value = "target/release/kudos")]
        kudos_bin: PathBuf,
        #[command(flatten)]
        options: websocket::Options,
    },
    /// Resident memory per active user, with the page cache at a stated size.
    Memory {
        #[arg(long, default_value = "target/release/kudos")]
        kudos_bin: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// sled page cache (KUDOS_CACHE_MB).
        #[arg(long, default_value_t = 64)]
        cache_mb: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Then wait until every user is passivated and measure again.
        #[arg(long)]
        passivate: bool,
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
            points,
            leaderboard,
        } => rt.block_on(ingest(
            &kudos_bin,
            duration,
            warmup,
            connections,
            users,
            points,
            leaderboard,
        )),
        Cmd::Load {
            rate,
            target,
            api_key,
            duration,
            connections,
            users,
        } => rt.block_on(async {
            let report = load(&target, &api_key, duration, 1, connections, users, rate).await?;
            println!("{}", report.row(&target));
            Ok(())
        }),
        Cmd::Recovery {
            kudos_bin,
            kill,
            data_dir,
            events,
            users,
            connections,
        } => rt.block_on(recovery(
            &kudos_bin,
            kill,
            data_dir,
            events,
            users,
            connections,
        )),
        Cmd::Memory {
            kudos_bin,
            users,
            cache_mb,
            connections,
            passivate,
        } => rt.block_on(memory(&kudos_bin, users, cache_mb, connections, passivate)),
        Cmd::Reads {
            kudos_bin,
            participants,
            duration,
            warmup,
            connections,
        } => rt.block_on(reads(
            &kudos_bin,
            participants,
            duration,
            warmup,
            connections,
        )),
        Cmd::Ranks {
            participants,
            ops,
            redis,
        } => ranks::run(participants, ops, redis),
        Cmd::Webhooks { kudos_bin, options } => rt.block_on(webhooks::run(&kudos_bin, options)),
        Cmd::Websocket { kudos_bin, options } => rt.block_on(websocket::run(&kudos_bin, options)),
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
    async fn page() -> Json<serde_json::Value> {
        let rankings: Vec<serde_json::Value> = (1..=10)
            .map(|i| serde_json::json!({"userId": format!("user-{i}"), "userName": null, "rank": i, "value": 1000 - i}))
            .collect();
        Json(serde_json::json!({"key": "board", "status": "active", "rankings": rankings}))
    }
    let app = axum::Router::new()
        .route("/v1/metrics/{key}/event", post(echo))
        .route("/v1/leaderboards/{key}", axum::routing::get(page));
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
    spawn_kudos_with(bin, data_dir, port, &[])
}

/// [`spawn_kudos`] with more environment variables.
fn spawn_kudos_with(
    bin: &Path,
    data_dir: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> anyhow::Result<ChildGuard> {
    let child = Command::new(bin)
        .envs(env.iter().copied())
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

/// Runs `connections` loops of POSTs against `base` for `warmup + duration` seconds. With
/// `rate` (requests/s over all connections), each connection sends on a fixed schedule and
/// latency is measured from the scheduled send time, so a server that falls behind is charged
/// for the queueing it causes (no coordinated omission); without it, each connection sends
/// as soon as its previous request was answered (saturation).
async fn load(
    base: &str,
    api_key: &str,
    duration: u64,
    warmup: u64,
    connections: usize,
    users: usize,
    rate: Option<f64>,
) -> anyhow::Result<Report> {
    load_with(
        base,
        api_key,
        duration,
        warmup,
        connections,
        users,
        rate,
        None,
    )
    .await
}

/// What each request of a load is: a metric event (POST), or a GET of the path a function
/// gives for a user number.
type GetPath = Arc<dyn Fn(usize) -> String + Send + Sync>;

/// [`load`] with GETs of `get` instead of events when given (answered 200).
#[allow(clippy::too_many_arguments)]
async fn load_with(
    base: &str,
    api_key: &str,
    duration: u64,
    warmup: u64,
    connections: usize,
    users: usize,
    rate: Option<f64>,
    get: Option<GetPath>,
) -> anyhow::Result<Report> {
    let base: Arc<str> = base.into();
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
        let (get, base) = (get.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let (mut requests, mut errors) = (0u64, 0u64);
            let mut i = 0usize;
            let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
            // Spread the connections' schedules over one interval.
            let first = started
                + interval.map_or(Duration::ZERO, |d| {
                    d.mul_f64(conn as f64 / connections as f64)
                });
            loop {
                let scheduled = interval.map(|d| first + d * i as u32);
                if let Some(at) = scheduled {
                    tokio::time::sleep_until(at.into()).await;
                }
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let user = (conn * 7919 + i * 31) % users;
                i += 1;
                let sent = scheduled.unwrap_or_else(Instant::now);
                let (request, want) = match &get {
                    Some(path) => (client.get(format!("{base}{}", path(user))), 200),
                    None => (
                        client
                            .post(&*url)
                            .header("Content-Type", "application/json")
                            .body(format!(
                                "{{\"user\":{{\"id\":\"user-{user}\"}},\"value\":1}}"
                            )),
                        201,
                    ),
                };
                let ok = match request.header("X-API-KEY", &*api_key).send().await {
                    Ok(r) => {
                        let ok = r.status().as_u16() == want;
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

/// The bare axum server (`baseline`) on `port`, once it answers.
async fn start_baseline(
    client: &reqwest::Client,
    port: u16,
) -> anyhow::Result<(ChildGuard, String)> {
    let child = Command::new(std::env::current_exe()?)
        .args(["baseline", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()?;
    let guard = ChildGuard(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_until(
        client,
        &format!("{base}/v1/metrics/{METRIC}/event"),
        Duration::from_secs(10),
    )
    .await?;
    Ok((guard, base))
}

/// The real binary on a fresh data dir, ready, with the load-test metric created.
async fn start_kudos(
    client: &reqwest::Client,
    bin: &Path,
) -> anyhow::Result<(tempfile::TempDir, ChildGuard, String)> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let kudos = spawn_kudos(bin, dir.path(), port)?;
    let base = format!("http://127.0.0.1:{port}");
    wait_until(client, &format!("{base}/readyz"), Duration::from_secs(60)).await?;
    let r = client
        .post(format!("{base}/admin/v1/metrics"))
        .header("X-API-KEY", KEY)
        .json(&serde_json::json!([{"name": "Load test", "key": METRIC}]))
        .send()
        .await?;
    if r.status().as_u16() != 201 {
        bail!("could not create the metric: {}", r.status());
    }
    Ok((dir, kudos, base))
}

/// A leaderboard ranking the load-test metric (1M participants allowed, active).
async fn create_board(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let metrics: serde_json::Value = client
        .get(format!("{base}/admin/v1/metrics"))
        .header("X-API-KEY", KEY)
        .send()
        .await?
        .json()
        .await?;
    let metric = metrics[0]["id"].as_str().unwrap_or_default().to_string();
    let r = client
        .post(format!("{base}/admin/v1/leaderboards"))
        .header("X-API-KEY", KEY)
        .json(&serde_json::json!([{"name": "Board", "key": "board", "rankBy": "metric",
            "metricId": metric, "maxParticipants": 1_000_000, "start": "2000-01-01", "status": "active"}]))
        .send()
        .await?;
    if r.status().as_u16() != 201 {
        bail!("could not create the leaderboard: {}", r.text().await?);
    }
    wait_for_jobs(client, base).await
}

/// Waits until the server runs no background job (`kudos_background_jobs 0`): activating a
/// board seeds it with every user's earlier activity, which must not overlap a measurement.
/// A server without the gauge (an older build) is not waited for.
async fn wait_for_jobs(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let running = text
            .lines()
            .find_map(|l| l.strip_prefix("kudos_background_jobs "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        match running {
            None | Some(0) => {
                if running.is_some() {
                    eprintln!(
                        "background jobs done in {:.1}s",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            Some(_) if started.elapsed() > Duration::from_secs(600) => {
                bail!("background jobs still running after 600s")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `reads`: the bare GET route first, then Kudos with a board of `participants` users (one
/// event each), read as a top-10 page and as one user's rank.
async fn reads(
    bin: &Path,
    participants: usize,
    duration: u64,
    warmup: u64,
    connections: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let port = free_port()?;
    let (guard, base) = start_baseline(&client, port).await?;
    let top: GetPath = Arc::new(|_| "/v1/leaderboards/board?limit=10".to_string());
    eprintln!("measuring the bare GET route for {duration}s...");
    let bare = load_with(
        &base,
        KEY,
        duration,
        warmup,
        connections,
        participants,
        None,
        Some(top.clone()),
    )
    .await?;
    drop(guard);

    let (_dir, _kudos, base) = start_kudos(&client, bin).await?;
    create_board(&client, &base).await?;
    eprintln!("loading {participants} participants...");
    let loaded = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    load_events(&base, participants, participants, connections, stop).await?;
    eprintln!("loaded in {:.1}s", loaded.elapsed().as_secs_f64());
    eprintln!("measuring the top-10 page for {duration}s...");
    let page = load_with(
        &base,
        KEY,
        duration,
        warmup,
        connections,
        participants,
        None,
        Some(top),
    )
    .await?;
    let rank: GetPath = Arc::new(|u| format!("/v1/users/user-{u}/leaderboards/board?numEvents=0"));
    eprintln!("measuring a user's rank for {duration}s...");
    let user = load_with(
        &base,
        KEY,
        duration,
        warmup,
        connections,
        participants,
        None,
        Some(rank),
    )
    .await?;
    println!(
        "participants={participants} connections={connections} duration={duration}s cores={}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| target | requests/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors |");
    println!("|---|---|---|---|---|---|---|");
    println!("{}", bare.row("bare axum GET (ceiling)"));
    println!("{}", page.row("kudos GET /v1/leaderboards/{key}?limit=10"));
    println!(
        "{}",
        user.row("kudos GET /v1/users/{id}/leaderboards/{key}")
    );
    println!(
        "ratio top page/bare = {:.2}, user rank/bare = {:.2}",
        page.requests as f64 / bare.requests.max(1) as f64,
        user.requests as f64 / bare.requests.max(1) as f64
    );
    Ok(())
}

/// A points system on the load-test metric: every event crosses a threshold of the first
/// trigger, a global boost applies to every award, and levels are recomputed.
async fn configure_points(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let metrics: serde_json::Value = client
        .get(format!("{base}/admin/v1/metrics"))
        .header("X-API-KEY", KEY)
        .send()
        .await?
        .json()
        .await?;
    let metric = metrics[0]["id"].as_str().unwrap_or_default().to_string();
    let r = client
        .post(format!("{base}/admin/v1/points"))
        .header("X-API-KEY", KEY)
        .json(&serde_json::json!([{
            "name": "XP", "key": "xp",
            "levels": [
                {"name": "Bronze", "key": "bronze", "points": 0},
                {"name": "Silver", "key": "silver", "points": 100},
                {"name": "Gold", "key": "gold", "points": 1000}
            ],
            "boosts": [{"name": "Always", "start": "2000-01-01", "multiplier": 1.5}],
            "triggers": [
                {"type": "metric", "points": 10, "metricId": metric, "metricThreshold": 1, "status": "active"},
                {"type": "metric", "points": 50, "metricId": metric, "metricThreshold": 5, "status": "active"}
            ]
        }]))
        .send()
        .await?;
    let body: serde_json::Value = r.json().await?;
    if body["issues"] != serde_json::json!([]) || body["created"][0]["triggers"][1].is_null() {
        bail!("could not configure points: {body}");
    }
    Ok(())
}

async fn ingest(
    bin: &Path,
    duration: u64,
    warmup: u64,
    connections: usize,
    users: usize,
    points: bool,
    leaderboard: bool,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();

    let port = free_port()?;
    let (guard, base) = start_baseline(&client, port).await?;
    eprintln!("measuring the bare axum route for {duration}s...");
    let bare = load(&base, KEY, duration, warmup, connections, users, None).await?;
    drop(guard);

    let (_dir, _kudos, base) = start_kudos(&client, bin).await?;
    eprintln!("measuring durable ingest on kudos for {duration}s...");
    let durable = load(&base, KEY, duration, warmup, connections, users, None).await?;
    // p99 at half the saturation rate just measured, on a fixed schedule.
    let half = durable.requests as f64 / durable.seconds / 2.0;
    eprintln!("measuring durable ingest at half that rate ({half:.0}/s) for {duration}s...");
    let paced = load(&base, KEY, duration, warmup, connections, users, Some(half)).await?;

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
    println!(
        "{}",
        paced.row(&format!("kudos at half that rate ({half:.0}/s, paced)"))
    );
    println!(
        "ratio kudos/bare = {:.2}",
        durable.requests as f64 / bare.requests.max(1) as f64
    );
    if points {
        configure_points(&client, &base).await?;
        eprintln!("measuring durable ingest with points for {duration}s...");
        let with = load(&base, KEY, duration, warmup, connections, users, None).await?;
        println!(
            "{}",
            with.row("kudos with points (2 metric triggers, boost, 3 levels)")
        );
        println!(
            "ratio with points / without = {:.2}",
            with.requests as f64 / durable.requests.max(1) as f64
        );
    }
    if leaderboard {
        create_board(&client, &base).await?;
        eprintln!("measuring durable ingest with a leaderboard for {duration}s...");
        let with = load(&base, KEY, duration, warmup, connections, users, None).await?;
        println!("{}", with.row("kudos with a leaderboard on the metric"));
        println!(
            "ratio with a leaderboard / without = {:.2}",
            with.requests as f64 / durable.requests.max(1) as f64
        );
    }
    Ok(())
}

/// Runs `connections` loops that post events round-robin over `users` until `events` were
/// acknowledged (201), printing progress every two seconds. Returns the number acknowledged;
/// the loops stop when `stop` is set (they may still have requests in flight).
async fn load_events(
    base: &str,
    events: usize,
    users: usize,
    connections: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url: Arc<str> = format!("{base}/v1/metrics/{METRIC}/event").into();
    let acked = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let target = events as u64;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, acked, next, stop) = (
            client.clone(),
            url.clone(),
            acked.clone(),
            next.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && acked.load(Ordering::Relaxed) < target {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let user = i % users as u64;
                let body = format!("{{\"user\":{{\"id\":\"user-{user}\"}},\"value\":1}}");
                if let Ok(r) = client
                    .post(&*url)
                    .header("X-API-KEY", KEY)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    if r.status().as_u16() == 201 {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = r.bytes().await;
                }
            }
        }));
    }
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    while acked.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if last.0.elapsed() >= Duration::from_secs(2) {
            let now = acked.load(Ordering::Relaxed);
            let rate = (now - last.1) as f64 / last.0.elapsed().as_secs_f64();
            let left = (target - now.min(target)) as f64 / rate.max(1.0);
            eprintln!(
                "  {now}/{target} events acknowledged ({:.0}%), {rate:.0}/s, ~{left:.0}s left",
                100.0 * now as f64 / target as f64
            );
            last = (Instant::now(), now);
        }
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    eprintln!("  loaded in {:.1}s", started.elapsed().as_secs_f64());
    Ok(acked.load(Ordering::Relaxed))
}

/// Creates the load test's metric on a running server (and, with `extras`, a daily streak
/// on it and three metric achievements).
async fn configure(client: &reqwest::Client, base: &str, extras: bool) -> anyhow::Result<()> {
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .header("X-API-KEY", KEY)
            .json(&body)
            .send()
    };
    let r = post(
        "/admin/v1/metrics",
        serde_json::json!([{"name": "Load test", "key": METRIC}]),
    )
    .await?;
    let body: serde_json::Value = r.json().await?;
    let Some(metric_id) = body
        .pointer("/created/0/id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
    else {
        // Already there (a reused data dir).
        return Ok(());
    };
    if extras {
        let r = client
            .patch(format!("{base}/admin/v1/streaks/settings"))
            .header("X-API-KEY", KEY)
            .json(&serde_json::json!({"metrics": [{"key": METRIC, "threshold": 1}]}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("could not set up the streak: {}", r.status());
        }
        let achievements: Vec<_> = [1, 10, 100]
            .iter()
            .map(|n| serde_json::json!({"name": format!("{n} events"), "trigger": "metric", "metricId": metric_id, "metricValue": n, "status": "active"}))
            .collect();
        let r = post(
            "/admin/v1/achievements",
            serde_json::Value::Array(achievements),
        )
        .await?;
        if !r.status().is_success() {
            bail!("could not create achievements: {}", r.status());
        }
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `recovery --kill`: load, `kill -9` mid-load, restart, time `/readyz` and first reads.
async fn recovery(
    bin: &Path,
    kill: bool,
    data_dir: Option<PathBuf>,
    events: usize,
    users: usize,
    connections: usize,
) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = data_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let client = reqwest::Client::new();
    let mut acked = 0;
    if events > 0 {
        let port = free_port()?;
        let mut kudos = spawn_kudos(bin, &dir, port)?;
        let base = format!("http://127.0.0.1:{port}");
        wait_until(&client, &format!("{base}/readyz"), Duration::from_secs(600)).await?;
        configure(&client, &base, false).await?;
        eprintln!("posting {events} events for {users} users over {connections} connections...");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        acked = load_events(&base, events, users, connections, stop.clone()).await?;
        if kill {
            // SIGKILL while the connections still have requests in flight.
            kudos.0.kill()?;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            eprintln!("killed with SIGKILL after {acked} acknowledged events");
        } else {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            Command::new("kill")
                .args(["-TERM", &kudos.0.id().to_string()])
                .status()?;
            eprintln!("stopped with SIGTERM after {acked} acknowledged events");
        }
        let _ = kudos.0.wait();
    }
    let size = dir_size(&dir);
    let port = free_port()?;
    let started = Instant::now();
    let _kudos = spawn_kudos(bin, &dir, port)?;
    let base = format!("http://127.0.0.1:{port}");
    wait_until(&client, &format!("{base}/readyz"), Duration::from_secs(600)).await?;
    let ready = started.elapsed();
    // First reads of users that were never read since the restart: each loads its snapshot
    // and journal tail on demand.
    let mut first_reads = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut total = 0.0;
    let sample = users.min(200);
    for i in 0..sample {
        let user = i * (users / sample.max(1)).max(1);
        let t = Instant::now();
        let r = client
            .get(format!("{base}/v1/users/user-{user}/metrics/{METRIC}"))
            .header("X-API-KEY", KEY)
            .send()
            .await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        first_reads.record(t.elapsed().as_micros().max(1) as u64)?;
        if status.is_success() {
            total += body["current"].as_f64().unwrap_or(0.0);
        }
    }
    println!("| acknowledged events | users | data dir | start to /readyz 200 | first read p50 | first read max |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {acked} | {users} | {:.0} MiB | {:.2} s | {:.1} ms | {:.1} ms |",
        size as f64 / (1024.0 * 1024.0),
        ready.as_secs_f64(),
        first_reads.value_at_quantile(0.5) as f64 / 1000.0,
        first_reads.max() as f64 / 1000.0,
    );
    eprintln!("sampled {sample} users, totals sum {total}");
    Ok(())
}

/// `kudos_user_actors_live` from the server's `/metrics`.
async fn live_actors(client: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("kudos_user_actors_live "))
        .and_then(|v| v.trim().parse().ok())
        .context("no kudos_user_actors_live in /metrics")
}

/// Resident memory of a process, from /proc (Linux).
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")?;
    Ok(kb * 1024)
}

/// `memory`: resident memory per active user (one metric, a daily streak, three
/// achievements), with sled's page cache at `cache_mb`.
/// Users idle this long are passivated in the `memory --passivate` run (long enough that
/// none is passivated while the load runs).
const MEMORY_IDLE_SECS: u64 = 45;

async fn memory(
    bin: &Path,
    users: usize,
    cache_mb: u64,
    connections: usize,
    passivate: bool,
) -> anyhow::Result<()> {
    let idle = if passivate {
        MEMORY_IDLE_SECS.to_string()
    } else {
        "3600".to_string()
    };
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let child = Command::new(bin)
        .env("KUDOS_ADDR", format!("127.0.0.1:{port}"))
        .env("KUDOS_DATA_DIR", dir.path())
        .env("KUDOS_API_KEY", KEY)
        .env("KUDOS_CACHE_MB", cache_mb.to_string())
        .env("KUDOS_USER_IDLE_SECS", &idle)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start kudos")?;
    let kudos = ChildGuard(child);
    let pid = kudos.0.id();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_until(&client, &format!("{base}/readyz"), Duration::from_secs(60)).await?;
    configure(&client, &base, true).await?;
    // Warm up the HTTP stack, allocator and page cache with a few users first.
    let warm = 1_000.min(users / 10).max(1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    load_events(&base, warm, warm, connections, stop.clone()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_bytes(pid)?;
    eprintln!("one event each for {users} users...");
    // Users warm..warm+users get one event each: the load generator numbers users from 0, so
    // offset by sending warm+users events round-robin over warm+users users and subtracting.
    load_events(&base, warm + users, warm + users, connections, stop).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(pid)?;
    let live = live_actors(&client, &base).await?;
    let per_user = (after.saturating_sub(before)) as f64 / users as f64;
    println!(
        "| active users | live actors | page cache | RSS before | RSS after | per active user |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {users} | {live} | {cache_mb} MiB | {:.1} MiB | {:.1} MiB | {:.0} B |",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per_user
    );
    if passivate {
        eprintln!("waiting for every user to be passivated (idle {MEMORY_IDLE_SECS}s, swept every 30s)...");
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let live = live_actors(&client, &base).await?;
            eprintln!(
                "  {live} live actors after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            if live == 0 {
                break;
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!("users were not passivated within 300s");
            }
        }
        // Give the allocator a moment to return freed pages.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let passivated = rss_bytes(pid)?;
        println!();
        println!("| passivated users | RSS after passivation | per passivated user |");
        println!("|---|---|---|");
        println!(
            "| {} | {:.1} MiB | {:.0} B |",
            users + warm,
            passivated as f64 / 1048576.0,
            passivated.saturating_sub(before) as f64 / users as f64
        );
    }
    Ok(())
}
