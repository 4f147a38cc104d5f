//! Shared fixture of the HTTP API tests: the real router over a real SQLite
//! file in a temporary directory, driven with `tower::ServiceExt::oneshot`.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use orderly_server::{router, AppState, ServerConfig};
use orderly_sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// A request body: JSON, or raw bytes sent as they are.
#[derive(Clone, Debug)]
pub enum Body {
    /// Serialized with `serde_json`.
    Json(Value),
    /// Sent byte for byte.
    Raw(Vec<u8>),
}

impl From<Value> for Body {
    fn from(v: Value) -> Self {
        Body::Json(v)
    }
}

/// Raw bytes as a body.
pub fn raw(bytes: impl Into<Vec<u8>>) -> Body {
    Body::Raw(bytes.into())
}

/// The router over a fresh SQLite store.
pub struct TestApp {
    /// The whole HTTP API.
    pub router: Router,
    /// Its state (for the maintenance loops).
    pub state: AppState,
    /// Token sent by the helpers that do not take one.
    pub token: Option<String>,
    /// Stops the maintenance loops, if spawned.
    pub cancel: CancellationToken,
    /// Holds the database; dropped last.
    pub dir: TempDir,
}

impl TestApp {
    /// Default settings.
    pub fn new() -> Self {
        Self::with_config(ServerConfig::default())
    }

    /// With `config`, over a new temporary directory.
    pub fn with_config(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::in_dir(dir, config)
    }

    /// With `config`, over the store in `dir` (created or reopened).
    pub fn in_dir(dir: TempDir, config: ServerConfig) -> Self {
        let store = SqliteStore::open(&SqliteOptions::new(dir.path())).expect("open store");
        let token = config.token.clone();
        let state = AppState::new(Arc::new(store), config);
        TestApp {
            router: router(state.clone()),
            state,
            token,
            cancel: CancellationToken::new(),
            dir,
        }
    }

    /// Starts the scheduler/reaper and retention loops (stopped on drop).
    pub fn spawn_background(&self) {
        self.state
            .spawn_background(&TaskTracker::new(), &self.cancel);
    }

