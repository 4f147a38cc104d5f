//! Schemas v10 and v11 (and v12 after them): a v9 data directory, whose `jobs_by_state` held
//! every job and whose `queue_counts` had a row per state, opens with the
//! index rebuilt to leave out the claimable jobs and the counts in one row
//! per queue, and its pages, positions, counts and claims are the same as
//! before.

use orderly_core::{
    ClaimParams, EnqueueParams, JobState, ListParams, NewJob, Outcome, ReportParams, Store,
};

use crate::{SqliteOptions, SqliteStore, DB_FILE};

fn job(id: &str, key: Option<&str>) -> NewJob {
    NewJob {
        id: id.into(),
        key: key.map(Into::into),
        payload: serde_json::json!({}),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

/// Every page of `q` in `state`, as `(id, position)`.
async fn listed(store: &SqliteStore, state: Option<JobState>) -> Vec<(String, Option<u64>)> {
    let page = store
        .job_list(ListParams {
            queue: "q".into(),
            state,
            key: None,
            after: None,
            limit: 100,
        })
        .await
        .expect("list");
    page.into_iter().map(|j| (j.id, j.position)).collect()
}

/// The definition of `jobs_by_state`, and SQLite's own check that every
/// index holds exactly the rows its definition says.
fn by_state_and_check(conn: &rusqlite::Connection) -> (String, String) {
    let sql = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'jobs_by_state'",
            [],
            |r| r.get(0),
        )
        .expect("index");
    let check = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    (sql, check)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v9_data_directory_keeps_each_job_in_one_index_and_its_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open");
    let jobs = vec![
        job("free-1", None),
        job("k-1", Some("k")),
        job("k-2", Some("k")),
        job("free-2", None),
        job("k-3", Some("k")),
    ];
    store
        .job_enqueue_many(EnqueueParams {
            queue: "q".into(),
            jobs,
            now: 1,
        })
        .await
        .expect("enqueue");
    let claim = ClaimParams {
        queue: "q".into(),
        worker: "w".into(),
        max: 1,
        lease_ms: None,
        now: 2,
        jitter: 0.5,
    };
    let first = store.job_claim(claim.clone()).await.expect("claim").value;
    assert_eq!(first[0].job.id, "free-1");
    let counts = store.queue_get("q").await.expect("queue").counts;
    let (all, queued) = (
        listed(&store, None).await,
        listed(&store, Some(JobState::Queued)).await,
    );
    store.close().await;
    {
        // Back to v9: every job in `jobs_by_state`, a count row per state.
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
        conn.execute_batch(
            "DROP INDEX jobs_by_state;
             CREATE INDEX jobs_by_state ON jobs (queue, state, seq);
             CREATE TABLE v9_counts (queue TEXT NOT NULL, state TEXT NOT NULL,
                 n INTEGER NOT NULL, PRIMARY KEY (queue, state)) WITHOUT ROWID;
             INSERT INTO v9_counts SELECT queue, 'queued', queued FROM queue_counts;
             INSERT INTO v9_counts SELECT queue, 'running', running FROM queue_counts;
             DROP TABLE queue_counts;
             ALTER TABLE v9_counts RENAME TO queue_counts;
             DELETE FROM meta WHERE name = 'blocks_closed_below';
             PRAGMA user_version = 9;",
        )
        .expect("to v9");
    }
    let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open v9 data");
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, super::super::SCHEMA_VERSION);
        let (sql, check) = by_state_and_check(&conn);
        assert!(
            sql.ends_with("WHERE head = 0 OR state <> 'queued'"),
            "{sql}"
        );
        assert_eq!(check, "ok");
    }
    assert_eq!(store.queue_get("q").await.expect("queue").counts, counts);
    assert_eq!((counts.queued, counts.running), (4, 1));
    assert_eq!(listed(&store, None).await, all);
    assert_eq!(listed(&store, Some(JobState::Queued)).await, queued);
    let ids: Vec<&str> = queued.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["k-1", "k-2", "free-2", "k-3"]);
    let done = ReportParams {
        id: "free-1".into(),
        token: first[0].token.clone(),
        outcome: Outcome::Succeeded { result: None },
        now: 3,
        jitter: 0.5,
    };
    store.job_report_many(vec![done]).await[0]
        .as_ref()
        .expect("report");
    let next = store.job_claim(claim).await.expect("claim").value;
    assert_eq!(next[0].job.id, "k-1", "the front of the line runs next");
    store.close().await;
}
