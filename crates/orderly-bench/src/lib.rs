//! # orderly-bench
//!
//! Orderly's benchmark as a library: it measures a real server on the
//! workloads of the peer comparison (`shared/bench/peers.md`) and prints
//! its figures beside the peers'. `orderly bench` is a thin clap wrapper
//! over [`run`].
//!
//! - **W1 enqueue**: N awaited single enqueues from one client, the same from
//!   `clients` concurrent clients, and N jobs in batches of 1,000.
//! - **W1 drain**: N jobs filled with the batch API into a fresh queue with no
//!   worker, then drained by the worker runtime (`orderly_worker::Runner`
//!   over the HTTP source) with c = 1 and c = 16 slots and a no-op handler;
//!   each job costs one round trip (`complete` with `claim_next`). Drain
//!   jobs/s = N / (last handler end − first handler start).
//! - **W2 FIFO**: for each drain, inversions and maximum displacement of the
//!   start order the handler saw, and the inversions of the start order the
//!   server recorded (`start_no`), read back with the list API.
//! - **W3 latency**: one idle worker long-polling a concurrency-1 queue; each
//!   sample enqueues one job and times enqueue call → handler start.
//! - **W4 backlog** (`--only w4`, not in `all`): enqueue, claim + complete,
//!   `GET` of the last job (its position checked), the first list page
//!   (50) and a `/metrics` scrape, 200 times each, on an empty queue and on
//!   one filled with `--backlog` jobs (default 1,000,000; `--big`:
//!   10,000,000) by the batch API; p50/p99 of each and the ratio, and the
//!   resident memory (`VmRSS` / `VmHWM`) of the server the bench started,
//!   before the fill, after it and after the reads, against the target of
//!   [`RSS_TARGET_MIB`] at [`RSS_TARGET_JOBS`] waiting.
//! - **In-process drain** (`--only embedded`; not a peers' workload): the W1
//!   drain by the embedded library (`orderly::Orderly`) on a fresh data
//!   directory of its own with the server's durability, its in-process
//!   handlers (no HTTP) at c = 1 and c = 16, measured the same way and shown
//!   as a ratio to the HTTP drain of the same run. It fails, rather than
//!   report a figure, unless every job succeeded once and, at c = 1, started
//!   in `seq` order.
//!
//! - **Floors**, measured first in every run: `rtt` (one `GET /healthz` on
//!   one keep-alive connection), `/healthz` at `--clients` connections, and
//!   `commit` (one fsynced one-row SQLite WAL commit on the data directory's
//!   file system). The report shows each figure beside the floor it is made
//!   of and the target against it (`against`); `--json FILE` writes every
//!   figure, floor and ratio for machines and `--chart FILE.svg` draws them
//!   (`export`).
//!
//! By default the bench starts its own server (`SERVER_EXE serve`) on a free
//! loopback port with a fresh data directory, and kills it and removes the
//! directory at the end, also on error or Ctrl-C. Every network call and
//! every wait has a time limit, so the bench cannot hang.
//!
//! Layout: [`server`] (the launcher), `workload` (selection and sequencing),
//! `enqueue`, `drain`, `embedded`, `latency` (the workloads), `stats` (FIFO figures,
//! percentiles), [`peers`] (the peers' figures, read from `peers.json`),
//! `report` (the Markdown report), `util` (bounded calls, progress bars).

mod against;
mod backlog;
mod drain;
mod embedded;
mod enqueue;
mod export;
mod floors;
mod latency;
pub mod peers;
mod pg;
mod report;
pub mod server;
mod stats;
mod util;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use orderly_client::Client;

pub use peers::Peers;
pub use pg::Database;
pub use server::{LocalServer, Memory};
pub use workload::{parse_only, Workload};

/// The memory target (issue 9): under this many MiB resident…
pub const RSS_TARGET_MIB: f64 = 200.0;
/// …with this many jobs waiting (the `--big` backlog).
pub const RSS_TARGET_JOBS: u64 = 10_000_000;

/// Durability of the server the bench starts (`orderly serve --durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit (the server's default).
    #[default]
    Fsync,
    /// fsync on commits that accept jobs.
    Accepted,
    /// No fsync.
    None,
}

