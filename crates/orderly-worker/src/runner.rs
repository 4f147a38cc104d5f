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
//! reporter sends at once when idle; reports that finish while a request is
//! in flight go together in the next one ([`JobSource::report_many`]: one
//! `POST /v1/reports` over HTTP, committed together by the server). No
//! timer: a lone report is sent as soon as it is handed over. One slot
//! alone sends its own reports, as `complete`/`fail` with `claim_next`.
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
}

impl RunnerConfig {
    /// One slot on `queue` as `worker`, 25 s long polls, no job limit, six
    /// report tries with backoff from 200 ms to 5 s, reports batched.
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
            let (r, task) = Reporter::spawn(self.shared.source.clone(), resend);
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
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use serde_json::{json, Value};

    use super::*;
    use crate::handler::Job;
    use crate::source::{Beat, Report};

    /// A scripted in-memory source.
    #[derive(Default)]
    struct Fake {
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        ready: VecDeque<Lease>,
        beats: VecDeque<Result<Beat, SourceError>>,
        reports: VecDeque<Result<(), SourceError>>,
        beat_at: Vec<Instant>,
        reported: Vec<(String, Outcome, bool)>,
        claims: u32,
        /// Whole-request answers of `report_many`, in turn (default `Ok`:
        /// then each item is answered as `report` would).
        whole: VecDeque<Result<(), SourceError>>,
        /// The job ids of each `report_many` call.
        batches: Vec<Vec<String>>,
        /// The worker names of the `claim_next`s reported.
        next_workers: Vec<String>,
        /// How long a `report_many` call is in flight.
        batch_delay: Duration,
    }

    fn lease(i: i64, lease_ms: u64) -> Lease {
        Lease {
            job: Job {
                id: format!("j{i}"),
                queue: "q".into(),
                key: None,
                seq: i,
                attempt: 1,
                payload: json!({ "i": i }),
                timeout_ms: None,
            },
            token: format!("t{i}"),
            lease_ms,
        }
    }

