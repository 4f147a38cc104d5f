//! Long polls answer as soon as there is something to answer (contract
//! section 5), and delayed jobs start at their time and hold their key's
//! place (section 2).

mod support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use support::{call_router, Body, TestApp};
use tokio::task::JoinHandle;

/// Sends a request on its own task, timing it from now.
fn spawn_request(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> JoinHandle<(StatusCode, Value, Instant)> {
    let router = app.router.clone();
    let path = path.to_string();
    tokio::spawn(async move {
        let (status, body) = call_router(router, method, &path, body.map(Body::Json), None).await;
        (status, body, Instant::now())
    })
}

/// Asserts the request is still waiting after `for_ms`.
async fn assert_pending<T>(handle: &JoinHandle<T>, for_ms: u64) {
    tokio::time::sleep(Duration::from_millis(for_ms)).await;
    assert!(
        !handle.is_finished(),
        "the long poll answered before anything happened"
    );
}

/// Awaits the request (at most 10 s, far below the 20 s poll); returns the
/// time from `since` to its answer.
async fn finish(
    handle: JoinHandle<(StatusCode, Value, Instant)>,
    since: Instant,
) -> (StatusCode, Value, Duration) {
    let (status, body, at) = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the long poll was not woken")
        .expect("task");
    (status, body, at.saturating_duration_since(since))
}

/// Well below the service's 10 s re-check, so only a real wake-up passes.
const WOKEN_WITHIN: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_is_woken_by_an_enqueue() {
    let app = TestApp::new();
    let claim = spawn_request(
        &app,
        Method::POST,
        "/v1/queues/lp/claim",
        Some(json!({"worker": "w", "wait_ms": 20000})),
    );
    assert_pending(&claim, 300).await;
    let enqueued_at = Instant::now();
    app.enqueue("lp", json!({"id": "first", "payload": 1}))
        .await;
    let (status, out, took) = finish(claim, enqueued_at).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let leases = out["leases"].as_array().expect("leases");
    assert_eq!(leases.len(), 1, "{out}");
    assert_eq!(leases[0]["job"]["id"], "first");
    assert_eq!(leases[0]["job"]["state"], "running");
    assert!(took < WOKEN_WITHIN, "woken after {took:?}");
    assert_eq!(app.job("first").await["state"], "running");
    // The claim waited in the writer and took the job in the enqueue's commit.
    let (_, metrics) = app.get("/metrics").await;
    let text = metrics.as_str().expect("metrics are text");
    assert!(
        text.lines()
            .any(|l| l == "orderly_writer_parked_claim_starts_total 1"),
        "one parked start counted:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_on_an_existing_queue_is_woken_by_an_enqueue() {
    let app = TestApp::new();
    app.configure("lp", json!({"concurrency": 2})).await;
    let claim = spawn_request(
        &app,
        Method::POST,
        "/v1/queues/lp/claim",
        Some(json!({"worker": "w", "max": 5, "wait_ms": 20000})),
    );
    assert_pending(&claim, 300).await;
    let enqueued_at = Instant::now();
    app.post(
        "/v1/queues/lp/jobs/batch",
        json!({"jobs": [{"payload": null, "id": "b1"}, {"payload": null, "id": "b2"}, {"payload": null, "id": "b3"}]}),
    )
    .await;
    let (status, out, took) = finish(claim, enqueued_at).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&Value> = out["leases"]
        .as_array()
        .expect("leases")
        .iter()
        .map(|l| &l["job"]["id"])
        .collect();
    assert_eq!(ids, vec!["b1", "b2"]);
    assert!(took < WOKEN_WITHIN, "woken after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_woken_when_capacity_frees_up() {
    let app = TestApp::new();
    app.enqueue("lp", json!({"payload": null, "id": "a"})).await;
    app.enqueue("lp", json!({"payload": null, "id": "b"})).await;
    let (_, token) = app.claim_one("lp").await;
    let claim = spawn_request(
        &app,
        Method::POST,
        "/v1/queues/lp/claim",
        Some(json!({"worker": "w2", "wait_ms": 20000})),
    );
    assert_pending(&claim, 300).await;
    let done_at = Instant::now();
    app.complete("a", &token, json!(null)).await;
    let (status, out, took) = finish(claim, done_at).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["leases"][0]["job"]["id"], "b");
    assert!(took < WOKEN_WITHIN, "woken after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_next_of_complete_is_woken_by_an_enqueue() {
    let app = TestApp::new();
    app.enqueue("lp", json!({"payload": null, "id": "a"})).await;
    let (_, token) = app.claim_one("lp").await;
    let complete = spawn_request(
        &app,
        Method::POST,
        "/v1/jobs/a/complete",
        Some(json!({"token": token, "result": 7, "claim_next": {"worker": "w", "wait_ms": 20000}})),
    );
    assert_pending(&complete, 300).await;
    // The report itself is already committed while the claim waits.
    let job = app.job("a").await;
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["result"], 7);
    let enqueued_at = Instant::now();
    app.enqueue("lp", json!({"payload": null, "id": "b"})).await;
    let (status, out, took) = finish(complete, enqueued_at).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["job"]["id"], "a");
    assert_eq!(out["job"]["state"], "succeeded");
    assert_eq!(out["leases"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(out["leases"][0]["job"]["id"], "b");
    assert!(took < WOKEN_WITHIN, "woken after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_next_of_fail_is_woken_by_an_enqueue() {
    let app = TestApp::new();
    app.enqueue("lp", json!({"payload": null, "id": "a"})).await;
    let (_, token) = app.claim_one("lp").await;
    let fail = spawn_request(
        &app,
        Method::POST,
        "/v1/jobs/a/fail",
        Some(
            json!({"token": token, "error": "x", "retry": false, "claim_next": {"worker": "w", "wait_ms": 20000}}),
        ),
    );
    assert_pending(&fail, 300).await;
    let enqueued_at = Instant::now();
    app.enqueue("lp", json!({"payload": null, "id": "b"})).await;
    let (status, out, took) = finish(fail, enqueued_at).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["job"]["state"], "failed");
    assert_eq!(out["leases"][0]["job"]["id"], "b");
    assert!(took < WOKEN_WITHIN, "woken after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_the_job_completes() {
    let app = TestApp::new();
    app.enqueue("lp", json!({"payload": null, "id": "j"})).await;
    let (_, token) = app.claim_one("lp").await;
    let wait = spawn_request(&app, Method::GET, "/v1/jobs/j/wait?timeout_ms=20000", None);
    assert_pending(&wait, 300).await;
    let done_at = Instant::now();
    app.complete("j", &token, json!({"ok": true})).await;
    let (status, out, took) = finish(wait, done_at).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["id"], "j");
    assert_eq!(out["state"], "succeeded");
    assert_eq!(out["result"], json!({"ok": true}));
    assert!(took < WOKEN_WITHIN, "woken after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_a_queued_job_is_cancelled() {
    let app = TestApp::new();
    app.enqueue("lp", json!({"payload": null, "id": "j"})).await;
    let wait = spawn_request(&app, Method::GET, "/v1/jobs/j/wait?timeout_ms=20000", None);
    assert_pending(&wait, 300).await;
    let at = Instant::now();
    let (status, _) = app.req(Method::POST, "/v1/jobs/j/cancel", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, out, took) = finish(wait, at).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["state"], "cancelled");
    assert!(took < WOKEN_WITHIN, "woken after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_on_a_finished_job_answers_at_once_and_times_out_otherwise() {
    let app = TestApp::new();
    app.enqueue("lp", json!({"payload": null, "id": "j"})).await;
    let start = Instant::now();
    let (status, out) = app.get("/v1/jobs/j/wait?timeout_ms=300").await;
    let took = start.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["state"], "queued");
    assert_eq!(out["position"], 0);
    assert!(
        took >= Duration::from_millis(290),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(3), "answered after {took:?}");

    let (_, token) = app.claim_one("lp").await;
    app.complete("j", &token, json!(1)).await;
    let start = Instant::now();
    let (status, out) = app.get("/v1/jobs/j/wait?timeout_ms=20000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["state"], "succeeded");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_an_empty_queue_answers_empty_after_wait_ms() {
    let app = TestApp::new();
    for queue in ["never-used", "configured"] {
        if queue == "configured" {
            app.configure(queue, json!({})).await;
        }
        let start = Instant::now();
        let (status, out) = app
            .post(
                &format!("/v1/queues/{queue}/claim"),
                json!({"worker": "w", "wait_ms": 300}),
            )
            .await;
        let took = start.elapsed();
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(out, json!({"leases": []}));
        assert!(
            took >= Duration::from_millis(290),
            "{queue}: answered after {took:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{queue}: answered after {took:?}"
        );
    }
    // wait_ms 0 answers at once.
    let start = Instant::now();
    let (status, out) = app
        .post("/v1/queues/configured/claim", json!({"worker": "w"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out, json!({"leases": []}));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_is_not_woken_by_another_queue() {
    let app = TestApp::new();
    let claim = spawn_request(
        &app,
        Method::POST,
        "/v1/queues/mine/claim",
        Some(json!({"worker": "w", "wait_ms": 1500})),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.enqueue("theirs", json!({"payload": null, "id": "x"}))
        .await;
    let (status, out, _) = finish(claim, Instant::now()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out, json!({"leases": []}));
    assert_eq!(app.job("x").await["state"], "queued");
}

// ---------------------------------------------------------------- delayed jobs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_starts_at_its_time_through_a_long_poll() {
    let app = TestApp::new();
    app.spawn_background();
    let enqueued_at = Instant::now();
    let job = app
        .enqueue(
            "d",
            json!({"payload": null, "id": "later", "delay_ms": 300}),
        )
        .await;
    assert_eq!(job["state"], "scheduled");
    assert_eq!(job["position"], 0);
    let delay = support::millis(&job["run_at"]) - support::millis(&job["enqueued_at"]);
    assert_eq!(delay, 300);
    assert_eq!(
        app.claim("d", "w", 1).await.len(),
        0,
        "claimable before its time"
    );
    assert_eq!(app.queue("d").await["counts"]["scheduled"], 1);

    let (status, out) = app
        .post(
            "/v1/queues/d/claim",
            json!({"worker": "w", "wait_ms": 5000}),
        )
        .await;
    let took = enqueued_at.elapsed();
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["leases"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(out["leases"][0]["job"]["id"], "later");
    let started = support::millis(&out["leases"][0]["job"]["started_at"]);
    assert!(
        started >= support::millis(&job["run_at"]),
        "started before run_at"
    );
    assert!(took >= Duration::from_millis(290), "claimed after {took:?}");
    assert!(took < Duration::from_millis(2500), "claimed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_promotes_a_due_job_without_a_claim() {
    let app = TestApp::new();
    app.spawn_background();
    app.enqueue(
        "d",
        json!({"payload": null, "id": "later", "delay_ms": 200}),
    )
    .await;
    let promoted = support::eventually(Duration::from_secs(3), || async {
        app.job("later").await["state"] == "queued"
    })
    .await;
    assert!(promoted, "still {}", app.job("later").await["state"]);
    assert_eq!(app.queue("d").await["counts"]["queued"], 1);
    assert_eq!(app.queue("d").await["counts"]["scheduled"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_at_in_the_past_is_ready_now_and_in_the_future_is_scheduled() {
    let app = TestApp::new();
    let past = app
        .enqueue(
            "d",
            json!({"payload": null, "id": "past", "run_at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(past["state"], "queued");
    let future = app
        .enqueue(
            "d",
            json!({"payload": null, "id": "future", "run_at": "2999-01-01T00:00:00+02:00"}),
        )
        .await;
    assert_eq!(future["state"], "scheduled");
    assert_eq!(future["run_at"], "2998-12-31T22:00:00.000Z");
    assert_eq!(future["position"], 1);
    let (id, _) = app.claim_one("d").await;
    assert_eq!(id, "past");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_delayed_job_holds_its_key() {
    let app = TestApp::new();
    app.spawn_background();
    app.configure("d", json!({"concurrency": 5})).await;
    let delayed = app
        .enqueue(
            "d",
            json!({"payload": null, "id": "k1", "key": "acct", "delay_ms": 400}),
        )
        .await;
    assert_eq!(delayed["state"], "scheduled");
    let next = app
        .enqueue("d", json!({"payload": null, "id": "k2", "key": "acct"}))
        .await;
    assert_eq!(next["state"], "queued");
    app.enqueue("d", json!({"payload": null, "id": "free"}))
        .await;
    // Only the keyless job may start; k2 waits behind the delayed k1.
    let leases = app.claim("d", "w", 5).await;
    let ids: Vec<&Value> = leases.iter().map(|l| &l["job"]["id"]).collect();
    assert_eq!(ids, vec!["free"]);

    // Once due, k1 starts, and k2 still waits for it to finish.
    let (status, out) = app
        .post(
            "/v1/queues/d/claim",
            json!({"worker": "w", "max": 5, "wait_ms": 5000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let leases = out["leases"].as_array().expect("leases");
    let ids: Vec<&Value> = leases.iter().map(|l| &l["job"]["id"]).collect();
    assert_eq!(ids, vec!["k1"]);
    assert_eq!(
        app.claim("d", "w", 5).await.len(),
        0,
        "k2 started while k1 runs"
    );
    let token = leases[0]["token"].as_str().expect("token");

    // k1 fails and will retry: it still holds the key.
    let (status, out) = app
        .post(
            "/v1/jobs/k1/fail",
            json!({"token": token, "error": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["job"]["state"], "scheduled");
    assert_eq!(
        app.claim("d", "w", 5).await.len(),
        0,
        "k2 started while k1 waits to retry"
    );

    // k1 runs again (after its backoff) and finishes; then k2 goes.
    let (status, out) = app
        .post(
            "/v1/queues/d/claim",
            json!({"worker": "w", "max": 5, "wait_ms": 5000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["leases"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(out["leases"][0]["job"]["id"], "k1");
    assert_eq!(out["leases"][0]["job"]["attempt"], 2);
    let token = out["leases"][0]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let out = app.complete("k1", &token, json!(null)).await;
    assert_eq!(out["job"]["state"], "succeeded");
    let leases = app.claim("d", "w", 5).await;
    let ids: Vec<&Value> = leases.iter().map(|l| &l["job"]["id"]).collect();
    assert_eq!(ids, vec!["k2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_puts_the_job_back_in_its_place() {
    let app = TestApp::new();
    app.spawn_background();
    app.enqueue("e", json!({"payload": null, "id": "first"}))
        .await;
    app.enqueue("e", json!({"payload": null, "id": "second"}))
        .await;
    let (status, out) = app
        .post(
            "/v1/queues/e/claim",
            json!({"worker": "dies", "lease_ms": 200}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let stale = out["leases"][0]["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(out["leases"][0]["job"]["id"], "first");
    // The next claim waits for the lease to expire, then gets `first` again, not `second`.
    let (status, out) = app
        .post(
            "/v1/queues/e/claim",
            json!({"worker": "w2", "wait_ms": 5000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["leases"][0]["job"]["id"], "first");
    assert_eq!(out["leases"][0]["job"]["attempt"], 2);
    let (status, err) = app
        .post("/v1/jobs/first/complete", json!({"token": stale}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    support::assert_error(&err, "stale_lease", "stale worker");
}

/// A claim parked in the store runs for no caller that stopped waiting:
/// neither one whose `wait_ms` ended nor one that went away (its request
/// dropped, as on a disconnect). The job waits for the next claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_stopped_waiting_is_not_run_by_a_later_enqueue() {
    let app = TestApp::new();
    app.configure("lp", json!({"concurrency": 4})).await;
    let (status, out) = app
        .post(
            "/v1/queues/lp/claim",
            json!({"worker": "timed-out", "wait_ms": 200}),
        )
        .await;
    assert_eq!((status, &out), (StatusCode::OK, &json!({"leases": []})));
    let gone = spawn_request(
        &app,
        Method::POST,
        "/v1/queues/lp/claim",
        Some(json!({"worker": "gone", "wait_ms": 20000})),
    );
    assert_pending(&gone, 300).await;
    gone.abort();
    let _ = gone.await;
    app.enqueue("lp", json!({"id": "j1", "payload": 1})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = app.job("j1").await;
    assert_eq!(job["state"], "queued", "started for nobody: {job}");
    let leases = app.claim("lp", "here", 1).await;
    assert_eq!(leases[0]["job"]["id"], "j1");
    assert_eq!(leases[0]["job"]["worker"], "here");
}

/// Waiting claims of a queue are served in the order they began to wait
/// (section 5): the first job goes to the first, the next to the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_claims_are_served_in_the_order_they_began_to_wait() {
    let app = TestApp::new();
    app.configure("lp", json!({"concurrency": 2})).await;
    let first = spawn_request(
        &app,
        Method::POST,
        "/v1/queues/lp/claim",
        Some(json!({"worker": "first", "wait_ms": 20000})),
    );
    assert_pending(&first, 300).await;
    let second = spawn_request(
        &app,
        Method::POST,
        "/v1/queues/lp/claim",
        Some(json!({"worker": "second", "wait_ms": 20000})),
    );
    assert_pending(&second, 300).await;
    let since = Instant::now();
    app.enqueue("lp", json!({"id": "j1", "payload": 1})).await;
    let (status, out, _) = finish(first, since).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["leases"][0]["job"]["id"], "j1", "{out}");
    assert_pending(&second, 200).await;
    app.enqueue("lp", json!({"id": "j2", "payload": 2})).await;
    let (status, out, took) = finish(second, since).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["leases"][0]["job"]["id"], "j2", "{out}");
    assert!(
        took < WOKEN_WITHIN + Duration::from_secs(1),
        "woken after {took:?}"
    );
    assert_eq!(app.job("j2").await["worker"], "second");
}
