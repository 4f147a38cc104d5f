//! Positions stay exact: random enqueues (keyed, keyless, delayed), claims,
//! completions, failures (retried or not), cancels, manual retries (which
//! give a job a new `seq`), lease expiry, lease release, maintenance and
//! retention over three queues, with the `seq` counter made to jump across
//! blocks of 2^10 and 2^20 (by reopening the store with a raised counter).
//! After every step, every job's `position` (read alone and in pages of
//! every kind) must equal a brute-force count of the waiting jobs ahead of
//! it, its `key_position` a brute-force count of the unfinished jobs of its
//! key ahead of it (three keys), and the counts by state and the block
//! counts of both must equal a recount of the jobs (the writer keeps them,
//! `tally.rs`).

use std::collections::HashMap;

use orderly_core::{
    ClaimParams, EnqueueParams, JobState, ListParams, Millis, NewJob, Outcome, QueuePatch,
    ReportParams, Store,
};
use orderly_sqlite::{SqliteOptions, SqliteStore, DB_FILE};
use rusqlite::Connection;

const QUEUES: [&str; 3] = ["a", "b", "c"];
const T0: Millis = 1_700_000_000_000;
const SEEDS: u64 = 6;
const OPS: usize = 160;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len() as u64) as usize])
    }
}

/// `(id, queue, seq, state)` of every job, by `seq`, read from the file.
fn all_jobs(raw: &Connection) -> Vec<(String, String, i64, String)> {
    let mut stmt = raw
        .prepare("SELECT id, queue, seq, state FROM jobs ORDER BY seq")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

/// Each job's position by brute force: the waiting jobs of its queue with a
/// lower `seq`; `None` for a job that is not waiting.
fn brute_positions(jobs: &[(String, String, i64, String)]) -> HashMap<String, Option<u64>> {
    let mut ahead: HashMap<&str, u64> = HashMap::new();
    let mut out = HashMap::new();
    for (id, queue, _, state) in jobs {
        let waiting = state == "queued" || state == "scheduled";
        let n = ahead.entry(queue.as_str()).or_default();
        out.insert(id.clone(), waiting.then_some(*n));
        if waiting {
            *n += 1;
        }
    }
    out
}

/// Each job's key position by brute force: the unfinished jobs of its queue
/// and key with a lower `seq`; `None` for a job that is not waiting or has
/// no key.
fn brute_key_positions(raw: &Connection) -> HashMap<String, Option<u64>> {
    let mut stmt = raw
        .prepare("SELECT id, queue, key, state FROM jobs ORDER BY seq")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .expect("query");
    let mut ahead: HashMap<(String, String), u64> = HashMap::new();
    let mut out = HashMap::new();
    for row in rows {
        let (id, queue, key, state) = row.expect("row");
        let waiting = state == "queued" || state == "scheduled";
        let Some(key) = key else {
            out.insert(id, None);
            continue;
        };
        let n = ahead.entry((queue, key)).or_default();
        out.insert(id, waiting.then_some(*n));
        if waiting || state == "running" {
            *n += 1;
        }
    }
    out
}

/// The per-key block counts as stored, and recounted from the jobs.
fn key_blocks(raw: &Connection) -> (Vec<String>, Vec<String>) {
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = raw.prepare(sql).expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}/{}/{}/{}={}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?
                ))
            })
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    };
    (
        rows(
            "SELECT queue, key, level, block, n FROM key_blocks ORDER BY queue, key, level, block",
        ),
        rows(
            "WITH closed(c) AS (SELECT coalesce((SELECT value FROM meta WHERE name = 'blocks_closed_below'), 1 << 40))
           SELECT queue, key, level, block, n FROM closed, (
               SELECT queue, key, 0 AS level, seq >> 10 AS block, count(*) AS n FROM jobs
                 WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
                 GROUP BY queue, key, seq >> 10
               UNION ALL
               SELECT queue, key, 1, seq >> 20, count(*) FROM jobs
                 WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
                 GROUP BY queue, key, seq >> 20)
             -- Only closed blocks have rows (schema v12); none before v12.
             WHERE block < (CASE level WHEN 0 THEN c ELSE c >> 10 END)
             ORDER BY queue, key, level, block",
        ),
    )
}

/// `(queue, state, n)` rows of counts by state.
type StateCounts = Vec<(String, String, i64)>;

