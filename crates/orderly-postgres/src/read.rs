//! Reads: one job, a page of a queue, queues and their counts, a job's
//! attempts and a page of a queue's start log. The store runs them in a
//! read-only `REPEATABLE READ` transaction, so a job and its position come
//! from one snapshot; writes call some of them inside their own transaction.
//! Rows without a `seq` (committed by an enqueue, not numbered yet) are not
//! jobs yet and are never shown.

use orderly_core::{
    AttemptRecord, Job, JobState, LatestStart, ListParams, Millis, QueueConfig, QueueInfo,
    StartListParams, StartRecord, StateCounts, StoreError,
};

use crate::rows::{job_from_row, json, map_err, Db, Res, JOB_COLUMNS};
use crate::waits::fill_waits;

/// A page of a queue's jobs of every state. (`jobs_queue_seq`)
pub(crate) const JOB_PAGE: &str =
    "FROM jobs WHERE queue = $1 AND seq IS NOT NULL AND seq > $2 ORDER BY seq LIMIT $3";
/// A page of a queue's jobs in one state. (`jobs_by_state`)
pub(crate) const JOB_PAGE_IN_STATE: &str =
    "FROM jobs WHERE queue = $1 AND seq IS NOT NULL AND state = $2 AND seq > $3 ORDER BY seq LIMIT $4";
/// A page of one key's line: its unfinished jobs, of state $3 when not
/// NULL. (`jobs_key_line`: bounded by the key's unfinished jobs, whatever
/// else the queue holds)
pub(crate) const JOB_PAGE_OF_KEY: &str = "FROM jobs WHERE queue = $1 AND key = $2 \
    AND seq IS NOT NULL AND state IN ('scheduled', 'queued', 'running') \
    AND ($3::text IS NULL OR state = $3::text) AND seq > $4 ORDER BY seq LIMIT $5";
/// When the front of a queue's line was enqueued. (`jobs_by_state`)
pub(crate) const OLDEST_QUEUED: &str = "SELECT enqueued_at FROM jobs \
    WHERE queue = $1 AND seq IS NOT NULL AND state = 'queued' ORDER BY seq LIMIT 1";
/// A page of a queue's start log. (`starts_queue`)
pub(crate) const START_LOG_PAGE: &str =
    "SELECT start_no, seq, job_id, key, attempt, worker, started_at \
    FROM starts WHERE queue = $1 AND start_no > $2 ORDER BY start_no LIMIT $3";
/// The latest starts of a queue, newest first, with their ends: the end of
/// its start log. (`starts_queue`, read backwards)
pub(crate) const START_LATEST: &str =
    "SELECT start_no, seq, job_id, key, attempt, worker, started_at, ended_at, outcome, error \
    FROM starts WHERE queue = $1 ORDER BY start_no DESC LIMIT $2";

/// Waiting jobs of `queue` (trigger-kept counts).
pub(crate) async fn waiting_count(tx: Db<'_, '_>, queue: &str) -> Res<u64> {
    let n: i64 = tx
        .query_one(
            "SELECT coalesce(sum(n), 0)::bigint FROM queue_counts WHERE queue = $1 AND state IN ('queued', 'scheduled')",
            &[&queue],
        )
        .await
        .map_err(map_err)?
        .get(0);
    Ok(n.max(0) as u64)
}

/// Running jobs of `queue` (one trigger-kept row).
pub(crate) async fn running_count(tx: Db<'_, '_>, queue: &str) -> Res<u64> {
    let n: Option<i64> = tx
        .query_opt(
            "SELECT n FROM queue_counts WHERE queue = $1 AND state = 'running'",
            &[&queue],
        )
        .await
        .map_err(map_err)?
        .map(|r| r.get(0));
    Ok(n.unwrap_or(0).max(0) as u64)
}

async fn counts(tx: Db<'_, '_>, queue: &str) -> Res<StateCounts> {
    let mut out = StateCounts::default();
    for row in tx
        .query(
            "SELECT state, n FROM queue_counts WHERE queue = $1",
            &[&queue],
        )
        .await
        .map_err(map_err)?
    {
        let (state, n): (String, i64) = (row.get(0), row.get(1));
        let state = JobState::parse(&state).ok_or_else(|| {
            StoreError::Corrupt(format!("queue {queue:?} counts an unknown state {state:?}"))
        })?;
        out.add(state, n.max(0) as u64);
    }
    Ok(out)
}

/// Parses a stored queue configuration.
pub(crate) fn parse_config(name: &str, text: &str) -> Res<QueueConfig> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("queue {name:?} configuration: {e}")))
}

/// A queue's stored configuration, if it exists.
pub(crate) async fn queue_row(tx: Db<'_, '_>, name: &str) -> Res<Option<QueueConfig>> {
    tx.query_opt("SELECT config FROM queues WHERE name = $1", &[&name])
        .await
        .map_err(map_err)?
        .map(|r| parse_config(name, r.get(0)))
        .transpose()
}

/// A queue with config and counts.
pub(crate) async fn queue_info(tx: Db<'_, '_>, name: &str) -> Res<QueueInfo> {
    let config = queue_row(tx, name)
        .await?
        .ok_or_else(|| StoreError::QueueNotFound(name.into()))?;
    Ok(QueueInfo {
        name: name.to_string(),
        config,
        counts: counts(tx, name).await?,
    })
}

