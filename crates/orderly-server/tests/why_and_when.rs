//! Why a waiting job has not started and when it likely will (contract
//! section 4.1): one real job per `waiting_on` reason over a real SQLite
//! store, read through the router, and the estimate of a steady queue.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use orderly_server::ServerConfig;
use serde_json::{json, Value};
use support::{millis, TestApp};

fn with_no_worker_after(after: Duration) -> TestApp {
    TestApp::with_config(ServerConfig {
        no_worker_after: after,
        ..ServerConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_is_scheduled_until_its_run_at() {
    let app = TestApp::new();
    app.enqueue(
        "q",
        json!({"id": "later", "payload": null, "delay_ms": 600000}),
    )
    .await;
    let job = app.job("later").await;
    assert_eq!(job["state"], "scheduled");
    assert_eq!(
        job["waiting_on"],
        json!({"reason": "scheduled", "until": job["run_at"]})
    );
    assert_eq!(job["key_position"], Value::Null, "no key: {job}");
    assert_eq!(job["eta"], Value::Null, "no history: {job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_waiting_to_retry_is_in_its_backoff() {
    let app = TestApp::new();
    app.configure(
        "q",
        json!({"backoff": {"initial_ms": 600000, "max_ms": 600000, "factor": 1.0}}),
    )
    .await;
    app.enqueue("q", json!({"id": "r", "payload": null})).await;
    let (_, token) = app.claim_one("q").await;
    let (status, out) = app
        .post("/v1/jobs/r/fail", json!({"token": token, "error": "boom"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let job = app.job("r").await;
    assert_eq!(job["state"], "scheduled");
    assert_eq!(
        job["waiting_on"],
        json!({"reason": "retry_backoff", "until": job["run_at"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_behind_a_running_job_of_its_key_names_it() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 5})).await;
    for id in ["a", "b", "c"] {
        app.enqueue("q", json!({"id": id, "key": "acct-7", "payload": null}))
            .await;
    }
    app.enqueue(
        "q",
        json!({"id": "other", "key": "acct-8", "payload": null}),
    )
    .await;
    let (id, _token) = app.claim_one("q").await;
    assert_eq!(id, "a");
    for (id, ahead) in [("b", 1), ("c", 2)] {
        let job = app.job(id).await;
        assert_eq!(job["key_position"], ahead, "{job}");
        assert_eq!(
            job["waiting_on"],
            json!({"reason": "key", "job": "a"}),
            "{job}"
        );
    }
    // The head of another key waits on nothing but the line.
    let other = app.job("other").await;
    assert_eq!(other["key_position"], 0, "{other}");
    assert_eq!(other["waiting_on"], json!({"reason": "line"}), "{other}");
    // Running: no reason, no key position.
    let a = app.job("a").await;
    assert_eq!(a["waiting_on"], Value::Null, "{a}");
    assert_eq!(a["key_position"], Value::Null, "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_at_its_limit_says_concurrency() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 2})).await;
    for id in ["x", "y", "z"] {
        app.enqueue("q", json!({"id": id, "payload": null})).await;
    }
    assert_eq!(app.claim("q", "w", 2).await.len(), 2);
    let z = app.job("z").await;
    assert_eq!(
        z["waiting_on"],
        json!({"reason": "concurrency", "limit": 2}),
        "{z}"
    );
    assert_eq!(z["position"], 0);
}

/// Concurrency 2 and nothing claimed yet: both jobs could run, and the
/// next claim hands out the first, then the second. Neither waits for
/// capacity, a key or time: each is `line` (the spec's "capacity is free
/// but earlier jobs are handed out first"; the first is at the front of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_capacity_with_earlier_jobs_is_line() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 2})).await;
    for id in ["first", "second"] {
        app.enqueue("q", json!({"id": id, "payload": null})).await;
    }
    for (id, position) in [("first", 0), ("second", 1)] {
        let job = app.job(id).await;
        assert_eq!(job["waiting_on"], json!({"reason": "line"}), "{job}");
        assert_eq!(job["position"], position);
    }
    // The list says the same.
    let (status, page) = app.get("/v1/queues/q/jobs").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for job in page["jobs"].as_array().expect("jobs") {
        assert_eq!(job["waiting_on"], json!({"reason": "line"}), "{job}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_says_paused() {
    let app = TestApp::new();
    app.configure("q", json!({"paused": true})).await;
    app.enqueue("q", json!({"id": "p", "key": "k", "payload": null}))
        .await;
    let job = app.job("p").await;
    assert_eq!(job["waiting_on"], json!({"reason": "paused"}), "{job}");
    assert_eq!(job["key_position"], 0);
    app.configure("q", json!({"paused": false})).await;
    let job = app.job("p").await;
    assert_eq!(job["waiting_on"], json!({"reason": "line"}), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_claim_for_the_while_says_no_worker_unless_an_executor_runs_the_queue() {
    let while_ = Duration::from_millis(200);
    let app = with_no_worker_after(while_);
    app.configure("q", json!({"concurrency": 2})).await;
    app.configure(
        "ex",
        json!({"executor": {"type": "command", "argv": ["true"]}}),
    )
    .await;
    for id in ["j1", "j2"] {
        app.enqueue("q", json!({"id": id, "payload": null})).await;
    }
    app.enqueue("ex", json!({"id": "e", "payload": null})).await;
    tokio::time::sleep(while_ * 2).await;
    assert_eq!(
        app.job("j2").await["waiting_on"],
        json!({"reason": "no_worker"})
    );
    // The executor is not running in this test, but the queue has one: it
    // is never said to lack a worker.
    assert_eq!(app.job("e").await["waiting_on"], json!({"reason": "line"}));
    // A claim is a worker asking: at once, j2 is only in line.
    assert_eq!(app.claim("q", "w", 1).await.len(), 1);
    assert_eq!(app.job("j2").await["waiting_on"], json!({"reason": "line"}));
    // And after the while without another, no worker again.
    tokio::time::sleep(while_ * 2).await;
    assert_eq!(
        app.job("j2").await["waiting_on"],
        json!({"reason": "no_worker"})
    );
}

/// A steady queue: one worker drains jobs that each take the same time.
/// Once the queue has a pace, the estimate for the job five places back
/// brackets the time it really starts, in most of the readings (the
/// scheduler of a shared machine may stretch a gap now and then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_queue_estimate_brackets_the_real_start() {
    const JOBS: usize = 40;
    const AHEAD: usize = 4;
    let work = Duration::from_millis(20);
    let app = TestApp::new();
    let ids: Vec<String> = (0..JOBS).map(|i| format!("j{i:02}")).collect();
    for id in &ids {
        app.enqueue("q", json!({"id": id, "payload": null})).await;
    }
    assert_eq!(app.job("j05").await["eta"], Value::Null, "no start yet");
    let mut readings = Vec::new();
    for i in 0..JOBS {
        // After a few starts, read the job AHEAD + 1 places back before
        // the next claim: AHEAD waiting jobs are ahead of it.
        if (3..JOBS - AHEAD - 1).contains(&i) {
            let id = &ids[i + AHEAD];
            let job = app.job(id).await;
            assert_eq!(job["position"], AHEAD, "{job}");
            assert_eq!(job["waiting_on"], json!({"reason": "line"}), "{job}");
            let eta = &job["eta"];
            assert!(eta.is_object(), "a pace is measured: {job}");
            readings.push((id.clone(), millis(&eta["earliest"]), millis(&eta["latest"])));
        }
        let (id, token) = app.claim_one("q").await;
        assert_eq!(id, ids[i], "strict FIFO");
        tokio::time::sleep(work).await;
        app.complete(&id, &token, Value::Null).await;
    }
    let mut bracketed = 0;
    let mut misses = Vec::new();
    for (id, earliest, latest) in &readings {
        let started = millis(&app.job(id).await["started_at"]);
        assert!(earliest <= latest, "{id}: {earliest} > {latest}");
        if (*earliest..=*latest).contains(&started) {
            bracketed += 1;
        } else {
            misses.push(format!(
                "{id}: started {started}, estimate {earliest}..{latest}"
            ));
        }
    }
    assert!(
        bracketed * 4 >= readings.len() * 3,
        "{bracketed} of {} estimates bracket the real start; misses:\n{}",
        readings.len(),
        misses.join("\n")
    );
}
