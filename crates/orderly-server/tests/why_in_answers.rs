//! Why and when at every answer (contract section 4.1): each write that
//! answers a job (enqueue, batch, a report, cancel, retry) shows the
//! `position`, `key_position`, `waiting_on` and `eta` a read right after
//! shows; a job behind a slow key is estimated from the key's run times; a
//! restarted server estimates at once from its start log.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use orderly_server::ServerConfig;
use serde_json::{json, Value};
use support::{millis, TestApp};

/// The why-and-when fields of a job view (`eta` as present or not: it is
/// reckoned from the time of each read).
fn why(job: &Value) -> Value {
    json!({
        "state": job["state"],
        "position": job["position"],
        "key_position": job["key_position"],
        "waiting_on": job["waiting_on"],
        "eta": job["eta"].is_object(),
    })
}

/// `answer` says what a read right after it says.
async fn like_a_read(app: &TestApp, answer: &Value, what: &str) {
    let id = answer["id"].as_str().expect("id");
    let read = app.job(id).await;
    assert_eq!(why(answer), why(&read), "{what}: {id}'s answer vs a read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_answer_explains_a_waiting_job() {
    let app = TestApp::new();
    app.configure(
        "q",
        json!({"concurrency": 1, "backoff": {"initial_ms": 600000, "max_ms": 600000, "factor": 1.0}}),
    )
    .await;
    // One job: at the front of an idle line.
    let a = app
        .enqueue("q", json!({"id": "a", "key": "k", "payload": null}))
        .await;
    assert_eq!(
        why(&a),
        json!({"state": "queued", "position": 0, "key_position": 0,
               "waiting_on": {"reason": "line"}, "eta": false})
    );
    like_a_read(&app, &a, "enqueue").await;
    let (_, token) = app.claim_one("q").await;

    // A batch behind the running a: two of its key, one without.
    let (status, batch) = app
        .post(
            "/v1/queues/q/jobs/batch",
            json!({"jobs": [
                {"id": "b", "key": "k", "payload": null},
                {"id": "c", "key": "k", "payload": null},
                {"id": "d", "payload": null},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{batch}");
    let jobs = batch["jobs"].as_array().expect("jobs");
    let shown: Vec<Value> = jobs
        .iter()
        .map(|j| json!([j["position"], j["key_position"], j["waiting_on"]]))
        .collect();
    assert_eq!(
        shown,
        [
            json!([0, 1, {"reason": "key", "job": "a"}]),
            json!([1, 2, {"reason": "key", "job": "a"}]),
            json!([2, null, {"reason": "concurrency", "limit": 1}]),
        ]
    );
    for job in jobs {
        like_a_read(&app, job, "batch enqueue").await;
    }
    // The same batch again: a replay, explained the same way.
    let (status, again) = app
        .post(
            "/v1/queues/q/jobs/batch",
            json!({"jobs": [{"id": "b", "key": "k", "payload": null}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    like_a_read(&app, &again["jobs"][0], "replayed batch").await;

    // a fails and waits out its backoff, still holding the key.
    let (status, failed) = app
        .post("/v1/jobs/a/fail", json!({"token": token, "error": "boom"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    let a = &failed["job"];
    assert_eq!(a["state"], "scheduled");
    assert_eq!(
        a["waiting_on"],
        json!({"reason": "retry_backoff", "until": a["run_at"]})
    );
    assert_eq!(a["key_position"], 0);
    like_a_read(&app, a, "a failed attempt's answer").await;
    // Its attempt was timed: b, behind it, has an estimate from its run time.
    assert!(app.job("b").await["eta"].is_object(), "b is estimated");

    // c is cancelled: no position, no reason. Then retried: at the end of
    // its key's line (a and b ahead) and of the queue's.
    let (status, cancelled) = app.post("/v1/jobs/c/cancel", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(
        why(&cancelled),
        json!({"state": "cancelled", "position": null, "key_position": null,
               "waiting_on": null, "eta": false})
    );
    like_a_read(&app, &cancelled, "cancel").await;
    let (status, retried) = app.post("/v1/jobs/c/retry", json!({})).await;
    assert!(status.is_success(), "{retried}");
    assert_eq!(
        [
            &retried["position"],
            &retried["key_position"],
            &retried["waiting_on"]
        ],
        [&json!(3), &json!(2), &json!({"reason": "key", "job": "a"})]
    );
    assert!(retried["eta"].is_object(), "{retried}");
    like_a_read(&app, &retried, "retry").await;

    // d runs and fails through the batch report endpoint: its answer too.
    let (id, token) = app.claim_one("q").await;
    assert_eq!(id, "d");
    let (status, reports) = app
        .post(
            "/v1/reports",
            json!({"reports": [{"id": "d", "token": token, "outcome": "failed", "error": "x"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reports}");
    let d = &reports["results"][0]["job"];
    assert_eq!(d["state"], "scheduled", "{reports}");
    like_a_read(&app, d, "a batch report's answer").await;
}

/// One queue, concurrency 3, three workers: a line of slow jobs under one
/// key (60 ms each) among many quick keyless jobs. The queue starts jobs
/// every few milliseconds, but a slow job starts only after those of its
/// key ahead have run one after another: its estimate, read while two or
/// more of them are ahead, brackets its real start in most readings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_behind_a_slow_key_is_estimated_from_its_run_times() {
    const SLOW: usize = 12;
    const QUICK: usize = 600;
    let slow_work = Duration::from_millis(60);
    let app = Arc::new(TestApp::new());
    app.configure("q", json!({"concurrency": 3})).await;
    let slow: Vec<String> = (0..SLOW).map(|i| format!("s{i}")).collect();
    let mut jobs: Vec<Value> = slow
        .iter()
        .map(|id| json!({"id": id, "key": "slow", "payload": {"slow": true}}))
        .collect();
    jobs.extend((0..QUICK).map(|i| json!({"id": format!("f{i}"), "payload": {"slow": false}})));
    let (status, out) = app
        .post("/v1/queues/q/jobs/batch", json!({"jobs": jobs}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");

    let mut workers = Vec::new();
    for w in 0..3 {
        let app = app.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let (status, body) = app
                    .post(
                        "/v1/queues/q/claim",
                        json!({"worker": format!("w{w}"), "max": 1, "wait_ms": 50}),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let Some(lease) = body["leases"].get(0) else {
                    return;
                };
                if lease["job"]["payload"]["slow"] == true {
                    tokio::time::sleep(slow_work).await;
                }
                let id = lease["job"]["id"].as_str().expect("id");
                let token = lease["token"].as_str().expect("token");
                app.complete(id, token, Value::Null).await;
            }
        }));
    }
    // Once the key's first job ran (its run time is measured), read each
    // slow job once, the first time it has an estimate while at least two
    // of its key are ahead of it.
    while app.job("s0").await["state"] != "succeeded" {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut readings: Vec<(String, i64, i64)> = Vec::new();
    let mut pending: Vec<&String> = slow.iter().collect();
    while !pending.is_empty() {
        let mut left = Vec::new();
        for id in pending {
            let job = app.job(id).await;
            let ahead = job["key_position"].as_u64();
            match ahead {
                Some(k) if k >= 2 && job["eta"].is_object() => {
                    assert_eq!(
                        job["waiting_on"],
                        json!({"reason": "key", "job": job["waiting_on"]["job"]}),
                        "{job}"
                    );
                    readings.push((
                        id.clone(),
                        millis(&job["eta"]["earliest"]),
                        millis(&job["eta"]["latest"]),
                    ))
                }
                Some(k) if k >= 2 => left.push(id),
                _ => {}
            }
        }
        pending = left;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in workers {
        w.await.expect("worker");
    }
    assert!(readings.len() >= 3, "too few readings: {readings:?}");
    let mut bracketed = 0;
    let mut misses = Vec::new();
    for (id, earliest, latest) in &readings {
        let started = millis(&app.job(id).await["started_at"]);
        assert!(earliest <= latest, "{id}: {earliest} > {latest}");
        if (*earliest..=*latest).contains(&started) {
            bracketed += 1;
        } else {
            misses.push(format!(
                "{id}: started {started}, estimate {earliest}..{latest} ({} ms late)",
                started - latest
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

/// A server that ran a queue's jobs, stopped and started again over the
/// same data estimates a waiting job at once, before anything starts:
/// its pace is seeded from the start log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_estimates_from_its_start_log() {
    let app = TestApp::new();
    for i in 0..4 {
        app.enqueue("q", json!({"id": format!("j{i}"), "payload": null}))
            .await;
    }
    for _ in 0..3 {
        let (id, token) = app.claim_one("q").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        app.complete(&id, &token, Value::Null).await;
    }
    app.enqueue("q", json!({"id": "keyed", "key": "k", "payload": null}))
        .await;
    app.enqueue("q", json!({"id": "behind", "key": "k", "payload": null}))
        .await;
    assert!(
        app.job("j3").await["eta"].is_object(),
        "estimated before the restart"
    );

    let mut app = app;
    let dir = std::mem::replace(&mut app.dir, tempfile::tempdir().expect("tempdir"));
    app.state.service.store().close().await;
    drop(app);
    let app = TestApp::in_dir(dir, ServerConfig::default());
    let j3 = app.job("j3").await;
    assert_eq!(j3["position"], 0);
    let eta = &j3["eta"];
    assert!(eta.is_object(), "estimated at once after the restart: {j3}");
    assert!(millis(&eta["latest"]) >= millis(&eta["earliest"]));
    // A job behind its key too: the runs before the restart were timed.
    let behind = app.job("behind").await;
    assert_eq!(behind["key_position"], 1);
    assert!(behind["eta"].is_object(), "{behind}");
}
