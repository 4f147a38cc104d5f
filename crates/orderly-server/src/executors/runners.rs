//! [`RunnerSet`]: in-process runners (executors, the embedded library's
//! handlers) started and stopped together.
//!
//! A runner is stopped gracefully (no more claims, jobs in hand run to the
//! end and are reported) when it is replaced or when the set shuts down; a
//! shutdown that outlasts its grace period abandons what still runs: the
//! handlers are cancelled ([`orderly_worker::CancelReason::Shutdown`]),
//! nothing is reported, and the jobs keep their leases until the next start
//! releases them (`Store::lease_release`), so they rerun in place.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderly_worker::{Handler, JobSource, Runner, RunnerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One runner's handle: its tokens and its task.
pub struct RunnerHandle {
    stop: CancellationToken,
    abandon: CancellationToken,
    task: JoinHandle<()>,
}

impl RunnerHandle {
    /// Stops claiming; the jobs in hand finish and are reported.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Whether the runner's task ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts `config`'s runner of `handler` over `source`, restarting it after
/// a pause if it ends with an error (a refused claim: the queue was
/// misconfigured and is being fixed) until it is stopped.
pub fn spawn_runner<S: JobSource, H: Handler>(
    source: Arc<S>,
    handler: Arc<H>,
    config: RunnerConfig,
) -> RunnerHandle {
    let stop = CancellationToken::new();
    let abandon = CancellationToken::new();
    let (s, a) = (stop.clone(), abandon.clone());
    let task = tokio::spawn(async move {
        loop {
            let runner = Runner::new(source.clone(), handler.clone(), config.clone());
            let (rs, ra) = (runner.stop_token(), runner.abandon_token());
            let run = runner.run();
            tokio::pin!(run);
            let result = loop {
                tokio::select! {
                    r = &mut run => break r,
                    _ = s.cancelled(), if !rs.is_cancelled() => rs.cancel(),
                    _ = a.cancelled(), if !ra.is_cancelled() => ra.cancel(),
                }
            };
            match result {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(
                        "runner of queue {} stopped: {e}; restarting in 1 s",
                        config.queue
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = s.cancelled() => return,
                    }
                }
            }
        }
    });
    RunnerHandle {
        stop,
        abandon,
        task,
    }
}

/// Runners that shut down together; see the module docs.
#[derive(Default)]
pub struct RunnerSet {
    handles: Mutex<Vec<RunnerHandle>>,
}

impl RunnerSet {
    /// Adds a runner to the set (it is shut down with the others).
    pub fn add(&self, handle: RunnerHandle) {
        let mut h = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        h.retain(|r| !r.is_finished());
        h.push(handle);
    }

    /// Stops every runner gracefully and waits up to `grace` for the jobs in
    /// hand to be reported; abandons what still runs after that. Returns
    /// whether some had to be abandoned.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        let handles: Vec<RunnerHandle> =
            std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for h in &handles {
            h.stop();
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut left = Vec::new();
        for mut h in handles {
            if tokio::time::timeout_at(deadline, &mut h.task)
                .await
                .is_err()
            {
                left.push(h);
            }
        }
        if left.is_empty() {
            return false;
        }
        tracing::warn!(
            "{} runner(s) still had jobs running after the grace period of {grace:?}: stopping them; they run again in place on the next start",
            left.len()
        );
        for h in &left {
            h.abandon.cancel();
        }
        // The runners give their handlers a few seconds to stop.
        let deadline = tokio::time::Instant::now()
            + orderly_worker::runner::LOST_LEASE_GRACE
            + Duration::from_secs(1);
        for mut h in left {
            if tokio::time::timeout_at(deadline, &mut h.task)
                .await
                .is_err()
            {
                h.task.abort();
            }
        }
        true
    }
}
