//! An executable statement of the ordering contract.
//!
//! [`Model`] is an in-memory job queue that keeps every job in a vector and
//! applies [`crate::rules`] by scanning it on every claim: slow, but plainly
//! right. Property tests below check the contract's invariants on random
//! interleavings of enqueue, claim, complete, fail, cancel and lease expiry;
//! the store conformance suite replays the same kind of interleavings against
//! a real backend and this model and demands the same claims.

use std::collections::BTreeMap;

use crate::job::{JobState, Millis};
use crate::queue::QueueConfig;
use crate::rules::{self, AfterFailure, Candidate};

/// One job in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelJob {
    /// Acceptance order.
    pub seq: i64,
    /// Queue.
    pub queue: String,
    /// Ordering key.
    pub key: Option<String>,
    /// State.
    pub state: JobState,
    /// Not before.
    pub run_at: Millis,
    /// Starts so far.
    pub attempt: u32,
    /// Starts allowed.
    pub max_attempts: u32,
    /// Lease expiry while running.
    pub lease_expires_at: Option<Millis>,
    /// Cancel asked while running.
    pub cancel_requested: bool,
}

/// The reference queue (see module docs).
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Jobs by `seq`.
    pub jobs: BTreeMap<i64, ModelJob>,
    /// Configured queues (others use the defaults).
    pub queues: BTreeMap<String, QueueConfig>,
    /// Every start, in order: `(seq, attempt)`.
    pub starts: Vec<(i64, u32)>,
    next_seq: i64,
}

impl Model {
    /// An empty model.
    pub fn new() -> Self {
        Model {
            next_seq: 1,
            ..Default::default()
        }
    }

    /// The configuration of `queue`.
    pub fn config(&self, queue: &str) -> QueueConfig {
        self.queues.get(queue).cloned().unwrap_or_default()
    }

