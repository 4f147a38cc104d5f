//! The writer's context: its connection, the counters it hands out, and
//! what it caches because only it writes.
//!
//! Counters (`seq`, start numbers) are never handed out twice, at any
//! durability level. Under `fsync` every commit that issues one is fsynced,
//! and on open the counters start above the highest value still stored (and
//! above `meta`, which retention writes before it deletes rows). Where the
//! commits that issue a counter may go unsynced (start numbers under
//! `accepted`, both under `none`), the writer first *reserves* a block of
//! values in `meta` and makes the commit that raised the reservation
//! fsynced: a machine crash may lose unsynced commits, but never the
//! reservation that covers what they issued, so the next values are above it.

use std::collections::HashMap;

use orderly_core::{Changes, JobState, Millis, QueueConfig, StateChange};
use rusqlite::{params, Connection, Statement};

use crate::kept::{KeptStatements, Prepare};
use crate::parked::Parking;
use crate::read::queue_row;
use crate::rows::{map_err, to_text, Res};
use crate::sql;
use crate::tally::{Counted, LiveCounts, Tally};
use crate::Durability;

/// Values reserved at a time where reservations are needed.
pub(crate) const RESERVE_BLOCK: i64 = 10_000;

/// The writer's connection and the counters it owns.
pub(crate) struct WriteCtx<'c> {
    /// The only connection that writes.
    pub conn: &'c Connection,
    /// Its statements, prepared once (see `kept`).
    pub kept: KeptStatements<'c>,
    counters: Counters,
    /// Which counters are reserved ahead (see module docs).
    reserve_seq: bool,
    reserve_start_no: bool,
    /// A reservation was raised in the transaction now open: its commit must be fsynced.
    needs_sync: bool,
    /// Queue configs, kept coherent because only this writer changes them.
    configs: HashMap<String, QueueConfig>,
    /// Per queue, a time no scheduled `run_at` and no running lease expiry of
    /// the queue is earlier than. While `now` is below it, a claim can skip
    /// promoting due jobs and reaping leases: there are none. It is lowered by
    /// every write that sets such a time, recomputed when a claim has looked
    /// (`catch_up_queue`), and forgotten on rollback (a missing entry means "look").
    due_floor: HashMap<String, Millis>,
    /// What the request being run changed (taken by the writer after each request).
    pub changes: Changes,
    /// The request's changes to the counter tables (see `tally`): merged
    /// into `group_tally` when it succeeds, forgotten when it rolls back.
    pub tally: Tally,
    /// The counter changes of the group's requests that succeeded, written
    /// once before the group commits (or before a read that needs them).
    group_tally: Tally,
    /// What of `group_tally` was written inside the current request's
    /// savepoint: if the request rolls back, it is pending again.
    flushed_group: Tally,
    /// Claims waiting in the writer for work (see `parked`).
    pub parking: Parking,
    /// The waiting and running counts the writer reads, kept (see [`LiveCounts`]).
    live: LiveCounts,
}

/// Counters to restore when an operation rolls back.
#[derive(Clone, Copy)]
pub(crate) struct Counters {
    next_seq: i64,
    next_start_no: i64,
    /// `meta` as written in the current transaction (durably so once committed).
    reserved_seq: i64,
    reserved_start_no: i64,
    /// The first open level-0 block (`meta.blocks_closed_below`, schema
    /// v12): the block counts below it are kept, those at and above it are
    /// not. Never below the block of a `seq` handed out.
    blocks_closed: i64,
}

impl<'c> WriteCtx<'c> {
    /// Wraps the writer connection, reading the counters.
    pub fn new(conn: &'c Connection, durability: Durability) -> Res<Self> {
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
        let (meta_seq, meta_start) = (meta("next_seq")?, meta("next_start_no")?);
        let blocks_closed = meta("blocks_closed_below")?;
        Ok(WriteCtx {
            conn,
            kept: KeptStatements::new(conn),
            counters: Counters {
                next_seq: meta_seq.max(max_seq + 1),
                next_start_no: meta_start.max(max_start + 1),
                reserved_seq: meta_seq,
                reserved_start_no: meta_start,
                blocks_closed,
            },
            reserve_seq: durability == Durability::None,
            reserve_start_no: durability != Durability::Fsync,
            needs_sync: false,
            configs: HashMap::new(),
            due_floor: HashMap::new(),
            changes: Changes::default(),
            tally: Tally::default(),
            group_tally: Tally::default(),
            flushed_group: Tally::default(),
            parking: Parking::default(),
            live: LiveCounts::default(),
        })
    }

    /// Runs `f` on the kept statement of `sql` (see `kept`).
    pub fn sql<T>(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<T>,
    ) -> Res<T> {
        self.kept.with(sql, f).map_err(map_err)
    }

