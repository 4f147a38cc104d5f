//! The command executor, end to end: a real `orderly serve` runs a real
//! child process per job (contract §6), through the same claim path as
//! external workers (§2). Each job's program appends `start`/`end` lines to
//! a log file, so the order and overlap asserted are what really ran.

mod support;

use std::path::Path;
use std::time::Duration;

use orderly_client::proto::{JobState, QueueConfigRequest};
use serde_json::{json, Value};
use support::*;

/// `sh -c SCRIPT` as a command executor at `concurrency`.
fn exec(script: &str, concurrency: u32) -> QueueConfigRequest {
    QueueConfigRequest {
        concurrency: Some(concurrency),
        executor: Some(json!({"type": "command", "argv": ["sh", "-c", script]})),
        ..Default::default()
    }
}

/// The log lines `(event, seq, key)` the jobs wrote, in the order written.
fn events(log: &Path) -> Vec<(String, i64, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            let e = f.next().unwrap_or_default().to_string();
            let seq = f.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
            (e, seq, f.next().unwrap_or("-").to_string())
        })
        .collect()
}

/// A script that logs its start and end around `body`.
fn logged(log: &Path, body: &str) -> String {
    let l = log.display();
    format!(
        r#"echo "start $ORDERLY_SEQ ${{ORDERLY_KEY:--}}" >> {l}; {body}; rc=$?; echo "end $ORDERLY_SEQ ${{ORDERLY_KEY:--}}" >> {l}; exit $rc"#
    )
}

async fn enqueue_batch(
    srv: &TestServer,
    queue: &str,
    jobs: Vec<orderly_client::proto::EnqueueRequest>,
) -> Vec<i64> {
    let out = srv
        .client()
        .enqueue_batch(queue, &orderly_client::proto::BatchRequest { jobs })
        .await
        .unwrap_or_else(|e| srv.fail(format!("batch: {e}")));
    out.value.iter().map(|j| j.seq).collect()
}

