//! The SQLite schema and its migrations.
//!
//! Indexes are partial so each serves one question without scanning:
//! - `jobs_ready`: the claim candidates of a queue in `seq` order. Only a
//!   key's head (its lowest unfinished job) or a keyless job has `head = 1`,
//!   so a long line of jobs behind one busy key is never looked at.
//! - `jobs_key_line`: the unfinished jobs of a key, to find the next head.
//! - `jobs_due` / `jobs_due_all`: scheduled jobs by `run_at`, for the
//!   scheduler. Expired leases are found among a queue's running jobs in
//!   `jobs_by_state` (v1 also had `jobs_leases` and `jobs_leases_all`, by
//!   lease expiry: v7 and v8 drop them, see `v7` and `v8`).
//!
//! - `starts_queue`: a queue's start log in `start_no` order, so a page of
//!   it reads the page, not the whole log nor other queues' starts.
//!
//! - `jobs_by_state`: a queue's jobs by state in `seq` order, except the
//!   claimable ones, which only `jobs_ready` holds (since v10, see `v10`).
//!   It also serves a page of a queue's jobs of every state, merged from
//!   each state's part (`jobs_queue_seq` did from v5 to v8).
//!
//! `queue_counts` holds each queue's count per state (one row per queue
//! since v11), so counts and the running total that a claim needs are one
//! row read; `waiting_blocks` (v5)
//! makes a waiting job's `position` a bounded read at any backlog, and
//! `key_blocks` (v6) its `key_position` one at any key length. Triggers kept
//! all three up to v6; since v7 the writer does (`crate::tally`).

use rusqlite::Connection;

mod v10;
mod v11;
mod v12;
mod v6;
mod v7;
mod v8;
mod v9;

/// Version written to `PRAGMA user_version` by the latest migration.
pub const SCHEMA_VERSION: i64 = 12;

/// v5: position at any backlog (docs/ordering.md, "Position at any
/// backlog"). `waiting_blocks` counts a queue's waiting (`scheduled` or
/// `queued`) jobs per block of `seq`s at two levels: level 0 per 1,024
/// `seq`s (`seq >> 10`), level 1 per 1,048,576 (`seq >> 20`). Triggers keep
/// it in the transaction of every row change, as they keep `queue_counts`,
/// so no write path can forget it: a job entering the waiting states (an
/// insert, a retry that gives it a new `seq`) adds one to its two blocks,
/// one leaving them (a claim, a cancel, a delete) takes one away, and a move
/// between `scheduled` and `queued` changes nothing. Rows that fall to zero
/// stay (one per 1,024 `seq`s ever used; a read only sums those of one
/// level-1 block). The table is built from the jobs already stored.
///
/// `jobs_queue_seq` serves a page of a queue's jobs of every state in `seq`
/// order: without it SQLite read the queue's whole part of `jobs_by_state`
/// and sorted it.
const V5: &str = r#"
CREATE TABLE waiting_blocks (
    queue TEXT NOT NULL,
    level INTEGER NOT NULL,
    block INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, level, block)
) WITHOUT ROWID;
INSERT INTO waiting_blocks (queue, level, block, n)
    SELECT queue, 0, seq >> 10, count(*) FROM jobs
    WHERE state IN ('scheduled', 'queued') GROUP BY queue, seq >> 10;
INSERT INTO waiting_blocks (queue, level, block, n)
    SELECT queue, 1, seq >> 20, count(*) FROM jobs
    WHERE state IN ('scheduled', 'queued') GROUP BY queue, seq >> 20;

CREATE TRIGGER jobs_waiting_insert AFTER INSERT ON jobs
WHEN new.state IN ('scheduled', 'queued') BEGIN
    INSERT INTO waiting_blocks (queue, level, block, n) VALUES (new.queue, 0, new.seq >> 10, 1)
        ON CONFLICT (queue, level, block) DO UPDATE SET n = n + 1;
    INSERT INTO waiting_blocks (queue, level, block, n) VALUES (new.queue, 1, new.seq >> 20, 1)
        ON CONFLICT (queue, level, block) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_waiting_leave AFTER UPDATE OF state, seq, queue ON jobs
WHEN old.state IN ('scheduled', 'queued')
  AND (new.state NOT IN ('scheduled', 'queued') OR new.seq <> old.seq OR new.queue <> old.queue) BEGIN
    UPDATE waiting_blocks SET n = n - 1 WHERE queue = old.queue AND level = 0 AND block = old.seq >> 10;
    UPDATE waiting_blocks SET n = n - 1 WHERE queue = old.queue AND level = 1 AND block = old.seq >> 20;
