//! Start log contract tests (contract sections 2 and 4): every start the
//! store made, retries and lease-expiry reruns included, listed per queue in
//! `start_no` order with what it started; cursor paging without gaps or
//! repeats, also while starts are being added; each job's attempt history
//! agreeing with the log; retention deleting a job's starts with it and
//! nothing else.

use std::collections::BTreeMap;

use crate::job::{JobState, NewJob};
use crate::queue::QueuePatch;
use crate::store::{Lease, StartListParams, StartRecord, Store};

use super::{
    claim_as, claim_expect, complete, configure, enqueue, expect_not_found, fail, keyed, nj, retry,
    FLAT_BACKOFF, T0, WORKER,
};

/// One page of `queue`'s start log.
async fn page(s: &dyn Store, queue: &str, after: Option<i64>, limit: u32) -> Vec<StartRecord> {
    s.start_list(StartListParams {
        queue: queue.to_string(),
        after,
        limit,
    })
    .await
    .unwrap_or_else(|e| {
        panic!("start_list({queue:?}, after {after:?}, limit {limit}) failed: {e:?}")
    })
}

/// `queue`'s whole start log, read in pages of `limit` by the cursor,
/// checking every page keeps to its limit and starts after the cursor.
pub(super) async fn whole_log(s: &dyn Store, queue: &str, limit: u32) -> Vec<StartRecord> {
    let mut out: Vec<StartRecord> = Vec::new();
    let mut after = None;
    loop {
        let p = page(s, queue, after, limit).await;
        assert!(
            p.len() <= limit as usize,
            "a page of {queue:?}'s start log with limit {limit} has {} starts",
            p.len()
        );
        if let (Some(a), Some(first)) = (after, p.first()) {
            assert!(
                first.start_no > a,
                "the page after start {a} begins with start {}",
                first.start_no
            );
        }
        let Some(last) = p.last() else { break };
        after = Some(last.start_no);
        let full = p.len() == limit as usize;
        out.extend(p);
        if !full {
            break;
        }
    }
    assert!(
        out.windows(2).all(|w| w[0].start_no < w[1].start_no),
        "{queue:?}'s start log is not in strictly increasing start_no order: {:?}",
        out.iter().map(|r| r.start_no).collect::<Vec<_>>()
    );
    out
}

/// What the start log must hold for each of `leases`, in order: the job as
/// its claim answered it.
fn records_of(leases: &[Lease]) -> Vec<StartRecord> {
    leases
        .iter()
        .map(|l| StartRecord {
            start_no: l.job.start_no.expect("a started job has a start_no"),
            seq: l.job.seq,
            job_id: l.job.id.clone(),
            key: l.job.key.clone(),
            attempt: l.job.attempt,
            worker: l.job.worker.clone().expect("a started job has a worker"),
            started_at: l.job.started_at.expect("a started job has started_at"),
        })
        .collect()
}

/// Asserts each job's attempt history lists exactly its starts in `log`:
/// the same start numbers, attempts, workers and start times, in order.
async fn attempts_agree_with_log(s: &dyn Store, log: &[StartRecord]) {
    let mut by_job: BTreeMap<&str, Vec<&StartRecord>> = BTreeMap::new();
    for r in log {
        by_job.entry(r.job_id.as_str()).or_default().push(r);
    }
    for (id, starts) in by_job {
        let history = s
            .job_attempts(id)
            .await
            .unwrap_or_else(|e| panic!("job_attempts({id:?}) failed: {e:?}"));
        let from_history: Vec<_> = history
            .iter()
            .map(|a| (a.start_no, a.attempt, a.worker.as_str(), a.started_at))
            .collect();
        let from_log: Vec<_> = starts
            .iter()
            .map(|r| (r.start_no, r.attempt, r.worker.as_str(), r.started_at))
            .collect();
        assert_eq!(
            from_history, from_log,
            "{id}'s attempts must be its starts in the start log"
        );
    }
}

