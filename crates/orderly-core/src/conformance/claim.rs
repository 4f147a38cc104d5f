//! Claim contract tests: FIFO starts, the concurrency limit, start numbers,
//! many claimers at once on a shared store (contract sections 2 and 3), and
//! claims that wait for work (section 5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::queue::{QueuePatch, StateCounts};
use crate::store::{Lease, Outcome, Store};

use super::{
    claim_expect, claim_lease, claim_params, complete, conc, configure, enqueue, get, ids, nj,
    queue_info, report_params, T0,
};

/// Section 2, the seed's case: at concurrency 1 jobs start one at a time in
/// seq order; a claim returns nothing while one runs.
pub async fn fifo_claim_at_concurrency_one<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "fifo";
    configure(
        s,
        q,
        QueuePatch {
            concurrency: Some(1),
            lease_ms: Some(10_000),
            ..QueuePatch::default()
        },
    )
    .await;
    let jobs = enqueue(s, q, (1..=5).map(|i| nj(&format!("f{i}"))).collect(), T0).await;

    let l = claim_expect(s, q, 3, T0, &["f1"], "concurrency 1 starts one job").await;
    assert_eq!(l[0].job.seq, jobs[0].seq);
    assert_eq!(l[0].job.attempt, 1, "first start is attempt 1");
    assert_eq!(
        l[0].expires_at,
        T0 + 10_000,
        "lease is the queue's lease_ms"
    );
    assert_eq!(
        get(s, "f1").await,
        l[0].job,
        "job_get shows the running job"
    );
    claim_expect(s, q, 3, T0 + 1, &[], "nothing starts while f1 runs").await;
    complete(s, &l[0], T0 + 5).await;

    let mut now = T0 + 6;
    for i in 2..=5 {
        let id = format!("f{i}");
        let l = claim_lease(s, q, 3, Some(5_000), now).await;
        assert_eq!(
            ids(&l),
            [id.as_str()],
            "claim at concurrency 1 after f{}",
            i - 1
        );
        assert_eq!(l[0].expires_at, now + 5_000, "a claim's lease_ms wins");
        claim_expect(s, q, 3, now, &[], "nothing starts while one runs").await;
        complete(s, &l[0], now + 1).await;
        now += 2;
    }
    claim_expect(s, q, 3, now, &[], "queue drained").await;
}

/// Section 2: at most `concurrency` jobs run at once; a claim with a larger
/// `max` gets the free capacity, lowest seqs first.
pub async fn concurrency_is_never_exceeded<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let q = "conc";
    configure(s, q, conc(3)).await;
    enqueue(s, q, (1..=7).map(|i| nj(&format!("c{i}"))).collect(), T0).await;
    let l = claim_expect(s, q, 10, T0, &["c1", "c2", "c3"], "capacity is 3").await;
    claim_expect(s, q, 10, T0, &[], "queue full").await;
    complete(s, &l[1], T0 + 1).await;
    let l4 = claim_expect(s, q, 10, T0 + 2, &["c4"], "one slot freed").await;
    complete(s, &l[0], T0 + 3).await;
    complete(s, &l[2], T0 + 3).await;
    claim_expect(s, q, 1, T0 + 4, &["c5"], "max 1").await;
    claim_expect(s, q, 10, T0 + 4, &["c6"], "one slot left").await;
    claim_expect(s, q, 10, T0 + 4, &[], "full again").await;
    assert_eq!(queue_info(s, q).await.counts.running, 3);
    complete(s, &l4[0], T0 + 5).await;
    claim_expect(s, q, 10, T0 + 6, &["c7"], "last job").await;
}

