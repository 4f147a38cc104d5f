//! Reading job rows back, and the error mapping shared by every operation.
//!
//! A row that cannot be read as written (an unknown state, JSON that does not
//! parse) is [`StoreError::Corrupt`], never replaced by a guess.

use orderly_core::{Job, JobState, Millis, StateChange, StoreError};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

/// Results of this crate's operations.
pub(crate) type Res<T> = Result<T, StoreError>;

/// Maps a PostgreSQL error to the store's error. A database that is out of
/// reach (refused or dropped connection, shutdown, restart, too many
/// connections) is `Unavailable`: nothing was committed and a retry later
/// may succeed. A full disk is `StorageFull`.
pub(crate) fn map_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(code) = e.code() {
        let unavailable = [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ];
        if code.code().starts_with("08") || unavailable.contains(code) {
            return StoreError::Unavailable(e.to_string());
        }
        if *code == SqlState::DISK_FULL {
            return StoreError::StorageFull(e.to_string());
        }
        return StoreError::Backend(e.to_string());
    }
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        return StoreError::Unavailable(e.to_string());
    }
    StoreError::Backend(e.to_string())
}

/// Maps a pool error: a wait that timed out or a connection that could not
/// be made is `Unavailable`; a closed pool is `Closed`.
pub(crate) fn map_pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => match map_err(e) {
            StoreError::Backend(m) => StoreError::Unavailable(m),
            other => other,
        },
        PoolError::Closed => StoreError::Closed,
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// The columns [`job_from_row`] reads.
pub(crate) const JOB_COLUMNS: &str =
    "seq, id, queue, key, state, payload, attempt, max_attempts, timeout_ms, \
     enqueued_at, run_at, started_at, finished_at, progress, result, error, cancel_requested, \
     lease_expires_at, lease_worker, start_no";

/// The columns of [`JOB_COLUMNS`] and the private ones of [`Private`].
pub(crate) const JOB_AND_PRIVATE: &str =
    "seq, id, queue, key, state, payload, attempt, max_attempts, timeout_ms, \
     enqueued_at, run_at, started_at, finished_at, progress, result, error, cancel_requested, \
     lease_expires_at, lease_worker, start_no, head, lease_token, lease_ms, deadline_at";

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, name: &str) -> Res<T> {
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

/// A JSON text column: `None` for NULL, `Corrupt` for text that is not JSON.
pub(crate) fn json(row: &Row, name: &str) -> Res<Option<Value>> {
    let text: Option<String> = get(row, name)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("column {name} is not JSON: {e}")))
    })
    .transpose()
}

fn count(row: &Row, name: &str) -> Res<u32> {
    let n: i64 = get(row, name)?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("column {name} is {n}")))
}

/// Decodes a row holding [`JOB_COLUMNS`] (by name, so a query may add more).
pub(crate) fn job_from_row(row: &Row) -> Res<Job> {
    let state: String = get(row, "state")?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown job state {state:?}")))?;
    let seq: Option<i64> = get(row, "seq")?;
    Ok(Job {
        seq: seq.unwrap_or(0),
        id: get(row, "id")?,
        queue: get(row, "queue")?,
        key: get(row, "key")?,
        state,
        position: None,
        payload: json(row, "payload")?
            .ok_or_else(|| StoreError::Corrupt("payload is NULL".into()))?,
        attempt: count(row, "attempt")?,
        max_attempts: count(row, "max_attempts")?,
        timeout_ms: get::<Option<i64>>(row, "timeout_ms")?.map(|v| v.max(0) as u64),
        enqueued_at: get(row, "enqueued_at")?,
        run_at: get(row, "run_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        progress: json(row, "progress")?,
        result: json(row, "result")?,
        error: json(row, "error")?,
        cancel_requested: get(row, "cancel_requested")?,
        lease_expires_at: get(row, "lease_expires_at")?,
        worker: get(row, "lease_worker")?,
        start_no: get(row, "start_no")?,
        key_position: None,
        wait_facts: None,
        waiting_on: None,
        eta: None,
    })
}

/// Internal fields of a job row that the API does not show.
pub(crate) struct Private {
    /// The job is its key's first unfinished job (or has no key).
    pub head: bool,
    /// The current lease's token.
    pub lease_token: Option<String>,
    /// The lease length the current attempt asked for.
    pub lease_ms: Option<i64>,
    /// When the current attempt's `timeout_ms` runs out.
    pub deadline_at: Option<Millis>,
}

/// Decodes a row holding [`JOB_AND_PRIVATE`].
pub(crate) fn job_and_private(row: &Row) -> Res<(Job, Private)> {
    Ok((
        job_from_row(row)?,
        Private {
            head: get(row, "head")?,
            lease_token: get(row, "lease_token")?,
            lease_ms: get(row, "lease_ms")?,
            deadline_at: get(row, "deadline_at")?,
        },
    ))
}

/// JSON text of a value, as stored.
pub(crate) fn to_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// A change of one job.
pub(crate) fn change(job: &Job, from: Option<JobState>, to: JobState, at: Millis) -> StateChange {
    StateChange {
        id: job.id.clone(),
        queue: job.queue.clone(),
        key: job.key.clone(),
        seq: job.seq,
        from,
        to,
        at,
        enqueued_at: job.enqueued_at,
        started_at: job.started_at,
        lease_lost: false,
    }
}

/// A transaction whose statements are prepared once per connection
/// (deadpool's statement cache) instead of once per call: one round trip
/// per statement instead of two.
#[derive(Clone, Copy)]
pub(crate) struct Db<'a, 't>(pub &'a deadpool_postgres::Transaction<'t>);

/// Parameters of a statement.
type Params<'p> = &'p [&'p (dyn tokio_postgres::types::ToSql + Sync)];

impl Db<'_, '_> {
    async fn prepared(
        &self,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        self.0.prepare_cached(sql).await
    }

    /// Runs `sql`, returning its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let st = self.prepared(sql).await?;
        self.0.query(&st, params).await
    }

    /// Runs `sql`, which returns exactly one row.
    pub async fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        let st = self.prepared(sql).await?;
        self.0.query_one(&st, params).await
    }

    /// Runs `sql`, which returns at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let st = self.prepared(sql).await?;
        self.0.query_opt(&st, params).await
    }

    /// Runs `sql`, returning how many rows it changed.
    pub async fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        let st = self.prepared(sql).await?;
        self.0.execute(&st, params).await
    }
}