/// `(job id, attempt, worker)` of each record.
fn who(log: &[StartRecord]) -> Vec<(&str, u32, &str)> {
    log.iter()
        .map(|r| (r.job_id.as_str(), r.attempt, r.worker.as_str()))
        .collect()
}

/// Sections 2 and 4: the start log of a queue lists every start in
/// `start_no` order (a failed attempt's retry, a lease-expiry rerun and a
/// manual retry's new `seq` included) with the seq, key, attempt, worker and
/// time of that start, and nothing of another queue; each job's attempt
/// history agrees with it. An unknown job has no history.
pub async fn start_log_lists_every_start<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "log";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(2),
            lease_ms: Some(1_000),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    let jobs = enqueue(
        s,
        q,
        vec![
            keyed("a1", "A"),
            keyed("a2", "A"),
            keyed("b1", "B"),
            nj("n1"),
        ],
        T0,
    )
    .await;
    enqueue(s, "other", vec![nj("o1"), nj("o2")], T0).await;
    let mut started = Vec::new();
    let mut other = Vec::new();

    let l = claim_as(s, q, "w1", 2, None, T0).await.value;
    assert_eq!(super::ids(&l), ["a1", "b1"], "a2 waits behind a1's key");
    started.extend(l);
    other.extend(claim_as(s, "other", WORKER, 1, None, T0).await.value);
    // a1 fails and waits to retry, holding its key: n1 goes next.
    fail(s, &started[0], true, T0 + 1).await;
    let l = claim_as(s, q, "w2", 2, None, T0 + 1).await.value;
    assert_eq!(
        super::ids(&l),
        ["n1"],
        "one slot free, a1 waits, a2 behind it"
    );
    started.extend(l);
    // b1's lease expires unrenewed: it reruns first, in its place.
    let l = claim_as(s, q, "w3", 2, None, T0 + 1_000).await.value;
    assert_eq!(super::ids(&l), ["b1"], "the expired b1 reruns");
    started.extend(l);
    complete(s, &started[2], T0 + 1_000).await;
    // a1's backoff is over: its second attempt.
    let l = claim_as(s, q, "w1", 2, None, T0 + 1_001).await.value;
    assert_eq!(super::ids(&l), ["a1"], "a1's retry");
    started.extend(l);
    complete(s, &other[0], T0 + 1_001).await;
    other.extend(
        claim_as(s, "other", WORKER, 1, None, T0 + 1_001)
            .await
            .value,
    );
    complete(s, &started[4], T0 + 1_002).await;
    complete(s, &started[3], T0 + 1_002).await;
    // a2 fails for good, is put back in line by hand (a new seq) and runs again.
    let l = claim_expect(s, q, 2, T0 + 1_003, &["a2"], "a2 has its key").await;
    fail(s, &l[0], false, T0 + 1_004).await;
    started.extend(l);
    let again = retry(s, "a2", T0 + 1_005).await.expect("retry a2");
    assert!(again.seq > jobs[3].seq, "a retried job gets a new seq");
    started.extend(claim_expect(s, q, 2, T0 + 1_006, &["a2"], "a2 again").await);

    let log = whole_log(s, q, 1_000).await;
    assert_eq!(
        who(&log),
        [
            ("a1", 1, "w1"),
            ("b1", 1, "w1"),
            ("n1", 1, "w2"),
            ("b1", 2, "w3"),
            ("a1", 2, "w1"),
            ("a2", 1, WORKER),
            ("a2", 1, WORKER),
        ],
        "every start of {q:?}, in start order: {log:?}"
    );
    assert_eq!(
        log,
        records_of(&started),
        "each start as its claim answered it"
    );
    assert_eq!(log[6].seq, again.seq, "a2's second run has its new seq");
    assert_eq!(log[5].seq, jobs[1].seq, "a2's first run had its first seq");
    assert_eq!(log[0].key.as_deref(), Some("A"));
    assert_eq!(log[2].key, None);
    assert_eq!(
        whole_log(s, "other", 1_000).await,
        records_of(&other),
        "another queue's log holds only its own starts"
    );
    assert!(
        log.iter().all(|r| !r.job_id.starts_with('o')),
        "{q:?}'s log holds nothing of \"other\""
    );
    attempts_agree_with_log(s, &log).await;
    attempts_agree_with_log(s, &whole_log(s, "other", 1_000).await).await;
    assert_eq!(
        s.job_attempts("o2").await.expect("attempts of o2").len(),
        1,
        "o2 ran once"
    );
    assert!(
        whole_log(s, "never-used", 10).await.is_empty(),
        "a queue never used has an empty log"
    );
    expect_not_found(
        s.job_attempts("nope").await,
        "nope",
        "attempts of an unknown job",
    );
}

