//! Which event a committed state change is: one pure function.

use orderly_core::JobState;
use orderly_proto::EventKind;

/// The event kind of a job's move from `from` (`None`: it did not exist)
/// to `to`; `lease_lost` says the attempt ended without a report (its lease
/// ran out, or its runner gave it back). Total: every change has a kind.
pub fn kind_of(from: Option<JobState>, to: JobState, lease_lost: bool) -> EventKind {
    use JobState::*;
    match (from, to) {
        (None, _) => EventKind::Enqueued,
        (_, Running) => EventKind::Started,
        (_, Succeeded) => EventKind::Succeeded,
        (_, Failed) => EventKind::Failed,
        (_, Cancelled) => EventKind::Cancelled,
        (Some(Running), Queued) if lease_lost => EventKind::Requeued,
        (Some(Running), Queued | Scheduled) => EventKind::Retrying,
        (Some(Succeeded | Failed | Cancelled), Queued | Scheduled) => EventKind::Retried,
        (Some(Scheduled | Queued), Queued) => EventKind::Ready,
        (Some(Scheduled | Queued), Scheduled) => EventKind::Scheduled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    #[test]
    fn every_change_has_the_kind_its_docs_name() {
        let cases = [
            (None, Queued, EventKind::Enqueued),
            (None, Scheduled, EventKind::Enqueued),
            (Some(Queued), Running, EventKind::Started),
            (Some(Running), Succeeded, EventKind::Succeeded),
            (Some(Running), Failed, EventKind::Failed),
            (Some(Running), Cancelled, EventKind::Cancelled),
            (Some(Queued), Cancelled, EventKind::Cancelled),
            (Some(Scheduled), Cancelled, EventKind::Cancelled),
            (Some(Running), Scheduled, EventKind::Retrying),
            (Some(Running), Queued, EventKind::Retrying),
            (Some(Failed), Queued, EventKind::Retried),
            (Some(Cancelled), Scheduled, EventKind::Retried),
            (Some(Succeeded), Queued, EventKind::Retried),
            (Some(Scheduled), Queued, EventKind::Ready),
            (Some(Queued), Scheduled, EventKind::Scheduled),
        ];
        for (from, to, want) in cases {
            assert_eq!(kind_of(from, to, false), want, "{from:?} -> {to:?}");
        }
        // A lease that ran out (or was given back) puts the job back in place.
        assert_eq!(kind_of(Some(Running), Queued, true), EventKind::Requeued);
        assert_eq!(kind_of(Some(Running), Scheduled, true), EventKind::Retrying);
    }

    #[test]
    fn a_kind_never_contradicts_the_state_it_leaves_the_job_in() {
        for from in std::iter::once(None).chain(JobState::ALL.map(Some)) {
            for (to, lost) in JobState::ALL
                .into_iter()
                .flat_map(|t| [(t, false), (t, true)])
            {
                let k = kind_of(from, to, lost);
                let ok = match k {
                    EventKind::Started => to == Running,
                    EventKind::Succeeded => to == Succeeded,
                    EventKind::Failed => to == Failed,
                    EventKind::Cancelled => to == Cancelled,
                    EventKind::Ready => to == Queued,
                    EventKind::Enqueued => from.is_none(),
                    EventKind::Retrying | EventKind::Requeued => {
                        from == Some(Running) && to.is_waiting()
                    }
                    EventKind::Retried => from.is_some_and(|f| f.is_finished()) && to.is_waiting(),
                    EventKind::Scheduled => to == Scheduled,
                    EventKind::Progress | EventKind::QueueConfigured => false,
                };
                assert!(ok, "{from:?} -> {to:?} gave {k:?}");
            }
        }
    }
}
