//! Claims, and the catch-up a claim makes first: a queue's due scheduled
//! jobs become queued and its expired leases are put back in place *in the
//! claim's own transaction*, so time never lets a later job overtake an
//! earlier one just because the maintenance loop has not run yet.
//!
//! A claim never refuses: it finds nothing or fails on storage errors, so
//! it runs without a savepoint (`writer::Undo::ChecksFirst`).

use orderly_core::rules;
use orderly_core::{ClaimParams, Job, JobState, Lease, Millis, StoreError};
use rusqlite::params;

use crate::ctx::{change, WriteCtx};
use crate::kept::Prepare;
#[cfg(debug_assertions)]
use crate::rows::job_by_seq;
use crate::rows::{job_from_row, job_with_private, map_err, By, Res, JOB_COLUMN_COUNT};
use crate::sql;

impl WriteCtx<'_> {
    /// Promotes the queue's due jobs and reaps its expired leases, unless its
    /// due floor says there are none; then records the new floor.
    fn catch_up_queue(&mut self, queue: &str, now: Millis, jitter: f64) -> Res<()> {
        if self.nothing_due(queue, now) {
            return Ok(());
        }
        self.promote_due(Some(queue), now)?;
        self.reap_expired(Some(queue), now, jitter)?;
        let next: Option<Millis> = self
            .kept
            .with(sql::NEXT_DUE_IN_QUEUE, |s| {
                s.query_row([queue], |r| r.get(0))
            })
            .map_err(map_err)?;
        self.set_due_floor(queue, next);
        Ok(())
    }

    /// Makes due scheduled jobs queued (one queue, or all).
    pub(crate) fn promote_due(&mut self, queue: Option<&str>, now: Millis) -> Res<()> {
        let (query, args): (&'static str, Vec<rusqlite::types::Value>) = match queue {
            Some(q) => (
                sql::PROMOTE_DUE_IN_QUEUE,
                vec![q.to_string().into(), now.into()],
            ),
            None => (sql::PROMOTE_DUE_ALL, vec![now.into()]),
        };
        let promoted: Vec<(String, String, Option<String>, i64, Millis)> = self
            .kept
            .with(query, |stmt| {
                stmt.query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
            })
            .map_err(map_err)?;
        for (id, queue, key, seq, enqueued_at) in promoted {
            self.counted(
                &queue,
                key.as_deref(),
                Some((JobState::Scheduled, seq)),
                Some((JobState::Queued, seq)),
            );
            self.moved(orderly_core::StateChange {
                id,
                queue,
                key,
                seq,
                from: Some(JobState::Scheduled),
                to: JobState::Queued,
                at: now,
                enqueued_at,
                started_at: None,
                lease_lost: false,
            });
        }
        Ok(())
    }

    /// Handles expired leases (one queue, or all), in `seq` order: back in
    /// place, or finished, as `rules::after_lease_lost` decides.
    pub(crate) fn reap_expired(
        &mut self,
        queue: Option<&str>,
        now: Millis,
        jitter: f64,
    ) -> Res<()> {
        let mut seqs: Vec<i64> = {
            let (query, args): (&'static str, Vec<rusqlite::types::Value>) = match queue {
                Some(q) => (
                    sql::EXPIRED_IN_QUEUE,
                    vec![q.to_string().into(), now.into()],
                ),
                None => (sql::EXPIRED_ALL, vec![now.into()]),
            };
            self.kept
                .with(query, |stmt| {
                    stmt.query_map(rusqlite::params_from_iter(args), |r| r.get(0))?
                        .collect()
                })
                .map_err(map_err)?
        };
        seqs.sort_unstable();
        for seq in seqs {
            let (job, private) = job_with_private(&self.kept, By::Seq(seq))?
                .ok_or_else(|| StoreError::Backend(format!("job seq {seq} vanished")))?;
            let timed_out = private.deadline_at.is_some_and(|d| d <= now);
            let backoff = self.config(&job.queue)?.unwrap_or_default().backoff;
            let facts = rules::AttemptFacts::of(&job);
            let next = rules::after_lease_lost(&facts, timed_out, &backoff, now, jitter);
            self.end_attempt(job, &next, !timed_out, None, now)?;
        }
        Ok(())
    }

    /// Gives up the leases of workers named `prefix…` (see
    /// `Store::lease_release`), in `seq` order.
    pub(crate) fn lease_release(&mut self, prefix: &str, now: Millis) -> Res<u64> {
        let mut seqs: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare_cached(sql::RUNNING_HELD_BY)
                .map_err(map_err)?;
            let len = i64::try_from(prefix.len()).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(rusqlite::params![prefix, len], |r| r.get(0))
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        };
        seqs.sort_unstable();
        for &seq in &seqs {
            let (job, _) = job_with_private(&self.kept, By::Seq(seq))?
                .ok_or_else(|| StoreError::Backend(format!("job seq {seq} vanished")))?;
            let next = rules::after_interrupt(&rules::AttemptFacts::of(&job), now);
            self.end_attempt(job, &next, true, None, now)?;
        }
        Ok(seqs.len() as u64)
    }

    /// Claims jobs (see `Store::job_claim`).
    pub(crate) fn job_claim(&mut self, p: &ClaimParams) -> Res<Vec<Lease>> {
        let Some(config) = self.config(&p.queue)? else {
            return Ok(Vec::new());
        };
        self.catch_up_queue(&p.queue, p.now, p.jitter)?;
        if config.paused {
            return Ok(Vec::new());
        }
        let running = self.running_count(&p.queue)?;
        let capacity = rules::claim_capacity(config.concurrency, running, p.max);
        if capacity == 0 {
            return Ok(Vec::new());
        }
        let candidates: Vec<(Job, Option<i64>)> = self
            .kept
            .with(sql::CLAIM_CANDIDATES, |stmt| {
                stmt.query_map(params![p.queue, capacity], |r| {
                    Ok((job_from_row(r)?, r.get(JOB_COLUMN_COUNT)?))
                })?
                .collect()
            })
            .map_err(map_err)?;
        let lease_ms = p.lease_ms.unwrap_or(config.lease_ms);
        let mut leases = Vec::with_capacity(candidates.len());
        for (job, prev_start_no) in candidates {
            leases.push(self.start(job, prev_start_no, lease_ms, p)?);
        }
        Ok(leases)
    }

    /// Starts one job (as its row was read): a new attempt under a new
    /// lease, recorded in the start log. The job as started is made from
    /// the row read and what the `UPDATE` wrote (a debug build reads it
    /// back and checks, as `end_attempt` does).
    fn start(
        &mut self,
        job: Job,
        prev_start_no: Option<i64>,
        lease_ms: u64,
        p: &ClaimParams,
    ) -> Res<Lease> {
        let seq = job.seq;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let start_no = self.take_start_no()?;
        let deadline = job
            .timeout_ms
            .map(|t| p.now.saturating_add(i64::try_from(t).unwrap_or(i64::MAX)));
        let expires_at = rules::lease_expiry(p.now, lease_ms, deadline);
        // No `RETURNING`: SQLite gathers its rows in an ephemeral table,
        // which cost more than the update itself; the row is read back by
        // its key instead.
        self.kept
            .with(
                "UPDATE jobs SET state = 'running', attempt = attempt + 1, started_at = ?2,
                    lease_token = ?3, lease_worker = ?4, lease_ms = ?5,
                    deadline_at = ?6, lease_expires_at = ?7, start_no = ?8, last_start_no = ?8
                 WHERE seq = ?1",
                |stmt| {
                    stmt.execute(params![
                        seq,
                        p.now,
                        token,
                        p.worker,
                        lease_ms as i64,
                        deadline,
                        expires_at,
                        start_no
                    ])
                },
            )
            .map_err(map_err)?;
        let job = Job {
            state: JobState::Running,
            attempt: job.attempt + 1,
            started_at: Some(p.now),
            lease_expires_at: Some(expires_at),
            worker: Some(p.worker.clone()),
            start_no: Some(start_no),
            ..job
        };
        #[cfg(debug_assertions)]
        assert_eq!(
            job,
            job_by_seq(&self.kept, seq)?,
            "a started job differs from its row"
        );
        self.kept.with(
                "INSERT INTO starts (start_no, seq, job_id, attempt, worker, started_at, prev_start_no, queue, key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", |s| {
                s.execute(params![
                    start_no,
                    seq,
                    job.id,
                    job.attempt,
                    p.worker,
                    p.now,
                    prev_start_no,
                    job.queue,
                    job.key
                ])
            })
            .map_err(map_err)?;
        self.counted(
            &job.queue,
            job.key.as_deref(),
            Some((JobState::Queued, seq)),
            Some((JobState::Running, seq)),
        );
        self.lower_due_floor(&p.queue, expires_at);
        self.moved(change(
            &job,
            Some(JobState::Queued),
            JobState::Running,
            p.now,
        ));
        Ok(Lease {
            job,
            token,
            expires_at,
            lease_ms: (expires_at - p.now).max(0) as u64,
        })
    }
}