impl Durability {
    /// The `--durability` value.
    pub fn flag(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Accepted => "accepted",
            Durability::None => "none",
        }
    }
}

/// What to measure and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Jobs per W1 workload (N).
    pub jobs: u64,
    /// W3 samples.
    pub latency_samples: u64,
    /// Concurrent clients of the "single, many clients" enqueue workload.
    pub clients: u32,
    /// Waiting jobs of W4's backlog.
    pub backlog: u64,
    /// Durability of the server the bench starts.
    pub durability: Durability,
    /// Measure this running server instead of starting one.
    pub server: Option<String>,
    /// A fresh server and data directory per workload.
    pub isolate: bool,
    /// Bearer token (for `server`; also given to the bench's own server).
    pub token: Option<String>,
    /// Workloads to run (see [`parse_only`]).
    pub only: Vec<String>,
    /// The `orderly` binary to start servers from (default: this process's
    /// executable).
    pub server_exe: Option<PathBuf>,
    /// The peers' figures (default: the `peers.json` built in).
    pub peers: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    pub json: Option<PathBuf>,
    /// Also draw each figure against its floor and the fastest peer as an
    /// SVG chart in this file.
    pub chart: Option<PathBuf>,
    /// Back the bench's server with this PostgreSQL database (a fresh
    /// schema per server, dropped after) instead of SQLite.
    pub database: Option<Database>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: 20_000,
            latency_samples: 1_000,
            clients: 32,
            backlog: 1_000_000,
            durability: Durability::Fsync,
            server: None,
            isolate: false,
            token: None,
            only: vec!["all".into()],
            server_exe: None,
            peers: None,
            json: None,
            chart: None,
            database: None,
        }
    }
}

/// Where the figures come from.
pub(crate) enum Target {
    /// The server the bench started.
    Local {
        /// Its `--durability`.
        durability: Durability,
        /// A fresh server per workload.
        isolate: bool,
    },
    /// A server given with `--server`.
    Existing(String),
}

/// How to start a fresh server (`--isolate`).
pub(crate) struct Launch {
    /// The binary.
    exe: PathBuf,
    /// Its `--durability`.
    durability: Durability,
    /// Its bearer token.
    token: Option<String>,
    /// Its PostgreSQL database, if any.
    database: Option<Database>,
}

/// What every workload needs.
pub(crate) struct Plan {
    /// Client of the measured server.
    client: Client,
    /// Jobs per W1 workload.
    n: u64,
    /// Clients of the concurrent single-enqueue workload.
    clients: u32,
    /// W3 samples.
    samples: u64,
    /// Waiting jobs of W4's backlog.
    backlog: u64,
    /// Durability of the in-process drains' stores (the bench's server's;
    /// with `--server`, the default).
    durability: Durability,
    /// Makes this run's queue names and job ids unique.
    tag: String,
    /// The store behind the measured server: `SQLite`, `PostgreSQL` or
    /// (with `--server`) `unknown`.
    store: &'static str,
}

impl Plan {
    /// A fresh queue name for one workload.
    fn queue(&self, what: &str) -> String {
        format!("bench-{what}-{}", self.tag)
    }
}

/// `<pid>-<seconds since the epoch>`: distinct across runs on one server.
fn run_tag() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{}-{secs}", std::process::id())
}

