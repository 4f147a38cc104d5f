//! The `Store` trait: the only way to storage.
//!
//! Internal interface between the service layer and a backend (SQLite now,
//! PostgreSQL next). One method per operation, named `<entity>_<verb>`, each
//! taking a small params struct and the current time (`now`), so behaviour
//! that depends on time (leases, delays) is tested without sleeping.
//!
//! Every backend must pass [`crate::conformance::exercise`] unchanged.
//!
//! Invariants every backend keeps:
//! - `seq` strictly increases in commit order and is never reused;
//! - a claim takes, among the queue's eligible jobs ([`crate::rules::eligible`]),
//!   the lowest `seq`s first, never more than `concurrency - running`;
//! - before claiming, a queue's due scheduled jobs become queued and its
//!   expired leases are put back in place, so time never lets a later job
//!   overtake an earlier one;
//! - a method returns only after its effect is committed, and durably so
//!   as far as the backend's durability setting promises (by default, fsynced).

use async_trait::async_trait;
use serde_json::Value;

use crate::job::{Job, JobState, Millis, NewJob};
use crate::queue::{QueueInfo, QueuePatch};
use crate::validate::ValidationError;

/// Errors a store reports. The service layer maps them to its own errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The request breaks a rule the store enforces (e.g. two jobs of one
    /// batch with the same id); nothing was written.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No job has this id.
    #[error("job {0:?} not found")]
    JobNotFound(String),
    /// No queue has this name (it was never configured nor used).
    #[error("queue {0:?} not found")]
    QueueNotFound(String),
    /// An enqueue reused an id with a different queue, key or payload.
    #[error("job id {id:?} already exists with a different queue, key or payload")]
    IdConflict {
        /// The id.
        id: String,
    },
    /// A report or heartbeat carried a token that is not the job's current lease.
    #[error("lease on job {id:?} is not current: {reason}")]
    StaleLease {
        /// The job.
        id: String,
        /// Why: the job is no longer running, the token is another attempt's, or the lease expired.
        reason: String,
    },
    /// The job's state does not allow the operation.
    #[error("job {id:?} is {state}: cannot {action}")]
    InvalidState {
        /// The job.
        id: String,
        /// Its state.
        state: JobState,
        /// What was refused.
        action: &'static str,
    },
    /// The disk is full; reads still work and writes resume once space is freed.
    #[error("storage is full, nothing was written: {0}")]
    StorageFull(String),
    /// A write failed in a way that cannot be trusted (e.g. fsync); the store stopped accepting writes.
    #[error("storage failed and stopped accepting writes: {0}")]
    StorageFailed(String),
    /// The database is briefly out of reach (a restart, a failover, a
    /// network blip); nothing was written, and a retry later may succeed.
    #[error("storage is unavailable, nothing was written: {0}")]
    Unavailable(String),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
    /// A stored row cannot be read back as written (an unknown state, JSON
    /// that does not parse): the data is damaged, and is never guessed at.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else from the backend.
    #[error("storage error: {0}")]
    Backend(String),
}

/// One job's move from one state to another, as committed.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// The job.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its ordering key.
    pub key: Option<String>,
    /// Its `seq` after the change (a retry gives a new one).
    pub seq: i64,
    /// The state before; `None` for a job that did not exist.
    pub from: Option<JobState>,
    /// The state after.
    pub to: JobState,
    /// When the change was made (the operation's `now`).
    pub at: Millis,
    /// When the job was accepted (its `enqueued_at`).
    pub enqueued_at: Millis,
    /// When its latest attempt started: for a move out of `running`, the
    /// start of the attempt that ended; `None` when it never started.
    pub started_at: Option<Millis>,
    /// True when this move ended a running attempt its worker never reported:
    /// the lease ran out (without passing the attempt's deadline) or was
    /// given up by its runner (`Store::lease_release`). False otherwise,
    /// including an attempt that timed out (a failure).
    pub lease_lost: bool,
}

/// What a write changed: every job that moved between states, in the order
/// the store moved them. Wake-ups, events and metrics all come from here,
/// whichever operation (an enqueue, a report, a claim that caught a queue up,
/// a maintenance pass) made the change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// The moves, in order.
    pub jobs: Vec<StateChange>,
}

impl Changes {
    /// True when nothing moved.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Appends `other`'s moves.
    pub fn extend(&mut self, other: Changes) {
        self.jobs.extend(other.jobs);
    }

