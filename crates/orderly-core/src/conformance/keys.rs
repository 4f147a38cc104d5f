//! Ordering-key contract tests: one job per key at a time in seq order, and
//! how retries, delays and cancels keep or pass a key's place (contract section 2).

use crate::job::{JobState, NewJob};
use crate::queue::QueuePatch;
use crate::store::Store;

use super::{
    at, cancel, claim_expect, complete, conc, configure, enqueue, fail, keyed, nj, FLAT_BACKOFF, T0,
};

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
    let x2 = cancel(s, "x2", T0 + 1).await.expect("cancel x2");
    assert_eq!(x2.state, JobState::Cancelled);
    assert_eq!(x2.finished_at, Some(T0 + 1));
    let y1 = cancel(s, "y1", T0 + 2).await.expect("cancel y1");
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
    let x1 = cancel(s, "x1", T0 + 3).await.expect("cancel running x1");
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
    let z1 = cancel(s, "z1", T0 + 1).await.expect("cancel z1");
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
