//! Listing and queue contract tests: `job_list` paging and filters,
//! `queue_configure` and per-state counts (contract section 4).

use std::collections::BTreeMap;

use serde_json::json;

use crate::job::JobState;
use crate::queue::{QueueConfig, QueueInfo, QueuePatch, StateCounts};
use crate::store::{ListParams, Store};

use super::{
    at, cancel, claim_expect, complete, conc, configure, enqueue, fail, keyed, nj, queue_info,
    FLAT_BACKOFF, T0,
};

/// `job_list` with a key lists that key's line: its unfinished jobs in seq
/// order (running, then waiting), paged by cursor, none of other keys or
/// queues, none finished; with a state too, that state of them.
pub async fn job_list_of_a_key_is_its_line<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "key-list";
    configure(s, q, conc(5)).await;
    enqueue(
        s,
        q,
        vec![
            keyed("k1", "k"),
            keyed("o1", "other"),
            keyed("k2", "k"),
            nj("n1"),
            keyed("k3", "k"),
            keyed("k4", "k"),
        ],
        T0,
    )
    .await;
    enqueue(s, "key-list-2", vec![keyed("x1", "k")], T0).await;
    let l = claim_expect(s, q, 5, T0, &["k1", "o1", "n1"], "one per key").await;
    complete(s, &l[0], T0 + 1).await;
    claim_expect(s, q, 5, T0 + 1, &["k2"], "k2 follows k1").await;
    let list = |state: Option<JobState>, after: Option<i64>, limit: u32| ListParams {
        queue: q.into(),
        key: Some("k".into()),
        state,
        after,
        limit,
    };
    let ids = |jobs: &[crate::job::Job]| jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
    let all = s.job_list(list(None, None, 100)).await.expect("job_list");
    assert_eq!(
        ids(&all),
        ["k2", "k3", "k4"],
        "the key's unfinished jobs, by seq"
    );
    assert_eq!(all[0].state, JobState::Running);
    let first = s.job_list(list(None, None, 2)).await.expect("job_list");
    assert_eq!(ids(&first), ["k2", "k3"]);
    let rest = s
        .job_list(list(None, Some(first[1].seq), 2))
        .await
        .expect("job_list");
    assert_eq!(ids(&rest), ["k4"], "the cursor pages on");
    let queued = s
        .job_list(list(Some(JobState::Queued), None, 100))
        .await
        .expect("job_list");
    assert_eq!(
        ids(&queued),
        ["k3", "k4"],
        "with a state: that state of the line"
    );
    let done = s
        .job_list(list(Some(JobState::Succeeded), None, 100))
        .await
        .expect("job_list");
    assert!(
        done.is_empty(),
        "finished jobs have left the line: {done:?}"
    );
}

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
    // A finished job amid waiting ones: a page of every state must still
    // come in `seq` order, whatever state each job is in.
    cancel(s, "j5", T0 + 1).await.expect("cancel j5");

    let list = |state: Option<JobState>, after: Option<i64>, limit: u32| ListParams {
        queue: q.into(),
        key: None,
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
        [None, None, Some(0), Some(1), None, Some(2), Some(3)],
        "positions in a listing"
    );
    // Wait facts and key positions included.
    for j in &all {
        let read = s.job_get(&j.id).await.expect("job_get").expect("found");
        assert_eq!(&read, j, "listing and job_get agree on {}", j.id);
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
            ("j6", Some(2)),
            ("j7", Some(3))
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
        [("j6", Some(2)), ("j7", Some(3))],
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
            executor: Some(Some(
                crate::Executor::from_json(&json!({ "type": "command", "argv": ["true"] }))
                    .expect("a valid executor"),
            )),
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
    cancel(s, "q4", T0 + 1).await.expect("cancel q4");
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
