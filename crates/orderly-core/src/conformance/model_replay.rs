//! Random interleavings replayed against the store and the reference
//! [`Model`] side by side, claim for claim.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use crate::job::{JobState, Millis};
use crate::model::Model;
use crate::queue::{Backoff, QueueConfig, QueuePatch};
use crate::store::{HeartbeatParams, ListParams, Outcome, Store};

use super::{
    cancel, claim_params, configure, failure, nj, report, success, try_enqueue, XorShift, JITTER,
    T0, WORKER,
};

/// Seeds run by [`random_interleavings_match_model`].
pub const MODEL_SEEDS: u64 = 30;
/// Operations per seed.
pub const MODEL_OPS: usize = 150;

/// Runs [`MODEL_SEEDS`] random interleavings, each against a fresh store from
/// `make_store` and a fresh [`Model`], demanding the same claims.
pub async fn random_interleavings_match_model<S, F, Fut>(make_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    for seed in 1..=MODEL_SEEDS {
        let store = make_store().await;
        interleaving_matches_model(&store, seed, MODEL_OPS).await;
    }
}

struct Run {
    seed: u64,
    step: usize,
    log: Vec<String>,
}

impl Run {
    fn fail(&self, msg: String) -> ! {
        panic!(
            "model and store disagree (seed {}, step {}): {msg}\nops (model seqs):\n  {}",
            self.seed,
            self.step,
            self.log.join("\n  ")
        )
    }
}

/// Ordering class of a state: the model never promotes scheduled jobs, so
/// `scheduled` and `queued` compare as one.
fn waiting_or(state: JobState) -> JobState {
    if state.is_waiting() {
        JobState::Queued
    } else {
        state
    }
}

