//! [`HttpSource`]: the worker protocol of contract section 5 over
//! `orderly_client::Client`.
//!
//! Status codes are mapped to [`SourceError`] here and nowhere else: `404`
//! and `409` on a heartbeat or report mean the lease is lost, any other 4xx
//! is final, a 5xx or a transport error may be retried. An item of
//! `POST /v1/reports` is mapped the same way from its error code.
//!
//! [`JobSource::report_many`] sends one `POST /v1/reports` (a single report
//! goes as `complete`/`fail`, exactly as [`JobSource::report`]). A server
//! that does not know the batch call or its `claim_next` refuses the whole
//! request (`404`, or `400 invalid_request`) before applying anything: the
//! source then reports one call per job from then on (a request already in
//! flight when the first refusal came back is refused too, and its reports
//! go one by one the same way).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderly_client::proto::{
    BatchClaimNext, ClaimRequest, CompleteRequest, ErrorCode, ErrorDetail, FailRequest,
    HeartbeatRequest, JobView, LeaseView, ReportItem, ReportOutcome, ReportsRequest,
};
use orderly_client::{Client, ClientError};
use serde_json::Value;

use crate::handler::Job;
use crate::source::{
    report_each, Beat, ClaimParams, JobSource, Lease, Outcome, Report, ReportAnswer, SourceError,
};

/// A [`JobSource`] that talks to an Orderly server over HTTP.
#[derive(Debug, Clone)]
pub struct HttpSource {
    client: Client,
    /// Set once the server refused a batch call: report one by one.
    no_batch: Arc<AtomicBool>,
}

