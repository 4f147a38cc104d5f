//! Reading job rows back: the column list, decoding by column name, and the
//! error mapping shared by every operation.
//!
//! A row that cannot be read as written (an unknown state, JSON that does not
//! parse) is [`StoreError::Corrupt`], never replaced by a guess.

use orderly_core::{Job, JobState, Millis, StoreError};
use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row};
use serde_json::Value;

use crate::kept::Prepare;

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

/// The column list of [`JOB_COLUMNS`], as a macro so statements can be
/// built with `concat!` at compile time (no `format!` per call).
macro_rules! job_columns {
    () => {
        "seq, id, queue, key, state, payload, attempt, max_attempts, timeout_ms, \
         enqueued_at, run_at, started_at, finished_at, progress, result, error, cancel_requested, \
         lease_expires_at, lease_worker, start_no"
    };
}

/// The columns [`job_from_row`] reads, in this order, first in every row it
/// decodes (a query may add more after them).
pub(crate) const JOB_COLUMNS: &str = job_columns!();

/// How many columns [`JOB_COLUMNS`] lists: the index of a column read after them.
pub(crate) const JOB_COLUMN_COUNT: usize = col::COUNT;

/// Where each of [`JOB_COLUMNS`] is in a row (checked against the list by a test).
mod col {
    pub const SEQ: usize = 0;
    pub const ID: usize = 1;
    pub const QUEUE: usize = 2;
    pub const KEY: usize = 3;
    pub const STATE: usize = 4;
    pub const PAYLOAD: usize = 5;
    pub const ATTEMPT: usize = 6;
    pub const MAX_ATTEMPTS: usize = 7;
    pub const TIMEOUT_MS: usize = 8;
    pub const ENQUEUED_AT: usize = 9;
    pub const RUN_AT: usize = 10;
    pub const STARTED_AT: usize = 11;
    pub const FINISHED_AT: usize = 12;
    pub const PROGRESS: usize = 13;
    pub const RESULT: usize = 14;
    pub const ERROR: usize = 15;
    pub const CANCEL_REQUESTED: usize = 16;
    pub const LEASE_EXPIRES_AT: usize = 17;
    pub const LEASE_WORKER: usize = 18;
    pub const START_NO: usize = 19;
    /// How many there are: the first column a query adds after them.
    pub const COUNT: usize = 20;
}

fn corrupt(idx: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, what.into())
}

/// A JSON column at `idx` named `name`: `None` for SQL NULL, an error for
/// text that is not JSON.
fn json_at(row: &Row<'_>, idx: usize, name: &str) -> rusqlite::Result<Option<Value>> {
    let text: Option<&str> = match row.get_ref(idx)? {
        rusqlite::types::ValueRef::Null => None,
        v => Some(v.as_str()?),
    };
    text.map(|t| {
        serde_json::from_str(t).map_err(|e| corrupt(idx, format!("column {name} is not JSON: {e}")))
    })
    .transpose()
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
        json_at(self.row, self.index(name)?, name)
    }
}

