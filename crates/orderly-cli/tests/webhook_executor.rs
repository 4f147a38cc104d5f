//! The webhook executor, end to end: a real `orderly serve` POSTs each job
//! to a real HTTP receiver on 127.0.0.1 (contract §6), in `seq` order up to
//! the queue's concurrency, with the status handling and signature of §6.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use orderly_client::proto::{BatchRequest, JobState, QueueConfigRequest};
use serde_json::{json, Value};
use support::*;

/// What the receiver saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    event: &'static str,
    body: Value,
    signature: Option<String>,
    raw: Vec<u8>,
}

/// How the receiver answers: by the job's payload field `"answer"` and its
/// attempt.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> axum::response::Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let signature = headers
        .get("orderly-signature")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let push = |event| {
        r.seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            event,
            body: body.clone(),
            signature: signature.clone(),
            raw: raw.to_vec(),
        })
    };
    push("start");
    let attempt = body["attempt"].as_u64().unwrap_or(0);
    let answer = body["payload"]["answer"]
        .as_str()
        .unwrap_or("ok")
        .to_string();
    if let Some(ms) = body["payload"]["sleep_ms"].as_u64() {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    push("end");
    match (answer.as_str(), attempt) {
        ("busy-once", 1) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        ("fail-once", 1) => (StatusCode::INTERNAL_SERVER_ERROR, "database is down").into_response(),
        ("gone", _) => (StatusCode::GONE, "no such account").into_response(),
        _ => axum::Json(json!({"handled": body["id"], "attempt": attempt})).into_response(),
    }
}

async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, r)
}

fn webhook(url: &str, concurrency: u32, extra: Value) -> QueueConfigRequest {
    let mut e = json!({"type": "webhook", "url": url});
    if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        o.extend(x.clone());
    }
    QueueConfigRequest {
        concurrency: Some(concurrency),
        backoff: Some(orderly_client::proto::BackoffView {
            initial_ms: 100,
            max_ms: 100,
            factor: 1.0,
        }),
        executor: Some(e),
        ..Default::default()
    }
}

/// §2: one POST per job, one at a time in `seq` order at concurrency 1;
/// the response body is the result.
#[tokio::test]
async fn webhook_executor_posts_a_serial_queue_in_seq_order() {
    let (url, r) = receiver().await;
    let srv = TestServer::start().await;
    srv.configure("hooks", webhook(&url, 1, json!({}))).await;
    let jobs = (0..50)
        .map(|i| job_req(&format!("h{i}"), None, json!({"i": i})))
        .collect();
    srv.client()
        .enqueue_batch("hooks", &BatchRequest { jobs })
        .await
        .expect("enqueue");
    let done = srv
        .wait_all_finished("hooks", 50, Duration::from_secs(60))
        .await;
    for j in &done {
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        assert_eq!(j.result, Some(json!({"handled": j.id, "attempt": 1})));
    }
    let seen = r.seen.lock().unwrap().clone();
    let order: Vec<(&str, i64)> = seen
        .iter()
        .map(|s| (s.event, s.body["seq"].as_i64().unwrap_or(-1)))
        .collect();
    let expected: Vec<(&str, i64)> = done
        .iter()
        .flat_map(|j| [("start", j.seq), ("end", j.seq)])
        .collect();
    assert_eq!(order, expected, "one at a time, in seq order");
    assert_eq!(seen[0].body["queue"], json!("hooks"));
    assert_eq!(seen[0].body["payload"], json!({"i": 0}));
}

/// §2: keyed jobs at concurrency 4: never more than 4 in flight, never two
/// of one key, each key in `seq` order.
#[tokio::test]
async fn webhook_executor_keeps_key_order_and_the_concurrency_limit() {
    let (url, r) = receiver().await;
    let srv = TestServer::start().await;
    srv.configure("keyed", webhook(&url, 4, json!({}))).await;
    let jobs = (0..40)
        .map(|i| {
            job_req(
                &format!("k{i}"),
                Some(&format!("acct-{}", i % 5)),
                json!({"sleep_ms": 30}),
            )
        })
        .collect();
    srv.client()
        .enqueue_batch("keyed", &BatchRequest { jobs })
        .await
        .expect("enqueue");
    srv.wait_all_finished("keyed", 40, Duration::from_secs(60))
        .await;
    let seen = r.seen.lock().unwrap().clone();
    let mut running: Vec<(i64, String)> = Vec::new();
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    let mut peak = 0;
    for s in &seen {
        let seq = s.body["seq"].as_i64().unwrap_or(-1);
        let key = s.body["key"].as_str().unwrap_or("-").to_string();
        if s.event == "start" {
            assert!(
                !running.iter().any(|(_, k)| *k == key),
                "two of {key} at once"
            );
            assert!(
                last.get(&key).is_none_or(|p| *p < seq),
                "{key} out of order"
            );
            last.insert(key.clone(), seq);
            running.push((seq, key));
            peak = peak.max(running.len());
            assert!(running.len() <= 4, "more than 4 at once: {running:?}");
        } else {
            running.retain(|(q, _)| *q != seq);
        }
    }
    assert!(peak >= 2, "keys ran in parallel (peak {peak})");
}

