//! # orderly-proto
//!
//! The wire types of Orderly's HTTP API, version 1: every request and
//! response body, declared once and shared by the server and the client.
//! Requests reject unknown fields. Times are RFC 3339 strings in UTC;
//! durations are milliseconds (`*_ms`).
//!
//! JSON values (payloads, results, progress, errors) keep every number
//! exactly as sent: the workspace builds `serde_json` with
//! `arbitrary_precision`, so `18446744073709551617` or `1e-400` is neither
//! rounded through `f64` nor refused (only an exponent's `E` is written `e`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

mod errors;
pub mod events;
mod schema;
mod whole;
pub use errors::{codes, ErrorBody, ErrorCode, ErrorDetail};
pub use events::{DroppedView, EventJob, EventKind, EventView, GapView};

/// `POST /v1/queues/{queue}/jobs` body; also one item of a batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// Client-chosen id (makes the enqueue idempotent); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,200}$")]
    pub id: Option<String>,
    /// Ordering key (1 to 200 bytes of UTF-8): jobs with the same key run
    /// one at a time in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub key: Option<String>,
    /// Input for the worker, any JSON; required (`null` is a payload too).
    /// Numbers are kept exactly as sent (any precision, any exponent).
    pub payload: Value,
    /// Not before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub run_at: Option<String>,
    /// Not before this many milliseconds from now.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u64"
    )]
    #[schema(maximum = 31_536_000_000_i64)]
    pub delay_ms: Option<u64>,
    /// Starts allowed (overrides the queue's setting).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u32"
    )]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<u32>,
    /// Per-attempt time limit.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u64"
    )]
    #[schema(minimum = 1, maximum = 31_536_000_000_i64)]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/queues/{queue}/jobs/batch` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Jobs, accepted atomically and in this order.
    #[schema(min_items = 1, max_items = 10000)]
    pub jobs: Vec<EnqueueRequest>,
}

/// A job's state on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `run_at` (a delay or a retry backoff).
    Scheduled,
    /// Ready; starts when first in line and capacity is free.
    Queued,
    /// Held by a worker under a lease.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with no attempts left.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl JobState {
    /// The state as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True for succeeded, failed and cancelled.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for JobState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How an attempt ended, in `POST /v1/reports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportOutcome {
    /// The job succeeded.
    Succeeded,
    /// The attempt failed.
    Failed,
    /// Any other string: refused in its own slot of the answer, so one bad
    /// item does not refuse the others.
    Unknown,
}

impl<'de> Deserialize<'de> for ReportOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A string of any value is read (an unknown one is judged per item);
        // anything but a string is a malformed request.
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "succeeded" => ReportOutcome::Succeeded,
            "failed" => ReportOutcome::Failed,
            _ => ReportOutcome::Unknown,
        })
    }
}

/// A job as the API shows it (contract section 4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Ordering key.
    pub key: Option<String>,
    /// Acceptance order, strictly increasing.
    pub seq: i64,
    /// Its state.
    pub state: JobState,
    /// Waiting jobs of the queue ahead of this one, for a waiting job.
    pub position: Option<u64>,
    /// The job's input.
    pub payload: Value,
    /// Starts so far.
    pub attempt: u32,
    /// Starts allowed.
    pub max_attempts: u32,
    /// Per-attempt time limit.
    pub timeout_ms: Option<u64>,
    /// When accepted.
    pub enqueued_at: String,
    /// Not before.
    pub run_at: String,
    /// Latest start.
    pub started_at: Option<String>,
    /// When finished.
    pub finished_at: Option<String>,
    /// Latest progress.
    pub progress: Option<Value>,
    /// Result on success.
    pub result: Option<Value>,
    /// Latest error.
    pub error: Option<Value>,
    /// A cancel was requested while running.
    pub cancel_requested: bool,
    /// Worker holding (or last holding) the job.
    pub worker: Option<String>,
    /// Expiry of the running attempt's lease.
    pub lease_expires_at: Option<String>,
    /// Global start counter of the latest start (the audit of start order).
    pub start_no: Option<i64>,
    /// Unfinished jobs of its key ahead of it, for a waiting job with a key.
    #[serde(default)]
    pub key_position: Option<u64>,
    /// Why a waiting job has not started.
    #[serde(default)]
    pub waiting_on: Option<WaitingOnView>,
    /// When a waiting job likely starts (an estimate).
    #[serde(default)]
    pub eta: Option<EtaView>,
}

/// Why a waiting job has not started (contract section 4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum WaitingOnView {
    /// Delayed until `until` (RFC 3339).
    Scheduled {
        /// Its `run_at`.
        until: String,
    },
    /// Waits for its retry backoff to end at `until` (RFC 3339).
    RetryBackoff {
        /// Its `run_at`.
        until: String,
    },
    /// An earlier unfinished job of its key must finish first.
    Key {
        /// Id of the first unfinished job of its key.
        job: String,
    },
    /// The queue runs `limit` jobs already.
    Concurrency {
        /// The queue's concurrency.
        limit: u32,
    },
    /// Capacity is free but earlier jobs are handed out first.
    Line,
    /// The queue is paused.
    Paused,
    /// No executor, and no worker asked for work recently.
    NoWorker,
}

