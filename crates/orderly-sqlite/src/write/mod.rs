//! The store's writes, one file per family of operations, all run by the
//! writer thread inside its group transaction on a [`WriteCtx`]:
//! [`enqueue`], [`claim`] (with the catch-up a claim makes first),
//! [`report`] (heartbeats and reports), [`manage`] (cancel, retry, queue
//! configuration, maintenance, retention).
//!
//! Decisions come from `orderly_core::rules`; this module only applies them
//! and records each job's move in [`WriteCtx::changes`].

pub(crate) mod claim;
pub(crate) mod enqueue;
pub(crate) mod manage;
pub(crate) mod report;

use orderly_core::rules::Next;
use orderly_core::{Job, JobState, Millis, StateChange};
use rusqlite::params;

use crate::ctx::{change, WriteCtx};
use crate::kept::Prepare;
#[cfg(debug_assertions)]
use crate::rows::job_by_seq;
use crate::rows::{map_err, to_text, Res};

impl WriteCtx<'_> {
    /// Applies what follows the end of `job`'s running attempt: back in line
    /// in its place, or finished (passing its key on). Records the attempt's
    /// end in its start record, the attempt history. `lease_lost` says the
    /// attempt ended without a report (see `StateChange::lease_lost`).
    /// `reported` is the report that ended it, as remembered
    /// (`rules::remembered_report`), written in the same `UPDATE` of the
    /// row, with no leases issued yet; `None` (a lease lost or released)
    /// leaves the last report remembered as it was.
    ///
    /// The job as it is after is made from `job` and what the `UPDATE`
    /// wrote, not read back: only this writer writes the row, so a read
    /// would decode what it has just written (a debug build reads it back
    /// anyway and checks that the two agree).
    pub(crate) fn end_attempt(
        &mut self,
        job: Job,
        next: &Next,
        lease_lost: bool,
        reported: Option<&str>,
        now: Millis,
    ) -> Res<Job> {
        let (old_state, started_at) = (job.state, job.started_at);
        if let Some(start_no) = job.start_no {
            self.kept
                .with(
                    "UPDATE starts SET ended_at = ?2, outcome = ?3, error = ?4 WHERE start_no = ?1",
                    |s| {
                        s.execute(params![
                            start_no,
                            now,
                            next.attempt_outcome(),
                            next.attempt_error().map(to_text)
                        ])
                    },
                )
                .map_err(map_err)?;
        }
        let after = match next {
            Next::Wait {
                state,
                run_at,
                error,
            } => {
                // Read back by key, not by `RETURNING` (see `claim::start`).
                self.kept
                    .with(
                        "UPDATE jobs SET state = ?2, run_at = ?3, error = ?4,
                            lease_token = NULL, lease_expires_at = NULL, deadline_at = NULL,
                            reported_token = coalesce(?5, reported_token),
                            reported_leases = CASE WHEN ?5 IS NULL THEN reported_leases END
                         WHERE seq = ?1",
                        |s| {
                            s.execute(params![
                                job.seq,
                                state.as_str(),
                                run_at,
                                to_text(error),
                                reported
                            ])
                        },
                    )
                    .map_err(map_err)?;
                if *state == JobState::Scheduled {
                    self.lower_due_floor(&job.queue, *run_at);
                }
                Job {
                    state: *state,
                    run_at: *run_at,
                    error: Some(error.clone()),
                    lease_expires_at: None,
                    ..stored(job)
                }
            }
            Next::Finish {
                state,
                result,
                error,
            } => {
                self.kept
                    .with(
                        "UPDATE jobs SET state = ?2, head = 0, finished_at = ?3,
                            result = ?4, error = ?5,
                            lease_token = NULL, lease_expires_at = NULL, deadline_at = NULL,
                            reported_token = coalesce(?6, reported_token),
                            reported_leases = CASE WHEN ?6 IS NULL THEN reported_leases END
                         WHERE seq = ?1",
                        |s| {
                            s.execute(params![
                                job.seq,
                                state.as_str(),
                                now,
                                result.as_ref().map(to_text),
                                error.as_ref().map(to_text),
                                reported
                            ])
                        },
                    )
                    .map_err(map_err)?;
                if let Some(key) = &job.key {
                    self.advance_key(&job.queue, key)?;
                }
                Job {
                    state: *state,
                    finished_at: Some(now),
                    result: result.clone(),
                    error: error.clone(),
                    lease_expires_at: None,
                    ..stored(job)
                }
            }
        };
        #[cfg(debug_assertions)]
        {
            let read = job_by_seq(&self.kept, after.seq)?;
            assert_eq!(after, read, "end_attempt's job differs from its row");
        }
        self.counted(
            &after.queue,
            after.key.as_deref(),
            Some((old_state, after.seq)),
            Some((after.state, after.seq)),
        );
        self.moved(StateChange {
            // The attempt that ended, whatever the row keeps now.
            started_at,
            lease_lost,
            ..change(&after, Some(old_state), after.state, now)
        });
        Ok(after)
    }
}

/// `job` with only what its row stores: the parts readers fill in after a
/// commit (positions, what it waits on) left out, as `rows::job_from_row`
/// leaves them.
pub(crate) fn stored(job: Job) -> Job {
    Job {
        position: None,
        key_position: None,
        wait_facts: None,
        waiting_on: None,
        eta: None,
        ..job
    }
}
