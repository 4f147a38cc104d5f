//! How many claimers a new job wakes: one job sends one idle worker to the
//! store, not all of them. Measured by counting the claims that reach a real
//! SQLite store through a thin counting wrapper.

mod instrumented;
mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use instrumented::Instrumented;
use orderly_server::{router, AppState, ServerConfig};
use orderly_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;
use support::{call_router, Body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_new_job_wakes_one_of_twenty_idle_claimers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Instrumented::new(SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open"));
    let claims = store.claims.clone();
    let app = router(AppState::new(Arc::new(store), ServerConfig::default()));
    let (status, _) = call_router(
        app.clone(),
        Method::PUT,
        "/v1/queues/q",
        Some(Body::Json(json!({}))),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    const IDLE: usize = 20;
    let mut polls = Vec::new();
    for i in 0..IDLE {
        let app = app.clone();
        polls.push(tokio::spawn(async move {
            call_router(
                app,
                Method::POST,
                "/v1/queues/q/claim",
                Some(Body::Json(
                    json!({"worker": format!("w{i}"), "wait_ms": 8000}),
                )),
                None,
            )
            .await
        }));
    }
    // Every claimer has looked once and is waiting.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while claims.load(Ordering::SeqCst) < IDLE {
        assert!(
            std::time::Instant::now() < deadline,
            "claimers did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = claims.load(Ordering::SeqCst);
    assert_eq!(before, IDLE, "idle claimers look once, then wait");

    let (status, _) = call_router(
        app.clone(),
        Method::POST,
        "/v1/queues/q/jobs",
        Some(Body::Json(json!({"payload": null, "id": "one"}))),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The job is taken by exactly one claimer...
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let winner = loop {
        if let Some(i) = polls.iter().position(|p| p.is_finished()) {
            break i;
        }
        assert!(std::time::Instant::now() < deadline, "nobody took the job");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (status, out) = polls.remove(winner).await.expect("task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["leases"][0]["job"]["id"], "one");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and only that one went back to the store: the others kept waiting.
    assert_eq!(
        claims.load(Ordering::SeqCst),
        before + 1,
        "one job woke one claimer"
    );
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "the others still wait"
    );
    for p in polls {
        p.abort();
    }
}

/// `POST /v1/reports` answers per item: when one item hits a storage failure
/// after others committed, the committed ones are answered as committed, the
/// failed one with its error, and the committed ones wake their claimers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_answer_per_item_and_wake_for_the_committed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Instrumented::new(
        SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open"),
    ));
    let app = router(AppState::new(store.clone(), ServerConfig::default()));
    let call = |method, path: &'static str, body| {
        call_router(app.clone(), method, path, Some(Body::Json(body)), None)
    };
    let (status, _) = call(Method::PUT, "/v1/queues/q", json!({"concurrency": 2})).await;
    assert_eq!(status, StatusCode::OK);
    for id in ["a", "b", "c"] {
        let (status, _) = call(
            Method::POST,
            "/v1/queues/q/jobs",
            json!({"id": id, "payload": {}}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (_, claimed) = call(
        Method::POST,
        "/v1/queues/q/claim",
        json!({"worker": "w", "max": 2}),
    )
    .await;
    let leases = claimed["leases"].as_array().expect("leases").clone();
    assert_eq!(leases.len(), 2, "{claimed}");
    // A claimer waits for the capacity the reports free.
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            call_router(
                app,
                Method::POST,
                "/v1/queues/q/claim",
                Some(Body::Json(json!({"worker": "next", "wait_ms": 20_000}))),
                None,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    *store.fail_reports_of.lock().expect("lock") = Some("b".into());
    let reports: Vec<_> = leases
        .iter()
        .map(|l| json!({"id": l["job"]["id"], "token": l["token"], "outcome": "succeeded"}))
        .collect();
    let (status, body) = call(Method::POST, "/v1/reports", json!({ "reports": reports })).await;
    assert_eq!(status, StatusCode::OK, "the call answers per item: {body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results[0]["job"]["id"], "a", "{body}");
    assert_eq!(results[0]["job"]["state"], "succeeded", "{body}");
    assert_eq!(results[1]["error"]["code"], "storage_full", "{body}");
    let (status, out) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the committed report did not wake the waiting claimer")
        .expect("task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["leases"][0]["job"]["id"], "c", "{out}");
}
