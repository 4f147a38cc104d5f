//! [`Runner`]: drives a [`Handler`] against a [`JobSource`] with N slots.
//!
//! Each slot claims one job (long poll), runs the handler in its own task,
//! heartbeats every third of the lease's `lease_ms` while it runs, and
//! reports the outcome, claiming its next job in the same round trip.
//!
//! With several slots (and [`RunnerConfig::batch_reports`], the default),
//! the slots do not send their reports themselves: they hand them, each
//! with its `claim_next` under the slot's own worker name `name/i`, to one
//! coalescing reporter (`crate::reporter`) and await their own answer. The
//! reporter sends at once while fewer than
//! [`RunnerConfig::reports_in_flight`] requests are out; reports that
//! finish meanwhile go together in the next one
//! ([`JobSource::report_many`]: one `POST /v1/reports` over HTTP, committed
//! together by the server). No timer: a lone report is sent as soon as it
//! is handed over. One slot alone sends its own reports, as
//! `complete`/`fail` with `claim_next`.
//!
//! Invariants:
//! - Heartbeat pacing comes only from the `lease_ms` the source granted (at
//!   claim time, then on every heartbeat), never from `expires_at` read
//!   against the local clock: a worker whose clock differs from the server's
//!   must still renew in time ([`heartbeat_interval`]).
//! - A lease found lost (the job was handed to someone else) cancels the
//!   handler and is dropped without a report; a cancel request cancels the
//!   handler and its failure is reported without retry.
//! - A report that may not have arrived is sent again with backoff; one the
//!   source refused is final. In a batch this holds per report: a report
//!   refused for good (or whose lease is lost) is final for that report
//!   only, a transport error resends the whole remaining batch, and a
//!   report is given up after `report_tries` sends either way.
//! - A slot awaits its own report's answer before it runs its next job, so
//!   a serial queue's jobs start in order however the reports are batched:
//!   a job's successor is claimed (by its `claim_next` or a fresh claim)
//!   only once the server has the report.
//! - With `max_jobs`, a slot reserves its share before it claims, so the
//!   runner never takes more jobs than it may run.
//! - The stop token stops claiming; jobs in hand run to the end and are
//!   reported. The abandon token (a grace period that ran out) also stops
//!   the jobs in hand ([`CancelReason::Shutdown`]) and reports nothing, so
//!   they run again in their place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handler::{CancelReason, Failure, Handler, JobContext};
use crate::reporter::{Reporter, Resend};
use crate::source::{ClaimParams, JobSource, Lease, Outcome, Report, SourceError};

/// Lease length assumed when a source does not say (`lease_ms` 0: an older
/// server): the contract's default lease.
pub const DEFAULT_LEASE_MS: u64 = 30_000;
/// Shortest pause between two heartbeats.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(50);
/// How long a handler may take to stop after its lease was lost before its
/// task is aborted.
pub const LOST_LEASE_GRACE: Duration = Duration::from_secs(5);

/// How often to heartbeat a lease of `lease_ms`: every third of it, so two
/// heartbeats in a row may be lost before it expires.
pub fn heartbeat_interval(lease_ms: u64) -> Duration {
    Duration::from_millis(lease_ms / 3).max(MIN_HEARTBEAT)
}

/// How a [`Runner`] works.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Queue to work on.
    pub queue: String,
    /// Worker name; with several slots, slot `i` is `name/i`.
    pub worker: String,
    /// Jobs run at once (at least 1).
    pub slots: u32,
    /// Lease length to ask for (`None`: the queue's).
    pub lease_ms: Option<u64>,
    /// Long poll of a fresh claim.
    pub claim_wait: Duration,
    /// Stop after this many jobs (`None`: run until stopped).
    pub max_jobs: Option<u64>,
    /// Times a report is sent before it is given up (the lease then expires
    /// and the job runs again).
    pub report_tries: u32,
    /// First pause before a claim or report is sent again.
    pub retry_initial: Duration,
    /// Longest pause before a claim or report is sent again.
    pub retry_max: Duration,
    /// With several slots, coalesce their reports through one reporter
    /// (see the module docs). `false`: each slot sends its own.
    pub batch_reports: bool,
    /// With batched reports, how many requests of reports may be in flight
    /// at once (at least 1; see `crate::reporter`).
    pub reports_in_flight: usize,
}

