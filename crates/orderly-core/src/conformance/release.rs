//! Released leases (contract section 6: a server that restarts reruns the
//! jobs its own executors were running, in place, without waiting for their
//! leases; other workers' leases are left alone).

use crate::job::JobState;
use crate::queue::QueuePatch;
use crate::store::Store;

use super::{
    assert_moves, claim_as, claim_expect, configure, enqueue, error_reason, get, keyed, nj, T0,
};

const OURS: &str = "executor:node-a/";

/// Section 6: `lease_release` puts back, at once and in `seq` order, only
/// the jobs of workers named with the prefix; each is the next to start in
/// its queue and key, as its next attempt; a job with no attempts left
/// fails; the changes say what moved.
pub async fn released_leases_rerun_in_place<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "release";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(3),
            lease_ms: Some(60_000),
            max_attempts: Some(2),
            ..QueuePatch::default()
        },
    )
    .await;
    enqueue(
        s,
        q,
        vec![
            keyed("r1", "k"),
            nj("r2"),
            nj("r3"),
            keyed("r4", "k"),
            nj("r5"),
        ],
        T0,
    )
    .await;
    let a = claim_as(s, q, &format!("{OURS}{q}/0"), 1, None, T0)
        .await
        .value;
    let b = claim_as(s, q, "external-worker", 1, None, T0).await.value;
    let c = claim_as(s, q, &format!("{OURS}{q}/1"), 1, None, T0)
        .await
        .value;
    let started: Vec<&str> = [&a, &b, &c].iter().map(|l| l[0].job.id.as_str()).collect();
    assert_eq!(started, ["r1", "r2", "r3"]);

    let none = s
        .lease_release("executor:node-b/", T0 + 10)
        .await
        .expect("release of another node");
    assert_eq!(none.value, 0, "another prefix releases nothing");
    assert!(none.changes.is_empty());

    let out = s.lease_release(OURS, T0 + 10).await.expect("lease_release");
    assert_eq!(out.value, 2, "r1 and r3 were ours");
    assert_moves(
        &out.changes,
        q,
        T0 + 10,
        &[
            ("r1", Some(JobState::Running), JobState::Queued),
            ("r3", Some(JobState::Running), JobState::Queued),
        ],
        "lease_release",
    );
    for id in ["r1", "r3"] {
        let j = get(s, id).await;
        assert_eq!(j.state, JobState::Queued, "{id} is back in line");
        assert_eq!(j.attempt, 1, "{id}: the interrupted start counted");
        assert_eq!(
            error_reason(&j),
            Some("interrupted"),
            "{id}'s error says why"
        );
    }
    assert_eq!(
        get(s, "r2").await.state,
        JobState::Running,
        "external lease untouched"
    );
    assert_eq!(
        get(s, "r1").await.position,
        Some(0),
        "r1 is first in line again"
    );

    // They start again before r4 (r1's key) and r5 (later), as attempt 2.
    let again = claim_expect(s, q, 5, T0 + 20, &["r1", "r3"], "released jobs first").await;
    assert!(again.iter().all(|l| l.job.attempt == 2));

    // Released again with no attempts left: failed for good, the key passes on.
    let out = s
        .lease_release("", T0 + 30)
        .await
        .expect("release everything");
    assert_eq!(out.value, 3, "the empty prefix names every worker");
    assert_eq!(
        get(s, "r1").await.state,
        JobState::Failed,
        "r1 had no attempts left"
    );
    assert_eq!(get(s, "r3").await.state, JobState::Failed);
    assert_eq!(
        get(s, "r2").await.state,
        JobState::Queued,
        "r2 had one left"
    );
    claim_expect(
        s,
        q,
        5,
        T0 + 40,
        &["r2", "r4", "r5"],
        "r2 in place, then r4 and r5",
    )
    .await;
}
