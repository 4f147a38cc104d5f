//! End-to-end ordering tests of the real `orderly` binary (contract section 2):
//! the seed scenario with a real `orderly worker`, 10,000 concurrent enqueues
//! drained in exact `seq` order, and ordering keys on a parallel queue.

#[macro_use]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::proto::{BatchRequest, CompleteRequest, JobView, LeaseView, QueueConfigRequest};
use support::{claim_req, job_req, millis, Client, TestServer};

const SEED_IDS: [&str; 3] = [
    "c880cc1b-dc27-4175-b616-29a69322d156",
    "7a1b6a2c-5d0e-4e8e-9a57-0f3c2e1d4b6a",
    "e0f7d5c4-3b2a-4190-8f7e-6d5c4b3a2918",
];

/// Reads the seed jobs, last first: a job seen finished stays finished, so
/// reading later jobs first makes "k succeeded ⇒ every earlier job succeeded"
/// and "at most one running" sound even though the reads are not one snapshot.
async fn read_seed(srv: &TestServer) -> Vec<JobView> {
    let mut jobs = Vec::new();
    for id in SEED_IDS.iter().rev() {
        jobs.push(srv.job(id).await);
    }
    jobs.reverse();
    jobs
}

fn check_seed_invariants(srv: &TestServer, jobs: &[JobView], poll: usize) {
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    for k in 0..jobs.len() {
        if states[k] == "succeeded" {
            ensure!(
                srv,
                states[..k].iter().all(|s| *s == "succeeded"),
                "poll {poll}: job {k} succeeded before an earlier job: {states:?}"
            );
        }
        if states[k] == "running" {
            ensure!(
                srv,
                states[..k].iter().all(|s| *s == "succeeded"),
                "poll {poll}: job {k} running before an earlier job finished: {states:?}"
            );
        }
        ensure!(
            srv,
            ["queued", "running", "succeeded"].contains(&states[k]),
            "poll {poll}: unexpected state of job {k}: {states:?}"
        );
    }
    let running = states.iter().filter(|s| **s == "running").count();
    ensure!(
        srv,
        running <= 1,
        "poll {poll}: {running} jobs running at once on a concurrency-1 queue: {states:?}"
    );
}

