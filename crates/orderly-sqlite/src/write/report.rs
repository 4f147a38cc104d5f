//! Heartbeats and reports. Every one is fenced by the lease token: only the
//! current, unexpired lease of a running job may renew it or end its attempt.
//!
//! A report sent again after its answer was lost (same token, same outcome)
//! is recognised by `reported_token` and answered as the first one was: the
//! job as that report left it and, for a report that also claimed, exactly
//! the leases that report's commit issued (`reported_leases`), those still
//! current. Leases held by anyone else, even under the same worker name, are
//! never handed out: names are chosen by clients and prove nothing.
//!
//! Every refusal here (unknown job, stale lease) comes before the first
//! write: these run without a savepoint (`writer::Undo::ChecksFirst`), so a
//! check added after a write would fail its whole group.

use orderly_core::rules;
use orderly_core::{
    ClaimParams, Heartbeat, HeartbeatParams, Job, JobState, Lease, Millis, QueueConfig,
    ReportParams, StoreError,
};
use rusqlite::{params, OptionalExtension};

use crate::ctx::WriteCtx;
use crate::kept::Prepare;
use crate::rows::{job_by_id, job_with_private, map_err, to_text, By, Private, Res};
use crate::write::Ended;

/// The leases a report's commit issued, as `reported_leases` keeps them
/// (`None` when it issued none).
fn issued_text(issued: &[Lease]) -> Res<Option<String>> {
    if issued.is_empty() {
        return Ok(None);
    }
    let pairs: Vec<(i64, &str)> = issued
        .iter()
        .map(|l| (l.job.seq, l.token.as_str()))
        .collect();
    serde_json::to_string(&pairs)
        .map(Some)
        .map_err(|e| StoreError::Backend(e.to_string()))
}

/// How a report is going: applied but for its deferred write, or a repeat.
enum Pending {
    /// It ended the attempt (see `WriteCtx::end_attempt_deferred`).
    Applied(Ended),
    /// It repeats the report that already ended the attempt: the job now,
    /// and the leases that report's commit issued (`None` if it claimed nothing).
    Repeated(Job, Option<Vec<(i64, String)>>),
}

/// How a report went.
pub(crate) enum Reported {
    /// It ended the attempt: the job after it.
    Applied(Job),
    /// It repeats the report that already ended the attempt: the job now.
    Repeated(Job),
}

