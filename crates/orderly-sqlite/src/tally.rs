//! The counter tables (`queue_counts`, `waiting_blocks`, `key_blocks`), kept
//! by the writer in step with the jobs table.
//!
//! Up to schema v6 triggers kept them: five trigger programs ran for every
//! update of a job row's state, each a sub-program frame SQLite allocated
//! and zeroed before testing its `WHEN` (about 42,000 instructions per
//! claim + complete, docs/performance.md), and a batch of 1,000 jobs ran
//! 3,000 counter upserts. Since v7 every write of a job row that changes its
//! state or `seq` (or inserts or deletes it) records the change here, in
//! the same function that writes the row, and [`Tally::flush`] writes the
//! sum of a request's changes once per touched counter row, before the
//! request's savepoint is released. So the counters commit (or roll back)
//! with the rows they count, as they did with triggers.
//!
//! Nothing in the writer reads a counter table with changes still pending:
//! its count reads (`WriteCtx::running_count` and the others) flush first.
//! The rules are the triggers' rules, in one place ([`Tally::row`]); the
//! tests recount every table from the jobs after each kind of write.

use std::collections::{BTreeMap, HashMap};

use orderly_core::JobState;
use rusqlite::{params, Connection, ToSql};

use crate::kept::{KeptStatements, Prepare};
use crate::rows::{map_err, Res};
use crate::sql::BLOCK_BITS;

/// Bits of `seq` a level-1 block spans (level 0 spans [`BLOCK_BITS`]).
const LEVEL1_BITS: u32 = 2 * BLOCK_BITS;

/// A job row as the counters see it: its state and its `seq`.
pub(crate) type Counted = (JobState, i64);

/// Changes to the counter rows not yet written.
#[derive(Default, Clone)]
pub(crate) struct Tally {
    /// `queue_counts`: queue → change of each state's count, in
    /// `JobState::ALL`'s order (the row's columns).
    states: BTreeMap<String, [i64; 6]>,
    /// `waiting_blocks`: (queue, level, block) → change.
    waiting: BTreeMap<(String, i64, i64), i64>,
    /// `key_blocks`: (queue, key, level, block) → change.
    keys: BTreeMap<(String, String, i64, i64), i64>,
}

/// The place of `state` in `JobState::ALL` (and among `queue_counts`'s columns).
fn slot(state: JobState) -> usize {
    match state {
        JobState::Scheduled => 0,
        JobState::Queued => 1,
        JobState::Running => 2,
        JobState::Succeeded => 3,
        JobState::Failed => 4,
        JobState::Cancelled => 5,
    }
}

fn waiting(state: JobState) -> bool {
    matches!(state, JobState::Scheduled | JobState::Queued)
}

fn unfinished(state: JobState) -> bool {
    matches!(
        state,
        JobState::Scheduled | JobState::Queued | JobState::Running
    )
}

/// The level-0 and level-1 blocks of `seq` whose rows are kept: those
/// below `closed` (the first open level-0 block, schema v12; at level 1,
/// `closed >> BLOCK_BITS`). An open block has no row: no read uses one.
fn closed_blocks(seq: i64, closed: i64) -> impl Iterator<Item = (i64, i64)> {
    [
        (0, seq >> BLOCK_BITS, closed),
        (1, seq >> LEVEL1_BITS, closed >> BLOCK_BITS),
    ]
    .into_iter()
    .filter(|(_, block, below)| block < below)
    .map(|(level, block, _)| (level, block))
}

