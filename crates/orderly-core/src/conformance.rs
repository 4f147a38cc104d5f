//! The store conformance suite: contract tests every backend must pass.
//!
//! Each test is a `pub async fn` that takes a fresh, empty store (the random
//! interleavings take a function that makes fresh stores) and panics with a
//! message naming the broken promise. [`exercise`] runs them all; a backend's
//! test file may instead run them one by one so a failure is pinpointed.
//!
//! Time is never slept: every store method takes `now`, so leases, delays and
//! backoff are tested by passing chosen times (all relative to [`T0`]).
//!
//! The suite checks contract sections 2 (ordering) and 3 (delivery and
//! idempotency) with exact values, and replays random interleavings against
//! the reference [`Model`], claim for claim.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::job::{Job, JobState, Millis, NewJob};
use crate::model::Model;
use crate::queue::{Backoff, QueueConfig, QueueInfo, QueuePatch, StateCounts};
use crate::store::{
    ClaimParams, EnqueueParams, Enqueued, HeartbeatParams, Lease, ListParams, Outcome,
    ReportParams, Store, StoreError,
};

/// The time every test starts at (Unix milliseconds, November 2023).
pub const T0: Millis = 1_700_000_000_000;

/// Worker name the suite claims with.
const WORKER: &str = "conformance-worker";

/// Backoff with a flat one-second delay (jitter keeps it within `[800, 1000]` ms).
const FLAT_BACKOFF: Backoff = Backoff {
    initial_ms: 1_000,
    max_ms: 1_000,
    factor: 1.0,
};

/// Runs every contract test, each against a fresh store from `make_store`.
///
/// `make_store` must return a new, empty store each time it is called.
/// Panics on the first violation with a message naming the test and the promise.
pub async fn exercise<S, F, Fut>(make_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    enqueue_assigns_consecutive_seqs(make_store().await).await;
    idempotent_enqueue(make_store().await).await;
    payloads_are_kept_exactly(make_store().await).await;
    payload_floats_are_kept_exactly(make_store().await).await;
    fifo_claim_at_concurrency_one(make_store().await).await;
    concurrency_is_never_exceeded(make_store().await).await;
    keys_run_one_at_a_time_in_seq_order(make_store().await).await;
    retrying_keyed_job_holds_its_key(make_store().await).await;
    retrying_keyless_job_lets_later_jobs_go(make_store().await).await;
    delayed_keyed_job_holds_its_place(make_store().await).await;
    cancelling_waiting_key_head_passes_the_key(make_store().await).await;
    long_line_behind_busy_key_does_not_block_other_keys(make_store().await).await;
    expired_lease_is_claimed_again_first(make_store().await).await;
    expired_lease_without_attempts_left_fails(make_store().await).await;
    maintenance_reaps_and_promotes(make_store().await).await;
    timeouts_fail_the_attempt(make_store().await).await;
    heartbeat_and_cancel_of_running_job(make_store().await).await;
    fail_outcomes(make_store().await).await;
    invalid_operations_and_retry(make_store().await).await;
    report_and_claim(make_store().await).await;
    report_many_is_independent_per_report(make_store().await).await;
    job_list_pages_by_seq(make_store().await).await;
    queue_configure_and_counts(make_store().await).await;
    retention_purge_deletes_only_old_finished_jobs(make_store().await).await;
    start_no_increases_in_start_order(make_store().await).await;
    concurrent_claimers(make_store().await).await;
    random_interleavings_match_model(&make_store).await;
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

async fn try_enqueue(
    store: &dyn Store,
    queue: &str,
    jobs: Vec<NewJob>,
    now: Millis,
) -> Result<Vec<Enqueued>, StoreError> {
    store
        .job_enqueue_many(EnqueueParams {
            queue: queue.to_string(),
            jobs,
            now,
        })
        .await
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

async fn claim_lease(
    store: &dyn Store,
    queue: &str,
    max: u32,
    lease_ms: Option<u64>,
    now: Millis,
) -> Vec<Lease> {
    let leases = store
        .job_claim(ClaimParams {
            queue: queue.to_string(),
            worker: WORKER.to_string(),
            max,
            lease_ms,
            now,
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "claim on {queue:?} (max {max}) at T0+{} failed: {e:?}",
                now - T0
            )
        });
    assert!(
        leases.len() as u64 <= max as u64,
        "claim with max {max} returned {} leases",
        leases.len()
    );
    for l in &leases {
        assert_eq!(l.job.state, JobState::Running, "a claimed job is running");
        assert_eq!(l.job.queue, queue, "a claim returns only jobs of its queue");
        assert_eq!(l.job.position, None, "a running job has no position");
        assert_eq!(l.job.started_at, Some(now), "started_at is the claim time");
        assert_eq!(l.job.worker.as_deref(), Some(WORKER), "worker is recorded");
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
        seqs(&leases)
    );
    leases
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

async fn report(
    store: &dyn Store,
    id: &str,
    token: &str,
    outcome: Outcome,
    now: Millis,
) -> Result<Job, StoreError> {
    let mut results = store
        .job_report_many(vec![ReportParams {
            id: id.to_string(),
            token: token.to_string(),
            outcome,
            now,
        }])
        .await
        .unwrap_or_else(|e| panic!("job_report_many for {id:?} failed as a whole: {e:?}"));
    assert_eq!(results.len(), 1, "one result per report");
    results.pop().expect("one result")
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

async fn get(store: &dyn Store, id: &str) -> Job {
    store
        .job_get(id)
        .await
        .unwrap_or_else(|e| panic!("job_get({id:?}) failed: {e:?}"))
        .unwrap_or_else(|| panic!("job {id:?} not found"))
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

fn error_reason(job: &Job) -> Option<&str> {
    job.error.as_ref()?.get("reason")?.as_str()
}

// ---------------------------------------------------------------------------
// Enqueue
// ---------------------------------------------------------------------------

/// Section 2: a batch gets consecutive, strictly increasing `seq`s in its
/// order; new jobs are waiting with attempt 0 and a position counting the
/// waiting jobs ahead; `job_get` shows the same; positions shrink as earlier
/// jobs start.
pub async fn enqueue_assigns_consecutive_seqs<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "enqueue";
    let batch = enqueue(
        s,
        q,
        vec![
            nj("e1"),
            keyed("e2", "k"),
            at(nj("e3"), T0 + 5_000),
            at(nj("e4"), T0 - 1_000),
        ],
        T0,
    )
    .await;
    let base = batch[0].seq;
    assert_eq!(
        batch.iter().map(|j| j.seq).collect::<Vec<_>>(),
        vec![base, base + 1, base + 2, base + 3],
        "a batch gets consecutive seqs in its order"
    );
    let expect_states = [
        JobState::Queued,
        JobState::Queued,
        JobState::Scheduled,
        JobState::Queued,
    ];
    for (i, j) in batch.iter().enumerate() {
        let id = format!("e{}", i + 1);
        assert_eq!(j.id, id, "jobs come back in batch order");
        assert_eq!(j.queue, q);
        assert_eq!(j.state, expect_states[i], "state of {id}");
        assert_eq!(j.attempt, 0, "attempt of new {id}");
        assert_eq!(j.position, Some(i as u64), "position of {id}");
        assert_eq!(j.payload, json!({ "id": id }), "payload of {id}");
        assert_eq!(j.max_attempts, QueueConfig::DEFAULT_MAX_ATTEMPTS);
        assert_eq!(j.enqueued_at, T0);
        assert_eq!(j.started_at, None);
        assert_eq!(j.finished_at, None);
        assert_eq!(j.start_no, None);
        assert_eq!(j.lease_expires_at, None);
        assert!(!j.cancel_requested);
        assert_eq!(j.result, None);
        assert_eq!(j.error, None);
    }
    assert_eq!(batch[0].key, None);
    assert_eq!(batch[1].key.as_deref(), Some("k"));
    assert_eq!(batch[0].run_at, T0, "run_at defaults to now");
    assert_eq!(
        batch[2].run_at,
        T0 + 5_000,
        "a delayed job keeps its run_at"
    );
    for j in &batch {
        assert_eq!(&get(s, &j.id).await, j, "job_get shows the enqueued job");
    }

    let later = enqueue(s, q, vec![nj("e5")], T0 + 1).await;
    assert!(
        later[0].seq > batch[3].seq,
        "a later enqueue gets a higher seq ({} after {})",
        later[0].seq,
        batch[3].seq
    );
    assert_eq!(later[0].position, Some(4), "four waiting jobs ahead of e5");
    assert_eq!(get(s, "e5").await, later[0]);

    let e1 = claim_expect(s, q, 1, T0 + 2, &["e1"], "lowest seq first").await;
    assert_eq!(get(s, "e1").await.position, None);
    for (id, pos) in [("e2", 0), ("e3", 1), ("e4", 2), ("e5", 3)] {
        assert_eq!(
            get(s, id).await.position,
            Some(pos),
            "position of {id} after e1 started"
        );
    }
    complete(s, &e1[0], T0 + 3).await;
    let e2 = claim_expect(s, q, 1, T0 + 3, &["e2"], "e2 is next").await;
    complete(s, &e2[0], T0 + 4).await;
    claim_expect(s, q, 1, T0 + 4, &["e4"], "e3 is not due; e4 is next").await;
    assert_eq!(get(s, "e3").await.position, Some(0));
    assert_eq!(get(s, "e5").await.position, Some(1));
}

/// Section 3: replaying an id with the same queue, key and payload returns
/// the stored job (`created: false`); anything different is `IdConflict` and
/// the whole batch is refused; seqs stay strictly increasing afterwards.
pub async fn idempotent_enqueue<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "idem";
    let dup = || NewJob {
        payload: json!({ "n": 1 }),
        ..keyed("dup", "k")
    };
    let first = enqueue(s, q, vec![dup()], T0).await.remove(0);

    let replay = try_enqueue(s, q, vec![dup()], T0 + 10)
        .await
        .unwrap_or_else(|e| panic!("replay failed: {e:?}"));
    assert_eq!(replay.len(), 1);
    assert!(!replay[0].created, "a replay is not created again");
    assert_eq!(
        replay[0].job.seq, first.seq,
        "a replay returns the same seq"
    );
    assert_eq!(replay[0].job.id, "dup");
    assert_eq!(
        replay[0].job.enqueued_at, T0,
        "a replay keeps the original job"
    );
    assert_eq!(replay[0].job.state, JobState::Queued);

    let mixed = try_enqueue(s, q, vec![nj("i2"), dup()], T0 + 20)
        .await
        .unwrap_or_else(|e| panic!("batch with a replay failed: {e:?}"));
    assert!(mixed[0].created && !mixed[1].created);
    assert!(mixed[0].job.seq > first.seq);
    assert_eq!(mixed[1].job.seq, first.seq);
    let high = mixed[0].job.seq;

    let cases = [
        (
            "different payload",
            q,
            NewJob {
                payload: json!({ "n": 2 }),
                ..dup()
            },
        ),
        (
            "different key",
            q,
            NewJob {
                key: Some("other".into()),
                ..dup()
            },
        ),
        ("no key", q, NewJob { key: None, ..dup() }),
        ("different queue", "idem-other", dup()),
    ];
    for (what, queue, job) in cases {
        expect_conflict(
            try_enqueue(s, queue, vec![job], T0 + 30).await,
            "dup",
            &format!("replay of dup with {what}"),
        );
    }

    let counts_before = queue_info(s, q).await.counts;
    let bad = NewJob {
        payload: json!({ "n": 3 }),
        ..dup()
    };
    expect_conflict(
        try_enqueue(s, q, vec![nj("b1"), nj("b2"), bad, nj("b4")], T0 + 40).await,
        "dup",
        "a batch whose third job conflicts",
    );
    for id in ["b1", "b2", "b4"] {
        assert_eq!(
            s.job_get(id).await.expect("job_get"),
            None,
            "a refused batch stores none of its jobs ({id} was stored)"
        );
    }
    let z2 = NewJob {
        payload: json!({ "other": true }),
        ..nj("z")
    };
    expect_conflict(
        try_enqueue(s, q, vec![nj("z"), z2], T0 + 41).await,
        "z",
        "a batch reusing one id with two payloads",
    );
    assert_eq!(s.job_get("z").await.expect("job_get"), None);
    assert_eq!(
        queue_info(s, q).await.counts,
        counts_before,
        "refused batches change no count"
    );
    assert_eq!(get(s, "dup").await.seq, first.seq, "dup is unchanged");

    let after = enqueue(
        s,
        q,
        vec![
            NewJob {
                payload: json!("reused"),
                ..nj("b1")
            },
            nj("b2"),
        ],
        T0 + 50,
    )
    .await;
    assert!(
        after[0].seq > high,
        "seqs keep increasing after a refused batch ({} after {high})",
        after[0].seq
    );
    assert_eq!(after[1].seq, after[0].seq + 1);
}

/// Sections 3 and 4.1: a payload comes back exactly as accepted (from
/// `job_get`, a claim and a listing), and an idempotent replay compares
/// payloads as JSON values, not as text.
pub async fn payloads_are_kept_exactly<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "payloads";
    let payloads = [
        Value::Null,
        json!(true),
        json!("plain"),
        json!("unicode ✓ \u{0} \"quoted\" \\ back\nslash"),
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(u64::MAX),
        json!([
            0.1,
            0.30000000000000004,
            1e300,
            -2.5e-10,
            123456.789,
            5e-324,
            1.7976931348623157e308
        ]),
        json!({ "nested": { "a": [1, { "b": null }], "z": "" }, "empty": {}, "list": [] }),
    ];
    let jobs: Vec<NewJob> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| NewJob {
            payload: p.clone(),
            ..nj(&format!("p{i}"))
        })
        .collect();
    configure(s, q, conc(100)).await;
    let stored = enqueue(s, q, jobs, T0).await;
    let leases = claim(s, q, 100, T0).await;
    let listed = s
        .job_list(ListParams {
            queue: q.into(),
            state: None,
            after: None,
            limit: 100,
        })
        .await
        .expect("job_list");
    assert_eq!(leases.len(), payloads.len());
    assert_eq!(listed.len(), payloads.len());
    for (i, p) in payloads.iter().enumerate() {
        let id = format!("p{i}");
        assert_eq!(&stored[i].payload, p, "payload of {id} as enqueued");
        assert_eq!(
            &get(s, &id).await.payload,
            p,
            "payload of {id} from job_get"
        );
        assert_eq!(&leases[i].job.payload, p, "payload of {id} as claimed");
        assert_eq!(&listed[i].payload, p, "payload of {id} as listed");
    }

    // Same JSON value, keys written in another order: a replay.
    let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": 3}}"#).expect("json");
    let b: Value = serde_json::from_str(r#"{"a": {"x": 3, "y": 2}, "b": 1}"#).expect("json");
    let first = enqueue(
        s,
        q,
        vec![NewJob {
            payload: a,
            ..nj("ordered")
        }],
        T0,
    )
    .await;
    let replay = try_enqueue(
        s,
        q,
        vec![NewJob {
            payload: b,
            ..nj("ordered")
        }],
        T0 + 1,
    )
    .await
    .unwrap_or_else(|e| panic!("a replay with reordered object keys was refused: {e:?}"));
    assert!(!replay[0].created);
    assert_eq!(replay[0].job.seq, first[0].seq);
}

/// Sections 3 and 4.1: numbers in a payload come back bit for bit, including
/// floats that need all 17 significant digits (500 random finite `f64`s).
pub async fn payload_floats_are_kept_exactly<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "payload-floats";
    let mut rng = XorShift::new(7);
    let floats: Vec<f64> = (0..500)
        .map(|_| f64::from_bits(rng.next()))
        .filter(|f| f.is_finite())
        .collect();
    let payload = json!(floats);
    enqueue(
        s,
        q,
        vec![NewJob {
            payload: payload.clone(),
            ..nj("floats")
        }],
        T0,
    )
    .await;
    let back = get(s, "floats").await.payload;
    let back: Vec<f64> = back
        .as_array()
        .unwrap_or_else(|| panic!("payload is no longer an array: {back}"))
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect();
    let changed: Vec<String> = floats
        .iter()
        .zip(&back)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .map(|(a, b)| format!("{a:e} came back as {b:e}"))
        .collect();
    assert!(
        changed.is_empty(),
        "{} of {} payload floats changed in storage, e.g. {:?}",
        changed.len(),
        floats.len(),
        &changed[..changed.len().min(3)]
    );
}

