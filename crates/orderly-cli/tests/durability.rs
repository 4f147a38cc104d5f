//! End-to-end durability and delivery tests of the real `orderly` binary
//! (contract sections 2 and 3): SIGKILL of the server under load loses no
//! acknowledged job and keeps every `seq`; a job whose worker died reruns in
//! its original place; a stale worker's report is refused with `409`.

#[macro_use]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::proto::{CompleteRequest, FailRequest, HeartbeatRequest, QueueConfigRequest};
use support::{claim_req, job_req, Client, ClientError, TestServer};

fn lease_1s() -> QueueConfigRequest {
    QueueConfigRequest {
        lease_ms: Some(1000),
        ..Default::default()
    }
}

fn expect_stale(srv: &TestServer, what: &str, r: Result<impl std::fmt::Debug, ClientError>) {
    match r {
        Err(ClientError::Api {
            status: 409, code, ..
        }) if code == "stale_lease" => {}
        other => srv.fail(format!("{what}: expected 409 stale_lease, got {other:?}")),
    }
}

/// Contract §3: a SIGKILL of the server while 16 clients enqueue loses no
/// acknowledged job, keeps every acknowledged `seq`, and `seq`s keep rising
/// after the restart. A job leased before the crash reruns first (attempt 2)
/// and its old lease is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_server_loses_no_acknowledged_job() {
    sigkill_during_a_storm(TestServer::start().await).await;
}

/// The same with `--durability accepted`: claims and reports are not fsynced
/// on their own, which must change nothing when only the process dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_with_accepted_durability_loses_no_acknowledged_job() {
    sigkill_during_a_storm(TestServer::start_with_args(None, &["--durability", "accepted"]).await)
        .await;
}

