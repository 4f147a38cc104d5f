//! W4 backlog: what enqueue, claim + complete, `GET` of the last job (with
//! its position), the first page of the queue's list and a `/metrics`
//! scrape cost with a backlog of waiting jobs, against the same on an empty
//! queue; and the server's resident memory along the way.
//!
//! Three fresh queues of the same server: one measured empty before the
//! fill, one filled with `--backlog` jobs by the batch API, and one
//! measured empty after the fill, on the same grown store (the fair
//! baseline: the ratios are taken against it, so the store's size and the
//! disk's writeback after the fill weigh on both sides). On each, in this order, [`SAMPLES`]
//! times each: enqueue one job; `GET` the last job enqueued (waiting, so its
//! position is counted: the whole line ahead of it); the first page of the
//! list (50 jobs, positions included); scrape `/metrics` (the queue's
//! `orderly_jobs` line checked); claim one job and complete it. The claims
//! run last so the job read is still waiting. When the bench started the
//! server, its `VmRSS` / `VmHWM` are read from `/proc` before the fill,
//! after it and after the reads at the backlog.

use std::time::Instant;

use anyhow::bail;
use orderly_client::proto::{ClaimRequest, CompleteRequest, EnqueueRequest};
use orderly_client::Client;
use serde_json::json;

use crate::enqueue::fill_bulk;
use crate::server::Memory;
use crate::stats::percentile;
use crate::util::{call, configure, progress, rate};
use crate::Plan;

/// Calls of each operation per queue (as peers.md's W4).
pub(crate) const SAMPLES: usize = 200;
/// Page size of the list read (as peers.md's W4).
pub(crate) const PAGE: u32 = 50;

/// p50 and p99 of one operation, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Cost {
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
}

/// The five operations on one queue.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Side {
    /// Enqueue one job.
    pub(crate) enqueue: Cost,
    /// Claim one job and complete it (two calls).
    pub(crate) claim: Cost,
    /// `GET /v1/jobs/{id}` of the last job.
    pub(crate) get: Cost,
    /// The first page of the list.
    pub(crate) list: Cost,
    /// `GET /metrics`.
    pub(crate) metrics: Cost,
    /// The position the last job's `GET` showed.
    pub(crate) last_position: u64,
}

/// W4's figures.
pub(crate) struct Backlog {
    /// Waiting jobs filled into the backlog queue.
    pub(crate) jobs: u64,
    /// Jobs/s of the fill.
    pub(crate) fill_per_s: f64,
    /// On the empty queue, before the fill.
    pub(crate) empty: Side,
    /// On another empty queue, after the fill and the backlog's reads.
    pub(crate) empty_after: Side,
    /// On the queue with the backlog.
    pub(crate) full: Side,
    /// The server's memory after the empty queue's reads, before the fill
    /// (`None` for a server the bench did not start, or without `/proc`).
    pub(crate) memory_before: Option<Memory>,
    /// The same right after the fill.
    pub(crate) memory_filled: Option<Memory>,
    /// The same after the reads at the backlog.
    pub(crate) memory_after: Option<Memory>,
}

/// Runs W4 with a backlog of `jobs`; `memory` reads the server's memory.
pub(crate) async fn backlog(
    plan: &Plan,
    jobs: u64,
    memory: impl Fn() -> Option<Memory>,
) -> anyhow::Result<Backlog> {
    let client = &plan.client;
    let empty_q = plan.queue("w4-empty");
    let full_q = plan.queue("w4-backlog");
    let after_q = plan.queue("w4-empty-after");
    // Concurrency above the claims made, so no claim waits for a slot.
    for q in [&empty_q, &full_q, &after_q] {
        configure(client, q, 1_000).await?;
    }
    let empty = measure(plan, &empty_q, 0).await?;
    let memory_before = memory();
    let bar = progress(jobs, "W4 fill");
    let started = Instant::now();
    let filled = fill_bulk(client, &full_q, jobs, &bar).await;
    let took = started.elapsed();
    bar.finish_and_clear();
    filled?;
    let memory_filled = memory();
    let full = measure(plan, &full_q, jobs).await?;
    let memory_after = memory();
    let empty_after = measure(plan, &after_q, 0).await?;
    Ok(Backlog {
        jobs,
        fill_per_s: rate(jobs, took),
        empty,
        empty_after,
        full,
        memory_before,
        memory_filled,
        memory_after,
    })
}

