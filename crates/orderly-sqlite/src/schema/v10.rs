//! Schema v10: a claimable job is in one index, not two.
//!
//! A queued job that can be claimed (a keyless job, or the head of its key)
//! was in `jobs_ready` and in `jobs_by_state`: every enqueue inserted two
//! index entries that differ only in the state between the queue and the
//! `seq`, every claim deleted both, and each is a B-tree write and often a
//! page of the commit. `jobs_by_state` now leaves those jobs out (its
//! condition, `head = 0 OR state <> 'queued'`, is exactly the negation of
//! `jobs_ready`'s), so every job is in exactly one of the two. A read of a
//! queue's queued jobs merges both by `seq` (`jobs_ready` for the claimable
//! ones, `jobs_by_state` with `head = 0` for those waiting behind their
//! key); a read of any other state names `state <> 'queued'`, the term that
//! lets SQLite's planner prove the partial index holds its rows
//! (`crate::sql`).

/// The migration from v9.
pub(super) const V10: &str = "DROP INDEX jobs_by_state;
CREATE INDEX jobs_by_state ON jobs (queue, state, seq) WHERE head = 0 OR state <> 'queued';";
