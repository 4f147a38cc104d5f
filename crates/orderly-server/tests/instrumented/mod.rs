//! A real SQLite store behind a thin wrapper that counts claims and can
//! fail one job's reports, for tests of what the service does with the
//! store's answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orderly_core::{
    AttemptRecord, ClaimParams, Committed, EnqueueParams, Enqueued, Heartbeat, HeartbeatParams,
    Job, Lease, ListParams, MaintenanceReport, Millis, QueueInfo, QueuePatch, ReportParams,
    StartListParams, StartRecord, Store, StoreError,
};
use orderly_sqlite::SqliteStore;

/// The SQLite store, counting the claims it is asked for, and failing the
/// reports of one chosen job as a storage failure would (without applying them).
pub struct Instrumented {
    /// The real store.
    pub inner: SqliteStore,
    /// Claims that reached the store.
    pub claims: Arc<AtomicUsize>,
    /// Reports on this job fail with `StorageFull` and change nothing.
    pub fail_reports_of: Mutex<Option<String>>,
}

impl Instrumented {
    /// Over the real store `inner`.
    pub fn new(inner: SqliteStore) -> Self {
        Instrumented {
            inner,
            claims: Arc::new(AtomicUsize::new(0)),
            fail_reports_of: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Store for Instrumented {
    async fn job_enqueue_many(
        &self,
        p: EnqueueParams,
    ) -> Result<Committed<Vec<Enqueued>>, StoreError> {
        self.inner.job_enqueue_many(p).await
    }
    async fn job_claim(&self, p: ClaimParams) -> Result<Committed<Vec<Lease>>, StoreError> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.inner.job_claim(p).await
    }
    async fn job_heartbeat(&self, p: HeartbeatParams) -> Result<Heartbeat, StoreError> {
        self.inner.job_heartbeat(p).await
    }
    async fn job_report_many(
        &self,
        r: Vec<ReportParams>,
    ) -> Vec<Result<Committed<Job>, StoreError>> {
        let failing = self.fail_reports_of.lock().expect("lock").clone();
        let (fail, pass): (Vec<_>, Vec<_>) = r
            .into_iter()
            .enumerate()
            .partition(|(_, p)| Some(&p.id) == failing.as_ref());
        let mut applied = self
            .inner
            .job_report_many(pass.iter().map(|(_, p)| p.clone()).collect())
            .await
            .into_iter();
        let mut out: Vec<Option<Result<Committed<Job>, StoreError>>> =
            (0..fail.len() + pass.len()).map(|_| None).collect();
        for (i, _) in &fail {
            out[*i] = Some(Err(StoreError::StorageFull(
                "injected: the disk is full".into(),
            )));
        }
        for (i, _) in &pass {
            out[*i] = applied.next();
        }
        out.into_iter()
            .map(|r| r.expect("one result per report"))
            .collect()
    }
    async fn job_report_and_claim(
        &self,
        r: ReportParams,
        c: ClaimParams,
    ) -> Result<Committed<(Job, Vec<Lease>)>, StoreError> {
        self.inner.job_report_and_claim(r, c).await
    }
    async fn job_cancel(&self, id: &str, now: Millis) -> Result<Committed<Job>, StoreError> {
        self.inner.job_cancel(id, now).await
    }
    async fn job_retry(&self, id: &str, now: Millis) -> Result<Committed<Job>, StoreError> {
        self.inner.job_retry(id, now).await
    }
    async fn job_get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.inner.job_get(id).await
    }
    async fn job_attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        self.inner.job_attempts(id).await
    }
    async fn job_list(&self, p: ListParams) -> Result<Vec<Job>, StoreError> {
        self.inner.job_list(p).await
    }
    async fn start_list(&self, p: StartListParams) -> Result<Vec<StartRecord>, StoreError> {
        self.inner.start_list(p).await
    }
    async fn queue_get(&self, name: &str) -> Result<QueueInfo, StoreError> {
        self.inner.queue_get(name).await
    }
    async fn queue_list(&self) -> Result<Vec<QueueInfo>, StoreError> {
        self.inner.queue_list().await
    }
    async fn queue_oldest_queued(&self, queue: &str) -> Result<Option<Millis>, StoreError> {
        self.inner.queue_oldest_queued(queue).await
    }
    fn writer_stats(&self) -> Option<orderly_core::WriterStats> {
        self.inner.writer_stats()
    }
    async fn queue_configure(
        &self,
        name: &str,
        patch: QueuePatch,
        now: Millis,
    ) -> Result<QueueInfo, StoreError> {
        self.inner.queue_configure(name, patch, now).await
    }
    async fn lease_release(
        &self,
        worker_prefix: &str,
        now: Millis,
    ) -> Result<Committed<u64>, StoreError> {
        self.inner.lease_release(worker_prefix, now).await
    }
    async fn maintenance_run(
        &self,
        now: Millis,
        jitter: f64,
    ) -> Result<Committed<MaintenanceReport>, StoreError> {
        self.inner.maintenance_run(now, jitter).await
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
