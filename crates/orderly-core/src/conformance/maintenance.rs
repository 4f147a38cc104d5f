//! Maintenance contract tests: `maintenance_run` reaping and promoting, and
//! retention purging old finished jobs.

use crate::job::{JobState, NewJob};
use crate::queue::{QueuePatch, StateCounts};
use crate::store::Store;

use super::{
    at, cancel, claim_expect, complete, conc, configure, enqueue, error_reason, expect_stale, fail,
    get, maintain, nj, queue_info, report, success, T0,
};

/// Store invariants: `maintenance_run` puts expired leases back in place
/// (with a `lease_expired` error), finishes those without attempts left,
/// makes due scheduled jobs queued, and reports what it changed (the queues
/// where jobs may start, the jobs it finished) and the next due time.
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

    let r = maintain(s, T0 + 400).await;
    assert!(
        r.changes.startable().is_empty(),
        "nothing due at T0+400: {r:?}"
    );
    assert_eq!(r.changes.finished().count(), 0, "{r:?}");
    assert_eq!(r.value.next_due, Some(T0 + 500), "b1 is due first");

    let r = maintain(s, T0 + 1_000).await;
    assert_eq!(
        r.changes.startable().into_keys().collect::<Vec<_>>(),
        ["mr-a", "mr-b"],
        "a1's lease expired and b1 is due: {r:?}"
    );
    assert_eq!(r.changes.finished().count(), 0, "{r:?}");
    assert_eq!(
        r.value.next_due,
        Some(T0 + 1_100),
        "d1's lease expires next"
    );
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

    let r = maintain(s, T0 + 1_100).await;
    let finished: Vec<_> = r.changes.finished().collect();
    assert_eq!(finished.len(), 1, "d1 finished: {r:?}");
    assert_eq!(finished[0].id, "d1");
    assert_eq!(finished[0].to, JobState::Failed);
    assert_eq!(r.value.next_due, Some(T0 + 5_000), "c1 is due next");
    assert_eq!(get(s, "d1").await.state, JobState::Failed);

    let again = claim_expect(s, "mr-a", 1, T0 + 1_200, &["a1"], "a1 before a2").await;
    assert_eq!(again[0].job.attempt, 2);
    claim_expect(s, "mr-b", 1, T0 + 1_200, &["b1"], "b1").await;
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
    cancel(s, "p5", T0 + 40).await.expect("cancel p5");
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
