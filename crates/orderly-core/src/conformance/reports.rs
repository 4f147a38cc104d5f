//! Report contract tests: `job_report_and_claim` and `job_report_many`
//! (contract section 5).

use crate::job::{JobState, Millis};
use crate::store::{ClaimParams, HeartbeatParams, Lease, Outcome, ReportParams, Store};

use super::{
    claim_expect, complete, conc, configure, enqueue, expect_not_found, expect_stale, failure, get,
    ids, nj, queue_info, success, T0, WORKER,
};

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