/// Section 2: every start is numbered; start numbers strictly increase in
/// the order the claims were made, across queues and reruns.
pub async fn start_no_increases_in_start_order<S: Store>(store: S) {
    let s: &dyn Store = &store;
    let patch = QueuePatch {
        concurrency: Some(2),
        lease_ms: Some(1_000),
        ..QueuePatch::default()
    };
    configure(s, "sa", patch.clone()).await;
    configure(s, "sb", patch).await;
    enqueue(s, "sa", vec![nj("a1"), nj("a2"), nj("a3")], T0).await;
    enqueue(s, "sb", vec![nj("b1"), nj("b2")], T0).await;
    let mut started: Vec<Lease> = Vec::new();
    started.extend(claim_expect(s, "sa", 2, T0, &["a1", "a2"], "a1 a2").await);
    started.extend(claim_expect(s, "sb", 1, T0, &["b1"], "b1").await);
    started.extend(claim_expect(s, "sb", 1, T0, &["b2"], "b2").await);
    complete(s, &started[0], T0 + 1).await;
    started.extend(claim_expect(s, "sa", 2, T0 + 1, &["a3"], "a3").await);
    started.extend(claim_expect(s, "sb", 2, T0 + 1_000, &["b1", "b2"], "reruns").await);
    let nos: Vec<i64> = started
        .iter()
        .map(|l| l.job.start_no.expect("start_no"))
        .collect();
    assert!(
        nos.windows(2).all(|w| w[0] < w[1]),
        "start numbers must strictly increase in start order: {nos:?}"
    );
    assert_eq!(
        get(s, "b1").await.start_no,
        started[5].job.start_no,
        "latest start shown"
    );
    assert_eq!(get(s, "a1").await.start_no, started[0].job.start_no);
}

#[derive(Default)]
struct Tracker {
    /// Jobs whose claim answer arrived and whose completion was not yet sent.
    running: u32,
    /// seq -> (start_no, attempt)
    started: HashMap<i64, (i64, u32)>,
    completed: usize,
    /// The first violation seen; every task stops when it is set.
    failure: Option<String>,
}

fn lock(tracker: &Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sections 2 and 3 under load: 8 tasks claim (max 1..3) and complete
/// concurrently from one queue of 300 jobs at concurrency 4 on a shared store.
/// Every job runs exactly once, never more than 4 at a time, and start order
/// (by `start_no`) is seq order.
pub async fn concurrent_claimers<S: Store>(store: S) {
    const JOBS: usize = 300;
    const CONCURRENCY: u32 = 4;
    const TASKS: usize = 8;
    let store = Arc::new(store);
    let q = "concurrent";
    configure(
        &*store,
        q,
        QueuePatch {
            concurrency: Some(CONCURRENCY),
            lease_ms: Some(3_600_000),
            ..QueuePatch::default()
        },
    )
    .await;
    let jobs = enqueue(
        &*store,
        q,
        (0..JOBS).map(|i| nj(&format!("c{i}"))).collect(),
        T0,
    )
    .await;
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let tracker = tracker.clone();
        handles.push(tokio::spawn(async move {
            let mut round = 0usize;
            loop {
                round += 1;
                {
                    let mut t = lock(&tracker);
                    if t.completed >= JOBS || t.failure.is_some() {
                        break;
                    }
                    if round > 1_000_000 {
                        t.failure = Some(format!("task {task} found no work for too long"));
                        break;
                    }
                }
                let max = 1 + ((task + round) % 3) as u32;
                let leases = match store
                    .job_claim(claim_params(q, &format!("w{task}"), max, None, T0))
                    .await
                {
                    Ok(l) => l.value,
                    Err(e) => {
                        lock(&tracker).failure = Some(format!("task {task}: claim failed: {e:?}"));
                        break;
                    }
                };
                if leases.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                {
                    // Counted when the answer arrives (late) and uncounted before the
                    // completion is sent (early): the tracked number never exceeds
                    // the true one, so going over the limit is a real violation.
                    let mut t = lock(&tracker);
                    if leases.len() as u32 > max {
                        t.failure = Some(format!("claim with max {max} got {}", leases.len()));
                    }
                    for l in &leases {
                        t.running += 1;
                        if t.running > CONCURRENCY {
                            t.failure = Some(format!(
                                "more than {CONCURRENCY} jobs running at once (when {} started)",
                                l.job.id
                            ));
                        }
                        let start_no = l.job.start_no.unwrap_or(-1);
                        if t.started
                            .insert(l.job.seq, (start_no, l.job.attempt))
                            .is_some()
                        {
                            t.failure = Some(format!("job {} started twice", l.job.id));
                        }
                    }
                    if t.failure.is_some() {
                        break;
                    }
                }
                for l in leases {
                    if (task + round) & 1 == 0 {
                        tokio::task::yield_now().await;
                    }
                    lock(&tracker).running -= 1;
                    let r = store
                        .job_report_many(vec![report_params(
                            &l.job.id,
                            &l.token,
                            Outcome::Succeeded { result: None },
                            T0,
                        )])
                        .await;
                    let mut t = lock(&tracker);
                    match r.as_slice() {
                        [Ok(_)] => t.completed += 1,
                        other => {
                            t.failure = Some(format!("completing {} failed: {other:?}", l.job.id));
                            break;
                        }
                    }
                }
            }
        }));
    }
    for h in handles {
        if let Err(e) = h.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("claimer task failed: {e}");
        }
    }
    let t = std::mem::take(&mut *lock(&tracker));
    if let Some(f) = &t.failure {
        panic!("concurrent claimers: {f}");
    }
    assert_eq!(t.completed, JOBS, "every job completed once");
    assert_eq!(t.started.len(), JOBS, "every job started");
    assert!(
        t.started.values().all(|&(_, attempt)| attempt == 1),
        "no job ran twice"
    );
    let mut by_start: Vec<(i64, i64)> =
        t.started.iter().map(|(&seq, &(no, _))| (no, seq)).collect();
    by_start.sort();
    let start_order: Vec<i64> = by_start.into_iter().map(|(_, seq)| seq).collect();
    let seq_order: Vec<i64> = jobs.iter().map(|j| j.seq).collect();
    if start_order != seq_order {
        let first_bad = start_order
            .iter()
            .zip(&seq_order)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "start order is not seq order: from start {first_bad}, started {:?}, expected {:?}",
            &start_order[first_bad..(first_bad + 5).min(JOBS)],
            &seq_order[first_bad..(first_bad + 5).min(JOBS)]
        );
    }
    let counts = queue_info(&*store, q).await.counts;
    assert_eq!(
        counts,
        StateCounts {
            succeeded: JOBS as u64,
            ..StateCounts::default()
        },
        "all jobs succeeded"
    );
}

