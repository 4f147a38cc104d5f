//! # orderly-postgres
//!
//! Orderly's PostgreSQL store: any number of nodes on one database, every
//! promise of the contract (sections 2, 3 and 8) held across them.
//!
//! - `schema`: tables, partial indexes, the accounting trigger and the
//!   migrations, run on open under an advisory lock.
//! - `write`: the writes, each one `READ COMMITTED` transaction; the lock
//!   order and why a claim takes its queue's row lock are in its docs, and
//!   `write::number` is the sequencer that gives `seq` in commit order.
//! - `read`: the reads, in a read-only `REPEATABLE READ` transaction.
//! - `waits`: what a waiting job waits on (positions, key lines, wait
//!   facts), as reads and write answers show it.
//! - `txenqueue`: enqueue in the application's own transaction, the
//!   `enqueue` SQL function (schema v2) and [`enqueue_in`] calling it.
//! - `leader`: the database's clock offset and maintenance leadership (a
//!   session advisory lock), kept by one task on a dedicated connection.
//! - `bounded`: the operation timeout around every call made for a request.
//! - `rows`: decoding rows and mapping PostgreSQL errors to [`StoreError`].
//! - `notify`: wake-ups across nodes: a coalescing notifier (`NOTIFY` after
//!   each waking commit, outside it) and a listener ([`Store::external`]).
//!
//! Everything but [`PostgresStore`], its options and [`enqueue_in`] is
//! private: other crates reach storage only through the `Store` trait, and
//! applications add jobs in their own transactions with [`enqueue_in`].

mod leader;
mod notify;
mod read;
mod rows;
mod schema;
mod txenqueue;
mod waits;
mod write;

#[cfg(test)]
mod plans;

pub use schema::{valid_schema_name, SCHEMA_VERSION};
pub use txenqueue::{enqueue_in, SQL_MAX_PAYLOAD_BYTES};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use orderly_core::{
    AttemptRecord, ClaimParams, Committed, EnqueueParams, Enqueued, External, Heartbeat,
    HeartbeatParams, Job, LatestStart, Lease, ListParams, MaintenanceReport, Millis, QueueInfo,
    QueuePatch, ReportParams, StartListParams, StartRecord, Store, StoreError, Wakeups,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::IsolationLevel;

use crate::rows::{map_err, map_pool_err, Res};
use crate::write::report::Reported;
use crate::write::Op;

/// The schema the store uses unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "orderly";

/// Options to open a store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connection string, `postgres://user:password@host:port/database`
    /// (or the `key=value` form).
    pub url: String,
    /// Schema holding the store's tables (created if missing); see
    /// [`valid_schema_name`].
    pub schema: String,
    /// Most connections the store keeps open.
    pub pool_size: usize,
    /// How long a connection attempt, or a wait for a free pooled
    /// connection, may take before the operation answers `Unavailable`.
    pub connect_timeout: Duration,
    /// `true` (the default): a write is answered only once PostgreSQL has
    /// flushed its commit (`synchronous_commit` as the server sets it).
    /// `false` runs the store's sessions with `synchronous_commit = off`:
    /// faster, and a crash of the database server may lose the last
    /// commits (never corrupts), like the SQLite store's `Durability::None`.
    pub synchronous_commit: bool,
    /// Longest one store call made for a request may take (waiting for a
    /// connection, the queries and the commit) before it answers
    /// `Unavailable`: a dead or unresponsive database never holds a request
    /// longer than this. Also the TCP user timeout of every connection, so a
    /// peer that stopped acknowledging is dropped by the kernel.
    pub op_timeout: Duration,
}

impl PostgresOptions {
    /// Default [`PostgresOptions::op_timeout`]: 10 s.
    pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(10);

