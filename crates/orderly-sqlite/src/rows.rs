//! Reading job rows back: the column list, decoding by column name, and the
//! error mapping shared by every operation.
//!
//! A row that cannot be read as written (an unknown state, JSON that does not
//! parse) is [`StoreError::Corrupt`], never replaced by a guess.

use orderly_core::{Job, JobState, Millis, StoreError};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row};
use serde_json::Value;

/// Results of this crate's operations.
pub(crate) type Res<T> = Result<T, StoreError>;

/// Maps a SQLite error to the store's error: a full disk and I/O failures are
/// told apart because the writer treats them differently (retry later vs.
/// stop), and a value that does not decode is corrupt data.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    if let rusqlite::Error::FromSqlConversionFailure(..) = e {
        return StoreError::Corrupt(e.to_string());
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::StorageFull(e.to_string()),
        Some(ErrorCode::SystemIoFailure) => StoreError::StorageFailed(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// True for a violation of a `UNIQUE` constraint (a taken job id).
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// The columns [`job_from_row`] reads.
pub(crate) const JOB_COLUMNS: &str =
    "seq, id, queue, key, state, payload, attempt, max_attempts, timeout_ms, \
     enqueued_at, run_at, started_at, finished_at, progress, result, error, cancel_requested, \
     lease_expires_at, lease_worker, start_no";

fn corrupt(row: &Row<'_>, column: &str, what: String) -> rusqlite::Error {
    let idx = row.as_ref().column_index(column).unwrap_or(0);
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, what.into())
}

/// A row's columns by name, looked up once per row (asking SQLite for each
/// field's index by name would walk every column name again per field).
pub(crate) struct Cols<'r, 's> {
    row: &'r Row<'s>,
    names: Vec<&'r str>,
}

impl<'r, 's> Cols<'r, 's> {
    /// The columns of `row`.
    pub fn of(row: &'r Row<'s>) -> Self {
        Cols {
            row,
            names: row.as_ref().column_names(),
        }
    }

    fn index(&self, name: &str) -> rusqlite::Result<usize> {
        self.names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(name.to_string()))
    }

    /// The value of column `name`.
    pub fn get<T: rusqlite::types::FromSql>(&self, name: &str) -> rusqlite::Result<T> {
        self.row.get(self.index(name)?)
    }

    /// A JSON column: `None` for SQL NULL, an error for text that is not JSON.
    pub fn json(&self, name: &str) -> rusqlite::Result<Option<Value>> {
        let text: Option<String> = self.get(name)?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| corrupt(self.row, name, format!("column {name} is not JSON: {e}")))
        })
        .transpose()
    }
}

/// Decodes a row holding [`JOB_COLUMNS`] (by name, so a query may add more).
pub(crate) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let c = Cols::of(row);
    let state: String = c.get("state")?;
    let state = JobState::parse(&state)
        .ok_or_else(|| corrupt(row, "state", format!("unknown job state {state:?}")))?;
    Ok(Job {
        seq: c.get("seq")?,
        id: c.get("id")?,
        queue: c.get("queue")?,
        key: c.get("key")?,
        state,
        position: None,
        payload: c
            .json("payload")?
            .ok_or_else(|| corrupt(row, "payload", "payload is NULL".into()))?,
        attempt: c.get("attempt")?,
        max_attempts: c.get("max_attempts")?,
        timeout_ms: c.get::<Option<i64>>("timeout_ms")?.map(|v| v as u64),
        enqueued_at: c.get("enqueued_at")?,
        run_at: c.get("run_at")?,
        started_at: c.get("started_at")?,
        finished_at: c.get("finished_at")?,
        progress: c.json("progress")?,
        result: c.json("result")?,
        error: c.json("error")?,
        cancel_requested: c.get::<i64>("cancel_requested")? != 0,
        lease_expires_at: c.get("lease_expires_at")?,
        worker: c.get("lease_worker")?,
        start_no: c.get("start_no")?,
        key_position: None,
        wait_facts: None,
        waiting_on: None,
        eta: None,
    })
}

/// JSON text of a value, as stored.
pub(crate) fn to_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
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

/// One job by id.
pub(crate) fn job_by_id(conn: &Connection, id: &str) -> Res<Option<Job>> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], job_from_row).optional())
        .map_err(map_err)
}

/// One job by `seq`; it must exist.
pub(crate) fn job_by_seq(conn: &Connection, seq: i64) -> Res<Job> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE seq = ?1"))
        .and_then(|mut s| s.query_row([seq], job_from_row))
        .map_err(map_err)
}

/// Which job to read.
pub(crate) enum By<'a> {
    /// By id.
    Id(&'a str),
    /// By `seq`.
    Seq(i64),
}

/// A job and its private fields, in one read.
pub(crate) fn job_with_private(conn: &Connection, by: By<'_>) -> Res<Option<(Job, Private)>> {
    let (column, value): (&str, rusqlite::types::Value) = match by {
        By::Id(id) => ("id", id.to_string().into()),
        By::Seq(seq) => ("seq", seq.into()),
    };
    conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS}, head, lease_token, lease_ms, deadline_at FROM jobs WHERE {column} = ?1"
    ))
    .and_then(|mut s| {
        s.query_row([value], |r| {
            let private = Private {
                head: r.get::<_, i64>("head")? != 0,
                lease_token: r.get("lease_token")?,
                lease_ms: r.get("lease_ms")?,
                deadline_at: r.get("deadline_at")?,
            };
            Ok((job_from_row(r)?, private))
        })
        .optional()
    })
    .map_err(map_err)
}
