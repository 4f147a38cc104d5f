//! [`WebhookHandler`]: POSTs each job to a URL (contract section 6, the
//! webhook executor).
//!
//! One request per job: the body is the JSON object `{"id", "queue", "key",
//! "seq", "attempt", "payload"}`, sent with `Content-Type: application/json`,
//! `Orderly-Job-Id`, `Orderly-Queue`, `Orderly-Attempt`, the configured
//! headers and, with a secret, an `Orderly-Signature` (see [`signature`] and
//! `docs/webhooks.md`). What the answer means is decided in `response.rs`: a
//! 2xx succeeds with its body (bounded) as the result, `429`/`503` honour
//! `Retry-After`, `410 Gone` fails for good, anything else — a redirect too,
//! since none is followed — fails the attempt.
//!
//! Invariants:
//! - One `reqwest::Client` per handler, so every job reuses its pooled
//!   connections; clones share it.
//! - A body is never read past its bound: chunks are counted as they arrive
//!   and the read stops at the bound.
//! - The per-request timeout covers the whole exchange (connect, headers and
//!   body); a cancel of the job drops the request at once, closing its
//!   connection.
//! - The secret and the configured header values (which may hold tokens)
//!   never appear in `Debug` output.

mod response;
pub mod signature;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::{json, Value};
use url::Url;

use crate::handler::{CancelReason, Failure, Handler, Job, JobContext};
pub use response::{ERROR_BODY_TAIL_BYTES, MAX_RETRY_AFTER};

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound of a response body taken as the result (1 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1_048_576;

/// Header carrying the job's id.
pub const JOB_ID_HEADER: &str = "Orderly-Job-Id";
/// Header carrying the job's queue.
pub const QUEUE_HEADER: &str = "Orderly-Queue";
/// Header carrying the attempt number (1 on the first run).
pub const ATTEMPT_HEADER: &str = "Orderly-Attempt";

/// POSTs each job to a URL. See the module docs.
#[derive(Clone)]
pub struct WebhookHandler {
    url: Url,
    headers: HeaderMap,
    timeout: Duration,
    secret: Option<String>,
    max_response: usize,
    client: reqwest::Client,
}

/// Why a [`WebhookHandler`] cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL does not parse.
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(#[source] url::ParseError),
    /// The URL's scheme is not `http` or `https`.
    #[error("webhook URL scheme {scheme:?} is not supported: use http or https")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// A header name is not a valid HTTP header name.
    #[error("invalid header name {name:?}: {source}")]
    InvalidHeaderName {
        /// The name given.
        name: String,
        /// Why it is invalid.
        #[source]
        source: reqwest::header::InvalidHeaderName,
    },
    /// A header value is not a valid HTTP header value (the value is not
    /// repeated here: it may be a credential).
    #[error("invalid value for header {name:?}: {source}")]
    InvalidHeaderValue {
        /// The header's name.
        name: String,
        /// Why the value is invalid.
        #[source]
        source: reqwest::header::InvalidHeaderValue,
    },
    /// The header is set by Orderly itself.
    #[error(
        "header {name:?} is set by Orderly and cannot be configured \
         (reserved: Content-Type, Content-Length, Transfer-Encoding, Orderly-*)"
    )]
    ReservedHeader {
        /// The name given.
        name: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the webhook's HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl WebhookHandler {
    /// A handler that POSTs to `url` (`http` or `https`), with the default
    /// timeout and response bound, no extra headers and no secret.
    pub fn new(url: &str) -> Result<Self, WebhookError> {
        let url = Url::parse(url).map_err(WebhookError::InvalidUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookError::UnsupportedScheme {
                scheme: url.scheme().to_string(),
            });
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("orderly-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhookError::Client)?;
        Ok(WebhookHandler {
            url,
            headers: HeaderMap::new(),
            timeout: DEFAULT_TIMEOUT,
            secret: None,
            max_response: DEFAULT_MAX_RESPONSE_BYTES,
            client,
        })
    }

    /// Adds a header to every request (a name given twice is sent twice).
    /// Names Orderly sets itself are refused: `Content-Type`,
    /// `Content-Length`, `Transfer-Encoding` and every `Orderly-*`.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, WebhookError> {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|source| {
            WebhookError::InvalidHeaderName {
                name: name.to_string(),
                source,
            }
        })?;
        // `HeaderName` is lowercase.
        let reserved = matches!(
            header.as_str(),
            "content-type" | "content-length" | "transfer-encoding"
        ) || header.as_str().starts_with("orderly-");
        if reserved {
            return Err(WebhookError::ReservedHeader {
                name: name.to_string(),
            });
        }
        let mut value =
            HeaderValue::from_str(value).map_err(|source| WebhookError::InvalidHeaderValue {
                name: name.to_string(),
                source,
            })?;
        value.set_sensitive(true);
        self.headers.append(header, value);
        Ok(self)
    }

    /// The limit of one request, from connecting to the end of the response
    /// body (default 30 s).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Signs every request with this secret (`None`: unsigned). See
    /// [`signature`].
    pub fn secret(mut self, secret: Option<String>) -> Self {
        self.secret = secret;
        self
    }

    /// Most bytes of a 2xx response body taken as the result (default 1 MiB);
    /// a larger body fails the attempt.
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response = max;
        self
    }

    /// The URL it POSTs to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The request for `job`: body, Orderly's headers, the configured ones
    /// and the signature.
    fn request(&self, job: &Job) -> Result<reqwest::Request, Failure> {
        let body = serde_json::to_vec(&json!({
            "id": job.id,
            "queue": job.queue,
            "key": job.key,
            "seq": job.seq,
            "attempt": job.attempt,
            "payload": job.payload,
        }))
        .map_err(|e| Failure::fatal(json!({"message": format!("cannot encode the job: {e}")})))?;
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in [
            (JOB_ID_HEADER, job.id.clone()),
            (QUEUE_HEADER, job.queue.clone()),
            (ATTEMPT_HEADER, job.attempt.to_string()),
        ] {
            let value = HeaderValue::try_from(value).map_err(|e| {
                Failure::fatal(json!({
                    "message": format!("the job cannot be described in the {name} header: {e}"),
                }))
            })?;
            headers.insert(name, value);
        }
        if let Some(secret) = &self.secret {
            let value = signature::header_value(secret.as_bytes(), unix_now(), &body);
            let mut value = HeaderValue::try_from(value).map_err(|e| {
                Failure::fatal(json!({"message": format!("cannot build the signature: {e}")}))
            })?;
            value.set_sensitive(true);
            headers.insert(signature::SIGNATURE_HEADER, value);
        }
        self.client
            .post(self.url.clone())
            .headers(headers)
            .body(body)
            .build()
            .map_err(|e| {
                Failure::fatal(json!({
                    "message": format!("cannot build the request: {}", response::error_chain(e)),
                }))
            })
    }
}

