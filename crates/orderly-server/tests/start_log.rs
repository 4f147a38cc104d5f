//! The attempt history (`GET /v1/jobs/{id}/attempts`) and the start log
//! (`GET /v1/queues/{queue}/starts`) through the router over a real SQLite
//! store (contract sections 2 and 4): every attempt's start, worker, end,
//! outcome and error; every start in `start_no` order with what it started,
//! paged by its cursor exactly as the job list pages; retention taking a
//! job's starts with it. Bad input is in `bad_input.rs`'s table.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::{assert_error, millis, TestApp};

/// Claims up to `max` jobs of `queue` as `worker` (lease `lease_ms`, or the
/// queue's) without waiting.
async fn claim(
    app: &TestApp,
    queue: &str,
    worker: &str,
    max: u32,
    lease_ms: Option<u64>,
) -> Vec<Value> {
    let mut body = json!({"worker": worker, "max": max, "wait_ms": 0});
    if let Some(l) = lease_ms {
        body["lease_ms"] = json!(l);
    }
    let (status, out) = app.post(&format!("/v1/queues/{queue}/claim"), body).await;
    assert_eq!(status, StatusCode::OK, "claim: {out}");
    out["leases"].as_array().expect("leases").clone()
}

fn token(lease: &Value) -> &str {
    lease["token"].as_str().expect("token")
}

fn job_id(lease: &Value) -> &str {
    lease["job"]["id"].as_str().expect("id")
}

/// Fails a job's attempt with `error`; it retries at once (`retry_after_ms: 0`).
async fn fail_now(app: &TestApp, lease: &Value, error: Value) {
    let (status, body) = app
        .post(
            &format!("/v1/jobs/{}/fail", job_id(lease)),
            json!({"token": token(lease), "error": error, "retry_after_ms": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "fail: {body}");
}

async fn attempts(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/jobs/{id}/attempts")).await;
    assert_eq!(status, StatusCode::OK, "attempts of {id}: {body}");
    let obj = body.as_object().expect("object");
    assert_eq!(obj.len(), 1, "only `attempts`: {body}");
    body["attempts"].as_array().expect("attempts").clone()
}

/// One page of a queue's start log, checked for its shape.
async fn starts_page(app: &TestApp, path: &str) -> (Vec<Value>, Option<i64>) {
    let (status, body) = app.get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    let mut keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["next_after", "starts"], "{path}: {body}");
    let starts = body["starts"].as_array().expect("starts").clone();
    for s in &starts {
        let mut fields: Vec<&String> = s.as_object().expect("start").keys().collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "attempt",
                "job_id",
                "key",
                "seq",
                "start_no",
                "started_at",
                "worker"
            ],
            "the fields of a start: {s}"
        );
        assert!(
            s["started_at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "RFC 3339 UTC: {s}"
        );
    }
    (starts, body["next_after"].as_i64())
}

/// The whole start log of `queue`, paging by `limit`.
async fn whole_log(app: &TestApp, queue: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/v1/queues/{queue}/starts?limit={limit}");
    for _ in 0..1_000 {
        let (page, next) = starts_page(app, &path).await;
        assert!(
            page.len() <= limit as usize,
            "{path}: {} starts",
            page.len()
        );
        let full = page.len() == limit as usize;
        let last = page
            .last()
            .map(|s| s["start_no"].as_i64().expect("start_no"));
        assert_eq!(
            next,
            if full { last } else { None },
            "{path}: next_after is the last start_no of a full page, null otherwise"
        );
        out.extend(page);
        match next {
            Some(n) => path = format!("/v1/queues/{queue}/starts?limit={limit}&after={n}"),
            None => return out,
        }
    }
    panic!("{queue}'s start log did not end");
}

/// `(job_id, attempt, worker)` of each start.
fn who(starts: &[Value]) -> Vec<(String, u64, String)> {
    starts
        .iter()
        .map(|s| {
            (
                s["job_id"].as_str().expect("job_id").to_string(),
                s["attempt"].as_u64().expect("attempt"),
                s["worker"].as_str().expect("worker").to_string(),
            )
        })
        .collect()
}

