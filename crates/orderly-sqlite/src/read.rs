//! Reads: one job, a page of a queue, queues and their counts, a job's
//! attempts and a page of a queue's start log. They run on a
//! read-only connection inside one read transaction (so a job and its
//! position come from the same snapshot), or inside the writer's.

use orderly_core::{
    AttemptRecord, Job, JobState, LatestStart, ListParams, Millis, QueueConfig, QueueInfo,
    StartListParams, StartRecord, StateCounts, StoreError, WaitFacts,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::rows::{job_by_id, job_from_row, map_err, Cols, Res, JOB_COLUMNS};
use crate::sql;

/// Waiting jobs of `queue` ahead of `seq` (`sql::POSITION`: bounded work
/// at any backlog).
fn position_of(conn: &Connection, queue: &str, seq: i64) -> Res<u64> {
    conn.prepare_cached(sql::POSITION)
        .and_then(|mut s| s.query_row(params![queue, seq], |r| r.get::<_, i64>(0)))
        .map(|n| n.max(0) as u64)
        .map_err(map_err)
}

/// Waiting jobs of `queue` strictly between `after` and `before`.
fn waiting_between(conn: &Connection, queue: &str, after: i64, before: i64) -> Res<u64> {
    conn.prepare_cached(sql::WAITING_BETWEEN)
        .and_then(|mut s| s.query_row(params![queue, after, before], |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(map_err)
}

/// Sets `position` on every waiting job of `jobs` that has none, in one pass
/// per queue in `seq` order: a job in the same block of 1,024 `seq`s as the
/// previous one is the previous position plus one plus the waiting jobs
/// between them (at most a block's entries read); any other is read from
/// the block counts ([`position_of`]). Either way a job costs a bounded
/// read, however many jobs wait and however far apart the page's jobs are.
pub(crate) fn fill_positions(conn: &Connection, jobs: &mut [Job]) -> Res<()> {
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
            Some((q, prev_seq, prev_pos))
                if q == queue && prev_seq >> sql::BLOCK_BITS == *seq >> sql::BLOCK_BITS =>
            {
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
        let config = queue_row(conn, &job.queue)?.unwrap_or_default();
        let running = running_count(conn, &job.queue)?;
        fill_wait(conn, &mut job, &config, running)?;
    }
    Ok(job)
}

/// The unfinished jobs of `key` ahead of `seq` (`sql::KEY_POSITION`, a
/// bounded read at any key length) and, when there are some, the first of
/// them: the one holding the key (`sql::KEY_HEAD`, one index entry).
pub(crate) fn key_line(
    conn: &Connection,
    queue: &str,
    key: &str,
    seq: i64,
) -> Res<(u64, Option<String>)> {
    let ahead: i64 = conn
        .prepare_cached(sql::KEY_POSITION)
        .and_then(|mut s| s.query_row(params![queue, key, seq], |r| r.get(0)))
        .map_err(map_err)?;
    if ahead <= 0 {
        return Ok((0, None));
    }
    let head = conn
        .prepare_cached(sql::KEY_HEAD)
        .and_then(|mut s| {
            s.query_row(params![queue, key, seq], |r| r.get::<_, String>(0))
                .optional()
        })
        .map_err(map_err)?;
    Ok((ahead as u64, head))
}

/// Sets `key_position` and `wait_facts` of a waiting job from its queue's
/// `config` and `running` count (read in the same snapshot) and its key's
/// line ([`key_line`]).
pub(crate) fn fill_wait(
    conn: &Connection,
    job: &mut Job,
    config: &QueueConfig,
    running: u64,
) -> Res<()> {
    let mut key_head = None;
    if let Some(key) = &job.key {
        let (ahead, head) = key_line(conn, &job.queue, key, job.seq)?;
        job.key_position = Some(ahead);
        key_head = head;
    }
    job.wait_facts = Some(WaitFacts {
        paused: config.paused,
        concurrency: config.concurrency,
        running,
        has_executor: config.executor.is_some(),
        key_head,
    });
    Ok(())
}

/// Sets `key_position` and `wait_facts` on every waiting job of a page that
/// has none (each queue's configuration and running count read once).
pub(crate) fn fill_waits(conn: &Connection, jobs: &mut [Job]) -> Res<()> {
    let mut queues: std::collections::HashMap<String, (QueueConfig, u64)> = Default::default();
    for job in jobs
        .iter_mut()
        .filter(|j| j.state.is_waiting() && j.wait_facts.is_none())
    {
        if !queues.contains_key(&job.queue) {
            let config = queue_row(conn, &job.queue)?.unwrap_or_default();
            let running = running_count(conn, &job.queue)?;
            queues.insert(job.queue.clone(), (config, running));
        }
        let (config, running) = &queues[&job.queue];
        fill_wait(conn, job, config, *running)?;
    }
    Ok(())
}

/// Waiting jobs of `queue` (one row read of the trigger-kept counts).
pub(crate) fn waiting_count(conn: &Connection, queue: &str) -> Res<u64> {
    conn.prepare_cached(sql::WAITING_COUNT)
        .and_then(|mut s| s.query_row([queue], |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(map_err)
}

/// Running jobs of `queue`.
pub(crate) fn running_count(conn: &Connection, queue: &str) -> Res<u64> {
    conn.prepare_cached(sql::RUNNING_COUNT)
        .and_then(|mut s| s.query_row([queue], |r| r.get::<_, i64>(0)).optional())
        .map(|n| n.unwrap_or(0).max(0) as u64)
        .map_err(map_err)
}

fn counts(conn: &Connection, queue: &str) -> Res<StateCounts> {
    let mut out = StateCounts::default();
    let mut stmt = conn.prepare_cached(sql::QUEUE_COUNTS).map_err(map_err)?;
    let row = stmt
        .query_row([queue], |r| {
            let mut n = [0_i64; 6];
            for (i, slot) in n.iter_mut().enumerate() {
                *slot = r.get(i)?;
            }
            Ok(n)
        })
        .optional()
        .map_err(map_err)?;
    for (state, n) in JobState::ALL.into_iter().zip(row.unwrap_or_default()) {
        out.add(state, n.max(0) as u64);
    }
    Ok(out)
}

/// A queue's stored configuration, if it exists.
pub(crate) fn queue_row(conn: &Connection, name: &str) -> Res<Option<QueueConfig>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT config FROM queues WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .map_err(map_err)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            orderly_core::StoreError::Corrupt(format!("queue {name:?} configuration: {e}"))
        })
    })
    .transpose()
}