/// Section 5, long polls (`job_claim_parked`): a claim that finds work
/// answers with it at once; a claim whose ticket was withdrawn takes
/// nothing; a claim that waits is answered with the job enqueued after it
/// (a store that parks it), or answered at once with nothing and the job
/// left waiting (a store that does not): either way no lease is lost and
/// no job is taken twice.
pub async fn parked_claims_answer_with_work_and_never_lose_it<S: Store>(store: S) {
    use crate::park::ParkTicket;
    let s: &dyn Store = &store;
    let q = "parked";
    configure(s, q, conc(4)).await;
    enqueue(s, q, vec![nj("p1")], T0).await;
    let out = s
        .job_claim_parked(claim_params(q, "w", 1, None, T0 + 1), ParkTicket::new())
        .await
        .expect("a claim that finds work");
    assert_eq!(ids(&out.value), ["p1"], "it answers with the job at once");

    enqueue(s, q, vec![nj("p2")], T0 + 2).await;
    let withdrawn = ParkTicket::new();
    assert!(withdrawn.withdraw());
    let out = s
        .job_claim_parked(claim_params(q, "gone", 1, None, T0 + 3), withdrawn)
        .await
        .expect("a withdrawn claim");
    assert!(out.value.is_empty(), "a withdrawn claim takes nothing");
    assert_eq!(get(s, "p2").await.state, crate::JobState::Queued);
    claim_expect(
        s,
        q,
        1,
        T0 + 4,
        &["p2"],
        "the withdrawn claim left p2 waiting",
    )
    .await;

    // Nothing left: the claim waits (or answers nothing) while p3 arrives.
    let ticket = ParkTicket::new();
    let waiting = s.job_claim_parked(claim_params(q, "waiter", 1, None, T0 + 5), ticket);
    let arrives = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        enqueue(s, q, vec![nj("p3")], T0 + 6).await;
    };
    let (out, ()) = tokio::join!(waiting, arrives);
    let leases = out.expect("a waiting claim").value;
    let p3 = get(s, "p3").await;
    match leases.as_slice() {
        [lease] => {
            assert_eq!(lease.job.id, "p3", "the waiting claim got the new job");
            assert_eq!(p3.state, crate::JobState::Running);
            assert_eq!(p3.worker.as_deref(), Some("waiter"));
        }
        [] => {
            assert_eq!(p3.state, crate::JobState::Queued, "nobody took p3");
            claim_expect(s, q, 1, T0 + 7, &["p3"], "p3 waited for the next claim").await;
        }
        more => panic!("max 1, got {} leases", more.len()),
    }
}
