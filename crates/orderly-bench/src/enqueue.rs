//! W1 enqueue: single awaited enqueues (one client, many clients) and the
//! batch API.

use std::time::Instant;

use anyhow::bail;
use indicatif::ProgressBar;
use orderly_client::proto::BatchRequest;
use orderly_client::Client;
use tokio::task::JoinSet;

use crate::util::{call, job, join_all, progress, rate};
use crate::workload::Enqueue;
use crate::Plan;

/// Jobs per batch request, as in the peers' bulk workload.
pub(crate) const BATCH: u64 = 1_000;

/// W1 single: N awaited enqueues split over `clients` concurrent tasks.
pub(crate) async fn enqueue_single(
    plan: &Plan,
    queue: &str,
    clients: u32,
) -> anyhow::Result<Enqueue> {
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
pub(crate) async fn fill_bulk(
    client: &Client,
    queue: &str,
    n: u64,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
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
pub(crate) async fn enqueue_bulk(plan: &Plan, queue: &str) -> anyhow::Result<Enqueue> {
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