/// One random interleaving (seed `seed`, `ops` operations) on `store`, which
/// must be fresh: enqueue (with or without one of 3 keys, sometimes delayed),
/// claim (max 1..3), complete, fail (retry or not), cancel, heartbeat, advance
/// time past leases, and maintenance, applied to the store and the [`Model`]
/// alike. Every claim must start the same jobs in the same order, after
/// every operation every job must have the same state, attempt, `run_at`
/// `position` (waiting jobs ahead, counted from the model) and
/// `key_position` (unfinished jobs of its key ahead), and at the end the
/// start log must hold exactly the claims' starts, in order.
pub async fn interleaving_matches_model<S: Store>(store: &S, seed: u64, ops: usize) {
    let s: &dyn Store = store;
    const Q: &str = "random";
    const LEASE_MS: u64 = 1_000;
    let mut rng = XorShift::new(seed);
    let concurrency = 1 + rng.below(3) as u32;
    let config = QueueConfig {
        concurrency,
        max_attempts: 3,
        backoff: Backoff {
            initial_ms: 0,
            max_ms: 0,
            factor: 1.0,
        },
        lease_ms: LEASE_MS,
        ..QueueConfig::default()
    };
    configure(
        s,
        Q,
        QueuePatch {
            concurrency: Some(config.concurrency),
            max_attempts: Some(config.max_attempts),
            backoff: Some(config.backoff),
            lease_ms: Some(config.lease_ms),
            paused: Some(false),
            executor: Some(None),
        },
    )
    .await;
    let mut model = Model::new();
    model.queues.insert(Q.to_string(), config);
    let mut run = Run {
        seed,
        step: 0,
        log: vec![format!(
            "configure concurrency {concurrency}, lease 1000, max_attempts 3, backoff 0"
        )],
    };
    let mut now: Millis = T0;
    // model seq -> (id, store seq); store seq -> model seq; model seq -> current token.
    let mut by_model: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    let mut by_store: HashMap<i64, i64> = HashMap::new();
    let mut tokens: HashMap<i64, String> = HashMap::new();
    let mut next_id = 0u64;
    // Every start the claims answered, in order: the start log must be these.
    let mut started = Vec::new();

    for step in 0..ops {
        run.step = step;
        let roll = rng.below(100);
        match roll {
            0..=29 => {
                let n = 1 + rng.below(2) as usize;
                let mut jobs = Vec::new();
                let mut descr = Vec::new();
                for _ in 0..n {
                    next_id += 1;
                    let key = (rng.below(10) < 6).then(|| ["a", "b", "c"][rng.below(3) as usize]);
                    let delay = if rng.below(5) == 0 {
                        1 + rng.below(2_000) as i64
                    } else {
                        0
                    };
                    let id = format!("s{seed}-j{next_id}");
                    let mut job = nj(&id);
                    job.key = key.map(str::to_string);
                    if delay > 0 {
                        job.run_at = Some(now + delay);
                    }
                    descr.push(format!("key {key:?} delay {delay}"));
                    jobs.push(job);
                }
                let out = match try_enqueue(s, Q, jobs.clone(), now).await {
                    Ok(out) => out,
                    Err(e) => run.fail(format!("enqueue failed: {e:?}")),
                };
                if out.len() != jobs.len() {
                    run.fail(format!(
                        "enqueue of {} jobs returned {}",
                        jobs.len(),
                        out.len()
                    ));
                }
                let mut seqs = Vec::new();
                for (job, e) in jobs.iter().zip(out) {
                    let mseq = model.enqueue(Q, job.key.as_deref(), job.run_at.unwrap_or(now), now);
                    if !e.created {
                        run.fail(format!("new job {} reported as a replay", job.id));
                    }
                    by_model.insert(mseq, (job.id.clone(), e.job.seq));
                    by_store.insert(e.job.seq, mseq);
                    seqs.push(mseq);
                }
                run.log.push(format!(
                    "T+{}: enqueue {} -> seqs {seqs:?}",
                    now - T0,
                    descr.join(", ")
                ));
            }
            30..=54 => {
                let max = 1 + rng.below(3) as u32;
                let leases = match s.job_claim(claim_params(Q, WORKER, max, None, now)).await {
                    Ok(l) => l.value,
                    Err(e) => run.fail(format!("claim failed: {e:?}")),
                };
                let got: Vec<i64> = leases
                    .iter()
                    .map(|l| by_store.get(&l.job.seq).copied().unwrap_or(-l.job.seq))
                    .collect();
                let want = model.claim(Q, max, now);
                run.log
                    .push(format!("T+{}: claim max {max} -> model {want:?}", now - T0));
                if got != want {
                    run.fail(format!(
                        "claim max {max}: store started {got:?}, model {want:?}"
                    ));
                }
                for (l, mseq) in leases.iter().zip(&want) {
                    let m = &model.jobs[mseq];
                    if l.job.attempt != m.attempt {
                        run.fail(format!(
                            "seq {mseq}: store attempt {}, model {}",
                            l.job.attempt, m.attempt
                        ));
                    }
                    if Some(l.expires_at) != m.lease_expires_at {
                        run.fail(format!(
                            "seq {mseq}: store lease expiry {}, model {:?}",
                            l.expires_at, m.lease_expires_at
                        ));
                    }
                    tokens.insert(*mseq, l.token.clone());
                }
                started.extend(
                    leases
                        .iter()
                        .map(|l| (l.job.start_no, l.job.seq, l.job.id.clone(), l.job.attempt)),
                );
            }
            55..=84 => {
                // A report or heartbeat on a running job whose lease is still valid.
                let live: Vec<i64> = model
                    .running(Q)
                    .into_iter()
                    .filter(|seq| model.jobs[seq].lease_expires_at.is_some_and(|e| e > now))
                    .collect();
                if live.is_empty() {
                    run.log
                        .push(format!("T+{}: (no live lease to report on)", now - T0));
                    continue;
                }
                let mseq = live[rng.below(live.len() as u64) as usize];
                let id = by_model[&mseq].0.clone();
                let token = tokens[&mseq].clone();
                let kind = rng.below(30);
                if kind < 20 {
                    let outcome = if kind < 13 {
                        success(&id)
                    } else {
                        failure(kind & 1 == 0)
                    };
                    let descr = match &outcome {
                        Outcome::Succeeded { .. } => "complete".to_string(),
                        Outcome::Failed { retry, .. } => format!("fail retry={retry}"),
                    };
                    run.log.push(format!("T+{}: {descr} seq {mseq}", now - T0));
                    let job = match report(s, &id, &token, outcome.clone(), now).await {
                        Ok(j) => j,
                        Err(e) => run.fail(format!("{descr} of seq {mseq} refused: {e:?}")),
                    };
                    let ok = match outcome {
                        Outcome::Succeeded { .. } => model.complete(mseq),
                        Outcome::Failed { retry, .. } => model.fail(mseq, retry, now),
                    };
                    assert!(ok, "model refused a report on a running job");
                    let m = &model.jobs[&mseq];
                    if waiting_or(job.state) != waiting_or(m.state) {
                        run.fail(format!(
                            "after {descr} seq {mseq}: store state {}, model {}",
                            job.state, m.state
                        ));
                    }
                } else if kind < 25 {
                    run.log
                        .push(format!("T+{}: heartbeat seq {mseq}", now - T0));
                    let hb = match s
                        .job_heartbeat(HeartbeatParams {
                            id: id.clone(),
                            token,
                            progress: None,
                            now,
                        })
                        .await
                    {
                        Ok(hb) => hb,
                        Err(e) => run.fail(format!("heartbeat of seq {mseq} refused: {e:?}")),
                    };
                    let m = model.jobs.get_mut(&mseq).expect("model job");
                    m.lease_expires_at = Some(now + LEASE_MS as i64);
                    if hb.expires_at != now + LEASE_MS as i64
                        || hb.cancel_requested != m.cancel_requested
                    {
                        run.fail(format!(
                            "heartbeat of seq {mseq}: store {hb:?}, model expiry {} cancel_requested {}",
                            now + LEASE_MS as i64,
                            m.cancel_requested
                        ));
                    }
                } else {
                    run.log
                        .push(format!("T+{}: cancel running seq {mseq}", now - T0));
                    if let Err(e) = cancel(s, &id, now).await {
                        run.fail(format!("cancel of running seq {mseq} refused: {e:?}"));
                    }
                    model.cancel(mseq);
                }
            }
            85..=89 => {
                let open: Vec<i64> = model
                    .jobs
                    .values()
                    .filter(|j| !j.state.is_finished())
                    .map(|j| j.seq)
                    .collect();
                if open.is_empty() {
                    continue;
                }
                let mseq = open[rng.below(open.len() as u64) as usize];
                run.log.push(format!(
                    "T+{}: cancel seq {mseq} ({})",
                    now - T0,
                    model.jobs[&mseq].state
                ));
                if let Err(e) = cancel(s, &by_model[&mseq].0, now).await {
                    run.fail(format!("cancel of seq {mseq} refused: {e:?}"));
                }
                assert!(
                    model.cancel(mseq),
                    "model refused to cancel an unfinished job"
                );
            }
            90..=96 => {
                let ms = 1 + rng.below(1_500) as i64;
                now += ms;
                run.log.push(format!("advance {ms} ms to T+{}", now - T0));
            }
            _ => {
                run.log.push(format!("T+{}: maintenance", now - T0));
                if let Err(e) = s.maintenance_run(now, JITTER).await {
                    run.fail(format!("maintenance failed: {e:?}"));
                }
                // The model expires leases when claiming; a claim of nothing does just that.
                model.claim(Q, 0, now);
            }
        }
        compare_with_model(s, Q, &model, &by_store, &run).await;
    }
    let log: Vec<_> = super::starts::whole_log(s, Q, 7)
        .await
        .into_iter()
        .map(|r| (Some(r.start_no), r.seq, r.job_id, r.attempt))
        .collect();
    if log != started {
        run.fail(format!(
            "the start log is not the claims' starts in order:\n  log    {log:?}\n  claims {started:?}"
        ));
    }
}

