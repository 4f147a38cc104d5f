//! Prometheus metrics (`GET /metrics`), with `prometheus-client`.
//!
//! Two kinds of figure, kept apart:
//!
//! - **counted as it happens**: the per-queue job counters and the queue
//!   latency and run time histograms come from the [`Changes`] of every
//!   store write, through [`Metrics::record`], which
//!   `Service::wake_for` calls once for every write whatever its path
//!   (the one mapping is [`counters_for`]); HTTP requests are counted by
//!   the [`track_requests`] layer, by matched route template; `GET /v1/events`
//!   subscribers are a gauge held by each open stream ([`SubscriberGuard`]),
//!   and those dropped for falling behind are counted;
//! - **read at scrape time** ([`scrape`]): jobs per queue and state, running
//!   and concurrency, the age of each queue's front job, and the store's
//!   writer figures. Each is a count the store keeps or one index lookup
//!   per queue: nothing per job, so a scrape costs the same at a million
//!   waiting jobs.
//!
//! The registry is per [`crate::Service`], not process-global, so several
//! servers in one process (tests, an application mounting two) keep their
//! own figures.
//!
//! Counting is on the path of every request and every job's move, so the
//! handle of each labelled metric is looked up in its family once, when
//! first used, and kept ([`Handles`]): a family lookup allocates the label
//! strings and hashes them under a lock, which had cost a few thousand
//! instructions per request and per job change (docs/performance.md,
//! stop 22). A handle is the family's own metric (they share it), so the
//! exposition is the same.

mod http;
mod mapping;
mod scrape;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use orderly_core::{Changes, JobState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use http::track_requests;
pub use mapping::{counters_for, JobCounter};
pub use scrape::render;

/// The content type of the exposition (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `queue` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

/// The labels of the HTTP metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The matched route template (`/v1/jobs/{id}`), never the raw path.
    route: String,
    status: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds: 1 ms to about 9 minutes, doubling.
fn job_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// Seconds: 0.5 ms to about 16 s, doubling.
fn http_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// The figures counted as they happen (see the module docs).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    jobs: Vec<Family<QueueLabel, Counter>>,
    queue_latency: Histograms<QueueLabel>,
    run_time: Histograms<QueueLabel>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Histograms<HttpLabels>,
    events_subscribers: Gauge,
    events_lagged: Counter,
    handles: Mutex<Handles>,
}

/// The handles of the labelled metrics used so far (see the module docs).
#[derive(Debug, Default)]
struct Handles {
    /// Per queue.
    queues: HashMap<String, QueueHandles>,
    /// Per route template: (method, status, requests, seconds).
    http: HashMap<String, Vec<(&'static str, u16, Counter, Histogram)>>,
}

/// One queue's handles, each taken from its family when first used (so a
/// queue shows only the figures that happened to it, as before).
#[derive(Debug, Default)]
struct QueueHandles {
    jobs: [Option<Counter>; JobCounter::ALL.len()],
    queue_latency: Option<Histogram>,
    run_time: Option<Histogram>,
}

/// One open `GET /v1/events` stream, counted in `orderly_events_subscribers`
/// for as long as it lives (however it ends: its own end, the client going
/// away, the connection cut for a stalled write, shutdown).
#[derive(Debug)]
pub struct SubscriberGuard(Gauge);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("orderly");
        let jobs: Vec<Family<QueueLabel, Counter>> = JobCounter::ALL
            .iter()
            .map(|c| {
                let family = Family::default();
                registry.register(c.name(), c.help(), family.clone());
                family
            })
            .collect();
        let queue_latency: Histograms<QueueLabel> = Family::new_with_constructor(job_seconds);
        registry.register(
            "queue_latency_seconds",
            "Time from a job's enqueue to each of its starts, per queue",
            queue_latency.clone(),
        );
        let run_time: Histograms<QueueLabel> = Family::new_with_constructor(job_seconds);
        registry.register(
            "run_time_seconds",
            "Time from an attempt's start to its end (reported, timed out or lease lost), per queue",
            run_time.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let http_seconds: Histograms<HttpLabels> = Family::new_with_constructor(http_seconds);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (long polls included), by method, route template and status",
            http_seconds.clone(),
        );
        let events_subscribers = Gauge::default();
        registry.register(
            "events_subscribers",
            "Open GET /v1/events streams",
            events_subscribers.clone(),
        );
        let events_lagged = Counter::default();
        registry.register(
            "events_dropped_lagging",
            "GET /v1/events subscribers dropped for falling more than --events-buffer events behind",
            events_lagged.clone(),
        );
        Metrics {
            registry,
            jobs,
            queue_latency,
            run_time,
            http_requests,
            http_seconds,
            events_subscribers,
            events_lagged,
            handles: Mutex::default(),
        }
    }
}

