//! The seed's FastAPI app, rebuilt on the embedded library.
//!
//! The seed posted jobs to `POST /request/{uid}` and polled `GET /status`;
//! with FastAPI's BackgroundTasks and a one-thread limiter its jobs ran
//! 1, 3, 2, and a restart lost every queued job. Here the jobs run one at a
//! time in the order they were accepted, survive a restart (the one that was
//! running reruns first), and the status is the store's.
//!
//! ```sh
//! cargo run --release --example seed_app                # 127.0.0.1:8000, data in ./seed_app-data
//! curl -X POST localhost:8000/request/c880cc1b-dc27-4175-b616-29a69322d156
//! curl localhost:8000/status
//! ```
//!
//! Flags: `--listen ADDR` (default `127.0.0.1:8000`), `--job-seconds N`
//! (default 5; fractions allowed), `--data-dir DIR` (default
//! `./seed_app-data`). Orderly's own API is mounted under `/orderly`
//! (`GET /orderly/v1/jobs/{uid}` shows a job's attempts and start order).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use orderly::{JobCx, JobState, NewJob, Orderly};
use serde_json::{json, Value};

/// The queue of the app's jobs (concurrency 1: one at a time, in order).
const QUEUE: &str = "requests";

#[derive(Parser)]
#[command(about = "The seed's FastAPI app on Orderly's embedded library")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// How long each job takes, in seconds (fractions allowed).
    #[arg(long, default_value = "5", value_parser = seconds)]
    job_seconds: Duration,
    /// Where the jobs are kept.
    #[arg(long, default_value = "./seed_app-data")]
    data_dir: std::path::PathBuf,
}

/// A non-negative number of seconds, as a duration.
fn seconds(s: &str) -> Result<Duration, String> {
    let n: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if n < 0.0 {
        return Err(format!("{s} is negative: a job takes 0 seconds or more"));
    }
    Duration::try_from_secs_f64(n)
        .map_err(|_| format!("{s} seconds is not a duration this app can wait"))
}

/// The seed's words for a job's state.
fn status(state: JobState) -> &'static str {
    match state {
        JobState::Scheduled | JobState::Queued => "in_queue",
        JobState::Running => "in_progress",
        JobState::Succeeded => "complete",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn error(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        code,
        Json(json!({"error": {"message": message.to_string()}})),
    )
        .into_response()
}

/// `POST /request/{uid}`: `202` once the job is on disk; posting a uid
/// again returns the same job with its current status (`200`, as the
/// Orderly API answers an idempotent replay).
async fn request(State(o): State<Orderly>, Path(uid): Path<String>) -> Response {
    let job = match NewJob::new(&json!({ "uid": uid })) {
        Ok(j) => j.id(uid.clone()),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match o.enqueue(QUEUE, job).await {
        Ok(e) => (
            if e.created {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            },
            Json(Request {
                uid: &uid,
                status: status(e.job.state),
            }),
        )
            .into_response(),
        Err(e) if bad_uid(&e) => error(StatusCode::BAD_REQUEST, e),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Whether an enqueue failed because of the uid itself (not a job id Orderly
/// accepts), rather than the store.
fn bad_uid(e: &orderly::Error) -> bool {
    use orderly::{Error, ServiceError, StoreError};
    matches!(
        e,
        Error::Invalid(_)
            | Error::Service(ServiceError::Validation(_))
            | Error::Service(ServiceError::Store(StoreError::Invalid(_)))
    )
}

/// A request as the seed showed it: `{"uid", "status"}`, in that order.
#[derive(serde::Serialize)]
struct Request<'a> {
    uid: &'a str,
    status: &'static str,
}

/// A JSON object whose members keep the order they are given in.
struct InOrder(Vec<(String, &'static str)>);

impl serde::Serialize for InOrder {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .iter()
                .map(|(uid, status)| (uid, Request { uid, status })),
        )
    }
}

/// `GET /status`: every request and its state, in the order they came.
async fn status_all(State(o): State<Orderly>) -> Response {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = match o.jobs(QUEUE, after, 1000).await {
            Ok(p) => p,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
        };
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for j in page {
            out.push((j.id, status(j.state)));
        }
    }
    Json(InOrder(out)).into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let orderly = Orderly::open(&args.data_dir).await?;
    let seconds = args.job_seconds;
    orderly.handle(QUEUE, 1, move |job: JobCx<Value>| async move {
        println!("start {} (attempt {})", job.id, job.attempt);
        tokio::select! {
            _ = tokio::time::sleep(seconds) => {}
            _ = job.cancelled() => return Err(orderly::Fail::fatal("stopped")),
        }
        println!("done {}", job.id);
        Ok::<_, orderly::Fail>(json!({"uid": job.id}))
    })?;
    let app = Router::new()
        .route("/request/{uid}", post(request))
        .route("/status", get(status_all))
        .with_state(orderly.clone())
        .nest("/orderly", orderly.router());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal())
        .await?;
    // A running job gets the grace period to finish; past it, it reruns
    // first on the next start.
    orderly.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let term = async {
        #[cfg(unix)]
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