async fn compare_with_model(
    s: &dyn Store,
    queue: &str,
    model: &Model,
    by_store: &HashMap<i64, i64>,
    run: &Run,
) {
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = match s
            .job_list(ListParams {
                queue: queue.into(),
                key: None,
                state: None,
                after,
                limit: 1_000,
            })
            .await
        {
            Ok(p) => p,
            Err(e) => run.fail(format!("job_list failed: {e:?}")),
        };
        if page.is_empty() {
            break;
        }
        after = page.last().map(|j| j.seq);
        listed.extend(page);
    }
    if listed.len() != model.jobs.len() {
        run.fail(format!(
            "store lists {} jobs, model has {}",
            listed.len(),
            model.jobs.len()
        ));
    }
    let mut seen = HashSet::new();
    // Waiting jobs of the model listed so far: the position of the next
    // waiting one (section 4.1: the waiting jobs of its queue ahead of it).
    let mut ahead = 0u64;
    // Per key, its unfinished jobs listed so far: the key position of the
    // next waiting one (its line: the unfinished jobs of its key ahead).
    let mut key_ahead: HashMap<&str, u64> = HashMap::new();
    for job in &listed {
        let Some(&mseq) = by_store.get(&job.seq) else {
            run.fail(format!("store lists unknown seq {} ({})", job.seq, job.id));
        };
        seen.insert(mseq);
        let m = &model.jobs[&mseq];
        let store_view = (waiting_or(job.state), job.attempt);
        let model_view = (waiting_or(m.state), m.attempt);
        if store_view != model_view {
            run.fail(format!(
                "seq {mseq}: store (state {}, attempt {}), model (state {}, attempt {})",
                job.state, job.attempt, m.state, m.attempt
            ));
        }
        let want_position = m.state.is_waiting().then_some(ahead);
        if job.position != want_position {
            run.fail(format!(
                "seq {mseq} ({}): store position {:?}, model {want_position:?}",
                job.state, job.position
            ));
        }
        if m.state.is_waiting() {
            ahead += 1;
        }
        if let Some(key) = m.key.as_deref() {
            let line = key_ahead.entry(key).or_default();
            let want = m.state.is_waiting().then_some(*line);
            if job.key_position != want {
                run.fail(format!(
                    "seq {mseq} ({}, key {key}): store key position {:?}, model {want:?}",
                    job.state, job.key_position
                ));
            }
            if !m.state.is_finished() {
                *line += 1;
            }
        } else if job.key_position.is_some() {
            run.fail(format!(
                "seq {mseq}: a keyless job shows key position {:?}",
                job.key_position
            ));
        }
        if job.state.is_waiting() && job.run_at != m.run_at {
            run.fail(format!(
                "seq {mseq}: store run_at T+{}, model T+{}",
                job.run_at - T0,
                m.run_at - T0
            ));
        }
        if job.state == JobState::Running && job.cancel_requested != m.cancel_requested {
            run.fail(format!(
                "seq {mseq}: store cancel_requested {}, model {}",
                job.cancel_requested, m.cancel_requested
            ));
        }
    }
    if seen.len() != model.jobs.len() {
        run.fail("store lists a job twice".to_string());
    }
    // The last waiting job read alone counts its line the way a single read
    // does, and must agree with the page.
    if let Some(last) = listed.iter().rev().find(|j| j.state.is_waiting()) {
        match s.job_get(&last.id).await {
            Ok(Some(j)) if j.position == last.position && j.key_position == last.key_position => {}
            other => run.fail(format!(
                "job_get of the last waiting job {} gives {:?}, its page {:?}",
                last.id,
                other.map(|o| o.map(|j| (j.position, j.key_position))),
                (last.position, last.key_position)
            )),
        }
    }
}
