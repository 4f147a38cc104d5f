//! The event hub behind `GET /v1/events`.
//!
//! Every committed job state change reaches [`EventHub::publish`] from
//! [`crate::Service::wake_for`] (the one place every write's changes pass
//! through), queue configuration from [`crate::Service::configure`], and
//! progress from [`crate::Service::heartbeat`]. Each event gets the next id
//! of this process (1, 2, …; ids start again when the server restarts), is
//! serialized once, kept in a bounded ring of recent events for replay
//! (`Last-Event-ID`), and sent to live subscribers through one
//! `tokio::sync::broadcast` channel. Publishing never waits for a
//! subscriber: the channel keeps the last `buffer` events and a subscriber
//! that falls further behind is told (`Lagged`) and dropped.

mod kind;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// One published event: what filters look at, and its JSON, made once.
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
    /// The [`EventView`] as JSON (the SSE `data:` line).
    pub json: String,
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

    /// Publishes one event per job state change, in order. The JSON is
    /// made before the lock is taken; under it, ids are given and events
    /// pushed and sent.
    pub fn publish(&self, changes: &Changes) {
        if changes.is_empty() {
            return;
        }
        let prepared: Vec<Prepared> = changes
            .jobs
            .iter()
            .map(|c| {
                let job = EventJob {
                    id: c.id.clone(),
                    seq: c.seq,
                    key: c.key.clone(),
                    state: state_view(c.to),
                };
                prepare(
                    kind_of(c.from, c.to, c.lease_lost),
                    c.at,
                    &c.queue,
                    Some(job),
                    None,
                )
            })
            .collect();
        let mut ring = self.lock();
        for (c, p) in changes.jobs.iter().zip(prepared) {
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
            self.push(&mut ring, p);
        }
    }

    /// Publishes a queue's configuration change.
    pub fn queue_configured(&self, queue: &str, at: Millis) {
        let p = prepare(EventKind::QueueConfigured, at, queue, None, None);
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
        let job = EventJob {
            id: id.to_string(),
            seq: r.seq,
            key: r.key,
            state: orderly_proto::JobState::Running,
        };
        let p = prepare(
            EventKind::Progress,
            at,
            &r.queue,
            Some(job),
            Some(progress.clone()),
        );
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
        let event = Arc::new(Event {
            id: ring.last,
            kind: p.kind,
            queue: p.queue,
            job: p.job,
            json: format!("{{\"id\":{},{}", ring.last, p.tail),
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

/// An event without its id: the JSON after `{"id":N,`.
struct Prepared {
    kind: EventKind,
    queue: String,
    job: Option<String>,
    tail: String,
}

/// The id field opens an [`EventView`]'s JSON; the id is written in under
/// the lock.
const ID_PLACEHOLDER: &str = "{\"id\":0,";

fn prepare(
    kind: EventKind,
    at: Millis,
    queue: &str,
    job: Option<EventJob>,
    progress: Option<Value>,
) -> Prepared {
    let job_id = job.as_ref().map(|j| j.id.clone());
    let view = EventView {
        id: 0,
        kind,
        at: rfc3339(at),
        queue: queue.to_string(),
        job,
        progress,
    };
    // An `EventView` holds strings, numbers and JSON values only, and
    // serializes `id` first.
    let json = serde_json::to_string(&view).unwrap_or_default();
    let tail = json
        .strip_prefix(ID_PLACEHOLDER)
        .unwrap_or("\"kind\":\"unserializable\"}")
        .to_string();
    Prepared {
        kind,
        queue: view.queue,
        job: job_id,
        tail,
    }
}

#[cfg(test)]
mod tests;
