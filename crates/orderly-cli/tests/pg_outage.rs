//! PostgreSQL going away under three real `orderly serve` nodes, on a
//! private throwaway cluster (`support::pg_cluster`) that the test stops
//! with `pg_ctl stop -m immediate` and starts again: every write the nodes
//! could not commit answers 503 (never a false 2xx, never a hang), nothing
//! acknowledged is lost or reordered, `/healthz` tells, and the same node
//! processes recover by themselves. A wrong password is a clear error at
//! start. Missing PostgreSQL binaries fail these tests, never skip them.

#[macro_use]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::nodes::{all_starts, inversions, serve_fails_at_start, start_nodes};
use support::pg_cluster::{PgCluster, PgClusterOptions};
use support::proto::{AttemptOutcome, CompleteRequest, JobState, QueueConfigRequest};
use support::{claim_req, job_req, ClientError, TestServer};

/// The longest any single request may take while the database is away: the
/// store's own bound (`op_timeout`, 10 s) plus room for a loaded machine.
/// Past it a request counts as a hang.
const HANG: Duration = Duration::from_secs(30);

/// An error the contract allows while the database is away: `503`, or no
/// answer at all (the connection dropped). Anything else fails the test.
fn is_outage(e: &ClientError) -> bool {
    matches!(e.status(), None | Some(503))
}

/// Remembers the slowest request (to prove none hung).
fn note_latency(slowest: &AtomicU64, since: Instant) {
    slowest.fetch_max(since.elapsed().as_millis() as u64, Ordering::SeqCst);
}

