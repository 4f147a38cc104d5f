//! The sequencer: `seq` in commit order (contract section 8).
//!
//! A plain sequence does not give it: a transaction that took `seq` 10 and
//! commits after the one that took 11 would let a claimer start 11 while 10
//! is still invisible. So an enqueue inserts its jobs *unnumbered* (`seq`
//! NULL: no claim, count or read sees them) and commits, holding no lock
//! that any other enqueue waits for. Then a numbering pass, in a
//! transaction of its own:
//! 1. locks the sequencer's row (`seq_counter … FOR UPDATE`): passes run
//!    one at a time, database-wide;
//! 2. reads every committed unnumbered row, in insertion order (`batch`,
//!    `batch_pos`: a batch's jobs together, in the batch's order), and
//!    locks their queues' rows (name order);
//! 3. gives them the next `seq`s and their key-head flags, and commits.
//!
//! Every row a pass numbers had committed before the pass read it, and every
//! row committed later is numbered by a later pass, above it: a job becomes
//! visible (numbered) in `seq` order, and no claimer can ever see a higher
//! `seq` before a lower one of its queue. The enqueue that committed the
//! rows runs the pass itself before it answers; if it dies in between, the
//! next pass anyone runs (another enqueue, a retry, a maintenance pass)
//! numbers its rows. A transaction that enqueues and stays open long holds
//! only its own rows: everyone else's enqueues go on.

use std::collections::HashSet;

use futures::future::try_join_all;
use orderly_core::{JobState, StoreError};
use tokio_postgres::Row;

use super::Op;
use crate::rows::{map_err, Res};

/// A committed unnumbered row, as a pass reads it.
struct Pending {
    id: String,
    queue: String,
    key: Option<String>,
    state: JobState,
    enqueued_at: i64,
}

impl Pending {
    fn from_row(row: &Row) -> Res<Pending> {
        let state: String = row.get("state");
        Ok(Pending {
            id: row.get("id"),
            queue: row.get("queue"),
            key: row.get("key"),
            state: JobState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown job state {state:?}")))?,
            enqueued_at: row.get("enqueued_at"),
        })
    }
}

/// The most rows one pass starts with (the rest wait for the next pass);
/// it also takes the rest of the batch it stops in.
pub(crate) const PASS_LIMIT: i64 = 10_000;

/// Committed unnumbered rows in insertion order. (`jobs_unnumbered`)
pub(crate) const PENDING: &str = "SELECT id, queue, key, state, enqueued_at, batch, batch_pos \
    FROM jobs WHERE seq IS NULL ORDER BY batch, batch_pos LIMIT $1";

/// The committed unnumbered rows of batch $1 after position $2, in order:
/// the rest of a batch a pass reached its limit in. (`jobs_unnumbered`)
pub(crate) const PENDING_REST_OF_BATCH: &str = "SELECT id, queue, key, state, enqueued_at, batch, \
    batch_pos FROM jobs WHERE seq IS NULL AND batch = $1 AND batch_pos > $2 ORDER BY batch_pos";

impl Op<'_, '_> {
    /// Locks the sequencer's row and returns the next `seq` it hands out.
    pub async fn lock_sequencer(&self) -> Res<i64> {
        Ok(self
            .tx
            .query_one(
                "SELECT next_seq FROM seq_counter WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await
            .map_err(map_err)?
            .get(0))
    }

    /// Stores the sequencer's next `seq` (the caller holds its lock).
    pub async fn set_next_seq(&self, next: i64) -> Res<()> {
        self.tx
            .execute(
                "UPDATE seq_counter SET next_seq = $1 WHERE id = 1",
                &[&next],
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// One numbering pass (see the module docs). Returns how many rows it
    /// numbered; each becomes a job, recorded in [`Op::changes`].
    pub async fn number_pending(&mut self) -> Res<u64> {
        let mut next = self.lock_sequencer().await?;
        let mut rows = self
            .tx
            .query(PENDING, &[&PASS_LIMIT])
            .await
            .map_err(map_err)?;
        if rows.is_empty() {
            return Ok(0);
        }
        // A pass never stops inside a batch: if it did, a batch committed
        // before the next pass but inserted earlier (a lower `batch`) would
        // be numbered between this batch's two parts, below jobs that
        // committed before it. A batch is bounded in size, so this is too.
        if rows.len() as i64 == PASS_LIMIT {
            let last = rows.last().expect("a full pass has rows");
            let (batch, pos): (i64, i64) = (last.get("batch"), last.get("batch_pos"));
            let rest = self
                .tx
                .query(PENDING_REST_OF_BATCH, &[&batch, &pos])
                .await
                .map_err(map_err)?;
            rows.extend(rest);
        }
        let queues: Vec<String> = rows.iter().map(|r| r.get("queue")).collect();
        self.lock_queues(&queues).await?;
        let rows = rows
            .iter()
            .map(Pending::from_row)
            .collect::<Res<Vec<Pending>>>()?;
        // Key heads: a keyed row heads its key if no numbered unfinished job
        // of the key exists, asked once per key (none of this pass's rows is
        // numbered yet); a later row of the same key never heads it (the
        // earlier one is unfinished). The questions go out pipelined: one
        // round trip for the pass, not one per row.
        let mut first_of_key = HashSet::new();
        let asked: Vec<&Pending> = rows
            .iter()
            .filter(|r| {
                r.key
                    .as_ref()
                    .is_some_and(|k| first_of_key.insert((r.queue.as_str(), k.as_str())))
            })
            .collect();
        let answers =
            try_join_all(asked.iter().map(|r| {
                self.has_unfinished_of_key(&r.queue, r.key.as_deref().unwrap_or_default())
            }))
            .await?;
        let free_keys: HashSet<(&str, &str)> = asked
            .iter()
            .zip(answers)
            .filter(|(_, unfinished)| !unfinished)
            .map(|(r, _)| (r.queue.as_str(), r.key.as_deref().unwrap_or_default()))
            .collect();
        let mut headed = HashSet::new();
        let numbered: Vec<(&Pending, i64, bool)> = rows
            .iter()
            .map(|r| {
                let head = match &r.key {
                    None => true,
                    Some(k) => {
                        let key = (r.queue.as_str(), k.as_str());
                        free_keys.contains(&key) && headed.insert(key)
                    }
                };
                let seq = next;
                next += 1;
                (r, seq, head)
            })
            .collect();
        // The same statement per row as ever (its plan is an index lookup
        // by id), pipelined.
        let tx = self.tx;
        try_join_all(numbered.iter().map(|(r, seq, head)| async move {
            tx.execute(
                "UPDATE jobs SET seq = $2, head = $3 WHERE id = $1",
                &[&r.id, seq, head],
            )
            .await
            .map_err(map_err)
        }))
        .await?;
        for (r, seq, _) in numbered {
            self.moved(orderly_core::StateChange {
                id: r.id.clone(),
                queue: r.queue.clone(),
                key: r.key.clone(),
                seq,
                from: None,
                to: r.state,
                at: r.enqueued_at,
                enqueued_at: r.enqueued_at,
                started_at: None,
                lease_lost: false,
            });
        }
        self.set_next_seq(next).await?;
        Ok(rows.len() as u64)
    }
}