/// The nonzero counts by queue and state as stored, and recounted from the jobs.
fn state_counts(raw: &Connection) -> (StateCounts, StateCounts) {
    let rows = |sql: &str| -> StateCounts {
        let mut stmt = raw.prepare(sql).expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    };
    (
        rows(
            "SELECT queue, state, n FROM (
               SELECT queue, 'scheduled' AS state, scheduled AS n FROM queue_counts
               UNION ALL SELECT queue, 'queued', queued FROM queue_counts
               UNION ALL SELECT queue, 'running', running FROM queue_counts
               UNION ALL SELECT queue, 'succeeded', succeeded FROM queue_counts
               UNION ALL SELECT queue, 'failed', failed FROM queue_counts
               UNION ALL SELECT queue, 'cancelled', cancelled FROM queue_counts)
             WHERE n <> 0 ORDER BY queue, state",
        ),
        rows("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state ORDER BY queue, state"),
    )
}

/// `(queue, level, block, n)` rows of block counts.
type Blocks = Vec<(String, i64, i64, i64)>;

/// The nonzero block counts as stored, and recounted from the jobs.
fn blocks(raw: &Connection) -> (Blocks, Blocks) {
    let rows = |sql: &str| -> Blocks {
        let mut stmt = raw.prepare(sql).expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    };
    (
        rows("SELECT queue, level, block, n FROM waiting_blocks WHERE n <> 0 ORDER BY queue, level, block"),
        rows(
            "WITH closed(c) AS (SELECT coalesce((SELECT value FROM meta WHERE name = 'blocks_closed_below'), 1 << 40))
           SELECT queue, level, block, n FROM closed, (
               SELECT queue, 0 AS level, seq >> 10 AS block, count(*) AS n FROM jobs
                 WHERE state IN ('scheduled', 'queued') GROUP BY queue, seq >> 10
               UNION ALL
               SELECT queue, 1, seq >> 20, count(*) FROM jobs
                 WHERE state IN ('scheduled', 'queued') GROUP BY queue, seq >> 20)
             -- Only closed blocks have rows (schema v12); none before v12.
             WHERE block < (CASE level WHEN 0 THEN c ELSE c >> 10 END)
             ORDER BY queue, level, block",
        ),
    )
}

/// Every page of `queue` (in `state`, pages of `limit`), as `(id, position,
/// key_position)`.
async fn paged(
    store: &SqliteStore,
    queue: &str,
    state: Option<JobState>,
    limit: u32,
) -> Vec<(String, Option<u64>, Option<u64>)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .job_list(ListParams {
                queue: queue.into(),
                key: None,
                state,
                after,
                limit,
            })
            .await
            .expect("list");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        out.extend(page.into_iter().map(|j| (j.id, j.position, j.key_position)));
    }
    out
}

/// Compares every position the store serves with the brute-force count.
async fn check(store: &SqliteStore, raw: &Connection, rng: &mut Rng, what: &str) {
    let jobs = all_jobs(raw);
    let want = brute_positions(&jobs);
    let want_key = brute_key_positions(raw);
    let (stored, recount) = state_counts(raw);
    assert_eq!(stored, recount, "{what}: counts by state drifted");
    let (stored, recount) = blocks(raw);
    assert_eq!(stored, recount, "{what}: block counts drifted");
    let (stored, recount) = key_blocks(raw);
    assert_eq!(stored, recount, "{what}: key block counts drifted");
    for queue in QUEUES {
        let limit = 1 + rng.below(7) as u32;
        let state = *rng
            .pick(&[
                None,
                Some(JobState::Queued),
                Some(JobState::Scheduled),
                Some(JobState::Running),
                Some(JobState::Succeeded),
            ])
            .expect("states");
        let pages = paged(store, queue, state, limit).await;
        let listed: Vec<&str> = pages.iter().map(|(id, ..)| id.as_str()).collect();
        let expected: Vec<&str> = jobs
            .iter()
            .filter(|(_, q, _, s)| q == queue && state.is_none_or(|st| st.as_str() == s))
            .map(|(id, ..)| id.as_str())
            .collect();
        assert_eq!(
            listed, expected,
            "{what}: pages of {limit} of {queue} (state {state:?})"
        );
        for (id, position, key_position) in pages {
            assert_eq!(
                position, want[&id],
                "{what}: {id} in pages of {limit} of {queue} (state {state:?})"
            );
            assert_eq!(
                key_position, want_key[&id],
                "{what}: {id}'s key position in pages of {limit} of {queue}"
            );
        }
    }
    for _ in 0..4 {
        let Some((id, ..)) = rng.pick(&jobs) else {
            break;
        };
        let job = store.job_get(id).await.expect("get").expect("exists");
        assert_eq!(job.position, want[id], "{what}: job_get {id}");
        assert_eq!(
            job.key_position, want_key[id],
            "{what}: job_get {id}'s key position"
        );
    }
}

