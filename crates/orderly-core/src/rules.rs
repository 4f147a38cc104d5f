//! The pure rules of the domain: what may start, what a failure leads to,
//! and how long a retry waits.
//!
//! These functions take plain values and return decisions; stores call them
//! inside their transactions, and the [`crate::model`] uses them too, so the
//! rule is written once.

use crate::job::{JobState, Millis};
use crate::queue::Backoff;

/// Delay before retry number `failures` (1 for the first retry):
/// `initial_ms * factor^(failures-1)` capped at `max_ms`, then scaled by a
/// jitter factor in `[0.8, 1.2)` drawn from `unit` (a number in `[0, 1)`),
/// and capped again.
pub fn backoff_delay_ms(backoff: &Backoff, failures: u32, unit: f64) -> u64 {
    if backoff.initial_ms == 0 {
        return 0;
    }
    let exp = failures.saturating_sub(1).min(1_000) as i32;
    let raw = backoff.initial_ms as f64 * backoff.factor.powi(exp);
    let capped = raw.min(backoff.max_ms as f64);
    let jittered = capped * (0.8 + 0.4 * unit.clamp(0.0, 1.0));
    jittered.min(backoff.max_ms as f64).max(0.0) as u64
}

/// What a failed attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Waits (state `scheduled`) and runs again at `run_at`.
    Retry {
        /// When the next attempt becomes eligible.
        run_at: Millis,
    },
    /// Finished for good in this state (`failed`, or `cancelled` when a cancel was asked).
    Finish(JobState),
}

/// Decides what follows a failed attempt.
///
/// `attempt` is the number of the attempt that failed; `retry_requested` is
/// false when the worker said the failure is permanent; `cancel_requested`
/// means someone asked to cancel the job while it ran.
pub fn after_failure(
    attempt: u32,
    max_attempts: u32,
    retry_requested: bool,
    cancel_requested: bool,
    backoff: &Backoff,
    now: Millis,
    unit: f64,
) -> AfterFailure {
    if cancel_requested {
        AfterFailure::Finish(JobState::Cancelled)
    } else if !retry_requested || attempt >= max_attempts {
        AfterFailure::Finish(JobState::Failed)
    } else {
        AfterFailure::Retry {
            run_at: now.saturating_add(backoff_delay_ms(backoff, attempt, unit) as i64),
        }
    }
}

/// What an expired lease leads to. The job goes back to its original place
/// in line (state `queued`, same `seq`, no backoff) so it is the next to
/// start, unless it has no attempts left or a cancel was asked.
pub fn after_lease_expiry(attempt: u32, max_attempts: u32, cancel_requested: bool) -> JobState {
    if cancel_requested {
        JobState::Cancelled
    } else if attempt >= max_attempts {
        JobState::Failed
    } else {
        JobState::Queued
    }
}

/// When a lease taken or renewed at `now` for `lease_ms` expires, given the
/// attempt's `deadline` (from the job's `timeout_ms`), whichever comes first.
pub fn lease_expiry(now: Millis, lease_ms: u64, deadline: Option<Millis>) -> Millis {
    let exp = now.saturating_add(lease_ms as i64);
    match deadline {
        Some(d) => exp.min(d),
        None => exp,
    }
}

/// How many more jobs a queue may start: `concurrency - running`, at most `max`.
pub fn claim_capacity(concurrency: u32, running: u64, max: u32) -> u32 {
    (concurrency as u64).saturating_sub(running).min(max as u64) as u32
}

/// One job as the eligibility rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Acceptance order.
    pub seq: i64,
    /// Current state.
    pub state: JobState,
    /// Ordering key.
    pub key: Option<&'a str>,
    /// Not eligible before this time.
    pub run_at: Millis,
}