/// When a waiting job likely starts: an estimate from the queue's recent pace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EtaView {
    /// Not likely before (RFC 3339).
    pub earliest: String,
    /// Not likely after (RFC 3339).
    pub latest: String,
}

/// `POST /v1/queues/{queue}/jobs/batch` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// The jobs, in request order.
    pub jobs: Vec<JobView>,
}

/// `GET /v1/queues/{queue}/jobs` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobListResponse {
    /// Jobs ordered by `seq`.
    pub jobs: Vec<JobView>,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

/// How an attempt ended, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The attempt succeeded.
    Succeeded,
    /// The attempt failed: reported, timed out or its lease lost (the job
    /// may have been retried).
    Failed,
    /// The job was cancelled while the attempt ran.
    Cancelled,
}

impl AttemptOutcome {
    /// The outcome as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt of a job (`GET /v1/jobs/{id}/attempts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    /// Attempt number (1 for the first run since the job was last put in line).
    pub attempt: u32,
    /// The start's global number (its place in the start log).
    pub start_no: i64,
    /// The worker name the claim gave.
    pub worker: String,
    /// When it started.
    pub started_at: String,
    /// When it ended; `null` while it runs.
    pub ended_at: Option<String>,
    /// How it ended; `null` while it runs.
    pub outcome: Option<AttemptOutcome>,
    /// Its error, for an attempt that did not succeed.
    pub error: Option<Value>,
}

/// `GET /v1/jobs/{id}/attempts` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptListResponse {
    /// Every recorded attempt, oldest first.
    pub attempts: Vec<AttemptView>,
}

/// One start of the start log (`GET /v1/queues/{queue}/starts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StartView {
    /// The start's global number: strictly increasing in start order.
    pub start_no: i64,
    /// The job's `seq` when it started.
    pub seq: i64,
    /// The job.
    pub job_id: String,
    /// The job's ordering key.
    pub key: Option<String>,
    /// Attempt number of this start.
    pub attempt: u32,
    /// The worker name the claim gave.
    pub worker: String,
    /// When it started.
    pub started_at: String,
}

/// `GET /v1/queues/{queue}/starts` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StartListResponse {
    /// Starts ordered by `start_no`.
    pub starts: Vec<StartView>,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

/// `POST /v1/queues/{queue}/claim` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Worker name (1 to 200 bytes of UTF-8; shown on the job).
    #[schema(min_length = 1, max_length = 200)]
    pub worker: String,
    /// Most leases to take (default 1).
    #[serde(default = "one", deserialize_with = "whole::u32")]
    #[schema(minimum = 1, maximum = 1000, default = 1)]
    pub max: u32,
    /// Wait this long for work when none is eligible (default 0).
    #[serde(default, deserialize_with = "whole::u64")]
    #[schema(maximum = 300000, default = 0)]
    pub wait_ms: u64,
    /// Lease length (default: the queue's `lease_ms`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u64"
    )]
    #[schema(minimum = 100, maximum = 86400000)]
    pub lease_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    /// The job (state `running`).
    pub job: JobView,
    /// Token to send with heartbeats and reports.
    pub token: String,
    /// Lease expiry unless renewed (the server's clock).
    pub expires_at: String,
    /// How long the lease runs from the moment it was granted: heartbeat
    /// well within it (a third is a good pace). Use this, not `expires_at`
    /// minus your own clock, which may differ from the server's.
    pub lease_ms: u64,
}

/// Answer to a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimResponse {
    /// Leases in `seq` order (possibly empty).
    pub leases: Vec<LeaseView>,
}

/// `POST /v1/jobs/{id}/heartbeat` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Lease token.
    pub token: String,
    /// Progress to record, any JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// New lease expiry (the server's clock).
    pub expires_at: String,
    /// How long the renewed lease runs from now.
    pub lease_ms: u64,
    /// Stop and report: someone cancelled the job.
    pub cancel_requested: bool,
}

/// `POST /v1/jobs/{id}/complete` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// Lease token.
    pub token: String,
    /// Result to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Also claim the next jobs in the same round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_next: Option<ClaimRequest>,
}

/// `POST /v1/jobs/{id}/fail` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// Lease token.
    pub token: String,
    /// What went wrong, any JSON (usually a string).
    pub error: Value,
    /// `false`: fail for good now; otherwise retry while attempts remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    /// Retry after this many milliseconds instead of the queue's backoff.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u64"
    )]
    #[schema(maximum = 31_536_000_000_i64)]
    pub retry_after_ms: Option<u64>,
    /// Also claim the next jobs in the same round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_next: Option<ClaimRequest>,
}

/// Answer to complete and fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportResponse {
    /// The job after the report.
    pub job: JobView,
    /// Next leases when `claim_next` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leases: Option<Vec<LeaseView>>,
}

