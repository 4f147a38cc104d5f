//! Conversions between domain values and wire types: the one place the
//! HTTP layer maps requests to the service's domain types and answers back.

use chrono::{DateTime, SecondsFormat, Utc};
use orderly_core::{
    AttemptRecord, Backoff, Executor, Job, JobState, Lease, Millis, Outcome, QueueInfo, QueuePatch,
    StartRecord, StoreError, ValidationError, WaitingOn,
};
use orderly_proto::{
    AttemptOutcome, AttemptView, BackoffView, BatchClaimNext, ClaimRequest, CountsView,
    EnqueueRequest, EtaView, JobView, LeaseView, QueueConfigRequest, QueueView, ReportItem,
    ReportOutcome, StartView, WaitingOnView,
};

use crate::service;

/// Current time in milliseconds since the epoch.
pub fn now_millis() -> Millis {
    Utc::now().timestamp_millis()
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time given for `field`.
pub fn parse_time(field: &str, s: &str) -> Result<Millis, ValidationError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ValidationError::value(
                field,
                format!("is {s:?}, not an RFC 3339 time like 2026-01-31T12:00:00Z ({e})"),
            )
        })
}

/// A state for the wire.
pub fn state_view(s: JobState) -> orderly_proto::JobState {
    use orderly_proto::JobState as W;
    match s {
        JobState::Scheduled => W::Scheduled,
        JobState::Queued => W::Queued,
        JobState::Running => W::Running,
        JobState::Succeeded => W::Succeeded,
        JobState::Failed => W::Failed,
        JobState::Cancelled => W::Cancelled,
    }
}

/// A job for the wire.
pub fn job_view(j: Job) -> JobView {
    JobView {
        id: j.id,
        queue: j.queue,
        key: j.key,
        seq: j.seq,
        state: state_view(j.state),
        position: j.position,
        payload: j.payload,
        attempt: j.attempt,
        max_attempts: j.max_attempts,
        timeout_ms: j.timeout_ms,
        enqueued_at: rfc3339(j.enqueued_at),
        run_at: rfc3339(j.run_at),
        started_at: j.started_at.map(rfc3339),
        finished_at: j.finished_at.map(rfc3339),
        progress: j.progress,
        result: j.result,
        error: j.error,
        cancel_requested: j.cancel_requested,
        worker: j.worker,
        lease_expires_at: j.lease_expires_at.map(rfc3339),
        start_no: j.start_no,
        key_position: j.key_position,
        waiting_on: j.waiting_on.map(waiting_on_view),
        eta: j.eta.map(|e| EtaView {
            earliest: rfc3339(e.earliest),
            latest: rfc3339(e.latest),
        }),
    }
}

/// Why a job waits, for the wire.
pub fn waiting_on_view(w: WaitingOn) -> WaitingOnView {
    match w {
        WaitingOn::Scheduled { until } => WaitingOnView::Scheduled {
            until: rfc3339(until),
        },
        WaitingOn::RetryBackoff { until } => WaitingOnView::RetryBackoff {
            until: rfc3339(until),
        },
        WaitingOn::Key { job } => WaitingOnView::Key { job },
        WaitingOn::Concurrency { limit } => WaitingOnView::Concurrency { limit },
        WaitingOn::Line => WaitingOnView::Line,
        WaitingOn::Paused => WaitingOnView::Paused,
        WaitingOn::NoWorker => WaitingOnView::NoWorker,
    }
}

/// One attempt of a job for the wire; an outcome the store should never
/// have recorded is corrupt data, never shown as a guess.
pub fn attempt_view(a: AttemptRecord) -> Result<AttemptView, StoreError> {
    let outcome = match a.outcome.as_deref() {
        None => None,
        Some("succeeded") => Some(AttemptOutcome::Succeeded),
        Some("failed") => Some(AttemptOutcome::Failed),
        Some("cancelled") => Some(AttemptOutcome::Cancelled),
        Some(other) => {
            return Err(StoreError::Corrupt(format!(
                "start {} records an unknown outcome {other:?}",
                a.start_no
            )))
        }
    };
    Ok(AttemptView {
        attempt: a.attempt,
        start_no: a.start_no,
        worker: a.worker,
        started_at: rfc3339(a.started_at),
        ended_at: a.ended_at.map(rfc3339),
        outcome,
        error: a.error,
    })
}

/// One start of the start log for the wire.
pub fn start_view(s: StartRecord) -> StartView {
    StartView {
        start_no: s.start_no,
        seq: s.seq,
        job_id: s.job_id,
        key: s.key,
        attempt: s.attempt,
        worker: s.worker,
        started_at: rfc3339(s.started_at),
    }
}

