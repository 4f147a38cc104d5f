//! The floors every figure is made of, measured in the same run as the
//! figures (these 2-core machines are shared and noisy, so a figure means
//! something only beside a floor measured at the same time):
//!
//! - `rtt`: one HTTP round trip of the server's own stack on one keep-alive
//!   connection (`GET /healthz`, which touches no store);
//! - `healthz_many`: what `/healthz` does with as many concurrent clients as
//!   the W1 many-clients enqueue (the ceiling of any API call at that
//!   concurrency);
//! - `commit`: one fsynced SQLite WAL commit of one row (`synchronous =
//!   FULL`, as the server's default durability), in a scratch database on
//!   the same file system as the server's data directory; for a
//!   PostgreSQL-backed run, one committed one-row `INSERT` on that database
//!   with the server's `synchronous_commit` (see `pg`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use orderly_client::Client;

use crate::stats::percentile;
use crate::util::{call, join_all};

/// Round trips timed for `rtt` (after a warm-up).
const RTT_SAMPLES: usize = 2_000;
/// Commits timed for `commit` (after a warm-up).
const COMMIT_SAMPLES: usize = 500;
/// Commits before the timed ones (see [`commit`]).
const WARM_UP_COMMITS: i64 = 1_100;
/// Requests per client for `healthz_many`.
const MANY_PER_CLIENT: usize = 300;

/// A floor's distribution, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Floor {
    /// Median.
    pub(crate) p50: f64,
    /// Mean (what a rate of sequential operations follows).
    pub(crate) mean: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
}

impl Floor {
    pub(crate) fn of(mut ms: Vec<f64>) -> Floor {
        ms.sort_by(f64::total_cmp);
        let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
        Floor {
            p50: percentile(&ms, 50.0),
            mean,
            p99: percentile(&ms, 99.0),
        }
    }
}

/// The floors of one run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Floors {
    /// One `GET /healthz` on one keep-alive connection.
    pub(crate) rtt: Floor,
    /// `GET /healthz` per second with `clients` concurrent clients.
    pub(crate) healthz_many_per_s: f64,
    /// The clients of `healthz_many_per_s`.
    pub(crate) clients: u32,
    /// One fsynced one-row SQLite WAL commit (PostgreSQL: one committed
    /// one-row `INSERT`).
    pub(crate) commit: Floor,
}

impl Floors {
    /// Sequential operations per second that cost one round trip and one
    /// commit each: `1 / (rtt + commit)`, by the means.
    pub(crate) fn rtt_commit_per_s(&self) -> f64 {
        1_000.0 / (self.rtt.mean + self.commit.mean)
    }

    /// Sequential round trips per second: `1 / rtt`, by the mean.
    pub(crate) fn rtt_per_s(&self) -> f64 {
        1_000.0 / self.rtt.mean
    }
}

/// Where the `commit` floor commits.
pub(crate) enum CommitOn<'a> {
    /// A scratch SQLite database in this directory (on the data
    /// directory's file system).
    Sqlite(&'a Path),
    /// A scratch table in this schema of this PostgreSQL database, with
    /// `synchronous_commit` on or off.
    Postgres {
        /// The database.
        url: &'a str,
        /// The run's schema.
        schema: &'a str,
        /// `synchronous_commit`.
        synchronous: bool,
    },
}

/// Measures the floors against `client`'s server, the commit floor on `on`.
pub(crate) async fn measure(
    client: &Client,
    clients: u32,
    on: CommitOn<'_>,
) -> anyhow::Result<Floors> {
    let rtt = rtt(client).await?;
    let healthz_many_per_s = healthz_many(client, clients.max(1)).await?;
    let commit = match on {
        CommitOn::Sqlite(scratch) => {
            let path = scratch.join("floor-commit.sqlite");
            tokio::task::spawn_blocking(move || commit(&path))
                .await
                .context("the commit floor's task failed")??
        }
        CommitOn::Postgres {
            url,
            schema,
            synchronous,
        } => crate::pg::commit_floor(url, schema, synchronous).await?,
    };
    Ok(Floors {
        rtt,
        healthz_many_per_s,
        clients: clients.max(1),
        commit,
    })
}

/// `RTT_SAMPLES` sequential `GET /healthz` on one client (one keep-alive
/// connection), after a warm-up.
async fn rtt(client: &Client) -> anyhow::Result<Floor> {
    for _ in 0..50 {
        call(|| "GET /healthz".into(), client.health()).await?;
    }
    let mut ms = Vec::with_capacity(RTT_SAMPLES);
    for _ in 0..RTT_SAMPLES {
        let t0 = Instant::now();
        call(|| "GET /healthz".into(), client.health()).await?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Floor::of(ms))
}

/// `GET /healthz` per second from `clients` concurrent clients, each with
/// its own connection, `MANY_PER_CLIENT` calls each.
async fn healthz_many(client: &Client, clients: u32) -> anyhow::Result<f64> {
    let mut set = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    for _ in 0..clients {
        let c = Client::new(client.base().to_string(), None);
        set.spawn(async move {
            for _ in 0..MANY_PER_CLIENT {
                call(|| "GET /healthz".into(), c.health()).await?;
            }
            anyhow::Ok(())
        });
    }
    join_all(set).await?;
    let took = t0.elapsed().max(Duration::from_micros(1));
    Ok((clients as usize * MANY_PER_CLIENT) as f64 / took.as_secs_f64())
}

/// `COMMIT_SAMPLES` one-row commits to a fresh WAL database at `path` with
/// `synchronous = FULL`, after `WARM_UP_COMMITS`; the database is removed
/// after.
fn commit(path: &Path) -> anyhow::Result<Floor> {
    let result = (|| -> anyhow::Result<Floor> {
        let conn = rusqlite::Connection::open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("CREATE TABLE floor (n INTEGER NOT NULL)")?;
        let mut insert = conn.prepare("INSERT INTO floor (n) VALUES (?1)")?;
        // Past the first checkpoint (1,000 WAL pages by default, as the
        // server's), so the WAL is reused rather than grown, as a running
        // server's is: growing it costs every fsync a metadata update.
        for n in 0..WARM_UP_COMMITS {
            insert.execute([n])?;
        }
        let mut ms = Vec::with_capacity(COMMIT_SAMPLES);
        for n in 0..COMMIT_SAMPLES {
            let t0 = Instant::now();
            insert.execute([n as i64])?;
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        Ok(Floor::of(ms))
    })();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    result
}