impl RunnerConfig {
    /// One slot on `queue` as `worker`, 25 s long polls, no job limit, six
    /// report tries with backoff from 200 ms to 5 s, reports batched with
    /// up to two requests in flight.
    pub fn new(queue: impl Into<String>, worker: impl Into<String>) -> Self {
        RunnerConfig {
            queue: queue.into(),
            worker: worker.into(),
            slots: 1,
            lease_ms: None,
            claim_wait: Duration::from_secs(25),
            max_jobs: None,
            report_tries: 6,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            batch_reports: true,
            reports_in_flight: 2,
        }
    }
}

/// What a run of the runner did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Jobs whose handler ran (reported or not).
    pub handled: u64,
}

/// Why a runner stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The configuration cannot work.
    #[error("invalid runner configuration: {0}")]
    Config(String),
    /// The source refused a claim for good (bad queue name, unauthorized…).
    #[error("claim refused: {0}")]
    ClaimRefused(SourceError),
    /// A slot's task failed.
    #[error("a worker slot failed: {0}")]
    Slot(String),
}

/// Drives a handler against a source. See the module docs.
pub struct Runner<S, H> {
    shared: Arc<Shared<S, H>>,
}

/// Counts jobs against `max_jobs`.
struct Quota {
    max: Option<u64>,
    /// Jobs claimed or being claimed.
    taken: AtomicU64,
    /// Jobs whose handler returned.
    handled: AtomicU64,
}

impl Quota {
    /// Reserves one job; `false` once the limit is taken.
    fn reserve(&self) -> bool {
        let Some(max) = self.max else {
            self.taken.fetch_add(1, Ordering::SeqCst);
            return true;
        };
        self.taken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                (t < max).then_some(t + 1)
            })
            .is_ok()
    }

    /// Gives back a reservation that brought no job.
    fn release(&self) {
        self.taken.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Shared<S, H> {
    source: Arc<S>,
    handler: Arc<H>,
    config: RunnerConfig,
    stop: CancellationToken,
    /// Fired when running jobs must be given up (stop fires with it).
    abandon: CancellationToken,
    quota: Quota,
}

impl<S: JobSource, H: Handler> Runner<S, H> {
    /// A runner of `handler` over `source`.
    pub fn new(source: Arc<S>, handler: Arc<H>, config: RunnerConfig) -> Self {
        let quota = Quota {
            max: config.max_jobs,
            taken: AtomicU64::new(0),
            handled: AtomicU64::new(0),
        };
        let abandon = CancellationToken::new();
        Runner {
            shared: Arc::new(Shared {
                source,
                handler,
                config,
                stop: abandon.child_token(),
                abandon,
                quota,
            }),
        }
    }

    /// The token that stops the runner gracefully: no more claims, the jobs
    /// in hand finish and are reported.
    pub fn stop_token(&self) -> CancellationToken {
        self.shared.stop.clone()
    }

    /// The token that gives up the jobs in hand: their handlers are
    /// cancelled with [`CancelReason::Shutdown`] and nothing is reported
    /// (their leases stay, for whoever reruns them). It also stops claiming.
    pub fn abandon_token(&self) -> CancellationToken {
        self.shared.abandon.clone()
    }

    /// Runs until stopped, `max_jobs` is reached, or a claim is refused.
    pub async fn run(self) -> Result<Summary, RunnerError> {
        let c = &self.shared.config;
        if c.slots == 0 {
            return Err(RunnerError::Config("slots must be at least 1".into()));
        }
        if c.report_tries == 0 {
            return Err(RunnerError::Config(
                "report_tries must be at least 1".into(),
            ));
        }
        // Ends once every slot dropped its handle and its reports are answered.
        let (reporter, reporter_task) = if c.slots > 1 && c.batch_reports {
            let resend = Resend {
                tries: c.report_tries,
                initial: c.retry_initial,
                max: c.retry_max,
            };
            let (r, task) =
                Reporter::spawn(self.shared.source.clone(), resend, c.reports_in_flight);
            (Some(r), Some(task))
        } else {
            (None, None)
        };
        let mut slots = tokio::task::JoinSet::new();
        for i in 0..c.slots {
            let worker = if c.slots > 1 {
                format!("{}/{i}", c.worker)
            } else {
                c.worker.clone()
            };
            slots.spawn(self.shared.clone().slot(worker, reporter.clone()));
        }
        drop(reporter);
        let mut first_error = None;
        while let Some(r) = slots.join_next().await {
            let e = match r {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) => RunnerError::Slot(e.to_string()),
            };
            self.shared.stop.cancel();
            first_error.get_or_insert(e);
        }
        if let Some(task) = reporter_task {
            if let Err(e) = task.await {
                first_error.get_or_insert(RunnerError::Slot(format!("the reporter failed: {e}")));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Summary {
                handled: self.shared.quota.handled.load(Ordering::SeqCst),
            }),
        }
    }
}