/// Section 4: a job's attempts, oldest first: each with its start number,
/// worker and start time, its end, outcome and error once it ended (`null`s
/// while it runs), in RFC 3339 as the job shows its times. A job that never
/// ran has none; an unknown job is `404 job_not_found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_show_every_attempt_of_a_job() {
    let app = TestApp::new();
    app.enqueue("q", json!({"id": "h1", "key": "k", "payload": 1}))
        .await;
    app.enqueue("q", json!({"id": "h2", "payload": 2})).await;
    assert_eq!(
        attempts(&app, "h1").await,
        Vec::<Value>::new(),
        "not run yet"
    );

    let l = claim(&app, "q", "w1", 1, None).await;
    assert_eq!(job_id(&l[0]), "h1");
    let first = &l[0]["job"];
    let running = attempts(&app, "h1").await;
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(
        running[0],
        json!({
            "attempt": 1, "start_no": first["start_no"], "worker": "w1",
            "started_at": first["started_at"], "ended_at": null, "outcome": null, "error": null
        }),
        "a running attempt"
    );
    fail_now(&app, &l[0], json!({"message": "boom"})).await;
    let l = claim(&app, "q", "w2", 1, None).await;
    assert_eq!(job_id(&l[0]), "h1", "the retry of a keyed job comes first");
    let second = l[0]["job"].clone();
    app.complete("h1", token(&l[0]), json!("ok")).await;
    let done = app.job("h1").await;

    let history = attempts(&app, "h1").await;
    assert_eq!(history.len(), 2, "{history:?}");
    let (a1, a2) = (&history[0], &history[1]);
    assert_eq!(
        (&a1["attempt"], &a1["worker"], &a1["outcome"], &a1["error"]),
        (
            &json!(1),
            &json!("w1"),
            &json!("failed"),
            &json!({"message": "boom"})
        )
    );
    assert_eq!(
        (&a2["attempt"], &a2["worker"], &a2["outcome"], &a2["error"]),
        (&json!(2), &json!("w2"), &json!("succeeded"), &Value::Null)
    );
    assert_eq!(a1["start_no"], first["start_no"]);
    assert_eq!(a2["start_no"], second["start_no"]);
    assert_eq!(
        a2["start_no"], done["start_no"],
        "the latest start is the job's"
    );
    assert_eq!(a2["started_at"], done["started_at"]);
    assert_eq!(
        a2["ended_at"], done["finished_at"],
        "the last attempt ended the job"
    );
    assert!(millis(&a1["started_at"]) <= millis(&a1["ended_at"]));
    assert!(millis(&a1["ended_at"]) <= millis(&a2["started_at"]));
    for a in &history {
        for t in ["started_at", "ended_at"] {
            assert!(a[t].as_str().is_some_and(|s| s.ends_with('Z')), "{t}: {a}");
        }
    }
    assert_eq!(attempts(&app, "h2").await, Vec::<Value>::new());
    let (status, body) = app.get("/v1/jobs/nope/attempts").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "job_not_found", "attempts of an unknown job");
}

