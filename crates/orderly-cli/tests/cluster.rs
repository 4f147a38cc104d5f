//! Three real `orderly serve` nodes on one PostgreSQL schema (the shared
//! server, `ORDERLY_TEST_DATABASE_URL`), workers claiming through all three,
//! and the server's own start log as the judge: strict order on a serial
//! queue, exact per-key order under concurrency, and a node killed -9 mid-run.
//! A database that cannot be reached fails the tests, never skips them.

#[macro_use]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::nodes::{
    all_starts, complete_and_claim, database_url, inversions, start_nodes, Schema,
};
use support::proto::{
    AttemptOutcome, BatchRequest, ClaimRequest, CompleteRequest, JobState, QueueConfigRequest,
};
use support::{claim_req, job_req, TestServer};

fn queue_config(concurrency: u32) -> QueueConfigRequest {
    QueueConfigRequest {
        concurrency: Some(concurrency),
        max_attempts: Some(10),
        ..Default::default()
    }
}

fn claim_with_lease(worker: &str, max: u32, wait_ms: u64, lease_ms: u64) -> ClaimRequest {
    ClaimRequest {
        lease_ms: Some(lease_ms),
        ..claim_req(worker, max, wait_ms)
    }
}

/// 10,000 jobs enqueued through three nodes (concurrent batches) into a
/// concurrency-1 queue, workers on all three: the start log has every job
/// exactly once in strictly increasing `seq` (zero inversions) and every
/// job succeeded on its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_jobs_through_three_nodes_start_in_seq_order() {
    const Q: &str = "serial";
    const JOBS: usize = 10_000;
    const BATCH: usize = 100;
    let schema = Schema::new("cl_serial");
    let nodes = start_nodes(3, &database_url(), &schema.0).await;
    nodes[0].configure(Q, queue_config(1)).await;
    let t0 = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    // Three concurrent enqueuers, batch b through node b % 3.
    for e in 0..3usize {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            for b in (e..JOBS / BATCH).step_by(3) {
                let node = &nodes[b % 3];
                let jobs = (b * BATCH..(b + 1) * BATCH)
                    .map(|i| job_req(&format!("j{i}"), None, serde_json::json!({ "i": i })))
                    .collect();
                let r = node
                    .client()
                    .enqueue_batch(Q, &BatchRequest { jobs })
                    .await
                    .unwrap_or_else(|err| node.fail(format!("batch {b}: {err}")));
                let seqs: Vec<i64> = r.value.iter().map(|j| j.seq).collect();
                ensure!(
                    node,
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "batch {b} not in seq order: {seqs:?}"
                );
            }
        }));
    }
    // Two workers per node; every tenth report does not claim the next job,
    // so the lease moves between nodes.
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..2 {
            let node = node.clone();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                let c = node.client();
                let name = format!("n{n}w{w}");
                while done.load(Ordering::SeqCst) < JOBS {
                    let mut leases = c
                        .claim(Q, &claim_req(&name, 1, 100))
                        .await
                        .unwrap_or_else(|e| node.fail(format!("{name}: claim: {e}")))
                        .leases;
                    while let Some(l) = leases.pop() {
                        let k = done.fetch_add(1, Ordering::SeqCst);
                        leases = if k % 10 == 9 {
                            c.complete(
                                &l.job.id,
                                &CompleteRequest {
                                    token: l.token.clone(),
                                    result: None,
                                    claim_next: None,
                                },
                            )
                            .await
                            .unwrap_or_else(|e| node.fail(format!("{name}: complete: {e}")));
                            Vec::new()
                        } else {
                            complete_and_claim(&c, &name, &l, 1, 0)
                                .await
                                .unwrap_or_else(|e| node.fail(format!("{name}: complete: {e}")))
                        };
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = t0.elapsed();
    let last = nodes[2].clone();
    let jobs = last
        .wait_all_finished(Q, JOBS, Duration::from_secs(60))
        .await;
    let not_ok: Vec<_> = jobs
        .iter()
        .filter(|j| j.state != JobState::Succeeded || j.attempt != 1)
        .map(|j| (&j.id, j.state, j.attempt))
        .collect();
    ensure!(
        last,
        not_ok.is_empty(),
        "jobs not succeeded once: {not_ok:?}"
    );
    let log = all_starts(&last, Q).await;
    ensure!(
        last,
        log.len() == JOBS,
        "{} starts for {JOBS} jobs",
        log.len()
    );
    let ids: HashSet<&str> = log.iter().map(|s| s.job_id.as_str()).collect();
    ensure!(
        last,
        ids.len() == JOBS,
        "{} distinct jobs started",
        ids.len()
    );
    let inv = log.windows(2).filter(|w| w[1].seq <= w[0].seq).count();
    ensure!(last, inv == 0, "{inv} start-order inversions");
    let by_node: HashSet<&str> = log.iter().filter_map(|s| s.worker.get(..2)).collect();
    ensure!(
        last,
        by_node.len() == 3,
        "workers of every node ran jobs: {by_node:?}"
    );
    println!(
        "10,000 jobs on a concurrency-1 queue through 3 nodes: {:.1} s, {:.0} jobs/s",
        elapsed.as_secs_f64(),
        JOBS as f64 / elapsed.as_secs_f64()
    );
}

/// 200 keys × 10 jobs on a concurrency-16 queue, enqueued through three
/// nodes, 18 workers claiming through all three: per key the start log is
/// exactly the enqueue order, and the workers never held more than 16
/// leases at once nor two of one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_keys_start_in_key_order_within_concurrency() {
    const Q: &str = "keyed";
    const KEYS: usize = 200;
    const PER_KEY: usize = 10;
    const JOBS: usize = KEYS * PER_KEY;
    let schema = Schema::new("cl_keys");
    let nodes = start_nodes(3, &database_url(), &schema.0).await;
    nodes[0].configure(Q, queue_config(16)).await;
    let t0 = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicI64::new(0));
    let most = Arc::new(AtomicI64::new(0));
    let held_keys = Arc::new(Mutex::new(HashSet::<String>::new()));
    let overlaps = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    // Enqueuer e owns the keys k % 3 == e and sends round r of them through
    // node (e + r) % 3: per key, the enqueue order is r.
    for e in 0..3usize {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            for r in 0..PER_KEY {
                let node = &nodes[(e + r) % 3];
                let jobs = (e..KEYS)
                    .step_by(3)
                    .map(|k| {
                        let key = format!("k{k}");
                        job_req(
                            &format!("k{k}-{r}"),
                            Some(&key),
                            serde_json::json!({ "r": r }),
                        )
                    })
                    .collect();
                node.client()
                    .enqueue_batch(Q, &BatchRequest { jobs })
                    .await
                    .unwrap_or_else(|err| node.fail(format!("round {r}: {err}")));
            }
        }));
    }
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..6 {
            let node = node.clone();
            let (done, running, most) = (done.clone(), running.clone(), most.clone());
            let (held_keys, overlaps) = (held_keys.clone(), overlaps.clone());
            tasks.push(tokio::spawn(async move {
                let c = node.client();
                let name = format!("n{n}w{w}");
                while done.load(Ordering::SeqCst) < JOBS {
                    let leases = c
                        .claim(Q, &claim_req(&name, 2, 50))
                        .await
                        .unwrap_or_else(|e| node.fail(format!("{name}: claim: {e}")))
                        .leases;
                    for l in &leases {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let key = l.job.key.clone().unwrap_or_default();
                        if !held_keys.lock().unwrap().insert(key.clone()) {
                            overlaps.lock().unwrap().push(key);
                        }
                    }
                    if !leases.is_empty() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    for l in leases {
                        held_keys
                            .lock()
                            .unwrap()
                            .remove(l.job.key.as_deref().unwrap_or_default());
                        running.fetch_sub(1, Ordering::SeqCst);
                        c.complete(
                            &l.job.id,
                            &CompleteRequest {
                                token: l.token.clone(),
                                result: None,
                                claim_next: None,
                            },
                        )
                        .await
                        .unwrap_or_else(|e| node.fail(format!("{name}: complete: {e}")));
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = t0.elapsed();
    let last = nodes[1].clone();
    let overlaps = overlaps.lock().unwrap().clone();
    ensure!(
        last,
        overlaps.is_empty(),
        "two jobs of one key held at once: {overlaps:?}"
    );
    let most = most.load(Ordering::SeqCst);
    ensure!(
        last,
        most <= 16,
        "{most} leases held at once on a concurrency-16 queue"
    );
    let jobs = last
        .wait_all_finished(Q, JOBS, Duration::from_secs(60))
        .await;
    ensure!(
        last,
        jobs.iter()
            .all(|j| j.state == JobState::Succeeded && j.attempt == 1),
        "not every job succeeded on its first attempt"
    );
    let log = all_starts(&last, Q).await;
    ensure!(
        last,
        log.len() == JOBS,
        "{} starts for {JOBS} jobs",
        log.len()
    );
    let mut per_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in &log {
        per_key
            .entry(s.key.as_deref().unwrap_or_default())
            .or_default()
            .push(&s.job_id);
    }
    for k in 0..KEYS {
        let key = format!("k{k}");
        let want: Vec<String> = (0..PER_KEY).map(|r| format!("k{k}-{r}")).collect();
        let got = per_key.get(key.as_str()).cloned().unwrap_or_default();
        ensure!(
            last,
            got == want,
            "key {key} started {got:?}, enqueued {want:?}"
        );
    }
    println!(
        "200 keys × 10 jobs, concurrency 16, 3 nodes: {:.1} s, {:.0} jobs/s, at most {most} held at once",
        elapsed.as_secs_f64(),
        JOBS as f64 / elapsed.as_secs_f64()
    );
}

/// One of three nodes killed -9 while workers claiming through it hold
/// leases (1 s) and enqueues keep arriving through all three: no job
/// acknowledged with 2xx is lost, none succeeded twice, per key the start
/// log keeps the enqueue order, and each interrupted job is the next start
/// of its key once its lease expired (a rerun in place).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_run_loses_nothing_and_its_jobs_rerun_in_place() {
    const Q: &str = "crash";
    const KEYS: usize = 12;
    const PER_ENQUEUER: usize = 150;
    const TOTAL: usize = 3 * PER_ENQUEUER;
    let schema = Schema::new("cl_kill");
    let nodes = start_nodes(3, &database_url(), &schema.0).await;
    nodes[0].configure(Q, queue_config(8)).await;
    let t0 = Instant::now();
    let killed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    // Set once the server shows every job finished: a worker's own count
    // cannot tell, as a report node 2 committed just before it was killed
    // is never answered.
    let all_done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    // Enqueuer e owns the keys k % 3 == e; job i goes through node
    // (e + i) % 3, retried with the same id on the next node when a node is
    // out of reach (so per key the enqueue order is i).
    for e in 0..3usize {
        let (nodes, acked) = (nodes.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_ENQUEUER {
                let k = e + 3 * (i % (KEYS / 3));
                let (id, key) = (format!("k{k}-{e}-{i:04}"), format!("k{k}"));
                let req = job_req(&id, Some(&key), serde_json::json!({ "i": i }));
                let mut n = e + i;
                loop {
                    let node = &nodes[n % 3];
                    match node.client().enqueue(Q, &req).await {
                        Ok(_) => break,
                        Err(err) if err.status().is_none() || err.status() == Some(503) => n += 1,
                        Err(err) => node.fail(format!("enqueue {id}: {err}")),
                    }
                }
                acked.lock().unwrap().push(id);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..2 {
            let (node, done, killed) = (node.clone(), done.clone(), killed.clone());
            let all_done = all_done.clone();
            tasks.push(tokio::spawn(async move {
                let c = node.client();
                let name = format!("n{n}w{w}");
                loop {
                    let leases = match c.claim(Q, &claim_with_lease(&name, 2, 50, 5000)).await {
                        Ok(r) => r.leases,
                        Err(_) if n == 2 && killed.load(Ordering::SeqCst) => return,
                        Err(e) => node.fail(format!("{name}: claim: {e}")),
                    };
                    if all_done.load(Ordering::SeqCst) {
                        return;
                    }
                    for l in leases {
                        let r = c
                            .complete(
                                &l.job.id,
                                &CompleteRequest {
                                    token: l.token.clone(),
                                    result: None,
                                    claim_next: None,
                                },
                            )
                            .await;
                        match r {
                            Ok(_) => {
                                done.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) if n == 2 && killed.load(Ordering::SeqCst) => return,
                            Err(e) => node.fail(format!("{name}: complete {}: {e}", l.job.id)),
                        }
                    }
                }
            }));
        }
    }
    // Mid-run: a worker on node 2 takes leases with 1 s to live and never
    // reports them; node 2 is killed -9 while they are held.
    let victim = nodes[2].clone();
    victim
        .wait_for(Duration::from_secs(60), "a third of the jobs done", || {
            let d = done.load(Ordering::SeqCst);
            async move { d >= PER_ENQUEUER }
        })
        .await;
    let mut interrupted = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while interrupted.is_empty() && Instant::now() < until {
        interrupted = victim
            .client()
            .claim(Q, &claim_with_lease("n2-held", 4, 200, 1000))
            .await
            .unwrap_or_else(|e| victim.fail(format!("held claim: {e}")))
            .leases;
    }
    ensure!(
        victim,
        !interrupted.is_empty(),
        "no lease to hold on node 2"
    );
    killed.store(true, Ordering::SeqCst);
    kill_node(&victim);
    let workers = tasks.split_off(3);
    for t in tasks {
        t.await.expect("enqueuer");
    }
    let a = nodes[0].clone();
    let acked = acked.lock().unwrap().clone();
    ensure!(
        a,
        acked.len() == TOTAL,
        "{} enqueues acknowledged",
        acked.len()
    );
    let jobs = a
        .wait_all_finished(Q, acked.len(), Duration::from_secs(90))
        .await;
    all_done.store(true, Ordering::SeqCst);
    for t in workers {
        t.await.expect("worker");
    }
    let listed: HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !listed.contains(id.as_str()))
        .collect();
    ensure!(a, lost.is_empty(), "acknowledged jobs lost: {lost:?}");
    for j in &jobs {
        ensure!(
            a,
            j.state == JobState::Succeeded,
            "{} ended {:?}",
            j.id,
            j.state
        );
        let attempts = a.client().attempts(&j.id).await.expect("attempts").attempts;
        let wins = attempts
            .iter()
            .filter(|t| t.outcome == Some(AttemptOutcome::Succeeded))
            .count();
        ensure!(a, wins == 1, "{} succeeded {wins} times", j.id);
    }
    let log = all_starts(&a, Q).await;
    let mut per_key: HashMap<&str, Vec<&support::proto::StartView>> = HashMap::new();
    for s in &log {
        per_key
            .entry(s.key.as_deref().unwrap_or_default())
            .or_default()
            .push(s);
    }
    for (key, starts) in &per_key {
        let owned: Vec<support::proto::StartView> = starts.iter().map(|s| (*s).clone()).collect();
        let inv = inversions(&owned);
        ensure!(a, inv == 0, "key {key}: {inv} start-order inversions");
    }
    for l in &interrupted {
        let key = l.job.key.as_deref().unwrap_or_default();
        let starts = &per_key[key];
        let at = starts
            .iter()
            .position(|s| s.job_id == l.job.id)
            .unwrap_or_else(|| a.fail(format!("{} not in the start log", l.job.id)));
        let next = starts.get(at + 1).map(|s| (s.job_id.as_str(), s.attempt));
        ensure!(
            a,
            next == Some((l.job.id.as_str(), l.job.attempt + 1)),
            "after interrupted {} (attempt {}) key {key} next started {next:?}",
            l.job.id,
            l.job.attempt
        );
    }
    println!(
        "kill -9 of one of 3 nodes: {} jobs, {} interrupted and rerun in place, {:.1} s",
        acked.len(),
        interrupted.len(),
        t0.elapsed().as_secs_f64()
    );
}

/// SIGKILL a node that other tasks still share: by its pid, the process is
/// reaped when its `TestServer` drops.
fn kill_node(node: &TestServer) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &node.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL failed");
}
