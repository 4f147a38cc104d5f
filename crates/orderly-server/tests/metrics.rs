//! `GET /metrics` through the router over a real SQLite store (contract
//! sections 4 and 10): known work (enqueue, claim, complete, fail with and
//! without retry, a lease given back, a cancel), then the exposition text
//! parsed and every job counter, gauge and histogram count checked against
//! it exactly; HTTP requests counted under their route templates, never ids;
//! the token guarding `/metrics` like the API.

mod support;

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use orderly_server::ServerConfig;
use serde_json::{json, Value};
use support::{assert_error, TestApp};

/// One parsed sample: its name and labels, sorted.
type Key = (String, BTreeMap<String, String>);

/// Parses the text exposition: every sample line `name{k="v",…} value`
/// (comments skipped). Panics on a line it cannot read, naming it.
fn parse(text: &str) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample without a value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let labels = body
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair
                            .split_once('=')
                            .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or_else(|| panic!("unquoted label {pair:?} in {line:?}"));
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        let previous = out.insert((name, labels), value);
        assert!(previous.is_none(), "sample repeated: {line:?}");
    }
    out
}

struct Scrape(BTreeMap<Key, f64>);

impl Scrape {
    async fn of(app: &TestApp) -> Self {
        let (status, body) = app.get("/metrics").await;
        assert_eq!(status, StatusCode::OK, "metrics: {body}");
        let text = body.as_str().expect("metrics are text, not JSON");
        assert!(text.ends_with("# EOF\n"), "the exposition ends with # EOF");
        Scrape(parse(text))
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0.get(&(name.to_string(), labels)).copied()
    }

    /// A value that must be there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {:#?}", self.0.keys()))
    }

    /// A counter: absent means never counted, 0.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

async fn fail(app: &TestApp, lease: &Value, retry: bool) {
    let id = lease["job"]["id"].as_str().expect("id");
    let mut body = json!({"token": lease["token"], "error": {"message": "boom"}, "retry": retry});
    if retry {
        body["retry_after_ms"] = json!(0);
    }
    let (status, out) = app.post(&format!("/v1/jobs/{id}/fail"), body).await;
    assert_eq!(status, StatusCode::OK, "fail {id}: {out}");
}

fn ids(leases: &[Value]) -> Vec<&str> {
    leases
        .iter()
        .map(|l| l["job"]["id"].as_str().expect("id"))
        .collect()
}

