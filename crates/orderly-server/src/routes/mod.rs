//! HTTP routes, one module per resource. Handlers extract, call the service
//! once, and shape the answer; errors go through [`crate::error::ApiError`].

pub mod dashboard;
pub mod events;
pub mod jobs;
pub mod queues;
pub mod system;
pub mod workers;

use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::extract::BodyLimit;
use crate::AppState;

/// The API router, without authentication (see [`crate::router`]).
pub fn api(state: &AppState) -> Router<AppState> {
    let single = Extension(BodyLimit(
        state.config.max_payload_bytes.saturating_add(64 * 1024),
    ));
    let batch = Extension(BodyLimit(state.config.max_body_bytes));
    Router::new()
        .route("/metrics", get(system::metrics))
        .route("/v1/queues", get(queues::list))
        .route(
            "/v1/queues/{queue}",
            get(queues::get).put(queues::configure),
        )
        .route(
            "/v1/queues/{queue}/jobs",
            post(jobs::enqueue).layer(single).get(jobs::list),
        )
        .route(
            "/v1/queues/{queue}/jobs/batch",
            post(jobs::enqueue_batch).layer(batch),
        )
        .route("/v1/queues/{queue}/starts", get(queues::starts))
        .route("/v1/queues/{queue}/claim", post(workers::claim))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/attempts", get(jobs::attempts))
        .route("/v1/jobs/{id}/wait", get(jobs::wait))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route(
            "/v1/jobs/{id}/heartbeat",
            post(workers::heartbeat).layer(single),
        )
        .route(
            "/v1/jobs/{id}/complete",
            post(workers::complete).layer(single),
        )
        .route("/v1/jobs/{id}/fail", post(workers::fail).layer(single))
        .route("/v1/reports", post(workers::reports).layer(batch))
        .route("/v1/events", get(events::events))
}

/// The cursor of the page after one of `len` items asked with `limit` (the
/// default page size when `None`) whose last item has cursor `last`: that
/// cursor when the page is full, `None` when it is the last page.
fn next_after(len: usize, limit: Option<u32>, last: Option<i64>) -> Option<i64> {
    let limit = limit.unwrap_or(orderly_core::validate::DEFAULT_LIST_LIMIT);
    (len == limit as usize).then_some(last).flatten()
}
