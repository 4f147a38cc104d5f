//! # orderly-sqlite
//!
//! Orderly's embedded store: one SQLite file in WAL mode.
//!
//! - [`writer`]: one thread owns the write connection and group-commits every
//!   request waiting on its channel in one transaction and one fsync;
//!   callers hear back only after the commit.
//! - Reads (`job_get`, listings, queues) use a small pool of read-only
//!   connections on blocking threads, so they never wait for the writer and
//!   keep working when the disk is full.
//! - `schema`: tables, partial indexes and migrations; `sql`: the queries
//!   whose plans decide what claims and maintenance cost, with the test that
//!   checks each reads its index; `rows`: decoding rows by column name;
//!   `read`: the reads; `write`: the writes, one file per family; `ctx`: the
//!   writer's connection, counters and caches; `parked`: long-polling
//!   claims the writer holds and runs again in the commit that gives them work.
//!
//! Everything but [`SqliteStore`] and its options is private: other crates
//! reach storage only through the `Store` trait.

mod ctx;
mod kept;
mod parked;
mod read;
#[macro_use]
mod rows;
mod schema;
mod sql;
mod tally;
mod write;
mod writer;

/// The schema version this build writes (`PRAGMA user_version`); older data
/// directories are migrated on open.
pub use schema::SCHEMA_VERSION;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orderly_core::{
    AttemptRecord, ClaimParams, Committed, EnqueueParams, Enqueued, Heartbeat, HeartbeatParams,
    Job, LatestStart, Lease, ListParams, MaintenanceReport, Millis, ParkTicket, QueueInfo,
    QueuePatch, ReportParams, StartListParams, StartRecord, Store, StoreError,
};
use rusqlite::{Connection, OpenFlags};

use crate::rows::map_err;
use crate::write::report::Reported;
use crate::writer::{CommitKind, Writer};

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: every commit is fsynced before it is acknowledged.
    /// Survives a process crash and a machine crash. The default.
    #[default]
    Fsync,
    /// Commits that accept something a client was promised (enqueue, cancel,
    /// retry, queue changes) are fsynced before they are answered; commits
    /// that only record progress (claims, heartbeats, reports) are not, and
    /// reach the disk with the next fsynced commit or checkpoint. A process
    /// crash loses nothing; a machine crash loses no accepted job but may
    /// forget recent starts and completions, so those jobs run again.
    Accepted,
    /// `synchronous = NORMAL` in WAL mode: commits survive a process crash
    /// but the last ones may be lost if the machine loses power.
    None,
}

/// Options to open a store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Directory holding `orderly.db` (created if missing).
    pub data_dir: PathBuf,
    /// Commit durability.
    pub durability: Durability,
}

impl SqliteOptions {
    /// Options for `data_dir` with fsync on commit.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            data_dir: data_dir.into(),
            durability: Durability::Fsync,
        }
    }
}

/// The SQLite store. Share it behind an `Arc`; it holds an exclusive lock on
/// its data directory until dropped or closed.
pub struct SqliteStore {
    writer: Writer,
    path: PathBuf,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Bounds the read connections (and blocking threads) in use at once.
    read_slots: Arc<tokio::sync::Semaphore>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held open while the store is: an exclusive lock on the data directory
    /// (released by `close`).
    dir_lock: Mutex<Option<std::fs::File>>,
}

/// Most read connections in use at once.
const MAX_READERS: usize = 8;
/// The writer connection's page cache, in KiB (about 2,000 pages of
/// 4 KiB). Small on purpose: when a B-tree page splits, SQLite may swap the
/// new pages' numbers through a page number far past the end of the file,
/// and the next `COMMIT` then walks the whole page cache to drop pages past
/// the end. With 32 MiB (8,000 pages) that walk was 7% of the writer's time
/// in a drain of 40,000 jobs and grows with the cache; at 8 MiB it is 0.4%
/// (docs/performance.md, stop 20). The writer's hot pages (the ends of the
/// indexes, the counters) fit many times over; the rest is in the OS's
/// cache, one `pread` away.
const WRITER_CACHE_KIB: i64 = 8_000;

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "orderly.lock";

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "orderly.db";

