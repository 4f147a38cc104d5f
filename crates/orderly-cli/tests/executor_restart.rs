//! Executors across a stop (contract §6: a server that restarts reruns the
//! jobs its own executors were running, in place, without waiting for their
//! leases): SIGTERM lets a running job finish within the grace period, or
//! kills it past it; kill -9 leaves an orphan that the next start kills
//! before it reruns the job, first in line, long before its lease expires.

mod support;

use std::path::Path;
use std::time::Duration;

use orderly_client::proto::{JobState, QueueConfigRequest};
use serde_json::json;
use support::*;

/// A job script: logs `start SEQ ATTEMPT PID`, then on its first attempt the
/// job `slow` sleeps `secs` (in a child whose pid goes to `SEQ.child`), else
/// finishes at once.
fn script(dir: &Path, secs: u32) -> String {
    let d = dir.display();
    format!(
        r#"echo "start $ORDERLY_SEQ $ORDERLY_ATTEMPT $$" >> {d}/starts.log
if [ "$ORDERLY_ATTEMPT" = 1 ] && grep -q slow; then sleep {secs} & echo $! > {d}/$ORDERLY_SEQ.child; wait; fi
echo "end $ORDERLY_SEQ" >> {d}/starts.log"#
    )
}

fn starts(dir: &Path) -> Vec<(i64, u32)> {
    std::fs::read_to_string(dir.join("starts.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"start"))
                .then(|| (f[1].parse().unwrap_or(-1), f[2].parse().unwrap_or(0)))
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) != Some("Z"))
        .unwrap_or(false)
}

/// Configures `q` (concurrency 1, a 60 s lease so that only an immediate
/// release can explain a quick rerun) and enqueues j1 (slow), j2, j3.
async fn setup(srv: &TestServer, secs: u32) -> Vec<i64> {
    let dir = srv.dir().to_path_buf();
    srv.configure(
        "q",
        QueueConfigRequest {
            lease_ms: Some(60_000),
            executor: Some(json!({"type": "command", "argv": ["sh", "-c", script(&dir, secs)]})),
            ..Default::default()
        },
    )
    .await;
    let jobs = vec![
        job_req("j1", None, json!({"slow": true})),
        job_req("j2", None, json!({})),
        job_req("j3", None, json!({})),
    ];
    let out = srv
        .client()
        .enqueue_batch("q", &orderly_client::proto::BatchRequest { jobs })
        .await
        .expect("enqueue");
    let seqs: Vec<i64> = out.value.iter().map(|j| j.seq).collect();
    let first = seqs[0];
    let child = srv.dir().join(format!("{first}.child"));
    srv.wait_for(Duration::from_secs(20), "j1 runs", || {
        let child = child.clone();
        async move { child.exists() }
    })
    .await;
    seqs
}

fn child_pid(srv: &TestServer, seq: i64) -> i32 {
    std::fs::read_to_string(srv.dir().join(format!("{seq}.child")))
        .expect("child pid")
        .trim()
        .parse()
        .expect("pid")
}

async fn all_succeeded(srv: &TestServer) {
    srv.wait_for(Duration::from_secs(20), "all three succeed", || async {
        let jobs = srv.list_all("q").await;
        jobs.len() == 3 && jobs.iter().all(|j| j.state == JobState::Succeeded)
    })
    .await;
}

/// SIGTERM within the grace period: the running job finishes and is
/// reported before the server exits; nothing reruns.
#[tokio::test]
async fn sigterm_lets_the_running_job_finish() {
    let mut srv = TestServer::start_with_args(None, &["--shutdown-grace", "20s"]).await;
    let seqs = setup(&srv, 2).await;
    srv.sigterm();
    let status = srv
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("server exits");
    assert!(status.success(), "clean exit: {status} {}", srv.log_tail());
    srv.restart().await;
    all_succeeded(&srv).await;
    let j1 = srv.job("j1").await;
    assert_eq!(
        j1.attempt, 1,
        "j1 finished before the server stopped: {j1:?}"
    );
    assert_eq!(
        starts(srv.dir()),
        vec![(seqs[0], 1), (seqs[1], 1), (seqs[2], 1)]
    );
}

/// SIGTERM past the grace period: the job's process group is killed, the
/// server exits, and on the next start j1 reruns first, as attempt 2.
#[tokio::test]
async fn sigterm_past_the_grace_period_kills_and_reruns_in_place() {
    let mut srv = TestServer::start_with_args(None, &["--shutdown-grace", "1s"]).await;
    let seqs = setup(&srv, 300).await;
    let child = child_pid(&srv, seqs[0]);
    srv.sigterm();
    srv.wait_exit(Duration::from_secs(30))
        .await
        .expect("server exits");
    assert!(
        !alive(child),
        "the job's child {child} outlived the shutdown"
    );
    srv.restart().await;
    all_succeeded(&srv).await;
    let j1 = srv.job("j1").await;
    assert_eq!(j1.attempt, 2, "{j1:?}");
    assert_eq!(
        starts(srv.dir()),
        vec![(seqs[0], 1), (seqs[0], 2), (seqs[1], 1), (seqs[2], 1)]
    );
}

/// kill -9 mid-job: the child outlives the server (an orphan); the next
/// start kills it and reruns j1 at once (well before its 60 s lease would
/// expire), before j2 and j3.
#[tokio::test]
async fn kill9_mid_job_reaps_the_orphan_and_reruns_in_place() {
    let mut srv = TestServer::start().await;
    let seqs = setup(&srv, 300).await;
    let child = child_pid(&srv, seqs[0]);
    srv.kill9();
    assert!(
        alive(child),
        "the orphan runs on after kill -9 (or this test proves nothing)"
    );
    srv.restart().await;
    assert!(
        wait_until(deadline(Duration::from_secs(10)), || async {
            !alive(child)
        })
        .await,
        "the restarted server did not kill the orphan {child}"
    );
    // Within 20 s: j1 did not wait for its 60 s lease.
    all_succeeded(&srv).await;
    let j1 = srv.job("j1").await;
    assert_eq!(j1.attempt, 2, "{j1:?}");
    assert_eq!(
        starts(srv.dir()),
        vec![(seqs[0], 1), (seqs[0], 2), (seqs[1], 1), (seqs[2], 1)]
    );
}
