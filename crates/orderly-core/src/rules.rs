//! The pure rules of the domain: what may start, what a failure leads to,
//! and how long a retry waits.
//!
//! These functions take plain values and return decisions; stores call them
//! inside their transactions and apply what they return, and the
//! [`crate::model`] uses them too, so each rule is written once. Time (`now`)
//! and randomness (`jitter`, a number in `[0, 1)` drawn by the caller) come in
//! as inputs: the same inputs give the same decision in every backend.

pub use crate::waiting::{estimate_start, waiting_reason, ReasonFacts, RecentPace};
use serde_json::{json, Value};

use crate::job::{JobState, Millis};
use crate::queue::Backoff;
use crate::store::Outcome;

/// The state a job waits in until `run_at`: `scheduled` while `run_at` is
/// ahead of `now`, `queued` once it is due.
pub fn waiting_state(run_at: Millis, now: Millis) -> JobState {
    if run_at > now {
        JobState::Scheduled
    } else {
        JobState::Queued
    }
}

/// What an attempt's end leads to, for a store to apply as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Back in line in its own place (same `seq`): `state` is
    /// [`waiting_state`] of `run_at`; `error` is the attempt's error.
    Wait {
        /// `scheduled` or `queued`.
        state: JobState,
        /// When it may start again.
        run_at: Millis,
        /// The error of the attempt that ended.
        error: Value,
    },
    /// Finished for good.
    Finish {
        /// `succeeded`, `failed` or `cancelled`.
        state: JobState,
        /// The result to keep (success only).
        result: Option<Value>,
        /// The error to keep; `None` for a success, which clears any earlier
        /// attempt's error (the attempt history keeps those).
        error: Option<Value>,
    },
}

impl Next {
    /// The state the job moves to.
    pub fn state(&self) -> JobState {
        match self {
            Next::Wait { state, .. } | Next::Finish { state, .. } => *state,
        }
    }

    /// The outcome word recorded in the attempt history.
    pub fn attempt_outcome(&self) -> &'static str {
        match self {
            Next::Wait { .. } => "failed",
            Next::Finish { state, .. } => match state {
                JobState::Succeeded => "succeeded",
                JobState::Cancelled => "cancelled",
                _ => "failed",
            },
        }
    }

    /// The error recorded for the attempt, if it did not succeed.
    pub fn attempt_error(&self) -> Option<&Value> {
        match self {
            Next::Wait { error, .. } => Some(error),
            Next::Finish { error, .. } => error.as_ref(),
        }
    }
}

/// The facts about a running attempt that decide what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptFacts<'a> {
    /// Number of the attempt (1 for the first run).
    pub attempt: u32,
    /// Starts allowed.
    pub max_attempts: u32,
    /// Someone asked to cancel the job while it ran.
    pub cancel_requested: bool,
    /// The job's per-attempt time limit.
    pub timeout_ms: Option<u64>,
    /// The worker that held the lease.
    pub worker: Option<&'a str>,
}

impl<'a> AttemptFacts<'a> {
    /// The facts of `job`'s current attempt.
    pub fn of(job: &'a crate::job::Job) -> Self {
        AttemptFacts {
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            cancel_requested: job.cancel_requested,
            timeout_ms: job.timeout_ms,
            worker: job.worker.as_deref(),
        }
    }
}

fn failed_next(
    a: &AttemptFacts<'_>,
    error: Value,
    retry: bool,
    backoff: &Backoff,
    now: Millis,
    jitter: f64,
) -> Next {
    match after_failure(
        a.attempt,
        a.max_attempts,
        retry,
        a.cancel_requested,
        backoff,
        now,
        jitter,
    ) {
        AfterFailure::Retry { run_at } => Next::Wait {
            state: waiting_state(run_at, now),
            run_at,
            error,
        },
        AfterFailure::Finish(state) => Next::Finish {
            state,
            result: None,
            error: Some(error),
        },
    }
}

