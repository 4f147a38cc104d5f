//! The SQL text of the queries whose plans decide what a claim, a
//! maintenance pass, a purge or a page of the start log costs, and the test
//! that checks each reads its index instead of scanning a table.
//!
//! Cost follows what runs, not what waits: none of these may grow with the
//! number of jobs waiting behind the ones it touches.
//!
//! A bound `LIMIT` is written `LIMIT +?N`: SQLite's planner reads the value
//! bound to a bare `LIMIT ?N`, which marks the statement to be re-prepared
//! at every new binding, so a cached claim was parsed and planned again at
//! every call (about 66,000 instructions, a quarter of a claim; see
//! docs/performance.md). The unary `+` hides the value from the planner and
//! changes nothing else. (A bound `state = ?N` does the same when the planner
//! weighs a partial index: it is written `+?N` too.)
//!
//! A hot statement never writes `state IN ('queued', 'scheduled')`: SQLite
//! builds an ephemeral table of the list at every run (26,700 instructions
//! for the two-row `WAITING_COUNT`, more than the rest of an enqueue's
//! reads). Each state is its own lookup or count, added up.
//!
//! Every job is in exactly one of `jobs_ready` (the claimable queued jobs:
//! keyless ones and key heads) and `jobs_by_state` (all others; its
//! condition is `head = 0 OR state <> 'queued'`, schema v10). A read of
//! `jobs_by_state` names `state <> 'queued'` (any other state) or
//! `head = 0` (queued jobs behind their key): SQLite uses a partial index
//! only where a term of the query matches its condition, and these two
//! are the condition's two sides. A read of queued jobs reads both indexes
//! and adds up or merges by `seq`.

/// Is any job of this key unfinished? (`jobs_key_line`)
pub const KEY_HAS_UNFINISHED: &str = "SELECT 1 FROM jobs WHERE queue = ?1 AND key = ?2 AND state IN ('scheduled', 'queued', 'running') LIMIT 1";
/// The next unfinished job of a key becomes its head. (`jobs_key_line`)
pub const ADVANCE_KEY: &str = "UPDATE jobs SET head = 1 WHERE seq = (
                SELECT seq FROM jobs WHERE queue = ?1 AND key = ?2 AND state IN ('scheduled', 'queued', 'running')
                ORDER BY seq LIMIT 1)";
/// Due scheduled jobs of a queue become queued. (`jobs_due`)
pub const PROMOTE_DUE_IN_QUEUE: &str = "UPDATE jobs SET state = 'queued' WHERE queue = ?1 AND state = 'scheduled' AND run_at <= ?2 RETURNING id, queue, key, seq, enqueued_at";
/// Due scheduled jobs of every queue become queued. (`jobs_due_all`)
pub const PROMOTE_DUE_ALL: &str = "UPDATE jobs SET state = 'queued' WHERE state = 'scheduled' AND run_at <= ?1 RETURNING id, queue, key, seq, enqueued_at";
/// Expired leases of a queue. (`jobs_by_state`: the queue's running jobs, in
/// `seq` order, bounded by what runs)
pub const EXPIRED_IN_QUEUE: &str = "SELECT seq FROM jobs WHERE queue = ?1 AND state = 'running' AND state <> 'queued' AND lease_expires_at <= ?2 ORDER BY seq";
/// Expired leases of every queue, in no particular order (sorted by the
/// caller). (`queues`, then each queue's running jobs in `jobs_by_state`:
/// bounded by what runs)
pub const EXPIRED_ALL: &str = "SELECT j.seq FROM queues q CROSS JOIN jobs j \
    WHERE j.queue = q.name AND j.state = 'running' AND j.state <> 'queued' AND j.lease_expires_at <= ?1";
/// Running jobs held by workers whose name starts with ?1 (of length ?2).
/// (`queues`, then each queue's running jobs in `jobs_by_state`: bounded by
/// the running jobs)
pub const RUNNING_HELD_BY: &str = "SELECT j.seq FROM queues q CROSS JOIN jobs j \
    WHERE j.queue = q.name AND j.state = 'running' AND j.state <> 'queued' AND substr(j.lease_worker, 1, ?2) = ?1";