impl Tally {
    /// Records that a job row of `queue` (with `key`) went from `old` to
    /// `new` (`None`: the row did not exist, or no longer does), while the
    /// level-0 blocks below `closed` are the closed ones (see
    /// `schema::v12`). A job's queue and key never change.
    pub fn row(
        &mut self,
        queue: &str,
        key: Option<&str>,
        old: Option<Counted>,
        new: Option<Counted>,
        closed: i64,
    ) {
        let state = |c: Option<Counted>| c.map(|(s, _)| s);
        if state(old) != state(new) {
            let counts = match self.states.get_mut(queue) {
                Some(counts) => counts,
                None => self.states.entry(queue.into()).or_default(),
            };
            if let Some((s, _)) = old {
                counts[slot(s)] -= 1;
            }
            if let Some((s, _)) = new {
                counts[slot(s)] += 1;
            }
        }
        // A row counts in a block while it is in the block's states at its
        // `seq`; a move is a leave from the old place and an entry at the new.
        let place = |c: Option<Counted>, counts: fn(JobState) -> bool| {
            c.filter(|(s, _)| counts(*s)).map(|(_, seq)| seq)
        };
        let (left, entered) = (place(old, waiting), place(new, waiting));
        if left != entered {
            for (seq, d) in [(left, -1), (entered, 1)] {
                for (level, block) in seq.into_iter().flat_map(|s| closed_blocks(s, closed)) {
                    *self
                        .waiting
                        .entry((queue.into(), level, block))
                        .or_default() += d;
                }
            }
        }
        let Some(key) = key else { return };
        let (left, entered) = (place(old, unfinished), place(new, unfinished));
        if left != entered {
            for (seq, d) in [(left, -1), (entered, 1)] {
                for (level, block) in seq.into_iter().flat_map(|s| closed_blocks(s, closed)) {
                    *self
                        .keys
                        .entry((queue.into(), key.into(), level, block))
                        .or_default() += d;
                }
            }
        }
    }

    /// Adds `other`'s changes to these.
    pub fn merge(&mut self, other: Tally) {
        for (queue, ds) in other.states {
            let counts = self.states.entry(queue).or_default();
            for (c, d) in counts.iter_mut().zip(ds) {
                *c += d;
            }
        }
        for (k, d) in other.waiting {
            *self.waiting.entry(k).or_default() += d;
        }
        for (k, d) in other.keys {
            *self.keys.entry(k).or_default() += d;
        }
    }

    /// The pending change of `queue`'s count of `state`.
    pub fn state_delta(&self, queue: &str, state: JobState) -> i64 {
        if self.states.is_empty() {
            return 0;
        }
        self.states
            .get(queue)
            .map_or(0, |counts| counts[slot(state)])
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.waiting.is_empty() && self.keys.is_empty()
    }

    /// Forgets what is pending (its request rolled back).
    pub fn clear(&mut self) {
        *self = Tally::default();
    }

