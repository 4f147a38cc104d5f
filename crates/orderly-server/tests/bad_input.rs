//! Bad input gets a clear 4xx with the JSON error shape and changes nothing
//! (contract sections 4 and 10), driven from one table.

mod support;

use axum::http::{Method, StatusCode};
use orderly_server::ServerConfig;
use serde_json::{json, Value};
use support::{assert_error, check_error, raw, Body, TestApp};

/// One bad request and what it must get.
struct Case {
    what: String,
    method: Method,
    path: String,
    body: Option<Body>,
    status: StatusCode,
    code: &'static str,
    /// Substrings the message must contain (e.g. the bound).
    mentions: Vec<String>,
}

struct Table(Vec<Case>);

impl Table {
    fn add(
        &mut self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<Body>,
        status: u16,
        code: &'static str,
    ) -> &mut Case {
        self.0.push(Case {
            what: what.to_string(),
            method,
            path: path.to_string(),
            body,
            status: StatusCode::from_u16(status).expect("status"),
            code,
            mentions: Vec::new(),
        });
        self.0.last_mut().expect("just pushed")
    }

    fn post(
        &mut self,
        what: &str,
        path: &str,
        body: impl Into<Body>,
        status: u16,
        code: &'static str,
    ) -> &mut Case {
        self.add(what, Method::POST, path, Some(body.into()), status, code)
    }

    fn put(
        &mut self,
        what: &str,
        path: &str,
        body: impl Into<Body>,
        status: u16,
        code: &'static str,
    ) -> &mut Case {
        self.add(what, Method::PUT, path, Some(body.into()), status, code)
    }

    fn get(&mut self, what: &str, path: &str, status: u16, code: &'static str) -> &mut Case {
        self.add(what, Method::GET, path, None, status, code)
    }
}

impl Case {
    fn mentions(&mut self, s: impl ToString) -> &mut Case {
        self.mentions.push(s.to_string());
        self
    }
}

const PAYLOAD_LIMIT: usize = 1024;
const BATCH_BODY_LIMIT: usize = 200_000;
/// Body limit of single-job routes: the payload limit plus 64 KiB of envelope.
const SINGLE_BODY_LIMIT: usize = PAYLOAD_LIMIT + 64 * 1024;

fn config() -> ServerConfig {
    ServerConfig {
        max_payload_bytes: PAYLOAD_LIMIT,
        max_body_bytes: BATCH_BODY_LIMIT,
        ..ServerConfig::default()
    }
}

/// Queue `q` holds `done` (succeeded), `run` (running, its token returned) and
/// `wait1` (queued); queue `other` exists with no jobs.
async fn fixture(app: &TestApp) -> String {
    app.enqueue("q", json!({"id": "done", "payload": {"n": 0}}))
        .await;
    let (id, token) = app.claim_one("q").await;
    assert_eq!(id, "done");
    app.complete("done", &token, json!("ok")).await;
    app.enqueue("q", json!({"id": "run", "key": "k", "payload": {"n": 1}}))
        .await;
    let (id, token) = app.claim_one("q").await;
    assert_eq!(id, "run");
    app.enqueue("q", json!({"id": "wait1", "payload": {"n": 2}}))
        .await;
    app.configure("other", json!({})).await;
    token
}

