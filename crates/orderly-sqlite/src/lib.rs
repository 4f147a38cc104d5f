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
//! - [`schema`]: tables, partial indexes and migrations; [`ops`]: each store
//!   operation as SQL.

pub mod ops;
pub mod schema;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orderly_core::{
    ClaimParams, EnqueueParams, Enqueued, Heartbeat, HeartbeatParams, Job, Lease, ListParams,
    MaintenanceReport, Millis, QueueInfo, QueuePatch, ReportParams, Store, StoreError,
};
use rusqlite::{Connection, OpenFlags};

use crate::ops::{map_err, WriteCtx};
use crate::writer::{Sync, Writer};

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
    NoFsync,
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
                    "another Orderly server is using {} (its lock file {} is held); stop it first",
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
            Durability::Accepted | Durability::NoFsync => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(map_err)?;
        conn.pragma_update(None, "cache_size", -32_000)
            .map_err(map_err)?;
        schema::migrate(&mut conn).map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        let ctx = WriteCtx::new(conn)?;
        let (writer, handle) = Writer::start(ctx, options.durability);
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

    /// Fills `position` on waiting jobs that came back from the writer without
    /// one, on a read connection (counting the line is kept off the writer).
    async fn positioned(&self, mut jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        if !jobs
            .iter()
            .any(|j| j.state.is_waiting() && j.position.is_none())
        {
            return Ok(jobs);
        }
        self.read(move |c| {
            ops::fill_positions(c, &mut jobs)?;
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
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.read_slots.close();
        self.dir_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn job_enqueue_many(&self, params: EnqueueParams) -> Result<Vec<Enqueued>, StoreError> {
        let out = self
            .writer
            .write(Sync::Accepting, move |ctx| ctx.job_enqueue_many(&params))
            .await?;
        let (jobs, created): (Vec<Job>, Vec<bool>) =
            out.into_iter().map(|e| (e.job, e.created)).unzip();
        let jobs = self.positioned(jobs).await?;
        Ok(jobs
            .into_iter()
            .zip(created)
            .map(|(job, created)| Enqueued { job, created })
            .collect())
    }

    async fn job_claim(&self, params: ClaimParams) -> Result<Vec<Lease>, StoreError> {
        self.writer
            .write(Sync::Progress, move |ctx| ctx.job_claim(&params))
            .await
    }

    async fn job_heartbeat(&self, params: HeartbeatParams) -> Result<Heartbeat, StoreError> {
        self.writer
            .write(Sync::Progress, move |ctx| ctx.job_heartbeat(&params))
            .await
    }

    async fn job_report_many(
        &self,
        reports: Vec<ReportParams>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        // Each report stands alone: a refused one changes nothing, the others apply.
        let futures = reports.into_iter().map(|r| {
            self.writer.write(Sync::Progress, move |ctx| {
                ctx.job_report(&r).map(|(job, _)| job)
            })
        });
        let results = futures::future::join_all(futures).await;
        for r in &results {
            if let Err(
                e
                @ (StoreError::StorageFailed(_) | StoreError::StorageFull(_) | StoreError::Closed),
            ) = r
            {
                return Err(e.clone());
            }
        }
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            out.push(match r {
                Ok(job) => Ok(self.positioned_one(job).await?),
                Err(e) => Err(e),
            });
        }
        Ok(out)
    }

    async fn job_report_and_claim(
        &self,
        report: ReportParams,
        claim: ClaimParams,
    ) -> Result<(Job, Vec<Lease>), StoreError> {
        let (job, leases) = self
            .writer
            .write(Sync::Progress, move |ctx| {
                let (job, repeated) = ctx.job_report(&report)?;
                let claim = ClaimParams {
                    queue: job.queue.clone(),
                    ..claim
                };
                // A repeated report gets back the leases its first answer carried
                // (still held by the worker), rather than claiming more.
                if repeated {
                    let held = ctx.held_leases(&claim.queue, &claim.worker, claim.now)?;
                    if !held.is_empty() {
                        return Ok((job, held));
                    }
                }
                let leases = ctx.job_claim(&claim)?;
                Ok((job, leases))
            })
            .await?;
        Ok((self.positioned_one(job).await?, leases))
    }

    async fn job_cancel(&self, id: &str, now: Millis) -> Result<Job, StoreError> {
        let id = id.to_string();
        self.writer
            .write(Sync::Accepting, move |ctx| ctx.job_cancel(&id, now))
            .await
    }

    async fn job_retry(&self, id: &str, now: Millis) -> Result<Job, StoreError> {
        let id = id.to_string();
        self.writer
            .write(Sync::Accepting, move |ctx| ctx.job_retry(&id, now))
            .await
    }

    async fn job_get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_string();
        self.read(move |c| ops::job_get(c, &id)).await
    }

    async fn job_list(&self, params: ListParams) -> Result<Vec<Job>, StoreError> {
        self.read(move |c| ops::job_list(c, &params)).await
    }

    async fn queue_get(&self, name: &str) -> Result<QueueInfo, StoreError> {
        let name = name.to_string();
        self.read(move |c| ops::queue_info(c, &name)).await
    }

    async fn queue_list(&self) -> Result<Vec<QueueInfo>, StoreError> {
        self.read(ops::queue_list).await
    }

    async fn queue_configure(
        &self,
        name: &str,
        patch: QueuePatch,
        now: Millis,
    ) -> Result<QueueInfo, StoreError> {
        let name = name.to_string();
        self.writer
            .write(Sync::Accepting, move |ctx| {
                ctx.queue_configure(&name, &patch, now)
            })
            .await
    }

    async fn maintenance_run(&self, now: Millis) -> Result<MaintenanceReport, StoreError> {
        self.writer
            .write(Sync::Progress, move |ctx| ctx.maintenance_run(now))
            .await
    }

    async fn retention_purge(
        &self,
        finished_before: Millis,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(Sync::Progress, move |ctx| {
                ctx.retention_purge(finished_before, limit)
            })
            .await
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
