//! # orderly-core
//!
//! The domain of Orderly, with no I/O: what a job and a queue are
//! ([`job`], [`queue`]), the names and limits users may give them
//! ([`validate`]), the pure rules that decide what runs next and what happens
//! after a failure ([`rules`]), and the [`Store`] trait through which every
//! other crate reaches storage ([`store`]).
//!
//! [`model`] is an executable statement of the ordering contract: a small,
//! obviously-correct in-memory queue that scans every job on every claim.
//! Property tests check the contract's invariants against it, and the store
//! conformance suite ([`conformance`], behind the `conformance` feature)
//! replays random interleavings against a real backend and the model side by
//! side, claim for claim.

pub mod executor;
pub mod job;
pub mod model;
pub mod park;
pub mod queue;
pub mod rules;
pub mod stats;
pub mod store;
pub mod validate;
pub mod waiting;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use executor::Executor;
pub use job::{Job, JobState, Millis, NewJob};
pub use park::ParkTicket;
pub use queue::{Backoff, QueueConfig, QueueInfo, QueuePatch, StateCounts};
pub use stats::{Distribution, WriterStats};
pub use store::{
    AttemptRecord, Changes, ClaimParams, Committed, EnqueueParams, Enqueued, External, Heartbeat,
    HeartbeatParams, LatestStart, Lease, ListParams, MaintenanceReport, Outcome, ReportParams,
    StartListParams, StartRecord, StateChange, Store, StoreError, Wakeups,
};
pub use validate::ValidationError;
pub use waiting::{Eta, WaitFacts, WaitingOn};
