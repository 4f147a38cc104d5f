//! [`CommandHandler`]: runs a program per job.
//!
//! The payload goes to the program's stdin as JSON, fed beside everything
//! else so a program that never reads it cannot stall the runner. The job is
//! described in the environment (`ORDERLY_JOB_ID`, `ORDERLY_QUEUE`,
//! `ORDERLY_SEQ`, `ORDERLY_ATTEMPT`, `ORDERLY_KEY` and, for older scripts,
//! `ORDERLY_JOB_KEY`). Exit 0 succeeds with stdout as the result (JSON if it
//! parses, else the text); stdout beyond the bound fails the run, naming the
//! bound. A non-zero exit or a signal fails the run with stderr's tail.
//!
//! The program runs in its own process group; on cancel, lease loss or
//! timeout — and if the run is dropped half way — the whole group is killed
//! (SIGKILL through `nix`), so what the program started goes too.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::handler::{CancelReason, Failure, Handler, Job, JobContext};

/// Default bound of the stdout kept as the result.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Bytes of stderr's tail kept for the error.
pub const STDERR_TAIL_BYTES: usize = 4 * 1024;
/// How long to wait for the pipes after the program exits (something it left
/// behind may hold them open).
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// Runs a program per job. See the module docs.
#[derive(Debug, Clone)]
pub struct CommandHandler {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    max_output: usize,
    timeout: Option<Duration>,
}

/// Why a [`CommandHandler`] cannot be built.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// No program was given.
    #[error("the command is empty")]
    Empty,
}

impl CommandHandler {
    /// A handler that runs `argv[0]` with the rest as arguments.
    pub fn new(argv: Vec<String>) -> Result<Self, CommandError> {
        if argv.is_empty() || argv[0].is_empty() {
            return Err(CommandError::Empty);
        }
        Ok(CommandHandler {
            argv,
            env: Vec::new(),
            max_output: DEFAULT_MAX_OUTPUT_BYTES,
            timeout: None,
        })
    }

    /// Adds a variable to every run's environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
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
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("ORDERLY_JOB_ID", &job.id)
            .env("ORDERLY_QUEUE", &job.queue)
            .env("ORDERLY_SEQ", job.seq.to_string())
            .env("ORDERLY_ATTEMPT", job.attempt.to_string());
        match &job.key {
            Some(k) => {
                cmd.env("ORDERLY_KEY", k).env("ORDERLY_JOB_KEY", k);
            }
            None => {
                cmd.env_remove("ORDERLY_KEY").env_remove("ORDERLY_JOB_KEY");
            }
        }
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

/// A pipe's bytes, bounded.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    /// More arrived than the bound.
    overflowed: bool,
}

#[async_trait::async_trait]
impl Handler for CommandHandler {
    async fn handle(&self, job: Job, ctx: JobContext) -> Result<Value, Failure> {
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

/// Waits (bounded) for a pipe reader.
async fn collect(reader: tokio::task::JoinHandle<Captured>) -> Captured {
    tokio::time::timeout(PIPE_DRAIN, reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// Reads a pipe to the end, keeping at most `max` bytes (the head, or the
/// tail with `tail`).
async fn read_bounded<R: AsyncRead + Unpin>(pipe: Option<R>, max: usize, tail: bool) -> Captured {
    let mut c = Captured::default();
    let Some(mut pipe) = pipe else {
        return c;
    };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                c.bytes.extend_from_slice(&buf[..n]);
                if c.bytes.len() > max {
                    c.overflowed = true;
                    if tail {
                        let cut = c.bytes.len() - max;
                        c.bytes.drain(..cut);
                    } else {
                        c.bytes.truncate(max);
                    }
                }
            }
        }
    }
    c
}

/// stdout as a result: JSON if it parses, else the (trimmed) text; nothing → null.
fn output_value(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(trimmed).unwrap_or_else(|_| Value::String(trimmed.to_string()))
}

/// stderr's tail as text.
fn tail_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(payload: Value) -> Job {
        Job {
            id: "j-1".into(),
            queue: "q".into(),
            key: Some("k".into()),
            seq: 7,
            attempt: 2,
            payload,
            timeout_ms: None,
        }
    }

    fn sh(script: &str) -> CommandHandler {
        CommandHandler::new(vec!["sh".into(), "-c".into(), script.into()]).unwrap()
    }

    /// stdin carries the payload; JSON stdout is the result.
    #[tokio::test]
    async fn payload_in_result_out() {
        let p = json!({"a": [1, 2], "s": "x"});
        let r = sh("cat").handle(job(p.clone()), JobContext::new()).await;
        assert_eq!(r, Ok(p));
        let r = sh("echo plain text")
            .handle(job(json!(null)), JobContext::new())
            .await;
        assert_eq!(r, Ok(json!("plain text")));
    }

    /// The job is described in the environment.
    #[tokio::test]
    async fn environment() {
        let r = sh(r#"echo "$ORDERLY_JOB_ID $ORDERLY_QUEUE $ORDERLY_SEQ $ORDERLY_ATTEMPT $ORDERLY_KEY $ORDERLY_JOB_KEY $EXTRA""#)
            .env("EXTRA", "yes")
            .handle(job(json!(null)), JobContext::new())
            .await;
        assert_eq!(r, Ok(json!("j-1 q 7 2 k k yes")));
    }

    /// A non-zero exit fails with the code and stderr's tail.
    #[tokio::test]
    async fn failure_has_code_and_stderr() {
        let f = sh("echo oops >&2; exit 4")
            .handle(job(json!(null)), JobContext::new())
            .await
            .unwrap_err();
        assert!(f.retry);
        assert_eq!(f.error["exit_code"], json!(4));
        assert_eq!(f.error["stderr"], json!("oops"));
    }

    /// Too much stdout fails the run, naming the bound.
    #[tokio::test]
    async fn stdout_bound_is_named() {
        let f = sh("head -c 5000 /dev/zero")
            .max_output_bytes(1000)
            .handle(job(json!(null)), JobContext::new())
            .await
            .unwrap_err();
        assert!(
            f.error["message"]
                .as_str()
                .unwrap()
                .contains("1000-byte bound"),
            "{f:?}"
        );
    }

    /// A cancel kills the whole process group, children included.
    #[tokio::test]
    async fn cancel_kills_the_group() {
        let dir = std::env::temp_dir().join(format!("orderly-worker-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let ctx = JobContext::new();
        let run = tokio::spawn({
            let ctx = ctx.clone();
            async move { sh(&script).handle(job(json!(null)), ctx).await }
        });
        let until = Instant::now() + Duration::from_secs(10);
        let pid: i32 = loop {
            if let Some(p) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < until, "no child pid");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        ctx.cancel(CancelReason::Requested);
        let f = run.await.unwrap().unwrap_err();
        assert!(!f.retry);
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
            if stat
                .map(|s| s.split_whitespace().nth(2) == Some("Z"))
                .unwrap_or(true)
            {
                break;
            }
            assert!(
                Instant::now() < until,
                "the command's child {pid} survived the cancel"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A run past its timeout is killed and fails.
    #[tokio::test]
    async fn timeout_kills() {
        let t0 = Instant::now();
        let f = sh("sleep 30")
            .timeout(Some(Duration::from_millis(200)))
            .handle(job(json!(null)), JobContext::new())
            .await
            .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(f.error["message"].as_str().unwrap().contains("timed out"));
    }
}
