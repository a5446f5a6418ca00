//! Server configuration: the `KUDOS_*` variables of SPEC §11.1 that the implemented features
//! use (webhook, rate-limit and metrics-exporter settings arrive with those features), each
//! also a flag (`--addr` for `KUDOS_ADDR`). `kudos --help` lists them with their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

fn parse_flag(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("expected 0 or 1, got '{other}'")),
    }
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kudos",
    version,
    about = "Self-hosted, Trophy-compatible gamification engine"
)]
pub struct Config {
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

    /// Tracing filter (e.g. `info`, `kudos=debug,warn`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log: String,
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
    }
}
