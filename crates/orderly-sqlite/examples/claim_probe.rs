//! The writer's cost of one claim + complete, at the store's API (no HTTP),
//! on a small queue and on one with a backlog, in the same data directory:
//! the probe docs/performance.md runs under `valgrind --tool=callgrind`.
//!
//! `claim_probe DIR BACKLOG [fsync|none] [both|empty|full|enqueue]`: the
//! first run on `DIR` fills queue `empty` with 2,000 jobs and queue `full`
//! with `BACKLOG` + 2,000; every run then claims and completes 300 jobs of
//! each queue asked for (or, with `enqueue`, enqueues 300 jobs one at a time
//! on queue `full`) and prints p50 / p90 / min in microseconds.

use std::time::Instant;

use orderly_core::{ClaimParams, EnqueueParams, NewJob, Outcome, ReportParams, Store};
use orderly_sqlite::{Durability, SqliteOptions, SqliteStore};

/// Claim + complete cycles per queue.
const CYCLES: usize = 300;

fn job(id: String) -> NewJob {
    NewJob {
        id,
        key: None,
        payload: serde_json::json!({ "i": 1 }),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

/// Microseconds of each of `n` claim + complete cycles on `queue`, sorted.
async fn cycles(store: &SqliteStore, queue: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let claim = ClaimParams {
            queue: queue.into(),
            worker: "probe".into(),
            max: 1,
            lease_ms: None,
            now: 2_000,
            jitter: 0.5,
        };
        let leases = store.job_claim(claim).await.expect("claim").value;
        let lease = leases.into_iter().next().expect("a job to claim");
        let report = ReportParams {
            id: lease.job.id.clone(),
            token: lease.token,
            outcome: Outcome::Succeeded { result: None },
            now: 2_000,
            jitter: 0.5,
        };
        let mut results = store.job_report_many(vec![report]).await;
        results.pop().expect("one result").expect("report");
        out.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(f64::total_cmp);
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "claim_probe DIR BACKLOG [fsync|none] [both|empty|full]";
    let dir = std::path::PathBuf::from(args.get(1).expect(usage));
    let backlog: usize = args.get(2).expect(usage).parse().expect(usage);
    let durability = match args.get(3).map(String::as_str) {
        Some("none") => Durability::None,
        _ => Durability::Fsync,
    };
    let which = args.get(4).map(String::as_str).unwrap_or("both");
    let fresh = !dir.join(orderly_sqlite::DB_FILE).exists();
    let store = SqliteStore::open(&SqliteOptions {
        data_dir: dir,
        durability,
    })
    .expect("open");
    if fresh {
        for (queue, n) in [("empty", 2_000), ("full", backlog + 2_000)] {
            let mut i = 0;
            while i < n {
                let m = (n - i).min(1_000);
                let jobs = (i..i + m).map(|k| job(format!("{queue}-{k}"))).collect();
                let params = EnqueueParams {
                    queue: queue.into(),
                    jobs,
                    now: 1_000,
                };
                store.job_enqueue_many(params).await.expect("enqueue");
                i += m;
            }
        }
    }
    if which == "enqueue" {
        let mut t = Vec::with_capacity(CYCLES);
        for k in 0..CYCLES {
            let t0 = Instant::now();
            let params = EnqueueParams {
                queue: "full".into(),
                jobs: vec![job(format!("probe-{}-{k}", std::process::id()))],
                now: 1_500,
            };
            store.job_enqueue_many(params).await.expect("enqueue");
            t.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        t.sort_by(f64::total_cmp);
        println!(
            "enqueue: p50 {:.0} us, p90 {:.0} us, min {:.0} us",
            t[t.len() / 2],
            t[t.len() * 9 / 10],
            t[0]
        );
    }
    for queue in ["empty", "full"] {
        if which == "both" || which == queue {
            let t = cycles(&store, queue, CYCLES).await;
            println!(
                "{queue}: p50 {:.0} us, p90 {:.0} us, min {:.0} us",
                t[t.len() / 2],
                t[t.len() * 9 / 10],
                t[0]
            );
        }
    }
    store.close().await;
}
