//! The writer's failure policy, tested on a real database file.

use super::*;

fn conn(dir: &std::path::Path) -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open(dir.join("w.db")).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    crate::schema::migrate(&mut conn).expect("migrate");
    conn.execute_batch("CREATE TABLE marks (what TEXT NOT NULL)")
        .expect("marks");
    conn
}

fn marks(dir: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("w.db")).expect("open");
    let mut stmt = conn
        .prepare("SELECT what FROM marks ORDER BY rowid")
        .expect("select");
    let rows = stmt.query_map([], |r| r.get(0)).expect("rows");
    rows.map(|r| r.expect("row")).collect()
}

/// A failed request whose savepoint cannot be rolled back must not have
/// its writes committed with the group while its caller hears "failed":
/// the group is undone and the writer fails stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_that_cannot_be_undone_fails_the_group_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, handle) = Writer::start(conn(dir.path()), Durability::Fsync).expect("start");
    // Hold the writer busy so the next requests are grouped together.
    let (busy, release) = hold_busy(&writer).await;
    let broken = {
        let writer = writer.clone();
        tokio::spawn(async move {
            writer
                .write(CommitKind::Progress, |ctx| -> Result<(), StoreError> {
                    ctx.conn
                        .execute_batch("INSERT INTO marks VALUES ('broken')")
                        .map_err(map_err)?;
                    // Leaves the request's savepoint: `ROLLBACK TO` then fails.
                    ctx.conn.execute_batch("RELEASE request").map_err(map_err)?;
                    Err(StoreError::Backend("the request failed".into()))
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let fine = {
        let writer = writer.clone();
        tokio::spawn(async move {
            writer
                .write(CommitKind::Progress, |ctx| {
                    ctx.conn
                        .execute_batch("INSERT INTO marks VALUES ('fine')")
                        .map_err(map_err)
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(release);
    busy.await.expect("task");
    let broken = broken.await.expect("task");
    let fine = fine.await.expect("task");
    assert!(broken.is_err(), "{broken:?}");
    assert!(
        matches!(fine, Err(StoreError::StorageFailed(_))),
        "the rest of the group must not commit: {fine:?}"
    );
    assert!(writer.health.check().is_err(), "the writer fails stop");
    assert!(
        marks(dir.path()).is_empty(),
        "nothing of the group may be committed: {:?}",
        marks(dir.path())
    );
    writer.stop().await;
    drop(writer);
    handle.join().expect("writer thread");
}

/// Holds the writer busy until the returned sender is dropped or sent to,
/// so the requests sent meanwhile are committed as one group.
async fn hold_busy(writer: &Writer) -> (tokio::task::JoinHandle<()>, std::sync::mpsc::Sender<()>) {
    let (started, wait_started) = std::sync::mpsc::channel::<()>();
    let (release, wait_release) = std::sync::mpsc::channel::<()>();
    let busy = {
        let writer = writer.clone();
        tokio::spawn(async move {
            writer
                .write(CommitKind::Progress, move |_ctx| {
                    let _ = started.send(());
                    let _ = wait_release.recv();
                    Ok(())
                })
                .await
                .expect("the busy request commits");
        })
    };
    wait_started.recv().expect("busy request started");
    (busy, release)
}

/// Sends a savepoint-free request that inserts `what` into `marks`, then
/// fails with `fail` if it is given.
fn mark(
    writer: &Writer,
    what: &'static str,
    fail: Option<&'static str>,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let writer = writer.clone();
    tokio::spawn(async move {
        writer
            .write_checked_first(CommitKind::Progress, move |ctx| {
                ctx.conn
                    .execute("INSERT INTO marks VALUES (?1)", [what])
                    .map_err(map_err)?;
                match fail {
                    Some(reason) => Err(StoreError::Backend(reason.into())),
                    None => Ok(()),
                }
            })
            .await
            .map(|c| c.value)
    })
}

/// Sends a savepoint-free request that refuses before writing anything.
fn refuse(writer: &Writer) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let writer = writer.clone();
    tokio::spawn(async move {
        writer
            .write_checked_first(CommitKind::Progress, |_ctx| -> Result<(), StoreError> {
                Err(StoreError::JobNotFound("nope".into()))
            })
            .await
            .map(|c| c.value)
    })
}

/// A request without a savepoint that refuses before writing changes
/// nothing, and the rest of its group commits as if it had not come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_before_writing_needs_no_savepoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, handle) = Writer::start(conn(dir.path()), Durability::Fsync).expect("start");
    let (busy, release) = hold_busy(&writer).await;
    let first = mark(&writer, "first", None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = refuse(&writer);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let last = mark(&writer, "last", None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(release);
    busy.await.expect("task");
    assert!(first.await.expect("task").is_ok());
    let refused = refused.await.expect("task");
    assert!(
        matches!(refused, Err(StoreError::JobNotFound(_))),
        "{refused:?}"
    );
    assert!(last.await.expect("task").is_ok());
    assert_eq!(marks(dir.path()), vec!["first", "last"]);
    let stats = writer.health.stats();
    assert_eq!(
        stats.commits, 2,
        "the busy request's group, then one for the three: {stats:?}"
    );
    assert!(writer.health.check().is_ok());
    writer.stop().await;
    drop(writer);
    handle.join().expect("writer thread");
}

/// A request without a savepoint that fails after writing cannot be taken
/// out alone: its whole group is rolled back and every request of it fails,
/// so nobody hears "failed" for a write that was committed. The writer goes
/// on: the next write commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_failing_after_writing_without_a_savepoint_fails_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, handle) = Writer::start(conn(dir.path()), Durability::Fsync).expect("start");
    let (busy, release) = hold_busy(&writer).await;
    let before = mark(&writer, "before", None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let broken = mark(&writer, "broken", Some("failed after writing"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = mark(&writer, "after", None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(release);
    busy.await.expect("task");
    for (name, result) in [
        ("before", before.await.expect("task")),
        ("broken", broken.await.expect("task")),
        ("after", after.await.expect("task")),
    ] {
        assert!(
            matches!(&result, Err(StoreError::Backend(r)) if r == "failed after writing"),
            "{name}: {result:?}"
        );
    }
    assert!(
        marks(dir.path()).is_empty(),
        "nothing of the group may be committed: {:?}",
        marks(dir.path())
    );
    assert!(writer.health.check().is_ok(), "the writer goes on");
    mark(&writer, "later", None)
        .await
        .expect("task")
        .expect("a later write commits");
    assert_eq!(marks(dir.path()), vec!["later"]);
    writer.stop().await;
    drop(writer);
    handle.join().expect("writer thread");
}

/// A request that closes a level-1 block (schema v12) sums level-0 rows:
/// a change to one of them still pending from an earlier request of the
/// same group must be in the sum, or the level-1 row is off for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_level1_block_counts_the_groups_pending_changes() {
    use orderly_core::{ClaimParams, EnqueueParams, NewJob};
    let dir = tempfile::tempdir().expect("tempdir");
    let enqueue = |ids: &[&str]| EnqueueParams {
        queue: "q".into(),
        jobs: ids
            .iter()
            .map(|id| NewJob {
                id: (*id).into(),
                key: None,
                payload: serde_json::json!({}),
                run_at: None,
                max_attempts: None,
                timeout_ms: None,
            })
            .collect(),
        now: 1,
    };
    let (writer, handle) = Writer::start(conn(dir.path()), Durability::Fsync).expect("start");
    let three = enqueue(&["a", "b", "c"]);
    writer
        .write(CommitKind::Accepting, move |ctx| {
            ctx.job_enqueue_many(&three)
        })
        .await
        .expect("seqs 1 to 3");
    writer.stop().await;
    drop(writer);
    handle.join().expect("writer thread");
    // The next `seq` is the last of level-1 block 0.
    rusqlite::Connection::open(dir.path().join("w.db"))
        .expect("open")
        .execute(
            "UPDATE meta SET value = ?1 WHERE name = 'next_seq'",
            [(1 << 20) - 1],
        )
        .expect("raise next_seq");
    let reopened = rusqlite::Connection::open(dir.path().join("w.db")).expect("reopen");
    let (writer, handle) = Writer::start(reopened, Durability::Fsync).expect("start");
    let last = enqueue(&["x"]);
    writer
        .write(CommitKind::Accepting, move |ctx| {
            ctx.job_enqueue_many(&last)
        })
        .await
        .expect("closes level-0 blocks 0 to 1022");
    let (busy, release) = hold_busy(&writer).await;
    let claim = {
        let writer = writer.clone();
        tokio::spawn(async move {
            let params = ClaimParams {
                queue: "q".into(),
                worker: "w".into(),
                max: 1,
                lease_ms: None,
                now: 2,
                jitter: 0.5,
            };
            writer
                .write(CommitKind::Progress, move |ctx| ctx.job_claim(&params))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let next = {
        let writer = writer.clone();
        let next = enqueue(&["y"]);
        tokio::spawn(async move {
            writer
                .write(CommitKind::Accepting, move |ctx| {
                    ctx.job_enqueue_many(&next)
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(release);
    busy.await.expect("task");
    let leases = claim.await.expect("task").expect("claim").value;
    assert_eq!(leases[0].job.id, "a");
    let queued = next.await.expect("task").expect("enqueue").value;
    assert_eq!(
        queued[0].job.seq,
        1 << 20,
        "the first seq of level-1 block 1"
    );
    writer.stop().await;
    drop(writer);
    handle.join().expect("writer thread");
    let raw = rusqlite::Connection::open(dir.path().join("w.db")).expect("open");
    let (stored, recount) = crate::schema::v5_tests::blocks_and_recount(&raw);
    assert_eq!(stored, recount);
    assert!(
        stored.contains(&"q/1/0=3".to_string()),
        "level-1 block 0: b, c and x wait: {stored:?}"
    );
}