    /// Runs a statement without parameters or rows (`BEGIN`, `COMMIT`, a savepoint).
    pub fn exec(&self, sql: &'static str) -> Res<()> {
        self.sql(sql, |s| s.execute([]).map(|_| ()))
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Puts counters back after a rollback, and forgets cached configs and
    /// due floors (they may be rolled back too).
    pub fn restore(&mut self, c: Counters) {
        self.counters = c;
        self.configs.clear();
        self.due_floor.clear();
        self.changes = Changes::default();
        self.tally.clear();
        self.group_tally.clear();
        self.flushed_group.clear();
        self.live.clear();
    }

    /// [`Self::restore`] after one request of a group rolled back to its
    /// savepoint: the counter changes of the requests before it stay
    /// pending, including those written inside the undone savepoint.
    pub fn restore_request(&mut self, c: Counters) {
        let group = std::mem::take(&mut self.group_tally);
        let mut undone = std::mem::take(&mut self.flushed_group);
        self.restore(c);
        undone.merge(group);
        self.group_tally = undone;
    }

    /// Starts a request: nothing of it is changed or counted yet.
    pub fn begin_request(&mut self) {
        self.changes = Changes::default();
        self.tally.clear();
        self.flushed_group.clear();
    }

    /// Ends a request that succeeded: its counter changes join the group's.
    pub fn end_request(&mut self) {
        let mine = std::mem::take(&mut self.tally);
        self.group_tally.merge(mine);
        self.flushed_group.clear();
    }

    /// Writes the group's pending counter changes, outside any savepoint,
    /// before the group commits.
    pub fn flush_group_tally(&mut self) -> Res<()> {
        self.flushed_group.clear();
        self.group_tally.flush(&self.kept, &mut self.live)
    }

    /// True (once) when the transaction just committed raised a reservation
    /// and so must reach the disk before anyone is answered.
    pub fn take_needs_sync(&mut self) -> bool {
        std::mem::take(&mut self.needs_sync)
    }

    /// Forgets a pending sync request (its transaction rolled back).
    pub fn clear_needs_sync(&mut self) {
        self.needs_sync = false;
    }

    fn write_meta(&self, name: &str, value: i64) -> Res<()> {
        self.sql("UPDATE meta SET value = ?2 WHERE name = ?1", |s| {
            s.execute(params![name, value])
        })?;
        Ok(())
    }

    /// Hands out the next `seq`.
    pub fn take_seq(&mut self) -> Res<i64> {
        let seq = self.counters.next_seq;
        if self.reserve_seq && seq >= self.counters.reserved_seq {
            let reserved = seq + RESERVE_BLOCK;
            self.write_meta("next_seq", reserved)?;
            self.counters.reserved_seq = reserved;
            self.needs_sync = true;
        }
        self.counters.next_seq += 1;
        if seq >> sql::BLOCK_BITS > self.counters.blocks_closed {
            self.close_blocks(seq >> sql::BLOCK_BITS)?;
        }
        Ok(seq)
    }

    /// Closes the blocks below level-0 block `to` not yet closed, before a
    /// `seq` of block `to` is handed out (see `schema::v12` and
    /// [`crate::tally::close_blocks`]), in this transaction, and moves the
    /// bound to `to`.
    fn close_blocks(&mut self, to: i64) -> Res<()> {
        let from = self.counters.blocks_closed;
        // The level-1 sums read level-0 rows: every pending change first.
        self.flush_tally()?;
        crate::tally::close_blocks(&self.kept, from, to).map_err(map_err)?;
        self.write_meta("blocks_closed_below", to)?;
        self.counters.blocks_closed = to;
        Ok(())
    }

    /// Gives back the `seq` just taken (an insert that turned out to be a replay).
    pub fn untake_seq(&mut self, seq: i64) {
        if self.counters.next_seq == seq + 1 {
            self.counters.next_seq = seq;
        }
    }

    /// Hands out the next start number.
    pub fn take_start_no(&mut self) -> Res<i64> {
        let n = self.counters.next_start_no;
        if self.reserve_start_no && n >= self.counters.reserved_start_no {
            let reserved = n + RESERVE_BLOCK;
            self.write_meta("next_start_no", reserved)?;
            self.counters.reserved_start_no = reserved;
            self.needs_sync = true;
        }
        self.counters.next_start_no += 1;
        Ok(n)
    }

    /// Writes the counters to `meta`, never below a reservation. Retention
    /// calls it in the transaction of its deletes (deleting rows could lower
    /// the highest value stored, which open starts above).
    pub fn persist_counters(&mut self) -> Res<()> {
        let c = self.counters;
        let seq = c.next_seq.max(c.reserved_seq);
        let start = c.next_start_no.max(c.reserved_start_no);
        self.write_meta("next_seq", seq)?;
        self.write_meta("next_start_no", start)?;
        self.counters.reserved_seq = seq;
        self.counters.reserved_start_no = start;
        Ok(())
    }

    /// On a clean close: the exact next values, so a restart leaves no gap.
    /// The caller commits this with an fsync.
    pub fn persist_exact_counters(&mut self) -> Res<()> {
        let c = self.counters;
        self.write_meta("next_seq", c.next_seq)?;
        self.write_meta("next_start_no", c.next_start_no)?;
        self.counters.reserved_seq = c.next_seq;
        self.counters.reserved_start_no = c.next_start_no;
        Ok(())
    }

    /// Records that a job row of `queue` went from `old` to `new` (its
    /// state and `seq`; `None` when it did not or no longer exists), for the
    /// counter tables. Every write of a job row's state or `seq` calls it.
    pub fn counted(
        &mut self,
        queue: &str,
        key: Option<&str>,
        old: Option<Counted>,
        new: Option<Counted>,
    ) {
        self.tally
            .row(queue, key, old, new, self.counters.blocks_closed);
    }

    /// Writes every counter change pending (the group's and the request's):
    /// before a read of `waiting_blocks`, `key_blocks` or a whole queue's
    /// counts in the writer. (The group's part is remembered: if the request
    /// rolls back, it is pending again.)
    pub fn flush_tally(&mut self) -> Res<()> {
        if self.group_tally.is_empty() && self.tally.is_empty() {
            return Ok(());
        }
        let mut all = std::mem::take(&mut self.group_tally);
        self.flushed_group.merge(all.clone());
        all.merge(std::mem::take(&mut self.tally));
        all.flush(&self.kept, &mut self.live)
    }

    /// The pending change of `queue`'s count of `state`, not yet written.
    fn pending(&self, queue: &str, state: JobState) -> i64 {
        self.group_tally.state_delta(queue, state) + self.tally.state_delta(queue, state)
    }

    /// Waiting jobs of `queue`, with every change so far counted (the
    /// table's row plus what is pending: no write needed).
    pub fn waiting_count(&mut self, queue: &str) -> Res<u64> {
        let stored = self.live.get(self.conn, queue)?.waiting;
        let pending =
            self.pending(queue, JobState::Queued) + self.pending(queue, JobState::Scheduled);
        Ok((stored + pending).max(0) as u64)
    }

    /// Running jobs of `queue`, with every change so far counted.
    pub fn running_count(&mut self, queue: &str) -> Res<u64> {
        let stored = self.live.get(self.conn, queue)?.running;
        Ok((stored + self.pending(queue, JobState::Running)).max(0) as u64)
    }

    /// Records a job's move for [`Changes`].
    pub fn moved(&mut self, change: StateChange) {
        self.changes.jobs.push(change);
    }

    /// Notes that `queue` now has a scheduled job or a lease expiring at `at`.
    pub fn lower_due_floor(&mut self, queue: &str, at: Millis) {
        if let Some(floor) = self.due_floor.get_mut(queue) {
            *floor = (*floor).min(at);
        }
    }

    /// True when the queue's due floor says nothing is due at `now`.
    pub fn nothing_due(&self, queue: &str, now: Millis) -> bool {
        self.due_floor.get(queue).is_some_and(|floor| now < *floor)
    }

    /// Records the queue's next due time after a catch-up looked at it.
    pub fn set_due_floor(&mut self, queue: &str, next: Option<Millis>) {
        self.due_floor
            .insert(queue.to_string(), next.unwrap_or(Millis::MAX));
    }

    /// The configuration of `queue`, if it exists.
    pub fn config(&mut self, queue: &str) -> Res<Option<QueueConfig>> {
        if let Some(c) = self.configs.get(queue) {
            return Ok(Some(c.clone()));
        }
        let c = queue_row(self.conn, queue)?;
        if let Some(c) = &c {
            self.configs.insert(queue.to_string(), c.clone());
        }
        Ok(c)
    }

    /// The queue's config, creating the queue with defaults when first used.
    pub fn config_or_create(&mut self, queue: &str, now: Millis) -> Res<QueueConfig> {
        if let Some(c) = self.config(queue)? {
            return Ok(c);
        }
        let c = QueueConfig::default();
        self.kept
            .with(
                "INSERT INTO queues (name, config, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                |s| {
                    s.execute(params![
                        queue,
                        to_text(&serde_json::to_value(&c).unwrap_or_default()),
                        now
                    ])
                },
            )
            .map_err(map_err)?;
        self.configs.insert(queue.to_string(), c.clone());
        Ok(c)
    }

    /// Caches a configuration just written.
    pub fn remember_config(&mut self, queue: &str, config: QueueConfig) {
        self.configs.insert(queue.to_string(), config);
    }

    /// Is any job of `key` in `queue` unfinished?
    pub fn has_unfinished_of_key(&self, queue: &str, key: &str) -> Res<bool> {
        self.kept
            .with(sql::KEY_HAS_UNFINISHED, |s| s.exists(params![queue, key]))
            .map_err(map_err)
    }

    /// Makes the next unfinished job of `key` (if any) its head.
    pub fn advance_key(&self, queue: &str, key: &str) -> Res<()> {
        self.kept
            .with(sql::ADVANCE_KEY, |s| s.execute(params![queue, key]))
            .map_err(map_err)?;
        Ok(())
    }
}

/// A change of one job, for [`WriteCtx::moved`].
pub(crate) fn change(
    job: &orderly_core::Job,
    from: Option<JobState>,
    to: JobState,
    at: Millis,
) -> StateChange {
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
