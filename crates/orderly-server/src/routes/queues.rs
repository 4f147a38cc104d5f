//! `/v1/queues…`: list, inspect and configure queues.

use axum::extract::State;
use axum::Json;
use orderly_proto::{QueueConfigRequest, QueueListResponse, QueueView};

use crate::convert::{queue_patch, queue_view};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
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