/// A lease for the wire.
pub fn lease_view(l: Lease) -> LeaseView {
    LeaseView {
        expires_at: rfc3339(l.expires_at),
        lease_ms: l.lease_ms,
        token: l.token,
        job: job_view(l.job),
    }
}

/// A queue for the wire.
pub fn queue_view(q: QueueInfo) -> QueueView {
    let c = q.counts;
    QueueView {
        name: q.name,
        concurrency: q.config.concurrency,
        max_attempts: q.config.max_attempts,
        backoff: BackoffView {
            initial_ms: q.config.backoff.initial_ms,
            max_ms: q.config.backoff.max_ms,
            factor: q.config.backoff.factor,
        },
        lease_ms: q.config.lease_ms,
        paused: q.config.paused,
        // Everything but a webhook's secret.
        executor: q.config.executor.as_ref().map(Executor::public_view),
        counts: CountsView {
            scheduled: c.scheduled,
            queued: c.queued,
            running: c.running,
            succeeded: c.succeeded,
            failed: c.failed,
            cancelled: c.cancelled,
        },
    }
}

/// An enqueue request (one job, or item `index` of a batch) as the service takes it.
pub fn job_request(
    req: EnqueueRequest,
    index: Option<usize>,
) -> Result<service::JobRequest, ValidationError> {
    let field = match index {
        Some(i) => format!("jobs[{i}].run_at"),
        None => "run_at".to_string(),
    };
    let run_at = req
        .run_at
        .as_deref()
        .map(|t| parse_time(&field, t))
        .transpose()?;
    Ok(service::JobRequest {
        id: req.id,
        key: req.key,
        payload: req.payload,
        run_at,
        delay_ms: req.delay_ms,
        max_attempts: req.max_attempts,
        timeout_ms: req.timeout_ms,
    })
}

/// A claim as the service takes it.
pub fn claim_request(req: ClaimRequest) -> service::ClaimRequest {
    service::ClaimRequest {
        worker: req.worker,
        max: req.max,
        wait_ms: req.wait_ms,
        lease_ms: req.lease_ms,
    }
}

/// A report item's `claim_next` as the service takes it.
pub fn batch_claim_request(req: BatchClaimNext) -> service::ClaimRequest {
    service::ClaimRequest {
        worker: req.worker,
        max: req.max,
        wait_ms: req.wait_ms,
        lease_ms: req.lease_ms,
    }
}

/// Item `index` of `POST /v1/reports`, or why it cannot be read.
pub fn report_request(
    index: usize,
    item: ReportItem,
) -> Result<service::ReportRequest, ValidationError> {
    let outcome = match item.outcome {
        ReportOutcome::Succeeded => Outcome::Succeeded {
            result: item.result,
        },
        ReportOutcome::Failed => Outcome::Failed {
            error: item.error.unwrap_or(serde_json::Value::Null),
            retry: item.retry.unwrap_or(true),
            retry_after_ms: item.retry_after_ms,
        },
        ReportOutcome::Unknown => {
            return Err(ValidationError::value(
                &format!("reports[{index}].outcome"),
                "is not an outcome: use \"succeeded\" or \"failed\"",
            ))
        }
    };
    Ok(service::ReportRequest {
        id: item.id,
        token: item.token,
        outcome,
        claim_next: item.claim_next.map(batch_claim_request),
    })
}

/// A `state` filter of a listing.
pub fn state_filter(state: Option<&str>) -> Result<Option<JobState>, ValidationError> {
    match state {
        None | Some("") => Ok(None),
        Some(s) => JobState::parse(s).map(Some).ok_or_else(|| {
            ValidationError::value(
                "state",
                format!("is {s:?}: use scheduled, queued, running, succeeded, failed or cancelled"),
            )
        }),
    }
}

/// A queue configuration change; `executor: null` clears the executor.
pub fn queue_patch(req: QueueConfigRequest) -> Result<QueuePatch, ValidationError> {
    let executor = match req.executor {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(e) => Some(Some(Executor::from_json(&e)?)),
    };
    Ok(QueuePatch {
        concurrency: req.concurrency,
        max_attempts: req.max_attempts,
        backoff: req.backoff.map(|b| Backoff {
            initial_ms: b.initial_ms,
            max_ms: b.max_ms,
            factor: b.factor,
        }),
        lease_ms: req.lease_ms,
        paused: req.paused,
        executor,
    })
}
