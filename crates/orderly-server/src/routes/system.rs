//! `/healthz`, authentication, and the JSON fallbacks for unknown routes.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderly_proto::{codes, HealthResponse};

use crate::error::ApiError;
use crate::AppState;

/// `GET /healthz`: `200 ok`, or `503` once storage failed.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "system",
    responses(
        (status = 200, description = "The server and its storage work (`status: ok`).", body = HealthResponse),
        (status = 503, description = "Storage failed (`status: unhealthy`, with the `reason`).", body = HealthResponse),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.service.store().health().await {
        Ok(()) => Json(HealthResponse {
            status: "ok".into(),
            reason: None,
        })
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthResponse {
                status: "unhealthy".into(),
                reason: Some(e.to_string()),
            }),
        )
            .into_response(),
    }
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document (see [`crate::openapi`]).
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json", body = Object))
)]
pub async fn openapi(doc: axum::Extension<crate::openapi::Document>) -> Response {
    crate::openapi::serve(doc).await
}

/// `GET /metrics`: the Prometheus exposition (see [`crate::metrics`]).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "system",
    responses(
        (status = 200, description = "The metrics in the OpenMetrics text format (Prometheus reads it).", content_type = crate::metrics::CONTENT_TYPE, body = String),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.service.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// Unknown route.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// Known route, wrong method.
pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Guards the API. With a token: requires `Authorization: Bearer <token>`.
/// Without one (a loopback server): refuses requests that a web page of
/// another site makes the browser send (they carry a non-loopback `Origin`),
/// so a page cannot enqueue jobs into a local server behind the user's back.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = &state.config.token else {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("?"));
        return match origin {
            Some(o) if !is_loopback_origin(o) => ApiError::new(
                StatusCode::FORBIDDEN,
                codes::FORBIDDEN_ORIGIN,
                format!("requests from web pages of {o} are refused: this server has no token, so only local pages may call it"),
            )
            .into_response(),
            _ => next.run(req).await,
        };
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "the bearer token is wrong",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "this server requires a token: send `Authorization: Bearer <token>`",
        )
        .into_response(),
    }
}

/// `http://localhost:3000`, `http://127.0.0.1`, `http://[::1]:8080`…
fn is_loopback_origin(origin: &str) -> bool {
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
