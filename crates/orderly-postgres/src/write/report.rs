//! Heartbeats and reports. Every one is fenced by the lease token: only the
//! current, unexpired lease of a running job may renew it or end its attempt.
//! A heartbeat locks only its job's row; a report locks its queue's row
//! first (ending an attempt frees a slot and may pass a key on).
//!
//! A report sent again after its answer was lost (same token, same outcome)
//! is recognised by `reported_token` and answered as the first one was: the
//! job as that report left it and, for a report that also claimed, exactly
//! the leases that report's commit issued (`reported_leases`, as job ids and
//! tokens), those still current.

use orderly_core::rules;
use orderly_core::{
    ClaimParams, Heartbeat, HeartbeatParams, Job, JobState, Lease, Millis, QueueConfig,
    ReportParams, StoreError,
};

use super::Op;
use crate::read::job_by_id;
use crate::rows::{map_err, to_text, Private, Res};

/// How a report went.
pub(crate) enum Reported {
    /// It ended the attempt: the job after it.
    Applied(Job),
    /// It repeats the report that already ended the attempt: the job now,
    /// and the leases that report's commit issued (`None` if it claimed nothing).
    Repeated(Job, Option<Vec<(String, String)>>),
}

fn stale(id: &str, reason: String) -> StoreError {
    StoreError::StaleLease {
        id: id.into(),
        reason,
    }
}

/// Checks that `token` is the current, unexpired lease of `job`.
fn check_lease(job: &Job, private: &Private, token: &str, now: Millis) -> Res<()> {
    if job.state != JobState::Running {
        return Err(stale(&job.id, format!("the job is {}", job.state)));
    }
    if private.lease_token.as_deref() != Some(token) {
        return Err(stale(
            &job.id,
            format!(
                "the token is not the lease of the current attempt ({})",
                job.attempt
            ),
        ));
    }
    if job.lease_expires_at.is_some_and(|e| e <= now) {
        return Err(stale(&job.id, "the lease expired".into()));
    }
    Ok(())
}

