//! `seq` in commit order (contract section 8). A transaction that enqueues
//! and stays open must neither stall anyone else's enqueues nor end up with
//! a `seq` below jobs that committed while it was open: with a plain
//! sequence it would hold the lowest number, claimers would start the later
//! jobs first, and it would start after them, an inversion in the start log.

mod support;

use orderly_core::{
    ClaimParams, EnqueueParams, NewJob, Outcome, QueuePatch, ReportParams, StartListParams, Store,
};
use orderly_postgres::PostgresStore;
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

async fn enqueue(store: &PostgresStore, id: &str) -> i64 {
    store
        .job_enqueue_many(EnqueueParams {
            queue: "q".into(),
            jobs: vec![job(id)],
            now: T0,
        })
        .await
        .expect("enqueue")
        .value[0]
        .job
        .seq
}

/// Claims one job and reports it done; returns its id.
async fn run_one(store: &PostgresStore) -> Option<String> {
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
        .pop()?;
    store
        .job_report_many(vec![ReportParams {
            id: lease.job.id.clone(),
            token: lease.token,
            outcome: Outcome::Succeeded { result: None },
            now: T0,
            jitter: 0.5,
        }])
        .await
        .pop()
        .expect("one answer")
        .expect("report");
    Some(lease.job.id)
}

/// One enqueue transaction is held open (on its own connection, inserting
/// its job as the store's enqueue does: unnumbered) while two later
/// enqueues commit through two nodes and a claimer runs both. The held job
/// is not visible meanwhile; once it commits it is numbered above both,
/// starts after them, and the start log has no inversion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_enqueue_transaction_gets_a_seq_above_those_that_committed_first() {
    let schemas = Schemas::default();
    let schema = support::fresh_schema();
    schemas.adopt(&schema);
    let a = support::open(&schema).await;
    let b = support::open(&schema).await;
    a.queue_configure(
        "q",
        QueuePatch {
            concurrency: Some(1),
            ..QueuePatch::default()
        },
        T0,
    )
    .await
    .expect("configure");

    let mut app = support::raw(&schema).await;
    let held = app.transaction().await.expect("begin");
    held.execute(
        "INSERT INTO jobs (id, batch, batch_pos, queue, state, payload, max_attempts, enqueued_at, run_at)
         VALUES ('held', nextval('batch_no'), 0, 'q', 'queued', '{}', 5, $1, $1)",
        &[&T0],
    )
    .await
    .expect("insert in the held transaction");

    // Later enqueues are not stalled by it, and claimers run them.
    let s1 = enqueue(&a, "later-1").await;
    let s2 = enqueue(&b, "later-2").await;
    assert!(s1 < s2);
    assert_eq!(run_one(&b).await.as_deref(), Some("later-1"));
    assert_eq!(
        a.job_get("held").await.expect("get"),
        None,
        "an uncommitted enqueue is no job yet"
    );
    assert_eq!(run_one(&a).await.as_deref(), Some("later-2"));
    assert_eq!(run_one(&a).await, None, "nothing else is visible");

    held.commit().await.expect("commit the held transaction");
    // The next pass of the sequencer (here, the next enqueue's) numbers it
    // first: it committed before `after`.
    let s_after = enqueue(&b, "after").await;
    let held_seq = a.job_get("held").await.expect("get").expect("numbered").seq;
    assert!(
        held_seq > s2,
        "the held job committed after later-2 and must not get a lower seq ({held_seq} vs {s2})"
    );
    assert!(s_after > held_seq);
    assert_eq!(run_one(&b).await.as_deref(), Some("held"));
    assert_eq!(run_one(&a).await.as_deref(), Some("after"));

    let log = a
        .start_list(StartListParams {
            queue: "q".into(),
            after: None,
            limit: 100,
        })
        .await
        .expect("start log");
    let seqs: Vec<i64> = log.iter().map(|s| s.seq).collect();
    assert_eq!(
        seqs,
        vec![s1, s2, held_seq, s_after],
        "start order is seq order"
    );
}

/// A row an enqueue committed but never numbered (its node died between
/// the two transactions) is numbered by the next maintenance pass, and
/// its change is reported so claimers are woken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_numbers_rows_an_enqueue_left_unnumbered() {
    let schemas = Schemas::default();
    let store = schemas.open().await;
    enqueue(&store, "first").await;
    let app = support::raw(store.schema()).await;
    app.execute(
        "INSERT INTO jobs (id, batch, batch_pos, queue, state, payload, max_attempts, enqueued_at, run_at)
         VALUES ('orphan', nextval('batch_no'), 0, 'q', 'queued', '{}', 5, $1, $1)",
        &[&T0],
    )
    .await
    .expect("insert");
    assert_eq!(store.job_get("orphan").await.expect("get"), None);
    let pass = store.maintenance_run(T0, 0.5).await.expect("maintenance");
    assert_eq!(
        pass.changes
            .jobs
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["orphan"]
    );
    let job = store
        .job_get("orphan")
        .await
        .expect("get")
        .expect("numbered");
    assert_eq!(job.position, Some(1));
}