/// Sections 2 and 4: the start log shows every start of its queue in
/// `start_no` order, a retry and a lease-expiry rerun included, with the
/// job's seq, key, attempt and worker; it pages by `after` as the job list
/// does (`next_after` on a full page, any page size giving the same log);
/// another queue's starts are not in it; an unused queue's log is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_log_lists_every_start_and_pages_by_cursor() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 2})).await;
    let mut seqs = std::collections::HashMap::new();
    for (id, key) in [
        ("a", Some("k1")),
        ("b", Some("k1")),
        ("c", Some("k2")),
        ("d", None),
    ] {
        let job = app
            .enqueue("q", json!({"id": id, "key": key, "payload": null}))
            .await;
        seqs.insert(id, job["seq"].as_i64().expect("seq"));
    }
    app.enqueue("other", json!({"id": "o", "payload": null}))
        .await;

    let l = claim(&app, "q", "w1", 2, None).await;
    assert_eq!(l.iter().map(job_id).collect::<Vec<_>>(), ["a", "c"]);
    let (a_lease, c_lease) = (l[0].clone(), l[1].clone());
    let o = claim(&app, "other", "wo", 1, None).await;
    fail_now(&app, &a_lease, json!("flaky")).await;
    // a's retry goes first (b waits behind its key) on a short lease that w2
    // lets expire; c keeps the other slot, so nothing starts meanwhile.
    let l = claim(&app, "q", "w2", 1, Some(100)).await;
    assert_eq!(job_id(&l[0]), "a", "a's retry");
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let rerun = loop {
        let l = claim(&app, "q", "w3", 1, None).await;
        if !l.is_empty() {
            break l;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "a's lease of 100 ms never expired"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(job_id(&rerun[0]), "a", "the expired a reruns before d");
    app.complete("a", token(&rerun[0]), json!(null)).await;
    app.complete("c", token(&c_lease), json!(null)).await;
    for (id, worker) in [("b", "w1"), ("d", "w1")] {
        let l = claim(&app, "q", worker, 1, None).await;
        assert_eq!(job_id(&l[0]), id);
        app.complete(id, token(&l[0]), json!(null)).await;
    }

    let log = whole_log(&app, "q", 1_000).await;
    let expect =
        |id: &str, attempt: u64, worker: &str| (id.to_string(), attempt, worker.to_string());
    assert_eq!(
        who(&log),
        [
            expect("a", 1, "w1"),
            expect("c", 1, "w1"),
            expect("a", 2, "w2"),
            expect("a", 3, "w3"),
            expect("b", 1, "w1"),
            expect("d", 1, "w1"),
        ],
        "{log:?}"
    );
    let nos: Vec<i64> = log
        .iter()
        .map(|s| s["start_no"].as_i64().expect("no"))
        .collect();
    assert!(
        nos.windows(2).all(|w| w[0] < w[1]),
        "start_no order: {nos:?}"
    );
    for s in &log {
        let id = s["job_id"].as_str().expect("id");
        assert_eq!(s["seq"], seqs[id], "{id}'s seq");
        let key = match id {
            "a" | "b" => json!("k1"),
            "c" => json!("k2"),
            _ => Value::Null,
        };
        assert_eq!(s["key"], key, "{id}'s key");
    }
    // The start log and each job's attempts tell the same story.
    for id in ["a", "b", "c", "d"] {
        let from_attempts: Vec<(Value, Value, Value)> = attempts(&app, id)
            .await
            .iter()
            .map(|a| {
                (
                    a["start_no"].clone(),
                    a["attempt"].clone(),
                    a["started_at"].clone(),
                )
            })
            .collect();
        let from_log: Vec<(Value, Value, Value)> = log
            .iter()
            .filter(|s| s["job_id"] == id)
            .map(|s| {
                (
                    s["start_no"].clone(),
                    s["attempt"].clone(),
                    s["started_at"].clone(),
                )
            })
            .collect();
        assert_eq!(from_attempts, from_log, "{id}");
    }
    for limit in [1, 2, 4, 5, 6, 7] {
        assert_eq!(whole_log(&app, "q", limit).await, log, "pages of {limit}");
    }
    let (page, next) = starts_page(&app, "/v1/queues/q/starts").await;
    assert_eq!((page.len(), next), (6, None), "default page size 100");
    let (page, next) = starts_page(&app, &format!("/v1/queues/q/starts?after={}", nos[3])).await;
    assert_eq!((page, next), (log[4..].to_vec(), None), "after a cursor");
    let (page, _) = starts_page(&app, &format!("/v1/queues/q/starts?after={}", nos[5])).await;
    assert!(page.is_empty(), "nothing after the last start");
    let (page, _) = starts_page(&app, "/v1/queues/q/starts?after=-3").await;
    assert_eq!(page, log, "a cursor below every start_no is the beginning");

    let other = whole_log(&app, "other", 10).await;
    assert_eq!(who(&other), [expect("o", 1, "wo")]);
    assert_eq!(other[0]["start_no"], o[0]["job"]["start_no"]);
    let (status, body) = app.get("/v1/queues/nobody/starts").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an unused queue lists nothing, as its jobs do"
    );
    assert_eq!(body, json!({"starts": [], "next_after": null}));
}

/// Section 3: retention deletes a finished job's starts with it and keeps
/// the starts of the jobs it keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_takes_a_jobs_starts_with_it() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 2})).await;
    for id in ["old", "kept"] {
        app.enqueue("q", json!({"id": id, "payload": null})).await;
    }
    let l = claim(&app, "q", "w1", 2, None).await;
    assert_eq!(l.iter().map(job_id).collect::<Vec<_>>(), ["old", "kept"]);
    fail_now(&app, &l[0], json!("once")).await;
    let again = claim(&app, "q", "w1", 1, None).await;
    assert_eq!(job_id(&again[0]), "old");
    app.complete("old", token(&again[0]), json!(null)).await;
    assert_eq!(
        who(&whole_log(&app, "q", 10).await),
        [
            ("old".to_string(), 1, "w1".to_string()),
            ("kept".to_string(), 1, "w1".to_string()),
            ("old".to_string(), 2, "w1".to_string()),
        ]
    );
    // Everything finished before now is old enough.
    let cutoff = chrono::Utc::now().timestamp_millis() + 1;
    let purged = app
        .state
        .service
        .store()
        .retention_purge(cutoff, 100)
        .await
        .expect("purge");
    assert_eq!(purged, 1, "only the finished job");
    let (status, body) = app.get("/v1/jobs/old/attempts").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        who(&whole_log(&app, "q", 10).await),
        [("kept".to_string(), 1, "w1".to_string())],
        "the purged job's starts went with it, the running job's stayed"
    );
    assert_eq!(attempts(&app, "kept").await.len(), 1);
}
