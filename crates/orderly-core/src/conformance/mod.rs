//! The store conformance suite: contract tests every backend must pass.
//!
//! Each test is a `pub async fn` that takes a fresh, empty store (the random
//! interleavings take a function that makes fresh stores) and panics with a
//! message naming the broken promise. [`exercise`] runs them all in sequence;
//! a backend's test file may instead call
//! [`store_conformance_tests!`](crate::store_conformance_tests) once, which
//! makes one test per contract test so a failure is pinpointed. The list of
//! contract tests lives once, in that macro, and drives both.
//!
//! This file holds the entry points and the helpers the tests share; the tests
//! themselves are split by area into the submodules (enqueue, claims, keys,
//! leases, maintenance, failures, reports, changes, queues, starts, waiting
//! jobs' answers, model replay) and re-exported here.
//!
//! Time is never slept: every store method takes `now`, so leases, delays and
//! backoff are tested by passing chosen times (all relative to [`T0`]).
//!
//! The suite checks contract sections 2 (ordering) and 3 (delivery and
//! idempotency) with exact values, and replays random interleavings against
//! the reference [`Model`](crate::model::Model), claim for claim.

use std::future::Future;

use serde_json::json;

use crate::job::{Job, JobState, Millis, NewJob};
use crate::queue::{Backoff, QueueInfo, QueuePatch};
use crate::store::{
    Changes, ClaimParams, Committed, EnqueueParams, Enqueued, Lease, MaintenanceReport, Outcome,
    ReportParams, Store, StoreError,
};

/// The time every test starts at (Unix milliseconds, November 2023).
pub const T0: Millis = 1_700_000_000_000;

/// Worker name the suite claims with.
const WORKER: &str = "conformance-worker";

/// The backoff jitter the suite draws: 0.5 gives the un-jittered delay.
const JITTER: f64 = 0.5;

/// Backoff with a flat one-second delay (jitter keeps it within `[800, 1000]` ms).
const FLAT_BACKOFF: Backoff = Backoff {
    initial_ms: 1_000,
    max_ms: 1_000,
    factor: 1.0,
};

mod changes;
mod claim;
mod enqueue;
mod failures;
mod keys;
mod leases;
mod maintenance;
mod model_replay;
mod queues;
mod release;
mod reports;
mod starts;
mod waiting;

pub use changes::*;
pub use claim::*;
pub use enqueue::*;
pub use failures::*;
pub use keys::*;
pub use leases::*;
pub use maintenance::*;
pub use model_replay::*;
pub use queues::*;
pub use release::*;
pub use reports::*;
pub use starts::*;
pub use waiting::*;

/// Runs every contract test, each against a fresh store from `make_store`.
///
/// `make_store` must return a new, empty store each time it is called.
/// Panics on the first violation with a message naming the test and the promise.
/// The tests run in the order of the one list of contract tests, in
/// [`store_conformance_tests!`](crate::store_conformance_tests).
pub async fn exercise<S, F, Fut>(make_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    crate::store_conformance_tests!(@list exercise (make_store));
}

