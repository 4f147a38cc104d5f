//! The sequencer's pass against a real PostgreSQL server: a pass that
//! reaches its limit never stops inside a batch (see `write::number`).

use crate::commit_err;
use crate::rows::{map_err, Res};
use crate::write::number::PASS_LIMIT;
use crate::write::Op;
use crate::PostgresStore;
use orderly_core::{Committed, Store};

/// One numbering pass, as an enqueue runs it; how many rows it numbered.
async fn one_pass(store: &PostgresStore) -> Res<u64> {
    Ok(in_tx!(store, op => op.number_pending().await?).value)
}

/// Two committed, unnumbered batches that together exceed a pass's limit:
/// the pass that reaches its limit inside the second batch numbers the rest
/// of it too. Otherwise a batch inserted before it but committed after the
/// pass would be numbered, by the next pass, between the second batch's two
/// parts: below jobs that committed before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_never_stops_inside_a_batch() {
    let url = std::env::var("ORDERLY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("t_number_{}", uuid::Uuid::new_v4().simple());
    let store = PostgresStore::open(&crate::PostgresOptions {
        schema: schema.clone(),
        pool_size: 2,
        ..crate::PostgresOptions::new(&url)
    })
    .await
    .unwrap_or_else(|e| {
        panic!("this test needs PostgreSQL at {url} (set ORDERLY_TEST_DATABASE_URL): {e}")
    });
    let mut config: tokio_postgres::Config = url.parse().expect("url");
    config.options(format!("-c search_path={schema}"));
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let size = PASS_LIMIT * 6 / 10;
    client
        .execute(
            "INSERT INTO jobs (id, batch, batch_pos, queue, state, payload, max_attempts, enqueued_at, run_at)
             SELECT 'b' || b || '-' || g, b, g, 'q', 'queued', '{}', 5, 0, 0
             FROM generate_series(1, 2) b, generate_series(0, $1::bigint - 1) g",
            &[&size],
        )
        .await
        .expect("insert two batches");

    let numbered = one_pass(&store).await.expect("pass");
    let second: i64 = client
        .query_one(
            "SELECT count(*) FROM jobs WHERE batch = 2 AND seq IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        (numbered, second),
        (2 * size as u64, size),
        "the pass stopped inside the second batch"
    );
    let gaps: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT seq - lag(seq) OVER (ORDER BY batch, batch_pos) AS d FROM jobs) s WHERE d <> 1",
            &[],
        )
        .await
        .expect("gaps")
        .get(0);
    assert_eq!(gaps, 0, "seqs follow insertion order without gaps");

    store.close().await;
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop schema");
}
