//! The figures read at scrape time: counts the store keeps, one index
//! lookup per queue, and the writer's figures. Nothing here touches jobs
//! one by one.

use std::fmt::Write as _;

use orderly_core::{Distribution, JobState, Millis, StateCounts, Store, StoreError, WriterStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Metrics;

/// One queue as a scrape sees it.
#[derive(Debug)]
struct QueueFigures {
    name: String,
    /// Jobs per state.
    counts: Vec<(JobState, u64)>,
    concurrency: u32,
    paused: bool,
    /// Seconds since the front of its line was enqueued (0 when none waits).
    oldest_queued_age: f64,
}

/// Everything read for one scrape.
#[derive(Debug)]
struct Snapshot {
    queues: Vec<QueueFigures>,
    writer: Option<WriterStats>,
    /// Whether this node runs maintenance for its database.
    leader: bool,
}

/// The whole exposition: the counted figures, then the ones read now.
pub async fn render(
    metrics: &Metrics,
    store: &dyn Store,
    now: Millis,
) -> Result<String, StoreError> {
    let mut queues = Vec::new();
    for q in store.queue_list().await? {
        let oldest = store.queue_oldest_queued(&q.name).await?;
        queues.push(QueueFigures {
            counts: JobState::ALL
                .iter()
                .map(|s| (*s, count(&q.counts, *s)))
                .collect(),
            concurrency: q.config.concurrency,
            paused: q.config.paused,
            oldest_queued_age: oldest.map_or(0.0, |t| super::seconds(now - t)),
            name: q.name,
        });
    }
    let snapshot = Snapshot {
        queues,
        writer: store.writer_stats(),
        leader: store.maintenance_leader().await,
    };
    let mut now_registry = Registry::with_prefix("orderly");
    now_registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    let encoded = prometheus_client::encoding::text::encode_registry(&mut out, &metrics.registry)
        .and_then(|()| prometheus_client::encoding::text::encode_registry(&mut out, &now_registry))
        .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
    // Writing to a String cannot fail; say so if the encoder ever does.
    if let Err(e) = encoded {
        let _ = writeln!(out, "# encoding failed: {e}");
    }
    Ok(out)
}

/// A per-queue gauge: name, help, and how to read it from a queue's figures.
type QueueGauge = (&'static str, &'static str, fn(&QueueFigures) -> f64);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges: [QueueGauge; 4] = [
            ("queue_running", "Jobs running now, per queue.", |q| {
                q.counts
                    .iter()
                    .find(|(s, _)| *s == JobState::Running)
                    .map_or(0.0, |(_, n)| *n as f64)
            }),
            ("queue_concurrency", "Most jobs the queue runs at once (its configuration).", |q| {
                f64::from(q.concurrency)
            }),
            ("queue_paused", "1 when the queue is paused.", |q| {
                if q.paused {
                    1.0
                } else {
                    0.0
                }
            }),
            (
                "queue_oldest_queued_age_seconds",
                "Seconds since the job at the front of the queue's line was enqueued; 0 when none is queued.",
                |q| q.oldest_queued_age,
            ),
        ];
        {
            let mut family = encoder.encode_descriptor(
                "jobs",
                "Jobs per queue and state now (finished ones until retention removes them).",
                None,
                MetricType::Gauge,
            )?;
            for q in &self.queues {
                for (state, n) in &q.counts {
                    let labels = [("queue", q.name.as_str()), ("state", state.as_str())];
                    family.encode_family(&labels)?.encode_gauge(&(*n as i64))?;
                }
            }
        }
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for q in &self.queues {
                let labels = [("queue", q.name.as_str())];
                family.encode_family(&labels)?.encode_gauge(&value(q))?;
            }
        }
        encoder
            .encode_descriptor(
                "maintenance_leader",
                "1 while this node runs maintenance (promotion, lease reaping, retention) for its database, 0 while another node does.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::from(self.leader))?;
        let Some(w) = &self.writer else {
            return Ok(());
        };
        encoder
            .encode_descriptor(
                "writer_commits",
                "Transactions the store's writer committed (each one group of requests).",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&w.commits, None)?;
        histogram(
            &mut encoder,
            "writer_group_size",
            "Requests per committed group.",
            &w.group_sizes,
        )?;
        histogram(
            &mut encoder,
            "writer_fsync_seconds",
            "Time of each fsynced commit, its fsync included.",
            &w.fsync_seconds,
        )?;
        encoder
            .encode_descriptor(
                "writer_parked_claim_starts",
                "Long-polling claims that waited in the writer and took jobs inside the commit that gave them work.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&w.parked_claim_starts, None)
    }
}

fn count(c: &StateCounts, state: JobState) -> u64 {
    match state {
        JobState::Scheduled => c.scheduled,
        JobState::Queued => c.queued,
        JobState::Running => c.running,
        JobState::Succeeded => c.succeeded,
        JobState::Failed => c.failed,
        JobState::Cancelled => c.cancelled,
    }
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    d: &Distribution,
) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = d
        .bounds
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(d.counts.iter().copied())
        .collect();
    encoder
        .encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(d.sum, d.count, &buckets, None)
}
