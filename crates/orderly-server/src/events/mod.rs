//! The event hub behind `GET /v1/events`.
//!
//! Every committed job state change reaches [`EventHub::publish`] from
//! [`crate::Service::wake_for`] (the one place every write's changes pass
//! through), queue configuration from [`crate::Service::configure`], and
//! progress from [`crate::Service::heartbeat`]. Each event gets the next id
//! of this process (1, 2, …; ids start again when the server restarts), is
//! kept in a bounded ring of recent events for replay (`Last-Event-ID`),
//! and sent to live subscribers through one `tokio::sync::broadcast`
//! channel. Publishing never waits for a subscriber: the channel keeps the
//! last `buffer` events and a subscriber that falls further behind is told
//! (`Lagged`) and dropped.
//!
//! An event's JSON is made when it is first sent, once, and shared by every
//! subscriber ([`Event::json`]): a server nobody watches does not serialize
//! its events (that was about 4,000 instructions per job state change on
//! the request's thread, docs/performance.md, stop 22).

mod kind;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use orderly_core::{Changes, JobState, Millis};
use orderly_proto::{EventJob, EventKind, EventView, GapView};
use serde_json::Value;
use tokio::sync::broadcast;

pub use kind::kind_of;

use crate::convert::{rfc3339, state_view};

/// Sizes of the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Recent events kept for replay after a `Last-Event-ID`.
    pub ring: usize,
    /// Events a live subscriber may fall behind before it is dropped.
    pub buffer: usize,
}

impl Config {
    /// Default ring: the last 10,000 events.
    pub const DEFAULT_RING: usize = 10_000;
    /// Default subscriber buffer: 16,384 events. One write publishes all
    /// its changes at once (a batch enqueue, up to 10,000 jobs), so a
    /// subscriber that keeps up must be allowed more than one batch.
    pub const DEFAULT_BUFFER: usize = 16_384;
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ring: Self::DEFAULT_RING,
            buffer: Self::DEFAULT_BUFFER,
        }
    }
}

/// One published event: what filters look at, what its JSON is made of,
/// and that JSON once it was first asked for.
#[derive(Debug)]
pub struct Event {
    /// Its id.
    pub id: u64,
    /// Its kind (the SSE `event:` line).
    pub kind: EventKind,
    /// Its queue.
    pub queue: String,
    /// Its job, for job events.
    pub job: Option<String>,
    /// When it happened.
    at: Millis,
    /// The job's `seq`, key and state after the change, for job events.
    detail: Option<JobDetail>,
    /// The progress a heartbeat carried (`progress` events only).
    progress: Option<Value>,
    /// The [`EventView`] as JSON, made by the first [`Event::json`].
    json: OnceLock<String>,
}

/// What a job event says of its job besides the id.
#[derive(Debug)]
struct JobDetail {
    seq: i64,
    key: Option<String>,
    state: orderly_proto::JobState,
}

impl Event {
    /// The [`EventView`] as JSON (the SSE `data:` line), made on the first
    /// call and shared by every later one.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| {
            let view = EventView {
                id: self.id,
                kind: self.kind,
                at: rfc3339(self.at),
                queue: self.queue.clone(),
                job: self
                    .job
                    .as_ref()
                    .zip(self.detail.as_ref())
                    .map(|(id, d)| EventJob {
                        id: id.clone(),
                        seq: d.seq,
                        key: d.key.clone(),
                        state: d.state,
                    }),
                progress: self.progress.clone(),
            };
            // An `EventView` holds strings, numbers and JSON values only.
            serde_json::to_string(&view)
                .unwrap_or_else(|_| format!("{{\"id\":{},\"kind\":\"unserializable\"}}", self.id))
        })
    }
}

/// Which events a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this queue's.
    pub queue: Option<String>,
    /// Only this job's.
    pub job: Option<String>,
}

impl Filter {
    /// True when `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        self.queue.as_ref().is_none_or(|q| *q == e.queue)
            && self.job.as_ref().is_none_or(|j| e.job.as_ref() == Some(j))
    }
}

