//! The store's operations as SQL, run inside the writer's transaction
//! ([`WriteCtx`]) or on a read connection.

use std::collections::HashMap;

use orderly_core::rules::{self, AfterFailure};
use orderly_core::{
    ClaimParams, EnqueueParams, Enqueued, Heartbeat, HeartbeatParams, Job, JobState, Lease,
    ListParams, MaintenanceReport, Millis, Outcome, QueueConfig, QueueInfo, QueuePatch,
    ReportParams, StateCounts, StoreError,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

/// Maps a SQLite error to the store's error: a full disk and I/O failures are told apart
/// because the writer treats them differently (retry later vs. stop).
pub fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::StorageFull(e.to_string()),
        Some(ErrorCode::SystemIoFailure) => StoreError::StorageFailed(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// The queries whose plans matter for claim cost; `tests` checks each uses its index.
pub(crate) mod sql {
    /// Is any job of this key unfinished? (`jobs_key_line`)
    pub const KEY_HAS_UNFINISHED: &str = "SELECT 1 FROM jobs WHERE queue = ?1 AND key = ?2 AND state IN ('scheduled', 'queued', 'running') LIMIT 1";
    /// The next unfinished job of a key becomes its head. (`jobs_key_line`)
    pub const ADVANCE_KEY: &str = "UPDATE jobs SET head = 1 WHERE seq = (
                    SELECT seq FROM jobs WHERE queue = ?1 AND key = ?2 AND state IN ('scheduled', 'queued', 'running')
                    ORDER BY seq LIMIT 1)";
    /// Due scheduled jobs of a queue become queued. (`jobs_due`)
    pub const PROMOTE_DUE_IN_QUEUE: &str = "UPDATE jobs SET state = 'queued' WHERE queue = ?1 AND state = 'scheduled' AND run_at <= ?2";
    /// Expired leases of a queue. (`jobs_leases`)
    pub const EXPIRED_IN_QUEUE: &str = "SELECT seq FROM jobs WHERE queue = ?1 AND state = 'running' AND lease_expires_at <= ?2 ORDER BY seq";
    /// Due scheduled jobs of every queue become queued. (`jobs_due_all`)
    pub const PROMOTE_DUE_ALL: &str =
        "UPDATE jobs SET state = 'queued' WHERE state = 'scheduled' AND run_at <= ?1 RETURNING queue";
    /// Expired leases of every queue, in no particular order (sorted by the caller:
    /// asking SQLite for `ORDER BY seq` made it walk the whole table in `seq` order).
    /// (`jobs_leases_all`)
    pub const EXPIRED_ALL: &str =
        "SELECT seq FROM jobs WHERE state = 'running' AND lease_expires_at <= ?1";
    /// The next time a maintenance pass has work. (`jobs_due_all`, `jobs_leases_all`)
    pub const NEXT_DUE: &str = "SELECT min(t) FROM (
        SELECT min(run_at) AS t FROM jobs WHERE state = 'scheduled'
        UNION ALL
        SELECT min(lease_expires_at) AS t FROM jobs WHERE state = 'running')";
    /// The next time a queue has a due job or an expiring lease. (`jobs_due`, `jobs_leases`)
    pub const NEXT_DUE_IN_QUEUE: &str = "SELECT min(t) FROM (
        SELECT min(run_at) AS t FROM jobs WHERE queue = ?1 AND state = 'scheduled'
        UNION ALL
        SELECT min(lease_expires_at) AS t FROM jobs WHERE queue = ?1 AND state = 'running')";
    /// The front of a queue's ready line. (`jobs_ready`)
    pub const CLAIM_CANDIDATES: &str = "SELECT seq FROM jobs WHERE queue = ?1 AND state = 'queued' AND head = 1 ORDER BY seq LIMIT ?2";
}

pub(crate) type Res<T> = Result<T, StoreError>;

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

const JOB_COLUMNS: &str =
    "seq, id, queue, key, state, payload, attempt, max_attempts, timeout_ms, \
     enqueued_at, run_at, started_at, finished_at, progress, result, error, cancel_requested, \
     lease_expires_at, lease_worker, start_no";

fn json_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Value>> {
    let text: Option<String> = row.get(idx)?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let state: String = row.get(4)?;
    Ok(Job {
        seq: row.get(0)?,
        id: row.get(1)?,
        queue: row.get(2)?,
        key: row.get(3)?,
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        position: None,
        payload: json_col(row, 5)?.unwrap_or(Value::Null),
        attempt: row.get(6)?,
        max_attempts: row.get(7)?,
        timeout_ms: row.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        enqueued_at: row.get(9)?,
        run_at: row.get(10)?,
        started_at: row.get(11)?,
        finished_at: row.get(12)?,
        progress: json_col(row, 13)?,
        result: json_col(row, 14)?,
        error: json_col(row, 15)?,
        cancel_requested: row.get::<_, i64>(16)? != 0,
        lease_expires_at: row.get(17)?,
        worker: row.get(18)?,
        start_no: row.get(19)?,
    })
}