/// The next time a maintenance pass has work. (`jobs_due_all`; `queues`,
/// then each queue's running jobs in `jobs_by_state`)
pub const NEXT_DUE: &str = "SELECT min(t) FROM (
    SELECT min(run_at) AS t FROM jobs WHERE state = 'scheduled'
    UNION ALL
    SELECT min(j.lease_expires_at) AS t FROM queues q CROSS JOIN jobs j
        WHERE j.queue = q.name AND j.state = 'running' AND j.state <> 'queued')";
/// The next time a queue has a due job or an expiring lease. (`jobs_due`;
/// `jobs_by_state` for the queue's running jobs, bounded by what runs)
pub const NEXT_DUE_IN_QUEUE: &str = "SELECT min(t) FROM (
    SELECT min(run_at) AS t FROM jobs WHERE queue = ?1 AND state = 'scheduled'
    UNION ALL
    SELECT min(lease_expires_at) AS t FROM jobs WHERE queue = ?1 AND state = 'running' AND state <> 'queued')";
/// The front of a queue's ready line, with what a lease's expiry needs.
/// (`jobs_ready`, named so no other index is ever weighed)
/// Each candidate's whole row is read here (its columns as `rows::job_from_row`
/// reads them, then `last_start_no`), so the start needs no read back.
pub const CLAIM_CANDIDATES: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", last_start_no FROM jobs INDEXED BY jobs_ready WHERE queue = ?1 AND state = 'queued' AND head = 1 ORDER BY seq LIMIT +?2"
);

/// When the front of a queue's line was enqueued: the first queued job,
/// claimable (`jobs_ready`) or behind its key (`jobs_by_state`), each
/// index's first entry merged.
pub const OLDEST_QUEUED: &str =
    "SELECT enqueued_at, seq FROM jobs WHERE queue = ?1 AND state = 'queued' AND head = 1 \
    UNION ALL SELECT enqueued_at, seq FROM jobs WHERE queue = ?1 AND state = 'queued' AND head = 0 \
    ORDER BY seq LIMIT 1";
/// Unfinished jobs of key ?2 of queue ?1 ahead of `seq` ?3 (its
/// `key_position`), from `key_blocks` (schema v6) as [`POSITION`] reads
/// `waiting_blocks`: the key's level-1 blocks (2^20 `seq`s) wholly before
/// it, its level-0 blocks (2^10) before it within its level-1 block, and
/// its unfinished jobs before it within its own level-0 block
/// (`jobs_key_line`, at most 1,024 entries and their rows). Bounded at any key length
/// (see docs/ordering.md).
pub const KEY_POSITION: &str = "SELECT
    (SELECT coalesce(sum(n), 0) FROM key_blocks
        WHERE queue = ?1 AND key = ?2 AND level = 1 AND block < (?3 >> 20))
  + (SELECT coalesce(sum(n), 0) FROM key_blocks
        WHERE queue = ?1 AND key = ?2 AND level = 0 AND block >= ((?3 >> 20) << 10) AND block < (?3 >> 10))
  + (SELECT count(*) FROM jobs
        WHERE queue = ?1 AND key = ?2 AND state IN ('scheduled', 'queued', 'running')
          AND seq >= ((?3 >> 10) << 10) AND seq < ?3)";
/// The first unfinished job of key ?2 of queue ?1 ahead of `seq` ?3: the one
/// holding the key. (`jobs_key_line`, one entry read)
pub const KEY_HEAD: &str = "SELECT id FROM jobs WHERE queue = ?1 AND key = ?2 AND state IN ('scheduled', 'queued', 'running') AND seq < ?3 ORDER BY seq LIMIT 1";
/// Bits of `seq` a level-0 block of `waiting_blocks` spans (schema v5 and
/// [`POSITION`] write it out as `>> 10`).
pub const BLOCK_BITS: u32 = 10;

