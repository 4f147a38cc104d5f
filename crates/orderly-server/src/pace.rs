//! Live per-queue state behind `waiting_on` and `eta` (contract section
//! 4.1) that no store holds as such: when a worker last asked a queue for
//! work, when the queue's recent jobs started and how long its recent
//! attempts ran. Kept in memory by the service, fed from the [`Changes`] of
//! every write (a move into `running` is a start; a move out of it ends an
//! attempt whose `started_at` it carries).
//!
//! After a restart a queue's history is seeded, the first time one of its
//! jobs is explained, from the end of its start log in the store
//! (`Store::start_latest`, an index read of [`WINDOW`] records), so a
//! restarted server estimates at once. `no_worker` is counted from the
//! server's start: a claim that found nothing leaves no record to seed from.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use orderly_core::rules::{estimate_start, waiting_reason, ReasonFacts, RecentPace};
use orderly_core::{AttemptRecord, Changes, Job, JobState, Millis, Store, WaitingOn};

/// Starts and run times remembered per queue for the estimate.
pub const WINDOW: usize = 32;

/// The `reason`s of an attempt's error that say it ended without a report
/// (its lease ran out, or its runner gave it up): its length is not a run time.
const NOT_A_RUN: [&str; 2] = ["lease_expired", "interrupted"];

#[derive(Default)]
struct QueuePace {
    last_claim: Option<Millis>,
    starts: VecDeque<Millis>,
    runs: VecDeque<Millis>,
    /// Seeded from the store's start log (or nothing was there to seed from).
    seeded: bool,
}

fn push(window: &mut VecDeque<Millis>, value: Millis) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(value);
}

/// Recent claims, starts and run times of every queue.
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

    /// Records the starts and the ended attempts among `changes`: a move into
    /// `running` starts at its time; a move out of it ran from its
    /// `started_at`, unless its lease was lost (not a run time).
    pub fn observe(&self, changes: &Changes) {
        for c in &changes.jobs {
            if c.to == JobState::Running {
                self.with(&c.queue, |q| push(&mut q.starts, c.at));
            } else if c.from == Some(JobState::Running) && !c.lease_lost {
                if let Some(started) = c.started_at {
                    self.with(&c.queue, |q| push(&mut q.runs, (c.at - started).max(0)));
                }
            }
        }
    }

    /// The queues of `jobs` that explaining them needs and whose history was
    /// not seeded yet.
    pub fn unseeded(&self, jobs: &[Job]) -> Vec<String> {
        let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = jobs
            .iter()
            .filter(|j| j.wait_facts.is_some())
            .filter(|j| !map.get(&j.queue).is_some_and(|q| q.seeded))
            .map(|j| j.queue.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Seeds `queue`'s history from `latest`, the end of its start log
    /// (oldest first), which holds every start and end this process saw
    /// too; later changes add to it as usual. Once per queue.
    pub fn seed(&self, queue: &str, latest: &[AttemptRecord]) {
        self.with(queue, |q| {
            if q.seeded {
                return;
            }
            q.seeded = true;
            q.starts.clear();
            q.runs.clear();
            for a in latest {
                push(&mut q.starts, a.started_at);
                let lost = a
                    .error
                    .as_ref()
                    .and_then(|e| e.get("reason"))
                    .and_then(|r| r.as_str())
                    .is_some_and(|r| NOT_A_RUN.contains(&r));
                if let (Some(ended), false) = (a.ended_at, lost) {
                    push(&mut q.runs, (ended - a.started_at).max(0));
                }
            }
        });
    }

    /// [`Self::explain`] on each of `jobs` at `now`, seeding first the
    /// history of their queues not seeded yet from `store` (one bounded read
    /// per queue, once; a failed read is tried again next time).
    pub async fn explain_all(&self, store: &dyn Store, jobs: &mut [Job], now: Millis) {
        for queue in self.unseeded(jobs) {
            match store.start_latest(&queue, WINDOW as u32).await {
                Ok(latest) => self.seed(&queue, &latest),
                Err(e) => tracing::debug!(queue, error = %e, "cannot seed the pace"),
            }
        }
        for job in jobs {
            self.explain(job, now);
        }
    }

    /// Sets `waiting_on` and `eta` of a waiting job whose store read gave
    /// its `wait_facts`; leaves any other job as it is.
    pub fn explain(&self, job: &mut Job, now: Millis) {
        let Some(store) = &job.wait_facts else { return };
        let (last_claim, starts, runs) = self.with(&job.queue, |q| {
            (
                q.last_claim,
                q.starts.iter().copied().collect::<Vec<_>>(),
                q.runs.iter().copied().collect::<Vec<_>>(),
            )
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
        let recent = RecentPace {
            starts: &starts,
            runs: &runs,
        };
        // Nothing flows through a paused or unattended queue: no pace to go by.
        job.eta = match reason {
            Some(WaitingOn::Paused | WaitingOn::NoWorker) | None => None,
            Some(_) => job.position.and_then(|p| {
                estimate_start(&recent, p, job.key_position.unwrap_or(0), now, job.run_at)
            }),
        };
        job.waiting_on = reason;
    }
}
