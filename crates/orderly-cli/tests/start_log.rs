//! The start log audited end to end (contract sections 2 and 4): a real
//! server, a worker killed mid-job and a real worker at concurrency 2 over
//! keyed and keyless jobs with a retry; then the order the server used is
//! checked from `GET /v1/queues/{queue}/starts` alone, and `orderly starts`
//! and `orderly job` must print what the server recorded.

#[macro_use]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::json;
use support::proto::{BackoffView, JobView, QueueConfigRequest, StartView};
use support::{job_req, show, TestServer};

const Q: &str = "audit";

/// The jobs in enqueue (`seq`) order, with their keys.
const JOBS: [(&str, Option<&str>); 10] = [
    ("j01", Some("k1")),
    ("j02", Some("k2")),
    ("j03", Some("k1")),
    ("j04", None),
    ("j05", Some("k2")),
    ("j06", Some("k1")),
    ("j07", None),
    ("j08", Some("k2")),
    ("j09", None),
    ("j10", Some("k1")),
];

/// Checks that `log` (a whole queue's start log, every job of it finished)
/// is an order the contract allows, from the log alone:
/// - start numbers strictly increase, and each job's starts number its
///   attempts 1, 2, … in order, under one `seq` and one key;
/// - a key's starts come job by job in `seq` order, each job's starts
///   together (a key runs one job at a time; a retry or a rerun holds it);
/// - no start leaves a lower-`seq` job waiting that was surely eligible: one
///   that never started yet and is keyless or the first of its key (a
///   keyed job behind a started one of its key may still have been held).
fn check_order(log: &[StartView]) -> Result<(), String> {
    let mut jobs: BTreeMap<i64, (&str, Option<&str>)> = BTreeMap::new();
    let mut seq_of: HashMap<&str, i64> = HashMap::new();
    for s in log {
        let seq = *seq_of.entry(&s.job_id).or_insert(s.seq);
        if seq != s.seq {
            return Err(format!(
                "{} started under seqs {seq} and {}",
                s.job_id, s.seq
            ));
        }
        jobs.insert(s.seq, (&s.job_id, s.key.as_deref()));
    }
    let mut started: HashMap<&str, u32> = HashMap::new();
    let mut key_runs: HashMap<&str, Vec<&str>> = HashMap::new();
    for (i, s) in log.iter().enumerate() {
        if i > 0 && log[i - 1].start_no >= s.start_no {
            return Err(format!("start_no does not increase at {i}: {log:?}"));
        }
        let n = started.entry(&s.job_id).or_insert(0);
        *n += 1;
        if s.attempt != *n {
            return Err(format!(
                "start {} of {} is attempt {}, expected {n}",
                s.start_no, s.job_id, s.attempt
            ));
        }
        if let Some(k) = s.key.as_deref() {
            let runs = key_runs.entry(k).or_default();
            if runs.last() != Some(&s.job_id.as_str()) {
                if runs.contains(&s.job_id.as_str()) {
                    return Err(format!(
                        "key {k}: {} started again after another job of its key: {runs:?}",
                        s.job_id
                    ));
                }
                if let Some(prev) = runs.last() {
                    if seq_of[prev] > s.seq {
                        return Err(format!("key {k}: {} started after later {prev}", s.job_id));
                    }
                }
                runs.push(&s.job_id);
            }
        }
        for (&seq, &(id, key)) in jobs.range(..s.seq) {
            let waiting = !log[..i].iter().any(|p| p.job_id == id);
            let first_of_key =
                key.is_none_or(|k| !jobs.range(..seq).any(|(_, (_, other))| *other == Some(k)));
            if waiting && first_of_key {
                return Err(format!(
                    "start {} ({} seq {}) left the eligible {id} (seq {seq}, key {key:?}) waiting",
                    s.start_no, s.job_id, s.seq
                ));
            }
        }
    }
    Ok(())
}

/// The rows `orderly starts` printed (header skipped), as
/// `(start_no, seq, attempt, key, worker, started_at, job)` strings.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.split_whitespace().eq([
            "START_NO",
            "SEQ",
            "ATTEMPT",
            "KEY",
            "WORKER",
            "STARTED_AT",
            "JOB"
        ]),
        "header: {header:?}"
    );
    lines
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn row_of(s: &StartView) -> Vec<String> {
    vec![
        s.start_no.to_string(),
        s.seq.to_string(),
        s.attempt.to_string(),
        s.key.clone().unwrap_or_else(|| "-".into()),
        s.worker.clone(),
        s.started_at.clone(),
        s.job_id.clone(),
    ]
}

