//! Section 2 in-process: a concurrency-1 queue runs strictly in `seq`
//! order, and a keyed queue keeps per-key order without exceeding its
//! concurrency, as seen by the handlers and as recorded by the store.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderly::{JobCx, JobState, NewJob, QueuePatch};
use serde_json::{json, Value};
use support::*;

/// 50 jobs on a concurrency-1 queue: the handler sees them in `seq` order,
/// one at a time, and the store's start counter agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_queue_runs_fifty_jobs_in_seq_order() {
    let dir = tempdir();
    let o = open(&dir).await;
    // Half enqueued before the handler exists, half while it runs.
    let mut ids = Vec::new();
    for i in 0..25 {
        let e = o
            .enqueue("fifo", job(&format!("j{i}"), json!({ "i": i })))
            .await;
        ids.push(e.expect("enqueue").job.id);
    }
    let seen: Log<i64> = Log::default();
    let running = Arc::new(AtomicUsize::new(0));
    let overlap = Arc::new(AtomicUsize::new(0));
    {
        let (seen, running, overlap) = (seen.clone(), running.clone(), overlap.clone());
        o.handle("fifo", 1, move |cx: JobCx<Value>| {
            let (seen, running, overlap) = (seen.clone(), running.clone(), overlap.clone());
            async move {
                if running.fetch_add(1, Ordering::SeqCst) > 0 {
                    overlap.fetch_add(1, Ordering::SeqCst);
                }
                seen.push(cx.seq);
                tokio::time::sleep(Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, orderly::Fail>(cx.payload)
            }
        })
        .expect("register the handler");
    }
    for i in 25..50 {
        let e = o
            .enqueue("fifo", job(&format!("j{i}"), json!({ "i": i })))
            .await;
        ids.push(e.expect("enqueue").job.id);
    }
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(finished(&o, id).await);
    }
    let seqs: Vec<i64> = jobs.iter().map(|j| j.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs {seqs:?}");
    assert_eq!(seen.get(), seqs, "the handler's order is not seq order");
    assert_eq!(overlap.load(Ordering::SeqCst), 0, "two jobs ran at once");
    for (i, j) in jobs.iter().enumerate() {
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        assert_eq!(j.attempt, 1, "{j:?}");
        assert_eq!(j.result, Some(json!({ "i": i })), "{j:?}");
    }
    let starts: Vec<i64> = jobs.iter().map(|j| j.start_no.expect("start_no")).collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "the store started jobs out of seq order: start_no by seq {starts:?}"
    );
    // Each job started only after the one before it finished.
    for w in jobs.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!(
            b.started_at >= a.finished_at,
            "{} started before {} finished",
            b.id,
            a.id
        );
    }
    o.shutdown().await;
}

/// A keyed queue at concurrency 4: jobs of one key run one at a time in
/// `seq` order, never more than 4 run at once, and jobs of different keys
/// do overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_queue_keeps_key_order_within_its_concurrency() {
    let dir = tempdir();
    let o = open(&dir).await;
    o.configure(
        "keyed",
        QueuePatch {
            concurrency: Some(4),
            ..Default::default()
        },
    )
    .await
    .expect("configure");
    let keys = ["a", "b", "c", "d", "e", "f"];
    let batch: Vec<NewJob> = (0..48)
        .map(|i| {
            job(&format!("k{i}"), json!({ "i": i }))
                // Uneven runs of keys, so that keys block one another.
                .key(keys[(i * i + i / 3) % keys.len()])
        })
        .collect();
    let enqueued = o.enqueue_many("keyed", batch).await.expect("enqueue");

    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let per_key: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let key_overlap: Log<String> = Log::default();
    let seen: Log<(String, i64)> = Log::default();
    {
        let (running, most, per_key, key_overlap, seen) = (
            running.clone(),
            most.clone(),
            per_key.clone(),
            key_overlap.clone(),
            seen.clone(),
        );
        o.handle("keyed", 4, move |cx: JobCx<Value>| {
            let (running, most, per_key, key_overlap, seen) = (
                running.clone(),
                most.clone(),
                per_key.clone(),
                key_overlap.clone(),
                seen.clone(),
            );
            async move {
                let key = cx.key.clone().expect("every job has a key");
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                {
                    let mut k = per_key.lock().unwrap();
                    let n = k.entry(key.clone()).or_default();
                    *n += 1;
                    if *n > 1 {
                        key_overlap.push(key.clone());
                    }
                }
                seen.push((key.clone(), cx.seq));
                tokio::time::sleep(Duration::from_millis(30)).await;
                *per_key.lock().unwrap().get_mut(&key).unwrap() -= 1;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, orderly::Fail>(Value::Null)
            }
        })
        .expect("register the handler");
    }
    let mut jobs = Vec::new();
    for e in &enqueued {
        jobs.push(finished(&o, &e.job.id).await);
    }
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded));
    assert!(
        key_overlap.get().is_empty(),
        "two jobs of one key ran at once: {:?}",
        key_overlap.get()
    );
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= 4,
        "{most} jobs ran at once on a concurrency-4 queue"
    );
    assert!(most >= 2, "jobs of different keys never overlapped");

    // Per key, the handler saw seq order and the store started in seq order,
    // each job after the previous one of its key finished.
    for k in keys {
        let order: Vec<i64> = seen
            .get()
            .into_iter()
            .filter(|(key, _)| key == k)
            .map(|(_, s)| s)
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "key {k}: {order:?}");
        let of_key: Vec<_> = jobs
            .iter()
            .filter(|j| j.key.as_deref() == Some(k))
            .collect();
        assert_eq!(order.len(), of_key.len(), "key {k}");
        for w in of_key.windows(2) {
            assert!(w[0].start_no < w[1].start_no, "key {k}: {:?}", w);
            assert!(
                w[1].started_at >= w[0].finished_at,
                "key {k}: {} started before {} finished",
                w[1].id,
                w[0].id
            );
        }
    }
    o.shutdown().await;
}
