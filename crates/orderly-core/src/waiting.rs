//! Why a waiting job has not started, and when it likely will (contract
//! section 4.1): the facts a store reads with the job, the one rule that
//! turns facts into a reason ([`waiting_reason`]), and the estimate of its
//! start from a queue's recent starts ([`estimate_start`]).

use serde::{Deserialize, Serialize};

use crate::job::{JobState, Millis};

/// What a store reads about a waiting job's surroundings, in the same read
/// snapshot as the job itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitFacts {
    /// The queue is paused.
    pub paused: bool,
    /// The queue's concurrency.
    pub concurrency: u32,
    /// Jobs of the queue running now.
    pub running: u64,
    /// The queue has an executor (the server runs its jobs).
    pub has_executor: bool,
    /// The first unfinished job of the job's key ahead of it (the one
    /// holding the key), if any.
    pub key_head: Option<String>,
}

/// Why a waiting job has not started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum WaitingOn {
    /// Delayed until `until`.
    Scheduled {
        /// Its `run_at`.
        until: Millis,
    },
    /// Failed and waits for its retry backoff to end at `until`.
    RetryBackoff {
        /// Its `run_at`.
        until: Millis,
    },
    /// An earlier unfinished job of its key (`job`) must finish first.
    Key {
        /// The id of the first unfinished job of its key.
        job: String,
    },
    /// The queue runs `limit` jobs already.
    Concurrency {
        /// The queue's concurrency.
        limit: u32,
    },
    /// Capacity is free but earlier jobs are handed out first.
    Line,
    /// The queue is paused.
    Paused,
    /// No executor, and no worker asked for work recently.
    NoWorker,
}

/// Everything [`waiting_reason`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonFacts<'a> {
    /// The job's state (only `scheduled` and `queued` have a reason).
    pub state: JobState,
    /// Its starts so far (a scheduled job that ran before waits for a retry).
    pub attempt: u32,
    /// Not before this time.
    pub run_at: Millis,
    /// The store's facts.
    pub store: &'a WaitFacts,
    /// How long ago a worker last asked this queue for work (or the server
    /// started, if none has since).
    pub idle_ms: Millis,
    /// After how long without a claim a queue without executor is `no_worker`.
    pub no_worker_after_ms: Millis,
    /// The time of the read.
    pub now: Millis,
}

/// The reason a waiting job has not started at `now`, or `None` for a job
/// that is not waiting. The first that holds, in this order, is the answer:
/// a future `run_at` (`retry_backoff` after a start, else `scheduled`), a
/// paused queue, an earlier unfinished job of its key, a queue at its
/// concurrency, no worker (no executor and no claim for the configured
/// while), and otherwise `line`: it is eligible or behind eligible jobs, and
/// the next claims hand out the earlier ones first. Each is what would have
/// to change first for the job to start.
pub fn waiting_reason(f: &ReasonFacts<'_>) -> Option<WaitingOn> {
    if !f.state.is_waiting() {
        return None;
    }
    if f.state == JobState::Scheduled && f.run_at > f.now {
        return Some(if f.attempt > 0 {
            WaitingOn::RetryBackoff { until: f.run_at }
        } else {
            WaitingOn::Scheduled { until: f.run_at }
        });
    }
    if f.store.paused {
        return Some(WaitingOn::Paused);
    }
    if let Some(job) = &f.store.key_head {
        return Some(WaitingOn::Key { job: job.clone() });
    }
    if f.store.running >= f.store.concurrency as u64 {
        return Some(WaitingOn::Concurrency {
            limit: f.store.concurrency,
        });
    }
    if !f.store.has_executor && f.idle_ms >= f.no_worker_after_ms {
        return Some(WaitingOn::NoWorker);
    }
    Some(WaitingOn::Line)
}

/// When a job likely starts: an estimate, labelled so wherever it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eta {
    /// Not likely before.
    pub earliest: Millis,
    /// Not likely after.
    pub latest: Millis,
}

/// What a queue's recent history says about its pace, as the estimate
/// reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentPace<'a> {
    /// The times of its recent starts, oldest first.
    pub starts: &'a [Millis],
    /// How long its recently ended attempts ran (each from its start to the
    /// report or timeout that ended it).
    pub runs: &'a [Millis],
    /// How long a key's next job took to start after the one before it
    /// ended, when it was already waiting then (a key's handoff).
    pub handoffs: &'a [Millis],
}

