//! `orderly serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use orderly_server::{maintenance, AppState, ServerConfig};
use orderly_sqlite::{Durability, SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// `--durability` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    /// fsync every commit before answering.
    Fsync,
    /// fsync commits that accept jobs; progress rides along.
    Accepted,
    /// never fsync.
    None,
}

/// `orderly serve` flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. A non-loopback address needs --token (or --insecure).
    #[arg(long, env = "ORDERLY_LISTEN", default_value = "127.0.0.1:7771")]
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite store.
    #[arg(long, env = "ORDERLY_DATA_DIR", default_value = "./orderly-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (shared store for several nodes; not available in this release).
    #[arg(long, env = "ORDERLY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Bearer token required by the API (all routes but /healthz).
    #[arg(long, env = "ORDERLY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow a non-loopback --listen address without a token.
    #[arg(long, env = "ORDERLY_INSECURE")]
    pub insecure: bool,
    /// When commits are fsynced. `fsync` (default): every commit, before it is
    /// answered. `accepted`: commits that accept jobs (enqueue, cancel, retry,
    /// queue changes) are fsynced; claims, heartbeats and reports ride along
    /// with the next fsync, so a machine crash may make recently finished jobs
    /// run again but never loses an accepted one. `none`: no fsync; survives a
    /// crash of the process, not of the machine.
    #[arg(long, env = "ORDERLY_DURABILITY", value_enum, default_value_t = DurabilityArg::Fsync)]
    pub durability: DurabilityArg,
    /// Same as `--durability none`.
    #[arg(long, env = "ORDERLY_NO_FSYNC", conflicts_with = "durability")]
    pub no_fsync: bool,
    /// Largest job payload, in bytes of JSON.
    #[arg(long, env = "ORDERLY_MAX_PAYLOAD_BYTES", default_value_t = ServerConfig::DEFAULT_MAX_PAYLOAD_BYTES)]
    pub max_payload_bytes: usize,
    /// Largest request body of batch routes, in bytes.
    #[arg(long, env = "ORDERLY_MAX_BODY_BYTES", default_value_t = ServerConfig::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// How long finished jobs are kept (e.g. 7d, 12h).
    #[arg(long, env = "ORDERLY_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub retention: Duration,
}

/// Longest a graceful shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.database_url.is_some() {
        bail!("--database-url (PostgreSQL) is not available in this release; use the embedded store (--data-dir)");
    }
    if !args.listen.ip().is_loopback() && args.token.is_none() && !args.insecure {
        bail!(
            "refusing to listen on {} without a token: anyone who can reach it could run jobs. \
             Pass --token (or ORDERLY_TOKEN), or --insecure if the network is trusted",
            args.listen
        );
    }
    if args.token.as_deref() == Some("") {
        bail!("--token is empty");
    }
    let options = SqliteOptions {
        data_dir: args.data_dir.clone(),
        durability: match (args.no_fsync, args.durability) {
            (true, _) | (_, DurabilityArg::None) => Durability::None,
            (_, DurabilityArg::Accepted) => Durability::Accepted,
            (_, DurabilityArg::Fsync) => Durability::Fsync,
        },
    };
    let options_durability = options.durability;
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&options))
        .await?
        .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;
    let db_path = store.path().display().to_string();
    let config = ServerConfig {
        token: args.token.clone(),
        max_payload_bytes: args.max_payload_bytes,
        max_body_bytes: args.max_body_bytes,
        maintenance: maintenance::Config {
            retention: args.retention,
            ..Default::default()
        },
    };
    let state = AppState::new(Arc::new(store), config);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    state.spawn_background(&tracker, &cancel);
    tracing::info!(
        "orderly listening on http://{local} (store {db_path}, {})",
        match options_durability {
            Durability::Fsync => "fsync on every commit",
            Durability::Accepted => "fsync on every commit that accepts jobs",
            Durability::None => "no fsync: survives process crashes only",
        }
    );
    let service = state.service.clone();
    let app = orderly_server::router(state);
    let shutdown = cancel.clone();
    // Small request/response pairs: send each answer at once (no Nagle delay).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!(
                "shutting down: finishing requests in flight (at most {SHUTDOWN_GRACE:?})"
            );
            service.shutdown();
            shutdown.cancel();
            // Every acknowledged job is already committed: a request still
            // streaming in after the grace period is simply not accepted.
            tokio::spawn(async {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; exiting");
                std::process::exit(0);
            });
        })
        .await
        .context("server failed")?;
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