/// Section 4: the start log pages by its cursor: any page size gives the
/// whole log once, without gaps or repeats; a cursor between two starts (or
/// another queue's start number) continues after it; past the end is empty;
/// and a reader following the log sees starts made while it reads, each once.
pub async fn start_log_pages_by_cursor<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let lease = QueuePatch {
        concurrency: Some(3),
        lease_ms: Some(1_000),
        ..QueuePatch::default()
    };
    configure(s, "pg", lease.clone()).await;
    configure(s, "pg2", lease).await;
    let new_jobs = |prefix: &str, n: usize| -> Vec<NewJob> {
        (0..n).map(|i| nj(&format!("{prefix}{i}"))).collect()
    };
    enqueue(s, "pg", new_jobs("p", 12), T0).await;
    enqueue(s, "pg2", new_jobs("x", 6), T0).await;
    let mut now = T0;
    // Starts alternate between the queues; some leases expire and rerun.
    for round in 0..6 {
        for q in ["pg", "pg2"] {
            let leases = claim_as(s, q, WORKER, 2, None, now).await.value;
            for (i, l) in leases.iter().enumerate() {
                if (round + i) % 3 != 0 {
                    complete(s, l, now).await;
                }
            }
        }
        now += 1_000;
    }
    let whole = whole_log(s, "pg", 1_000).await;
    assert_eq!(
        whole.len(),
        12,
        "two starts a round in six rounds: {whole:?}"
    );
    assert!(
        whole.iter().any(|r| r.attempt > 1),
        "the scenario reran an expired lease"
    );
    for limit in 1..=7 {
        assert_eq!(
            whole_log(s, "pg", limit).await,
            whole,
            "paging with limit {limit} gives the whole log once, in order"
        );
    }
    // A cursor between starts, or another queue's start number, continues after it.
    let other = whole_log(s, "pg2", 1_000).await;
    for r in &other {
        let rest: Vec<_> = whole
            .iter()
            .filter(|w| w.start_no > r.start_no)
            .cloned()
            .collect();
        assert_eq!(
            page(s, "pg", Some(r.start_no), 1_000).await,
            rest,
            "pg's log after pg2's start {}",
            r.start_no
        );
    }
    let last = whole.last().expect("starts").start_no;
    assert!(
        page(s, "pg", Some(last), 10).await.is_empty(),
        "nothing after the last start"
    );
    assert!(page(s, "pg", Some(last + 1_000), 10).await.is_empty());
    assert_eq!(
        page(s, "pg", Some(-5), 1_000).await,
        whole,
        "a cursor below 1 is the beginning"
    );
    assert_eq!(
        page(s, "pg", Some(0), 3).await,
        whole[..3],
        "cursor 0 is the beginning"
    );

    // Following the log: read a page, start more, read on from the cursor.
    let first = page(s, "pg", None, 4).await;
    enqueue(s, "pg", new_jobs("late", 4), now).await;
    let mut seen = first.clone();
    let mut after = first.last().map(|r| r.start_no);
    let mut rounds = 0;
    loop {
        let leases = claim_as(s, "pg", WORKER, 3, None, now).await.value;
        for l in &leases {
            complete(s, l, now).await;
        }
        now += 1;
        let p = page(s, "pg", after, 4).await;
        if let Some(r) = p.last() {
            after = Some(r.start_no);
        }
        let empty = p.is_empty();
        seen.extend(p);
        rounds += 1;
        if (leases.is_empty() && empty) || rounds > 100 {
            break;
        }
    }
    let now_whole = whole_log(s, "pg", 1_000).await;
    assert_eq!(
        seen, now_whole,
        "a reader following the cursor sees every start once"
    );
    assert!(
        now_whole.iter().any(|r| r.job_id.starts_with("late")),
        "the late jobs started while the log was read"
    );
}

