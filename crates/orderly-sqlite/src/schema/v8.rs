//! Schema v8: `jobs_leases_all` goes.
//!
//! Every claim added a row to it, every end of an attempt took one out, and
//! every heartbeat moved one (a new `lease_expires_at`): a page of every
//! commit on the hot path, for the maintenance pass's question "which
//! leases expired, and when is the next one due", asked across queues. That
//! question is now asked queue by queue from `queues` into `jobs_by_state`
//! (`queue`, `'running'`): it reads the running jobs, bounded by what runs,
//! as the catch-up of one queue has since v7. Every job's queue has a row
//! in `queues` (an enqueue creates it; queues are never deleted).

/// The migration from v7.
pub(super) const V8: &str = "DROP INDEX jobs_leases_all;";
