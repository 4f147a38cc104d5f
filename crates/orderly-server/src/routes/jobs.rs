//! `/v1/queues/{queue}/jobs…` and `/v1/jobs/{id}…`: enqueue, inspect (with
//! the attempt history), wait, cancel, retry.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use orderly_proto::{
    AttemptListResponse, BatchRequest, BatchResponse, EnqueueRequest, JobListResponse, JobView,
};
use serde::Deserialize;

use crate::convert::{attempt_view, job_request, job_view, state_filter};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;

/// `POST /v1/queues/{queue}/jobs`: `202` with the job, or `200` for an idempotent replay.
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
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(job_view(state.service.job(&id).await?)))
}

/// `GET /v1/jobs/{id}/attempts`: every recorded attempt, oldest first.
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Longest wait (default 30 s).
    pub timeout_ms: Option<u64>,
}

/// `GET /v1/jobs/{id}/wait?timeout_ms=`: the job once finished, or as it is at the timeout.
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this state.
    pub state: Option<String>,
    /// Only this key's line: its unfinished jobs.
    pub key: Option<String>,
    /// Only jobs with `seq` above this (cursor).
    pub after: Option<i64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

/// `GET /v1/queues/{queue}/jobs?state=&key=&after=&limit=`: jobs by `seq`,
/// with a cursor to the next page; with `key`, that key's line (its
/// unfinished jobs).
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
pub async fn cancel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(job_view(state.service.cancel(&id).await?)))
}

/// `POST /v1/jobs/{id}/retry`.
pub async fn retry(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(job_view(state.service.retry(&id).await?)),
    ))
}
