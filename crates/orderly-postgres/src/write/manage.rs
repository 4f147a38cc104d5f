//! Cancel, retry, queue configuration, the maintenance pass and retention.

use orderly_core::rules::{self, CancelDecision};
use orderly_core::{Job, JobState, Millis, QueueInfo, QueuePatch, StoreError};

use super::Op;
use crate::read::{job_by_id, queue_info, waiting_count};
use crate::rows::{change, map_err, Res};
use crate::waits::fill_waits;

/// Queues with a due scheduled job or an expired lease. (`jobs_due_all`, `jobs_leases_all`)
pub(crate) const QUEUES_WITH_WORK: &str = "SELECT DISTINCT queue FROM (
    SELECT queue FROM jobs WHERE state = 'scheduled' AND seq IS NOT NULL AND run_at <= $1
    UNION ALL
    SELECT queue FROM jobs WHERE state = 'running' AND lease_expires_at <= $1) due";
/// The next time a maintenance pass has work. (`jobs_due_all`, `jobs_leases_all`)
pub(crate) const NEXT_DUE: &str = "SELECT least(
    (SELECT min(run_at) FROM jobs WHERE state = 'scheduled' AND seq IS NOT NULL),
    (SELECT min(lease_expires_at) FROM jobs WHERE state = 'running'))";
/// Finished jobs that retention deletes. (`jobs_finished`)
pub(crate) const PURGE_CANDIDATES: &str = "SELECT id, queue, last_start_no FROM jobs \
    WHERE finished_at < $1 AND state IN ('succeeded', 'failed', 'cancelled') LIMIT $2";