/// Decodes a row whose first columns are [`JOB_COLUMNS`], by position: the
/// writer decodes one per transition, and finding 20 columns by name cost
/// more than reading them (docs/performance.md).
pub(crate) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let state = row.get_ref(col::STATE)?.as_str()?;
    let state = JobState::parse(state)
        .ok_or_else(|| corrupt(col::STATE, format!("unknown job state {state:?}")))?;
    Ok(Job {
        seq: row.get(col::SEQ)?,
        id: row.get(col::ID)?,
        queue: row.get(col::QUEUE)?,
        key: row.get(col::KEY)?,
        state,
        position: None,
        payload: json_at(row, col::PAYLOAD, "payload")?
            .ok_or_else(|| corrupt(col::PAYLOAD, "payload is NULL".into()))?,
        attempt: row.get(col::ATTEMPT)?,
        max_attempts: row.get(col::MAX_ATTEMPTS)?,
        timeout_ms: row
            .get::<_, Option<i64>>(col::TIMEOUT_MS)?
            .map(|v| v as u64),
        enqueued_at: row.get(col::ENQUEUED_AT)?,
        run_at: row.get(col::RUN_AT)?,
        started_at: row.get(col::STARTED_AT)?,
        finished_at: row.get(col::FINISHED_AT)?,
        progress: json_at(row, col::PROGRESS, "progress")?,
        result: json_at(row, col::RESULT, "result")?,
        error: json_at(row, col::ERROR, "error")?,
        cancel_requested: row.get::<_, i64>(col::CANCEL_REQUESTED)? != 0,
        lease_expires_at: row.get(col::LEASE_EXPIRES_AT)?,
        worker: row.get(col::LEASE_WORKER)?,
        start_no: row.get(col::START_NO)?,
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
pub(crate) fn job_by_id(db: &impl Prepare, id: &str) -> Res<Option<Job>> {
    db.with(
        concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1"),
        |s| s.query_row([id], job_from_row).optional(),
    )
    .map_err(map_err)
}

/// One job by `seq`; it must exist.
pub(crate) fn job_by_seq(db: &impl Prepare, seq: i64) -> Res<Job> {
    db.with(
        concat!("SELECT ", job_columns!(), " FROM jobs WHERE seq = ?1"),
        |s| s.query_row([seq], job_from_row),
    )
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
pub(crate) fn job_with_private(db: &impl Prepare, by: By<'_>) -> Res<Option<(Job, Private)>> {
    let (query, value): (&'static str, rusqlite::types::Value) = match by {
        By::Id(id) => (
            concat!(
                "SELECT ",
                job_columns!(),
                ", head, lease_token, lease_ms, deadline_at FROM jobs WHERE id = ?1"
            ),
            id.to_string().into(),
        ),
        By::Seq(seq) => (
            concat!(
                "SELECT ",
                job_columns!(),
                ", head, lease_token, lease_ms, deadline_at FROM jobs WHERE seq = ?1"
            ),
            seq.into(),
        ),
    };
    db.with(query, |s| {
        s.query_row([value], |r| {
            let private = Private {
                head: r.get::<_, i64>(col::COUNT)? != 0,
                lease_token: r.get(col::COUNT + 1)?,
                lease_ms: r.get(col::COUNT + 2)?,
                deadline_at: r.get(col::COUNT + 3)?,
            };
            Ok((job_from_row(r)?, private))
        })
        .optional()
    })
    .map_err(map_err)
}

#[cfg(test)]
mod tests {
    /// The positions `job_from_row` reads are where `JOB_COLUMNS` puts each column.
    #[test]
    fn column_positions_match_the_column_list() {
        let names: Vec<&str> = super::JOB_COLUMNS.split(',').map(str::trim).collect();
        use super::col::*;
        let at = [
            (SEQ, "seq"),
            (ID, "id"),
            (QUEUE, "queue"),
            (KEY, "key"),
            (STATE, "state"),
            (PAYLOAD, "payload"),
            (ATTEMPT, "attempt"),
            (MAX_ATTEMPTS, "max_attempts"),
            (TIMEOUT_MS, "timeout_ms"),
            (ENQUEUED_AT, "enqueued_at"),
            (RUN_AT, "run_at"),
            (STARTED_AT, "started_at"),
            (FINISHED_AT, "finished_at"),
            (PROGRESS, "progress"),
            (RESULT, "result"),
            (ERROR, "error"),
            (CANCEL_REQUESTED, "cancel_requested"),
            (LEASE_EXPIRES_AT, "lease_expires_at"),
            (LEASE_WORKER, "lease_worker"),
            (START_NO, "start_no"),
        ];
        assert_eq!(names.len(), COUNT);
        assert_eq!(at.len(), COUNT);
        for (idx, name) in at {
            assert_eq!(names[idx], name, "column {idx}");
        }
    }
}
