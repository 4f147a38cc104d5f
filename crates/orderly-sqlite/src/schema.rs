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
/// attempt history: when it ended, how, and its error).
const V3: &str = r#"
ALTER TABLE jobs ADD COLUMN reported_leases TEXT;
ALTER TABLE starts ADD COLUMN ended_at INTEGER;
ALTER TABLE starts ADD COLUMN outcome TEXT;
ALTER TABLE starts ADD COLUMN error TEXT;
CREATE INDEX starts_job ON starts (job_id, start_no);
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
