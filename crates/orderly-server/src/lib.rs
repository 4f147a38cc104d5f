//! # orderly-server
//!
//! Orderly's HTTP server as a library, so the `orderly` binary and a user's
//! own axum application mount the same thing.
//!
//! - [`router`] builds the API (`/v1/…`, `/healthz`) over an [`AppState`];
//! - [`service`] holds the operations independent of HTTP, and the wake-ups
//!   that make long polls answer at once;
//! - [`maintenance`] runs the scheduler/lease reaper and retention;
//! - [`external`] feeds what other nodes commit (a store's
//!   `Store::external`) into the service's wake-ups;
//! - [`executors`] runs the jobs of queues configured with an executor
//!   (a command or a webhook per job) inside the server, and is the
//!   in-process job source the embedded library's handlers use too;
//! - [`routes`] has one handler module per resource, [`extract`] the
//!   extractors with JSON rejections, [`error`] the one mapping to HTTP;
//! - [`serve`] is the accept loop with header, idle, write and shutdown bounds.
//!
//! - [`events`] is the hub behind `GET /v1/events`: every committed change,
//!   numbered, kept in a bounded ring and broadcast to subscribers.
//! - [`metrics`] serves `GET /metrics` (behind the token like the API) and
//!   counts every request by route template.
//!
//! - [`routes::dashboard`] serves the web dashboard: its page and assets,
//!   embedded in the binary, open like `/healthz` (they hold no data; the
//!   page asks for the token and every API call it makes carries it).
//! - [`openapi`] is the OpenAPI 3.1 document of the routes, served open at
//!   `GET /openapi.json`.

pub mod convert;
pub mod error;
pub mod events;
pub mod executors;
pub mod external;
pub mod extract;
pub mod maintenance;
pub mod metrics;
pub mod openapi;
pub mod pace;
pub mod reply;
pub mod routes;
pub mod serve;
pub mod service;
mod waiters;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use orderly_core::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

pub use crate::service::{Limits, Service};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer token required on every route but `/healthz`; `None` leaves the API open.
    pub token: Option<String>,
    /// A second bearer token that may read everything (`GET`) and change
    /// nothing (`403 read_only`); with it set, reads need a token too.
    pub read_token: Option<String>,
    /// Largest job payload, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// Largest request body of batch routes.
    pub max_body_bytes: usize,
    /// Longest a request's headers may take to arrive (slow clients are cut off).
    pub header_timeout: Duration,
    /// Longest a keep-alive connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Longest a JSON request body may take to arrive, once its headers have (`408`).
    pub body_timeout: Duration,
    /// Longest a write to a connection may wait for its client to take bytes
    /// before the connection is dropped (an event subscriber that stopped
    /// reading, too).
    pub write_timeout: Duration,
    /// Maintenance loop settings.
    pub maintenance: maintenance::Config,
    /// Sizes of the event hub of `GET /v1/events`.
    pub events: events::Config,
    /// How long a queue without executor goes without a claim before its
    /// waiting jobs say `waiting_on: no_worker`.
    pub no_worker_after: Duration,
}

impl ServerConfig {
    /// Default payload limit: 1 MiB.
    pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
    /// Default body limit of batch routes: 64 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
    /// Default header timeout: 10 s.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default keep-alive idle timeout: 60 s.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default body timeout: 30 s.
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default write timeout: 30 s.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

    /// The connection limits of [`serve::serve`].
    pub fn connection_timeouts(&self) -> serve::ConnectionTimeouts {
        serve::ConnectionTimeouts {
            header: self.header_timeout,
            idle: self.idle_timeout,
            write: self.write_timeout,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: None,
            read_token: None,
            max_payload_bytes: Self::DEFAULT_MAX_PAYLOAD_BYTES,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
            maintenance: maintenance::Config::default(),
            events: events::Config::default(),
            no_worker_after: Duration::from_millis(Service::DEFAULT_NO_WORKER_AFTER_MS as u64),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The operations.
    pub service: Arc<Service>,
    /// Settings.
    pub config: Arc<ServerConfig>,
}

impl AppState {
    /// State over `store` with `config`.
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Self {
        let limits = Limits {
            max_payload_bytes: config.max_payload_bytes,
        };
        AppState {
            service: Arc::new(
                Service::new(store, limits)
                    .with_events(config.events)
                    .with_no_worker_after(config.no_worker_after),
            ),
            config: Arc::new(config),
        }
    }

    /// Starts the maintenance loops on `tracker`; they stop when `cancel` fires.
    pub fn spawn_background(&self, tracker: &TaskTracker, cancel: &CancellationToken) {
        let c = self.config.maintenance.clone();
        tracker.spawn(maintenance::run_scheduler(
            self.service.clone(),
            c.clone(),
            cancel.clone(),
        ));
        tracker.spawn(maintenance::run_retention(
            self.service.clone(),
            c,
            cancel.clone(),
        ));
        if let Some(rx) = self.service.external() {
            tracker.spawn(external::run(self.service.clone(), rx, cancel.clone()));
        }
    }
}

/// The whole HTTP API: `/v1/…` and `/metrics` behind the optional token, and
/// an open `/healthz`, `/openapi.json` and dashboard (`/`, `/queues/…`,
/// `/jobs/…`, `/dashboard/…`); every request is counted by its route template.
pub fn router(state: AppState) -> Router {
    let body_timeout = extract::BodyTimeout(state.config.body_timeout);
    let (api, api_doc) = routes::api(&state.config).split_for_parts();
    let (open, open_doc) = routes::open().split_for_parts();
    let doc = openapi::finish(api_doc, open_doc);
    let doc = openapi::Document(doc.to_string().into());
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::system::require_token,
        ))
        .method_not_allowed_fallback(routes::system::method_not_allowed);
    Router::new()
        .merge(open)
        .merge(routes::dashboard::routes())
        .merge(api)
        .fallback(routes::system::not_found)
        .method_not_allowed_fallback(routes::system::method_not_allowed)
        .layer(axum::Extension(doc))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track_requests,
        ))
        // Failures are logged once, with their message, where errors become responses.
        .layer(axum::Extension(body_timeout))
        .layer(TraceLayer::new_for_http().on_failure(()))
        .with_state(state)
}