// ---------------------------------------------------------------------------
// Claims, concurrency, keys
// ---------------------------------------------------------------------------

/// Section 2, the seed's case: at concurrency 1 jobs start one at a time in
/// seq order; a claim returns nothing while one runs.
pub async fn fifo_claim_at_concurrency_one<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "fifo";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            lease_ms: Some(10_000),
            ..QueuePatch::default()
        },
    )
    .await;
    let jobs = enqueue(s, q, (1..=5).map(|i| nj(&format!("f{i}"))).collect(), T0).await;

    let l = claim_expect(s, q, 3, T0, &["f1"], "concurrency 1 starts one job").await;
    assert_eq!(l[0].job.seq, jobs[0].seq);
    assert_eq!(l[0].job.attempt, 1, "first start is attempt 1");
    assert_eq!(
        l[0].expires_at,
        T0 + 10_000,
        "lease is the queue's lease_ms"
    );
    assert_eq!(
        get(s, "f1").await,
        l[0].job,
        "job_get shows the running job"
    );
    claim_expect(s, q, 3, T0 + 1, &[], "nothing starts while f1 runs").await;
    complete(s, &l[0], T0 + 5).await;

    let mut now = T0 + 6;
    for i in 2..=5 {
        let id = format!("f{i}");
        let l = claim_lease(s, q, 3, Some(5_000), now).await;
        assert_eq!(
            ids(&l),
            [id.as_str()],
            "claim at concurrency 1 after f{}",
            i - 1
        );
        assert_eq!(l[0].expires_at, now + 5_000, "a claim's lease_ms wins");
        claim_expect(s, q, 3, now, &[], "nothing starts while one runs").await;
        complete(s, &l[0], now + 1).await;
        now += 2;
    }
    claim_expect(s, q, 3, now, &[], "queue drained").await;
}

/// Section 2: at most `concurrency` jobs run at once; a claim with a larger
/// `max` gets the free capacity, lowest seqs first.
pub async fn concurrency_is_never_exceeded<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "conc";
    configure(s, q, conc(3)).await;
    enqueue(s, q, (1..=7).map(|i| nj(&format!("c{i}"))).collect(), T0).await;
    let l = claim_expect(s, q, 10, T0, &["c1", "c2", "c3"], "capacity is 3").await;
    claim_expect(s, q, 10, T0, &[], "queue full").await;
    complete(s, &l[1], T0 + 1).await;
    let l4 = claim_expect(s, q, 10, T0 + 2, &["c4"], "one slot freed").await;
    complete(s, &l[0], T0 + 3).await;
    complete(s, &l[2], T0 + 3).await;
    claim_expect(s, q, 1, T0 + 4, &["c5"], "max 1").await;
    claim_expect(s, q, 10, T0 + 4, &["c6"], "one slot left").await;
    claim_expect(s, q, 10, T0 + 4, &[], "full again").await;
    assert_eq!(queue_info(s, q).await.counts.running, 3);
    complete(s, &l4[0], T0 + 5).await;
    claim_expect(s, q, 10, T0 + 6, &["c7"], "last job").await;
}

