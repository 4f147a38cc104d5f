//! Claims, and the catch-up a claim makes first: a queue's due scheduled
//! jobs become queued and its expired leases are put back in place *in the
//! claim's own transaction*, under the queue's lock, so time never lets a
//! later job overtake an earlier one.
//!
//! Strict order across nodes: a claim locks its queue's row (`FOR UPDATE`),
//! so the claims of one queue run one at a time whichever node makes them;
//! it then reads the queue's running count (one trigger-kept row) and takes
//! the first `concurrency - running` rows of `jobs_ready` (key heads and
//! keyless jobs, state `queued`) in `seq` order: it reads only what it
//! starts. `FOR UPDATE SKIP LOCKED` is never used: a skipped row would be an
//! earlier job passed over.

use orderly_core::rules;
use orderly_core::{ClaimParams, JobState, Lease, Millis, StoreError};

use super::Op;
use crate::rows::{change, job_from_row, map_err, Res, JOB_COLUMNS};

/// Due scheduled jobs of a queue become queued. (`jobs_due`)
pub(crate) const PROMOTE_DUE_IN_QUEUE: &str = "UPDATE jobs SET state = 'queued' \
    WHERE queue = $1 AND state = 'scheduled' AND seq IS NOT NULL AND run_at <= $2 \
    RETURNING id, queue, key, seq, enqueued_at";
/// Expired leases of a queue. (`jobs_leases`)
pub(crate) const EXPIRED_IN_QUEUE: &str = "SELECT id FROM jobs \
    WHERE queue = $1 AND state = 'running' AND lease_expires_at <= $2 ORDER BY seq";
/// The front of a queue's ready line. (`jobs_ready`)
pub(crate) const CLAIM_CANDIDATES: &str = "SELECT id, timeout_ms, last_start_no FROM jobs \
    WHERE queue = $1 AND state = 'queued' AND head ORDER BY seq LIMIT $2";

impl Op<'_, '_> {
    /// Promotes the queue's due jobs and reaps its expired leases (the
    /// caller holds the queue's lock).
    pub async fn catch_up_queue(&mut self, queue: &str, now: Millis, jitter: f64) -> Res<()> {
        let promoted = self
            .tx
            .query(PROMOTE_DUE_IN_QUEUE, &[&queue, &now])
            .await
            .map_err(map_err)?;
        let mut promoted: Vec<_> = promoted
            .iter()
            .map(|r| orderly_core::StateChange {
                id: r.get("id"),
                queue: r.get("queue"),
                key: r.get("key"),
                seq: r.get("seq"),
                from: Some(JobState::Scheduled),
                to: JobState::Queued,
                at: now,
                enqueued_at: r.get("enqueued_at"),
                started_at: None,
                lease_lost: false,
            })
            .collect();
        promoted.sort_by_key(|c| c.seq);
        for c in promoted {
            self.moved(c);
        }
        let expired: Vec<String> = self
            .tx
            .query(EXPIRED_IN_QUEUE, &[&queue, &now])
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in expired {
            self.reap(&id, now, jitter).await?;
        }
        Ok(())
    }

    /// Ends the attempt of job `id` if its lease has expired at `now`, as
    /// `rules::after_lease_lost` decides (the caller holds the queue's lock).
    async fn reap(&mut self, id: &str, now: Millis, jitter: f64) -> Res<()> {
        let Some((job, private)) = self.job_for_update(id).await? else {
            return Ok(());
        };
        // Re-read under the row lock: a heartbeat may have renewed it.
        if job.state != JobState::Running || job.lease_expires_at.is_none_or(|e| e > now) {
            return Ok(());
        }
        let timed_out = private.deadline_at.is_some_and(|d| d <= now);
        let backoff = crate::read::queue_row(self.tx, &job.queue)
            .await?
            .unwrap_or_default()
            .backoff;
        let facts = rules::AttemptFacts::of(&job);
        let next = rules::after_lease_lost(&facts, timed_out, &backoff, now, jitter);
        self.end_attempt(&job, &next, !timed_out, now).await?;
        Ok(())
    }

