//! What runs a job: the [`Handler`] trait and what it is given.
//!
//! A handler sees a [`Job`] (a small neutral struct: no wire or store types)
//! and a [`JobContext`] with a cancellation signal and a progress reporter.
//! Its `Ok` is the job's result, its `Err` a [`Failure`] that follows the
//! queue's retry policy unless it says not to retry. The runner owns the
//! lease: a handler never heartbeats or reports.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// One job as a handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job's id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its ordering key, if any.
    pub key: Option<String>,
    /// Its place in the order of acceptance.
    pub seq: i64,
    /// This run's attempt number (1 on the first run).
    pub attempt: u32,
    /// The payload it was enqueued with.
    pub payload: Value,
    /// Its per-attempt time limit: the runner stops a run that takes longer
    /// ([`CancelReason::TimedOut`]) and reports it failed.
    pub timeout_ms: Option<u64>,
}

/// Why a running job's context was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// A cancel of the job was requested (seen on a heartbeat).
    Requested,
    /// The lease is gone (the job was handed to someone else): stop, nothing
    /// will be reported.
    LeaseLost,
    /// The job's `timeout_ms` passed: stop; the runner reports a failed
    /// attempt (retried while attempts remain).
    TimedOut,
    /// The worker is shutting down and its grace period is over: stop,
    /// nothing will be reported, the job runs again in its place.
    Shutdown,
}

/// What a running handler is given besides its job: a cancellation signal and
/// a progress reporter. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct JobContext {
    cancel: CancellationToken,
    reason: Arc<Mutex<Option<CancelReason>>>,
    progress: Arc<Mutex<Option<Value>>>,
}

impl JobContext {
    /// A fresh context, not cancelled, with no progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resolves once the job should stop (cancel requested or lease lost).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Whether the job should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Why the job should stop, once it should.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the job's progress; it is sent with the next heartbeat (only
    /// the latest value is kept).
    pub fn progress(&self, value: Value) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    }

    /// Cancels the job for `reason` (the first reason given sticks).
    pub fn cancel(&self, reason: CancelReason) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(reason);
        self.cancel.cancel();
    }

    /// Takes the progress recorded since the last call.
    pub fn take_progress(&self) -> Option<Value> {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// A failed run: the error to record and whether the queue's retry policy
/// applies (`retry: false` fails the job for good).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The error, as JSON (an object with a `message` by convention).
    pub error: Value,
    /// `true`: retry with backoff while attempts remain; `false`: never.
    pub retry: bool,
    /// Retry after this long instead of the queue's backoff (a webhook's
    /// `Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl Failure {
    /// A failure that follows the retry policy.
    pub fn retryable(error: Value) -> Self {
        Failure {
            error,
            retry: true,
            retry_after: None,
        }
    }

    /// A failure retried after `delay` (the attempt still counts).
    pub fn retry_after(error: Value, delay: std::time::Duration) -> Self {
        Failure {
            error,
            retry: true,
            retry_after: Some(delay),
        }
    }

    /// A failure that is not retried.
    pub fn fatal(error: Value) -> Self {
        Failure {
            error,
            retry: false,
            retry_after: None,
        }
    }

    /// A retryable failure `{"message": message}`.
    pub fn message(message: impl Into<String>) -> Self {
        Self::retryable(serde_json::json!({ "message": message.into() }))
    }
}

/// Runs jobs. One handler serves every slot of a runner, so it is shared.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Runs one job: `Ok` is its result, `Err` a failed attempt. It should
    /// return soon after `ctx` is cancelled. A panic counts as a retryable
    /// failure.
    async fn handle(&self, job: Job, ctx: JobContext) -> Result<Value, Failure>;
}