/// Section 2: jobs sharing a key run one at a time in seq order; different
/// keys and keyless jobs run in parallel up to concurrency.
pub async fn keys_run_one_at_a_time_in_seq_order<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "keys";
    configure(s, q, conc(10)).await;
    enqueue(
        s,
        q,
        vec![
            keyed("a1", "a"),
            keyed("a2", "a"),
            keyed("b1", "b"),
            nj("n1"),
            keyed("a3", "a"),
            keyed("b2", "b"),
            nj("n2"),
        ],
        T0,
    )
    .await;
    let l = claim_expect(
        s,
        q,
        10,
        T0,
        &["a1", "b1", "n1", "n2"],
        "one job per key, keyless jobs in parallel",
    )
    .await;
    claim_expect(s, q, 10, T0, &[], "the rest wait for their key").await;
    complete(s, &l[0], T0 + 1).await;
    let a2 = claim_expect(s, q, 10, T0 + 1, &["a2"], "a2 follows a1").await;
    complete(s, &l[1], T0 + 2).await;
    claim_expect(s, q, 10, T0 + 2, &["b2"], "b2 follows b1").await;
    complete(s, &l[2], T0 + 3).await;
    claim_expect(s, q, 10, T0 + 3, &[], "a3 waits for a2").await;
    complete(s, &a2[0], T0 + 4).await;
    claim_expect(s, q, 10, T0 + 4, &["a3"], "a3 follows a2").await;

    let q2 = "keys-capped";
    configure(s, q2, conc(2)).await;
    enqueue(
        s,
        q2,
        vec![keyed("x1", "x"), keyed("y1", "y"), keyed("z1", "z")],
        T0,
    )
    .await;
    claim_expect(
        s,
        q2,
        10,
        T0,
        &["x1", "y1"],
        "different keys up to concurrency",
    )
    .await;
}

/// Section 2: a keyed job that fails and will retry holds its key: a later
/// job of the key does not start, neither before nor after the retry is due,
/// and the retried job runs first.
pub async fn retrying_keyed_job_holds_its_key<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "key-retry";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(10),
            max_attempts: Some(3),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    enqueue(s, q, vec![keyed("h1", "k"), keyed("h2", "k"), nj("h3")], T0).await;
    let l = claim_expect(s, q, 10, T0, &["h1", "h3"], "h2 waits for h1").await;
    let h1 = fail(s, &l[0], true, T0 + 10).await;
    assert_eq!(
        h1.state,
        JobState::Scheduled,
        "a retried job waits for its backoff"
    );
    assert!(
        (T0 + 810..=T0 + 1_010).contains(&h1.run_at),
        "retry run_at {} not in now+[800, 1000]",
        h1.run_at - T0
    );
    assert_eq!(h1.attempt, 1);
    let due = h1.run_at;
    claim_expect(
        s,
        q,
        10,
        T0 + 11,
        &[],
        "h1 holds key k while it waits to retry",
    )
    .await;
    claim_expect(s, q, 10, due - 1, &[], "h1 holds key k until it is due").await;
    let again = claim_expect(s, q, 10, due, &["h1"], "the retry runs before h2").await;
    assert_eq!(again[0].job.attempt, 2);
    complete(s, &again[0], due + 1).await;
    claim_expect(s, q, 10, due + 1, &["h2"], "h2 follows h1's success").await;
}

/// Section 2: a keyless job waiting to retry lets later jobs go, and runs
/// before them once due and capacity is free.
pub async fn retrying_keyless_job_lets_later_jobs_go<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "keyless-retry";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    enqueue(s, q, vec![nj("r1"), nj("r2"), nj("r3")], T0).await;
    let l1 = claim_expect(s, q, 1, T0, &["r1"], "r1 first").await;
    let r1 = fail(s, &l1[0], true, T0).await;
    assert_eq!(r1.state, JobState::Scheduled);
    let due = r1.run_at;
    assert!((T0 + 800..=T0 + 1_000).contains(&due));
    let l2 = claim_expect(s, q, 1, T0 + 1, &["r2"], "keyless r2 passes waiting r1").await;
    claim_expect(s, q, 1, due, &[], "r1 is due but the queue is full").await;
    complete(s, &l2[0], due).await;
    let again = claim_expect(s, q, 1, due, &["r1"], "due r1 goes before r3").await;
    assert_eq!(again[0].job.attempt, 2);
    complete(s, &again[0], due + 1).await;
    claim_expect(s, q, 1, due + 1, &["r3"], "r3 last").await;
}

/// Section 2: a delayed job is not eligible before `run_at` but holds its
/// key's place in line.
pub async fn delayed_keyed_job_holds_its_place<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "delayed";
    configure(s, q, conc(10)).await;
    enqueue(
        s,
        q,
        vec![at(keyed("d1", "k"), T0 + 500), keyed("d2", "k"), nj("d3")],
        T0,
    )
    .await;
    claim_expect(s, q, 10, T0, &["d3"], "d1 not due, d2 behind it").await;
    claim_expect(s, q, 10, T0 + 499, &[], "still not due").await;
    let l = claim_expect(s, q, 10, T0 + 500, &["d1"], "d1 due").await;
    claim_expect(s, q, 10, T0 + 500, &[], "d2 waits for d1").await;
    complete(s, &l[0], T0 + 501).await;
    claim_expect(s, q, 10, T0 + 501, &["d2"], "d2 after d1").await;
}

/// Section 2: cancelling waiting jobs of a key (its head or a later one)
/// passes the key to the next job in line.
pub async fn cancelling_waiting_key_head_passes_the_key<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "cancel-keys";
    configure(s, q, conc(10)).await;
    enqueue(
        s,
        q,
        vec![
            keyed("x1", "k"),
            keyed("x2", "k"),
            keyed("x3", "k"),
            at(keyed("y1", "j"), T0 + 1_000),
            keyed("y2", "j"),
        ],
        T0,
    )
    .await;
    let l = claim_expect(s, q, 10, T0, &["x1"], "only key heads").await;
    let x2 = s.job_cancel("x2", T0 + 1).await.expect("cancel x2");
    assert_eq!(x2.state, JobState::Cancelled);
    assert_eq!(x2.finished_at, Some(T0 + 1));
    let y1 = s.job_cancel("y1", T0 + 2).await.expect("cancel y1");
    assert_eq!(y1.state, JobState::Cancelled);
    claim_expect(
        s,
        q,
        10,
        T0 + 2,
        &["y2"],
        "cancelled delayed head passes key j",
    )
    .await;
    claim_expect(s, q, 10, T0 + 2, &[], "x3 waits for running x1").await;
    let x1 = s.job_cancel("x1", T0 + 3).await.expect("cancel running x1");
    assert!(x1.cancel_requested);
    let x1 = fail(s, &l[0], true, T0 + 3).await;
    assert_eq!(x1.state, JobState::Cancelled);
    claim_expect(
        s,
        q,
        10,
        T0 + 3,
        &["x3"],
        "x3 after x1 (cancelled while running) and x2 (cancelled waiting)",
    )
    .await;

    // A queued (not delayed) head, kept waiting by a pause.
    let p = "cancel-paused";
    configure(
        s,
        p,
        QueuePatch {
            concurrency: Some(10),
            paused: Some(true),
            ..QueuePatch::default()
        },
    )
    .await;
    enqueue(s, p, vec![keyed("z1", "m"), keyed("z2", "m")], T0).await;
    claim_expect(s, p, 10, T0, &[], "a paused queue starts nothing").await;
    let z1 = s.job_cancel("z1", T0 + 1).await.expect("cancel z1");
    assert_eq!(z1.state, JobState::Cancelled);
    configure(
        s,
        p,
        QueuePatch {
            paused: Some(false),
            ..QueuePatch::default()
        },
    )
    .await;
    claim_expect(
        s,
        p,
        10,
        T0 + 2,
        &["z2"],
        "z2 heads key m after z1 was cancelled",
    )
    .await;
}

/// Section 2: a long line behind one busy key does not block other keys.
pub async fn long_line_behind_busy_key_does_not_block_other_keys<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "long-line";
    configure(s, q, conc(2)).await;
    let mut jobs: Vec<NewJob> = (1..=500).map(|i| keyed(&format!("a{i}"), "a")).collect();
    jobs.push(keyed("b1", "b"));
    enqueue(s, q, jobs, T0).await;
    let a1 = claim_expect(s, q, 1, T0, &["a1"], "head of a").await;
    claim_expect(s, q, 1, T0, &["b1"], "b passes the 499 jobs waiting for a").await;
    claim_expect(s, q, 10, T0, &[], "a2 waits").await;
    complete(s, &a1[0], T0 + 1).await;
    claim_expect(s, q, 10, T0 + 1, &["a2"], "a2 after a1").await;
}

// ---------------------------------------------------------------------------
// Leases, maintenance, timeouts
// ---------------------------------------------------------------------------

/// Sections 2 and 3: a job whose lease expired is claimed again before any
/// later job (of its queue and of its key), as the next attempt with a new
/// token; reports and heartbeats with the old token are refused.
pub async fn expired_lease_is_claimed_again_first<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "lease";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(2),
            lease_ms: Some(1_000),
            max_attempts: Some(3),
            ..QueuePatch::default()
        },
    )
    .await;
    enqueue(s, q, vec![nj("l1"), nj("l2"), nj("l3")], T0).await;
    let first = claim_expect(s, q, 1, T0, &["l1"], "l1 first").await;
    assert_eq!(first[0].expires_at, T0 + 1_000);
    let second = claim_expect(s, q, 1, T0 + 999, &["l2"], "l1's lease still valid").await;
    let again = claim_expect(s, q, 1, T0 + 1_000, &["l1"], "expired l1 goes before l3").await;
    let l1 = &again[0];
    assert_eq!(l1.job.attempt, 2, "the rerun is attempt 2");
    assert_ne!(l1.token, first[0].token, "a new claim has a new token");
    assert_eq!(l1.expires_at, T0 + 2_000);
    assert!(l1.job.start_no > first[0].job.start_no);
    claim_expect(s, q, 5, T0 + 1_000, &[], "l2 and l1 run, l3 waits").await;

    let old = &first[0].token;
    expect_stale(
        report(s, "l1", old, success("l1"), T0 + 1_001).await,
        "complete with the old token",
    );
    expect_stale(
        report(s, "l1", old, failure(true), T0 + 1_001).await,
        "fail with the old token",
    );
    expect_stale(
        s.job_heartbeat(HeartbeatParams {
            id: "l1".into(),
            token: old.clone(),
            progress: None,
            now: T0 + 1_001,
        })
        .await,
        "heartbeat with the old token",
    );
    expect_stale(
        s.job_report_and_claim(
            ReportParams {
                id: "l1".into(),
                token: old.clone(),
                outcome: success("l1"),
                now: T0 + 1_001,
            },
            ClaimParams {
                queue: q.into(),
                worker: WORKER.into(),
                max: 1,
                lease_ms: None,
                now: T0 + 1_001,
            },
        )
        .await,
        "report_and_claim with the old token",
    );
    let j = get(s, "l1").await;
    assert_eq!(
        (j.state, j.attempt),
        (JobState::Running, 2),
        "refused reports change nothing"
    );
    complete(s, l1, T0 + 1_500).await;
    complete(s, &second[0], T0 + 1_500).await;
    claim_expect(s, q, 5, T0 + 1_500, &["l3"], "l3 last").await;

    // Keyed: the expired job is the next of its key.
    let k = "lease-key";
    configure(
        s,
        k,
        QueuePatch {
            concurrency: Some(3),
            lease_ms: Some(1_000),
            ..QueuePatch::default()
        },
    )
    .await;
    enqueue(s, k, vec![keyed("k1", "a"), keyed("k2", "a"), nj("k3")], T0).await;
    claim_expect(s, k, 3, T0, &["k1", "k3"], "k2 waits for k1").await;
    let k1 = claim_expect(
        s,
        k,
        3,
        T0 + 1_000,
        &["k1", "k3"],
        "both expired, both rerun",
    )
    .await;
    assert_eq!(k1[0].job.attempt, 2);
    complete(s, &k1[0], T0 + 1_001).await;
    claim_expect(s, k, 3, T0 + 1_001, &["k2"], "k2 after k1").await;
}

