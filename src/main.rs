//! The `kudos` binary: parse configuration, set up logging, bind, and run the server until
//! SIGINT or SIGTERM. Everything else lives in the library.

use clap::Parser;

// sled and the per-request path allocate a lot of small buffers; glibc malloc spent ~15% of
// CPU under ingest load (perf), mimalloc much less. See docs/performance.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = kudos::config::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(command) = &config.command {
        let store =
            kudos_snapshots::Store::open(&config.data_dir, &Default::default()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot open {} (is the server running? stop it first): {e}",
                    config.data_dir.display()
                )
            })?;
        // Key management runs outside the server: no test clock applies to it.
        let now = kudos_actors::clock::wall_clock_now();
        return match command {
            kudos::config::Command::Keys { action } => {
                kudos::keys::run_command(action, store, now).await
            }
            kudos::config::Command::Environments { action } => {
                kudos::environments::run_command(action, store, now).await
            }
        };
    }
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    kudos::run(config, listener, shutdown).await
}

async fn wait_for_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