/// Contract §2 audited from the start log: a worker killed mid-job (its
/// lease expires), a keyed job failing once, ten jobs over two keys and no
/// key at concurrency 2. The log alone shows every start in an allowed
/// order, the expired job's rerun first; `orderly starts` prints exactly the
/// log (paged, with `--after` and `--limit`), and `orderly job` each attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_start_log_shows_a_valid_order_and_orderly_starts_prints_it() {
    let srv = TestServer::start().await;
    let c = srv.client();
    srv.configure(
        Q,
        QueueConfigRequest {
            concurrency: Some(2),
            backoff: Some(BackoffView {
                initial_ms: 200,
                max_ms: 200,
                factor: 1.0,
            }),
            ..Default::default()
        },
    )
    .await;
    for (id, key) in JOBS {
        c.enqueue(Q, &job_req(id, key, json!({ "id": id })))
            .await
            .unwrap_or_else(|e| srv.fail(format!("enqueue {id}: {e}")));
    }

    // A worker on a 1 s lease takes j01 and dies with it.
    let mut victim = srv.worker(Q, &["--lease", "1s"], &["sh", "-c", "sleep 30"]);
    srv.wait_for(Duration::from_secs(20), "j01 running", || {
        let c = c.clone();
        async move { c.job("j01").await.is_ok_and(|j| j.state == "running") }
    })
    .await;
    let victim_name = srv.job("j01").await.worker.expect("j01's worker");
    victim.kill_group();
    srv.wait_for(Duration::from_secs(20), "j01's lease to expire", || {
        let c = c.clone();
        async move { c.job("j01").await.is_ok_and(|j| j.state == "queued") }
    })
    .await;
    for (id, _) in &JOBS[1..] {
        let j = srv.job(id).await;
        ensure!(
            srv,
            j.attempt == 0,
            "{id} started while only j01 was taken: {j:?}"
        );
    }

    // A real worker at concurrency 2; j02 fails its first attempt.
    let script = r#"if [ "$ORDERLY_JOB_ID" = j02 ] && [ "$ORDERLY_ATTEMPT" = 1 ]; then
        echo "flaky" >&2; exit 3; fi; sleep 0.05"#;
    let worker = srv.worker(Q, &["--concurrency", "2"], &["sh", "-c", script]);
    srv.wait_for(Duration::from_secs(60), "every job to succeed", || {
        let srv = &srv;
        async move {
            srv.list_all(Q)
                .await
                .iter()
                .all(|j: &JobView| j.state == "succeeded")
        }
    })
    .await;

    // From the start log alone.
    let log = srv.start_log(Q, 1_000).await;
    if let Err(e) = check_order(&log) {
        srv.fail(format!(
            "the start log shows an order the contract forbids: {e}\n{log:#?}\n--- worker log ---\n{}",
            worker.log()
        ));
    }
    let count = |id: &str| log.iter().filter(|s| s.job_id == id).count();
    ensure!(
        srv,
        log.len() == JOBS.len() + 2,
        "10 jobs, a rerun and a retry: {log:#?}"
    );
    ensure!(srv, count("j01") == 2 && count("j02") == 2, "{log:#?}");
    ensure!(
        srv,
        log[0].job_id == "j01" && log[0].worker == victim_name,
        "the first start is the victim's j01: {:?}",
        log[0]
    );
    ensure!(
        srv,
        log[1].job_id == "j01" && log[1].attempt == 2 && log[1].worker != victim_name,
        "the expired j01 reruns first, by another worker: {:?}",
        log[1]
    );
    ensure!(
        srv,
        log[1..].iter().all(|s| s.worker != victim_name),
        "the dead worker started nothing more"
    );
    ensure!(
        srv,
        srv.start_log(Q, 3).await == log,
        "pages of 3 give the same log"
    );

    // `orderly starts` prints exactly the log.
    let expected: Vec<Vec<String>> = log.iter().map(row_of).collect();
    let printed = rows(&srv.run_cli_ok(&["starts", Q]).await);
    ensure!(
        srv,
        printed == expected,
        "orderly starts printed\n{printed:?}\nthe log is\n{expected:?}"
    );
    let out = srv.run_cli(&["starts", Q, "--limit", "4"]).await;
    ensure!(srv, out.status.success(), "{}", show(&out));
    ensure!(
        srv,
        rows(&String::from_utf8_lossy(&out.stdout)) == expected[..4],
        "--limit 4: {}",
        show(&out)
    );
    let more = format!("more: orderly starts {Q} --after {}", log[3].start_no);
    ensure!(
        srv,
        String::from_utf8_lossy(&out.stderr).contains(&more),
        "--limit 4 says how to go on ({more}): {}",
        show(&out)
    );
    let after = log[3].start_no.to_string();
    let rest = rows(&srv.run_cli_ok(&["starts", Q, "--after", &after]).await);
    ensure!(srv, rest == expected[4..], "--after {after}: {rest:?}");
    let out = srv.run_cli(&["starts", "nobody"]).await;
    ensure!(
        srv,
        out.status.success()
            && rows(&String::from_utf8_lossy(&out.stdout)).is_empty()
            && String::from_utf8_lossy(&out.stderr).contains("no starts"),
        "an unused queue: {}",
        show(&out)
    );
    let out = srv.run_cli(&["starts", Q, "--limit", "0"]).await;
    ensure!(
        srv,
        !out.status.success(),
        "--limit 0 is refused: {}",
        show(&out)
    );

    // `orderly job` prints a line in words (its state, for a finished job),
    // the job, and each attempt in words under it.
    let text = srv.run_cli_ok(&["job", "j01"]).await;
    let (summary, text) = text
        .split_once('\n')
        .unwrap_or_else(|| srv.fail(format!("orderly job j01 prints one line:\n{text}")));
    ensure!(
        srv,
        summary == "succeeded",
        "j01's summary line: {summary:?}"
    );
    let (job_json, words) = text
        .split_once("\n\nattempts:\n")
        .unwrap_or_else(|| srv.fail(format!("orderly job j01 shows no attempts:\n{text}")));
    let job: JobView = serde_json::from_str(job_json).unwrap_or_else(|e| {
        srv.fail(format!(
            "orderly job j01: the job is not JSON ({e}):\n{text}"
        ))
    });
    ensure!(srv, job.id == "j01" && job.attempt == 2, "{job:?}");
    let lines: Vec<&str> = words.lines().map(str::trim).collect();
    ensure!(srv, lines.len() == 2, "two attempts of j01:\n{words}");
    let first = format!(
        "attempt 1 (start {}) by {victim_name}: started {}, failed ",
        log[0].start_no, log[0].started_at
    );
    ensure!(
        srv,
        lines[0].starts_with(&first) && lines[0].contains("lease_expired"),
        "j01's lost attempt: {:?}, expected it to start with {first:?}",
        lines[0]
    );
    ensure!(
        srv,
        lines[1].starts_with(&format!(
            "attempt 2 (start {}) by {}",
            log[1].start_no, log[1].worker
        )) && lines[1].contains(", succeeded "),
        "j01's rerun: {:?}",
        lines[1]
    );
    let j02 = srv.run_cli_ok(&["job", "j02"]).await;
    ensure!(
        srv,
        j02.contains(", failed ") && j02.contains("flaky") && j02.contains(", succeeded "),
        "j02's failed attempt and its retry:\n{j02}"
    );
    let only_json = srv.run_cli_ok(&["job", "j02", "--json"]).await;
    ensure!(
        srv,
        serde_json::from_str::<JobView>(&only_json).is_ok(),
        "orderly job --json prints only the job:\n{only_json}"
    );
}