fn to_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Internal fields of a job row that the API does not show.
struct Private {
    head: bool,
    lease_token: Option<String>,
    lease_ms: Option<i64>,
    deadline_at: Option<Millis>,
}

fn job_by_id(conn: &Connection, id: &str) -> Res<Option<Job>> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], job_from_row).optional())
        .map_err(map_err)
}

fn job_by_seq(conn: &Connection, seq: i64) -> Res<Job> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE seq = ?1"))
        .and_then(|mut s| s.query_row([seq], job_from_row))
        .map_err(map_err)
}

/// Which job to read.
enum By<'a> {
    Id(&'a str),
    Seq(i64),
}

/// A job and its private fields, in one read.
fn job_with_private(conn: &Connection, by: By<'_>) -> Res<Option<(Job, Private)>> {
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
                head: r.get::<_, i64>(20)? != 0,
                lease_token: r.get(21)?,
                lease_ms: r.get(22)?,
                deadline_at: r.get(23)?,
            };
            Ok((job_from_row(r)?, private))
        })
        .optional()
    })
    .map_err(map_err)
}

/// Waiting jobs of `queue` ahead of `seq`.
fn position_of(conn: &Connection, queue: &str, seq: i64) -> Res<u64> {
    conn.prepare_cached(
        "SELECT count(*) FROM jobs WHERE queue = ?1 AND state IN ('queued', 'scheduled') AND seq < ?2",
    )
    .and_then(|mut s| s.query_row(params![queue, seq], |r| r.get::<_, i64>(0)))
    .map(|n| n as u64)
    .map_err(map_err)
}

/// Waiting jobs of `queue` strictly between `after` and `before`.
fn waiting_between(conn: &Connection, queue: &str, after: i64, before: i64) -> Res<u64> {
    conn.prepare_cached(
        "SELECT count(*) FROM jobs WHERE queue = ?1 AND state IN ('queued', 'scheduled') AND seq > ?2 AND seq < ?3",
    )
    .and_then(|mut s| s.query_row(params![queue, after, before], |r| r.get::<_, i64>(0)))
    .map(|n| n as u64)
    .map_err(map_err)
}

/// Sets `position` on every waiting job of `jobs` that has none, in one pass
/// per queue: the first is counted, each next one is the previous plus one
/// plus the waiting jobs between them. The index range read is at most the
/// line up to the last of them, however many jobs there are.
pub fn fill_positions(conn: &Connection, jobs: &mut [Job]) -> Res<()> {
    let mut todo: Vec<(String, i64, usize)> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.state.is_waiting() && j.position.is_none())
        .map(|(i, j)| (j.queue.clone(), j.seq, i))
        .collect();
    todo.sort();
    let mut prev: Option<(&str, i64, u64)> = None;
    for (queue, seq, i) in &todo {
        let position = match prev {
            Some((q, prev_seq, prev_pos)) if q == queue => {
                prev_pos + 1 + waiting_between(conn, queue, prev_seq, *seq)?
            }
            _ => position_of(conn, queue, *seq)?,
        };
        jobs[*i].position = Some(position);
        prev = Some((queue, *seq, position));
    }
    Ok(())
}

fn with_position(conn: &Connection, mut job: Job) -> Res<Job> {
    if job.state.is_waiting() {
        job.position = Some(position_of(conn, &job.queue, job.seq)?);
    }
    Ok(job)
}

fn waiting_count(conn: &Connection, queue: &str) -> Res<u64> {
    conn.prepare_cached(
        "SELECT coalesce(sum(n), 0) FROM queue_counts WHERE queue = ?1 AND state IN ('queued', 'scheduled')",
    )
    .and_then(|mut s| s.query_row([queue], |r| r.get::<_, i64>(0)))
    .map(|n| n as u64)
    .map_err(map_err)
}

fn running_count(conn: &Connection, queue: &str) -> Res<u64> {
    conn.prepare_cached("SELECT n FROM queue_counts WHERE queue = ?1 AND state = 'running'")
        .and_then(|mut s| s.query_row([queue], |r| r.get::<_, i64>(0)).optional())
        .map(|n| n.unwrap_or(0).max(0) as u64)
        .map_err(map_err)
}

fn counts(conn: &Connection, queue: &str) -> Res<StateCounts> {
    let mut out = StateCounts::default();
    let mut stmt = conn
        .prepare_cached("SELECT state, n FROM queue_counts WHERE queue = ?1")
        .map_err(map_err)?;
    let rows = stmt
        .query_map([queue], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(map_err)?;
    for row in rows {
        let (state, n) = row.map_err(map_err)?;
        if let Some(state) = JobState::parse(&state) {
            out.add(state, n.max(0) as u64);
        }
    }
    Ok(out)
}

fn queue_row(conn: &Connection, name: &str) -> Res<Option<QueueConfig>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT config FROM queues WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .map_err(map_err)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Backend(format!("queue {name}: {e}")))
    })
    .transpose()
}