/// Three nodes on a private cluster; a serial queue fed through all three
/// and drained by workers on all three; PostgreSQL stopped at once for 5 s
/// mid-run and started again. Enqueuers and workers retry what failed with
/// 503 or no answer (an enqueue with the same id, a report with the same
/// token). Afterwards: the same three processes are healthy again, every
/// acknowledged job succeeded exactly once, the start log has zero
/// inversions (a rerun in place of a lease lost in the outage is not one),
/// and each enqueuer's acknowledged jobs have increasing `seq`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_for_five_seconds_under_load_loses_and_reorders_nothing() {
    const Q: &str = "outage";
    const PER_ENQUEUER: usize = 250;
    const TOTAL: usize = 3 * PER_ENQUEUER;
    let mut cluster = PgCluster::start_new(PgClusterOptions::default()).await;
    let nodes = start_nodes(3, &cluster.url(), "orderly").await;
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid()).collect();
    nodes[0]
        .configure(
            Q,
            QueueConfigRequest {
                concurrency: Some(1),
                max_attempts: Some(20),
                ..Default::default()
            },
        )
        .await;
    let t0 = Instant::now();
    let slowest = Arc::new(AtomicU64::new(0));
    let outage_errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Per enqueuer, (id, seq) of every acknowledged enqueue, in order.
    let acked = Arc::new(Mutex::new(vec![Vec::<(String, i64)>::new(); 3]));
    let mut tasks = Vec::new();
    for e in 0..3usize {
        let (nodes, acked, slowest, errors) = (
            nodes.clone(),
            acked.clone(),
            slowest.clone(),
            outage_errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_ENQUEUER {
                let id = format!("e{e}-{i:04}");
                let req = job_req(&id, None, serde_json::json!({ "e": e, "i": i }));
                let mut n = e + i;
                let seq = loop {
                    let node = &nodes[n % 3];
                    let sent = Instant::now();
                    let r = node.client().enqueue(Q, &req).await;
                    note_latency(&slowest, sent);
                    match r {
                        Ok(r) => break r.value.seq,
                        Err(err) if is_outage(&err) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            n += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(err) => node.fail(format!("enqueue {id}: {err}")),
                    }
                };
                acked.lock().unwrap()[e].push((id, seq));
                // About 100 enqueues a second in all: they go on through
                // the outage and after it.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..2 {
            let (node, done, stop) = (node.clone(), done.clone(), stop.clone());
            let (slowest, errors) = (slowest.clone(), outage_errors.clone());
            tasks.push(tokio::spawn(async move {
                let c = node.client();
                let name = format!("n{n}w{w}");
                while !stop.load(Ordering::SeqCst) {
                    let sent = Instant::now();
                    let claimed = c
                        .claim(
                            Q,
                            &support::proto::ClaimRequest {
                                lease_ms: Some(3000),
                                ..claim_req(&name, 1, 200)
                            },
                        )
                        .await;
                    note_latency(&slowest, sent);
                    let leases = match claimed {
                        Ok(r) => r.leases,
                        Err(e) if is_outage(&e) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        Err(e) => node.fail(format!("{name}: claim: {e}")),
                    };
                    for l in leases {
                        let report = CompleteRequest {
                            token: l.token.clone(),
                            result: None,
                            claim_next: None,
                        };
                        loop {
                            let sent = Instant::now();
                            let r = c.complete(&l.job.id, &report).await;
                            note_latency(&slowest, sent);
                            match r {
                                Ok(_) => {
                                    done.fetch_add(1, Ordering::SeqCst);
                                    break;
                                }
                                Err(e) if is_outage(&e) => {
                                    errors.fetch_add(1, Ordering::SeqCst);
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                                // The lease expired while the database was
                                // away: the job reruns (in place).
                                Err(e) if e.code() == Some("stale_lease") => break,
                                Err(e) => node.fail(format!("{name}: complete {}: {e}", l.job.id)),
                            }
                        }
                    }
                }
            }));
        }
    }

    // A third of the way in, PostgreSQL stops at once for 5 s.
    let a = nodes[0].clone();
    a.wait_for(Duration::from_secs(120), "a third of the jobs done", || {
        let d = done.load(Ordering::SeqCst);
        async move { d >= TOTAL / 3 }
    })
    .await;
    let acked_before = acked.lock().unwrap().iter().map(Vec::len).sum::<usize>();
    cluster.stop_immediate();
    let down_at = Instant::now();
    let mut told = HashSet::new();
    while down_at.elapsed() < Duration::from_secs(5) {
        for (n, node) in nodes.iter().enumerate() {
            let sent = Instant::now();
            let h = node.client().health().await;
            note_latency(&slowest, sent);
            match h {
                Ok(h) if h.status == "ok" => {}
                Ok(h) => node.fail(format!("/healthz answered 2xx but {h:?}")),
                Err(e) if e.status() == Some(503) => {
                    told.insert(n);
                }
                Err(e) => node.fail(format!("/healthz while the database is away: {e}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let acked_during = acked.lock().unwrap().iter().map(Vec::len).sum::<usize>() - acked_before;
    cluster.start().await;
    ensure!(
        a,
        !told.is_empty(),
        "no node's /healthz said 503 during a 5 s outage"
    );

    // The same processes come back by themselves.
    for node in &nodes {
        node.wait_for(Duration::from_secs(60), "/healthz ok again", || {
            let c = node.client();
            async move { matches!(c.health().await, Ok(h) if h.status == "ok") }
        })
        .await;
    }
    for t in tasks.drain(..3) {
        t.await.expect("enqueuer");
    }
    let total_acked: usize = acked.lock().unwrap().iter().map(Vec::len).sum();
    ensure!(
        a,
        total_acked == TOTAL,
        "{total_acked} enqueues acknowledged"
    );
    let jobs = a
        .wait_all_finished(Q, TOTAL, Duration::from_secs(120))
        .await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("worker");
    }
    for (node, pid) in nodes.iter().zip(&pids) {
        ensure!(
            node,
            node.pid() == *pid,
            "node restarted: pid {} was {pid}",
            node.pid()
        );
    }

    let listed: HashMap<&str, &support::proto::JobView> =
        jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let acked = acked.lock().unwrap().clone();
    for (e, mine) in acked.iter().enumerate() {
        for (id, seq) in mine {
            let Some(j) = listed.get(id.as_str()) else {
                a.fail(format!("acknowledged job {id} lost"));
            };
            ensure!(
                a,
                j.seq == *seq,
                "{id}: seq {} was acknowledged as {seq}",
                j.seq
            );
            ensure!(
                a,
                j.state == JobState::Succeeded,
                "{id} ended {:?}",
                j.state
            );
        }
        ensure!(
            a,
            mine.windows(2).all(|w| w[0].1 < w[1].1),
            "enqueuer {e}'s jobs are not in seq order"
        );
    }
    let mut reran = 0;
    for j in &jobs {
        let attempts = a.client().attempts(&j.id).await.expect("attempts").attempts;
        let wins = attempts
            .iter()
            .filter(|t| t.outcome == Some(AttemptOutcome::Succeeded))
            .count();
        ensure!(a, wins == 1, "{} succeeded {wins} times", j.id);
        reran += usize::from(attempts.len() > 1);
    }
    let log = all_starts(&a, Q).await;
    let inv = inversions(&log);
    ensure!(
        a,
        inv == 0,
        "{inv} start-order inversions across the outage"
    );
    let started: HashSet<&str> = log.iter().map(|s| s.job_id.as_str()).collect();
    ensure!(
        a,
        started.len() == TOTAL,
        "{} jobs in the start log",
        started.len()
    );
    let slowest = Duration::from_millis(slowest.load(Ordering::SeqCst));
    ensure!(a, slowest < HANG, "a request took {slowest:?}");
    println!(
        "PostgreSQL stopped 5 s under load on 3 nodes: {TOTAL} jobs, {} requests answered 503 or \
         dropped, {acked_during} enqueues acknowledged during the outage, {reran} jobs reran, \
         {} nodes said 503 on /healthz, slowest request {slowest:?}, {:.1} s in all",
        outage_errors.load(Ordering::SeqCst),
        told.len(),
        t0.elapsed().as_secs_f64()
    );
}

/// A connection string with the wrong password stops `orderly serve` at
/// start, before it listens, with PostgreSQL's own reason and without
/// printing the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_wrong_password_fails_at_start_saying_so() {
    let cluster = PgCluster::start_new(PgClusterOptions {
        password: Some("right-horse".into()),
    })
    .await;
    serve_fails_at_start(
        &cluster.url_with_password(Some("wrong-battery")),
        "password authentication failed",
        "wrong-battery",
    )
    .await;
    // The right password works on the same cluster.
    let srv = TestServer::start_with_args(None, &["--database-url", &cluster.url()]).await;
    let h = srv.client().health().await.expect("healthz");
    ensure!(srv, h.status == "ok", "healthz: {h:?}");
}