async fn sigkill_during_a_storm(mut srv: TestServer) {
    const CLIENTS: usize = 16;
    const Q: &str = "storm";
    const HELD: &str = "held";
    let c = srv.client();

    // A job leased (and not reported) when the server dies.
    srv.configure(HELD, lease_1s()).await;
    for i in 1..=3 {
        c.enqueue(HELD, &job_req(&format!("h{i}"), None, json!({ "h": i })))
            .await
            .unwrap_or_else(|e| srv.fail(format!("enqueue h{i}: {e}")));
    }
    let mut first = c.claim(HELD, &claim_req("doomed", 1, 0)).await.unwrap();
    ensure!(srv, first.leases.len() == 1, "claim of h1: {first:?}");
    let old = first.leases.pop().unwrap();
    ensure!(
        srv,
        old.job.id == "h1" && old.job.attempt == 1,
        "first claim: {} attempt {}",
        old.job.id,
        old.job.attempt
    );

    // The storm: 16 clients, each a sequential loop of unique ids.
    let acks: Arc<Mutex<Vec<(String, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..CLIENTS {
        let client = Client::new(srv.url(), None);
        let acks = acks.clone();
        let count = count.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            let mut bad = None;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("s{t:02}-{i:06}");
                i += 1;
                match client
                    .enqueue(Q, &job_req(&id, None, json!({ "t": t, "i": i })))
                    .await
                {
                    Ok(out) => {
                        if !out.created || out.value.id != id {
                            bad = Some(format!("{id}: unexpected answer {:?}", out.value));
                            break;
                        }
                        acks.lock().unwrap().push((id, out.value.seq));
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    // The server died under this request: stop this client.
                    Err(ClientError::Transport(_)) => break,
                    Err(e) => {
                        bad = Some(format!("{id}: {e}"));
                        break;
                    }
                }
            }
            bad
        }));
    }
    let t0 = Instant::now();
    let storm_ok = support::wait_until(t0 + Duration::from_secs(30), || {
        let n = count.load(Ordering::SeqCst);
        let elapsed = t0.elapsed();
        async move { n >= 2000 || (elapsed >= Duration::from_millis(1500) && n > 0) }
    })
    .await;
    ensure!(srv, storm_ok, "no enqueue acknowledged within 30 s");
    // Requests are in flight right now.
    srv.kill9();
    let killed_at = count.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap_or_else(|_| srv.fail("a client hung after the kill".into()))
            .expect("client task panicked");
        if let Some(e) = r {
            srv.fail(format!("client error before the kill: {e}"));
        }
    }
    let acks = acks.lock().unwrap().clone();
    ensure!(
        srv,
        acks.len() >= killed_at && !acks.is_empty(),
        "acks went missing"
    );

    srv.restart().await;

    // Every acknowledged job is there, with its seq; no duplicates; seq order.
    let listed = srv.list_all(Q).await;
    support::check_listing(&srv, &listed);
    let by_id: HashMap<&str, i64> = listed.iter().map(|j| (j.id.as_str(), j.seq)).collect();
    let mut lost = Vec::new();
    for (id, seq) in &acks {
        match by_id.get(id.as_str()) {
            Some(s) if s == seq => {}
            other => lost.push(format!("{id}: acked seq {seq}, after restart {other:?}")),
        }
    }
    ensure!(
        srv,
        lost.is_empty(),
        "{} of {} acknowledged jobs lost or changed, e.g. {:?}",
        lost.len(),
        acks.len(),
        &lost[..lost.len().min(5)]
    );
    for j in &listed {
        ensure!(
            srv,
            j.state == "queued" && j.attempt == 0,
            "job {} after restart: {} attempt {}",
            j.id,
            j.state,
            j.attempt
        );
    }
    let held_before = srv.list_all(HELD).await;
    let max_before = listed
        .iter()
        .chain(&held_before)
        .map(|j| j.seq)
        .max()
        .unwrap();
    let mut prev = max_before;
    for i in 0..5 {
        let out = c
            .enqueue(Q, &job_req(&format!("after-{i}"), None, json!(i)))
            .await
            .unwrap_or_else(|e| srv.fail(format!("enqueue after restart: {e}")));
        ensure!(
            srv,
            out.created && out.value.seq > prev,
            "enqueue after restart got seq {}, not above {prev} (max before the crash {max_before})",
            out.value.seq
        );
        prev = out.value.seq;
    }

    // The leased job: back in its place, first in line, attempt 2.
    let mut again = c
        .claim(HELD, &claim_req("survivor", 1, 5000))
        .await
        .unwrap_or_else(|e| srv.fail(format!("claim after restart: {e}")));
    ensure!(
        srv,
        again.leases.len() == 1,
        "no lease within 5 s after the crash (old lease was 1 s)"
    );
    let new = again.leases.pop().unwrap();
    ensure!(
        srv,
        new.job.id == "h1" && new.job.attempt == 2,
        "after restart the first lease was {} attempt {}, expected h1 attempt 2",
        new.job.id,
        new.job.attempt
    );
    for id in ["h2", "h3"] {
        let j = srv.job(id).await;
        ensure!(
            srv,
            j.state == "queued" && j.attempt == 0,
            "{id} moved before h1: {} attempt {}",
            j.state,
            j.attempt
        );
    }
    expect_stale(
        &srv,
        "complete with the pre-crash token",
        c.complete(
            "h1",
            &CompleteRequest {
                token: old.token.clone(),
                result: Some(json!("stale")),
                claim_next: None,
            },
        )
        .await,
    );
    let done = c
        .complete(
            "h1",
            &CompleteRequest {
                token: new.token.clone(),
                result: Some(json!("ok")),
                claim_next: Some(claim_req("survivor", 1, 0)),
            },
        )
        .await
        .unwrap_or_else(|e| srv.fail(format!("complete with the new token: {e}")));
    ensure!(
        srv,
        done.job.state == "succeeded" && done.job.result == Some(json!("ok")),
        "h1 after complete: {:?}",
        done.job
    );
    let next = done.leases.unwrap_or_default();
    ensure!(
        srv,
        next.len() == 1 && next[0].job.id == "h2" && next[0].job.attempt == 1,
        "after h1 the next lease was {:?}, expected h2",
        next.iter().map(|l| &l.job.id).collect::<Vec<_>>()
    );
    ensure!(
        srv,
        next[0].job.start_no > new.job.start_no,
        "h2 start_no {:?} not after h1's {:?}",
        next[0].job.start_no,
        new.job.start_no
    );
    eprintln!(
        "kill -9: {} acks ({} when killed) survived; {} jobs listed",
        acks.len(),
        killed_at,
        listed.len()
    );
}

/// Contract §2/§3: a worker process killed mid-job: its job is the next to
/// start (attempt 2), before the later jobs of its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_of_a_killed_worker_reruns_first() {
    const Q: &str = "crashy";
    let srv = TestServer::start().await;
    let c = srv.client();
    srv.configure(Q, lease_1s()).await;
    for i in 1..=3 {
        c.enqueue(Q, &job_req(&format!("j{i}"), None, json!({ "i": i })))
            .await
            .unwrap_or_else(|e| srv.fail(format!("enqueue j{i}: {e}")));
    }
    let mut worker = srv.worker(Q, &[], &["sh", "-c", "sleep 30"]);
    srv.wait_for(Duration::from_secs(20), "j1 running", || {
        let c = c.clone();
        async move { c.job("j1").await.is_ok_and(|j| j.state == "running") }
    })
    .await;
    let j1 = srv.job("j1").await;
    ensure!(srv, j1.attempt == 1, "j1 attempt {}", j1.attempt);
    worker.kill9();

    let mut r = c
        .claim(Q, &claim_req("rescuer", 1, 5000))
        .await
        .unwrap_or_else(|e| srv.fail(format!("claim: {e}")));
    ensure!(
        srv,
        r.leases.len() == 1,
        "nothing claimable within 5 s of the worker's death (lease 1 s)\n--- worker log ---\n{}",
        worker.log()
    );
    let l = r.leases.pop().unwrap();
    ensure!(
        srv,
        l.job.id == "j1" && l.job.attempt == 2,
        "first lease after the crash: {} attempt {}, expected j1 attempt 2",
        l.job.id,
        l.job.attempt
    );
    ensure!(
        srv,
        l.job.start_no > j1.start_no,
        "start_no did not advance: {:?} then {:?}",
        j1.start_no,
        l.job.start_no
    );
    for id in ["j2", "j3"] {
        let j = srv.job(id).await;
        ensure!(
            srv,
            j.state == "queued" && j.attempt == 0,
            "{id} moved before j1 was rerun: {} attempt {}",
            j.state,
            j.attempt
        );
    }
    worker.kill_group();
}

