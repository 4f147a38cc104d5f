//! The in-process drain: W1 drain by the embedded library. N jobs `{"i": i}`
//! are enqueued in batches of [`BATCH`] into a fresh queue of an
//! [`orderly::Orderly`] opened on its own fresh data directory (with the
//! durability of the bench's server), then drained by its in-process
//! handlers — claims and reports go to the store directly, no HTTP — with a
//! no-op `async` handler returning `null`, at the queue's concurrency.
//!
//! The figure is measured as the HTTP drain's: N / (first handler start →
//! the Nth handler end). The handler notes its start and counts its end with
//! an atomic; the bench learns of the Nth end from the handler itself, so
//! nothing polls the store while the clock runs. Afterwards the store is
//! read back: every job must have succeeded, once, and at c = 1 in `seq`
//! order (handler and store start order alike), or the drain fails rather
//! than report a figure of something broken.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orderly::{Fail, JobCx, JobState, NewJob, Orderly, QueuePatch};
use serde_json::Value;
use tokio::sync::Notify;

use crate::enqueue::BATCH;
use crate::stats::fifo;
use crate::util::{progress, rate};
use crate::workload::Drain;
use crate::Durability;

/// A drain that handles no job for this long fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the audit waits for a handled job's report to be committed.
const REPORT_WAIT: Duration = Duration::from_secs(10);
/// How long shutdown lets handlers finish (all are idle by then).
const GRACE: Duration = Duration::from_secs(5);
/// Page size when reading the queue back.
const LIST_PAGE: u32 = 1_000;
/// The drained queue (alone in its fresh store).
const QUEUE: &str = "bench-w1-embedded";

/// The W1 payload, typed as a handler of the library would type it.
#[derive(serde::Deserialize)]
struct W1 {
    /// The job's index in the fill.
    i: u64,
}

/// What the handler records: its first start, its start order, its ends.
struct Probe {
    /// Jobs to drain.
    n: u64,
    /// When the first handler run started.
    first: OnceLock<Instant>,
    /// `seq`s in the order the handler started them.
    order: Mutex<Vec<i64>>,
    /// Handler runs finished.
    done: AtomicU64,
    /// When the Nth run finished.
    nth: OnceLock<Instant>,
    /// Signalled once the Nth run finished.
    finished: Notify,
}

impl Probe {
    /// One handler run of the job `seq` (nothing else happens in it).
    fn ran(&self, seq: i64) {
        self.first.get_or_init(Instant::now);
        self.order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(seq);
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            let _ = self.nth.set(Instant::now());
            self.finished.notify_one();
        }
    }
}

/// The in-process drain of `n` jobs at concurrency `c`, on a fresh data
/// directory with `durability`.
pub(crate) async fn embedded_drain(
    n: u64,
    c: u32,
    durability: Durability,
) -> anyhow::Result<Drain> {
    if n == 0 || c == 0 {
        bail!("the in-process drain needs at least one job and one slot (got {n} jobs, c = {c})");
    }
    let dir = tempfile::Builder::new()
        .prefix("orderly-bench-embedded-")
        .tempdir()
        .context("cannot create a scratch data directory for the in-process drain")?;
    let mut options = orderly::Options::new(dir.path().join("data"));
    options.durability = match durability {
        Durability::Fsync => orderly::Durability::Fsync,
        Durability::Accepted => orderly::Durability::Accepted,
        Durability::None => orderly::Durability::None,
    };
    options.grace = GRACE;
    let orderly = Orderly::open_with(options)
        .await
        .with_context(|| format!("in-process drain: opening {}", dir.path().display()))?;
    let outcome = run(&orderly, n, c).await;
    let stopped_some = orderly.shutdown().await;
    let d = outcome?;
    if stopped_some {
        bail!("in-process drain c = {c}: handlers were still running at shutdown after all {n} jobs had finished");
    }
    verify(&d, n)?;
    Ok(d)
}

