//! Cancel, retry, queue configuration, the maintenance pass and retention.

use orderly_core::rules::{self, CancelDecision};
use orderly_core::{Job, JobState, MaintenanceReport, Millis, QueueInfo, QueuePatch, StoreError};
use rusqlite::{params, OptionalExtension};

use crate::ctx::{change, WriteCtx};
use crate::kept::Prepare;
use crate::read::{fill_wait, queue_info};
use crate::rows::{job_by_id, job_by_seq, job_with_private, map_err, By, Res};
use crate::sql;

impl WriteCtx<'_> {
    /// Cancels a job (see `Store::job_cancel`).
    pub(crate) fn job_cancel(&mut self, id: &str, now: Millis) -> Res<Job> {
        let (job, private) = job_with_private(&self.kept, By::Id(id))?
            .ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        match rules::after_cancel(job.state) {
            CancelDecision::CancelNow => {
                self.kept.with("UPDATE jobs SET state = 'cancelled', head = 0, finished_at = ?2 WHERE seq = ?1", |s| s.execute(params![job.seq, now]))
                    .map_err(map_err)?;
                self.counted(
                    &job.queue,
                    job.key.as_deref(),
                    Some((job.state, job.seq)),
                    Some((JobState::Cancelled, job.seq)),
                );
                if let (true, Some(key)) = (private.head, &job.key) {
                    self.advance_key(&job.queue, key)?;
                }
                self.moved(change(&job, Some(job.state), JobState::Cancelled, now));
            }
            CancelDecision::RequestStop => {
                self.kept
                    .with("UPDATE jobs SET cancel_requested = 1 WHERE seq = ?1", |s| {
                        s.execute([job.seq])
                    })
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
        job_by_seq(&self.kept, job.seq)
    }

    /// Puts a failed or cancelled job back in line with a new seq.
    pub(crate) fn job_retry(&mut self, id: &str, now: Millis) -> Res<Job> {
        let job = job_by_id(&self.kept, id)?.ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        if !rules::may_retry(job.state) {
            return Err(StoreError::InvalidState {
                id: id.into(),
                state: job.state,
                action: "retry (only failed or cancelled jobs can be retried)",
            });
        }
        let head = match &job.key {
            None => true,
            Some(k) => !self.has_unfinished_of_key(&job.queue, k)?,
        };
        let seq = self.take_seq()?;
        self.kept
            .with(
                "UPDATE jobs SET seq = ?2, state = 'queued', head = ?3, attempt = 0, run_at = ?4,
                    finished_at = NULL, result = NULL, error = NULL, cancel_requested = 0,
                    requeues = requeues + 1, reported_token = NULL, reported_leases = NULL,
                    started_at = NULL, start_no = NULL, progress = NULL, lease_worker = NULL
                 WHERE seq = ?1",
                |s| s.execute(params![job.seq, seq, head, now]),
            )
            .map_err(map_err)?;
        self.counted(
            &job.queue,
            job.key.as_deref(),
            Some((job.state, job.seq)),
            Some((JobState::Queued, seq)),
        );
        // The highest seq of its queue: every other waiting job is ahead of it.
        let mut after = job_by_seq(&self.kept, seq)?;
        after.position = Some(self.waiting_count(&after.queue)?.saturating_sub(1));
        let config = self.config(&after.queue)?.unwrap_or_default();
        let running = self.running_count(&after.queue)?;
        // Its key's line is read from `key_blocks`: with this request's changes written.
        self.flush_tally()?;
        fill_wait(self.conn, &mut after, &config, running)?;
        self.moved(change(&after, Some(job.state), JobState::Queued, now));
        Ok(after)
    }

    /// Creates or changes a queue.
    pub(crate) fn queue_configure(
        &mut self,
        name: &str,
        patch: &QueuePatch,
        now: Millis,
    ) -> Res<QueueInfo> {
        let mut config = self.config_or_create(name, now)?;
        patch.apply(&mut config);
        let text =
            serde_json::to_string(&config).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.kept
            .with(
                "UPDATE queues SET config = ?2, updated_at = ?3 WHERE name = ?1",
                |s| s.execute(params![name, text, now]),
            )
            .map_err(map_err)?;
        self.remember_config(name, config);
        self.flush_tally()?;
        queue_info(self.conn, name)
    }

    /// One maintenance pass over every queue.
    pub(crate) fn maintenance_run(&mut self, now: Millis, jitter: f64) -> Res<MaintenanceReport> {
        self.promote_due(None, now)?;
        self.reap_expired(None, now, jitter)?;
        let next_due: Option<Millis> = self
            .conn
            .query_row(sql::NEXT_DUE, [], |r| r.get(0))
            .map_err(map_err)?;
        Ok(MaintenanceReport { next_due })
    }

    /// Deletes at most `limit` jobs finished before `before`, each with its
    /// start records (see `Store::retention_purge`).
    pub(crate) fn retention_purge(&mut self, before: Millis, limit: u32) -> Res<u64> {
        self.persist_counters()?;
        let doomed: Vec<Doomed> = {
            let mut stmt = self
                .conn
                .prepare_cached(sql::PURGE_CANDIDATES)
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![before, limit], |r| {
                    Ok(Doomed {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        last_start_no: r.get(2)?,
                        queue: r.get(3)?,
                        key: r.get(4)?,
                        state: r.get(5)?,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        };
        for d in &doomed {
            let state = JobState::parse(&d.state).ok_or_else(|| {
                StoreError::Corrupt(format!("job {:?}: unknown job state {:?}", d.id, d.state))
            })?;
            self.counted(&d.queue, d.key.as_deref(), Some((state, d.seq)), None);
            self.delete_start_chain(&d.id, d.last_start_no)?;
            self.kept
                .with("DELETE FROM jobs WHERE seq = ?1", |s| s.execute([d.seq]))
                .map_err(map_err)?;
        }
        Ok(doomed.len() as u64)
    }

    /// Deletes job `id`'s start records: its chain from `last` back through
    /// `prev_start_no`, one primary-key delete each (a job's records are
    /// all on its chain; the chain only goes back, so a damaged one cannot loop).
    fn delete_start_chain(&mut self, id: &str, last: Option<i64>) -> Res<()> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "DELETE FROM starts WHERE start_no = ?1 AND job_id = ?2 RETURNING prev_start_no",
            )
            .map_err(map_err)?;
        let mut next = last;
        while let Some(start_no) = next {
            let prev: Option<Option<i64>> = stmt
                .query_row(params![start_no, id], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            next = prev.flatten().filter(|p| *p < start_no);
        }
        Ok(())
    }
}

/// A finished job retention deletes (`sql::PURGE_CANDIDATES`).
struct Doomed {
    seq: i64,
    id: String,
    /// The head of its start chain.
    last_start_no: Option<i64>,
    queue: String,
    key: Option<String>,
    state: String,
}
