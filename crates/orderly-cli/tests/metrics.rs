//! `GET /metrics` of the real binary over real HTTP (contract sections 4
//! and 10): the token guards it, and after known work its counters and
//! gauges say exactly what was done, with ids kept out of the labels.

#[macro_use]
mod support;

use serde_json::json;
use support::proto::CompleteRequest;
use support::{claim_req, job_req, TestServer};

const Q: &str = "scraped";

/// The value of the sample `series` (name with its labels, as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_of_the_real_server_match_the_work_done() {
    let srv = TestServer::start_with(Some("metrics-token")).await;
    let refused = srv.anonymous_client().metrics().await;
    ensure!(
        srv,
        refused.as_ref().err().and_then(|e| e.status()) == Some(401),
        "a scrape without the token must be refused with 401: {refused:?}"
    );

    let c = srv.client();
    for id in ["m1", "m2", "m3"] {
        c.enqueue(Q, &job_req(id, None, json!({ "id": id })))
            .await
            .expect("enqueue");
    }
    let leases = c
        .claim(Q, &claim_req("w", 1, 0))
        .await
        .expect("claim")
        .leases;
    ensure!(srv, leases.len() == 1, "one lease: {leases:?}");
    let lease = &leases[0];
    c.complete(
        &lease.job.id,
        &CompleteRequest {
            token: lease.token.clone(),
            result: None,
            claim_next: None,
        },
    )
    .await
    .expect("complete");
    c.cancel("m3").await.expect("cancel");

    let text = c.metrics().await.expect("metrics with the token");
    let q = format!("queue=\"{Q}\"");
    for (series, want) in [
        (format!("orderly_jobs_enqueued_total{{{q}}}"), 3.0),
        (format!("orderly_jobs_started_total{{{q}}}"), 1.0),
        (format!("orderly_jobs_succeeded_total{{{q}}}"), 1.0),
        (format!("orderly_jobs_cancelled_total{{{q}}}"), 1.0),
        (format!("orderly_jobs{{{q},state=\"queued\"}}"), 1.0),
        (format!("orderly_jobs{{{q},state=\"succeeded\"}}"), 1.0),
        (format!("orderly_jobs{{{q},state=\"cancelled\"}}"), 1.0),
        (format!("orderly_jobs{{{q},state=\"running\"}}"), 0.0),
        (format!("orderly_queue_running{{{q}}}"), 0.0),
        (format!("orderly_queue_concurrency{{{q}}}"), 1.0),
        (format!("orderly_queue_latency_seconds_count{{{q}}}"), 1.0),
        (format!("orderly_run_time_seconds_count{{{q}}}"), 1.0),
        (
            "orderly_http_requests_total{method=\"POST\",route=\"/v1/jobs/{id}/complete\",status=\"200\"}"
                .to_string(),
            1.0,
        ),
        (
            "orderly_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"}"
                .to_string(),
            1.0,
        ),
    ] {
        let got = sample(&text, &series);
        ensure!(srv, got == Some(want), "{series} is {got:?}, not {want}:\n{text}");
    }
    for absent in [
        "orderly_jobs_failed_total",
        "orderly_jobs_retried_total",
        "orderly_jobs_expired_total",
    ] {
        ensure!(srv, !text.contains(absent), "nothing {absent} yet:\n{text}");
    }
    ensure!(
        srv,
        !text.contains("m1") && !text.contains("m3"),
        "a job id in the exposition:\n{text}"
    );
    let commits = sample(&text, "orderly_writer_commits_total");
    ensure!(
        srv,
        commits.is_some_and(|n| n >= 5.0),
        "the writer committed each write: {commits:?}"
    );
}
