//! The service layer: validates requests, calls the store once, and wakes
//! whoever waits on what the store changed.
//!
//! It takes and returns domain types (`orderly_core`); the HTTP layer maps
//! wire types to and from them (`crate::convert`), so an in-process caller
//! (the embedded library, an executor) uses the same operations.
//!
//! Wake-ups come from one place, [`Service::wake_for`],
//! fed with the [`Changes`] every store write returns, whichever path made
//! them (an enqueue, a report, a claim that caught its queue up, a
//! maintenance pass): each job that may now start wakes one claimer of its
//! queue, each finished job wakes its `/wait`ers, and a job that now waits
//! for a time wakes the scheduler. A claim that finds nothing waits on its
//! queue's notifier, registered *before* it looks, so a job committed in
//! between is not missed. What other nodes on the same storage commit
//! arrives through the store's [`Store::external`] ([`crate::external`]):
//! [`Service::wake_external`] wakes from their summaries, and
//! [`Service::wake_everyone`] after a possible miss.
//!
//! This file holds the service, its wake-ups, enqueues, reads and queue
//! management; the worker protocol (claims, heartbeats, reports) is in
//! `workers`.

use std::time::Duration;

use orderly_core::validate::{self, ValidationError};
use orderly_core::{
    AttemptRecord, Changes, Committed, EnqueueParams, Enqueued, Job, JobState, Lease, ListParams,
    Millis, NewJob, Outcome, QueueInfo, QueuePatch, StartListParams, StartRecord, Store,
    StoreError,
};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Notify;

use crate::convert::now_millis;
use crate::error::ServiceError;
use crate::events::{self, EventHub};
use crate::waiters::Waiters;

mod workers;

/// Limits the service enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest payload of one job, in bytes of JSON.
    pub max_payload_bytes: usize,
}

/// A job to enqueue, as a client describes it (times already parsed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobRequest {
    /// Client-chosen id; generated when `None`.
    pub id: Option<String>,
    /// Ordering key.
    pub key: Option<String>,
    /// The job's input.
    pub payload: Value,
    /// Not before this time.
    pub run_at: Option<Millis>,
    /// Not before this many milliseconds from now (exclusive with `run_at`).
    pub delay_ms: Option<u64>,
    /// Starts allowed (overrides the queue's).
    pub max_attempts: Option<u32>,
    /// Per-attempt time limit.
    pub timeout_ms: Option<u64>,
}

/// A worker's request for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Worker name (shown on the job; not an identity).
    pub worker: String,
    /// Most leases to take.
    pub max: u32,
    /// Longest wait for work when none is eligible.
    pub wait_ms: u64,
    /// Lease length; the queue's when `None`.
    pub lease_ms: Option<u64>,
}

/// One report of `POST /v1/reports`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRequest {
    /// Job id.
    pub id: String,
    /// Lease token.
    pub token: String,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// Also claim the next jobs of the reported job's queue (its `wait_ms`
    /// must be 0: a batch does not long-poll).
    pub claim_next: Option<ClaimRequest>,
}

/// What one accepted report of [`Service::report_many`] gives back: the job,
/// and the leases its `claim_next` took (`None` without one).
pub type ReportedItem = (Job, Option<Vec<Lease>>);

/// The operations of the API, independent of HTTP.
pub struct Service {
    store: Arc<dyn Store>,
    limits: Limits,
    queue_waiters: Waiters,
    job_waiters: Waiters,
    /// Wakes the maintenance loop (a delayed job may now be due first).
    pub(crate) maintenance_wake: Notify,
    /// Fired on shutdown: long polls answer at once with what they have.
    shutdown: tokio_util::sync::CancellationToken,
    /// Notified after every queue configuration change (executors follow it).
    config_changed: Arc<Notify>,
    /// Where every change is published for `GET /v1/events`.
    events: EventHub,
    /// The figures `GET /metrics` serves.
    metrics: crate::metrics::Metrics,
    /// Recent claims and starts per queue (`waiting_on`'s `no_worker`, `eta`).
    pace: crate::pace::Pace,
}

/// Longest a claim sleeps before looking again without a wake-up: a safety
/// net only, every change that makes a job eligible wakes the queue's claimers.
const RECHECK: Duration = Duration::from_secs(10);

/// Longest a `/wait` sleeps before reading the job again without a wake-up:
/// a safety net only, every change that finishes a job wakes its waiters.
const WAIT_RECHECK: Duration = Duration::from_secs(10);

