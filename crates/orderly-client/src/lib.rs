//! # orderly-client
//!
//! A typed client for Orderly's HTTP API (the types are
//! [`orderly_proto`]'s). The CLI, the worker runtime, the benchmark and the
//! end-to-end tests all talk to the server through it.

use orderly_proto::{
    AttemptListResponse, BatchRequest, BatchResponse, ClaimRequest, ClaimResponse, CompleteRequest,
    EnqueueRequest, ErrorBody, FailRequest, HealthResponse, HeartbeatRequest, HeartbeatResponse,
    JobListResponse, JobView, QueueConfigRequest, QueueListResponse, QueueView, ReportResponse,
    ReportsRequest, ReportsResponse, StartListResponse,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use orderly_proto as proto;

pub mod events;
pub use events::{EventStream, EventsQuery, SseMessage, StreamItem};

use std::time::Duration;

/// Time limit of a request that does not long-poll.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Time limit of a long poll that may wait `wait_ms` on the server.
fn long_poll(wait_ms: u64) -> Duration {
    REQUEST_TIMEOUT + Duration::from_millis(wait_ms)
}

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{status}: {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Server's message.
        message: String,
    },
    /// The request did not complete (connection refused, reset, timeout).
    #[error("cannot reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    /// The answer was not what the API promises.
    #[error("unexpected answer ({status}): {detail}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
}

impl ClientError {
    /// The API error code, if the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => Some(*status),
            ClientError::Transport(_) => None,
        }
    }
}

/// A client bound to one server.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// `base` parsed once: each request's URL is a copy with its path and
    /// query set, where parsing the joined text again cost about 6,000
    /// instructions a request, most of them the host's (docs/performance.md,
    /// stop 24). `None` when `base` does not parse: requests then pass the
    /// joined text, and it fails as it always did.
    base_url: Option<reqwest::Url>,
    token: Option<String>,
}