impl Op<'_, '_> {
    /// The job `id` with its row locked, if `token` is its current lease.
    async fn current_lease(&self, id: &str, token: &str, now: Millis) -> Res<(Job, Private)> {
        let (job, private) = self
            .job_for_update(id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        check_lease(&job, &private, token, now)?;
        Ok((job, private))
    }

    /// Renews a lease.
    pub async fn job_heartbeat(&mut self, p: &HeartbeatParams) -> Res<Heartbeat> {
        let (job, private) = self.current_lease(&p.id, &p.token, p.now).await?;
        let lease_ms = private
            .lease_ms
            .unwrap_or(QueueConfig::DEFAULT_LEASE_MS as i64)
            .max(0) as u64;
        let expires_at = rules::lease_expiry(p.now, lease_ms, private.deadline_at);
        self.tx
            .execute(
                "UPDATE jobs SET lease_expires_at = $2, progress = coalesce($3, progress) WHERE id = $1",
                &[&job.id, &expires_at, &p.progress.as_ref().map(to_text)],
            )
            .await
            .map_err(map_err)?;
        Ok(Heartbeat {
            expires_at,
            lease_ms: (expires_at - p.now).max(0) as u64,
            cancel_requested: job.cancel_requested,
        })
    }

    /// Applies one report, or recognises it as a repeat (locks the queue).
    pub async fn job_report(&mut self, p: &ReportParams) -> Res<Reported> {
        let queue = self.queue_of(&p.id).await?;
        self.lock_queue(&queue).await?;
        let reported = self.apply_report(p).await?;
        if let Reported::Applied(job) = &reported {
            self.remember_report(&job.id, p, None).await?;
        }
        Ok(reported)
    }

    /// Remembers the report that ended `id`'s attempt and, when it also
    /// claimed, the leases its commit issued.
    async fn remember_report(
        &self,
        id: &str,
        p: &ReportParams,
        issued: Option<&[Lease]>,
    ) -> Res<()> {
        let issued = issued
            .map(|leases| {
                let pairs: Vec<(&str, &str)> = leases
                    .iter()
                    .map(|l| (l.job.id.as_str(), l.token.as_str()))
                    .collect();
                serde_json::to_string(&pairs).map_err(|e| StoreError::Backend(e.to_string()))
            })
            .transpose()?;
        self.tx
            .execute(
                "UPDATE jobs SET reported_token = $2, reported_leases = $3 WHERE id = $1",
                &[
                    &id,
                    &rules::remembered_report(&p.token, &p.outcome),
                    &issued,
                ],
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Ends the attempt a report is about (the caller holds the queue's
    /// lock), or recognises the report as a repeat.
    async fn apply_report(&mut self, p: &ReportParams) -> Res<Reported> {
        let job = match self.current_lease(&p.id, &p.token, p.now).await {
            Ok((job, _)) => job,
            Err(e @ StoreError::StaleLease { .. }) => {
                let issued = self
                    .tx
                    .query_opt(
                        "SELECT reported_leases FROM jobs WHERE id = $1 AND reported_token = $2",
                        &[&p.id, &rules::remembered_report(&p.token, &p.outcome)],
                    )
                    .await
                    .map_err(map_err)?
                    .map(|r| r.get::<_, Option<String>>(0));
                return match (issued, job_by_id(self.tx, &p.id).await?) {
                    (Some(issued), Some(job)) => {
                        let issued = issued
                            .map(|t| {
                                serde_json::from_str::<Vec<(String, String)>>(&t).map_err(|e| {
                                    StoreError::Corrupt(format!(
                                        "job {:?}: reported_leases: {e}",
                                        p.id
                                    ))
                                })
                            })
                            .transpose()?;
                        Ok(Reported::Repeated(job, issued))
                    }
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let backoff = crate::read::queue_row(self.tx, &job.queue)
            .await?
            .unwrap_or_default()
            .backoff;
        let facts = rules::AttemptFacts::of(&job);
        let next = rules::after_report(&facts, &p.outcome, &backoff, p.now, p.jitter);
        let after = self.end_attempt(&job, &next, false, p.now).await?;
        Ok(Reported::Applied(after))
    }

    /// Reports one attempt and claims the next jobs of its queue in the same
    /// transaction (see `Store::job_report_and_claim`).
    pub async fn job_report_and_claim(
        &mut self,
        report: &ReportParams,
        claim: &ClaimParams,
    ) -> Res<(Job, Vec<Lease>)> {
        let queue = self.queue_of(&report.id).await?;
        let config = self.lock_queue(&queue).await?.unwrap_or_default();
        let job = match self.apply_report(report).await? {
            Reported::Applied(job) => job,
            Reported::Repeated(job, Some(issued)) => {
                let still = self.still_current(&issued, claim.now).await?;
                if !still.is_empty() {
                    return Ok((job, still));
                }
                job
            }
            Reported::Repeated(job, None) => job,
        };
        let claim = ClaimParams {
            queue: job.queue.clone(),
            ..claim.clone()
        };
        let leases = self.claim_locked(&claim, &config).await?;
        self.remember_report(&job.id, report, Some(&leases)).await?;
        Ok((job, leases))
    }

    /// The leases of `issued` that are still current at `now`, in `seq` order.
    async fn still_current(&self, issued: &[(String, String)], now: Millis) -> Res<Vec<Lease>> {
        let mut out = Vec::new();
        for (id, token) in issued {
            let Some((job, private)) = self.job_for_update(id).await? else {
                continue;
            };
            let current = job.state == JobState::Running
                && private.lease_token.as_deref() == Some(token.as_str());
            match job.lease_expires_at {
                Some(expires_at) if current && expires_at > now => {
                    let lease_ms = rules::granted_lease_ms(
                        private.lease_ms,
                        private.deadline_at,
                        job.started_at,
                    );
                    out.push(Lease {
                        lease_ms,
                        job,
                        token: token.clone(),
                        expires_at,
                    })
                }
                _ => {}
            }
        }
        out.sort_by_key(|l| l.job.seq);
        Ok(out)
    }
}