impl<S: JobSource, H: Handler> Shared<S, H> {
    fn params(&self, worker: &str, wait: Duration) -> ClaimParams {
        ClaimParams {
            worker: worker.to_string(),
            max: 1,
            wait,
            lease_ms: self.config.lease_ms,
        }
    }

    /// One slot: claim, run, report (with the next claim), until told to stop.
    async fn slot(
        self: Arc<Self>,
        worker: String,
        reporter: Option<Reporter>,
    ) -> Result<(), RunnerError> {
        let mut next: Vec<Lease> = Vec::new();
        let mut backoff = self.config.retry_initial;
        loop {
            let lease = match next.pop() {
                Some(l) => l,
                None => {
                    if self.stop.is_cancelled() || !self.quota.reserve() {
                        return Ok(());
                    }
                    let params = self.params(&worker, self.config.claim_wait);
                    let claimed = tokio::select! {
                        r = self.source.claim(&self.config.queue, &params) => r,
                        _ = self.stop.cancelled() => {
                            self.quota.release();
                            return Ok(());
                        }
                    };
                    match claimed {
                        Ok(mut leases) if !leases.is_empty() => {
                            backoff = self.config.retry_initial;
                            let first = leases.remove(0);
                            // More than asked for: run them in seq order.
                            leases.reverse();
                            next = leases;
                            first
                        }
                        Ok(_) => {
                            self.quota.release();
                            continue;
                        }
                        Err(SourceError::Refused(e)) => {
                            self.quota.release();
                            return Err(RunnerError::ClaimRefused(SourceError::Refused(e)));
                        }
                        Err(e) => {
                            self.quota.release();
                            tracing::warn!("claim failed ({e}); retrying in {backoff:?}");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = self.stop.cancelled() => return Ok(()),
                            }
                            backoff = (backoff * 2).min(self.config.retry_max);
                            continue;
                        }
                    }
                }
            };
            let outcome = self.run_one(&lease).await;
            self.quota.handled.fetch_add(1, Ordering::SeqCst);
            let Some(outcome) = outcome else {
                if self.abandon.is_cancelled() {
                    return Ok(());
                }
                continue;
            };
            let want_next = next.is_empty() && !self.stop.is_cancelled() && self.quota.reserve();
            let claim_next = want_next.then(|| self.params(&worker, Duration::ZERO));
            let mut got = match &reporter {
                Some(r) => {
                    r.report(Report {
                        lease,
                        outcome,
                        claim_next,
                    })
                    .await
                }
                None => self.report(&lease, &outcome, claim_next.as_ref()).await,
            };
            if want_next && got.is_empty() {
                self.quota.release();
            }
            got.reverse();
            next.extend(got);
        }
    }

    /// Runs one job with heartbeats; `None` when its lease was lost (nothing
    /// to report).
    async fn run_one(&self, lease: &Lease) -> Option<Outcome> {
        let ctx = JobContext::new();
        let mut task = {
            let handler = self.handler.clone();
            let job = lease.job.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move { handler.handle(job, ctx).await })
        };
        let granted = |ms: u64| {
            if ms == 0 {
                self.config.lease_ms.unwrap_or(DEFAULT_LEASE_MS)
            } else {
                ms
            }
        };
        let mut every = heartbeat_interval(granted(lease.lease_ms));
        let mut next_beat = Instant::now() + every;
        let limit = lease.job.timeout_ms.map(Duration::from_millis);
        let deadline = limit.map(|t| Instant::now() + t);
        let result = loop {
            let timed_out = async {
                match deadline {
                    Some(d) if !ctx.is_cancelled() => tokio::time::sleep_until(d).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut task => break r,
                _ = timed_out => {
                    tracing::warn!("job {}: timed out after {:?}; stopping it", lease.job.id, limit.unwrap_or_default());
                    ctx.cancel(CancelReason::TimedOut);
                }
                _ = self.abandon.cancelled() => {
                    tracing::warn!("job {}: shutting down; stopping it, not reporting (it runs again in its place)", lease.job.id);
                    ctx.cancel(CancelReason::Shutdown);
                    if tokio::time::timeout(LOST_LEASE_GRACE, &mut task).await.is_err() {
                        task.abort();
                    }
                    return None;
                }
                _ = tokio::time::sleep_until(next_beat) => {
                    match self.source.heartbeat(lease, ctx.take_progress()).await {
                        Ok(beat) => {
                            every = heartbeat_interval(granted(beat.lease_ms));
                            if beat.cancel_requested && !ctx.is_cancelled() {
                                tracing::info!("job {}: cancel requested; stopping it", lease.job.id);
                                ctx.cancel(CancelReason::Requested);
                            }
                        }
                        Err(SourceError::LeaseLost(why)) => {
                            tracing::warn!("job {}: lease lost ({why}); stopping it, not reporting", lease.job.id);
                            ctx.cancel(CancelReason::LeaseLost);
                            if tokio::time::timeout(LOST_LEASE_GRACE, &mut task).await.is_err() {
                                task.abort();
                            }
                            return None;
                        }
                        Err(e) => tracing::warn!("job {}: heartbeat failed ({e}); will retry", lease.job.id),
                    }
                    next_beat = Instant::now() + every;
                }
            }
        };
        let outcome = match result {
            Ok(Ok(value)) => Outcome::Succeeded(value),
            Ok(Err(failure)) => Outcome::Failed(failure),
            Err(e) => Outcome::Failed(Failure::message(format!("handler panicked: {e}"))),
        };
        Some(match (outcome, ctx.cancel_reason()) {
            // A cancelled job does not come back.
            (Outcome::Failed(f), Some(CancelReason::Requested)) => {
                Outcome::Failed(Failure { retry: false, ..f })
            }
            // Whatever the handler said on its way out, the attempt timed out.
            (_, Some(CancelReason::TimedOut)) => {
                let ms = lease.job.timeout_ms.unwrap_or(0);
                Outcome::Failed(Failure::retryable(serde_json::json!({
                    "message": format!("attempt {} timed out after {ms} ms", lease.job.attempt),
                    "reason": "timeout",
                })))
            }
            (o, _) => o,
        })
    }

    /// Sends a report, again with backoff while it may not have arrived;
    /// returns the leases `claim_next` brought.
    async fn report(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        claim_next: Option<&ClaimParams>,
    ) -> Vec<Lease> {
        let mut wait = self.config.retry_initial;
        let tries = self.config.report_tries;
        for attempt in 1..=tries {
            match self.source.report(lease, outcome, claim_next).await {
                Ok(leases) => return leases,
                Err(SourceError::Unavailable(e)) if attempt < tries => {
                    tracing::warn!(
                        "job {}: report not delivered ({e}); retrying in {wait:?}",
                        lease.job.id
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.config.retry_max);
                }
                Err(e) => {
                    tracing::warn!("job {}: report not taken: {e}", lease.job.id);
                    return Vec::new();
                }
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