    /// Writes what is pending, one statement per counter row that changed
    /// (a queue's counts by state are one row; a `key_blocks` row that falls
    /// to zero is deleted, as keys come and go, by a second statement; other
    /// rows stay), and forgets it. The state
    /// counts `live` holds are moved with the rows written.
    ///
    /// Each row is updated in place and inserted only when the update found
    /// none: almost every row written is there already, and an upsert
    /// (`INSERT … ON CONFLICT DO UPDATE`) first tries the insert (claim_probe:
    /// 1–2% of the writer's instructions, stop 23).
    pub fn flush(&mut self, conn: &KeptStatements<'_>, live: &mut LiveCounts) -> Res<()> {
        if self.is_empty() {
            return Ok(());
        }
        let Tally {
            states,
            waiting,
            keys,
        } = std::mem::take(self);
        let run = || -> rusqlite::Result<()> {
            for (queue, d) in states.iter().filter(|(_, d)| d.iter().any(|d| *d != 0)) {
                let mut changed = d.iter().enumerate().filter(|(_, d)| **d != 0);
                if let (Some((i, n)), None) = (changed.next(), changed.next()) {
                    // One state's count (an enqueue): a statement that writes one column.
                    let (update, insert) = ONE_COUNT[i];
                    add_to_row(conn, update, insert, params![queue, n])?;
                    continue;
                }
                add_to_row(
                    conn,
                    "UPDATE queue_counts SET scheduled = scheduled + ?2, queued = queued + ?3,
                        running = running + ?4, succeeded = succeeded + ?5, failed = failed + ?6,
                        cancelled = cancelled + ?7 WHERE queue = ?1",
                    "INSERT INTO queue_counts (queue, scheduled, queued, running, succeeded, failed, cancelled)
                        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![queue, d[0], d[1], d[2], d[3], d[4], d[5]],
                )?;
            }
            for ((queue, level, block), d) in waiting.iter().filter(|(_, d)| **d != 0) {
                add_to_row(
                    conn,
                    "UPDATE waiting_blocks SET n = n + ?4 WHERE queue = ?1 AND level = ?2 AND block = ?3",
                    "INSERT INTO waiting_blocks (queue, level, block, n) VALUES (?1, ?2, ?3, ?4)",
                    params![queue, level, block, d],
                )?;
            }
            // No `RETURNING n` (SQLite gathers its rows in an ephemeral
            // table): a row that went down is deleted if it reached zero.
            for ((queue, key, level, block), d) in keys.iter().filter(|(_, d)| **d != 0) {
                let existed = add_to_row(
                    conn,
                    "UPDATE key_blocks SET n = n + ?5
                     WHERE queue = ?1 AND key = ?2 AND level = ?3 AND block = ?4",
                    "INSERT INTO key_blocks (queue, key, level, block, n) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![queue, key, level, block, d],
                )?;
                if existed && *d < 0 {
                    conn.with(
                        "DELETE FROM key_blocks
                         WHERE queue = ?1 AND key = ?2 AND level = ?3 AND block = ?4 AND n = 0",
                        |s| s.execute(params![queue, key, level, block]),
                    )?;
                }
            }
            Ok(())
        };
        run().map_err(map_err)?;
        for (queue, d) in &states {
            live.add(queue, d);
        }
        Ok(())
    }
}

/// Writes the rows of the level-0 blocks `from..to`, and of the level-1
/// blocks they complete, which were open (schema v12: no row of an open
/// block exists, and no change to one is pending). The level-0 rows are
/// counted in one read of the blocks' jobs by `seq` (at most 1,024 rows per
/// block, once per 1,024 `seq`s handed out), both tables at once and added
/// up here, not by SQL's `GROUP BY`, which sorted them (about 4.6 M
/// instructions per close, claim_probe); the level-1 rows are sums of their
/// level-0 rows (`sql::CLOSE_WAITING_LEVEL1`, `sql::CLOSE_KEY_LEVEL1`).
pub(crate) fn close_blocks(conn: &KeptStatements<'_>, from: i64, to: i64) -> rusqlite::Result<()> {
    let mut waiting: HashMap<(String, i64), i64> = HashMap::new();
    let mut keys: HashMap<(String, String, i64), i64> = HashMap::new();
    conn.with(crate::sql::CLOSE_BLOCK_JOBS, |s| {
        let mut rows = s.query(params![from << BLOCK_BITS, to << BLOCK_BITS])?;
        while let Some(r) = rows.next()? {
            let state = r.get_ref(2)?.as_str()?;
            let (waits, unfinished) = match state {
                "scheduled" | "queued" => (true, true),
                "running" => (false, true),
                _ => (false, false),
            };
            if !unfinished {
                continue;
            }
            let queue: String = r.get(0)?;
            let block = r.get::<_, i64>(3)? >> BLOCK_BITS;
            if let Some(key) = r.get::<_, Option<String>>(1)? {
                *keys.entry((queue.clone(), key, block)).or_default() += 1;
            }
            if waits {
                *waiting.entry((queue, block)).or_default() += 1;
            }
        }
        Ok(())
    })?;
    for ((queue, block), n) in &waiting {
        conn.with(
            "INSERT INTO waiting_blocks (queue, level, block, n) VALUES (?1, 0, ?2, ?3)
             ON CONFLICT (queue, level, block) DO UPDATE SET n = excluded.n",
            |s| s.execute(params![queue, block, n]),
        )?;
    }
    for ((queue, key, block), n) in &keys {
        conn.with(
            "INSERT INTO key_blocks (queue, key, level, block, n) VALUES (?1, ?2, 0, ?3, ?4)
             ON CONFLICT (queue, key, level, block) DO UPDATE SET n = excluded.n",
            |s| s.execute(params![queue, key, block, n]),
        )?;
    }
    let (level1_from, level1_to) = (from >> BLOCK_BITS, to >> BLOCK_BITS);
    if level1_to > level1_from {
        let blocks = params![level1_from << BLOCK_BITS, level1_to << BLOCK_BITS];
        conn.with(crate::sql::CLOSE_WAITING_LEVEL1, |s| s.execute(blocks))?;
        conn.with(crate::sql::CLOSE_KEY_LEVEL1, |s| s.execute(blocks))?;
    }
    Ok(())
}