/// §2 and §6: at concurrency 1, 50 jobs run one at a time, in `seq` order,
/// each exactly once, with the payload on stdin and stdout as the result.
#[tokio::test]
async fn command_executor_runs_a_serial_queue_in_seq_order() {
    let srv = TestServer::start().await;
    let log = srv.dir().join("serial.log");
    srv.configure("serial", exec(&logged(&log, "cat"), 1)).await;
    let seqs = enqueue_batch(
        &srv,
        "serial",
        (0..50)
            .map(|i| job_req(&format!("s{i}"), None, json!({"i": i})))
            .collect(),
    )
    .await;
    let jobs = srv
        .wait_all_finished("serial", 50, Duration::from_secs(120))
        .await;
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        assert_eq!(j.result, Some(json!({"i": i})), "stdout is the result");
        assert_eq!(j.attempt, 1);
    }
    let ev = events(&log);
    let expected: Vec<(String, i64, String)> = seqs
        .iter()
        .flat_map(|s| {
            [
                ("start".to_string(), *s, "-".to_string()),
                ("end".to_string(), *s, "-".to_string()),
            ]
        })
        .collect();
    assert_eq!(ev, expected, "one at a time, in seq order");
    // The server's own record agrees: start_no follows seq.
    let mut by_start: Vec<&orderly_client::proto::JobView> = jobs.iter().collect();
    by_start.sort_by_key(|j| j.start_no);
    assert!(by_start.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// §2: a keyed queue at concurrency 4 never runs more than 4 at once, nor two
/// jobs of one key at once, and each key's jobs run in `seq` order.
#[tokio::test]
async fn command_executor_keeps_key_order_and_the_concurrency_limit() {
    let srv = TestServer::start().await;
    let log = srv.dir().join("keyed.log");
    srv.configure("keyed", exec(&logged(&log, "sleep 0.05"), 4))
        .await;
    let jobs = (0..40)
        .map(|i| job_req(&format!("k{i}"), Some(&format!("acct-{}", i % 5)), json!(i)))
        .collect();
    enqueue_batch(&srv, "keyed", jobs).await;
    let done = srv
        .wait_all_finished("keyed", 40, Duration::from_secs(120))
        .await;
    assert!(done.iter().all(|j| j.state == JobState::Succeeded));
    let ev = events(&log);
    assert_eq!(ev.len(), 80, "{ev:?}");
    let mut running: Vec<(i64, String)> = Vec::new();
    let mut last_start: std::collections::HashMap<String, i64> = Default::default();
    let mut peak = 0;
    for (e, seq, key) in &ev {
        if e == "start" {
            assert!(
                !running.iter().any(|(_, k)| k == key),
                "two jobs of {key} at once: {ev:?}"
            );
            assert!(
                last_start.get(key).is_none_or(|s| s < seq),
                "{key} out of order: {ev:?}"
            );
            last_start.insert(key.clone(), *seq);
            running.push((*seq, key.clone()));
            peak = peak.max(running.len());
            assert!(running.len() <= 4, "more than 4 at once: {running:?}");
        } else {
            running.retain(|(s, _)| s != seq);
        }
    }
    assert!(peak >= 2, "the keys ran in parallel (peak {peak})");
}

/// §2 and §6: a non-zero exit fails the attempt with stderr's tail; a keyed
/// job that fails once is retried before the next job of its key.
#[tokio::test]
async fn a_failed_command_is_retried_before_the_next_job_of_its_key() {
    let srv = TestServer::start().await;
    let log = srv.dir().join("retry.log");
    let body =
        r#"if [ "$ORDERLY_ATTEMPT" = 1 ] && grep -q fail; then echo "bad input" >&2; exit 3; fi"#;
    let mut cfg = exec(&logged(&log, body), 2);
    cfg.backoff = Some(orderly_client::proto::BackoffView {
        initial_ms: 200,
        max_ms: 200,
        factor: 1.0,
    });
    srv.configure("retry", cfg).await;
    enqueue_batch(
        &srv,
        "retry",
        vec![
            job_req("r1", Some("k"), json!({"fail": true})),
            job_req("r2", Some("k"), json!({})),
        ],
    )
    .await;
    let done = srv
        .wait_all_finished("retry", 2, Duration::from_secs(60))
        .await;
    assert_eq!(done[0].attempt, 2, "r1 ran twice");
    assert_eq!(done[0].state, JobState::Succeeded);
    let starts: Vec<i64> = events(&log)
        .into_iter()
        .filter(|e| e.0 == "start")
        .map(|e| e.1)
        .collect();
    assert_eq!(
        starts,
        [done[0].seq, done[0].seq, done[1].seq],
        "r1, r1 again, then r2"
    );

    // A job that keeps failing ends failed with the exit code and stderr's tail.
    let mut cfg = exec("echo 'it broke' >&2; exit 7", 1);
    cfg.max_attempts = Some(1);
    srv.configure("broken", cfg).await;
    enqueue_batch(&srv, "broken", vec![job_req("b1", None, json!(null))]).await;
    let done = srv
        .wait_all_finished("broken", 1, Duration::from_secs(30))
        .await;
    let e = done[0].error.clone().unwrap_or(Value::Null);
    assert_eq!(done[0].state, JobState::Failed);
    assert_eq!(e["exit_code"], json!(7), "{e}");
    assert_eq!(e["stderr"], json!("it broke"), "{e}");
}

/// §6: `timeout_ms` kills the whole process group, and the attempt fails.
#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let srv = TestServer::start().await;
    let pids = srv.dir().join("timeout.pid");
    let script = format!("sleep 300 & echo $! > {}; wait", pids.display());
    let mut cfg = exec(&script, 1);
    cfg.max_attempts = Some(1);
    srv.configure("slow", cfg).await;
    let mut req = job_req("t1", None, json!(null));
    req.timeout_ms = Some(700);
    srv.client().enqueue("slow", &req).await.expect("enqueue");
    let done = srv
        .wait_all_finished("slow", 1, Duration::from_secs(30))
        .await;
    assert_eq!(done[0].state, JobState::Failed, "{:?}", done[0]);
    assert_eq!(
        done[0].error.as_ref().map(|e| e["reason"].clone()),
        Some(json!("timeout")),
        "{:?}",
        done[0].error
    );
    let pid: i32 = std::fs::read_to_string(&pids)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        wait_until(deadline(Duration::from_secs(10)), || async { !alive(pid) }).await,
        "the job's child {pid} survived the timeout"
    );
}