/// Two enqueues through two nodes wait behind the sequencer (the test holds
/// its row); when it is released one pass numbers both jobs. Each enqueue
/// still answers with its own numbered job and reports it among its
/// changes (its node's wake-ups and events come from there), and the two
/// get consecutive `seq`s in the order they committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_numbered_by_another_nodes_pass_reports_its_job() {
    let schemas = Schemas::default();
    let schema = support::fresh_schema();
    schemas.adopt(&schema);
    let a = std::sync::Arc::new(support::open(&schema).await);
    let b = std::sync::Arc::new(support::open(&schema).await);
    enqueue(&a, "first").await;
    let mut gate = support::raw(&schema).await;
    let held = gate.transaction().await.expect("begin");
    held.execute("SELECT 1 FROM seq_counter FOR UPDATE", &[])
        .await
        .expect("hold the sequencer");
    let observer = support::raw(&schema).await;
    let waiting_passes = || async {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%FROM seq_counter%FOR UPDATE%'",
                &[],
            )
            .await
            .expect("activity")
            .get::<_, i64>(0)
    };
    let before = waiting_passes().await;
    let spawn = |store: std::sync::Arc<PostgresStore>, id: &'static str| {
        tokio::spawn(async move {
            store
                .job_enqueue_many(EnqueueParams {
                    queue: "q".into(),
                    jobs: vec![job(id)],
                    now: T0,
                })
                .await
                .expect("enqueue")
        })
    };
    let ea = spawn(a.clone(), "from-a");
    while waiting_passes().await < before + 1 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let eb = spawn(b.clone(), "from-b");
    while waiting_passes().await < before + 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    held.commit().await.expect("release the sequencer");
    let (ra, rb) = (ea.await.expect("task"), eb.await.expect("task"));
    for (r, id) in [(&ra, "from-a"), (&rb, "from-b")] {
        assert_eq!(r.value[0].job.id, id);
        assert!(r.value[0].created);
        assert!(
            r.changes
                .jobs
                .iter()
                .any(|c| c.id == id && c.from.is_none()),
            "{id} is missing from its enqueue's changes: {:?}",
            r.changes.jobs
        );
    }
    assert_eq!(
        rb.value[0].job.seq,
        ra.value[0].job.seq + 1,
        "from-a committed first"
    );
}

/// 64 enqueues at once on one store (16 tasks × 4) share numbering passes
/// (the count is printed: timing decides it) and still each answers its
/// own job numbered, in commit order within each enqueuer, and reports its
/// own job among its changes: across all answers every job is reported
/// once, none twice (a pass numbers its followers' jobs too; they report
/// them, not the pass's runner).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_share_numbering_passes_and_report_their_own_jobs() {
    let schemas = Schemas::default();
    let store = std::sync::Arc::new(schemas.open().await);
    let before = store.numbering_passes();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..4 {
                let id = format!("t{t}-{i}");
                let done = store
                    .job_enqueue_many(EnqueueParams {
                        queue: "q".into(),
                        jobs: vec![job(&id)],
                        now: T0,
                    })
                    .await
                    .expect("enqueue");
                let seq = done.value[0].job.seq;
                assert!(seq > 0, "{id} answered unnumbered");
                let reported: Vec<String> =
                    done.changes.jobs.iter().map(|c| c.id.clone()).collect();
                out.push((id, seq, reported));
            }
            out
        }));
    }
    let mut reported = std::collections::HashMap::<String, usize>::new();
    let mut total = 0;
    for t in tasks {
        let mine = t.await.expect("task");
        assert!(
            mine.windows(2).all(|w| w[0].1 < w[1].1),
            "one enqueuer's jobs out of seq order: {mine:?}"
        );
        for (id, _, changes) in mine {
            total += 1;
            assert!(
                changes.contains(&id),
                "{id} is not among its own changes {changes:?}"
            );
            for c in changes {
                *reported.entry(c).or_default() += 1;
            }
        }
    }
    assert_eq!(total, 64);
    let twice: Vec<_> = reported.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs reported by two enqueues: {twice:?}");
    assert_eq!(reported.len(), 64, "every job reported once");
    let passes = store.numbering_passes() - before;
    println!("64 concurrent enqueues (16 tasks × 4): {passes} numbering passes");
}
