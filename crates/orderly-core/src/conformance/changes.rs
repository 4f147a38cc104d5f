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
