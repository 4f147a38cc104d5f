//! `orderly serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use orderly_core::Store;
use orderly_postgres::{PostgresOptions, PostgresStore};
use orderly_server::executors::{self, Executors, ExecutorsConfig};
use orderly_server::serve::ShutdownReport;
use orderly_server::{events, maintenance, AppState, ServerConfig};
use orderly_sqlite::{Durability, SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Durability {
        match d {
            DurabilityArg::Fsync => Durability::Fsync,
            DurabilityArg::Accepted => Durability::Accepted,
            DurabilityArg::None => Durability::None,
        }
    }
}

/// `--durability` values: the same three names as `orderly_sqlite::Durability`.
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
    /// Directory of the embedded SQLite store; with --database-url it only
    /// holds this node's id (give each node its own).
    #[arg(long, env = "ORDERLY_DATA_DIR", default_value = "./orderly-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL, `postgres://user:password@host:port/database`: a store
    /// that several nodes share, instead of the embedded one.
    #[arg(long, env = "ORDERLY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Schema of the PostgreSQL store (created and migrated at start).
    #[arg(long, env = "ORDERLY_DATABASE_SCHEMA", default_value = orderly_postgres::DEFAULT_SCHEMA)]
    pub database_schema: String,
    /// Bearer token required by the API (all routes but /healthz).
    #[arg(long, env = "ORDERLY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read-only bearer token: may read everything (API GETs, events, metrics,
    /// dashboard) and change nothing (403). Needs --token.
    #[arg(long, env = "ORDERLY_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
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
    /// Largest job payload, in bytes of JSON.
    #[arg(long, env = "ORDERLY_MAX_PAYLOAD_BYTES", default_value_t = ServerConfig::DEFAULT_MAX_PAYLOAD_BYTES)]
    pub max_payload_bytes: usize,
    /// Largest request body of batch routes, in bytes.
    #[arg(long, env = "ORDERLY_MAX_BODY_BYTES", default_value_t = ServerConfig::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// How long finished jobs are kept (e.g. 7d, 12h).
    #[arg(long, env = "ORDERLY_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// Longest a request's headers may take to arrive (e.g. 10s); slower clients are disconnected.
    #[arg(long, env = "ORDERLY_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: Duration,
    /// Longest a keep-alive connection may stay open with no request in flight
    /// (long polls are requests in flight, not idle).
    #[arg(long, env = "ORDERLY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
    /// Longest a request body may take to arrive once its headers have (answered 408).
    #[arg(long, env = "ORDERLY_BODY_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub body_timeout: Duration,
    /// Longest a write to a connection may wait for its client to take bytes;
    /// then the connection is closed. This is what drops an events
    /// subscriber that stopped reading (its socket full).
    #[arg(long, env = "ORDERLY_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub write_timeout: Duration,
    /// How long a queue without executor goes without a claim before its
    /// waiting jobs say `waiting_on: no_worker`.
    #[arg(long, env = "ORDERLY_NO_WORKER_AFTER", default_value = "60s", value_parser = parse_timeout)]
    pub no_worker_after: Duration,
    /// Longest a graceful shutdown waits for requests in flight and for the
    /// jobs its executors are running (those still running are then killed
    /// and rerun in place on the next start); the server exits non-zero if it
    /// had to abandon requests.
    #[arg(long, env = "ORDERLY_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Recent events kept for `GET /v1/events` to replay after a
    /// `Last-Event-ID` (older ones are reported as a gap).
    #[arg(long, env = "ORDERLY_EVENTS_RING", default_value_t = events::Config::DEFAULT_RING as u32, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub events_ring: u32,
    /// Events an events subscriber may fall behind before it is dropped.
    #[arg(long, env = "ORDERLY_EVENTS_BUFFER", default_value_t = events::Config::DEFAULT_BUFFER as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub events_buffer: u32,
}

/// A humantime duration that is not zero.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Longest the maintenance loops and the store get to stop after the HTTP
/// side has: they only finish the writes already sent.
const STORE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
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
    match (&args.token, args.read_token.as_deref()) {
        (_, Some("")) => bail!("--read-token is empty"),
        (None, Some(_)) => bail!(
            "--read-token needs --token: without a full token nothing could change the server over HTTP"
        ),
        (Some(t), Some(r)) if t == r => bail!("--read-token must differ from --token"),
        _ => {}
    }
    let store = open_store(&args).await?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // From here on every exit path closes the store.
    let served = serve(&args, store.clone(), &cancel, &tracker).await;
    cancel.cancel();
    tracker.close();
    let closed = tokio::time::timeout(STORE_CLOSE_TIMEOUT, async {
        tracker.wait().await;
        store.close().await;
    })
    .await;
    if closed.is_err() {
        tracing::error!("the store did not close within {STORE_CLOSE_TIMEOUT:?}; exiting anyway");
    } else {
        tracing::info!("store closed");
    }
    let report = served?;
    if !report.is_clean() {
        bail!(
            "shutdown abandoned {} request(s) in flight on {} connection(s) after the grace \
             period of {}; their clients got no answer (acknowledged jobs are committed)",
            report.abandoned_requests,
            report.abandoned_connections,
            humantime::format_duration(args.shutdown_grace)
        );
    }
    if closed.is_err() {
        bail!("the store did not close within {STORE_CLOSE_TIMEOUT:?}");
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Opens the PostgreSQL store when --database-url is given (an unreachable
/// host, a wrong password or a missing database is an error naming it),
/// the embedded SQLite store otherwise.
async fn open_store(args: &ServeArgs) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &args.database_url {
        // The data directory holds only this node's id (for its executors).
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
        let options = PostgresOptions {
            schema: args.database_schema.clone(),
            // `none` means: do not wait for the commit to reach the disk.
            synchronous_commit: args.durability != DurabilityArg::None,
            ..PostgresOptions::new(url.clone())
        };
        let store = PostgresStore::open(&options)
            .await
            .context("cannot open the PostgreSQL store")?;
        return Ok(Arc::new(store));
    }
    let options = SqliteOptions {
        data_dir: args.data_dir.clone(),
        durability: args.durability.into(),
    };
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&options))
        .await?
        .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;
    Ok(Arc::new(store))
}

