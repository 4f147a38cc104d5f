//! Reopening a data directory: `seq` and start numbers keep rising across
//! restarts, even after retention deleted the newest jobs, and even after a
//! machine crash lost the commits a relaxed durability level did not fsync.

use orderly_core::{ClaimParams, EnqueueParams, NewJob, Outcome, QueuePatch, ReportParams, Store};
use orderly_sqlite::{Durability, SqliteOptions, SqliteStore};

fn job(id: &str) -> NewJob {
    NewJob {
        id: id.into(),
        key: None,
        payload: serde_json::json!({ "id": id }),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

async fn enqueue(store: &SqliteStore, ids: &[&str], now: i64) -> Vec<i64> {
    let params = EnqueueParams {
        queue: "q".into(),
        jobs: ids.iter().map(|id| job(id)).collect(),
        now,
    };
    store
        .job_enqueue_many(params)
        .await
        .expect("enqueue")
        .value
        .into_iter()
        .map(|e| e.job.seq)
        .collect()
}

async fn run_all(store: &SqliteStore, now: i64) -> Vec<i64> {
    let mut starts = Vec::new();
    loop {
        let leases = store
            .job_claim(ClaimParams {
                queue: "q".into(),
                worker: "w".into(),
                max: 10,
                lease_ms: None,
                now,
                jitter: 0.5,
            })
            .await
            .expect("claim")
            .value;
        if leases.is_empty() {
            return starts;
        }
        for l in leases {
            starts.push(l.job.start_no.expect("start_no"));
            let report = ReportParams {
                id: l.job.id.clone(),
                token: l.token,
                outcome: Outcome::Succeeded { result: None },
                now,
                jitter: 0.5,
            };
            store.job_report_many(vec![report]).await[0]
                .as_ref()
                .expect("accepted");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_restart_and_a_purge_of_the_newest_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions::new(dir.path());

    let store = SqliteStore::open(&options).expect("open");
    store
        .queue_configure(
            "q",
            QueuePatch {
                concurrency: Some(10),
                ..Default::default()
            },
            0,
        )
        .await
        .expect("configure");
    assert_eq!(
        enqueue(&store, &["a", "b", "c"], 1_000).await,
        vec![1, 2, 3]
    );
    assert_eq!(run_all(&store, 1_000).await, vec![1, 2, 3]);
    store.close().await;

    // A plain restart continues where it was.
    let store = SqliteStore::open(&options).expect("reopen");
    assert_eq!(enqueue(&store, &["d"], 2_000).await, vec![4]);
    assert_eq!(run_all(&store, 2_000).await, vec![4]);
    // Retention deletes every job, the newest included.
    assert_eq!(store.retention_purge(10_000, 100).await.expect("purge"), 4);
    store.close().await;

    // Nothing is left to read the highest seq from, yet none is handed out again.
    let store = SqliteStore::open(&options).expect("reopen after purge");
    assert_eq!(enqueue(&store, &["e", "f"], 20_000).await, vec![5, 6]);
    assert_eq!(run_all(&store, 20_000).await, vec![5, 6]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions::new(dir.path());
    let first = SqliteStore::open(&options).expect("open");
    let second = SqliteStore::open(&options)
        .err()
        .expect("a second open must fail");
    assert!(
        second.to_string().contains("another Orderly process"),
        "{second}"
    );
    first.close().await;
    // Once the first is closed, the directory can be opened again.
    SqliteStore::open(&options).expect("reopen").close().await;
}

/// The database files as they are now: what a machine crash right after the
/// last fsynced commit leaves on disk (later commits were not fsynced).
fn snapshot(from: &std::path::Path, to: &std::path::Path) {
    for name in ["orderly.db", "orderly.db-wal"] {
        let src = from.join(name);
        if src.exists() {
            std::fs::copy(&src, to.join(name)).expect("copy");
        }
    }
}

async fn claim_start_nos(store: &SqliteStore, max: u32, now: i64) -> Vec<i64> {
    store
        .job_claim(ClaimParams {
            queue: "q".into(),
            worker: "w".into(),
            max,
            lease_ms: None,
            now,
            jitter: 0.5,
        })
        .await
        .expect("claim")
        .value
        .into_iter()
        .map(|l| l.job.start_no.expect("start_no"))
        .collect()
}

/// Under `accepted` (claims are not fsynced) and `none` (nothing is), a
/// machine crash may lose the last commits; the numbers they handed out
/// (start numbers, and under `none` also `seq`) were seen by clients and
/// must never be handed out again to different starts or jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_never_reissued_after_a_crash_loses_unsynced_commits() {
    for durability in [Durability::Accepted, Durability::None] {
        let dir = tempfile::tempdir().expect("tempdir");
        let crashed = tempfile::tempdir().expect("tempdir");
        let options = SqliteOptions {
            data_dir: dir.path().to_path_buf(),
            durability,
        };
        let store = SqliteStore::open(&options).expect("open");
        store
            .queue_configure(
                "q",
                QueuePatch {
                    concurrency: Some(100),
                    ..Default::default()
                },
                0,
            )
            .await
            .expect("configure");
        assert_eq!(enqueue(&store, &["a"], 1).await, vec![1]);
        assert_eq!(claim_start_nos(&store, 1, 2).await, vec![1]);
        // The disk as of now; what follows is lost in the "crash".
        snapshot(dir.path(), crashed.path());
        let later_seqs = enqueue(&store, &["b", "c", "d"], 3).await;
        assert_eq!(later_seqs, vec![2, 3, 4]);
        assert_eq!(claim_start_nos(&store, 3, 4).await, vec![2, 3, 4]);
        store.close().await;

        let reopened = SqliteStore::open(&SqliteOptions {
            data_dir: crashed.path().to_path_buf(),
            durability,
        })
        .expect("reopen after the crash");
        let seqs = enqueue(&reopened, &["e", "f"], 5).await;
        let starts = claim_start_nos(&reopened, 10, 6).await;
        assert!(!starts.is_empty(), "{durability:?}: nothing to claim");
        assert!(
            starts.iter().all(|n| *n > 4),
            "{durability:?}: start numbers {starts:?} were already handed out (1..=4)"
        );
        if durability == Durability::None {
            // Under `none` the enqueues of b, c, d were not fsynced either.
            assert!(
                seqs.iter().all(|s| *s > 4),
                "{durability:?}: seqs {seqs:?} were already handed out (1..=4)"
            );
        }
        reopened.close().await;
    }
}
