//! Report contract tests: `job_report_and_claim` (and its repeats, fenced
//! by lease) and `job_report_many` (contract section 5).

use crate::job::{JobState, Millis};
use crate::queue::QueuePatch;
use crate::store::{HeartbeatParams, Lease, Outcome, Store};

use super::{
    check_leases, claim_as, claim_expect, claim_params, complete, conc, configure, enqueue,
    expect_not_found, expect_stale, failure, get, ids, nj, queue_info, report_and_claim_as,
    report_params, success, T0, WORKER,
};

/// Section 5: `job_report_and_claim` reports and returns the next leases in
/// one call; a refused report claims nothing.
pub async fn report_and_claim<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "report-claim";
    configure(s, q, conc(1)).await;
    enqueue(s, q, vec![nj("r1"), nj("r2"), nj("r3")], T0).await;
    let l1 = claim_expect(s, q, 1, T0, &["r1"], "r1").await;
    let claim_p = |now: Millis, max: u32| claim_params(q, WORKER, max, None, now);
    let rep = |l: &Lease, token: &str, outcome: Outcome, now: Millis| {
        report_params(&l.job.id, token, outcome, now)
    };
    let (j, next) = s
        .job_report_and_claim(
            rep(&l1[0], &l1[0].token, success("r1"), T0 + 1),
            claim_p(T0 + 1, 1),
        )
        .await
        .expect("report and claim")
        .value;
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
        .expect("a repeated report is answered")
        .value;
    assert_eq!(again, j, "a repeated report changes nothing");
    assert_eq!(
        same_next, next,
        "a repeated report returns the lease already held"
    );
    let plain = s
        .job_report_many(vec![rep(&l1[0], &l1[0].token, success("r1"), T0 + 2)])
        .await;
    assert_eq!(
        plain[0].as_ref().ok().map(|c| &c.value),
        Some(&j),
        "a repeated plain report changes nothing"
    );
    let other = s
        .job_report_many(vec![rep(&l1[0], &l1[0].token, failure(true), T0 + 2)])
        .await;
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
        .expect("report and claim")
        .value;
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(ids(&next2), ["r3"]);
    let (_, none) = s
        .job_report_and_claim(
            rep(&next2[0], &next2[0].token, success("r3"), T0 + 4),
            claim_p(T0 + 4, 5),
        )
        .await
        .expect("report and claim")
        .value;
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
    let r = |id: &str, token: &str, outcome: Outcome| report_params(id, token, outcome, T0 + 1);
    let results = s
        .job_report_many(vec![
            r("m1", &l[0].token, success("m1")),
            r("m2", "stale-token", success("m2")),
            r("m3", &l[2].token, failure(false)),
            r("missing", "x", success("missing")),
        ])
        .await;
    assert_eq!(results.len(), 4, "one result per report");
    match &results[0] {
        Ok(j) => assert_eq!(
            (j.value.id.as_str(), j.value.state),
            ("m1", JobState::Succeeded)
        ),
        other => panic!("report 0: {other:?}"),
    }
    expect_stale(results[1].clone(), "report 1 with a wrong token");
    match &results[2] {
        Ok(j) => assert_eq!(
            (j.value.id.as_str(), j.value.state),
            ("m3", JobState::Failed)
        ),
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

/// Section 5, fencing under a shared worker name: two claimers A and B both
/// call themselves `w`. A repeated `job_report_and_claim` (its answer was
/// lost) answers exactly the leases that report's commit issued, with the
/// same tokens, and changes nothing, whatever its `max`; it never hands out
/// B's lease, although B claimed under the same name. Once none of those
/// leases is current (reported, or expired), a repeat claims anew and still
/// returns no lease another holder has nor any stale one.
pub async fn report_and_claim_repeat_returns_only_its_own_leases<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "shared-worker";
    const W: &str = "w";
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
    enqueue(s, q, (0..4).map(|i| nj(&format!("j{i}"))).collect(), T0).await;
    let a = claim_as(s, q, W, 1, None, T0).await.value;
    assert_eq!(ids(&a), ["j0"], "claimer A takes j0");
    let b = claim_as(s, q, W, 1, None, T0).await.value;
    assert_eq!(ids(&b), ["j1"], "claimer B takes j1 under the same name");
    let a_report = || ("j0", a[0].token.as_str(), success("j0"));

    let first = report_and_claim_as(s, a_report(), q, W, 1, T0 + 1)
        .await
        .expect("A's report and claim");
    let (j0, next) = first.value;
    assert_eq!(j0.state, JobState::Succeeded);
    assert_eq!(ids(&next), ["j2"], "A's report comes with j2");
    check_leases(&next, q, W, 1, T0 + 1);
    assert_ne!(next[0].token, b[0].token);

    for (max, now) in [(1, T0 + 2), (3, T0 + 3)] {
        let again = report_and_claim_as(s, a_report(), q, W, max, now)
            .await
            .unwrap_or_else(|e| panic!("A's repeated report (max {max}) was refused: {e:?}"));
        let (j, leases) = &again.value;
        assert_eq!(j, &j0, "a repeated report changes nothing");
        assert!(
            leases
                .iter()
                .all(|l| l.job.id != "j1" && l.token != b[0].token),
            "a repeated report (max {max}) handed out B's lease on j1: {leases:?}"
        );
        assert_eq!(
            ids(leases),
            ["j2"],
            "a repeated report (max {max}) answers exactly the leases its report issued"
        );
        assert_eq!(
            leases[0].token, next[0].token,
            "the repeat carries the first answer's token"
        );
        assert_eq!(
            leases, &next,
            "the repeat answers the lease as first issued"
        );
        assert!(
            again.changes.is_empty(),
            "a repeat answered from its report's leases changes nothing: {:?}",
            again.changes
        );
    }
    let j1 = get(s, "j1").await;
    assert_eq!(j1.state, JobState::Running, "B still holds j1");
    assert_eq!(j1.lease_expires_at, Some(b[0].expires_at));
    assert_eq!(
        get(s, "j3").await.state,
        JobState::Queued,
        "repeats claimed nothing"
    );
    s.job_heartbeat(HeartbeatParams {
        id: "j1".into(),
        token: b[0].token.clone(),
        progress: None,
        now: T0 + 3,
    })
    .await
    .expect("B's lease on j1 is still current");

    // j2's lease ends (reported): a repeat now claims anew.
    complete(s, &next[0], T0 + 4).await;
    let anew = report_and_claim_as(s, a_report(), q, W, 1, T0 + 5)
        .await
        .expect("a repeat after its leases ended")
        .value
        .1;
    let foreign = |l: &Lease| l.job.id == "j1" || l.token == b[0].token || l.token == next[0].token;
    assert!(
        !anew.iter().any(foreign),
        "a repeat returned a lease another holder has, or a stale one: {anew:?}"
    );
    assert_eq!(
        ids(&anew),
        ["j3"],
        "none of its report's leases is current: the repeat claims anew"
    );
    check_leases(&anew, q, W, 1, T0 + 5);
    complete(s, &b[0], T0 + 6).await;

    // j3's lease expires: a repeat neither returns it nor hands out j1's.
    let exp = anew[0].expires_at;
    let after = report_and_claim_as(s, a_report(), q, W, 1, exp)
        .await
        .expect("a repeat after its lease expired")
        .value
        .1;
    assert!(
        after
            .iter()
            .all(|l| l.token != anew[0].token && !foreign(l)),
        "a repeat returned an expired or foreign lease: {after:?}"
    );
    assert_eq!(ids(&after), ["j3"], "the expired j3 is claimed anew");
    assert_eq!(after[0].job.attempt, 2, "as its next attempt");
    check_leases(&after, q, W, 1, exp);
}