/// The update and the insert of one state's count of a queue (?1) by ?2,
/// in `JobState::ALL`'s order.
const ONE_COUNT: [(&str, &str); 6] = {
    macro_rules! one {
        ($col:literal) => {
            (
                concat!(
                    "UPDATE queue_counts SET ",
                    $col,
                    " = ",
                    $col,
                    " + ?2 WHERE queue = ?1"
                ),
                concat!(
                    "INSERT INTO queue_counts (queue, ",
                    $col,
                    ") VALUES (?1, ?2)"
                ),
            )
        };
    }
    [
        one!("scheduled"),
        one!("queued"),
        one!("running"),
        one!("succeeded"),
        one!("failed"),
        one!("cancelled"),
    ]
};

/// Adds to a counter row: `update` changes it in place, and `insert` (with
/// the same parameters) makes it when the update found none. True when the
/// row was there.
fn add_to_row(
    conn: &KeptStatements<'_>,
    update: &'static str,
    insert: &'static str,
    params: &[&dyn ToSql],
) -> rusqlite::Result<bool> {
    if conn.with(update, |s| s.execute(params))? > 0 {
        return Ok(true);
    }
    conn.with(insert, |s| s.execute(params))?;
    Ok(false)
}

/// The writer's copy of the `queue_counts` rows it reads (each queue's
/// waiting and running counts), as written in the open transaction: a
/// claim checks the running count against the queue's concurrency and an
/// enqueue answers with its position, and neither then reads a row. Only
/// the writer writes `queue_counts`, always through [`Tally::flush`], which
/// moves these with the rows; a rollback forgets them all
/// ([`LiveCounts::clear`]), and the next use reads the rows again.
#[derive(Default)]
pub(crate) struct LiveCounts {
    queues: HashMap<String, Live>,
}

/// One queue's counts the writer reads.
#[derive(Clone, Copy, Default)]
pub(crate) struct Live {
    /// `scheduled` + `queued`.
    pub waiting: i64,
    /// `running`.
    pub running: i64,
}

impl LiveCounts {
    /// `queue`'s counts as stored, read once and then kept.
    pub fn get(&mut self, conn: &Connection, queue: &str) -> Res<Live> {
        if let Some(live) = self.queues.get(queue) {
            return Ok(*live);
        }
        let live = Live {
            waiting: crate::read::waiting_count(conn, queue)? as i64,
            running: crate::read::running_count(conn, queue)? as i64,
        };
        self.queues.insert(queue.to_string(), live);
        Ok(live)
    }

    /// Moves a kept queue's counts by `d` (its row just written; one
    /// change per state, in `JobState::ALL`'s order).
    fn add(&mut self, queue: &str, d: &[i64; 6]) {
        let Some(live) = self.queues.get_mut(queue) else {
            return;
        };
        live.waiting += d[slot(JobState::Scheduled)] + d[slot(JobState::Queued)];
        live.running += d[slot(JobState::Running)];
    }

