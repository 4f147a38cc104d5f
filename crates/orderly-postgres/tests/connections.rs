//! Dropped connections: when PostgreSQL ends the store's sessions (here
//! `pg_terminate_backend`, as a restart or a failover would), a write
//! either commits or answers `Unavailable` (never a false success), and the
//! store recovers by itself on new connections: a dead pooled session costs
//! one `Unavailable` answer, then it is gone from the pool.

mod support;

use orderly_core::{EnqueueParams, NewJob, Store, StoreError};
use orderly_postgres::{PostgresOptions, PostgresStore};
use support::Schemas;

const T0: i64 = 1_700_000_000_000;

fn job(id: &str) -> NewJob {
    NewJob {
        id: id.into(),
        key: None,
        payload: serde_json::json!({}),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_sessions_answer_unavailable_or_commit_and_the_store_recovers() {
    let schemas = Schemas::default();
    let schema = support::fresh_schema();
    schemas.adopt(&schema);
    let app = format!("orderly_{schema}");
    let url = format!(
        "{}{}application_name={app}",
        support::database_url(),
        if support::database_url().contains('?') {
            "&"
        } else {
            "?"
        }
    );
    let store = PostgresStore::open(&PostgresOptions {
        url,
        ..support::options(&schema)
    })
    .await
    .expect("open");
    let admin = support::raw("public").await;
    let mut acknowledged = Vec::new();
    for round in 0..5 {
        let id = format!("j{round}");
        match store
            .job_enqueue_many(EnqueueParams {
                queue: "q".into(),
                jobs: vec![job(&id)],
                now: T0,
            })
            .await
        {
            Ok(_) => acknowledged.push(id),
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("round {round}: a dropped session must be Unavailable, got {e:?}"),
        }
        let _ended: i64 = admin
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = $1) t",
                &[&app],
            )
            .await
            .expect("terminate the store's sessions")
            .get(0);
    }
    // It recovers by itself: each dead pooled session costs at most one
    // `Unavailable` (the pool holds at most `pool_size`), then new sessions
    // serve, and every acknowledged job is there.
    let pool_size = support::options(&schema).pool_size;
    let mut healthy = false;
    for _ in 0..=pool_size {
        match store.health().await {
            Ok(()) => {
                healthy = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("health after a drop: {e:?}"),
        }
    }
    assert!(
        healthy,
        "still unhealthy after {pool_size} dead sessions were dropped"
    );
    // A client retries an `Unavailable` enqueue with the same id (an
    // idempotent replay if it had committed after all).
    let mut committed = false;
    for _ in 0..=pool_size {
        match store
            .job_enqueue_many(EnqueueParams {
                queue: "q".into(),
                jobs: vec![job("after")],
                now: T0,
            })
            .await
        {
            Ok(_) => {
                committed = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("enqueue after the drops: {e:?}"),
        }
    }
    assert!(committed, "an enqueue after the drops never committed");
    for id in &acknowledged {
        assert!(
            store.job_get(id).await.expect("get").is_some(),
            "acknowledged job {id} is missing"
        );
    }
    assert!(
        !acknowledged.is_empty(),
        "no enqueue succeeded between the drops"
    );
}
