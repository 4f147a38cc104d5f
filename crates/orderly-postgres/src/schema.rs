//! The PostgreSQL schema and its migrations.
//!
//! Everything lives in one schema of its own (default `orderly`), so the
//! store can share a database with an application. Migrations run on open,
//! inside one transaction under `pg_advisory_xact_lock` on the schema's
//! name: nodes that start at once take turns, and each finds the work done
//! by the one before it. `schema_version` holds the version the last
//! migration wrote; [`MIGRATIONS`] lists each version's SQL, so a test can
//! write a database as an older version left it and open it with this one.
//!
//! Indexes are partial so each serves one question without scanning (the
//! same ones as the SQLite store): `jobs_ready` (a queue's key heads and
//! keyless jobs that may start, in `seq` order), `jobs_key_line` (the
//! unfinished jobs of a key), `jobs_due`/`jobs_leases` (scheduled jobs by
//! `run_at`, running jobs by lease expiry), `jobs_finished` (retention),
//! `jobs_unnumbered` (rows an enqueue committed that the sequencer has not
//! numbered yet, see `write::number`). There is no index on `seq` alone:
//! the planner would walk it in `seq` order for a queue's questions and
//! filter, reading the other queues' jobs; the sequencer keeps `seq` unique
//! (`jobs_queue_seq` is unique as well). `queue_counts`, `waiting_blocks`
//! and (v3) `key_blocks` are kept by triggers, so counts and positions
//! are bounded reads at any backlog. A row without `seq` is not a job yet: no count, no index that a
//! claim or a read uses sees it.
//!
//! v2 adds the `enqueue` SQL function (transactional enqueue from any
//! language, see `txenqueue`).

use tokio_postgres::Client;

mod key_blocks;

use crate::rows::{map_err, Res};

/// The version the latest migration writes to `schema_version`.
pub const SCHEMA_VERSION: i64 = 3;

/// v1: tables, indexes, the sequences and the accounting trigger.
const V1: &str = r#"
CREATE TABLE queues (
    name       text PRIMARY KEY,
    config     text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

-- The sequencer's row: whoever numbers jobs (or gives a retried job a new
-- seq) holds its lock until commit, so seq follows commit order.
CREATE TABLE seq_counter (
    id       integer PRIMARY KEY CHECK (id = 1),
    next_seq bigint NOT NULL
);
INSERT INTO seq_counter (id, next_seq) VALUES (1, 1);

-- Insertion order of enqueue batches (not seq: see write::number).
CREATE SEQUENCE batch_no;
-- Start numbers, taken under the queue's lock.
CREATE SEQUENCE start_no;

CREATE TABLE jobs (
    id               text PRIMARY KEY,
    seq              bigint,
    batch            bigint NOT NULL,
    batch_pos        bigint NOT NULL,
    queue            text NOT NULL,
    key              text,
    state            text NOT NULL,
    head             boolean NOT NULL DEFAULT false,
    payload          text NOT NULL,
    attempt          bigint NOT NULL DEFAULT 0,
    max_attempts     bigint NOT NULL,
    timeout_ms       bigint,
    enqueued_at      bigint NOT NULL,
    run_at           bigint NOT NULL,
    started_at       bigint,
    finished_at      bigint,
    progress         text,
    result           text,
    error            text,
    lease_token      text,
    lease_worker     text,
    lease_expires_at bigint,
    lease_ms         bigint,
    deadline_at      bigint,
    cancel_requested boolean NOT NULL DEFAULT false,
    start_no         bigint,
    last_start_no    bigint,
    reported_token   text,
    reported_leases  text
);
CREATE INDEX jobs_ready      ON jobs (queue, seq) WHERE state = 'queued' AND head;
CREATE INDEX jobs_by_state   ON jobs (queue, state, seq) WHERE seq IS NOT NULL;
CREATE UNIQUE INDEX jobs_queue_seq ON jobs (queue, seq) WHERE seq IS NOT NULL;
CREATE INDEX jobs_key_line   ON jobs (queue, key, seq)
    WHERE key IS NOT NULL AND seq IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
