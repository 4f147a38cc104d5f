//! Client commands: `enqueue`, `jobs`, `job`, `queue`.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use orderly_client::proto::{
    BackoffView, BatchRequest, EnqueueRequest, JobView, QueueConfigRequest, QueueView,
};

use crate::ServerArgs;

/// `orderly enqueue` flags.
#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Queue name.
    pub queue: String,
    /// Payload as JSON (default `null`). Ignored with --file.
    pub payload: Option<String>,
    /// Job id (makes the enqueue idempotent).
    #[arg(long)]
    pub id: Option<String>,
    /// Ordering key.
    #[arg(long)]
    pub key: Option<String>,
    /// Run no sooner than this from now (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// Run no sooner than this time (RFC 3339).
    #[arg(long, conflicts_with = "delay")]
    pub run_at: Option<String>,
    /// Starts allowed before the failure is final.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Per-attempt time limit (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Enqueue every line of this JSON-lines file; each line is a job object
    /// `{"payload": …, "id"?: …, "key"?: …, "delay_ms"?: …}`. `-` reads stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Jobs per batch request with --file (each batch is atomic).
    #[arg(long, env = "ORDERLY_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,
}

pub async fn enqueue(a: EnqueueArgs) -> anyhow::Result<()> {
    let client = a.server.client();
    if let Some(file) = &a.file {
        return enqueue_file(&client, &a.queue, file, a.batch_size).await;
    }
    let payload = match &a.payload {
        Some(p) => serde_json::from_str(p)
            .with_context(|| format!("payload {p:?} is not JSON (quote strings: '\"text\"')"))?,
        None => serde_json::Value::Null,
    };
    let req = EnqueueRequest {
        id: a.id,
        key: a.key,
        payload,
        run_at: a.run_at,
        delay_ms: a.delay.map(|d| d.as_millis() as u64),
        max_attempts: a.max_attempts,
        timeout_ms: a.timeout.map(|d| d.as_millis() as u64),
    };
    let out = client.enqueue(&a.queue, &req).await?;
    if !out.created {
        eprintln!("(already enqueued: same id, same content)");
    }
    println!("{}", serde_json::to_string_pretty(&out.value)?);
    Ok(())
}

