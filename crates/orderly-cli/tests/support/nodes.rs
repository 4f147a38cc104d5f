//! Several `orderly serve --database-url` nodes on one PostgreSQL schema,
//! and the server-side views the multi-node tests check: the start log and
//! every job of a queue.

#![allow(dead_code)]

use std::sync::Arc;

use super::proto::{CompleteRequest, LeaseView, StartView};
use super::{claim_req, Client, TestServer};

/// The shared PostgreSQL server (`ORDERLY_TEST_DATABASE_URL`, default the CI
/// one at `postgres://postgres@127.0.0.1:5432/test`).
pub fn database_url() -> String {
    std::env::var("ORDERLY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema name no other test uses.
pub fn unique_schema(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A schema on the shared server for one test, dropped when it ends.
pub struct Schema(pub String);

impl Schema {
    /// A fresh schema name (created by the first node's migrations).
    pub fn new(prefix: &str) -> Self {
        Schema(unique_schema(prefix))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let Ok((client, conn)) =
                    tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await;
            })
        })
        .join();
    }
}

/// Starts `n` nodes on one database and schema (one after another, so the
/// first runs the migrations; the others find them done).
pub async fn start_nodes(n: usize, url: &str, schema: &str) -> Vec<Arc<TestServer>> {
    let args = ["--database-url", url, "--database-schema", schema];
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Arc::new(TestServer::start_with_args(None, &args).await));
    }
    nodes
}

/// The whole start log of a queue, in start order, read from one node.
pub async fn all_starts(node: &TestServer, queue: &str) -> Vec<StartView> {
    node.start_log(queue, 1000).await
}

/// Start-order inversions of a serial queue's start log: a start whose `seq`
/// is not above the one before, unless it is the same job started again
/// (a rerun in place after a lost lease).
pub fn inversions(log: &[StartView]) -> usize {
    log.windows(2)
        .filter(|w| w[1].seq <= w[0].seq && w[1].job_id != w[0].job_id)
        .count()
}

/// Completes a lease and asks for the next one in the same round trip.
pub async fn complete_and_claim(
    c: &Client,
    queue_worker: &str,
    lease: &LeaseView,
    max: u32,
    wait_ms: u64,
) -> Result<Vec<LeaseView>, super::ClientError> {
    let r = c
        .complete(
            &lease.job.id,
            &CompleteRequest {
                token: lease.token.clone(),
                result: None,
                claim_next: Some(claim_req(queue_worker, max, wait_ms)),
            },
        )
        .await?;
    Ok(r.leases.unwrap_or_default())
}

/// Runs `orderly serve --database-url url` (a fresh data dir) and checks
/// that it stops at start before it listens, with an error that says
/// "cannot open the PostgreSQL store" and `says`, and without `secret`
/// (the URL's password) anywhere in its output.
pub async fn serve_fails_at_start(url: &str, says: &str, secret: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = super::orderly();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--database-url", url]);
    let out = super::run_bounded(cmd, std::time::Duration::from_secs(30)).await;
    let show = super::show(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve did not fail: {show}");
    assert!(
        stderr.contains("cannot open the PostgreSQL store") && stderr.contains(says),
        "the error does not say {says:?}: {show}"
    );
    assert!(!show.contains(secret), "the password is shown: {show}");
    assert!(!stderr.contains("listening on"), "it listened: {show}");
}