/// Contract §3: when a lease expires and another worker takes the job, the
/// first worker's late heartbeat, complete and fail get `409 stale_lease`;
/// the second worker's complete succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_worker_cannot_report_after_its_lease_expired() {
    const Q: &str = "stale";
    let srv = TestServer::start().await;
    let c = srv.client();
    srv.configure(Q, lease_1s()).await;
    c.enqueue(Q, &job_req("only", None, json!("x")))
        .await
        .unwrap();
    c.enqueue(Q, &job_req("later", None, json!("y")))
        .await
        .unwrap();

    let a = c
        .claim(Q, &claim_req("worker-a", 1, 0))
        .await
        .unwrap()
        .leases
        .pop()
        .unwrap_or_else(|| srv.fail("worker A got no lease".into()));
    ensure!(
        srv,
        a.job.id == "only" && a.job.attempt == 1,
        "A: {:?}",
        a.job
    );
    // B long-polls; it gets the job once A's lease (1 s) has expired.
    let t0 = Instant::now();
    let b = c
        .claim(Q, &claim_req("worker-b", 1, 5000))
        .await
        .unwrap()
        .leases
        .pop()
        .unwrap_or_else(|| srv.fail("worker B got no lease within 5 s".into()));
    ensure!(
        srv,
        b.job.id == "only" && b.job.attempt == 2 && b.token != a.token,
        "B got {} attempt {} (expected the expired job, attempt 2)",
        b.job.id,
        b.job.attempt
    );
    ensure!(
        srv,
        t0.elapsed() >= Duration::from_millis(500),
        "B got the job after {:?}, before A's lease could have expired",
        t0.elapsed()
    );
    ensure!(
        srv,
        b.job.worker.as_deref() == Some("worker-b"),
        "worker shown: {:?}",
        b.job.worker
    );

    expect_stale(
        &srv,
        "A's late complete",
        c.complete(
            "only",
            &CompleteRequest {
                token: a.token.clone(),
                result: Some(json!("from A")),
                claim_next: None,
            },
        )
        .await,
    );
    expect_stale(
        &srv,
        "A's late heartbeat",
        c.heartbeat(
            "only",
            &HeartbeatRequest {
                token: a.token.clone(),
                progress: None,
            },
        )
        .await,
    );
    expect_stale(
        &srv,
        "A's late fail",
        c.fail(
            "only",
            &FailRequest {
                token: a.token.clone(),
                error: json!("from A"),
                retry: Some(false),
                retry_after_ms: None,
                claim_next: None,
            },
        )
        .await,
    );
    // A's refused reports changed nothing.
    let j = srv.job("only").await;
    ensure!(
        srv,
        j.state == "running" && j.attempt == 2,
        "after A's refused reports: {} attempt {}",
        j.state,
        j.attempt
    );
    let hb = c
        .heartbeat(
            "only",
            &HeartbeatRequest {
                token: b.token.clone(),
                progress: Some(json!({"pct": 50})),
            },
        )
        .await
        .unwrap_or_else(|e| srv.fail(format!("B's heartbeat: {e}")));
    ensure!(
        srv,
        !hb.cancel_requested,
        "cancel_requested on B's heartbeat"
    );
    let done = c
        .complete(
            "only",
            &CompleteRequest {
                token: b.token.clone(),
                result: Some(json!("from B")),
                claim_next: None,
            },
        )
        .await
        .unwrap_or_else(|e| srv.fail(format!("B's complete: {e}")));
    ensure!(
        srv,
        done.job.state == "succeeded"
            && done.job.attempt == 2
            && done.job.result == Some(json!("from B")),
        "after B's complete: {:?}",
        done.job
    );
    // B sending its report again (as after a lost answer) changes nothing:
    // the answer is the job as B's first report left it.
    let again = c
        .complete(
            "only",
            &CompleteRequest {
                token: b.token.clone(),
                result: None,
                claim_next: None,
            },
        )
        .await
        .unwrap_or_else(|e| srv.fail(format!("B's repeated complete: {e}")));
    ensure!(
        srv,
        again.job == done.job,
        "a repeated report changed the job: {:?} then {:?}",
        done.job,
        again.job
    );
    // But B's finished lease cannot be renewed.
    expect_stale(
        &srv,
        "B's heartbeat after its complete",
        c.heartbeat(
            "only",
            &HeartbeatRequest {
                token: b.token.clone(),
                progress: None,
            },
        )
        .await,
    );
    let later = srv.job("later").await;
    ensure!(
        srv,
        later.state == "queued" && later.attempt == 0,
        "later job: {} attempt {}",
        later.state,
        later.attempt
    );
}