    /// Gives up the leases of workers named `prefix…` (see
    /// `Store::lease_release`), in `seq` order, under their queues' locks.
    pub async fn lease_release(&mut self, prefix: &str, now: Millis) -> Res<u64> {
        let rows = self
            .tx
            .query(
                "SELECT id, queue FROM jobs WHERE state = 'running' AND starts_with(lease_worker, $1) ORDER BY seq",
                &[&prefix],
            )
            .await
            .map_err(map_err)?;
        let queues: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
        self.lock_queues(&queues).await?;
        let mut released = 0;
        for row in &rows {
            let id: String = row.get(0);
            let Some((job, _)) = self.job_for_update(&id).await? else {
                continue;
            };
            let held = job.state == JobState::Running
                && job.worker.as_deref().is_some_and(|w| w.starts_with(prefix));
            if !held {
                continue;
            }
            let next = rules::after_interrupt(&rules::AttemptFacts::of(&job), now);
            self.end_attempt(&job, &next, true, now).await?;
            released += 1;
        }
        Ok(released)
    }

    /// Claims jobs (see `Store::job_claim`): locks the queue, catches it up,
    /// then starts the front of its ready line.
    pub async fn job_claim(&mut self, p: &ClaimParams) -> Res<Vec<Lease>> {
        let Some(config) = self.lock_queue(&p.queue).await? else {
            return Ok(Vec::new());
        };
        self.claim_locked(p, &config).await
    }

    /// [`Self::job_claim`] once the queue's lock is held.
    pub async fn claim_locked(
        &mut self,
        p: &ClaimParams,
        config: &orderly_core::QueueConfig,
    ) -> Res<Vec<Lease>> {
        self.catch_up_queue(&p.queue, p.now, p.jitter).await?;
        if config.paused {
            return Ok(Vec::new());
        }
        let running = crate::read::running_count(self.tx, &p.queue).await?;
        let capacity = rules::claim_capacity(config.concurrency, running, p.max);
        if capacity == 0 {
            return Ok(Vec::new());
        }
        let candidates = self
            .tx
            .query(CLAIM_CANDIDATES, &[&p.queue, &i64::from(capacity)])
            .await
            .map_err(map_err)?;
        let lease_ms = p.lease_ms.unwrap_or(config.lease_ms);
        let mut leases = Vec::with_capacity(candidates.len());
        for row in candidates {
            leases.push(
                self.start(row.get(0), row.get(1), row.get(2), lease_ms, p)
                    .await?,
            );
        }
        Ok(leases)
    }

    /// Starts one job: a new attempt under a new lease, recorded in the start log.
    async fn start(
        &mut self,
        id: String,
        timeout_ms: Option<i64>,
        prev_start_no: Option<i64>,
        lease_ms: u64,
        p: &ClaimParams,
    ) -> Res<Lease> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let start_no: i64 = self
            .tx
            .query_one("SELECT nextval('start_no')", &[])
            .await
            .map_err(map_err)?
            .get(0);
        let deadline = timeout_ms.map(|t| p.now.saturating_add(t));
        let expires_at = rules::lease_expiry(p.now, lease_ms, deadline);
        let lease_ms_db = i64::try_from(lease_ms).unwrap_or(i64::MAX);
        let row = self
            .tx
            .query_one(
                &format!(
                    "UPDATE jobs SET state = 'running', attempt = attempt + 1, started_at = $2,
                        lease_token = $3, lease_worker = $4, lease_ms = $5,
                        deadline_at = $6, lease_expires_at = $7, start_no = $8, last_start_no = $8
                     WHERE id = $1 RETURNING {JOB_COLUMNS}"
                ),
                &[
                    &id,
                    &p.now,
                    &token,
                    &p.worker,
                    &lease_ms_db,
                    &deadline,
                    &expires_at,
                    &start_no,
                ],
            )
            .await
            .map_err(map_err)?;
        let job = job_from_row(&row)?;
        self.tx
            .execute(
                "INSERT INTO starts (start_no, seq, job_id, attempt, worker, started_at, prev_start_no, queue, key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &start_no,
                    &job.seq,
                    &job.id,
                    &i64::from(job.attempt),
                    &p.worker,
                    &p.now,
                    &prev_start_no,
                    &job.queue,
                    &job.key,
                ],
            )
            .await
            .map_err(|e| {
                let e = map_err(e);
                match e {
                    StoreError::Backend(m) => StoreError::Backend(format!("start log: {m}")),
                    other => other,
                }
            })?;
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
