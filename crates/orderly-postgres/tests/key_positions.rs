//! `key_position` stays exact on PostgreSQL: random enqueues (keyed,
//! keyless, delayed), claims, completions, failures (retried or not),
//! cancels, manual retries (a new `seq`), lease expiry, lease release,
//! maintenance and retention over three queues and three keys, with the
//! `seq` counter made to jump across blocks of 2^10 and 2^20. After every
//! step, every job's `position` and `key_position` (read alone and in pages
//! of every kind) must equal a brute-force count, and `key_blocks` must
//! equal a recount of the jobs (as the SQLite store's
//! `positions_stay_exact_under_random_operations`).

mod support;

use std::collections::HashMap;

use orderly_core::{
    ClaimParams, EnqueueParams, JobState, ListParams, Millis, NewJob, Outcome, QueuePatch,
    ReportParams, Store,
};
use orderly_postgres::PostgresStore;
use tokio_postgres::Client;

const QUEUES: [&str; 3] = ["a", "b", "c"];
const T0: Millis = 1_700_000_000_000;
const SEEDS: u64 = 3;
const OPS: usize = 120;

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

/// `(id, queue, key, state)` of every numbered job, by `seq`.
type Row = (String, String, Option<String>, String);

async fn all_jobs(raw: &Client) -> Vec<Row> {
    raw.query(
        "SELECT id, queue, key, state FROM jobs WHERE seq IS NOT NULL ORDER BY seq",
        &[],
    )
    .await
    .expect("jobs")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// Each job's position by brute force: the waiting jobs of its queue with a
/// lower `seq`; `None` for a job that is not waiting.
fn brute_positions(jobs: &[Row]) -> HashMap<String, Option<u64>> {
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
/// and key with a lower `seq`; `None` for a job not waiting or without key.
async fn brute_key_positions(raw: &Client) -> HashMap<String, Option<u64>> {
    let mut ahead: HashMap<(String, String), u64> = HashMap::new();
    let mut out = HashMap::new();
    for (id, queue, key, state) in all_jobs(raw).await {
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

/// `key_blocks` as stored, and recounted from the jobs.
async fn key_blocks(raw: &Client) -> (Vec<String>, Vec<String>) {
    let rows = |sql: &'static str| async move {
        raw.query(sql, &[])
            .await
            .expect("key blocks")
            .iter()
            .map(|r| {
                format!(
                    "{}/{}/{}/{}={}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, i32>(2),
                    r.get::<_, i64>(3),
                    r.get::<_, i64>(4)
                )
            })
            .collect::<Vec<_>>()
    };
    (
        rows("SELECT queue, key, level, block, n FROM key_blocks ORDER BY queue, key, level, block")
            .await,
        rows(
            "SELECT queue, key, level, block, n FROM (
               SELECT queue, key, 0 AS level, seq >> 10 AS block, count(*) AS n FROM jobs
                 WHERE key IS NOT NULL AND seq IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
                 GROUP BY queue, key, seq >> 10
               UNION ALL
               SELECT queue, key, 1, seq >> 20, count(*) FROM jobs
                 WHERE key IS NOT NULL AND seq IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
                 GROUP BY queue, key, seq >> 20) AS recount
             ORDER BY queue, key, level, block",
        )
        .await,
    )
}

/// Every page of `queue` (in `state`, pages of `limit`), as `(id, position,
/// key_position)`.
async fn paged(
    store: &PostgresStore,
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
async fn check(store: &PostgresStore, raw: &Client, rng: &mut Rng, what: &str) {
    let jobs = all_jobs(raw).await;
    let want = brute_positions(&jobs);
    let want_key = brute_key_positions(raw).await;
    let (stored, recount) = key_blocks(raw).await;
    assert_eq!(stored, recount, "{what}: key block counts drifted");
    for queue in QUEUES {
        let limit = 1 + rng.below(7) as u32;
        let state = *rng
            .pick(&[None, Some(JobState::Queued), Some(JobState::Scheduled)])
            .expect("states");
        for (id, position, key_position) in paged(store, queue, state, limit).await {
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

async fn run(seed: u64, schemas: &support::Schemas) {
    let store = schemas.open().await;
    let raw = support::raw(store.schema()).await;
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
                let want = brute_positions(&all_jobs(&raw).await);
                let want_key = brute_key_positions(&raw).await;
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
                let jobs = all_jobs(&raw).await;
                if let Some((id, ..)) = rng.pick(&jobs) {
                    let _ = store.job_cancel(id, now).await;
                }
            }
            78..=84 => {
                let finished: Vec<_> = all_jobs(&raw)
                    .await
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
                // Jump the `seq` counter across blocks (read under its lock
                // by every numbering, so no reopen is needed).
                let jump = *rng
                    .pick(&[1_000i64, 5_000, 1 << 20, 3 << 20])
                    .expect("jumps");
                raw.execute(
                    "UPDATE seq_counter SET next_seq = next_seq + $1 WHERE id = 1",
                    &[&jump],
                )
                .await
                .expect("raise next_seq");
            }
        }
        check(&store, &raw, &mut rng, &what).await;
    }
    let highest: i64 = raw
        .query_one("SELECT coalesce(max(seq), 0) FROM jobs", &[])
        .await
        .expect("max seq")
        .get(0);
    assert!(
        highest > 1 << 20,
        "seed {seed}: the run never left the first level-1 block"
    );
    store.close().await;
}

/// See the module docs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_positions_stay_exact_under_random_operations() {
    let schemas = support::Schemas::default();
    for seed in 1..=SEEDS {
        run(seed, &schemas).await;
    }
}
