//! [`Orderly`]: the store, the service, the maintenance loops and the
//! in-process runners of one embedded instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orderly_core::{Enqueued, Job, QueueInfo, QueuePatch, Store};
use orderly_server::executors::{
    self, spawn_runner, Executors, ExecutorsConfig, RunnerSet, ServiceSource,
};
use orderly_server::service::JobRequest;
use orderly_server::{AppState, ServerConfig};
use orderly_sqlite::{Durability, SqliteOptions, SqliteStore};
use orderly_worker::RunnerConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::enqueue::NewJob;
use crate::handler::{Fail, JobCx, Typed};
use crate::Error;

/// How to open an embedded instance.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory of the SQLite store (created if missing).
    pub data_dir: PathBuf,
    /// When commits are fsynced (default: every commit, before it returns).
    pub durability: Durability,
    /// Bearer token of the mounted HTTP API (`None`: open).
    pub token: Option<String>,
    /// Read-only bearer token of the mounted HTTP API and dashboard: it may
    /// `GET` everything and change nothing.
    pub read_token: Option<String>,
    /// How long [`Orderly::shutdown`] lets running handlers finish before it
    /// stops them (they rerun in place on the next open).
    pub grace: Duration,
    /// How long finished jobs are kept.
    pub retention: Duration,
}

impl Options {
    /// Defaults for `data_dir`: fsync on commit, no token, 30 s grace,
    /// 7 days of retention.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Options {
            data_dir: data_dir.into(),
            durability: Durability::Fsync,
            token: None,
            read_token: None,
            grace: Duration::from_secs(30),
            retention: orderly_server::maintenance::Config::DEFAULT_RETENTION,
        }
    }
}

/// An embedded Orderly: a durable, strictly ordered job queue inside this
/// process. Cheap to clone (all clones are the same instance).
#[derive(Clone)]
pub struct Orderly {
    inner: Arc<Inner>,
}

struct Inner {
    state: AppState,
    store: Arc<dyn Store>,
    node: String,
    grace: Duration,
    cancel: CancellationToken,
    tracker: TaskTracker,
    handlers: RunnerSet,
    executors: Arc<Executors>,
}

impl Orderly {
    /// Opens (or creates) the store in `data_dir` with default [`Options`].
    pub async fn open(data_dir: impl Into<PathBuf>) -> Result<Orderly, Error> {
        Self::open_with(Options::new(data_dir)).await
    }

