//! Executors: the server runs a queue's jobs itself (contract §6).
//!
//! A queue configured with an [`orderly_core::Executor`] gets a runner of
//! the worker runtime ([`orderly_worker::Runner`]) inside the server, with
//! one slot per unit of the queue's concurrency, taking jobs through
//! [`ServiceSource`]: the same claim path as external workers, so every
//! ordering promise holds and there is no second scheduler.
//!
//! - [`build`] turns a configuration into a handler (a command per job, or
//!   a webhook), checking the program, directory and URL;
//! - [`source`] is the in-process job source;
//! - [`runners`] starts and stops runners, with a grace period;
//! - [`Executors`] (here) keeps one runner per configured queue, in step
//!   with the queues' configuration, and on start gives back at once the
//!   leases its previous run held (after killing what that run left
//!   running), so those jobs rerun in place before any later job.
//!
//! A runner's worker name is `executor:{node}/{queue}` (slot `i` adds
//! `/{i}`), where `node` names this server's data (see
//! [`ExecutorsConfig::node`]); only leases with that prefix are released
//! on start, never an external worker's.

pub mod build;
pub mod runners;
pub mod source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderly_core::{Executor, QueueInfo};
use orderly_worker::RunnerConfig;
use tokio_util::sync::CancellationToken;

pub use self::build::{ExecutorHandler, NODE_MARKER};
pub use self::runners::{spawn_runner, RunnerHandle, RunnerSet};
pub use self::source::ServiceSource;
use crate::service::Service;

/// How the executors run.
#[derive(Debug, Clone)]
pub struct ExecutorsConfig {
    /// This server instance's name: kept with its data (so a restart knows
    /// its own leases), set on every child as `ORDERLY_NODE`.
    pub node: String,
    /// How long a shutdown lets running jobs finish before it kills them.
    pub grace: Duration,
    /// How often the queues are read again, besides every configuration
    /// change this server makes (a safety net).
    pub resync: Duration,
}

impl ExecutorsConfig {
    /// The worker-name prefix of this node's executors.
    pub fn worker_prefix(&self) -> String {
        format!("executor:{}/", self.node)
    }
}

/// What runs one queue.
struct QueueRunner {
    executor: Executor,
    concurrency: u32,
    handle: RunnerHandle,
}

/// One runner per queue with an executor; see the module docs.
pub struct Executors {
    service: Arc<Service>,
    config: ExecutorsConfig,
    running: Mutex<HashMap<String, QueueRunner>>,
    /// Executors that could not be built (a program removed since it was
    /// configured), so that each resync does not log them again.
    broken: Mutex<HashMap<String, Executor>>,
    /// Runners being replaced: they finish their jobs in the background and
    /// are waited for at shutdown.
    retired: RunnerSet,
}

impl Executors {
    /// Kills what a previous run of this node left running, gives its leases
    /// back (their jobs are next in line again), and starts a runner for
    /// every queue with an executor. The runners follow configuration
    /// changes until [`Executors::shutdown`]; `cancel` stops following.
    pub async fn start(
        service: Arc<Service>,
        config: ExecutorsConfig,
        cancel: CancellationToken,
    ) -> Result<Arc<Executors>, crate::error::ServiceError> {
        let node = config.node.clone();
        match tokio::task::spawn_blocking(move || {
            orderly_worker::command::reap_orphans(NODE_MARKER, &node)
        })
        .await
        {
            Ok(Ok(r)) if !r.killed.is_empty() => tracing::warn!(
                "killed {} process(es) left running by this server's previous run: {:?}",
                r.killed.len(),
                r.killed
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("cannot look for processes left by a previous run: {e}"),
            Err(e) => tracing::warn!("cannot look for processes left by a previous run: {e}"),
        }
        let released = service.release_leases(&config.worker_prefix()).await?;
        if released > 0 {
            tracing::info!(
                "{released} job(s) interrupted by the last stop go back to their place in line"
            );
        }
        let me = Arc::new(Executors {
            service,
            config,
            running: Mutex::new(HashMap::new()),
            broken: Mutex::new(HashMap::new()),
            retired: RunnerSet::default(),
        });
        me.sync().await;
        let follower = me.clone();
        tokio::spawn(async move {
            let changed = follower.service.config_changed();
            loop {
                let notified = changed.notified();
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(follower.config.resync) => {}
                    _ = cancel.cancelled() => return,
                }
                follower.sync().await;
            }
        });
        Ok(me)
    }

