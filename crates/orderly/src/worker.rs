//! `orderly worker QUEUE -- COMMAND…`: a pull worker that runs a command per job.
//!
//! Each of `--concurrency` slots claims one job (long poll), runs the command
//! with the payload as JSON on stdin, heartbeats while it runs, and reports:
//! exit 0 → complete with stdout as the result (parsed as JSON when it is
//! JSON), anything else → fail with the exit status and stderr's tail. The
//! report also claims the slot's next job in the same round trip. A cancel
//! seen on heartbeat kills the command; a lease found stale (the server gave
//! the job to someone else) kills it without reporting.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::bail;
use orderly_client::proto::{
    ClaimRequest, CompleteRequest, FailRequest, HeartbeatRequest, LeaseView,
};
use orderly_client::{Client, ClientError};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

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
    /// Worker name shown on jobs (default: host-pid).
    #[arg(long, env = "ORDERLY_WORKER_NAME")]
    pub name: Option<String>,
    /// Most bytes of stdout kept as the result.
    #[arg(long, env = "ORDERLY_WORKER_MAX_OUTPUT_BYTES", default_value_t = 64 * 1024)]
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
    let name = a.name.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let client = a.server.client();
    // Fail fast with a clear message if the server is not there.
    client
        .health()
        .await
        .map_err(|e| anyhow::anyhow!("server {}: {e}", client.base()))?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping: finishing the jobs in hand (Ctrl-C again to abort)");
            stop.cancel();
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        });
    }
    eprintln!(
        "worker {name} on queue {} (concurrency {}) running: {}",
        a.queue,
        a.concurrency,
        a.command.join(" ")
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..a.concurrency {
        let ctx = Slot {
            client: client.clone(),
            queue: a.queue.clone(),
            worker: if a.concurrency > 1 {
                format!("{name}/{slot}")
            } else {
                name.clone()
            },
            lease_ms: a.lease.map(|d| d.as_millis() as u64),
            command: a.command.clone(),
            max_output: a.max_output_bytes,
            stop: stop.clone(),
            done: done.clone(),
            max_jobs: a.max_jobs,
        };
        slots.spawn(ctx.run());
    }
    let mut first_error = None;
    while let Some(r) = slots.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.cancel();
                first_error.get_or_insert(e);
            }
            Err(e) => {
                stop.cancel();
                first_error.get_or_insert(anyhow::anyhow!("worker slot panicked: {e}"));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

struct Slot {
    client: Client,
    queue: String,
    worker: String,
    lease_ms: Option<u64>,
    command: Vec<String>,
    max_output: usize,
    stop: CancellationToken,
    done: std::sync::Arc<std::sync::atomic::AtomicU64>,
    max_jobs: Option<u64>,
}

/// Times a report is sent before the worker gives up (the lease then expires
/// and the job runs again).
const REPORT_TRIES: u32 = 6;

/// A report to send.
enum Report {
    Complete(CompleteRequest),
    Fail(FailRequest),
}

enum Ran {
    Exited {
        code: Option<i32>,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        elapsed: Duration,
    },
    Cancelled,
    LeaseLost(String),
}

impl Slot {
    fn claim_request(&self, wait_ms: u64) -> ClaimRequest {
        ClaimRequest {
            worker: self.worker.clone(),
            max: 1,
            wait_ms,
            lease_ms: self.lease_ms,
        }
    }

    fn quota_reached(&self) -> bool {
        self.max_jobs
            .is_some_and(|m| self.done.load(std::sync::atomic::Ordering::SeqCst) >= m)
    }

    async fn run(self) -> anyhow::Result<()> {
        let mut next: Option<LeaseView> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.stop.is_cancelled() || self.quota_reached() {
                return Ok(());
            }
            let lease = match next.take() {
                Some(l) => l,
                None => {
                    let request = self.claim_request(25_000);
                    let claim = tokio::select! {
                        r = self.client.claim(&self.queue, &request) => r,
                        _ = self.stop.cancelled() => return Ok(()),
                    };
                    match claim {
                        Ok(mut r) if !r.leases.is_empty() => {
                            backoff = Duration::from_millis(100);
                            r.leases.remove(0)
                        }
                        Ok(_) => continue,
                        Err(
                            e @ ClientError::Api {
                                status: 400..=499, ..
                            },
                        ) => bail!("claim refused: {e}"),
                        Err(e) => {
                            eprintln!("claim failed ({e}); retrying in {backoff:?}");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    }
                }
            };
            next = self.work(lease).await;
        }
    }

    /// Runs one job and reports it; returns the next lease if the report brought one.
    async fn work(&self, lease: LeaseView) -> Option<LeaseView> {
        let job = &lease.job;
        eprintln!(
            "job {} (seq {}, attempt {}) started",
            job.id, job.seq, job.attempt
        );
        let ran = self.execute(&lease).await;
        let finished = self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let want_next = !self.stop.is_cancelled() && self.max_jobs.is_none_or(|m| finished < m);
        let claim_next = want_next.then(|| self.claim_request(0));
        let report = match ran {
            Ran::LeaseLost(why) => {
                eprintln!("job {}: lease lost ({why}); not reporting", job.id);
                return None;
            }
            Ran::Cancelled => {
                eprintln!("job {} cancelled", job.id);
                let req = FailRequest {
                    token: lease.token.clone(),
                    error: json!({"message": "cancelled while running"}),
                    retry: Some(false),
                    claim_next,
                };
                Report::Fail(req)
            }
            Ran::Exited {
                code: Some(0),
                stdout,
                elapsed,
                ..
            } => {
                eprintln!("job {} succeeded in {} ms", job.id, elapsed.as_millis());
                let req = CompleteRequest {
                    token: lease.token.clone(),
                    result: Some(output_value(&stdout)),
                    claim_next,
                };
                Report::Complete(req)
            }
            Ran::Exited {
                code,
                stderr,
                elapsed,
                ..
            } => {
                let tail = tail_text(&stderr, 4096);
                let status = code
                    .map(|c| format!("exit status {c}"))
                    .unwrap_or_else(|| "killed by a signal".into());
                eprintln!(
                    "job {} failed in {} ms: {status}",
                    job.id,
                    elapsed.as_millis()
                );
                let error = json!({"message": format!("command failed: {status}"), "exit_code": code, "stderr": tail});
                let req = FailRequest {
                    token: lease.token.clone(),
                    error,
                    retry: None,
                    claim_next,
                };
                Report::Fail(req)
            }
        };
        // A report lost on the way (server restarting, network blip) is sent
        // again; one the server refuses (stale lease) is not.
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=REPORT_TRIES {
            let sent = match &report {
                Report::Complete(req) => self.client.complete(&job.id, req).await,
                Report::Fail(req) => self.client.fail(&job.id, req).await,
            };
            match sent {
                Ok(r) => {
                    return r
                        .leases
                        .and_then(|mut l| (!l.is_empty()).then(|| l.remove(0)))
                }
                // Not delivered, or the server could not take it now (a full disk,
                // a restart): send it again. A 4xx (stale lease…) is final.
                Err(e) if attempt < REPORT_TRIES && e.status().is_none_or(|s| s >= 500) => {
                    eprintln!(
                        "job {}: report not delivered ({e}); retrying in {wait:?}",
                        job.id
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    eprintln!("job {}: report refused: {e}", job.id);
                    return None;
                }
            }
        }
        None
    }

    async fn execute(&self, lease: &LeaseView) -> Ran {
        let job = &lease.job;
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a cancel stops what it started too.
            .process_group(0)
            .env("ORDERLY_JOB_ID", &job.id)
            .env("ORDERLY_QUEUE", &job.queue)
            .env("ORDERLY_SEQ", job.seq.to_string())
            .env("ORDERLY_ATTEMPT", job.attempt.to_string())
            .env("ORDERLY_SERVER", self.client.base());
        if let Some(k) = &job.key {
            cmd.env("ORDERLY_JOB_KEY", k);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Ran::Exited {
                    code: Some(127),
                    stdout: Vec::new(),
                    stderr: format!("cannot start {:?}: {e}", self.command[0]).into_bytes(),
                    elapsed: started.elapsed(),
                }
            }
        };
        let payload = serde_json::to_vec(&job.payload).unwrap_or_default();
        let mut stdin = child.stdin.take();
        // Fed beside the heartbeats: a command that does not read its stdin
        // must not stop the lease from being renewed.
        tokio::spawn(async move {
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&payload).await;
                let _ = s.shutdown().await;
            }
        });
        let group = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let max = self.max_output;
        let read_out = tokio::spawn(async move { read_bounded(stdout, max, false).await });
        let read_err = tokio::spawn(async move { read_bounded(stderr, 64 * 1024, true).await });
        let lease_len = chrono_ms(&lease.expires_at).unwrap_or(30_000).max(300);
        let beat_every = Duration::from_millis(lease_len / 3);
        let mut beat =
            tokio::time::interval_at(tokio::time::Instant::now() + beat_every, beat_every);
        let status = loop {
            tokio::select! {
                s = child.wait() => break s,
                _ = beat.tick() => {
                    match self.client.heartbeat(&job.id, &HeartbeatRequest { token: lease.token.clone(), progress: None }).await {
                        Ok(hb) if hb.cancel_requested => {
                            kill_group(group).await;
                            let _ = child.kill().await;
                            return Ran::Cancelled;
                        }
                        Ok(_) => {}
                        Err(e @ ClientError::Api { status: 404 | 409, .. }) => {
                            kill_group(group).await;
                            let _ = child.kill().await;
                            return Ran::LeaseLost(e.to_string());
                        }
                        Err(e) => eprintln!("job {}: heartbeat failed ({e}); will retry", job.id),
                    }
                }
            }
        };
        // A process the command left behind may hold its pipes open: read what
        // is there, but do not wait for it for long.
        let drain = Duration::from_secs(2);
        let stdout = tokio::time::timeout(drain, read_out)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let stderr = tokio::time::timeout(drain, read_err)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Ran::Exited {
            code: status.ok().and_then(|s| s.code()),
            stdout,
            stderr,
            elapsed: started.elapsed(),
        }
    }
}

/// Sends SIGKILL to the process group `pgid` (the command and what it started).
async fn kill_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid {
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

/// Milliseconds from now until an RFC 3339 time (the lease length at claim time).
fn chrono_ms(expires_at: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(expires_at).ok()?;
    t.duration_since(std::time::SystemTime::now())
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// Reads a pipe to the end, keeping at most `max` bytes (the head, or the tail with `tail`).
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(
    pipe: Option<R>,
    max: usize,
    tail: bool,
) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > max {
                    if tail {
                        let cut = kept.len() - max;
                        kept.drain(..cut);
                    } else {
                        kept.truncate(max);
                    }
                }
            }
        }
    }
    kept
}

fn output_value(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(trimmed).unwrap_or_else(|_| Value::String(trimmed.to_string()))
}

fn tail_text(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}
