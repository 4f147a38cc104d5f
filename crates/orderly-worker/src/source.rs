//! Where jobs come from: the [`JobSource`] trait.
//!
//! A source claims leases (long-polling when nothing is eligible), renews
//! them, and takes reports, optionally claiming the next leases in the same
//! round trip. [`crate::HttpSource`] speaks the HTTP worker protocol; an
//! in-process source (the server's service layer, the embedded library) can
//! implement the same trait, so nothing here names HTTP.
//!
//! [`JobSource::report_many`] takes many reports at once (the runner's
//! coalescing reporter hands it every outcome that finished while the
//! previous request was in flight). Its answer is one result per report, in
//! order, or one error for the whole request (nothing of it may have been
//! applied, or all of it: sending it again is safe, a report is idempotent).
//! Its default calls [`JobSource::report`] for each report, concurrently
//! (as separate slots would), so a source without a batch call keeps
//! working unchanged.

use std::time::Duration;

use serde_json::Value;

use crate::handler::{Failure, Job};

/// A claim: who asks, how many, how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimParams {
    /// The worker's name (recorded on the job and in the start log).
    pub worker: String,
    /// Most leases wanted.
    pub max: u32,
    /// How long to wait when nothing is eligible (zero: answer at once).
    pub wait: Duration,
    /// Lease length to ask for (`None`: the queue's).
    pub lease_ms: Option<u64>,
}

/// A job handed to this worker, fenced by its token.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The job.
    pub job: Job,
    /// The fencing token every heartbeat and report carries.
    pub token: String,
    /// The lease length the server granted, in milliseconds.
    pub lease_ms: u64,
}

/// A renewed lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// The lease length the server renewed it for, in milliseconds.
    pub lease_ms: u64,
    /// Whether a cancel of the job was requested.
    pub cancel_requested: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Succeeded with this result.
    Succeeded(Value),
    /// Failed.
    Failed(Failure),
}

/// What a source call can fail with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    /// The lease is not this worker's any more (the job was handed out again,
    /// finished or deleted): drop the job, report nothing.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// The source refused the request for good (bad input, no such queue,
    /// unauthorized): sending it again will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// The request may not have arrived, or the source could not take it now
    /// (connection error, restart, overload): it may be sent again.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// One report of [`JobSource::report_many`]: how `lease`'s run ended, and
/// the claim to make with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The lease the run held.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
    /// Claim the next leases of the job's queue with it (its `wait` should
    /// be zero: a batch answers at once).
    pub claim_next: Option<ClaimParams>,
}

/// One report's answer in [`JobSource::report_many`]: the leases its
/// `claim_next` brought (empty without one), or why it was not taken.
pub type ReportAnswer = Result<Vec<Lease>, SourceError>;

/// [`JobSource::report_many`] done with [`JobSource::report`], one call per
/// report, all issued at once; answers in order.
pub async fn report_each<S: JobSource + ?Sized>(
    source: &S,
    reports: &[Report],
) -> Vec<ReportAnswer> {
    futures::future::join_all(
        reports
            .iter()
            .map(|r| source.report(&r.lease, &r.outcome, r.claim_next.as_ref())),
    )
    .await
}

/// A place that hands out jobs under leases.
#[async_trait::async_trait]
pub trait JobSource: Send + Sync + 'static {
    /// Claims up to `params.max` leases of `queue` in `seq` order, waiting up
    /// to `params.wait` when none is eligible; may return none.
    async fn claim(&self, queue: &str, params: &ClaimParams) -> Result<Vec<Lease>, SourceError>;

    /// Renews `lease`, sending the latest progress if any.
    async fn heartbeat(&self, lease: &Lease, progress: Option<Value>) -> Result<Beat, SourceError>;

    /// Reports how `lease`'s run ended; with `claim_next`, also claims the
    /// next leases in the same round trip and returns them.
    async fn report(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        claim_next: Option<&ClaimParams>,
    ) -> Result<Vec<Lease>, SourceError>;

    /// Reports many runs at once; one answer per report, in order, or an
    /// error of the whole request (`Unavailable`: it may not have arrived,
    /// send it again; otherwise it was refused as a whole). The default
    /// sends each with [`Self::report`] ([`report_each`]).
    async fn report_many(&self, reports: &[Report]) -> Result<Vec<ReportAnswer>, SourceError> {
        Ok(report_each(self, reports).await)
    }
}
