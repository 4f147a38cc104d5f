//! `/healthz`, authentication, and the JSON fallbacks for unknown routes.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orderly_proto::{codes, HealthResponse};

use crate::error::ApiError;
use crate::reply::Json;
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

/// The response header naming what the request's credentials may do:
/// `full` or `read-only` (the dashboard greys out its actions on `read-only`).
pub const ACCESS_HEADER: &str = "orderly-access";

/// Guards the API. With tokens (`--token`, `--read-token`): requires
/// `Authorization: Bearer <token>`; the read-only token may only `GET` (and
/// `HEAD`), anything else gets `403 read_only`. Without tokens (a loopback
/// server): refuses requests that a web page of another site makes the
/// browser send (they carry an `Origin` that is neither loopback nor this
/// server's own), so a page cannot enqueue jobs into a local server behind
/// the user's back. Tokens travel in a header, never in a cookie, so another
/// site's page cannot make the browser send them: no CSRF.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let config = &state.config;
    if config.token.is_none() && config.read_token.is_none() {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("?"));
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        return match origin {
            Some(o) if !is_loopback_origin(o) && !is_own_origin(o, host) => ApiError::new(
                StatusCode::FORBIDDEN,
                codes::FORBIDDEN_ORIGIN,
                format!("requests from web pages of {o} are refused: this server has no token, so only local pages and its own (opened by IP address) may call it; set --token to use it from elsewhere"),
            )
            .into_response(),
            _ => with_access(next.run(req).await, "full"),
        };
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let matches = |want: &Option<String>, t: &str| {
        want.as_deref()
            .is_some_and(|w| constant_time_eq(t.as_bytes(), w.as_bytes()))
    };
    match given {
        Some(t) if matches(&config.token, t) => with_access(next.run(req).await, "full"),
        Some(t) if matches(&config.read_token, t) => {
            if req.method() == Method::GET || req.method() == Method::HEAD {
                with_access(next.run(req).await, "read-only")
            } else {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    codes::READ_ONLY,
                    format!(
                        "the read-only token may read (GET) but not {} {}: use the full token (--token) to change anything",
                        req.method(),
                        req.uri().path()
                    ),
                )
                .into_response()
            }
        }
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

fn with_access(mut res: Response, access: &'static str) -> Response {
    res.headers_mut()
        .insert(ACCESS_HEADER, header::HeaderValue::from_static(access));
    res
}

/// True when `origin` is this server's own: its `host[:port]` is the
/// request's `Host` (a page the server served itself, on whatever address
/// it listens on), and that host is an IP address. Default ports are the
/// same as none. A host *name* is not enough: a hostile site can point its
/// own name at this server's address (DNS rebinding) and its pages would
/// then look same-origin; with a token that cannot matter.
fn is_own_origin(origin: &str, host: Option<&str>) -> bool {
    let (Some((scheme, authority)), Some(host)) = (origin.split_once("://"), host) else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let norm = |a: &str| {
        let a = a.to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_string(),
            None => a,
        }
    };
    let authority = norm(authority);
    let ip_host = match authority.strip_prefix('[') {
        Some(v6) => v6
            .split(']')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
        None => authority
            .split(':')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv4Addr>().is_ok()),
    };
    ip_host && authority == norm(host)
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