/// Runs the bench and prints its Markdown report on stdout.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let selected = parse_only(&o.only)?;
    let peers = match &o.peers {
        Some(path) => Peers::from_file(path)?,
        None => Peers::builtin()?,
    };
    if o.server.is_some() && o.durability != Durability::Fsync {
        bail!("--durability applies to the server the bench starts; with --server, start that server with the durability you want");
    }
    if o.backlog == 0 {
        bail!("--backlog must be at least 1");
    }
    if o.server.is_some() && o.database.is_some() {
        bail!("--database-url applies to the server the bench starts; with --server, measure that server as it is");
    }
    if let Some(s) = o.database.as_ref().and_then(|d| d.schema.as_deref()) {
        if !valid_schema(s) {
            bail!("--database-schema {s:?}: a lowercase letter or `_`, then lowercase letters, digits or `_`, at most 50 bytes");
        }
    }
    if o.token.as_deref() == Some("") {
        bail!("--token is empty");
    }
    let exe = match &o.server_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("cannot find the orderly binary to start a server (use --server URL)")?,
    };
    let tag = run_tag();
    let (client, mut server, target) = match &o.server {
        Some(url) => {
            let client = Client::new(url.clone(), o.token.clone());
            server::wait_healthy(&client, None, Duration::from_secs(5))
                .await
                .with_context(|| format!("cannot reach the server at {url}"))?;
            let base = url.trim_end_matches('/').to_string();
            (client, None, Target::Existing(base))
        }
        None => {
            let server = tokio::select! {
                s = LocalServer::start(&exe, o.durability, o.token.as_deref(),
                        o.database.as_ref().map(|d| (d, tag.as_str()))) => s?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            };
            let client = Client::new(server.url().to_string(), o.token.clone());
            let target = Target::Local {
                durability: o.durability,
                isolate: o.isolate,
            };
            (client, Some(server), target)
        }
    };
    let restart = (o.server.is_none() && o.isolate).then(|| Launch {
        exe: exe.clone(),
        durability: o.durability,
        token: o.token.clone(),
        database: o.database.clone(),
    });
    let mut plan = Plan {
        client,
        n: o.jobs,
        clients: o.clients,
        samples: o.latency_samples,
        backlog: o.backlog,
        durability: o.durability,
        store: match (&o.server, &o.database) {
            (Some(_), _) => "unknown",
            (None, Some(_)) => "PostgreSQL",
            (None, None) => "SQLite",
        },
        tag,
    };
    let scratch = server
        .as_ref()
        .map(|s| s.scratch_dir().to_path_buf())
        .unwrap_or_else(std::env::temp_dir);
    let outcome = tokio::select! {
        r = measure_all(&mut plan, &selected, &mut server, restart.as_ref(), &scratch) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let outcome = match (&mut server, outcome) {
        (Some(s), Err(e)) => Err(s.explain(e, false)),
        (_, o) => o,
    };
    if let Some(s) = server.take() {
        s.stop().await;
    }
    let (floors, results) = outcome?;
    let against = against::against_floors(&floors, &results, plan.durability, plan.clients);
    report::print_report(&plan, &target, &results, &peers);
    against::print(&floors, &against, plan.store);
    if let Some(path) = &o.json {
        export::write_json(
            path,
            &export::to_json(&plan, &floors, &against, &results, &peers),
        )?;
        eprintln!("figures written to {}", path.display());
    }
    if let Some(path) = &o.chart {
        let svg = export::chart_svg(&plan, &against, &results, &peers);
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}

/// True for a schema name the bench may make without quoting (room left
/// for the `_<n>` of `--isolate`).
fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 50
}

/// The floors (first, on the first server), then the workloads.
async fn measure_all(
    plan: &mut Plan,
    selected: &[Workload],
    server: &mut Option<LocalServer>,
    restart: Option<&Launch>,
    scratch: &std::path::Path,
) -> anyhow::Result<(floors::Floors, workload::Results)> {
    let on = match server.as_ref().and_then(|s| s.database()) {
        Some((url, schema)) => floors::CommitOn::Postgres {
            url,
            schema,
            synchronous: plan.durability != Durability::None,
        },
        None => floors::CommitOn::Sqlite(scratch),
    };
    eprintln!(
        "[floors] rtt (GET /healthz), /healthz at {} connections, one committed {} row …",
        plan.clients,
        if matches!(on, floors::CommitOn::Postgres { .. }) {
            "PostgreSQL"
        } else {
            "fsynced SQLite"
        }
    );
    let f = floors::measure(&plan.client, plan.clients, on).await?;
    eprintln!(
        "      rtt {:.3} ms, commit {:.3} ms (means); /healthz at {} connections {}/s",
        f.rtt.mean,
        f.commit.mean,
        f.clients,
        stats::thousands(f.healthz_many_per_s)
    );
    let results = workload::run_workloads(plan, selected, server, restart).await?;
    Ok((f, results))
}