/// What a worker's report on a current lease leads to.
pub fn after_report(
    a: &AttemptFacts<'_>,
    outcome: &Outcome,
    backoff: &Backoff,
    now: Millis,
    jitter: f64,
) -> Next {
    match outcome {
        Outcome::Succeeded { result } => Next::Finish {
            state: JobState::Succeeded,
            result: Some(result.clone().unwrap_or(Value::Null)),
            error: None,
        },
        Outcome::Failed {
            error,
            retry,
            retry_after_ms,
        } => {
            let next = failed_next(a, error.clone(), *retry, backoff, now, jitter);
            match (next, retry_after_ms) {
                // The caller said when: that replaces the backoff.
                (Next::Wait { error, .. }, Some(ms)) => {
                    let run_at = now.saturating_add(i64::try_from(*ms).unwrap_or(i64::MAX));
                    Next::Wait {
                        state: waiting_state(run_at, now),
                        run_at,
                        error,
                    }
                }
                (next, _) => next,
            }
        }
    }
}

/// An attempt that ended without a report (its lease ran out, or its runner
/// gave it up): the job goes back to its original place at once, unless it
/// has no attempts left or a cancel was asked; `error` is recorded either way.
fn back_in_place(a: &AttemptFacts<'_>, error: Value, now: Millis) -> Next {
    match after_lease_expiry(a.attempt, a.max_attempts, a.cancel_requested) {
        JobState::Queued => Next::Wait {
            state: JobState::Queued,
            run_at: now,
            error,
        },
        state => Next::Finish {
            state,
            result: None,
            error: Some(error),
        },
    }
}

/// What an attempt whose runner gave it up leads to (its server was
/// stopped or killed, and the lease is released on the next start rather
/// than left to expire): like a lease that ran out without a timeout, the
/// job goes back to its original place at once, unless it has no attempts
/// left or a cancel was asked. The error says so, as `reason: "interrupted"`.
pub fn after_interrupt(a: &AttemptFacts<'_>, now: Millis) -> Next {
    let error = json!({
        "message": format!(
            "attempt {} was interrupted: its runner {} stopped with the server (shutdown or crash) and the job runs again in its place",
            a.attempt,
            a.worker.unwrap_or("?")
        ),
        "reason": "interrupted"
    });
    back_in_place(a, error, now)
}

/// What a lease that ran out leads to. `timed_out` is true when the
/// attempt's deadline (`timeout_ms` from its start) passed: that is a failed
/// attempt and follows the retry policy with backoff. Otherwise the worker
/// stopped renewing: the job goes back to its original place at once (no
/// backoff) so it is the next to start, unless it has no attempts left or a
/// cancel was asked. The error says which, in words and as a `reason`.
pub fn after_lease_lost(
    a: &AttemptFacts<'_>,
    timed_out: bool,
    backoff: &Backoff,
    now: Millis,
    jitter: f64,
) -> Next {
    if timed_out {
        let error = json!({
            "message": format!("attempt {} timed out after {} ms", a.attempt, a.timeout_ms.unwrap_or(0)),
            "reason": "timeout"
        });
        return failed_next(a, error, true, backoff, now, jitter);
    }
    let error = json!({
        "message": format!(
            "lease of attempt {} expired: the worker {} stopped reporting",
            a.attempt,
            a.worker.unwrap_or("?")
        ),
        "reason": "lease_expired"
    });
    back_in_place(a, error, now)
}

/// What a cancel asks of a job in `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelDecision {
    /// A waiting job: cancelled now (and its key passes on).
    CancelNow,
    /// A running job: flag it; its worker sees the request on its next heartbeat.
    RequestStop,
    /// Already finished: nothing to cancel.
    Refuse,
}

/// Decides what a cancel does to a job in `state`.
pub fn after_cancel(state: JobState) -> CancelDecision {
    match state {
        JobState::Scheduled | JobState::Queued => CancelDecision::CancelNow,
        JobState::Running => CancelDecision::RequestStop,
        _ => CancelDecision::Refuse,
    }
}

/// Whether a job in `state` may be put back in line by a retry.
pub fn may_retry(state: JobState) -> bool {
    matches!(state, JobState::Failed | JobState::Cancelled)
}

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

