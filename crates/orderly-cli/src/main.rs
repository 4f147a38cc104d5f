//! `orderly`: the binary. Parses the command line (every flag also reads an
//! `ORDERLY_…` environment variable) and hands over to the library crates;
//! nothing else lives here.

mod bench;
mod client_cmds;
mod follow;
mod history;
mod serve;
mod why;
mod worker;

use clap::{Parser, Subcommand};

/// mimalloc for every Rust allocation of the binary: glibc's `malloc` and
/// `free` were a quarter of the instructions an enqueue costs on the
/// server's runtime threads (docs/performance.md, stop 21). SQLite's own
/// allocations stay on the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Orderly: a durable background-job server that runs jobs in the order they were accepted.
#[derive(Debug, Parser)]
#[command(name = "orderly", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (embedded SQLite store in --data-dir).
    Serve(serve::ServeArgs),
    /// Enqueue one job, or many from a JSON-lines file.
    Enqueue(client_cmds::EnqueueArgs),
    /// List a queue's jobs in seq order.
    Jobs(client_cmds::JobsArgs),
    /// Show one job and its attempts (optionally wait for it to finish).
    Job(client_cmds::JobArgs),
    /// Print a queue's start log: every start the server made, in start order.
    Starts(history::StartsArgs),
    /// List, show or configure queues.
    Queue(client_cmds::QueueArgs),
    /// Run a command per job of a queue (payload on stdin), as a pull worker.
    Worker(worker::WorkerArgs),
    /// Measure enqueue, drain (over HTTP and in-process), FIFO, latency and backlog costs (workloads W1–W4).
    Bench(bench::BenchArgs),
}

/// How client commands reach the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Server URL.
    #[arg(
        long,
        env = "ORDERLY_SERVER",
        default_value = "http://127.0.0.1:7771",
        global = true
    )]
    pub server: String,
    /// Bearer token.
    #[arg(long, env = "ORDERLY_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

impl ServerArgs {
    /// A client for the server.
    pub fn client(&self) -> orderly_client::Client {
        orderly_client::Client::new(self.server.clone(), self.token.clone())
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORDERLY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Enqueue(a) => client_cmds::enqueue(a).await,
            Command::Jobs(a) => client_cmds::jobs(a).await,
            Command::Job(a) => client_cmds::job(a).await,
            Command::Starts(a) => history::starts(a).await,
            Command::Queue(a) => client_cmds::queue(a).await,
            Command::Worker(a) => worker::run(a).await,
            Command::Bench(a) => bench::run(a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
