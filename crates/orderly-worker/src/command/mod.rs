//! [`CommandHandler`]: runs a program per job — the one child-process runner
//! of `orderly worker` and of the server's command executor.
//!
//! The payload goes to the program's stdin as JSON, fed beside everything
//! else so a program that never reads it cannot stall the runner. The job is
//! described in the environment (`ORDERLY_JOB_ID`, `ORDERLY_QUEUE`,
//! `ORDERLY_SEQ`, `ORDERLY_ATTEMPT`, `ORDERLY_KEY` and, for older scripts,
//! `ORDERLY_JOB_KEY`), over a base chosen by [`Env`] (all of this process's
//! environment, or an allow-list of it) and the configured variables
//! ([`mod@env`] has the precedence). Exit 0 succeeds with stdout as the result
//! (JSON if it parses, else the text); stdout beyond the bound
//! ([`DEFAULT_MAX_OUTPUT_BYTES`] unless set) fails the run, naming the
//! bound. A non-zero exit or a signal fails the run with stderr's tail.
//!
//! The program runs in its own process group; on cancel, lease loss,
//! shutdown or timeout — and if the run is dropped half way — the whole
//! group is killed at once (SIGKILL through `nix`), so what the program
//! started goes too. What outlives the process that started it (a server
//! killed with SIGKILL) is found by its [`marker`](CommandHandler::marker)
//! and killed by [`reap_orphans`] on the next start.

pub mod env;
mod output;
pub mod reap;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

pub use env::{Env, ALLOWED_ENV, ALLOWED_ENV_PREFIX, JOB_VARS};
pub use reap::{reap_orphans, Reaped, REAP_ROUNDS};

use crate::handler::{CancelReason, Failure, Handler, Job, JobContext};
use output::{collect, output_value, read_bounded, tail_text};

/// Default bound of the stdout kept as the result (1 MiB).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1_048_576;
/// Bytes of stderr's tail kept for the error.
pub const STDERR_TAIL_BYTES: usize = 4 * 1024;

/// Runs a program per job. See the module docs.
#[derive(Debug, Clone)]
pub struct CommandHandler {
    argv: Vec<String>,
    mode: Env,
    env: Vec<(String, String)>,
    marker: Option<(String, String)>,
    cwd: Option<PathBuf>,
    max_output: usize,
    timeout: Option<Duration>,
}

