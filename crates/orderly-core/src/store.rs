//! The `Store` trait: the only way to storage.
//!
//! Internal interface between the service layer and a backend (SQLite now,
//! PostgreSQL next). One method per operation, named `<entity>_<verb>`, each
//! taking a small params struct and the current time (`now`), so behaviour
//! that depends on time (leases, delays) is tested without sleeping.
//!
//! Every backend must pass [`crate::conformance::exercise`] unchanged.
//!
//! Invariants every backend keeps:
//! - `seq` strictly increases in commit order and is never reused;
//! - a claim takes, among the queue's eligible jobs ([`crate::rules::eligible`]),
//!   the lowest `seq`s first, never more than `concurrency - running`;
//! - before claiming, a queue's due scheduled jobs become queued and its
//!   expired leases are put back in place, so time never lets a later job
//!   overtake an earlier one;
//! - a method returns only after its effect is committed, and durably so
//!   as far as the backend's durability setting promises (by default, fsynced).

use async_trait::async_trait;
use serde_json::Value;

use crate::job::{Job, JobState, Millis, NewJob};
use crate::queue::{QueueInfo, QueuePatch};

/// Errors a store reports. The service layer maps them to its own errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// No job has this id.
    #[error("job {0:?} not found")]
    JobNotFound(String),
    /// No queue has this name (it was never configured nor used).
    #[error("queue {0:?} not found")]
    QueueNotFound(String),
    /// An enqueue reused an id with a different queue, key or payload.
    #[error("job id {id:?} already exists with a different queue, key or payload")]
    IdConflict {
        /// The id.
        id: String,
    },
    /// A report or heartbeat carried a token that is not the job's current lease.
    #[error("lease on job {id:?} is not current: {reason}")]
    StaleLease {
        /// The job.
        id: String,
        /// Why: the job is no longer running, the token is another attempt's, or the lease expired.
        reason: String,
    },
    /// The job's state does not allow the operation.
    #[error("job {id:?} is {state}: cannot {action}")]
    InvalidState {
        /// The job.
        id: String,
        /// Its state.
        state: JobState,
        /// What was refused.
        action: &'static str,
    },
    /// The disk is full; reads still work and writes resume once space is freed.
    #[error("storage is full, nothing was written: {0}")]
    StorageFull(String),
    /// A write failed in a way that cannot be trusted (e.g. fsync); the store stopped accepting writes.
    #[error("storage failed and stopped accepting writes: {0}")]
    StorageFailed(String),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
    /// Anything else from the backend.
    #[error("storage error: {0}")]
    Backend(String),
}

/// Enqueue jobs into one queue, atomically and in order.
#[derive(Debug, Clone)]
pub struct EnqueueParams {
    /// Target queue (validated).
    pub queue: String,
    /// Jobs in acceptance order; they receive consecutive `seq`s.
    pub jobs: Vec<NewJob>,
    /// Current time.
    pub now: Millis,
}

/// What an enqueue did with one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The job as stored.
    pub job: Job,
    /// False when the id already existed with the same content (an idempotent replay).
    pub created: bool,
}

/// Claim up to `max` jobs of a queue for `worker`.
#[derive(Debug, Clone)]
pub struct ClaimParams {
    /// Queue to claim from.
    pub queue: String,
    /// Worker name, recorded on the job.
    pub worker: String,
    /// Most leases to take.
    pub max: u32,
    /// Lease length; the queue's `lease_ms` when `None`.
    pub lease_ms: Option<u64>,
    /// Current time.
    pub now: Millis,
}

/// A claimed job and the token that proves the claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The job, state `running`.
    pub job: Job,
    /// Fencing token: reports must carry it; a new claim of the job makes it stale.
    pub token: String,
    /// When the lease expires unless renewed.
    pub expires_at: Millis,
    /// How long the lease runs from the moment it was granted, by the
    /// store's clock: workers schedule heartbeats from this, never by
    /// comparing `expires_at` with their own clock.
    pub lease_ms: u64,
}

/// Renew a lease and optionally record progress.
#[derive(Debug, Clone)]
pub struct HeartbeatParams {
    /// Job id.
    pub id: String,
    /// Lease token.
    pub token: String,
    /// Progress to record.
    pub progress: Option<Value>,
    /// Current time.
    pub now: Millis,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// New expiry.
    pub expires_at: Millis,
    /// How long the renewed lease runs from now, by the store's clock.
    pub lease_ms: u64,
    /// Someone asked to cancel the job: the worker should stop and report.
    pub cancel_requested: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success with an optional result.
    Succeeded {
        /// Result to keep.
        result: Option<Value>,
    },
    /// Failure; retried with backoff while attempts remain unless `retry` is false.
    Failed {
        /// Error to keep.
        error: Value,
        /// False: do not retry.
        retry: bool,
    },
}