/// Configures, fills, drains and audits the queue of `orderly`.
async fn run(orderly: &Orderly, n: u64, c: u32) -> anyhow::Result<Drain> {
    let patch = QueuePatch {
        concurrency: Some(c),
        ..Default::default()
    };
    orderly
        .configure(QUEUE, patch)
        .await
        .context("in-process drain: configuring the queue")?;

    let bar = progress(n, "fill");
    let fill_started = Instant::now();
    let mut from = 0;
    while from < n {
        let to = (from + BATCH).min(n);
        let jobs = (from..to)
            .map(|i| NewJob::new(&serde_json::json!({ "i": i })))
            .collect::<Result<Vec<_>, _>>()?;
        let out = orderly
            .enqueue_many(QUEUE, jobs)
            .await
            .with_context(|| format!("in-process drain: enqueuing batch {from}..{to}"))?;
        if out.len() as u64 != to - from {
            bail!(
                "in-process drain: batch {from}..{to} gave {} jobs for {} sent",
                out.len(),
                to - from
            );
        }
        bar.inc(to - from);
        from = to;
    }
    let fill_took = fill_started.elapsed();
    bar.finish_and_clear();

    let probe = Arc::new(Probe {
        n,
        first: OnceLock::new(),
        order: Mutex::new(Vec::with_capacity(n as usize)),
        done: AtomicU64::new(0),
        nth: OnceLock::new(),
        finished: Notify::new(),
    });
    let p = probe.clone();
    orderly.handle(QUEUE, c, move |job: JobCx<W1>| {
        let p = p.clone();
        async move {
            std::hint::black_box(job.payload.i);
            p.ran(job.seq);
            Ok::<_, Fail>(Value::Null)
        }
    })?;
    watch(&probe, n, c).await?;
    let (Some(first), Some(nth)) = (probe.first.get(), probe.nth.get()) else {
        bail!("in-process drain c = {c}: the drain ended without a first start or an Nth end");
    };
    let span = nth.saturating_duration_since(*first);
    let client_order = std::mem::take(&mut *probe.order.lock().unwrap_or_else(|p| p.into_inner()));

    let audit = audit(orderly, n).await?;
    Ok(Drain {
        c,
        fill_per_s: rate(n, fill_took),
        per_s: rate(n, span),
        span,
        handled: client_order.len() as u64,
        client: fifo(&client_order, n),
        server: fifo(&audit.start_order, n),
        never_started: audit.never_started,
        not_succeeded: audit.not_succeeded,
    })
}

/// Waits for the Nth handler end, failing after [`STALL_TIMEOUT`] without
/// progress. Only reads the probe (a tick every 200 ms): adds no load.
async fn watch(probe: &Probe, n: u64, c: u32) -> anyhow::Result<()> {
    let bar = progress(n, "drain");
    let mut seen = 0;
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let outcome = loop {
        tokio::select! {
            _ = probe.finished.notified() => break Ok(()),
            _ = tick.tick() => {
                let done = probe.done.load(Ordering::Acquire);
                bar.set_position(done);
                if probe.nth.get().is_some() {
                    break Ok(());
                }
                if done != seen {
                    seen = done;
                    last_progress = Instant::now();
                } else if last_progress.elapsed() >= STALL_TIMEOUT {
                    break Err(anyhow::anyhow!(
                        "in-process drain c = {c} stalled: {done} of {n} jobs handled, none in the last {} s",
                        STALL_TIMEOUT.as_secs()
                    ));
                }
            }
        }
    };
    bar.finish_and_clear();
    outcome
}

/// The store's record of the drained queue.
struct Audit {
    /// `seq`s in the order the store started them (`start_no`).
    start_order: Vec<i64>,
    /// Jobs without a start.
    never_started: u64,
    /// Jobs not `succeeded`.
    not_succeeded: u64,
}

/// Reads every job of the queue back in `seq` pages; a job whose handler
/// ended but whose report is not committed yet is waited for.
async fn audit(orderly: &Orderly, n: u64) -> anyhow::Result<Audit> {
    let mut started: Vec<(i64, i64)> = Vec::with_capacity(n as usize);
    let mut never_started = 0;
    let mut not_succeeded = 0;
    let mut after = None;
    let max_pages = n / u64::from(LIST_PAGE) + 10;
    for _ in 0..max_pages {
        let page = orderly
            .jobs(QUEUE, after, LIST_PAGE)
            .await
            .with_context(|| format!("in-process drain: listing the queue after {after:?}"))?;
        let Some(last) = page.last() else {
            break;
        };
        let next = Some(last.seq);
        for mut j in page {
            if !j.state.is_finished() {
                j = orderly
                    .wait(&j.id, REPORT_WAIT)
                    .await
                    .with_context(|| format!("in-process drain: waiting for job {}", j.id))?;
            }
            match j.start_no {
                Some(s) => started.push((s, j.seq)),
                None => never_started += 1,
            }
            if j.state != JobState::Succeeded {
                not_succeeded += 1;
            }
        }
        if next == after {
            break;
        }
        after = next;
    }
    started.sort_unstable();
    Ok(Audit {
        start_order: started.into_iter().map(|(_, seq)| seq).collect(),
        never_started,
        not_succeeded,
    })
}