/// Waiting jobs of queue ?1 ahead of `seq` ?2 (its `position`), from
/// `waiting_blocks` (schema v5): the level-1 blocks (2^20 `seq`s) wholly
/// before it, the level-0 blocks (2^10) before it within its level-1 block,
/// and the waiting jobs before it within its own level-0 block
/// (`jobs_ready` and `jobs_by_state`, at most 1,024 entries each). The work is
/// bounded by the highest `seq` / 2^20 + 1,024 + 2 × 1,024 rows, never by
/// the number of jobs waiting.
pub const POSITION: &str = "SELECT
    (SELECT coalesce(sum(n), 0) FROM waiting_blocks
        WHERE queue = ?1 AND level = 1 AND block < (?2 >> 20))
  + (SELECT coalesce(sum(n), 0) FROM waiting_blocks
        WHERE queue = ?1 AND level = 0 AND block >= ((?2 >> 20) << 10) AND block < (?2 >> 10))
  + (SELECT count(*) FROM jobs
        WHERE queue = ?1 AND state = 'queued' AND head = 1 AND seq >= ((?2 >> 10) << 10) AND seq < ?2)
  + (SELECT count(*) FROM jobs
        WHERE queue = ?1 AND state = 'queued' AND head = 0 AND seq >= ((?2 >> 10) << 10) AND seq < ?2)
  + (SELECT count(*) FROM jobs
        WHERE queue = ?1 AND state = 'scheduled' AND state <> 'queued' AND seq >= ((?2 >> 10) << 10) AND seq < ?2)";
/// The jobs of the level-0 blocks being closed, `seq`s ?1 to ?2 (schema
/// v12; by the table's own key, at most the closed blocks' `seq`s read).
pub const CLOSE_BLOCK_JOBS: &str =
    "SELECT queue, key, state, seq FROM jobs WHERE seq >= ?1 AND seq < ?2";
/// Closes the level-1 blocks whose level-0 blocks are ?1 to ?2: each
/// queue's sum of them (`queues`, then each queue's level-0 rows in range).
pub const CLOSE_WAITING_LEVEL1: &str = "INSERT INTO waiting_blocks (queue, level, block, n)
    SELECT w.queue, 1, w.block >> 10, sum(w.n) FROM queues q CROSS JOIN waiting_blocks w
    WHERE w.queue = q.name AND w.level = 0 AND w.block >= ?1 AND w.block < ?2
    GROUP BY w.queue, w.block >> 10
    ON CONFLICT (queue, level, block) DO UPDATE SET n = excluded.n";
/// Closes the level-1 blocks of `key_blocks` whose level-0 blocks are ?1 to
/// ?2 (its level-0 rows in range, once per 2^20 `seq`s; a key's rows are
/// there only while it has unfinished jobs).
pub const CLOSE_KEY_LEVEL1: &str = "INSERT INTO key_blocks (queue, key, level, block, n)
    SELECT queue, key, 1, block >> 10, sum(n) FROM key_blocks
    WHERE level = 0 AND block >= ?1 AND block < ?2
    GROUP BY queue, key, block >> 10 HAVING sum(n) > 0
    ON CONFLICT (queue, key, level, block) DO UPDATE SET n = excluded.n";
/// Waiting jobs of queue ?1 strictly between `seq`s ?2 and ?3
/// (`jobs_ready` and `jobs_by_state`); only asked for two `seq`s of one
/// level-0 block, so it reads at most 1,024 entries of each.
pub const WAITING_BETWEEN: &str = "SELECT
    (SELECT count(*) FROM jobs WHERE queue = ?1 AND state = 'queued' AND head = 1 AND seq > ?2 AND seq < ?3)
  + (SELECT count(*) FROM jobs WHERE queue = ?1 AND state = 'queued' AND head = 0 AND seq > ?2 AND seq < ?3)
  + (SELECT count(*) FROM jobs WHERE queue = ?1 AND state = 'scheduled' AND state <> 'queued' AND seq > ?2 AND seq < ?3)";
