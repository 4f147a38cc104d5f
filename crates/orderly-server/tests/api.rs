//! The HTTP API end to end over a real SQLite store: idempotent enqueue,
//! batches, the bearer token, the worker protocol and honest status
//! (contract sections 2–5 and 10).

mod support;

use axum::http::{Method, StatusCode};
use orderly_server::ServerConfig;
use serde_json::{json, Value};
use support::{assert_error, millis, Body, TestApp};

fn ids(jobs: &[Value]) -> Vec<&str> {
    jobs.iter().map(|j| j["id"].as_str().expect("id")).collect()
}

/// A job without what only reads explain (`key_position`, `waiting_on`,
/// `eta`: the answers of writes leave them `null`).
fn without_why(job: &Value) -> Value {
    let mut job = job.clone();
    for field in ["key_position", "waiting_on", "eta"] {
        job.as_object_mut().expect("a job object").remove(field);
    }
    job
}

fn seq(job: &Value) -> i64 {
    job["seq"].as_i64().expect("seq")
}

// ---------------------------------------------------------------- idempotency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_returns_the_same_job_and_anything_else_conflicts() {
    let app = TestApp::new();
    let body =
        json!({"id": "order:17", "key": "acct-1", "payload": {"amount": 5, "items": [1, 2]}});
    let (status, first) = app.post("/v1/queues/q/jobs", body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["id"], "order:17");
    assert_eq!(first["state"], "queued");
    assert_eq!(first["position"], 0);

    // The same request again: 200 and the very same job.
    for _ in 0..3 {
        let (status, again) = app.post("/v1/queues/q/jobs", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again, first);
    }
    // The same request through the batch route is a replay too.
    let (status, batch) = app
        .post("/v1/queues/q/jobs/batch", json!({"jobs": [body.clone()]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["jobs"], json!([first.clone()]));

    let before = app.snapshot().await;
    let conflicts = [
        (
            "q",
            json!({"id": "order:17", "key": "acct-1", "payload": {"amount": 6, "items": [1, 2]}}),
        ),
        (
            "q",
            json!({"id": "order:17", "key": "acct-1", "payload": null}),
        ),
        (
            "q",
            json!({"id": "order:17", "key": "acct-2", "payload": {"amount": 5, "items": [1, 2]}}),
        ),
        (
            "q",
            json!({"id": "order:17", "payload": {"amount": 5, "items": [1, 2]}}),
        ),
        ("other", body.clone()),
        ("q2", body.clone()),
    ];
    for (queue, req) in conflicts {
        let (status, err) = app
            .post(&format!("/v1/queues/{queue}/jobs"), req.clone())
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{queue} {req}: {err}");
        let message = assert_error(&err, "id_conflict", &req.to_string());
        assert!(message.contains("order:17"), "{message}");
    }
    // Without a payload it is neither a replay nor a conflict: it is refused.
    let (status, err) = app
        .post(
            "/v1/queues/q/jobs",
            json!({"id": "order:17", "key": "acct-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let message = assert_error(&err, "invalid_request", "no payload");
    assert!(message.contains("payload"), "{message}");
    assert_eq!(app.snapshot().await, before, "a conflict changed the store");

    let listed = app.all_jobs("q").await;
    assert_eq!(ids(&listed), vec!["order:17"]);
    assert_eq!(seq(&listed[0]), seq(&first));
    assert_eq!(app.get("/v1/queues/q2").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.queue("q").await["counts"]["queued"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_still_answers_200_after_the_job_ran() {
    let app = TestApp::new();
    let body = json!({"id": "once", "payload": 1});
    let first = app.enqueue("q", body.clone()).await;
    let (_, token) = app.claim_one("q").await;
    app.complete("once", &token, json!("done")).await;
    let (status, again) = app.post("/v1/queues/q/jobs", body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["state"], "succeeded");
    assert_eq!(again["result"], "done");
    assert_eq!(app.claim("q", "w", 5).await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_conflicting_id_is_refused_whole() {
    let app = TestApp::new();
    let a = app.enqueue("q", json!({"id": "a", "payload": 1})).await;
    let before = app.snapshot().await;
    let (status, err) = app
        .post(
            "/v1/queues/q/jobs/batch",
            json!({"jobs": [
                {"id": "b1", "payload": 1},
                {"payload": "no id"},
                {"id": "a", "payload": 2},
                {"id": "b2", "payload": 1},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "id_conflict", "batch");
    assert_eq!(app.snapshot().await, before);
    for id in ["b1", "b2"] {
        let (status, err) = app.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {err}");
        assert_error(&err, "job_not_found", id);
    }
    // The refused batch used no place in line: the next job comes right after `a`.
    let next = app.enqueue("q", json!({"payload": null, "id": "c"})).await;
    assert!(seq(&next) > seq(&a));
    assert_eq!(next["position"], 1);
    assert_eq!(ids(&app.all_jobs("q").await), vec!["a", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_replaying_earlier_ids_returns_them_in_array_order() {
    let app = TestApp::new();
    let a = app.enqueue("q", json!({"id": "a", "payload": "A"})).await;
    let b = app.enqueue("q", json!({"id": "b", "payload": "B"})).await;

    // Nothing new: 200, the stored jobs, in the batch's order.
    let (status, out) = app
        .post(
            "/v1/queues/q/jobs/batch",
            json!({"jobs": [{"id": "b", "payload": "B"}, {"id": "a", "payload": "A"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["jobs"], json!([b.clone(), a.clone()]));

    // Some new: 202; replays keep their seq, new jobs get consecutive seqs in array order.
    let batch = json!({"jobs": [
        {"id": "n1", "payload": 1},
        {"id": "a", "payload": "A"},
        {"id": "n2", "payload": 2},
        {"id": "b", "payload": "B"},
        {"id": "n3", "payload": 3},
    ]});
    let (status, out) = app.post("/v1/queues/q/jobs/batch", batch.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let jobs = out["jobs"].as_array().expect("jobs").clone();
    assert_eq!(ids(&jobs), vec!["n1", "a", "n2", "b", "n3"]);
    assert_eq!(jobs[1], a);
    assert_eq!(jobs[3], b);
    let s = seq(&b);
    assert_eq!(
        [seq(&jobs[0]), seq(&jobs[2]), seq(&jobs[4])],
        [s + 1, s + 2, s + 3]
    );
    assert_eq!(
        [
            &jobs[0]["position"],
            &jobs[2]["position"],
            &jobs[4]["position"]
        ],
        [&json!(2), &json!(3), &json!(4)]
    );

    // The whole batch again: 200 and the same jobs.
    let (status, again) = app.post("/v1/queues/q/jobs/batch", batch).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["jobs"], Value::Array(jobs));
    assert_eq!(
        ids(&app.all_jobs("q").await),
        vec!["a", "b", "n1", "n2", "n3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_1000_gets_consecutive_seqs_and_positions_in_array_order() {
    let app = TestApp::new();
    let jobs: Vec<Value> = (0..1000)
        .map(|i| json!({"id": format!("j{i:04}"), "payload": {"i": i}}))
        .collect();
    let (status, out) = app
        .post("/v1/queues/bulk/jobs/batch", json!({"jobs": jobs}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let out = out["jobs"].as_array().expect("jobs").clone();
    assert_eq!(out.len(), 1000);
    let first = seq(&out[0]);
    for (i, job) in out.iter().enumerate() {
        assert_eq!(job["id"], format!("j{i:04}"));
        assert_eq!(seq(job), first + i as i64, "seq of {i}");
        assert_eq!(job["position"], i, "position of {i}");
        assert_eq!(job["payload"], json!({"i": i}));
        assert_eq!(job["state"], "queued");
        assert_eq!(job["queue"], "bulk");
    }
    let listed = app.all_jobs("bulk").await;
    assert_eq!(listed.len(), 1000);
    for (i, job) in listed.iter().enumerate() {
        assert_eq!(job["id"], format!("j{i:04}"));
        assert_eq!(seq(job), first + i as i64);
        assert_eq!(job["position"], i);
    }
    assert_eq!(app.job("j0999").await["position"], 999);
    let leases = app.claim("bulk", "w", 3).await;
    // concurrency 1: one at a time, the first of the batch.
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["job"]["id"], "j0000");
}

// ---------------------------------------------------------------- security

/// Every `/v1` route, with a body that the route accepts.
fn v1_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/queues", None),
        (Method::PUT, "/v1/queues/q", Some(json!({"concurrency": 2}))),
        (Method::GET, "/v1/queues/q", None),
        (
            Method::POST,
            "/v1/queues/q/jobs",
            Some(json!({"payload": null, "id": "a"})),
        ),
        (
            Method::POST,
            "/v1/queues/q/jobs/batch",
            Some(json!({"jobs": [{"payload": null, "id": "b"}]})),
        ),
        (Method::GET, "/v1/queues/q/jobs", None),
        (
            Method::POST,
            "/v1/queues/q/claim",
            Some(json!({"worker": "w"})),
        ),
        (Method::GET, "/v1/jobs/a", None),
        (Method::GET, "/v1/jobs/a/wait?timeout_ms=0", None),
        (
            Method::POST,
            "/v1/jobs/a/heartbeat",
            Some(json!({"token": "x"})),
        ),
        (
            Method::POST,
            "/v1/jobs/a/complete",
            Some(json!({"token": "x"})),
        ),
        (
            Method::POST,
            "/v1/jobs/a/fail",
            Some(json!({"token": "x", "error": "e"})),
        ),
        (Method::POST, "/v1/reports", Some(json!({"reports": []}))),
        (Method::POST, "/v1/jobs/b/cancel", None),
        (Method::POST, "/v1/jobs/b/retry", None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_route_needs_the_token_and_healthz_does_not() {
    let app = TestApp::with_config(ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    });
    let (status, health) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");
    let (status, _) = app.call(Method::GET, "/healthz", None, Some("wrong")).await;
    assert_eq!(status, StatusCode::OK);

    let before = app.snapshot().await;
    for (method, path, body) in v1_routes() {
        for (how, header) in [
            ("no header", None),
            ("wrong token", Some("Bearer nope")),
            ("token with a suffix", Some("Bearer s3cret2")),
            ("token prefix", Some("Bearer s3cre")),
            ("empty token", Some("Bearer ")),
            ("no Bearer scheme", Some("s3cret")),
            ("Basic scheme", Some("Basic s3cret")),
        ] {
            let mut req = axum::http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header("content-type", "application/json");
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            let req = req
                .body(axum::body::Body::from(
                    body.as_ref().map(|b| b.to_string()).unwrap_or_default(),
                ))
                .expect("request");
            let (status, err) = support::send(app.router.clone(), req).await;
            let what = format!("{method} {path} with {how}");
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {err}");
            assert_error(&err, "unauthorized", &what);
        }
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "an unauthorized request changed the store"
    );

    // With the token every route works as usual.
    let expected = [
        200, 200, 200, 202, 202, 200, 200, 200, 200, 409, 409, 409, 200, 200, 202,
    ];
    for ((method, path, body), want) in v1_routes().into_iter().zip(expected) {
        let (status, out) = app
            .call(method.clone(), path, body.map(Body::Json), Some("s3cret"))
            .await;
        assert_eq!(status.as_u16(), want, "{method} {path}: {out}");
    }
    assert_eq!(app.job("b").await["state"], "queued");
    assert_eq!(app.job("a").await["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_token_the_api_is_open() {
    let app = TestApp::new();
    let (status, _) = app.call(Method::GET, "/v1/queues", None, None).await;
    assert_eq!(status, StatusCode::OK);
    // A token sent anyway is ignored.
    let (status, _) = app
        .call(Method::GET, "/v1/queues", None, Some("anything"))
        .await;
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------- worker protocol

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_takes_leases_in_seq_order_up_to_concurrency() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 3})).await;
    for i in 0..5 {
        app.enqueue("q", json!({"id": format!("j{i}"), "payload": i}))
            .await;
    }
    let (status, out) = app
        .post(
            "/v1/queues/q/claim",
            json!({"worker": "w1", "max": 10, "lease_ms": 60000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let leases = out["leases"].as_array().expect("leases");
    assert_eq!(leases.len(), 3);
    let jobs: Vec<Value> = leases.iter().map(|l| l["job"].clone()).collect();
    assert_eq!(ids(&jobs), vec!["j0", "j1", "j2"]);
    let tokens: std::collections::HashSet<&str> = leases
        .iter()
        .map(|l| l["token"].as_str().expect("token"))
        .collect();
    assert_eq!(tokens.len(), 3, "tokens are distinct");
    let mut last_start = 0;
    for l in leases {
        let job = &l["job"];
        assert_eq!(job["state"], "running");
        assert_eq!(job["attempt"], 1);
        assert_eq!(job["position"], Value::Null);
        assert_eq!(job["worker"], "w1");
        let started = millis(&job["started_at"]);
        assert_eq!(millis(&l["expires_at"]), started + 60_000);
        assert_eq!(job["lease_expires_at"], l["expires_at"]);
        let start_no = job["start_no"].as_i64().expect("start_no");
        assert!(start_no > last_start, "start_no increases in seq order");
        last_start = start_no;
    }
    // Capacity is used up.
    assert_eq!(app.claim("q", "w2", 10).await.len(), 0);
    assert_eq!(app.queue("q").await["counts"]["running"], 3);
    assert_eq!(app.queue("q").await["counts"]["queued"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_extends_the_lease_and_records_progress() {
    let app = TestApp::new();
    app.enqueue("q", json!({"payload": null, "id": "j"})).await;
    let (status, out) = app
        .post(
            "/v1/queues/q/claim",
            json!({"worker": "w", "lease_ms": 5000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let lease = &out["leases"][0];
    let token = lease["token"].as_str().expect("token");
    let first_expiry = millis(&lease["expires_at"]);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let (status, hb) = app
        .post(
            "/v1/jobs/j/heartbeat",
            json!({"token": token, "progress": {"done": 3, "of": 10}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hb}");
    assert_eq!(hb["cancel_requested"], false);
    let expiry = millis(&hb["expires_at"]);
    assert!(expiry >= first_expiry + 30, "{expiry} vs {first_expiry}");
    let job = app.job("j").await;
    assert_eq!(job["progress"], json!({"done": 3, "of": 10}));
    assert_eq!(job["lease_expires_at"], hb["expires_at"]);
    assert_eq!(job["state"], "running");
    // A heartbeat without progress keeps the last progress.
    let (status, _) = app
        .post("/v1/jobs/j/heartbeat", json!({"token": token}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.job("j").await["progress"], json!({"done": 3, "of": 10}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_stores_the_result_and_the_token_is_then_stale_but_for_a_repeat() {
    let app = TestApp::new();
    app.enqueue("q", json!({"id": "j", "payload": {"x": 1}}))
        .await;
    let (_, token) = app.claim_one("q").await;
    let out = app.complete("j", &token, json!({"answer": 42})).await;
    assert_eq!(out["job"]["state"], "succeeded");
    assert_eq!(out["job"]["result"], json!({"answer": 42}));
    assert!(out.get("leases").is_none(), "{out}");
    let job = app.job("j").await;
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["result"], json!({"answer": 42}));
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["position"], Value::Null);
    assert!(job["finished_at"].is_string());
    assert_eq!(job["lease_expires_at"], Value::Null);
    for (path, body) in [
        ("/v1/jobs/j/heartbeat", json!({"token": token})),
        ("/v1/jobs/j/fail", json!({"token": token, "error": "late"})),
    ] {
        let (status, err) = app.post(path, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}");
        assert_error(&err, "stale_lease", path);
    }
    // The same complete sent again (its answer lost) is answered, and changes nothing.
    let (status, again) = app
        .post(
            "/v1/jobs/j/complete",
            json!({"token": token, "result": "other"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["job"], job);
    assert_eq!(app.job("j").await, job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_retries_with_backoff_or_fails_for_good() {
    let app = TestApp::new();
    app.enqueue("q", json!({"payload": null, "id": "r"})).await;
    let (_, token) = app.claim_one("q").await;
    let (status, out) = app
        .post(
            "/v1/jobs/r/fail",
            json!({"token": token, "error": {"msg": "boom"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let job = app.job("r").await;
    assert_eq!(without_why(&out["job"]), without_why(&job));
    assert_eq!(job["state"], "scheduled");
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["error"], json!({"msg": "boom"}));
    assert_eq!(job["position"], 0);
    // Default backoff: 1 s with jitter in [0.8, 1.2).
    let delay = millis(&job["run_at"]) - millis(&job["started_at"]);
    assert!((800..=1300).contains(&delay), "retry delay {delay} ms");
    // Not claimable during the backoff.
    assert_eq!(app.claim("q", "w", 1).await.len(), 0);

    app.enqueue("q", json!({"payload": null, "id": "f"})).await;
    // A keyless job waiting to retry lets later jobs go.
    let (id, token) = app.claim_one("q").await;
    assert_eq!(id, "f");
    let (status, out) = app
        .post(
            "/v1/jobs/f/fail",
            json!({"token": token, "error": "fatal", "retry": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["job"]["state"], "failed");
    assert_eq!(out["job"]["error"], "fatal");
    assert_eq!(out["job"]["attempt"], 1);
    assert!(out["job"]["finished_at"].is_string());
    let counts = &app.queue("q").await["counts"];
    assert_eq!(
        counts,
        &json!({"scheduled": 1, "queued": 0, "running": 0, "succeeded": 0, "failed": 1, "cancelled": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_attempt_failing_fails_the_job() {
    let app = TestApp::new();
    app.enqueue(
        "q",
        json!({"payload": null, "id": "once", "max_attempts": 1}),
    )
    .await;
    let (_, token) = app.claim_one("q").await;
    let (status, out) = app
        .post("/v1/jobs/once/fail", json!({"token": token, "error": "x"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["job"]["state"], "failed");
    assert_eq!(out["job"]["max_attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_running_job_is_seen_at_the_next_heartbeat() {
    let app = TestApp::new();
    app.enqueue("q", json!({"payload": null, "id": "c"})).await;
    let (_, token) = app.claim_one("q").await;
    let (status, out) = app.req(Method::POST, "/v1/jobs/c/cancel", None).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["state"], "running");
    assert_eq!(out["cancel_requested"], true);
    let (status, hb) = app
        .post("/v1/jobs/c/heartbeat", json!({"token": token}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hb["cancel_requested"], true);
    let (status, out) = app
        .post(
            "/v1/jobs/c/fail",
            json!({"token": token, "error": "stopped"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["job"]["state"], "cancelled");
    assert_eq!(app.job("c").await["state"], "cancelled");
    // Cancelling again: it is finished.
    let (status, err) = app.req(Method::POST, "/v1/jobs/c/cancel", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "invalid_state", "cancel again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_waiting_job_is_immediate_and_retry_puts_it_back_in_line() {
    let app = TestApp::new();
    let first = app.enqueue("q", json!({"payload": null, "id": "w1"})).await;
    app.enqueue("q", json!({"payload": null, "id": "w2"})).await;
    let (status, out) = app.req(Method::POST, "/v1/jobs/w1/cancel", None).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["state"], "cancelled");
    assert_eq!(app.job("w2").await["position"], 0);
    let (status, out) = app.req(Method::POST, "/v1/jobs/w1/retry", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["state"], "queued");
    assert!(seq(&out) > seq(&app.job("w2").await));
    assert!(seq(&out) > seq(&first));
    assert_eq!(out["position"], 1);
    let (id, _) = app.claim_one("q").await;
    assert_eq!(id, "w2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_answer_each_item_in_order() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 3})).await;
    for id in ["a", "b", "c"] {
        app.enqueue("q", json!({"payload": null, "id": id})).await;
    }
    let leases = app.claim("q", "w", 3).await;
    let token = |i: usize| leases[i]["token"].as_str().expect("token").to_string();
    let (status, out) = app
        .post(
            "/v1/reports",
            json!({"reports": [
                {"id": "a", "token": token(0), "outcome": "succeeded", "result": {"r": "a"}},
                {"id": "b", "token": "stale", "outcome": "succeeded"},
                {"id": "c", "token": token(2), "outcome": "failed", "error": "bad", "retry": false},
                {"id": "a", "token": token(0), "outcome": "succeeded"},
                {"id": "zzz", "token": "t", "outcome": "failed"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let results = out["results"].as_array().expect("results");
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["job"]["id"], "a");
    assert_eq!(results[0]["job"]["state"], "succeeded");
    assert_eq!(results[0]["job"]["result"], json!({"r": "a"}));
    assert!(results[0].get("error").is_none());
    assert!(results[1].get("job").is_none());
    assert_error(
        &json!({"error": results[1]["error"]}),
        "stale_lease",
        "item 1",
    );
    assert_eq!(results[2]["job"]["id"], "c");
    assert_eq!(results[2]["job"]["state"], "failed");
    assert_eq!(results[2]["job"]["error"], "bad");
    // Item 3 repeats item 0: answered with the job as item 0 left it.
    assert_eq!(results[3]["job"], results[0]["job"], "item 3");
    assert!(results[3].get("error").is_none());
    assert_error(
        &json!({"error": results[4]["error"]}),
        "job_not_found",
        "item 4",
    );
    assert_eq!(app.job("b").await["state"], "running");
    let counts = &app.queue("q").await["counts"];
    assert_eq!(
        counts,
        &json!({"scheduled": 0, "queued": 0, "running": 1, "succeeded": 1, "failed": 1, "cancelled": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_claim_next_returns_the_next_lease() {
    let app = TestApp::new();
    for id in ["a", "b", "c"] {
        app.enqueue("q", json!({"payload": null, "id": id})).await;
    }
    let (_, token) = app.claim_one("q").await;
    let (status, out) = app
        .post(
            "/v1/jobs/a/complete",
            json!({"token": token, "result": 1, "claim_next": {"worker": "w2", "max": 5}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["job"]["state"], "succeeded");
    let leases = out["leases"].as_array().expect("leases");
    // concurrency 1: exactly the next job.
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["job"]["id"], "b");
    assert_eq!(leases[0]["job"]["worker"], "w2");
    let token_b = leases[0]["token"].as_str().expect("token");
    // And the same through fail.
    let (status, out) = app
        .post(
            "/v1/jobs/b/fail",
            json!({"token": token_b, "error": "x", "retry": false, "claim_next": {"worker": "w3"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["job"]["state"], "failed");
    assert_eq!(out["leases"][0]["job"]["id"], "c");
    // Nothing left: claim_next answers an empty list at once.
    let token_c = out["leases"][0]["token"].as_str().expect("token");
    let (status, out) = app
        .post(
            "/v1/jobs/c/complete",
            json!({"token": token_c, "claim_next": {"worker": "w"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["leases"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_failed_job_gives_a_new_higher_seq() {
    let app = TestApp::new();
    let f = app.enqueue("q", json!({"id": "f", "payload": "p"})).await;
    let (_, token) = app.claim_one("q").await;
    let (status, _) = app
        .post(
            "/v1/jobs/f/fail",
            json!({"token": token, "error": "e", "retry": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let later = app
        .enqueue("q", json!({"payload": null, "id": "later"}))
        .await;
    let (status, out) = app.req(Method::POST, "/v1/jobs/f/retry", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["state"], "queued");
    assert_eq!(out["attempt"], 0);
    assert_eq!(out["payload"], "p");
    assert_eq!(out["finished_at"], Value::Null);
    assert!(
        seq(&out) > seq(&later),
        "{} vs {}",
        out["seq"],
        later["seq"]
    );
    assert!(seq(&out) > seq(&f));
    assert_eq!(out["position"], 1);
    assert_eq!(app.job("f").await["seq"], out["seq"]);
    assert_eq!(ids(&app.all_jobs("q").await), vec!["later", "f"]);
    // It runs again, as attempt 1.
    let (id, _) = app.claim_one("q").await;
    assert_eq!(id, "later");
}

// ---------------------------------------------------------------- status honesty

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_count_the_waiting_jobs_ahead() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 2})).await;
    for (i, id) in ["p0", "p1", "p2", "p3"].into_iter().enumerate() {
        let job = app.enqueue("q", json!({"payload": null, "id": id})).await;
        assert_eq!(job["position"], i);
    }
    let positions =
        |jobs: Vec<Value>| -> Vec<Value> { jobs.iter().map(|j| j["position"].clone()).collect() };
    assert_eq!(
        positions(app.all_jobs("q").await),
        vec![json!(0), json!(1), json!(2), json!(3)]
    );
    for (i, id) in ["p0", "p1", "p2", "p3"].into_iter().enumerate() {
        assert_eq!(app.job(id).await["position"], i);
    }
    let (id, token) = app.claim_one("q").await;
    assert_eq!(id, "p0");
    assert_eq!(
        positions(app.all_jobs("q").await),
        vec![Value::Null, json!(0), json!(1), json!(2)]
    );
    assert_eq!(app.job("p3").await["position"], 2);
    app.claim_one("q").await;
    assert_eq!(app.job("p3").await["position"], 1);
    app.complete("p0", &token, json!(null)).await;
    assert_eq!(
        positions(app.all_jobs("q").await),
        vec![Value::Null, Value::Null, json!(0), json!(1)]
    );
    // A job cancelled from the middle leaves the line.
    let (status, _) = app.req(Method::POST, "/v1/jobs/p2/cancel", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.job("p3").await["position"], 0);
    // A filtered listing shows the same positions.
    let (status, page) = app.get("/v1/queues/q/jobs?state=queued").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(page["jobs"].as_array().expect("jobs")), vec!["p3"]);
    assert_eq!(page["jobs"][0]["position"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_counts_are_exact_after_a_sequence_of_operations() {
    let app = TestApp::new();
    let fresh = app
        .configure("q", json!({"concurrency": 4, "lease_ms": 60000}))
        .await;
    assert_eq!(fresh["concurrency"], 4);
    assert_eq!(fresh["max_attempts"], 5);
    assert_eq!(fresh["lease_ms"], 60000);
    assert_eq!(fresh["paused"], false);
    assert_eq!(
        fresh["backoff"],
        json!({"initial_ms": 1000, "max_ms": 3600000, "factor": 2.0})
    );
    assert_eq!(fresh["executor"], Value::Null);
    for i in 0..8 {
        app.enqueue("q", json!({"payload": null, "id": format!("j{i}")}))
            .await;
    }
    app.enqueue(
        "q",
        json!({"payload": null, "id": "later", "delay_ms": 3_600_000}),
    )
    .await;
    let leases = app.claim("q", "w", 4).await; // j0..j3 running
    let tok = |i: usize| leases[i]["token"].as_str().expect("token").to_string();
    app.complete("j0", &tok(0), json!(1)).await; // succeeded
    app.post(
        "/v1/jobs/j1/fail",
        json!({"token": tok(1), "error": "e", "retry": false}),
    )
    .await; // failed
    app.post("/v1/jobs/j2/fail", json!({"token": tok(2), "error": "e"}))
        .await; // scheduled (retry)
    app.req(Method::POST, "/v1/jobs/j7/cancel", None).await; // cancelled
    app.req(Method::POST, "/v1/jobs/j3/cancel", None).await; // still running, cancel requested
    let q = app.queue("q").await;
    assert_eq!(
        q["counts"],
        json!({"scheduled": 2, "queued": 3, "running": 1, "succeeded": 1, "failed": 1, "cancelled": 1})
    );
    assert_eq!(q["concurrency"], 4);
    let (status, all) = app.get("/v1/queues").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["queues"], json!([q]));
    // Another queue keeps its own counts.
    app.enqueue("other", json!({"payload": null})).await;
    let (_, all) = app.get("/v1/queues").await;
    let names: Vec<&str> = all["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["other", "q"]);
    assert_eq!(all["queues"][0]["counts"]["queued"], 1);
    assert_eq!(all["queues"][1]["counts"], q["counts"]);
    // Configure keeps what it is not told.
    let after = app.configure("q", json!({"paused": true})).await;
    assert_eq!(after["concurrency"], 4);
    assert_eq!(after["lease_ms"], 60000);
    assert_eq!(after["paused"], true);
    assert_eq!(after["counts"], q["counts"]);
    assert_eq!(
        app.claim("q", "w", 4).await.len(),
        0,
        "a paused queue starts nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_with_a_cursor_and_filters_by_state() {
    let app = TestApp::new();
    let mut seqs = Vec::new();
    for i in 0..7 {
        seqs.push(seq(&app
            .enqueue("q", json!({"payload": null, "id": format!("j{i}")}))
            .await));
    }
    let (_, token) = app.claim_one("q").await;
    app.complete("j0", &token, json!(null)).await;
    let (_, token) = app.claim_one("q").await;
    app.complete("j1", &token, json!(null)).await;

    let mut pages = Vec::new();
    let mut path = "/v1/queues/q/jobs?limit=3".to_string();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages.push(
            ids(page["jobs"].as_array().expect("jobs"))
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        );
        match page["next_after"].as_i64() {
            Some(after) => {
                assert_eq!(
                    Some(&after),
                    page["jobs"]
                        .as_array()
                        .and_then(|j| j.last())
                        .and_then(|j| j["seq"].as_i64())
                        .as_ref()
                );
                path = format!("/v1/queues/q/jobs?limit=3&after={after}");
            }
            None => break,
        }
        assert!(pages.len() < 10);
    }
    assert_eq!(
        pages,
        vec![vec!["j0", "j1", "j2"], vec!["j3", "j4", "j5"], vec!["j6"]]
    );
    let (_, page) = app
        .get(&format!("/v1/queues/q/jobs?after={}", seqs[4]))
        .await;
    assert_eq!(
        ids(page["jobs"].as_array().expect("jobs")),
        vec!["j5", "j6"]
    );
    assert_eq!(page["next_after"], Value::Null);

    let (_, page) = app.get("/v1/queues/q/jobs?state=succeeded").await;
    assert_eq!(
        ids(page["jobs"].as_array().expect("jobs")),
        vec!["j0", "j1"]
    );
    let (_, page) = app.get("/v1/queues/q/jobs?state=queued&limit=2").await;
    assert_eq!(
        ids(page["jobs"].as_array().expect("jobs")),
        vec!["j2", "j3"]
    );
    assert_eq!(page["next_after"], seqs[3]);
    let (_, page) = app
        .get(&format!(
            "/v1/queues/q/jobs?state=queued&limit=2&after={}",
            seqs[3]
        ))
        .await;
    assert_eq!(
        ids(page["jobs"].as_array().expect("jobs")),
        vec!["j4", "j5"]
    );
    assert_eq!(page["jobs"][0]["position"], 2);
    let (_, page) = app.get("/v1/queues/q/jobs?state=running").await;
    assert_eq!(page, json!({"jobs": [], "next_after": null}));
    // A queue nobody used lists nothing.
    let (status, page) = app.get("/v1/queues/nobody/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!({"jobs": [], "next_after": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_shows_every_documented_field() {
    let app = TestApp::new();
    let job = app
        .enqueue("q", json!({"id": "full", "key": "k", "payload": {"a": [1]}, "max_attempts": 3, "timeout_ms": 5000}))
        .await;
    for field in [
        "id",
        "queue",
        "key",
        "seq",
        "state",
        "position",
        "payload",
        "attempt",
        "max_attempts",
        "enqueued_at",
        "run_at",
        "started_at",
        "finished_at",
        "progress",
        "result",
        "error",
    ] {
        assert!(job.get(field).is_some(), "missing {field}: {job}");
    }
    assert_eq!(job["queue"], "q");
    assert_eq!(job["key"], "k");
    assert_eq!(job["max_attempts"], 3);
    assert_eq!(job["timeout_ms"], 5000);
    assert_eq!(job["attempt"], 0);
    assert_eq!(job["started_at"], Value::Null);
    assert_eq!(job["enqueued_at"], job["run_at"]);
    let t = job["enqueued_at"].as_str().expect("time");
    assert!(t.ends_with('Z'), "UTC: {t}");
    let read = app.job("full").await;
    assert_eq!(without_why(&read), without_why(&job));
    // A read of a waiting job explains it (tests/why_and_when.rs has every reason).
    assert_eq!(read["key_position"], 0, "{read}");
    assert_eq!(read["waiting_on"], json!({"reason": "line"}), "{read}");
    assert_eq!(read["eta"], Value::Null, "no history yet: {read}");
}
