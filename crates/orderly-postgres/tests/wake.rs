//! Wake-ups across nodes: two stores on one schema are two nodes. A write
//! committed through one reaches the other's `Store::external` as a
//! summary; bursts are coalesced into far fewer `NOTIFY`s than writes, and
//! the last summary is always sent; an `"unnumbered"` notification (as the
//! SQL function sends) makes the listening node number the rows and
//! publish the real changes.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use orderly_core::{EnqueueParams, External, NewJob, Store};
use orderly_postgres::PostgresStore;
use support::Schemas;
use tokio::sync::mpsc::UnboundedReceiver;

const T0: i64 = 1_700_000_000_000;
/// Only to keep a broken test from hanging: no assertion is on time.
const HANG: Duration = Duration::from_secs(60);

fn job(id: String) -> NewJob {
    NewJob {
        id,
        key: None,
        payload: serde_json::json!({}),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

async fn enqueue(store: &PostgresStore, queue: &str, id: String) {
    store
        .job_enqueue_many(EnqueueParams {
            queue: queue.into(),
            jobs: vec![job(id)],
            now: T0,
        })
        .await
        .expect("enqueue");
}

/// Two stores on one fresh schema.
async fn two_nodes(schemas: &Schemas) -> (String, Arc<PostgresStore>, Arc<PostgresStore>) {
    let schema = support::fresh_schema();
    schemas.adopt(&schema);
    let a = Arc::new(support::open(&schema).await);
    let b = Arc::new(support::open(&schema).await);
    (schema, a, b)
}

async fn next(rx: &mut UnboundedReceiver<External>) -> External {
    tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("an external event in time")
        .expect("the store keeps sending")
}

/// Waits until `rx`'s listener hears notifications: sends a probe on the
/// channel until one arrives (the listener starts in the background).
async fn until_listening(schema: &str, rx: &mut UnboundedReceiver<External>) {
    let client = support::raw(schema).await;
    let deadline = Instant::now() + HANG;
    loop {
        client
            .execute(
                "SELECT pg_notify($1, '{\"queues\":{\"probe\":1}}')",
                &[&schema],
            )
            .await
            .expect("probe");
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            if matches!(&e, External::Wake(w) if w.queues.contains_key("probe")) {
                // Drain other probes already sent.
                while let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
                {
                }
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the listener never heard a probe"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_reaches_the_other() {
    let schemas = Schemas::default();
    let (schema, a, b) = two_nodes(&schemas).await;
    let mut rx = b.external().expect("a PostgreSQL store hears other nodes");
    assert!(b.external().is_none(), "take-once");
    until_listening(&schema, &mut rx).await;

    enqueue(&a, "q", "j1".into()).await;
    match next(&mut rx).await {
        External::Wake(w) => {
            assert_eq!(w.queues.get("q"), Some(&1), "{w:?}");
            assert!(w.finished.is_empty());
        }
        other => panic!("expected a wake-up, got {other:?}"),
    }
    // A node does not hear itself.
    let mut own = a.external().expect("a's listener");
    until_listening(&schema, &mut own).await;
    enqueue(&a, "q", "j2".into()).await;
    loop {
        match next(&mut rx).await {
            // B heard the probes sent to A's listener too.
            External::Wake(w) if w.queues.contains_key("probe") => {}
            External::Wake(w) => {
                assert_eq!(w.queues.get("q"), Some(&1), "{w:?}");
                break;
            }
            other => panic!("expected a wake-up, got {other:?}"),
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), own.recv())
            .await
            .is_err(),
        "a store must ignore its own notifications"
    );
}

/// Counts the notifications store `from` sends on `schema` and the queue
/// counts they carry, until they add up to `total`; returns how many.
async fn count_notifications(
    schema: String,
    from: String,
    total: usize,
    listening: tokio::sync::oneshot::Sender<()>,
) -> usize {
    let mut config: tokio_postgres::Config = support::database_url().parse().expect("url");
    config.application_name("wake-test-counter");
    let (client, mut conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("counter connection");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN \"{schema}\""))
        .await
        .expect("LISTEN");
    let _ = listening.send(());
    let (mut notifications, mut sum) = (0, 0);
    while sum < total {
        let payload = tokio::time::timeout(HANG, rx.recv())
            .await
            .expect("notifications in time")
            .expect("counter connection open");
        let v: serde_json::Value = serde_json::from_str(&payload).expect("JSON payload");
        if v["from"].as_str() != Some(from.as_str()) {
            continue;
        }
        notifications += 1;
        sum += v["queues"]["q"].as_u64().unwrap_or(0) as usize;
        assert!(sum <= total, "more wake-ups than jobs: {sum}");
    }
    notifications
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_coalesced_and_its_last_wake_up_arrives() {
    const TASKS: usize = 16;
    const EACH: usize = 125;
    const TOTAL: usize = TASKS * EACH;
    let schemas = Schemas::default();
    let (schema, a, b) = two_nodes(&schemas).await;
    let mut rx = b.external().expect("b's listener");
    until_listening(&schema, &mut rx).await;
    // The counter listens before the burst starts.
    let (listening, ready) = tokio::sync::oneshot::channel();
    let counter = tokio::spawn(count_notifications(
        schema.clone(),
        a.instance().to_string(),
        TOTAL,
        listening,
    ));
    ready.await.expect("the counter listens");

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                enqueue(&a, "q", format!("j-{t}-{i}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("enqueuer");
    }
    // Every job is counted once across B's wake-ups: none lost, the last
    // summary sent.
    let mut woken = 0;
    while woken < TOTAL {
        if let External::Wake(w) = next(&mut rx).await {
            woken += w.queues.get("q").copied().unwrap_or(0);
        }
    }
    assert_eq!(woken, TOTAL);
    let notifications = tokio::time::timeout(HANG, counter)
        .await
        .expect("counter in time")
        .expect("counter");
    println!(
        "{TOTAL} enqueues from {TASKS} tasks: {notifications} NOTIFYs ({:.1} per 1,000 enqueues)",
        notifications as f64 * 1000.0 / TOTAL as f64
    );
    assert!(notifications >= 1);
    assert!(
        notifications < TOTAL,
        "not coalesced: {notifications} NOTIFYs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnumbered_notification_makes_the_listener_number_the_rows() {
    let schemas = Schemas::default();
    let (schema, a, b) = two_nodes(&schemas).await;
    enqueue(&a, "q", "first".into()).await; // creates the queue
    let mut rx = b.external().expect("b's listener");
    until_listening(&schema, &mut rx).await;

    let raw = support::raw(&schema).await;
    raw.execute(
        "INSERT INTO jobs (id, batch, batch_pos, queue, key, state, payload, max_attempts,
            enqueued_at, run_at)
         VALUES ('by-hand', nextval('batch_no'), 0, 'q', NULL, 'queued', '{}', 3, $1, $1)",
        &[&T0],
    )
    .await
    .expect("insert an unnumbered row");
    raw.execute(
        "SELECT pg_notify($1, '{\"queues\":{\"q\":1},\"unnumbered\":true}')",
        &[&schema],
    )
    .await
    .expect("notify");
    let changes = loop {
        match next(&mut rx).await {
            External::Committed(c) => break c,
            External::Wake(w) => assert_eq!(w.queues.get("q"), Some(&1)),
            External::WakeAll => {}
        }
    };
    assert_eq!(changes.jobs.len(), 1, "{changes:?}");
    assert_eq!(changes.jobs[0].id, "by-hand");
    assert!(changes.jobs[0].seq > 0);
    let job = b.job_get("by-hand").await.expect("read").expect("numbered");
    assert_eq!(job.seq, changes.jobs[0].seq);
}