    /// Brings the runners in step with the queues' configuration.
    async fn sync(&self) {
        let queues = match self.service.queues().await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!("executors: cannot read the queues: {e}");
                return;
            }
        };
        let wanted: HashMap<String, (Executor, u32)> = queues
            .into_iter()
            .filter_map(|q: QueueInfo| {
                let c = q.config.concurrency;
                q.config.executor.map(|e| (q.name, (e, c)))
            })
            .collect();
        let mut starts = Vec::new();
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = running
                .iter()
                .filter(|(name, r)| wanted.get(*name) != Some(&(r.executor.clone(), r.concurrency)))
                .map(|(name, _)| name.clone())
                .collect();
            for name in gone {
                if let Some(r) = running.remove(&name) {
                    tracing::info!("executor of queue {name}: configuration changed; the running jobs finish first");
                    r.handle.stop();
                    self.retired.add(r.handle);
                }
            }
            for (name, (executor, concurrency)) in wanted {
                if !running.contains_key(&name) {
                    starts.push((name, executor, concurrency));
                }
            }
        }
        for (name, executor, concurrency) in starts {
            let node = self.config.node.clone();
            let e = executor.clone();
            let built = tokio::task::spawn_blocking(move || build::handler(&e, &node)).await;
            let handler = match built {
                Ok(Ok(h)) => {
                    self.broken
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&name);
                    h
                }
                Ok(Err(e)) => {
                    self.refuse(&name, &executor, &e.message);
                    continue;
                }
                Err(e) => {
                    self.refuse(&name, &executor, &e.to_string());
                    continue;
                }
            };
            let mut rc = RunnerConfig::new(
                name.clone(),
                format!("{}{name}", self.config.worker_prefix()),
            );
            rc.slots = concurrency.max(1);
            let handle = spawn_runner(
                Arc::new(ServiceSource::new(self.service.clone())),
                Arc::new(handler),
                rc,
            );
            tracing::info!("executor of queue {name}: running up to {concurrency} job(s) at once");
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    name,
                    QueueRunner {
                        executor,
                        concurrency,
                        handle,
                    },
                );
        }
    }

    /// Logs, once per configuration, that `queue`'s executor cannot run; its
    /// jobs wait (they are not failed) until it is fixed.
    fn refuse(&self, queue: &str, executor: &Executor, why: &str) {
        let mut broken = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        if broken.get(queue) != Some(executor) {
            tracing::error!(
                "executor of queue {queue} cannot run, its jobs wait until it is fixed: {why}"
            );
            broken.insert(queue.to_string(), executor.clone());
        }
    }

    /// Stops claiming on every queue (the jobs in hand go on); call it
    /// before the service's long polls are ended.
    pub fn stop(&self) {
        let handles: Vec<RunnerHandle> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, r)| r.handle)
            .collect();
        for h in handles {
            h.stop();
            self.retired.add(h);
        }
    }

    /// Stops every runner: running jobs get [`ExecutorsConfig::grace`] to
    /// finish and be reported, then are killed and left to rerun in place on
    /// the next start. Returns whether some had to be killed.
    pub async fn shutdown(&self) -> bool {
        self.stop();
        self.retired.shutdown(self.config.grace).await
    }
}

/// This server instance's name, kept in `dir/node-id` (created on first
/// use): it names the executors' leases and marks their children, so a
/// restart on the same data finds what it left behind.
pub fn node_id(dir: &std::path::Path) -> std::io::Result<String> {
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let tmp = dir.join("node-id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}