    /// Options for `url` with the default schema, 16 connections, a
    /// 5-second connect timeout and a 10-second operation timeout.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: DEFAULT_SCHEMA.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            synchronous_commit: true,
            op_timeout: Self::DEFAULT_OP_TIMEOUT,
        }
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`; several stores (on
/// several nodes) may use one schema at once.
pub struct PostgresStore {
    hub: Arc<Hub>,
    schema: String,
    op_timeout: Duration,
    /// The clock offset and leadership the `leader` task keeps.
    shared: Arc<leader::Shared>,
    /// The connection config (with the store's session options), for the
    /// notifier and the listener.
    config: tokio_postgres::Config,
    /// The leader, notifier, listener and numbering tasks, aborted on close
    /// and drop (the leader's session ends, and with it the maintenance lock).
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Whether [`Store::external`] was taken (the listener started).
    listening: Mutex<bool>,
}

/// Runs `$body` with `$op` an [`Op`] on a new transaction, commits, hands
/// the changes to the notifier, and evaluates to `Committed { value, changes }`. A `?` in the body returns
/// early and the transaction rolls back when dropped.
macro_rules! in_tx {
    ($store:expr, $op:ident => $body:expr) => {{
        let mut client = $store.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        let (value, changes) = {
            #[allow(unused_mut)]
            let mut $op = Op::new(&tx);
            let value = $body;
            (value, $op.changes)
        };
        tx.commit().await.map_err(commit_err)?;
        $store.committed(&changes);
        Committed { value, changes }
    }};
}

/// Runs `$body` with `$tx` a read-only `REPEATABLE READ` transaction (one snapshot).
macro_rules! in_read {
    ($store:expr, $tx:ident => $body:expr) => {{
        let mut client = $store.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(map_err)?;
        let value = {
            let $tx = crate::rows::Db(&tx);
            $body
        };
        tx.commit().await.map_err(map_err)?;
        value
    }};
}

/// A commit whose answer was lost may or may not have happened: it is never
/// reported as done, and is `Unavailable` when the connection went away.
fn commit_err(e: tokio_postgres::Error) -> StoreError {
    match map_err(e) {
        StoreError::Backend(m) => StoreError::Unavailable(format!("commit not confirmed: {m}")),
        other => other,
    }
}

/// What the store's writes and its background tasks share: the pool and
/// the notifier every committed write hands its wake-ups to.
struct Hub {
    pool: Pool,
    notifier: Arc<notify::Notifier>,
    /// A fresh id per opened store: the `from` of its notifications.
    instance: String,
    /// This node's enqueues share numbering passes ([`Hub::number_after`]).
    numbering: NumberingGate,
}

/// Coalesces the numbering passes of this node's concurrent enqueues, as a
/// group commit does: an enqueue needs a pass that *started* after its rows
/// committed, so it waits for the pass in flight and then either finds that
/// a later one already ran (it numbered its rows) or runs one itself, for
/// everyone who waited behind it.
#[derive(Default)]
struct NumberingGate {
    /// Passes started through the gate (the generation of the newest).
    started: std::sync::atomic::AtomicU64,
    /// Held while a pass runs; holds the generation of the last one that
    /// completed.
    done: tokio::sync::Mutex<u64>,
    /// Ids this node's enqueues are inserting and numbering, counted (one id
    /// may be in two requests at once): their jobs are theirs to report, not
    /// the pass's runner's.
    local: Mutex<HashMap<String, usize>>,
}

/// Keeps ids in [`NumberingGate::local`] while its enqueue runs.
struct LocalIds<'a> {
    gate: &'a NumberingGate,
    ids: Vec<String>,
}

impl Drop for LocalIds<'_> {
    fn drop(&mut self) {
        let mut local = self.gate.local.lock().unwrap_or_else(|e| e.into_inner());
        for id in &self.ids {
            if let Some(n) = local.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    local.remove(id);
                }
            }
        }
    }
}

impl Hub {
    async fn client(&self) -> Res<deadpool_postgres::Object> {
        self.pool.get().await.map_err(map_pool_err)
    }

    /// Hands what a committed write changed to the notifier, if it could
    /// wake anyone.
    fn committed(&self, changes: &orderly_core::Changes) {
        let w = Wakeups::of(changes);
        if !w.is_empty() {
            self.notifier.send(w);
        }
    }

    /// Marks `ids` as an enqueue of this node in progress, until the guard
    /// drops. Call before the rows are inserted.
    fn local_ids(&self, ids: Vec<String>) -> LocalIds<'_> {
        let gate = &self.numbering;
        let mut local = gate.local.lock().unwrap_or_else(|e| e.into_inner());
        for id in &ids {
            *local.entry(id.clone()).or_insert(0) += 1;
        }
        LocalIds { gate, ids }
    }

    /// Numbers the rows of an enqueue that just committed (`mine`, marked
    /// with [`Hub::local_ids`]) through the gate ([`NumberingGate`]). The
    /// changes returned leave out the jobs of this node's other enqueues
    /// that the pass numbered: each of them reports its own.
    async fn number_after(&self, mine: &LocalIds<'_>) -> Res<orderly_core::Changes> {
        use std::sync::atomic::Ordering::SeqCst;
        let gate = &self.numbering;
        // Any pass that starts from here on reads rows committed by now.
        let want = gate.started.load(SeqCst) + 1;
        let mut done = gate.done.lock().await;
        if *done >= want {
            return Ok(orderly_core::Changes::default());
        }
        let generation = gate.started.fetch_add(1, SeqCst) + 1;
        let mut changes = self.number().await?;
        *done = generation;
        drop(done);
        let own: std::collections::HashSet<&str> = mine.ids.iter().map(String::as_str).collect();
        let local = gate.local.lock().unwrap_or_else(|e| e.into_inner());
        changes
            .jobs
            .retain(|c| own.contains(c.id.as_str()) || !local.contains_key(&c.id));
        Ok(changes)
    }

    /// Numbers committed unnumbered rows (see `write::number`): pass after
    /// pass while a pass finds as many rows as it may take, so a burst of
    /// pending rows never leaves the caller's own unnumbered.
    async fn number(&self) -> Res<orderly_core::Changes> {
        let mut changes = orderly_core::Changes::default();
        loop {
            let pass = in_tx!(self, op => op.number_pending().await?);
            changes.extend(pass.changes);
            if pass.value < write::number::PASS_LIMIT as u64 {
                return Ok(changes);
            }
        }
    }
}

/// Runs a numbering pass each time `kick` fires (one in flight; a kick
/// during a pass runs one more), publishing its changes on `out`.
async fn run_numbering(
    hub: Arc<Hub>,
    kick: Arc<tokio::sync::Notify>,
    out: mpsc::UnboundedSender<External>,
) {
    loop {
        kick.notified().await;
        match hub.number().await {
            Ok(changes) if !changes.is_empty() => {
                if out.send(External::Committed(changes)).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("a numbering pass asked for by a notification failed: {e}"),
        }
    }
}

impl PostgresStore {
    /// Connects, checks the database answers, and brings the schema up to
    /// [`SCHEMA_VERSION`] (safe when several nodes open it at once). A
    /// wrong password or an unreachable host is an error naming it.
    pub async fn open(options: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        Self::open_at_version(options, SCHEMA_VERSION).await
    }

    /// [`Self::open`], migrating only up to `version` (tests write a
    /// database as an older version left it).
    #[doc(hidden)]
    pub async fn open_at_version(
        options: &PostgresOptions,
        version: i64,
    ) -> Result<PostgresStore, StoreError> {
        let schema = options.schema.clone();
        if !valid_schema_name(&schema) {
            return Err(StoreError::Invalid(orderly_core::ValidationError::new(
                "invalid_schema",
                format!(
                    "schema name {schema:?} must be a lowercase letter or _ then lowercase letters, digits or _, at most 63 bytes"
                ),
            )));
        }
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e| StoreError::Backend(format!("the database URL is not valid: {e}")))?;
        config.connect_timeout(options.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(options.op_timeout);
        if config.get_application_name().is_none() {
            config.application_name("orderly");
        }
        let describe = describe(&config);
        // One connection first: its error says what is wrong (password,
        // host, database) before any pool retries hide it.
        let (mut client, connection) =
            config.connect(tokio_postgres::NoTls).await.map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to {describe}: {}", explain(&e)))
            })?;
        let conn_task = tokio::spawn(async move {
            let _ = connection.await;
        });
        let migrated = schema::migrate_to(&mut client, &schema, version).await;
        let offset = leader::measure_offset(&client).await.map_err(map_err);
        drop(client);
        let _ = conn_task.await;
        migrated?;
        let shared = std::sync::Arc::new(leader::Shared::default());
        shared
            .offset_ms
            .store(offset?, std::sync::atomic::Ordering::Relaxed);
        let leader_task = tokio::spawn(leader::run(config.clone(), schema.clone(), shared.clone()));
        let mut session = format!("-c search_path={schema}");
        if !options.synchronous_commit {
            session.push_str(" -c synchronous_commit=off");
        }
        config.options(session);
        let notify_config = config.clone();
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))?;
        let instance = uuid::Uuid::new_v4().to_string();
        let notifier = Arc::new(notify::Notifier::default());
        let tasks = vec![
            leader_task,
            tokio::spawn(notify::run_notifier(
                notifier.clone(),
                notify_config.clone(),
                schema.clone(),
                instance.clone(),
            )),
        ];
        Ok(PostgresStore {
            hub: Arc::new(Hub {
                pool,
                notifier,
                instance,
                numbering: NumberingGate::default(),
            }),
            schema,
            op_timeout: options.op_timeout,
            shared,
            config: notify_config,
            tasks: Mutex::new(tasks),
            listening: Mutex::new(false),
        })
    }

    /// The schema this store uses.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    async fn client(&self) -> Res<deadpool_postgres::Object> {
        self.hub.client().await
    }

    fn committed(&self, changes: &orderly_core::Changes) {
        self.hub.committed(changes);
    }

    /// Numbers what the enqueue just committed ([`Hub::number`]).
    async fn number(&self) -> Res<orderly_core::Changes> {
        self.hub.number().await
    }

    /// Numbering passes this store's enqueues ran through their gate (a
    /// burst of concurrent enqueues shares passes: fewer than enqueues).
    #[doc(hidden)]
    pub fn numbering_passes(&self) -> u64 {
        self.hub
            .numbering
            .started
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// This store's instance id: the `from` of its notifications.
    #[doc(hidden)]
    pub fn instance(&self) -> &str {
        &self.hub.instance
    }

    fn abort_tasks(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// Fills positions, key positions and what waiting jobs wait on, in one
    /// snapshot, as a read of them would.
    async fn with_waits(&self, mut jobs: Vec<Job>) -> Res<Vec<Job>> {
        if !jobs.iter().any(|j| j.state.is_waiting()) {
            return Ok(jobs);
        }
        in_read!(self, tx => waits::fill_waits(tx, &mut jobs).await?);
        Ok(jobs)
    }

    async fn report_one(&self, r: ReportParams) -> Result<Committed<Job>, StoreError> {
        let out = in_tx!(self, op => match op.job_report(&r).await? {
            Reported::Applied(job) | Reported::Repeated(job, _) => job,
        });
        // The report is committed: a failure to read its position now must
        // not make it look refused, so the job goes without one.
        let job = match self.with_waits(vec![out.value.clone()]).await {
            Ok(mut jobs) => jobs.pop().unwrap_or(out.value),
            Err(_) => out.value,
        };
        Ok(Committed {
            value: job,
            changes: out.changes,
        })
    }
}

/// `user@host:port/dbname` of a connection config, without its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "PostgreSQL at {}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// A connection error in words, with its cause (the server's message for a
/// wrong password or a missing database, the OS's for a refused connection).
fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn job_enqueue_many(
        &self,
        params: EnqueueParams,
    ) -> Result<Committed<Vec<Enqueued>>, StoreError> {
        self.bounded(self.enqueue_many(params)).await
    }

    async fn job_claim(&self, params: ClaimParams) -> Result<Committed<Vec<Lease>>, StoreError> {
        self.bounded(async { Ok(in_tx!(self, op => op.job_claim(&params).await?)) })
            .await
    }

    async fn job_heartbeat(&self, params: HeartbeatParams) -> Result<Heartbeat, StoreError> {
        self.bounded(async { Ok(in_tx!(self, op => op.job_heartbeat(&params).await?).value) })
            .await
    }

    async fn job_report_many(
        &self,
        reports: Vec<ReportParams>,
    ) -> Vec<Result<Committed<Job>, StoreError>> {
        let mut out = Vec::with_capacity(reports.len());
        for r in reports {
            out.push(self.bounded(self.report_one(r)).await);
        }
        out
    }

    async fn job_report_and_claim(
        &self,
        report: ReportParams,
        claim: ClaimParams,
    ) -> Result<Committed<(Job, Vec<Lease>)>, StoreError> {
        let out = self
            .bounded(async {
                Ok(in_tx!(self, op => op.job_report_and_claim(&report, &claim).await?))
            })
            .await?;
        let (job, leases) = out.value;
        let job = match self.bounded(self.with_waits(vec![job.clone()])).await {
            Ok(mut jobs) => jobs.pop().unwrap_or(job),
            Err(_) => job,
        };
        Ok(Committed {
            value: (job, leases),
            changes: out.changes,
        })
    }

    async fn job_cancel(&self, id: &str, now: Millis) -> Result<Committed<Job>, StoreError> {
        self.bounded(async { Ok(in_tx!(self, op => op.job_cancel(id, now).await?)) })
            .await
    }

    async fn job_retry(&self, id: &str, now: Millis) -> Result<Committed<Job>, StoreError> {
        self.bounded(async { Ok(in_tx!(self, op => op.job_retry(id, now).await?)) })
            .await
    }

    async fn job_get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.bounded(async { Ok(in_read!(self, tx => read::job_get(tx, id).await?)) })
            .await
    }

    async fn job_attempts(&self, id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        self.bounded(async { Ok(in_read!(self, tx => read::job_attempts(tx, id).await?)) })
            .await
    }

    async fn start_list(&self, params: StartListParams) -> Result<Vec<StartRecord>, StoreError> {
        self.bounded(async { Ok(in_read!(self, tx => read::start_list(tx, &params).await?)) })
            .await
    }

    async fn start_latest(&self, queue: &str, limit: u32) -> Result<Vec<LatestStart>, StoreError> {
        self.bounded(async {
            Ok(in_read!(self, tx => read::start_latest(tx, queue, limit).await?))
        })
        .await
    }

    async fn job_list(&self, params: ListParams) -> Result<Vec<Job>, StoreError> {
        self.bounded(async { Ok(in_read!(self, tx => read::job_list(tx, &params).await?)) })
            .await
    }

    async fn queue_get(&self, name: &str) -> Result<QueueInfo, StoreError> {
        self.bounded(async { Ok(in_read!(self, tx => read::queue_info(tx, name).await?)) })
            .await
    }

    async fn queue_list(&self) -> Result<Vec<QueueInfo>, StoreError> {
        self.bounded(async { Ok(in_read!(self, tx => read::queue_list(tx).await?)) })
            .await
    }

    async fn queue_oldest_queued(&self, queue: &str) -> Result<Option<Millis>, StoreError> {
        self.bounded(async { Ok(in_read!(self, tx => read::oldest_queued(tx, queue).await?)) })
            .await
    }

    async fn queue_configure(
        &self,
        name: &str,
        patch: QueuePatch,
        now: Millis,
    ) -> Result<QueueInfo, StoreError> {
        let info = self
            .bounded(async {
                Ok(in_tx!(self, op => op.queue_configure(name, &patch, now).await?).value)
            })
            .await?;
        // A resume or more concurrency may let jobs start on every node:
        // wake all of this queue's claimers everywhere (they look and go
        // back to sleep if nothing may start).
        let mut w = Wakeups::default();
        w.queues.insert(name.to_string(), usize::MAX);
        self.hub.notifier.send(w);
        Ok(info)
    }

    async fn lease_release(
        &self,
        worker_prefix: &str,
        now: Millis,
    ) -> Result<Committed<u64>, StoreError> {
        self.bounded(async { Ok(in_tx!(self, op => op.lease_release(worker_prefix, now).await?)) })
            .await
    }

    async fn maintenance_run(
        &self,
        now: Millis,
        jitter: f64,
    ) -> Result<Committed<MaintenanceReport>, StoreError> {
        // Rows an enqueue committed but did not get to number (its node
        // died). Looked for first: a pass locks the sequencer and flushes
        // the WAL even when it finds nothing, which would stall every
        // enqueue's own pass behind it.
        let pending = in_read!(self, tx => tx
            .0
            .query_one("SELECT EXISTS (SELECT 1 FROM jobs WHERE seq IS NULL)", &[])
            .await
            .map_err(map_err)?
            .get::<_, bool>(0));
        let mut changes = if pending {
            self.number().await?
        } else {
            orderly_core::Changes::default()
        };
        let queues = in_read!(self, tx => Op::new(tx.0).queues_with_work(now).await?);
        // One transaction per queue, each under its queue's lock only.
        for queue in queues {
            changes
                .extend(in_tx!(self, op => op.maintain_queue(&queue, now, jitter).await?).changes);
        }
        let next_due = in_read!(self, tx => Op::new(tx.0).next_due().await?);
        Ok(Committed {
            value: MaintenanceReport { next_due },
            changes,
        })
    }

    async fn retention_purge(
        &self,
        finished_before: Millis,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.bounded(async {
            Ok(in_tx!(self, op => op.retention_purge(finished_before, limit).await?).value)
        })
        .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(map_err)?;
            Ok(())
        })
        .await
    }

    fn clock_offset_ms(&self) -> i64 {
        self.shared
            .offset_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn maintenance_leader(&self) -> bool {
        self.shared.leader.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn external(&self) -> Option<mpsc::UnboundedReceiver<External>> {
        let mut listening = self.listening.lock().unwrap_or_else(|e| e.into_inner());
        if *listening {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        *listening = true;
        let (tx, rx) = mpsc::unbounded_channel();
        let kick = Arc::new(tokio::sync::Notify::new());
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(runtime.spawn(notify::run_listener(
            self.config.clone(),
            self.schema.clone(),
            self.hub.instance.clone(),
            tx.clone(),
            kick.clone(),
        )));
        tasks.push(runtime.spawn(run_numbering(self.hub.clone(), kick, tx)));
        Some(rx)
    }

    async fn close(&self) {
        self.abort_tasks();
        self.shared
            .leader
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.hub.pool.close();
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

// After the macros, which it uses.
mod bounded;

#[cfg(test)]
mod number_tests;
