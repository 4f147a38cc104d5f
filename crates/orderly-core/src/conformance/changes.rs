//! Change contract tests: every write reports, in `Committed::changes`, each
//! job it moved between states, whichever operation moved it (an enqueue, a
//! claim and its catch-up, a report, a cancel, a retry, a maintenance pass).

use crate::job::JobState::{Cancelled, Failed, Queued, Running, Scheduled, Succeeded};
use crate::job::NewJob;
use crate::queue::QueuePatch;
use crate::store::Store;

use super::{
    assert_moves, at, claim_as, configure, failure, get, ids, maintain, nj, report_and_claim_as,
    report_committed, success, try_enqueue_committed, FLAT_BACKOFF, T0, WORKER,
};

/// Store invariants: each write's changes list exactly the moves it made,
/// `(id, from, to)` in order, each with its queue, key, seq and time:
/// enqueue (`None` to queued or scheduled), claim (queued to running),
/// reports (to succeeded, or back to scheduled for a retry), cancel of a
/// waiting job, retry of a cancelled or failed job, a claim whose catch-up
/// promotes a due job or reaps an expired lease, report-and-claim, and
/// maintenance doing the same. Writes that move nothing report nothing.
pub async fn writes_report_what_they_changed<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "changes";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            lease_ms: Some(1_000),
            max_attempts: Some(3),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    let enqueue = |jobs: Vec<NewJob>, now| async move {
        try_enqueue_committed(s, q, jobs, now)
            .await
            .unwrap_or_else(|e| panic!("enqueue failed: {e:?}"))
    };
    let claim = |max, lease_ms, now| claim_as(s, q, WORKER, max, lease_ms, now);
    let report = |id: &'static str, token: String, outcome, now| async move {
        report_committed(s, id, &token, outcome, now)
            .await
            .unwrap_or_else(|e| panic!("report on {id} failed: {e:?}"))
    };

    let e = enqueue(
        vec![
            nj("a1"),
            NewJob {
                key: Some("k".into()),
                ..nj("a2")
            },
            at(nj("a3"), T0 + 500),
        ],
        T0,
    )
    .await;
    assert_moves(
        &e.changes,
        q,
        T0,
        &[
            ("a1", None, Queued),
            ("a2", None, Queued),
            ("a3", None, Scheduled),
        ],
        "an enqueue",
    );
    for (c, j) in e.changes.jobs.iter().zip(&e.value) {
        assert_eq!(
            (c.seq, &c.key),
            (j.job.seq, &j.job.key),
            "seq and key of {}",
            c.id
        );
    }
    let replay = enqueue(vec![nj("a1")], T0).await;
    assert!(!replay.value[0].created);
    assert_moves(&replay.changes, q, T0, &[], "a replayed enqueue");

    let c = claim(1, None, T0).await;
    assert_eq!(ids(&c.value), ["a1"]);
    assert_moves(
        &c.changes,
        q,
        T0,
        &[("a1", Some(Queued), Running)],
        "a claim",
    );
    assert_eq!(c.changes.jobs[0].seq, e.value[0].job.seq);
    let full = claim(1, None, T0).await;
    assert!(full.value.is_empty());
    assert_moves(&full.changes, q, T0, &[], "a claim of nothing");

    let r = report("a1", c.value[0].token.clone(), success("a1"), T0 + 1).await;
    assert_moves(
        &r.changes,
        q,
        T0 + 1,
        &[("a1", Some(Running), Succeeded)],
        "a success",
    );
    let again = report("a1", c.value[0].token.clone(), success("a1"), T0 + 1).await;
    assert_moves(&again.changes, q, T0 + 1, &[], "a repeated report");

    let c = claim(1, None, T0 + 1).await;
    assert_eq!(ids(&c.value), ["a2"]);
    assert_moves(
        &c.changes,
        q,
        T0 + 1,
        &[("a2", Some(Queued), Running)],
        "a claim",
    );
    assert_eq!(c.changes.jobs[0].key.as_deref(), Some("k"));
    let r = report("a2", c.value[0].token.clone(), failure(true), T0 + 2).await;
    assert_moves(
        &r.changes,
        q,
        T0 + 2,
        &[("a2", Some(Running), Scheduled)],
        "a failure that retries",
    );
    assert_eq!(
        r.value.run_at,
        T0 + 1_002,
        "jitter 0.5 is the plain backoff"
    );

    let e = enqueue(vec![nj("a4")], T0 + 3).await;
    assert_moves(&e.changes, q, T0 + 3, &[("a4", None, Queued)], "an enqueue");
    let x = s.job_cancel("a4", T0 + 3).await.expect("cancel a4");
    assert_moves(
        &x.changes,
        q,
        T0 + 3,
        &[("a4", Some(Queued), Cancelled)],
        "a cancel",
    );
    let x = s.job_retry("a4", T0 + 4).await.expect("retry a4");
    assert_moves(
        &x.changes,
        q,
        T0 + 4,
        &[("a4", Some(Cancelled), Queued)],
        "a retry of a cancelled job",
    );
    assert!(x.value.seq > e.value[0].job.seq, "a retry takes a new seq");
    assert_eq!(
        x.changes.jobs[0].seq, x.value.seq,
        "the change shows the new seq"
    );

    // Catch-up in a claim: a3 becomes due, is promoted, then claimed (under a
    // short lease); a2 is not due until T0+1002 and a4 waits behind a3.
    let c = claim(1, Some(400), T0 + 500).await;
    assert_eq!(ids(&c.value), ["a3"]);
    assert_moves(
        &c.changes,
        q,
        T0 + 500,
        &[
            ("a3", Some(Scheduled), Queued),
            ("a3", Some(Queued), Running),
        ],
        "a claim whose catch-up promotes a due job",
    );
    // a3's lease expires at T0+900: the claim puts it back, then takes it again.
    let c = claim(1, None, T0 + 900).await;
    assert_eq!(ids(&c.value), ["a3"]);
    assert_eq!(c.value[0].job.attempt, 2);
    assert_moves(
        &c.changes,
        q,
        T0 + 900,
        &[("a3", Some(Running), Queued), ("a3", Some(Queued), Running)],
        "a claim whose catch-up reaps an expired lease",
    );
    let a3 = c.value[0].clone();

    // Maintenance: a2 becomes due; then a3's lease (to T0+1900) expires.
    let m = maintain(s, T0 + 1_002).await;
    assert_moves(
        &m.changes,
        q,
        T0 + 1_002,
        &[("a2", Some(Scheduled), Queued)],
        "maintenance promoting",
    );
    assert_eq!(m.value.next_due, Some(T0 + 1_900), "a3's lease is next");
    let m = maintain(s, T0 + 1_002).await;
    assert_moves(
        &m.changes,
        q,
        T0 + 1_002,
        &[],
        "maintenance with nothing due",
    );
    let m = maintain(s, T0 + 1_900).await;
    assert_moves(
        &m.changes,
        q,
        T0 + 1_900,
        &[("a3", Some(Running), Queued)],
        "maintenance reaping",
    );
    assert_eq!(get(s, "a3").await.state, Queued);

    // Report and claim: the report's move, then the claim's.
    let c = claim(1, None, T0 + 2_000).await;
    assert_eq!(ids(&c.value), ["a2"], "a2 before a3 and a4");
    let rc = report_and_claim_as(
        s,
        ("a2", &c.value[0].token, success("a2")),
        q,
        WORKER,
        1,
        T0 + 2_001,
    )
    .await
    .expect("report and claim");
    assert_eq!(ids(&rc.value.1), ["a3"]);
    assert_moves(
        &rc.changes,
        q,
        T0 + 2_001,
        &[
            ("a2", Some(Running), Succeeded),
            ("a3", Some(Queued), Running),
        ],
        "a report and claim",
    );
    let r = report("a3", rc.value.1[0].token.clone(), success("a3"), T0 + 2_002).await;
    assert_moves(
        &r.changes,
        q,
        T0 + 2_002,
        &[("a3", Some(Running), Succeeded)],
        "a success",
    );
    assert_ne!(a3.token, rc.value.1[0].token);

    // Another queue, later (nothing of `changes` is due any more: a4 waits,
    // nothing runs): a lease expiring with no attempts left fails the job in
    // maintenance; a retry of the failed job puts it back.
    let f = "changes-f";
    configure(
        s,
        f,
        QueuePatch {
            lease_ms: Some(1_000),
            ..QueuePatch::default()
        },
    )
    .await;
    let once = NewJob {
        max_attempts: Some(1),
        ..nj("f1")
    };
    let e = try_enqueue_committed(s, f, vec![once], T0 + 3_000)
        .await
        .expect("enqueue f1");
    assert_moves(
        &e.changes,
        f,
        T0 + 3_000,
        &[("f1", None, Queued)],
        "an enqueue",
    );
    let c = claim_as(s, f, WORKER, 1, None, T0 + 3_000).await;
    assert_moves(
        &c.changes,
        f,
        T0 + 3_000,
        &[("f1", Some(Queued), Running)],
        "a claim",
    );
    let m = maintain(s, T0 + 4_000).await;
    assert_moves(
        &m.changes,
        f,
        T0 + 4_000,
        &[("f1", Some(Running), Failed)],
        "maintenance failing a lease without attempts left",
    );
    let x = s.job_retry("f1", T0 + 4_001).await.expect("retry f1");
    assert_moves(
        &x.changes,
        f,
        T0 + 4_001,
        &[("f1", Some(Failed), Queued)],
        "a retry of a failed job",
    );
    assert_eq!(x.changes.jobs[0].seq, x.value.seq);
    let m = maintain(s, T0 + 4_002).await;
    assert_moves(
        &m.changes,
        f,
        T0 + 4_002,
        &[],
        "maintenance with nothing due",
    );
    assert_eq!(m.value.next_due, None, "nothing waits for a time");
}

