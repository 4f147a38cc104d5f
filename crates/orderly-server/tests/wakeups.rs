//! How many claimers a new job wakes: one job sends one idle worker to the
//! store, not all of them. Measured by counting the claims that reach a real
//! SQLite store through a thin counting wrapper.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use orderly_core::{
    ClaimParams, EnqueueParams, Enqueued, Heartbeat, HeartbeatParams, Job, Lease, ListParams,
    MaintenanceReport, Millis, QueueInfo, QueuePatch, ReportParams, Store, StoreError,
};
use orderly_server::{router, AppState, ServerConfig};
use orderly_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;
use support::{call_router, Body};

/// The SQLite store, counting the claims it is asked for.
struct CountingStore {
    inner: SqliteStore,
    claims: Arc<AtomicUsize>,
}

#[async_trait]
impl Store for CountingStore {
    async fn job_enqueue_many(&self, p: EnqueueParams) -> Result<Vec<Enqueued>, StoreError> {
        self.inner.job_enqueue_many(p).await
    }
    async fn job_claim(&self, p: ClaimParams) -> Result<Vec<Lease>, StoreError> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.inner.job_claim(p).await
    }
    async fn job_heartbeat(&self, p: HeartbeatParams) -> Result<Heartbeat, StoreError> {
        self.inner.job_heartbeat(p).await
    }
    async fn job_report_many(
        &self,
        r: Vec<ReportParams>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        self.inner.job_report_many(r).await
    }
    async fn job_report_and_claim(
        &self,
        r: ReportParams,
        c: ClaimParams,
    ) -> Result<(Job, Vec<Lease>), StoreError> {
        self.inner.job_report_and_claim(r, c).await
    }
    async fn job_cancel(&self, id: &str, now: Millis) -> Result<Job, StoreError> {
        self.inner.job_cancel(id, now).await
    }
    async fn job_retry(&self, id: &str, now: Millis) -> Result<Job, StoreError> {
        self.inner.job_retry(id, now).await
    }
    async fn job_get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.inner.job_get(id).await
    }
    async fn job_list(&self, p: ListParams) -> Result<Vec<Job>, StoreError> {
        self.inner.job_list(p).await
    }
    async fn queue_get(&self, name: &str) -> Result<QueueInfo, StoreError> {
        self.inner.queue_get(name).await
    }
    async fn queue_list(&self) -> Result<Vec<QueueInfo>, StoreError> {
        self.inner.queue_list().await
    }
    async fn queue_configure(
        &self,
        name: &str,
        patch: QueuePatch,
        now: Millis,
    ) -> Result<QueueInfo, StoreError> {
        self.inner.queue_configure(name, patch, now).await
    }
    async fn maintenance_run(&self, now: Millis) -> Result<MaintenanceReport, StoreError> {
        self.inner.maintenance_run(now).await
    }
    async fn retention_purge(&self, before: Millis, limit: u32) -> Result<u64, StoreError> {
        self.inner.retention_purge(before, limit).await
    }
    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_new_job_wakes_one_of_twenty_idle_claimers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let claims = Arc::new(AtomicUsize::new(0));
    let store = CountingStore {
        inner: SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open"),
        claims: claims.clone(),
    };
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
