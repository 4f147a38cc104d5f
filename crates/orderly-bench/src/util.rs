//! Helpers of every workload: bounded client calls, queue setup, the W1 job,
//! task joining, progress bars.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use orderly_client::proto::{EnqueueRequest, QueueConfigRequest};
use orderly_client::{Client, ClientError};
use serde_json::json;
use tokio::task::JoinSet;

/// Longest one HTTP call may take (the longest long poll here is 5 s).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Awaits one client call with [`CALL_TIMEOUT`], naming the call on failure.
pub(crate) async fn call<T>(
    what: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context(what())),
        Err(_) => Err(anyhow!(
            "{}: no answer within {} s",
            what(),
            CALL_TIMEOUT.as_secs()
        )),
    }
}

/// Sets a queue's concurrency (creating the queue).
pub(crate) async fn configure(
    client: &Client,
    queue: &str,
    concurrency: u32,
) -> anyhow::Result<()> {
    let config = QueueConfigRequest {
        concurrency: Some(concurrency),
        ..Default::default()
    };
    call(
        || format!("configure queue {queue}"),
        client.configure(queue, &config),
    )
    .await?;
    Ok(())
}

/// The W1 job `i`: payload `{"i": i}`.
pub(crate) fn job(i: u64) -> EnqueueRequest {
    EnqueueRequest {
        payload: json!({ "i": i }),
        ..Default::default()
    }
}

/// Waits for every task of `set`; the first error (or panic) aborts the rest.
pub(crate) async fn join_all<T: 'static>(
    mut set: JoinSet<anyhow::Result<T>>,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(set.len());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => return Err(e),
            Err(e) => bail!("a bench task failed: {e}"),
        }
    }
    Ok(out)
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("  {prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

/// Jobs per second, guarding against a zero span.
pub(crate) fn rate(jobs: u64, span: Duration) -> f64 {
    jobs as f64 / span.as_secs_f64().max(1e-9)
}
