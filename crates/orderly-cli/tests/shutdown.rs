//! Graceful shutdown of the real binary: SIGTERM closes the store cleanly
//! (the SQLite writer joined, every connection closed, the directory lock
//! released) and the exit status tells whether requests in flight were
//! abandoned.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn sigterm_while_idle_exits_0_with_the_store_closed() {
    let mut srv = TestServer::start().await;
    let client = srv.client();
    let job = client
        .enqueue("q", &job_req("j1", None, json!({"n": 1})))
        .await
        .expect("enqueue");
    assert_eq!(job.value.id, "j1");
    let wal = srv.data_dir().join("orderly.db-wal");
    ensure!(srv, wal.exists(), "no WAL file while the store is open");
    srv.sigterm();
    let Some(status) = srv.wait_exit(Duration::from_secs(20)).await else {
        srv.fail("the server did not exit within 20 s of SIGTERM".into());
    };
    ensure!(
        srv,
        status.success(),
        "exit status {status} after an idle SIGTERM"
    );
    // SQLite checkpoints and deletes the WAL when the last connection to the
    // database closes cleanly; a process that exits with connections open
    // leaves it behind (to be replayed at the next open).
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).ok();
    ensure!(
        srv,
        wal_len.is_none_or(|n| n == 0),
        "{} is still there ({wal_len:?} bytes): the store was not closed",
        wal.display()
    );
    ensure!(
        srv,
        srv.log_tail().contains("store closed"),
        "no `store closed` line in the log"
    );
    // The job survived the restart.
    srv.restart().await;
    assert_eq!(srv.job("j1").await.state, "queued");
}

#[tokio::test]
async fn sigterm_with_a_request_stuck_past_the_grace_exits_non_zero() {
    let mut srv =
        TestServer::start_with_args(None, &["--shutdown-grace", "500ms", "--body-timeout", "5m"])
            .await;
    // A request whose body never completes: in flight until its body timeout.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.port()))
        .await
        .expect("connect");
    s.write_all(
        b"POST /v1/queues/q/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"payload\":",
    )
    .await
    .expect("write");
    // Let the server read the headers (nothing outside the server shows that it has).
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.sigterm();
    let Some(status) = srv.wait_exit(Duration::from_secs(20)).await else {
        srv.fail("the server did not exit within 20 s of SIGTERM".into());
    };
    ensure!(
        srv,
        !status.success(),
        "exit status {status} although a request was abandoned"
    );
    let log = srv.log_tail();
    ensure!(
        srv,
        log.contains("abandoned 1 request"),
        "no log line naming the abandoned request"
    );
    ensure!(
        srv,
        log.contains("store closed"),
        "the store was not closed"
    );
    drop(s);
}