/// Seconds since the Unix epoch (0 for a clock set before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl fmt::Debug for WebhookHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("redacted"));
        }
        let header_names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("WebhookHandler")
            .field("url", &url.as_str())
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("max_response_bytes", &self.max_response)
            .finish_non_exhaustive()
    }
}

/// The failure of a run stopped by its context.
fn cancelled(reason: Option<CancelReason>) -> Failure {
    match reason {
        Some(CancelReason::LeaseLost) => Failure::retryable(json!({
            "message": "lease lost while the webhook request was in flight",
            "kind": "cancelled",
        })),
        Some(CancelReason::Shutdown) => Failure::retryable(json!({
            "message": "stopped by a shutdown while the webhook request was in flight",
            "kind": "cancelled",
        })),
        _ => Failure::fatal(json!({
            "message": "cancelled while the webhook request was in flight",
            "kind": "cancelled",
        })),
    }
}

#[async_trait::async_trait]
impl Handler for WebhookHandler {
    async fn handle(&self, job: Job, ctx: JobContext) -> Result<Value, Failure> {
        let request = self.request(&job)?;
        let exchange = async {
            let answer = self
                .client
                .execute(request)
                .await
                .map_err(response::transport_failure)?;
            response::outcome(answer, self.max_response).await
        };
        tokio::select! {
            biased;
            _ = ctx.cancelled() => Err(cancelled(ctx.cancel_reason())),
            done = tokio::time::timeout(self.timeout, exchange) => done.unwrap_or_else(|_| {
                Err(Failure::retryable(json!({
                    "message": format!(
                        "the webhook request timed out after {} ms",
                        self.timeout.as_millis()
                    ),
                    "kind": "timeout",
                    "timeout_ms": u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                })))
            }),
        }
    }
}
