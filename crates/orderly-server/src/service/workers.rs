//! The worker protocol of the service layer: claims (long-polled through
//! [`Service::long_poll`]), heartbeats, and reports, one at a time or many
//! in one call, with `claim_next` claiming the next leases in the same
//! store call.

use orderly_core::validate::{self, ValidationError};
use std::time::Duration;

use orderly_core::{
    ClaimParams, Committed, Heartbeat, HeartbeatParams, Job, Lease, Millis, Outcome, ParkTicket,
    ReportParams, StoreError,
};
use serde_json::Value;

use super::{ClaimRequest, ReportRequest, ReportedItem, Service, RECHECK};
use crate::error::ServiceError;

impl Service {
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
            jitter: 0.0,
        })
    }

    /// Claims jobs, waiting up to `wait_ms` for one to become eligible.
    pub async fn claim(&self, queue: &str, req: ClaimRequest) -> Result<Vec<Lease>, ServiceError> {
        let params = self.claim_params(Some(queue), &req)?;
        self.claim_waiting(params, req.wait_ms).await
    }

    /// A long poll for leases. Each attempt is parked in the store
    /// ([`Store::job_claim_parked`](orderly_core::Store::job_claim_parked)):
    /// a store that holds it answers from the commit that gives it work.
    /// A wake-up the store did not see (a queue resumed, a change on another
    /// node, the periodic recheck) withdraws the parked attempt and makes a
    /// new one; a store that cannot park answers at once, and the poll waits
    /// for those wake-ups as before.
    async fn claim_waiting(
        &self,
        params: ClaimParams,
        wait_ms: u64,
    ) -> Result<Vec<Lease>, ServiceError> {
        let queue = params.queue.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let notify = self.queue_waiters.get(&queue);
        let result = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut attempt = params.clone();
            attempt.now = self.now();
            attempt.jitter = rand::random();
            let now = tokio::time::Instant::now();
            let wake_at = deadline.min(now + RECHECK);
            let may_wait = now < deadline && !self.shutdown.is_cancelled();
            let answered = if may_wait {
                let ticket = ParkTicket::new();
                let claim = self.store.job_claim_parked(attempt.clone(), ticket.clone());
                tokio::pin!(claim);
                let answered = tokio::select! {
                    biased;
                    out = &mut claim => Some(out),
                    _ = notified.as_mut() => None,
                    _ = tokio::time::sleep_until(wake_at) => None,
                    _ = self.shutdown.cancelled() => None,
                };
                match answered {
                    Some(out) => Some(out),
                    None => withdraw(&ticket, claim.as_mut()).await,
                }
            } else {
                Some(self.store.job_claim(attempt.clone()).await)
            };
            let Some(out) = answered else {
                // Withdrawn unrun: look again at once.
                continue;
            };
            // A claim that caught its queue up may have made more jobs
            // ready than it took, or finished some: tell their waiters.
            let leases = match out {
                Ok(out) => self.woken(out),
                Err(e) => break Err(e.into()),
            };
            // A worker was claiming until now (a parked attempt waited in the store).
            self.pace.claimed(&attempt.queue, self.now());
            let now = tokio::time::Instant::now();
            if !leases.is_empty() || now >= deadline || self.shutdown.is_cancelled() {
                break Ok(leases);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline.min(now + RECHECK)) => {}
                _ = self.shutdown.cancelled() => {}
            }
        };
        self.queue_waiters.release(&queue, notify);
        result
    }

    /// Renews a lease.
    pub async fn heartbeat(
        &self,
        id: &str,
        token: String,
        progress: Option<Value>,
    ) -> Result<Heartbeat, ServiceError> {
        validate::job_id(id)?;
        let now = self.now();
        // Newest event before the heartbeat: see `EventHub::progress_of`.
        let mark = self.events.last_id();
        let beat = self
            .store
            .job_heartbeat(HeartbeatParams {
                id: id.to_string(),
                token,
                progress: progress.clone(),
                now,
            })
            .await?;
        if let Some(p) = progress {
            if !self.events.progress(id, &p, now) {
                // Started before this process (the hub did not see it start).
                if let Ok(Some(job)) = self.store.job_get(id).await {
                    self.events.progress_of(mark, &job, &p, now);
                }
            }
        }
        Ok(beat)
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
        validate::outcome(&outcome, "retry_after_ms")?;
        let report = ReportParams {
            id: id.to_string(),
            token,
            outcome,
            now: self.now(),
            jitter: rand::random(),
        };
        let now = report.now;
        match claim_next {
            None => {
                let mut results = self.store.job_report_many(vec![report]).await;
                let out = results.pop().unwrap_or(Err(StoreError::Closed))?;
                let job = self.woken(out);
                Ok((self.explained(job, now).await, None))
            }
            Some(next) => {
                // The queue is the reported job's; the store fills it in.
                let mut params = self.claim_params(None, &next)?;
                params.now = report.now;
                params.jitter = report.jitter;
                let out = self
                    .store
                    .job_report_and_claim(report, params.clone())
                    .await?;
                let (job, leases) = self.woken(out);
                let job = self.explained(job, now).await;
                if !leases.is_empty() || next.wait_ms == 0 {
                    return Ok((job, Some(leases)));
                }
                params.queue = job.queue.clone();
                let leases = self.claim_waiting(params, next.wait_ms).await?;
                Ok((job, Some(leases)))
            }
        }
    }

    /// Checks item `index`'s `claim_next` as a whole-request rule of
    /// `POST /v1/reports`: the fields in range (named
    /// `reports[i].claim_next.FIELD`) and no long poll.
    pub fn check_batch_claim(index: usize, req: &ClaimRequest) -> Result<(), ValidationError> {
        let field = |f: &str| format!("reports[{index}].claim_next.{f}");
        if req.worker.is_empty() || req.worker.len() > validate::MAX_WORKER_BYTES {
            return Err(ValidationError::value(
                &field("worker"),
                format!("must be 1 to {} bytes", validate::MAX_WORKER_BYTES),
            ));
        }
        validate::range(&field("max"), req.max, 1, validate::MAX_CLAIM)?;
        if req.wait_ms != 0 {
            return Err(ValidationError::value(
                &field("wait_ms"),
                format!(
                    "is {}: a batch of reports does not wait, it must be 0 (or absent)",
                    req.wait_ms
                ),
            ));
        }
        if let Some(l) = req.lease_ms {
            validate::range(
                &field("lease_ms"),
                l,
                validate::MIN_LEASE_MS,
                validate::MAX_LEASE_MS,
            )?;
        }
        Ok(())
    }

    /// Applies many reports; one result per item, in order. Items the
    /// caller could not read are passed as their error and answered in their
    /// slot; each report commits or fails on its own, and the waiters of
    /// every committed one are woken. An item with `claim_next` also claims
    /// on its job's queue, in its report's transaction (as [`Self::report`]
    /// does): a refused report claims nothing.
    ///
    /// The items' store calls are issued together, in order (one future
    /// each, polled in item order), so a store that group-commits concurrent
    /// writes (the SQLite writer) commits the batch in one transaction or
    /// very few, while each item keeps its own savepoint and its own answer.
    /// A `claim_next` out of range or with a `wait_ms` is an error of the
    /// whole request, before anything is written.
    pub async fn report_many(
        &self,
        items: Vec<Result<ReportRequest, ValidationError>>,
    ) -> Result<Vec<Result<ReportedItem, ServiceError>>, ServiceError> {
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
        let mut claims = false;
        for (index, item) in items.iter().enumerate() {
            if let Ok(ReportRequest {
                claim_next: Some(c),
                ..
            }) = item
            {
                Self::check_batch_claim(index, c)?;
                claims = true;
            }
        }
        let now = self.now();
        if !claims {
            return Ok(self.reports_only(items, now).await);
        }
        let calls = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| self.report_item(index, item, now));
        let results: Vec<Result<ReportedItem, ServiceError>> =
            futures::future::join_all(calls).await;
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            out.push(match r {
                Ok((job, leases)) => Ok((self.explained(job, now).await, leases)),
                Err(e) => Err(e),
            });
        }
        Ok(out)
    }

    /// [`Self::report_many`] without any `claim_next`: one store call.
    async fn reports_only(
        &self,
        items: Vec<Result<ReportRequest, ValidationError>>,
        now: Millis,
    ) -> Vec<Result<ReportedItem, ServiceError>> {
        let mut slots: Vec<Option<Result<ReportedItem, ServiceError>>> =
            Vec::with_capacity(items.len());
        let mut params = Vec::new();
        for item in items {
            let index = slots.len();
            match item.and_then(|r| {
                validate::job_id(&r.id)?;
                validate::outcome(&r.outcome, &format!("reports[{index}].retry_after_ms"))?;
                Ok(r)
            }) {
                Ok(r) => {
                    slots.push(None);
                    params.push(ReportParams {
                        id: r.id,
                        token: r.token,
                        outcome: r.outcome,
                        now,
                        jitter: rand::random(),
                    });
                }
                Err(e) => slots.push(Some(Err(e.into()))),
            }
        }
        let mut results = self.store.job_report_many(params).await.into_iter();
        let mut out = Vec::with_capacity(slots.len());
        for s in slots {
            out.push(match s {
                Some(r) => r,
                None => match results.next().unwrap_or(Err(StoreError::Closed)) {
                    Ok(done) => {
                        let job = self.woken(done);
                        Ok((self.explained(job, now).await, None))
                    }
                    Err(e) => Err(e.into()),
                },
            });
        }
        out
    }

    /// Item `index` of [`Self::report_many`]: checked, then one store call.
    async fn report_item(
        &self,
        index: usize,
        item: Result<ReportRequest, ValidationError>,
        now: Millis,
    ) -> Result<ReportedItem, ServiceError> {
        let r = item?;
        validate::job_id(&r.id)?;
        validate::outcome(&r.outcome, &format!("reports[{index}].retry_after_ms"))?;
        let report = ReportParams {
            id: r.id,
            token: r.token,
            outcome: r.outcome,
            now,
            jitter: rand::random(),
        };
        let Some(next) = r.claim_next else {
            let mut results = self.store.job_report_many(vec![report]).await;
            let out = results.pop().unwrap_or(Err(StoreError::Closed))?;
            return Ok((self.woken(out), None));
        };
        let params = ClaimParams {
            // The store claims on the reported job's queue.
            queue: String::new(),
            worker: next.worker,
            max: next.max,
            lease_ms: next.lease_ms,
            now,
            jitter: report.jitter,
        };
        let out = self.store.job_report_and_claim(report, params).await?;
        let (job, leases) = self.woken(out);
        self.pace.claimed(&job.queue, now);
        Ok((job, Some(leases)))
    }
}

/// Takes a parked claim back from the store: `None` once it is withdrawn
/// unrun, or the store's answer if the store was running it.
async fn withdraw<F>(
    ticket: &ParkTicket,
    mut claim: std::pin::Pin<&mut F>,
) -> Option<Result<Committed<Vec<Lease>>, StoreError>>
where
    F: std::future::Future<Output = Result<Committed<Vec<Lease>>, StoreError>>,
{
    loop {
        if ticket.withdraw() {
            return None;
        }
        // The store is running it now: it answers, or parks it again.
        tokio::select! {
            out = claim.as_mut() => return Some(out),
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
}