impl HttpSource {
    /// A source over `client`.
    pub fn new(client: Client) -> Self {
        HttpSource {
            client,
            no_batch: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The client it uses.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The neutral job of a wire job.
fn job_of(v: JobView) -> Job {
    Job {
        id: v.id,
        queue: v.queue,
        key: v.key,
        seq: v.seq,
        attempt: v.attempt,
        payload: v.payload,
        timeout_ms: v.timeout_ms,
    }
}

/// The lease of a wire lease (`lease_ms` is the server's; `expires_at` is
/// deliberately not used: it is a reading of the server's clock).
fn lease_of(v: LeaseView) -> Lease {
    Lease {
        job: job_of(v.job),
        token: v.token,
        lease_ms: v.lease_ms,
    }
}

fn claim_request(p: &ClaimParams) -> ClaimRequest {
    ClaimRequest {
        worker: p.worker.clone(),
        max: p.max,
        wait_ms: u64::try_from(p.wait.as_millis()).unwrap_or(u64::MAX),
        lease_ms: p.lease_ms,
    }
}

/// Maps a client error; `lease_codes` says whether 404/409 mean a lost lease.
fn map_error(e: ClientError, lease_codes: bool) -> SourceError {
    match e.status() {
        Some(404 | 409) if lease_codes => SourceError::LeaseLost(e.to_string()),
        Some(s) if (400..500).contains(&s) => SourceError::Refused(e.to_string()),
        _ => SourceError::Unavailable(e.to_string()),
    }
}

/// Maps the error of one item of `POST /v1/reports`, as [`map_error`] maps a
/// status: the codes of `404`/`409` on a report mean the lease is lost, the
/// server's own failures may be retried, any other refusal is final.
fn map_item_error(e: &ErrorDetail) -> SourceError {
    let text = format!("{}: {}", e.code, e.message);
    match e.code {
        ErrorCode::JobNotFound
        | ErrorCode::QueueNotFound
        | ErrorCode::StaleLease
        | ErrorCode::InvalidState
        | ErrorCode::IdConflict => SourceError::LeaseLost(text),
        ErrorCode::StorageFull
        | ErrorCode::StorageFailed
        | ErrorCode::StorageUnavailable
        | ErrorCode::CorruptData
        | ErrorCode::ShuttingDown
        | ErrorCode::Internal
        | ErrorCode::Unknown => SourceError::Unavailable(text),
        _ => SourceError::Refused(text),
    }
}

/// A report as an item of `POST /v1/reports`.
fn report_item(r: &Report) -> ReportItem {
    let (outcome, result, error, retry, retry_after_ms) = match &r.outcome {
        Outcome::Succeeded(v) => (ReportOutcome::Succeeded, Some(v.clone()), None, None, None),
        Outcome::Failed(f) => (
            ReportOutcome::Failed,
            None,
            Some(f.error.clone()),
            // `None` lets the queue's policy decide.
            (!f.retry).then_some(false),
            f.retry_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ),
    };
    ReportItem {
        id: r.lease.job.id.clone(),
        token: r.lease.token.clone(),
        outcome,
        result,
        error,
        retry,
        retry_after_ms,
        claim_next: r.claim_next.as_ref().map(|p| BatchClaimNext {
            worker: p.worker.clone(),
            max: p.max,
            wait_ms: 0,
            lease_ms: p.lease_ms,
        }),
    }
}

/// Time limit of a whole call that may wait `wait` on the server: the
/// client's own limits apply first; this only guards against a hung socket.
fn limit(wait: Duration) -> Duration {
    orderly_client::REQUEST_TIMEOUT + wait + Duration::from_secs(5)
}

#[async_trait::async_trait]
impl JobSource for HttpSource {
    async fn claim(&self, queue: &str, params: &ClaimParams) -> Result<Vec<Lease>, SourceError> {
        let req = claim_request(params);
        match tokio::time::timeout(limit(params.wait), self.client.claim(queue, &req)).await {
            Ok(Ok(r)) => Ok(r.leases.into_iter().map(lease_of).collect()),
            Ok(Err(e)) => Err(map_error(e, false)),
            Err(_) => Err(SourceError::Unavailable("claim timed out".into())),
        }
    }

    async fn heartbeat(&self, lease: &Lease, progress: Option<Value>) -> Result<Beat, SourceError> {
        let req = HeartbeatRequest {
            token: lease.token.clone(),
            progress,
        };
        match tokio::time::timeout(
            limit(Duration::ZERO),
            self.client.heartbeat(&lease.job.id, &req),
        )
        .await
        {
            Ok(Ok(hb)) => Ok(Beat {
                lease_ms: hb.lease_ms,
                cancel_requested: hb.cancel_requested,
            }),
            Ok(Err(e)) => Err(map_error(e, true)),
            Err(_) => Err(SourceError::Unavailable("heartbeat timed out".into())),
        }
    }

    async fn report(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        claim_next: Option<&ClaimParams>,
    ) -> Result<Vec<Lease>, SourceError> {
        let next = claim_next.map(claim_request);
        let wait = claim_next.map_or(Duration::ZERO, |c| c.wait);
        let id = &lease.job.id;
        let sent = match outcome {
            Outcome::Succeeded(result) => {
                let req = CompleteRequest {
                    token: lease.token.clone(),
                    result: Some(result.clone()),
                    claim_next: next,
                };
                tokio::time::timeout(limit(wait), self.client.complete(id, &req)).await
            }
            Outcome::Failed(f) => {
                let req = FailRequest {
                    token: lease.token.clone(),
                    error: f.error.clone(),
                    // `None` lets the queue's policy decide.
                    retry: (!f.retry).then_some(false),
                    retry_after_ms: f
                        .retry_after
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    claim_next: next,
                };
                tokio::time::timeout(limit(wait), self.client.fail(id, &req)).await
            }
        };
        match sent {
            Ok(Ok(r)) => Ok(r
                .leases
                .unwrap_or_default()
                .into_iter()
                .map(lease_of)
                .collect()),
            Ok(Err(e)) => Err(map_error(e, true)),
            Err(_) => Err(SourceError::Unavailable("report timed out".into())),
        }
    }

    async fn report_many(&self, reports: &[Report]) -> Result<Vec<ReportAnswer>, SourceError> {
        let waits = reports
            .iter()
            .any(|r| r.claim_next.as_ref().is_some_and(|c| !c.wait.is_zero()));
        if reports.len() <= 1 || waits || self.no_batch.load(Ordering::Relaxed) {
            return Ok(report_each(self, reports).await);
        }
        let req = ReportsRequest {
            reports: reports.iter().map(report_item).collect(),
            // The runner needs to know only that each report took.
            brief: true,
        };
        let answer = match tokio::time::timeout(limit(Duration::ZERO), self.client.reports(&req))
            .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.status() == Some(404) || e.code() == Some("invalid_request") => {
                // Refused before anything was applied: a server without the
                // batch call (404) or without its `claim_next` (400).
                tracing::warn!("the server refused a batch of reports ({e}); reporting one by one");
                self.no_batch.store(true, Ordering::Relaxed);
                return Ok(report_each(self, reports).await);
            }
            Ok(Err(e)) => return Err(map_error(e, false)),
            Err(_) => return Err(SourceError::Unavailable("reports timed out".into())),
        };
        if answer.results.len() != reports.len() {
            return Err(SourceError::Unavailable(format!(
                "{} results for {} reports",
                answer.results.len(),
                reports.len()
            )));
        }
        Ok(answer
            .results
            .into_iter()
            .zip(reports)
            .map(
                |(r, sent)| match (r.error, r.job.is_some() || r.state.is_some()) {
                    (Some(e), _) => Err(map_item_error(&e)),
                    (None, true) => Ok(r
                        .leases
                        .filter(|_| sent.claim_next.is_some())
                        .unwrap_or_default()
                        .into_iter()
                        .map(lease_of)
                        .collect()),
                    (None, false) => Err(SourceError::Unavailable(
                        "a result with neither job, state nor error".into(),
                    )),
                },
            )
            .collect())
    }
}
