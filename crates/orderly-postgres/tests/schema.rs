//! Opening: migrations when several nodes start at once, a database written
//! by the previous schema version, a newer one refused, and clear errors
//! for a database that cannot be reached.

mod support;

use orderly_core::{ClaimParams, EnqueueParams, JobState, NewJob, Store, StoreError};
use orderly_postgres::{PostgresOptions, PostgresStore, SCHEMA_VERSION};
use support::Schemas;

const T0: i64 = 1_700_000_000_000;

/// Eight nodes opening one fresh schema at once. The test holds the
/// migration lock first and waits until every open is queued on it (an
/// open that finished meanwhile migrated without the lock: a failure), then
/// lets them all go: all open, the migrations ran once (one version row,
/// the latest), and the store works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_at_once_migrate_once() {
    const NODES: usize = 8;
    let schemas = Schemas::default();
    let schema = support::fresh_schema();
    schemas.adopt(&schema);
    let gate = support::raw("public").await;
    let lock = "SELECT hashtext('orderly migrations ' || $1::text)";
    let key: i32 = gate.query_one(lock, &[&schema]).await.expect("key").get(0);
    gate.execute("SELECT pg_advisory_lock($1)", &[&i64::from(key)])
        .await
        .expect("hold the migration lock");
    let opens: Vec<_> = (0..NODES)
        .map(|_| {
            let schema = schema.clone();
            tokio::spawn(async move { PostgresStore::open(&support::options(&schema)).await })
        })
        .collect();
    loop {
        assert!(
            opens.iter().all(|o| !o.is_finished()),
            "an open finished while the migration lock was held"
        );
        let waiting: i64 = gate
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1::oid AND NOT granted",
                &[&(key as u32)],
            )
            .await
            .expect("waiters")
            .get(0);
        if waiting as usize == NODES {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    gate.execute("SELECT pg_advisory_unlock($1)", &[&i64::from(key)])
        .await
        .expect("let them go");
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.expect("task").expect("every node opens"));
    }
    let raw = support::raw(&schema).await;
    let versions: Vec<i64> = raw
        .query("SELECT version FROM schema_version", &[])
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [SCHEMA_VERSION]);
    stores[3]
        .queue_configure("q", Default::default(), T0)
        .await
        .expect("the schema works");
    assert_eq!(stores[5].queue_list().await.expect("list").len(), 1);
}

/// The rows of a database as schema version `SCHEMA_VERSION - 1` left them
/// (for v1, the first version: its own tables, written by hand here), so a
/// v2 migration is tested by adding its rows to this list.
const PREVIOUS_ROWS: &str = r#"
INSERT INTO queues (name, config, created_at, updated_at) VALUES ('q',
  '{"concurrency":1,"max_attempts":5,"backoff":{"initial_ms":1000,"max_ms":3600000,"factor":2.0},"lease_ms":30000,"paused":false,"executor":null}', 1, 1);
INSERT INTO jobs (id, seq, batch, batch_pos, queue, state, head, payload, attempt, max_attempts,
  enqueued_at, run_at, finished_at, start_no, last_start_no)
  VALUES ('done', 7, 1, 0, 'q', 'succeeded', false, '{}', 1, 5, 1, 1, 3, 3, 3);
INSERT INTO jobs (id, seq, batch, batch_pos, queue, key, state, head, payload, max_attempts,
  enqueued_at, run_at)
  VALUES ('waiting', 8, 2, 0, 'q', 'k', 'queued', true, '{"n":18446744073709551617}', 5, 1, 1);
INSERT INTO starts (start_no, seq, job_id, queue, attempt, worker, started_at, ended_at, outcome)
  VALUES (3, 7, 'done', 'q', 1, 'w', 2, 3, 'succeeded');
UPDATE seq_counter SET next_seq = 9;
SELECT setval('start_no', 3);
"#;

/// A database written by the previous schema version opens with this
/// build: migrated to the latest version, nothing lost, counters going on
/// above what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_schema_version_opens() {
    let schemas = Schemas::default();
    let schema = support::fresh_schema();
    schemas.adopt(&schema);
    // For v1 the previous "version" is the first one itself; from v2 on this
    // writes version SCHEMA_VERSION - 1.
    let previous = (SCHEMA_VERSION - 1).max(1);
    PostgresStore::open_at_version(&support::options(&schema), previous)
        .await
        .expect("write the previous version")
        .close()
        .await;
    let raw = support::raw(&schema).await;
    raw.batch_execute(PREVIOUS_ROWS)
        .await
        .expect("previous rows");

    let store = support::open(&schema).await;
    let version: i64 = raw
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(version, SCHEMA_VERSION);
    let waiting = store.job_get("waiting").await.expect("get").expect("kept");
    assert_eq!(waiting.state, JobState::Queued);
    assert_eq!(waiting.payload.to_string(), r#"{"n":18446744073709551617}"#);
    assert_eq!(store.job_attempts("done").await.expect("attempts").len(), 1);
    let lease = store
        .job_claim(ClaimParams {
            queue: "q".into(),
            worker: "w".into(),
            max: 1,
            lease_ms: None,
            now: T0,
            jitter: 0.5,
        })
        .await
        .expect("claim")
        .value
        .pop()
        .expect("the waiting job starts");
    assert_eq!(lease.job.id, "waiting");
    assert_eq!(lease.job.start_no, Some(4), "start numbers go on");
    let new = store
        .job_enqueue_many(EnqueueParams {
            queue: "q".into(),
            jobs: vec![NewJob {
                id: "new".into(),
                key: None,
                payload: serde_json::json!({}),
                run_at: None,
                max_attempts: None,
                timeout_ms: None,
            }],
            now: T0,
        })
        .await
        .expect("enqueue")
        .value;
    assert_eq!(new[0].job.seq, 9, "seq goes on above the stored ones");
}

/// A schema written by a newer build is refused, saying so, and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let schemas = Schemas::default();
    let store = schemas.open().await;
    let raw = support::raw(store.schema()).await;
    raw.execute("UPDATE schema_version SET version = 99", &[])
        .await
        .expect("pretend a newer build wrote it");
    match PostgresStore::open(&support::options(store.schema())).await {
        Err(StoreError::Backend(m)) => assert!(m.contains("newer"), "{m}"),
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

/// An unreachable host or a database that does not exist is a clear error
/// at open, naming what was tried (and never the password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_clear_error() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("postgres://postgres:secret@127.0.0.1:{port}/test");
    match PostgresStore::open(&PostgresOptions::new(url)).await {
        Err(StoreError::Unavailable(m)) => {
            assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}");
            assert!(!m.contains("secret"), "the password is never shown: {m}");
        }
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("nothing listens there"),
    }
    let mut missing: tokio_postgres::Config = support::database_url().parse().expect("url");
    missing.dbname("orderly_no_such_database");
    let url = format!(
        "postgres://{}@127.0.0.1:{}/orderly_no_such_database",
        missing.get_user().unwrap_or("postgres"),
        missing.get_ports().first().copied().unwrap_or(5432)
    );
    match PostgresStore::open(&PostgresOptions::new(url)).await {
        Err(StoreError::Unavailable(m)) => {
            assert!(
                m.contains("orderly_no_such_database") && m.contains("does not exist"),
                "{m}"
            )
        }
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("no such database"),
    }
}
