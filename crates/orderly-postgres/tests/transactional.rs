//! Enqueue in the application's own transaction (contract section 8): the
//! `enqueue` SQL function and `orderly_postgres::enqueue_in`. A job exists
//! if and only if the transaction commits, is numbered in commit order, and
//! an open transaction stalls no one else's enqueues.

mod support;

use std::time::Duration;

use orderly_core::{ClaimParams, EnqueueParams, External, NewJob, QueuePatch, Store, StoreError};
use orderly_postgres::{enqueue_in, PostgresStore};
use support::Schemas;

/// Only to keep a broken test from hanging: no assertion is on time.
const HANG: Duration = Duration::from_secs(30);

/// The current time in Unix milliseconds (the SQL function stamps rows with
/// the database's clock; claims and maintenance here use a "now" after it).
fn now() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    i64::try_from(ms).expect("millis fit") + 60_000
}

fn job(id: &str) -> NewJob {
    NewJob {
        id: id.into(),
        key: None,
        payload: serde_json::json!({"n": 1}),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

/// Enqueues `id` into `queue` through the store; returns its seq.
async fn store_enqueue(store: &PostgresStore, queue: &str, id: &str) -> i64 {
    store
        .job_enqueue_many(EnqueueParams {
            queue: queue.into(),
            jobs: vec![job(id)],
            now: now(),
        })
        .await
        .expect("store enqueue")
        .value[0]
        .job
        .seq
}

/// Claims one job from `queue`; returns its id.
async fn claim_one(store: &PostgresStore, queue: &str) -> Option<String> {
    let lease = store
        .job_claim(ClaimParams {
            queue: queue.into(),
            worker: "w".into(),
            max: 1,
            lease_ms: None,
            now: now(),
            jitter: 0.5,
        })
        .await
        .expect("claim")
        .value
        .pop()?;
    Some(lease.job.id)
}

/// How many rows the jobs table holds (numbered or not).
async fn rows(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .expect("count jobs")
        .get(0)
}

/// Calls the SQL function in `tx` as a Python or psql client would.
async fn sql_enqueue(
    tx: &tokio_postgres::Transaction<'_>,
    queue: &str,
    id: Option<&str>,
) -> Result<String, tokio_postgres::Error> {
    tx.query_one(
        "SELECT enqueue($1, '{\"n\":1}'::jsonb, id => $2)",
        &[&queue, &id],
    )
    .await
    .map(|r| r.get(0))
}

/// Commit: the job exists, is numbered after maintenance (or the next
/// enqueue) runs the sequencer, and is claimable. Rollback: no job at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_function_s_job_exists_only_if_the_transaction_commits() {
    let schemas = Schemas::default();
    let store = schemas.open().await;
    let mut app = support::raw(store.schema()).await;

    let tx = app.transaction().await.expect("begin");
    let gone = sql_enqueue(&tx, "q", None).await.expect("enqueue");
    tx.rollback().await.expect("rollback");
    store
        .maintenance_run(now(), 0.5)
        .await
        .expect("maintenance");
    assert_eq!(store.job_get(&gone).await.expect("get"), None);
    assert_eq!(rows(&app).await, 0, "a rolled-back enqueue leaves no row");

    let tx = app.transaction().await.expect("begin");
    let id = sql_enqueue(&tx, "q", None).await.expect("enqueue");
    assert_eq!(
        uuid::Uuid::parse_str(&id).ok().map(|u| u.get_version_num()),
        Some(7)
    );
    tx.commit().await.expect("commit");
    store
        .maintenance_run(now(), 0.5)
        .await
        .expect("maintenance");
    let stored = store.job_get(&id).await.expect("get").expect("numbered");
    assert!(stored.seq > 0);
    assert_eq!(stored.payload, serde_json::json!({"n": 1}));
    assert_eq!(claim_one(&store, "q").await.as_deref(), Some(id.as_str()));
}

/// `enqueue_in` on a `tokio_postgres::Transaction`: the same two checks,
/// with the caller's own id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_in_s_job_exists_only_if_the_transaction_commits() {
    let schemas = Schemas::default();
    let store = schemas.open().await;
    let mut app = support::raw("public").await;

    let tx = app.transaction().await.expect("begin");
    let id = enqueue_in(&tx, store.schema(), "q", &job("rolled-back"))
        .await
        .expect("enqueue_in");
    assert_eq!(id, "rolled-back");
    tx.rollback().await.expect("rollback");
    store
        .maintenance_run(now(), 0.5)
        .await
        .expect("maintenance");
    assert_eq!(store.job_get("rolled-back").await.expect("get"), None);
    assert_eq!(rows(&support::raw(store.schema()).await).await, 0);

    let tx = app.transaction().await.expect("begin");
    let mut keyed = job("kept");
    keyed.key = Some("k".into());
    let id = enqueue_in(&tx, store.schema(), "q", &keyed)
        .await
        .expect("enqueue_in");
    tx.commit().await.expect("commit");
    store
        .maintenance_run(now(), 0.5)
        .await
        .expect("maintenance");
    let stored = store.job_get(&id).await.expect("get").expect("numbered");
    assert!(stored.seq > 0);
    assert_eq!(stored.key.as_deref(), Some("k"));
    assert_eq!(claim_one(&store, "q").await.as_deref(), Some("kept"));
}