/// Sections 3 and 4: retention deletes a purged job's starts with it (all of
/// them, across retries) and keeps every start of a job it keeps, however old
/// (a job still running, a job put back in line after an old attempt).
pub async fn purged_jobs_leave_no_starts<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "ret";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(2),
            max_attempts: Some(3),
            backoff: Some(FLAT_BACKOFF),
            ..QueuePatch::default()
        },
    )
    .await;
    enqueue(s, q, vec![nj("r1"), nj("r2"), nj("r3"), nj("r4")], T0).await;
    let l = claim_expect(s, q, 2, T0, &["r1", "r2"], "two").await;
    // r1 fails once, then succeeds: two starts.
    let r1 = fail(s, &l[0], true, T0 + 1).await;
    assert_eq!(r1.state, JobState::Scheduled);
    let l3 = claim_expect(s, q, 1, T0 + 2, &["r3"], "r3 while r1 waits").await;
    fail(s, &l3[0], false, T0 + 3).await;
    retry(s, "r3", T0 + 4).await.expect("retry r3");
    let l = claim_expect(s, q, 1, T0 + 1_001, &["r1"], "r1's retry").await;
    complete(s, &l[0], T0 + 1_002).await;
    // Now r1 is done (two starts), r2 runs since T0, r3 waits after an old start.
    let before = whole_log(s, q, 1_000).await;
    assert_eq!(
        who(&before),
        [
            ("r1", 1, WORKER),
            ("r2", 1, WORKER),
            ("r3", 1, WORKER),
            ("r1", 2, WORKER)
        ]
    );
    assert_eq!(
        s.retention_purge(T0 + 5_000, 100).await.expect("purge"),
        1,
        "only r1 is finished"
    );
    let after = whole_log(s, q, 1_000).await;
    assert_eq!(
        who(&after),
        [("r2", 1, WORKER), ("r3", 1, WORKER)],
        "r1's starts went with it; r2's and r3's stay, though older than the cutoff"
    );
    assert_eq!(after[..], [before[1].clone(), before[2].clone()]);
    attempts_agree_with_log(s, &after).await;
    expect_not_found(s.job_attempts("r1").await, "r1", "attempts of a purged job");

    // r4 and then r3 run and finish: each purge takes one job with all of
    // its starts (r3's two, across its retry) and nothing else.
    let l = claim_expect(s, q, 1, T0 + 1_003, &["r4"], "r4, then r3 behind it").await;
    complete(s, &l[0], T0 + 1_004).await;
    let l = claim_expect(s, q, 1, T0 + 1_005, &["r3"], "r3 again").await;
    complete(s, &l[0], T0 + 1_006).await;
    assert_eq!(
        who(&whole_log(s, q, 1_000).await),
        [
            ("r2", 1, WORKER),
            ("r3", 1, WORKER),
            ("r4", 1, WORKER),
            ("r3", 1, WORKER)
        ]
    );
    assert_eq!(
        s.retention_purge(T0 + 5_000, 1).await.expect("purge"),
        1,
        "at most the limit"
    );
    let left = whole_log(s, q, 1_000).await;
    let left = who(&left);
    assert!(
        left == [("r2", 1, WORKER), ("r3", 1, WORKER), ("r3", 1, WORKER)]
            || left == [("r2", 1, WORKER), ("r4", 1, WORKER)],
        "the purge of one job takes all its starts and nothing else: {left:?}"
    );
    assert_eq!(s.retention_purge(T0 + 5_000, 1).await.expect("purge"), 1);
    let left = whole_log(s, q, 1_000).await;
    assert_eq!(who(&left), [("r2", 1, WORKER)]);
    attempts_agree_with_log(s, &left).await;
}