END;
CREATE TRIGGER jobs_waiting_enter AFTER UPDATE OF state, seq, queue ON jobs
WHEN new.state IN ('scheduled', 'queued')
  AND (old.state NOT IN ('scheduled', 'queued') OR new.seq <> old.seq OR new.queue <> old.queue) BEGIN
    INSERT INTO waiting_blocks (queue, level, block, n) VALUES (new.queue, 0, new.seq >> 10, 1)
        ON CONFLICT (queue, level, block) DO UPDATE SET n = n + 1;
    INSERT INTO waiting_blocks (queue, level, block, n) VALUES (new.queue, 1, new.seq >> 20, 1)
        ON CONFLICT (queue, level, block) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_waiting_delete AFTER DELETE ON jobs
WHEN old.state IN ('scheduled', 'queued') BEGIN
    UPDATE waiting_blocks SET n = n - 1 WHERE queue = old.queue AND level = 0 AND block = old.seq >> 10;
    UPDATE waiting_blocks SET n = n - 1 WHERE queue = old.queue AND level = 1 AND block = old.seq >> 20;
END;

CREATE INDEX jobs_queue_seq ON jobs (queue, seq);
"#;

/// v4: the start log by queue. Each start record carries its job's queue
/// and key (a job's never change), so a queue's log is read from its own
/// index (`starts_queue`) and stands on its own. Retention now deletes a
/// job's start records with the job, by their chain, instead of by age
/// (which could delete a running or retried job's records and leave a
/// purged job's behind), so `starts_time` goes.
///
/// The records already stored are brought into that shape: those of a job
/// that is gone, or of an earlier job under a reused id (a `seq` below the
/// `first_seq` of the job that has the id now), are deleted, as retention
/// now would have; the others get their job's queue and key; and every
/// job's chain is relinked in `start_no` order (v2 kept no chain, and a job
/// retried under v2 had no `last_start_no`), so all of a job's records are
/// reachable from it.
const V4: &str = r#"
ALTER TABLE starts ADD COLUMN queue TEXT NOT NULL DEFAULT '';
ALTER TABLE starts ADD COLUMN key TEXT;
CREATE INDEX v4_starts_by_job ON starts (job_id, start_no);
DELETE FROM starts WHERE NOT EXISTS (
    SELECT 1 FROM jobs j WHERE j.id = starts.job_id AND j.first_seq <= starts.seq);
UPDATE starts SET
    queue = (SELECT j.queue FROM jobs j WHERE j.id = starts.job_id),
    key = (SELECT j.key FROM jobs j WHERE j.id = starts.job_id),
    prev_start_no = (SELECT max(p.start_no) FROM starts p
                     WHERE p.job_id = starts.job_id AND p.start_no < starts.start_no);
UPDATE jobs SET last_start_no = (SELECT max(s.start_no) FROM starts s WHERE s.job_id = jobs.id)
    WHERE id IN (SELECT job_id FROM starts);
DROP INDEX v4_starts_by_job;
DROP INDEX starts_time;
CREATE INDEX starts_queue ON starts (queue, start_no);
"#;

/// v3: the leases a report's commit issued (so that report sent again gets
/// exactly those back), and each attempt's end in its start record (the
/// attempt history: when it ended, how, and its error). A job's start
/// records are chained (`prev_start_no`, from the job's `last_start_no`,
/// which a retry keeps), so its history is read by primary key, one row per
/// attempt, without an index that every start would have to update.
const V3: &str = r#"
ALTER TABLE jobs ADD COLUMN reported_leases TEXT;
ALTER TABLE jobs ADD COLUMN last_start_no INTEGER;
UPDATE jobs SET last_start_no = start_no WHERE start_no IS NOT NULL;
ALTER TABLE starts ADD COLUMN prev_start_no INTEGER;
ALTER TABLE starts ADD COLUMN ended_at INTEGER;
ALTER TABLE starts ADD COLUMN outcome TEXT;
ALTER TABLE starts ADD COLUMN error TEXT;
"#;

/// v2: the token of the report that last moved a job on, so that the same
/// report sent again is recognised (and answered) instead of refused.
const V2: &str = "ALTER TABLE jobs ADD COLUMN reported_token TEXT;";

const V1: &str = r#"
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('next_seq', 1), ('next_start_no', 1);

