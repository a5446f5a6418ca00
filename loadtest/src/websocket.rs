//! `websocket`: live leaderboard updates on the real binary (SPEC §11.4), measured from
//! the clients' side.
//!
//! 1. `subscribers` WebSocket connections, each subscribed to the top `limit` of one
//!    board, opened from this process; the server's resident memory before and after
//!    gives memory per connection, and its CPU over an idle stretch the cost of holding
//!    them (pings only).
//! 2. Events over REST at a fixed `rate`, each for a new user with a value above every
//!    earlier one, so each event makes its user the leader. For every subscriber and
//!    every event, the latency is from the event's REST acknowledgement to the first
//!    `update` that subscriber receives whose leader is that event's user or a later
//!    one (updates are coalesced to 10 per second per subscription, so one update
//!    reflects every event since the previous). Arrival times are kept and the latencies
//!    computed after the load, once every acknowledgement is known. An update may arrive
//!    before this process has read its event's acknowledgement (the board has the event
//!    before the response is written): it counts as 0 and is reported; the latency from
//!    the request's send is reported too, as the upper bound.
//!
//! Reports event-to-update p50/p99/max, messages/s and MB/s delivered, the server's CPU
//! during the load (and per 1,000 messages), and this process's own CPU: the clients
//! share the machine's two cores with the server, so their cost is part of what is
//! measured.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;

use crate::{create_board, rss_bytes, start_kudos, KEY, METRIC};

/// What `websocket` is run with.
#[derive(clap::Args)]
pub struct Options {
    /// WebSocket connections, each with one subscription to the board.
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Rows in each subscription's window (`limit`).
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Events per second over REST, each changing the window's leader.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Measured seconds of events.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 64)]
    pub parallel_connects: usize,
}

/// When each event's request was sent and its REST acknowledgement read, by event number
/// (set once).
struct Acks {
    sent: Vec<OnceLock<Instant>>,
    at: Vec<OnceLock<Instant>>,
}

/// What one subscriber saw.
struct Seen {
    /// (highest event number shown, arrival) of each update that showed a new one.
    arrivals: Vec<(u32, Instant)>,
    /// The highest event number shown before the load (in the snapshot).
    first: Option<usize>,
    /// The highest event number reflected so far (`None`: none yet).
    last: Option<usize>,
}

/// Totals across subscribers.
#[derive(Default)]
struct Totals {
    messages: AtomicU64,
    bytes: AtomicU64,
    ready: AtomicU64,
    closed: AtomicU64,
}

/// The event number of the window's leader, when the leader is an event's user
/// (`"userId":"w<n>"` first in `rankings`), found without parsing the whole message.
fn leader(text: &str) -> Option<usize> {
    let rest = &text[text.find("\"rankings\":[")?..];
    let rest = &rest[rest.find("\"userId\":\"")? + 10..];
    let digits = rest.strip_prefix('w')?;
    let end = digits.find('"')?;
    digits[..end].parse().ok()
}

/// Utime + stime of a process, in seconds (Linux clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

async fn subscriber(
    url: String,
    limit: usize,
    totals: Arc<Totals>,
    stop: Arc<AtomicBool>,
    opened: Arc<tokio::sync::Semaphore>,
) -> anyhow::Result<Seen> {
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
    req.headers_mut().insert("x-api-key", KEY.parse()?);
    let mut permit = Some(opened.acquire().await?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(Message::Text(
        format!(
            "{{\"op\":\"subscribe\",\"id\":\"b\",\"topic\":\"leaderboard:board\",\"limit\":{limit}}}"
        )
        .into(),
    ))
    .await?;
    let mut seen = Seen {
        arrivals: Vec::new(),
        first: None,
        last: None,
    };
    let mut snapshot = false;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = tokio::time::sleep(Duration::from_millis(200)), if stop.load(Ordering::Relaxed) => break,
        };
        let Some(msg) = msg else {
            totals.closed.fetch_add(1, Ordering::Relaxed);
            break;
        };
        let text = match msg? {
            Message::Text(t) => t,
            Message::Close(_) => {
                totals.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            _ => continue,
        };
        let at = Instant::now();
        if !snapshot {
            if !text.as_str().starts_with("{\"type\":\"snapshot\"") {
                bail!("expected a snapshot, got {}", text.as_str());
            }
            snapshot = true;
            totals.ready.fetch_add(1, Ordering::Relaxed);
            permit.take();
            // Events before this subscriber's snapshot are not measured at it.
            seen.last = leader(text.as_str());
            seen.first = seen.last;
            continue;
        }
        totals.messages.fetch_add(1, Ordering::Relaxed);
        totals.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        let Some(n) = leader(text.as_str()) else {
            continue;
        };
        if seen.last.is_none_or(|l| n > l) {
            seen.arrivals.push((n as u32, at));
            seen.last = Some(n);
        }
    }
    let _ = ws.close(None).await;
    Ok(seen)
}

