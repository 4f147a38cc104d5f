//! `orderly bench`: measures Orderly on the workloads of the peer comparison
//! (`bench/peers.md`), so its figures can be set beside the peers'.
//!
//! - **W1 enqueue**: N awaited single enqueues from one client, the same from
//!   `--clients` concurrent clients, and N jobs in batches of 1,000.
//! - **W1 drain**: N jobs filled with the batch API into a fresh queue with no
//!   worker, then drained by `c` in-process workers (c = 1 and c = 16) with a
//!   no-op handler; each job costs one round trip (`complete` with
//!   `claim_next`). Drain jobs/s = N / (last handler end − first handler start).
//! - **W2 FIFO**: for each drain, inversions and maximum displacement of the
//!   start order the workers saw, and the inversions of the start order the
//!   server recorded (`start_no`), read back with the list API.
//! - **W3 latency**: one idle worker long-polling a concurrency-1 queue; each
//!   sample enqueues one job and times enqueue call → handler start.
//!
//! By default the bench starts its own server (this binary, `serve`) on a free
//! loopback port with a fresh data directory, with `--durability` (default fsync on every commit),
//! and kills it and removes the directory at the end, also on error or
//! Ctrl-C. `--isolate` gives every workload its own fresh server, as the
//! peers' harness resets its store before each run; `--server URL` measures
//! an existing server instead. Every network call and every wait has a time
//! limit, so the bench cannot hang.

use crate::serve::DurabilityArg;
use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use orderly_client::proto::{
    BatchRequest, ClaimRequest, CompleteRequest, EnqueueRequest, JobView, LeaseView,
    QueueConfigRequest,
};
use orderly_client::{Client, ClientError};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// `orderly bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Jobs per W1 workload (N).
    #[arg(long, env = "ORDERLY_BENCH_JOBS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub jobs: u64,
    /// W3 samples (jobs enqueued one at a time to an idle worker).
    #[arg(long, env = "ORDERLY_BENCH_LATENCY_SAMPLES", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub latency_samples: u64,
    /// Concurrent clients of the "single, many clients" enqueue workload.
    #[arg(long, env = "ORDERLY_BENCH_CLIENTS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub clients: u32,
    /// Durability of the server the bench starts (`orderly serve --durability`):
    /// `fsync` (the server's default), `accepted` or `none`.
    #[arg(long, env = "ORDERLY_BENCH_DURABILITY", value_enum, default_value_t = DurabilityArg::Fsync)]
    pub durability: DurabilityArg,
    /// Same as `--durability none`.
    #[arg(long, env = "ORDERLY_BENCH_NO_FSYNC", conflicts_with = "durability")]
    pub no_fsync: bool,
    /// Measure this running server instead of starting one. It gets one fresh
    /// queue per workload (`bench-…`) and keeps their jobs afterwards.
    #[arg(long, env = "ORDERLY_BENCH_SERVER")]
    pub server: Option<String>,
    /// Give every workload its own fresh server and data directory, as the
    /// peers' harness resets its store before each run (default: one server
    /// for all workloads, so later workloads run on a store holding the jobs
    /// of the earlier ones).
    #[arg(long, env = "ORDERLY_BENCH_ISOLATE", conflicts_with = "server")]
    pub isolate: bool,
    /// Bearer token (for --server; also given to the bench's own server).
    #[arg(long, env = "ORDERLY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Workloads to run, comma-separated: single-c1, single-many, bulk,
    /// drain-c1, drain-c16, latency; or the groups enqueue, drain (= w2), w1,
    /// w3, all.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub only: Vec<String>,
}

/// Jobs per batch request, as in the peers' bulk workload.
const BATCH: u64 = 1_000;
/// Concurrency of the second drain (the peers' c = 16).
const DRAIN_HIGH_C: u32 = 16;
/// Longest one HTTP call may take (the longest long poll here is 5 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A drain that handles no job for this long fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the bench waits for its server to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a W3 sample waits for its job to start.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
/// W3 gives up after this many samples whose job did not start in time.
const MAX_LOST_SAMPLES: u64 = 5;
/// Long poll of the drain workers' fresh claims.
const DRAIN_CLAIM_WAIT_MS: u64 = 1_000;
/// Long poll of the W3 worker's claims.
const LATENCY_CLAIM_WAIT_MS: u64 = 5_000;
/// Page size when reading a queue back for the server-side audit.
const LIST_PAGE: u32 = 1_000;

/// One workload of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// W1: single awaited enqueues, one client.
    SingleC1,
    /// W1: single awaited enqueues, `--clients` concurrent clients.
    SingleMany,
    /// W1: batches of 1,000.
    Bulk,
    /// W1 drain + W2 at c = 1.
    DrainC1,
    /// W1 drain + W2 at c = 16.
    DrainC16,
    /// W3.
    Latency,
}

impl Workload {
    /// Every workload, in the order they run.
    const ALL: [Workload; 6] = [
        Workload::SingleC1,
        Workload::SingleMany,
        Workload::Bulk,
        Workload::DrainC1,
        Workload::DrainC16,
        Workload::Latency,
    ];

    /// Name used by `--only`.
    fn name(self) -> &'static str {
        match self {
            Workload::SingleC1 => "single-c1",
            Workload::SingleMany => "single-many",
            Workload::Bulk => "bulk",
            Workload::DrainC1 => "drain-c1",
            Workload::DrainC16 => "drain-c16",
            Workload::Latency => "latency",
        }
    }
}