/// §6: stdout beyond `max_output_bytes` fails the job, naming the bound.
#[tokio::test]
async fn output_beyond_the_bound_fails_naming_it() {
    let srv = TestServer::start().await;
    let mut cfg = QueueConfigRequest {
        max_attempts: Some(1),
        executor: Some(
            json!({"type": "command", "argv": ["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a"], "max_output_bytes": 100}),
        ),
        ..Default::default()
    };
    cfg.concurrency = Some(1);
    srv.configure("big", cfg).await;
    srv.client()
        .enqueue("big", &job_req("o1", None, json!(null)))
        .await
        .expect("enqueue");
    let done = srv
        .wait_all_finished("big", 1, Duration::from_secs(30))
        .await;
    let msg = done[0]
        .error
        .as_ref()
        .map(|e| e["message"].to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("100-byte bound") && msg.contains("max_output_bytes"),
        "{msg}"
    );
}

/// §6 and §10: the child's environment is an allow-list: the server's token
/// does not reach it; PATH, the job's variables and the queue's do.
#[tokio::test]
async fn the_child_never_sees_the_servers_token() {
    let srv = TestServer::start_with(Some("server-secret-token")).await;
    srv.configure(
        "env",
        QueueConfigRequest {
            executor: Some(json!({"type": "command", "argv": ["env"], "env": {"GREETING": "hi"}})),
            ..Default::default()
        },
    )
    .await;
    srv.client()
        .enqueue("env", &job_req("e1", Some("acct-7"), json!(null)))
        .await
        .expect("enqueue");
    let done = srv
        .wait_all_finished("env", 1, Duration::from_secs(30))
        .await;
    let out = done[0]
        .result
        .as_ref()
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        !out.contains("server-secret-token"),
        "the token leaked: {out}"
    );
    for want in [
        "ORDERLY_JOB_ID=e1",
        "ORDERLY_QUEUE=env",
        "ORDERLY_KEY=acct-7",
        "ORDERLY_ATTEMPT=1",
        "GREETING=hi",
        "PATH=",
    ] {
        assert!(out.contains(want), "{want} missing from {out}");
    }
}

/// §4 and §6: a bad executor is a clear 400 naming the problem, and changes
/// nothing.
#[tokio::test]
async fn bad_executor_configuration_is_refused_and_changes_nothing() {
    let srv = TestServer::start().await;
    srv.configure("q", exec("true", 2)).await;
    let before = srv.client().queue("q").await.expect("queue");
    let dir = srv.dir().display().to_string();
    for (what, executor, mention) in [
        (
            "empty argv",
            json!({"type": "command", "argv": []}),
            "executor.argv",
        ),
        (
            "relative program not found",
            json!({"type": "command", "argv": ["./no-such-script.sh"], "cwd": dir}),
            "no such executable",
        ),
        (
            "program not on PATH",
            json!({"type": "command", "argv": ["no-such-program-xyz"]}),
            "PATH",
        ),
        (
            "missing cwd",
            json!({"type": "command", "argv": ["true"], "cwd": "/no/such/dir"}),
            "executor.cwd",
        ),
        (
            "unknown field",
            json!({"type": "command", "argv": ["true"], "shell": true}),
            "shell",
        ),
        ("unknown type", json!({"type": "lambda"}), "executor.type"),
        (
            "not http",
            json!({"type": "webhook", "url": "ftp://example.com/x"}),
            "http",
        ),
        (
            "webhook unknown field",
            json!({"type": "webhook", "url": "http://127.0.0.1:9/x", "retries": 3}),
            "retries",
        ),
    ] {
        let req = QueueConfigRequest {
            concurrency: Some(9),
            executor: Some(executor),
            ..Default::default()
        };
        let err = srv.client().configure("q", &req).await.expect_err(what);
        assert_eq!(err.status(), Some(400), "{what}: {err}");
        assert!(
            err.to_string().contains(mention),
            "{what}: {err} should mention {mention}"
        );
    }
    assert_eq!(
        srv.client().queue("q").await.expect("queue"),
        before,
        "nothing changed"
    );
}