/// Expands into one `#[tokio::test]` per contract test, named after it, so a
/// failure names the broken test.
///
/// The argument is an expression, evaluated once at the start of each test,
/// that yields a store factory: anything callable as `make_store()` returning
/// a future of a new, empty store (what [`exercise`] takes). Every test gets
/// a fresh store from it, and [`random_interleavings_match_model`] gets the
/// factory itself. The factory is dropped when its test ends, so it may own
/// whatever must outlive the stores it made (a temporary directory, say).
///
/// The tests run on a multi-threaded runtime with 2 workers; the calling
/// crate needs `tokio` (features `macros` and `rt-multi-thread`) among its
/// dev-dependencies.
///
/// ```ignore
/// orderly_core::store_conformance_tests!(|| async { MyStore::open_fresh() });
/// ```
///
/// This is the one list of contract tests: [`exercise`] runs the same list,
/// in order. (The `@`-arms are internal.)
#[macro_export]
macro_rules! store_conformance_tests {
    // The list of contract tests that take a store, handed to `@$mode`; the
    // random interleavings, which take the factory, come after them.
    (@list $mode:ident $args:tt) => {
        $crate::store_conformance_tests!(@$mode $args [
            enqueue_assigns_consecutive_seqs,
            idempotent_enqueue,
            batch_with_a_repeated_id_is_refused_whole,
            payloads_are_kept_exactly,
            payload_floats_are_kept_exactly,
            fifo_claim_at_concurrency_one,
            concurrency_is_never_exceeded,
            keys_run_one_at_a_time_in_seq_order,
            retrying_keyed_job_holds_its_key,
            retrying_keyless_job_lets_later_jobs_go,
            delayed_keyed_job_holds_its_place,
            cancelling_waiting_key_head_passes_the_key,
            long_line_behind_busy_key_does_not_block_other_keys,
            expired_lease_is_claimed_again_first,
            expired_lease_without_attempts_left_fails,
            released_leases_rerun_in_place,
            maintenance_reaps_and_promotes,
            timeouts_fail_the_attempt,
            leases_carry_their_granted_length,
            heartbeat_and_cancel_of_running_job,
            fail_outcomes,
            success_clears_an_earlier_error,
            invalid_operations_and_retry,
            report_and_claim,
            report_and_claim_repeat_returns_only_its_own_leases,
            report_many_is_independent_per_report,
            writes_report_what_they_changed,
            changes_carry_times_and_lease_loss,
            job_list_pages_by_seq,
            job_list_of_a_key_is_its_line,
            queue_configure_and_counts,
            retention_purge_deletes_only_old_finished_jobs,
            start_no_increases_in_start_order,
            start_log_lists_every_start,
            start_log_pages_by_cursor,
            purged_jobs_leave_no_starts,
            write_answers_explain_waiting_jobs,
            start_latest_reads_the_end_of_the_log,
            concurrent_claimers,
            parked_claims_answer_with_work_and_never_lose_it,
        ]);
    };
    // `exercise`: every test in sequence, each on a fresh store.
    (@exercise ($make_store:expr) [$($name:ident),* $(,)?]) => {
        $(
            $crate::conformance::$name(($make_store)().await).await;
        )*
        $crate::conformance::random_interleavings_match_model(&$make_store).await;
    };
    // One `#[tokio::test]` per test.
    (@tests ($make_store:expr) [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let make_store = $make_store;
                $crate::conformance::$name(make_store().await).await;
            }
        )*

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn random_interleavings_match_model() {
            let make_store = $make_store;
            $crate::conformance::random_interleavings_match_model(&make_store).await;
        }
    };
    ($make_store:expr $(,)?) => {
        $crate::store_conformance_tests!(@list tests ($make_store));
    };
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A keyless job with payload `{"id": id}`, due now.
fn nj(id: &str) -> NewJob {
    NewJob {
        id: id.to_string(),
        key: None,
        payload: json!({ "id": id }),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

/// A job with ordering key `key`.
fn keyed(id: &str, key: &str) -> NewJob {
    NewJob {
        key: Some(key.to_string()),
        ..nj(id)
    }
}

/// `job` not before `run_at`.
fn at(job: NewJob, run_at: Millis) -> NewJob {
    NewJob {
        run_at: Some(run_at),
        ..job
    }
}

/// Enqueues, returning what the store committed.
async fn try_enqueue_committed(
    store: &dyn Store,
    queue: &str,
    jobs: Vec<NewJob>,
    now: Millis,
) -> Result<Committed<Vec<Enqueued>>, StoreError> {
    store
        .job_enqueue_many(EnqueueParams {
            queue: queue.to_string(),
            jobs,
            now,
        })
        .await
}

async fn try_enqueue(
    store: &dyn Store,
    queue: &str,
    jobs: Vec<NewJob>,
    now: Millis,
) -> Result<Vec<Enqueued>, StoreError> {
    try_enqueue_committed(store, queue, jobs, now)
        .await
        .map(|c| c.value)
}

/// Enqueues new jobs and asserts every one was created.
async fn enqueue(store: &dyn Store, queue: &str, jobs: Vec<NewJob>, now: Millis) -> Vec<Job> {
    let n = jobs.len();
    let out = try_enqueue(store, queue, jobs, now)
        .await
        .unwrap_or_else(|e| panic!("enqueue of {n} jobs into {queue:?} failed: {e:?}"));
    assert_eq!(out.len(), n, "enqueue must return one entry per job");
    out.into_iter()
        .map(|e| {
            assert!(
                e.created,
                "job {:?} was new but enqueue said created=false",
                e.job.id
            );
            e.job
        })
        .collect()
}

async fn configure(store: &dyn Store, queue: &str, patch: QueuePatch) -> QueueInfo {
    store
        .queue_configure(queue, patch, 0)
        .await
        .unwrap_or_else(|e| panic!("queue_configure({queue:?}) failed: {e:?}"))
}

fn conc(concurrency: u32) -> QueuePatch {
    QueuePatch {
        concurrency: Some(concurrency),
        ..QueuePatch::default()
    }
}

/// Claim parameters with the suite's jitter.
fn claim_params(
    queue: &str,
    worker: &str,
    max: u32,
    lease_ms: Option<u64>,
    now: Millis,
) -> ClaimParams {
    ClaimParams {
        queue: queue.to_string(),
        worker: worker.to_string(),
        max,
        lease_ms,
        now,
        jitter: JITTER,
    }
}

/// Report parameters with the suite's jitter.
fn report_params(id: &str, token: &str, outcome: Outcome, now: Millis) -> ReportParams {
    ReportParams {
        id: id.to_string(),
        token: token.to_string(),
        outcome,
        now,
        jitter: JITTER,
    }
}

/// Checks what every lease of a claim by `worker` on `queue` at `now` shows.
fn check_leases(leases: &[Lease], queue: &str, worker: &str, max: u32, now: Millis) {
    assert!(
        leases.len() as u64 <= max as u64,
        "claim with max {max} returned {} leases",
        leases.len()
    );
    for l in leases {
        assert_eq!(l.job.state, JobState::Running, "a claimed job is running");
        assert_eq!(l.job.queue, queue, "a claim returns only jobs of its queue");
        assert_eq!(l.job.position, None, "a running job has no position");
        assert_eq!(l.job.started_at, Some(now), "started_at is the claim time");
        assert_eq!(l.job.worker.as_deref(), Some(worker), "worker is recorded");
        assert_eq!(
            l.job.lease_expires_at,
            Some(l.expires_at),
            "the job shows its lease expiry"
        );
        assert!(l.job.start_no.is_some(), "every start is numbered");
        assert!(!l.token.is_empty(), "a lease has a token");
    }
    assert!(
        leases.windows(2).all(|w| w[0].job.seq < w[1].job.seq),
        "leases of one claim come in seq order: {:?}",
        seqs(leases)
    );
}

/// Claims as `worker` and returns what the store committed, after checking
/// every lease.
async fn claim_as(
    store: &dyn Store,
    queue: &str,
    worker: &str,
    max: u32,
    lease_ms: Option<u64>,
    now: Millis,
) -> Committed<Vec<Lease>> {
    let c = store
        .job_claim(claim_params(queue, worker, max, lease_ms, now))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "claim on {queue:?} by {worker:?} (max {max}) at T0+{} failed: {e:?}",
                now - T0
            )
        });
    check_leases(&c.value, queue, worker, max, now);
    c
}