/// Binds, serves until a shutdown signal and the graceful shutdown are done.
async fn serve(
    args: &ServeArgs,
    store: Arc<dyn Store>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<ShutdownReport> {
    let config = ServerConfig {
        token: args.token.clone(),
        read_token: args.read_token.clone(),
        max_payload_bytes: args.max_payload_bytes,
        max_body_bytes: args.max_body_bytes,
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        body_timeout: args.body_timeout,
        write_timeout: args.write_timeout,
        no_worker_after: args.no_worker_after,
        maintenance: maintenance::Config {
            retention: args.retention,
            ..Default::default()
        },
        events: events::Config {
            ring: args.events_ring as usize,
            buffer: args.events_buffer as usize,
        },
    };
    let timeouts = config.connection_timeouts();
    let state = AppState::new(store, config);
    let node = {
        let dir = args.data_dir.clone();
        tokio::task::spawn_blocking(move || executors::node_id(&dir))
            .await?
            .with_context(|| format!("cannot read or create {}/node-id", args.data_dir.display()))?
    };
    // Before anything is served: what the last run left running is killed
    // and goes back to its place in line.
    let executors = Executors::start(
        state.service.clone(),
        ExecutorsConfig {
            node,
            grace: args.shutdown_grace,
            resync: Duration::from_secs(10),
        },
        cancel.clone(),
    )
    .await
    .context("cannot start the executors")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    state.spawn_background(tracker, cancel);
    let durability = match (&args.database_url, args.durability) {
        (Some(_), DurabilityArg::None) => "synchronous_commit off",
        (Some(_), _) => "commits flushed as the server's synchronous_commit says",
        (None, DurabilityArg::Fsync) => "fsync on every commit",
        (None, DurabilityArg::Accepted) => "fsync on every commit that accepts jobs",
        (None, DurabilityArg::None) => "no fsync: survives process crashes only",
    };
    let where_ = match &args.database_url {
        Some(_) => format!("PostgreSQL schema {}", args.database_schema),
        None => args.data_dir.display().to_string(),
    };
    tracing::info!("orderly listening on http://{local} (store {where_}, {durability})");
    let service = state.service.clone();
    let stopping = executors.clone();
    let grace = args.shutdown_grace;
    let shutdown = cancel.clone();
    let app = orderly_server::router(state);
    let report = orderly_server::serve::serve(
        listener,
        app,
        timeouts,
        async move {
            shutdown_signal().await;
            tracing::info!(
                "shutting down: finishing requests in flight (at most {})",
                humantime::format_duration(grace)
            );
            // Executors take no new jobs; long polls answer now with what they
            // have; the maintenance loops stop.
            stopping.stop();
            service.shutdown();
            shutdown.cancel();
        },
        grace,
    )
    .await;
    // Executors' running jobs get the same grace, then are killed (they rerun
    // in place on the next start); the store closes after them.
    if executors.shutdown().await {
        tracing::warn!("executor jobs still running after the grace period were stopped; they run again in place on the next start");
    }
    Ok(report)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn connection_flag_defaults_are_the_server_config_defaults() {
        let a = Cli::try_parse_from(["orderly"])
            .expect("defaults parse")
            .serve;
        assert_eq!(a.header_timeout, ServerConfig::DEFAULT_HEADER_TIMEOUT);
        assert_eq!(a.idle_timeout, ServerConfig::DEFAULT_IDLE_TIMEOUT);
        assert_eq!(a.body_timeout, ServerConfig::DEFAULT_BODY_TIMEOUT);
        assert_eq!(a.write_timeout, ServerConfig::DEFAULT_WRITE_TIMEOUT);
        assert_eq!(
            a.no_worker_after,
            ServerConfig::default().no_worker_after,
            "--no-worker-after"
        );
        assert_eq!(a.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        for flag in ["--header-timeout", "--idle-timeout", "--body-timeout"] {
            let err = Cli::try_parse_from(["orderly", flag, "0s"])
                .err()
                .unwrap_or_else(|| panic!("{flag} 0s was accepted"));
            assert!(
                err.to_string().contains("longer than zero"),
                "{flag}: {err}"
            );
        }
    }
}
