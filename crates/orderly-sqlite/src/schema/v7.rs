//! Schema v7: the counter tables are kept by the writer, not by triggers.
//!
//! `queue_counts`, `waiting_blocks` and `key_blocks` keep their shape and
//! their rows (the triggers kept them right up to this migration); only the
//! triggers go. From v7 on, the writer records each change of a job row's
//! state or `seq` and writes each touched counter row once per request, in
//! the request's own savepoint (`crate::tally`). A build older than v7
//! would write job rows without counting them, so it refuses data of a
//! newer schema (see `migrate`).
//!
//! `jobs_leases` (a queue's running jobs by lease expiry) goes too: every
//! claim and every end of an attempt changed it, for the rare catch-up of
//! one queue, which now reads the queue's running jobs from
//! `jobs_by_state` (bounded by what runs). `jobs_leases_all` still serves
//! the maintenance pass across queues.

/// The migration from v6.
pub(super) const V7: &str = r#"
DROP TRIGGER jobs_count_insert;
DROP TRIGGER jobs_count_update;
DROP TRIGGER jobs_count_delete;
DROP TRIGGER jobs_waiting_insert;
DROP TRIGGER jobs_waiting_leave;
DROP TRIGGER jobs_waiting_enter;
DROP TRIGGER jobs_waiting_delete;
DROP TRIGGER jobs_key_insert;
DROP TRIGGER jobs_key_leave;
DROP TRIGGER jobs_key_enter;
DROP TRIGGER jobs_key_delete;
DROP INDEX jobs_leases;
"#;