/// A queue with config and counts.
pub(crate) fn queue_info(conn: &Connection, name: &str) -> Res<QueueInfo> {
    let config = queue_row(conn, name)?
        .ok_or_else(|| orderly_core::StoreError::QueueNotFound(name.into()))?;
    Ok(QueueInfo {
        name: name.to_string(),
        config,
        counts: counts(conn, name)?,
    })
}

/// Every queue, by name.
pub(crate) fn queue_list(conn: &Connection) -> Res<Vec<QueueInfo>> {
    let names: Vec<String> = {
        let mut stmt = conn.prepare_cached(sql::QUEUE_NAMES).map_err(map_err)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(map_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
    };
    names.iter().map(|n| queue_info(conn, n)).collect()
}

/// One job with its position.
pub(crate) fn job_get(conn: &Connection, id: &str) -> Res<Option<Job>> {
    job_by_id(conn, id)?
        .map(|j| with_position(conn, j))
        .transpose()
}

/// A page of a queue's jobs.
pub(crate) fn job_list(conn: &Connection, p: &ListParams) -> Res<Vec<Job>> {
    let after = p.after.unwrap_or(0);
    let mut jobs: Vec<Job> = match (&p.key, p.state) {
        (Some(key), state) => {
            let mut stmt = conn
                .prepare_cached(&format!("SELECT {JOB_COLUMNS} {}", sql::JOB_PAGE_OF_KEY))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(
                    params![p.queue, key, state.map(|s| s.as_str()), after, p.limit],
                    job_from_row,
                )
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        }
        (None, Some(JobState::Queued)) => {
            let mut stmt = conn.prepare_cached(sql::JOB_PAGE_QUEUED).map_err(map_err)?;
            let rows = stmt
                .query_map(params![p.queue, after, p.limit], job_from_row)
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        }
        (None, Some(state)) => {
            let mut stmt = conn
                .prepare_cached(&format!("SELECT {JOB_COLUMNS} {}", sql::JOB_PAGE_IN_STATE))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(
                    params![p.queue, state.as_str(), after, p.limit],
                    job_from_row,
                )
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        }
        (None, None) => {
            let mut stmt = conn.prepare_cached(sql::JOB_PAGE).map_err(map_err)?;
            let rows = stmt
                .query_map(params![p.queue, after, p.limit], job_from_row)
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
        }
    };
    fill_positions(conn, &mut jobs)?;
    fill_waits(conn, &mut jobs)?;
    Ok(jobs)
}

/// Every recorded attempt of job `id`, oldest first: the chain of its start
/// records from its latest (`last_start_no`) back through `prev_start_no`,
/// one primary-key read per attempt.
pub(crate) fn job_attempts(conn: &Connection, id: &str) -> Res<Vec<AttemptRecord>> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT last_start_no FROM jobs WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(map_err)?
        .ok_or_else(|| StoreError::JobNotFound(id.into()))?;
    let mut next = last;
    let mut out = Vec::new();
    let mut stmt = conn
        .prepare_cached(
            "SELECT attempt, start_no, worker, started_at, ended_at, outcome, error, prev_start_no
             FROM starts WHERE start_no = ?1 AND job_id = ?2",
        )
        .map_err(map_err)?;
    while let Some(start_no) = next {
        let row = stmt
            .query_row(params![start_no, id], |r| {
                Ok((
                    attempt_from_row(r)?,
                    Cols::of(r).get::<Option<i64>>("prev_start_no")?,
                ))
            })
            .optional()
            .map_err(map_err)?;
        let Some((record, prev)) = row else { break };
        out.push(record);
        // Strictly older, so a damaged chain cannot loop.
        next = prev.filter(|p| *p < start_no);
    }
    out.reverse();
    Ok(out)
}