/// A queue with config and counts, from any connection.
pub fn queue_info(conn: &Connection, name: &str) -> Res<QueueInfo> {
    let config = queue_row(conn, name)?.ok_or_else(|| StoreError::QueueNotFound(name.into()))?;
    Ok(QueueInfo {
        name: name.to_string(),
        config,
        counts: counts(conn, name)?,
    })
}

/// Every queue.
pub fn queue_list(conn: &Connection) -> Res<Vec<QueueInfo>> {
    let names: Vec<String> = {
        let mut stmt = conn
            .prepare_cached("SELECT name FROM queues ORDER BY name")
            .map_err(map_err)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(map_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
    };
    names.iter().map(|n| queue_info(conn, n)).collect()
}

/// One job with its position.
pub fn job_get(conn: &Connection, id: &str) -> Res<Option<Job>> {
    job_by_id(conn, id)?
        .map(|j| with_position(conn, j))
        .transpose()
}

/// A page of a queue's jobs.
pub fn job_list(conn: &Connection, p: &ListParams) -> Res<Vec<Job>> {
    let after = p.after.unwrap_or(0);
    let jobs: Vec<Job> = match p.state {
        Some(state) => {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ?1 AND state = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(
                    params![p.queue, state.as_str(), after, p.limit],
                    job_from_row,
                )
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        }
        None => {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![p.queue, after, p.limit], job_from_row)
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        }
    };
    let mut jobs = jobs;
    fill_positions(conn, &mut jobs)?;
    Ok(jobs)
}

/// The writer's connection and the counters it owns.
pub struct WriteCtx {
    /// The only connection that writes.
    pub conn: Connection,
    /// Next `seq` to hand out.
    pub next_seq: i64,
    /// Next start number.
    pub next_start_no: i64,
    /// Queue configs, kept coherent because only this writer changes them.
    configs: HashMap<String, QueueConfig>,
    /// Per queue, a time no scheduled `run_at` and no running lease expiry of
    /// the queue is earlier than. While `now` is below it, a claim can skip
    /// promoting due jobs and reaping leases: there are none. It is lowered by
    /// every write that sets such a time, recomputed when a claim has looked
    /// (`catch_up_queue`), and forgotten on rollback (a missing entry means "look").
    due_floor: HashMap<String, Millis>,
}

/// Counters to restore when an operation rolls back.
#[derive(Clone, Copy)]
pub struct Counters {
    next_seq: i64,
    next_start_no: i64,
}

impl WriteCtx {
    /// Wraps the writer connection, reading the counters.
    pub fn new(conn: Connection) -> Res<Self> {
        let meta = |name: &str| -> Res<i64> {
            conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(map_err)
        };
        let max_seq: i64 = conn
            .query_row("SELECT coalesce(max(seq), 0) FROM jobs", [], |r| r.get(0))
            .map_err(map_err)?;
        let max_start: i64 = conn
            .query_row("SELECT coalesce(max(start_no), 0) FROM starts", [], |r| {
                r.get(0)
            })
            .map_err(map_err)?;
        let next_seq = meta("next_seq")?.max(max_seq + 1);
        let next_start_no = meta("next_start_no")?.max(max_start + 1);
        Ok(WriteCtx {
            conn,
            next_seq,
            next_start_no,
            configs: HashMap::new(),
            due_floor: HashMap::new(),
        })
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        Counters {
            next_seq: self.next_seq,
            next_start_no: self.next_start_no,
        }
    }

    /// Puts counters back after a rollback, and forgets cached configs (they may be rolled back too).
    pub fn restore(&mut self, c: Counters) {
        self.next_seq = c.next_seq;
        self.next_start_no = c.next_start_no;
        self.configs.clear();
        self.due_floor.clear();
    }

    /// Notes that `queue` now has a scheduled job or a lease expiring at `at`.
    fn lower_due_floor(&mut self, queue: &str, at: Millis) {
        if let Some(floor) = self.due_floor.get_mut(queue) {
            *floor = (*floor).min(at);
        }
    }

    /// Promotes the queue's due jobs and reaps its expired leases, unless its
    /// due floor says there are none; then records the new floor.
    fn catch_up_queue(&mut self, queue: &str, now: Millis) -> Res<()> {
        if self.due_floor.get(queue).is_some_and(|floor| now < *floor) {
            return Ok(());
        }
        self.promote_due(Some(queue), now)?;
        self.reap_expired(Some(queue), now)?;
        let next: Option<Millis> = self
            .conn
            .prepare_cached(sql::NEXT_DUE_IN_QUEUE)
            .and_then(|mut s| s.query_row([queue], |r| r.get(0)))
            .map_err(map_err)?;
        self.due_floor
            .insert(queue.to_string(), next.unwrap_or(Millis::MAX));
        Ok(())
    }

