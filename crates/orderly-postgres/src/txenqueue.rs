//! Transactional enqueue: a job that exists if and only if the
//! application's own transaction commits (contract section 8).
//!
//! Schema version 2 adds the SQL function `<schema>.enqueue(queue, payload,
//! key, id, run_at, max_attempts, timeout_ms)`, callable from any language
//! on any connection; [`enqueue_in`] calls it from Rust on a
//! `tokio_postgres` (or `deadpool_postgres`) transaction, in one round trip.
//!
//! The function does what the store's own enqueue does for one job
//! (`write::enqueue`): it validates like the server, creates the queue with
//! the default configuration if missing, and inserts the row *unnumbered*
//! (`seq` NULL, `batch` from `batch_no`), so the sequencer numbers it after
//! the commit, in commit order (`write::number`). It then sends
//! `NOTIFY <schema>, '{"queues":{"<queue>":1},"unnumbered":true}'`, which
//! PostgreSQL delivers only if the transaction commits; until a node acts
//! on it, maintenance numbers the row on its next pass.
//!
//! What the open transaction holds: its own new row (invisible to everyone
//! else), the unique-index entry of its job id (another enqueue of the same
//! id waits for it), and, when it created the queue, the new queue's row
//! (other enqueues into that brand-new queue wait for it). Nothing else: no
//! sequencer, queue or job lock, so every other enqueue, claim and report
//! goes on. `tests/transactional.rs` checks each of these.

use orderly_core::{NewJob, StoreError, ValidationError};
use tokio_postgres::error::SqlState;

use crate::rows::map_err;

/// The largest payload the SQL function accepts, in bytes of its JSON text:
/// the server's default `--max-payload-bytes` (the flag does not reach the
/// database).
pub const SQL_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// v2: the `enqueue` SQL function. A migration never changes once
/// released: the default configuration and the payload limit are written
/// out in it (a unit test checks them against the Rust values).
pub(crate) const V2: &str = r#"
-- Enqueue one job in the caller's transaction (README, "Enqueue in your own
-- transaction"). Mirrors write::enqueue::insert_unnumbered for one job.
CREATE FUNCTION enqueue(
    queue        text,
    payload      jsonb,
    key          text        DEFAULT NULL,
    id           text        DEFAULT NULL,
    run_at       timestamptz DEFAULT NULL,
    max_attempts integer     DEFAULT NULL,
    timeout_ms   bigint      DEFAULT NULL
) RETURNS text LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
    now_ms   bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    at_ms    bigint;
    job_id   text := enqueue.id;
    body     text := enqueue.payload::text;
    attempts bigint;
    stored   record;
