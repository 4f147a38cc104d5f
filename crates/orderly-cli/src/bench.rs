//! `orderly bench`: the clap wrapper over `orderly_bench` (the benchmark
//! library: server launcher, workloads W1–W4, the in-process drain,
//! statistics, report). It maps the flags to [`orderly_bench::Options`] and
//! starts servers from this very binary.

use crate::serve::DurabilityArg;
use orderly_bench::{Durability, Options};

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
    /// Waiting jobs W4 fills its backlog queue with (batch API).
    #[arg(long, env = "ORDERLY_BENCH_BACKLOG", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub backlog: u64,
    /// W4 at 10,000,000 waiting jobs (the memory target's backlog; the same
    /// as --backlog 10000000). The fill takes minutes.
    #[arg(long, conflicts_with = "backlog")]
    pub big: bool,
    /// Concurrent clients of the "single, many clients" enqueue workload.
    #[arg(long, env = "ORDERLY_BENCH_CLIENTS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub clients: u32,
    /// Durability of the server the bench starts (`orderly serve --durability`):
    /// `fsync` (the server's default), `accepted` or `none`.
    #[arg(long, env = "ORDERLY_BENCH_DURABILITY", value_enum, default_value_t = DurabilityArg::Fsync)]
    pub durability: DurabilityArg,
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
    /// drain-c1, drain-c16, embedded-c1, embedded-c16 (the W1 drain by the
    /// embedded library's in-process handlers, no HTTP), latency, w4 (the
    /// costs at a backlog of --backlog jobs against an empty queue; not in
    /// all); or the groups enqueue, drain (= w2), embedded (= in-process),
    /// w1, w3, all.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub only: Vec<String>,
    /// The peers' figures to compare with: a JSON file shaped like
    /// crates/orderly-bench/peers.json (default: that file, built in).
    #[arg(long, env = "ORDERLY_BENCH_PEERS")]
    pub peers: Option<std::path::PathBuf>,
    /// Also write every figure, its floor and the peers' as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Also draw every figure against its floor and the fastest peer as an
    /// SVG chart in FILE (e.g. docs/bench.svg).
    #[arg(long, value_name = "FILE")]
    pub chart: Option<std::path::PathBuf>,
    /// Back the bench's server with this PostgreSQL database instead of
    /// SQLite (`orderly serve --database-url`): a fresh schema per server,
    /// dropped after; the `commit` floor is then one committed one-row
    /// INSERT on it.
    #[arg(
        long,
        env = "ORDERLY_BENCH_DATABASE_URL",
        hide_env_values = true,
        conflicts_with = "server"
    )]
    pub database_url: Option<String>,
    /// The fresh schema's name (must not exist; default
    /// `orderly_bench_<pid>_<seconds>`). Needs --database-url.
    #[arg(long, requires = "database_url")]
    pub database_schema: Option<String>,
}

/// Runs `orderly bench`.
pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let durability = match a.durability {
        DurabilityArg::Fsync => Durability::Fsync,
        DurabilityArg::Accepted => Durability::Accepted,
        DurabilityArg::None => Durability::None,
    };
    orderly_bench::run(Options {
        jobs: a.jobs,
        latency_samples: a.latency_samples,
        clients: a.clients,
        backlog: if a.big {
            orderly_bench::RSS_TARGET_JOBS
        } else {
            a.backlog
        },
        durability,
        server: a.server,
        isolate: a.isolate,
        token: a.token,
        only: a.only,
        server_exe: None,
        peers: a.peers,
        json: a.json,
        chart: a.chart,
        database: a.database_url.map(|url| orderly_bench::Database {
            url,
            schema: a.database_schema,
        }),
    })
    .await
}
