//! The one mapping from a job's move to the counters it adds to.

use orderly_core::{JobState, StateChange};

/// A per-queue job counter (`orderly_jobs_<name>_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobCounter {
    /// A new job was accepted.
    Enqueued,
    /// An attempt started.
    Started,
    /// A job finished successfully.
    Succeeded,
    /// A job failed for good.
    Failed,
    /// A job went back in line after a failed attempt (reported, or timed
    /// out), or was put back by `POST /v1/jobs/{id}/retry`.
    Retried,
    /// An attempt lost its lease: it ran out, or its runner gave it up.
    Expired,
    /// A job was cancelled.
    Cancelled,
}

impl JobCounter {
    /// Every counter, in the order the exposition lists them.
    pub const ALL: [JobCounter; 7] = [
        JobCounter::Enqueued,
        JobCounter::Started,
        JobCounter::Succeeded,
        JobCounter::Failed,
        JobCounter::Retried,
        JobCounter::Expired,
        JobCounter::Cancelled,
    ];

    /// The metric's help text.
    pub fn help(self) -> &'static str {
        match self {
            JobCounter::Enqueued => "Jobs accepted, per queue",
            JobCounter::Started => "Attempts started, per queue",
            JobCounter::Succeeded => "Jobs that succeeded, per queue",
            JobCounter::Failed => "Jobs that failed for good, per queue",
            JobCounter::Retried => {
                "Jobs put back in line after a failed attempt or by a retry request, per queue"
            }
            JobCounter::Expired => {
                "Attempts whose lease ran out or was given up by its runner, per queue"
            }
            JobCounter::Cancelled => "Jobs cancelled, per queue",
        }
    }

    /// The metric's name without prefix or `_total`.
    pub fn name(self) -> &'static str {
        match self {
            JobCounter::Enqueued => "jobs_enqueued",
            JobCounter::Started => "jobs_started",
            JobCounter::Succeeded => "jobs_succeeded",
            JobCounter::Failed => "jobs_failed",
            JobCounter::Retried => "jobs_retried",
            JobCounter::Expired => "jobs_expired",
            JobCounter::Cancelled => "jobs_cancelled",
        }
    }
}

/// The counters one move adds one to. A lease lost with no attempts left
/// (or with a cancel asked) is both an expiry and the job's end.
pub fn counters_for(c: &StateChange) -> &'static [JobCounter] {
    use JobCounter as C;
    use JobState::{Cancelled, Failed, Queued, Running, Scheduled, Succeeded};
    match (c.from, c.to, c.lease_lost) {
        (None, _, _) => &[C::Enqueued],
        (Some(_), Running, _) => &[C::Started],
        (Some(Running), Queued | Scheduled, true) => &[C::Expired],
        (Some(Running), Failed, true) => &[C::Expired, C::Failed],
        (Some(Running), Cancelled, true) => &[C::Expired, C::Cancelled],
        (Some(Running), Queued | Scheduled, false) => &[C::Retried],
        (Some(Failed | Cancelled), Queued | Scheduled, _) => &[C::Retried],
        (Some(_), Succeeded, _) => &[C::Succeeded],
        (Some(_), Failed, _) => &[C::Failed],
        (Some(_), Cancelled, _) => &[C::Cancelled],
        // A delayed job becoming due, or anything else between waiting states.
        (Some(_), Queued | Scheduled, _) => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::{counters_for, JobCounter as C};
    use orderly_core::{JobState, JobState::*, StateChange};

    fn change(from: Option<JobState>, to: JobState, lease_lost: bool) -> StateChange {
        StateChange {
            id: "j".into(),
            queue: "q".into(),
            key: None,
            seq: 1,
            from,
            to,
            at: 10,
            enqueued_at: 1,
            started_at: None,
            lease_lost,
        }
    }

    #[test]
    fn every_move_adds_to_the_counters_it_means() {
        let cases: &[(Option<JobState>, JobState, bool, &[C])] = &[
            (None, Queued, false, &[C::Enqueued]),
            (None, Scheduled, false, &[C::Enqueued]),
            (Some(Queued), Running, false, &[C::Started]),
            (Some(Running), Succeeded, false, &[C::Succeeded]),
            (Some(Running), Failed, false, &[C::Failed]),
            (Some(Running), Scheduled, false, &[C::Retried]),
            (Some(Running), Queued, false, &[C::Retried]),
            (Some(Running), Cancelled, false, &[C::Cancelled]),
            (Some(Running), Queued, true, &[C::Expired]),
            (Some(Running), Scheduled, true, &[C::Expired]),
            (Some(Running), Failed, true, &[C::Expired, C::Failed]),
            (Some(Running), Cancelled, true, &[C::Expired, C::Cancelled]),
            (Some(Queued), Cancelled, false, &[C::Cancelled]),
            (Some(Scheduled), Cancelled, false, &[C::Cancelled]),
            (Some(Failed), Queued, false, &[C::Retried]),
            (Some(Cancelled), Queued, false, &[C::Retried]),
            (Some(Scheduled), Queued, false, &[]),
        ];
        for (from, to, lost, want) in cases {
            assert_eq!(
                counters_for(&change(*from, *to, *lost)),
                *want,
                "{from:?} -> {to:?} (lease lost: {lost})"
            );
        }
    }

    #[test]
    fn counter_names_are_distinct() {
        let mut names: Vec<_> = C::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), C::ALL.len());
    }
}
