//! Wake-ups follow what the store changed, whichever path changed it. A
//! claim that catches its queue up (due jobs made ready, expired leases put
//! back or finished) may change more than it takes: the other claimers and
//! the job's `/wait`ers must hear of it at once, not on their safety-net
//! rechecks (10 s) nor at the end of their wait (when a long poll looks one
//! last time). No maintenance loop runs here, so only the claim's own
//! catch-up can make the change. The long polls wait far longer than the
//! time they are given to answer once woken.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use support::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_makes_two_jobs_ready_wakes_another_claimer_for_the_second() {
    let app = std::sync::Arc::new(TestApp::new());
    app.configure("q", json!({"concurrency": 2})).await;
    for id in ["d1", "d2"] {
        app.enqueue("q", json!({"id": id, "payload": {}, "delay_ms": 300}))
            .await;
    }
    // An idle claimer: it looks once (nothing is due yet) and waits.
    let idle = {
        let app = app.clone();
        tokio::spawn(async move {
            app.post(
                "/v1/queues/q/claim",
                json!({"worker": "idle", "max": 1, "wait_ms": 20_000}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Both jobs are due now; this claim promotes both and takes the first.
    let taken = app.claim("q", "busy", 1).await;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0]["job"]["id"], "d1");
    // The idle claimer is woken for the second one, long before its wait ends.
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), idle)
        .await
        .expect("the idle claimer was not woken for the job the other claim made ready")
        .expect("claimer task");
    assert_eq!(status, StatusCode::OK, "{body}");
    let leases = body["leases"].as_array().expect("leases");
    assert_eq!(
        leases.len(),
        1,
        "the idle claimer slept through the job the other claim made ready: {body}"
    );
    assert_eq!(leases[0]["job"]["id"], "d2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_a_claim_finishes_wakes_its_waiter() {
    let app = std::sync::Arc::new(TestApp::new());
    app.configure("q", json!({"lease_ms": 200})).await;
    app.enqueue("q", json!({"id": "once", "payload": {}, "max_attempts": 1}))
        .await;
    let (id, _token) = app.claim_one("q").await;
    assert_eq!(id, "once");
    // Its worker goes silent; someone waits for the job to finish.
    let waiter = {
        let app = app.clone();
        tokio::spawn(async move { app.get("/v1/jobs/once/wait?timeout_ms=20000").await })
    };
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The lease has expired; this claim's catch-up fails the job for good
    // (no attempts left).
    assert!(app.claim("q", "other", 1).await.is_empty());
    let (status, job) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter was not told the job finished")
        .expect("waiter task");
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(
        job["state"], "failed",
        "the waiter was not told the job finished: {job}"
    );
    assert_eq!(job["error"]["reason"], "lease_expired");
}