impl Metrics {
    fn handles(&self) -> MutexGuard<'_, Handles> {
        // Every step under the lock is an insert or an increment: a
        // poisoned lock is still consistent.
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts what one store write changed.
    pub fn record(&self, changes: &Changes) {
        if changes.jobs.is_empty() {
            return;
        }
        let mut handles = self.handles();
        for c in &changes.jobs {
            let queue = kept(&mut handles.queues, &c.queue);
            let label = || QueueLabel {
                queue: c.queue.clone(),
            };
            for counter in counters_for(c) {
                let i = *counter as usize;
                queue.jobs[i]
                    .get_or_insert_with(|| self.jobs[i].get_or_create(&label()).clone())
                    .inc();
            }
            if c.to == JobState::Running && c.from.is_some() {
                queue
                    .queue_latency
                    .get_or_insert_with(|| self.queue_latency.get_or_create(&label()).clone())
                    .observe(seconds(c.at - c.enqueued_at));
            }
            if let (Some(JobState::Running), Some(started)) = (c.from, c.started_at) {
                if c.to != JobState::Running {
                    queue
                        .run_time
                        .get_or_insert_with(|| self.run_time.get_or_create(&label()).clone())
                        .observe(seconds(c.at - started));
                }
            }
        }
    }

    /// Counts an events subscriber until the guard is dropped.
    pub fn events_subscriber(&self) -> SubscriberGuard {
        self.events_subscribers.inc();
        SubscriberGuard(self.events_subscribers.clone())
    }

    /// Counts an events subscriber dropped for falling behind.
    pub fn events_lagged(&self) {
        self.events_lagged.inc();
    }

    /// Counts one answered HTTP request.
    pub(crate) fn record_http(&self, method: &'static str, route: &str, status: u16, elapsed: f64) {
        let mut handles = self.handles();
        let seen = kept(&mut handles.http, route);
        if let Some((.., requests, seconds)) =
            seen.iter().find(|(m, s, ..)| *m == method && *s == status)
        {
            requests.inc();
            seconds.observe(elapsed);
            return;
        }
        let labels = HttpLabels {
            method: method.to_string(),
            route: route.to_string(),
            status: status.to_string(),
        };
        let requests = self.http_requests.get_or_create(&labels).clone();
        let seconds = self.http_seconds.get_or_create(&labels).clone();
        requests.inc();
        seconds.observe(elapsed);
        seen.push((method, status, requests, seconds));
    }
}

/// The entry of `key` in `map`, made empty on first use: the key is copied
/// only then, not on every lookup.
fn kept<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// Milliseconds as seconds (never negative: clocks may step back).
fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::Metrics;
    use orderly_core::{Changes, JobState, JobState::*, StateChange};

    fn change(from: Option<JobState>, to: JobState, at: i64, started: Option<i64>) -> StateChange {
        StateChange {
            id: "j".into(),
            queue: "q".into(),
            key: None,
            seq: 1,
            from,
            to,
            at,
            enqueued_at: 1_000,
            started_at: started,
            lease_lost: false,
        }
    }

    /// The exposition of `m`, after checking that it has each of `lines`.
    fn exposition_with(m: &Metrics, lines: &[&str]) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).expect("encode");
        for line in lines {
            assert!(text.lines().any(|l| l == *line), "no {line:?} in:\n{text}");
        }
        text
    }

    /// Queue latency is `at - enqueued_at` on each start; run time is
    /// `at - started_at` on each end of an attempt; nothing else observes.
    #[test]
    fn latencies_come_from_the_changes_times() {
        let m = Metrics::default();
        m.record(&Changes {
            jobs: vec![
                change(None, Queued, 1_000, None),
                change(Some(Queued), Running, 1_250, Some(1_250)),
                change(Some(Running), Scheduled, 2_250, Some(1_250)),
                change(Some(Scheduled), Queued, 3_000, None),
                change(Some(Queued), Running, 3_500, Some(3_500)),
                change(Some(Running), Succeeded, 4_000, Some(3_500)),
            ],
        });
        exposition_with(
            &m,
            &[
                "orderly_queue_latency_seconds_count{queue=\"q\"} 2",
                "orderly_queue_latency_seconds_sum{queue=\"q\"} 2.75",
                "orderly_run_time_seconds_count{queue=\"q\"} 2",
                "orderly_run_time_seconds_sum{queue=\"q\"} 1.5",
            ],
        );
    }

    /// The kept handles count into the exposed families: every request and
    /// every queue's move is counted once under its own labels, the first
    /// and the later ones alike.
    #[test]
    fn kept_handles_count_into_the_exposition() {
        let m = Metrics::default();
        m.record_http("POST", "/v1/reports", 200, 0.001);
        m.record_http("POST", "/v1/reports", 200, 0.002);
        m.record_http("POST", "/v1/reports", 400, 0.001);
        m.record_http("GET", "/v1/reports", 200, 0.001);
        let other = |queue: &str| StateChange {
            queue: queue.into(),
            ..change(None, Queued, 1_000, None)
        };
        m.record(&Changes {
            jobs: vec![other("a"), other("b"), other("a")],
        });
        m.record(&Changes {
            jobs: vec![other("a")],
        });
        let text = exposition_with(
            &m,
            &[
            "orderly_http_requests_total{method=\"POST\",route=\"/v1/reports\",status=\"200\"} 2",
            "orderly_http_requests_total{method=\"POST\",route=\"/v1/reports\",status=\"400\"} 1",
            "orderly_http_requests_total{method=\"GET\",route=\"/v1/reports\",status=\"200\"} 1",
            "orderly_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/reports\",status=\"200\"} 2",
            "orderly_jobs_enqueued_total{queue=\"a\"} 3",
            "orderly_jobs_enqueued_total{queue=\"b\"} 1",
            ],
        );
        assert!(
            !text.contains("orderly_jobs_started_total{"),
            "a figure nothing counted is not shown: {text}"
        );
    }
}