/// §6: `429` honours `Retry-After`; `500` follows the retry policy; `410`
/// fails for good at once.
#[tokio::test]
async fn webhook_status_handling() {
    let (url, r) = receiver().await;
    let srv = TestServer::start().await;
    srv.configure("status", webhook(&url, 1, json!({}))).await;
    let jobs = vec![
        job_req("busy", None, json!({"answer": "busy-once"})),
        job_req("flaky", None, json!({"answer": "fail-once"})),
        job_req("gone", None, json!({"answer": "gone"})),
    ];
    srv.client()
        .enqueue_batch("status", &BatchRequest { jobs })
        .await
        .expect("enqueue");
    let done = srv
        .wait_all_finished("status", 3, Duration::from_secs(60))
        .await;
    let by = |id: &str| done.iter().find(|j| j.id == id).cloned().expect(id);
    assert_eq!(
        (by("busy").state, by("busy").attempt),
        (JobState::Succeeded, 2)
    );
    assert_eq!(
        (by("flaky").state, by("flaky").attempt),
        (JobState::Succeeded, 2)
    );
    let gone = by("gone");
    assert_eq!(
        (gone.state, gone.attempt),
        (JobState::Failed, 1),
        "410 is not retried"
    );
    assert!(
        gone.error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("410")),
        "{:?}",
        gone.error
    );
    // The 429's retry came no sooner than its Retry-After of 1 s (the
    // queue's own backoff is 100 ms).
    let seen = r.seen.lock().unwrap().clone();
    let busy: Vec<Instant> = seen
        .iter()
        .filter(|s| s.event == "start" && s.body["id"] == "busy")
        .map(|s| s.at)
        .collect();
    assert_eq!(busy.len(), 2);
    assert!(
        busy[1] - busy[0] >= Duration::from_millis(950),
        "retried after {:?}",
        busy[1] - busy[0]
    );
}

/// §6 and §10: with a secret every request is signed (checked here against
/// the raw body), and the secret is never shown back by the API.
#[tokio::test]
async fn signed_requests_and_the_secret_never_leaks() {
    let (url, r) = receiver().await;
    let srv = TestServer::start().await;
    srv.configure(
        "signed",
        webhook(
            &url,
            1,
            json!({"secret": "s3cr3t-value", "headers": {"X-Team": "billing"}}),
        ),
    )
    .await;
    for shown in [
        serde_json::to_string(&srv.client().queue("signed").await.expect("queue")).expect("json"),
        serde_json::to_string(&srv.client().queues().await.expect("queues")).expect("json"),
        srv.run_cli_ok(&["queue", "show", "signed"]).await,
    ] {
        assert!(
            !shown.contains("s3cr3t-value"),
            "the secret leaked: {shown}"
        );
        assert!(shown.contains("secret_set"), "{shown}");
    }
    srv.client()
        .enqueue("signed", &job_req("s1", None, json!({"x": 1})))
        .await
        .expect("enqueue");
    srv.wait_all_finished("signed", 1, Duration::from_secs(60))
        .await;
    let seen = r.seen.lock().unwrap().clone();
    let sig = seen[0].signature.clone().expect("Orderly-Signature header");
    let t: u64 = sig
        .split(',')
        .next()
        .and_then(|p| p.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .expect("t=");
    assert_eq!(
        sig,
        orderly_worker::webhook::signature::header_value(b"s3cr3t-value", t, &seen[0].raw)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(now.abs_diff(t) < 300, "a fresh timestamp");
}

/// §6: a server killed -9 in the middle of a webhook call reruns that job
/// at once on its next start (as attempt 2, before the later job), without
/// waiting for its 60 s lease.
#[tokio::test]
async fn kill9_mid_request_reruns_the_job_in_place() {
    let (url, r) = receiver().await;
    let mut srv = TestServer::start().await;
    let mut cfg = webhook(&url, 1, json!({}));
    cfg.lease_ms = Some(60_000);
    srv.configure("restart", cfg).await;
    let jobs = vec![
        job_req("w1", None, json!({"sleep_ms": 600_000})),
        job_req("w2", None, json!({})),
    ];
    srv.client()
        .enqueue_batch("restart", &BatchRequest { jobs })
        .await
        .expect("enqueue");
    let started = || {
        r.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.event == "start")
            .count()
    };
    assert!(
        wait_until(deadline(Duration::from_secs(20)), || async {
            started() == 1
        })
        .await,
        "w1 was posted"
    );
    srv.kill9();
    srv.restart().await;
    // Within 20 s (its lease is 60 s): w1 again as attempt 2, then w2.
    assert!(
        wait_until(deadline(Duration::from_secs(20)), || async {
            started() == 2
        })
        .await,
        "w1 was not posted again after the restart"
    );
    let seen = r.seen.lock().unwrap().clone();
    let starts: Vec<(String, u64)> = seen
        .iter()
        .filter(|s| s.event == "start")
        .map(|s| {
            (
                s.body["id"].as_str().unwrap_or("").to_string(),
                s.body["attempt"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        starts,
        [("w1".to_string(), 1), ("w1".to_string(), 2)],
        "w1 reruns first, before w2"
    );
    let w1 = srv.job("w1").await;
    assert_eq!((w1.state, w1.attempt), (JobState::Running, 2), "{w1:?}");
    assert_eq!(
        srv.job("w2").await.state,
        JobState::Queued,
        "w2 waits behind w1"
    );
}
