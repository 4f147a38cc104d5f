//! The store's writes, one file per family: [`enqueue`] and the sequencer
//! ([`number`]), [`claim`] (with its catch-up), [`report`] (heartbeats and
//! reports), [`manage`] (cancel, retry, queue configuration, maintenance,
//! retention). Each runs in one `READ COMMITTED` transaction on an [`Op`].
//!
//! Locks, always taken in this order, so no two writes wait on each other
//! in a cycle:
//! 1. the sequencer's row (`seq_counter`), by whoever hands out `seq`s
//!    (a numbering pass, a retry);
//! 2. queue rows (`queues … FOR UPDATE`), in name order when several: every
//!    write that moves a queue's jobs between states (claim, report, cancel,
//!    retry, lease expiry, numbering) holds its queue's row to commit, so
//!    those writes of one queue run one after another on every node;
//! 3. job rows (`jobs … FOR UPDATE`): a heartbeat takes only its job's row.
//!
//! Under `READ COMMITTED` each statement reads a fresh snapshot, so what a
//! write reads after taking its queue's lock includes everything committed
//! by the writes that held it before. Decisions come from
//! `orderly_core::rules`; this module only applies them and records each
//! job's move in [`Op::changes`].

pub(crate) mod claim;
pub(crate) mod enqueue;
pub(crate) mod manage;
pub(crate) mod number;
pub(crate) mod report;

use orderly_core::rules::Next;
use orderly_core::{Changes, Job, Millis, QueueConfig, StateChange, StoreError};

use crate::read::parse_config;
use crate::rows::{change, job_and_private, job_from_row, map_err, to_text, Db, Private, Res};
use crate::rows::{JOB_AND_PRIVATE, JOB_COLUMNS};

/// Is any numbered job of key $2 in queue $1 unfinished? (`jobs_key_line`)
pub(crate) const KEY_HAS_UNFINISHED: &str = "SELECT 1 FROM jobs WHERE queue = $1 AND key = $2 \
    AND seq IS NOT NULL AND state IN ('scheduled', 'queued', 'running') LIMIT 1";
/// The next unfinished job of a key becomes its head. (`jobs_key_line`)
pub(crate) const ADVANCE_KEY: &str = "UPDATE jobs SET head = true WHERE id = (
    SELECT id FROM jobs WHERE queue = $1 AND key = $2 AND seq IS NOT NULL
        AND state IN ('scheduled', 'queued', 'running') ORDER BY seq LIMIT 1)";

/// One write in progress: its transaction and what it changed.
pub(crate) struct Op<'a, 't> {
    /// The transaction.
    pub tx: Db<'a, 't>,
    /// The moves made so far, in order.
    pub changes: Changes,
}

impl<'a, 't> Op<'a, 't> {
    /// A write on `tx`.
    pub fn new(tx: &'a deadpool_postgres::Transaction<'t>) -> Self {
        Op {
            tx: Db(tx),
            changes: Changes::default(),
        }
    }

    /// Records a job's move.
    pub fn moved(&mut self, change: StateChange) {
        self.changes.jobs.push(change);
    }

    /// Locks queue `name`'s row until commit and returns its configuration;
    /// `None` if the queue does not exist.
    pub async fn lock_queue(&self, name: &str) -> Res<Option<QueueConfig>> {
        self.tx
            .query_opt(
                "SELECT config FROM queues WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await
            .map_err(map_err)?
            .map(|r| parse_config(name, r.get(0)))
            .transpose()
    }

    /// Locks the rows of `names` (in name order) until commit.
    pub async fn lock_queues(&self, names: &[String]) -> Res<()> {
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        self.tx
            .query(
                "SELECT name FROM queues WHERE name = ANY($1) ORDER BY name FOR UPDATE",
                &[&names],
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// The queue a job is in (read without a lock: a job never changes queue).
    pub async fn queue_of(&self, id: &str) -> Res<String> {
        self.tx
            .query_opt(
                "SELECT queue FROM jobs WHERE id = $1 AND seq IS NOT NULL",
                &[&id],
            )
            .await
            .map_err(map_err)?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::JobNotFound(id.into()))
    }

    /// A numbered job and its private fields, its row locked until commit.
    pub async fn job_for_update(&self, id: &str) -> Res<Option<(Job, Private)>> {
        self.tx
            .query_opt(
                &format!(
                    "SELECT {JOB_AND_PRIVATE} FROM jobs WHERE id = $1 AND seq IS NOT NULL FOR UPDATE"
                ),
                &[&id],
            )
            .await
            .map_err(map_err)?
            .map(|r| job_and_private(&r))
            .transpose()
    }

    /// Is any job of `key` in `queue` unfinished?
    pub async fn has_unfinished_of_key(&self, queue: &str, key: &str) -> Res<bool> {
        Ok(self
            .tx
            .query_opt(KEY_HAS_UNFINISHED, &[&queue, &key])
            .await
            .map_err(map_err)?
            .is_some())
    }

    /// Makes the next unfinished job of `key` (if any) its head.
    pub async fn advance_key(&self, queue: &str, key: &str) -> Res<()> {
        self.tx
            .execute(ADVANCE_KEY, &[&queue, &key])
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Applies what follows the end of `job`'s running attempt: back in line
    /// in its place, or finished (passing its key on), and records the
    /// attempt's end in its start record. The caller holds the queue's lock.
    pub async fn end_attempt(
        &mut self,
        job: &Job,
        next: &Next,
        lease_lost: bool,
        now: Millis,
    ) -> Res<Job> {
        if let Some(start_no) = job.start_no {
            self.tx
                .execute(
                    "UPDATE starts SET ended_at = $2, outcome = $3, error = $4 WHERE start_no = $1",
                    &[
                        &start_no,
                        &now,
                        &next.attempt_outcome(),
                        &next.attempt_error().map(to_text),
                    ],
                )
                .await
                .map_err(map_err)?;
        }
        let row = match next {
            Next::Wait {
                state,
                run_at,
                error,
            } => self
                .tx
                .query_one(
                    &format!(
                        "UPDATE jobs SET state = $2, run_at = $3, error = $4,
                            lease_token = NULL, lease_expires_at = NULL, deadline_at = NULL
                         WHERE id = $1 RETURNING {JOB_COLUMNS}"
                    ),
                    &[&job.id, &state.as_str(), run_at, &to_text(error)],
                )
                .await
                .map_err(map_err)?,
            Next::Finish {
                state,
                result,
                error,
            } => {
                let row = self
                    .tx
                    .query_one(
                        &format!(
                            "UPDATE jobs SET state = $2, head = false, finished_at = $3,
                                result = $4, error = $5,
                                lease_token = NULL, lease_expires_at = NULL, deadline_at = NULL
                             WHERE id = $1 RETURNING {JOB_COLUMNS}"
                        ),
                        &[
                            &job.id,
                            &state.as_str(),
                            &now,
                            &result.as_ref().map(to_text),
                            &error.as_ref().map(to_text),
                        ],
                    )
                    .await
                    .map_err(map_err)?;
                if let Some(key) = &job.key {
                    self.advance_key(&job.queue, key).await?;
                }
                row
            }
        };
        let after = job_from_row(&row)?;
        self.moved(StateChange {
            // The attempt that ended, whatever the row keeps now.
            started_at: job.started_at,
            lease_lost,
            ..change(&after, Some(job.state), after.state, now)
        });
        Ok(after)
    }
}