CREATE TABLE queues (
    name       TEXT PRIMARY KEY,
    config     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    queue            TEXT NOT NULL,
    key              TEXT,
    state            TEXT NOT NULL,
    head             INTEGER NOT NULL,
    payload          TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    timeout_ms       INTEGER,
    enqueued_at      INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    progress         TEXT,
    result           TEXT,
    error            TEXT,
    lease_token      TEXT,
    lease_worker     TEXT,
    lease_expires_at INTEGER,
    lease_ms         INTEGER,
    deadline_at      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    start_no         INTEGER,
    first_seq        INTEGER NOT NULL,
    requeues         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_ready     ON jobs (queue, seq) WHERE state = 'queued' AND head = 1;
CREATE INDEX jobs_by_state  ON jobs (queue, state, seq);
CREATE INDEX jobs_key_line  ON jobs (queue, key, seq) WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
CREATE INDEX jobs_due       ON jobs (queue, run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_due_all   ON jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_leases    ON jobs (queue, lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_leases_all ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_finished  ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Every start, in the order the server made them: the audit of the order used.
CREATE TABLE starts (
    start_no   INTEGER PRIMARY KEY,
    seq        INTEGER NOT NULL,
    job_id     TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    worker     TEXT NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE INDEX starts_time ON starts (started_at);

CREATE TABLE queue_counts (
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO queue_counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF state ON jobs WHEN old.state <> new.state BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    INSERT INTO queue_counts (queue, state, n) VALUES (new.queue, new.state, 1)
        ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
END;
"#;

/// Brings the database at `conn` up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        // Its writes would go uncounted, or worse: never guess at a newer layout.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the data directory holds schema version {version}, written by a newer Orderly; \
                 this build knows versions up to {SCHEMA_VERSION}"
            )),
        ));
    }
    if version < 1 {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(V1)?;
        tx.pragma_update(None, "user_version", 1)?;
        tx.commit()?;
    }
    for (to, sql) in [
        (2, V2),
        (3, V3),
        (4, V4),
        (5, V5),
        (6, v6::V6),
        (7, v7::V7),
        (8, v8::V8),
        (9, v9::V9),
        (10, v10::V10),
        (11, v11::V11),
        (12, v12::V12),
    ] {
        if version < to {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", to)?;
            tx.commit()?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod v5_tests;

#[cfg(test)]
mod v6_tests;

#[cfg(test)]
mod v11_tests;

#[cfg(test)]
mod tests {
    use orderly_core::{ClaimParams, JobState, Outcome, ReportParams, StartListParams, Store};

    use crate::{SqliteOptions, SqliteStore, DB_FILE};

    /// A data directory written by schema v2, with a job
    /// waiting, a job that ran and failed once, and its start record, opens
    /// with this build: migrated to the latest version, nothing lost, the
    /// counters continuing above what it holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_data_directory_of_the_previous_schema_opens_and_migrates() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
            conn.pragma_update(None, "journal_mode", "WAL")
                .expect("wal");
            conn.execute_batch(super::V1).expect("v1");
            conn.execute_batch(super::V2).expect("v2");
            conn.pragma_update(None, "user_version", 2)
                .expect("version");
            conn.execute_batch(
                r#"
                INSERT INTO queues (name, config, created_at, updated_at) VALUES ('q',
                  '{"concurrency":1,"max_attempts":5,"backoff":{"initial_ms":1000,"max_ms":3600000,"factor":2.0},"lease_ms":30000,"paused":false,"executor":null}', 1, 1);
                INSERT INTO jobs (seq, id, queue, key, state, head, payload, attempt, max_attempts,
                  enqueued_at, run_at, error, start_no, first_seq, lease_worker, started_at)
                  VALUES (7, 'old-retry', 'q', NULL, 'queued', 1, '{"n":18446744073709551617}', 1, 5,
                  1, 1, '"boom"', 3, 7, 'w', 2);
                INSERT INTO jobs (seq, id, queue, key, state, head, payload, max_attempts,
                  enqueued_at, run_at, first_seq)
                  VALUES (8, 'old-waiting', 'q', 'k', 'queued', 1, '{}', 5, 1, 1, 8);
                INSERT INTO starts (start_no, seq, job_id, attempt, worker, started_at)
                  VALUES (3, 7, 'old-retry', 1, 'w', 2);
                "#,
            )
            .expect("v2 rows");
        }
        let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open v2 data");
        let version: i64 = rusqlite::Connection::open(dir.path().join(DB_FILE))
            .expect("open")
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, super::SCHEMA_VERSION);
        let job = store
            .job_get("old-retry")
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.position, Some(0));
        assert_eq!(job.payload.to_string(), r#"{"n":18446744073709551617}"#);
        // It runs again first, with the next start number; success clears its error.
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
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].job.id, "old-retry");
        assert_eq!(leases[0].job.attempt, 2);
        assert_eq!(leases[0].job.start_no, Some(4));
        let done = store
            .job_report_many(vec![ReportParams {
                id: "old-retry".into(),
                token: leases[0].token.clone(),
                outcome: Outcome::Succeeded { result: None },
                now: 11,
                jitter: 0.5,
            }])
            .await
            .pop()
            .expect("one result")
            .expect("report");
        assert_eq!(done.value.state, JobState::Succeeded);
        assert_eq!(done.value.error, None);
        // Its history holds the start the old schema recorded, then the new one.
        let history = store.job_attempts("old-retry").await.expect("attempts");
        let starts: Vec<(i64, u32, Option<&str>)> = history
            .iter()
            .map(|a| (a.start_no, a.attempt, a.outcome.as_deref()))
            .collect();
        assert_eq!(starts, [(3, 1, None), (4, 2, Some("succeeded"))]);
        let next = store
            .job_enqueue_many(orderly_core::EnqueueParams {
                queue: "q".into(),
                jobs: vec![orderly_core::NewJob {
                    id: "new".into(),
                    key: None,
                    payload: serde_json::json!({}),
                    run_at: None,
                    max_attempts: None,
                    timeout_ms: None,
                }],
                now: 12,
            })
            .await
            .expect("enqueue")
            .value;
        assert_eq!(next[0].job.seq, 9, "seq continues above the stored ones");
        store.close().await;
    }

    /// Data of a newer schema than this build knows is refused at open,
    /// with an error naming both versions, and left as it was.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_data_directory_of_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        SqliteStore::open(&SqliteOptions::new(dir.path()))
            .expect("create")
            .close()
            .await;
        let newer = super::SCHEMA_VERSION + 1;
        let raw = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
        raw.pragma_update(None, "user_version", newer)
            .expect("version");
        let err = SqliteStore::open(&SqliteOptions::new(dir.path()))
            .err()
            .expect("a newer schema must be refused")
            .to_string();
        assert!(
            err.contains(&format!("schema version {newer}"))
                && err.contains(&format!("up to {}", super::SCHEMA_VERSION)),
            "{err}"
        );
        let version: i64 = raw
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, newer, "left as it was");
    }

    /// Opens a data directory written by schema v3 with `rows`.
    fn write_v3(dir: &std::path::Path, rows: &str) {
        let conn = rusqlite::Connection::open(dir.join(DB_FILE)).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        for sql in [super::V1, super::V2, super::V3] {
            conn.execute_batch(sql).expect("v1 to v3");
        }
        conn.pragma_update(None, "user_version", 3)
            .expect("version");
        conn.execute_batch(rows).expect("v3 rows");
    }

    /// `(start_no, job_id, key, attempt)` of a queue's whole start log.
    async fn start_log(
        store: &SqliteStore,
        queue: &str,
    ) -> Vec<(i64, String, Option<String>, u32)> {
        store
            .start_list(StartListParams {
                queue: queue.into(),
                after: None,
                limit: 1_000,
            })
            .await
            .expect("start log")
            .into_iter()
            .map(|s| (s.start_no, s.job_id, s.key, s.attempt))
            .collect()
    }

    /// A data directory written by schema v3 opens with its start log by
    /// queue: each start record gets its job's queue and key; the records of
    /// a job that is gone, or of an earlier job under a reused id, are
    /// dropped; a job's records that v2 left unlinked are linked, so its
    /// history is whole and retention deletes all of them with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_v3_data_directory_gets_its_start_log_by_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = r#"{"concurrency":1,"max_attempts":5,"backoff":{"initial_ms":1000,"max_ms":3600000,"factor":2.0},"lease_ms":30000,"paused":false,"executor":null}"#;
        write_v3(
            dir.path(),
            &format!(
                r#"
            INSERT INTO queues (name, config, created_at, updated_at) VALUES ('q', '{config}', 1, 1), ('r', '{config}', 1, 1);
            UPDATE meta SET value = 12 WHERE name = 'next_seq';
            UPDATE meta SET value = 9 WHERE name = 'next_start_no';
            INSERT INTO jobs (seq, id, queue, key, state, head, payload, attempt, max_attempts,
              enqueued_at, run_at, finished_at, start_no, last_start_no, first_seq) VALUES
              (5, 'done', 'q', 'k', 'succeeded', 0, '{{}}', 2, 5, 1, 1, 20, 4, 4, 5),
              (6, 'waiting', 'q', NULL, 'queued', 1, '{{}}', 1, 5, 1, 1, NULL, 5, 5, 6),
              (9, 'old', 'r', 'k2', 'cancelled', 0, '{{}}', 0, 5, 1, 1, 30, NULL, NULL, 7),
              (10, 'two', 'q', NULL, 'failed', 0, '{{}}', 2, 2, 1, 1, 40, 8, 8, 10),
              (11, 'reused', 'q', NULL, 'queued', 1, '{{}}', 0, 5, 1, 1, NULL, NULL, NULL, 11);
            INSERT INTO starts (start_no, seq, job_id, attempt, worker, started_at, prev_start_no, ended_at, outcome) VALUES
              (1, 3, 'reused', 1, 'w1', 2, NULL, 3, 'succeeded'),
              (2, 4, 'gone', 1, 'w1', 4, NULL, 5, 'succeeded'),
              (3, 5, 'done', 1, 'w1', 10, NULL, 11, 'failed'),
              (4, 5, 'done', 2, 'w2', 12, 3, 20, 'succeeded'),
              (5, 6, 'waiting', 1, 'w1', 13, NULL, 14, 'failed'),
              (6, 7, 'old', 1, 'w1', 15, NULL, NULL, NULL),
              (7, 10, 'two', 1, 'w1', 16, NULL, NULL, NULL),
              (8, 10, 'two', 2, 'w1', 17, NULL, NULL, NULL);
            "#
            ),
        );
        let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open v3 data");
        let version: i64 = rusqlite::Connection::open(dir.path().join(DB_FILE))
            .expect("open")
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, super::SCHEMA_VERSION);
        let k = |s: &str| Some(s.to_string());
        let q_log = vec![
            (3, "done".to_string(), k("k"), 1),
            (4, "done".to_string(), k("k"), 2),
            (5, "waiting".to_string(), None, 1),
            (7, "two".to_string(), None, 1),
            (8, "two".to_string(), None, 2),
        ];
        assert_eq!(
            start_log(&store, "q").await,
            q_log,
            "the gone job's and the earlier 'reused''s records are dropped"
        );
        assert_eq!(
            start_log(&store, "r").await,
            [(6, "old".into(), k("k2"), 1)]
        );
        let attempts = |id: &'static str| {
            let store = &store;
            async move {
                store
                    .job_attempts(id)
                    .await
                    .expect("attempts")
                    .iter()
                    .map(|a| a.start_no)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            attempts("two").await,
            [7, 8],
            "v2's unlinked records are linked"
        );
        assert_eq!(
            attempts("old").await,
            [6],
            "a job retried under v2 finds its record"
        );
        assert_eq!(attempts("done").await, [3, 4]);
        assert!(attempts("reused").await.is_empty(), "not the earlier job's");

        // The next start continues the numbering and joins its queue's log.
        let leases = store
            .job_claim(ClaimParams {
                queue: "q".into(),
                worker: "w3".into(),
                max: 1,
                lease_ms: None,
                now: 50,
                jitter: 0.5,
            })
            .await
            .expect("claim")
            .value;
        assert_eq!(leases.len(), 1);
        assert_eq!(
            (leases[0].job.id.as_str(), leases[0].job.start_no),
            ("waiting", Some(9))
        );
        let page = store
            .start_list(StartListParams {
                queue: "q".into(),
                after: Some(8),
                limit: 10,
            })
            .await
            .expect("page");
        assert_eq!(page.len(), 1);
        assert_eq!(
            (page[0].job_id.as_str(), page[0].seq, page[0].attempt),
            ("waiting", 6, 2)
        );
        assert_eq!((page[0].worker.as_str(), page[0].started_at), ("w3", 50));
        assert_eq!(attempts("waiting").await, [5, 9]);

        // Retention deletes the finished jobs with every record of theirs.
        assert_eq!(store.retention_purge(1_000, 100).await.expect("purge"), 3);
        assert_eq!(
            start_log(&store, "q").await,
            [
                (5, "waiting".into(), None, 1),
                (9, "waiting".into(), None, 2)
            ]
        );
        assert!(start_log(&store, "r").await.is_empty());
        let left: i64 = rusqlite::Connection::open(dir.path().join(DB_FILE))
            .expect("open")
            .query_row("SELECT count(*) FROM starts", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 2, "no record of a purged job is left");
        store.close().await;
    }
}