pub async fn run(bin: &std::path::Path, o: Options) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let (_dir, kudos, base) = start_kudos(&client, bin).await?;
    let pid = kudos.0.id().to_string();
    create_board(&client, &base).await?;
    // A board already full enough to show `limit` rows.
    for i in 0..o.limit.max(10) {
        event(&client, &base, &format!("seed-{i}"), (i + 1) as f64).await?;
    }
    let events = (o.rate * o.duration as f64).ceil() as usize;
    let acks = Arc::new(Acks {
        sent: (0..events).map(|_| OnceLock::new()).collect(),
        at: (0..events).map(|_| OnceLock::new()).collect(),
    });
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    println!(
        "cores={} subscribers={} limit={} rate={}/s duration={}s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.subscribers,
        o.limit,
        o.rate,
        o.duration
    );

    // 1. The connections.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_bytes(kudos.0.id())?;
    let url = format!("{}/v1/ws", base.replace("http://", "ws://"));
    let opened = Arc::new(tokio::sync::Semaphore::new(o.parallel_connects));
    let connect_started = Instant::now();
    let tasks: Vec<_> = (0..o.subscribers)
        .map(|_| {
            tokio::spawn(subscriber(
                url.clone(),
                o.limit,
                totals.clone(),
                stop.clone(),
                opened.clone(),
            ))
        })
        .collect();
    while (totals.ready.load(Ordering::Relaxed) as usize) < o.subscribers {
        if tasks.iter().any(|t| t.is_finished()) {
            bail!(
                "a subscriber ended while connecting ({} ready)",
                totals.ready.load(Ordering::Relaxed)
            );
        }
        if connect_started.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} subscribers were ready after 5 minutes",
                totals.ready.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected_in = connect_started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_bytes(kudos.0.id())?;
    // One full ping interval (30 s) of the idle connections.
    let idle = 31.0;
    let (server0, own0) = (cpu_seconds(&pid)?, cpu_seconds("self")?);
    tokio::time::sleep(Duration::from_secs_f64(idle)).await;
    let (server_idle, own_idle) = (cpu_seconds(&pid)? - server0, cpu_seconds("self")? - own0);

    // 2. Events at the rate, each acknowledged time kept.
    let mut rest = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (m0, b0) = (
        totals.messages.load(Ordering::Relaxed),
        totals.bytes.load(Ordering::Relaxed),
    );
    let (server0, own0) = (cpu_seconds(&pid)?, cpu_seconds("self")?);
    let load_started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..events {
        let due = load_started + Duration::from_secs_f64(i as f64 / o.rate);
        tokio::time::sleep_until(due.into()).await;
        let (client, base, acks) = (client.clone(), base.clone(), acks.clone());
        posts.spawn(async move {
            let sent = Instant::now();
            let _ = acks.sent[i].set(sent);
            let r = event(&client, &base, &format!("w{i}"), 1_000_000.0 + i as f64).await;
            let _ = acks.at[i].set(Instant::now());
            r.map(|()| sent.elapsed())
        });
    }
    while let Some(r) = posts.join_next().await {
        let _ = rest.record(r??.as_micros().max(1) as u64);
    }
    let loaded = load_started.elapsed().as_secs_f64();
    let (server_load, own_load) = (cpu_seconds(&pid)? - server0, cpu_seconds("self")? - own0);
    let messages = totals.messages.load(Ordering::Relaxed) - m0;
    let bytes = totals.bytes.load(Ordering::Relaxed) - b0;
    // The last events' updates (at most one read interval and a write later).
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);

    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut from_send = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (mut behind, mut before_ack) = (0usize, 0u64);
    for t in tasks {
        let seen = t.await??;
        if seen.last.is_none_or(|l| l + 1 < events) {
            behind += 1;
        }
        let mut from = seen.first.map_or(0, |l| l + 1);
        for (n, at) in seen.arrivals {
            let n = (n as usize).min(events - 1);
            for i in from..=n {
                let (Some(sent), Some(ack)) = (acks.sent[i].get(), acks.at[i].get()) else {
                    continue;
                };
                if at < *ack {
                    before_ack += 1;
                }
                let micros = |since: &Instant| {
                    at.saturating_duration_since(*since).as_micros().max(1) as u64
                };
                let _ = latency.record(micros(ack));
                let _ = from_send.record(micros(sent));
            }
            from = from.max(n + 1);
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 / o.subscribers as f64;
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| connections opened and subscribed | {} in {:.1} s |",
        o.subscribers,
        connected_in.as_secs_f64()
    );
    println!(
        "| server memory per connection (RSS delta / connections) | {:.1} KiB ({:.0} MiB -> {:.0} MiB) |",
        per_conn / 1024.0,
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0
    );
    println!(
        "| server CPU holding them idle | {:.1}% of one core ({:.2} µs/s per connection); loadtest {:.1}% |",
        100.0 * server_idle / idle,
        1e6 * server_idle / idle / o.subscribers as f64,
        100.0 * own_idle / idle
    );
    println!(
        "| **event → update latency** ({} samples) | **p50 {:.1} ms, p99 {:.1} ms**, max {:.1} ms |",
        latency.len(),
        ms(&latency, 0.5),
        ms(&latency, 0.99),
        latency.max() as f64 / 1000.0
    );
    println!(
        "| same, from the request's send (upper bound) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {before_ack} updates ({:.1}%) arrived before their acknowledgement was read |",
        ms(&from_send, 0.5),
        ms(&from_send, 0.99),
        from_send.max() as f64 / 1000.0,
        100.0 * before_ack as f64 / latency.len().max(1) as f64
    );
    println!(
        "| REST acknowledgement of the events | p50 {:.1} ms, p99 {:.1} ms |",
        ms(&rest, 0.5),
        ms(&rest, 0.99)
    );
    println!(
        "| updates delivered | {:.0} messages/s, {:.1} MB/s ({:.1} per subscriber per second) |",
        messages as f64 / loaded,
        bytes as f64 / loaded / 1e6,
        messages as f64 / loaded / o.subscribers as f64
    );
    println!(
        "| server CPU under load | {:.0}% of one core ({:.1} ms per 1,000 messages); loadtest {:.0}% |",
        100.0 * server_load / loaded,
        1e6 * server_load / messages.max(1) as f64,
        100.0 * own_load / loaded
    );
    println!(
        "| subscribers missing the last event / closed by the server | {behind} / {} |",
        totals.closed.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn event(client: &reqwest::Client, base: &str, user: &str, value: f64) -> anyhow::Result<()> {
    let r = client
        .post(format!("{base}/v1/metrics/{METRIC}/event"))
        .header("X-API-KEY", KEY)
        .json(&serde_json::json!({"user": {"id": user}, "value": value}))
        .send()
        .await?;
    if r.status().as_u16() != 201 {
        bail!("event: {}: {}", r.status(), r.text().await?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::leader;

    #[test]
    fn the_leader_is_read_from_the_first_ranking() {
        let m = r#"{"type":"update","id":"b","seq":3,"leaderboard":{"key":"board","rankings":[{"userId":"w12","rank":1,"value":1000012},{"userId":"w11","rank":2}]}}"#;
        assert_eq!(leader(m), Some(12));
        let seed = r#"{"type":"snapshot","leaderboard":{"rankings":[{"userId":"seed-9"}]}}"#;
        assert_eq!(leader(seed), None);
        assert_eq!(
            leader(r#"{"type":"update","leaderboard":{"rankings":[]}}"#),
            None
        );
    }
}