/// Parses `--only` into the workloads to run, in their canonical order.
fn parse_only(list: &[String]) -> anyhow::Result<Vec<Workload>> {
    use Workload::*;
    let mut chosen: Vec<Workload> = Vec::new();
    for raw in list {
        let item = raw.trim().to_ascii_lowercase();
        let group: &[Workload] = match item.as_str() {
            "" => continue,
            "all" => &Workload::ALL,
            "w1" => &[SingleC1, SingleMany, Bulk, DrainC1, DrainC16],
            "enqueue" => &[SingleC1, SingleMany, Bulk],
            "drain" | "w2" => &[DrainC1, DrainC16],
            "w3" | "latency" => &[Latency],
            "single-c1" => &[SingleC1],
            "single-many" | "single-c32" | "single-clients" => &[SingleMany],
            "bulk" => &[Bulk],
            "drain-c1" => &[DrainC1],
            "drain-c16" => &[DrainC16],
            _ => bail!(
                "--only: unknown workload {raw:?}; use {} or the groups enqueue, drain (w2), w1, w3, all",
                Workload::ALL.map(Workload::name).join(", ")
            ),
        };
        chosen.extend_from_slice(group);
    }
    let selected: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| chosen.contains(w))
        .collect();
    if selected.is_empty() {
        bail!("--only selects no workload");
    }
    Ok(selected)
}

/// Runs `orderly bench`.
pub async fn run(mut a: BenchArgs) -> anyhow::Result<()> {
    let selected = parse_only(&a.only)?;
    if a.no_fsync {
        a.durability = DurabilityArg::None;
    }
    if a.server.is_some() && a.durability != DurabilityArg::Fsync {
        bail!("--durability applies to the server the bench starts; with --server, start that server with the durability you want");
    }
    if a.token.as_deref() == Some("") {
        bail!("--token is empty");
    }
    let tag = run_tag();
    let (client, mut server, target) = match &a.server {
        Some(url) => {
            let client = Client::new(url.clone(), a.token.clone());
            wait_healthy(&client, None, Duration::from_secs(5))
                .await
                .with_context(|| format!("cannot reach the server at {url}"))?;
            (client, None, Target::Existing(client_base(url)))
        }
        None => {
            let server = tokio::select! {
                s = LocalServer::start(a.durability, a.token.as_deref()) => s?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            };
            let client = Client::new(server.url.clone(), a.token.clone());
            let target = Target::Local {
                durability: a.durability,
                isolate: a.isolate,
            };
            (client, Some(server), target)
        }
    };
    let restart = (a.server.is_none() && a.isolate).then(|| Launch {
        durability: a.durability,
        token: a.token.clone(),
    });
    let mut plan = Plan {
        client,
        n: a.jobs,
        clients: a.clients,
        samples: a.latency_samples,
        tag,
    };
    let outcome = tokio::select! {
        r = run_workloads(&mut plan, &selected, &mut server, restart.as_ref()) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let outcome = match (&mut server, outcome) {
        (Some(s), Err(e)) => Err(s.explain(e, false)),
        (_, o) => o,
    };
    if let Some(s) = server.take() {
        s.stop().await;
    }
    let results = outcome?;
    print_report(&plan, &target, &results);
    Ok(())
}

/// Where the figures come from.
enum Target {
    /// The server the bench started.
    Local {
        /// Its `--durability`.
        durability: DurabilityArg,
        /// A fresh server per workload.
        isolate: bool,
    },
    /// A server given with `--server`.
    Existing(String),
}

/// How to start a fresh server before each workload (`--isolate`).
struct Launch {
    /// Its `--durability`.
    durability: DurabilityArg,
    /// Its bearer token.
    token: Option<String>,
}

/// What every workload needs.
struct Plan {
    /// Client of the measured server.
    client: Client,
    /// Jobs per W1 workload.
    n: u64,
    /// Clients of the concurrent single-enqueue workload.
    clients: u32,
    /// W3 samples.
    samples: u64,
    /// Makes this run's queue names and job ids unique.
    tag: String,
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

/// The base URL as the client will use it (for display).
fn client_base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

// ---------------------------------------------------------------------------
// The server the bench starts.

/// A `orderly serve` child process on a free loopback port with a fresh data
/// directory. Killed (and its directory removed) by [`LocalServer::stop`], or
/// on drop if stop was never reached.
struct LocalServer {
    /// The child; `None` once stopped.
    child: Option<tokio::process::Child>,
    /// Temporary directory holding the data directory and the server's log.
    dir: PathBuf,
    /// The server's stderr.
    log: PathBuf,
    /// `http://127.0.0.1:<port>`.
    url: String,
}

impl LocalServer {
    /// Starts the server and waits until `/healthz` answers `ok`.
    async fn start(durability: DurabilityArg, token: Option<&str>) -> anyhow::Result<LocalServer> {
        let exe = std::env::current_exe()
            .context("cannot find the orderly binary to start a server (use --server URL)")?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("orderly-bench-{}", unique_suffix()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create the scratch directory {}", dir.display()))?;
        let log = dir.join("server.log");
        let data = dir.join("data");
        let mut server = LocalServer {
            child: None,
            dir,
            log,
            url: format!("http://127.0.0.1:{port}"),
        };
        let stderr = std::fs::File::create(&server.log)
            .with_context(|| format!("cannot create {}", server.log.display()))?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        cmd.arg("--durability").arg(match durability {
            DurabilityArg::Fsync => "fsync",
            DurabilityArg::Accepted => "accepted",
            DurabilityArg::None => "none",
        });
        // The child reads every flag from ORDERLY_… variables too: only the
        // flags above (and the log filter) may configure it.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("ORDERLY_") && k != "ORDERLY_LOG" {
                cmd.env_remove(&key);
            }
        }
        if let Some(t) = token {
            cmd.env("ORDERLY_TOKEN", t);
        }
        cmd.env("NO_COLOR", "1");
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        server.child = Some(child);
        let client = Client::new(server.url.clone(), None);
        if let Err(e) = wait_healthy(&client, server.child.as_mut(), START_TIMEOUT).await {
            let e = server.explain(
                e.context(format!(
                    "the bench's server ({} serve on {}) did not come up",
                    exe.display(),
                    server.url
                )),
                true,
            );
            server.stop().await;
            return Err(e);
        }
        Ok(server)
    }

    /// Adds what the server's side knows to `e`: whether it exited, and its
    /// log's tail when it exited, logged a warning or error, or `always`.
    fn explain(&mut self, e: anyhow::Error, always: bool) -> anyhow::Error {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        let tail = log_tail(&self.log, 20, 4_000);
        let tail = if tail.is_empty() {
            "(empty)".to_string()
        } else {
            tail
        };
        let noteworthy = tail
            .lines()
            .any(|l| l.contains(" WARN ") || l.contains(" ERROR "));
        let note = match exited {
            Some(status) => format!(
                "the bench's server ({}) exited ({status}); its log ends with:\n{tail}",
                self.url
            ),
            None if always || noteworthy => {
                format!("the bench's server ({}) logged:\n{tail}", self.url)
            }
            None => return e,
        };
        anyhow!("{e:#}\n{note}")
    }

    /// Kills the server, waits for it (bounded) and removes its directory.
    async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                eprintln!("warning: the bench's server did not exit within 10 s of SIGKILL");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!(
                "warning: cannot remove the bench's scratch directory {}: {e}",
                self.dir.display()
            );
        }
    }
}

