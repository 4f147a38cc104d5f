//! Extractors that own their rejections, so malformed requests get the same
//! JSON error shape as every other error.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use orderly_proto::codes;
use serde::de::DeserializeOwned;
use std::time::Duration;

use crate::error::ApiError;

/// A JSON body read with a size limit (named in the error) and strict parsing.
pub struct ApiJson<T>(pub T);

/// Body limit of routes that set none (claims, queue configuration): their bodies are small.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// The body size limit for the request being served, set per route.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// How long a body may take to arrive once its headers have (a request
/// extension set by [`crate::router`]; [`ServerConfig::DEFAULT_BODY_TIMEOUT`]
/// when absent).
///
/// [`ServerConfig::DEFAULT_BODY_TIMEOUT`]: crate::ServerConfig::DEFAULT_BODY_TIMEOUT
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeout(pub Duration);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .copied()
            .unwrap_or(BodyLimit(SMALL_BODY_BYTES))
            .0;
        let timeout = req
            .extensions()
            .get::<BodyTimeout>()
            .map_or(crate::ServerConfig::DEFAULT_BODY_TIMEOUT, |t| t.0);
        let body: Body = req.into_body();
        let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    codes::BODY_TIMEOUT,
                    format!(
                        "request body did not arrive within the body timeout of {}: \
                         send the whole body (as long as its Content-Length says) at once",
                        humanize(timeout)
                    ),
                ))
            }
            Ok(Err(e)) if is_length_limit(&e) => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    codes::BODY_TOO_LARGE,
                    format!("request body is larger than the limit of {limit} bytes"),
                ))
            }
            Ok(Err(e)) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::MALFORMED_BODY,
                    format!("request body is malformed (bad framing or encoding): {e}"),
                ))
            }
            Ok(Ok(bytes)) => bytes,
        };
        parse_json(&bytes).map(ApiJson)
    }
}

/// Is `e` (or what caused it) the body limit being reached?
fn is_length_limit(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// `30s`, `1.5s`, `250ms`: a duration as the command line writes it.
fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// Parses a JSON body, telling syntax errors from shape errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_JSON,
            "request body is empty: send a JSON object",
        ));
    }
    // Serde also reads a struct from a JSON array (fields by position): refuse
    // anything but an object, so `[…]` is an error and not a silent guess.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
                codes::INVALID_REQUEST
            } else {
                codes::INVALID_JSON
            },
            "request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let code = match e.classify() {
            Category::Data => codes::INVALID_REQUEST,
            _ => codes::INVALID_JSON,
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, format!("request body: {e}"))
    })
}

/// Query parameters with a JSON rejection.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::INVALID_REQUEST,
                    format!("query string: {}", e.body_text()),
                )
            })
    }
}

/// Path parameters with a JSON rejection.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::INVALID_REQUEST,
                    format!("path: {}", e.body_text()),
                )
            })
    }
}
