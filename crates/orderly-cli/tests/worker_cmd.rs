//! End-to-end tests of `orderly worker QUEUE -- COMMAND…` (contract sections
//! 5 and 9): the payload on stdin, stdout as the result, the job's
//! environment, a failing command, and cancelling a running job.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::proto::{JobView, QueueConfigRequest};
use support::{job_req, TestServer};

/// A queue configuration with only the lease length set.
fn lease(ms: u64) -> QueueConfigRequest {
    QueueConfigRequest {
        lease_ms: Some(ms),
        ..Default::default()
    }
}

/// Waits (long polls, bounded) until the job is finished; returns it.
async fn finished(srv: &TestServer, id: &str, timeout: Duration) -> JobView {
    let until = Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let j = srv
            .client()
            .wait(id, left.as_millis().min(5000) as u64)
            .await
            .unwrap_or_else(|e| srv.fail(format!("wait {id}: {e}")));
        if ["succeeded", "failed", "cancelled"].contains(&j.state.as_str()) {
            return j;
        }
        if Instant::now() >= until {
            srv.fail(format!("{id} not finished within {timeout:?}: {j:?}"));
        }
    }
}

/// The payload arrives on stdin; stdout (JSON) becomes the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_feeds_the_payload_on_stdin_and_keeps_stdout_as_result() {
    const Q: &str = "cat";
    let srv = TestServer::start().await;
    let payload =
        json!({"uid": "abc", "n": [1, 2, 3], "s": "h\u{e9}llo \"quoted\"", "deep": {"x": null}});
    srv.client()
        .enqueue(Q, &job_req("cat-1", None, payload.clone()))
        .await
        .unwrap();
    let mut w = srv.worker(Q, &["--max-jobs", "1"], &["sh", "-c", "cat"]);
    let j = finished(&srv, "cat-1", Duration::from_secs(30)).await;
    ensure!(
        srv,
        j.state == "succeeded" && j.result.as_ref() == Some(&payload) && j.attempt == 1,
        "job: {j:?}\n--- worker log ---\n{}",
        w.log()
    );
    let status = w.wait_exit(Duration::from_secs(15)).await;
    ensure!(
        srv,
        status.is_some_and(|s| s.success()),
        "worker --max-jobs 1 did not exit 0: {status:?}\n{}",
        w.log()
    );
}

/// The command sees ORDERLY_JOB_ID (and friends) in its environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_sets_the_job_environment() {
    const Q: &str = "envq";
    let srv = TestServer::start().await;
    let job = srv
        .client()
        .enqueue(Q, &job_req("env-job.1", Some("acct-7"), json!(null)))
        .await
        .unwrap()
        .value;
    let script = r#"printf '{"id":"%s","queue":"%s","seq":"%s","attempt":"%s","key":"%s"}' "$ORDERLY_JOB_ID" "$ORDERLY_QUEUE" "$ORDERLY_SEQ" "$ORDERLY_ATTEMPT" "$ORDERLY_JOB_KEY""#;
    let mut w = srv.worker(Q, &["--max-jobs", "1"], &["sh", "-c", script]);
    let j = finished(&srv, "env-job.1", Duration::from_secs(30)).await;
    let expected = json!({
        "id": "env-job.1",
        "queue": Q,
        "seq": job.seq.to_string(),
        "attempt": "1",
        "key": "acct-7",
    });
    ensure!(
        srv,
        j.state == "succeeded" && j.result.as_ref() == Some(&expected),
        "job: {j:?}, expected result {expected}\n--- worker log ---\n{}",
        w.log()
    );
    let _ = w.wait_exit(Duration::from_secs(15)).await;
}

/// A command that exits non-zero fails the job (no attempts left) with the
/// exit status and stderr's tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_command_fails_the_job_with_exit_code_and_stderr() {
    const Q: &str = "boom";
    let srv = TestServer::start().await;
    srv.configure(
        Q,
        QueueConfigRequest {
            max_attempts: Some(1),
            ..Default::default()
        },
    )
    .await;
    srv.client()
        .enqueue(Q, &job_req("boom-1", None, json!({})))
        .await
        .unwrap();
    let mut w = srv.worker(
        Q,
        &["--max-jobs", "1"],
        &["sh", "-c", "echo boom >&2; exit 3"],
    );
    let j = finished(&srv, "boom-1", Duration::from_secs(30)).await;
    let error = j.error.clone().unwrap_or_default();
    ensure!(
        srv,
        j.state == "failed" && j.attempt == 1 && j.max_attempts == 1 && j.result.is_none(),
        "job: {j:?}\n--- worker log ---\n{}",
        w.log()
    );
    ensure!(
        srv,
        error["exit_code"] == json!(3),
        "error lacks exit_code 3: {error}"
    );
    ensure!(
        srv,
        error.to_string().contains("boom"),
        "error lacks stderr's \"boom\": {error}"
    );
    let status = w.wait_exit(Duration::from_secs(15)).await;
    ensure!(
        srv,
        status.is_some_and(|s| s.success()),
        "worker did not exit cleanly after its one job: {status:?}\n{}",
        w.log()
    );
}