/// What a new subscriber gets: the replay, then a live receiver.
pub struct Subscription {
    /// Set when the events after the requested id cannot all be replayed.
    pub gap: Option<GapView>,
    /// Held events after the requested id, oldest first (unfiltered).
    pub replay: Vec<Arc<Event>>,
    /// The id of the newest event at subscription: live events up to it
    /// are in `replay` (or were before the requested id) and are skipped.
    pub horizon: u64,
    /// Live events published after subscription.
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// A running job as the hub last saw it start (for progress events).
#[derive(Debug, Clone)]
struct Running {
    queue: String,
    seq: i64,
    key: Option<String>,
}

struct Ring {
    /// Id of the newest event (0 before the first).
    last: u64,
    events: VecDeque<Arc<Event>>,
    /// Jobs seen starting and not seen leaving `running`.
    running: HashMap<String, Running>,
}

/// The hub: a ring of recent events and the live channel.
pub struct EventHub {
    config: Config,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl EventHub {
    /// A hub with these sizes (each at least 1).
    pub fn new(config: Config) -> Self {
        let config = Config {
            ring: config.ring.max(1),
            buffer: config.buffer.max(1),
        };
        let (tx, _) = broadcast::channel(config.buffer);
        EventHub {
            config,
            ring: Mutex::new(Ring {
                last: 0,
                events: VecDeque::with_capacity(config.ring.min(4096)),
                running: HashMap::new(),
            }),
            tx,
        }
    }

    /// The hub's sizes.
    pub fn config(&self) -> Config {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves the ring consistent (every
        // step below is a push or a pop), so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of the newest event (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.lock().last
    }

    /// Publishes one event per job state change, in order: ids are given
    /// and events pushed and sent under the lock (their JSON waits for the
    /// first subscriber that sends them, see [`Event::json`]).
    pub fn publish(&self, changes: &Changes) {
        if changes.is_empty() {
            return;
        }
        let mut ring = self.lock();
        for c in &changes.jobs {
            if c.to == JobState::Running {
                ring.running.insert(
                    c.id.clone(),
                    Running {
                        queue: c.queue.clone(),
                        seq: c.seq,
                        key: c.key.clone(),
                    },
                );
            } else if c.from == Some(JobState::Running) {
                ring.running.remove(&c.id);
            }
            let p = Prepared {
                kind: kind_of(c.from, c.to, c.lease_lost),
                at: c.at,
                queue: c.queue.clone(),
                job: Some((
                    c.id.clone(),
                    JobDetail {
                        seq: c.seq,
                        key: c.key.clone(),
                        state: state_view(c.to),
                    },
                )),
                progress: None,
            };
            self.push(&mut ring, p);
        }
    }

    /// Publishes a queue's configuration change.
    pub fn queue_configured(&self, queue: &str, at: Millis) {
        let p = Prepared {
            kind: EventKind::QueueConfigured,
            at,
            queue: queue.to_string(),
            job: None,
            progress: None,
        };
        self.push(&mut self.lock(), p);
    }

    /// Publishes progress of job `id` if the hub saw it start and not
    /// finish; returns `false` when it does not know the job as running
    /// (see [`Self::progress_of`]).
    pub fn progress(&self, id: &str, progress: &Value, at: Millis) -> bool {
        let mut ring = self.lock();
        let Some(r) = ring.running.get(id).cloned() else {
            return false;
        };
        let p = Prepared {
            kind: EventKind::Progress,
            at,
            queue: r.queue,
            job: Some((
                id.to_string(),
                JobDetail {
                    seq: r.seq,
                    key: r.key,
                    state: orderly_proto::JobState::Running,
                },
            )),
            progress: Some(progress.clone()),
        };
        self.push(&mut ring, p);
        true
    }

    /// Publishes progress of a job the hub did not see start (it started
    /// before this process), read as running after event `mark` was the
    /// newest: unless an event of that job other than progress came after
    /// `mark` (it left `running` since the read, so the progress is stale)
    /// or the ring no longer reaches back to `mark`. From then on the hub
    /// knows the job as running.
    pub fn progress_of(
        &self,
        mark: u64,
        job: &orderly_core::Job,
        progress: &Value,
        at: Millis,
    ) -> bool {
        let mut ring = self.lock();
        let reaches = ring.events.front().is_none_or(|e| e.id <= mark + 1);
        let moved = ring
            .events
            .iter()
            .rev()
            .take_while(|e| e.id > mark)
            .any(|e| e.kind != EventKind::Progress && e.job.as_deref() == Some(job.id.as_str()));
        if !reaches || moved || job.state != JobState::Running {
            return false;
        }
        ring.running.insert(
            job.id.clone(),
            Running {
                queue: job.queue.clone(),
                seq: job.seq,
                key: job.key.clone(),
            },
        );
        drop(ring);
        self.progress(&job.id, progress, at)
    }

    fn push(&self, ring: &mut Ring, p: Prepared) {
        ring.last += 1;
        let (job, detail) = p.job.unzip();
        let event = Arc::new(Event {
            id: ring.last,
            kind: p.kind,
            queue: p.queue,
            job,
            at: p.at,
            detail,
            progress: p.progress,
            json: OnceLock::new(),
        });
        if ring.events.len() == self.config.ring {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // Sent under the lock, so subscribers see ids in order; an error
        // only means nobody listens now.
        let _ = self.tx.send(event);
    }

    /// Subscribes: the events after `after` the ring still holds (with a
    /// gap notice when it no longer holds all of them), then live events.
    /// Without `after`, live events only. The receiver is made under the
    /// same lock the replay is read under, so no event is missed or sent
    /// twice.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let ring = self.lock();
        let live = self.tx.subscribe();
        let horizon = ring.last;
        let (gap, replay) = match after {
            None => (None, Vec::new()),
            Some(a) => {
                let oldest = ring.events.front().map_or(ring.last + 1, |e| e.id);
                let reason = if a > ring.last {
                    Some("unknown")
                } else if a + 1 < oldest {
                    Some("too_old")
                } else {
                    None
                };
                let gap = reason.map(|r| GapView {
                    from: a,
                    oldest,
                    reason: r.into(),
                });
                let from = if gap.is_some() { 0 } else { a };
                let replay = ring
                    .events
                    .iter()
                    .filter(|e| e.id > from)
                    .cloned()
                    .collect();
                (gap, replay)
            }
        };
        Subscription {
            gap,
            replay,
            horizon,
            live,
        }
    }
}

/// An event before it has its id.
struct Prepared {
    kind: EventKind,
    at: Millis,
    queue: String,
    job: Option<(String, JobDetail)>,
    progress: Option<Value>,
}

#[cfg(test)]
mod tests;