/// T1 enqueues through the SQL function and stays open while five store
/// enqueues commit; after T1 commits, its job's seq is above all of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_sql_enqueue_is_numbered_after_those_that_committed_first() {
    let schemas = Schemas::default();
    let store = schemas.open().await;
    store_enqueue(&store, "q", "before").await; // the queue exists
    let mut app = support::raw(store.schema()).await;
    let t1 = app.transaction().await.expect("begin");
    let held = sql_enqueue(&t1, "q", Some("held")).await.expect("enqueue");

    let mut theirs = Vec::new();
    for i in 0..5 {
        theirs.push(store_enqueue(&store, "q", &format!("later-{i}")).await);
    }
    t1.commit().await.expect("commit");
    store
        .maintenance_run(now(), 0.5)
        .await
        .expect("maintenance");
    let seq = store
        .job_get(&held)
        .await
        .expect("get")
        .expect("numbered")
        .seq;
    let top = theirs.iter().max().copied().unwrap_or_default();
    assert!(
        seq > top,
        "the held job committed last and must be numbered last ({seq} vs {theirs:?})"
    );
}

/// While T1 (an SQL-function enqueue into q) is open, 20 store enqueues
/// into q and 5 SQL-function enqueues in other transactions all commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_stalls_no_other_enqueue() {
    let schemas = Schemas::default();
    let store = schemas.open().await;
    store
        .queue_configure("q", QueuePatch::default(), now())
        .await
        .expect("create q");
    let mut app = support::raw(store.schema()).await;
    let t1 = app.transaction().await.expect("begin");
    sql_enqueue(&t1, "q", Some("long")).await.expect("enqueue");

    let others = async {
        for i in 0..20 {
            store_enqueue(&store, "q", &format!("s-{i}")).await;
        }
        let mut other = support::raw(store.schema()).await;
        for i in 0..5 {
            let tx = other.transaction().await.expect("begin");
            sql_enqueue(&tx, "q", Some(&format!("f-{i}")))
                .await
                .expect("enqueue");
            tx.commit().await.expect("commit");
        }
    };
    tokio::time::timeout(HANG, others)
        .await
        .expect("the other enqueues committed while T1 was open");
    store
        .maintenance_run(now(), 0.5)
        .await
        .expect("maintenance");
    let count: i64 = support::raw(store.schema())
        .await
        .query_one("SELECT count(*) FROM jobs WHERE seq IS NOT NULL", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 25, "all 25 others are committed and numbered");
    assert_eq!(store.job_get("long").await.expect("get"), None);
    t1.commit().await.expect("commit");
}