    impl Fake {
        fn with(leases: Vec<Lease>) -> Arc<Self> {
            let f = Fake::default();
            f.state.lock().unwrap().ready = leases.into();
            Arc::new(f)
        }
        fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.state.lock().unwrap()
        }
    }

    #[async_trait::async_trait]
    impl JobSource for Fake {
        async fn claim(&self, _: &str, p: &ClaimParams) -> Result<Vec<Lease>, SourceError> {
            let got = {
                let mut s = self.st();
                s.claims += 1;
                s.ready.pop_front()
            };
            match got {
                Some(l) => Ok(vec![l]),
                None => {
                    tokio::time::sleep(p.wait).await;
                    Ok(Vec::new())
                }
            }
        }
        async fn heartbeat(&self, l: &Lease, _: Option<Value>) -> Result<Beat, SourceError> {
            let mut s = self.st();
            s.beat_at.push(Instant::now());
            s.beats.pop_front().unwrap_or(Ok(Beat {
                lease_ms: l.lease_ms,
                cancel_requested: false,
            }))
        }
        async fn report(
            &self,
            l: &Lease,
            o: &Outcome,
            next: Option<&ClaimParams>,
        ) -> Result<Vec<Lease>, SourceError> {
            let mut s = self.st();
            s.reported
                .push((l.job.id.clone(), o.clone(), next.is_some()));
            if let Some(n) = next {
                s.next_workers.push(n.worker.clone());
            }
            s.reports.pop_front().unwrap_or(Ok(()))?;
            Ok(next.and_then(|_| s.ready.pop_front()).into_iter().collect())
        }
        async fn report_many(
            &self,
            reports: &[Report],
        ) -> Result<Vec<crate::source::ReportAnswer>, SourceError> {
            let delay = {
                let mut s = self.st();
                s.batches
                    .push(reports.iter().map(|r| r.lease.job.id.clone()).collect());
                s.batch_delay
            };
            tokio::time::sleep(delay).await;
            self.st().whole.pop_front().unwrap_or(Ok(()))?;
            let mut out = Vec::new();
            for r in reports {
                out.push(
                    self.report(&r.lease, &r.outcome, r.claim_next.as_ref())
                        .await,
                );
            }
            Ok(out)
        }
    }

    /// Sleeps ten times the job's `i`, then succeeds.
    struct Staggered;

    #[async_trait::async_trait]
    impl Handler for Staggered {
        async fn handle(&self, job: Job, _: JobContext) -> Result<Value, Failure> {
            let i = job.payload["i"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            Ok(job.payload)
        }
    }

    /// Sleeps `ms`, or stops on cancel and says why.
    struct Sleeper {
        ms: u64,
        seen: Mutex<Vec<Option<CancelReason>>>,
    }

    fn sleeper(ms: u64) -> Arc<Sleeper> {
        Arc::new(Sleeper {
            ms,
            seen: Mutex::new(Vec::new()),
        })
    }

    #[async_trait::async_trait]
    impl Handler for Sleeper {
        async fn handle(&self, job: Job, ctx: JobContext) -> Result<Value, Failure> {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(self.ms)) => {
                    self.seen.lock().unwrap().push(None);
                    Ok(job.payload)
                }
                _ = ctx.cancelled() => {
                    self.seen.lock().unwrap().push(ctx.cancel_reason());
                    Err(Failure::message("stopped"))
                }
            }
        }
    }

    fn config(max_jobs: u64) -> RunnerConfig {
        let mut c = RunnerConfig::new("q", "w");
        c.max_jobs = Some(max_jobs);
        c.claim_wait = Duration::from_millis(100);
        c
    }

    /// A third of the lease, with a floor.
    #[test]
    fn heartbeat_every_third_of_the_lease() {
        assert_eq!(heartbeat_interval(30_000), Duration::from_secs(10));
        assert_eq!(heartbeat_interval(1_500), Duration::from_millis(500));
        assert_eq!(heartbeat_interval(0), MIN_HEARTBEAT);
    }

    /// Heartbeats follow the granted `lease_ms` (and a renewed one), whatever
    /// the local wall clock says.
    #[tokio::test(start_paused = true)]
    async fn heartbeats_are_paced_from_lease_ms() {
        let src = Fake::with(vec![lease(1, 3_000)]);
        // After two beats the server renews for 600 ms: beats every 200 ms.
        {
            let mut s = src.st();
            for ms in [3_000, 600, 600, 600, 600, 600, 600, 600, 600] {
                s.beats.push_back(Ok(Beat {
                    lease_ms: ms,
                    cancel_requested: false,
                }));
            }
        }
        let t0 = Instant::now();
        let h = sleeper(3_500);
        let s = Runner::new(src.clone(), h, config(1)).run().await.unwrap();
        assert_eq!(s.handled, 1);
        let st = src.st();
        let at: Vec<u128> = st.beat_at.iter().map(|t| (*t - t0).as_millis()).collect();
        assert_eq!(&at[..3], &[1_000, 2_000, 2_200], "{at:?}");
        assert_eq!(at.len(), 9, "{at:?}");
        assert!(at.windows(2).skip(2).all(|w| w[1] - w[0] == 200), "{at:?}");
        assert_eq!(st.reported.len(), 1);
        assert!(matches!(st.reported[0].1, Outcome::Succeeded(_)));
    }

    /// A lost lease stops the handler and nothing is reported.
    #[tokio::test(start_paused = true)]
    async fn lost_lease_cancels_and_does_not_report() {
        let src = Fake::with(vec![lease(1, 900)]);
        src.st()
            .beats
            .push_back(Err(SourceError::LeaseLost("409".into())));
        let h = sleeper(60_000);
        Runner::new(src.clone(), h.clone(), config(1))
            .run()
            .await
            .unwrap();
        assert_eq!(*h.seen.lock().unwrap(), vec![Some(CancelReason::LeaseLost)]);
        assert!(src.st().reported.is_empty());
    }

    /// A cancel request stops the handler; its failure is reported without retry.
    #[tokio::test(start_paused = true)]
    async fn cancel_request_cancels_and_reports_no_retry() {
        let src = Fake::with(vec![lease(1, 900)]);
        src.st().beats.push_back(Ok(Beat {
            lease_ms: 900,
            cancel_requested: true,
        }));
        let h = sleeper(60_000);
        Runner::new(src.clone(), h.clone(), config(1))
            .run()
            .await
            .unwrap();
        assert_eq!(*h.seen.lock().unwrap(), vec![Some(CancelReason::Requested)]);
        let st = src.st();
        assert!(matches!(&st.reported[0].1, Outcome::Failed(f) if !f.retry));
    }

    /// A run past the job's `timeout_ms` is stopped and reported failed
    /// (retryable, reason `timeout`), whatever the handler returned.
    #[tokio::test(start_paused = true)]
    async fn timeout_stops_the_run_and_reports_a_failure() {
        let mut l = lease(1, 30_000);
        l.job.timeout_ms = Some(500);
        let src = Fake::with(vec![l]);
        let h = sleeper(60_000);
        let t0 = Instant::now();
        Runner::new(src.clone(), h.clone(), config(1))
            .run()
            .await
            .unwrap();
        assert_eq!(*h.seen.lock().unwrap(), vec![Some(CancelReason::TimedOut)]);
        assert!(t0.elapsed() < Duration::from_secs(60));
        let st = src.st();
        match &st.reported[0].1 {
            Outcome::Failed(f) => {
                assert!(f.retry);
                assert_eq!(f.error["reason"], "timeout");
            }
            o => panic!("reported {o:?}"),
        }
    }

    /// The abandon token stops a running job and reports nothing.
    #[tokio::test(start_paused = true)]
    async fn abandon_stops_running_jobs_without_reporting() {
        let src = Fake::with(vec![lease(1, 30_000), lease(2, 30_000)]);
        let h = sleeper(60_000);
        let r = Runner::new(src.clone(), h.clone(), RunnerConfig::new("q", "w"));
        let abandon = r.abandon_token();
        let run = tokio::spawn(r.run());
        tokio::time::sleep(Duration::from_secs(1)).await;
        abandon.cancel();
        assert_eq!(run.await.unwrap().unwrap().handled, 1);
        assert_eq!(*h.seen.lock().unwrap(), vec![Some(CancelReason::Shutdown)]);
        let st = src.st();
        assert!(st.reported.is_empty(), "{:?}", st.reported);
        assert_eq!(st.ready.len(), 1, "no claim after the abandon");
    }

    /// A report that may not have arrived is sent again; a refused one is not.
    #[tokio::test(start_paused = true)]
    async fn reports_are_resent_on_transient_errors_only() {
        let src = Fake::with(vec![lease(1, 30_000), lease(2, 30_000)]);
        {
            let mut s = src.st();
            s.reports
                .push_back(Err(SourceError::Unavailable("503".into())));
            s.reports
                .push_back(Err(SourceError::Unavailable("reset".into())));
            s.reports.push_back(Ok(()));
            s.reports.push_back(Err(SourceError::Refused("400".into())));
        }
        Runner::new(src.clone(), sleeper(1), config(2))
            .run()
            .await
            .unwrap();
        let ids: Vec<String> = src.st().reported.iter().map(|r| r.0.clone()).collect();
        assert_eq!(ids, ["j1", "j1", "j1", "j2"]);
        assert!(src.st().batches.is_empty(), "one slot reports on its own");
    }

    /// Several slots hand their reports to one reporter: what finishes while
    /// a request is in flight goes in the next one, each with its slot's own
    /// `claim_next`; every job is reported once and its next job runs.
    #[tokio::test(start_paused = true)]
    async fn reports_of_several_slots_are_batched() {
        let src = Fake::with((1..=12).map(|i| lease(i, 30_000)).collect());
        src.st().batch_delay = Duration::from_millis(100);
        let mut c = config(12);
        c.slots = 4;
        let s = Runner::new(src.clone(), Arc::new(Staggered), c)
            .run()
            .await
            .unwrap();
        assert_eq!(s.handled, 12);
        let st = src.st();
        let mut ids: Vec<&str> = st.reported.iter().map(|r| r.0.as_str()).collect();
        ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
        let want: Vec<String> = (1..=12).map(|i| format!("j{i}")).collect();
        assert_eq!(ids, want, "each job reported once");
        assert_eq!(st.batches.iter().map(Vec::len).sum::<usize>(), 12);
        assert!(st.batches.iter().any(|b| b.len() > 1), "{:?}", st.batches);
        // The first report went alone, at once: nothing to wait for.
        assert_eq!(st.batches[0], ["j1"]);
        for w in &st.next_workers {
            assert!(["w/0", "w/1", "w/2", "w/3"].contains(&w.as_str()), "{w}");
        }
        assert!(st.ready.is_empty());
    }

    /// In a batch, a transport error resends every report; an item that may
    /// not have arrived is resent alone; an item refused is final for it only.
    #[tokio::test(start_paused = true)]
    async fn batch_resends_per_report() {
        let src = Fake::with((1..=3).map(|i| lease(i, 30_000)).collect());
        {
            let mut s = src.st();
            s.batch_delay = Duration::from_millis(100);
            // [j1] · [j2, j3] lost · [j2, j3]: j2 refused, j3 not delivered · [j3]
            s.whole = VecDeque::from([
                Ok(()),
                Err(SourceError::Unavailable("reset".into())),
                Ok(()),
                Ok(()),
            ]);
            s.reports = VecDeque::from([
                Ok(()),
                Err(SourceError::Refused("400".into())),
                Err(SourceError::Unavailable("503".into())),
                Ok(()),
            ]);
        }
        let mut c = config(3);
        c.slots = 3;
        let s = Runner::new(src.clone(), Arc::new(Staggered), c)
            .run()
            .await
            .unwrap();
        assert_eq!(s.handled, 3);
        let st = src.st();
        assert_eq!(
            st.batches,
            [vec!["j1"], vec!["j2", "j3"], vec!["j2", "j3"], vec!["j3"]]
        );
        let ids: Vec<&str> = st.reported.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(ids, ["j1", "j2", "j3", "j3"]);
    }

    /// A report given up after `report_tries` sends is answered with nothing
    /// and its slot goes on.
    #[tokio::test(start_paused = true)]
    async fn batch_gives_a_report_up_after_its_tries() {
        let src = Fake::with((1..=2).map(|i| lease(i, 30_000)).collect());
        src.st().whole = (0..10)
            .map(|_| Err(SourceError::Unavailable("down".into())))
            .collect();
        let mut c = config(2);
        c.slots = 2;
        c.report_tries = 3;
        let s = Runner::new(src.clone(), Arc::new(Staggered), c)
            .run()
            .await
            .unwrap();
        assert_eq!(s.handled, 2);
        let st = src.st();
        let sends = |id: &str| {
            st.batches
                .iter()
                .filter(|b| b.iter().any(|x| x == id))
                .count()
        };
        assert_eq!((sends("j1"), sends("j2")), (3, 3), "{:?}", st.batches);
        assert!(st.reported.is_empty());
    }

    /// Each report claims the next job; `max_jobs` is never exceeded and the
    /// last report asks for nothing.
    #[tokio::test(start_paused = true)]
    async fn claim_next_chains_jobs_up_to_max_jobs() {
        let src = Fake::with((1..=5).map(|i| lease(i, 30_000)).collect());
        let mut c = config(3);
        c.slots = 2;
        let s = Runner::new(src.clone(), sleeper(10), c)
            .run()
            .await
            .unwrap();
        assert_eq!(s.handled, 3);
        let st = src.st();
        assert_eq!(st.reported.len(), 3);
        assert_eq!(st.ready.len(), 2, "took more than max_jobs");
        // Every job came from a fresh claim or a claim_next, none beyond the three.
        assert_eq!(
            st.reported.iter().filter(|r| r.2).count() as u32 + st.claims,
            3
        );
    }

    /// The stop token ends a runner waiting for work.
    #[tokio::test(start_paused = true)]
    async fn stop_token_ends_an_idle_runner() {
        let src = Fake::with(Vec::new());
        let mut c = RunnerConfig::new("q", "w");
        c.slots = 3;
        let r = Runner::new(src, sleeper(1), c);
        let stop = r.stop_token();
        let run = tokio::spawn(r.run());
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
        assert_eq!(run.await.unwrap().unwrap().handled, 0);
    }
}