/// Every bad request the server must refuse, given `token` (the lease of `run`).
#[rustfmt::skip]
fn cases(token: &str) -> Vec<Case> {
    let mut t = Table(Vec::new());
    let jobs = "/v1/queues/q/jobs";
    let batch = "/v1/queues/q/jobs/batch";
    let claim = "/v1/queues/q/claim";
    let hb = "/v1/jobs/run/heartbeat";
    let complete = "/v1/jobs/run/complete";
    let fail = "/v1/jobs/run/fail";
    let reports = "/v1/reports";
    let queue = "/v1/queues/q";
    let report_item = |extra: Value| {
        let mut item = json!({"id": "run", "token": token, "outcome": "succeeded"});
        for (k, v) in extra.as_object().expect("object") {
            item[k] = v.clone();
        }
        json!({"reports": [item]})
    };

    // Not JSON at all.
    for (what, path, method) in [
        ("enqueue", jobs, Method::POST),
        ("batch", batch, Method::POST),
        ("claim", claim, Method::POST),
        ("heartbeat", hb, Method::POST),
        ("complete", complete, Method::POST),
        ("fail", fail, Method::POST),
        ("reports", reports, Method::POST),
        ("queue PUT", queue, Method::PUT),
    ] {
        t.add(&format!("{what}: truncated JSON"), method.clone(), path, Some(raw("{")), 400, "invalid_json");
        t.add(&format!("{what}: not JSON"), method.clone(), path, Some(raw("not json")), 400, "invalid_json");
        t.add(&format!("{what}: empty body"), method.clone(), path, Some(raw("")), 400, "invalid_json");
        t.add(&format!("{what}: no body"), method.clone(), path, None, 400, "invalid_json");
        t.add(&format!("{what}: whitespace body"), method.clone(), path, Some(raw("  \n ")), 400, "invalid_json");
        t.add(&format!("{what}: non-string key"), method.clone(), path, Some(raw("{1: 2}")), 400, "invalid_json");
        t.add(&format!("{what}: single quotes"), method, path, Some(raw("{'a': 1}")), 400, "invalid_json");
    }

    // JSON of the wrong shape (a missing payload is fine: it is null).
    t.post("enqueue: string body", jobs, json!("job"), 400, "invalid_request");
    t.post("enqueue: number body", jobs, json!(5), 400, "invalid_request");
    t.post("enqueue: null body", jobs, Value::Null, 400, "invalid_request");
    t.post("enqueue: no payload", jobs, json!({"id": "x"}), 400, "invalid_request").mentions("payload");
    t.post("batch: an item without payload", batch, json!({"jobs": [{"payload": 1}, {"id": "y"}]}), 400, "invalid_request").mentions("payload");
    t.post("enqueue: key is a number", jobs, json!({"payload": null, "key": 5}), 400, "invalid_request");
    t.post("enqueue: id is a number", jobs, json!({"payload": null, "id": 5}), 400, "invalid_request");
    t.post("enqueue: max_attempts is a string", jobs, json!({"payload": null, "max_attempts": "3"}), 400, "invalid_request");
    t.post("enqueue: run_at is a number", jobs, json!({"payload": null, "run_at": 17}), 400, "invalid_request");
    t.post("enqueue: delay_ms is fractional", jobs, json!({"payload": null, "delay_ms": 1.5}), 400, "invalid_request");
    t.post("batch: jobs is a number", batch, json!({"jobs": 5}), 400, "invalid_request");
    t.post("batch: jobs is an object", batch, json!({"jobs": {"payload": 1}}), 400, "invalid_request");
    t.post("batch: jobs missing", batch, json!({}), 400, "invalid_request");
    t.post("batch: item is a number", batch, json!({"jobs": [{"payload": null}, 5]}), 400, "invalid_request");
    t.post("claim: worker missing", claim, json!({}), 400, "invalid_request");
    t.post("claim: worker is a number", claim, json!({"worker": 5}), 400, "invalid_request");
    t.post("claim: max is a string", claim, json!({"worker": "w", "max": "2"}), 400, "invalid_request");
    t.post("claim: max is fractional", claim, json!({"worker": "w", "max": 1.5}), 400, "invalid_request");
    t.post("heartbeat: token missing", hb, json!({}), 400, "invalid_request");
    t.post("heartbeat: token is a number", hb, json!({"token": 5}), 400, "invalid_request");
    t.post("complete: token missing", complete, json!({"result": 1}), 400, "invalid_request");
    t.post("complete: claim_next is a string", complete, json!({"token": token, "claim_next": "w"}), 400, "invalid_request");
    t.post("fail: error missing", fail, json!({"token": token}), 400, "invalid_request");
    t.post("fail: retry is a string", fail, json!({"token": token, "error": "x", "retry": "no"}), 400, "invalid_request");
    t.post("reports: reports is an object", reports, json!({"reports": {}}), 400, "invalid_request");
    t.post("reports: reports missing", reports, json!({}), 400, "invalid_request");
    t.post("reports: outcome is a number", reports, report_item(json!({"outcome": 5})), 400, "invalid_request");
    t.post("reports: token missing", reports, json!({"reports": [{"id": "run", "outcome": "succeeded"}]}), 400, "invalid_request");
    t.post("reports: retry is a string", reports, report_item(json!({"outcome": "failed", "retry": "no"})), 400, "invalid_request");
    t.put("queue: concurrency is a string", queue, json!({"concurrency": "3"}), 400, "invalid_request");
    t.put("queue: paused is a number", queue, json!({"paused": 1}), 400, "invalid_request");
    t.put("queue: backoff is a number", queue, json!({"backoff": 5}), 400, "invalid_request");
    t.put("queue: backoff misses factor", queue, json!({"backoff": {"initial_ms": 1, "max_ms": 2}}), 400, "invalid_request");
    t.get("list: limit is not a number", "/v1/queues/q/jobs?limit=abc", 400, "invalid_request");
    t.get("list: after is not a number", "/v1/queues/q/jobs?after=x", 400, "invalid_request");
    t.get("starts: limit is not a number", "/v1/queues/q/starts?limit=abc", 400, "invalid_request");
    t.get("starts: after is not a number", "/v1/queues/q/starts?after=x", 400, "invalid_request");
    t.get("starts: after is fractional", "/v1/queues/q/starts?after=1.5", 400, "invalid_request");
    t.get("wait: timeout_ms is not a number", "/v1/jobs/wait1/wait?timeout_ms=soon", 400, "invalid_request");

    // Unknown fields, on every request type; the message names the field.
    t.post("enqueue: unknown field", jobs, json!({"payload": 1, "priority": 9}), 400, "invalid_request").mentions("priority");
    t.post("batch: unknown top-level field", batch, json!({"jobs": [{"payload": 1}], "atomic": true}), 400, "invalid_request").mentions("atomic");
    t.post("batch: unknown field in an item", batch, json!({"jobs": [{"payload": 1}, {"payload": 2, "priority": 9}]}), 400, "invalid_request").mentions("priority");
    t.post("claim: unknown field", claim, json!({"worker": "w", "prefetch": 2}), 400, "invalid_request").mentions("prefetch");
    t.post("heartbeat: unknown field", hb, json!({"token": token, "percent": 50}), 400, "invalid_request").mentions("percent");
    t.post("complete: unknown field", complete, json!({"token": token, "output": 1}), 400, "invalid_request").mentions("output");
    t.post("complete: unknown field in claim_next", complete, json!({"token": token, "claim_next": {"worker": "w", "prefetch": 1}}), 400, "invalid_request").mentions("prefetch");
    t.post("fail: unknown field", fail, json!({"token": token, "error": "x", "backoff_ms": 5}), 400, "invalid_request").mentions("backoff_ms");
    t.post("fail: unknown field in claim_next", fail, json!({"token": token, "error": "x", "claim_next": {"worker": "w", "queue": "q"}}), 400, "invalid_request").mentions("queue");
    t.post("reports: unknown top-level field", reports, json!({"reports": [], "atomic": true}), 400, "invalid_request").mentions("atomic");
    t.post("reports: unknown field in an item", reports, report_item(json!({"note": "x"})), 400, "invalid_request").mentions("note");
    t.put("queue: unknown field", queue, json!({"concurency": 3}), 400, "invalid_request").mentions("concurency");
    t.put("queue: unknown field in backoff", queue, json!({"backoff": {"initial_ms": 1, "max_ms": 2, "factor": 2.0, "jitter": 0}}), 400, "invalid_request").mentions("jitter");
    t.get("list: unknown query parameter", "/v1/queues/q/jobs?status=queued", 400, "invalid_request").mentions("status");
    t.get("starts: unknown query parameter", "/v1/queues/q/starts?state=queued", 400, "invalid_request").mentions("state");
    t.get("wait: unknown query parameter", "/v1/jobs/wait1/wait?timeout=5", 400, "invalid_request").mentions("timeout");

    // Sizes: the bound is named.
    let big = "x".repeat(2 * PAYLOAD_LIMIT);
    t.post("enqueue: payload over the limit", jobs, json!({"payload": big}), 413, "payload_too_large").mentions(PAYLOAD_LIMIT);
    t.post("batch: payload of one job over the limit", batch, json!({"jobs": [{"payload": 1}, {"payload": big}]}), 413, "payload_too_large")
        .mentions(PAYLOAD_LIMIT)
        .mentions("jobs[1].payload");
    let huge = "y".repeat(SINGLE_BODY_LIMIT + 10);
    t.post("enqueue: body over the limit", jobs, json!({"payload": huge}), 413, "body_too_large").mentions(SINGLE_BODY_LIMIT);
    t.post("heartbeat: body over the limit", hb, json!({"token": token, "progress": huge}), 413, "body_too_large").mentions(SINGLE_BODY_LIMIT);
    t.post("complete: body over the limit", complete, json!({"token": token, "result": huge}), 413, "body_too_large").mentions(SINGLE_BODY_LIMIT);
    t.post("fail: body over the limit", fail, json!({"token": token, "error": huge}), 413, "body_too_large").mentions(SINGLE_BODY_LIMIT);
    let many: Vec<Value> = (0..400).map(|_| json!({"payload": "z".repeat(600)})).collect();
    t.post("batch: body over the limit", batch, json!({"jobs": many}), 413, "body_too_large").mentions(BATCH_BODY_LIMIT);
    let many_reports: Vec<Value> = (0..2000)
        .map(|_| json!({"id": "run", "token": "t".repeat(100), "outcome": "succeeded"}))
        .collect();
    t.post("reports: body over the limit", reports, json!({"reports": many_reports}), 413, "body_too_large").mentions(BATCH_BODY_LIMIT);

    // Job ids in the path.
    let long_id = "i".repeat(201);
    for (what, id) in [("space", "a%20b"), ("encoded slash", "a%2Fb"), ("201 bytes", long_id.as_str()), ("unicode", "j%C3%B6b")] {
        t.get(&format!("get: job id with {what}"), &format!("/v1/jobs/{id}"), 400, "invalid_job_id");
        t.get(&format!("wait: job id with {what}"), &format!("/v1/jobs/{id}/wait?timeout_ms=0"), 400, "invalid_job_id");
        t.get(&format!("attempts: job id with {what}"), &format!("/v1/jobs/{id}/attempts"), 400, "invalid_job_id");
        t.post(&format!("cancel: job id with {what}"), &format!("/v1/jobs/{id}/cancel"), json!({}), 400, "invalid_job_id");
        t.add(&format!("cancel (no body): job id with {what}"), Method::POST, &format!("/v1/jobs/{id}/cancel"), None, 400, "invalid_job_id");
        t.add(&format!("retry: job id with {what}"), Method::POST, &format!("/v1/jobs/{id}/retry"), None, 400, "invalid_job_id");
        t.post(&format!("heartbeat: job id with {what}"), &format!("/v1/jobs/{id}/heartbeat"), json!({"token": token}), 400, "invalid_job_id");
        t.post(&format!("complete: job id with {what}"), &format!("/v1/jobs/{id}/complete"), json!({"token": token}), 400, "invalid_job_id");
        t.post(&format!("fail: job id with {what}"), &format!("/v1/jobs/{id}/fail"), json!({"token": token, "error": "x"}), 400, "invalid_job_id");
    }
    // Job ids in bodies.
    for (what, id) in [("space", "a b".to_string()), ("slash", "a/b".to_string()), ("empty", String::new()), ("201 bytes", long_id.clone()), ("unicode", "jöb".to_string())] {
        t.post(&format!("enqueue: id with {what}"), jobs, json!({"payload": null, "id": id}), 400, "invalid_job_id");
        t.post(&format!("batch: id with {what}"), batch, json!({"jobs": [{"payload": null, "id": "fine"}, {"payload": null, "id": id}]}), 400, "invalid_job_id");
    }

    // Queue names.
    let long_queue = "q".repeat(101);
    for (what, name) in [("space", "a%20b"), ("101 bytes", long_queue.as_str()), ("unicode", "%C3%BCnicode"), ("encoded slash", "a%2Fb")] {
        t.post(&format!("enqueue: queue name with {what}"), &format!("/v1/queues/{name}/jobs"), json!({"payload": null}), 400, "invalid_queue_name");
        t.post(&format!("batch: queue name with {what}"), &format!("/v1/queues/{name}/jobs/batch"), json!({"jobs": [{"payload": null}]}), 400, "invalid_queue_name");
        t.get(&format!("list: queue name with {what}"), &format!("/v1/queues/{name}/jobs"), 400, "invalid_queue_name");
        t.get(&format!("starts: queue name with {what}"), &format!("/v1/queues/{name}/starts"), 400, "invalid_queue_name");
        t.get(&format!("get queue: name with {what}"), &format!("/v1/queues/{name}"), 400, "invalid_queue_name");
        t.put(&format!("put queue: name with {what}"), &format!("/v1/queues/{name}"), json!({"concurrency": 2}), 400, "invalid_queue_name");
        t.post(&format!("claim: queue name with {what}"), &format!("/v1/queues/{name}/claim"), json!({"worker": "w"}), 400, "invalid_queue_name");
    }

    // Keys.
    let long_key = "k".repeat(201);
    t.post("enqueue: empty key", jobs, json!({"payload": null, "key": ""}), 400, "invalid_key");
    t.post("enqueue: key of 201 bytes", jobs, json!({"payload": null, "key": long_key}), 400, "invalid_key").mentions(200);
    t.post("batch: empty key in an item", batch, json!({"jobs": [{"payload": null, "key": "a"}, {"payload": null, "key": ""}]}), 400, "invalid_key");

    // Negative numbers do not fit the unsigned fields.
    t.post("enqueue: delay_ms -1", jobs, json!({"payload": null, "delay_ms": -1}), 400, "invalid_request").mentions("-1");
    t.post("enqueue: max_attempts -1", jobs, json!({"payload": null, "max_attempts": -1}), 400, "invalid_request");
    t.post("enqueue: timeout_ms -1", jobs, json!({"payload": null, "timeout_ms": -1}), 400, "invalid_request");
    t.post("claim: max -1", claim, json!({"worker": "w", "max": -1}), 400, "invalid_request").mentions("-1");
    t.post("claim: wait_ms -1", claim, json!({"worker": "w", "wait_ms": -1}), 400, "invalid_request");
    t.post("claim: lease_ms -1", claim, json!({"worker": "w", "lease_ms": -1}), 400, "invalid_request");
    t.put("queue: concurrency -1", queue, json!({"concurrency": -1}), 400, "invalid_request");
    t.put("queue: lease_ms -1", queue, json!({"lease_ms": -1}), 400, "invalid_request");
    t.get("list: limit -1", "/v1/queues/q/jobs?limit=-1", 400, "invalid_request");
    t.get("starts: limit -1", "/v1/queues/q/starts?limit=-1", 400, "invalid_request");
    t.get("wait: timeout_ms -1", "/v1/jobs/wait1/wait?timeout_ms=-1", 400, "invalid_request");

    // Numbers out of range: the field and the bound are named.
    t.put("queue: concurrency 0", queue, json!({"concurrency": 0}), 400, "invalid_value").mentions("concurrency").mentions(10000);
    t.put("queue: concurrency 10001", queue, json!({"concurrency": 10001}), 400, "invalid_value").mentions("concurrency").mentions(10000);
    t.put("queue: max_attempts 0", queue, json!({"max_attempts": 0}), 400, "invalid_value").mentions("max_attempts");
    t.put("queue: max_attempts 100000", queue, json!({"max_attempts": 100000}), 400, "invalid_value").mentions("max_attempts");
    t.put("queue: lease_ms 1", queue, json!({"lease_ms": 1}), 400, "invalid_value").mentions("lease_ms");
    t.put("queue: lease_ms 10^12", queue, json!({"lease_ms": 1_000_000_000_000u64}), 400, "invalid_value").mentions("lease_ms");
    t.put("queue: backoff max_ms below initial_ms", queue, json!({"backoff": {"initial_ms": 5000, "max_ms": 1000, "factor": 2.0}}), 400, "invalid_value").mentions("backoff.max_ms");
    t.put("queue: backoff factor 0.5", queue, json!({"backoff": {"initial_ms": 1000, "max_ms": 5000, "factor": 0.5}}), 400, "invalid_value").mentions("backoff.factor");
    t.put("queue: executor is a string", queue, json!({"executor": "python3 job.py"}), 400, "invalid_value").mentions("executor");
    t.put("queue: valid fields beside a bad one", queue, json!({"paused": true, "concurrency": 0}), 400, "invalid_value");
    t.put("queue: new queue with concurrency 0", "/v1/queues/fresh", json!({"concurrency": 0}), 400, "invalid_value");
    t.post("enqueue: max_attempts 0", jobs, json!({"payload": null, "max_attempts": 0}), 400, "invalid_value").mentions("max_attempts");
    t.post("enqueue: max_attempts 100000", jobs, json!({"payload": null, "max_attempts": 100000}), 400, "invalid_value").mentions("max_attempts");
    t.post("enqueue: delay_ms 10^15", jobs, json!({"payload": null, "delay_ms": 1_000_000_000_000_000u64}), 400, "invalid_value").mentions("delay_ms");
    t.post("enqueue: timeout_ms 0", jobs, json!({"payload": null, "timeout_ms": 0}), 400, "invalid_value").mentions("timeout_ms");
    t.post("enqueue: run_at and delay_ms both", jobs, json!({"payload": null, "run_at": "2030-01-01T00:00:00Z", "delay_ms": 10}), 400, "invalid_value")
        .mentions("run_at")
        .mentions("delay_ms");
    t.post("enqueue: run_at not a time", jobs, json!({"payload": null, "run_at": "tomorrow"}), 400, "invalid_value").mentions("run_at");
    t.post("enqueue: new queue, month 13", "/v1/queues/fresh/jobs", json!({"payload": null, "run_at": "2030-13-01T00:00:00Z"}), 400, "invalid_value");
    t.post("batch: delay_ms 10^15 in an item", batch, json!({"jobs": [{"payload": null}, {"payload": null, "delay_ms": 1_000_000_000_000_000u64}]}), 400, "invalid_value").mentions("jobs[1].delay_ms");
    t.post("claim: max 0", claim, json!({"worker": "w", "max": 0}), 400, "invalid_value").mentions("max");
    t.post("claim: max 1001", claim, json!({"worker": "w", "max": 1001}), 400, "invalid_value").mentions("max");
    t.post("claim: empty worker", claim, json!({"worker": ""}), 400, "invalid_value").mentions("worker");
    t.post("claim: lease_ms 1", claim, json!({"worker": "w", "lease_ms": 1}), 400, "invalid_value").mentions("lease_ms");
    t.post("claim: lease_ms 10^12", claim, json!({"worker": "w", "lease_ms": 1_000_000_000_000u64}), 400, "invalid_value").mentions("lease_ms");
    t.post("claim: wait_ms 10^9", claim, json!({"worker": "w", "wait_ms": 1_000_000_000u64}), 400, "invalid_value").mentions("wait_ms");
    t.post("claim on a new queue: wait_ms 10^9", "/v1/queues/fresh/claim", json!({"worker": "w", "wait_ms": 1_000_000_000u64}), 400, "invalid_value");
    t.post("complete: claim_next with max 0", complete, json!({"token": token, "claim_next": {"worker": "w", "max": 0}}), 400, "invalid_value").mentions("max");
    t.post("fail: claim_next with wait_ms 10^9", fail, json!({"token": token, "error": "x", "claim_next": {"worker": "w", "wait_ms": 1_000_000_000u64}}), 400, "invalid_value").mentions("wait_ms");
    t.get("wait: timeout_ms 10^9", "/v1/jobs/wait1/wait?timeout_ms=1000000000", 400, "invalid_value").mentions("timeout_ms");
    t.get("list: limit 0", "/v1/queues/q/jobs?limit=0", 400, "invalid_value").mentions("limit");
    t.get("list: limit 5000", "/v1/queues/q/jobs?limit=5000", 400, "invalid_value").mentions("limit").mentions(1000);
    t.get("starts: limit 0", "/v1/queues/q/starts?limit=0", 400, "invalid_value").mentions("limit");
    t.get("starts: limit 1001", "/v1/queues/q/starts?limit=1001", 400, "invalid_value").mentions("limit").mentions(1000);
    t.get("list: unknown state", "/v1/queues/q/jobs?state=done", 400, "invalid_value").mentions("state");

    // Batch sizes.
    t.post("batch: empty", batch, json!({"jobs": []}), 400, "invalid_value").mentions("jobs");
    let too_many: Vec<Value> = (0..10_001).map(|_| json!({"payload": null})).collect();
    t.post("batch: 10,001 jobs", batch, json!({"jobs": too_many}), 400, "invalid_value").mentions(10000);

    // Unknown things.
    t.get("get: unknown job", "/v1/jobs/nope", 404, "job_not_found");
    t.get("wait: unknown job", "/v1/jobs/nope/wait?timeout_ms=0", 404, "job_not_found");
    t.get("wait (default timeout): unknown job", "/v1/jobs/nope/wait", 404, "job_not_found");
    t.get("attempts: unknown job", "/v1/jobs/nope/attempts", 404, "job_not_found");
    t.add("cancel: unknown job", Method::POST, "/v1/jobs/nope/cancel", None, 404, "job_not_found");
    t.add("retry: unknown job", Method::POST, "/v1/jobs/nope/retry", None, 404, "job_not_found");
    t.post("heartbeat: unknown job", "/v1/jobs/nope/heartbeat", json!({"token": token}), 404, "job_not_found");
    t.post("complete: unknown job", "/v1/jobs/nope/complete", json!({"token": token}), 404, "job_not_found");
    t.post("complete with claim_next: unknown job", "/v1/jobs/nope/complete", json!({"token": token, "claim_next": {"worker": "w"}}), 404, "job_not_found");
    t.post("fail: unknown job", "/v1/jobs/nope/fail", json!({"token": token, "error": "x"}), 404, "job_not_found");
    t.get("get queue: unknown queue", "/v1/queues/nosuch", 404, "queue_not_found");
    t.get("unknown route", "/nope", 404, "not_found");
    t.get("unknown /v1 route", "/v1/nope", 404, "not_found");
    t.get("unknown nested route", "/v1/queues/q/jobs/extra/more", 404, "not_found");
    t.post("unknown route, POST", "/v1/jobs", json!({}), 404, "not_found");
    t.add("wrong method: DELETE job", Method::DELETE, "/v1/jobs/wait1", None, 405, "method_not_allowed");
    t.add("wrong method: DELETE queues", Method::DELETE, "/v1/queues", None, 405, "method_not_allowed");
    t.post("wrong method: POST queue", queue, json!({}), 405, "method_not_allowed");
    t.get("wrong method: GET claim", claim, 405, "method_not_allowed");
    t.get("wrong method: GET batch", batch, 405, "method_not_allowed");
    t.put("wrong method: PUT job", "/v1/jobs/wait1", json!({}), 405, "method_not_allowed");
    t.get("wrong method: GET cancel", "/v1/jobs/wait1/cancel", 405, "method_not_allowed");
    t.get("wrong method: GET reports", reports, 405, "method_not_allowed");
    t.post("wrong method: POST starts", "/v1/queues/q/starts", json!({}), 405, "method_not_allowed");
    t.add("wrong method: POST attempts", Method::POST, "/v1/jobs/done/attempts", None, 405, "method_not_allowed");

    // Refused by the job's state.
    t.post("heartbeat: stale token", hb, json!({"token": "stale"}), 409, "stale_lease");
    t.post("heartbeat with progress: stale token", hb, json!({"token": "stale", "progress": 50}), 409, "stale_lease");
    t.post("complete: stale token", complete, json!({"token": "stale", "result": 1}), 409, "stale_lease");
    t.post("complete with claim_next: stale token", complete, json!({"token": "stale", "claim_next": {"worker": "w", "max": 5}}), 409, "stale_lease");
    t.post("fail: stale token", fail, json!({"token": "stale", "error": "x"}), 409, "stale_lease");
    t.post("fail retry false: stale token", fail, json!({"token": "stale", "error": "x", "retry": false}), 409, "stale_lease");
    t.post("heartbeat: token of another job", "/v1/jobs/wait1/heartbeat", json!({"token": token}), 409, "stale_lease");
    t.post("complete: finished job", "/v1/jobs/done/complete", json!({"token": token}), 409, "stale_lease");
    t.post("fail: finished job", "/v1/jobs/done/fail", json!({"token": token, "error": "x"}), 409, "stale_lease");
    t.add("cancel: finished job", Method::POST, "/v1/jobs/done/cancel", None, 409, "invalid_state");
    t.add("retry: queued job", Method::POST, "/v1/jobs/wait1/retry", None, 409, "invalid_state");
    t.add("retry: running job", Method::POST, "/v1/jobs/run/retry", None, 409, "invalid_state");
    t.add("retry: succeeded job", Method::POST, "/v1/jobs/done/retry", None, 409, "invalid_state");
    t.post("enqueue: id taken, other payload", jobs, json!({"id": "done", "payload": {"n": 99}}), 409, "id_conflict");
    t.post("enqueue: id taken, other queue", "/v1/queues/other/jobs", json!({"id": "done", "payload": {"n": 0}}), 409, "id_conflict");
    t.post("enqueue: id taken, other queue that is new", "/v1/queues/fresh/jobs", json!({"id": "done", "payload": {"n": 0}}), 409, "id_conflict");
    t.post("enqueue: id taken, key left out", jobs, json!({"id": "run", "payload": {"n": 1}}), 409, "id_conflict");
    t.post("enqueue: id taken, other key", jobs, json!({"id": "run", "key": "k2", "payload": {"n": 1}}), 409, "id_conflict");
    t.post("batch: one id taken", batch, json!({"jobs": [{"payload": null, "id": "new1"}, {"id": "done", "payload": 5}, {"payload": null, "id": "new2"}]}), 409, "id_conflict");

    t.0
}