async fn enqueue_file(
    client: &orderly_client::Client,
    queue: &str,
    file: &PathBuf,
    batch_size: usize,
) -> anyhow::Result<()> {
    if batch_size == 0 || batch_size > 10_000 {
        bail!("--batch-size must be between 1 and 10000");
    }
    let reader: Box<dyn BufRead + Send> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let total = if file.as_os_str() == "-" {
        None
    } else {
        Some(
            std::io::BufReader::new(std::fs::File::open(file)?)
                .lines()
                .count() as u64,
        )
    };
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} jobs ({per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut batch = Vec::with_capacity(batch_size);
    let mut accepted = 0u64;
    let mut replayed = 0u64;
    let mut lines = reader.lines().enumerate();
    loop {
        let next = lines.next();
        if let Some((n, line)) = &next {
            let line = line
                .as_ref()
                .map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let job: EnqueueRequest = serde_json::from_str(line).with_context(|| {
                format!(
                    "{}:{}: not a job object {{\"payload\": …}}",
                    file.display(),
                    n + 1
                )
            })?;
            batch.push(job);
        }
        if batch.len() >= batch_size || (next.is_none() && !batch.is_empty()) {
            let req = BatchRequest {
                jobs: std::mem::take(&mut batch),
            };
            let out = client.enqueue_batch(queue, &req).await.with_context(|| {
                format!("batch after {accepted} accepted jobs failed: if the server refused it, nothing of it was enqueued; if the connection broke, it may have been. Jobs with ids can be re-sent safely either way")
            })?;
            let n = out.value.len() as u64;
            accepted += n;
            if !out.created {
                replayed += n;
            }
            bar.inc(n);
        }
        if next.is_none() {
            break;
        }
    }
    bar.finish_with_message("done");
    println!(
        "enqueued {accepted} jobs into {queue}{}",
        if replayed > 0 {
            format!(" ({replayed} were already there)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `orderly jobs` flags.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Queue name.
    pub queue: String,
    /// Only jobs in this state (scheduled, queued, running, succeeded, failed, cancelled).
    #[arg(long)]
    pub state: Option<String>,
    /// Only this key's line: its unfinished jobs, in seq order.
    #[arg(long, conflicts_with = "state")]
    pub key: Option<String>,
    /// Only jobs after this seq.
    #[arg(long)]
    pub after: Option<i64>,
    /// Most jobs to show.
    #[arg(long, env = "ORDERLY_LIMIT", default_value_t = 50)]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn short_time(t: &Option<String>) -> String {
    t.as_deref()
        .map(|s| s.get(11..23).unwrap_or(s).to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_jobs(jobs: &[JobView]) {
    println!(
        "{:>8}  {:<38} {:<10} {:>5} {:>7}  {:<16} {:<12} {:<12} {:<12}",
        "SEQ", "ID", "STATE", "POS", "ATTEMPT", "KEY", "ENQUEUED", "STARTED", "FINISHED"
    );
    for j in jobs {
        println!(
            "{:>8}  {:<38} {:<10} {:>5} {:>3}/{:<3}  {:<16} {:<12} {:<12} {:<12}",
            j.seq,
            j.id,
            j.state,
            j.position
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            j.attempt,
            j.max_attempts,
            j.key.as_deref().unwrap_or("-"),
            short_time(&Some(j.enqueued_at.clone())),
            short_time(&j.started_at),
            short_time(&j.finished_at),
        );
    }
}

pub async fn jobs(a: JobsArgs) -> anyhow::Result<()> {
    let client = a.server.client();
    let page = match &a.key {
        Some(key) => client.list_key(&a.queue, key, a.after, a.limit).await?,
        None => {
            client
                .list(&a.queue, a.state.as_deref(), a.after, a.limit)
                .await?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        print_jobs(&page.jobs);
        if let Some(n) = page.next_after {
            eprintln!("more: orderly jobs {} --after {n}", a.queue);
        }
    }
    Ok(())
}

/// `orderly job` flags.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Job id.
    pub id: String,
    /// Wait up to this long for the job to finish (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
    /// Show the job's state changes and progress live (a bar for numeric
    /// progress) until it finishes; exits non-zero unless it succeeded.
    #[arg(long, conflicts_with_all = ["wait", "json"])]
    pub follow: bool,
    /// Print only the job as JSON (without its attempts in words below it).
    #[arg(long)]
    pub json: bool,
}

pub async fn job(a: JobArgs) -> anyhow::Result<()> {
    let client = a.server.client();
    if a.follow {
        return crate::follow::follow(&client, &a.id).await;
    }
    let job = match a.wait {
        Some(d) => {
            // The server holds one wait at most 5 minutes: ask again until done or out of time.
            let until = std::time::Instant::now() + d;
            loop {
                let left = until.saturating_duration_since(std::time::Instant::now());
                let step = left.as_millis().min(300_000) as u64;
                let job = client.wait(&a.id, step).await?;
                let finished = ["succeeded", "failed", "cancelled"].contains(&job.state.as_str());
                if finished || std::time::Instant::now() >= until {
                    break job;
                }
            }
        }
        None => client.job(&a.id).await?,
    };
    if !a.json {
        println!(
            "{}",
            crate::why::summary(&job, std::time::SystemTime::now())
        );
    }
    println!("{}", serde_json::to_string_pretty(&job)?);
    if !a.json {
        crate::history::print_attempts(&client, &job.id).await?;
    }
    Ok(())
}

/// `orderly queue` flags.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub action: Option<QueueAction>,
}

/// `orderly queue` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum QueueAction {
    /// List queues with counts (the default).
    List,
    /// Show one queue.
    Show {
        /// Queue name.
        queue: String,
    },
    /// Create or configure a queue; options left out keep their value.
    Set(Box<QueueSetArgs>),
}

/// `orderly queue set` flags.
#[derive(Debug, clap::Args)]
pub struct QueueSetArgs {
    /// Queue name.
    pub queue: String,
    /// Most jobs running at once (1 = strict FIFO, one at a time).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Starts allowed per job.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// First retry delay (e.g. 1s). Give all three backoff options together.
    #[arg(long, value_parser = humantime::parse_duration, requires_all = ["backoff_max", "backoff_factor"])]
    pub backoff_initial: Option<Duration>,
    /// Longest retry delay (e.g. 1h).
    #[arg(long, value_parser = humantime::parse_duration, requires = "backoff_initial")]
    pub backoff_max: Option<Duration>,
    /// Delay growth per failure (e.g. 2.0).
    #[arg(long, requires = "backoff_initial")]
    pub backoff_factor: Option<f64>,
    /// Default lease (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lease: Option<Duration>,
    /// Pause (true) or resume (false).
    #[arg(long)]
    pub paused: Option<bool>,
    /// The server runs a command per job: `--exec -- CMD ARGS...` (payload on
    /// stdin, stdout the result; the environment is an allow-list).
    #[arg(long, requires = "command", conflicts_with_all = ["webhook", "no_executor"])]
    pub exec: bool,
    /// The command of `--exec`, after `--`.
    #[arg(last = true, requires = "exec")]
    pub command: Vec<String>,
    /// Working directory of `--exec`'s command.
    #[arg(long, requires = "exec")]
    pub cwd: Option<String>,
    /// A variable for `--exec`'s command, `NAME=VALUE` (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", requires = "exec", value_parser = parse_pair::<'='>)]
    pub env_vars: Vec<(String, String)>,
    /// Most bytes of stdout kept as `--exec`'s result (default 1 MiB).
    #[arg(long, requires = "exec")]
    pub max_output_bytes: Option<u64>,
    /// The server POSTs each job to this http(s) URL.
    #[arg(long, conflicts_with = "no_executor")]
    pub webhook: Option<String>,
    /// A header for `--webhook`, `NAME: VALUE` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", requires = "webhook", value_parser = parse_pair::<':'>)]
    pub headers: Vec<(String, String)>,
    /// Time limit of one `--webhook` request (e.g. 30s).
    #[arg(long, requires = "webhook", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Option<Duration>,
    /// Signs every `--webhook` request (`Orderly-Signature`); never shown
    /// back. Like every per-queue value it has no environment variable:
    /// pass `--secret "$YOUR_VARIABLE"`.
    #[arg(long, requires = "webhook")]
    pub secret: Option<String>,
    /// Most bytes of a `--webhook` response kept as the result (default 1 MiB).
    #[arg(long, requires = "webhook")]
    pub max_response_bytes: Option<u64>,
    /// Back to pull workers: remove the queue's executor.
    #[arg(long)]
    pub no_executor: bool,
}

/// `NAME<sep>VALUE`, both sides trimmed of spaces around the separator.
fn parse_pair<const SEP: char>(s: &str) -> Result<(String, String), String> {
    match s.split_once(SEP) {
        Some((k, v)) if !k.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim_start().to_string()))
        }
        _ => Err(format!("expected NAME{SEP}VALUE, got {s:?}")),
    }
}

/// The executor `orderly queue set` asks for: `Some(Value::Null)` clears it.
fn executor_of(s: &QueueSetArgs) -> Option<serde_json::Value> {
    use serde_json::{json, Map, Value};
    if s.no_executor {
        return Some(Value::Null);
    }
    if s.exec {
        let mut e = json!({"type": "command", "argv": s.command});
        if let Some(d) = &s.cwd {
            e["cwd"] = json!(d);
        }
        if !s.env_vars.is_empty() {
            e["env"] = Value::Object(
                s.env_vars
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect::<Map<_, _>>(),
            );
        }
        if let Some(m) = s.max_output_bytes {
            e["max_output_bytes"] = json!(m);
        }
        return Some(e);
    }
    let url = s.webhook.as_ref()?;
    let mut e = json!({"type": "webhook", "url": url});
    if !s.headers.is_empty() {
        e["headers"] = Value::Object(
            s.headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<_, _>>(),
        );
    }
    if let Some(t) = s.webhook_timeout {
        e["timeout_ms"] = json!(u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
    }
    if let Some(sec) = &s.secret {
        e["secret"] = json!(sec);
    }
    if let Some(m) = s.max_response_bytes {
        e["max_response_bytes"] = json!(m);
    }
    Some(e)
}

fn print_queues(queues: &[QueueView]) {
    println!(
        "{:<24} {:>5} {:>6} {:>9} {:>8} {:>8} {:>9} {:>7} {:>9}",
        "QUEUE",
        "CONC",
        "PAUSED",
        "SCHEDULED",
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED"
    );
    for q in queues {
        let c = &q.counts;
        println!(
            "{:<24} {:>5} {:>6} {:>9} {:>8} {:>8} {:>9} {:>7} {:>9}",
            q.name,
            q.concurrency,
            q.paused,
            c.scheduled,
            c.queued,
            c.running,
            c.succeeded,
            c.failed,
            c.cancelled
        );
    }
}

pub async fn queue(a: QueueArgs) -> anyhow::Result<()> {
    let client = a.server.client();
    match a.action.unwrap_or(QueueAction::List) {
        QueueAction::List => print_queues(&client.queues().await?),
        QueueAction::Show { queue } => println!(
            "{}",
            serde_json::to_string_pretty(&client.queue(&queue).await?)?
        ),
        QueueAction::Set(s) => {
            let backoff = match (s.backoff_initial, s.backoff_max, s.backoff_factor) {
                (Some(i), Some(m), Some(f)) => Some(BackoffView {
                    initial_ms: i.as_millis() as u64,
                    max_ms: m.as_millis() as u64,
                    factor: f,
                }),
                _ => None,
            };
            let req = QueueConfigRequest {
                concurrency: s.concurrency,
                max_attempts: s.max_attempts,
                backoff,
                lease_ms: s.lease.map(|d| d.as_millis() as u64),
                paused: s.paused,
                executor: executor_of(&s),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&client.configure(&s.queue, &req).await?)?
            );
        }
    }
    Ok(())
}