impl Service {
    /// A service over `store`.
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Self {
        Service {
            limits,
            queue_waiters: Waiters::default(),
            job_waiters: Waiters::default(),
            maintenance_wake: Notify::new(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            config_changed: Arc::new(Notify::new()),
            events: EventHub::new(events::Config::default()),
            metrics: crate::metrics::Metrics::default(),
            pace: crate::pace::Pace::new(
                now_millis() + store.clock_offset_ms(),
                Self::DEFAULT_NO_WORKER_AFTER_MS,
            ),
            store,
        }
    }

    /// How long a queue without executor goes without a claim before its
    /// waiting jobs say `no_worker` by default: 60 s.
    pub const DEFAULT_NO_WORKER_AFTER_MS: Millis = 60_000;

    /// This service saying `no_worker` after `after` without a claim.
    pub fn with_no_worker_after(mut self, after: Duration) -> Self {
        let ms = after.as_millis().min(i64::MAX as u128) as Millis;
        self.pace = crate::pace::Pace::new(self.now(), ms);
        self
    }

    /// This service with an event hub of these sizes.
    pub fn with_events(mut self, config: events::Config) -> Self {
        self.events = EventHub::new(config);
        self
    }

    /// The event hub.
    pub fn events(&self) -> &EventHub {
        &self.events
    }

    /// Fired on shutdown (streams end with it).
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.shutdown.clone()
    }