/// Section 3: a job whose lease expires with no attempts left fails and
/// passes its key on.
pub async fn expired_lease_without_attempts_left_fails<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "lease-exhausted";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(5),
            lease_ms: Some(1_000),
            ..QueuePatch::default()
        },
    )
    .await;
    let limited = NewJob {
        max_attempts: Some(2),
        ..keyed("e1", "k")
    };
    let jobs = enqueue(s, q, vec![limited, keyed("e2", "k")], T0).await;
    assert_eq!(
        jobs[0].max_attempts, 2,
        "a job's max_attempts overrides the queue's"
    );
    claim_expect(s, q, 5, T0, &["e1"], "e1 first").await;
    let again = claim_expect(s, q, 5, T0 + 1_000, &["e1"], "second attempt").await;
    assert_eq!(again[0].job.attempt, 2);
    claim_expect(
        s,
        q,
        5,
        T0 + 2_000,
        &["e2"],
        "e1 failed for good; key k passes",
    )
    .await;
    let e1 = get(s, "e1").await;
    assert_eq!(e1.state, JobState::Failed);
    assert_eq!(e1.attempt, 2);
    assert_eq!(e1.finished_at, Some(T0 + 2_000));
    assert_eq!(e1.lease_expires_at, None);
    assert_eq!(
        error_reason(&e1),
        Some("lease_expired"),
        "error: {:?}",
        e1.error
    );
}

/// Store invariants: `maintenance_run` puts expired leases back in place
/// (with a `lease_expired` error), finishes those without attempts left,
/// makes due scheduled jobs queued, and reports woken queues and the next
/// due time.
pub async fn maintenance_reaps_and_promotes<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let lease = QueuePatch {
        lease_ms: Some(1_000),
        ..QueuePatch::default()
    };
    configure(s, "mr-a", lease.clone()).await;
    configure(s, "mr-d", lease).await;
    enqueue(s, "mr-a", vec![nj("a1"), nj("a2")], T0).await;
    enqueue(s, "mr-b", vec![at(nj("b1"), T0 + 500)], T0).await;
    enqueue(s, "mr-c", vec![at(nj("c1"), T0 + 5_000)], T0).await;
    let d1 = NewJob {
        max_attempts: Some(1),
        ..nj("d1")
    };
    enqueue(s, "mr-d", vec![d1], T0).await;
    let a1 = claim_expect(s, "mr-a", 1, T0, &["a1"], "a1").await;
    claim_expect(s, "mr-d", 1, T0 + 100, &["d1"], "d1").await;

    let r = s.maintenance_run(T0 + 400).await.expect("maintenance");
    assert!(r.woken_queues.is_empty(), "nothing due at T0+400: {r:?}");
    assert!(r.finished.is_empty());
    assert_eq!(r.next_due, Some(T0 + 500), "b1 is due first");

    let mut r = s.maintenance_run(T0 + 1_000).await.expect("maintenance");
    r.woken_queues.sort();
    assert_eq!(
        r.woken_queues,
        ["mr-a", "mr-b"],
        "a1's lease expired and b1 is due"
    );
    assert!(r.finished.is_empty());
    assert_eq!(r.next_due, Some(T0 + 1_100), "d1's lease expires next");
    let j = get(s, "a1").await;
    assert_eq!(j.state, JobState::Queued, "a1 is back in line");
    assert_eq!(j.position, Some(0), "a1 is back in its original place");
    assert_eq!(j.attempt, 1);
    assert_eq!(j.lease_expires_at, None);
    assert_eq!(
        error_reason(&j),
        Some("lease_expired"),
        "error: {:?}",
        j.error
    );
    assert_eq!(get(s, "a2").await.position, Some(1));
    assert_eq!(
        get(s, "b1").await.state,
        JobState::Queued,
        "due b1 is queued"
    );
    assert_eq!(get(s, "c1").await.state, JobState::Scheduled);
    expect_stale(
        report(s, "a1", &a1[0].token, success("a1"), T0 + 1_001).await,
        "report on a reaped lease",
    );

    let r = s.maintenance_run(T0 + 1_100).await.expect("maintenance");
    assert_eq!(r.finished.len(), 1, "d1 finished: {r:?}");
    assert_eq!(r.finished[0].id, "d1");
    assert_eq!(r.finished[0].state, JobState::Failed);
    assert_eq!(r.next_due, Some(T0 + 5_000), "c1 is due next");
    assert_eq!(get(s, "d1").await.state, JobState::Failed);

    let again = claim_expect(s, "mr-a", 1, T0 + 1_200, &["a1"], "a1 before a2").await;
    assert_eq!(again[0].job.attempt, 2);
    claim_expect(s, "mr-b", 1, T0 + 1_200, &["b1"], "b1").await;
}

/// Section 5: a job whose `timeout_ms` passes is failed for that attempt and
/// handled as a failure (retry with backoff, or failed when no attempts are left).
pub async fn timeouts_fail_the_attempt<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "timeouts";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            lease_ms: Some(10_000),
            max_attempts: Some(2),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    let t1 = NewJob {
        timeout_ms: Some(500),
        ..nj("t1")
    };
    let jobs = enqueue(s, q, vec![t1, nj("t2")], T0).await;
    assert_eq!(jobs[0].timeout_ms, Some(500));
    let l = claim_expect(s, q, 1, T0, &["t1"], "t1").await;
    assert_eq!(l[0].expires_at, T0 + 500, "the lease ends at the deadline");
    let hb = s
        .job_heartbeat(HeartbeatParams {
            id: "t1".into(),
            token: l[0].token.clone(),
            progress: None,
            now: T0 + 100,
        })
        .await
        .expect("heartbeat");
    assert_eq!(
        hb.expires_at,
        T0 + 500,
        "a heartbeat cannot pass the deadline"
    );
    claim_expect(s, q, 1, T0 + 499, &[], "t1 still within its time").await;
    let l2 = claim_expect(
        s,
        q,
        1,
        T0 + 500,
        &["t2"],
        "t1 timed out and waits to retry",
    )
    .await;
    let t1 = get(s, "t1").await;
    assert_eq!(
        t1.state,
        JobState::Scheduled,
        "a timed-out attempt is retried with backoff"
    );
    assert_eq!(t1.attempt, 1);
    assert!(
        (T0 + 1_300..=T0 + 1_500).contains(&t1.run_at),
        "retry run_at T0+{} not in T0+500+[800, 1000]",
        t1.run_at - T0
    );
    assert!(t1.error.is_some(), "the timeout is recorded");
    expect_stale(
        report(s, "t1", &l[0].token, success("t1"), T0 + 501).await,
        "report after the timeout",
    );
    complete(s, &l2[0], T0 + 600).await;
    let due = t1.run_at;
    let again = claim_expect(s, q, 1, due, &["t1"], "t1 retried").await;
    assert_eq!(again[0].job.attempt, 2);
    assert_eq!(again[0].expires_at, due + 500);
    let r = s.maintenance_run(due + 500).await.expect("maintenance");
    assert_eq!(
        r.finished.len(),
        1,
        "t1 timed out on its last attempt: {r:?}"
    );
    let t1 = get(s, "t1").await;
    assert_eq!(t1.state, JobState::Failed);
    assert_eq!(t1.finished_at, Some(due + 500));
}

/// Sections 4 and 5: heartbeats extend the lease and record progress; a
/// cancel of a running job is a request the worker sees at its next
/// heartbeat; failing (or losing the lease of) such a job cancels it; a
/// waiting job is cancelled at once; a finished one cannot be cancelled.
pub async fn heartbeat_and_cancel_of_running_job<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "heartbeat";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            lease_ms: Some(1_000),
            ..QueuePatch::default()
        },
    )
    .await;
    enqueue(s, q, vec![nj("h1"), nj("h2"), nj("h3"), nj("h4")], T0).await;
    let l = claim_expect(s, q, 1, T0, &["h1"], "h1").await;
    let hb = |token: &str, now: Millis, progress: Option<Value>| HeartbeatParams {
        id: "h1".into(),
        token: token.to_string(),
        progress,
        now,
    };
    let h = s
        .job_heartbeat(hb(&l[0].token, T0 + 600, Some(json!({ "pct": 50 }))))
        .await
        .expect("heartbeat");
    assert_eq!(h.expires_at, T0 + 1_600, "a heartbeat renews for lease_ms");
    assert!(!h.cancel_requested);
    let j = get(s, "h1").await;
    assert_eq!(
        j.progress,
        Some(json!({ "pct": 50 })),
        "progress is recorded"
    );
    assert_eq!(j.lease_expires_at, Some(T0 + 1_600));
    claim_expect(s, q, 1, T0 + 1_100, &[], "the renewed lease holds").await;

    let c = s
        .job_cancel("h1", T0 + 1_200)
        .await
        .expect("cancel running");
    assert_eq!(
        c.state,
        JobState::Running,
        "a running job is only asked to stop"
    );
    assert!(c.cancel_requested);
    let h = s
        .job_heartbeat(hb(&l[0].token, T0 + 1_300, None))
        .await
        .expect("heartbeat");
    assert!(
        h.cancel_requested,
        "the worker sees the cancel at its heartbeat"
    );
    assert_eq!(h.expires_at, T0 + 2_300);
    let j = fail(s, &l[0], true, T0 + 1_400).await;
    assert_eq!(
        j.state,
        JobState::Cancelled,
        "failing a cancel-requested job cancels it"
    );
    assert_eq!(j.finished_at, Some(T0 + 1_400));

    let l2 = claim_expect(s, q, 1, T0 + 1_400, &["h2"], "h2 after h1").await;
    s.job_cancel("h2", T0 + 1_500).await.expect("cancel h2");
    let exp = l2[0].expires_at;
    claim_expect(
        s,
        q,
        1,
        exp,
        &["h3"],
        "h2's lease expired with a cancel asked",
    )
    .await;
    let h2 = get(s, "h2").await;
    assert_eq!(
        h2.state,
        JobState::Cancelled,
        "a lost cancel-requested job is cancelled"
    );

    let h4 = s.job_cancel("h4", exp + 1).await.expect("cancel waiting");
    assert_eq!(
        h4.state,
        JobState::Cancelled,
        "a waiting job is cancelled at once"
    );
    assert_eq!(h4.finished_at, Some(exp + 1));
    assert_eq!(h4.position, None);
    expect_invalid_state(
        s.job_cancel("h4", exp + 2).await,
        JobState::Cancelled,
        "cancel of a cancelled job",
    );
}

