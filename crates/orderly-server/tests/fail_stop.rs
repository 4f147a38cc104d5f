//! After an I/O error on commit the store fails stop: `/healthz` answers 503,
//! writes get `503 storage_failed`, reads keep working (contract section 3).
//!
//! The I/O error is made without root: the test process lowers its own file
//! size limit (RLIMIT_FSIZE, through `prlimit`) just above the write-ahead
//! log's size and catches SIGXFSZ, so SQLite's next log write fails with
//! EFBIG, which it reports as SQLITE_IOERR_WRITE. This binary holds one test
//! because the limit applies to the whole process.

#![cfg(target_os = "linux")]

mod support;

use std::process::Command;

use axum::http::StatusCode;
use orderly_sqlite::DB_FILE;
use serde_json::json;
use support::{assert_error, TestApp};
use tokio::signal::unix::{signal, SignalKind};

/// SIGXFSZ on Linux.
const SIGXFSZ: i32 = 25;

/// Sets this process's soft file size limit; `None` lifts it.
fn set_fsize_limit(bytes: Option<u64>) -> bool {
    let value = bytes.map_or("unlimited".to_string(), |b| b.to_string());
    Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--fsize={value}:"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Lifts the limit again, even when the test fails.
struct LiftLimit;

impl Drop for LiftLimit {
    fn drop(&mut self) {
        set_fsize_limit(None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_on_commit_fails_stop_and_healthz_says_so() {
    let app = TestApp::new();
    let (status, health) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({"status": "ok"}));
    let kept = app
        .enqueue("q", json!({"id": "kept", "payload": "before"}))
        .await;
    // As a read shows it (a write's answer leaves `waiting_on` unexplained).
    let kept = app.job(kept["id"].as_str().expect("id")).await;

    // Exceeding the limit raises SIGXFSZ, which would kill the process: catch it.
    let _sigxfsz = signal(SignalKind::from_raw(SIGXFSZ)).expect("catch SIGXFSZ");
    let largest = std::fs::read_dir(app.dir.path())
        .expect("data dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    let wal = app.dir.path().join(format!("{DB_FILE}-wal"));
    assert!(wal.exists(), "the store runs in WAL mode");
    if !set_fsize_limit(Some(largest + 8 * 1024)) {
        eprintln!("skipped: `prlimit` is not available to lower the file size limit");
        return;
    }
    let _lift = LiftLimit;

    // A commit that grows the log past the limit fails with an I/O error.
    let big = "x".repeat(256 * 1024);
    let (status, body) = app
        .post("/v1/queues/q/jobs", json!({"id": "big", "payload": big}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error(&body, "storage_failed", "the failing commit");
    set_fsize_limit(None);

    // Failed stop: unhealthy, and every later write refused, even a small one
    // that would fit on disk now.
    let (status, health) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "unhealthy");
    assert!(
        health["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{health}"
    );
    for (path, req) in [
        ("/v1/queues/q/jobs", json!({"payload": null, "id": "small"})),
        (
            "/v1/queues/q/jobs/batch",
            json!({"jobs": [{"payload": null, "id": "s1"}]}),
        ),
        ("/v1/queues/q/claim", json!({"worker": "w"})),
    ] {
        let (status, body) = app.post(path, req).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert_error(&body, "storage_failed", path);
    }
    let (status, body) = app.put("/v1/queues/q", json!({"paused": true})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error(&body, "storage_failed", "configure");

    // Reads still answer, from what was committed.
    assert_eq!(app.job("kept").await, kept);
    let (status, body) = app.get("/v1/jobs/big").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(app.queue("q").await["counts"]["queued"], 1);
}
