//! Schema v5: a v4 data directory gets its block counts of waiting jobs,
//! and positions read from them are exact.

use orderly_core::{ClaimParams, JobState, ListParams, Store};

use crate::{SqliteOptions, SqliteStore, DB_FILE};

/// `waiting_blocks` as stored, and as recounted from `jobs`: they must agree.
pub(crate) fn blocks_and_recount(conn: &rusqlite::Connection) -> (Vec<String>, Vec<String>) {
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}/{}/{}={}",
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?
                ))
            })
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    };
    let stored = rows(
        "SELECT queue, level, block, n FROM waiting_blocks WHERE n <> 0 ORDER BY queue, level, block",
    );
    let recount = rows(
        "WITH closed(c) AS (SELECT coalesce((SELECT value FROM meta WHERE name = 'blocks_closed_below'), 1 << 40))
           SELECT queue, level, block, n FROM closed, (
           SELECT queue, 0 AS level, seq >> 10 AS block, count(*) AS n FROM jobs
             WHERE state IN ('scheduled', 'queued') GROUP BY queue, seq >> 10
           UNION ALL
           SELECT queue, 1, seq >> 20, count(*) FROM jobs
             WHERE state IN ('scheduled', 'queued') GROUP BY queue, seq >> 20)
             -- Only closed blocks have rows (schema v12); none before v12.
             WHERE block < (CASE level WHEN 0 THEN c ELSE c >> 10 END)
         ORDER BY queue, level, block",
    );
    (stored, recount)
}

/// A v4 data directory whose waiting jobs lie in several blocks of both
/// levels (and in two queues, among jobs that are running or finished)
/// opens with its block counts built from its jobs: every position read
/// from them equals the count of waiting jobs ahead, and stays so as jobs
/// are claimed and cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v4_data_directory_gets_exact_positions_from_block_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = r#"{"concurrency":5,"max_attempts":5,"backoff":{"initial_ms":1000,"max_ms":3600000,"factor":2.0},"lease_ms":30000,"paused":false,"executor":null}"#;
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        for sql in [super::V1, super::V2, super::V3, super::V4] {
            conn.execute_batch(sql).expect("v1 to v4");
        }
        conn.pragma_update(None, "user_version", 4)
            .expect("version");
        let mut rows = format!(
            "INSERT INTO queues (name, config, created_at, updated_at) VALUES ('q', '{config}', 1, 1), ('r', '{config}', 1, 1);"
        );
        // (seq, queue, state, run_at): seq 1,048,576 starts level-1 block 1.
        for (seq, queue, state, run_at) in [
            (3, "q", "queued", 1),
            (900, "q", "running", 1),
            (1_030, "r", "queued", 1),
            (1_500, "q", "scheduled", 99_999_999),
            (1_048_000, "q", "queued", 1),
            (1_048_600, "q", "queued", 1),
            (1_049_000, "q", "succeeded", 1),
            (2_100_000, "q", "queued", 1),
            (3_000_000, "q", "queued", 1),
        ] {
            rows.push_str(&format!(
                "INSERT INTO jobs (seq, id, queue, key, state, head, payload, max_attempts,
                   enqueued_at, run_at, first_seq) VALUES
                   ({seq}, 'j{seq}', '{queue}', NULL, '{state}', 1, '{{}}', 5, 1, {run_at}, {seq});"
            ));
        }
        conn.execute_batch(&rows).expect("v4 rows");
    }
    let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open v4 data");
    let raw = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open raw");
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, super::SCHEMA_VERSION);

    let position = |id: &'static str| {
        let store = &store;
        async move {
            store
                .job_get(id)
                .await
                .expect("get")
                .expect("kept")
                .position
        }
    };
    let expect = [
        ("j3", Some(0)),
        ("j900", None),
        ("j1500", Some(1)),
        ("j1048000", Some(2)),
        ("j1048600", Some(3)),
        ("j1049000", None),
        ("j2100000", Some(4)),
        ("j3000000", Some(5)),
        ("j1030", Some(0)),
    ];
    for (id, want) in expect {
        assert_eq!(position(id).await, want, "{id}");
    }
    let (stored, recount) = blocks_and_recount(&raw);
    assert_eq!(
        stored, recount,
        "the migration counts every waiting job once"
    );

    // The first list page gives the same positions, with and without `state=`.
    let page = |state: Option<JobState>| {
        let store = &store;
        async move {
            store
                .job_list(ListParams {
                    queue: "q".into(),
                    key: None,
                    state,
                    after: None,
                    limit: 50,
                })
                .await
                .expect("list")
                .into_iter()
                .map(|j| (j.seq, j.position))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        page(Some(JobState::Queued)).await,
        [
            (3, Some(0)),
            (1_048_000, Some(2)),
            (1_048_600, Some(3)),
            (2_100_000, Some(4)),
            (3_000_000, Some(5))
        ]
    );
    assert_eq!(page(None).await.len(), 8);

    // A claim takes the front job; a cancel takes one out in mid-line.
    let leases = store
        .job_claim(ClaimParams {
            queue: "q".into(),
            worker: "w".into(),
            max: 1,
            lease_ms: None,
            now: 10,
            jitter: 0.5,
        })
        .await
        .expect("claim")
        .value;
    assert_eq!(leases[0].job.id, "j3");
    store.job_cancel("j1048600", 11).await.expect("cancel");
    for (id, want) in [
        ("j1500", Some(0)),
        ("j1048000", Some(1)),
        ("j2100000", Some(2)),
        ("j3000000", Some(3)),
        ("j1030", Some(0)),
    ] {
        assert_eq!(position(id).await, want, "{id} after a claim and a cancel");
    }
    let (stored, recount) = blocks_and_recount(&raw);
    assert_eq!(stored, recount, "the triggers keep the counts");
    store.close().await;
}
