//! What a waiting job waits on, as every answer shows it: its `position`
//! in its queue's line, its `key_position` in its key's line and the facts
//! of its wait (`WaitFacts`). Reads fill them in their snapshot; a write
//! fills them for the jobs it answers, so an answer says what a read right
//! after says. Every query here is bounded per job at any backlog.

use std::collections::HashMap;

use orderly_core::{Job, QueueConfig, WaitFacts};

use crate::read::{queue_row, running_count};
use crate::rows::{map_err, Db, Res};

/// The waiting jobs ahead of each of many jobs (queues $1 and `seq`s $2,
/// arrays of one length; one row `(queue, seq, position)` each, in one
/// round trip), from `waiting_blocks`: the level-1 blocks wholly before it,
/// the level-0 blocks before it within its level-1 block, and the waiting
/// jobs before it in its own level-0 block (`jobs_by_state`, at most
/// 2 × 1,024 entries): bounded per job at any backlog.
pub(crate) const POSITIONS: &str = "SELECT j.queue, j.seq, (
    (SELECT coalesce(sum(n), 0) FROM waiting_blocks
        WHERE queue = j.queue AND level = 1 AND block < (j.seq >> 20))
  + (SELECT coalesce(sum(n), 0) FROM waiting_blocks
        WHERE queue = j.queue AND level = 0 AND block >= ((j.seq >> 20) << 10) AND block < (j.seq >> 10))
  + (SELECT count(*) FROM jobs
        WHERE queue = j.queue AND state IN ('queued', 'scheduled') AND seq >= ((j.seq >> 10) << 10) AND seq < j.seq)
  )::bigint FROM unnest($1::text[], $2::bigint[]) AS j(queue, seq)";
/// For many keyed jobs at once (queues $1, keys $2, `seq`s $3; one row
/// `(queue, seq, key_position, key_head)` each): the unfinished jobs of its
/// key ahead of it, and the first of them, the one holding the key. The
/// count is read as [`POSITIONS`] is, from `key_blocks`: the key's level-1
/// blocks wholly before it, its level-0 blocks before it within its level-1
/// block, and its unfinished jobs before it in its own level-0 block
/// (`jobs_key_line`, at most 1,024 entries); the head is the first entry of
/// the key's line. Both are bounded per job at any key length.
pub(crate) const KEY_WAITS: &str = "SELECT j.queue, j.seq, (
    (SELECT coalesce(sum(n), 0) FROM key_blocks
        WHERE queue = j.queue AND key = j.key AND level = 1 AND block < (j.seq >> 20))
  + (SELECT coalesce(sum(n), 0) FROM key_blocks
        WHERE queue = j.queue AND key = j.key AND level = 0
          AND block >= ((j.seq >> 20) << 10) AND block < (j.seq >> 10))
  + (SELECT count(*) FROM jobs WHERE queue = j.queue AND key = j.key AND seq IS NOT NULL
        AND state IN ('scheduled', 'queued', 'running')
        AND seq >= ((j.seq >> 10) << 10) AND seq < j.seq)
  )::bigint,
    (SELECT id FROM jobs WHERE queue = j.queue AND key = j.key AND seq IS NOT NULL
        AND state IN ('scheduled', 'queued', 'running') AND seq < j.seq ORDER BY seq LIMIT 1)
    FROM unnest($1::text[], $2::text[], $3::bigint[]) AS j(queue, key, seq)";
/// Sets `position` on every waiting job of `jobs` that has none, in one
/// round trip ([`POSITIONS`]).
pub(crate) async fn fill_positions(tx: Db<'_, '_>, jobs: &mut [Job]) -> Res<()> {
    let todo: Vec<usize> = (0..jobs.len())
        .filter(|&i| jobs[i].state.is_waiting() && jobs[i].position.is_none())
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let queues: Vec<&str> = todo.iter().map(|&i| jobs[i].queue.as_str()).collect();
    let seqs: Vec<i64> = todo.iter().map(|&i| jobs[i].seq).collect();
    let rows = tx
        .query(POSITIONS, &[&queues, &seqs])
        .await
        .map_err(map_err)?;
    let found: HashMap<(String, i64), i64> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    for &i in &todo {
        let job = &mut jobs[i];
        job.position = found
            .get(&(job.queue.clone(), job.seq))
            .map(|n| (*n).max(0) as u64);
    }
    Ok(())
}

/// A keyed job's line: the unfinished jobs of its key ahead of it, and the
/// first of them (the one holding the key).
type KeyLine = (i64, Option<String>);

