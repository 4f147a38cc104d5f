//! The bodies of `GET /v1/events` (server-sent events): each SSE message's
//! `data:` line is one of these as JSON, named by its `event:` line.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::JobState;

/// What an event reports (its `event:` line, and `kind` in its body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new job is in line (`queued`, or `scheduled` for a later time).
    Enqueued,
    /// A scheduled job's time came: it is `queued` now.
    Ready,
    /// A worker or executor took the job: it is `running`.
    Started,
    /// A running job reported progress with a heartbeat.
    Progress,
    /// The job finished successfully.
    Succeeded,
    /// The job failed for good.
    Failed,
    /// An attempt ended and the job waits for a retry backoff
    /// (`running` → `scheduled`): a failure, or a lease that ran past the
    /// job's time limit.
    Retrying,
    /// An attempt ended and the job is back in its place to run again at
    /// once (`running` → `queued`): a lease that expired or was released
    /// (an executor restarted), or a failure retried with no delay.
    Requeued,
    /// A failed or cancelled job was put back in line by
    /// `POST /v1/jobs/{id}/retry` (with a new `seq`).
    Retried,
    /// The job was cancelled.
    Cancelled,
    /// A waiting job now waits for a time (`queued` → `scheduled`). No
    /// operation makes this change today; it is named so every change has
    /// a kind.
    Scheduled,
    /// A queue was created or configured with `PUT /v1/queues/{queue}`.
    QueueConfigured,
}

impl EventKind {
    /// The kind as its `event:` line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Enqueued => "enqueued",
            EventKind::Ready => "ready",
            EventKind::Started => "started",
            EventKind::Progress => "progress",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Retrying => "retrying",
            EventKind::Requeued => "requeued",
            EventKind::Retried => "retried",
            EventKind::Cancelled => "cancelled",
            EventKind::Scheduled => "scheduled",
            EventKind::QueueConfigured => "queue_configured",
        }
    }
}

/// The job an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventJob {
    /// Job id.
    pub id: String,
    /// Its `seq` after the change (a retry gives a new one).
    pub seq: i64,
    /// Its ordering key.
    pub key: Option<String>,
    /// Its state after the change.
    pub state: JobState,
}

/// One event of the stream (`event:` is its kind, `id:` its id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Increases by one with every event the server process publishes
    /// (whatever the filter); starts again at 1 when the server restarts.
    pub id: u64,
    /// What happened.
    pub kind: EventKind,
    /// When (RFC 3339).
    pub at: String,
    /// The queue.
    pub queue: String,
    /// The job; absent for queue events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<EventJob>,
    /// The progress the heartbeat carried (`progress` events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
}

/// Body of `event: gap`: the events after `from` cannot all be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GapView {
    /// The `Last-Event-ID` the client gave.
    pub from: u64,
    /// The oldest event id the server still holds; the stream goes on from
    /// there (events between `from` and it are lost to this client).
    pub oldest: u64,
    /// `too_old` (the window moved past `from`) or `unknown` (`from` is
    /// ahead of every event: the server restarted and its ids began again).
    pub reason: String,
}

/// Body of `event: dropped`, the last message before the server closes a
/// subscriber that fell too far behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DroppedView {
    /// Why.
    pub reason: String,
    /// The id of the last event sent before it; reconnect with it as
    /// `Last-Event-ID` to resume (a `gap` says if that is too far back).
    pub last_id: Option<u64>,
}
