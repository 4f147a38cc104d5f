//! HTTP routes, one module per resource. Handlers extract, call the service
//! once, and shape the answer; errors go through [`crate::error::ApiError`].

pub mod dashboard;
pub mod events;
pub mod jobs;
pub mod queues;
pub mod system;
pub mod workers;

use axum::Extension;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::extract::BodyLimit;
use crate::{AppState, ServerConfig};

/// The API behind the token (see [`crate::router`]), each route registered
/// and documented by the same `routes!` line, with the body limits of
/// `config`.
pub fn api(config: &ServerConfig) -> OpenApiRouter<AppState> {
    let single = Extension(BodyLimit(
        config.max_payload_bytes.saturating_add(64 * 1024),
    ));
    let batch = Extension(BodyLimit(config.max_body_bytes));
    OpenApiRouter::default()
        .routes(routes!(system::metrics))
        .routes(routes!(queues::list))
        .routes(routes!(queues::get, queues::configure))
        .routes(routes!(jobs::enqueue).layer(single))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::enqueue_batch).layer(batch))
        .routes(routes!(queues::starts))
        .routes(routes!(workers::claim))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::attempts))
        .routes(routes!(jobs::wait))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(workers::heartbeat).layer(single))
        .routes(routes!(workers::complete).layer(single))
        .routes(routes!(workers::fail).layer(single))
        .routes(routes!(workers::reports).layer(batch))
        .routes(routes!(events::events))
}

/// The routes open to anyone: `/healthz` and `/openapi.json`.
pub fn open() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(system::healthz))
        .routes(routes!(system::openapi))
}

/// The cursor of the page after one of `len` items asked with `limit` (the
/// default page size when `None`) whose last item has cursor `last`: that
/// cursor when the page is full, `None` when it is the last page.
fn next_after(len: usize, limit: Option<u32>, last: Option<i64>) -> Option<i64> {
    let limit = limit.unwrap_or(orderly_core::validate::DEFAULT_LIST_LIMIT);
    (len == limit as usize).then_some(last).flatten()
}
