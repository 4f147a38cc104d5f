//! `/v1/queues…`: list, inspect and configure queues, and read a queue's
//! start log.

use axum::extract::State;
use orderly_proto::{
    ErrorBody, QueueConfigRequest, QueueListResponse, QueueView, StartListResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::convert::{queue_patch, queue_view, start_view};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::reply::Json;
use crate::AppState;

/// `GET /v1/queues`.
#[utoipa::path(
    get,
    path = "/v1/queues",
    operation_id = "list_queues",
    tag = "queues",
    responses((status = 200, description = "Every queue that is configured or has jobs, by name.", body = QueueListResponse))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<QueueListResponse>, ApiError> {
    let queues = state.service.queues().await?;
    Ok(Json(QueueListResponse {
        queues: queues.into_iter().map(queue_view).collect(),
    }))
}

/// `GET /v1/queues/{queue}`.
#[utoipa::path(
    get,
    path = "/v1/queues/{queue}",
    operation_id = "get_queue",
    tag = "queues",
    params(("queue" = String, Path, description = "Queue name: 1 to 100 bytes of `A-Z a-z 0-9 . _ -`.", pattern = r"^[A-Za-z0-9._-]{1,100}$")),
    responses(
        (status = 200, description = "The queue's configuration and counts.", body = QueueView),
        (status = 400, description = "The queue name is malformed (`invalid_queue_name`).", body = ErrorBody),
        (status = 404, description = "The queue was never configured nor used (`queue_not_found`).", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
) -> Result<Json<QueueView>, ApiError> {
    Ok(Json(queue_view(state.service.queue(&queue).await?)))
}

/// `PUT /v1/queues/{queue}`: fields left out keep their value.
#[utoipa::path(
    put,
    path = "/v1/queues/{queue}",
    operation_id = "configure_queue",
    tag = "queues",
    params(("queue" = String, Path, description = "Queue name: 1 to 100 bytes of `A-Z a-z 0-9 . _ -`.", pattern = r"^[A-Za-z0-9._-]{1,100}$")),
    request_body = QueueConfigRequest,
    responses(
        (status = 200, description = "The queue as configured now.", body = QueueView),
        (status = 400, description = "A field is malformed or out of range (`invalid_value`, `invalid_queue_name`).", body = ErrorBody),
    )
)]
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StartsQuery {
    /// Only starts with `start_no` above this (cursor).
    #[param(nullable = false)]
    pub after: Option<i64>,
    /// Page size, 1–1000 (default 100).
    #[param(nullable = false, minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `GET /v1/queues/{queue}/starts`: the start log, every start the server
/// made in the queue in `start_no` order, with a cursor to the next page.
/// A queue without starts (or never used) has an empty log, as its job list is.
#[utoipa::path(
    get,
    path = "/v1/queues/{queue}/starts",
    operation_id = "list_starts",
    tag = "queues",
    params(("queue" = String, Path, description = "Queue name: 1 to 100 bytes of `A-Z a-z 0-9 . _ -`.", pattern = r"^[A-Za-z0-9._-]{1,100}$"), StartsQuery),
    responses(
        (status = 200, description = "A page of the queue's start log by `start_no`.", body = StartListResponse),
        (status = 400, description = "The queue name, `after` or `limit` is malformed or out of range.", body = ErrorBody),
    )
)]
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