impl Op<'_, '_> {
    /// Cancels a job (see `Store::job_cancel`), under its queue's lock.
    pub async fn job_cancel(&mut self, id: &str, now: Millis) -> Res<Job> {
        let queue = self.queue_of(id).await?;
        self.lock_queue(&queue).await?;
        let (job, private) = self
            .job_for_update(id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        match rules::after_cancel(job.state) {
            CancelDecision::CancelNow => {
                self.tx
                    .execute(
                        "UPDATE jobs SET state = 'cancelled', head = false, finished_at = $2 WHERE id = $1",
                        &[&id, &now],
                    )
                    .await
                    .map_err(map_err)?;
                if let (true, Some(key)) = (private.head, &job.key) {
                    self.advance_key(&job.queue, key).await?;
                }
                self.moved(change(&job, Some(job.state), JobState::Cancelled, now));
            }
            CancelDecision::RequestStop => {
                self.tx
                    .execute(
                        "UPDATE jobs SET cancel_requested = true WHERE id = $1",
                        &[&id],
                    )
                    .await
                    .map_err(map_err)?;
            }
            CancelDecision::Refuse => {
                return Err(StoreError::InvalidState {
                    id: id.into(),
                    state: job.state,
                    action: "cancel a finished job",
                });
            }
        }
        job_by_id(self.tx, id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(id.into()))
    }

    /// Puts a failed or cancelled job back in line with a new `seq`, taken
    /// from the sequencer under its lock (then the queue's), so the new
    /// `seq` follows commit order like an enqueue's.
    pub async fn job_retry(&mut self, id: &str, now: Millis) -> Res<Job> {
        let queue = self.queue_of(id).await?;
        let seq = self.lock_sequencer().await?;
        self.lock_queue(&queue).await?;
        let (job, _) = self
            .job_for_update(id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        if !rules::may_retry(job.state) {
            return Err(StoreError::InvalidState {
                id: id.into(),
                state: job.state,
                action: "retry (only failed or cancelled jobs can be retried)",
            });
        }
        let head = match &job.key {
            None => true,
            Some(k) => !self.has_unfinished_of_key(&job.queue, k).await?,
        };
        self.set_next_seq(seq + 1).await?;
        self.tx
            .execute(
                "UPDATE jobs SET seq = $2, state = 'queued', head = $3, attempt = 0, run_at = $4,
                    finished_at = NULL, result = NULL, error = NULL, cancel_requested = false,
                    reported_token = NULL, reported_leases = NULL,
                    started_at = NULL, start_no = NULL, progress = NULL, lease_worker = NULL
                 WHERE id = $1",
                &[&id, &seq, &head, &now],
            )
            .await
            .map_err(map_err)?;
        let mut after = job_by_id(self.tx, id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        // The highest seq of its queue: every other waiting job is ahead of it.
        after.position = Some(
            waiting_count(self.tx, &after.queue)
                .await?
                .saturating_sub(1),
        );
        // Its key's line and what it waits on, read under the queue's lock
        // as a read right after the commit would find them.
        let mut jobs = [after];
        fill_waits(self.tx, &mut jobs).await?;
        let [after] = jobs;
        self.moved(change(&after, Some(job.state), JobState::Queued, now));
        Ok(after)
    }

    /// Creates or changes a queue, under its lock.
    pub async fn queue_configure(
        &mut self,
        name: &str,
        patch: &QueuePatch,
        now: Millis,
    ) -> Res<QueueInfo> {
        self.queue_or_create(name, now).await?;
        let mut config = self.lock_queue(name).await?.unwrap_or_default();
        patch.apply(&mut config);
        let text =
            serde_json::to_string(&config).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.tx
            .execute(
                "UPDATE queues SET config = $2, updated_at = $3 WHERE name = $1",
                &[&name, &text, &now],
            )
            .await
            .map_err(map_err)?;
        queue_info(self.tx, name).await
    }

    /// The queues that have a due job or an expired lease at `now`.
    pub async fn queues_with_work(&self, now: Millis) -> Res<Vec<String>> {
        let mut names: Vec<String> = self
            .tx
            .query(QUEUES_WITH_WORK, &[&now])
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Catches queue `name` up (due jobs, expired leases) under its lock.
    pub async fn maintain_queue(&mut self, name: &str, now: Millis, jitter: f64) -> Res<()> {
        if self.lock_queue(name).await?.is_some() {
            self.catch_up_queue(name, now, jitter).await?;
        }
        Ok(())
    }

    /// The earliest future time a maintenance pass has work.
    pub async fn next_due(&self) -> Res<Option<Millis>> {
        Ok(self
            .tx
            .query_one(NEXT_DUE, &[])
            .await
            .map_err(map_err)?
            .get(0))
    }

    /// Deletes at most `limit` jobs finished before `before`, each with its
    /// start records.
    pub async fn retention_purge(&mut self, before: Millis, limit: u32) -> Res<u64> {
        let doomed = self
            .tx
            .query(PURGE_CANDIDATES, &[&before, &i64::from(limit)])
            .await
            .map_err(map_err)?;
        let queues: Vec<String> = doomed.iter().map(|r| r.get(1)).collect();
        self.lock_queues(&queues).await?;
        let mut n = 0;
        for row in &doomed {
            let id: String = row.get(0);
            let deleted = self
                .tx
                .query_opt(
                    "DELETE FROM jobs WHERE id = $1 AND finished_at < $2
                        AND state IN ('succeeded', 'failed', 'cancelled') RETURNING last_start_no",
                    &[&id, &before],
                )
                .await
                .map_err(map_err)?;
            let Some(deleted) = deleted else { continue };
            n += 1;
            let mut next: Option<i64> = deleted.get(0);
            while let Some(start_no) = next {
                let prev: Option<Option<i64>> = self
                    .tx
                    .query_opt(
                        "DELETE FROM starts WHERE start_no = $1 AND job_id = $2 RETURNING prev_start_no",
                        &[&start_no, &id],
                    )
                    .await
                    .map_err(map_err)?
                    .map(|r| r.get(0));
                next = prev.flatten().filter(|p| *p < start_no);
            }
        }
        Ok(n)
    }
}