#[tokio::test]
async fn metrics_count_exactly_the_work_done() {
    let app = TestApp::new();
    app.configure("mq", json!({"concurrency": 10, "max_attempts": 3}))
        .await;
    app.configure("empty", json!({})).await;
    for i in 1..=6 {
        app.enqueue("mq", json!({"id": format!("j{i}"), "payload": i}))
            .await;
    }
    app.enqueue("other", json!({"id": "o1", "payload": 0}))
        .await;

    let leases = app.claim("mq", "w1", 4).await;
    assert_eq!(ids(&leases), ["j1", "j2", "j3", "j4"]);
    let token = |i: usize| leases[i]["token"].as_str().expect("token").to_string();
    app.complete("j1", &token(0), json!("ok")).await;
    fail(&app, &leases[1], true).await; // j2: back in its place
    fail(&app, &leases[2], false).await; // j3: failed for good
                                         // j2 again, under a runner whose leases are then given back (lease lost).
    let again = app.claim("mq", "w-gone", 1).await;
    assert_eq!(ids(&again), ["j2"]);
    let released = app
        .state
        .service
        .release_leases("w-gone")
        .await
        .expect("release");
    assert_eq!(released, 1);
    let (status, body) = app.post("/v1/jobs/j6/cancel", json!({})).await;
    assert_eq!(status, StatusCode::OK, "cancel: {body}");
    let (status, body) = app.get("/nowhere/j1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let m = Scrape::of(&app).await;
    let mq = [("queue", "mq")];
    for (name, want) in [
        ("orderly_jobs_enqueued_total", 6.0),
        ("orderly_jobs_started_total", 5.0),
        ("orderly_jobs_succeeded_total", 1.0),
        ("orderly_jobs_failed_total", 1.0),
        ("orderly_jobs_retried_total", 1.0),
        ("orderly_jobs_expired_total", 1.0),
        ("orderly_jobs_cancelled_total", 1.0),
    ] {
        assert_eq!(m.counter(name, &mq), want, "{name} of mq");
        let other = if name == "orderly_jobs_enqueued_total" {
            1.0
        } else {
            0.0
        };
        assert_eq!(
            m.counter(name, &[("queue", "other")]),
            other,
            "{name} of other"
        );
        assert_eq!(
            m.counter(name, &[("queue", "empty")]),
            0.0,
            "{name} of empty"
        );
    }
    // Now: j1 succeeded, j2 queued (first in line), j3 failed, j4 running,
    // j5 queued, j6 cancelled; o1 queued.
    for (queue, state, want) in [
        ("mq", "scheduled", 0.0),
        ("mq", "queued", 2.0),
        ("mq", "running", 1.0),
        ("mq", "succeeded", 1.0),
        ("mq", "failed", 1.0),
        ("mq", "cancelled", 1.0),
        ("other", "queued", 1.0),
        ("other", "running", 0.0),
        ("empty", "queued", 0.0),
    ] {
        assert_eq!(
            m.value("orderly_jobs", &[("queue", queue), ("state", state)]),
            want,
            "jobs of {queue} in {state}"
        );
    }
    assert_eq!(m.value("orderly_queue_running", &mq), 1.0);
    assert_eq!(m.value("orderly_queue_concurrency", &mq), 10.0);
    assert_eq!(
        m.value("orderly_queue_concurrency", &[("queue", "other")]),
        1.0
    );
    assert_eq!(m.value("orderly_queue_paused", &mq), 0.0);
    assert_eq!(
        m.value(
            "orderly_queue_oldest_queued_age_seconds",
            &[("queue", "empty")]
        ),
        0.0,
        "nothing queued, no age"
    );
    let age = m.value("orderly_queue_oldest_queued_age_seconds", &mq);
    assert!(age.is_finite() && age >= 0.0, "age of mq's front: {age}");
    // Histograms: one queue latency per start, one run time per ended attempt
    // (j1 succeeded, j2 failed, j3 failed, j2 released).
    assert_eq!(m.value("orderly_queue_latency_seconds_count", &mq), 5.0);
    assert_eq!(
        m.value(
            "orderly_queue_latency_seconds_bucket",
            &[("queue", "mq"), ("le", "+Inf")]
        ),
        5.0
    );
    assert_eq!(m.value("orderly_run_time_seconds_count", &mq), 4.0);
    assert_eq!(
        m.get("orderly_run_time_seconds_count", &[("queue", "other")]),
        None
    );

    // HTTP: by route template and status, never the raw path.
    let http = |method: &str, route: &str, status: &str| {
        m.counter(
            "orderly_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(http("POST", "/v1/queues/{queue}/jobs", "202"), 7.0);
    assert_eq!(http("PUT", "/v1/queues/{queue}", "200"), 2.0);
    assert_eq!(http("POST", "/v1/queues/{queue}/claim", "200"), 2.0);
    assert_eq!(http("POST", "/v1/jobs/{id}/complete", "200"), 1.0);
    assert_eq!(http("POST", "/v1/jobs/{id}/fail", "200"), 2.0);
    assert_eq!(http("POST", "/v1/jobs/{id}/cancel", "200"), 1.0);
    assert_eq!(http("GET", "unmatched", "404"), 1.0);
    assert_eq!(
        m.value(
            "orderly_http_request_duration_seconds_count",
            &[
                ("method", "POST"),
                ("route", "/v1/jobs/{id}/fail"),
                ("status", "200")
            ]
        ),
        2.0
    );
    for (name, labels) in m.0.keys() {
        for v in labels.values() {
            assert!(
                !v.contains("j1") && !v.contains("j6") && !v.contains("nowhere"),
                "an id or raw path in a label: {name}{labels:?}"
            );
        }
    }
    // The writer committed every write above, each fsynced (durability `fsync`).
    let commits = m.value("orderly_writer_commits_total", &[]);
    assert!(commits >= 15.0, "at least one commit per write: {commits}");
    assert_eq!(m.value("orderly_writer_group_size_count", &[]), commits);
    assert_eq!(m.value("orderly_writer_fsync_seconds_count", &[]), commits);
    assert_eq!(
        m.value("orderly_writer_fsync_seconds_bucket", &[("le", "+Inf")]),
        commits
    );

    // The scrape itself is counted once answered.
    let again = Scrape::of(&app).await;
    assert_eq!(
        again.counter(
            "orderly_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "200")]
        ),
        1.0
    );
}

#[tokio::test]
async fn metrics_require_the_token_when_one_is_set() {
    let app = TestApp::with_config(ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    });
    let (status, body) = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized", "metrics without a token");
    let (status, body) = app.call(Method::GET, "/metrics", None, Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized", "metrics with a wrong token");
    let (status, body) = app
        .call(Method::GET, "/metrics", None, Some("s3cret"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.as_str().expect("text");
    assert!(
        text.contains(
            "\norderly_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"} 2\n"
        ),
        "the refused scrapes are counted: {text}"
    );
}
