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

/// An attempt's end, applied except for one write: the `UPDATE` of a
/// keyless job that finishes, which [`WriteCtx::finish_row`] makes (see
/// [`WriteCtx::end_attempt_deferred`]).
pub(crate) struct Ended {
    /// The job as it is after the attempt's end.
    pub after: Job,
    /// The finishing write still to make, if any.
    row: Option<FinishRow>,
}

impl Ended {
    /// True when the row's finishing write waits for [`WriteCtx::finish_row`].
    pub fn defers_its_row(&self) -> bool {
        self.row.is_some()
    }
}

/// What a deferred finishing `UPDATE` writes.
struct FinishRow {
    result: Option<String>,
    error: Option<String>,
    reported: Option<String>,
}

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
        let ended = self.end_attempt_deferred(job, next, lease_lost, reported, now)?;
        self.finish_row(ended, None)
    }

    /// [`Self::end_attempt`] but for the row of a keyless job that
    /// finishes, whose `UPDATE` waits for [`Self::finish_row`]: a report
    /// that claims next writes the leases it issued in that same `UPDATE`
    /// instead of a second one. Everything that decides what may start is
    /// done here, before the claim: the running count moves (counted now),
    /// and a keyless job passes on no key (a keyed job's row is written
    /// here, as the key's next job becomes its head by reading it). Its row
    /// still says `running` under a lease no one else holds until then.
    pub(crate) fn end_attempt_deferred(
        &mut self,
        job: Job,
        next: &Next,
        lease_lost: bool,
        reported: Option<&str>,
        now: Millis,
    ) -> Res<Ended> {
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
        let (after, row) = match next {
            Next::Wait {
                state,
                run_at,
                error,
            } => {
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
                let after = Job {
                    state: *state,
                    run_at: *run_at,
                    error: Some(error.clone()),
                    lease_expires_at: None,
                    ..stored(job)
                };
                (after, None)
            }
            Next::Finish {
                state,
                result,
                error,
            } => {
                let row = FinishRow {
                    result: result.as_ref().map(to_text),
                    error: error.as_ref().map(to_text),
                    reported: reported.map(str::to_string),
                };
                let key = job.key.clone();
                let after = Job {
                    state: *state,
                    finished_at: Some(now),
                    result: result.clone(),
                    error: error.clone(),
                    lease_expires_at: None,
                    ..stored(job)
                };
                match key {
                    None => (after, Some(row)),
                    Some(key) => {
                        self.write_finish(&after, &row, None)?;
                        self.advance_key(&after.queue, &key)?;
                        (after, None)
                    }
                }
            }
        };
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
        Ok(Ended { after, row })
    }

    /// Makes the write [`Self::end_attempt_deferred`] left, remembering
    /// `issued` (the leases the report's commit issued, as
    /// `report::remember_issued` writes them) with the report, and returns
    /// the job as it is after.
    pub(crate) fn finish_row(&mut self, ended: Ended, issued: Option<&str>) -> Res<Job> {
        if let Some(row) = &ended.row {
            self.write_finish(&ended.after, row, issued)?;
        }
        #[cfg(debug_assertions)]
        {
            let read = job_by_seq(&self.kept, ended.after.seq)?;
            assert_eq!(ended.after, read, "end_attempt's job differs from its row");
        }
        Ok(ended.after)
    }

    /// The `UPDATE` that finishes `after`'s row.
    fn write_finish(&self, after: &Job, row: &FinishRow, issued: Option<&str>) -> Res<()> {
        self.kept
            .with(
                "UPDATE jobs SET state = ?2, head = 0, finished_at = ?3,
                    result = ?4, error = ?5,
                    lease_token = NULL, lease_expires_at = NULL, deadline_at = NULL,
                    reported_token = coalesce(?6, reported_token),
                    reported_leases = CASE WHEN ?6 IS NULL THEN reported_leases ELSE ?7 END
                 WHERE seq = ?1",
                |s| {
                    s.execute(params![
                        after.seq,
                        after.state.as_str(),
                        after.finished_at,
                        row.result,
                        row.error,
                        row.reported,
                        issued
                    ])
                },
            )
            .map_err(map_err)?;
        Ok(())
    }
}

/// `job` with only what its row stores: the parts readers fill in after a
/// commit (positions, what it waits on) left out, as `rows::job_from_row`
/// leaves them.
fn stored(job: Job) -> Job {
    Job {
        position: None,
        key_position: None,
        wait_facts: None,
        waiting_on: None,
        eta: None,
        ..job
    }
}