    /// Writes the counters to `meta`.
    ///
    /// Not needed on every commit: on open, the counters start above the
    /// highest `seq` and start number still stored. Only deleting rows could
    /// lower those, so retention writes the counters first, in the same
    /// transaction as its deletes, and a `seq` is never handed out twice.
    fn persist_counters(&self) -> Res<()> {
        for (name, value) in [
            ("next_seq", self.next_seq),
            ("next_start_no", self.next_start_no),
        ] {
            self.conn
                .prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")
                .and_then(|mut s| s.execute(params![name, value]))
                .map_err(map_err)?;
        }
        Ok(())
    }

    fn config(&mut self, queue: &str) -> Res<Option<QueueConfig>> {
        if let Some(c) = self.configs.get(queue) {
            return Ok(Some(c.clone()));
        }
        let c = queue_row(&self.conn, queue)?;
        if let Some(c) = &c {
            self.configs.insert(queue.to_string(), c.clone());
        }
        Ok(c)
    }

    /// The queue's config, creating the queue with defaults when first used.
    fn config_or_create(&mut self, queue: &str, now: Millis) -> Res<QueueConfig> {
        if let Some(c) = self.config(queue)? {
            return Ok(c);
        }
        let c = QueueConfig::default();
        self.conn
            .prepare_cached(
                "INSERT INTO queues (name, config, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    queue,
                    to_text(&serde_json::to_value(&c).unwrap_or_default()),
                    now
                ])
            })
            .map_err(map_err)?;
        self.configs.insert(queue.to_string(), c.clone());
        Ok(c)
    }

    /// Creates or changes a queue.
    pub fn queue_configure(
        &mut self,
        name: &str,
        patch: &QueuePatch,
        now: Millis,
    ) -> Res<QueueInfo> {
        let mut config = self.config_or_create(name, now)?;
        patch.apply(&mut config);
        let text =
            serde_json::to_string(&config).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.conn
            .prepare_cached("UPDATE queues SET config = ?2, updated_at = ?3 WHERE name = ?1")
            .and_then(|mut s| s.execute(params![name, text, now]))
            .map_err(map_err)?;
        self.configs.insert(name.to_string(), config);
        queue_info(&self.conn, name)
    }

    fn has_unfinished_of_key(&self, queue: &str, key: &str) -> Res<bool> {
        self.conn
            .prepare_cached(sql::KEY_HAS_UNFINISHED)
            .and_then(|mut s| s.exists(params![queue, key]))
            .map_err(map_err)
    }

    /// Enqueues jobs in order (see `Store::job_enqueue_many`).
    pub fn job_enqueue_many(&mut self, p: &EnqueueParams) -> Res<Vec<Enqueued>> {
        let config = self.config_or_create(&p.queue, p.now)?;
        let mut out = Vec::with_capacity(p.jobs.len());
        // Every new job has a higher seq than any waiting job, so its position is
        // the number of waiting jobs before it: one read, then counted up.
        let mut next_position = waiting_count(&self.conn, &p.queue)?;
        for new in &p.jobs {
            let payload = to_text(&new.payload);
            let seq = self.next_seq;
            self.next_seq += 1;
            let run_at = new.run_at.unwrap_or(p.now).max(p.now);
            let state = if run_at > p.now {
                JobState::Scheduled
            } else {
                JobState::Queued
            };
            let head = match &new.key {
                None => true,
                Some(k) => !self.has_unfinished_of_key(&p.queue, k)?,
            };
            let max_attempts = new.max_attempts.unwrap_or(config.max_attempts);
            // Insert first: ids are almost always new, so the unique index on `id`
            // is the only lookup; a taken id is then checked for an exact replay.
            let inserted = self
                .conn
                .prepare_cached(
                    "INSERT INTO jobs (seq, id, queue, key, state, head, payload, max_attempts, timeout_ms, enqueued_at, run_at, first_seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?1)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        seq,
                        new.id,
                        p.queue,
                        new.key,
                        state.as_str(),
                        head,
                        payload,
                        max_attempts,
                        new.timeout_ms.map(|t| t as i64),
                        p.now,
                        run_at
                    ])
                });
            if let Err(e) = inserted {
                if !is_unique_violation(&e) {
                    return Err(map_err(e));
                }
                self.next_seq = seq;
                let existing = self.existing_for_replay(&p.queue, new, &payload)?;
                // Its position is filled in after the commit, on a read connection:
                // counting the line ahead of an old job is not the writer's work.
                out.push(Enqueued {
                    job: existing,
                    created: false,
                });
                continue;
            }
            if state == JobState::Scheduled {
                self.lower_due_floor(&p.queue, run_at);
            }
            let job = Job {
                id: new.id.clone(),
                queue: p.queue.clone(),
                key: new.key.clone(),
                seq,
                state,
                position: Some(next_position),
                payload: new.payload.clone(),
                attempt: 0,
                max_attempts,
                timeout_ms: new.timeout_ms,
                enqueued_at: p.now,
                run_at,
                started_at: None,
                finished_at: None,
                progress: None,
                result: None,
                error: None,
                cancel_requested: false,
                lease_expires_at: None,
                worker: None,
                start_no: None,
            };
            next_position += 1;
            out.push(Enqueued { job, created: true });
        }
        Ok(out)
    }

    /// The stored job with `new`'s id when `new` replays it exactly; `IdConflict` otherwise.
    fn existing_for_replay(
        &self,
        queue: &str,
        new: &orderly_core::NewJob,
        payload: &str,
    ) -> Res<Job> {
        let found: Option<(String, Option<String>, String)> = self
            .conn
            .prepare_cached("SELECT queue, key, payload FROM jobs WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([&new.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(map_err)?;
        match found {
            Some((q, k, pl)) if q == queue && k == new.key && pl == payload => {
                job_by_id(&self.conn, &new.id)?
                    .ok_or_else(|| StoreError::Backend(format!("job {:?} vanished", new.id)))
            }
            Some(_) => Err(StoreError::IdConflict { id: new.id.clone() }),
            None => Err(StoreError::Backend(format!(
                "id {:?} is taken but no job has it",
                new.id
            ))),
        }
    }

    /// Makes the next unfinished job of `key` (if any) its head.
    fn advance_key(&self, queue: &str, key: &str) -> Res<()> {
        self.conn
            .prepare_cached(sql::ADVANCE_KEY)
            .and_then(|mut s| s.execute(params![queue, key]))
            .map_err(map_err)?;
        Ok(())
    }

    /// Moves a job to a finished state and passes its key on.
    fn finish(
        &self,
        job: &Job,
        state: JobState,
        now: Millis,
        result: Option<&Value>,
        error: Option<&Value>,
    ) -> Res<Job> {
        let finished = self
            .conn
            .prepare_cached(&format!(
                "UPDATE jobs SET state = ?2, head = 0, finished_at = ?3,
                    result = coalesce(?4, result), error = coalesce(?5, error),
                    lease_token = NULL, lease_expires_at = NULL, deadline_at = NULL
                 WHERE seq = ?1 RETURNING {JOB_COLUMNS}"
            ))
            .and_then(|mut s| {
                s.query_row(
                    params![
                        job.seq,
                        state.as_str(),
                        now,
                        result.map(to_text),
                        error.map(to_text)
                    ],
                    job_from_row,
                )
            })
            .map_err(map_err)?;
        if let Some(key) = &job.key {
            self.advance_key(&job.queue, key)?;
        }
        Ok(finished)
    }

    /// Puts a job back to waiting (same seq) after a failed or lost attempt.
    fn requeue(&mut self, seq: i64, run_at: Millis, now: Millis, error: &Value) -> Res<Job> {
        let state = if run_at > now {
            JobState::Scheduled
        } else {
            JobState::Queued
        };
        let job = self
            .conn
            .prepare_cached(&format!(
                "UPDATE jobs SET state = ?2, run_at = ?3, error = ?4,
                    lease_token = NULL, lease_expires_at = NULL, deadline_at = NULL
                 WHERE seq = ?1 RETURNING {JOB_COLUMNS}"
            ))
            .and_then(|mut s| {
                s.query_row(
                    params![seq, state.as_str(), run_at, to_text(error)],
                    job_from_row,
                )
            })
            .map_err(map_err)?;
        if state == JobState::Scheduled {
            self.lower_due_floor(&job.queue, run_at);
        }
        Ok(job)
    }

    /// Makes due scheduled jobs queued (one queue, or all); returns the queues touched.
    fn promote_due(&self, queue: Option<&str>, now: Millis) -> Res<Vec<String>> {
        let queues: Vec<String> = match queue {
            Some(q) => {
                let n = self
                    .conn
                    .prepare_cached(sql::PROMOTE_DUE_IN_QUEUE)
                    .and_then(|mut s| s.execute(params![q, now]))
                    .map_err(map_err)?;
                if n > 0 {
                    vec![q.to_string()]
                } else {
                    vec![]
                }
            }
            None => {
                let mut stmt = self
                    .conn
                    .prepare_cached(sql::PROMOTE_DUE_ALL)
                    .map_err(map_err)?;
                let rows = stmt
                    .query_map([now], |r| r.get::<_, String>(0))
                    .map_err(map_err)?;
                let mut qs: Vec<String> = rows.collect::<rusqlite::Result<_>>().map_err(map_err)?;
                qs.sort();
                qs.dedup();
                qs
            }
        };
        Ok(queues)
    }

    /// Handles expired leases (one queue, or all): in place again, or finished.
    /// Returns the queues touched and the jobs that finished.
    fn reap_expired(&mut self, queue: Option<&str>, now: Millis) -> Res<(Vec<String>, Vec<Job>)> {
        let mut seqs: Vec<i64> = {
            let (sql, args): (&str, Vec<rusqlite::types::Value>) = match queue {
                Some(q) => (
                    sql::EXPIRED_IN_QUEUE,
                    vec![q.to_string().into(), now.into()],
                ),
                None => (sql::EXPIRED_ALL, vec![now.into()]),
            };
            let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get(0))
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        };
        seqs.sort_unstable();
        let mut queues = Vec::new();
        let mut finished = Vec::new();
        for seq in seqs {
            let (job, private) = job_with_private(&self.conn, By::Seq(seq))?
                .ok_or_else(|| StoreError::Backend(format!("job seq {seq} vanished")))?;
            let timed_out = private.deadline_at.is_some_and(|d| d <= now);
            if timed_out {
                let error = serde_json::json!({
                    "message": format!("attempt {} timed out after {} ms", job.attempt, job.timeout_ms.unwrap_or(0)),
                    "reason": "timeout"
                });
                let config = self.config(&job.queue)?.unwrap_or_default();
                match rules::after_failure(
                    job.attempt,
                    job.max_attempts,
                    true,
                    job.cancel_requested,
                    &config.backoff,
                    now,
                    rand::random(),
                ) {
                    AfterFailure::Retry { run_at } => {
                        self.requeue(seq, run_at, now, &error)?;
                    }
                    AfterFailure::Finish(state) => {
                        finished.push(self.finish(&job, state, now, None, Some(&error))?);
                    }
                }
            } else {
                let error = serde_json::json!({
                    "message": format!("lease of attempt {} expired: the worker {} stopped reporting", job.attempt, job.worker.as_deref().unwrap_or("?")),
                    "reason": "lease_expired"
                });
                match rules::after_lease_expiry(job.attempt, job.max_attempts, job.cancel_requested)
                {
                    JobState::Queued => {
                        self.requeue(seq, now, now, &error)?;
                    }
                    state => {
                        finished.push(self.finish(&job, state, now, None, Some(&error))?);
                    }
                }
            }
            queues.push(job.queue);
        }
        queues.sort();
        queues.dedup();
        Ok((queues, finished))
    }

    /// Claims jobs (see `Store::job_claim`).
    pub fn job_claim(&mut self, p: &ClaimParams) -> Res<Vec<Lease>> {
        let Some(config) = self.config(&p.queue)? else {
            return Ok(Vec::new());
        };
        self.catch_up_queue(&p.queue, p.now)?;
        if config.paused {
            return Ok(Vec::new());
        }
        let running = running_count(&self.conn, &p.queue)?;
        let capacity = rules::claim_capacity(config.concurrency, running, p.max);
        if capacity == 0 {
            return Ok(Vec::new());
        }
        let seqs: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare_cached(sql::CLAIM_CANDIDATES)
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![p.queue, capacity], |r| r.get(0))
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        };
        let lease_ms = p.lease_ms.unwrap_or(config.lease_ms);
        let mut leases = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let start_no = self.next_start_no;
            self.next_start_no += 1;
            let job = self
                .conn
                .prepare_cached(&format!(
                    "UPDATE jobs SET state = 'running', attempt = attempt + 1, started_at = ?2,
                        lease_token = ?3, lease_worker = ?4, lease_ms = ?5,
                        deadline_at = CASE WHEN timeout_ms IS NULL THEN NULL ELSE ?2 + timeout_ms END,
                        lease_expires_at = CASE WHEN timeout_ms IS NULL THEN ?2 + ?5 ELSE min(?2 + ?5, ?2 + timeout_ms) END,
                        start_no = ?6
                     WHERE seq = ?1 RETURNING {JOB_COLUMNS}"
                ))
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![seq, p.now, token, p.worker, lease_ms as i64, start_no],
                        job_from_row,
                    )
                })
                .map_err(map_err)?;
            self.conn
                .prepare_cached("INSERT INTO starts (start_no, seq, job_id, attempt, worker, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .and_then(|mut s| s.execute(params![start_no, seq, job.id, job.attempt, p.worker, p.now]))
                .map_err(map_err)?;
            let expires_at = job.lease_expires_at.unwrap_or(p.now);
            self.lower_due_floor(&p.queue, expires_at);
            leases.push(Lease {
                job,
                token,
                expires_at,
                lease_ms: (expires_at - p.now).max(0) as u64,
            });
        }
        Ok(leases)
    }

    /// Checks that `token` is the current, unexpired lease of job `id`.
    fn current_lease(&self, id: &str, token: &str, now: Millis) -> Res<(Job, Private)> {
        let (job, private) = job_with_private(&self.conn, By::Id(id))?
            .ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        let stale = |reason: String| StoreError::StaleLease {
            id: id.into(),
            reason,
        };
        if job.state != JobState::Running {
            return Err(stale(format!("the job is {}", job.state)));
        }
        if private.lease_token.as_deref() != Some(token) {
            return Err(stale(format!(
                "the token is not the lease of the current attempt ({})",
                job.attempt
            )));
        }
        if job.lease_expires_at.is_some_and(|e| e <= now) {
            return Err(stale("the lease expired".into()));
        }
        Ok((job, private))
    }

    /// Renews a lease.
    pub fn job_heartbeat(&mut self, p: &HeartbeatParams) -> Res<Heartbeat> {
        let (job, private) = self.current_lease(&p.id, &p.token, p.now)?;
        let lease_ms = private
            .lease_ms
            .unwrap_or(QueueConfig::DEFAULT_LEASE_MS as i64)
            .max(0) as u64;
        let expires_at = rules::lease_expiry(p.now, lease_ms, private.deadline_at);
        self.conn
            .prepare_cached("UPDATE jobs SET lease_expires_at = ?2, progress = coalesce(?3, progress) WHERE seq = ?1")
            .and_then(|mut s| s.execute(params![job.seq, expires_at, p.progress.as_ref().map(to_text)]))
            .map_err(map_err)?;
        // A renewal only moves the expiry later; lowering keeps the floor a lower bound regardless.
        self.lower_due_floor(&job.queue, expires_at);
        Ok(Heartbeat {
            expires_at,
            lease_ms: (expires_at - p.now).max(0) as u64,
            cancel_requested: job.cancel_requested,
        })
    }

    /// Applies one report; the flag is true when it repeats the report that
    /// already moved the job on (same token, same outcome): then nothing changes and the job
    /// is returned as that report left it, so a worker whose answer was lost
    /// on the way can send its report again.
    pub fn job_report(&mut self, p: &ReportParams) -> Res<(Job, bool)> {
        // The outcome's kind is part of what is remembered: a success sent again
        // is a repeat, a failure sent with the token of a success is not.
        let remembered = match p.outcome {
            Outcome::Succeeded { .. } => format!("succeeded:{}", p.token),
            Outcome::Failed { .. } => format!("failed:{}", p.token),
        };
        let job = match self.current_lease(&p.id, &p.token, p.now) {
            Ok((job, _)) => job,
            Err(e @ StoreError::StaleLease { .. }) => {
                let repeated = self
                    .conn
                    .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1 AND reported_token = ?2")
                    .and_then(|mut s| s.exists(params![p.id, remembered]))
                    .map_err(map_err)?;
                return match (repeated, job_by_id(&self.conn, &p.id)?) {
                    (true, Some(job)) => Ok((job, true)),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let after = match &p.outcome {
            Outcome::Succeeded { result } => self.finish(
                &job,
                JobState::Succeeded,
                p.now,
                Some(result.as_ref().unwrap_or(&Value::Null)),
                None,
            )?,
            Outcome::Failed { error, retry } => {
                let config = self.config(&job.queue)?.unwrap_or_default();
                match rules::after_failure(
                    job.attempt,
                    job.max_attempts,
                    *retry,
                    job.cancel_requested,
                    &config.backoff,
                    p.now,
                    rand::random(),
                ) {
                    AfterFailure::Retry { run_at } => {
                        self.requeue(job.seq, run_at, p.now, error)?
                    }
                    AfterFailure::Finish(state) => {
                        self.finish(&job, state, p.now, None, Some(error))?
                    }
                }
            }
        };
        self.conn
            .prepare_cached("UPDATE jobs SET reported_token = ?2 WHERE seq = ?1")
            .and_then(|mut s| s.execute(params![after.seq, remembered]))
            .map_err(map_err)?;
        // A job back in line gets its position after the commit (see `fill_positions`).
        Ok((after, false))
    }

    /// The unexpired leases `worker` holds in `queue`, in `seq` order: what a
    /// repeated report-and-claim hands back instead of claiming again.
    pub fn held_leases(&self, queue: &str, worker: &str, now: Millis) -> Res<Vec<Lease>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS}, lease_token FROM jobs
                 WHERE queue = ?1 AND state = 'running' AND lease_expires_at > ?3 AND lease_worker = ?2
                 ORDER BY seq"
            ))
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![queue, worker, now], |r| {
                let job = job_from_row(r)?;
                let token: Option<String> = r.get(20)?;
                Ok((job, token))
            })
            .map_err(map_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (job, token) = row.map_err(map_err)?;
            if let (Some(token), Some(expires_at)) = (token, job.lease_expires_at) {
                let started_at = job.started_at.unwrap_or(now);
                out.push(Lease {
                    job,
                    token,
                    expires_at,
                    // As granted: from the start this lease was issued at.
                    lease_ms: (expires_at - started_at).max(0) as u64,
                });
            }
        }
        Ok(out)
    }

    /// Cancels a job (see `Store::job_cancel`).
    pub fn job_cancel(&mut self, id: &str, now: Millis) -> Res<Job> {
        let (job, private) = job_with_private(&self.conn, By::Id(id))?
            .ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        match job.state {
            JobState::Scheduled | JobState::Queued => {
                let head = private.head;
                self.conn
                    .prepare_cached("UPDATE jobs SET state = 'cancelled', head = 0, finished_at = ?2 WHERE seq = ?1")
                    .and_then(|mut s| s.execute(params![job.seq, now]))
                    .map_err(map_err)?;
                if let (true, Some(key)) = (head, &job.key) {
                    self.advance_key(&job.queue, key)?;
                }
            }
            JobState::Running => {
                self.conn
                    .prepare_cached("UPDATE jobs SET cancel_requested = 1 WHERE seq = ?1")
                    .and_then(|mut s| s.execute([job.seq]))
                    .map_err(map_err)?;
            }
            state => {
                return Err(StoreError::InvalidState {
                    id: id.into(),
                    state,
                    action: "cancel a finished job",
                });
            }
        }
        job_by_seq(&self.conn, job.seq)
    }

    /// Puts a failed or cancelled job back in line with a new seq.
    pub fn job_retry(&mut self, id: &str, now: Millis) -> Res<Job> {
        let job = job_by_id(&self.conn, id)?.ok_or_else(|| StoreError::JobNotFound(id.into()))?;
        if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
            return Err(StoreError::InvalidState {
                id: id.into(),
                state: job.state,
                action: "retry (only failed or cancelled jobs can be retried)",
            });
        }
        let head = match &job.key {
            None => true,
            Some(k) => !self.has_unfinished_of_key(&job.queue, k)?,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.conn
            .prepare_cached(
                "UPDATE jobs SET seq = ?2, state = 'queued', head = ?3, attempt = 0, run_at = ?4,
                    finished_at = NULL, result = NULL, cancel_requested = 0, requeues = requeues + 1, reported_token = NULL,
                    started_at = NULL, start_no = NULL, progress = NULL, lease_worker = NULL
                 WHERE seq = ?1",
            )
            .and_then(|mut s| s.execute(params![job.seq, seq, head, now]))
            .map_err(map_err)?;
        // The highest seq of its queue: every other waiting job is ahead of it.
        let mut job = job_by_seq(&self.conn, seq)?;
        job.position = Some(waiting_count(&self.conn, &job.queue)?.saturating_sub(1));
        Ok(job)
    }

    /// One maintenance pass over every queue.
    pub fn maintenance_run(&mut self, now: Millis) -> Res<MaintenanceReport> {
        let mut woken = self.promote_due(None, now)?;
        let (reaped, finished) = self.reap_expired(None, now)?;
        woken.extend(reaped);
        woken.sort();
        woken.dedup();
        let next_due: Option<Millis> = self
            .conn
            .query_row(sql::NEXT_DUE, [], |r| r.get(0))
            .map_err(map_err)?;
        Ok(MaintenanceReport {
            woken_queues: woken,
            finished,
            next_due,
        })
    }

    /// Deletes jobs finished before `before`, and starts recorded before it.
    pub fn retention_purge(&mut self, before: Millis, limit: u32) -> Res<u64> {
        self.persist_counters()?;
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM jobs WHERE seq IN (
                    SELECT seq FROM jobs WHERE finished_at < ?1
                        AND state IN ('succeeded', 'failed', 'cancelled') LIMIT ?2)",
            )
            .and_then(|mut s| s.execute(params![before, limit]))
            .map_err(map_err)?;
        self.conn
            .prepare_cached(
                "DELETE FROM starts WHERE start_no IN (
                    SELECT start_no FROM starts WHERE started_at < ?1 LIMIT ?2)",
            )
            .and_then(|mut s| s.execute(params![before, limit]))
            .map_err(map_err)?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::sql;
    use rusqlite::Connection;

    fn plan(conn: &Connection, query: &str) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .expect("explain");
        let n = stmt.parameter_count();
        let args: Vec<rusqlite::types::Value> =
            (0..n).map(|_| rusqlite::types::Value::Integer(1)).collect();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .expect("plan rows");
        rows.map(|r| r.expect("plan row"))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Claim cost must not grow with the backlog: every query on the claim and
    /// key-handoff path reads its partial index, never the whole table, and
    /// the ready line needs no sort.
    #[test]
    fn claim_path_queries_use_their_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = Connection::open(dir.path().join("plan.db")).expect("open");
        crate::schema::migrate(&mut conn).expect("migrate");
        // (query, index, whether the plan may sort: the expired leases of a queue
        // are at most its running jobs, so sorting them is bounded.)
        for (query, index, may_sort) in [
            (sql::CLAIM_CANDIDATES, "jobs_ready", false),
            (sql::KEY_HAS_UNFINISHED, "jobs_key_line", false),
            (sql::ADVANCE_KEY, "jobs_key_line", false),
            (sql::PROMOTE_DUE_IN_QUEUE, "jobs_due", true),
            (sql::EXPIRED_IN_QUEUE, "jobs_leases", true),
            (sql::PROMOTE_DUE_ALL, "jobs_due_all", false),
            (sql::EXPIRED_ALL, "jobs_leases_all", false),
            (sql::NEXT_DUE, "jobs_due_all", false),
            (sql::NEXT_DUE, "jobs_leases_all", false),
            (sql::NEXT_DUE_IN_QUEUE, "jobs_due", false),
            (sql::NEXT_DUE_IN_QUEUE, "jobs_leases", false),
        ] {
            let p = plan(&conn, query);
            assert!(
                p.contains(index),
                "{query}\nplan: {p}\nexpected index {index}"
            );
            assert!(!p.contains("SCAN jobs"), "{query}\nscans the table: {p}");
            assert!(
                may_sort || !p.contains("TEMP B-TREE"),
                "{query}\nsorts: {p}"
            );
        }
    }
}
