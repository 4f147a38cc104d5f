//! A PostgreSQL-backed run (`orderly bench --database-url`): the bench's
//! server stores its jobs in a fresh schema of that database, made for the
//! run and dropped after, and the `commit` floor is one committed one-row
//! `INSERT` on that database, with the server's `synchronous_commit`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::floors::Floor;

/// Commits timed for the PostgreSQL `commit` floor (after a warm-up).
const COMMIT_SAMPLES: usize = 500;
/// Commits before the timed ones.
const WARM_UP_COMMITS: usize = 100;

/// The database a PostgreSQL-backed run uses.
#[derive(Debug, Clone)]
pub struct Database {
    /// `postgres://user@host:port/database`.
    pub url: String,
    /// The schema of the first server; later ones (`--isolate`) get
    /// `<schema>_<n>`. Default: `orderly_bench_<pid>_<seconds>`.
    pub schema: Option<String>,
}

/// Servers started so far on a database (names the `--isolate` schemas).
static STARTS: AtomicU32 = AtomicU32::new(0);

impl Database {
    /// A schema name for the next server: the given one (or the default)
    /// for the first, `<that>_<n>` after.
    pub(crate) fn next_schema(&self, tag: &str) -> String {
        let base = self.schema.clone().unwrap_or_else(|| {
            format!(
                "orderly_bench_{}",
                tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            )
        });
        match STARTS.fetch_add(1, Ordering::Relaxed) {
            0 => base,
            n => format!("{base}_{n}"),
        }
    }
}

/// A connection to `url` (driven on a task of its own), with `search_path`
/// set to `schema` when given.
pub(crate) async fn connect(
    url: &str,
    schema: Option<&str>,
) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| "cannot read the --database-url".to_string())?;
    if let Some(s) = schema {
        config.options(format!("-c search_path={s}"));
    }
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("cannot connect to the --database-url")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Fails when `schema` exists already: the bench makes and drops its own,
/// and never drops what it did not make.
pub(crate) async fn ensure_fresh(url: &str, schema: &str) -> anyhow::Result<()> {
    let client = connect(url, None).await?;
    let found = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .context("cannot list the database's schemas")?;
    if found.is_some() {
        bail!("schema {schema} exists already: the bench makes a fresh one and drops it after; name another with --database-schema");
    }
    Ok(())
}

/// Drops the run's `schema` (a warning on failure: the figures stand).
pub(crate) async fn drop_schema(url: &str, schema: &str) {
    let result = async {
        let client = connect(url, None).await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .context("DROP SCHEMA")
    }
    .await;
    if let Err(e) = result {
        eprintln!("warning: cannot drop the bench's schema {schema}: {e:#}");
    }
}

/// `COMMIT_SAMPLES` committed one-row `INSERT`s (each its own transaction)
/// into a scratch table of `schema`, with `synchronous_commit` as the
/// server's (`on` unless its durability is `none`), after a warm-up; the
/// table is dropped after.
pub(crate) async fn commit_floor(
    url: &str,
    schema: &str,
    synchronous: bool,
) -> anyhow::Result<Floor> {
    let client = connect(url, Some(schema)).await?;
    client
        .batch_execute(&format!(
            "SET synchronous_commit = {};
             CREATE TABLE bench_floor_commit (n bigint NOT NULL);",
            if synchronous { "on" } else { "off" }
        ))
        .await
        .context("cannot create the commit floor's table")?;
    let result = async {
        let insert = client
            .prepare("INSERT INTO bench_floor_commit (n) VALUES ($1)")
            .await?;
        for n in 0..WARM_UP_COMMITS as i64 {
            client.execute(&insert, &[&n]).await?;
        }
        let mut ms = Vec::with_capacity(COMMIT_SAMPLES);
        for n in 0..COMMIT_SAMPLES as i64 {
            let t0 = Instant::now();
            client.execute(&insert, &[&n]).await?;
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        anyhow::Ok(Floor::of(ms))
    }
    .await;
    let _ = client
        .batch_execute("DROP TABLE IF EXISTS bench_floor_commit")
        .await;
    result.context("the PostgreSQL commit floor")
}