/// §6 and §9: `orderly queue set q --exec -- CMD ARGS...` configures it.
#[tokio::test]
async fn queue_set_exec_from_the_command_line() {
    let srv = TestServer::start().await;
    // `--server` before the `--` that starts the command.
    let url = srv.url();
    let mut cmd = orderly();
    cmd.args([
        "queue",
        "set",
        "cli",
        "--server",
        &url,
        "--concurrency",
        "2",
        "--exec",
        "--env",
        "A=1",
        "--",
        "sh",
        "-c",
        "echo \"$A $ORDERLY_SEQ\"",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(20)).await;
    assert!(out.status.success(), "{}", show(&out));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.contains("\"command\""), "{out}");
    let q = srv.client().queue("cli").await.expect("queue");
    assert_eq!(
        q.executor.as_ref().map(|e| e["argv"].clone()),
        Some(json!(["sh", "-c", "echo \"$A $ORDERLY_SEQ\""]))
    );
    let j = srv
        .client()
        .enqueue("cli", &job_req("c1", None, json!(null)))
        .await
        .expect("enqueue");
    let done = srv
        .wait_all_finished("cli", 1, Duration::from_secs(30))
        .await;
    assert_eq!(done[0].result, Some(json!(format!("1 {}", j.value.seq))));
    srv.run_cli_ok(&["queue", "set", "cli", "--no-executor"])
        .await;
    assert_eq!(
        srv.client().queue("cli").await.expect("queue").executor,
        None
    );
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) != Some("Z"))
        .unwrap_or(false)
}

/// §4 and §6: cancelling a job its command is running kills the whole
/// process group at the next heartbeat, and the job ends `cancelled`
/// without a retry; the next job then runs.
#[tokio::test]
async fn a_cancel_kills_the_running_commands_group() {
    let srv = TestServer::start().await;
    let pids = srv.dir().join("cancel.pid");
    let script = format!(
        r#"if grep -q long; then sleep 300 & echo $! > {}; wait; fi"#,
        pids.display()
    );
    let mut cfg = exec(&script, 1);
    cfg.lease_ms = Some(1_500);
    srv.configure("cancel", cfg).await;
    let jobs = vec![
        job_req("c1", None, json!({"long": true})),
        job_req("c2", None, json!({})),
    ];
    enqueue_batch(&srv, "cancel", jobs).await;
    srv.wait_for(Duration::from_secs(20), "c1's child runs", || {
        let p = pids.clone();
        async move { p.exists() }
    })
    .await;
    let pid: i32 = std::fs::read_to_string(&pids)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    srv.client().cancel("c1").await.expect("cancel");
    let done = srv
        .wait_all_finished("cancel", 2, Duration::from_secs(30))
        .await;
    assert_eq!(
        (done[0].state, done[0].attempt),
        (JobState::Cancelled, 1),
        "{:?}",
        done[0]
    );
    assert_eq!(done[1].state, JobState::Succeeded);
    assert!(
        wait_until(deadline(Duration::from_secs(10)), || async { !alive(pid) }).await,
        "the cancelled job's child {pid} survived"
    );
}