/// A page of a queue's jobs of every state, in `seq` order from a cursor:
/// each state's part of `jobs_by_state` (and, for `queued`, `jobs_ready`)
/// read in `seq` order from ?2, and the seven merged by `seq` as SQLite runs
/// a compound `ORDER BY` (each arm a co-routine that yields its next row
/// when the merge asks), so the page reads about `limit` + 7 entries and
/// sorts nothing, at any backlog. Schema v9 dropped the index by
/// `(queue, seq)` that every enqueue had to write for this one read. The
/// columns are `rows::JOB_COLUMNS`.
macro_rules! page_in {
    ($state:literal) => {
        page_where!(concat!("state = '", $state, "' AND state <> 'queued'"))
    };
}
/// One arm of a page: a queue's jobs matching `$cond` after `seq` ?2.
macro_rules! page_where {
    ($cond:expr) => {
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE queue = ?1 AND ",
            $cond,
            " AND seq > ?2"
        )
    };
}
/// The two arms of a page of queued jobs: the claimable ones (`jobs_ready`)
/// and those behind their key (`jobs_by_state`).
macro_rules! queued_arms {
    () => {
        concat!(
            page_where!("state = 'queued' AND head = 1"),
            " UNION ALL ",
            page_where!("state = 'queued' AND head = 0")
        )
    };
}
pub const JOB_PAGE: &str = concat!(
    page_in!("scheduled"),
    " UNION ALL ",
    queued_arms!(),
    " UNION ALL ",
    page_in!("running"),
    " UNION ALL ",
    page_in!("succeeded"),
    " UNION ALL ",
    page_in!("failed"),
    " UNION ALL ",
    page_in!("cancelled"),
    " ORDER BY seq LIMIT +?3"
);
/// A page of a queue's queued jobs from a cursor (?1 queue, ?2 cursor, ?3
/// limit): both indexes' parts merged by `seq`, as in [`JOB_PAGE`].
pub const JOB_PAGE_QUEUED: &str = concat!(queued_arms!(), " ORDER BY seq LIMIT +?3");
/// A page of one key's line (its unfinished jobs, optionally of state ?3),
/// after `SELECT` and the columns. (`jobs_key_line`: bounded by the key's
/// unfinished jobs, whatever else the queue holds)
pub const JOB_PAGE_OF_KEY: &str = "FROM jobs INDEXED BY jobs_key_line \
    WHERE queue = ?1 AND key = ?2 AND state IN ('scheduled', 'queued', 'running') \
    AND (?3 IS NULL OR state = ?3) AND seq > ?4 ORDER BY seq LIMIT +?5";
/// A page of a queue's jobs in one state other than `queued` (which is
/// [`JOB_PAGE_QUEUED`]), after `SELECT` and the columns. (`jobs_by_state`;
/// the state is `+?2` for the reason the module gives `LIMIT +?N`: a bare
/// `?2` compared with the partial indexes' states re-prepared the statement
/// at every call)
pub const JOB_PAGE_IN_STATE: &str =
    "FROM jobs WHERE queue = ?1 AND state = +?2 AND state <> 'queued' AND seq > ?3 ORDER BY seq LIMIT +?4";
/// A queue's counts by state, in `JobState::ALL`'s order (its writer-kept
/// row, schema v11).
pub const QUEUE_COUNTS: &str = "SELECT scheduled, queued, running, succeeded, failed, cancelled \
    FROM queue_counts WHERE queue = ?1";
/// Waiting jobs of a queue (its writer-kept row).
pub const WAITING_COUNT: &str =
    "SELECT coalesce((SELECT scheduled + queued FROM queue_counts WHERE queue = ?1), 0)";
