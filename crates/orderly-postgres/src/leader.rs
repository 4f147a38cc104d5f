//! The database's clock and maintenance leadership, kept by one background
//! task on a dedicated connection (never a pooled one).
//!
//! - **Clock**: every [`TICK`] the task reads `clock_timestamp()` and keeps
//!   `db_now - local_now`, the local time taken at the midpoint of the round
//!   trip. The service adds it to every `now` it passes, so a node whose
//!   wall clock runs fast does not reap other nodes' leases early.
//! - **Leadership**: the task holds a session-level advisory lock keyed by
//!   the schema (`pg_try_advisory_lock(hashtext('orderly maintenance ' ||
//!   schema))`). The node holding it is the maintenance leader; the others
//!   try again every tick. PostgreSQL releases the lock when the session
//!   ends, so when the leader dies (or its connection does) another node
//!   takes over within a tick or so. A leader whose ping fails or goes
//!   unanswered for [`QUERY_TIMEOUT`] stops calling itself leader at once
//!   and drops its connection; the one window with two leaders is a session
//!   the server ended that its node has not noticed yet (at most a tick),
//!   and maintenance is safe to run twice (every pass is its own
//!   transactions under the queues' locks).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderly_core::Millis;
use tokio_postgres::Client;

/// How often the task measures the clock and pings or tries the lock.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// Longest one of the task's queries (or a connect) may take before the
/// connection counts as lost.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the task keeps for the store to read without I/O.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// `db_now - local_now`, in milliseconds.
    pub(crate) offset_ms: AtomicI64,
    /// Whether this store holds the maintenance lock.
    pub(crate) leader: AtomicBool,
}

/// This machine's wall clock in milliseconds since the epoch.
fn local_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Measures `db_now - local_now` on `client`: the local time at the midpoint
/// of the round trip against the server's `clock_timestamp()`.
pub(crate) async fn measure_offset(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let before = local_millis();
    let row = client
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8",
            &[],
        )
        .await?;
    let after = local_millis();
    let db_now: i64 = row.get(0);
    Ok(db_now - (before + (after - before) / 2))
}

/// Runs the clock and leadership task until aborted.
pub(crate) async fn run(config: tokio_postgres::Config, schema: String, shared: Arc<Shared>) {
    let key = format!("orderly maintenance {schema}");
    loop {
        let connected =
            tokio::time::timeout(QUERY_TIMEOUT, config.connect(tokio_postgres::NoTls)).await;
        if let Ok(Ok((client, connection))) = connected {
            let conn_task = tokio::spawn(async move {
                let _ = connection.await;
            });
            hold(&client, &key, &shared).await;
            shared.leader.store(false, Ordering::SeqCst);
            drop(client);
            conn_task.abort();
        }
        shared.leader.store(false, Ordering::SeqCst);
        tokio::time::sleep(TICK).await;
    }
}

/// One session: measure, try the lock until held, then keep pinging; returns
/// when the connection fails or stops answering.
async fn hold(client: &Client, key: &str, shared: &Shared) {
    loop {
        match tokio::time::timeout(QUERY_TIMEOUT, measure_offset(client)).await {
            Ok(Ok(offset)) => shared.offset_ms.store(offset, Ordering::Relaxed),
            _ => return,
        }
        if !shared.leader.load(Ordering::SeqCst) {
            let taken = tokio::time::timeout(
                QUERY_TIMEOUT,
                client.query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key]),
            )
            .await;
            match taken {
                Ok(Ok(row)) => {
                    let held: bool = row.get(0);
                    shared.leader.store(held, Ordering::SeqCst);
                }
                _ => return,
            }
        }
        tokio::time::sleep(TICK).await;
    }
}
