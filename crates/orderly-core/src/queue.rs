//! Queues: their configuration and what they hold.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::executor::Executor;
use crate::job::JobState;

/// Reads a stored executor; one written before executors had a shape
/// (any JSON object was kept as given, and never ran) reads as none.
fn lenient_executor<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Executor>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.and_then(|v| serde_json::from_value(v).ok()))
}

/// Retry delays: `initial_ms * factor^(failures-1)`, capped at `max_ms`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial_ms: u64,
    /// Upper bound of any delay.
    pub max_ms: u64,
    /// Growth per failure.
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: QueueConfig::DEFAULT_BACKOFF_INITIAL_MS,
            max_ms: QueueConfig::DEFAULT_BACKOFF_MAX_MS,
            factor: QueueConfig::DEFAULT_BACKOFF_FACTOR,
        }
    }
}

/// A queue's configuration. A queue used before it is configured has [`QueueConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueConfig {
    /// Most jobs of this queue running at once.
    pub concurrency: u32,
    /// Starts allowed per job before a failure is final (a job may override it).
    pub max_attempts: u32,
    /// Retry delays.
    pub backoff: Backoff,
    /// Lease length given to a claim that names none.
    pub lease_ms: u64,
    /// A paused queue accepts jobs but starts none.
    pub paused: bool,
    /// The server runs this queue's jobs itself (none: pull workers).
    /// A stored executor this version cannot read is shown as none.
    #[serde(default, deserialize_with = "lenient_executor")]
    pub executor: Option<Executor>,
}

impl QueueConfig {
    /// Default concurrency: one at a time, strict FIFO.
    pub const DEFAULT_CONCURRENCY: u32 = 1;
    /// Default attempts per job.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
    /// Default first retry delay.
    pub const DEFAULT_BACKOFF_INITIAL_MS: u64 = 1_000;
    /// Default longest retry delay (one hour).
    pub const DEFAULT_BACKOFF_MAX_MS: u64 = 3_600_000;
    /// Default backoff growth factor.
    pub const DEFAULT_BACKOFF_FACTOR: f64 = 2.0;
    /// Default lease length.
    pub const DEFAULT_LEASE_MS: u64 = 30_000;
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            concurrency: Self::DEFAULT_CONCURRENCY,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::default(),
            lease_ms: Self::DEFAULT_LEASE_MS,
            paused: false,
            executor: None,
        }
    }
}

/// A change to a queue's configuration: `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueuePatch {
    /// New concurrency.
    pub concurrency: Option<u32>,
    /// New default attempts.
    pub max_attempts: Option<u32>,
    /// New backoff.
    pub backoff: Option<Backoff>,
    /// New default lease.
    pub lease_ms: Option<u64>,
    /// Pause or resume.
    pub paused: Option<bool>,
    /// New executor (`Some(None)` clears it).
    pub executor: Option<Option<Executor>>,
}

impl QueuePatch {
    /// Applies the patch to `config`.
    pub fn apply(&self, config: &mut QueueConfig) {
        if let Some(v) = self.concurrency {
            config.concurrency = v;
        }
        if let Some(v) = self.max_attempts {
            config.max_attempts = v;
        }
        if let Some(v) = self.backoff {
            config.backoff = v;
        }
        if let Some(v) = self.lease_ms {
            config.lease_ms = v;
        }
        if let Some(v) = self.paused {
            config.paused = v;
        }
        if let Some(v) = &self.executor {
            config.executor = v.clone();
        }
    }
}

/// Number of jobs in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Waiting for `run_at`.
    pub scheduled: u64,
    /// Ready.
    pub queued: u64,
    /// Leased.
    pub running: u64,
    /// Done.
    pub succeeded: u64,
    /// Failed for good.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl StateCounts {
    /// Adds `n` to the counter of `state`.
    pub fn add(&mut self, state: JobState, n: u64) {
        match state {
            JobState::Scheduled => self.scheduled += n,
            JobState::Queued => self.queued += n,
            JobState::Running => self.running += n,
            JobState::Succeeded => self.succeeded += n,
            JobState::Failed => self.failed += n,
            JobState::Cancelled => self.cancelled += n,
        }
    }
}

/// A queue as shown to users: its name, configuration and counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// Queue name.
    pub name: String,
    /// Effective configuration.
    pub config: QueueConfig,
    /// Jobs per state (finished jobs count until retention removes them).
    pub counts: StateCounts,
}
