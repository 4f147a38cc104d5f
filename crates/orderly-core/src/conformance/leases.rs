//! Lease contract tests: expired leases, timeouts, heartbeats, cancels of
//! running jobs, and the length a lease was granted (contract sections 2 to 5).

use serde_json::{json, Value};

use crate::job::{JobState, Millis, NewJob};
use crate::queue::QueuePatch;
use crate::store::{HeartbeatParams, Store};

use super::{
    cancel, claim_expect, claim_lease, complete, configure, enqueue, error_reason,
    expect_invalid_state, expect_stale, fail, failure, get, ids, keyed, maintain, nj, report,
    report_and_claim_as, success, FLAT_BACKOFF, T0, WORKER,
};

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
        report_and_claim_as(s, ("l1", old, success("l1")), q, WORKER, 1, T0 + 1_001).await,
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
    let r = maintain(s, due + 500).await;
    assert_eq!(
        r.changes
            .finished()
            .map(|c| (c.id.as_str(), c.to))
            .collect::<Vec<_>>(),
        [("t1", JobState::Failed)],
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

    let c = cancel(s, "h1", T0 + 1_200).await.expect("cancel running");
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
    cancel(s, "h2", T0 + 1_500).await.expect("cancel h2");
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

    let h4 = cancel(s, "h4", exp + 1).await.expect("cancel waiting");
    assert_eq!(
        h4.state,
        JobState::Cancelled,
        "a waiting job is cancelled at once"
    );
    assert_eq!(h4.finished_at, Some(exp + 1));
    assert_eq!(h4.position, None);
    expect_invalid_state(
        cancel(s, "h4", exp + 2).await,
        JobState::Cancelled,
        "cancel of a cancelled job",
    );
}

/// Sections 3 and 5: a lease carries the length it was granted (`lease_ms`,
/// by the store's clock): the claim's `lease_ms`, else the queue's, cut short
/// by the job's `timeout_ms`; a heartbeat answers the length it renewed for;
/// a repeated report-and-claim answers the lease with its granted length too.
pub async fn leases_carry_their_granted_length<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "lease-length";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(3),
            lease_ms: Some(10_000),
            ..QueuePatch::default()
        },
    )
    .await;
    let limited = NewJob {
        timeout_ms: Some(1_000),
        ..nj("g2")
    };
    enqueue(s, q, vec![nj("g1"), limited, nj("g3"), nj("g4")], T0).await;
    let hb = |id: &str, token: &str, now: Millis| HeartbeatParams {
        id: id.into(),
        token: token.to_string(),
        progress: None,
        now,
    };

    let g1 = claim_lease(s, q, 1, Some(5_000), T0).await;
    assert_eq!(ids(&g1), ["g1"]);
    assert_eq!(g1[0].lease_ms, 5_000, "the claim's lease_ms is granted");
    assert_eq!(g1[0].expires_at, T0 + 5_000);
    let g2 = claim_lease(s, q, 1, None, T0).await;
    assert_eq!(ids(&g2), ["g2"]);
    assert_eq!(
        g2[0].lease_ms, 1_000,
        "the job's timeout_ms cuts the lease short"
    );
    assert_eq!(g2[0].expires_at, T0 + 1_000);
    let g3 = claim_lease(s, q, 1, None, T0).await;
    assert_eq!(ids(&g3), ["g3"]);
    assert_eq!(g3[0].lease_ms, 10_000, "the queue's lease_ms by default");
    assert_eq!(g3[0].expires_at, T0 + 10_000);

    let h = s
        .job_heartbeat(hb("g1", &g1[0].token, T0 + 100))
        .await
        .expect("heartbeat g1");
    assert_eq!(
        (h.lease_ms, h.expires_at),
        (5_000, T0 + 5_100),
        "a heartbeat renews for the granted length and says so"
    );
    let h = s
        .job_heartbeat(hb("g2", &g2[0].token, T0 + 100))
        .await
        .expect("heartbeat g2");
    assert_eq!(
        (h.lease_ms, h.expires_at),
        (900, T0 + 1_000),
        "a renewal cut short by the deadline says how long it runs from now"
    );
    let h = s
        .job_heartbeat(hb("g3", &g3[0].token, T0 + 100))
        .await
        .expect("heartbeat g3");
    assert_eq!((h.lease_ms, h.expires_at), (10_000, T0 + 10_100));

    // A lease handed out by report-and-claim, renewed, then answered again
    // to a repeat of that report: still the length granted.
    let first = report_and_claim_as(
        s,
        ("g1", &g1[0].token, success("g1")),
        q,
        WORKER,
        1,
        T0 + 200,
    )
    .await
    .expect("report and claim")
    .value
    .1;
    assert_eq!(ids(&first), ["g4"]);
    assert_eq!(
        (first[0].lease_ms, first[0].expires_at),
        (10_000, T0 + 10_200)
    );
    let h = s
        .job_heartbeat(hb("g4", &first[0].token, T0 + 300))
        .await
        .expect("heartbeat g4");
    assert_eq!((h.lease_ms, h.expires_at), (10_000, T0 + 10_300));
    let again = report_and_claim_as(
        s,
        ("g1", &g1[0].token, success("g1")),
        q,
        WORKER,
        1,
        T0 + 400,
    )
    .await
    .expect("repeated report and claim")
    .value
    .1;
    assert_eq!(ids(&again), ["g4"], "the repeat answers its report's lease");
    assert_eq!(again[0].token, first[0].token);
    assert_eq!(again[0].expires_at, T0 + 10_300, "as renewed");
    assert_eq!(
        again[0].lease_ms, 10_000,
        "a lease answered again keeps its granted length, not the time since it started"
    );
}
