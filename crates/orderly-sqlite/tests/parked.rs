//! Claims parked in the writer (`Store::job_claim_parked`): a claim that
//! found nothing is run again in the commit that gives its queue work, so
//! the job is accepted (or freed) and started by one commit; parked claims
//! are served oldest first; a withdrawn or abandoned one never runs
//! (docs/promises.md, section 5).

use std::sync::Arc;
use std::time::Duration;

use orderly_core::{
    ClaimParams, Committed, EnqueueParams, Lease, NewJob, Outcome, ParkTicket, QueuePatch,
    ReportParams, Store, StoreError,
};
use orderly_core::{JobState, Millis};
use orderly_sqlite::{SqliteOptions, SqliteStore};
use tokio::task::JoinHandle;

const Q: &str = "q";

fn now() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as Millis
}

fn open() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open");
    (dir, Arc::new(store))
}

fn claim(worker: &str) -> ClaimParams {
    ClaimParams {
        queue: Q.into(),
        worker: worker.into(),
        max: 1,
        lease_ms: None,
        now: now(),
        jitter: 0.5,
    }
}

async fn enqueue(store: &SqliteStore, id: &str) {
    store
        .job_enqueue_many(EnqueueParams {
            queue: Q.into(),
            jobs: vec![NewJob {
                id: id.into(),
                key: None,
                payload: serde_json::json!({}),
                run_at: None,
                max_attempts: None,
                timeout_ms: None,
            }],
            now: now(),
        })
        .await
        .expect("enqueue");
}

fn commits(store: &SqliteStore) -> u64 {
    store.writer_stats().expect("figures").commits
}

type Parked = JoinHandle<Result<Committed<Vec<Lease>>, StoreError>>;

/// Parks a claim of `worker` and returns once its first attempt (which
/// finds nothing) has committed.
async fn park(store: &Arc<SqliteStore>, worker: &str, ticket: ParkTicket) -> Parked {
    let before = commits(store);
    let s = store.clone();
    let params = claim(worker);
    let handle = tokio::spawn(async move { s.job_claim_parked(params, ticket).await });
    for _ in 0..5_000 {
        if commits(store) > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(commits(store) > before, "the first attempt committed");
    assert!(!handle.is_finished(), "nothing to claim: it waits");
    handle
}

async fn answer(handle: Parked) -> Vec<Lease> {
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("answered")
        .expect("task")
        .expect("claim")
        .value
}

async fn state(store: &SqliteStore, id: &str) -> JobState {
    store.job_get(id).await.expect("get").expect("job").state
}

#[tokio::test]
async fn a_parked_claim_starts_the_job_in_the_commit_that_accepted_it() {
    let (_dir, store) = open();
    store
        .queue_configure(Q, QueuePatch::default(), now())
        .await
        .expect("configure");
    let parked = park(&store, "w", ParkTicket::new()).await;
    let before = commits(&store);
    enqueue(&store, "j1").await;
    assert_eq!(
        commits(&store),
        before + 1,
        "one commit accepted the job and started it"
    );
    let stats = store.writer_stats().expect("figures");
    assert_eq!(stats.parked_claim_starts, 1, "counted as a parked start");
    assert_eq!(state(&store, "j1").await, JobState::Running);
    let leases = answer(parked).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].job.id, "j1");
    assert_eq!(leases[0].job.state, JobState::Running);
    assert_eq!(leases[0].job.worker.as_deref(), Some("w"));
    store.close().await;
}

#[tokio::test]
async fn parked_claims_are_served_oldest_first() {
    let (_dir, store) = open();
    let a = park(&store, "a", ParkTicket::new()).await;
    let b = park(&store, "b", ParkTicket::new()).await;
    enqueue(&store, "j1").await;
    let got = answer(a).await;
    assert_eq!(got[0].job.id, "j1", "the first to park gets the first job");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !b.is_finished(),
        "concurrency 1: the second waits while j1 runs"
    );
    // j1's end frees the slot: the second claim starts j2 in that commit.
    enqueue(&store, "j2").await;
    assert_eq!(state(&store, "j2").await, JobState::Queued, "j1 still runs");
    let before = commits(&store);
    store
        .job_report_many(vec![ReportParams {
            id: "j1".into(),
            token: got[0].token.clone(),
            outcome: Outcome::Succeeded { result: None },
            now: now(),
            jitter: 0.5,
        }])
        .await
        .pop()
        .expect("one answer")
        .expect("report");
    assert_eq!(
        commits(&store),
        before + 1,
        "the report's commit started j2"
    );
    let got = answer(b).await;
    assert_eq!(got[0].job.id, "j2");
    assert_eq!(got[0].job.worker.as_deref(), Some("b"));
    store.close().await;
}

#[tokio::test]
async fn a_withdrawn_or_abandoned_claim_never_runs() {
    let (_dir, store) = open();
    let ticket = ParkTicket::new();
    let withdrawn = park(&store, "gone", ticket.clone()).await;
    assert!(
        ticket.withdraw(),
        "parked, not running: it can be withdrawn"
    );
    let abandoned = park(&store, "left", ParkTicket::new()).await;
    abandoned.abort();
    let _ = abandoned.await;
    enqueue(&store, "j1").await;
    assert_eq!(
        state(&store, "j1").await,
        JobState::Queued,
        "nobody waits: the job is not started for anyone"
    );
    // The writer forgets a withdrawn claim (its answer, if any, is empty).
    match withdrawn.await.expect("task") {
        Ok(out) => assert!(out.value.is_empty()),
        Err(e) => assert_eq!(e, StoreError::Closed),
    }
    let leases = store.job_claim(claim("here")).await.expect("claim").value;
    assert_eq!(leases[0].job.id, "j1");

    // A ticket withdrawn before its first attempt: answered with nothing, unrun.
    enqueue(&store, "j2").await;
    let ticket = ParkTicket::new();
    assert!(ticket.withdraw());
    let out = store
        .job_claim_parked(claim("late"), ticket)
        .await
        .expect("answer");
    assert!(out.value.is_empty() && out.changes.is_empty());
    assert_eq!(state(&store, "j2").await, JobState::Queued);
    store.close().await;
}

#[tokio::test]
async fn a_claim_that_finds_work_answers_at_once() {
    let (_dir, store) = open();
    enqueue(&store, "j1").await;
    let leases = store
        .job_claim_parked(claim("w"), ParkTicket::new())
        .await
        .expect("claim")
        .value;
    assert_eq!(leases[0].job.id, "j1");
    store.close().await;
}
