//! Lease timing of `orderly worker` against a real server when the worker's
//! wall clock disagrees with the server's (contract section 5).
//!
//! The defect this guards against: the worker derived its lease length from
//! `expires_at` minus its own clock. A worker whose clock was behind the
//! server's heartbeated too late, its lease expired and the job ran twice; one
//! whose clock was ahead fell back to 30 s and did the same. The worker must
//! pace its heartbeats from the `lease_ms` the server sends.
//!
//! The worker runs under libfaketime (Debian package `faketime`) with its wall
//! clock shifted and its monotonic clock left alone
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`); without libfaketime these tests say so
//! and skip.

#[macro_use]
mod support;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::proto::{JobView, QueueConfigRequest};
use support::{job_req, TestServer};

/// Where Debian and Ubuntu install libfaketime.
const FAKETIME_LIBS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// libfaketime, if installed.
fn libfaketime() -> Option<PathBuf> {
    FAKETIME_LIBS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Lease of the test queue: short, so a late heartbeat shows within seconds.
const LEASE_MS: u64 = 1_500;

/// An `orderly worker` child under libfaketime; killed on drop.
struct SkewedWorker {
    child: Child,
    log: PathBuf,
}

impl SkewedWorker {
    /// Starts `orderly worker QUEUE --max-jobs 1 -- sleep SECS` with the wall
    /// clock shifted by `offset` (libfaketime syntax: `-20s`, `+60s`).
    fn start(srv: &TestServer, lib: &PathBuf, queue: &str, offset: &str, secs: &str) -> Self {
        let log = srv.dir().join(format!("skewed-worker-{queue}.log"));
        let file = std::fs::File::create(&log).expect("worker log");
        let mut cmd = support::orderly();
        cmd.arg("worker")
            .arg(queue)
            .arg("--server")
            .arg(srv.url())
            .arg("--name")
            .arg(format!("skewed-{queue}"))
            .args(["--max-jobs", "1", "--", "sleep", secs])
            .env("LD_PRELOAD", lib)
            .env("FAKETIME", offset)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .stdin(Stdio::null());
        let child = cmd.spawn().expect("spawn orderly worker under libfaketime");
        SkewedWorker { child, log }
    }

    /// The worker's log.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SkewedWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (long polls, bounded) until the job is finished, or until it is
/// back in line after a failed attempt (its lease expired); returns it.
async fn settled(srv: &TestServer, id: &str, timeout: Duration) -> JobView {
    let until = Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let j = srv
            .client()
            .wait(id, left.as_millis().min(250) as u64)
            .await
            .unwrap_or_else(|e| srv.fail(format!("wait {id}: {e}")));
        let finished = ["succeeded", "failed", "cancelled"].contains(&j.state.as_str());
        if finished || j.error.is_some() || j.attempt > 1 {
            return j;
        }
        if Instant::now() >= until {
            srv.fail(format!("{id} not finished within {timeout:?}: {j:?}"));
        }
    }
}

/// Runs one job of four leases' length on a worker whose clock is shifted by
/// `offset`; the job must start exactly once and succeed.
async fn one_start_despite_clock_skew(queue: &str, offset: &str) {
    let Some(lib) = libfaketime() else {
        eprintln!(
            "SKIPPED: libfaketime is not installed (apt-get install -y faketime); \
             cannot shift the worker's clock"
        );
        return;
    };
    let srv = TestServer::start().await;
    srv.configure(
        queue,
        QueueConfigRequest {
            lease_ms: Some(LEASE_MS),
            ..Default::default()
        },
    )
    .await;
    let id = format!("{queue}-1");
    srv.client()
        .enqueue(queue, &job_req(&id, None, json!({})))
        .await
        .unwrap();
    // Four leases long: a worker that heartbeats less often than once a
    // lease loses it (the reaper hands the job out again, attempt 2).
    let run_secs = format!("{:.1}", 4.0 * LEASE_MS as f64 / 1000.0);
    let w = SkewedWorker::start(&srv, &lib, queue, offset, &run_secs);
    let j = settled(&srv, &id, Duration::from_secs(40)).await;
    ensure!(
        srv,
        j.state == "succeeded" && j.attempt == 1 && j.start_no == Some(1) && j.error.is_none(),
        "with the worker's clock at {offset}, the job is {} after {} start(s) \
         (start_no {:?}, error {:?}): its lease must not expire, so it starts once \
         and succeeds\n{j:?}\n--- worker log ---\n{}",
        j.state,
        j.attempt,
        j.start_no,
        j.error,
        w.log()
    );
}

/// A worker whose clock is 20 s behind the server's keeps its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_whose_clock_is_behind_starts_the_job_once() {
    one_start_despite_clock_skew("behind", "-20s").await;
}

/// A worker whose clock is 60 s ahead of the server's keeps its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_whose_clock_is_ahead_starts_the_job_once() {
    one_start_despite_clock_skew("ahead", "+60s").await;
}