/// Result of an enqueue: the job and whether it was newly created (`202`) or a replay (`200`).
#[derive(Debug, Clone)]
pub struct Enqueued<T> {
    /// The job(s).
    pub value: T,
    /// `true` for `202 Accepted`, `false` for `200` (idempotent replay).
    pub created: bool,
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:7771`).
    pub fn new(base: impl Into<String>, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            // Drop idle connections well before the server's idle timeout
            // (60 s by default) closes them, so no request races that close.
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()
            // Building fails only if the TLS/DNS backend cannot start; fall back to defaults.
            .unwrap_or_else(|_| reqwest::Client::new());
        let base = base.into().trim_end_matches('/').to_string();
        Client {
            http,
            base_url: reqwest::Url::parse(&base).ok(),
            base,
            token,
        }
    }

    /// A request to `path` (from the API's root, with its query if any).
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        match self.url(path) {
            Some(url) => self.http.request(method, url),
            None => self.http.request(method, format!("{}{}", self.base, path)),
        }
    }

    /// The URL of `path`: the parsed base with `path` after its own path.
    fn url(&self, path: &str) -> Option<reqwest::Url> {
        let mut url = self.base_url.clone()?;
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url.set_query(query);
        Some(url)
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(StatusCode, T), ClientError> {
        self.call_within(method, path, body, REQUEST_TIMEOUT).await
    }

    /// [`Self::call`] with a time limit for the whole exchange (long polls need more).
    async fn call_within<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<(StatusCode, T), ClientError> {
        let mut req = self.request(method, path).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map(|v| (status, v))
                .map_err(|e| ClientError::Decode {
                    status: status.as_u16(),
                    detail: e.to_string(),
                })
        } else {
            Err(error_of(status, &bytes))
        }
    }

    /// `GET /v1/events`: opens the stream (it has no time limit; the
    /// server sends a keep-alive comment every 15 s while it is idle).
    pub async fn events(&self, q: &EventsQuery) -> Result<EventStream, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(queue) = &q.queue {
            query.push(("queue", queue.clone()));
        }
        if let Some(job) = &q.job {
            query.push(("job", job.clone()));
        }
        let mut req = self.request(Method::GET, "/v1/events").query(&query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = q.last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await?;
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => ClientError::Api {
                    status: status.as_u16(),
                    code: b.error.code.to_string(),
                    message: b.error.message,
                },
                Err(_) => ClientError::Decode {
                    status: status.as_u16(),
                    detail: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                },
            });
        }
        Ok(EventStream {
            resp,
            parser: events::SseParser::default(),
            ready: Default::default(),
            last_event_id: q.last_event_id,
        })
    }

    /// `POST /v1/queues/{queue}/jobs`.
    pub async fn enqueue(
        &self,
        queue: &str,
        job: &EnqueueRequest,
    ) -> Result<Enqueued<JobView>, ClientError> {
        let (s, value) = self
            .call(Method::POST, &format!("/v1/queues/{queue}/jobs"), Some(job))
            .await?;
        Ok(Enqueued {
            value,
            created: s == StatusCode::ACCEPTED,
        })
    }

    /// `POST /v1/queues/{queue}/jobs/batch`.
    pub async fn enqueue_batch(
        &self,
        queue: &str,
        jobs: &BatchRequest,
    ) -> Result<Enqueued<Vec<JobView>>, ClientError> {
        let (s, r): (_, BatchResponse) = self
            .call(
                Method::POST,
                &format!("/v1/queues/{queue}/jobs/batch"),
                Some(jobs),
            )
            .await?;
        Ok(Enqueued {
            value: r.jobs,
            created: s == StatusCode::ACCEPTED,
        })
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<JobView, ClientError> {
        Ok(self
            .call::<(), _>(Method::GET, &format!("/v1/jobs/{id}"), None)
            .await?
            .1)
    }

    /// `GET /v1/jobs/{id}/wait?timeout_ms=`.
    pub async fn wait(&self, id: &str, timeout_ms: u64) -> Result<JobView, ClientError> {
        Ok(self
            .call_within::<(), _>(
                Method::GET,
                &format!("/v1/jobs/{id}/wait?timeout_ms={timeout_ms}"),
                None,
                long_poll(timeout_ms),
            )
            .await?
            .1)
    }

    /// `GET /v1/queues/{queue}/jobs?state=&after=&limit=`.
    pub async fn list(
        &self,
        queue: &str,
        state: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<JobListResponse, ClientError> {
        let mut path = format!("/v1/queues/{queue}/jobs?limit={limit}");
        if let Some(s) = state {
            path.push_str(&format!("&state={s}"));
        }
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        Ok(self.call::<(), _>(Method::GET, &path, None).await?.1)
    }

    /// `GET /v1/queues/{queue}/jobs?key=&after=&limit=`: the line of `key`
    /// (its unfinished jobs) in `seq` order.
    pub async fn list_key(
        &self,
        queue: &str,
        key: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<JobListResponse, ClientError> {
        let mut path = format!("/v1/queues/{queue}/jobs?limit={limit}&key=");
        path.push_str(&percent_encode(key));
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        Ok(self.call::<(), _>(Method::GET, &path, None).await?.1)
    }

    /// `GET /v1/jobs/{id}/attempts`: every recorded attempt of a job, oldest first.
    pub async fn attempts(&self, id: &str) -> Result<AttemptListResponse, ClientError> {
        Ok(self
            .call::<(), _>(Method::GET, &format!("/v1/jobs/{id}/attempts"), None)
            .await?
            .1)
    }

    /// `GET /v1/queues/{queue}/starts?after=&limit=`: a page of the start log.
    pub async fn starts(
        &self,
        queue: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<StartListResponse, ClientError> {
        let mut path = format!("/v1/queues/{queue}/starts?limit={limit}");
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        Ok(self.call::<(), _>(Method::GET, &path, None).await?.1)
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<JobView, ClientError> {
        Ok(self
            .call::<(), _>(Method::POST, &format!("/v1/jobs/{id}/cancel"), None)
            .await?
            .1)
    }

    /// `POST /v1/jobs/{id}/retry`.
    pub async fn retry(&self, id: &str) -> Result<JobView, ClientError> {
        Ok(self
            .call::<(), _>(Method::POST, &format!("/v1/jobs/{id}/retry"), None)
            .await?
            .1)
    }

    /// `GET /v1/queues`.
    pub async fn queues(&self) -> Result<Vec<QueueView>, ClientError> {
        Ok(self
            .call::<(), QueueListResponse>(Method::GET, "/v1/queues", None)
            .await?
            .1
            .queues)
    }

    /// `GET /v1/queues/{queue}`.
    pub async fn queue(&self, name: &str) -> Result<QueueView, ClientError> {
        Ok(self
            .call::<(), _>(Method::GET, &format!("/v1/queues/{name}"), None)
            .await?
            .1)
    }

    /// `PUT /v1/queues/{queue}`.
    pub async fn configure(
        &self,
        name: &str,
        config: &QueueConfigRequest,
    ) -> Result<QueueView, ClientError> {
        Ok(self
            .call(Method::PUT, &format!("/v1/queues/{name}"), Some(config))
            .await?
            .1)
    }

    /// `POST /v1/queues/{queue}/claim`.
    pub async fn claim(
        &self,
        queue: &str,
        req: &ClaimRequest,
    ) -> Result<ClaimResponse, ClientError> {
        Ok(self
            .call_within(
                Method::POST,
                &format!("/v1/queues/{queue}/claim"),
                Some(req),
                long_poll(req.wait_ms),
            )
            .await?
            .1)
    }

    /// `POST /v1/jobs/{id}/heartbeat`.
    pub async fn heartbeat(
        &self,
        id: &str,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        Ok(self
            .call(Method::POST, &format!("/v1/jobs/{id}/heartbeat"), Some(req))
            .await?
            .1)
    }

    /// `POST /v1/jobs/{id}/complete`.
    pub async fn complete(
        &self,
        id: &str,
        req: &CompleteRequest,
    ) -> Result<ReportResponse, ClientError> {
        let wait_ms = req.claim_next.as_ref().map_or(0, |c| c.wait_ms);
        Ok(self
            .call_within(
                Method::POST,
                &format!("/v1/jobs/{id}/complete"),
                Some(req),
                long_poll(wait_ms),
            )
            .await?
            .1)
    }

    /// `POST /v1/jobs/{id}/fail`.
    pub async fn fail(&self, id: &str, req: &FailRequest) -> Result<ReportResponse, ClientError> {
        let wait_ms = req.claim_next.as_ref().map_or(0, |c| c.wait_ms);
        Ok(self
            .call_within(
                Method::POST,
                &format!("/v1/jobs/{id}/fail"),
                Some(req),
                long_poll(wait_ms),
            )
            .await?
            .1)
    }

    /// `POST /v1/reports`.
    pub async fn reports(&self, req: &ReportsRequest) -> Result<ReportsResponse, ClientError> {
        Ok(self.call(Method::POST, "/v1/reports", Some(req)).await?.1)
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        Ok(self.call::<(), _>(Method::GET, "/healthz", None).await?.1)
    }

    /// `GET /metrics`: the Prometheus exposition, as text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let mut req = self
            .request(Method::GET, "/metrics")
            .timeout(REQUEST_TIMEOUT);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            Err(error_of(status, &bytes))
        }
    }
}

/// The error an unsuccessful answer carries: the API's `{error}` body, or
/// what came instead.
fn error_of(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(b) => ClientError::Api {
            status: status.as_u16(),
            code: b.error.code.to_string(),
            message: b.error.message,
        },
        Err(_) => ClientError::Decode {
            status: status.as_u16(),
            detail: String::from_utf8_lossy(bytes).chars().take(500).collect(),
        },
    }
}

/// `s` as a query-string value: every byte but the unreserved ones
/// (`A-Z a-z 0-9 - . _ ~`) percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's URL made from the parsed base is the URL the joined text
    /// parses to, for every kind of path the client sends.
    #[test]
    fn urls_from_the_parsed_base_are_the_joined_texts() {
        let paths = [
            "/healthz",
            "/v1/reports",
            "/v1/queues/q-1.a_b/jobs",
            "/v1/jobs/%2Fodd%20id%3F/attempts",
            "/v1/queues/q/jobs?state=queued&after=17&limit=50",
            "/v1/queues/q/claim?wait_ms=1000",
            "/v1/jobs/é ü/wait?timeout_ms=5",
        ];
        for base in [
            "http://127.0.0.1:7771",
            "http://127.0.0.1:7771/",
            "http://localhost:80/prefix",
            "https://orderly.example/a/b/",
        ] {
            let client = Client::new(base, None);
            for path in paths {
                let joined = reqwest::Url::parse(&format!("{}{path}", client.base()))
                    .expect("the joined text parses");
                assert_eq!(client.url(path), Some(joined), "{base} + {path}");
            }
        }
        assert_eq!(Client::new("not a url", None).url("/healthz"), None);
    }
}
