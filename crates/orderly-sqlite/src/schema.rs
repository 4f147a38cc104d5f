//! The SQLite schema and its migrations.
//!
//! Indexes are partial so each serves one question without scanning:
//! - `jobs_ready`: the claim candidates of a queue in `seq` order. Only a
//!   key's head (its lowest unfinished job) or a keyless job has `head = 1`,
//!   so a long line of jobs behind one busy key is never looked at.
//! - `jobs_key_line`: the unfinished jobs of a key, to find the next head.
//! - `jobs_due` / `jobs_leases`: scheduled jobs by `run_at` and running jobs
//!   by lease expiry, for the scheduler and the lease reaper.
//!
//! `queue_counts` is kept by triggers, so counts and the running total that
//! a claim needs are one row read.

use rusqlite::Connection;

/// Version written to `PRAGMA user_version` by the latest migration.
pub const SCHEMA_VERSION: i64 = 3;

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
    if version < 1 {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(V1)?;
        tx.pragma_update(None, "user_version", 1)?;
        tx.commit()?;
    }
    for (to, sql) in [(2, V2), (3, V3)] {
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
mod tests {
    use orderly_core::{ClaimParams, JobState, Outcome, ReportParams, Store};

    use crate::{SqliteOptions, SqliteStore, DB_FILE};

    /// A data directory written by the previous schema (v2), with a job
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
}
