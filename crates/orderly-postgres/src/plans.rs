//! The plan test: on a schema holding tens of thousands of jobs (analysed,
//! so the planner sees real sizes), every query on the claim, key-handoff,
//! maintenance, numbering and read paths reads its index, never scans the
//! jobs table, and (where its cost must not grow with the backlog) does not
//! sort. Runs against the test database (`ORDERLY_TEST_DATABASE_URL`).

use orderly_core::Store;

use crate::read::{
    JOB_PAGE, JOB_PAGE_IN_STATE, JOB_PAGE_OF_KEY, OLDEST_QUEUED, START_LATEST, START_LOG_PAGE,
};
use crate::rows::JOB_COLUMNS;
use crate::waits::{KEY_WAITS, POSITIONS};
use crate::write::claim::{CLAIM_CANDIDATES, EXPIRED_IN_QUEUE, PROMOTE_DUE_IN_QUEUE};
use crate::write::manage::{NEXT_DUE, PURGE_CANDIDATES, QUEUES_WITH_WORK};
use crate::write::number::{PENDING, PENDING_REST_OF_BATCH};
use crate::write::{ADVANCE_KEY, KEY_HAS_UNFINISHED};

/// Queue `q` is a fifth of 50,000 jobs: 6,000 keyed waiting jobs on 300
/// keys (one head each), 2,000 keyless waiting, 1,000 scheduled ahead, 100
/// running, 900 finished; queue `other` holds the rest (waiting and
/// finished); queue `old` holds 5,000 finished jobs and then 5 waiting.
/// Of 20,000 starts, a tenth are `q`'s. Five rows are unnumbered.
/// What each query looks for is rare, as in a real backlog. (The
/// accounting triggers are off for the fill; `waiting_blocks` and
/// `key_blocks` are summed once.)
const FILL: &str = r#"
ALTER TABLE jobs DISABLE TRIGGER jobs_account;
ALTER TABLE jobs DISABLE TRIGGER jobs_key_account;
INSERT INTO queues VALUES ('q', '{}', 0, 0), ('other', '{}', 0, 0);
INSERT INTO jobs (id, seq, batch, batch_pos, queue, key, state, head, payload, max_attempts, enqueued_at, run_at,
                  lease_expires_at, finished_at, last_start_no)
SELECT 'j' || g, g, g, 0, CASE WHEN g <= 10000 THEN 'q' ELSE 'other' END,
       CASE WHEN g <= 6000 THEN 'k' || (g % 300) END,
       CASE WHEN g <= 8000 THEN 'queued' WHEN g <= 9000 THEN 'scheduled'
            WHEN g <= 9100 THEN 'running' WHEN g <= 10000 THEN 'succeeded'
            WHEN g <= 30000 THEN 'queued' ELSE 'succeeded' END,
       g <= 300 OR (g > 6000 AND g <= 8000) OR (g > 10000 AND g <= 30000),
       '{}', 5, 0, CASE WHEN g > 8000 AND g <= 9000 THEN 100000 + g ELSE 0 END,
       CASE WHEN g > 9000 AND g <= 9100 THEN 100000 + g END,
       CASE WHEN (g > 9100 AND g <= 10000) OR g > 30000 THEN g END,
       CASE WHEN g > 9000 AND g <= 10000 THEN g END
FROM generate_series(1, 50000) g;
INSERT INTO starts (start_no, seq, job_id, queue, attempt, worker, started_at)
SELECT g, g, 'j' || g, CASE WHEN g % 10 = 0 THEN 'q' ELSE 'other' END, 1, 'w', g FROM generate_series(1, 20000) g;
INSERT INTO jobs (id, seq, batch, batch_pos, queue, state, head, payload, max_attempts, enqueued_at, run_at, finished_at)
SELECT 'o' || g, 60000 + g, 60000 + g, 0, 'old', CASE WHEN g <= 5000 THEN 'succeeded' ELSE 'queued' END,
       g > 5000, '{}', 5, 0, 0, CASE WHEN g <= 5000 THEN 60000 + g END
FROM generate_series(1, 5005) g;
INSERT INTO jobs (id, batch, batch_pos, queue, state, payload, max_attempts, enqueued_at, run_at)
SELECT 'u' || g, 100000 + g, 0, 'q', 'queued', '{}', 5, 0, 0 FROM generate_series(1, 5) g;
INSERT INTO waiting_blocks (queue, level, block, n)
    SELECT queue, 0, seq >> 10, count(*) FROM jobs
    WHERE state IN ('scheduled', 'queued') AND seq IS NOT NULL GROUP BY queue, seq >> 10;
INSERT INTO waiting_blocks (queue, level, block, n)
    SELECT queue, 1, seq >> 20, count(*) FROM jobs
    WHERE state IN ('scheduled', 'queued') AND seq IS NOT NULL GROUP BY queue, seq >> 20;
INSERT INTO key_blocks (queue, key, level, block, n)
    SELECT queue, key, 0, seq >> 10, count(*) FROM jobs
    WHERE key IS NOT NULL AND seq IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
    GROUP BY queue, key, seq >> 10;
INSERT INTO key_blocks (queue, key, level, block, n)
    SELECT queue, key, 1, seq >> 20, count(*) FROM jobs
    WHERE key IS NOT NULL AND seq IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
    GROUP BY queue, key, seq >> 20;