fn open(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(&SqliteOptions::new(dir)).expect("open")
}

async fn run(seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let raw = Connection::open(dir.path().join(DB_FILE)).expect("open raw");
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut now = T0;
    let mut next_id = 0u64;
    let mut leases: Vec<(String, String)> = Vec::new();
    for queue in QUEUES {
        store
            .queue_configure(
                queue,
                QueuePatch {
                    concurrency: Some(3),
                    max_attempts: Some(2),
                    lease_ms: Some(5_000),
                    ..Default::default()
                },
                now,
            )
            .await
            .expect("configure");
    }
    for step in 0..OPS {
        now += rng.below(1_500) as Millis;
        let queue = QUEUES[rng.below(3) as usize];
        let op = rng.below(100);
        let what = format!("seed {seed}, step {step}, op {op}");
        match op {
            0..=29 => {
                let n = 1 + rng.below(4);
                let jobs = (0..n)
                    .map(|_| {
                        next_id += 1;
                        NewJob {
                            id: format!("j{next_id}"),
                            key: rng
                                .pick(&[None, Some("k1"), Some("k2"), Some("k3")])
                                .and_then(|k| k.map(String::from)),
                            payload: serde_json::json!({}),
                            run_at: (rng.below(4) == 0).then(|| now + rng.below(5_000) as Millis),
                            max_attempts: None,
                            timeout_ms: None,
                        }
                    })
                    .collect();
                let answers = store
                    .job_enqueue_many(EnqueueParams {
                        queue: queue.into(),
                        jobs,
                        now,
                    })
                    .await
                    .expect("enqueue")
                    .value;
                // The answer says what a read right after does.
                let want = brute_positions(&all_jobs(&raw));
                let want_key = brute_key_positions(&raw);
                for e in answers {
                    assert_eq!(e.job.position, want[&e.job.id], "{what}: enqueue answer");
                    assert_eq!(
                        e.job.key_position, want_key[&e.job.id],
                        "{what}: enqueue answer's key position"
                    );
                }
            }
            30..=49 => {
                let got = store
                    .job_claim(ClaimParams {
                        queue: queue.into(),
                        worker: format!("w{}", rng.below(2)),
                        max: 1 + rng.below(3) as u32,
                        lease_ms: None,
                        now,
                        jitter: 0.5,
                    })
                    .await
                    .expect("claim");
                leases.extend(got.value.into_iter().map(|l| (l.job.id, l.token)));
            }
            50..=69 if !leases.is_empty() => {
                let (id, token) = leases.swap_remove(rng.below(leases.len() as u64) as usize);
                let outcome = match rng.below(3) {
                    0 => Outcome::Succeeded { result: None },
                    k => Outcome::Failed {
                        error: serde_json::json!("boom"),
                        retry: k == 1,
                        retry_after_ms: None,
                    },
                };
                // A lease may have expired meanwhile: a refusal is an answer too.
                let _ = store
                    .job_report_many(vec![ReportParams {
                        id,
                        token,
                        outcome,
                        now,
                        jitter: 0.5,
                    }])
                    .await;
            }
            70..=77 => {
                let jobs = all_jobs(&raw);
                if let Some((id, ..)) = rng.pick(&jobs) {
                    let _ = store.job_cancel(id, now).await;
                }
            }
            78..=84 => {
                let finished: Vec<_> = all_jobs(&raw)
                    .into_iter()
                    .filter(|j| matches!(j.3.as_str(), "failed" | "cancelled"))
                    .collect();
                if let Some((id, ..)) = rng.pick(&finished) {
                    store
                        .job_retry(id, now)
                        .await
                        .expect("retry a failed or cancelled job");
                }
            }
            85..=89 => {
                now += 6_000;
                store.maintenance_run(now, 0.5).await.expect("maintenance");
            }
            90..=92 => {
                store.lease_release("w1", now).await.expect("release");
            }
            93..=95 => {
                store
                    .retention_purge(now - rng.below(3_000) as Millis, 1 + rng.below(5) as u32)
                    .await
                    .expect("purge");
            }
            _ => {
                // Jump the `seq` counter across blocks: reopen above it.
                store.close().await;
                let jump = *rng
                    .pick(&[1_000i64, 5_000, 1 << 20, 3 << 20])
                    .expect("jumps");
                raw.execute(
                    "UPDATE meta SET value = value + ?1 WHERE name = 'next_seq'",
                    [jump],
                )
                .expect("raise next_seq");
                store = open(dir.path());
            }
        }
        check(&store, &raw, &mut rng, &what).await;
    }
    let highest: i64 = raw
        .query_row("SELECT coalesce(max(seq), 0) FROM jobs", [], |r| r.get(0))
        .expect("max seq");
    assert!(
        highest > 1 << 20,
        "seed {seed}: the run never left the first level-1 block"
    );
    store.close().await;
}

