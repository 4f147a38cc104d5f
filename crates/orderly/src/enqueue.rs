//! [`NewJob`]: a job to enqueue, built from a typed payload.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orderly_server::service::JobRequest;
use serde::Serialize;
use serde_json::Value;

use crate::Error;

/// A job to enqueue: a payload and what else describes it.
///
/// ```
/// use std::time::Duration;
/// let job = orderly::NewJob::new(&serde_json::json!({"to": "a@example.com"}))
///     .unwrap()
///     .id("welcome-42")          // idempotent: enqueuing it again returns the same job
///     .key("account-42")         // jobs of one key run one at a time, in order
///     .delay(Duration::from_secs(10));
/// # let _ = job;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    payload: Value,
    id: Option<String>,
    key: Option<String>,
    delay: Option<Duration>,
    run_at: Option<SystemTime>,
    max_attempts: Option<u32>,
    timeout: Option<Duration>,
}

impl NewJob {
    /// A job with `payload` (anything serde can write as JSON).
    pub fn new(payload: &impl Serialize) -> Result<NewJob, Error> {
        let payload = serde_json::to_value(payload).map_err(|e| Error::Payload(e.to_string()))?;
        Ok(NewJob {
            payload,
            id: None,
            key: None,
            delay: None,
            run_at: None,
            max_attempts: None,
            timeout: None,
        })
    }

    /// Its id: enqueuing the same id again with the same content returns the
    /// existing job (with anything different, a conflict).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Its ordering key: jobs of one key run one at a time, in `seq` order.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Not before this long from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Not before this time.
    pub fn run_at(mut self, at: SystemTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Starts allowed (overrides the queue's).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Per-attempt time limit: a run that takes longer is stopped and fails.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub(crate) fn into_request(self) -> Result<JobRequest, Error> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let run_at = match self.run_at {
            Some(t) => Some(
                t.duration_since(UNIX_EPOCH)
                    .map_err(|_| {
                        Error::Invalid(orderly_core::ValidationError::value(
                            "run_at",
                            "is before 1970",
                        ))
                    })
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))?,
            ),
            None => None,
        };
        Ok(JobRequest {
            id: self.id,
            key: self.key,
            payload: self.payload,
            run_at,
            delay_ms: self.delay.map(ms),
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout.map(ms),
        })
    }
}