CREATE INDEX jobs_due        ON jobs (queue, run_at) WHERE state = 'scheduled' AND seq IS NOT NULL;
CREATE INDEX jobs_due_all    ON jobs (run_at) WHERE state = 'scheduled' AND seq IS NOT NULL;
CREATE INDEX jobs_leases     ON jobs (queue, lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_leases_all ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_finished   ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_unnumbered ON jobs (batch, batch_pos) WHERE seq IS NULL;
-- How states spread over queues (one queue's jobs are mostly finished,
-- another's mostly waiting): without it the planner multiplies the two
-- columns' frequencies and may walk a queue's finished jobs to find its
-- first queued one.
CREATE STATISTICS jobs_queue_state (dependencies, mcv) ON queue, state FROM jobs;

-- Every start, in the order the server made them: the audit of the order used.
CREATE TABLE starts (
    start_no      bigint PRIMARY KEY,
    seq           bigint NOT NULL,
    job_id        text NOT NULL,
    queue         text NOT NULL,
    key           text,
    attempt       bigint NOT NULL,
    worker        text NOT NULL,
    started_at    bigint NOT NULL,
    prev_start_no bigint,
    ended_at      bigint,
    outcome       text,
    error         text
);
CREATE INDEX starts_queue ON starts (queue, start_no);

CREATE TABLE queue_counts (
    queue text NOT NULL,
    state text NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (queue, state)
);

-- Waiting jobs per block of seqs at two levels (1,024 and 1,048,576 seqs),
-- so a position is a bounded read (docs/ordering.md, "Position at any backlog").
CREATE TABLE waiting_blocks (
    queue text NOT NULL,
    level integer NOT NULL,
    block bigint NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (queue, level, block)
);

-- Keeps queue_counts and waiting_blocks in the transaction of every row
-- change; only numbered rows (seq set) count.
CREATE FUNCTION jobs_account() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.seq IS NOT NULL AND (TG_OP = 'DELETE'
        OR NEW.seq IS DISTINCT FROM OLD.seq OR NEW.state <> OLD.state OR NEW.queue <> OLD.queue) THEN
        UPDATE queue_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;
        IF OLD.state IN ('scheduled', 'queued') THEN
            UPDATE waiting_blocks SET n = n - 1
                WHERE queue = OLD.queue AND level = 0 AND block = OLD.seq >> 10;
            UPDATE waiting_blocks SET n = n - 1
                WHERE queue = OLD.queue AND level = 1 AND block = OLD.seq >> 20;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.seq IS NOT NULL AND (TG_OP = 'INSERT'
        OR NEW.seq IS DISTINCT FROM OLD.seq OR NEW.state <> OLD.state OR NEW.queue <> OLD.queue) THEN
        INSERT INTO queue_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
            ON CONFLICT (queue, state) DO UPDATE SET n = queue_counts.n + 1;
        IF NEW.state IN ('scheduled', 'queued') THEN
            INSERT INTO waiting_blocks (queue, level, block, n) VALUES (NEW.queue, 0, NEW.seq >> 10, 1)
                ON CONFLICT (queue, level, block) DO UPDATE SET n = waiting_blocks.n + 1;
            INSERT INTO waiting_blocks (queue, level, block, n) VALUES (NEW.queue, 1, NEW.seq >> 20, 1)
                ON CONFLICT (queue, level, block) DO UPDATE SET n = waiting_blocks.n + 1;
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER jobs_account AFTER INSERT OR DELETE OR UPDATE OF seq, state, queue ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_account();
"#;

/// v3: `key_blocks`, so `key_position` is a bounded read (see `key_blocks`).
const V3: &str = key_blocks::KEY_BLOCKS;

/// Each version's SQL, in order: `MIGRATIONS[i]` brings version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, crate::txenqueue::V2, V3];

/// True for a name that can be a schema without quoting: a lowercase
/// letter or `_`, then lowercase letters, digits or `_`, at most 63 bytes.
pub fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// Brings `schema` up to `target` (at most [`SCHEMA_VERSION`]), creating it
/// if needed, in one transaction under the schema's advisory lock. Refuses
/// a schema written by a newer build.
pub async fn migrate_to(client: &mut Client, schema: &str, target: i64) -> Res<()> {
    let tx = client.transaction().await.map_err(map_err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('orderly migrations ' || $1::text))",
        &[&schema],
    )
    .await
    .map_err(map_err)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path = {schema};
         CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL);"
    ))
    .await
    .map_err(map_err)?;
    let version: Option<i64> = tx
        .query_opt("SELECT max(version) FROM schema_version", &[])
        .await
        .map_err(map_err)?
        .and_then(|r| r.get(0));
    let version = version.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(orderly_core::StoreError::Backend(format!(
            "schema {schema} is at version {version}, newer than this build's {SCHEMA_VERSION}: upgrade Orderly"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let to = i as i64 + 1;
        if version < to && to <= target {
            tx.batch_execute(sql).await.map_err(map_err)?;
        }
    }
    if target > version {
        tx.execute("DELETE FROM schema_version", &[])
            .await
            .map_err(map_err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&target],
        )
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)
}
