//! Schema v9: `jobs_queue_seq` goes.
//!
//! Every enqueue inserted an entry into it (and a retry that moved a job to
//! a new `seq`, or a deletion, changed one): a B-tree insert and a page of
//! the commit, about 8% of the writer's instructions per enqueue
//! (docs/performance.md, stop 23), for one read: a page of a queue's jobs
//! of every state, in `seq` order. That page is now read from
//! `jobs_by_state`, which every job is in under its state: the first
//! `limit` jobs after the cursor in each of the six states, merged by `seq`
//! (`sql::JOB_PAGE`). It reads at most six times the page, whatever the
//! queue holds, so it stays bounded at any backlog.

/// The migration from v8.
pub(super) const V9: &str = "DROP INDEX jobs_queue_seq;";