/// See the module docs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_stay_exact_under_random_operations() {
    for seed in 1..=SEEDS {
        run(seed).await;
    }
}

/// A request refused halfway through, in a group with others, counts
/// nothing: batches whose last job reuses a stored id with another payload
/// are refused after their first jobs were inserted and counted (keyed ones
/// with the counters written mid-request), and their savepoints roll the
/// counters back with the rows. The writer's counts then still equal a
/// recount, and the accepted batches are all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_in_a_group_counts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(open(dir.path()));
    let raw = Connection::open(dir.path().join(DB_FILE)).expect("open raw");
    let job = |id: String, key: Option<&str>, n: u64| NewJob {
        id,
        key: key.map(str::to_string),
        payload: serde_json::json!({ "n": n }),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    };
    store
        .job_enqueue_many(EnqueueParams {
            queue: "a".into(),
            jobs: vec![job("taken".into(), None, 0)],
            now: T0,
        })
        .await
        .expect("the first job");
    let before = store.writer_stats().expect("figures");
    let mut calls = Vec::new();
    for i in 0..64u64 {
        let store = store.clone();
        let key = ["k1", "k2", "k3"][(i % 3) as usize];
        let mut jobs = vec![
            job(format!("b{i}-keyed"), Some(key), i),
            job(format!("b{i}-plain"), None, i),
        ];
        let refused = i % 4 == 1;
        if refused {
            jobs.push(job("taken".into(), None, i + 1));
        }
        calls.push(tokio::spawn(async move {
            let out = store
                .job_enqueue_many(EnqueueParams {
                    queue: "a".into(),
                    jobs,
                    now: T0,
                })
                .await;
            let positions: Vec<u64> = out
                .as_ref()
                .map(|v| v.value.iter().filter_map(|e| e.job.position).collect())
                .unwrap_or_default();
            (refused, out.is_ok(), positions)
        }));
    }
    let mut positions = Vec::new();
    for call in calls {
        let (refused, ok, mine) = call.await.expect("task");
        assert_eq!(ok, !refused, "only the batches reusing `taken` are refused");
        positions.extend(mine);
    }
    // The writer counts a new job's position from its kept waiting count:
    // a refused batch's rolled-back jobs must not be in it.
    positions.sort_unstable();
    assert_eq!(
        positions,
        (1..=96).collect::<Vec<u64>>(),
        "each accepted job is answered with its own place behind `taken`"
    );
    let after = store.writer_stats().expect("figures");
    let (requests, groups) = (
        after.group_sizes.sum - before.group_sizes.sum,
        after.commits - before.commits,
    );
    assert_eq!(requests, 64.0);
    assert!(
        (groups as f64) < requests,
        "64 concurrent requests shared no group ({groups} commits): nothing was tested"
    );
    assert_eq!(
        all_jobs(&raw).len(),
        1 + 48 * 2,
        "the accepted batches only"
    );
    let (stored, recount) = state_counts(&raw);
    assert_eq!(stored, recount, "counts by state");
    let (stored, recount) = blocks(&raw);
    assert_eq!(stored, recount, "block counts");
    let (stored, recount) = key_blocks(&raw);
    assert_eq!(stored, recount, "key block counts");
}
