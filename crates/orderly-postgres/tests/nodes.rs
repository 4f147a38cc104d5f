//! Several nodes on one schema: stores opened separately (each with its own
//! pool, as separate processes would have) claim from one queue while jobs
//! are enqueued through all of them. The start log must show strict order,
//! the claimers' own count must never exceed the queue's concurrency, and
//! no two jobs of one key may ever run at once.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use orderly_core::{
    ClaimParams, EnqueueParams, NewJob, Outcome, QueuePatch, ReportParams, StartListParams, Store,
};
use orderly_postgres::PostgresStore;
use support::Schemas;

const T0: i64 = 1_700_000_000_000;
const NODES: usize = 3;
const CLAIMERS_PER_NODE: usize = 3;

fn job(id: String, key: Option<String>) -> NewJob {
    NewJob {
        id,
        key,
        payload: serde_json::json!({}),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

/// What the claimers saw, counted when a claim's answer arrives and
/// uncounted before the report is sent: never more than the truth.
#[derive(Default)]
struct Seen {
    running: u32,
    max_running: u32,
    keys: HashSet<String>,
    finished: usize,
    failure: Option<String>,
}

/// Opens `NODES` stores on one fresh schema.
async fn nodes(schemas: &Schemas) -> Vec<Arc<PostgresStore>> {
    let schema = support::fresh_schema();
    schemas.adopt(&schema);
    let mut out = Vec::new();
    for _ in 0..NODES {
        out.push(Arc::new(support::open(&schema).await));
    }
    out
}

/// Enqueues `total` jobs into `queue` through every node at once (batches of
/// 1 to 3), while `CLAIMERS_PER_NODE` claimers per node claim up to 2 jobs
/// at a time and report success; returns what they saw.
async fn run(
    nodes: &[Arc<PostgresStore>],
    queue: &str,
    total: usize,
    key_of: fn(usize) -> Option<String>,
) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let queue = queue.to_string();
        tasks.push(tokio::spawn(async move {
            let mut i = n;
            while i < total {
                let mut batch = Vec::new();
                for _ in 0..(1 + i % 3) {
                    if i < total {
                        batch.push(job(format!("j{i}"), key_of(i)));
                        i += NODES;
                    }
                }
                node.job_enqueue_many(EnqueueParams {
                    queue: queue.clone(),
                    jobs: batch,
                    now: T0,
                })
                .await
                .expect("enqueue");
            }
        }));
    }
    for (n, node) in nodes.iter().enumerate() {
        for c in 0..CLAIMERS_PER_NODE {
            let node = node.clone();
            let seen = seen.clone();
            let queue = queue.to_string();
            tasks.push(tokio::spawn(async move {
                let worker = format!("n{n}c{c}");
                loop {
                    let done = {
                        let s = seen.lock().unwrap();
                        s.finished >= total || s.failure.is_some()
                    };
                    if done {
                        break;
                    }
                    let leases = node
                        .job_claim(ClaimParams {
                            queue: queue.clone(),
                            worker: worker.clone(),
                            max: 2,
                            lease_ms: Some(3_600_000),
                            now: T0,
                            jitter: 0.5,
                        })
                        .await
                        .expect("claim")
                        .value;
                    if leases.is_empty() {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    {
                        let mut s = seen.lock().unwrap();
                        s.running += leases.len() as u32;
                        s.max_running = s.max_running.max(s.running);
                        for l in &leases {
                            if let Some(k) = &l.job.key {
                                if !s.keys.insert(k.clone()) {
                                    s.failure = Some(format!(
                                        "{} started while another job of key {k} ran",
                                        l.job.id
                                    ));
                                }
                            }
                        }
                    }
                    for l in leases {
                        {
                            let mut s = seen.lock().unwrap();
                            s.running -= 1;
                            if let Some(k) = &l.job.key {
                                s.keys.remove(k);
                            }
                        }
                        node.job_report_many(vec![ReportParams {
                            id: l.job.id.clone(),
                            token: l.token.clone(),
                            outcome: Outcome::Succeeded { result: None },
                            now: T0,
                            jitter: 0.5,
                        }])
                        .await
                        .pop()
                        .expect("one answer")
                        .expect("report");
                        seen.lock().unwrap().finished += 1;
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
    Arc::try_unwrap(seen)
        .ok()
        .expect("tasks are done")
        .into_inner()
        .unwrap()
}

/// The whole start log of `queue`, as (seq, key).
async fn start_log(store: &PostgresStore, queue: &str) -> Vec<(i64, Option<String>)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .start_list(StartListParams {
                queue: queue.into(),
                after,
                limit: 500,
            })
            .await
            .expect("start log");
        let Some(last) = page.last() else { break };
        after = Some(last.start_no);
        out.extend(page.into_iter().map(|s| (s.seq, s.key)));
    }
    out
}

async fn configure(store: &PostgresStore, queue: &str, concurrency: u32) {
    store
        .queue_configure(
            queue,
            QueuePatch {
                concurrency: Some(concurrency),
                ..QueuePatch::default()
            },
            T0,
        )
        .await
        .expect("configure");
}

/// Concurrency 1 across three nodes, jobs enqueued through all three while
/// nine claimers run: one job at a time, and the start log is in strictly
/// increasing `seq` order (a job numbered before another but made visible
/// after it would show up here as an inversion).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_serial_queue_starts_in_seq_order_across_nodes() {
    let schemas = Schemas::default();
    let nodes = nodes(&schemas).await;
    configure(&nodes[0], "serial", 1).await;
    let total = 300;
    let seen = run(&nodes, "serial", total, |_| None).await;
    assert_eq!(seen.failure, None);
    assert_eq!(seen.max_running, 1, "concurrency 1 was exceeded");
    let log = start_log(&nodes[1], "serial").await;
    assert_eq!(log.len(), total, "every job started once");
    let inversions: Vec<_> = log.windows(2).filter(|w| w[1].0 <= w[0].0).collect();
    assert!(
        inversions.is_empty(),
        "start-order inversions: {inversions:?}"
    );
}

/// Keys across nodes: 12 keys on a concurrency-4 queue. No two jobs of one
/// key run at once, concurrency is never exceeded, each key's jobs start
/// in `seq` order, and all run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_keep_their_order_and_concurrency_holds_across_nodes() {
    let schemas = Schemas::default();
    let nodes = nodes(&schemas).await;
    configure(&nodes[0], "keyed", 4).await;
    let total = 360;
    let seen = run(&nodes, "keyed", total, |i| Some(format!("k{}", i % 12))).await;
    assert_eq!(seen.failure, None);
    assert!(
        seen.max_running <= 4,
        "concurrency 4 was exceeded: {}",
        seen.max_running
    );
    let log = start_log(&nodes[2], "keyed").await;
    assert_eq!(log.len(), total, "every job started once");
    let mut last: HashMap<String, i64> = HashMap::new();
    for (seq, key) in &log {
        let key = key.clone().expect("every job has a key");
        if let Some(prev) = last.insert(key.clone(), *seq) {
            assert!(prev < *seq, "key {key}: seq {seq} started after {prev}");
        }
    }
}
