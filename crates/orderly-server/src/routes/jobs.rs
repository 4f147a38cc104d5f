//! `/v1/queues/{queue}/jobs…` and `/v1/jobs/{id}…`: enqueue, inspect (with
//! the attempt history), wait, cancel, retry.

use axum::extract::State;
use axum::http::StatusCode;
use orderly_proto::{
    AttemptListResponse, BatchRequest, BatchResponse, EnqueueRequest, ErrorBody, JobListResponse,
    JobView,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::convert::{attempt_view, job_request, job_view, state_filter};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::reply::Json;
use crate::AppState;

/// `POST /v1/queues/{queue}/jobs`: `202` with the job, or `200` for an idempotent replay.
#[utoipa::path(
    post,
    path = "/v1/queues/{queue}/jobs",
    operation_id = "enqueue_job",
    tag = "jobs",
    params(("queue" = String, Path, description = "Queue name: 1 to 100 bytes of `A-Z a-z 0-9 . _ -`.", pattern = r"^[A-Za-z0-9._-]{1,100}$")),
    request_body = EnqueueRequest,
    responses(
        (status = 202, description = "Accepted: the new job.", body = JobView),
        (status = 200, description = "An idempotent replay: the job already accepted with this `id` and the same content.", body = JobView),
        (status = 400, description = "A field is malformed or out of range (`invalid_value`, `invalid_queue_name`, `invalid_job_id`, `invalid_key`).", body = ErrorBody),
        (status = 409, description = "The `id` names a job with other content (`id_conflict`).", body = ErrorBody),
    )
)]
pub async fn enqueue(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiJson(req): ApiJson<EnqueueRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let req = job_request(req, None)?;
    let mut out = state.service.enqueue(&queue, vec![req], false).await?;
    let e = out.pop().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            orderly_proto::codes::INTERNAL,
            "enqueue returned nothing",
        )
    })?;
    let status = if e.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(job_view(e.job))))
}

/// `POST /v1/queues/{queue}/jobs/batch`: all or nothing, in array order.
#[utoipa::path(
    post,
    path = "/v1/queues/{queue}/jobs/batch",
    operation_id = "enqueue_batch",
    tag = "jobs",
    params(("queue" = String, Path, description = "Queue name: 1 to 100 bytes of `A-Z a-z 0-9 . _ -`.", pattern = r"^[A-Za-z0-9._-]{1,100}$")),
    request_body = BatchRequest,
    responses(
        (status = 202, description = "Accepted, all of them: the jobs in request order.", body = BatchResponse),
        (status = 200, description = "Every job was an idempotent replay.", body = BatchResponse),
        (status = 400, description = "A job is malformed, or the batch is empty, too long or repeats an id; nothing was accepted.", body = ErrorBody),
        (status = 409, description = "An `id` names a job with other content (`id_conflict`); nothing was accepted.", body = ErrorBody),
    )
)]
pub async fn enqueue_batch(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiJson(req): ApiJson<BatchRequest>,
) -> Result<(StatusCode, Json<BatchResponse>), ApiError> {
    let jobs = req
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, j)| job_request(j, Some(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let out = state.service.enqueue(&queue, jobs, true).await?;
    let status = if out.iter().any(|e| e.created) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let jobs = out.into_iter().map(|e| job_view(e.job)).collect();
    Ok((status, Json(BatchResponse { jobs })))
}

/// `GET /v1/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    operation_id = "get_job",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id: 1 to 200 bytes of `A-Z a-z 0-9 . _ : -`.", pattern = r"^[A-Za-z0-9._:-]{1,200}$")),
    responses(
        (status = 200, description = "The job.", body = JobView),
        (status = 400, description = "The id is malformed (`invalid_job_id`).", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`).", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(job_view(state.service.job(&id).await?)))
}

/// `GET /v1/jobs/{id}/attempts`: every recorded attempt, oldest first.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/attempts",
    operation_id = "list_attempts",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id: 1 to 200 bytes of `A-Z a-z 0-9 . _ : -`.", pattern = r"^[A-Za-z0-9._:-]{1,200}$")),
    responses(
        (status = 200, description = "Every recorded attempt, oldest first.", body = AttemptListResponse),
        (status = 400, description = "The id is malformed (`invalid_job_id`).", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`).", body = ErrorBody),
    )
)]
pub async fn attempts(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AttemptListResponse>, ApiError> {
    let attempts = state
        .service
        .attempts(&id)
        .await?
        .into_iter()
        .map(attempt_view)
        .collect::<Result<_, _>>()?;
    Ok(Json(AttemptListResponse { attempts }))
}

/// Query of `GET /v1/jobs/{id}/wait`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Longest wait in milliseconds (default 30 s, at most 5 minutes).
    #[param(nullable = false, maximum = 300000)]
    pub timeout_ms: Option<u64>,
}

