//! The service layer: validates requests, calls the store once, and wakes
//! whoever waits on the result.
//!
//! Wake-ups are in-process: a claim that finds nothing waits on its queue's
//! [`Notify`] (registered *before* it looks, so a job committed in between is
//! not missed), and every write that can make a job eligible (enqueue, a
//! report freeing capacity or a key, cancel, retry, configure, maintenance)
//! notifies the queue: as many claimers as jobs may now start when that is
//! known (an enqueue of n ready jobs wakes n), all of them otherwise.
//! `GET /v1/jobs/{id}/wait` waits on the job's own `Notify` the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderly_core::validate::{self, ValidationError};
use orderly_core::{
    ClaimParams, EnqueueParams, Enqueued, Heartbeat, HeartbeatParams, Job, JobState, Lease,
    ListParams, NewJob, Outcome, QueueInfo, QueuePatch, ReportParams, Store, StoreError,
};
use orderly_proto::{ClaimRequest, EnqueueRequest, QueueConfigRequest, ReportItem};
use tokio::sync::Notify;

use crate::convert::{now_millis, parse_time};
use crate::error::ServiceError;

/// Limits the service enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest payload of one job, in bytes of JSON.
    pub max_payload_bytes: usize,
}

/// Per-name notifiers that are dropped when nobody waits on them.
#[derive(Default)]
struct Waiters {
    map: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waiters {
    fn get(&self, name: &str) -> Arc<Notify> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    fn wake(&self, name: &str) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(name) {
            n.notify_waiters();
        }
    }

    /// Wakes at most `n` waiters of `name` (one each, in the order they
    /// started waiting). A waiter that is woken but gone passes its wake-up
    /// on to the next (tokio's `Notified` does so when dropped).
    fn wake_some(&self, name: &str, n: usize) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = map.get(name) {
            for _ in 0..n.min(MAX_WAKE_ONE_BY_ONE) {
                notify.notify_one();
            }
            if n > MAX_WAKE_ONE_BY_ONE {
                notify.notify_waiters();
            }
        }
    }

    /// Forgets `name`'s notifier if only the map holds it.
    fn release(&self, name: &str, notify: Arc<Notify>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        drop(notify);
        if map.get(name).is_some_and(|n| Arc::strong_count(n) == 1) {
            map.remove(name);
        }
    }
}

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
}

/// Above this many jobs, an enqueue wakes every claimer at once.
const MAX_WAKE_ONE_BY_ONE: usize = 1_024;

/// Longest a claim sleeps before looking again without a wake-up: a safety
/// net only, every write that makes a job eligible wakes the queue's claimers.
const RECHECK: Duration = Duration::from_secs(10);

/// Longest a `/wait` sleeps before reading the job again without a wake-up. A
/// job that a claim finds finished (its lease expired with no attempts left)
/// wakes nobody, so this bounds how late `/wait` can answer then. Reads are cheap.
const WAIT_RECHECK: Duration = Duration::from_secs(1);

impl Service {
    /// A service over `store`.
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Self {
        Service {
            store,
            limits,
            queue_waiters: Waiters::default(),
            job_waiters: Waiters::default(),
            maintenance_wake: Notify::new(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Ends every long poll now (claims answer empty, waits answer the job as it is),
    /// so a graceful shutdown does not wait for them.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Wakes every claimer of `queue` (when it is not known how many jobs
    /// became eligible: maintenance, a configuration change).
    pub fn wake_queue(&self, queue: &str) {
        self.queue_waiters.wake(queue);
    }

    /// Wakes as many claimers of `queue` as there are jobs that may now start,
    /// so one new job does not send every idle worker of the queue to the store.
    fn wake_claimers(&self, queue: &str, jobs: usize) {
        self.queue_waiters.wake_some(queue, jobs);
    }

    /// Wakes waiters of a finished job.
    pub fn job_finished(&self, job: &Job) {
        if job.state.is_finished() {
            self.job_waiters.wake(&job.id);
        }
    }

    fn new_job(
        &self,
        req: EnqueueRequest,
        index: Option<usize>,
        now: i64,
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
        let run_at = match (&req.run_at, req.delay_ms) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::value(
                    &at("run_at"),
                    "and `delay_ms` were both given: give one",
                )
                .into())
            }
            // An absolute time may be far ahead (a yearly job); a relative delay over a
            // year is more likely a unit mistake (microseconds for milliseconds).
            (Some(t), None) => Some(parse_time(&at("run_at"), t)?),
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
        reqs: Vec<EnqueueRequest>,
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
        let now = now_millis();
        let jobs = reqs
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.new_job(r, batch.then_some(i), now))
            .collect::<Result<Vec<_>, _>>()?;
        if batch {
            let mut seen = HashMap::with_capacity(jobs.len());
            for (i, job) in jobs.iter().enumerate() {
                if let Some(first) = seen.insert(job.id.as_str(), i) {
                    return Err(ValidationError::value(
                        &format!("jobs[{i}].id"),
                        format!(
                            "repeats jobs[{first}].id {:?}: the ids of one batch must differ",
                            job.id
                        ),
                    )
                    .into());
                }
            }
        }
        let delayed = jobs.iter().any(|j| j.run_at.is_some_and(|t| t > now));
        let out = self
            .store
            .job_enqueue_many(EnqueueParams {
                queue: queue.to_string(),
                jobs,
                now,
            })
            .await?;
        let ready = out
            .iter()
            .filter(|e| e.created && e.job.state == JobState::Queued)
            .count();
        if ready > 0 {
            self.wake_claimers(queue, ready);
        }
        if delayed {
            self.maintenance_wake.notify_one();
        }
        Ok(out)
    }