/// A worker's report on one attempt.
#[derive(Debug, Clone)]
pub struct ReportParams {
    /// Job id.
    pub id: String,
    /// Lease token.
    pub token: String,
    /// What happened.
    pub outcome: Outcome,
    /// Current time.
    pub now: Millis,
}

/// List a queue's jobs by `seq`.
#[derive(Debug, Clone)]
pub struct ListParams {
    /// Queue.
    pub queue: String,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only `seq > after` (cursor).
    pub after: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaintenanceReport {
    /// Queues where jobs became eligible (due jobs, expired leases).
    pub woken_queues: Vec<String>,
    /// Jobs that finished: a lease or timeout with no attempts left, or a
    /// job whose cancel was asked while it ran.
    pub finished: Vec<Job>,
    /// Earliest future time at which another pass has work (a `run_at` or a lease expiry).
    pub next_due: Option<Millis>,
}

/// Storage for jobs and queues. See the module docs for the invariants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Enqueues jobs atomically in order; replays of an existing id with the
    /// same queue, key and payload return the stored job (`created: false`),
    /// anything else under an existing id fails the whole call with `IdConflict`.
    async fn job_enqueue_many(&self, params: EnqueueParams) -> Result<Vec<Enqueued>, StoreError>;

    /// Claims up to `max` eligible jobs in `seq` order (see module docs).
    async fn job_claim(&self, params: ClaimParams) -> Result<Vec<Lease>, StoreError>;

    /// Renews a lease.
    async fn job_heartbeat(&self, params: HeartbeatParams) -> Result<Heartbeat, StoreError>;

    /// Applies reports, each independently, in order; one result per report.
    /// A report repeated with the token of the report that already moved the
    /// job on (its answer was lost) changes nothing and returns the job as
    /// that report left it; any other report on a lease that is not current
    /// is `StaleLease`.
    async fn job_report_many(
        &self,
        reports: Vec<ReportParams>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError>;

    /// Reports one attempt and, in the same transaction, claims the next jobs
    /// (one round trip per job for a serial queue). If the report is refused,
    /// nothing is claimed and the report's error is returned. The claim is
    /// made on the reported job's queue, whatever `claim.queue` says. A
    /// repeated report returns the unexpired leases `claim.worker` already
    /// holds in that queue (what the lost answer carried) before claiming more.
    async fn job_report_and_claim(
        &self,
        report: ReportParams,
        claim: ClaimParams,
    ) -> Result<(Job, Vec<Lease>), StoreError>;

    /// Cancels a waiting job now, or asks a running one to stop.
    async fn job_cancel(&self, id: &str, now: Millis) -> Result<Job, StoreError>;

    /// Puts a failed or cancelled job back in line with a new `seq`.
    async fn job_retry(&self, id: &str, now: Millis) -> Result<Job, StoreError>;

    /// One job, with its `position` when waiting.
    async fn job_get(&self, id: &str) -> Result<Option<Job>, StoreError>;

    /// A page of a queue's jobs ordered by `seq`.
    async fn job_list(&self, params: ListParams) -> Result<Vec<Job>, StoreError>;

    /// A queue's configuration and counts; `QueueNotFound` if never configured nor used.
    async fn queue_get(&self, name: &str) -> Result<QueueInfo, StoreError>;

    /// Every queue that was configured or used.
    async fn queue_list(&self) -> Result<Vec<QueueInfo>, StoreError>;

    /// Creates or changes a queue; fields left out keep their value.
    async fn queue_configure(
        &self,
        name: &str,
        patch: QueuePatch,
        now: Millis,
    ) -> Result<QueueInfo, StoreError>;

    /// Makes due scheduled jobs queued and puts expired leases back in line, in every queue.
    async fn maintenance_run(&self, now: Millis) -> Result<MaintenanceReport, StoreError>;

    /// Deletes at most `limit` jobs that finished before `finished_before`
    /// (and the start records older than it); returns how many jobs. Callers
    /// loop until it returns less than `limit`, so one call never holds the
    /// store for long.
    async fn retention_purge(&self, finished_before: Millis, limit: u32)
        -> Result<u64, StoreError>;

    /// `Ok` while the store can accept writes.
    async fn health(&self) -> Result<(), StoreError>;

    /// Finishes every write already sent, then stops: later calls answer
    /// `Closed`. Returns once the backend's resources (threads,
    /// connections) are released. Calling it again is harmless.
    async fn close(&self);
}