    /// Sends one request; returns the status and the body as JSON (`null` when empty,
    /// a JSON string holding the text when it is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        call_router(self.router.clone(), method, path, body, token).await
    }

    /// `call` with the app's own token.
    pub async fn req(&self, method: Method, path: &str, body: Option<Body>) -> (StatusCode, Value) {
        let token = self.token.clone();
        self.call(method, path, body, token.as_deref()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.req(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req(Method::POST, path, Some(Body::Json(body))).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req(Method::PUT, path, Some(Body::Json(body))).await
    }

    /// Enqueues one job; asserts `202`.
    pub async fn enqueue(&self, queue: &str, body: Value) -> Value {
        let (status, job) = self.post(&format!("/v1/queues/{queue}/jobs"), body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "enqueue: {job}");
        job
    }

    /// Configures a queue; asserts `200`.
    pub async fn configure(&self, queue: &str, body: Value) -> Value {
        let (status, q) = self.put(&format!("/v1/queues/{queue}"), body).await;
        assert_eq!(status, StatusCode::OK, "configure: {q}");
        q
    }

    /// Claims up to `max` leases without waiting; asserts `200`.
    pub async fn claim(&self, queue: &str, worker: &str, max: u32) -> Vec<Value> {
        let (status, body) = self
            .post(
                &format!("/v1/queues/{queue}/claim"),
                json!({"worker": worker, "max": max, "wait_ms": 0}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "claim: {body}");
        body["leases"].as_array().expect("leases").clone()
    }

    /// Claims exactly one lease; returns `(job id, token)`.
    pub async fn claim_one(&self, queue: &str) -> (String, String) {
        let leases = self.claim(queue, "w1", 1).await;
        assert_eq!(leases.len(), 1, "expected one lease: {leases:?}");
        let l = &leases[0];
        (
            l["job"]["id"].as_str().expect("id").to_string(),
            l["token"].as_str().expect("token").to_string(),
        )
    }

    /// Completes a job; asserts `200`.
    pub async fn complete(&self, id: &str, token: &str, result: Value) -> Value {
        let (status, body) = self
            .post(
                &format!("/v1/jobs/{id}/complete"),
                json!({"token": token, "result": result}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "complete: {body}");
        body
    }

    /// One job; asserts `200`.
    pub async fn job(&self, id: &str) -> Value {
        let (status, job) = self.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, StatusCode::OK, "get job {id}: {job}");
        job
    }

    /// One queue; asserts `200`.
    pub async fn queue(&self, name: &str) -> Value {
        let (status, q) = self.get(&format!("/v1/queues/{name}")).await;
        assert_eq!(status, StatusCode::OK, "get queue {name}: {q}");
        q
    }

    /// Every job of `queue` (all pages), by `seq`.
    pub async fn all_jobs(&self, queue: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<i64> = None;
        loop {
            let path = match after {
                Some(a) => format!("/v1/queues/{queue}/jobs?limit=1000&after={a}"),
                None => format!("/v1/queues/{queue}/jobs?limit=1000"),
            };
            let (status, page) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "list {queue}: {page}");
            out.extend(page["jobs"].as_array().expect("jobs").iter().cloned());
            match page["next_after"].as_i64() {
                Some(a) => after = Some(a),
                None => return out,
            }
        }
    }

    /// Everything the API shows: `GET /v1/queues` and every job of every queue.
    pub async fn snapshot(&self) -> Value {
        let (status, queues) = self.get("/v1/queues").await;
        assert_eq!(status, StatusCode::OK, "list queues: {queues}");
        let mut jobs = serde_json::Map::new();
        for q in queues["queues"].as_array().expect("queues") {
            let name = q["name"].as_str().expect("name").to_string();
            let mut list = self.all_jobs(&name).await;
            // A job's `eta` is reckoned from the time of the read: it moves
            // with the clock, not with the store.
            for job in &mut list {
                if let Some(job) = job.as_object_mut() {
                    job.remove("eta");
                }
            }
            jobs.insert(name, Value::Array(list));
        }
        json!({"queues": queues, "jobs": jobs})
    }
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Sends one request to `router`.
pub async fn call_router(
    router: Router,
    method: Method,
    path: &str,
    body: Option<Body>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        None => AxumBody::empty(),
        Some(b) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            match b {
                Body::Json(v) => AxumBody::from(serde_json::to_vec(&v).expect("serialize")),
                Body::Raw(bytes) => AxumBody::from(bytes),
            }
        }
    };
    let request = builder.body(body).expect("request");
    send(router, request).await
}

/// Sends a prepared request to `router`.
pub async fn send(router: Router, request: Request<AxumBody>) -> (StatusCode, Value) {
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

/// Checks `body` is exactly `{"error": {"code": code, "message": <non-empty>}}`;
/// returns the message, or what is wrong.
pub fn check_error(body: &Value, code: &str) -> Result<String, String> {
    let obj = body
        .as_object()
        .ok_or_else(|| format!("error body is not a JSON object: {body}"))?;
    if obj.len() != 1 || !obj.contains_key("error") {
        return Err(format!("error body has other keys than `error`: {body}"));
    }
    let err = body["error"]
        .as_object()
        .ok_or_else(|| format!("`error` is not an object: {body}"))?;
    let mut keys: Vec<&String> = err.keys().collect();
    keys.sort();
    if keys != ["code", "message"] {
        return Err(format!(
            "`error` has keys {keys:?}, not code and message: {body}"
        ));
    }
    if body["error"]["code"] != json!(code) {
        return Err(format!(
            "code is {}, not {code:?}: {body}",
            body["error"]["code"]
        ));
    }
    match body["error"]["message"].as_str() {
        Some(m) if !m.trim().is_empty() => Ok(m.to_string()),
        _ => Err(format!("message is empty or not a string: {body}")),
    }
}

/// Asserts `body` is exactly `{"error": {"code": code, "message": <non-empty>}}`;
/// returns the message.
#[track_caller]
pub fn assert_error(body: &Value, code: &str, context: &str) -> String {
    check_error(body, code).unwrap_or_else(|problem| panic!("{context}: {problem}"))
}

/// Parses an RFC 3339 time of the API into milliseconds.
#[track_caller]
pub fn millis(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad time {s}: {e}"))
        .timestamp_millis()
}

/// Waits until `f` is true, polling every 10 ms, at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
