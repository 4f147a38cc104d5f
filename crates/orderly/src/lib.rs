//! # orderly
//!
//! Orderly inside your own process: a durable background-job queue that
//! runs jobs **in the order they were accepted** (per queue, or per
//! ordering key), on an embedded SQLite store, with typed async handlers.
//! Every ordering and durability promise of the Orderly server holds here
//! exactly as over HTTP: handlers claim and report through the same store
//! operations (no HTTP in between), a job is durable once `enqueue`
//! returns, and the jobs a crash interrupted rerun in place on the next
//! open, before any later job.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), orderly::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! use orderly::{NewJob, Orderly};
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Email { to: String }
//!
//! let orderly = Orderly::open(dir.path()).await?;
//! orderly.handle("emails", 1, |job: orderly::JobCx<Email>| async move {
//!     Ok::<_, orderly::Fail>(format!("sent to {}", job.payload.to))
//! })?;
//! let job = orderly.enqueue("emails", NewJob::new(&serde_json::json!({"to": "a@example.com"}))?).await?;
//! let done = orderly.wait(&job.job.id, Duration::from_secs(10)).await?;
//! assert_eq!(done.result, Some(serde_json::json!("sent to a@example.com")));
//! orderly.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! - [`Orderly`] opens the store and runs everything: [`Orderly::handle`]
//!   registers a handler per queue, [`Orderly::enqueue`] /
//!   [`Orderly::enqueue_many`] add jobs ([`NewJob`]: id, key, delay…),
//!   [`Orderly::wait`] waits for one, [`Orderly::router`] is the HTTP API
//!   to mount in an axum application (`app.nest("/orderly", orderly.router())`),
//!   and [`Orderly::shutdown`] lets running handlers finish within a grace
//!   period.
//! - A handler gets a [`JobCx`]: the typed payload, the job's id, key,
//!   `seq` and attempt, a progress reporter and a cancellation signal. A
//!   payload that does not deserialize fails the job for good with an error
//!   that says so; `Err` fails the attempt (retried with the queue's
//!   backoff; [`Fail::fatal`] for never); a panic fails the attempt and the
//!   handler goes on with the next job.
//!
//! Queues configured with an executor (a command or a webhook per job,
//! through the mounted API or [`Orderly::configure`]) run here too.

mod embedded;
mod enqueue;
mod handler;

pub use embedded::{Options, Orderly};
pub use enqueue::NewJob;
pub use handler::{Fail, JobCx};
pub use orderly_core::{
    Backoff, Enqueued, Eta, Executor, Job, JobState, QueueInfo, QueuePatch, Store, StoreError,
    ValidationError, WaitingOn,
};
pub use orderly_server::error::ServiceError;
pub use orderly_sqlite::Durability;

/// What the embedded library's operations can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Open(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] orderly_core::StoreError),
    /// A request broke a rule (the message names the field).
    #[error(transparent)]
    Service(#[from] orderly_server::error::ServiceError),
    /// A value broke a rule.
    #[error(transparent)]
    Invalid(#[from] orderly_core::ValidationError),
    /// A payload could not be written as JSON.
    #[error("the payload cannot be written as JSON: {0}")]
    Payload(String),
}