    /// Enqueues a job; returns its `seq`.
    pub fn enqueue(&mut self, queue: &str, key: Option<&str>, run_at: Millis, now: Millis) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let max_attempts = self.config(queue).max_attempts;
        self.jobs.insert(
            seq,
            ModelJob {
                seq,
                queue: queue.to_string(),
                key: key.map(str::to_string),
                state: rules::waiting_state(run_at, now),
                run_at: run_at.max(now),
                attempt: 0,
                max_attempts,
                lease_expires_at: None,
                cancel_requested: false,
            },
        );
        seq
    }

    fn expire_leases(&mut self, queue: &str, now: Millis) {
        for j in self.jobs.values_mut() {
            if j.queue == queue && j.state == JobState::Running {
                if let Some(exp) = j.lease_expires_at {
                    if exp <= now {
                        j.state = rules::after_lease_expiry(
                            j.attempt,
                            j.max_attempts,
                            j.cancel_requested,
                        );
                        j.lease_expires_at = None;
                        j.run_at = now;
                    }
                }
            }
        }
    }

    /// Claims up to `max` jobs of `queue` at `now`; returns their `seq`s in start order.
    pub fn claim(&mut self, queue: &str, max: u32, now: Millis) -> Vec<i64> {
        let config = self.config(queue);
        self.expire_leases(queue, now);
        if config.paused {
            return Vec::new();
        }
        let running = self
            .jobs
            .values()
            .filter(|j| j.queue == queue && j.state == JobState::Running)
            .count() as u64;
        let capacity = rules::claim_capacity(config.concurrency, running, max);
        let candidates: Vec<Candidate<'_>> = self
            .jobs
            .values()
            .filter(|j| j.queue == queue)
            .map(|j| Candidate {
                seq: j.seq,
                state: j.state,
                key: j.key.as_deref(),
                run_at: j.run_at,
            })
            .collect();
        let chosen = rules::eligible(&candidates, now, capacity);
        for seq in &chosen {
            let j = self.jobs.get_mut(seq).expect("chosen job exists");
            j.state = JobState::Running;
            j.attempt += 1;
            j.lease_expires_at = Some(rules::lease_expiry(now, config.lease_ms, None));
            self.starts.push((j.seq, j.attempt));
        }
        chosen
    }

    /// Reports success of a running job; false if it was not running.
    pub fn complete(&mut self, seq: i64) -> bool {
        match self.jobs.get_mut(&seq) {
            Some(j) if j.state == JobState::Running => {
                j.state = JobState::Succeeded;
                j.lease_expires_at = None;
                true
            }
            _ => false,
        }
    }

    /// Reports failure of a running job; false if it was not running.
    /// Uses jitter `unit` 0.5 for the backoff.
    pub fn fail(&mut self, seq: i64, retry: bool, now: Millis) -> bool {
        let Some(j) = self.jobs.get(&seq) else {
            return false;
        };
        if j.state != JobState::Running {
            return false;
        }
        let backoff = self.config(&j.queue).backoff;
        let j = self.jobs.get_mut(&seq).expect("exists");
        match rules::after_failure(
            j.attempt,
            j.max_attempts,
            retry,
            j.cancel_requested,
            &backoff,
            now,
            0.5,
        ) {
            AfterFailure::Retry { run_at } => {
                j.state = rules::waiting_state(run_at, now);
                j.run_at = run_at;
            }
            AfterFailure::Finish(state) => j.state = state,
        }
        j.lease_expires_at = None;
        true
    }

    /// Cancels a job: waiting jobs at once, running ones by request. False if already finished.
    pub fn cancel(&mut self, seq: i64) -> bool {
        match self.jobs.get_mut(&seq) {
            Some(j) if j.state.is_waiting() => {
                j.state = JobState::Cancelled;
                true
            }
            Some(j) if j.state == JobState::Running => {
                j.cancel_requested = true;
                true
            }
            _ => false,
        }
    }

    /// Jobs of `queue` currently running.
    pub fn running(&self, queue: &str) -> Vec<i64> {
        self.jobs
            .values()
            .filter(|j| j.queue == queue && j.state == JobState::Running)
            .map(|j| j.seq)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Enqueue { key: Option<u8>, delay: u8 },
        Claim { max: u8 },
        Complete { pick: u8 },
        Fail { pick: u8, retry: bool },
        Cancel { pick: u8 },
        Advance { ms: u16 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (proptest::option::weighted(0.6, 0u8..4), prop_oneof![4 => Just(0u8), 1 => 1u8..50]).prop_map(|(key, delay)| Op::Enqueue { key, delay }),
            4 => (1u8..4).prop_map(|max| Op::Claim { max }),
            3 => any::<u8>().prop_map(|pick| Op::Complete { pick }),
            1 => (any::<u8>(), any::<bool>()).prop_map(|(pick, retry)| Op::Fail { pick, retry }),
            1 => any::<u8>().prop_map(|pick| Op::Cancel { pick }),
            1 => (1u16..3000).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    fn pick_running(m: &Model, pick: u8) -> Option<i64> {
        let r = m.running("q");
        (!r.is_empty()).then(|| r[pick as usize % r.len()])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Contract section 2, checked on every claim of a random interleaving.
        #[test]
        fn every_claim_keeps_the_ordering_contract(concurrency in 1u32..4, ops in proptest::collection::vec(op(), 1..120)) {
            let mut m = Model::new();
            m.queues.insert("q".into(), QueueConfig {
                concurrency,
                max_attempts: 3,
                backoff: crate::queue::Backoff { initial_ms: 100, max_ms: 1000, factor: 2.0 },
                lease_ms: 1000,
                ..QueueConfig::default()
            });
            let mut now: Millis = 1_000_000;
            for op in ops {
                match op {
                    Op::Enqueue { key, delay } => {
                        let key = key.map(|k| format!("k{k}"));
                        m.enqueue("q", key.as_deref(), now + delay as i64 * 10, now);
                    }
                    Op::Claim { max } => {
                        let before = m.clone();
                        let claimed = m.claim("q", max as u32, now);
                        // Concurrency is never exceeded.
                        prop_assert!(m.running("q").len() as u32 <= concurrency);
                        // Claims come out in seq order.
                        prop_assert!(claimed.windows(2).all(|w| w[0] < w[1]));
                        for &seq in &claimed {
                            let job = &m.jobs[&seq];
                            // A keyed job starts only when every earlier job of its key has finished.
                            if let Some(k) = &job.key {
                                for other in m.jobs.values().filter(|o| o.seq < seq && o.key.as_ref() == Some(k)) {
                                    prop_assert!(other.state.is_finished(), "job {} started before earlier {} of key {} finished", seq, other.seq, k);
                                }
                            }
                            // Nothing earlier that could have started was skipped
                            // (evaluated on the state the claim saw, after leases expired and delays passed).
                            let mut seen = before.clone();
                            seen.expire_leases("q", now);
                            for other in seen.jobs.values().filter(|o| o.seq < seq) {
                                let due = other.state == JobState::Queued || (other.state == JobState::Scheduled && other.run_at <= now);
                                let key_free = match &other.key {
                                    None => true,
                                    Some(k) => !seen.jobs.values().any(|x| x.seq < other.seq && x.key.as_ref() == Some(k) && !x.state.is_finished()),
                                };
                                if due && key_free {
                                    prop_assert!(claimed.contains(&other.seq), "job {} started while earlier eligible job {} waited", seq, other.seq);
                                }
                            }
                        }
                        // A job whose lease expired is the next of its key to start.
                        for j in before.jobs.values() {
                            if j.state == JobState::Running && j.lease_expires_at.is_some_and(|e| e <= now) && m.jobs[&j.seq].state == JobState::Queued {
                                for &seq in &claimed {
                                    let later = &m.jobs[&seq];
                                    prop_assert!(!(later.seq > j.seq && j.key.is_some() && later.key == j.key));
                                }
                            }
                        }
                    }
                    Op::Complete { pick } => {
                        if let Some(seq) = pick_running(&m, pick) { prop_assert!(m.complete(seq)); }
                    }
                    Op::Fail { pick, retry } => {
                        if let Some(seq) = pick_running(&m, pick) { prop_assert!(m.fail(seq, retry, now)); }
                    }
                    Op::Cancel { pick } => {
                        if !m.jobs.is_empty() {
                            let seqs: Vec<i64> = m.jobs.keys().copied().collect();
                            m.cancel(seqs[pick as usize % seqs.len()]);
                        }
                    }
                    Op::Advance { ms } => now += ms as i64,
                }
                // At most one job per key runs at once.
                let mut keys = std::collections::HashSet::new();
                for j in m.jobs.values().filter(|j| j.state == JobState::Running) {
                    if let Some(k) = &j.key { prop_assert!(keys.insert(k.clone()), "two jobs of key {} running", k); }
                }
            }
            // Start counter: each start of a given job has attempt numbers 1, 2, 3...
            let mut attempts: BTreeMap<i64, u32> = BTreeMap::new();
            for (seq, attempt) in &m.starts {
                let a = attempts.entry(*seq).or_default();
                *a += 1;
                prop_assert_eq!(*a, *attempt);
            }
        }
    }

    #[test]
    fn seed_scenario_runs_one_two_three() {
        let mut m = Model::new();
        let a = m.enqueue("default", None, 0, 0);
        let b = m.enqueue("default", None, 0, 0);
        let c = m.enqueue("default", None, 0, 0);
        assert_eq!(m.claim("default", 3, 0), vec![a]);
        assert_eq!(m.claim("default", 3, 0), Vec::<i64>::new());
        assert!(m.complete(a));
        assert_eq!(m.claim("default", 3, 0), vec![b]);
        assert!(m.complete(b));
        assert_eq!(m.claim("default", 3, 0), vec![c]);
    }

    #[test]
    fn expired_lease_runs_again_before_later_jobs() {
        let mut m = Model::new();
        let a = m.enqueue("default", None, 0, 0);
        let _b = m.enqueue("default", None, 0, 0);
        assert_eq!(m.claim("default", 1, 0), vec![a]);
        let after = QueueConfig::default().lease_ms as i64;
        assert_eq!(m.claim("default", 1, after), vec![a]);
        assert_eq!(m.jobs[&a].attempt, 2);
    }
}