    /// Forgets every kept count (their transaction, or part of it, rolled back).
    pub fn clear(&mut self) {
        self.queues.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    /// Every block closed: each change reaches both levels' rows.
    const ALL_CLOSED: i64 = i64::MAX;

    fn states(t: &Tally) -> Vec<(&str, i64)> {
        t.states
            .values()
            .flat_map(|d| JobState::ALL.into_iter().zip(d.iter()))
            .filter(|(_, d)| **d != 0)
            .map(|(s, d)| (s.as_str(), *d))
            .collect()
    }

    /// Each kind of move changes exactly the rows the v6 triggers changed.
    #[test]
    fn moves_change_the_rows_the_triggers_did() {
        // An insert counts its state, its waiting blocks and its key's blocks.
        let mut t = Tally::default();
        t.row("q", Some("k"), None, Some((Queued, 5)), ALL_CLOSED);
        assert_eq!(states(&t), [("queued", 1)]);
        assert_eq!(t.waiting.len(), 2);
        assert_eq!(t.keys.len(), 2);
        // A claim moves the state; it stays unfinished in place, so no block changes.
        let mut t = Tally::default();
        t.row(
            "q",
            Some("k"),
            Some((Queued, 5)),
            Some((Running, 5)),
            ALL_CLOSED,
        );
        assert_eq!(states(&t), [("queued", -1), ("running", 1)]);
        assert!(t.keys.is_empty());
        assert!(t.waiting.values().all(|d| *d == -1));
        // Scheduled to queued: only the state counts move.
        let mut t = Tally::default();
        t.row(
            "q",
            Some("k"),
            Some((Scheduled, 5)),
            Some((Queued, 5)),
            ALL_CLOSED,
        );
        assert!(t.waiting.is_empty() && t.keys.is_empty());
        // A retry with a new seq leaves no block and enters the new one.
        let mut t = Tally::default();
        t.row(
            "q",
            Some("k"),
            Some((Failed, 5)),
            Some((Queued, 2_000_000)),
            ALL_CLOSED,
        );
        assert!(t.waiting.values().all(|d| *d == 1) && t.waiting.len() == 2);
        assert!(t.keys.keys().all(|(_, _, _, b)| *b >= 1));
        // A delete of a finished job takes only its state count.
        let mut t = Tally::default();
        t.row("q", None, Some((Succeeded, 5)), None, ALL_CLOSED);
        assert_eq!(states(&t), [("succeeded", -1)]);
        assert!(t.waiting.is_empty() && t.keys.is_empty());
        // Changes that cancel out net to zero and write nothing.
        let mut t = Tally::default();
        t.row("q", None, None, Some((Queued, 7)), ALL_CLOSED);
        t.row("q", None, Some((Queued, 7)), None, ALL_CLOSED);
        assert!(t
            .states
            .values()
            .flatten()
            .chain(t.waiting.values())
            .all(|d| *d == 0));
    }

    /// Open blocks (schema v12) have no rows: a change there touches none.
    #[test]
    fn changes_in_open_blocks_touch_no_block_row() {
        // Block 0 open: the insert counts its state only.
        let mut t = Tally::default();
        t.row("q", Some("k"), None, Some((Queued, 5)), 0);
        assert_eq!(states(&t), [("queued", 1)]);
        assert!(t.waiting.is_empty() && t.keys.is_empty());
        // Level-0 block 0 closed, its level-1 block still open.
        let mut t = Tally::default();
        t.row("q", Some("k"), None, Some((Queued, 5)), 1);
        assert_eq!(
            t.waiting.keys().collect::<Vec<_>>(),
            [&("q".to_string(), 0, 0)]
        );
        assert_eq!(t.keys.len(), 1);
        // A retry from a closed block to an open one: a leave, no entry.
        let mut t = Tally::default();
        t.row("q", None, Some((Queued, 5)), Some((Queued, 3_000)), 2);
        assert_eq!(
            t.waiting.iter().collect::<Vec<_>>(),
            [(&("q".to_string(), 0, 0), &-1)]
        );
    }
}