/// Section 5: `retry: false` fails for good; a retry waits `now + backoff`;
/// the last attempt's failure is final.
pub async fn fail_outcomes<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "fail";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            max_attempts: Some(2),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    let f3 = NewJob {
        max_attempts: Some(1),
        ..nj("f3")
    };
    enqueue(s, q, vec![nj("f1"), nj("f2"), f3], T0).await;
    let l = claim_expect(s, q, 1, T0, &["f1"], "f1").await;
    let f1 = fail(s, &l[0], false, T0 + 1).await;
    assert_eq!(f1.state, JobState::Failed, "retry=false fails for good");
    assert_eq!(f1.finished_at, Some(T0 + 1));
    assert_eq!(f1.attempt, 1);
    assert_eq!(f1.position, None);
    assert_eq!(get(s, "f1").await, f1, "job_get shows the reported job");

    let l = claim_expect(s, q, 1, T0 + 2, &["f2"], "f2").await;
    let f2 = fail(s, &l[0], true, T0 + 10).await;
    assert_eq!(
        f2.state,
        JobState::Scheduled,
        "a retry waits for its backoff"
    );
    assert!(
        (T0 + 810..=T0 + 1_010).contains(&f2.run_at),
        "retry run_at T0+{} not in now+[800, 1000]",
        f2.run_at - T0
    );
    assert_eq!(f2.position, Some(0));
    assert_eq!(f2.finished_at, None);
    assert_eq!(f2.lease_expires_at, None);
    let due = f2.run_at;
    let l = claim_expect(s, q, 1, due - 1, &["f3"], "f2 not due yet: keyless f3 goes").await;
    let f3 = fail(s, &l[0], true, due - 1).await;
    assert_eq!(
        f3.state,
        JobState::Failed,
        "a job's own max_attempts=1 is final"
    );
    let l = claim_expect(s, q, 1, due, &["f2"], "f2 due").await;
    assert_eq!(l[0].job.attempt, 2);
    let f2 = fail(s, &l[0], true, due + 1).await;
    assert_eq!(f2.state, JobState::Failed, "no attempts left: failed");
    assert_eq!(f2.attempt, 2);
    assert_eq!(f2.finished_at, Some(due + 1));
    let counts = queue_info(s, q).await.counts;
    assert_eq!(counts.failed, 3);
}

/// Sections 4 and 5: operations the state does not allow are refused;
/// retry puts failed and cancelled jobs back in line with a new, higher seq;
/// unknown ids and queues are reported as such.
pub async fn invalid_operations_and_retry<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "invalid";
    configure(s, q, conc(3)).await;
    enqueue(
        s,
        q,
        vec![nj("i1"), keyed("i2", "a"), keyed("i3", "a"), nj("i4")],
        T0,
    )
    .await;
    let l = claim_expect(s, q, 1, T0, &["i1"], "i1").await;
    expect_invalid_state(
        s.job_retry("i1", T0).await,
        JobState::Running,
        "retry of running",
    );
    complete(s, &l[0], T0 + 1).await;
    expect_invalid_state(
        s.job_cancel("i1", T0 + 2).await,
        JobState::Succeeded,
        "cancel of succeeded",
    );
    expect_invalid_state(
        s.job_retry("i1", T0 + 2).await,
        JobState::Succeeded,
        "retry of succeeded",
    );
    expect_invalid_state(
        s.job_retry("i4", T0 + 2).await,
        JobState::Queued,
        "retry of queued",
    );

    let l = claim_expect(s, q, 1, T0 + 3, &["i2"], "i2").await;
    fail(s, &l[0], false, T0 + 4).await;
    let i3_seq = get(s, "i3").await.seq;
    let i4_seq = get(s, "i4").await.seq;
    let r = s.job_retry("i2", T0 + 5).await.expect("retry failed i2");
    assert_eq!(r.id, "i2");
    assert!(
        r.seq > i4_seq,
        "a retried job gets a new, higher seq ({} vs {i4_seq})",
        r.seq
    );
    assert_eq!(r.state, JobState::Queued);
    assert_eq!(r.attempt, 0);
    assert_eq!(r.finished_at, None);
    assert_eq!(r.position, Some(2), "i3 and i4 are ahead of the retried i2");
    assert_eq!(get(s, "i2").await.seq, r.seq);
    expect_invalid_state(
        s.job_retry("i2", T0 + 6).await,
        JobState::Queued,
        "retry of a retried job",
    );

    let i4 = s.job_cancel("i4", T0 + 6).await.expect("cancel i4");
    assert_eq!(i4.state, JobState::Cancelled);
    let r4 = s.job_retry("i4", T0 + 7).await.expect("retry cancelled i4");
    assert!(r4.seq > r.seq);
    assert_eq!((r4.state, r4.attempt), (JobState::Queued, 0));

    let l = claim_expect(
        s,
        q,
        10,
        T0 + 8,
        &["i3", "i4"],
        "the retried i2 is behind i3 in key a; the retried i4 is keyless",
    )
    .await;
    assert_eq!(l[0].job.seq, i3_seq);
    assert_eq!(l[1].job.attempt, 1, "attempts restart after a retry");
    complete(s, &l[0], T0 + 9).await;
    let l = claim_expect(s, q, 10, T0 + 9, &["i2"], "the retried i2 after i3").await;
    assert_eq!(l[0].job.attempt, 1, "attempts restart after a retry");

    expect_not_found(
        s.job_cancel("nope", T0).await,
        "nope",
        "cancel of unknown id",
    );
    expect_not_found(s.job_retry("nope", T0).await, "nope", "retry of unknown id");
    expect_not_found(
        report(s, "nope", "token", success("nope"), T0).await,
        "nope",
        "report on unknown id",
    );
    expect_not_found(
        s.job_heartbeat(HeartbeatParams {
            id: "nope".into(),
            token: "token".into(),
            progress: None,
            now: T0,
        })
        .await,
        "nope",
        "heartbeat of unknown id",
    );
    assert_eq!(s.job_get("nope").await.expect("job_get"), None);
    match s.queue_get("never").await {
        Err(StoreError::QueueNotFound(n)) if n == "never" => {}
        other => panic!("queue_get of an unknown queue: expected QueueNotFound, got {other:?}"),
    }
    claim_expect(s, "never", 5, T0, &[], "claim on a queue never used").await;
}

// ---------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------

/// Section 5: `job_report_and_claim` reports and returns the next leases in
/// one call; a refused report claims nothing.
pub async fn report_and_claim<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "report-claim";
    configure(s, q, conc(1)).await;
    enqueue(s, q, vec![nj("r1"), nj("r2"), nj("r3")], T0).await;
    let l1 = claim_expect(s, q, 1, T0, &["r1"], "r1").await;
    let claim_p = |now: Millis, max: u32| ClaimParams {
        queue: q.into(),
        worker: WORKER.into(),
        max,
        lease_ms: None,
        now,
    };
    let rep = |l: &Lease, token: &str, outcome: Outcome, now: Millis| ReportParams {
        id: l.job.id.clone(),
        token: token.to_string(),
        outcome,
        now,
    };
    let (j, next) = s
        .job_report_and_claim(
            rep(&l1[0], &l1[0].token, success("r1"), T0 + 1),
            claim_p(T0 + 1, 1),
        )
        .await
        .expect("report and claim");
    assert_eq!(j.id, "r1");
    assert_eq!(j.state, JobState::Succeeded);
    assert_eq!(ids(&next), ["r2"], "the next job comes with the report");
    assert_eq!(next[0].job.attempt, 1);
    assert_eq!(next[0].job.started_at, Some(T0 + 1));

    // The same report sent again (its answer was lost on the way) changes
    // nothing and hands back the lease the first answer carried, not a new one.
    let (again, same_next) = s
        .job_report_and_claim(
            rep(&l1[0], &l1[0].token, success("r1"), T0 + 2),
            claim_p(T0 + 2, 5),
        )
        .await
        .expect("a repeated report is answered");
    assert_eq!(again, j, "a repeated report changes nothing");
    assert_eq!(
        same_next, next,
        "a repeated report returns the lease already held"
    );
    let plain = s
        .job_report_many(vec![rep(&l1[0], &l1[0].token, success("r1"), T0 + 2)])
        .await
        .expect("report");
    assert_eq!(
        plain[0].as_ref().ok(),
        Some(&j),
        "a repeated plain report changes nothing"
    );
    let other = s
        .job_report_many(vec![rep(&l1[0], &l1[0].token, failure(true), T0 + 2)])
        .await
        .expect("report");
    expect_stale(
        other.into_iter().next().expect("one result"),
        "a failure sent with the token of a success",
    );
    expect_stale(
        s.job_heartbeat(HeartbeatParams {
            id: "r1".into(),
            token: l1[0].token.clone(),
            progress: None,
            now: T0 + 2,
        })
        .await,
        "heartbeat on a finished job",
    );
    expect_stale(
        s.job_report_and_claim(
            rep(&next[0], "not-the-token", success("r2"), T0 + 2),
            claim_p(T0 + 2, 5),
        )
        .await,
        "report_and_claim with a wrong token",
    );
    assert_eq!(
        get(s, "r3").await.state,
        JobState::Queued,
        "a refused report claims nothing"
    );
    assert_eq!(get(s, "r2").await.state, JobState::Running);
    assert_eq!(queue_info(s, q).await.counts.running, 1);

    let (j, next2) = s
        .job_report_and_claim(
            rep(&next[0], &next[0].token, failure(false), T0 + 3),
            claim_p(T0 + 3, 5),
        )
        .await
        .expect("report and claim");
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(ids(&next2), ["r3"]);
    let (_, none) = s
        .job_report_and_claim(
            rep(&next2[0], &next2[0].token, success("r3"), T0 + 4),
            claim_p(T0 + 4, 5),
        )
        .await
        .expect("report and claim");
    assert!(none.is_empty(), "nothing left to claim");
}