/// Store invariants: each change carries its job's `enqueued_at`, the start
/// of the attempt a move out of `running` ended (`started_at`), and whether
/// that attempt ended by losing its lease (expired, or released) rather than
/// by a report or a timeout. `queue_oldest_queued` is the `enqueued_at` of the
/// front of the queue's line.
pub async fn changes_carry_times_and_lease_loss<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "times";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            lease_ms: Some(1_000),
            max_attempts: Some(3),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    assert_eq!(s.queue_oldest_queued(q).await.expect("oldest"), None);
    assert_eq!(
        s.queue_oldest_queued("nowhere").await.expect("oldest"),
        None
    );
    let e1 = try_enqueue_committed(s, q, vec![nj("t1")], T0)
        .await
        .expect("enqueue t1");
    let e2 = try_enqueue_committed(s, q, vec![nj("t2")], T0 + 5)
        .await
        .expect("enqueue t2");
    let fresh = (&e1.changes.jobs[0], &e2.changes.jobs[0]);
    assert_eq!(
        (fresh.0.enqueued_at, fresh.0.started_at, fresh.0.lease_lost),
        (T0, None, false),
        "an enqueue's change"
    );
    assert_eq!(fresh.1.enqueued_at, T0 + 5);
    assert_eq!(s.queue_oldest_queued(q).await.expect("oldest"), Some(T0));

    // t1 starts at T0+10, fails at T0+30 and goes back (a report: no lease lost).
    let c = claim_as(s, q, WORKER, 1, None, T0 + 10).await;
    let start = &c.changes.jobs[0];
    assert_eq!(
        (start.enqueued_at, start.started_at, start.lease_lost),
        (T0, Some(T0 + 10), false),
        "a claim's change"
    );
    assert_eq!(
        s.queue_oldest_queued(q).await.expect("oldest"),
        Some(T0 + 5),
        "t2 is the front once t1 runs"
    );
    let r = report_committed(s, "t1", &c.value[0].token, failure(true), T0 + 30)
        .await
        .expect("fail t1");
    assert_moves(
        &r.changes,
        q,
        T0 + 30,
        &[("t1", Some(Running), Scheduled)],
        "a failure",
    );
    let end = &r.changes.jobs[0];
    assert_eq!(
        (end.enqueued_at, end.started_at, end.lease_lost),
        (T0, Some(T0 + 10), false),
        "a reported failure's change"
    );

    // t2 starts at T0+40 and its lease runs out (T0+1040): lost, back in place.
    let c = claim_as(s, q, WORKER, 1, None, T0 + 40).await;
    assert_eq!(ids(&c.value), ["t2"]);
    assert_eq!(s.queue_oldest_queued(q).await.expect("oldest"), None);
    let m = maintain(s, T0 + 1_040).await;
    let lost: Vec<_> = m.changes.jobs.iter().filter(|c| c.id == "t2").collect();
    assert_eq!(lost.len(), 1, "t2's lease expiry: {:?}", m.changes);
    assert_eq!(
        (
            lost[0].from,
            lost[0].to,
            lost[0].started_at,
            lost[0].lease_lost
        ),
        (Some(Running), Queued, Some(T0 + 40), true),
        "an expired lease's change"
    );
    for c in m.changes.jobs.iter().filter(|c| c.id != "t2") {
        assert!(!c.lease_lost, "a promotion loses no lease: {c:?}");
    }

    // A released lease is lost too.
    let c = claim_as(s, q, WORKER, 1, None, T0 + 1_050).await;
    let first = c.value[0].job.id.clone();
    let rel = s.lease_release(WORKER, T0 + 1_060).await.expect("release");
    assert_eq!(rel.value, 1);
    assert_eq!(rel.changes.jobs.len(), 1, "{:?}", rel.changes);
    let r = &rel.changes.jobs[0];
    assert_eq!(
        (r.id.as_str(), r.from, r.started_at, r.lease_lost),
        (first.as_str(), Some(Running), Some(T0 + 1_050), true),
        "a released lease's change"
    );
}
