//! Typed handlers: an `async fn` of a serde payload, run by the worker
//! runtime in-process.

use std::future::Future;
use std::marker::PhantomData;

use orderly_worker::{Failure, Handler, Job as RunJob, JobContext};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// What a handler is given: the job's payload (typed), who it is, a
/// progress reporter and a cancellation signal.
pub struct JobCx<T> {
    /// The payload, deserialized.
    pub payload: T,
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
    ctx: JobContext,
}

impl<T> JobCx<T> {
    /// Records progress (any JSON; `{"done": n, "total": m}` by convention);
    /// it is stored with the next heartbeat.
    pub fn progress(&self, value: impl Serialize) {
        if let Ok(v) = serde_json::to_value(value) {
            self.ctx.progress(v);
        }
    }

    /// Resolves once the job should stop: a cancel was requested, its
    /// timeout passed, or the runtime is shutting down.
    pub async fn cancelled(&self) {
        self.ctx.cancelled().await;
    }

    /// Whether the job should stop.
    pub fn is_cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }
}

/// A failed run as a handler returns it: any error, shown by its `Display`.
/// `Fail::fatal` fails the job without retry; `Fail::retry_after` picks the
/// delay before the next attempt.
#[derive(Debug)]
pub struct Fail {
    message: String,
    retry: bool,
    retry_after: Option<std::time::Duration>,
}

impl Fail {
    /// A failure that is not retried.
    pub fn fatal(message: impl std::fmt::Display) -> Self {
        Fail {
            message: message.to_string(),
            retry: false,
            retry_after: None,
        }
    }

    /// A failure retried after `delay` (the attempt counts).
    pub fn retry_after(message: impl std::fmt::Display, delay: std::time::Duration) -> Self {
        Fail {
            message: message.to_string(),
            retry: true,
            retry_after: Some(delay),
        }
    }
}

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail {
            message: e.to_string(),
            retry: true,
            retry_after: None,
        }
    }
}

/// Adapts an `async fn(JobCx<T>) -> Result<R, E>` to the runtime's
/// [`Handler`]: a payload that does not deserialize fails the job for good
/// (retrying cannot fix it), `Ok` is the result as JSON, `Err` a failure
/// that follows the queue's retry policy.
pub(crate) struct Typed<T, R, E, F> {
    f: F,
    _types: PhantomData<fn(T) -> (R, E)>,
}

impl<T, R, E, F> Typed<T, R, E, F> {
    pub(crate) fn new(f: F) -> Self {
        Typed {
            f,
            _types: PhantomData,
        }
    }
}

#[async_trait::async_trait]
impl<T, R, E, F, Fut> Handler for Typed<T, R, E, F>
where
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    E: Into<Fail> + Send + 'static,
    F: Fn(JobCx<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
{
    async fn handle(&self, job: RunJob, ctx: JobContext) -> Result<Value, Failure> {
        let payload: T = serde_json::from_value(job.payload).map_err(|e| {
            Failure::fatal(json!({
                "message": format!(
                    "the payload does not match the handler's type {}: {e}",
                    std::any::type_name::<T>()
                ),
                "reason": "bad_payload",
            }))
        })?;
        let cx = JobCx {
            payload,
            id: job.id,
            queue: job.queue,
            key: job.key,
            seq: job.seq,
            attempt: job.attempt,
            ctx,
        };
        match (self.f)(cx).await {
            Ok(r) => serde_json::to_value(r).map_err(|e| {
                Failure::fatal(json!({
                    "message": format!("the handler's result cannot be stored as JSON: {e}")
                }))
            }),
            Err(e) => {
                let f: Fail = e.into();
                Err(Failure {
                    error: json!({ "message": f.message }),
                    retry: f.retry,
                    retry_after: f.retry_after,
                })
            }
        }
    }
}
