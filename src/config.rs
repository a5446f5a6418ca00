//! Server configuration: the `KUDOS_*` variables of SPEC §11.1 that the implemented features
//! use (webhook, rate-limit and metrics-exporter settings arrive with those features), each
//! also a flag (`--addr` for `KUDOS_ADDR`). `kudos --help` lists them with their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

pub fn parse_rate(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && (0.0..=1_000_000.0).contains(r))
        .ok_or_else(|| format!("{raw}: a rate from 0 to 1000000 requests per second"))
}

fn parse_flag(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("expected 0 or 1, got '{other}'")),
    }
}

/// A duration such as `90s`, `15m`, `24h` or `30d`; `forever` (or `inf`) for none.
fn parse_window(raw: &str) -> Result<Window, String> {
    let raw = raw.trim().to_ascii_lowercase();
    if matches!(raw.as_str(), "forever" | "inf" | "infinite" | "none") {
        return Ok(Window(None));
    }
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{raw}' needs a unit: s, m, h or d (or 'forever')"))?;
    let (n, unit) = raw.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{raw}' does not start with a whole number"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        other => return Err(format!("unknown unit '{other}': use s, m, h or d")),
    };
    if secs == 0 {
        return Err("the window must be longer than zero (or 'forever')".into());
    }
    Ok(Window(Some(std::time::Duration::from_secs(secs))))
}

/// How long something is kept; `None` is forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(pub Option<std::time::Duration>);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kudos",
    version,
    about = "Self-hosted, Trophy-compatible gamification engine"
)]
pub struct Config {
    /// Without a command, the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Listen address for both APIs, WebSocket and ops endpoints.
    #[arg(long, env = "KUDOS_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// sled directory (journal, snapshots, configuration).
    #[arg(long, env = "KUDOS_DATA_DIR", default_value = "./kudos-data")]
    pub data_dir: PathBuf,

    /// Bootstrap admin key (`prefix.body`, prefix of 8 characters). Unset and no admin key
    /// stored: one is generated, printed once on stdout and stored hashed.
    #[arg(long, env = "KUDOS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// `1` enables the manual test clock (`/admin/v1/test-clock`).
    #[arg(long, env = "KUDOS_TEST_CLOCK", default_value = "0", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub test_clock: bool,

    /// Larger request bodies are answered 413.
    #[arg(long, env = "KUDOS_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,

    /// Users idle this many seconds are snapshotted and their actor stopped.
    #[arg(long, env = "KUDOS_USER_IDLE_SECS", default_value_t = 300)]
    pub user_idle_secs: u64,

    /// `0` turns off the Prometheus endpoint `GET /metrics`.
    #[arg(long, env = "KUDOS_METRICS", default_value = "1", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// How long an Idempotency-Key is remembered: `forever` (SPEC §1.5.3) or a duration
    /// such as `24h` or `30d`. Expired keys are pruned in the background.
    #[arg(long, env = "KUDOS_IDEMPOTENCY_WINDOW", default_value = "forever", value_parser = parse_window)]
    pub idempotency_window: Window,

    /// sled's page cache, in MiB. It holds recently used journal, snapshot and index pages;
    /// resident memory is roughly this plus the active users' state.
    #[arg(long, env = "KUDOS_CACHE_MB", default_value_t = 128)]
    pub cache_mb: u64,

    /// `1` runs the effect tally, a consumer that counts every effect per user and serves
    /// the counts at `GET /admin/v1/test-effect-tally` (durability tests only).
    #[arg(long, env = "KUDOS_TEST_EFFECT_TALLY", default_value = "0", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub test_effect_tally: bool,

    /// `1` lets webhook endpoints point at loopback, private, link-local and other
    /// non-public addresses (the SSRF guard is on by default; SPEC §11.3.1).
    #[arg(long, env = "KUDOS_WEBHOOK_ALLOW_PRIVATE", default_value = "0", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// How long one webhook attempt may take before it counts as failed (SPEC §8.1.3).
    #[arg(long, env = "KUDOS_WEBHOOK_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub webhook_timeout_secs: u64,

    /// Days the webhook delivery log is kept (SPEC §8.1.6); pending deliveries are kept
    /// until they end.
    #[arg(long, env = "KUDOS_DELIVERY_LOG_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub delivery_log_days: u64,

    /// Requests per second each application API key may make (a token bucket with a burst
    /// of one second; SPEC §1.4). 0 turns the limit off.
    #[arg(long = "app-key-rate", env = "KUDOS_APP_KEY_RATE", default_value_t = 20.0, value_parser = parse_rate)]
    pub app_key_rate: f64,

    /// Requests per second each admin API key may make; 0 (the default): unlimited.
    #[arg(long = "admin-key-rate", env = "KUDOS_ADMIN_KEY_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub admin_key_rate: f64,

    /// WebSocket connections one API key may hold open at once (SPEC §11.4.5).
    #[arg(long, env = "KUDOS_WS_MAX_CONNECTIONS_PER_KEY", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ws_max_connections_per_key: u64,

    /// Tracing filter (e.g. `info`, `kudos=debug,warn`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

/// Commands run on the data directory instead of the server (stop the server first: the
/// directory is locked while it runs).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Admin API keys (SPEC §1.1.2): at most 3 active per environment.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Environments (SPEC §9.2): production, up to 4 staging and 10 development.
    Environments {
        #[command(subcommand)]
        action: EnvironmentsAction,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EnvironmentsAction {
    /// Creates an environment; make its admin keys with
    /// `kudos keys create --environment <key>`.
    Create {
        /// Immutable identifier: 1-64 lowercase letters, digits, '-' or '_'.
        key: String,
        /// Display name.
        name: String,
        #[arg(long = "type", value_enum)]
        kind: crate::environments::Kind,
    },
    /// Lists the environments by priority.
    List,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysAction {
    /// Creates an admin key and prints it once.
    Create {
        /// The key of the environment the key belongs to.
        #[arg(long, default_value = "production")]
        environment: String,
    },
    /// Lists the admin keys: prefix, status, creation time (never the secret).
    List,
    /// Replaces a key by a new prefix and secret, printed once; the old value stops working.
    Rotate { prefix: String },
    /// Revokes a key (it can be activated again, with the same value).
    Revoke { prefix: String },
    /// Activates a revoked key again.
    Activate { prefix: String },
    /// Gives one key (admin or application, by prefix) its own rate limit in requests per
    /// second (0: unlimited), or `default` for the global one of its kind.
    Limit { prefix: String, rate: String },
}

impl Config {
    /// A configuration for tests and embedding: defaults plus the given data dir.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Config::parse_from(["kudos"]);
        config.data_dir = data_dir.into();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_defaults() {
        let c = Config::parse_from(["kudos", "--test-clock", "1", "--addr", "0.0.0.0:9000"]);
        assert!(c.test_clock);
        assert_eq!(c.addr.port(), 9000);
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert!(Config::try_parse_from(["kudos", "--test-clock", "maybe"]).is_err());
        assert_eq!(c.idempotency_window, Window(None));
        assert_eq!(c.cache_mb, 128);
        let w = Config::parse_from(["kudos", "--idempotency-window", "2d"]);
        assert_eq!(
            w.idempotency_window,
            Window(Some(std::time::Duration::from_secs(172_800)))
        );
        for bad in ["0s", "12", "3w", "x"] {
            assert!(
                Config::try_parse_from(["kudos", "--idempotency-window", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