    /// Per queue, how many jobs these changes may have let start: one for
    /// each job that became `queued`, and one for each running or waiting
    /// job that stopped being so (it freed a slot, or passed its key on).
    /// More than can start is harmless (a woken claimer finds nothing);
    /// fewer would leave work waiting.
    pub fn startable(&self) -> std::collections::BTreeMap<&str, usize> {
        self.startable_at()
            .into_iter()
            .map(|(queue, (n, _))| (queue, n))
            .collect()
    }

    /// [`Self::startable`], with the latest time (`at`) of those changes
    /// per queue: the time a claim they let start runs at.
    pub fn startable_at(&self) -> std::collections::BTreeMap<&str, (usize, Millis)> {
        let mut out = std::collections::BTreeMap::new();
        for c in &self.jobs {
            let became_ready = c.to == JobState::Queued;
            let stopped = c
                .from
                .is_some_and(|f| (f == JobState::Running || f.is_waiting()) && c.to.is_finished())
                || (c.from == Some(JobState::Running) && c.to.is_waiting());
            if became_ready || stopped {
                let entry = out.entry(c.queue.as_str()).or_insert((0, c.at));
                entry.0 += 1;
                entry.1 = entry.1.max(c.at);
            }
        }
        out
    }

    /// The jobs that finished.
    pub fn finished(&self) -> impl Iterator<Item = &StateChange> {
        self.jobs.iter().filter(|c| c.to.is_finished())
    }

    /// True when some job now waits for a time (`scheduled`).
    pub fn scheduled(&self) -> bool {
        self.jobs.iter().any(|c| c.to == JobState::Scheduled)
    }
}

/// A summary of what another node committed: who may now be woken. It
/// carries counts, not moves (that node published its events and metrics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wakeups {
    /// Per queue, how many jobs may now start there.
    pub queues: std::collections::BTreeMap<String, usize>,
    /// Jobs that finished.
    pub finished: Vec<String>,
    /// Some finished ids were left out: wake every job waiter.
    pub finished_overflow: bool,
    /// Some job now waits for a time (the scheduler should look).
    pub scheduled: bool,
}

impl Wakeups {
    /// The summary of `changes`.
    pub fn of(changes: &Changes) -> Wakeups {
        Wakeups {
            queues: changes
                .startable()
                .into_iter()
                .map(|(q, n)| (q.to_string(), n))
                .collect(),
            finished: changes.finished().map(|c| c.id.clone()).collect(),
            finished_overflow: false,
            scheduled: changes.scheduled(),
        }
    }

    /// True when it wakes nobody.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
            && self.finished.is_empty()
            && !self.finished_overflow
            && !self.scheduled
    }

    /// Adds `other` to this one (counts summed, ids joined).
    pub fn merge(&mut self, other: Wakeups) {
        for (q, n) in other.queues {
            let sum = self.queues.entry(q).or_insert(0);
            *sum = sum.saturating_add(n);
        }
        self.finished_overflow |= other.finished_overflow;
        if !self.finished_overflow {
            for id in other.finished {
                if !self.finished.contains(&id) {
                    self.finished.push(id);
                }
            }
        }
        // Past this many ids every job waiter is woken anyway.
        if self.finished_overflow || self.finished.len() > 1_024 {
            self.finished_overflow = true;
            self.finished.clear();
        }
        self.scheduled |= other.scheduled;
    }
}

/// What a store heard from other processes on the same storage
/// ([`Store::external`]).
#[derive(Debug, Clone, PartialEq)]
pub enum External {
    /// Another node committed these wake-ups.
    Wake(Wakeups),
    /// This store committed `Changes` on others' behalf (numbering jobs
    /// another process inserted): publish them as local changes.
    Committed(Changes),
    /// Something may have been missed (the listener reconnected): wake
    /// every waiter.
    WakeAll,
}

/// The value a write returns, with what it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<T> {
    /// What the operation answers.
    pub value: T,
    /// What it changed.
    pub changes: Changes,
}

/// One attempt of a job, as its history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// Attempt number (1 for the first run since the job was last put in line).
    pub attempt: u32,
    /// The start's global number.
    pub start_no: i64,
    /// The worker name the claim gave.
    pub worker: String,
    /// When it started.
    pub started_at: Millis,
    /// When it ended; `None` while it runs.
    pub ended_at: Option<Millis>,
    /// How it ended: `succeeded`, `failed` or `cancelled`; `None` while it runs.
    pub outcome: Option<String>,
    /// Its error, for an attempt that did not succeed.
    pub error: Option<Value>,
}