/// Fails unless every one of the `n` jobs was handled once and succeeded,
/// and, at c = 1, started in `seq` order by the handler and the store.
fn verify(d: &Drain, n: u64) -> anyhow::Result<()> {
    let mut broken = Vec::new();
    if d.handled < n || d.client.missing > 0 {
        broken.push(format!(
            "{} of {n} jobs handled ({} never)",
            d.handled, d.client.missing
        ));
    }
    if d.client.duplicates > 0 {
        broken.push(format!("{} runs of a job already run", d.client.duplicates));
    }
    if d.server.missing > 0 || d.never_started > 0 {
        broken.push(format!(
            "{} jobs never started according to the store ({} not listed)",
            d.never_started, d.server.missing
        ));
    }
    if d.not_succeeded > 0 {
        broken.push(format!("{} jobs not succeeded", d.not_succeeded));
    }
    if d.c == 1 && (d.client.inversions > 0 || d.server.inversions > 0) {
        broken.push(format!(
            "started out of seq order at c = 1 ({} inversions seen by the handler, {} in the store)",
            d.client.inversions, d.server.inversions
        ));
    }
    if !broken.is_empty() {
        bail!(
            "in-process drain c = {}: {}; its figure would not measure a correct drain",
            d.c,
            broken.join("; ")
        );
    }
    Ok(())
}

/// Tests of the in-process drain on a real store.
#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny drain at c = 1 reports all its jobs done, once, in seq order
    /// (handler and store), and a drain with c = 4 reports them all done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_drain_reports_every_job_in_order() {
        let d = embedded_drain(50, 1, Durability::Fsync).await.unwrap();
        assert_eq!(d.c, 1);
        assert_eq!(d.handled, 50);
        assert_eq!(d.client.missing, 0);
        assert_eq!(d.client.duplicates, 0);
        assert_eq!(d.client.inversions, 0);
        assert_eq!(d.server.missing, 0);
        assert_eq!(d.server.inversions, 0);
        assert_eq!((d.never_started, d.not_succeeded), (0, 0));
        assert!(d.per_s > 0.0);

        let d = embedded_drain(50, 4, Durability::None).await.unwrap();
        assert_eq!(d.handled, 50);
        assert_eq!((d.client.missing, d.server.missing), (0, 0));
        assert_eq!((d.never_started, d.not_succeeded), (0, 0));
    }

    /// The check refuses a drain that lost a job, ran one twice or broke the
    /// order at c = 1, and accepts reordering at c > 1.
    #[test]
    fn verify_refuses_a_broken_drain() {
        let drain = |c: u32, client: &[i64], server: &[i64], not_succeeded: u64| Drain {
            c,
            fill_per_s: 1.0,
            per_s: 1.0,
            span: Duration::from_secs(1),
            handled: client.len() as u64,
            client: fifo(client, 3),
            server: fifo(server, 3),
            never_started: 0,
            not_succeeded,
        };
        assert!(verify(&drain(1, &[1, 2, 3], &[1, 2, 3], 0), 3).is_ok());
        assert!(verify(&drain(2, &[2, 1, 3], &[2, 1, 3], 0), 3).is_ok());
        let err = |d: Drain| verify(&d, 3).unwrap_err().to_string();
        assert!(err(drain(1, &[2, 1, 3], &[1, 2, 3], 0)).contains("out of seq order"));
        assert!(err(drain(1, &[1, 2, 3], &[1, 3, 2], 0)).contains("out of seq order"));
        assert!(err(drain(1, &[1, 2], &[1, 2], 1)).contains("2 of 3 jobs handled"));
        assert!(err(drain(2, &[1, 2, 2, 3], &[1, 2, 3], 0)).contains("already run"));
        assert!(err(drain(1, &[1, 2, 3], &[1, 2, 3], 1)).contains("not succeeded"));
        assert!(err(drain(1, &[1, 2, 3], &[1, 2], 0)).contains("never started"));
    }
}
