//! Failure contract tests: failure outcomes, the error a success clears,
//! operations the state does not allow, and retry of failed and cancelled
//! jobs (contract sections 4 and 5).

use serde_json::json;

use crate::job::{JobState, Millis, NewJob};
use crate::queue::QueuePatch;
use crate::store::{HeartbeatParams, Store, StoreError};

use super::{
    cancel, claim_expect, claim_lease, complete, conc, configure, enqueue, error_reason,
    expect_invalid_state, expect_not_found, fail, get, ids, keyed, nj, queue_info, report, retry,
    success, FLAT_BACKOFF, T0, WORKER,
};

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
        retry(s, "i1", T0).await,
        JobState::Running,
        "retry of running",
    );
    complete(s, &l[0], T0 + 1).await;
    expect_invalid_state(
        cancel(s, "i1", T0 + 2).await,
        JobState::Succeeded,
        "cancel of succeeded",
    );
    expect_invalid_state(
        retry(s, "i1", T0 + 2).await,
        JobState::Succeeded,
        "retry of succeeded",
    );
    expect_invalid_state(
        retry(s, "i4", T0 + 2).await,
        JobState::Queued,
        "retry of queued",
    );

    let l = claim_expect(s, q, 1, T0 + 3, &["i2"], "i2").await;
    fail(s, &l[0], false, T0 + 4).await;
    let i3_seq = get(s, "i3").await.seq;
    let i4_seq = get(s, "i4").await.seq;
    let r = retry(s, "i2", T0 + 5).await.expect("retry failed i2");
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
        retry(s, "i2", T0 + 6).await,
        JobState::Queued,
        "retry of a retried job",
    );

    let i4 = cancel(s, "i4", T0 + 6).await.expect("cancel i4");
    assert_eq!(i4.state, JobState::Cancelled);
    let r4 = retry(s, "i4", T0 + 7).await.expect("retry cancelled i4");
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

    expect_not_found(cancel(s, "nope", T0).await, "nope", "cancel of unknown id");
    expect_not_found(retry(s, "nope", T0).await, "nope", "retry of unknown id");
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

/// Section 5: a success clears the error of the attempts before it (the
/// reported failure and the lease expiry the store recorded) and keeps its
/// result; a retry of a failed job clears its result and error.
pub async fn success_clears_an_earlier_error<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "clears";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            max_attempts: Some(3),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    let once = NewJob {
        max_attempts: Some(1),
        ..nj("e2")
    };
    enqueue(s, q, vec![nj("e1"), once], T0).await;
    let l = claim_expect(s, q, 1, T0, &["e1"], "e1").await;
    let e1 = fail(s, &l[0], true, T0 + 1).await;
    assert_eq!(e1.state, JobState::Scheduled, "e1 waits to retry");
    assert_eq!(e1.run_at, T0 + 1_001, "jitter 0.5 is the plain backoff");
    assert_eq!(
        get(s, "e1").await.error,
        e1.error,
        "the error is kept while e1 waits"
    );

    // Attempt 2 loses its lease: the store records a lease_expired error.
    let l = claim_lease(s, q, 1, Some(100), T0 + 1_001).await;
    assert_eq!(ids(&l), ["e1"], "e1's retry");
    let l = claim_expect(s, q, 1, T0 + 1_101, &["e1"], "e1's lease expired").await;
    assert_eq!(l[0].job.attempt, 3);
    assert_eq!(
        error_reason(&get(s, "e1").await),
        Some("lease_expired"),
        "the lost lease is recorded"
    );
    let done = complete(s, &l[0], T0 + 1_102).await;
    assert_eq!(
        done.error, None,
        "a success clears the earlier attempts' error"
    );
    assert_eq!(
        done.result,
        Some(json!({ "done": "e1" })),
        "and keeps its result"
    );
    let shown = get(s, "e1").await;
    assert_eq!(
        shown.error, None,
        "job_get shows no error after the success"
    );
    assert_eq!(shown.result, done.result);
    assert_eq!(shown, done, "job_get shows the job as reported");
    // Each attempt keeps its own end in the job's history.
    let history = s.job_attempts("e1").await.expect("attempts");
    let summary: Vec<(u32, Option<&str>, Option<Millis>)> = history
        .iter()
        .map(|a| (a.attempt, a.outcome.as_deref(), a.ended_at))
        .collect();
    assert_eq!(
        summary,
        [
            (1, Some("failed"), Some(T0 + 1)),
            (2, Some("failed"), Some(T0 + 1_101)),
            (3, Some("succeeded"), Some(T0 + 1_102)),
        ],
        "{history:?}"
    );
    assert_eq!(history[0].error, e1.error, "attempt 1's own error");
    assert_eq!(
        history[1].error.as_ref().and_then(|e| e.get("reason")),
        Some(&json!("lease_expired"))
    );
    assert_eq!(history[2].error, None);
    assert!(history.windows(2).all(|w| w[0].start_no < w[1].start_no));
    assert!(history.iter().all(|a| a.worker == WORKER));

    let l = claim_expect(s, q, 1, T0 + 1_103, &["e2"], "e2").await;
    let e2 = fail(s, &l[0], false, T0 + 1_104).await;
    assert_eq!(e2.state, JobState::Failed);
    let r = retry(s, "e2", T0 + 1_105).await.expect("retry failed e2");
    assert_eq!((r.state, r.attempt), (JobState::Queued, 0));
    assert_eq!(r.error, None, "a retry clears the error");
    assert_eq!(r.result, None, "a retry clears the result");
    assert_eq!(get(s, "e2").await, r, "job_get shows the retried job");
}
