//! W3 latency: one idle worker long-polling a concurrency-1 queue; each
//! sample enqueues one job and times enqueue call → handler start.
//!
//! The worker here is a bare claim loop on purpose: it signals the start the
//! moment a lease arrives, which is what W3 measures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use orderly_client::proto::{ClaimRequest, CompleteRequest, EnqueueRequest};
use orderly_client::Client;
use serde_json::json;
use tokio::sync::mpsc;

use crate::stats::percentile;
use crate::util::{call, configure, progress};
use crate::workload::Latency;
use crate::Plan;

/// Longest a W3 sample waits for its job to start.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
/// W3 gives up after this many samples whose job did not start in time.
const MAX_LOST_SAMPLES: u64 = 5;
/// Long poll of the W3 worker's claims.
const LATENCY_CLAIM_WAIT_MS: u64 = 5_000;

/// W3: one idle worker on a concurrency-1 queue; `samples` times: enqueue one
/// job, wait for its handler to start, sleep 2–10 ms.
pub(crate) async fn latency(plan: &Plan, queue: &str) -> anyhow::Result<Latency> {
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