/// The lease length an attempt was granted at its start: the lease it asked
/// for (`asked_ms`, the queue's default when `None`), cut short by its
/// deadline (what [`lease_expiry`] gave then). Not `expires_at -
/// started_at`, which grows with every renewal.
pub fn granted_lease_ms(
    asked_ms: Option<i64>,
    deadline_at: Option<Millis>,
    started_at: Option<Millis>,
) -> u64 {
    let asked = asked_ms
        .unwrap_or(crate::queue::QueueConfig::DEFAULT_LEASE_MS as i64)
        .max(0) as u64;
    match (deadline_at, started_at) {
        (Some(deadline), Some(started)) => asked.min((deadline - started).max(0) as u64),
        _ => asked,
    }
}

/// What a store remembers of a report, to answer it again when it is
/// repeated: its token and outcome kind. A success sent again is a repeat;
/// a failure sent with the token of a success is not.
pub fn remembered_report(token: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Succeeded { .. } => format!("succeeded:{token}"),
        Outcome::Failed { .. } => format!("failed:{token}"),
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
    fn the_granted_lease_is_the_asked_one_cut_by_the_deadline() {
        assert_eq!(granted_lease_ms(Some(5_000), None, Some(100)), 5_000);
        assert_eq!(granted_lease_ms(None, None, None), 30_000);
        assert_eq!(granted_lease_ms(Some(5_000), Some(2_100), Some(100)), 2_000);
        assert_eq!(granted_lease_ms(Some(5_000), Some(50), Some(100)), 0);
    }

    #[test]
    fn a_remembered_report_tells_success_from_failure() {
        let ok = Outcome::Succeeded { result: None };
        let failed = Outcome::Failed {
            error: json!("x"),
            retry: true,
            retry_after_ms: None,
        };
        assert_eq!(remembered_report("t", &ok), "succeeded:t");
        assert_ne!(remembered_report("t", &ok), remembered_report("t", &failed));
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
    fn decisions_carry_state_time_and_error() {
        let a = AttemptFacts {
            attempt: 1,
            max_attempts: 3,
            cancel_requested: false,
            timeout_ms: Some(50),
            worker: Some("w"),
        };
        let ok = after_report(&a, &Outcome::Succeeded { result: None }, &b(), 1_000, 0.5);
        assert_eq!(
            ok,
            Next::Finish {
                state: JobState::Succeeded,
                result: Some(Value::Null),
                error: None
            }
        );
        let failed = Outcome::Failed {
            error: json!("boom"),
            retry: true,
            retry_after_ms: None,
        };
        let told = Outcome::Failed {
            error: json!("busy"),
            retry: true,
            retry_after_ms: Some(7_000),
        };
        assert_eq!(
            after_report(&a, &told, &b(), 1_000, 0.5),
            Next::Wait {
                state: JobState::Scheduled,
                run_at: 8_000,
                error: json!("busy")
            },
            "a retry_after replaces the backoff"
        );
        let last = AttemptFacts { attempt: 3, ..a };
        assert_eq!(
            after_report(&last, &told, &b(), 1_000, 0.5).state(),
            JobState::Failed,
            "a retry_after does not add attempts"
        );
        assert_eq!(
            after_report(&a, &failed, &b(), 1_000, 0.5),
            Next::Wait {
                state: JobState::Scheduled,
                run_at: 2_000,
                error: json!("boom")
            }
        );
        let zero = Backoff {
            initial_ms: 0,
            ..b()
        };
        assert_eq!(
            after_report(&a, &failed, &zero, 1_000, 0.5).state(),
            JobState::Queued,
            "a retry with no delay is due at once"
        );
        let lost = after_lease_lost(&a, false, &b(), 1_000, 0.5);
        assert_eq!(lost.state(), JobState::Queued);
        assert_eq!(lost.attempt_error().unwrap()["reason"], "lease_expired");
        let timed_out = after_lease_lost(&a, true, &b(), 1_000, 0.5);
        assert_eq!(timed_out.state(), JobState::Scheduled);
        assert_eq!(timed_out.attempt_error().unwrap()["reason"], "timeout");
        assert_eq!(after_cancel(JobState::Queued), CancelDecision::CancelNow);
        assert_eq!(after_cancel(JobState::Running), CancelDecision::RequestStop);
        assert_eq!(after_cancel(JobState::Failed), CancelDecision::Refuse);
        assert!(may_retry(JobState::Cancelled) && !may_retry(JobState::Succeeded));
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
