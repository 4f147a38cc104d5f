//! `/v1/queues…`: list, inspect and configure queues, and read a queue's
//! start log.

use axum::extract::State;
use axum::Json;
use orderly_proto::{QueueConfigRequest, QueueListResponse, QueueView, StartListResponse};
use serde::Deserialize;

use crate::convert::{queue_patch, queue_view, start_view};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;

/// `GET /v1/queues`.
pub async fn list(State(state): State<AppState>) -> Result<Json<QueueListResponse>, ApiError> {
    let queues = state.service.queues().await?;
    Ok(Json(QueueListResponse {
        queues: queues.into_iter().map(queue_view).collect(),
    }))
}

/// `GET /v1/queues/{queue}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
) -> Result<Json<QueueView>, ApiError> {
    Ok(Json(queue_view(state.service.queue(&queue).await?)))
}

/// `PUT /v1/queues/{queue}`: fields left out keep their value.
pub async fn configure(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiJson(req): ApiJson<QueueConfigRequest>,
) -> Result<Json<QueueView>, ApiError> {
    Ok(Json(queue_view(
        state.service.configure(&queue, queue_patch(req)?).await?,
    )))
}

/// Query of `GET /v1/queues/{queue}/starts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartsQuery {
    /// Only starts with `start_no` above this (cursor).
    pub after: Option<i64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

/// `GET /v1/queues/{queue}/starts`: the start log, every start the server
/// made in the queue in `start_no` order, with a cursor to the next page.
/// A queue without starts (or never used) has an empty log, as its job list is.
pub async fn starts(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiQuery(q): ApiQuery<StartsQuery>,
) -> Result<Json<StartListResponse>, ApiError> {
    let starts = state.service.starts(&queue, q.after, q.limit).await?;
    let next_after = super::next_after(starts.len(), q.limit, starts.last().map(|s| s.start_no));
    Ok(Json(StartListResponse {
        starts: starts.into_iter().map(start_view).collect(),
        next_after,
    }))
}