/// The lines of the jobs `which` of `jobs` (each with a key), by index, in
/// one round trip ([`KEY_WAITS`]).
async fn key_lines(tx: Db<'_, '_>, jobs: &[Job], which: &[usize]) -> Res<HashMap<usize, KeyLine>> {
    if which.is_empty() {
        return Ok(HashMap::new());
    }
    let queues: Vec<&str> = which.iter().map(|&i| jobs[i].queue.as_str()).collect();
    let keys: Vec<&str> = which
        .iter()
        .map(|&i| jobs[i].key.as_deref().unwrap_or_default())
        .collect();
    let seqs: Vec<i64> = which.iter().map(|&i| jobs[i].seq).collect();
    let index: HashMap<(&str, i64), usize> = which
        .iter()
        .map(|&i| ((jobs[i].queue.as_str(), jobs[i].seq), i))
        .collect();
    let mut out = HashMap::with_capacity(which.len());
    for r in tx
        .query(KEY_WAITS, &[&queues, &keys, &seqs])
        .await
        .map_err(map_err)?
    {
        let (queue, seq): (String, i64) = (r.get(0), r.get(1));
        if let Some(&i) = index.get(&(queue.as_str(), seq)) {
            out.insert(i, (r.get(2), r.get(3)));
        }
    }
    Ok(out)
}

/// Sets `position`, `key_position` and `wait_facts` on every waiting job of
/// `jobs`: one round trip for the positions, one for the keys' lines
/// ([`KEY_WAITS`]), and each queue's configuration and running count once.
pub(crate) async fn fill_waits(tx: Db<'_, '_>, jobs: &mut [Job]) -> Res<()> {
    let keyed: Vec<usize> = (0..jobs.len())
        .filter(|&i| jobs[i].state.is_waiting() && jobs[i].key.is_some())
        .collect();
    let lines = key_lines(tx, jobs, &keyed).await?;
    apply_waits(tx, jobs, lines).await
}

/// [`fill_waits`] for the jobs an enqueue answers, in the batch's order
/// (`created[i]`: job `i` is new, not a replay). A batch's new jobs have
/// consecutive `seq`s, so between two of them of one key lie only jobs of
/// the batch: the key's line is read once, for its first new job, and
/// counted up along the batch (the unfinished ones), instead of read again
/// for each of up to `MAX_BATCH_JOBS` jobs. Should the `seq`s not be
/// consecutive, every line is read.
pub(crate) async fn fill_enqueue_waits(
    tx: Db<'_, '_>,
    jobs: &mut [Job],
    created: &[bool],
) -> Res<()> {
    let new: Vec<usize> = (0..jobs.len()).filter(|&i| created[i]).collect();
    if !new.windows(2).all(|w| jobs[w[1]].seq == jobs[w[0]].seq + 1) {
        return fill_waits(tx, jobs).await;
    }
    // Read: each waiting keyed replay, and each key's first new job.
    let mut read = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let Some(key) = &job.key else { continue };
        if !created[i] {
            if job.state.is_waiting() {
                read.push(i);
            }
        } else if seen.insert(key.as_str()) {
            read.push(i);
        }
    }
    let mut lines = key_lines(tx, jobs, &read).await?;
    let mut ahead: HashMap<&str, KeyLine> = HashMap::new();
    for &i in &new {
        let job = &jobs[i];
        let Some(key) = job.key.as_deref() else {
            continue;
        };
        let line = match ahead.remove(key) {
            Some(line) => line,
            None => lines.get(&i).cloned().unwrap_or((0, None)),
        };
        let next = if job.state.is_finished() {
            line.clone()
        } else {
            (line.0 + 1, line.1.clone().or_else(|| Some(job.id.clone())))
        };
        lines.insert(i, line);
        ahead.insert(key, next);
    }
    apply_waits(tx, jobs, lines).await
}

/// Fills the positions, then the key positions from `lines` (by index)
/// and the wait facts of every waiting job of `jobs`.
async fn apply_waits(
    tx: Db<'_, '_>,
    jobs: &mut [Job],
    mut lines: HashMap<usize, KeyLine>,
) -> Res<()> {
    fill_positions(tx, jobs).await?;
    let mut queues: HashMap<String, (QueueConfig, u64)> = HashMap::new();
    for (i, job) in jobs.iter_mut().enumerate() {
        if !job.state.is_waiting() {
            continue;
        }
        if !queues.contains_key(&job.queue) {
            let config = queue_row(tx, &job.queue).await?.unwrap_or_default();
            let running = running_count(tx, &job.queue).await?;
            queues.insert(job.queue.clone(), (config, running));
        }
        let (config, running) = &queues[&job.queue];
        let mut key_head = None;
        if job.key.is_some() {
            let (ahead, head) = lines.remove(&i).unwrap_or((0, None));
            job.key_position = Some(ahead.max(0) as u64);
            key_head = head;
        }
        job.wait_facts = Some(WaitFacts {
            paused: config.paused,
            concurrency: config.concurrency,
            running: *running,
            has_executor: config.executor.is_some(),
            key_head,
        });
    }
    Ok(())
}