    /// Opens with `options`. Jobs this instance's handlers were running when
    /// it last stopped (or crashed) go back to their place in line at once.
    pub async fn open_with(options: Options) -> Result<Orderly, Error> {
        let sqlite = SqliteOptions {
            data_dir: options.data_dir.clone(),
            durability: options.durability,
        };
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&sqlite))
            .await
            .map_err(|e| Error::Open(e.to_string()))??;
        let store: Arc<dyn Store> = Arc::new(store);
        match Self::start(store.clone(), options).await {
            Ok(o) => Ok(o),
            Err(e) => {
                // Nothing was spawned yet: close the store (and free the
                // data directory's lock) before saying why.
                store.close().await;
                Err(e)
            }
        }
    }

    /// Everything after the store is open; spawns the background loops only
    /// once nothing else can fail.
    async fn start(store: Arc<dyn Store>, options: Options) -> Result<Orderly, Error> {
        let dir = options.data_dir.clone();
        let node = tokio::task::spawn_blocking(move || executors::node_id(&dir))
            .await
            .map_err(|e| Error::Open(e.to_string()))?
            .map_err(|e| Error::Open(format!("node-id in {}: {e}", options.data_dir.display())))?;
        let config = ServerConfig {
            token: options.token.clone(),
            read_token: options.read_token.clone(),
            maintenance: orderly_server::maintenance::Config {
                retention: options.retention,
                ..Default::default()
            },
            ..ServerConfig::default()
        };
        let state = AppState::new(store.clone(), config);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let service = state.service.clone();
        service.release_leases(&handler_prefix(&node)).await?;
        let executors = Executors::start(
            service,
            ExecutorsConfig {
                node: node.clone(),
                grace: options.grace,
                resync: Duration::from_secs(10),
            },
            cancel.clone(),
        )
        .await?;
        state.spawn_background(&tracker, &cancel);
        Ok(Orderly {
            inner: Arc::new(Inner {
                state,
                store,
                node,
                grace: options.grace,
                cancel,
                tracker,
                handlers: RunnerSet::default(),
                executors,
            }),
        })
    }

    /// Runs `handler` for the jobs of `queue`, up to `concurrency` at once
    /// (the queue's own `concurrency` still caps it: give the queue as much
    /// with [`Orderly::configure`]). The handler takes a [`JobCx`] with the
    /// typed payload; `Ok` is the result, `Err` a failure that follows the
    /// retry policy ([`Fail::fatal`] for none), a panic a failure too.
    pub fn handle<T, R, E, F, Fut>(
        &self,
        queue: &str,
        concurrency: u32,
        handler: F,
    ) -> Result<(), Error>
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<Fail> + Send + 'static,
        F: Fn(JobCx<T>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<R, E>> + Send + 'static,
    {
        orderly_core::validate::queue_name(queue)?;
        let mut rc = RunnerConfig::new(
            queue,
            format!("{}{queue}", handler_prefix(&self.inner.node)),
        );
        rc.slots = concurrency.max(1);
        let h = spawn_runner(
            Arc::new(ServiceSource::new(self.inner.state.service.clone())),
            Arc::new(Typed::new(handler)),
            rc,
        );
        self.inner.handlers.add(h);
        Ok(())
    }

    /// Enqueues one job (durably committed when this returns).
    pub async fn enqueue(&self, queue: &str, job: NewJob) -> Result<Enqueued, Error> {
        let mut out = self.enqueue_many(queue, vec![job]).await?;
        out.pop().ok_or_else(|| {
            Error::Store(orderly_core::StoreError::Backend(
                "the store returned no job for one enqueued".into(),
            ))
        })
    }

    /// Enqueues jobs atomically, with consecutive `seq`s in this order.
    pub async fn enqueue_many(
        &self,
        queue: &str,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Enqueued>, Error> {
        let batch = jobs.len() != 1;
        let reqs: Vec<JobRequest> = jobs
            .into_iter()
            .map(NewJob::into_request)
            .collect::<Result<_, _>>()?;
        Ok(self.inner.state.service.enqueue(queue, reqs, batch).await?)
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Job, Error> {
        Ok(self.inner.state.service.job(id).await?)
    }

    /// Waits until the job is finished or `timeout` passed, and returns it.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Job, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let step = left.min(Duration::from_millis(orderly_core::validate::MAX_WAIT_MS));
            let ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
            let job = self.inner.state.service.wait(id, ms).await?;
            if job.state.is_finished() || left.is_zero() || step == left {
                return Ok(job);
            }
        }
    }

    /// A page of a queue's jobs in `seq` order, after `after`.
    pub async fn jobs(
        &self,
        queue: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Job>, Error> {
        Ok(self
            .inner
            .state
            .service
            .list(queue, None, after, Some(limit))
            .await?)
    }

    /// Cancels a job (a running one is asked to stop).
    pub async fn cancel(&self, id: &str) -> Result<Job, Error> {
        Ok(self.inner.state.service.cancel(id).await?)
    }

    /// Creates or configures a queue.
    pub async fn configure(&self, queue: &str, patch: QueuePatch) -> Result<QueueInfo, Error> {
        Ok(self.inner.state.service.configure(queue, patch).await?)
    }

    /// The HTTP API (`/v1/…`, `/healthz`) over this instance, to serve or to
    /// mount in an application's router: `app.nest("/orderly", orderly.router())`.
    pub fn router(&self) -> axum::Router {
        orderly_server::router(self.inner.state.clone())
    }

    /// The store, for what this crate does not wrap.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Stops taking jobs, lets running handlers and executor jobs finish
    /// within the grace period of [`Options`] (then stops them: they rerun in
    /// place on the next open), and closes the store. Returns whether some
    /// had to be stopped.
    pub async fn shutdown(&self) -> bool {
        let i = &self.inner;
        i.executors.stop();
        let handlers = i.handlers.shutdown(i.grace);
        let executors = i.executors.shutdown();
        let (a, b) = tokio::join!(handlers, executors);
        i.state.service.shutdown();
        i.cancel.cancel();
        i.tracker.close();
        i.tracker.wait().await;
        i.store.close().await;
        a || b
    }
}

/// The worker-name prefix of an instance's in-process handlers.
fn handler_prefix(node: &str) -> String {
    format!("embedded:{node}/")
}
