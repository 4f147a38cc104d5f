//! Schema v6: a v5 data directory gets its per-key block counts of
//! unfinished jobs, and key positions read from them are exact.

use orderly_core::{ClaimParams, Outcome, ReportParams, Store};

use crate::{SqliteOptions, SqliteStore, DB_FILE};

/// `key_blocks` as stored, and as recounted from `jobs`: they must agree
/// (and the stored table holds no row whose count fell to zero).
pub(crate) fn key_blocks_and_recount(conn: &rusqlite::Connection) -> (Vec<String>, Vec<String>) {
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}/{}/{}/{}={}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?
                ))
            })
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    };
    let stored = rows(
        "SELECT queue, key, level, block, n FROM key_blocks ORDER BY queue, key, level, block",
    );
    let recount = rows(
        "WITH closed(c) AS (SELECT coalesce((SELECT value FROM meta WHERE name = 'blocks_closed_below'), 1 << 40))
           SELECT queue, key, level, block, n FROM closed, (
           SELECT queue, key, 0 AS level, seq >> 10 AS block, count(*) AS n FROM jobs
             WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
             GROUP BY queue, key, seq >> 10
           UNION ALL
           SELECT queue, key, 1, seq >> 20, count(*) FROM jobs
             WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
             GROUP BY queue, key, seq >> 20)
             -- Only closed blocks have rows (schema v12); none before v12.
             WHERE block < (CASE level WHEN 0 THEN c ELSE c >> 10 END)
         ORDER BY queue, key, level, block",
    );
    (stored, recount)
}

/// A v5 data directory whose keyed jobs lie in several blocks of both
/// levels (two keys, two queues, running and finished jobs among them)
/// opens with its per-key counts built from its jobs: every key position
/// read from them equals the count of unfinished jobs of the key ahead, and
/// stays so as jobs finish and are cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v5_data_directory_gets_exact_key_positions_from_block_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = r#"{"concurrency":5,"max_attempts":5,"backoff":{"initial_ms":1000,"max_ms":3600000,"factor":2.0},"lease_ms":30000,"paused":false,"executor":null}"#;
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        for sql in [super::V1, super::V2, super::V3, super::V4, super::V5] {
            conn.execute_batch(sql).expect("v1 to v5");
        }
        conn.pragma_update(None, "user_version", 5)
            .expect("version");
        let mut rows = format!(
            "INSERT INTO queues (name, config, created_at, updated_at) VALUES ('q', '{config}', 1, 1), ('r', '{config}', 1, 1);"
        );
        // (seq, queue, key, state, head): seq 1,048,576 starts level-1 block 1.
        for (seq, queue, key, state, head) in [
            (3, "q", "k", "running", 1),
            (5, "q", "other", "queued", 1),
            (900, "q", "k", "succeeded", 0),
            (1_030, "q", "k", "queued", 0),
            (1_031, "r", "k", "queued", 1),
            (1_500, "q", "k", "scheduled", 0),
            (1_048_000, "q", "k", "queued", 0),
            (1_048_600, "q", "k", "queued", 0),
            (1_049_000, "q", "k", "cancelled", 0),
            (2_100_000, "q", "k", "queued", 0),
            (2_100_001, "q", "other", "queued", 0),
        ] {
            rows.push_str(&format!(
                "INSERT INTO jobs (seq, id, queue, key, state, head, payload, max_attempts,
                   enqueued_at, run_at, first_seq, lease_token, lease_expires_at, started_at) VALUES
                   ({seq}, 'j{seq}', '{queue}', '{key}', '{state}', {head}, '{{}}', 5, 1, 1, {seq},
                   'tok{seq}', 99999999999999, 1);"
            ));
        }
        conn.execute_batch(&rows).expect("v5 rows");
    }
    let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open v5 data");
    let raw = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open raw");
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, super::SCHEMA_VERSION);
    let (stored, recount) = key_blocks_and_recount(&raw);
    assert_eq!(
        stored, recount,
        "the migration counts every unfinished keyed job once"
    );

    let key_position = |id: &'static str| {
        let store = &store;
        async move {
            store
                .job_get(id)
                .await
                .expect("get")
                .expect("kept")
                .key_position
        }
    };
    for (id, want) in [
        ("j5", Some(0)),
        ("j1030", Some(1)),
        ("j1031", Some(0)),
        ("j1500", Some(2)),
        ("j1048000", Some(3)),
        ("j1048600", Some(4)),
        ("j2100000", Some(5)),
        ("j2100001", Some(1)),
        ("j3", None),
    ] {
        assert_eq!(key_position(id).await, want, "{id}");
    }

    // The running head finishes, and a job in mid-line is cancelled.
    let done = store
        .job_report_many(vec![ReportParams {
            id: "j3".into(),
            token: "tok3".into(),
            outcome: Outcome::Succeeded { result: None },
            now: 10,
            jitter: 0.5,
        }])
        .await
        .pop()
        .expect("one")
        .expect("report");
    assert!(done.value.state.is_finished());
    store.job_cancel("j1048000", 11).await.expect("cancel");
    for (id, want) in [
        ("j1030", Some(0)),
        ("j1500", Some(1)),
        ("j1048600", Some(2)),
        ("j2100000", Some(3)),
    ] {
        assert_eq!(
            key_position(id).await,
            want,
            "{id} after a finish and a cancel"
        );
    }
    // The new head starts: still unfinished, so the line ahead is the same.
    let leases = store
        .job_claim(ClaimParams {
            queue: "q".into(),
            worker: "w".into(),
            max: 5,
            lease_ms: None,
            now: 12,
            jitter: 0.5,
        })
        .await
        .expect("claim")
        .value;
    let ids: Vec<_> = leases.iter().map(|l| l.job.id.as_str()).collect();
    assert_eq!(ids, ["j5", "j1030"]);
    assert_eq!(key_position("j2100000").await, Some(3));
    let (stored, recount) = key_blocks_and_recount(&raw);
    assert_eq!(stored, recount, "the triggers keep the counts");
    store.close().await;
}