/// One outcome in `POST /v1/reports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportItem {
    /// Job id (a malformed one is refused in this item's result).
    pub id: String,
    /// Lease token.
    pub token: String,
    /// `succeeded` or `failed`.
    pub outcome: ReportOutcome,
    /// Result, for `succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Error, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// For `failed`: `false` fails for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    /// For `failed`: retry after this many milliseconds instead of the
    /// queue's backoff (over a year is refused in this item's result).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u64"
    )]
    pub retry_after_ms: Option<u64>,
    /// Also claim the next jobs of the reported job's queue, in the same
    /// commit; they come back in this item's `leases`. Claimed only if the
    /// report is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_next: Option<BatchClaimNext>,
}

/// `claim_next` of one item of `POST /v1/reports`: a claim as on `complete`
/// and `fail`, except that it cannot wait (`wait_ms` is 0 or absent; a
/// batch answers at once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchClaimNext {
    /// Worker name (1 to 200 bytes of UTF-8; shown on the job).
    #[schema(min_length = 1, max_length = 200)]
    pub worker: String,
    /// Most leases to take (default 1).
    #[serde(default = "one", deserialize_with = "whole::u32")]
    #[schema(minimum = 1, maximum = 1000, default = 1)]
    pub max: u32,
    /// Must be 0 (the default): a batch does not long-poll.
    #[serde(default, deserialize_with = "whole::u64")]
    #[schema(minimum = 0, maximum = 0, default = 0)]
    pub wait_ms: u64,
    /// Lease length (default: the queue's `lease_ms`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u64"
    )]
    #[schema(minimum = 100, maximum = 86400000)]
    pub lease_ms: Option<u64>,
}

/// `POST /v1/reports` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportsRequest {
    /// Outcomes, applied independently and in order (each commits or is
    /// refused on its own; they are written together).
    #[schema(max_items = 10000)]
    pub reports: Vec<ReportItem>,
    /// `true`: each accepted result carries the job's `state` after its
    /// report instead of the whole job (all a worker needs; the server then
    /// neither builds nor sends a job per report, nor the worker parses
    /// one). Default `false`: the whole `job`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub brief: bool,
}

/// Result of one item of `POST /v1/reports`: the job (or, with `brief`,
/// its state), or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportResult {
    /// The job after the report, when accepted (without `brief`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobView>,
    /// The job's state after the report, when accepted (with `brief`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// The leases the item's `claim_next` took, in `seq` order (possibly
    /// empty); absent without `claim_next` or when the report was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leases: Option<Vec<LeaseView>>,
}

/// `POST /v1/reports` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportsResponse {
    /// One result per report, in order.
    pub results: Vec<ReportResult>,
}

/// Retry delay policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffView {
    /// First retry delay.
    #[schema(maximum = 604800000)]
    #[serde(deserialize_with = "whole::u64")]
    pub initial_ms: u64,
    /// Longest delay (not below `initial_ms`).
    #[schema(maximum = 604800000)]
    #[serde(deserialize_with = "whole::u64")]
    pub max_ms: u64,
    /// Growth per failure.
    #[schema(minimum = 1, maximum = 100)]
    pub factor: f64,
}

/// `PUT /v1/queues/{queue}` body: fields left out keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfigRequest {
    /// Most jobs running at once (1–10,000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u32"
    )]
    #[schema(minimum = 1, maximum = 10000)]
    pub concurrency: Option<u32>,
    /// Default starts per job.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u32"
    )]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<u32>,
    /// Retry delays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffView>,
    /// Default lease length.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::opt_u64"
    )]
    #[schema(minimum = 100, maximum = 86400000)]
    pub lease_ms: Option<u64>,
    /// Pause (accept but start nothing) or resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// The server runs the queue's jobs: `{"type": "command", …}` or
    /// `{"type": "webhook", …}`; `null` removes the executor (pull workers).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub executor: Option<Value>,
}

/// A field that is present, even as `null` (`Some(Value::Null)`); absent is
/// `None` (with `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Jobs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CountsView {
    /// Waiting for `run_at`.
    pub scheduled: u64,
    /// Ready.
    pub queued: u64,
    /// Leased.
    pub running: u64,
    /// Done.
    pub succeeded: u64,
    /// Failed for good.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

/// A queue as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Name.
    pub name: String,
    /// Most jobs running at once.
    pub concurrency: u32,
    /// Default starts per job.
    pub max_attempts: u32,
    /// Retry delays.
    pub backoff: BackoffView,
    /// Default lease length.
    pub lease_ms: u64,
    /// Paused queues start nothing.
    pub paused: bool,
    /// Executor configuration.
    pub executor: Option<Value>,
    /// Jobs per state.
    pub counts: CountsView,
}

/// `GET /v1/queues` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueListResponse {
    /// Queues by name.
    pub queues: Vec<QueueView>,
}

/// `GET /healthz` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` or `unhealthy`.
    pub status: String,
    /// Why unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