impl Drop for LocalServer {
    /// Last resort when [`LocalServer::stop`] was not reached: kill, clean up.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
        }
        if self.dir.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("cannot read the free port")?
        .port())
}

/// `<pid>-<nanoseconds>`: a name no other run uses.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// The last `lines` lines of a file, at most `max_chars` characters.
fn log_tail(path: &Path, lines: usize, max_chars: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    let skip = tail.chars().count().saturating_sub(max_chars);
    tail.chars().skip(skip).collect()
}

/// Waits until `/healthz` answers `ok`; fails early if `child` exits.
async fn wait_healthy(
    client: &Client,
    mut child: Option<&mut tokio::process::Child>,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(c) = child.as_deref_mut() {
            if let Some(status) = c.try_wait().context("cannot check the server process")? {
                bail!("the server exited ({status}) before answering /healthz");
            }
        }
        let last = match tokio::time::timeout(Duration::from_secs(2), client.health()).await {
            Ok(Ok(h)) if h.status == "ok" => return Ok(()),
            Ok(Ok(h)) => format!(
                "/healthz says {}{}",
                h.status,
                h.reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "/healthz did not answer within 2 s".into(),
        };
        if Instant::now() >= deadline {
            bail!("no healthy answer within {} s ({last})", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Helpers.

/// Awaits one client call with [`CALL_TIMEOUT`], naming the call on failure.
async fn call<T>(
    what: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(what())),
        Err(_) => Err(anyhow!(
            "{}: no answer within {} s",
            what(),
            CALL_TIMEOUT.as_secs()
        )),
    }
}

/// Sets a queue's concurrency (creating the queue).
async fn configure(client: &Client, queue: &str, concurrency: u32) -> anyhow::Result<()> {
    let config = QueueConfigRequest {
        concurrency: Some(concurrency),
        ..Default::default()
    };
    call(
        || format!("configure queue {queue}"),
        client.configure(queue, &config),
    )
    .await?;
    Ok(())
}

/// The W1 job `i`: payload `{"i": i}`.
fn job(i: u64) -> EnqueueRequest {
    EnqueueRequest {
        payload: json!({ "i": i }),
        ..Default::default()
    }
}

/// Waits for every task of `set`; the first error (or panic) aborts the rest.
async fn join_all<T: 'static>(mut set: JoinSet<anyhow::Result<T>>) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(set.len());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => return Err(e),
            Err(e) => bail!("a bench task failed: {e}"),
        }
    }
    Ok(out)
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("  {prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

/// Jobs per second, guarding against a zero span.
fn rate(jobs: u64, span: Duration) -> f64 {
    jobs as f64 / span.as_secs_f64().max(1e-9)
}

// ---------------------------------------------------------------------------
// Workloads.

/// Figures of every workload that ran.
#[derive(Default)]
struct Results {
    /// W1 single, one client.
    single_c1: Option<Enqueue>,
    /// W1 single, many clients.
    single_many: Option<Enqueue>,
    /// W1 bulk.
    bulk: Option<Enqueue>,
    /// W1 drain + W2 at c = 1.
    drain_c1: Option<Drain>,
    /// W1 drain + W2 at c = 16.
    drain_c16: Option<Drain>,
    /// W3.
    latency: Option<Latency>,
}

/// An enqueue workload's figure.
struct Enqueue {
    /// Jobs per second.
    per_s: f64,
    /// Wall time.
    took: Duration,
}

/// A drain's figures (W1 drain and W2).
struct Drain {
    /// Concurrency (queue and workers).
    c: u32,
    /// Jobs/s of the batch fill.
    fill_per_s: f64,
    /// N / (last end − first start).
    per_s: f64,
    /// From first start to last end.
    span: Duration,
    /// FIFO of the start order the workers saw.
    client: Fifo,
    /// FIFO of the start order the server recorded.
    server: Fifo,
    /// Jobs of the queue the server never started.
    never_started: u64,
    /// Jobs of the queue not `succeeded` after the drain.
    not_succeeded: u64,
}

/// W3 figures, in milliseconds.
struct Latency {
    /// Median.
    p50: f64,
    /// 99th percentile.
    p99: f64,
    /// Largest.
    max: f64,
    /// Samples measured.
    samples: usize,
    /// Samples whose job did not start within [`SAMPLE_TIMEOUT`].
    lost: u64,
}

/// Runs the selected workloads in order, with a line on stderr for each.
/// With `restart`, every workload after the first gets a fresh server in
/// `local` (the previous one is stopped first).
async fn run_workloads(
    plan: &mut Plan,
    selected: &[Workload],
    local: &mut Option<LocalServer>,
    restart: Option<&Launch>,
) -> anyhow::Result<Results> {
    let mut r = Results::default();
    let total = selected.len();
    for (k, w) in selected.iter().enumerate() {
        if let (Some(launch), true) = (restart, k > 0) {
            if let Some(old) = local.take() {
                old.stop().await;
            }
            let fresh = LocalServer::start(launch.durability, launch.token.as_deref()).await?;
            plan.client = Client::new(fresh.url.clone(), launch.token.clone());
            *local = Some(fresh);
        }
        let plan: &Plan = plan;
        let step = format!("[{}/{total}]", k + 1);
        let n = plan.n;
        match w {
            Workload::SingleC1 => {
                eprintln!("{step} W1 enqueue, single, 1 client: {n} jobs …");
                let e = enqueue_single(plan, &plan.queue("w1-single-c1"), 1).await?;
                eprintln!(
                    "      {} jobs/s ({:.2} s)",
                    thousands(e.per_s),
                    e.took.as_secs_f64()
                );
                r.single_c1 = Some(e);
            }
            Workload::SingleMany => {
                let c = plan.clients;
                eprintln!("{step} W1 enqueue, single, {c} clients: {n} jobs …");
                let e = enqueue_single(plan, &plan.queue(&format!("w1-single-c{c}")), c).await?;
                eprintln!(
                    "      {} jobs/s ({:.2} s)",
                    thousands(e.per_s),
                    e.took.as_secs_f64()
                );
                r.single_many = Some(e);
            }
            Workload::Bulk => {
                eprintln!("{step} W1 enqueue, bulk (batches of {BATCH}): {n} jobs …");
                let e = enqueue_bulk(plan, &plan.queue("w1-bulk")).await?;
                eprintln!(
                    "      {} jobs/s ({:.2} s)",
                    thousands(e.per_s),
                    e.took.as_secs_f64()
                );
                r.bulk = Some(e);
            }
            Workload::DrainC1 | Workload::DrainC16 => {
                let c = if *w == Workload::DrainC1 {
                    1
                } else {
                    DRAIN_HIGH_C
                };
                eprintln!("{step} W1 drain + W2 FIFO, c = {c}: fill {n} jobs, then drain …");
                let d = drain(plan, &plan.queue(&format!("w1-drain-c{c}")), c).await?;
                eprintln!(
                    "      fill {} jobs/s; drain {} jobs/s ({:.2} s); inversions client {} / server {}",
                    thousands(d.fill_per_s),
                    thousands(d.per_s),
                    d.span.as_secs_f64(),
                    d.client.inversions,
                    d.server.inversions
                );
                if *w == Workload::DrainC1 {
                    r.drain_c1 = Some(d);
                } else {
                    r.drain_c16 = Some(d);
                }
            }
            Workload::Latency => {
                eprintln!(
                    "{step} W3 latency: {} samples, enqueue → handler start …",
                    plan.samples
                );
                let l = latency(plan, &plan.queue("w3-latency")).await?;
                eprintln!(
                    "      p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    l.p50, l.p99, l.max
                );
                r.latency = Some(l);
            }
        }
    }
    Ok(r)
}

/// W1 single: N awaited enqueues split over `clients` concurrent tasks.
async fn enqueue_single(plan: &Plan, queue: &str, clients: u32) -> anyhow::Result<Enqueue> {
    let n = plan.n;
    let bar = progress(n, "enqueue");
    let started = Instant::now();
    let mut set = JoinSet::new();
    let k = u64::from(clients);
    for t in 0..k {
        let (from, to) = (t * n / k, (t + 1) * n / k);
        let client = plan.client.clone();
        let queue = queue.to_string();
        let bar = bar.clone();
        set.spawn(async move {
            for i in from..to {
                call(
                    || format!("enqueue job {i} into {queue}"),
                    client.enqueue(&queue, &job(i)),
                )
                .await?;
                bar.inc(1);
            }
            anyhow::Ok(())
        });
    }
    let result = join_all(set).await;
    let took = started.elapsed();
    bar.finish_and_clear();
    result?;
    Ok(Enqueue {
        per_s: rate(n, took),
        took,
    })
}

/// Enqueues jobs `0..n` into `queue` in batches of [`BATCH`], one batch at a time.
async fn fill_bulk(client: &Client, queue: &str, n: u64, bar: &ProgressBar) -> anyhow::Result<()> {
    let mut from = 0;
    while from < n {
        let to = (from + BATCH).min(n);
        let batch = BatchRequest {
            jobs: (from..to).map(job).collect(),
        };
        let out = call(
            || format!("enqueue batch {from}..{to} into {queue}"),
            client.enqueue_batch(queue, &batch),
        )
        .await?;
        if out.value.len() as u64 != to - from {
            bail!(
                "batch {from}..{to} into {queue}: the server answered {} jobs for {} sent",
                out.value.len(),
                to - from
            );
        }
        bar.inc(to - from);
        from = to;
    }
    Ok(())
}

/// W1 bulk: N jobs in batches of 1,000.
async fn enqueue_bulk(plan: &Plan, queue: &str) -> anyhow::Result<Enqueue> {
    let bar = progress(plan.n, "bulk");
    let started = Instant::now();
    let result = fill_bulk(&plan.client, queue, plan.n, &bar).await;
    let took = started.elapsed();
    bar.finish_and_clear();
    result?;
    Ok(Enqueue {
        per_s: rate(plan.n, took),
        took,
    })
}

/// One handler run recorded by a drain worker.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// The job's `seq`.
    seq: i64,
    /// When its lease reached the worker.
    start: Instant,
    /// When the (no-op) handler returned.
    end: Instant,
}