async fn claim_lease(
    store: &dyn Store,
    queue: &str,
    max: u32,
    lease_ms: Option<u64>,
    now: Millis,
) -> Vec<Lease> {
    claim_as(store, queue, WORKER, max, lease_ms, now)
        .await
        .value
}

async fn claim(store: &dyn Store, queue: &str, max: u32, now: Millis) -> Vec<Lease> {
    claim_lease(store, queue, max, None, now).await
}

fn seqs(leases: &[Lease]) -> Vec<i64> {
    leases.iter().map(|l| l.job.seq).collect()
}

fn ids(leases: &[Lease]) -> Vec<&str> {
    leases.iter().map(|l| l.job.id.as_str()).collect()
}

/// Claims and asserts exactly the jobs `expected` (by id, in this order) start.
async fn claim_expect(
    store: &dyn Store,
    queue: &str,
    max: u32,
    now: Millis,
    expected: &[&str],
    why: &str,
) -> Vec<Lease> {
    let leases = claim(store, queue, max, now).await;
    assert_eq!(
        ids(&leases),
        expected,
        "claim on {queue:?} (max {max}) at T0+{}: {why}",
        now - T0
    );
    leases
}

/// Reports one attempt through `job_report_many`, returning what the store committed.
async fn report_committed(
    store: &dyn Store,
    id: &str,
    token: &str,
    outcome: Outcome,
    now: Millis,
) -> Result<Committed<Job>, StoreError> {
    let mut results = store
        .job_report_many(vec![report_params(id, token, outcome, now)])
        .await;
    assert_eq!(results.len(), 1, "one result per report");
    results.pop().expect("one result")
}

