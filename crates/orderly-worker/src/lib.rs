//! # orderly-worker
//!
//! Orderly's worker runtime: the one place that knows how to take jobs from
//! a server, run them, keep their leases alive and report them. `orderly
//! worker` and `orderly bench` run on it; the server's command executor and
//! the embedded library are meant to reuse it through an in-process
//! [`JobSource`].
//!
//! Layout:
//! - [`handler`]: what runs a job — the [`Handler`] trait, the neutral
//!   [`Job`], the [`JobContext`] (cancellation signal, progress reporter) and
//!   the [`Failure`] a handler returns. No HTTP types.
//! - [`source`]: where jobs come from — the [`JobSource`] trait (claim with a
//!   long poll, heartbeat, report with `claim_next`, many reports at once)
//!   and its types.
//! - [`http`]: [`HttpSource`], a [`JobSource`] over `orderly_client::Client`.
//! - [`runner`]: [`Runner`], which drives a handler against a source with N
//!   slots: heartbeats every third of the lease's `lease_ms` (the server's
//!   figure, never a local clock reading), cancel on request, drop on lease
//!   loss, report with `claim_next` (the slots' reports coalesced into
//!   batches while one is in flight), resend on transient errors, graceful
//!   stop.
//! - [`command`]: [`CommandHandler`], which runs a child process per job in
//!   its own process group.
//! - [`webhook`]: [`WebhookHandler`], which POSTs each job to a URL (signed
//!   with a secret if given) and maps the answer to a result or a failure.

pub mod command;
pub mod handler;
pub mod http;
mod reporter;
pub mod runner;
pub mod source;
pub mod webhook;

pub use command::CommandHandler;
pub use handler::{CancelReason, Failure, Handler, Job, JobContext};
pub use http::HttpSource;
pub use runner::{heartbeat_interval, Runner, RunnerConfig, RunnerError, Summary};
pub use source::{
    report_each, Beat, ClaimParams, JobSource, Lease, Outcome, Report, ReportAnswer, SourceError,
};
pub use webhook::{WebhookError, WebhookHandler};