/// Section 5: `job_report_many` applies each report on its own and answers
/// in order.
pub async fn report_many_is_independent_per_report<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "report-many";
    configure(s, q, conc(3)).await;
    enqueue(s, q, vec![nj("m1"), nj("m2"), nj("m3"), nj("m4")], T0).await;
    let l = claim_expect(s, q, 3, T0, &["m1", "m2", "m3"], "three").await;
    let r = |id: &str, token: &str, outcome: Outcome| ReportParams {
        id: id.into(),
        token: token.into(),
        outcome,
        now: T0 + 1,
    };
    let results = s
        .job_report_many(vec![
            r("m1", &l[0].token, success("m1")),
            r("m2", "stale-token", success("m2")),
            r("m3", &l[2].token, failure(false)),
            r("missing", "x", success("missing")),
        ])
        .await
        .expect("report many");
    assert_eq!(results.len(), 4, "one result per report");
    match &results[0] {
        Ok(j) => assert_eq!((j.id.as_str(), j.state), ("m1", JobState::Succeeded)),
        other => panic!("report 0: {other:?}"),
    }
    expect_stale(results[1].clone(), "report 1 with a wrong token");
    match &results[2] {
        Ok(j) => assert_eq!((j.id.as_str(), j.state), ("m3", JobState::Failed)),
        other => panic!("report 2: {other:?}"),
    }
    expect_not_found(results[3].clone(), "missing", "report 3 on an unknown id");
    assert_eq!(
        get(s, "m2").await.state,
        JobState::Running,
        "the refused report changed nothing"
    );
    complete(s, &l[1], T0 + 2).await;
    claim_expect(s, q, 3, T0 + 2, &["m4"], "m4").await;
}

// ---------------------------------------------------------------------------
// Listing, queues, retention, start numbers
// ---------------------------------------------------------------------------

/// Section 4: `job_list` pages by seq with a cursor, filters by state and
/// shows positions.
pub async fn job_list_pages_by_seq<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "list";
    configure(s, q, conc(2)).await;
    let jobs = enqueue(s, q, (1..=7).map(|i| nj(&format!("j{i}"))).collect(), T0).await;
    enqueue(s, "list-other", vec![nj("o1")], T0).await;
    let l = claim_expect(s, q, 2, T0, &["j1", "j2"], "two").await;
    complete(s, &l[0], T0 + 1).await;

    let list = |state: Option<JobState>, after: Option<i64>, limit: u32| ListParams {
        queue: q.into(),
        state,
        after,
        limit,
    };
    let mut all = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = s.job_list(list(None, after, 3)).await.expect("job_list");
        assert!(page.len() <= 3, "a page holds at most limit jobs");
        if page.is_empty() {
            break;
        }
        pages += 1;
        after = Some(page.last().expect("non-empty").seq);
        all.extend(page);
    }
    assert_eq!(pages, 3, "7 jobs in pages of 3");
    assert_eq!(
        all.iter().map(|j| j.seq).collect::<Vec<_>>(),
        jobs.iter().map(|j| j.seq).collect::<Vec<_>>(),
        "paging lists every job of the queue once, in seq order"
    );
    let positions: Vec<Option<u64>> = all.iter().map(|j| j.position).collect();
    assert_eq!(
        positions,
        [None, None, Some(0), Some(1), Some(2), Some(3), Some(4)],
        "positions in a listing"
    );
    for j in &all {
        assert_eq!(
            &get(s, &j.id).await,
            j,
            "listing and job_get agree on {}",
            j.id
        );
    }

    let mut queued = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .job_list(list(Some(JobState::Queued), after, 2))
            .await
            .expect("job_list");
        if page.is_empty() {
            break;
        }
        after = Some(page.last().expect("non-empty").seq);
        queued.extend(page);
    }
    assert_eq!(
        queued
            .iter()
            .map(|j| (j.id.as_str(), j.position))
            .collect::<Vec<_>>(),
        [
            ("j3", Some(0)),
            ("j4", Some(1)),
            ("j5", Some(2)),
            ("j6", Some(3)),
            ("j7", Some(4))
        ],
        "state filter with paging"
    );
    let succeeded = s
        .job_list(list(Some(JobState::Succeeded), None, 10))
        .await
        .expect("job_list");
    assert_eq!(
        succeeded.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["j1"]
    );
    let running = s
        .job_list(list(Some(JobState::Running), None, 10))
        .await
        .expect("job_list");
    assert_eq!(
        running.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["j2"]
    );
    let tail = s
        .job_list(list(None, Some(jobs[4].seq), 10))
        .await
        .expect("job_list");
    assert_eq!(
        tail.iter()
            .map(|j| (j.id.as_str(), j.position))
            .collect::<Vec<_>>(),
        [("j6", Some(3)), ("j7", Some(4))],
        "a page that starts mid-queue still shows true positions"
    );
}

/// Section 4: `queue_configure` keeps fields left out; a queue used before it
/// is configured has the defaults; counts per state are exact.
pub async fn queue_configure_and_counts<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "qc";
    let info = configure(s, q, conc(4)).await;
    let mut expected = QueueConfig {
        concurrency: 4,
        ..QueueConfig::default()
    };
    assert_eq!(info.name, q);
    assert_eq!(
        info.config, expected,
        "a new queue is the defaults plus the patch"
    );
    assert_eq!(info.counts, StateCounts::default());

    let steps = [
        QueuePatch {
            max_attempts: Some(7),
            ..QueuePatch::default()
        },
        QueuePatch {
            backoff: Some(FLAT_BACKOFF),
            lease_ms: Some(1_234),
            ..QueuePatch::default()
        },
        QueuePatch {
            executor: Some(Some(json!({ "type": "command", "argv": ["true"] }))),
            ..QueuePatch::default()
        },
        QueuePatch {
            executor: Some(None),
            paused: Some(true),
            ..QueuePatch::default()
        },
        QueuePatch {
            paused: Some(false),
            ..QueuePatch::default()
        },
    ];
    for (i, patch) in steps.into_iter().enumerate() {
        patch.apply(&mut expected);
        let info = configure(s, q, patch).await;
        assert_eq!(info.config, expected, "config after patch {i}");
        assert_eq!(
            queue_info(s, q).await.config,
            expected,
            "queue_get after patch {i}"
        );
    }
    assert_eq!(expected.concurrency, 4);
    assert_eq!(expected.max_attempts, 7);

    let jobs = enqueue(
        s,
        q,
        vec![
            nj("q1"),
            nj("q2"),
            nj("q3"),
            nj("q4"),
            nj("q5"),
            at(nj("q6"), T0 + 60_000),
        ],
        T0,
    )
    .await;
    assert!(
        jobs.iter().all(|j| j.max_attempts == 7),
        "jobs take the queue's max_attempts"
    );
    let l = claim_expect(s, q, 3, T0, &["q1", "q2", "q3"], "max 3 of capacity 4").await;
    assert_eq!(l[0].expires_at, T0 + 1_234, "the configured lease_ms");
    complete(s, &l[0], T0 + 1).await;
    fail(s, &l[1], false, T0 + 1).await;
    s.job_cancel("q4", T0 + 1).await.expect("cancel q4");
    let counts = StateCounts {
        scheduled: 1,
        queued: 1,
        running: 1,
        succeeded: 1,
        failed: 1,
        cancelled: 1,
    };
    assert_eq!(queue_info(s, q).await.counts, counts, "counts per state");

    enqueue(s, "qc-auto", vec![nj("auto1")], T0).await;
    let auto = queue_info(s, "qc-auto").await;
    assert_eq!(
        auto.config,
        QueueConfig::default(),
        "a queue used first by enqueue has the defaults"
    );
    assert_eq!(
        auto.counts,
        StateCounts {
            queued: 1,
            ..StateCounts::default()
        }
    );
    let list = s.queue_list().await.expect("queue_list");
    let by_name: BTreeMap<&str, &QueueInfo> = list.iter().map(|i| (i.name.as_str(), i)).collect();
    assert_eq!(by_name.len(), 2, "queue_list: {list:?}");
    assert_eq!(by_name["qc"].counts, counts);
    assert_eq!(by_name["qc"].config, expected);
    assert_eq!(by_name["qc-auto"], &auto);
}

