//! W1 drain + W2 FIFO: a queue filled with the batch API is drained by the
//! worker runtime — `orderly_worker::Runner` with `c` slots over the HTTP
//! source and a no-op handler that records each run — then read back to
//! audit the start order the server recorded.
//!
//! Each job costs one round trip: the runner reports with `claim_next`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::ProgressBar;
use orderly_client::Client;
use orderly_worker::{Failure, Handler, HttpSource, Job, JobContext, Runner, RunnerConfig};
use serde_json::Value;

use crate::enqueue::fill_bulk;
use crate::stats::fifo;
use crate::util::{call, configure, progress, rate};
use crate::workload::Drain;
use crate::Plan;

/// A drain that handles no job for this long fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Long poll of the drain's fresh claims.
const DRAIN_CLAIM_WAIT: Duration = Duration::from_millis(1_000);
/// Page size when reading a queue back for the server-side audit.
const LIST_PAGE: u32 = 1_000;

/// One handler run.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// The job's `seq`.
    seq: i64,
    /// When the handler was called.
    start: Instant,
    /// When it returned.
    end: Instant,
}

/// The drain's handler: does nothing with the job but record the run.
struct Noop {
    runs: Mutex<Vec<Run>>,
    bar: ProgressBar,
}

impl Noop {
    fn handled(&self) -> usize {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[async_trait::async_trait]
impl Handler for Noop {
    async fn handle(&self, job: Job, _ctx: JobContext) -> Result<Value, Failure> {
        let start = Instant::now();
        std::hint::black_box(&job);
        let end = Instant::now();
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Run {
                seq: job.seq,
                start,
                end,
            });
        self.bar.inc(1);
        Ok(Value::Null)
    }
}

/// W1 drain + W2 at concurrency `c`.
pub(crate) async fn drain(plan: &Plan, queue: &str, c: u32) -> anyhow::Result<Drain> {
    let n = plan.n;
    let client = &plan.client;
    configure(client, queue, c).await?;
    let bar = progress(n, "fill");
    let fill_started = Instant::now();
    let filled = fill_bulk(client, queue, n, &bar).await;
    let fill_took = fill_started.elapsed();
    bar.finish_and_clear();
    filled?;

    let noop = Arc::new(Noop {
        runs: Mutex::new(Vec::with_capacity(n as usize)),
        bar: progress(n, "drain"),
    });
    let mut config = RunnerConfig::new(queue, format!("bench-{}-w", plan.tag));
    config.slots = c;
    config.max_jobs = Some(n);
    config.claim_wait = DRAIN_CLAIM_WAIT;
    let runner = Runner::new(
        Arc::new(HttpSource::new(client.clone())),
        noop.clone(),
        config,
    );
    let stop = runner.stop_token();
    let mut task = tokio::spawn(runner.run());
    let watched = watch(&mut task, &noop, queue, n).await;
    if watched.is_err() {
        stop.cancel();
        task.abort();
    }
    noop.bar.finish_and_clear();
    watched?;
    let runs = std::mem::take(&mut *noop.runs.lock().unwrap_or_else(|p| p.into_inner()));

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
        handled: runs.len() as u64,
        client: fifo(&client_order, n),
        server: fifo(&audit.start_order, n),
        never_started: audit.never_started,
        not_succeeded: audit.not_succeeded,
    })
}

/// Waits for the runner: done, failed, or no progress for [`STALL_TIMEOUT`].
async fn watch(
    task: &mut tokio::task::JoinHandle<
        Result<orderly_worker::Summary, orderly_worker::RunnerError>,
    >,
    noop: &Noop,
    queue: &str,
    n: u64,
) -> anyhow::Result<()> {
    let mut seen = 0;
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            joined = &mut *task => return match joined {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("drain of {queue}"))),
                Err(e) => bail!("the drain's runner failed: {e}"),
            },
            _ = tick.tick() => {
                let done = noop.handled();
                if done != seen {
                    seen = done;
                    last_progress = Instant::now();
                } else if last_progress.elapsed() >= STALL_TIMEOUT {
                    bail!(
                        "drain of {queue} stalled: {done} of {n} jobs handled, none in the last {} s",
                        STALL_TIMEOUT.as_secs()
                    );
                }
            }
        }
    }
}

/// The server's record of a drained queue.
pub(crate) struct Audit {
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