/// Requests whose body is a JSON array: serde accepts a struct in sequence
/// form (fields by position) unless told not to. An array is not the object
/// the API documents, whatever it holds.
#[rustfmt::skip]
fn array_cases(token: &str) -> Vec<Case> {
    let mut t = Table(Vec::new());
    t.post("enqueue: empty array body", "/v1/queues/q/jobs", json!([]), 400, "invalid_request");
    t.post("enqueue: array body", "/v1/queues/q/jobs", json!(["arr-1"]), 400, "invalid_request");
    t.post("batch: array body", "/v1/queues/q/jobs/batch", json!([[{}]]), 400, "invalid_request");
    t.post("claim: array body", "/v1/queues/q/claim", json!(["w", 1, 0]), 400, "invalid_request");
    t.post("heartbeat: array body", "/v1/jobs/run/heartbeat", json!([token]), 400, "invalid_request");
    t.post("reports: array body", "/v1/reports", json!([[]]), 400, "invalid_request");
    t.put("queue: array body", "/v1/queues/q", json!([2]), 400, "invalid_request");
    t.post("fail: array body", "/v1/jobs/run/fail", json!([token, "boom", false]), 400, "invalid_request");
    t.0
}

/// Sends every case to `app`; returns what went wrong (status, error shape,
/// message, or a change to the store).
async fn run(app: &TestApp, cases: Vec<Case>) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let before = app.snapshot().await;
        let (status, body) = app
            .req(case.method.clone(), &case.path, case.body.clone())
            .await;
        let what = format!("{} ({} {})", case.what, case.method, shorten(&case.path));
        if status != case.status {
            failures.push(format!(
                "{what}: status {status}, expected {}; body {}",
                case.status,
                shorten(&body.to_string())
            ));
        } else {
            match check_error(&body, case.code) {
                Err(problem) => failures.push(format!("{what}: {}", shorten(&problem))),
                Ok(message) => {
                    for m in &case.mentions {
                        if !message.contains(m.as_str()) {
                            failures.push(format!(
                                "{what}: message {message:?} does not mention {m:?}"
                            ));
                        }
                    }
                }
            }
        }
        let after = app.snapshot().await;
        if before != after {
            failures.push(format!("{what}: the store changed"));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let app = TestApp::with_config(config());
    let token = fixture(&app).await;
    let cases = cases(&token);
    assert!(cases.len() > 250, "{}", cases.len());
    let failures = run(&app, cases).await;
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The fixture is intact.
    assert_eq!(app.job("done").await["state"], "succeeded");
    assert_eq!(app.job("run").await["state"], "running");
    assert_eq!(app.job("wait1").await["state"], "queued");
    assert_eq!(app.get("/v1/queues/fresh").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_bodies_are_refused_and_change_nothing() {
    let app = TestApp::with_config(config());
    let token = fixture(&app).await;
    let failures = run(&app, array_cases(&token)).await;
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every error is JSON, also a wrong method on the open `/healthz` route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_on_healthz_is_a_json_405() {
    let app = TestApp::with_config(config());
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let (status, body) = app.req(method.clone(), "/healthz", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} /healthz");
        assert_error(&body, "method_not_allowed", &format!("{method} /healthz"));
    }
}

/// `POST /v1/reports` judges each item on its own: a bad outcome is refused in
/// its slot and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_with_a_bad_outcome_is_refused_in_its_slot() {
    let app = TestApp::with_config(config());
    let token = fixture(&app).await;
    let before = app.snapshot().await;
    let (status, body) = app
        .post(
            "/v1/reports",
            json!({"reports": [
                {"id": "run", "token": token, "outcome": "maybe"},
                {"id": "a b", "token": token, "outcome": "succeeded"},
                {"id": "nope", "token": token, "outcome": "succeeded"},
                {"id": "run", "token": "stale", "outcome": "failed", "error": "x"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 4, "{body}");
    for (i, code) in [
        "invalid_value",
        "invalid_job_id",
        "job_not_found",
        "stale_lease",
    ]
    .into_iter()
    .enumerate()
    {
        assert!(results[i].get("job").is_none(), "item {i}: {body}");
        assert_error(
            &json!({"error": results[i]["error"]}),
            code,
            &format!("item {i}"),
        );
    }
    let message = results[0]["error"]["message"].as_str().expect("message");
    assert!(message.contains("reports[0].outcome"), "{message}");
    assert_eq!(app.snapshot().await, before);
}

/// An empty reports list is fine and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_reports_list_answers_no_results() {
    let app = TestApp::with_config(config());
    fixture(&app).await;
    let before = app.snapshot().await;
    let (status, body) = app.post("/v1/reports", json!({"reports": []})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"results": []}));
    assert_eq!(app.snapshot().await, before);
}

/// Payload left out is `null`; a payload exactly at the limit is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_payload_is_null_and_the_limit_is_inclusive() {
    let app = TestApp::with_config(config());
    let job = app.enqueue("q", json!({"payload": null})).await;
    assert_eq!(job["payload"], Value::Null);
    // A JSON string of n characters is n + 2 bytes of JSON.
    let at_limit = "x".repeat(PAYLOAD_LIMIT - 2);
    let job = app.enqueue("q", json!({"payload": at_limit})).await;
    assert_eq!(
        job["payload"].as_str().map(str::len),
        Some(PAYLOAD_LIMIT - 2)
    );
    let over = "x".repeat(PAYLOAD_LIMIT - 1);
    let (status, body) = app
        .post("/v1/queues/q/jobs", json!({"payload": over}))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let message = assert_error(&body, "payload_too_large", "one byte over");
    assert!(
        message.contains(&(PAYLOAD_LIMIT + 1).to_string()),
        "{message}"
    );
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s.to_string()
    }
}