/// Section 3: retention deletes only jobs that finished before the cutoff.
pub async fn retention_purge_deletes_only_old_finished_jobs<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "retention";
    configure(s, q, conc(4)).await;
    enqueue(s, q, (1..=5).map(|i| nj(&format!("p{i}"))).collect(), T0).await;
    let l = claim_expect(s, q, 4, T0, &["p1", "p2", "p3", "p4"], "four").await;
    complete(s, &l[0], T0 + 10).await;
    complete(s, &l[1], T0 + 20).await;
    fail(s, &l[2], false, T0 + 30).await;
    s.job_cancel("p5", T0 + 40).await.expect("cancel p5");
    assert_eq!(
        s.retention_purge(T0 + 10, 100).await.expect("purge"),
        0,
        "p1 finished at the cutoff, not before"
    );
    assert_eq!(
        s.retention_purge(T0 + 11, 100).await.expect("purge"),
        1,
        "only p1"
    );
    assert_eq!(s.job_get("p1").await.expect("job_get"), None);
    assert_eq!(get(s, "p2").await.state, JobState::Succeeded);
    assert_eq!(
        s.retention_purge(T0 + 1_000, 2).await.expect("purge"),
        2,
        "p2 and p3: at most the limit"
    );
    assert_eq!(
        s.retention_purge(T0 + 1_000, 2).await.expect("purge"),
        1,
        "then p5"
    );
    for id in ["p2", "p3", "p5"] {
        assert_eq!(s.job_get(id).await.expect("job_get"), None, "{id} purged");
    }
    assert_eq!(
        get(s, "p4").await.state,
        JobState::Running,
        "a running job is kept"
    );
    assert_eq!(
        queue_info(s, q).await.counts,
        StateCounts {
            running: 1,
            ..StateCounts::default()
        },
        "counts after purge"
    );
}

/// Section 2: every start is numbered; start numbers strictly increase in
/// the order the claims were made, across queues and reruns.
pub async fn start_no_increases_in_start_order<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let patch = QueuePatch {
        concurrency: Some(2),
        lease_ms: Some(1_000),
        ..QueuePatch::default()
    };
    configure(s, "sa", patch.clone()).await;
    configure(s, "sb", patch).await;
    enqueue(s, "sa", vec![nj("a1"), nj("a2"), nj("a3")], T0).await;
    enqueue(s, "sb", vec![nj("b1"), nj("b2")], T0).await;
    let mut started: Vec<Lease> = Vec::new();
    started.extend(claim_expect(s, "sa", 2, T0, &["a1", "a2"], "a1 a2").await);
    started.extend(claim_expect(s, "sb", 1, T0, &["b1"], "b1").await);
    started.extend(claim_expect(s, "sb", 1, T0, &["b2"], "b2").await);
    complete(s, &started[0], T0 + 1).await;
    started.extend(claim_expect(s, "sa", 2, T0 + 1, &["a3"], "a3").await);
    started.extend(claim_expect(s, "sb", 2, T0 + 1_000, &["b1", "b2"], "reruns").await);
    let nos: Vec<i64> = started
        .iter()
        .map(|l| l.job.start_no.expect("start_no"))
        .collect();
    assert!(
        nos.windows(2).all(|w| w[0] < w[1]),
        "start numbers must strictly increase in start order: {nos:?}"
    );
    assert_eq!(
        get(s, "b1").await.start_no,
        started[5].job.start_no,
        "latest start shown"
    );
    assert_eq!(get(s, "a1").await.start_no, started[0].job.start_no);
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tracker {
    /// Jobs whose claim answer arrived and whose completion was not yet sent.
    running: u32,
    /// seq -> (start_no, attempt)
    started: HashMap<i64, (i64, u32)>,
    completed: usize,
    /// The first violation seen; every task stops when it is set.
    failure: Option<String>,
}

fn lock(tracker: &Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sections 2 and 3 under load: 8 tasks claim (max 1..3) and complete
/// concurrently from one queue of 300 jobs at concurrency 4 on a shared store.
/// Every job runs exactly once, never more than 4 at a time, and start order
/// (by `start_no`) is seq order.
pub async fn concurrent_claimers<S: Store>(store: S) {
    const JOBS: usize = 300;
    const CONCURRENCY: u32 = 4;
    const TASKS: usize = 8;
    let store = Arc::new(store);
    let q = "concurrent";
    configure(
        &*store,
        q,
        QueuePatch {
            concurrency: Some(CONCURRENCY),
            lease_ms: Some(3_600_000),
            ..QueuePatch::default()
        },
    )
    .await;
    let jobs = enqueue(
        &*store,
        q,
        (0..JOBS).map(|i| nj(&format!("c{i}"))).collect(),
        T0,
    )
    .await;
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let tracker = tracker.clone();
        handles.push(tokio::spawn(async move {
            let mut round = 0usize;
            loop {
                round += 1;
                {
                    let mut t = lock(&tracker);
                    if t.completed >= JOBS || t.failure.is_some() {
                        break;
                    }
                    if round > 1_000_000 {
                        t.failure = Some(format!("task {task} found no work for too long"));
                        break;
                    }
                }
                let max = 1 + ((task + round) % 3) as u32;
                let leases = match store
                    .job_claim(ClaimParams {
                        queue: q.into(),
                        worker: format!("w{task}"),
                        max,
                        lease_ms: None,
                        now: T0,
                    })
                    .await
                {
                    Ok(l) => l,
                    Err(e) => {
                        lock(&tracker).failure = Some(format!("task {task}: claim failed: {e:?}"));
                        break;
                    }
                };
                if leases.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                {
                    // Counted when the answer arrives (late) and uncounted before the
                    // completion is sent (early): the tracked number never exceeds
                    // the true one, so going over the limit is a real violation.
                    let mut t = lock(&tracker);
                    if leases.len() as u32 > max {
                        t.failure = Some(format!("claim with max {max} got {}", leases.len()));
                    }
                    for l in &leases {
                        t.running += 1;
                        if t.running > CONCURRENCY {
                            t.failure = Some(format!(
                                "more than {CONCURRENCY} jobs running at once (when {} started)",
                                l.job.id
                            ));
                        }
                        let start_no = l.job.start_no.unwrap_or(-1);
                        if t.started
                            .insert(l.job.seq, (start_no, l.job.attempt))
                            .is_some()
                        {
                            t.failure = Some(format!("job {} started twice", l.job.id));
                        }
                    }
                    if t.failure.is_some() {
                        break;
                    }
                }
                for l in leases {
                    if (task + round) & 1 == 0 {
                        tokio::task::yield_now().await;
                    }
                    lock(&tracker).running -= 1;
                    let r = store
                        .job_report_many(vec![ReportParams {
                            id: l.job.id.clone(),
                            token: l.token.clone(),
                            outcome: Outcome::Succeeded { result: None },
                            now: T0,
                        }])
                        .await;
                    let mut t = lock(&tracker);
                    match r.as_deref() {
                        Ok([Ok(_)]) => t.completed += 1,
                        other => {
                            t.failure = Some(format!("completing {} failed: {other:?}", l.job.id));
                            break;
                        }
                    }
                }
            }
        }));
    }
    for h in handles {
        if let Err(e) = h.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("claimer task failed: {e}");
        }
    }
    let t = std::mem::take(&mut *lock(&tracker));
    if let Some(f) = &t.failure {
        panic!("concurrent claimers: {f}");
    }
    assert_eq!(t.completed, JOBS, "every job completed once");
    assert_eq!(t.started.len(), JOBS, "every job started");
    assert!(
        t.started.values().all(|&(_, attempt)| attempt == 1),
        "no job ran twice"
    );
    let mut by_start: Vec<(i64, i64)> =
        t.started.iter().map(|(&seq, &(no, _))| (no, seq)).collect();
    by_start.sort();
    let start_order: Vec<i64> = by_start.into_iter().map(|(_, seq)| seq).collect();
    let seq_order: Vec<i64> = jobs.iter().map(|j| j.seq).collect();
    if start_order != seq_order {
        let first_bad = start_order
            .iter()
            .zip(&seq_order)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "start order is not seq order: from start {first_bad}, started {:?}, expected {:?}",
            &start_order[first_bad..(first_bad + 5).min(JOBS)],
            &seq_order[first_bad..(first_bad + 5).min(JOBS)]
        );
    }
    let counts = queue_info(&*store, q).await.counts;
    assert_eq!(
        counts,
        StateCounts {
            succeeded: JOBS as u64,
            ..StateCounts::default()
        },
        "all jobs succeeded"
    );
}

// ---------------------------------------------------------------------------
// Random interleavings against the model
// ---------------------------------------------------------------------------

/// Seeds run by [`random_interleavings_match_model`].
pub const MODEL_SEEDS: u64 = 30;
/// Operations per seed.
pub const MODEL_OPS: usize = 150;

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

/// Runs [`MODEL_SEEDS`] random interleavings, each against a fresh store from
/// `make_store` and a fresh [`Model`], demanding the same claims.
pub async fn random_interleavings_match_model<S, F, Fut>(make_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    for seed in 1..=MODEL_SEEDS {
        let store = make_store().await;
        interleaving_matches_model(&store, seed, MODEL_OPS).await;
    }
}

struct Run {
    seed: u64,
    step: usize,
    log: Vec<String>,
}

impl Run {
    fn fail(&self, msg: String) -> ! {
        panic!(
            "model and store disagree (seed {}, step {}): {msg}\nops (model seqs):\n  {}",
            self.seed,
            self.step,
            self.log.join("\n  ")
        )
    }
}

/// Ordering class of a state: the model never promotes scheduled jobs, so
/// `scheduled` and `queued` compare as one.
fn waiting_or(state: JobState) -> JobState {
    if state.is_waiting() {
        JobState::Queued
    } else {
        state
    }
}