/// Running jobs of a queue, which a claim checks against its concurrency
/// (its writer-kept row).
pub const RUNNING_COUNT: &str = "SELECT running FROM queue_counts WHERE queue = ?1";
/// Every queue, by name (the primary key, no sort).
pub const QUEUE_NAMES: &str = "SELECT name FROM queues ORDER BY name";

/// A page of a queue's start log. (`starts_queue`)
pub const START_LOG_PAGE: &str = "SELECT start_no, seq, job_id, key, attempt, worker, started_at \
    FROM starts WHERE queue = ?1 AND start_no > ?2 ORDER BY start_no LIMIT +?3";
/// The latest starts of a queue, newest first: the end of its start log,
/// what a restarted server seeds its estimates from. (`starts_queue`, read
/// backwards)
pub const START_LATEST: &str =
    "SELECT start_no, seq, job_id, key, attempt, worker, started_at, ended_at, outcome, error \
    FROM starts WHERE queue = ?1 ORDER BY start_no DESC LIMIT +?2";
/// Finished jobs that retention deletes, with the head of their start chain.
/// (`jobs_finished`)
pub const PURGE_CANDIDATES: &str = "SELECT seq, id, last_start_no, queue, key, state FROM jobs \
    WHERE finished_at < ?1 AND state IN ('succeeded', 'failed', 'cancelled') LIMIT +?2";

#[cfg(test)]
mod tests {
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