/// p50 and p99 of `ms`.
fn cost(mut ms: Vec<f64>) -> Cost {
    ms.sort_by(f64::total_cmp);
    Cost {
        p50: percentile(&ms, 50.0),
        p99: percentile(&ms, 99.0),
    }
}

/// Milliseconds since `t0`.
fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// The five operations on `queue`, which holds `waiting` waiting jobs.
async fn measure(plan: &Plan, queue: &str, waiting: u64) -> anyhow::Result<Side> {
    let client = &plan.client;
    let mut side = Side::default();

    let mut times = Vec::with_capacity(SAMPLES);
    let mut last = String::new();
    for i in 0..SAMPLES {
        let id = format!("w4-{}-{queue}-{i}", plan.tag);
        let req = EnqueueRequest {
            id: Some(id.clone()),
            payload: json!({ "i": i }),
            ..Default::default()
        };
        let t0 = Instant::now();
        call(
            || format!("enqueue {id} into {queue}"),
            client.enqueue(queue, &req),
        )
        .await?;
        times.push(ms_since(t0));
        last = id;
    }
    side.enqueue = cost(times);

    let mut times = Vec::with_capacity(SAMPLES);
    let expected = waiting + SAMPLES as u64 - 1;
    for _ in 0..SAMPLES {
        let t0 = Instant::now();
        let job = call(|| format!("GET job {last}"), client.job(&last)).await?;
        times.push(ms_since(t0));
        if job.position != Some(expected) {
            bail!(
                "W4: job {last} of {queue} shows position {:?}, expected {expected}",
                job.position
            );
        }
    }
    side.get = cost(times);
    side.last_position = expected;

    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t0 = Instant::now();
        let page = call(
            || format!("list {queue}"),
            client.list(queue, None, None, PAGE),
        )
        .await?;
        times.push(ms_since(t0));
        let positions: Vec<Option<u64>> = page.jobs.iter().map(|j| j.position).collect();
        let want: Vec<Option<u64>> = (0..PAGE as u64).map(Some).collect();
        if positions != want {
            bail!(
                "W4: the first page of {queue} shows positions {positions:?}, expected 0..{PAGE}"
            );
        }
    }
    side.list = cost(times);

    // The scrape must show this queue's queued jobs as they are now.
    let line = format!(
        "orderly_jobs{{queue=\"{queue}\",state=\"queued\"}} {}",
        waiting + SAMPLES as u64
    );
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t0 = Instant::now();
        let text = call(|| "GET /metrics".to_string(), client.metrics()).await?;
        times.push(ms_since(t0));
        if !text.lines().any(|l| l == line) {
            bail!("W4: /metrics does not show {line:?}");
        }
    }
    side.metrics = cost(times);

    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t0 = Instant::now();
        claim_and_complete(client, queue, &plan.tag).await?;
        times.push(ms_since(t0));
    }
    side.claim = cost(times);
    Ok(side)
}

/// Claims one job of `queue` and completes it.
async fn claim_and_complete(client: &Client, queue: &str, tag: &str) -> anyhow::Result<()> {
    let req = ClaimRequest {
        worker: format!("bench-{tag}-w4"),
        max: 1,
        wait_ms: 0,
        lease_ms: None,
    };
    let got = call(|| format!("claim from {queue}"), client.claim(queue, &req)).await?;
    let Some(lease) = got.leases.into_iter().next() else {
        bail!("W4: a claim from {queue} got no job");
    };
    let done = CompleteRequest {
        token: lease.token,
        result: None,
        claim_next: None,
    };
    call(
        || format!("complete {}", lease.job.id),
        client.complete(&lease.job.id, &done),
    )
    .await?;
    Ok(())
}
