//! Jobs: their states and the record every layer passes around.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Milliseconds since the Unix epoch, UTC. Every time in the domain uses it;
/// the HTTP layer renders RFC 3339.
pub type Millis = i64;

/// Where a job is in its life.
///
/// `Scheduled` and `Queued` are *waiting*; `Running` holds a lease;
/// `Succeeded`, `Failed` and `Cancelled` are *finished* and never change again
/// (except by an explicit retry, which puts the job back in line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `run_at` (a delay or a retry backoff).
    Scheduled,
    /// Ready to run; starts when it is first in line and capacity is free.
    Queued,
    /// Claimed by a worker under a lease.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with no attempts left (or a failure marked not retryable).
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 6] = [
        JobState::Scheduled,
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The state's name as the API and the stores spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a state name; `None` for anything else.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True for succeeded, failed and cancelled: the job will not run again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// True for scheduled and queued: the job waits in line.
    pub fn is_waiting(self) -> bool {
        matches!(self, JobState::Scheduled | JobState::Queued)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as stored and as shown to users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Client-supplied or generated id, unique in the store.
    pub id: String,
    /// The queue the job belongs to.
    pub queue: String,
    /// Ordering key: jobs sharing a key (within a queue) run one at a time in `seq` order.
    pub key: Option<String>,
    /// Position in the global acceptance order; strictly increasing in commit order.
    pub seq: i64,
    /// Current state.
    pub state: JobState,
    /// For a waiting job, how many waiting jobs of its queue are ahead of it; otherwise `None`.
    pub position: Option<u64>,
    /// The job's input, any JSON.
    pub payload: Value,
    /// Number of starts so far (0 until it first runs).
    pub attempt: u32,
    /// Starts allowed before a failure is final.
    pub max_attempts: u32,
    /// Per-attempt time limit, if any.
    pub timeout_ms: Option<u64>,
    /// When the job was accepted.
    pub enqueued_at: Millis,
    /// Not eligible before this time.
    pub run_at: Millis,
    /// When the latest attempt started.
    pub started_at: Option<Millis>,
    /// When the job finished.
    pub finished_at: Option<Millis>,
    /// Latest progress a worker reported.
    pub progress: Option<Value>,
    /// Result reported on success.
    pub result: Option<Value>,
    /// Latest error reported (or recorded by the server, e.g. a lease expiry).
    pub error: Option<Value>,
    /// A cancel was asked while the job ran; the worker sees it on heartbeat.
    pub cancel_requested: bool,
    /// The running attempt's lease expiry.
    pub lease_expires_at: Option<Millis>,
    /// The worker holding (or last holding) the job.
    pub worker: Option<String>,
    /// Global start counter of the latest start: sorting by it gives the order the server started jobs.
    pub start_no: Option<i64>,
    /// For a waiting job with a key, how many unfinished jobs of its key are
    /// ahead of it; otherwise `None`.
    #[serde(default)]
    pub key_position: Option<u64>,
    /// For a waiting job, what the store read about its surroundings in the
    /// same snapshot (see [`crate::rules::waiting_reason`]).
    #[serde(default)]
    pub wait_facts: Option<crate::waiting::WaitFacts>,
    /// For a waiting job, why it has not started (set by the service).
    #[serde(default)]
    pub waiting_on: Option<crate::waiting::WaitingOn>,
    /// For a waiting job, when it likely starts (set by the service; an estimate).
    #[serde(default)]
    pub eta: Option<crate::waiting::Eta>,
}

/// A job to enqueue, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The id (the service generates one when the client gave none).
    pub id: String,
    /// Optional ordering key.
    pub key: Option<String>,
    /// Input for the worker.
    pub payload: Value,
    /// Not before this time; `None` means now.
    pub run_at: Option<Millis>,
    /// Overrides the queue's `max_attempts`.
    pub max_attempts: Option<u32>,
    /// Per-attempt time limit.
    pub timeout_ms: Option<u64>,
}
