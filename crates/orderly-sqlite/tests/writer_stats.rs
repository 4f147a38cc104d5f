//! The writer's figures: every committed group counts once, with its size,
//! and an fsynced commit records how long it took; a commit that is not
//! fsynced (durability `none`, outside counter reservations) records none.

use orderly_core::{EnqueueParams, NewJob, Store};
use orderly_sqlite::{Durability, SqliteOptions, SqliteStore};

fn job(id: String) -> NewJob {
    NewJob {
        id,
        key: None,
        payload: serde_json::json!({}),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

async fn enqueue(store: &SqliteStore, n: usize, first: usize) {
    store
        .job_enqueue_many(EnqueueParams {
            queue: "q".into(),
            jobs: (first..first + n).map(|i| job(format!("j{i}"))).collect(),
            now: 1_000,
        })
        .await
        .expect("enqueue");
}

#[tokio::test]
async fn each_commit_counts_its_group_and_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open");
    let before = store
        .writer_stats()
        .expect("the SQLite store keeps figures");
    // Sequential writes: one request per group.
    enqueue(&store, 3, 0).await;
    enqueue(&store, 1, 3).await;
    let after = store.writer_stats().expect("figures");
    assert_eq!(after.commits, before.commits + 2);
    assert_eq!(after.group_sizes.count, after.commits);
    assert_eq!(
        after.group_sizes.sum,
        before.group_sizes.sum + 2.0,
        "two groups of one request (a batch is one request)"
    );
    assert_eq!(
        after.fsync_seconds.count,
        before.fsync_seconds.count + 2,
        "under `fsync` every commit is fsynced"
    );
    assert!(after.fsync_seconds.sum >= before.fsync_seconds.sum);
    store.close().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions {
        durability: Durability::None,
        ..SqliteOptions::new(dir.path())
    };
    let store = SqliteStore::open(&options).expect("open");
    // The first enqueue raises the `seq` reservation (an fsynced commit);
    // the next ones stay inside it and are not fsynced.
    enqueue(&store, 1, 0).await;
    let before = store.writer_stats().expect("figures");
    enqueue(&store, 1, 1).await;
    enqueue(&store, 1, 2).await;
    let after = store.writer_stats().expect("figures");
    assert_eq!(after.commits, before.commits + 2);
    assert_eq!(after.fsync_seconds.count, before.fsync_seconds.count);
    store.close().await;
}