/// Why a [`CommandHandler`] cannot be built.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// No program was given.
    #[error("the command is empty")]
    Empty,
    /// The marker cannot be set on a child.
    #[error("the marker {key:?} cannot be set: {why}")]
    BadMarker {
        /// The marker's name.
        key: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl CommandHandler {
    /// A handler that runs `argv[0]` with the rest as arguments, over the
    /// environment `env` chooses.
    pub fn new(argv: Vec<String>, env: Env) -> Result<Self, CommandError> {
        if argv.is_empty() || argv[0].is_empty() {
            return Err(CommandError::Empty);
        }
        Ok(CommandHandler {
            argv,
            mode: env,
            env: Vec::new(),
            marker: None,
            cwd: None,
            max_output: DEFAULT_MAX_OUTPUT_BYTES,
            timeout: None,
        })
    }

    /// Adds a variable to every run's environment (a queue's configured
    /// variables). The job's variables and the marker win over it. A name an
    /// environment cannot hold fails each run, naming it, without retry.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets `key=value` on every child (e.g. `ORDERLY_NODE=<instance id>`),
    /// so that [`reap_orphans`] finds what a killed process left running.
    /// Nothing configured overrides it; it may not be one of [`JOB_VARS`].
    pub fn marker(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, CommandError> {
        let (key, value) = (key.into(), value.into());
        let why = env::invalid_var(&key, &value).or_else(|| {
            JOB_VARS
                .contains(&key.as_str())
                .then_some("it is one of the job's variables")
        });
        if let Some(why) = why {
            return Err(CommandError::BadMarker { key, why });
        }
        self.marker = Some((key, value));
        Ok(self)
    }

    /// The child's working directory (default: this process's). One that is
    /// missing fails the run, naming it. A relative program path is best
    /// given as an absolute one with it.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Most bytes of stdout taken as the result.
    pub fn max_output_bytes(mut self, max: usize) -> Self {
        self.max_output = max;
        self
    }

    /// Kills a run (its whole process group) that takes longer.
    pub fn timeout(mut self, limit: Option<Duration>) -> Self {
        self.timeout = limit;
        self
    }

    /// The program and its arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The environment policy.
    pub fn env_mode(&self) -> Env {
        self.mode
    }

    /// Why a run cannot start before anything is spawned: a configured
    /// variable no environment can hold, or a working directory that is not
    /// there.
    async fn preflight(&self) -> Result<(), Failure> {
        for (k, v) in &self.env {
            if let Some(why) = env::invalid_var(k, v) {
                return Err(Failure::fatal(json!({
                    "message": format!("the variable {k:?} cannot be set: {why}"),
                    "variable": k,
                })));
            }
        }
        if let Some(dir) = &self.cwd {
            let problem = match tokio::fs::metadata(dir).await {
                Ok(m) if m.is_dir() => None,
                Ok(_) => Some("is not a directory".to_string()),
                Err(e) => Some(format!("cannot be used: {e}")),
            };
            if let Some(problem) = problem {
                return Err(Failure::retryable(json!({
                    "message": format!("cannot start {:?}: the working directory {} {problem}", self.argv[0], dir.display()),
                    "cwd": dir.display().to_string(),
                })));
            }
        }
        Ok(())
    }

    /// Spawns the program for `job`.
    fn spawn(&self, job: &Job) -> std::io::Result<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a kill reaches what it started too.
            .process_group(0);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        env::apply(&mut cmd, self.mode, &self.env, self.marker.as_ref(), job);
        cmd.spawn()
    }
}

/// Kills a process group when dropped, unless disarmed (the program exited
/// and was reaped normally).
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    /// SIGKILLs the group now (a group already gone is fine).
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What stopped a run before the program exited.
enum Stopped {
    Cancelled(Option<CancelReason>),
    TimedOut(Duration),
}

#[async_trait::async_trait]
impl Handler for CommandHandler {
    async fn handle(&self, job: Job, ctx: JobContext) -> Result<Value, Failure> {
        self.preflight().await?;
        let started = Instant::now();
        let mut child = self.spawn(&job).map_err(|e| {
            Failure::retryable(json!({
                "message": format!("cannot start {:?}: {e}", self.argv[0]),
                "exit_code": 127,
            }))
        })?;
        let mut guard = GroupGuard {
            pgid: child
                .id()
                .and_then(|p| i32::try_from(p).ok())
                .map(Pid::from_raw),
        };
        let payload = serde_json::to_vec(&job.payload).unwrap_or_default();
        if let Some(mut stdin) = child.stdin.take() {
            // Fed beside the wait: a program that does not read its stdin
            // must not block anything.
            tokio::spawn(async move {
                let _ = stdin.write_all(&payload).await;
                let _ = stdin.shutdown().await;
            });
        }
        let max = self.max_output;
        let out = child.stdout.take();
        let err = child.stderr.take();
        let read_out = tokio::spawn(async move { read_bounded(out, max, false).await });
        let read_err =
            tokio::spawn(async move { read_bounded(err, STDERR_TAIL_BYTES, true).await });

        let deadline = self.timeout.map(|t| tokio::time::Instant::now() + t);
        let timed_out = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let status = tokio::select! {
            s = child.wait() => Ok(s),
            _ = ctx.cancelled() => Err(Stopped::Cancelled(ctx.cancel_reason())),
            _ = timed_out => Err(Stopped::TimedOut(self.timeout.unwrap_or_default())),
        };
        let status = match status {
            Ok(s) => s,
            Err(stopped) => {
                // The whole group at once, whatever the reason.
                guard.kill();
                let _ = child.kill().await;
                return Err(match stopped {
                    Stopped::Cancelled(Some(CancelReason::LeaseLost)) => {
                        Failure::retryable(json!({"message": "lease lost while running"}))
                    }
                    Stopped::Cancelled(Some(CancelReason::TimedOut)) => {
                        Failure::retryable(json!({"message": "timed out"}))
                    }
                    Stopped::Cancelled(Some(CancelReason::Shutdown)) => {
                        Failure::retryable(json!({"message": "stopped by a shutdown"}))
                    }
                    Stopped::Cancelled(_) => {
                        Failure::fatal(json!({"message": "cancelled while running"}))
                    }
                    Stopped::TimedOut(t) => Failure::retryable(json!({
                        "message": format!("timed out after {} ms", t.as_millis()),
                    })),
                });
            }
        };
        // Reaped: the pid (and group id) may be reused from now on.
        guard.pgid = None;
        let elapsed = started.elapsed();
        let stdout = collect(read_out).await;
        let stderr = collect(read_err).await;
        let status =
            status.map_err(|e| Failure::message(format!("cannot wait for the command: {e}")))?;
        if status.success() {
            if stdout.overflowed {
                return Err(Failure::fatal(json!({
                    "message": format!("stdout is larger than the {max}-byte bound (max_output_bytes)"),
                    "max_output_bytes": max,
                })));
            }
            return Ok(output_value(&stdout.bytes));
        }
        let code = status.code();
        let signal = {
            use std::os::unix::process::ExitStatusExt;
            status.signal()
        };
        let what = match (code, signal) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "ended abnormally".to_string(),
        };
        Err(Failure::retryable(json!({
            "message": format!("command failed: {what}"),
            "exit_code": code,
            "signal": signal,
            "stderr": tail_text(&stderr.bytes),
            "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        })))
    }
}

#[cfg(test)]
mod tests;
