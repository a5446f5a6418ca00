//! `ranks`: the leaderboard ranking at N participants, in process, beside Redis's sorted
//! set on the same machine in the same run (SPEC §11.5, issue 9's goal: update + rank
//! ≤ 5 µs, below Redis's server-side cost for ZADD + ZREVRANK).
//!
//! In process: N users with random values, then `ops` random updates, rank lookups and
//! top-100 pages, each timed alone (p50/p99 in µs), and the heap bytes per participant the
//! structure reports plus the process RSS growth.
//!
//! Redis (when `redis-server`, `redis-cli` and `redis-benchmark` are on PATH; the script
//! `loadtest/ranks-vs-redis.sh` installs them from Debian): a fresh server without
//! persistence, N members loaded by pipelining, then ZADD / ZREVRANK / ZREVRANGE 0 99 from
//! `redis-benchmark` on random members; the server-side cost per call comes from
//! `INFO commandstats` (`usec_per_call`), memory from `MEMORY USAGE` / members.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use kudos_actors::leaderboard::ranking::{Ranking, TiePolicy};
use rand::Rng;

fn user(i: usize) -> String {
    format!("user-{i}")
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn rss() -> u64 {
    super::rss_bytes(std::process::id()).unwrap_or(0)
}

pub fn run(participants: usize, ops: usize, redis: bool) -> anyhow::Result<()> {
    let mut rng = rand::rng();
    let before = rss();
    let mut ranking = Ranking::new();
    let mut reached = 0u64;
    let load_start = Instant::now();
    for i in 0..participants {
        reached += 1;
        ranking.set(
            &user(i),
            f64::from(rng.random_range(1u32..10_000_000)),
            reached,
        );
    }
    let load_s = load_start.elapsed().as_secs_f64();
    let grown = rss().saturating_sub(before);
    let max = participants;
    let mut update = Histogram::<u64>::new(3)?;
    let mut rank = Histogram::<u64>::new(3)?;
    let mut both = Histogram::<u64>::new(3)?;
    let mut page = Histogram::<u64>::new(3)?;
    let mut sink = 0usize;
    for _ in 0..ops {
        let name = user(rng.random_range(0..participants));
        let value = f64::from(rng.random_range(1u32..10_000_000));
        reached += 1;
        let t0 = Instant::now();
        ranking.set(&name, value, reached);
        let t1 = Instant::now();
        sink += ranking
            .rank(&name, max, TiePolicy::FirstReached)
            .unwrap_or(0);
        let t2 = Instant::now();
        update.record((t1 - t0).as_nanos() as u64)?;
        rank.record((t2 - t1).as_nanos() as u64)?;
        both.record((t2 - t0).as_nanos() as u64)?;
        let t3 = Instant::now();
        sink += ranking.page(0, 100, max, TiePolicy::FirstReached).len();
        page.record(t3.elapsed().as_nanos() as u64)?;
    }
    println!(
        "participants={participants} ops={ops} load={:.1}s cores={}",
        load_s,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| operation | p50 µs | p99 µs |");
    println!("|---|---|---|");
    for (name, h) in [
        ("kudos update (set value)", &update),
        ("kudos rank of a user", &rank),
        ("kudos update + rank", &both),
        ("kudos top-100 page", &page),
    ] {
        println!("| {name} | {:.2} | {:.2} |", us(h, 0.5), us(h, 0.99));
    }
    println!(
        "kudos bytes/participant: structure {:.1}, process RSS growth {:.1}",
        ranking.heap_bytes() as f64 / participants as f64,
        grown as f64 / participants as f64
    );
    std::hint::black_box(sink);
    if redis {
        match redis_run(participants, ops) {
            Ok(()) => {}
            Err(e) => println!("redis: skipped ({e:#})"),
        }
    }
    Ok(())
}

fn tool(name: &str) -> anyhow::Result<()> {
    let ok = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        bail!("{name} not found (loadtest/ranks-vs-redis.sh installs it)")
    }
}

fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn redis_run(participants: usize, ops: usize) -> anyhow::Result<()> {
    for t in ["redis-server", "redis-cli", "redis-benchmark"] {
        tool(t)?;
    }
    let port = super::free_port()?;
    let dir = tempfile::tempdir()?;
    let server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .context("starting redis-server")?;
    let _guard = super::ChildGuard(server);
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while cli(port, &["PING"])
        .map(|s| s.trim() != "PONG")
        .unwrap_or(true)
    {
        if Instant::now() > deadline {
            bail!("redis-server did not answer");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Load: ZADD in RESP through `redis-cli --pipe`, members `user-<i>` like ours.
    let mut rng = rand::rng();
    let mut resp = Vec::with_capacity(participants * 48);
    for i in 0..participants {
        let score = rng.random_range(1u32..10_000_000).to_string();
        let member = user(i);
        write!(
            resp,
            "*4\r\n$4\r\nZADD\r\n$2\r\nlb\r\n${}\r\n{}\r\n${}\r\n{}\r\n",
            score.len(),
            score,
            member.len(),
            member
        )?;
    }
    let mut pipe = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    pipe.stdin.take().context("stdin")?.write_all(&resp)?;
    pipe.wait()?;
    let members: usize = cli(port, &["ZCARD", "lb"])?.trim().parse().unwrap_or(0);
    let memory: f64 = cli(port, &["MEMORY", "USAGE", "lb", "SAMPLES", "0"])?
        .trim()
        .parse()
        .unwrap_or(0.0);
    cli(port, &["CONFIG", "RESETSTAT"])?;
    // redis-benchmark replaces __rand_int__ with a random 12-digit number below -r.
    let range = participants.to_string();
    let n = ops.to_string();
    for cmd in [
        vec!["ZADD", "lb", "__rand_int__", "user-__rand_int__"],
        vec!["ZREVRANK", "lb", "user-__rand_int__"],
        vec!["ZREVRANGE", "lb", "0", "99", "WITHSCORES"],
    ] {
        let status = Command::new("redis-benchmark")
            .args([
                "-p",
                &port.to_string(),
                "-q",
                "-c",
                "4",
                "-n",
                &n,
                "-r",
                &range,
            ])
            .args(&cmd)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("redis-benchmark {} failed", cmd[0]);
        }
    }
    let stats = cli(port, &["INFO", "commandstats"])?;
    let per_call = |cmd: &str| -> f64 {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("usec_per_call=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (zadd, zrevrank, zrevrange) = (
        per_call("zadd"),
        per_call("zrevrank"),
        per_call("zrevrange"),
    );
    println!("| redis ZADD (server CPU per call) | {zadd:.2} | - |");
    println!("| redis ZREVRANK (server CPU per call) | {zrevrank:.2} | - |");
    println!("| redis ZADD + ZREVRANK | {:.2} | - |", zadd + zrevrank);
    println!("| redis ZREVRANGE 0 99 (server CPU per call) | {zrevrange:.2} | - |");
    println!(
        "redis members={members} bytes/member (MEMORY USAGE) {:.1}",
        memory / members.max(1) as f64
    );
    Ok(())
}