BEGIN
    IF enqueue.queue IS NULL OR enqueue.queue !~ '^[A-Za-z0-9._-]{1,100}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', DETAIL = 'invalid_queue_name',
            MESSAGE = format('queue name %s is invalid: use 1 to 100 bytes of A-Z, a-z, 0-9, ''.'', ''_'' or ''-''',
                coalesce(to_json(left(enqueue.queue, 40))::text, 'NULL'));
    END IF;
    IF enqueue.payload IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', DETAIL = 'invalid_value',
            MESSAGE = '`payload` is NULL: give a JSON value (''null''::jsonb for JSON null)';
    END IF;
    IF octet_length(body) > 1048576 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', DETAIL = 'payload_too_large',
            MESSAGE = format('`payload` is %s bytes of JSON: the limit is 1048576 bytes', octet_length(body));
    END IF;
    IF job_id IS NOT NULL AND job_id !~ '^[A-Za-z0-9._:-]{1,200}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', DETAIL = 'invalid_job_id',
            MESSAGE = format('job id %s is invalid: use 1 to 200 bytes of A-Z, a-z, 0-9, ''.'', ''_'', '':'' or ''-''',
                to_json(left(job_id, 40))::text);
    END IF;
    IF enqueue.key IS NOT NULL AND octet_length(enqueue.key) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', DETAIL = 'invalid_key',
            MESSAGE = format('key is %s bytes: a key must be 1 to 200 bytes', octet_length(enqueue.key));
    END IF;
    IF enqueue.max_attempts IS NOT NULL AND enqueue.max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', DETAIL = 'invalid_value',
            MESSAGE = format('`max_attempts` is %s: it must be between 1 and 1000', enqueue.max_attempts);
    END IF;
    IF enqueue.timeout_ms IS NOT NULL AND enqueue.timeout_ms NOT BETWEEN 1 AND 31536000000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', DETAIL = 'invalid_value',
            MESSAGE = format('`timeout_ms` is %s: it must be between 1 and 31536000000', enqueue.timeout_ms);
    END IF;
    -- The queue, created with the default configuration if missing (as
    -- write::enqueue::queue_or_create: no lock on an existing row).
    INSERT INTO queues (name, config, created_at, updated_at)
        VALUES (enqueue.queue, '{"concurrency":1,"max_attempts":5,"backoff":{"initial_ms":1000,"max_ms":3600000,"factor":2.0},"lease_ms":30000,"paused":false,"executor":null}', now_ms, now_ms)
        ON CONFLICT (name) DO NOTHING;
    SELECT coalesce((q.config::jsonb ->> 'max_attempts')::bigint, 5) INTO attempts
        FROM queues q WHERE q.name = enqueue.queue;
    -- A time-ordered (v7) UUID, as the server mints: 48 bits of Unix
    -- milliseconds over a random v4 UUID, version bits set to 7.
    IF job_id IS NULL THEN
        job_id := encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
            PLACING substring(int8send(now_ms) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid::text;
    END IF;
    at_ms := greatest(coalesce(floor(extract(epoch FROM enqueue.run_at) * 1000)::bigint, now_ms), now_ms);
    INSERT INTO jobs (id, batch, batch_pos, queue, key, state, payload,
            max_attempts, timeout_ms, enqueued_at, run_at)
        VALUES (job_id, nextval('batch_no'), 0, enqueue.queue, enqueue.key,
            CASE WHEN at_ms > now_ms THEN 'scheduled' ELSE 'queued' END, body,
            coalesce(enqueue.max_attempts, attempts), enqueue.timeout_ms, now_ms, at_ms)
        ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT j.queue, j.key, j.payload INTO stored FROM jobs j WHERE j.id = job_id;
        IF stored.queue IS DISTINCT FROM enqueue.queue OR stored.key IS DISTINCT FROM enqueue.key
            OR stored.payload::jsonb IS DISTINCT FROM enqueue.payload THEN
            RAISE EXCEPTION USING ERRCODE = '23505', DETAIL = 'id_conflict', CONSTRAINT = 'jobs_pkey',
                MESSAGE = format('job id %s already exists with a different queue, key or payload',
                    to_json(job_id)::text);
        END IF;
        RETURN job_id;
    END IF;
    PERFORM pg_notify(current_schema(), json_build_object(
        'queues', json_build_object(enqueue.queue, 1), 'unnumbered', true)::text);
    RETURN job_id;
END
$fn$;
"#;

/// Enqueues `job` into `queue` inside `tx`, the application's own
/// transaction, through `<schema>.enqueue` (one round trip), and returns
/// the job's id. An empty `job.id` lets the database mint one (a v7 UUID).
///
/// The job exists if and only if `tx` commits; it gets its `seq` in commit
/// order and claimers are woken after the commit. A `deadpool_postgres`
/// transaction works as well (`&tx` derefs to the `tokio_postgres` one).
///
/// Errors: [`StoreError::Invalid`] for a value the server would refuse
/// (its `code` as the server's: `invalid_queue_name`, `invalid_key`,
/// `payload_too_large`…), [`StoreError::IdConflict`] for an id stored with
/// another queue, key or payload. Either error aborts `tx`, as any failed
/// statement does in PostgreSQL.
pub async fn enqueue_in(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
    queue: &str,
    job: &NewJob,
) -> Result<String, StoreError> {
    if !crate::valid_schema_name(schema) {
        return Err(StoreError::Invalid(ValidationError::value(
            "schema",
            format!("{schema:?} is not a valid schema name"),
        )));
    }
    let id = (!job.id.is_empty()).then_some(job.id.as_str());
    let payload = crate::rows::to_text(&job.payload);
    let max_attempts = job
        .max_attempts
        .map(|a| i32::try_from(a).unwrap_or(i32::MAX));
    let timeout_ms = job.timeout_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
    let sql = format!(
        "SELECT {schema}.enqueue($1, $2::text::jsonb, key => $3, id => $4,
            run_at => timestamptz 'epoch' + $5::bigint * interval '1 millisecond',
            max_attempts => $6, timeout_ms => $7)"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &queue,
                &payload,
                &job.key,
                &id,
                &job.run_at,
                &max_attempts,
                &timeout_ms,
            ],
        )
        .await
        .map_err(|e| sql_err(e, &job.id))?;
    Ok(row.get(0))
}