impl SqliteStore {
    /// Opens (creating if needed) the store in `options.data_dir`.
    pub fn open(options: &SqliteOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(&options.data_dir).map_err(|e| {
            StoreError::Backend(format!(
                "cannot create data directory {}: {e}",
                options.data_dir.display()
            ))
        })?;
        // One server per data directory: the writer owns the counters and caches
        // that keep `seq` unique and claims in order, so a second one must not start.
        let lock_path = options.data_dir.join(LOCK_FILE);
        let dir_lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                StoreError::Backend(format!("cannot open {}: {e}", lock_path.display()))
            })?;
        match dir_lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Backend(format!(
                    "another Orderly process (a server or an application embedding it) is using {} (its lock file {} is held); stop it first",
                    options.data_dir.display(),
                    lock_path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Backend(format!(
                    "cannot lock {}: {e}",
                    lock_path.display()
                )))
            }
        }
        let path = options.data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(map_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(map_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(map_err)?;
        let sync = match options.durability {
            Durability::Fsync => "FULL",
            Durability::Accepted | Durability::None => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(map_err)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(map_err)?;
        // The savepoint journal of a group commit (each request of a group
        // runs in its own savepoint) stays in memory: past 64 KiB SQLite
        // spilled it to a temporary file, created, written and deleted per
        // group, a quarter of the writer's CPU at 16 workers
        // (docs/performance.md). Nothing in it outlives its transaction.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(map_err)?;
        schema::migrate(&mut conn).map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        let (writer, handle) = Writer::start(conn, options.durability)?;
        Ok(SqliteStore {
            writer,
            path,
            readers: Arc::new(Mutex::new(Vec::new())),
            read_slots: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            writer_thread: Mutex::new(Some(handle)),
            dir_lock: Mutex::new(Some(dir_lock)),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled read-only connection, on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let slot = self
            .read_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let conn = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match conn {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(map_err)?;
                    c.busy_timeout(std::time::Duration::from_secs(10))
                        .map_err(map_err)?;
                    c
                }
            };
            // One read transaction: everything `f` reads (a job and its position,
            // a queue and its counts) comes from the same snapshot.
            let result = match conn.unchecked_transaction() {
                Ok(tx) => {
                    let r = f(&tx);
                    let _ = tx.finish();
                    r
                }
                Err(e) => Err(map_err(e)),
            };
            let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < MAX_READERS {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    /// Fills `position`, `key_position` and `wait_facts` on waiting jobs that
    /// came back from the writer without them (a replayed enqueue, a report
    /// that put its job back in line), on a read connection, so every answer
    /// explains a waiting job as a read does.
    async fn positioned(&self, mut jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        if !jobs
            .iter()
            .any(|j| j.state.is_waiting() && (j.position.is_none() || j.wait_facts.is_none()))
        {
            return Ok(jobs);
        }
        self.read(move |c| {
            read::fill_positions(c, &mut jobs)?;
            read::fill_waits(c, &mut jobs)?;
            Ok(jobs)
        })
        .await
    }

    /// [`Self::positioned`] for one job.
    async fn positioned_one(&self, job: Job) -> Result<Job, StoreError> {
        let mut jobs = self.positioned(vec![job]).await?;
        jobs.pop().ok_or(StoreError::Closed)
    }

    /// Stops the writer after it has committed everything already sent,
    /// waits for its thread, and releases the data directory's lock.
    async fn shut(&self) {
        // Readers first: a read-only connection cannot checkpoint, so the
        // writer must be the last connection to close for SQLite to fold the
        // WAL back into the database and delete it. Reads in flight finish
        // first (their slots are taken back), and no new one starts.
        if let Ok(all) = self.read_slots.acquire_many(MAX_READERS as u32).await {
            all.forget();
        }
        self.read_slots.close();
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.writer.stop().await;
        let handle = self
            .writer_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            if tokio::task::spawn_blocking(move || h.join()).await.is_err() {
                tracing::error!("the SQLite writer thread panicked");
            }
        }
        self.dir_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn job_enqueue_many(
        &self,
        params: EnqueueParams,
    ) -> Result<Committed<Vec<Enqueued>>, StoreError> {
        let out = self
            .writer
            .write(CommitKind::Accepting, move |ctx| {
                ctx.job_enqueue_many(&params)
            })
            .await?;
        let (jobs, created): (Vec<Job>, Vec<bool>) =
            out.value.into_iter().map(|e| (e.job, e.created)).unzip();
        let jobs = self.positioned(jobs).await?;
        Ok(Committed {
            value: jobs
                .into_iter()
                .zip(created)
                .map(|(job, created)| Enqueued { job, created })
                .collect(),
            changes: out.changes,
        })
    }

    // Claims, heartbeats and reports refuse (unknown job, stale lease) before
    // their first write: they run without a savepoint (`writer::Undo`).
    async fn job_claim(&self, params: ClaimParams) -> Result<Committed<Vec<Lease>>, StoreError> {
        self.writer
            .write_checked_first(CommitKind::Progress, move |ctx| ctx.job_claim(&params))
            .await
    }

    async fn job_claim_parked(
        &self,
        params: ClaimParams,
        ticket: ParkTicket,
    ) -> Result<Committed<Vec<Lease>>, StoreError> {
        self.writer.claim_parked(params, ticket).await
    }

    async fn job_heartbeat(&self, params: HeartbeatParams) -> Result<Heartbeat, StoreError> {
        Ok(self
            .writer
            .write_checked_first(CommitKind::Progress, move |ctx| ctx.job_heartbeat(&params))
            .await?
            .value)
    }

    async fn job_report_many(
        &self,
        reports: Vec<ReportParams>,
    ) -> Vec<Result<Committed<Job>, StoreError>> {
        // Each report stands alone: a refused one changes nothing, the others apply.
        let futures = reports.into_iter().map(|r| async move {
            let out = self
                .writer
                .write_checked_first(CommitKind::Progress, move |ctx| {
                    ctx.job_report(&r).map(|r| match r {
                        Reported::Applied(job) | Reported::Repeated(job) => job,
                    })
                })
                .await?;
            // The report is committed: a failure to read its position now
            // must not make it look refused, so the job goes without one.
            let job = match self.positioned_one(out.value.clone()).await {
                Ok(job) => job,
                Err(_) => out.value,
            };
            Ok(Committed {
                value: job,
                changes: out.changes,
            })
        });
        futures::future::join_all(futures).await
    }

    async fn job_report_and_claim(
        &self,
        report: ReportParams,
        claim: ClaimParams,
    ) -> Result<Committed<(Job, Vec<Lease>)>, StoreError> {
        let out = self
            .writer
            .write_checked_first(CommitKind::Progress, move |ctx| {
                ctx.job_report_and_claim(&report, &claim)
            })
            .await?;
        let (job, leases) = out.value;
        let job = match self.positioned_one(job.clone()).await {
            Ok(job) => job,
            Err(_) => job,
        };
        Ok(Committed {
            value: (job, leases),
            changes: out.changes,
        })
    }

    async fn job_cancel(&self, id: &str, now: Millis) -> Result<Committed<Job>, StoreError> {
        let id = id.to_string();
        self.writer
            .write(CommitKind::Accepting, move |ctx| ctx.job_cancel(&id, now))
            .await
    }

    async fn job_retry(&self, id: &str, now: Millis) -> Result<Committed<Job>, StoreError> {
        let id = id.to_string();
        self.writer
            .write(CommitKind::Accepting, move |ctx| ctx.job_retry(&id, now))
            .await
    }

    async fn job_get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_string();
        self.read(move |c| read::job_get(c, &id)).await
    }

    async fn job_attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |c| read::job_attempts(c, &id)).await
    }

    async fn start_latest(&self, queue: &str, limit: u32) -> Result<Vec<LatestStart>, StoreError> {
        let queue = queue.to_string();
        self.read(move |c| read::start_latest(c, &queue, limit))
            .await
    }

    async fn job_list(&self, params: ListParams) -> Result<Vec<Job>, StoreError> {
        self.read(move |c| read::job_list(c, &params)).await
    }

    async fn start_list(&self, params: StartListParams) -> Result<Vec<StartRecord>, StoreError> {
        self.read(move |c| read::start_list(c, &params)).await
    }

    async fn queue_get(&self, name: &str) -> Result<QueueInfo, StoreError> {
        let name = name.to_string();
        self.read(move |c| read::queue_info(c, &name)).await
    }

    async fn queue_list(&self) -> Result<Vec<QueueInfo>, StoreError> {
        self.read(read::queue_list).await
    }

    async fn queue_oldest_queued(&self, queue: &str) -> Result<Option<Millis>, StoreError> {
        let queue = queue.to_string();
        self.read(move |c| read::oldest_queued(c, &queue)).await
    }

    async fn queue_configure(
        &self,
        name: &str,
        patch: QueuePatch,
        now: Millis,
    ) -> Result<QueueInfo, StoreError> {
        let name = name.to_string();
        Ok(self
            .writer
            .write(CommitKind::Accepting, move |ctx| {
                ctx.queue_configure(&name, &patch, now)
            })
            .await?
            .value)
    }

    async fn lease_release(
        &self,
        worker_prefix: &str,
        now: Millis,
    ) -> Result<Committed<u64>, StoreError> {
        let prefix = worker_prefix.to_string();
        self.writer
            .write(CommitKind::Progress, move |ctx| {
                ctx.lease_release(&prefix, now)
            })
            .await
    }

    async fn maintenance_run(
        &self,
        now: Millis,
        jitter: f64,
    ) -> Result<Committed<MaintenanceReport>, StoreError> {
        self.writer
            .write(CommitKind::Progress, move |ctx| {
                ctx.maintenance_run(now, jitter)
            })
            .await
    }

    async fn retention_purge(
        &self,
        finished_before: Millis,
        limit: u32,
    ) -> Result<u64, StoreError> {
        Ok(self
            .writer
            .write(CommitKind::Progress, move |ctx| {
                ctx.retention_purge(finished_before, limit)
            })
            .await?
            .value)
    }

    fn writer_stats(&self) -> Option<orderly_core::WriterStats> {
        Some(self.writer.health.stats())
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.writer.health.check()?;
        if self.writer.is_stopped() {
            return Err(StoreError::StorageFailed(
                "the writer thread stopped".into(),
            ));
        }
        Ok(())
    }

    async fn close(&self) {
        self.shut().await;
    }
}