/// Every queue, by name.
pub(crate) async fn queue_list(tx: Db<'_, '_>) -> Res<Vec<QueueInfo>> {
    let names: Vec<String> = tx
        .query("SELECT name FROM queues ORDER BY name", &[])
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for n in &names {
        out.push(queue_info(tx, n).await?);
    }
    Ok(out)
}

/// One numbered job by id, without its position.
pub(crate) async fn job_by_id(tx: Db<'_, '_>, id: &str) -> Res<Option<Job>> {
    tx.query_opt(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND seq IS NOT NULL"),
        &[&id],
    )
    .await
    .map_err(map_err)?
    .map(|r| job_from_row(&r))
    .transpose()
}

/// One job with its position and what it waits on.
pub(crate) async fn job_get(tx: Db<'_, '_>, id: &str) -> Res<Option<Job>> {
    let Some(job) = job_by_id(tx, id).await? else {
        return Ok(None);
    };
    let mut jobs = [job];
    fill_waits(tx, &mut jobs).await?;
    let [job] = jobs;
    Ok(Some(job))
}

/// A page of a queue's jobs.
pub(crate) async fn job_list(tx: Db<'_, '_>, p: &ListParams) -> Res<Vec<Job>> {
    let after = p.after.unwrap_or(0);
    let limit = i64::from(p.limit);
    let rows = match (&p.key, p.state) {
        (Some(key), state) => {
            tx.query(
                &format!("SELECT {JOB_COLUMNS} {JOB_PAGE_OF_KEY}"),
                &[&p.queue, key, &state.map(|s| s.as_str()), &after, &limit],
            )
            .await
        }
        (None, Some(state)) => {
            tx.query(
                &format!("SELECT {JOB_COLUMNS} {JOB_PAGE_IN_STATE}"),
                &[&p.queue, &state.as_str(), &after, &limit],
            )
            .await
        }
        (None, None) => {
            tx.query(
                &format!("SELECT {JOB_COLUMNS} {JOB_PAGE}"),
                &[&p.queue, &after, &limit],
            )
            .await
        }
    }
    .map_err(map_err)?;
    let mut jobs = rows.iter().map(job_from_row).collect::<Res<Vec<_>>>()?;
    fill_waits(tx, &mut jobs).await?;
    Ok(jobs)
}

/// Every recorded attempt of job `id`, oldest first: the chain of its start
/// records from its latest back through `prev_start_no`, one primary-key
/// read per attempt.
pub(crate) async fn job_attempts(tx: Db<'_, '_>, id: &str) -> Res<Vec<AttemptRecord>> {
    let last: Option<i64> = tx
        .query_opt(
            "SELECT last_start_no FROM jobs WHERE id = $1 AND seq IS NOT NULL",
            &[&id],
        )
        .await
        .map_err(map_err)?
        .ok_or_else(|| StoreError::JobNotFound(id.into()))?
        .get(0);
    let mut next = last;
    let mut out = Vec::new();
    while let Some(start_no) = next {
        let Some(row) = tx
            .query_opt(
                "SELECT attempt, start_no, worker, started_at, ended_at, outcome, error, prev_start_no
                 FROM starts WHERE start_no = $1 AND job_id = $2",
                &[&start_no, &id],
            )
            .await
            .map_err(map_err)?
        else {
            break;
        };
        out.push(AttemptRecord {
            attempt: row.get::<_, i64>("attempt") as u32,
            start_no: row.get("start_no"),
            worker: row.get("worker"),
            started_at: row.get("started_at"),
            ended_at: row.get("ended_at"),
            outcome: row.get("outcome"),
            error: json(&row, "error")?,
        });
        // Strictly older, so a damaged chain cannot loop.
        next = row
            .get::<_, Option<i64>>("prev_start_no")
            .filter(|p| *p < start_no);
    }
    out.reverse();
    Ok(out)
}

/// One row of the start log.
fn start_from_row(r: &tokio_postgres::Row) -> StartRecord {
    StartRecord {
        start_no: r.get("start_no"),
        seq: r.get("seq"),
        job_id: r.get("job_id"),
        key: r.get("key"),
        attempt: r.get::<_, i64>("attempt") as u32,
        worker: r.get("worker"),
        started_at: r.get("started_at"),
    }
}

/// A page of a queue's start log, in `start_no` order.
pub(crate) async fn start_list(tx: Db<'_, '_>, p: &StartListParams) -> Res<Vec<StartRecord>> {
    let rows = tx
        .query(
            START_LOG_PAGE,
            &[&p.queue, &p.after.unwrap_or(0), &i64::from(p.limit)],
        )
        .await
        .map_err(map_err)?;
    Ok(rows.iter().map(start_from_row).collect())
}

/// The latest `limit` starts of a queue, oldest first, each with the end
/// of its attempt ([`START_LATEST`], read from the end of the log).
pub(crate) async fn start_latest(tx: Db<'_, '_>, queue: &str, limit: u32) -> Res<Vec<LatestStart>> {
    let rows = tx
        .query(START_LATEST, &[&queue, &i64::from(limit)])
        .await
        .map_err(map_err)?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(LatestStart {
                start: start_from_row(r),
                ended_at: r.get("ended_at"),
                outcome: r.get("outcome"),
                error: json(r, "error")?,
            })
        })
        .collect::<Res<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// When the front of `queue`'s line was enqueued.
pub(crate) async fn oldest_queued(tx: Db<'_, '_>, queue: &str) -> Res<Option<Millis>> {
    Ok(tx
        .query_opt(OLDEST_QUEUED, &[&queue])
        .await
        .map_err(map_err)?
        .map(|r| r.get(0)))
}