    /// Ends every long poll now (claims answer empty, waits answer the job as it is),
    /// so a graceful shutdown does not wait for them.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Now on the store's clock: this node's wall clock corrected by the
    /// store's measured offset ([`Store::clock_offset_ms`]), so every node
    /// on one database reaps leases and promotes due jobs on one clock.
    /// Every `now` the service and the maintenance loops pass comes from here.
    pub fn now(&self) -> Millis {
        now_millis().saturating_add(self.store.clock_offset_ms())
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The figures `GET /metrics` serves.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The metrics exposition now (see [`crate::metrics`]).
    pub async fn metrics_text(&self) -> Result<String, ServiceError> {
        Ok(crate::metrics::render(&self.metrics, self.store.as_ref(), self.now()).await?)
    }

    /// Wakes whoever waits on what `changes` did (see the module docs),
    /// counts it for the metrics and records its starts and ended attempts
    /// in the pace behind `eta` ([`crate::pace`]).
    pub fn wake_for(&self, changes: &Changes) {
        self.events.publish(changes);
        self.pace.observe(changes);
        self.metrics.record(changes);
        for (queue, n) in changes.startable() {
            self.queue_waiters.wake_some(queue, n);
        }
        for c in changes.finished() {
            self.job_waiters.wake_all(&c.id);
        }
        if changes.scheduled() {
            self.maintenance_wake.notify_one();
        }
    }

    /// Wakes whoever waits on what another node committed ([`Wakeups`]):
    /// claimers, `/wait`ers and the scheduler only; that node published the
    /// events and counted the metrics.
    pub fn wake_external(&self, w: &orderly_core::Wakeups) {
        for (queue, n) in &w.queues {
            self.queue_waiters.wake_some(queue, *n);
        }
        if w.finished_overflow {
            self.job_waiters.wake_everyone();
        } else {
            for id in &w.finished {
                self.job_waiters.wake_all(id);
            }
        }
        if w.scheduled {
            self.maintenance_wake.notify_one();
        }
    }

    /// Wakes every waiter of every name and the scheduler (a notification
    /// from another node may have been missed).
    pub fn wake_everyone(&self) {
        self.queue_waiters.wake_everyone();
        self.job_waiters.wake_everyone();
        self.maintenance_wake.notify_one();
    }

    /// What the store hears from other nodes ([`Store::external`]); take-once.
    pub fn external(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<orderly_core::External>> {
        self.store.external()
    }

    /// [`Self::wake_for`] on a write's changes, passing its value on.
    fn woken<T>(&self, committed: Committed<T>) -> T {
        self.wake_for(&committed.changes);
        committed.value
    }

    fn new_job(
        &self,
        req: JobRequest,
        index: Option<usize>,
        now: Millis,
    ) -> Result<NewJob, ServiceError> {
        let at = |field: &str| match index {
            Some(i) => format!("jobs[{i}].{field}"),
            None => field.to_string(),
        };
        let id = match req.id {
            Some(id) => {
                validate::job_id(&id)?;
                id
            }
            // Time-ordered (v7): new ids land at the end of the id index.
            None => uuid::Uuid::now_v7().to_string(),
        };
        if let Some(k) = &req.key {
            validate::key(k)?;
        }
        let payload_len = serde_json::to_string(&req.payload)
            .map(|s| s.len())
            .unwrap_or(0);
        if payload_len > self.limits.max_payload_bytes {
            return Err(ServiceError::PayloadTooLarge(format!(
                "`{}` is {payload_len} bytes of JSON: the limit is {} bytes (server flag --max-payload-bytes)",
                at("payload"),
                self.limits.max_payload_bytes
            )));
        }
        let run_at = match (req.run_at, req.delay_ms) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::value(
                    &at("run_at"),
                    "and `delay_ms` were both given: give one",
                )
                .into())
            }
            // An absolute time may be far ahead (a yearly job); a relative delay over a
            // year is more likely a unit mistake (microseconds for milliseconds).
            (Some(t), None) => Some(t),
            (None, Some(d)) => {
                Some(now + validate::range(&at("delay_ms"), d, 0, validate::MAX_DELAY_MS)? as i64)
            }
            (None, None) => None,
        };
        if let Some(a) = req.max_attempts {
            validate::range(&at("max_attempts"), a, 1, validate::MAX_ATTEMPTS_LIMIT)?;
        }
        if let Some(t) = req.timeout_ms {
            validate::range(&at("timeout_ms"), t, 1, validate::MAX_DELAY_MS)?;
        }
        Ok(NewJob {
            id,
            key: req.key,
            payload: req.payload,
            run_at,
            max_attempts: req.max_attempts,
            timeout_ms: req.timeout_ms,
        })
    }

    /// Enqueues one job or a batch (atomically, in order).
    pub async fn enqueue(
        &self,
        queue: &str,
        reqs: Vec<JobRequest>,
        batch: bool,
    ) -> Result<Vec<Enqueued>, ServiceError> {
        validate::queue_name(queue)?;
        if batch && (reqs.is_empty() || reqs.len() > validate::MAX_BATCH_JOBS) {
            return Err(ValidationError::value(
                "jobs",
                format!(
                    "has {} jobs: a batch holds 1 to {}",
                    reqs.len(),
                    validate::MAX_BATCH_JOBS
                ),
            )
            .into());
        }
        let now = self.now();
        let jobs = reqs
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.new_job(r, batch.then_some(i), now))
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .store
            .job_enqueue_many(EnqueueParams {
                queue: queue.to_string(),
                jobs,
                now,
            })
            .await?;
        let out = self.woken(out);
        let (mut jobs, created): (Vec<Job>, Vec<bool>) =
            out.into_iter().map(|e| (e.job, e.created)).unzip();
        self.explain(&mut jobs, now).await;
        Ok(jobs
            .into_iter()
            .zip(created)
            .map(|(job, created)| Enqueued { job, created })
            .collect())
    }

    /// Sets `waiting_on` and `eta` on the waiting jobs of an answer (see
    /// [`crate::pace`]): every answer that shows a job explains it as a read
    /// does. `now` is taken before the store call, so the facts the store
    /// read are never older than the time they are reckoned from (a slow
    /// read cannot push an estimate past a start that already came).
    async fn explain(&self, jobs: &mut [Job], now: Millis) {
        self.pace.explain_all(self.store.as_ref(), jobs, now).await;
    }

    /// [`Self::explain`] for one job.
    async fn explained(&self, mut job: Job, now: Millis) -> Job {
        self.explain(std::slice::from_mut(&mut job), now).await;
        job
    }

    /// Runs `attempt` until it says it is done, `wait_ms` passed, or the
    /// server shuts down; between attempts, sleeps until `name` is woken in
    /// `waiters` (or `recheck` passed). It registers for the wake-up before
    /// each attempt, so a wake-up that comes while it looks is not missed.
    async fn long_poll<T, F, Fut>(
        &self,
        waiters: &Waiters,
        name: &str,
        wait_ms: u64,
        recheck: Duration,
        mut attempt: F,
    ) -> Result<T, ServiceError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(T, bool), ServiceError>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let notify = waiters.get(name);
        let result = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (value, done) = match attempt().await {
                Ok(v) => v,
                Err(e) => break Err(e),
            };
            let now = tokio::time::Instant::now();
            if done || now >= deadline || self.shutdown.is_cancelled() {
                break Ok(value);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline.min(now + recheck)) => {}
                _ = self.shutdown.cancelled() => {}
            }
        };
        waiters.release(name, notify);
        result
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Job, ServiceError> {
        validate::job_id(id)?;
        let now = self.now();
        let job = self
            .store
            .job_get(id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(id.to_string()))?;
        Ok(self.explained(job, now).await)
    }

    /// Waits until the job finished or `timeout_ms` passed; returns it either way.
    pub async fn wait(&self, id: &str, timeout_ms: u64) -> Result<Job, ServiceError> {
        validate::job_id(id)?;
        validate::range("timeout_ms", timeout_ms, 0, validate::MAX_WAIT_MS)?;
        self.long_poll(&self.job_waiters, id, timeout_ms, WAIT_RECHECK, || async {
            let job = self.job(id).await?;
            let done = job.state.is_finished();
            Ok((job, done))
        })
        .await
    }

    /// A page of a queue's jobs.
    pub async fn list(
        &self,
        queue: &str,
        state: Option<JobState>,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<Job>, ServiceError> {
        self.list_in(queue, None, state, after, limit).await
    }

    /// A page of one key's line in a queue: its unfinished jobs by `seq`
    /// (`state`, if given, must be `scheduled`, `queued` or `running`).
    pub async fn list_key(
        &self,
        queue: &str,
        key: &str,
        state: Option<JobState>,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<Job>, ServiceError> {
        validate::key(key)?;
        if let Some(s) = state.filter(|s| s.is_finished()) {
            return Err(ValidationError::value(
                "state",
                format!(
                    "is {}, but a key's list holds its line: its unfinished jobs (scheduled, queued, running); leave out key= to list finished jobs",
                    s.as_str()
                ),
            )
            .into());
        }
        self.list_in(queue, Some(key), state, after, limit).await
    }

    async fn list_in(
        &self,
        queue: &str,
        key: Option<&str>,
        state: Option<JobState>,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<Job>, ServiceError> {
        validate::queue_name(queue)?;
        let limit = validate::list_limit(limit)?;
        let now = self.now();
        let mut jobs = self
            .store
            .job_list(ListParams {
                queue: queue.to_string(),
                key: key.map(str::to_string),
                state,
                after,
                limit,
            })
            .await?;
        self.explain(&mut jobs, now).await;
        Ok(jobs)
    }

    /// Every recorded attempt of a job, oldest first.
    pub async fn attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, ServiceError> {
        validate::job_id(id)?;
        Ok(self.store.job_attempts(id).await?)
    }

    /// A page of a queue's start log, in `start_no` order (the same limits
    /// as [`Self::list`]).
    pub async fn starts(
        &self,
        queue: &str,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<StartRecord>, ServiceError> {
        validate::queue_name(queue)?;
        let limit = validate::list_limit(limit)?;
        Ok(self
            .store
            .start_list(StartListParams {
                queue: queue.to_string(),
                after,
                limit,
            })
            .await?)
    }

    /// Cancels a job.
    pub async fn cancel(&self, id: &str) -> Result<Job, ServiceError> {
        validate::job_id(id)?;
        let now = self.now();
        let out = self.store.job_cancel(id, now).await?;
        let job = self.woken(out);
        Ok(self.explained(job, now).await)
    }

    /// Puts a failed or cancelled job back in line.
    pub async fn retry(&self, id: &str) -> Result<Job, ServiceError> {
        validate::job_id(id)?;
        let now = self.now();
        let out = self.store.job_retry(id, now).await?;
        let job = self.woken(out);
        Ok(self.explained(job, now).await)
    }

    /// One queue.
    pub async fn queue(&self, name: &str) -> Result<QueueInfo, ServiceError> {
        validate::queue_name(name)?;
        Ok(self.store.queue_get(name).await?)
    }

    /// Every queue.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, ServiceError> {
        Ok(self.store.queue_list().await?)
    }

    /// Creates or configures a queue.
    pub async fn configure(
        &self,
        name: &str,
        patch: QueuePatch,
    ) -> Result<QueueInfo, ServiceError> {
        validate::queue_name(name)?;
        validate::queue_patch(&patch)?;
        if let Some(Some(e)) = &patch.executor {
            // The program, directory or URL must work here before it is stored.
            let e = e.clone();
            tokio::task::spawn_blocking(move || crate::executors::build::check(&e))
                .await
                .map_err(|e| StoreError::Backend(format!("executor check failed: {e}")))??;
        }
        let info = self.store.queue_configure(name, patch, self.now()).await?;
        // More capacity, or a queue resumed: it is not known how many may start.
        self.queue_waiters.wake_all(name);
        self.config_changed.notify_one();
        self.events.queue_configured(name, self.now());
        Ok(info)
    }

    /// What is notified after every queue configuration change.
    pub fn config_changed(&self) -> Arc<Notify> {
        self.config_changed.clone()
    }

    /// Gives back at once the leases of workers named `prefix…` (this
    /// node's executors or handlers, after a restart), waking claimers of
    /// the jobs it puts back; returns how many.
    pub async fn release_leases(&self, prefix: &str) -> Result<u64, ServiceError> {
        let out = self.store.lease_release(prefix, self.now()).await?;
        Ok(self.woken(out))
    }

    /// One maintenance pass: makes due jobs ready and puts expired leases
    /// back, waking whoever waits on them; returns when the next pass has work.
    pub async fn maintain(&self) -> Result<Option<Millis>, ServiceError> {
        let out = self
            .store
            .maintenance_run(self.now(), rand::random())
            .await?;
        Ok(self.woken(out).next_due)
    }
}