/// One start, as the start log keeps it: the server's record of the order
/// it actually used, written in the transaction that made the start.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRecord {
    /// The start's global number: strictly increasing in start order.
    pub start_no: i64,
    /// The job's `seq` when it started (a retry gives it a new one).
    pub seq: i64,
    /// The job.
    pub job_id: String,
    /// The job's ordering key.
    pub key: Option<String>,
    /// Attempt number of this start.
    pub attempt: u32,
    /// The worker name the claim gave.
    pub worker: String,
    /// When it started.
    pub started_at: Millis,
}

/// One of a queue's latest starts with the end of its attempt, as
/// [`Store::start_latest`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestStart {
    /// The start, as the start log keeps it.
    pub start: StartRecord,
    /// When its attempt ended; `None` while it runs.
    pub ended_at: Option<Millis>,
    /// How it ended: `succeeded`, `failed` or `cancelled`; `None` while it runs.
    pub outcome: Option<String>,
    /// Its error, for an attempt that did not succeed (a `reason` of
    /// `lease_expired` or `interrupted` says it ended without a report).
    pub error: Option<Value>,
}

/// A page of a queue's start log, in `start_no` order.
#[derive(Debug, Clone)]
pub struct StartListParams {
    /// Queue.
    pub queue: String,
    /// Only `start_no > after` (cursor).
    pub after: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// Enqueue jobs into one queue, atomically and in order.
#[derive(Debug, Clone)]
pub struct EnqueueParams {
    /// Target queue (validated).
    pub queue: String,
    /// Jobs in acceptance order; they receive consecutive `seq`s.
    pub jobs: Vec<NewJob>,
    /// Current time.
    pub now: Millis,
}

/// What an enqueue did with one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The job as stored.
    pub job: Job,
    /// False when the id already existed with the same content (an idempotent replay).
    pub created: bool,
}

/// Claim up to `max` jobs of a queue for `worker`.
#[derive(Debug, Clone)]
pub struct ClaimParams {
    /// Queue to claim from.
    pub queue: String,
    /// Worker name, recorded on the job.
    pub worker: String,
    /// Most leases to take.
    pub max: u32,
    /// Lease length; the queue's `lease_ms` when `None`.
    pub lease_ms: Option<u64>,
    /// Current time.
    pub now: Millis,
    /// A number in `[0, 1)` for the backoff jitter of any attempt this
    /// claim's catch-up ends (a timed-out lease), drawn by the caller.
    pub jitter: f64,
}

/// A claimed job and the token that proves the claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The job, state `running`.
    pub job: Job,
    /// Fencing token: reports must carry it; a new claim of the job makes it stale.
    pub token: String,
    /// When the lease expires unless renewed.
    pub expires_at: Millis,
    /// How long the lease runs from the moment it was granted, by the
    /// store's clock: workers schedule heartbeats from this, never by
    /// comparing `expires_at` with their own clock.
    pub lease_ms: u64,
}

/// Renew a lease and optionally record progress.
#[derive(Debug, Clone)]
pub struct HeartbeatParams {
    /// Job id.
    pub id: String,
    /// Lease token.
    pub token: String,
    /// Progress to record.
    pub progress: Option<Value>,
    /// Current time.
    pub now: Millis,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// New expiry.
    pub expires_at: Millis,
    /// How long the renewed lease runs from now, by the store's clock.
    pub lease_ms: u64,
    /// Someone asked to cancel the job: the worker should stop and report.
    pub cancel_requested: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success with an optional result.
    Succeeded {
        /// Result to keep.
        result: Option<Value>,
    },
    /// Failure; retried with backoff while attempts remain unless `retry` is false.
    Failed {
        /// Error to keep.
        error: Value,
        /// False: do not retry.
        retry: bool,
        /// Retry after this long instead of the queue's backoff (a webhook's
        /// `Retry-After`); the attempt still counts.
        retry_after_ms: Option<u64>,
    },
}

/// A worker's report on one attempt.
#[derive(Debug, Clone)]
pub struct ReportParams {
    /// Job id.
    pub id: String,
    /// Lease token.
    pub token: String,
    /// What happened.
    pub outcome: Outcome,
    /// Current time.
    pub now: Millis,
    /// A number in `[0, 1)` for the retry's backoff jitter, drawn by the caller.
    pub jitter: f64,
}