/// The eligibility rule, stated plainly (contract section 2): given every job
/// of one queue, returns the `seq`s that may start now, in start order, at
/// most `capacity` of them.
///
/// A job may start when it is waiting and due (`queued`, or `scheduled` with
/// `run_at <= now`) and, if it has a key, no earlier unfinished job shares
/// that key. The lowest `seq`s go first.
///
/// This scans every job: it is the reference the stores' indexed claims are
/// tested against, not what they run.
pub fn eligible(jobs: &[Candidate<'_>], now: Millis, capacity: u32) -> Vec<i64> {
    let mut sorted: Vec<&Candidate<'_>> = jobs.iter().collect();
    sorted.sort_by_key(|c| c.seq);
    let mut blocked_keys = std::collections::HashSet::new();
    let mut out = Vec::new();
    for c in sorted {
        if out.len() as u32 >= capacity {
            break;
        }
        if c.state.is_finished() {
            continue;
        }
        let due =
            c.state == JobState::Queued || (c.state == JobState::Scheduled && c.run_at <= now);
        let key_free = match c.key {
            Some(k) => blocked_keys.insert(k),
            None => true,
        };
        if due && key_free {
            out.push(c.seq);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff {
            initial_ms: 1000,
            max_ms: 10_000,
            factor: 2.0,
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_delay_ms(&b(), 1, 0.5), 1000);
        assert_eq!(backoff_delay_ms(&b(), 2, 0.5), 2000);
        assert_eq!(backoff_delay_ms(&b(), 3, 0.5), 4000);
        assert_eq!(backoff_delay_ms(&b(), 30, 0.99), 10_000);
        assert_eq!(backoff_delay_ms(&b(), 1, 0.0), 800);
        let zero = Backoff {
            initial_ms: 0,
            max_ms: 10_000,
            factor: 100.0,
        };
        assert_eq!(
            backoff_delay_ms(&zero, 500, 0.5),
            0,
            "0 × ∞ must not become the cap"
        );
        assert!(backoff_delay_ms(&b(), 1, 0.999) < 1200);
    }

    #[test]
    fn failure_outcomes() {
        let now = 1_000;
        assert_eq!(
            after_failure(1, 3, true, false, &b(), now, 0.5),
            AfterFailure::Retry { run_at: 2_000 }
        );
        assert_eq!(
            after_failure(3, 3, true, false, &b(), now, 0.5),
            AfterFailure::Finish(JobState::Failed)
        );
        assert_eq!(
            after_failure(1, 3, false, false, &b(), now, 0.5),
            AfterFailure::Finish(JobState::Failed)
        );
        assert_eq!(
            after_failure(1, 3, true, true, &b(), now, 0.5),
            AfterFailure::Finish(JobState::Cancelled)
        );
        assert_eq!(after_lease_expiry(1, 3, false), JobState::Queued);
        assert_eq!(after_lease_expiry(3, 3, false), JobState::Failed);
    }

    #[test]
    fn keys_block_later_jobs_and_keyless_jobs_pass_them() {
        let jobs = [
            Candidate {
                seq: 1,
                state: JobState::Running,
                key: Some("a"),
                run_at: 0,
            },
            Candidate {
                seq: 2,
                state: JobState::Queued,
                key: Some("a"),
                run_at: 0,
            },
            Candidate {
                seq: 3,
                state: JobState::Scheduled,
                key: None,
                run_at: 50,
            },
            Candidate {
                seq: 4,
                state: JobState::Queued,
                key: None,
                run_at: 0,
            },
            Candidate {
                seq: 5,
                state: JobState::Scheduled,
                key: Some("b"),
                run_at: 50,
            },
            Candidate {
                seq: 6,
                state: JobState::Queued,
                key: Some("b"),
                run_at: 0,
            },
            Candidate {
                seq: 7,
                state: JobState::Queued,
                key: Some("c"),
                run_at: 0,
            },
        ];
        assert_eq!(eligible(&jobs, 10, 10), vec![4, 7]);
        assert_eq!(eligible(&jobs, 60, 10), vec![3, 4, 5, 7]);
        assert_eq!(eligible(&jobs, 60, 2), vec![3, 4]);
    }
}