impl WriteCtx<'_> {
    /// Checks that `token` is the current, unexpired lease of job `id`.
    fn current_lease(&self, id: &str, token: &str, now: Millis) -> Res<(Job, Private)> {
        let (job, private) = job_with_private(&self.kept, By::Id(id))?
            .ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        let stale = |reason: String| StoreError::StaleLease {
            id: id.into(),
            reason,
        };
        if job.state != JobState::Running {
            return Err(stale(format!("the job is {}", job.state)));
        }
        if private.lease_token.as_deref() != Some(token) {
            return Err(stale(format!(
                "the token is not the lease of the current attempt ({})",
                job.attempt
            )));
        }
        if job.lease_expires_at.is_some_and(|e| e <= now) {
            return Err(stale("the lease expired".into()));
        }
        Ok((job, private))
    }

    /// Renews a lease.
    pub(crate) fn job_heartbeat(&mut self, p: &HeartbeatParams) -> Res<Heartbeat> {
        let (job, private) = self.current_lease(&p.id, &p.token, p.now)?;
        let lease_ms = private
            .lease_ms
            .unwrap_or(QueueConfig::DEFAULT_LEASE_MS as i64)
            .max(0) as u64;
        let expires_at = rules::lease_expiry(p.now, lease_ms, private.deadline_at);
        self.kept.with("UPDATE jobs SET lease_expires_at = ?2, progress = coalesce(?3, progress) WHERE seq = ?1", |s| s.execute(params![job.seq, expires_at, p.progress.as_ref().map(to_text)]))
            .map_err(map_err)?;
        // A renewal only moves the expiry later; lowering keeps the floor a lower bound regardless.
        self.lower_due_floor(&job.queue, expires_at);
        Ok(Heartbeat {
            expires_at,
            lease_ms: (expires_at - p.now).max(0) as u64,
            cancel_requested: job.cancel_requested,
        })
    }

    /// Applies one report, or recognises it as a repeat.
    pub(crate) fn job_report(&mut self, p: &ReportParams) -> Res<Reported> {
        self.apply_report(p)
    }

    /// Remembers the leases that the commit of the report that ended
    /// `seq`'s attempt issued (the report itself is remembered by
    /// `end_attempt`, in the row's `UPDATE`).
    fn remember_issued(&self, seq: i64, text: &str) -> Res<()> {
        self.kept
            .with("UPDATE jobs SET reported_leases = ?2 WHERE seq = ?1", |s| {
                s.execute(params![seq, text])
            })
            .map_err(map_err)?;
        Ok(())
    }

    /// Ends the attempt a report is about, remembering the report in the
    /// same write of the row, or recognises the report as a repeat.
    fn apply_report(&mut self, p: &ReportParams) -> Res<Reported> {
        Ok(match self.apply_report_deferred(p)? {
            Pending::Applied(ended) => Reported::Applied(self.finish_row(ended, None)?),
            Pending::Repeated(job, _) => Reported::Repeated(job),
        })
    }

    /// [`Self::apply_report`], leaving the finishing write of a keyless job
    /// to [`WriteCtx::finish_row`] (see `end_attempt_deferred`).
    fn apply_report_deferred(&mut self, p: &ReportParams) -> Res<Pending> {
        let remembered = rules::remembered_report(&p.token, &p.outcome);
        let job = match self.current_lease(&p.id, &p.token, p.now) {
            Ok((job, _)) => job,
            Err(e @ StoreError::StaleLease { .. }) => {
                let issued: Option<Option<String>> = self
                    .kept
                    .with(
                        "SELECT reported_leases FROM jobs WHERE id = ?1 AND reported_token = ?2",
                        |s| {
                            s.query_row(params![p.id, remembered], |r| r.get(0))
                                .optional()
                        },
                    )
                    .map_err(map_err)?;
                return match (issued, job_by_id(&self.kept, &p.id)?) {
                    (Some(issued), Some(job)) => {
                        let issued = issued
                            .map(|t| {
                                serde_json::from_str::<Vec<(i64, String)>>(&t).map_err(|e| {
                                    StoreError::Corrupt(format!(
                                        "job {:?}: reported_leases: {e}",
                                        p.id
                                    ))
                                })
                            })
                            .transpose()?;
                        Ok(Pending::Repeated(job, issued))
                    }
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let backoff = self.config(&job.queue)?.unwrap_or_default().backoff;
        let facts = rules::AttemptFacts::of(&job);
        let next = rules::after_report(&facts, &p.outcome, &backoff, p.now, p.jitter);
        let ended = self.end_attempt_deferred(job, &next, false, Some(&remembered), p.now)?;
        // A job back in line gets its position after the commit (see `read::fill_positions`).
        Ok(Pending::Applied(ended))
    }

    /// Reports one attempt and claims the next jobs in the same transaction
    /// (see `Store::job_report_and_claim`).
    pub(crate) fn job_report_and_claim(
        &mut self,
        report: &ReportParams,
        claim: &ClaimParams,
    ) -> Res<(Job, Vec<Lease>)> {
        let ended = match self.apply_report_deferred(report)? {
            Pending::Applied(ended) => ended,
            Pending::Repeated(job, issued) => return self.repeat_and_claim(job, issued, claim),
        };
        let claim = ClaimParams {
            queue: ended.after.queue.clone(),
            ..claim.clone()
        };
        let leases = self.job_claim(&claim)?;
        // What it issued, so a repeat gets the same leases back: in the
        // report's own write of the row when that waited for the claim (a
        // keyless job that finished), else in a second one. (Nothing issued
        // needs no write: a repeat then claims anew, as it would from an
        // empty list.)
        let issued = issued_text(&leases)?;
        let job = if ended.defers_its_row() {
            self.finish_row(ended, issued.as_deref())?
        } else {
            let job = self.finish_row(ended, None)?;
            if let Some(text) = &issued {
                self.remember_issued(job.seq, text)?;
            }
            job
        };
        Ok((job, leases))
    }

    /// A repeated report with a claim: the leases the first one's commit
    /// issued, those still current, or (if none is) a new claim, remembered.
    fn repeat_and_claim(
        &mut self,
        job: Job,
        issued: Option<Vec<(i64, String)>>,
        claim: &ClaimParams,
    ) -> Res<(Job, Vec<Lease>)> {
        if let Some(issued) = issued {
            let still = self.still_current(&issued, claim.now)?;
            // What the lost answer carried, as far as it still holds. If none
            // of it does, the worker is free to take new work.
            if !still.is_empty() {
                return Ok((job, still));
            }
        }
        let claim = ClaimParams {
            queue: job.queue.clone(),
            ..claim.clone()
        };
        let leases = self.job_claim(&claim)?;
        // A repeat that claims anew records what it issued too: its answer
        // may be lost as well.
        if let Some(text) = issued_text(&leases)? {
            self.remember_issued(job.seq, &text)?;
        }
        Ok((job, leases))
    }

    /// The leases of `issued` that are still current at `now`, in `seq` order.
    fn still_current(&self, issued: &[(i64, String)], now: Millis) -> Res<Vec<Lease>> {
        let mut out = Vec::new();
        for (seq, token) in issued {
            let Some((job, private)) = job_with_private(&self.kept, By::Seq(*seq))? else {
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
        Ok(out)
    }
}