async fn report(
    store: &dyn Store,
    id: &str,
    token: &str,
    outcome: Outcome,
    now: Millis,
) -> Result<Job, StoreError> {
    report_committed(store, id, token, outcome, now)
        .await
        .map(|c| c.value)
}

/// `job_report_and_claim` with the suite's jitter: reports `(id, token,
/// outcome)` and claims up to `max` jobs of `queue` as `worker`.
async fn report_and_claim_as(
    store: &dyn Store,
    report: (&str, &str, Outcome),
    queue: &str,
    worker: &str,
    max: u32,
    now: Millis,
) -> Result<Committed<(Job, Vec<Lease>)>, StoreError> {
    let (id, token, outcome) = report;
    store
        .job_report_and_claim(
            report_params(id, token, outcome, now),
            claim_params(queue, worker, max, None, now),
        )
        .await
}

/// `job_cancel`, answering the job.
async fn cancel(store: &dyn Store, id: &str, now: Millis) -> Result<Job, StoreError> {
    store.job_cancel(id, now).await.map(|c| c.value)
}

/// `job_retry`, answering the job.
async fn retry(store: &dyn Store, id: &str, now: Millis) -> Result<Job, StoreError> {
    store.job_retry(id, now).await.map(|c| c.value)
}

/// A maintenance pass at `now` with the suite's jitter.
async fn maintain(store: &dyn Store, now: Millis) -> Committed<MaintenanceReport> {
    store
        .maintenance_run(now, JITTER)
        .await
        .unwrap_or_else(|e| panic!("maintenance at T0+{} failed: {e:?}", now - T0))
}

/// The moves of `changes` as `(id, from, to)`, in order.
fn moves(changes: &Changes) -> Vec<(&str, Option<JobState>, JobState)> {
    changes
        .jobs
        .iter()
        .map(|c| (c.id.as_str(), c.from, c.to))
        .collect()
}

/// Asserts `changes` holds exactly the moves `expected` (`(id, from, to)`,
/// in order), every one in `queue` and made at `now`.
fn assert_moves(
    changes: &Changes,
    queue: &str,
    now: Millis,
    expected: &[(&str, Option<JobState>, JobState)],
    what: &str,
) {
    assert_eq!(moves(changes), expected, "changes of {what}: {changes:?}");
    for c in &changes.jobs {
        assert_eq!(c.queue, queue, "queue of {}'s change in {what}", c.id);
        assert_eq!(c.at, now, "time of {}'s change in {what}", c.id);
    }
}

