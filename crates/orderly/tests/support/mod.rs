//! Fixtures of the embedded library's tests: a real SQLite store in a temp
//! dir, opened by the real library on the test's tokio runtime, and bounded
//! waits that poll instead of sleeping.

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orderly::{Backoff, Job, JobState, NewJob, Options, Orderly, QueuePatch};
use orderly_core::AttemptRecord;
use serde_json::Value;

/// Longest any wait of these tests may take before it fails the test (a
/// bound against hangs, not a performance check).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A fresh temp dir for one store.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("orderly-lib-")
        .tempdir()
        .expect("temp dir")
}

/// Opens an instance on `dir` with default options.
pub async fn open(dir: &tempfile::TempDir) -> Orderly {
    Orderly::open(dir.path()).await.expect("open the store")
}

/// Opens an instance on `dir` with a grace period.
pub async fn open_with_grace(dir: &tempfile::TempDir, grace: Duration) -> Orderly {
    let mut o = Options::new(dir.path());
    o.grace = grace;
    Orderly::open_with(o).await.expect("open the store")
}

/// Polls `cond` every 20 ms until it holds (`true`) or `PATIENCE` passes (`false`).
pub async fn wait_until<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until job `id` is in `state` (panics with the job after `PATIENCE`).
pub async fn wait_for_state(o: &Orderly, id: &str, state: JobState) -> Job {
    let ok =
        wait_until(|| async { o.job(id).await.map(|j| j.state == state).unwrap_or(false) }).await;
    let job = o.job(id).await.expect("read the job");
    assert!(ok, "job {id} never reached {state:?}: {job:?}");
    job
}

/// Waits for `id` to finish (panics if it has not within `PATIENCE`).
pub async fn finished(o: &Orderly, id: &str) -> Job {
    let job = o.wait(id, PATIENCE).await.expect("wait for the job");
    assert!(
        job.state.is_finished(),
        "job {id} not finished after {PATIENCE:?}: {job:?}"
    );
    job
}

/// The attempt history of a job, as the store keeps it.
pub async fn attempts(o: &Orderly, id: &str) -> Vec<AttemptRecord> {
    o.store().job_attempts(id).await.expect("attempt history")
}

/// A job with payload `payload` and id `id`.
pub fn job(id: &str, payload: Value) -> NewJob {
    NewJob::new(&payload).expect("payload").id(id)
}

/// A queue patch with a backoff of `ms` (no growth) and `max_attempts`.
pub fn retry_patch(ms: u64, max_attempts: u32) -> QueuePatch {
    QueuePatch {
        max_attempts: Some(max_attempts),
        backoff: Some(Backoff {
            initial_ms: ms,
            max_ms: ms,
            factor: 1.0,
        }),
        ..Default::default()
    }
}

/// A list shared between handlers and the test.
#[derive(Clone, Default)]
pub struct Log<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone> Log<T> {
    /// Appends one entry.
    pub fn push(&self, v: T) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(v);
    }

    /// A copy of the entries so far.
    pub fn get(&self) -> Vec<T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
