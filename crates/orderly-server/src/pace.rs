//! Live per-queue state behind `waiting_on` and `eta` (contract section
//! 4.1) that no store holds: when a worker last asked a queue for work, and
//! when the queue's recent jobs started. Kept in memory by the service; a
//! restarted server starts with no history (no estimate until two starts,
//! and `no_worker` counted from the server's start).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use orderly_core::rules::{estimate_start, waiting_reason, ReasonFacts};
use orderly_core::{Job, Millis, WaitingOn};

/// Starts remembered per queue for the estimate.
pub const WINDOW: usize = 32;

#[derive(Default)]
struct QueuePace {
    last_claim: Option<Millis>,
    starts: VecDeque<Millis>,
}

/// Recent claims and starts of every queue.
pub struct Pace {
    since: Millis,
    no_worker_after_ms: Millis,
    queues: Mutex<HashMap<String, QueuePace>>,
}

impl Pace {
    /// No history yet, counting idleness from `since`.
    pub fn new(since: Millis, no_worker_after_ms: Millis) -> Self {
        Pace {
            since,
            no_worker_after_ms,
            queues: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, queue: &str, f: impl FnOnce(&mut QueuePace) -> T) -> T {
        let mut map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(queue) {
            map.insert(queue.to_string(), QueuePace::default());
        }
        f(map.get_mut(queue).expect("inserted above"))
    }

    /// A worker (or executor) asked `queue` for work at `now`.
    pub fn claimed(&self, queue: &str, now: Millis) {
        self.with(queue, |q| q.last_claim = Some(now));
    }

    /// `n` jobs of `queue` started at `now`.
    pub fn started(&self, queue: &str, n: usize, now: Millis) {
        self.with(queue, |q| {
            for _ in 0..n {
                if q.starts.len() == WINDOW {
                    q.starts.pop_front();
                }
                q.starts.push_back(now);
            }
        });
    }

    /// Sets `waiting_on` and `eta` of a waiting job whose store read gave
    /// its `wait_facts`; leaves any other job as it is.
    pub fn explain(&self, job: &mut Job, now: Millis) {
        let Some(store) = &job.wait_facts else { return };
        let (last_claim, starts) = self.with(&job.queue, |q| {
            (q.last_claim, q.starts.iter().copied().collect::<Vec<_>>())
        });
        let idle_ms = now - last_claim.unwrap_or(self.since).max(self.since);
        let reason = waiting_reason(&ReasonFacts {
            state: job.state,
            attempt: job.attempt,
            run_at: job.run_at,
            store,
            idle_ms,
            no_worker_after_ms: self.no_worker_after_ms,
            now,
        });
        // Nothing flows through a paused or unattended queue: no pace to go by.
        job.eta = match reason {
            Some(WaitingOn::Paused | WaitingOn::NoWorker) | None => None,
            Some(_) => job
                .position
                .and_then(|p| estimate_start(&starts, p, now, job.run_at)),
        };
        job.waiting_on = reason;
    }
}