/// The smallest and largest of `values`; `None` when empty.
fn span(values: impl Iterator<Item = Millis>) -> Option<(Millis, Millis)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Estimates when a waiting job starts, with `position` waiting jobs of its
/// queue ahead and `key_position` unfinished jobs of its key ahead (0
/// without a key), from its queue's recent pace.
///
/// The line: with the gaps between consecutive recent starts, the smallest
/// `g_lo` and the largest `g_hi`, `position` more starts must happen before
/// this one, and the next comes within one gap, so it starts between
/// `now + position × g_lo` and `now + (position + 1) × g_hi`.
///
/// The key: the jobs of its key ahead run one after another before it.
/// With the shortest and longest recent run times `r_lo` and `r_hi`, and
/// the longest recent handoff `h_hi` (or `g_hi` if longer, or without one),
/// the first of them may be running already (nearly done), each of the
/// others runs at least `r_lo`, and each handoff of the key takes at most
/// `h_hi` and each run at most `r_hi`: it starts between
/// `now + (key_position − 1) × r_lo` and
/// `now + key_position × (r_hi + h_hi)`.
///
/// The estimate is the later of the two bounds on each side (both must
/// hold), and neither is before `not_before` (its `run_at`). `None` when
/// there is nothing to measure from: fewer than two recent starts for the
/// line, or, for a job behind its key, no ended attempt to time.
pub fn estimate_start(
    recent: &RecentPace<'_>,
    position: u64,
    key_position: u64,
    now: Millis,
    not_before: Millis,
) -> Option<Eta> {
    let gaps = span(recent.starts.windows(2).map(|w| (w[1] - w[0]).max(0)));
    let cap = |n: u64| n.min(i64::MAX as u64 / 2) as i64;
    let line = gaps.map(|(lo, hi)| {
        let p = cap(position);
        (
            now.saturating_add(p.saturating_mul(lo)),
            now.saturating_add((p + 1).saturating_mul(hi)),
        )
    });
    let (earliest, latest) = if key_position == 0 {
        line?
    } else {
        let (r_lo, r_hi) = span(recent.runs.iter().map(|r| (*r).max(0)))?;
        let k = cap(key_position);
        let g_hi = gaps.map_or(0, |(_, hi)| hi);
        let h_hi = span(recent.handoffs.iter().copied()).map_or(g_hi, |(_, hi)| hi.max(g_hi));
        let key = (
            now.saturating_add((k - 1).saturating_mul(r_lo)),
            now.saturating_add(k.saturating_mul(r_hi.saturating_add(h_hi))),
        );
        match line {
            Some((e, l)) => (e.max(key.0), l.max(key.1)),
            None => key,
        }
    };
    let earliest = earliest.max(not_before);
    Some(Eta {
        earliest,
        latest: latest.max(earliest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> WaitFacts {
        WaitFacts {
            paused: false,
            concurrency: 2,
            running: 0,
            has_executor: false,
            key_head: None,
        }
    }

    fn facts(state: JobState, store: &WaitFacts) -> ReasonFacts<'_> {
        ReasonFacts {
            state,
            attempt: 0,
            run_at: 1_000,
            store,
            idle_ms: 0,
            no_worker_after_ms: 60_000,
            now: 1_000,
        }
    }

    #[test]
    fn only_waiting_jobs_have_a_reason() {
        let s = store();
        for state in [
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ] {
            assert_eq!(waiting_reason(&facts(state, &s)), None, "{state}");
        }
    }

    #[test]
    fn a_future_run_at_is_scheduled_or_a_retry_backoff() {
        let mut s = store();
        s.paused = true;
        s.key_head = Some("a".into());
        let mut f = facts(JobState::Scheduled, &s);
        f.run_at = 5_000;
        assert_eq!(
            waiting_reason(&f),
            Some(WaitingOn::Scheduled { until: 5_000 })
        );
        f.attempt = 1;
        assert_eq!(
            waiting_reason(&f),
            Some(WaitingOn::RetryBackoff { until: 5_000 })
        );
        // Due but not yet promoted: not waiting for time any more.
        f.run_at = 1_000;
        assert_eq!(waiting_reason(&f), Some(WaitingOn::Paused));
    }

    #[test]
    fn paused_comes_before_key_and_capacity() {
        let mut s = store();
        s.paused = true;
        s.key_head = Some("a".into());
        s.running = 2;
        assert_eq!(
            waiting_reason(&facts(JobState::Queued, &s)),
            Some(WaitingOn::Paused)
        );
    }

    #[test]
    fn an_unfinished_job_of_the_key_is_named() {
        let mut s = store();
        s.key_head = Some("head".into());
        s.running = 2;
        assert_eq!(
            waiting_reason(&facts(JobState::Queued, &s)),
            Some(WaitingOn::Key { job: "head".into() })
        );
    }

    #[test]
    fn a_queue_at_its_limit_is_concurrency() {
        let mut s = store();
        s.running = 2;
        let mut f = facts(JobState::Queued, &s);
        f.idle_ms = 120_000;
        assert_eq!(
            waiting_reason(&f),
            Some(WaitingOn::Concurrency { limit: 2 })
        );
    }

    #[test]
    fn no_claim_for_the_while_is_no_worker_unless_an_executor_runs_it() {
        let mut s = store();
        let mut f = facts(JobState::Queued, &s);
        f.idle_ms = 59_999;
        assert_eq!(waiting_reason(&f), Some(WaitingOn::Line));
        f.idle_ms = 60_000;
        assert_eq!(waiting_reason(&f), Some(WaitingOn::NoWorker));
        s.has_executor = true;
        let mut f = facts(JobState::Queued, &s);
        f.idle_ms = 600_000;
        assert_eq!(waiting_reason(&f), Some(WaitingOn::Line));
    }

    #[test]
    fn free_capacity_and_a_worker_is_line() {
        let mut s = store();
        s.running = 1;
        assert_eq!(
            waiting_reason(&facts(JobState::Queued, &s)),
            Some(WaitingOn::Line)
        );
    }

    fn starts(starts: &[Millis]) -> RecentPace<'_> {
        RecentPace {
            starts,
            runs: &[],
            handoffs: &[],
        }
    }

    #[test]
    fn no_history_no_estimate() {
        assert_eq!(estimate_start(&starts(&[]), 3, 0, 0, 0), None);
        assert_eq!(estimate_start(&starts(&[10]), 3, 0, 0, 0), None);
        // Behind its key with no attempt timed: nothing to go by.
        assert_eq!(estimate_start(&starts(&[0, 10, 20]), 3, 2, 0, 0), None);
    }

    #[test]
    fn the_estimate_spans_the_fastest_and_slowest_recent_pace() {
        // Gaps 100 and 140: 3 ahead starts between 3 × 100 and 4 × 140 from now.
        let eta = estimate_start(&starts(&[0, 100, 240]), 3, 0, 1_000, 0).expect("eta");
        assert_eq!(
            eta,
            Eta {
                earliest: 1_300,
                latest: 1_560
            }
        );
        // Never before its run_at.
        let eta = estimate_start(&starts(&[0, 100, 240]), 0, 0, 1_000, 5_000).expect("eta");
        assert_eq!(
            eta,
            Eta {
                earliest: 5_000,
                latest: 5_000
            }
        );
    }

    #[test]
    fn a_job_behind_its_key_waits_for_the_key_line_to_run() {
        // Starts 10 ms apart (other keys run fast), runs of 50 to 80 ms.
        let mut recent = RecentPace {
            starts: &[0, 10, 20],
            runs: &[50, 80],
            handoffs: &[],
        };
        // 3 of its key ahead: the first may be nearly done, two more run at
        // least 50 ms each; each starts within 10 ms and runs at most 80 ms.
        let eta = estimate_start(&recent, 1, 3, 1_000, 0).expect("eta");
        assert_eq!(
            eta,
            Eta {
                earliest: 1_100,
                latest: 1_270
            }
        );
        // The line is the later bound when it is the slower one.
        let eta = estimate_start(&recent, 100, 1, 1_000, 0).expect("eta");
        assert_eq!(
            eta,
            Eta {
                earliest: 2_000,
                latest: 2_010
            }
        );
        // A key's handoffs longer than the queue's gaps bound each one.
        recent.handoffs = &[4, 30];
        let eta = estimate_start(&recent, 1, 3, 1_000, 0).expect("eta");
        assert_eq!(eta.latest, 1_330);
        // Timed runs but fewer than two starts: the key alone.
        let recent = RecentPace {
            starts: &[5],
            runs: &[50],
            handoffs: &[],
        };
        let eta = estimate_start(&recent, 0, 2, 1_000, 0).expect("eta");
        assert_eq!(
            eta,
            Eta {
                earliest: 1_050,
                latest: 1_100
            }
        );
    }
}
