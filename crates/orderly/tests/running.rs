//! A running job and the application's calls around it: cancellation
//! reaches the handler, progress shows on the job while it runs, enqueue is
//! idempotent by id, a batch takes consecutive `seq`s, `wait` returns the
//! finished job.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderly::{Error, Fail, JobCx, JobState, NewJob, QueuePatch, ServiceError, StoreError};
use serde_json::{json, Value};
use support::*;
use tokio::sync::Notify;

/// Heartbeats every 500 ms (a third of the lease), so that cancels and
/// progress travel quickly.
fn short_lease() -> QueuePatch {
    QueuePatch {
        lease_ms: Some(1_500),
        ..Default::default()
    }
}

/// `cancel` of a running job resolves the handler's `cancelled()`; the job
/// ends `cancelled` (not retried) and the runner takes the next job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_running_handler() {
    let dir = tempdir();
    let o = open(&dir).await;
    o.configure("c", short_lease()).await.expect("configure");
    let saw_cancel = Arc::new(AtomicBool::new(false));
    {
        let saw_cancel = saw_cancel.clone();
        o.handle("c", 1, move |cx: JobCx<Value>| {
            let saw_cancel = saw_cancel.clone();
            async move {
                if cx.payload["wait"] == true {
                    tokio::select! {
                        _ = cx.cancelled() => {
                            saw_cancel.store(cx.is_cancelled(), Ordering::SeqCst);
                            return Err(Fail::from("stopped on request"));
                        }
                        _ = tokio::time::sleep(PATIENCE * 2) => {}
                    }
                }
                Ok::<_, Fail>(Value::Null)
            }
        })
        .expect("register");
    }
    let long = o
        .enqueue("c", job("long", json!({ "wait": true })))
        .await
        .expect("enqueue");
    let next = o
        .enqueue("c", job("next", json!({})))
        .await
        .expect("enqueue");
    wait_for_state(&o, &long.job.id, JobState::Running).await;
    let asked = o.cancel(&long.job.id).await.expect("cancel");
    assert_eq!(asked.state, JobState::Running, "{asked:?}");
    assert!(asked.cancel_requested, "{asked:?}");
    let j = finished(&o, &long.job.id).await;
    assert_eq!(j.state, JobState::Cancelled, "{j:?}");
    assert_eq!(j.attempt, 1, "{j:?}");
    assert!(
        saw_cancel.load(Ordering::SeqCst),
        "the handler's cancelled() never resolved"
    );
    let n = finished(&o, &next.job.id).await;
    assert_eq!(n.state, JobState::Succeeded, "{n:?}");
    o.shutdown().await;
}

/// Progress a handler records is on the job while it still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_on_the_running_job() {
    let dir = tempdir();
    let o = open(&dir).await;
    o.configure("pr", short_lease()).await.expect("configure");
    let go = Arc::new(Notify::new());
    {
        let go = go.clone();
        o.handle("pr", 1, move |cx: JobCx<Value>| {
            let go = go.clone();
            async move {
                cx.progress(json!({ "done": 1, "total": 3 }));
                go.notified().await;
                Ok::<_, Fail>(json!("finished"))
            }
        })
        .expect("register");
    }
    let e = o
        .enqueue("pr", job("work", json!({})))
        .await
        .expect("enqueue");
    let shown = wait_until(|| async {
        o.job(&e.job.id)
            .await
            .map(|j| j.progress == Some(json!({ "done": 1, "total": 3 })))
            .unwrap_or(false)
    })
    .await;
    let j = o.job(&e.job.id).await.expect("job");
    assert!(shown, "progress never showed: {j:?}");
    assert_eq!(j.state, JobState::Running, "{j:?}");
    go.notify_one();
    let j = finished(&o, &e.job.id).await;
    assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    assert_eq!(j.result, Some(json!("finished")));
    o.shutdown().await;
}

/// The same id with the same content is the same job (`created: false`, same
/// `seq`); with another payload it is a conflict that changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_is_idempotent_by_id() {
    let dir = tempdir();
    let o = open(&dir).await;
    let first = o
        .enqueue("idem", job("once", json!({ "n": 1 })))
        .await
        .expect("enqueue");
    assert!(first.created);
    let again = o
        .enqueue("idem", job("once", json!({ "n": 1 })))
        .await
        .expect("replay");
    assert!(!again.created, "a replay created a job: {again:?}");
    assert_eq!(again.job.seq, first.job.seq);
    match o.enqueue("idem", job("once", json!({ "n": 2 }))).await {
        Err(Error::Service(ServiceError::Store(StoreError::IdConflict { .. }))) => {}
        other => panic!("another payload under the same id: {other:?}"),
    }
    let all = o.jobs("idem", None, 100).await.expect("list");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].payload, json!({ "n": 1 }));
    o.shutdown().await;
}

/// A batch is committed with consecutive `seq`s in its order and runs in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_consecutive_seqs() {
    let dir = tempdir();
    let o = open(&dir).await;
    let before = o
        .enqueue("b", job("before", json!({})))
        .await
        .expect("enqueue");
    let batch: Vec<NewJob> = (0..5)
        .map(|i| NewJob::new(&json!({ "i": i })).expect("payload"))
        .collect();
    let out = o.enqueue_many("b", batch).await.expect("batch");
    let seqs: Vec<i64> = out.iter().map(|e| e.job.seq).collect();
    assert!(out.iter().all(|e| e.created));
    assert!(seqs[0] > before.job.seq, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    for (i, e) in out.iter().enumerate() {
        assert_eq!(e.job.payload, json!({ "i": i }));
    }
    let seen: Log<i64> = Log::default();
    {
        let seen = seen.clone();
        o.handle("b", 1, move |cx: JobCx<Value>| {
            let seen = seen.clone();
            async move {
                seen.push(cx.seq);
                Ok::<_, Fail>(Value::Null)
            }
        })
        .expect("register");
    }
    for e in &out {
        finished(&o, &e.job.id).await;
    }
    let mut all = vec![before.job.seq];
    all.extend(&seqs);
    assert_eq!(seen.get(), all);
    // An empty batch is refused with a message naming the field.
    match o.enqueue_many("b", Vec::new()).await {
        Err(e @ Error::Service(ServiceError::Validation(_))) => {
            assert!(e.to_string().contains("jobs"), "{e}")
        }
        other => panic!("an empty batch: {other:?}"),
    }
    o.shutdown().await;
}

/// `wait` returns the job once finished, with its result; on a job that does
/// not finish it returns the job as it is when the timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_the_finished_job() {
    let dir = tempdir();
    let o = open(&dir).await;
    o.handle("w", 1, |cx: JobCx<Value>| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, Fail>(json!({ "echo": cx.payload }))
    })
    .expect("register");
    let e = o
        .enqueue("w", job("w1", json!("hi")))
        .await
        .expect("enqueue");
    let j = o.wait(&e.job.id, PATIENCE).await.expect("wait");
    assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    assert_eq!(j.result, Some(json!({ "echo": "hi" })));
    // No handler on this queue: the wait ends at its timeout, job unfinished.
    let idle = o
        .enqueue("nobody", job("idle", json!({})))
        .await
        .expect("enqueue");
    let j = o
        .wait(&idle.job.id, Duration::from_millis(200))
        .await
        .expect("wait");
    assert_eq!(j.state, JobState::Queued, "{j:?}");
    match o.wait("no-such-job", Duration::from_millis(10)).await {
        Err(Error::Service(ServiceError::Store(StoreError::JobNotFound(_)))) => {}
        other => panic!("waiting on a missing job: {other:?}"),
    }
    o.shutdown().await;
}
