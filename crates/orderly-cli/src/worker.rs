//! `orderly worker QUEUE -- COMMAND…`: a pull worker that runs a command per job.
//!
//! A thin shell over `orderly_worker`: a [`Runner`] with `--concurrency`
//! slots drives a [`CommandHandler`] over the HTTP source. Each slot claims
//! one job (long poll), runs the command with the payload as JSON on stdin,
//! heartbeats every third of the server's `lease_ms` while it runs, and
//! reports: exit 0 → complete with stdout as the result (parsed as JSON when
//! it is JSON), anything else → fail with the exit status and stderr's tail.
//! The report also claims the slot's next job in the same round trip. A
//! cancel seen on heartbeat kills the command's process group; a lease found
//! stale (the server gave the job to someone else) kills it without
//! reporting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use orderly_worker::{
    command::Env, CancelReason, CommandHandler, Failure, Handler, HttpSource, Job, JobContext,
    Runner, RunnerConfig,
};
use serde_json::Value;

use crate::ServerArgs;

/// `orderly worker` flags.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Queue to work on.
    pub queue: String,
    /// Jobs run at once by this worker (the queue's own concurrency still caps the total).
    #[arg(
        long,
        short = 'c',
        env = "ORDERLY_WORKER_CONCURRENCY",
        default_value_t = 1
    )]
    pub concurrency: u32,
    /// Lease to ask for (default: the queue's). Heartbeats renew it every third of it.
    #[arg(long, env = "ORDERLY_WORKER_LEASE", value_parser = humantime::parse_duration)]
    pub lease: Option<Duration>,
    /// Worker name shown on jobs (default: host-pid-random, unique per process).
    #[arg(long, env = "ORDERLY_WORKER_NAME")]
    pub name: Option<String>,
    /// Most bytes of stdout kept as the result.
    #[arg(long, env = "ORDERLY_WORKER_MAX_OUTPUT_BYTES", default_value_t = orderly_worker::command::DEFAULT_MAX_OUTPUT_BYTES)]
    pub max_output_bytes: usize,
    /// Exit after this many jobs (default: run until interrupted).
    #[arg(long, env = "ORDERLY_WORKER_MAX_JOBS")]
    pub max_jobs: Option<u64>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(a: WorkerArgs) -> anyhow::Result<()> {
    if a.concurrency == 0 || a.concurrency > 10_000 {
        bail!("--concurrency must be between 1 and 10000");
    }
    let name = a.name.clone().unwrap_or_else(default_name);
    let client = a.server.client();
    // Fail fast with a clear message if the server is not there.
    client
        .health()
        .await
        .map_err(|e| anyhow::anyhow!("server {}: {e}", client.base()))?;
    let handler = CommandHandler::new(a.command.clone(), Env::Inherit)?
        .env("ORDERLY_SERVER", client.base())
        .max_output_bytes(a.max_output_bytes);
    let mut config = RunnerConfig::new(a.queue.clone(), name.clone());
    config.slots = a.concurrency;
    config.lease_ms = a
        .lease
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    config.max_jobs = a.max_jobs;
    let runner = Runner::new(
        Arc::new(HttpSource::new(client)),
        Arc::new(Logged(handler)),
        config,
    );
    let stop = runner.stop_token();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping: finishing the jobs in hand (Ctrl-C again to abort)");
        stop.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    eprintln!(
        "worker {name} on queue {} (concurrency {}) running: {}",
        a.queue,
        a.concurrency,
        a.command.join(" ")
    );
    runner.run().await?;
    Ok(())
}

/// `host-pid-xxxx`: the host name as the system reports it (not `$HOSTNAME`,
/// which a shell may not export), the pid and a random suffix, so two
/// containers that share a host name and a pid still differ.
fn default_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The command handler with a line on stderr per job start and end.
struct Logged(CommandHandler);

#[async_trait::async_trait]
impl Handler for Logged {
    async fn handle(&self, job: Job, ctx: JobContext) -> Result<Value, Failure> {
        eprintln!(
            "job {} (seq {}, attempt {}) started",
            job.id, job.seq, job.attempt
        );
        let id = job.id.clone();
        let t0 = Instant::now();
        let r = self.0.handle(job, ctx.clone()).await;
        let ms = t0.elapsed().as_millis();
        match (&r, ctx.cancel_reason()) {
            (Ok(_), _) => eprintln!("job {id} succeeded in {ms} ms"),
            (Err(_), Some(CancelReason::Requested)) => eprintln!("job {id} cancelled"),
            (Err(_), Some(CancelReason::LeaseLost)) => {
                eprintln!("job {id}: lease lost; stopped, not reporting")
            }
            (Err(_), Some(CancelReason::TimedOut)) => {
                eprintln!("job {id} timed out after {ms} ms; stopped")
            }
            (Err(_), Some(CancelReason::Shutdown)) => {
                eprintln!("job {id}: stopped by the shutdown; it runs again in its place")
            }
            (Err(f), None) => eprintln!(
                "job {id} failed in {ms} ms: {}",
                f.error["message"].as_str().unwrap_or("error")
            ),
        }
        r
    }
}

/// Unit tests of the worker's defaults.
#[cfg(test)]
mod tests {
    /// Two default names in one process differ (the random suffix), and
    /// carry the pid.
    #[test]
    fn default_names_are_unique() {
        let names: std::collections::HashSet<String> =
            (0..20).map(|_| super::default_name()).collect();
        assert!(names.len() > 1, "{names:?}");
        let pid = std::process::id().to_string();
        assert!(names.iter().all(|n| n.contains(&pid)), "{names:?}");
    }
}