-- Sample every row, so the statistics (and the plans) are the same on every run.
SET default_statistics_target = 1000;
ANALYZE;
"#;

/// A query, its arguments, the indexes its plan must read, and whether it may sort.
type Case<'a> = (
    &'a str,
    Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>,
    &'a [&'a str],
    bool,
);

async fn plan(
    client: &tokio_postgres::Client,
    query: &str,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    client
        .query(&format!("EXPLAIN {query}"), args)
        .await
        .unwrap_or_else(|e| panic!("explain {query}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_reads_its_index() {
    let url = std::env::var("ORDERLY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("t_plans_{}", uuid::Uuid::new_v4().simple());
    let store = crate::PostgresStore::open(&crate::PostgresOptions {
        schema: schema.clone(),
        pool_size: 1,
        ..crate::PostgresOptions::new(&url)
    })
    .await
    .unwrap_or_else(|e| {
        panic!("the plan test needs PostgreSQL at {url} (set ORDERLY_TEST_DATABASE_URL): {e}")
    });
    store.close().await;
    let mut config: tokio_postgres::Config = url.parse().expect("url");
    config.options(format!("-c search_path={schema}"));
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.batch_execute(FILL).await.expect("fill");

    let (q, k, seq, now, n): (&str, &str, i64, i64, i64) = ("q", "k3", 7_000, 50_000, 4);
    let after: i64 = 5_000;
    let (qs, ks, seqs) = (vec![q, q], vec![k, "k7"], vec![seq, 5_007_i64]);
    let page = format!("SELECT {JOB_COLUMNS} {JOB_PAGE}");
    let page_in_state = format!("SELECT {JOB_COLUMNS} {JOB_PAGE_IN_STATE}");
    let page_of_key = format!("SELECT {JOB_COLUMNS} {JOB_PAGE_OF_KEY}");
    let (any_state, queued): (Option<&str>, Option<&str>) = (None, Some("queued"));
    let (zero, limit): (i64, i64) = (0, 50);
    let before: i64 = 9_200;
    // (query, its arguments, indexes its plan must read, whether it may sort:
    // the expired leases of a queue are at most its running jobs.)
    let cases: Vec<Case<'_>> = vec![
        (CLAIM_CANDIDATES, vec![&q, &n], &["jobs_ready"], false),
        (KEY_HAS_UNFINISHED, vec![&q, &k], &["jobs_key_line"], false),
        (ADVANCE_KEY, vec![&q, &k], &["jobs_key_line"], false),
        (PROMOTE_DUE_IN_QUEUE, vec![&q, &now], &["jobs_due"], false),
        (EXPIRED_IN_QUEUE, vec![&q, &now], &["jobs_leases"], true),
        // (`waiting_blocks` holds a row per 1,024 seqs: at this size one page,
        // which the planner reads whole; its primary key serves it when large.)
        (POSITIONS, vec![&qs, &seqs], &["jobs_by_state"], false),
        // A key's line: its blocks (`key_blocks`) and at most one block of
        // its own index, never the key's whole line.
        (KEY_WAITS, vec![&qs, &ks, &seqs], &["jobs_key_line"], false),
        (&page, vec![&q, &seq, &n], &["jobs_queue_seq"], false),
        (
            &page_in_state,
            vec![&q, &"scheduled", &seq, &n],
            &["jobs_by_state"],
            false,
        ),
        // One key's line, with and without a state: its own index, in
        // `seq` order, whatever the queue's backlog.
        (
            &page_of_key,
            vec![&q, &k, &any_state, &zero, &n],
            &["jobs_key_line"],
            false,
        ),
        (
            &page_of_key,
            vec![&q, &k, &queued, &seq, &n],
            &["jobs_key_line"],
            false,
        ),
        // A queue whose few queued jobs follow many finished ones: its
        // queued jobs only (the few found may be sorted); and one whose
        // line is long: read in `seq` order, never sorted.
        (OLDEST_QUEUED, vec![&"old"], &["jobs_by_state"], true),
        (OLDEST_QUEUED, vec![&q], &["Index Scan using jobs_"], false),
        (
            START_LOG_PAGE,
            vec![&q, &after, &n],
            &["starts_queue"],
            false,
        ),
        // The end of a queue's start log, read backwards: no sort.
        (START_LATEST, vec![&q, &limit], &["starts_queue"], false),
        (
            QUEUES_WITH_WORK,
            vec![&now],
            &["jobs_due_all", "jobs_leases_all"],
            true,
        ),
        (
            NEXT_DUE,
            vec![],
            &["jobs_due_all", "jobs_leases_all"],
            false,
        ),
        (
            PURGE_CANDIDATES,
            vec![&before, &n],
            &["jobs_finished"],
            false,
        ),
        (PENDING, vec![&n], &["jobs_unnumbered"], false),
        (
            PENDING_REST_OF_BATCH,
            vec![&n, &zero],
            &["jobs_unnumbered"],
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (query, args, indexes, may_sort) in &cases {
        let p = plan(&client, query, args).await;
        let missing: Vec<_> = indexes.iter().filter(|i| !p.contains(*i)).collect();
        if !missing.is_empty()
            || p.contains("Seq Scan on jobs")
            || (!may_sort && p.contains("Sort"))
        {
            failures.push(format!(
                "{query}\nwants {indexes:?}, no table scan{}\nplan:\n{p}",
                if *may_sort { "" } else { ", no sort" }
            ));
        }
    }
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop the schema");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