/// Contract §1/§2, the seed's case: three jobs on `default` (concurrency 1)
/// run by a real `orderly worker` process start and finish 1, 2, 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_scenario_runs_one_at_a_time_in_enqueue_order() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let mut seqs = Vec::new();
    for (i, id) in SEED_IDS.iter().enumerate() {
        let out = c
            .enqueue("default", &job_req(id, None, json!({ "uid": id })))
            .await
            .unwrap_or_else(|e| srv.fail(format!("enqueue {id}: {e}")));
        ensure!(srv, out.created, "enqueue {id} was not a 202");
        let j = out.value;
        ensure!(
            srv,
            j.id == *id && j.queue == "default" && j.state == "queued" && j.attempt == 0,
            "enqueued job: {j:?}"
        );
        ensure!(
            srv,
            j.position == Some(i as u64),
            "job {i} position {:?}, expected {i}",
            j.position
        );
        seqs.push(j.seq);
    }
    ensure!(
        srv,
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs not increasing: {seqs:?}"
    );
    let q = c.queue("default").await.unwrap();
    ensure!(
        srv,
        q.concurrency == 1,
        "default concurrency {}",
        q.concurrency
    );

    let mut worker = srv.worker("default", &["--max-jobs", "3"], &["sh", "-c", "sleep 2"]);
    let started = Instant::now();
    let mut poll = 0;
    let mut positions_checked = 0;
    loop {
        if started.elapsed() > Duration::from_secs(60) {
            srv.fail(format!(
                "seed jobs not all succeeded after 60 s: {:?}\n--- worker log ---\n{}",
                read_seed(&srv)
                    .await
                    .iter()
                    .map(|j| j.state)
                    .collect::<Vec<_>>(),
                worker.log()
            ));
        }
        poll += 1;
        let a = read_seed(&srv).await;
        check_seed_invariants(&srv, &a, poll);
        let b = read_seed(&srv).await;
        check_seed_invariants(&srv, &b, poll);
        let states_a: Vec<&str> = a.iter().map(|j| j.state.as_str()).collect();
        let states_b: Vec<&str> = b.iter().map(|j| j.state.as_str()).collect();
        // Two identical reads in a row: nothing moved in between, so the
        // positions were computed against these very states.
        if states_a == states_b {
            for (k, j) in b.iter().enumerate() {
                let waiting_ahead = states_b[..k].iter().filter(|s| **s == "queued").count() as u64;
                let expected = (j.state == "queued").then_some(waiting_ahead);
                ensure!(
                    srv,
                    j.position == expected,
                    "poll {poll}: job {k} ({}) position {:?}, expected {expected:?} (states {states_b:?})",
                    j.state,
                    j.position
                );
            }
            positions_checked += 1;
        }
        if states_b.iter().all(|s| *s == "succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ensure!(
        srv,
        positions_checked > 0,
        "never got a stable read to check positions"
    );

    let status = worker.wait_exit(Duration::from_secs(15)).await;
    ensure!(
        srv,
        status.is_some_and(|s| s.success()),
        "worker --max-jobs 3 did not exit cleanly: {status:?}\n--- worker log ---\n{}",
        worker.log()
    );
    // The order the worker itself saw.
    let log = worker.log();
    let seen: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(") started"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    ensure!(
        srv,
        seen == SEED_IDS,
        "worker started {seen:?}, expected {SEED_IDS:?}\n{log}"
    );

    let jobs = read_seed(&srv).await;
    let start_nos: Vec<Option<i64>> = jobs.iter().map(|j| j.start_no).collect();
    ensure!(
        srv,
        start_nos == [Some(1), Some(2), Some(3)],
        "start_no {start_nos:?}, expected 1, 2, 3 in enqueue order"
    );
    for (k, j) in jobs.iter().enumerate() {
        ensure!(srv, j.attempt == 1, "job {k} attempt {}", j.attempt);
        let s = millis(j.started_at.as_deref().unwrap());
        let f = millis(j.finished_at.as_deref().unwrap());
        ensure!(srv, s <= f, "job {k} finished before it started");
        if k > 0 {
            let prev_f = millis(jobs[k - 1].finished_at.as_deref().unwrap());
            ensure!(
                srv,
                prev_f <= s,
                "job {k} started at {} before job {} finished at {}",
                j.started_at.as_deref().unwrap(),
                k - 1,
                jobs[k - 1].finished_at.as_deref().unwrap()
            );
        }
    }
}

/// Contract §2: 10,000 jobs accepted concurrently from 32 clients into a
/// concurrency-1 queue start in exactly `seq` order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_concurrent_enqueues_drain_in_exact_seq_order() {
    const N: usize = 10_000;
    const CLIENTS: usize = 32;
    const Q: &str = "fifo";
    let srv = TestServer::start().await;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CLIENTS {
        let client = Client::new(srv.url(), None);
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in (t..N).step_by(CLIENTS) {
                let id = format!("fifo-{t:02}-{i:05}");
                let out = client
                    .enqueue(Q, &job_req(&id, None, json!({ "i": i })))
                    .await
                    .map_err(|e| format!("enqueue {id}: {e}"))?;
                if !out.created || out.value.id != id {
                    return Err(format!("enqueue {id}: unexpected answer {:?}", out.value));
                }
                acks.push((id, out.value.seq));
            }
            Ok::<_, String>(acks)
        }));
    }
    let mut acks: Vec<(String, i64)> = Vec::with_capacity(N);
    for (t, task) in tasks.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .unwrap_or_else(|_| srv.fail(format!("client {t} did not finish within 120 s")))
            .expect("client task panicked");
        let mine = r.unwrap_or_else(|e| srv.fail(e));
        ensure!(
            srv,
            mine.windows(2).all(|w| w[0].1 < w[1].1),
            "client {t}: its sequential enqueues got non-increasing seqs"
        );
        acks.extend(mine);
    }
    let enqueue_time = t0.elapsed();
    ensure!(srv, acks.len() == N, "{} acks, expected {N}", acks.len());
    let seq_set: HashSet<i64> = acks.iter().map(|a| a.1).collect();
    ensure!(srv, seq_set.len() == N, "acknowledged seqs are not unique");
    let id_set: HashSet<&str> = acks.iter().map(|a| a.0.as_str()).collect();
    ensure!(srv, id_set.len() == N, "ids not unique");
    acks.sort_by_key(|a| a.1);
    let expected: Vec<i64> = acks.iter().map(|a| a.1).collect();

    // Drain with one worker loop: claim, then complete + claim_next.
    let c = srv.client();
    let t1 = Instant::now();
    let drain_deadline = t1 + Duration::from_secs(150);
    let mut observed: Vec<(String, i64)> = Vec::with_capacity(N);
    let mut lease: Option<LeaseView> = None;
    while observed.len() < N {
        if Instant::now() > drain_deadline {
            srv.fail(format!("drain stuck after {} jobs", observed.len()));
        }
        let l = match lease.take() {
            Some(l) => l,
            None => {
                let mut r = c
                    .claim(Q, &claim_req("drain", 1, 1000))
                    .await
                    .unwrap_or_else(|e| srv.fail(format!("claim: {e}")));
                ensure!(
                    srv,
                    r.leases.len() <= 1,
                    "claim max 1 gave {}",
                    r.leases.len()
                );
                match r.leases.pop() {
                    Some(l) => l,
                    None => continue,
                }
            }
        };
        ensure!(
            srv,
            l.job.attempt == 1 && l.job.state == "running",
            "lease of {}: attempt {} state {}",
            l.job.id,
            l.job.attempt,
            l.job.state
        );
        observed.push((l.job.id.clone(), l.job.seq));
        let r = c
            .complete(
                &l.job.id,
                &CompleteRequest {
                    token: l.token.clone(),
                    result: None,
                    claim_next: Some(claim_req("drain", 1, 0)),
                },
            )
            .await
            .unwrap_or_else(|e| srv.fail(format!("complete {}: {e}", l.job.id)));
        ensure!(srv, r.job.state == "succeeded", "complete: {:?}", r.job);
        let mut next = r.leases.unwrap_or_default();
        ensure!(srv, next.len() <= 1, "claim_next max 1 gave {}", next.len());
        lease = next.pop();
    }
    let drain_time = t1.elapsed();
    let left = c.claim(Q, &claim_req("drain", 1, 0)).await.unwrap();
    ensure!(
        srv,
        left.leases.is_empty(),
        "a job was left after the drain"
    );

    let observed_seqs: Vec<i64> = observed.iter().map(|o| o.1).collect();
    let inversions = observed_seqs.windows(2).filter(|w| w[0] > w[1]).count();
    ensure!(
        srv,
        inversions == 0 && observed_seqs == expected,
        "worker saw {inversions} inversions; first difference at {:?}",
        observed_seqs
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
    );
    let observed_ids: Vec<&str> = observed.iter().map(|o| o.0.as_str()).collect();
    let expected_ids: Vec<&str> = acks.iter().map(|a| a.0.as_str()).collect();
    ensure!(
        srv,
        observed_ids == expected_ids,
        "drain id order differs from seq order"
    );

    // The server's own audit: start_no order is seq order.
    let listed = srv.list_all(Q).await;
    support::check_listing(&srv, &listed);
    ensure!(srv, listed.len() == N, "listing has {} jobs", listed.len());
    let acked: HashMap<&str, i64> = acks.iter().map(|a| (a.0.as_str(), a.1)).collect();
    for j in &listed {
        ensure!(
            srv,
            acked.get(j.id.as_str()) == Some(&j.seq),
            "job {} listed with seq {}, acknowledged {:?}",
            j.id,
            j.seq,
            acked.get(j.id.as_str())
        );
        ensure!(
            srv,
            j.state == "succeeded" && j.attempt == 1 && j.start_no.is_some(),
            "job {} after drain: {} attempt {} start_no {:?}",
            j.id,
            j.state,
            j.attempt,
            j.start_no
        );
    }
    let mut by_start: Vec<(i64, i64)> = listed
        .iter()
        .map(|j| (j.start_no.unwrap(), j.seq))
        .collect();
    by_start.sort();
    ensure!(
        srv,
        by_start.windows(2).all(|w| w[0].0 < w[1].0),
        "start_no not unique"
    );
    let server_order: Vec<i64> = by_start.iter().map(|p| p.1).collect();
    let inversions = server_order.windows(2).filter(|w| w[0] > w[1]).count();
    ensure!(
        srv,
        inversions == 0 && server_order == expected,
        "server start order (by start_no) has {inversions} inversions"
    );
    eprintln!("10k FIFO: enqueue {enqueue_time:?}, drain {drain_time:?}");
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ev {
    /// Logged after the claim answered (the server started the job before).
    Start(usize),
    /// Logged before the complete was sent (the server finishes it after).
    End(usize),
}