/// What the drain workers share.
struct DrainShared {
    /// The queue.
    queue: String,
    /// Jobs to handle in all.
    n: u64,
    /// Jobs handled so far.
    done: AtomicU64,
    /// Set by the coordinator to make workers leave.
    stop: AtomicBool,
}

/// W1 drain + W2 at concurrency `c`.
async fn drain(plan: &Plan, queue: &str, c: u32) -> anyhow::Result<Drain> {
    let n = plan.n;
    let client = &plan.client;
    configure(client, queue, c).await?;
    let bar = progress(n, "fill");
    let fill_started = Instant::now();
    let filled = fill_bulk(client, queue, n, &bar).await;
    let fill_took = fill_started.elapsed();
    bar.finish_and_clear();
    filled?;

    let shared = Arc::new(DrainShared {
        queue: queue.to_string(),
        n,
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let bar = progress(n, "drain");
    let mut set = JoinSet::new();
    for w in 0..c {
        set.spawn(drain_worker(
            client.clone(),
            shared.clone(),
            format!("bench-{}-w{w}", plan.tag),
            bar.clone(),
        ));
    }
    let runs = watch_drain(&mut set, &shared).await;
    shared.stop.store(true, Ordering::SeqCst);
    drop(set);
    bar.finish_and_clear();
    let runs = runs?;

    let first = runs.iter().map(|r| r.start).min();
    let last = runs.iter().map(|r| r.end).max();
    let span = match (first, last) {
        (Some(f), Some(l)) => l.saturating_duration_since(f),
        _ => bail!("drain of {queue}: no job was handled"),
    };
    let mut ordered = runs.clone();
    ordered.sort_by_key(|r| r.start);
    let client_order: Vec<i64> = ordered.iter().map(|r| r.seq).collect();
    let audit = server_audit(client, queue, n).await?;
    Ok(Drain {
        c,
        fill_per_s: rate(n, fill_took),
        per_s: rate(runs.len() as u64, span),
        span,
        client: fifo(&client_order, n),
        server: fifo(&audit.start_order, n),
        never_started: audit.never_started,
        not_succeeded: audit.not_succeeded,
    })
}

/// Waits for the drain workers: all of them done, or the first error, or no
/// progress for [`STALL_TIMEOUT`]. Returns every recorded run.
async fn watch_drain(
    set: &mut JoinSet<anyhow::Result<Vec<Run>>>,
    shared: &DrainShared,
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::with_capacity(shared.n as usize);
    let mut seen = 0;
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !set.is_empty() {
        tokio::select! {
            joined = set.join_next() => match joined {
                Some(Ok(Ok(mut r))) => runs.append(&mut r),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => bail!("a drain worker failed: {e}"),
                None => break,
            },
            _ = tick.tick() => {
                let done = shared.done.load(Ordering::SeqCst);
                if done != seen {
                    seen = done;
                    last_progress = Instant::now();
                } else if last_progress.elapsed() >= STALL_TIMEOUT {
                    bail!(
                        "drain of {} stalled: {done} of {} jobs handled, none in the last {} s",
                        shared.queue,
                        shared.n,
                        STALL_TIMEOUT.as_secs()
                    );
                }
            }
        }
    }
    Ok(runs)
}

/// One drain worker: claim one job, run the no-op handler, report it and
/// claim the next in the same call; a fresh long-poll claim when that brings
/// nothing. Leaves once `n` jobs were handled (by all workers) or on stop.
async fn drain_worker(
    client: Client,
    shared: Arc<DrainShared>,
    worker: String,
    bar: ProgressBar,
) -> anyhow::Result<Vec<Run>> {
    let queue = shared.queue.as_str();
    let claim = |wait_ms| ClaimRequest {
        worker: worker.clone(),
        max: 1,
        wait_ms,
        lease_ms: None,
    };
    let mut runs = Vec::new();
    let mut next: Option<LeaseView> = None;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let lease = match next.take() {
            Some(l) => l,
            None => {
                if shared.done.load(Ordering::SeqCst) >= shared.n {
                    break;
                }
                let r = call(
                    || format!("claim from {queue} ({worker})"),
                    client.claim(queue, &claim(DRAIN_CLAIM_WAIT_MS)),
                )
                .await?;
                match r.leases.into_iter().next() {
                    Some(l) => l,
                    None => continue,
                }
            }
        };
        let start = Instant::now();
        noop_handler(&lease.job);
        let end = Instant::now();
        runs.push(Run {
            seq: lease.job.seq,
            start,
            end,
        });
        bar.inc(1);
        let handled = shared.done.fetch_add(1, Ordering::SeqCst) + 1;
        let report = CompleteRequest {
            token: lease.token,
            result: None,
            claim_next: (handled < shared.n).then(|| claim(0)),
        };
        let id = lease.job.id;
        let answer = call(
            || format!("complete job {id} of {queue} ({worker})"),
            client.complete(&id, &report),
        )
        .await?;
        next = answer.leases.and_then(|l| l.into_iter().next());
    }
    Ok(runs)
}

/// The drain's handler: does nothing with the job.
fn noop_handler(job: &JobView) {
    std::hint::black_box(job);
}

/// The server's record of a drained queue.
struct Audit {
    /// `seq`s in the order the server started them (`start_no`).
    start_order: Vec<i64>,
    /// Jobs without a start.
    never_started: u64,
    /// Jobs not `succeeded`.
    not_succeeded: u64,
}

/// Reads every job of `queue` (cursor paging) and orders them by `start_no`.
async fn server_audit(client: &Client, queue: &str, n: u64) -> anyhow::Result<Audit> {
    let mut started: Vec<(i64, i64)> = Vec::with_capacity(n as usize);
    let mut never_started = 0;
    let mut not_succeeded = 0;
    let mut after = None;
    // The queue holds n jobs: n / page + 1 pages, with slack for surprises.
    let max_pages = n / u64::from(LIST_PAGE) + 10;
    let mut pages = 0;
    loop {
        pages += 1;
        if pages > max_pages {
            bail!("listing {queue}: more than {max_pages} pages of {LIST_PAGE} for {n} jobs");
        }
        let page = call(
            || format!("list jobs of {queue} after {after:?}"),
            client.list(queue, None, after, LIST_PAGE),
        )
        .await?;
        for j in &page.jobs {
            match j.start_no {
                Some(s) => started.push((s, j.seq)),
                None => never_started += 1,
            }
            if j.state != "succeeded" {
                not_succeeded += 1;
            }
        }
        match page.next_after {
            Some(a) if !page.jobs.is_empty() && Some(a) != after => after = Some(a),
            _ => break,
        }
    }
    started.sort_unstable();
    Ok(Audit {
        start_order: started.into_iter().map(|(_, seq)| seq).collect(),
        never_started,
        not_succeeded,
    })
}

/// W3: one idle worker on a concurrency-1 queue; `samples` times: enqueue one
/// job, wait for its handler to start, sleep 2–10 ms.
async fn latency(plan: &Plan, queue: &str) -> anyhow::Result<Latency> {
    let client = &plan.client;
    configure(client, queue, 1).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut worker = tokio::spawn(latency_worker(
        client.clone(),
        queue.to_string(),
        format!("bench-{}-w3", plan.tag),
        tx,
        stop.clone(),
    ));
    // As the peers' harness: let the worker settle into its long poll.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let bar = progress(plan.samples, "latency");
    let mut lat_ms = Vec::with_capacity(plan.samples as usize);
    let mut lost = 0;
    let result: anyhow::Result<()> = async {
        for i in 0..plan.samples {
            let id = format!("w3-{}-{i}", plan.tag);
            let req = EnqueueRequest {
                id: Some(id.clone()),
                payload: json!({ "i": i }),
                ..Default::default()
            };
            let t0 = Instant::now();
            call(
                || format!("enqueue job {id} into {queue}"),
                client.enqueue(queue, &req),
            )
            .await?;
            let deadline = tokio::time::Instant::now() + SAMPLE_TIMEOUT;
            let started = loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((got, at))) if got == id => break Some(at),
                    Ok(Some(_)) => continue,
                    Ok(None) => break None,
                    Err(_) => break None,
                }
            };
            match started {
                Some(at) => lat_ms.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3),
                None => {
                    if worker.is_finished() {
                        return match (&mut worker).await {
                            Ok(Err(e)) => Err(e.context("the W3 worker stopped")),
                            Ok(Ok(())) => Err(anyhow!("the W3 worker stopped early")),
                            Err(e) => Err(anyhow!("the W3 worker failed: {e}")),
                        };
                    }
                    lost += 1;
                    eprintln!(
                        "      sample {i}: job {id} did not start within {} s",
                        SAMPLE_TIMEOUT.as_secs()
                    );
                    if lost >= MAX_LOST_SAMPLES {
                        bail!(
                            "W3: {lost} jobs did not start within {} s each; giving up",
                            SAMPLE_TIMEOUT.as_secs()
                        );
                    }
                }
            }
            bar.inc(1);
            tokio::time::sleep(Duration::from_micros(rand::random_range(2_000..10_000))).await;
        }
        Ok(())
    }
    .await;
    stop.store(true, Ordering::SeqCst);
    worker.abort();
    bar.finish_and_clear();
    result?;
    if lat_ms.is_empty() {
        bail!("W3: no sample was measured");
    }
    lat_ms.sort_by(f64::total_cmp);
    Ok(Latency {
        p50: percentile(&lat_ms, 50.0),
        p99: percentile(&lat_ms, 99.0),
        max: lat_ms.last().copied().unwrap_or_default(),
        samples: lat_ms.len(),
        lost,
    })
}

