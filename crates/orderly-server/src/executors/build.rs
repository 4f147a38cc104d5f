//! From a queue's [`Executor`] configuration to the handler that runs its
//! jobs, checking what needs the outside world (the program exists, the
//! working directory is one, the URL parses) before anything is stored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orderly_core::executor::{CommandExecutor, WebhookExecutor};
use orderly_core::{Executor, ValidationError};
use orderly_worker::command::Env;
use orderly_worker::webhook::WebhookHandler;
use orderly_worker::{CommandHandler, Failure, Handler, Job, JobContext};
use serde_json::Value;

/// The environment variable naming the server instance on every child it
/// starts, so that the next start finds and kills what a crash left running.
pub const NODE_MARKER: &str = "ORDERLY_NODE";

/// Runs a queue's jobs as its executor says.
pub enum ExecutorHandler {
    /// A program per job.
    Command(CommandHandler),
    /// An HTTP POST per job.
    Webhook(WebhookHandler),
}

#[async_trait::async_trait]
impl Handler for ExecutorHandler {
    async fn handle(&self, job: Job, ctx: JobContext) -> Result<Value, Failure> {
        match self {
            ExecutorHandler::Command(h) => h.handle(job, ctx).await,
            ExecutorHandler::Webhook(h) => h.handle(job, ctx).await,
        }
    }
}

/// Builds the handler of `executor` for the server instance `node`.
pub fn handler(executor: &Executor, node: &str) -> Result<ExecutorHandler, ValidationError> {
    executor.check()?;
    match executor {
        Executor::Command(c) => command(c, node).map(ExecutorHandler::Command),
        Executor::Webhook(w) => webhook(w).map(ExecutorHandler::Webhook),
    }
}

/// Checks that `executor` can run here (see the module docs), building and
/// dropping its handler. Blocking: it looks at the file system.
pub fn check(executor: &Executor) -> Result<(), ValidationError> {
    handler(executor, "check").map(|_| ())
}

fn command(c: &CommandExecutor, node: &str) -> Result<CommandHandler, ValidationError> {
    let cwd = match &c.cwd {
        Some(d) => {
            let p = PathBuf::from(d);
            if !p.is_dir() {
                return Err(ValidationError::value(
                    "executor.cwd",
                    format!("is {d:?}: no such directory on the server"),
                ));
            }
            Some(p)
        }
        None => None,
    };
    let program = &c.argv[0];
    let found = find_program(program, cwd.as_deref()).ok_or_else(|| {
        ValidationError::value(
            "executor.argv[0]",
            if program.contains('/') {
                format!("is {program:?}: no such executable file (relative paths start from `cwd`, or the server's working directory)")
            } else {
                format!("is {program:?}: no such program on the server's PATH")
            },
        )
    })?;
    let mut argv = c.argv.clone();
    if program.contains('/') {
        // Resolved once, here: never relative to whichever directory is current.
        argv[0] = found.to_string_lossy().into_owned();
    }
    let mut h = CommandHandler::new(argv, Env::AllowList)
        .map_err(|e| ValidationError::value("executor.argv", e))?
        .marker(NODE_MARKER, node)
        .map_err(|e| ValidationError::value("executor", e))?
        .max_output_bytes(usize::try_from(c.output_bound()).unwrap_or(usize::MAX));
    if let Some(d) = cwd {
        h = h.cwd(d);
    }
    for (k, v) in &c.env {
        h = h.env(k, v);
    }
    Ok(h)
}

/// Where `program` would be run from, if it is an executable file.
fn find_program(program: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = if program.contains('/') {
        let p = PathBuf::from(program);
        vec![match (p.is_absolute(), cwd) {
            (false, Some(d)) => d.join(p),
            _ => p,
        }]
    } else {
        std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(program))
                    .collect()
            })
            .unwrap_or_default()
    };
    candidates.into_iter().find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn webhook(w: &WebhookExecutor) -> Result<WebhookHandler, ValidationError> {
    let mut h = WebhookHandler::new(&w.url)
        .map_err(|e| ValidationError::value("executor.url", e))?
        .timeout(Duration::from_millis(w.timeout()))
        .secret(w.secret.clone())
        .max_response_bytes(usize::try_from(w.response_bound()).unwrap_or(usize::MAX));
    for (k, v) in &w.headers {
        h = h
            .header(k, v)
            .map_err(|e| ValidationError::value(&format!("executor.headers.{k}"), e))?;
    }
    Ok(h)
}