/// The order check refuses each kind of order the contract forbids, and
/// takes one it allows: it can fail.
#[test]
fn the_order_check_refuses_forbidden_orders() {
    let s = |no: i64, id: &str, seq: i64, key: Option<&str>, attempt: u32| StartView {
        start_no: no,
        seq,
        job_id: id.into(),
        key: key.map(Into::into),
        attempt,
        worker: "w".into(),
        started_at: "2026-01-01T00:00:00.000Z".into(),
    };
    let allowed = [
        s(1, "a", 1, Some("k"), 1),
        s(2, "c", 3, None, 1),
        s(3, "a", 1, Some("k"), 2),
        s(4, "b", 2, Some("k"), 1),
    ];
    assert_eq!(check_order(&allowed), Ok(()));
    let forbidden: [(&str, Vec<StartView>); 5] = [
        (
            "a keyless job overtaken",
            vec![s(1, "b", 2, None, 1), s(2, "a", 1, None, 1)],
        ),
        (
            "the first of a key overtaken",
            vec![s(1, "b", 2, None, 1), s(2, "a", 1, Some("k"), 1)],
        ),
        (
            "a key run out of seq order",
            vec![
                s(1, "a", 1, None, 1),
                s(2, "c", 3, Some("k"), 1),
                s(3, "b", 2, Some("k"), 1),
            ],
        ),
        (
            "a retry after the next job of its key",
            vec![
                s(1, "a", 1, Some("k"), 1),
                s(2, "b", 2, Some("k"), 1),
                s(3, "a", 1, Some("k"), 2),
            ],
        ),
        ("attempts out of step", vec![s(1, "a", 1, None, 2)]),
    ];
    for (what, log) in forbidden {
        assert!(check_order(&log).is_err(), "{what} was not refused");
    }
}