/// `GET /v1/jobs/{id}/wait?timeout_ms=`: the job once finished, or as it is at the timeout.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/wait",
    operation_id = "wait_job",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id: 1 to 200 bytes of `A-Z a-z 0-9 . _ : -`.", pattern = r"^[A-Za-z0-9._:-]{1,200}$"), WaitQuery),
    responses(
        (status = 200, description = "The job once finished, or as it is when `timeout_ms` passed.", body = JobView),
        (status = 400, description = "The id or `timeout_ms` is malformed or out of range.", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`).", body = ErrorBody),
    )
)]
pub async fn wait(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> Result<Json<JobView>, ApiError> {
    let job = state
        .service
        .wait(&id, q.timeout_ms.unwrap_or(30_000))
        .await?;
    Ok(Json(job_view(job)))
}

/// Query of `GET /v1/queues/{queue}/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this state.
    #[param(nullable = false, value_type = Option<orderly_proto::JobState>)]
    pub state: Option<String>,
    /// Only this key's line: its unfinished jobs (1 to 200 bytes of UTF-8).
    #[param(nullable = false, min_length = 1, max_length = 200)]
    pub key: Option<String>,
    /// Only jobs with `seq` above this (cursor).
    #[param(nullable = false)]
    pub after: Option<i64>,
    /// Page size, 1–1000 (default 100).
    #[param(nullable = false, minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `GET /v1/queues/{queue}/jobs?state=&key=&after=&limit=`: jobs by `seq`,
/// with a cursor to the next page; with `key`, that key's line (its
/// unfinished jobs).
#[utoipa::path(
    get,
    path = "/v1/queues/{queue}/jobs",
    operation_id = "list_jobs",
    tag = "jobs",
    params(("queue" = String, Path, description = "Queue name: 1 to 100 bytes of `A-Z a-z 0-9 . _ -`.", pattern = r"^[A-Za-z0-9._-]{1,100}$"), ListQuery),
    responses(
        (status = 200, description = "A page of the queue's jobs by `seq` (empty for a queue never used).", body = JobListResponse),
        (status = 400, description = "The queue name, `state`, `key`, `after` or `limit` is malformed or out of range, or `key` is given with a finished `state` (a key's line holds only unfinished jobs).", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<JobListResponse>, ApiError> {
    let filter = state_filter(q.state.as_deref())?;
    let jobs = match &q.key {
        Some(key) => {
            state
                .service
                .list_key(&queue, key, filter, q.after, q.limit)
                .await?
        }
        None => state.service.list(&queue, filter, q.after, q.limit).await?,
    };
    let next_after = super::next_after(jobs.len(), q.limit, jobs.last().map(|j| j.seq));
    Ok(Json(JobListResponse {
        jobs: jobs.into_iter().map(job_view).collect(),
        next_after,
    }))
}

/// `POST /v1/jobs/{id}/cancel`.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    operation_id = "cancel_job",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id: 1 to 200 bytes of `A-Z a-z 0-9 . _ : -`.", pattern = r"^[A-Za-z0-9._:-]{1,200}$")),
    responses(
        (status = 200, description = "The job: cancelled, or running with `cancel_requested` (the worker sees it at its next heartbeat).", body = JobView),
        (status = 400, description = "The id is malformed (`invalid_job_id`).", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`).", body = ErrorBody),
        (status = 409, description = "The job has finished (`invalid_state`).", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(job_view(state.service.cancel(&id).await?)))
}

/// `POST /v1/jobs/{id}/retry`.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/retry",
    operation_id = "retry_job",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id: 1 to 200 bytes of `A-Z a-z 0-9 . _ : -`.", pattern = r"^[A-Za-z0-9._:-]{1,200}$")),
    responses(
        (status = 202, description = "The job, back in line with a new `seq`.", body = JobView),
        (status = 400, description = "The id is malformed (`invalid_job_id`).", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`).", body = ErrorBody),
        (status = 409, description = "The job is neither failed nor cancelled (`invalid_state`).", body = ErrorBody),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(job_view(state.service.retry(&id).await?)),
    ))
}