/// Cancel of a running job is seen at the next heartbeat: the command is
/// stopped and the job ends `cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_of_a_running_job_stops_it() {
    const Q: &str = "slow";
    let srv = TestServer::start().await;
    let c = srv.client();
    srv.configure(Q, lease(1500)).await;
    c.enqueue(Q, &job_req("slow-1", None, json!({})))
        .await
        .unwrap();
    let mut w = srv.worker(Q, &[], &["sh", "-c", "sleep 30"]);
    srv.wait_for(Duration::from_secs(20), "slow-1 running", || {
        let c = c.clone();
        async move { c.job("slow-1").await.is_ok_and(|j| j.state == "running") }
    })
    .await;
    let t0 = Instant::now();
    let after_cancel = c
        .cancel("slow-1")
        .await
        .unwrap_or_else(|e| srv.fail(format!("cancel: {e}")));
    ensure!(
        srv,
        after_cancel.state == "running" && after_cancel.cancel_requested,
        "cancel of a running job answered {after_cancel:?}"
    );
    let j = finished(&srv, "slow-1", Duration::from_secs(6)).await;
    let took = t0.elapsed();
    ensure!(
        srv,
        j.state == "cancelled",
        "a cancelled running job ended {}: {j:?}\n--- worker log ---\n{}",
        j.state,
        w.log()
    );
    ensure!(
        srv,
        took < Duration::from_secs(5),
        "cancel took {took:?} (heartbeats every 500 ms)"
    );
    ensure!(
        srv,
        w.wait_exit(Duration::from_millis(0)).await.is_none(),
        "the worker exited after a cancel\n{}",
        w.log()
    );
}

/// A cancel stops what the command started too (its process group), not
/// just the shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_stops_the_commands_children() {
    const Q: &str = "tree";
    let srv = TestServer::start().await;
    let c = srv.client();
    srv.configure(Q, lease(1500)).await;
    let pid_file = srv.dir().join("child.pid");
    c.enqueue(Q, &job_req("tree-1", None, json!({})))
        .await
        .unwrap();
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let w = srv.worker(Q, &[], &["sh", "-c", &script]);
    srv.wait_for(Duration::from_secs(20), "the child's pid", || {
        let p = pid_file.clone();
        async move { std::fs::read_to_string(&p).is_ok_and(|s| s.trim().parse::<u32>().is_ok()) }
    })
    .await;
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    c.cancel("tree-1").await.unwrap();
    let j = finished(&srv, "tree-1", Duration::from_secs(6)).await;
    ensure!(
        srv,
        j.state == "cancelled",
        "ended {}: {j:?}\n{}",
        j.state,
        w.log()
    );
    let proc_dir = format!("/proc/{pid}");
    srv.wait_for(
        Duration::from_secs(5),
        "the command's child to be gone",
        || {
            let d = proc_dir.clone();
            async move {
                // Gone, or a zombie waiting for its reaper.
                std::fs::read_to_string(format!("{d}/stat"))
                    .map(|s| s.split_whitespace().nth(2) == Some("Z"))
                    .unwrap_or(true)
            }
        },
    )
    .await;
}

/// A command that never reads its stdin, given a payload larger than a pipe
/// holds, still has its lease renewed and finishes once (attempt 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_that_ignores_a_large_payload_keeps_its_lease() {
    const Q: &str = "deaf";
    let srv = TestServer::start().await;
    let c = srv.client();
    srv.configure(Q, lease(1000)).await;
    let big = "x".repeat(300_000);
    c.enqueue(Q, &job_req("deaf-1", None, json!({ "blob": big })))
        .await
        .unwrap();
    let w = srv.worker(Q, &["--max-jobs", "1"], &["sleep", "2.5"]);
    let j = finished(&srv, "deaf-1", Duration::from_secs(20)).await;
    ensure!(
        srv,
        j.state == "succeeded" && j.attempt == 1,
        "ended {} at attempt {}: {j:?}\n{}",
        j.state,
        j.attempt,
        w.log()
    );
}