    /// How many ephemeral tables a statement builds when it runs.
    fn ephemeral_tables(conn: &Connection, query: &str) -> usize {
        let mut stmt = conn.prepare(&format!("EXPLAIN {query}")).expect("explain");
        let n = stmt.parameter_count();
        let args: Vec<rusqlite::types::Value> =
            (0..n).map(|_| rusqlite::types::Value::Integer(1)).collect();
        let ops = stmt
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(1))
            .expect("opcodes");
        ops.map(|o| o.expect("opcode"))
            .filter(|o| o == "OpenEphemeral")
            .count()
    }

    /// The statements every enqueue, claim, report or `GET` of a job runs
    /// build no ephemeral table (an `IN` list of states did, at every run).
    #[test]
    fn hot_statements_build_no_ephemeral_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = Connection::open(dir.path().join("plan.db")).expect("open");
        crate::schema::migrate(&mut conn).expect("migrate");
        for query in [
            super::WAITING_COUNT,
            super::RUNNING_COUNT,
            super::POSITION,
            super::WAITING_BETWEEN,
            super::OLDEST_QUEUED,
            super::KEY_POSITION,
            super::KEY_HEAD,
            super::KEY_HAS_UNFINISHED,
            super::ADVANCE_KEY,
            super::CLAIM_CANDIDATES,
        ] {
            assert_eq!(ephemeral_tables(&conn, query), 0, "{query}");
        }
    }

    /// Every cached statement with a bound `LIMIT` keeps its prepared plan
    /// across bindings: none is re-prepared when it runs again with other
    /// values (a bare `LIMIT ?N` would be, every time).
    #[test]
    fn bound_limits_do_not_re_prepare() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = Connection::open(dir.path().join("plan.db")).expect("open");
        crate::schema::migrate(&mut conn).expect("migrate");
        let columns = crate::rows::JOB_COLUMNS;
        for query in [
            super::CLAIM_CANDIDATES.to_string(),
            super::JOB_PAGE.to_string(),
            super::JOB_PAGE_QUEUED.to_string(),
            format!("SELECT {columns} {}", super::JOB_PAGE_IN_STATE),
            format!("SELECT {columns} {}", super::JOB_PAGE_OF_KEY),
            super::START_LOG_PAGE.to_string(),
            super::START_LATEST.to_string(),
            super::PURGE_CANDIDATES.to_string(),
        ] {
            let mut stmt = conn.prepare(&query).expect("prepare");
            let n = stmt.parameter_count();
            for round in 1..=3_i64 {
                let args: Vec<rusqlite::types::Value> = (0..n)
                    .map(|_| rusqlite::types::Value::Integer(round))
                    .collect();
                let mut rows = stmt.query(rusqlite::params_from_iter(args)).expect("query");
                while rows.next().expect("row").is_some() {}
            }
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "{query}\nis re-prepared at every binding"
            );
        }
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
            (super::CLAIM_CANDIDATES, "jobs_ready", false),
            (super::KEY_HAS_UNFINISHED, "jobs_key_line", false),
            (super::ADVANCE_KEY, "jobs_key_line", false),
            (super::PROMOTE_DUE_IN_QUEUE, "jobs_due", true),
            (super::EXPIRED_IN_QUEUE, "jobs_by_state", false),
            (super::PROMOTE_DUE_ALL, "jobs_due_all", false),
            (super::EXPIRED_ALL, "jobs_by_state", false),
            (super::RUNNING_HELD_BY, "jobs_by_state", false),
            (super::NEXT_DUE, "jobs_due_all", false),
            (super::NEXT_DUE, "jobs_by_state", false),
            (super::NEXT_DUE_IN_QUEUE, "jobs_due", false),
            (super::NEXT_DUE_IN_QUEUE, "jobs_by_state", false),
            (super::PURGE_CANDIDATES, "jobs_finished", false),
            (super::OLDEST_QUEUED, "jobs_by_state", false),
            (super::OLDEST_QUEUED, "jobs_ready", false),
            (super::KEY_HEAD, "jobs_key_line", false),
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
        // A page of the start log reads its queue's part of `starts_queue`
        // from the cursor on, in order: never the whole log, never a sort.
        let p = plan(&conn, super::START_LOG_PAGE);
        assert!(
            p.contains("USING INDEX starts_queue (queue=? AND start_no>?)")
                && !p.contains("SCAN")
                && !p.contains("TEMP B-TREE"),
            "{}\nplan: {p}",
            super::START_LOG_PAGE
        );
        // The end of a queue's start log reads the index backwards: no sort.
        let p = plan(&conn, super::START_LATEST);
        assert!(
            p.contains("USING INDEX starts_queue (queue=?)")
                && !p.contains("SCAN")
                && !p.contains("TEMP B-TREE"),
            "{}\nplan: {p}",
            super::START_LATEST
        );
        // What the API serves at any backlog: a job's position and key
        // position, a page of a queue's jobs (with and without `state=`, and
        // one key's line), a queue's counts and the list of queues. Each
        // reads an index or a trigger-kept table by
        // key: no table scan, no sort.
        let columns = crate::rows::JOB_COLUMNS;
        let page = super::JOB_PAGE.to_string();
        let page_in_state = format!("SELECT {columns} {}", super::JOB_PAGE_IN_STATE);
        let page_of_key = format!("SELECT {columns} {}", super::JOB_PAGE_OF_KEY);
        for (query, wants) in [
            (
                super::POSITION,
                &[
                    "SEARCH waiting_blocks USING PRIMARY KEY (queue=? AND level=? AND block<?)",
                    "SEARCH waiting_blocks USING PRIMARY KEY (queue=? AND level=? AND block>? AND block<?)",
                    "SEARCH jobs USING COVERING INDEX jobs_by_state (queue=? AND state=? AND seq>? AND seq<?)",
                    "SEARCH jobs USING COVERING INDEX jobs_ready (queue=? AND seq>? AND seq<?)",
                ][..],
            ),
            (
                super::KEY_POSITION,
                &[
                    "SEARCH key_blocks USING PRIMARY KEY (queue=? AND key=? AND level=? AND block<?)",
                    "SEARCH key_blocks USING PRIMARY KEY (queue=? AND key=? AND level=? AND block>? AND block<?)",
                    "INDEX jobs_key_line (queue=? AND key=? AND seq>? AND seq<?)",
                ][..],
            ),
            (
                super::WAITING_BETWEEN,
                &[
                    "SEARCH jobs USING COVERING INDEX jobs_by_state (queue=? AND state=? AND seq>? AND seq<?)",
                    "SEARCH jobs USING COVERING INDEX jobs_ready (queue=? AND seq>? AND seq<?)",
                ],
            ),
            (
                page.as_str(),
                &[
                    "MERGE (UNION ALL)",
                    "SEARCH jobs USING INDEX jobs_by_state (queue=? AND state=? AND seq>?)",
                    "SEARCH jobs USING INDEX jobs_ready (queue=? AND seq>?)",
                ],
            ),
            (
                super::JOB_PAGE_QUEUED,
                &[
                    "MERGE (UNION ALL)",
                    "SEARCH jobs USING INDEX jobs_by_state (queue=? AND state=? AND seq>?)",
                    "SEARCH jobs USING INDEX jobs_ready (queue=? AND seq>?)",
                ],
            ),
            (
                page_in_state.as_str(),
                &["SEARCH jobs USING INDEX jobs_by_state (queue=? AND state=? AND seq>?)"],
            ),
            (
                page_of_key.as_str(),
                &["SEARCH jobs USING INDEX jobs_key_line (queue=? AND key=? AND seq>?)"],
            ),
            (
                super::QUEUE_COUNTS,
                &["SEARCH queue_counts USING PRIMARY KEY (queue=?)"],
            ),
            (
                super::WAITING_COUNT,
                &["SEARCH queue_counts USING PRIMARY KEY (queue=?)"],
            ),
            (
                super::RUNNING_COUNT,
                &["SEARCH queue_counts USING PRIMARY KEY (queue=?)"],
            ),
            (super::QUEUE_NAMES, &["SCAN queues"]),
        ] {
            let p = plan(&conn, query);
            for want in wants {
                assert!(p.contains(want), "{query}\nplan: {p}\nexpected {want}");
            }
            assert!(
                !p.contains("SCAN jobs") && !p.contains("TEMP B-TREE"),
                "{query}\nscans or sorts: {p}"
            );
        }
        // The page of every state merges one ordered arm of `jobs_by_state`
        // per state (for `queued`, the jobs behind their key) and the
        // claimable jobs of `jobs_ready`, and every state has its arm.
        assert_eq!(
            plan(&conn, &page)
                .matches("SEARCH jobs USING INDEX jobs_by_state (queue=? AND state=? AND seq>?)")
                .count(),
            orderly_core::JobState::ALL.len()
        );
        for state in orderly_core::JobState::ALL {
            assert!(
                super::JOB_PAGE.contains(&format!("state = '{}'", state.as_str())),
                "JOB_PAGE misses {state:?}"
            );
        }
        // Closing a block reads its jobs by `seq`, and a level-1 block's sum
        // its queues' level-0 rows by key (schema v12).
        let p = plan(&conn, super::CLOSE_BLOCK_JOBS);
        assert!(
            p.contains("SEARCH jobs USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
            "{}\nplan: {p}",
            super::CLOSE_BLOCK_JOBS
        );
        let p = plan(&conn, super::CLOSE_WAITING_LEVEL1);
        assert!(
            p.contains("SEARCH w USING PRIMARY KEY (queue=? AND level=? AND block>? AND block<?)")
                && !p.contains("SCAN w"),
            "{}\nplan: {p}",
            super::CLOSE_WAITING_LEVEL1
        );
        // Across queues, the running jobs are read queue by queue, each
        // queue's from its running part of `jobs_by_state`: bounded by the
        // running jobs, never the waiting ones.
        for query in [super::EXPIRED_ALL, super::RUNNING_HELD_BY, super::NEXT_DUE] {
            let p = plan(&conn, query);
            assert!(
                (p.contains("SCAN q") || p.contains("SEARCH q USING PRIMARY KEY"))
                    && p.contains("SEARCH j USING INDEX jobs_by_state (queue=? AND state=?)")
                    && !p.contains("SCAN j"),
                "{query}\nplan: {p}"
            );
        }
    }
}