/// The W3 worker: long-polls claims, signals each start, completes the job.
async fn latency_worker(
    client: Client,
    queue: String,
    worker: String,
    started: mpsc::UnboundedSender<(String, Instant)>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let claim = ClaimRequest {
        worker: worker.clone(),
        max: 1,
        wait_ms: LATENCY_CLAIM_WAIT_MS,
        lease_ms: None,
    };
    while !stop.load(Ordering::SeqCst) {
        let r = call(
            || format!("claim from {queue} ({worker})"),
            client.claim(&queue, &claim),
        )
        .await?;
        for lease in r.leases {
            let at = Instant::now();
            if started.send((lease.job.id.clone(), at)).is_err() {
                return Ok(());
            }
            let report = CompleteRequest {
                token: lease.token,
                result: None,
                claim_next: None,
            };
            let id = lease.job.id;
            call(
                || format!("complete job {id} of {queue}"),
                client.complete(&id, &report),
            )
            .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// FIFO and statistics.

/// Ordering quality of a start order (W2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fifo {
    /// Pairs started in the wrong order (0 = exact FIFO).
    inversions: u64,
    /// Largest |position in start order − position in seq order|.
    max_displacement: u64,
    /// Starts of a job already started (redeliveries).
    duplicates: u64,
    /// Of the `expected` jobs, how many never appear.
    missing: u64,
}

/// FIFO figures of `order` (seqs in start order), as the peers' harness
/// computes them: each job's first start, ranked among the seqs seen.
fn fifo(order: &[i64], expected: u64) -> Fifo {
    let mut seen = HashSet::with_capacity(order.len());
    let firsts: Vec<i64> = order.iter().copied().filter(|s| seen.insert(*s)).collect();
    let mut sorted = firsts.clone();
    sorted.sort_unstable();
    let ranks: Vec<usize> = firsts
        .iter()
        .map(|s| sorted.binary_search(s).unwrap_or_default())
        .collect();
    let max_displacement = ranks
        .iter()
        .enumerate()
        .map(|(k, r)| k.abs_diff(*r) as u64)
        .max()
        .unwrap_or(0);
    Fifo {
        inversions: inversions(&ranks),
        max_displacement,
        duplicates: (order.len() - firsts.len()) as u64,
        missing: expected.saturating_sub(firsts.len() as u64),
    }
}

/// Pairs `i < j` with `v[i] > v[j]`, by bottom-up merge sort: O(n log n).
fn inversions(v: &[usize]) -> u64 {
    let n = v.len();
    let mut a = v.to_vec();
    let mut b = vec![0usize; n];
    let mut count = 0u64;
    let mut width = 1;
    while width < n {
        let mut lo = 0;
        while lo < n {
            let mid = (lo + width).min(n);
            let hi = (lo + 2 * width).min(n);
            let (mut i, mut j, mut k) = (lo, mid, lo);
            while i < mid && j < hi {
                if a[i] <= a[j] {
                    b[k] = a[i];
                    i += 1;
                } else {
                    b[k] = a[j];
                    j += 1;
                    count += (mid - i) as u64;
                }
                k += 1;
            }
            b[k..k + (mid - i)].copy_from_slice(&a[i..mid]);
            k += mid - i;
            b[k..k + (hi - j)].copy_from_slice(&a[j..hi]);
            lo = hi;
        }
        std::mem::swap(&mut a, &mut b);
        width *= 2;
    }
    count
}

/// The `p`th percentile of sorted values, as the peers' harness takes it
/// (nearest rank: index round(p/100 × (n − 1))).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------
// Report.

/// `12345.6` → `12,346`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (k, ch) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The peers' best figures (peers.md) and the targets, for the reference table.
struct Reference {
    /// What is compared.
    figure: &'static str,
    /// The best peer's figure.
    peer: f64,
    /// Who, and how durable.
    who: &'static str,
    /// Orderly's target from peers.md.
    target: f64,
    /// `true` when higher is better (rates), `false` for latencies.
    higher_is_better: bool,
}

/// Prints the Markdown report on stdout.
fn print_report(plan: &Plan, target: &Target, r: &Results) {
    let n = plan.n as f64;
    let durability = match target {
        Target::Local { durability, isolate } => format!(
            "{}; {}",
            match durability {
                DurabilityArg::Fsync => "**fsync on every commit** (`--durability fsync`, the default: every acknowledged job is on disk)",
                DurabilityArg::Accepted => "**fsync on commits that accept jobs** (`--durability accepted`: every acknowledged job is on disk; claims and reports ride along with the next fsync)",
                DurabilityArg::None => "**fsync off** (`--durability none`: survives a process crash, not a machine crash)",
            },
            if *isolate {
                "a fresh server and data directory per workload (`--isolate`)"
            } else {
                "one server started by the bench with a fresh data directory, shared by the workloads in turn"
            }
        ),
        Target::Existing(url) => {
            format!("as configured on the server at {url} (not started by the bench)")
        }
    };
    println!("## Orderly bench");
    println!();
    println!(
        "N = {} jobs per W1 workload, W3 samples = {}; durability: {durability}; build: {}.",
        thousands(n),
        thousands(plan.samples as f64),
        if cfg!(debug_assertions) {
            "debug (figures are not representative: use a --release build)"
        } else {
            "release"
        }
    );
    println!();
    println!("| workload | enqueue | c | jobs/s | FIFO inversions / max displacement (client) | server start-order inversions |");
    println!("|---|---|---|---|---|---|");
    let enqueue_row = |what: &str, c: u32, e: &Option<Enqueue>| {
        if let Some(e) = e {
            println!(
                "| W1 enqueue | {what} | {c} | {} | — | — |",
                thousands(e.per_s)
            );
        }
    };
    enqueue_row("single, 1 client", 1, &r.single_c1);
    enqueue_row(
        &format!("single, {} clients", plan.clients),
        plan.clients,
        &r.single_many,
    );
    enqueue_row(
        &format!("bulk ({} per batch)", thousands(BATCH as f64)),
        1,
        &r.bulk,
    );
    let mut notes = Vec::new();
    for d in [&r.drain_c1, &r.drain_c16].into_iter().flatten() {
        println!(
            "| W1 drain + W2 | bulk fill ({}/s) | {} | {} | {} / {} | {} |",
            thousands(d.fill_per_s),
            d.c,
            thousands(d.per_s),
            thousands(d.client.inversions as f64),
            thousands(d.client.max_displacement as f64),
            thousands(d.server.inversions as f64),
        );
        if d.client.duplicates + d.client.missing + d.never_started + d.not_succeeded > 0 {
            notes.push(format!(
                "drain c = {}: {} redelivered, {} never handled, {} never started by the server, {} not succeeded",
                d.c, d.client.duplicates, d.client.missing, d.never_started, d.not_succeeded
            ));
        }
    }
    if let Some(l) = &r.latency {
        println!();
        println!(
            "W3 latency, enqueue call → handler start ({} samples{}), p50 / p99 / max ms: **{:.2} / {:.2} / {:.2}**",
            thousands(l.samples as f64),
            if l.lost > 0 {
                format!(", {} lost", l.lost)
            } else {
                String::new()
            },
            l.p50,
            l.p99,
            l.max
        );
    }
    for note in &notes {
        println!();
        println!("Note: {note}.");
    }

    println!();
    println!("### Against the fastest peer (bench/peers.md, same workloads)");
    println!();
    println!("| figure | Orderly | fastest peer | Orderly ÷ peer | target (peers.md) | met |");
    println!("|---|---|---|---|---|---|");
    let refs = [
        (
            Reference {
                figure: "W1 enqueue, single, 1 client (jobs/s)",
                peer: 10_220.0,
                who: "BullMQ, not durable",
                target: 10_220.0,
                higher_is_better: true,
            },
            r.single_c1.as_ref().map(|e| e.per_s),
        ),
        (
            Reference {
                figure: "W1 enqueue, bulk (jobs/s)",
                peer: 36_783.0,
                who: "pg-boss, durable",
                target: 180_000.0,
                higher_is_better: true,
            },
            r.bulk.as_ref().map(|e| e.per_s),
        ),
        (
            Reference {
                figure: "W1 drain, c = 1 (jobs/s)",
                peer: 5_386.0,
                who: "BullMQ, not durable",
                target: 10_800.0,
                higher_is_better: true,
            },
            r.drain_c1.as_ref().map(|d| d.per_s),
        ),
        (
            Reference {
                figure: "W1 drain, c = 16 (jobs/s)",
                peer: 9_437.0,
                who: "BullMQ, not durable",
                target: 38_000.0,
                higher_is_better: true,
            },
            r.drain_c16.as_ref().map(|d| d.per_s),
        ),
        (
            Reference {
                figure: "W3 p50 (ms, lower is better)",
                peer: 0.73,
                who: "BullMQ, not durable",
                target: 0.7,
                higher_is_better: false,
            },
            r.latency.as_ref().map(|l| l.p50),
        ),
        (
            Reference {
                figure: "W3 p99 (ms, lower is better)",
                peer: 2.86,
                who: "BullMQ, not durable",
                target: 2.5,
                higher_is_better: false,
            },
            r.latency.as_ref().map(|l| l.p99),
        ),
    ];
    for (rf, ours) in refs {
        let show = |x: f64| {
            if rf.higher_is_better {
                thousands(x)
            } else {
                format!("{x:.2}")
            }
        };
        let (cmp, sign) = if rf.higher_is_better {
            ("≥", "/s")
        } else {
            ("≤", " ms")
        };
        match ours {
            Some(x) => {
                let met = if rf.higher_is_better {
                    x >= rf.target
                } else {
                    x <= rf.target
                };
                println!(
                    "| {} | {} | {}{sign} ({}) | {:.2}x | {cmp} {}{sign} | {} |",
                    rf.figure,
                    show(x),
                    show(rf.peer),
                    rf.who,
                    x / rf.peer,
                    show(rf.target),
                    if met { "yes" } else { "no" }
                );
            }
            None => println!(
                "| {} | not run | {}{sign} ({}) | — | {cmp} {}{sign} | — |",
                rf.figure,
                show(rf.peer),
                rf.who,
                show(rf.target)
            ),
        }
    }
    if let Some(d) = &r.drain_c1 {
        println!();
        println!(
            "W2 target: 0 inversions at c = 1, always: client {}, server {} ({}).",
            d.client.inversions,
            d.server.inversions,
            if d.client.inversions == 0 && d.server.inversions == 0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}

/// Unit tests of the FIFO and statistics helpers and of `--only`.
#[cfg(test)]
mod tests {
    use super::*;

    /// Inversions by brute force, for comparison.
    fn brute(v: &[usize]) -> u64 {
        let mut c = 0;
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                if v[i] > v[j] {
                    c += 1;
                }
            }
        }
        c
    }

    /// The merge-sort count equals the quadratic count.
    #[test]
    fn inversions_match_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for len in 0..70 {
            let v: Vec<usize> = (0..len).map(|_| rng.random_range(0..20)).collect();
            assert_eq!(inversions(&v), brute(&v), "{v:?}");
        }
        assert_eq!(inversions(&[3, 2, 1, 0]), 6);
    }

    /// Inversions, displacement, duplicates and missing jobs of a start order.
    #[test]
    fn fifo_figures() {
        let f = fifo(&[10, 11, 12, 13], 4);
        assert_eq!((f.inversions, f.max_displacement), (0, 0));
        let f = fifo(&[13, 10, 11, 12, 11], 5);
        assert_eq!(f.inversions, 3);
        assert_eq!(f.max_displacement, 3);
        assert_eq!(f.duplicates, 1);
        assert_eq!(f.missing, 1);
    }

    /// Nearest-rank percentiles as the peers' harness, and thousands separators.
    #[test]
    fn percentile_and_format() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(thousands(36_783.4), "36,783");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
    }

    /// `--only` expands groups, keeps the canonical order and rejects unknown names.
    #[test]
    fn only_parses_groups() {
        let w = parse_only(&["drain".into(), "bulk".into()]).unwrap();
        assert_eq!(
            w,
            vec![Workload::Bulk, Workload::DrainC1, Workload::DrainC16]
        );
        assert!(parse_only(&["nope".into()]).is_err());
        assert_eq!(parse_only(&["all".into()]).unwrap().len(), 6);
    }
}
