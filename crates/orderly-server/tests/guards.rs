//! Requests refused before they reach the store: browsers of other sites on
//! a server without a token, features this release does not have, and
//! batches that cannot be right. Each refusal changes nothing.

mod support;

use axum::body::Body as AxumBody;
use axum::http::{header, Method, Request, StatusCode};
use orderly_server::ServerConfig;
use serde_json::{json, Value};
use support::{send, TestApp};

fn enqueue_request(origin: Option<&str>, auth: Option<&str>) -> Request<AxumBody> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri("/v1/queues/q/jobs")
        // What an HTML form of another site can send without a CORS preflight.
        .header(header::CONTENT_TYPE, "text/plain");
    if let Some(o) = origin {
        b = b.header(header::ORIGIN, o);
    }
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    b.body(AxumBody::from(r#"{"payload": "rm -rf"}"#))
        .expect("request")
}

async fn queued(app: &TestApp) -> Value {
    app.get("/v1/queues/q/jobs").await.1["jobs"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_sites_cannot_enqueue_into_a_server_without_token() {
    let app = TestApp::new();
    for origin in [
        "http://evil.example",
        "https://attacker.test:8443",
        "null",
        "http://localhost.evil.example",
    ] {
        let (status, body) = send(app.router.clone(), enqueue_request(Some(origin), None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert_eq!(
            body["error"]["code"], "forbidden_origin",
            "{origin}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(origin),
            "{body}"
        );
    }
    assert_eq!(queued(&app).await, json!([]), "nothing was enqueued");
    // Local pages (a dashboard on localhost) and non-browser clients may.
    for origin in [
        Some("http://localhost:3000"),
        Some("http://127.0.0.1:7771"),
        Some("http://[::1]:8080"),
        None,
    ] {
        let (status, body) = send(app.router.clone(), enqueue_request(origin, None)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{origin:?}: {body}");
    }
    assert_eq!(queued(&app).await.as_array().map(Vec::len), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_token_decides_and_its_scheme_is_case_insensitive() {
    let app = TestApp::with_config(ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    });
    let (status, _) = send(
        app.router.clone(),
        enqueue_request(Some("http://evil.example"), None),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for auth in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"] {
        let (status, body) = send(app.router.clone(), enqueue_request(None, Some(auth))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{auth}: {body}");
    }
    for auth in ["Basic s3cret", "Bearer wrong", "s3cret"] {
        let (status, body) = send(app.router.clone(), enqueue_request(None, Some(auth))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth}: {body}");
    }
}

/// §4 and §6: an executor is stored as given, shown without a webhook's
/// secret, kept when a later PUT leaves it out, and removed by `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_are_configured_shown_without_secrets_and_cleared() {
    let app = TestApp::new();
    let cmd = json!({"type": "command", "argv": ["true"], "env": {"A": "1"}});
    let (status, body) = app.put("/v1/queues/q", json!({"executor": cmd})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["executor"], cmd);
    let (_, body) = app.put("/v1/queues/q", json!({"concurrency": 3})).await;
    assert_eq!(body["executor"], cmd, "left out: kept");
    let hook = json!({"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "hunter2"});
    let (status, body) = app.put("/v1/queues/q", json!({"executor": hook})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for shown in [
        body,
        app.get("/v1/queues/q").await.1,
        app.get("/v1/queues").await.1,
    ] {
        assert!(
            !shown.to_string().contains("hunter2"),
            "the secret leaked: {shown}"
        );
        assert!(shown.to_string().contains("\"secret_set\":true"), "{shown}");
    }
    let (status, body) = app.put("/v1/queues/q", json!({"executor": null})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["executor"], Value::Null, "null removes it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_repeating_an_id_is_refused_whole() {
    let app = TestApp::new();
    let (status, body) = app
        .post(
            "/v1/queues/q/jobs/batch",
            json!({"jobs": [{"id": "a", "payload": 1}, {"payload": null, "id": "b"}, {"id": "a", "payload": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_value");
    let msg = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("jobs[2].id") && msg.contains("jobs[0].id"),
        "{msg}"
    );
    assert_eq!(queued(&app).await, json!([]));
}