fn success(id: &str) -> Outcome {
    Outcome::Succeeded {
        result: Some(json!({ "done": id })),
    }
}

fn failure(retry: bool) -> Outcome {
    Outcome::Failed {
        error: json!({ "message": "boom" }),
        retry,
        retry_after_ms: None,
    }
}

async fn complete(store: &dyn Store, lease: &Lease, now: Millis) -> Job {
    let job = report(
        store,
        &lease.job.id,
        &lease.token,
        success(&lease.job.id),
        now,
    )
    .await
    .unwrap_or_else(|e| panic!("completing {:?} failed: {e:?}", lease.job.id));
    assert_eq!(job.state, JobState::Succeeded, "a completed job succeeded");
    assert_eq!(job.finished_at, Some(now), "finished_at is the report time");
    assert_eq!(
        job.result,
        Some(json!({ "done": lease.job.id })),
        "result is kept"
    );
    assert_eq!(job.position, None, "a finished job has no position");
    job
}

async fn fail(store: &dyn Store, lease: &Lease, retry: bool, now: Millis) -> Job {
    let job = report(store, &lease.job.id, &lease.token, failure(retry), now)
        .await
        .unwrap_or_else(|e| panic!("failing {:?} failed: {e:?}", lease.job.id));
    assert_eq!(
        job.error,
        Some(json!({ "message": "boom" })),
        "the reported error is kept"
    );
    job
}

/// `job_get`, checking that a waiting job (and only one) comes with its
/// `wait_facts` and, with a key, its `key_position` (as the writes answer it).
async fn get(store: &dyn Store, id: &str) -> Job {
    let job = store
        .job_get(id)
        .await
        .unwrap_or_else(|e| panic!("job_get({id:?}) failed: {e:?}"))
        .unwrap_or_else(|| panic!("job {id:?} not found"));
    let waiting = job.state.is_waiting();
    assert_eq!(
        job.wait_facts.is_some(),
        waiting,
        "{id}: wait facts come with a waiting job only: {job:?}"
    );
    assert_eq!(
        job.key_position.is_some(),
        waiting && job.key.is_some(),
        "{id}: a key position comes with a waiting job with a key only: {job:?}"
    );
    job
}

async fn queue_info(store: &dyn Store, queue: &str) -> QueueInfo {
    store
        .queue_get(queue)
        .await
        .unwrap_or_else(|e| panic!("queue_get({queue:?}) failed: {e:?}"))
}

fn expect_stale<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::StaleLease { .. }) => {}
        other => panic!("{what}: expected StaleLease, got {other:?}"),
    }
}

fn expect_invalid_state<T: std::fmt::Debug>(r: Result<T, StoreError>, state: JobState, what: &str) {
    match r {
        Err(StoreError::InvalidState { state: s, .. }) if s == state => {}
        other => panic!("{what}: expected InvalidState({state}), got {other:?}"),
    }
}

fn expect_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, id: &str, what: &str) {
    match r {
        Err(StoreError::JobNotFound(ref i)) if i == id => {}
        other => panic!("{what}: expected JobNotFound({id:?}), got {other:?}"),
    }
}

fn expect_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, id: &str, what: &str) {
    match r {
        Err(StoreError::IdConflict { id: ref i }) if i == id => {}
        other => panic!("{what}: expected IdConflict({id:?}), got {other:?}"),
    }
}

/// Expects `Invalid` with code `invalid_value`, its message naming `field`.
fn expect_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>, field: &str, what: &str) {
    match r {
        Err(StoreError::Invalid(ref e))
            if e.code == "invalid_value" && e.message.contains(field) => {}
        other => panic!("{what}: expected Invalid(invalid_value) naming {field}, got {other:?}"),
    }
}

fn error_reason(job: &Job) -> Option<&str> {
    job.error.as_ref()?.get("reason")?.as_str()
}

/// xorshift64*: a tiny deterministic generator, so a failing seed replays exactly.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 11) % n
    }
}