/// Maps the SQL function's errors to the store's: its 22023 errors carry
/// the server's validation code in DETAIL, its conflict is 23505.
fn sql_err(e: tokio_postgres::Error, id: &str) -> StoreError {
    let Some(db) = e.as_db_error() else {
        return map_err(e);
    };
    let code = match db.detail() {
        Some("invalid_queue_name") => "invalid_queue_name",
        Some("invalid_job_id") => "invalid_job_id",
        Some("invalid_key") => "invalid_key",
        Some("payload_too_large") => "payload_too_large",
        Some("invalid_value") => "invalid_value",
        Some("id_conflict") if *db.code() == SqlState::UNIQUE_VIOLATION => {
            return StoreError::IdConflict { id: id.to_string() };
        }
        _ => return map_err(e),
    };
    if *db.code() == SqlState::INVALID_PARAMETER_VALUE {
        StoreError::Invalid(ValidationError::new(code, db.message()))
    } else {
        map_err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue the SQL function creates has exactly the configuration, and
    /// the text, the Rust enqueue writes.
    #[test]
    fn the_default_config_text_is_the_store_s() {
        let text = serde_json::to_string(&orderly_core::QueueConfig::default()).expect("json");
        assert!(V2.contains(&format!("VALUES (enqueue.queue, '{text}'")));
        let limit = SQL_MAX_PAYLOAD_BYTES.to_string();
        assert_eq!(V2.matches(&format!("> {limit} THEN")).count(), 1);
        assert_eq!(
            V2.matches(&format!("the limit is {limit} bytes")).count(),
            1
        );
    }

    /// The SQL function refuses what the server refuses: each limit it
    /// checks is the Rust rule's value, so the two cannot drift apart.
    #[test]
    fn the_sql_limits_are_the_rust_rules() {
        use orderly_core::validate as v;
        for (what, sql) in [
            (
                "queue name",
                format!("'^[A-Za-z0-9._-]{{1,{}}}$'", v::MAX_QUEUE_NAME_BYTES),
            ),
            (
                "job id",
                format!("'^[A-Za-z0-9._:-]{{1,{}}}$'", v::MAX_JOB_ID_BYTES),
            ),
            (
                "key",
                format!(
                    "octet_length(enqueue.key) NOT BETWEEN 1 AND {}",
                    v::MAX_KEY_BYTES
                ),
            ),
            (
                "max_attempts",
                format!(
                    "enqueue.max_attempts NOT BETWEEN 1 AND {}",
                    v::MAX_ATTEMPTS_LIMIT
                ),
            ),
            (
                "timeout_ms",
                format!("enqueue.timeout_ms NOT BETWEEN 1 AND {}", v::MAX_DELAY_MS),
            ),
        ] {
            assert_eq!(
                V2.matches(&sql).count(),
                1,
                "{what}: {sql} not in the SQL function"
            );
        }
        // The names' alphabets too: what the Rust rules accept and refuse.
        assert!(v::queue_name("a.B_c-9").is_ok() && v::queue_name("a:b").is_err());
        assert!(v::job_id("a.B_c-9:x").is_ok() && v::job_id("a/b").is_err());
    }
}
