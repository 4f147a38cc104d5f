//! Enqueue: jobs of one batch get consecutive `seq`s in order; an id already
//! stored is an idempotent replay when queue, key and payload are the same,
//! a conflict otherwise.

use std::collections::HashMap;

use orderly_core::{rules, validate, EnqueueParams, Enqueued, Job, NewJob, StoreError, WaitFacts};
use rusqlite::{params, Connection, OptionalExtension};

use crate::ctx::{change, WriteCtx};
use crate::kept::Prepare;
use crate::read::key_line;
use crate::rows::{is_unique_violation, job_by_id, map_err, to_text, Res};

impl WriteCtx<'_> {
    /// Enqueues jobs in order (see `Store::job_enqueue_many`).
    pub(crate) fn job_enqueue_many(&mut self, p: &EnqueueParams) -> Res<Vec<Enqueued>> {
        validate::distinct_batch_ids(p.jobs.iter().map(|j| j.id.as_str()))?;
        let config = self.config_or_create(&p.queue, p.now)?;
        let mut out = Vec::with_capacity(p.jobs.len());
        // Every new job has a higher seq than any waiting job, so its position is
        // the number of waiting jobs before it: one read, then counted up. The
        // same holds for its key: the first job of a key in the batch reads the
        // key's unfinished jobs (a bounded read) and the one holding the key;
        // the next ones of that key count up from it.
        let mut next_position = self.waiting_count(&p.queue)?;
        let running = self.running_count(&p.queue)?;
        let mut lines: HashMap<&str, KeyLine> = HashMap::new();
        for new in &p.jobs {
            let payload = to_text(&new.payload);
            let seq = self.take_seq()?;
            let run_at = new.run_at.unwrap_or(p.now).max(p.now);
            let state = rules::waiting_state(run_at, p.now);
            let line = match &new.key {
                None => None,
                Some(k) => Some(match lines.get(k.as_str()) {
                    Some(line) => line.clone(),
                    None => {
                        // Its key's counter rows, with this request's changes written.
                        self.flush_tally()?;
                        KeyLine::read(self.conn, &p.queue, k, seq)?
                    }
                }),
            };
            let head = line.as_ref().is_none_or(|l| l.ahead == 0);
            let max_attempts = new.max_attempts.unwrap_or(config.max_attempts);
            // Insert first: ids are almost always new, so the unique index on `id`
            // is the only lookup; a taken id is then checked for an exact replay.
            let inserted = self.kept.with(
                    "INSERT INTO jobs (seq, id, queue, key, state, head, payload, max_attempts, timeout_ms, enqueued_at, run_at, first_seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?1)", |s| {
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
                self.untake_seq(seq);
                let existing = self.existing_for_replay(&p.queue, new, &payload)?;
                // Its position is filled in after the commit, on a read connection:
                // counting the line ahead of an old job is not the writer's work.
                out.push(Enqueued {
                    job: existing,
                    created: false,
                });
                continue;
            }
            self.counted(&p.queue, new.key.as_deref(), None, Some((state, seq)));
            if state == orderly_core::JobState::Scheduled {
                self.lower_due_floor(&p.queue, run_at);
            }
            if let (Some(k), Some(line)) = (&new.key, &line) {
                lines.insert(
                    k.as_str(),
                    KeyLine {
                        ahead: line.ahead + 1,
                        head: line.head.clone().or_else(|| Some(new.id.clone())),
                    },
                );
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
                key_position: line.as_ref().map(|l| l.ahead),
                wait_facts: Some(WaitFacts {
                    paused: config.paused,
                    concurrency: config.concurrency,
                    running,
                    has_executor: config.executor.is_some(),
                    key_head: line.and_then(|l| l.head),
                }),
                waiting_on: None,
                eta: None,
            };
            next_position += 1;
            self.moved(change(&job, None, state, p.now));
            out.push(Enqueued { job, created: true });
        }
        Ok(out)
    }

    /// The stored job with `new`'s id when `new` replays it exactly; `IdConflict` otherwise.
    fn existing_for_replay(&self, queue: &str, new: &NewJob, payload: &str) -> Res<Job> {
        let found: Option<(String, Option<String>, String)> = self
            .kept
            .with("SELECT queue, key, payload FROM jobs WHERE id = ?1", |s| {
                s.query_row([&new.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(map_err)?;
        match found {
            Some((q, k, pl)) if q == queue && k == new.key && pl == payload => {
                job_by_id(&self.kept, &new.id)?
                    .ok_or_else(|| StoreError::Backend(format!("job {:?} vanished", new.id)))
            }
            Some(_) => Err(StoreError::IdConflict { id: new.id.clone() }),
            None => Err(StoreError::Backend(format!(
                "id {:?} is taken but no job has it",
                new.id
            ))),
        }
    }
}

/// A key's line as a new job of the batch finds it: its unfinished jobs
/// ahead, and the first of them (the one holding the key).
#[derive(Clone)]
struct KeyLine {
    ahead: u64,
    head: Option<String>,
}

impl KeyLine {
    /// The line of `key` ahead of `seq`, read (`sql::KEY_POSITION`, `sql::KEY_HEAD`).
    fn read(conn: &Connection, queue: &str, key: &str, seq: i64) -> Res<KeyLine> {
        let (ahead, head) = key_line(conn, queue, key, seq)?;
        Ok(KeyLine { ahead, head })
    }
}