/// One random interleaving (seed `seed`, `ops` operations) on `store`, which
/// must be fresh: enqueue (with or without one of 3 keys, sometimes delayed),
/// claim (max 1..3), complete, fail (retry or not), cancel, heartbeat, advance
/// time past leases, and maintenance, applied to the store and the [`Model`]
/// alike. Every claim must start the same jobs in the same order, and after
/// every operation every job must have the same state, attempt and `run_at`.
pub async fn interleaving_matches_model<S: Store>(store: &S, seed: u64, ops: usize) {
    let s: &dyn Store = store;
    const Q: &str = "random";
    const LEASE_MS: u64 = 1_000;
    let mut rng = XorShift::new(seed);
    let concurrency = 1 + rng.below(3) as u32;
    let config = QueueConfig {
        concurrency,
        max_attempts: 3,
        backoff: Backoff {
            initial_ms: 0,
            max_ms: 0,
            factor: 1.0,
        },
        lease_ms: LEASE_MS,
        ..QueueConfig::default()
    };
    configure(
        s,
        Q,
        QueuePatch {
            concurrency: Some(config.concurrency),
            max_attempts: Some(config.max_attempts),
            backoff: Some(config.backoff),
            lease_ms: Some(config.lease_ms),
            paused: Some(false),
            executor: Some(None),
        },
    )
    .await;
    let mut model = Model::new();
    model.queues.insert(Q.to_string(), config);
    let mut run = Run {
        seed,
        step: 0,
        log: vec![format!(
            "configure concurrency {concurrency}, lease 1000, max_attempts 3, backoff 0"
        )],
    };
    let mut now: Millis = T0;
    // model seq -> (id, store seq); store seq -> model seq; model seq -> current token.
    let mut by_model: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    let mut by_store: HashMap<i64, i64> = HashMap::new();
    let mut tokens: HashMap<i64, String> = HashMap::new();
    let mut next_id = 0u64;

    for step in 0..ops {
        run.step = step;
        let roll = rng.below(100);
        match roll {
            0..=29 => {
                let n = 1 + rng.below(2) as usize;
                let mut jobs = Vec::new();
                let mut descr = Vec::new();
                for _ in 0..n {
                    next_id += 1;
                    let key = (rng.below(10) < 6).then(|| ["a", "b", "c"][rng.below(3) as usize]);
                    let delay = if rng.below(5) == 0 {
                        1 + rng.below(2_000) as i64
                    } else {
                        0
                    };
                    let id = format!("s{seed}-j{next_id}");
                    let mut job = nj(&id);
                    job.key = key.map(str::to_string);
                    if delay > 0 {
                        job.run_at = Some(now + delay);
                    }
                    descr.push(format!("key {key:?} delay {delay}"));
                    jobs.push(job);
                }
                let out = match try_enqueue(s, Q, jobs.clone(), now).await {
                    Ok(out) => out,
                    Err(e) => run.fail(format!("enqueue failed: {e:?}")),
                };
                if out.len() != jobs.len() {
                    run.fail(format!(
                        "enqueue of {} jobs returned {}",
                        jobs.len(),
                        out.len()
                    ));
                }
                let mut seqs = Vec::new();
                for (job, e) in jobs.iter().zip(out) {
                    let mseq = model.enqueue(Q, job.key.as_deref(), job.run_at.unwrap_or(now), now);
                    if !e.created {
                        run.fail(format!("new job {} reported as a replay", job.id));
                    }
                    by_model.insert(mseq, (job.id.clone(), e.job.seq));
                    by_store.insert(e.job.seq, mseq);
                    seqs.push(mseq);
                }
                run.log.push(format!(
                    "T+{}: enqueue {} -> seqs {seqs:?}",
                    now - T0,
                    descr.join(", ")
                ));
            }
            30..=54 => {
                let max = 1 + rng.below(3) as u32;
                let leases = match s
                    .job_claim(ClaimParams {
                        queue: Q.into(),
                        worker: WORKER.into(),
                        max,
                        lease_ms: None,
                        now,
                    })
                    .await
                {
                    Ok(l) => l,
                    Err(e) => run.fail(format!("claim failed: {e:?}")),
                };
                let got: Vec<i64> = leases
                    .iter()
                    .map(|l| by_store.get(&l.job.seq).copied().unwrap_or(-l.job.seq))
                    .collect();
                let want = model.claim(Q, max, now);
                run.log
                    .push(format!("T+{}: claim max {max} -> model {want:?}", now - T0));
                if got != want {
                    run.fail(format!(
                        "claim max {max}: store started {got:?}, model {want:?}"
                    ));
                }
                for (l, mseq) in leases.iter().zip(&want) {
                    let m = &model.jobs[mseq];
                    if l.job.attempt != m.attempt {
                        run.fail(format!(
                            "seq {mseq}: store attempt {}, model {}",
                            l.job.attempt, m.attempt
                        ));
                    }
                    if Some(l.expires_at) != m.lease_expires_at {
                        run.fail(format!(
                            "seq {mseq}: store lease expiry {}, model {:?}",
                            l.expires_at, m.lease_expires_at
                        ));
                    }
                    tokens.insert(*mseq, l.token.clone());
                }
            }
            55..=84 => {
                // A report or heartbeat on a running job whose lease is still valid.
                let live: Vec<i64> = model
                    .running(Q)
                    .into_iter()
                    .filter(|seq| model.jobs[seq].lease_expires_at.is_some_and(|e| e > now))
                    .collect();
                if live.is_empty() {
                    run.log
                        .push(format!("T+{}: (no live lease to report on)", now - T0));
                    continue;
                }
                let mseq = live[rng.below(live.len() as u64) as usize];
                let id = by_model[&mseq].0.clone();
                let token = tokens[&mseq].clone();
                let kind = rng.below(30);
                if kind < 20 {
                    let outcome = if kind < 13 {
                        success(&id)
                    } else {
                        failure(kind & 1 == 0)
                    };
                    let descr = match &outcome {
                        Outcome::Succeeded { .. } => "complete".to_string(),
                        Outcome::Failed { retry, .. } => format!("fail retry={retry}"),
                    };
                    run.log.push(format!("T+{}: {descr} seq {mseq}", now - T0));
                    let job = match report(s, &id, &token, outcome.clone(), now).await {
                        Ok(j) => j,
                        Err(e) => run.fail(format!("{descr} of seq {mseq} refused: {e:?}")),
                    };
                    let ok = match outcome {
                        Outcome::Succeeded { .. } => model.complete(mseq),
                        Outcome::Failed { retry, .. } => model.fail(mseq, retry, now),
                    };
                    assert!(ok, "model refused a report on a running job");
                    let m = &model.jobs[&mseq];
                    if waiting_or(job.state) != waiting_or(m.state) {
                        run.fail(format!(
                            "after {descr} seq {mseq}: store state {}, model {}",
                            job.state, m.state
                        ));
                    }
                } else if kind < 25 {
                    run.log
                        .push(format!("T+{}: heartbeat seq {mseq}", now - T0));
                    let hb = match s
                        .job_heartbeat(HeartbeatParams {
                            id: id.clone(),
                            token,
                            progress: None,
                            now,
                        })
                        .await
                    {
                        Ok(hb) => hb,
                        Err(e) => run.fail(format!("heartbeat of seq {mseq} refused: {e:?}")),
                    };
                    let m = model.jobs.get_mut(&mseq).expect("model job");
                    m.lease_expires_at = Some(now + LEASE_MS as i64);
                    if hb.expires_at != now + LEASE_MS as i64
                        || hb.cancel_requested != m.cancel_requested
                    {
                        run.fail(format!(
                            "heartbeat of seq {mseq}: store {hb:?}, model expiry {} cancel_requested {}",
                            now + LEASE_MS as i64,
                            m.cancel_requested
                        ));
                    }
                } else {
                    run.log
                        .push(format!("T+{}: cancel running seq {mseq}", now - T0));
                    if let Err(e) = s.job_cancel(&id, now).await {
                        run.fail(format!("cancel of running seq {mseq} refused: {e:?}"));
                    }
                    model.cancel(mseq);
                }
            }
            85..=89 => {
                let open: Vec<i64> = model
                    .jobs
                    .values()
                    .filter(|j| !j.state.is_finished())
                    .map(|j| j.seq)
                    .collect();
                if open.is_empty() {
                    continue;
                }
                let mseq = open[rng.below(open.len() as u64) as usize];
                run.log.push(format!(
                    "T+{}: cancel seq {mseq} ({})",
                    now - T0,
                    model.jobs[&mseq].state
                ));
                if let Err(e) = s.job_cancel(&by_model[&mseq].0, now).await {
                    run.fail(format!("cancel of seq {mseq} refused: {e:?}"));
                }
                assert!(
                    model.cancel(mseq),
                    "model refused to cancel an unfinished job"
                );
            }
            90..=96 => {
                let ms = 1 + rng.below(1_500) as i64;
                now += ms;
                run.log.push(format!("advance {ms} ms to T+{}", now - T0));
            }
            _ => {
                run.log.push(format!("T+{}: maintenance", now - T0));
                if let Err(e) = s.maintenance_run(now).await {
                    run.fail(format!("maintenance failed: {e:?}"));
                }
                // The model expires leases when claiming; a claim of nothing does just that.
                model.claim(Q, 0, now);
            }
        }
        compare_with_model(s, Q, &model, &by_store, &run).await;
    }
}

async fn compare_with_model(
    s: &dyn Store,
    queue: &str,
    model: &Model,
    by_store: &HashMap<i64, i64>,
    run: &Run,
) {
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = match s
            .job_list(ListParams {
                queue: queue.into(),
                state: None,
                after,
                limit: 1_000,
            })
            .await
        {
            Ok(p) => p,
            Err(e) => run.fail(format!("job_list failed: {e:?}")),
        };
        if page.is_empty() {
            break;
        }
        after = page.last().map(|j| j.seq);
        listed.extend(page);
    }
    if listed.len() != model.jobs.len() {
        run.fail(format!(
            "store lists {} jobs, model has {}",
            listed.len(),
            model.jobs.len()
        ));
    }
    let mut seen = HashSet::new();
    for job in &listed {
        let Some(&mseq) = by_store.get(&job.seq) else {
            run.fail(format!("store lists unknown seq {} ({})", job.seq, job.id));
        };
        seen.insert(mseq);
        let m = &model.jobs[&mseq];
        let store_view = (waiting_or(job.state), job.attempt);
        let model_view = (waiting_or(m.state), m.attempt);
        if store_view != model_view {
            run.fail(format!(
                "seq {mseq}: store (state {}, attempt {}), model (state {}, attempt {})",
                job.state, job.attempt, m.state, m.attempt
            ));
        }
        if job.state.is_waiting() && job.run_at != m.run_at {
            run.fail(format!(
                "seq {mseq}: store run_at T+{}, model T+{}",
                job.run_at - T0,
                m.run_at - T0
            ));
        }
        if job.state == JobState::Running && job.cancel_requested != m.cancel_requested {
            run.fail(format!(
                "seq {mseq}: store cancel_requested {}, model {}",
                job.cancel_requested, m.cancel_requested
            ));
        }
    }
    if seen.len() != model.jobs.len() {
        run.fail("store lists a job twice".to_string());
    }
}
