//! Conversions between domain values and wire types.

use chrono::{DateTime, SecondsFormat, Utc};
use orderly_core::{Job, Lease, Millis, QueueInfo, ValidationError};
use orderly_proto::{BackoffView, CountsView, JobView, LeaseView, QueueView};

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

/// A job for the wire.
pub fn job_view(j: Job) -> JobView {
    JobView {
        id: j.id,
        queue: j.queue,
        key: j.key,
        seq: j.seq,
        state: j.state.as_str().to_string(),
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
        executor: q.config.executor,
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