/// Contract §2, ordering keys: 100 keys × 50 jobs on a concurrency-8 queue.
/// Per key the jobs run one at a time in `seq` order; the queue never runs
/// more than 8; different keys do run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_jobs_run_in_order_per_key_and_in_parallel_across_keys() {
    const KEYS: usize = 100;
    const PER_KEY: usize = 50;
    const N: usize = KEYS * PER_KEY;
    const CONCURRENCY: u32 = 8;
    // More pullers than the queue's concurrency, so the server's cap (not the
    // number of pullers) is what keeps running jobs at 8 or fewer.
    const WORKERS: usize = 10;
    const Q: &str = "keyed";
    let srv = TestServer::start().await;
    let c = srv.client();
    srv.configure(
        Q,
        QueueConfigRequest {
            concurrency: Some(CONCURRENCY),
            ..Default::default()
        },
    )
    .await;

    // Job index = j * KEYS + k: round-robin over keys.
    let id_of = |k: usize, j: usize| format!("k{k:03}-j{j:02}");
    let mut all = Vec::with_capacity(N);
    for j in 0..PER_KEY {
        for k in 0..KEYS {
            all.push(job_req(
                &id_of(k, j),
                Some(&format!("key-{k}")),
                json!({ "k": k, "j": j }),
            ));
        }
    }
    let mut seqs = Vec::with_capacity(N);
    for chunk in all.chunks(1000) {
        let out = c
            .enqueue_batch(
                Q,
                &BatchRequest {
                    jobs: chunk.to_vec(),
                },
            )
            .await
            .unwrap_or_else(|e| srv.fail(format!("batch: {e}")));
        ensure!(srv, out.created, "batch not 202");
        ensure!(
            srv,
            out.value.len() == chunk.len(),
            "batch answered {} jobs",
            out.value.len()
        );
        for (req, job) in chunk.iter().zip(&out.value) {
            ensure!(
                srv,
                Some(&job.id) == req.id.as_ref(),
                "batch answer out of order"
            );
            seqs.push(job.seq);
        }
    }
    ensure!(
        srv,
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "batched jobs did not get consecutive seqs in array order"
    );
    let index: Arc<HashMap<String, usize>> =
        Arc::new((0..N).map(|i| (id_of(i % KEYS, i / KEYS), i)).collect());

    let log: Arc<Mutex<Vec<Ev>>> = Arc::new(Mutex::new(Vec::with_capacity(2 * N)));
    let done = Arc::new(AtomicUsize::new(0));
    let max_seen_running = Arc::new(AtomicUsize::new(0));
    let stop_monitor = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The server's own count of running jobs, sampled while the workers run.
    let monitor = {
        let c = c.clone();
        let max_seen = max_seen_running.clone();
        let stop = stop_monitor.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(q) = c.queue(Q).await {
                    max_seen.fetch_max(q.counts.running as usize, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(150);
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let c = Client::new(srv.url(), None);
        let log = log.clone();
        let done = done.clone();
        let index = index.clone();
        workers.push(tokio::spawn(async move {
            let name = format!("w{w}");
            let mut lease: Option<LeaseView> = None;
            loop {
                if done.load(Ordering::SeqCst) >= N {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "{name}: timed out with {} jobs done",
                        done.load(Ordering::SeqCst)
                    ));
                }
                let l = match lease.take() {
                    Some(l) => l,
                    None => {
                        let mut r = c
                            .claim(Q, &claim_req(&name, 1, 200))
                            .await
                            .map_err(|e| format!("{name}: claim: {e}"))?;
                        if r.leases.len() > 1 {
                            return Err(format!("claim max 1 gave {}", r.leases.len()));
                        }
                        match r.leases.pop() {
                            Some(l) => l,
                            None => continue,
                        }
                    }
                };
                let i = *index
                    .get(&l.job.id)
                    .ok_or_else(|| format!("unknown job {}", l.job.id))?;
                log.lock().unwrap().push(Ev::Start(i));
                if l.job.attempt != 1 {
                    return Err(format!("{} attempt {}", l.job.id, l.job.attempt));
                }
                tokio::time::sleep(Duration::from_millis(1 + (i % 3) as u64)).await;
                log.lock().unwrap().push(Ev::End(i));
                let r = c
                    .complete(
                        &l.job.id,
                        &CompleteRequest {
                            token: l.token.clone(),
                            result: None,
                            claim_next: Some(claim_req(&name, 1, 0)),
                        },
                    )
                    .await
                    .map_err(|e| format!("{name}: complete {}: {e}", l.job.id))?;
                if r.job.state != "succeeded" {
                    return Err(format!("complete {}: state {}", l.job.id, r.job.state));
                }
                done.fetch_add(1, Ordering::SeqCst);
                let mut next = r.leases.unwrap_or_default();
                if next.len() > 1 {
                    return Err(format!("claim_next max 1 gave {}", next.len()));
                }
                lease = next.pop();
            }
        }));
    }
    for w in workers {
        let r = w.await.expect("worker task panicked");
        if let Err(e) = r {
            srv.fail(e);
        }
    }
    let elapsed = t0.elapsed();
    stop_monitor.store(true, Ordering::SeqCst);
    monitor.await.unwrap();

    // Replay the event log.
    let log = log.lock().unwrap().clone();
    ensure!(
        srv,
        log.len() == 2 * N,
        "{} events, expected {}",
        log.len(),
        2 * N
    );
    let mut next_of_key = vec![0usize; KEYS];
    let mut busy = [false; KEYS];
    let mut running = 0usize;
    let mut max_running = 0usize;
    let mut max_keys_at_once = 0usize;
    for (n, ev) in log.iter().enumerate() {
        match *ev {
            Ev::Start(i) => {
                let (k, j) = (i % KEYS, i / KEYS);
                ensure!(
                    srv,
                    !busy[k],
                    "event {n}: {} started while job {} of its key was still running",
                    id_of(k, j),
                    next_of_key[k].saturating_sub(1)
                );
                ensure!(
                    srv,
                    next_of_key[k] == j,
                    "event {n}: key {k} started job {j}, expected job {} (seq order)",
                    next_of_key[k]
                );
                busy[k] = true;
                running += 1;
                max_running = max_running.max(running);
                max_keys_at_once = max_keys_at_once.max(busy.iter().filter(|b| **b).count());
            }
            Ev::End(i) => {
                let k = i % KEYS;
                ensure!(srv, busy[k], "event {n}: end of a job not started");
                busy[k] = false;
                next_of_key[k] += 1;
                running -= 1;
            }
        }
    }
    ensure!(
        srv,
        next_of_key.iter().all(|n| *n == PER_KEY),
        "not every job of every key ran"
    );
    ensure!(
        srv,
        max_running <= CONCURRENCY as usize,
        "{max_running} jobs ran at once on a concurrency-{CONCURRENCY} queue"
    );
    ensure!(
        srv,
        max_keys_at_once >= 2,
        "no parallelism across keys observed (max {max_keys_at_once} at once)"
    );
    let server_max = max_seen_running.load(Ordering::SeqCst);
    ensure!(
        srv,
        server_max <= CONCURRENCY as usize,
        "server reported {server_max} running on a concurrency-{CONCURRENCY} queue"
    );

    // The server's audit: per key, start_no increases with seq.
    let listed = srv.list_all(Q).await;
    support::check_listing(&srv, &listed);
    ensure!(srv, listed.len() == N, "listing has {} jobs", listed.len());
    let mut last_start: HashMap<String, (i64, String)> = HashMap::new();
    for j in &listed {
        ensure!(
            srv,
            j.state == "succeeded" && j.attempt == 1,
            "job {}: {} attempt {}",
            j.id,
            j.state,
            j.attempt
        );
        let key = j.key.clone().unwrap();
        let s = j.start_no.unwrap();
        if let Some((prev, prev_id)) = last_start.get(&key) {
            ensure!(
                srv,
                *prev < s,
                "key {key}: {} (start_no {s}) started before earlier {prev_id} (start_no {prev})",
                j.id
            );
        }
        last_start.insert(key, (s, j.id.clone()));
    }
    eprintln!(
        "keys: {N} jobs in {elapsed:?}, max running {max_running} (server sampled {server_max}), max keys at once {max_keys_at_once}"
    );
}
