//! Shutdown (section 7, and the restart promise of section 2): a running
//! handler that finishes within the grace period is reported; one that does
//! not is cancelled and not reported, and the next open of the same data
//! dir reruns its job at once, in its place, before any later job, long
//! before its lease would have expired.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderly::{Fail, JobCx, JobState, QueuePatch};
use serde_json::{json, Value};
use support::*;

/// A lease far longer than the test: only the release on open can explain a
/// quick rerun.
const LONG_LEASE_MS: u64 = 120_000;

/// Within the grace period the running handler finishes and its job is
/// `succeeded` (as the reopened store shows). The handler is still running
/// when `shutdown` is called and finishes only when the test lets it, so
/// `shutdown` provably waited for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_handler_finish_within_the_grace() {
    let dir = tempdir();
    let o = open_with_grace(&dir, PATIENCE).await;
    let done = Arc::new(AtomicBool::new(false));
    let release = Arc::new(tokio::sync::Notify::new());
    {
        let (done, release) = (done.clone(), release.clone());
        o.handle("g", 1, move |cx: JobCx<Value>| {
            let (done, release) = (done.clone(), release.clone());
            async move {
                release.notified().await;
                done.store(true, Ordering::SeqCst);
                Ok::<_, Fail>(json!({ "finished": cx.id }))
            }
        })
        .expect("register");
    }
    let e = o
        .enqueue("g", job("slow", json!({})))
        .await
        .expect("enqueue");
    wait_for_state(&o, &e.job.id, JobState::Running).await;
    let shutting = {
        let o = o.clone();
        tokio::spawn(async move { o.shutdown().await })
    };
    // However long this pause, shutdown cannot return while the handler
    // waits for its release.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shutting.is_finished(),
        "shutdown returned while its handler was still running"
    );
    assert!(!done.load(Ordering::SeqCst));
    release.notify_one();
    let stopped_some = shutting.await.expect("shutdown task");
    assert!(!stopped_some, "shutdown said it had to stop a handler");
    assert!(done.load(Ordering::SeqCst), "the handler did not finish");

    let o = open(&dir).await;
    let j = o.job(&e.job.id).await.expect("job");
    assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    assert_eq!(j.attempt, 1, "{j:?}");
    assert_eq!(j.result, Some(json!({ "finished": "slow" })));
    o.shutdown().await;
}

/// Past the grace period the handler is cancelled and nothing is reported;
/// the reopened instance reruns that job first, as attempt 2, then the
/// later job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_the_job_reruns_in_place_on_reopen() {
    let dir = tempdir();
    let o = open_with_grace(&dir, Duration::from_millis(200)).await;
    o.configure(
        "s",
        QueuePatch {
            lease_ms: Some(LONG_LEASE_MS),
            ..Default::default()
        },
    )
    .await
    .expect("configure");
    let cancelled = Arc::new(AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        o.handle("s", 1, move |cx: JobCx<Value>| {
            let cancelled = cancelled.clone();
            async move {
                tokio::select! {
                    _ = cx.cancelled() => {
                        cancelled.store(true, Ordering::SeqCst);
                        Err(Fail::fatal("the handler says: stopped"))
                    }
                    _ = tokio::time::sleep(PATIENCE * 2) => Ok(Value::Null),
                }
            }
        })
        .expect("register");
    }
    let stuck = o
        .enqueue("s", job("stuck", json!({})))
        .await
        .expect("enqueue");
    let after = o
        .enqueue("s", job("after", json!({})))
        .await
        .expect("enqueue");
    wait_for_state(&o, &stuck.job.id, JobState::Running).await;
    let stopped_some = o.shutdown().await;
    assert!(stopped_some, "shutdown did not say it stopped a handler");
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the handler was not cancelled"
    );

    // Reopened without handlers: the job is back in line at once (its lease
    // has most of its two minutes left), not failed with the handler's error
    // (nothing was reported); the later job is untouched.
    let o = open(&dir).await;
    let j = o.job(&stuck.job.id).await.expect("job");
    assert_eq!(j.state, JobState::Queued, "{j:?}");
    assert_eq!(j.attempt, 1, "{j:?}");
    let err = j.error.clone().expect("the interruption is recorded");
    assert_eq!(err["reason"], "interrupted", "{err}");
    assert!(
        !err.to_string().contains("the handler says"),
        "the abandoned attempt was reported: {err}"
    );
    let a = o.job(&after.job.id).await.expect("job");
    assert_eq!((a.state, a.attempt), (JobState::Queued, 0), "{a:?}");

    let seen: Log<(String, u32)> = Log::default();
    {
        let seen = seen.clone();
        o.handle("s", 1, move |cx: JobCx<Value>| {
            let seen = seen.clone();
            async move {
                seen.push((cx.id.clone(), cx.attempt));
                Ok::<_, Fail>(Value::Null)
            }
        })
        .expect("register");
    }
    let j = finished(&o, &stuck.job.id).await;
    let a = finished(&o, &after.job.id).await;
    assert_eq!(
        seen.get(),
        vec![("stuck".to_string(), 2), ("after".to_string(), 1)]
    );
    assert_eq!((j.state, j.attempt), (JobState::Succeeded, 2), "{j:?}");
    assert_eq!(a.state, JobState::Succeeded, "{a:?}");
    assert!(j.start_no < a.start_no, "{j:?} {a:?}");
    o.shutdown().await;
}