/// List a queue's jobs by `seq`.
#[derive(Debug, Clone)]
pub struct ListParams {
    /// Queue.
    pub queue: String,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this key's line: its unfinished (`scheduled`, `queued`,
    /// `running`) jobs, read through the key's own index (a finished job
    /// has left its key's line). Combined with `state`, that state of them.
    pub key: Option<String>,
    /// Only `seq > after` (cursor).
    pub after: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// What a maintenance pass found beyond what it changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaintenanceReport {
    /// Earliest future time at which another pass has work (a `run_at` or a lease expiry).
    pub next_due: Option<Millis>,
}

/// Storage for jobs and queues. See the module docs for the invariants.
///
/// Every write that moves jobs between states returns [`Committed`]: its
/// answer and the [`Changes`] it made, so the caller learns of every job a
/// write started, finished, put back or made due, whichever operation did it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Enqueues jobs atomically in order; replays of an existing id with the
    /// same queue, key and payload return the stored job (`created: false`),
    /// anything else under an existing id fails the whole call with
    /// `IdConflict`. Two jobs of one batch with the same id are `Invalid`.
    async fn job_enqueue_many(
        &self,
        params: EnqueueParams,
    ) -> Result<Committed<Vec<Enqueued>>, StoreError>;

    /// Claims up to `max` eligible jobs in `seq` order (see module docs).
    async fn job_claim(&self, params: ClaimParams) -> Result<Committed<Vec<Lease>>, StoreError>;

    /// [`Self::job_claim`], for a caller that will wait for work: a store
    /// that can hold the claim and finds nothing eligible keeps it, runs it
    /// again inside each later commit that may have made a job of the
    /// queue startable (FIFO among parked claims), and answers once it
    /// took leases (or its catch-up changed something). It drops it unrun
    /// once `ticket` is withdrawn. The default answers at once, as
    /// `job_claim` does (holding the ticket taken, so the caller waits for
    /// the answer instead of dropping a claim that may have taken leases);
    /// the caller then waits for a wake-up as before.
    async fn job_claim_parked(
        &self,
        params: ClaimParams,
        ticket: crate::ParkTicket,
    ) -> Result<Committed<Vec<Lease>>, StoreError> {
        if !ticket.take() {
            return Ok(Committed {
                value: Vec::new(),
                changes: Changes::default(),
            });
        }
        self.job_claim(params).await
    }

    /// Renews a lease.
    async fn job_heartbeat(&self, params: HeartbeatParams) -> Result<Heartbeat, StoreError>;

    /// Applies reports, each independently, in order; one result per report,
    /// each committed or refused on its own (a storage failure on one does not
    /// undo or hide the others). A report repeated with the token of the
    /// report that already moved the job on (its answer was lost) changes
    /// nothing and returns the job as it is; any other report on a lease that
    /// is not current is `StaleLease`.
    async fn job_report_many(
        &self,
        reports: Vec<ReportParams>,
    ) -> Vec<Result<Committed<Job>, StoreError>>;

    /// Reports one attempt and, in the same transaction, claims the next jobs
    /// (one round trip per job for a serial queue). If the report is refused,
    /// nothing is claimed and the report's error is returned. The claim is
    /// made on the reported job's queue, whatever `claim.queue` says. A
    /// repeated report answers with exactly the leases the first one's commit
    /// issued, those still current, and claims anew only if none is.
    async fn job_report_and_claim(
        &self,
        report: ReportParams,
        claim: ClaimParams,
    ) -> Result<Committed<(Job, Vec<Lease>)>, StoreError>;

    /// Cancels a waiting job now, or asks a running one to stop.
    async fn job_cancel(&self, id: &str, now: Millis) -> Result<Committed<Job>, StoreError>;

    /// Puts a failed or cancelled job back in line with a new `seq`.
    async fn job_retry(&self, id: &str, now: Millis) -> Result<Committed<Job>, StoreError>;

    /// One job, with its `position` when waiting.
    async fn job_get(&self, id: &str) -> Result<Option<Job>, StoreError>;

    /// Every recorded attempt of a job, oldest first (retention removes
    /// them with the job); `JobNotFound` if no job has this id.
    async fn job_attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, StoreError>;

    /// A page of a queue's start log: its starts with `start_no` above the
    /// cursor, in `start_no` order, every retry and rerun included. Start
    /// numbers follow commit order, so a reader following the log by its
    /// cursor sees every start once, also those made while it reads. The
    /// cost of a page follows the page, not the log's length nor other
    /// queues' starts. A queue without starts (or never used) has an empty log.
    async fn start_list(&self, params: StartListParams) -> Result<Vec<StartRecord>, StoreError>;

    /// The latest `limit` starts of a queue, oldest first, each with the
    /// end of its attempt once it ended. What a restarted server seeds its estimates from
    /// (`eta`): an index read from the end of the queue's start log, whose
    /// cost follows `limit`, not the log's length. A queue without starts
    /// (or never used) has none.
    ///
    /// The default answers none (the estimates then start blind after a
    /// restart); the conformance suite expects a store to implement it.
    async fn start_latest(&self, queue: &str, limit: u32) -> Result<Vec<LatestStart>, StoreError> {
        let _ = (queue, limit);
        Ok(Vec::new())
    }

    /// A page of a queue's jobs ordered by `seq`.
    async fn job_list(&self, params: ListParams) -> Result<Vec<Job>, StoreError>;

    /// A queue's configuration and counts; `QueueNotFound` if never configured nor used.
    async fn queue_get(&self, name: &str) -> Result<QueueInfo, StoreError>;

    /// Every queue that was configured or used.
    async fn queue_list(&self) -> Result<Vec<QueueInfo>, StoreError>;

    /// When the job at the front of `queue`'s line (its lowest `seq` in
    /// state `queued`) was enqueued; `None` when nothing is queued or the
    /// queue does not exist. An index lookup: its cost does not grow with
    /// the backlog.
    async fn queue_oldest_queued(&self, queue: &str) -> Result<Option<Millis>, StoreError>;

    /// Creates or changes a queue; fields left out keep their value.
    async fn queue_configure(
        &self,
        name: &str,
        patch: QueuePatch,
        now: Millis,
    ) -> Result<QueueInfo, StoreError>;

    /// Gives up, at once, every lease held by a worker whose name starts
    /// with `worker_prefix` (a server's own executors after a restart): each
    /// job goes back to its original place as `rules::after_interrupt`
    /// decides, without waiting for the lease to expire. Other workers'
    /// leases are left alone. Returns how many were released.
    async fn lease_release(
        &self,
        worker_prefix: &str,
        now: Millis,
    ) -> Result<Committed<u64>, StoreError>;

    /// Makes due scheduled jobs queued and puts expired leases back in line,
    /// in every queue; `jitter` (in `[0, 1)`) is for the backoff of timed-out
    /// attempts.
    async fn maintenance_run(
        &self,
        now: Millis,
        jitter: f64,
    ) -> Result<Committed<MaintenanceReport>, StoreError>;

    /// Deletes at most `limit` jobs that finished before `finished_before`,
    /// each with every start record of it (its attempt history and its
    /// entries in the start log, nothing of any job it keeps); returns how
    /// many jobs. Callers
    /// loop until it returns less than `limit`, so one call never holds the
    /// store for long.
    async fn retention_purge(&self, finished_before: Millis, limit: u32)
        -> Result<u64, StoreError>;

    /// `Ok` while the store can accept writes.
    async fn health(&self) -> Result<(), StoreError>;

    /// Milliseconds to add to this node's wall clock to get the store's
    /// clock (`store_now - local_now`), as last measured; 0 for a store on
    /// this machine. Callers add it to every `now` they pass, so lease
    /// expiry and due times follow one clock across nodes. Cheap: no I/O.
    fn clock_offset_ms(&self) -> i64 {
        0
    }

    /// `true` while this node is the one that should run maintenance
    /// (promotion, lease reaping, retention) on this store: one node per
    /// database. A store used by one process only is always its own leader.
    async fn maintenance_leader(&self) -> bool {
        true
    }

    /// What the store's writer has done since it opened (commits, group
    /// sizes, fsync times), for metrics; `None` for a store that keeps none.
    /// Cheap: no I/O.
    fn writer_stats(&self) -> Option<crate::stats::WriterStats> {
        None
    }

    /// What other processes writing the same storage committed, for the
    /// caller to wake its own waiters with (see [`External`]). Take-once:
    /// the first call gets the receiver, later ones `None`. `None` (the
    /// default) for a store only this process writes. Must be called inside
    /// a tokio runtime (a store may start its listener then).
    fn external(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<External>> {
        None
    }

    /// Finishes every write already sent, then stops: later calls answer
    /// `Closed`. Returns once the backend's resources (threads,
    /// connections) are released. Calling it again is harmless.
    async fn close(&self);
}
