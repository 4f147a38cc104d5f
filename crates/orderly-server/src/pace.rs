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
use orderly_core::{Changes, Job, JobState, LatestStart, Millis, Store, WaitingOn};

/// Starts and run times remembered per queue for the estimate.
pub const WINDOW: usize = 32;

/// Run times remembered per key, for the estimate of a job behind its key.
pub const KEY_WINDOW: usize = 8;

/// Keys per queue whose run times are surely remembered: the most recently
/// run ones. Once twice as many are held, all but these are forgotten, so
/// memory stays bounded however many keys come and go, at an amortized
/// cost per run that does not grow with them.
pub const KEYS: usize = 1_024;

/// The `reason`s of an attempt's error that say it ended without a report
/// (its lease ran out, or its runner gave it up): its length is not a run time.
const NOT_A_RUN: [&str; 2] = ["lease_expired", "interrupted"];

#[derive(Default)]
struct QueuePace {
    last_claim: Option<Millis>,
    starts: VecDeque<Millis>,
    runs: VecDeque<Millis>,
    /// Recent run times of the queue's keys (at most 2 × [`KEYS`]), and a
    /// counter of key runs that orders them by their last.
    key_runs: HashMap<String, KeyPace>,
    key_clock: u64,
    /// Seeded from the store's start log (or nothing was there to seed from).
    seeded: bool,
}

/// What one key's recent jobs measured.
#[derive(Default)]
struct KeyPace {
    runs: VecDeque<Millis>,
    handoffs: VecDeque<Millis>,
    /// When its last attempt ended.
    last_end: Option<Millis>,
    /// `key_clock` at its last run.
    used: u64,
}

impl QueuePace {
    /// The pace of `key`, marked as just run (forgetting all but the
    /// [`KEYS`] most recently run keys once twice as many are held).
    fn key(&mut self, key: &str) -> &mut KeyPace {
        if !self.key_runs.contains_key(key) && self.key_runs.len() >= 2 * KEYS {
            let mut used: Vec<u64> = self.key_runs.values().map(|k| k.used).collect();
            used.sort_unstable_by(|a, b| b.cmp(a));
            let keep_from = used[KEYS - 1];
            self.key_runs.retain(|_, k| k.used >= keep_from);
        }
        self.key_clock += 1;
        let clock = self.key_clock;
        let k = self.key_runs.entry(key.to_string()).or_default();
        k.used = clock;
        k
    }

    /// An attempt of a job with `key` ran for `ms`, ending at `end`.
    fn ran(&mut self, key: Option<&str>, ms: Millis, end: Millis) {
        push(&mut self.runs, ms, WINDOW);
        if let Some(key) = key {
            let k = self.key(key);
            push(&mut k.runs, ms, KEY_WINDOW);
            k.last_end = Some(end);
        }
    }

    /// A job with `key`, enqueued at `enqueued_at`, started at `at`: if it
    /// was waiting when its key's previous attempt ended, the time between
    /// is a handoff of the key.
    fn started(&mut self, key: Option<&str>, enqueued_at: Millis, at: Millis) {
        push(&mut self.starts, at, WINDOW);
        let Some(key) = key else { return };
        if let Some(k) = self.key_runs.get_mut(key) {
            if let Some(end) = k.last_end.take().filter(|e| enqueued_at <= *e) {
                push(&mut k.handoffs, (at - end).max(0), KEY_WINDOW);
            }
        }
    }
}

fn push(window: &mut VecDeque<Millis>, value: Millis, size: usize) {
    if window.len() == size {
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
                self.with(&c.queue, |q| {
                    q.started(c.key.as_deref(), c.enqueued_at, c.at)
                });
            } else if c.from == Some(JobState::Running) && !c.lease_lost {
                if let Some(started) = c.started_at {
                    let ms = (c.at - started).max(0);
                    self.with(&c.queue, |q| q.ran(c.key.as_deref(), ms, c.at));
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
    pub fn seed(&self, queue: &str, latest: &[LatestStart]) {
        self.with(queue, |q| {
            if q.seeded {
                return;
            }
            q.seeded = true;
            q.starts.clear();
            q.runs.clear();
            q.key_runs.clear();
            for a in latest {
                push(&mut q.starts, a.start.started_at, WINDOW);
                let lost = a
                    .error
                    .as_ref()
                    .and_then(|e| e.get("reason"))
                    .and_then(|r| r.as_str())
                    .is_some_and(|r| NOT_A_RUN.contains(&r));
                if let (Some(ended), false) = (a.ended_at, lost) {
                    let ms = (ended - a.start.started_at).max(0);
                    q.ran(a.start.key.as_deref(), ms, ended);
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
        // Behind its key, the key's own run times when it has some, else the queue's.
        let (last_claim, starts, runs, handoffs) = self.with(&job.queue, |q| {
            let key = job.key.as_ref().and_then(|k| q.key_runs.get(k));
            let runs = key.map_or(&q.runs, |k| &k.runs);
            (
                q.last_claim,
                q.starts.iter().copied().collect::<Vec<_>>(),
                runs.iter().copied().collect::<Vec<_>>(),
                key.map(|k| k.handoffs.iter().copied().collect::<Vec<_>>())
                    .unwrap_or_default(),
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
            handoffs: &handoffs,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// However many keys run, a queue remembers at most 2 × KEYS of them,
    /// always the KEYS most recently run among them.
    #[test]
    fn key_memory_stays_bounded_and_keeps_the_recent_keys() {
        let mut q = QueuePace::default();
        for i in 0..10 * KEYS {
            q.ran(Some(&format!("k{i}")), 5, i as Millis);
            assert!(
                q.key_runs.len() <= 2 * KEYS,
                "{} keys held",
                q.key_runs.len()
            );
        }
        for i in 9 * KEYS..10 * KEYS {
            assert!(
                q.key_runs.contains_key(&format!("k{i}")),
                "k{i} ran recently"
            );
        }
        // A key that runs again is recent again: kept while fewer than KEYS
        // others ran after it.
        q.ran(Some("k0"), 7, 0);
        for i in 0..KEYS - 1 {
            q.ran(Some(&format!("n{i}")), 5, 0);
        }
        assert_eq!(q.key_runs["k0"].runs, [7]);
    }
}