/// The same id twice: a replay returns the id (one row); a different
/// payload under it is an error, from SQL and from `enqueue_in`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_replays_and_a_different_payload_conflicts() {
    let schemas = Schemas::default();
    let store = schemas.open().await;
    let mut app = support::raw(store.schema()).await;
    for _ in 0..2 {
        let tx = app.transaction().await.expect("begin");
        let id = sql_enqueue(&tx, "q", Some("once")).await.expect("enqueue");
        assert_eq!(id, "once");
        tx.commit().await.expect("commit");
    }
    assert_eq!(rows(&app).await, 1, "a replay inserts nothing");

    let tx = app.transaction().await.expect("begin");
    let err = tx
        .query_one("SELECT enqueue('q', '{\"n\":2}'::jsonb, id => 'once')", &[])
        .await
        .expect_err("a different payload under an existing id");
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "23505");
    assert_eq!(db.detail(), Some("id_conflict"));
    drop(tx);

    let tx = app.transaction().await.expect("begin");
    let mut other = job("once");
    other.payload = serde_json::json!({"n": 2});
    match enqueue_in(&tx, store.schema(), "q", &other).await {
        Err(StoreError::IdConflict { id }) => assert_eq!(id, "once"),
        other => panic!("expected IdConflict, got {other:?}"),
    }
    drop(tx);
    // The same content through enqueue_in is a replay too.
    let tx = app.transaction().await.expect("begin");
    let id = enqueue_in(&tx, store.schema(), "q", &job("once"))
        .await
        .expect("replay");
    assert_eq!(id, "once");
    tx.commit().await.expect("commit");
    assert_eq!(rows(&app).await, 1);
}

/// An empty queue name and an over-long key raise clear errors, with the
/// server's codes, and insert nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_raises_a_clear_error_and_inserts_nothing() {
    let schemas = Schemas::default();
    let store = schemas.open().await;
    let mut app = support::raw(store.schema()).await;

    let tx = app.transaction().await.expect("begin");
    let err = sql_enqueue(&tx, "", None).await.expect_err("empty queue");
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "22023");
    assert_eq!(db.detail(), Some("invalid_queue_name"));
    assert!(db.message().contains("queue name"), "{}", db.message());
    drop(tx);

    let tx = app.transaction().await.expect("begin");
    let long_key = "k".repeat(201);
    let err = tx
        .query_one("SELECT enqueue('q', '{}'::jsonb, key => $1)", &[&long_key])
        .await
        .expect_err("over-long key");
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.detail(), Some("invalid_key"));
    assert!(db.message().contains("201 bytes"), "{}", db.message());
    drop(tx);

    let tx = app.transaction().await.expect("begin");
    let mut bad = job("");
    bad.key = Some(long_key);
    match enqueue_in(&tx, store.schema(), "q", &bad).await {
        Err(StoreError::Invalid(v)) => assert_eq!(v.code, "invalid_key"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    drop(tx);
    let tx = app.transaction().await.expect("begin");
    match enqueue_in(&tx, store.schema(), "", &job("")).await {
        Err(StoreError::Invalid(v)) => assert_eq!(v.code, "invalid_queue_name"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    drop(tx);

    assert_eq!(rows(&app).await, 0, "nothing inserted");
    let queues: i64 = app
        .query_one("SELECT count(*) FROM queues", &[])
        .await
        .expect("count queues")
        .get(0);
    assert_eq!(queues, 0, "no queue created");
}

/// A store that took `external()` hears the SQL function's commit, numbers
/// the job, and publishes it as `External::Committed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_store_numbers_the_sql_function_s_job() {
    let schemas = Schemas::default();
    let store = schemas.open().await;
    store_enqueue(&store, "q", "first").await;
    let mut rx = store.external().expect("a PostgreSQL store listens");
    let mut app = support::raw(store.schema()).await;

    // The listener starts in the background: enqueue until it hears one
    // (a job committed before it listened is numbered by a later pass).
    let found = tokio::time::timeout(HANG, async {
        let mut ids = Vec::new();
        loop {
            let tx = app.transaction().await.expect("begin");
            ids.push(sql_enqueue(&tx, "q", None).await.expect("enqueue"));
            tx.commit().await.expect("commit");
            let heard = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    match rx.recv().await {
                        Some(External::Committed(c)) => return Some(c),
                        Some(_) => {}
                        None => return None,
                    }
                }
            })
            .await;
            if let Ok(changes) = heard {
                return (ids, changes.expect("the store keeps sending"));
            }
        }
    })
    .await
    .expect("an External::Committed in time");
    let (ids, changes) = found;
    // A pass heard late may have numbered an earlier one of ours only.
    let change = changes
        .jobs
        .iter()
        .find(|c| ids.contains(&c.id))
        .unwrap_or_else(|| panic!("one of {ids:?} among {changes:?}"));
    assert!(change.seq > 0);
    let stored = store
        .job_get(&change.id)
        .await
        .expect("get")
        .expect("numbered");
    assert_eq!(stored.seq, change.seq);
}