    fn claim_params(
        &self,
        queue: Option<&str>,
        req: &ClaimRequest,
    ) -> Result<ClaimParams, ServiceError> {
        if let Some(q) = queue {
            validate::queue_name(q)?;
        }
        validate::worker(&req.worker)?;
        validate::range("max", req.max, 1, validate::MAX_CLAIM)?;
        validate::range("wait_ms", req.wait_ms, 0, validate::MAX_WAIT_MS)?;
        if let Some(l) = req.lease_ms {
            validate::range(
                "lease_ms",
                l,
                validate::MIN_LEASE_MS,
                validate::MAX_LEASE_MS,
            )?;
        }
        Ok(ClaimParams {
            queue: queue.unwrap_or_default().to_string(),
            worker: req.worker.clone(),
            max: req.max,
            lease_ms: req.lease_ms,
            now: 0,
        })
    }

    /// Claims jobs, waiting up to `wait_ms` for one to become eligible.
    pub async fn claim(&self, queue: &str, req: ClaimRequest) -> Result<Vec<Lease>, ServiceError> {
        let params = self.claim_params(Some(queue), &req)?;
        self.claim_waiting(params, req.wait_ms).await
    }

    async fn claim_waiting(
        &self,
        params: ClaimParams,
        wait_ms: u64,
    ) -> Result<Vec<Lease>, ServiceError> {
        let queue = params.queue.clone();
        self.long_poll(&self.queue_waiters, &queue, wait_ms, RECHECK, || {
            let mut params = params.clone();
            async move {
                params.now = now_millis();
                let leases = self.store.job_claim(params).await?;
                let done = !leases.is_empty();
                Ok((leases, done))
            }
        })
        .await
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

    /// Renews a lease.
    pub async fn heartbeat(
        &self,
        id: &str,
        token: String,
        progress: Option<serde_json::Value>,
    ) -> Result<Heartbeat, ServiceError> {
        validate::job_id(id)?;
        Ok(self
            .store
            .job_heartbeat(HeartbeatParams {
                id: id.to_string(),
                token,
                progress,
                now: now_millis(),
            })
            .await?)
    }

    fn after_report(&self, job: &Job) {
        // A report frees one slot (and maybe passes a key on): one more job may start.
        self.wake_claimers(&job.queue, 1);
        self.job_finished(job);
        if job.state == JobState::Scheduled {
            self.maintenance_wake.notify_one();
        }
    }

    /// Reports an attempt's outcome, optionally claiming the next jobs in the same transaction.
    pub async fn report(
        &self,
        id: &str,
        token: String,
        outcome: Outcome,
        claim_next: Option<ClaimRequest>,
    ) -> Result<(Job, Option<Vec<Lease>>), ServiceError> {
        validate::job_id(id)?;
        let report = ReportParams {
            id: id.to_string(),
            token,
            outcome,
            now: now_millis(),
        };
        match claim_next {
            None => {
                let mut results = self.store.job_report_many(vec![report]).await?;
                let job = results.pop().unwrap_or(Err(StoreError::Closed))?;
                self.after_report(&job);
                Ok((job, None))
            }
            Some(next) => {
                // The queue is the reported job's; the store fills it in.
                let mut params = self.claim_params(None, &next)?;
                params.now = report.now;
                let (job, leases) = self
                    .store
                    .job_report_and_claim(report, params.clone())
                    .await?;
                self.after_report(&job);
                if !leases.is_empty() || next.wait_ms == 0 {
                    return Ok((job, Some(leases)));
                }
                params.queue = job.queue.clone();
                let leases = self.claim_waiting(params, next.wait_ms).await?;
                Ok((job, Some(leases)))
            }
        }
    }

    /// Applies many reports; one result per item.
    pub async fn report_many(
        &self,
        items: Vec<ReportItem>,
    ) -> Result<Vec<Result<Job, ServiceError>>, ServiceError> {
        if items.len() > validate::MAX_BATCH_JOBS {
            return Err(ValidationError::value(
                "reports",
                format!(
                    "has {} items: at most {}",
                    items.len(),
                    validate::MAX_BATCH_JOBS
                ),
            )
            .into());
        }
        let now = now_millis();
        let mut slots: Vec<Option<Result<Job, ServiceError>>> = Vec::with_capacity(items.len());
        let mut params = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let parsed = (|| {
                validate::job_id(&item.id)?;
                let outcome = match item.outcome.as_str() {
                    "succeeded" => Outcome::Succeeded {
                        result: item.result,
                    },
                    "failed" => Outcome::Failed {
                        error: item.error.unwrap_or(serde_json::Value::Null),
                        retry: item.retry.unwrap_or(true),
                    },
                    other => {
                        return Err(ValidationError::value(
                            &format!("reports[{i}].outcome"),
                            format!("is {other:?}: use \"succeeded\" or \"failed\""),
                        ))
                    }
                };
                Ok(ReportParams {
                    id: item.id,
                    token: item.token,
                    outcome,
                    now,
                })
            })();
            match parsed {
                Ok(p) => {
                    slots.push(None);
                    params.push(p);
                }
                Err(e) => slots.push(Some(Err(e.into()))),
            }
        }
        let mut results = self.store.job_report_many(params).await?.into_iter();
        let out = slots
            .into_iter()
            .map(|s| match s {
                Some(r) => r,
                None => match results.next().unwrap_or(Err(StoreError::Closed)) {
                    Ok(job) => {
                        self.after_report(&job);
                        Ok(job)
                    }
                    Err(e) => Err(e.into()),
                },
            })
            .collect();
        Ok(out)
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Job, ServiceError> {
        validate::job_id(id)?;
        Ok(self
            .store
            .job_get(id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(id.to_string()))?)
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
        state: Option<&str>,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<Job>, ServiceError> {
        validate::queue_name(queue)?;
        let state = match state {
            None | Some("") => None,
            Some(s) => Some(JobState::parse(s).ok_or_else(|| {
                ValidationError::value(
                    "state",
                    format!(
                        "is {s:?}: use scheduled, queued, running, succeeded, failed or cancelled"
                    ),
                )
            })?),
        };
        let limit = validate::range("limit", limit.unwrap_or(100), 1, validate::MAX_LIST_LIMIT)?;
        Ok(self
            .store
            .job_list(ListParams {
                queue: queue.to_string(),
                state,
                after,
                limit,
            })
            .await?)
    }

    /// Cancels a job.
    pub async fn cancel(&self, id: &str) -> Result<Job, ServiceError> {
        validate::job_id(id)?;
        let job = self.store.job_cancel(id, now_millis()).await?;
        // Cancelling a key's first job lets the next one of the key go.
        self.wake_claimers(&job.queue, 1);
        self.job_finished(&job);
        Ok(job)
    }

    /// Puts a failed or cancelled job back in line.
    pub async fn retry(&self, id: &str) -> Result<Job, ServiceError> {
        validate::job_id(id)?;
        let job = self.store.job_retry(id, now_millis()).await?;
        self.wake_claimers(&job.queue, 1);
        Ok(job)
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
        req: QueueConfigRequest,
    ) -> Result<QueueInfo, ServiceError> {
        validate::queue_name(name)?;
        let patch = QueuePatch {
            concurrency: req.concurrency,
            max_attempts: req.max_attempts,
            backoff: req.backoff.map(|b| orderly_core::Backoff {
                initial_ms: b.initial_ms,
                max_ms: b.max_ms,
                factor: b.factor,
            }),
            lease_ms: req.lease_ms,
            paused: req.paused,
            executor: req
                .executor
                .map(|e| if e.is_null() { None } else { Some(e) }),
        };
        validate::queue_patch(&patch)?;
        if let Some(Some(_)) = &patch.executor {
            return Err(ValidationError::new(
                "not_supported",
                "`executor`: server-side executors are not available in this release; run a pull worker (`orderly worker QUEUE -- COMMAND`)",
            )
            .into());
        }
        let info = self
            .store
            .queue_configure(name, patch, now_millis())
            .await?;
        self.wake_queue(name);
        Ok(info)
    }
}