/// One start record as an attempt.
fn attempt_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttemptRecord> {
    let c = Cols::of(r);
    Ok(AttemptRecord {
        attempt: c.get("attempt")?,
        start_no: c.get("start_no")?,
        worker: c.get("worker")?,
        started_at: c.get("started_at")?,
        ended_at: c.get("ended_at")?,
        outcome: c.get("outcome")?,
        error: c.json("error")?,
    })
}

/// The latest `limit` starts of `queue`, oldest first (`sql::START_LATEST`).
pub(crate) fn start_latest(conn: &Connection, queue: &str, limit: u32) -> Res<Vec<LatestStart>> {
    let mut stmt = conn.prepare_cached(sql::START_LATEST).map_err(map_err)?;
    let rows = stmt
        .query_map(params![queue, limit], |r| {
            let c = Cols::of(r);
            Ok(LatestStart {
                start: start_from_row(r)?,
                ended_at: c.get("ended_at")?,
                outcome: c.get("outcome")?,
                error: c.json("error")?,
            })
        })
        .map_err(map_err)?;
    let mut out: Vec<LatestStart> = rows.collect::<rusqlite::Result<_>>().map_err(map_err)?;
    out.reverse();
    Ok(out)
}

/// One row of the start log.
fn start_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StartRecord> {
    let c = Cols::of(r);
    Ok(StartRecord {
        start_no: c.get("start_no")?,
        seq: c.get("seq")?,
        job_id: c.get("job_id")?,
        key: c.get("key")?,
        attempt: c.get("attempt")?,
        worker: c.get("worker")?,
        started_at: c.get("started_at")?,
    })
}

/// A page of a queue's start log, in `start_no` order (`sql::START_LOG_PAGE`).
pub(crate) fn start_list(conn: &Connection, p: &StartListParams) -> Res<Vec<StartRecord>> {
    let mut stmt = conn
        .prepare_cached(crate::sql::START_LOG_PAGE)
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![p.queue, p.after.unwrap_or(0), p.limit],
            start_from_row,
        )
        .map_err(map_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(map_err)
}

/// When the front of `queue`'s line was enqueued (see `Store::queue_oldest_queued`).
pub(crate) fn oldest_queued(conn: &Connection, queue: &str) -> Res<Option<Millis>> {
    conn.prepare_cached(crate::sql::OLDEST_QUEUED)
        .and_then(|mut s| s.query_row([queue], |r| r.get(0)).optional())
        .map_err(map_err)
}

#[cfg(test)]
mod tests {
    use orderly_core::{EnqueueParams, NewJob, Store, StoreError};

    use crate::{SqliteOptions, SqliteStore, DB_FILE};

    /// A row that cannot be read as written is an error naming the damage,
    /// never a guess (an unknown state is not shown as `failed`, broken JSON
    /// not as `null`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_row_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open");
        let job = |id: &str| NewJob {
            id: id.into(),
            key: None,
            payload: serde_json::json!({"ok": true}),
            run_at: None,
            max_attempts: None,
            timeout_ms: None,
        };
        store
            .job_enqueue_many(EnqueueParams {
                queue: "q".into(),
                jobs: vec![job("bad-state"), job("bad-json")],
                now: 1,
            })
            .await
            .expect("enqueue");
        let raw = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open raw");
        raw.execute_batch(
            "UPDATE jobs SET state = 'exploded' WHERE id = 'bad-state';
             UPDATE jobs SET payload = '{not json' WHERE id = 'bad-json';",
        )
        .expect("damage the rows");
        for (id, what) in [("bad-state", "exploded"), ("bad-json", "payload")] {
            match store.job_get(id).await {
                Err(StoreError::Corrupt(message)) => {
                    assert!(message.contains(what), "{id}: {message}")
                }
                other => panic!("{id}: expected Corrupt, got {other:?}"),
            }
        }
        store.close().await;
    }
}
