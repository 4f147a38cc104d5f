//! The dashboard's page and assets (open, typed, under a strict CSP, with
//! asset URLs relative to each view's depth), the read-only token (reads
//! everything, changes nothing), and the cross-site guard of a server
//! without a token accepting the server's own origin.

mod support;

use axum::body::Body as AxumBody;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use orderly_server::ServerConfig;
use serde_json::{json, Value};
use support::{send, TestApp};
use tower::ServiceExt;

const TOKEN: &str = "full-token";
const READ: &str = "read-token";

/// Status, headers and body text of one request.
async fn fetch(router: Router, req: Request<AxumBody>) -> (StatusCode, HeaderMap, String) {
    let res = router.oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(path: &str) -> Request<AxumBody> {
    Request::get(path).body(AxumBody::empty()).expect("request")
}

fn with_token(method: Method, path: &str, token: &str, body: Option<Value>) -> Request<AxumBody> {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    b.body(body.map_or_else(AxumBody::empty, |v| AxumBody::from(v.to_string())))
        .expect("request")
}

fn tokens() -> TestApp {
    TestApp::with_config(ServerConfig {
        token: Some(TOKEN.into()),
        read_token: Some(READ.into()),
        ..ServerConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_url_serves_the_page_with_assets_relative_to_its_depth() {
    // With a token: the page needs none (it holds no data), the API does.
    let app = tokens();
    for (path, root) in [
        ("/", "./"),
        ("/queues/emails", "../"),
        ("/queues/emails/keys/a%2Fb%20c", "../../../"),
        ("/jobs/4f0ea1f1", "../"),
    ] {
        let (status, headers, body) = fetch(app.router.clone(), get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            body.contains(&format!(r#"src="{root}dashboard/js/main.js""#)),
            "{path}: {body}"
        );
        assert!(!body.contains("{{ROOT}}"));
        assert!(
            !body.contains("<script>") && !body.contains("http"),
            "no inline script, nothing from elsewhere: {body}"
        );
    }
    let (status, _) = app.call(Method::GET, "/v1/queues", None, None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the data still needs the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_served_with_their_types_and_unknown_ones_are_404() {
    let app = tokens();
    for (path, ty) in [
        ("/dashboard/js/main.js", "text/javascript; charset=utf-8"),
        (
            "/dashboard/js/views/queue.js",
            "text/javascript; charset=utf-8",
        ),
        ("/dashboard/style.css", "text/css; charset=utf-8"),
    ] {
        let (status, headers, body) = fetch(app.router.clone(), get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], ty, "{path}");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(body.len() > 100, "{path}");
    }
    for path in [
        "/dashboard/nope.js",
        "/dashboard/../Cargo.toml",
        "/dashboard/",
    ] {
        let (status, body) = send(app.router.clone(), get(path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_token_reads_everything_and_changes_nothing() {
    let app = tokens();
    let job = app.enqueue("q", json!({"payload": {"n": 1}})).await;
    let id = job["id"].as_str().expect("id");
    let r = app.router.clone();
    for path in [
        "/v1/queues".to_string(),
        "/v1/queues/q".to_string(),
        "/v1/queues/q/jobs".to_string(),
        "/v1/queues/q/starts".to_string(),
        format!("/v1/jobs/{id}"),
        format!("/v1/jobs/{id}/attempts"),
        "/metrics".to_string(),
    ] {
        let (status, headers, body) =
            fetch(r.clone(), with_token(Method::GET, &path, READ, None)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(headers["orderly-access"], "read-only", "{path}");
    }
    // The event stream answers at once (its body goes on; only its head is read).
    let res = r
        .clone()
        .oneshot(with_token(Method::GET, "/v1/events", READ, None))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    drop(res);

    for (method, path, body) in [
        (
            Method::PUT,
            "/v1/queues/q".to_string(),
            json!({"paused": true}),
        ),
        (
            Method::POST,
            "/v1/queues/q/jobs".to_string(),
            json!({"payload": 2}),
        ),
        (
            Method::POST,
            "/v1/queues/q/jobs/batch".to_string(),
            json!({"jobs": [{"payload": 3}]}),
        ),
        (
            Method::POST,
            "/v1/queues/q/claim".to_string(),
            json!({"worker": "w", "max": 1, "wait_ms": 0}),
        ),
        (Method::POST, format!("/v1/jobs/{id}/cancel"), json!({})),
        (Method::POST, format!("/v1/jobs/{id}/retry"), json!({})),
    ] {
        let (status, body) = send(
            r.clone(),
            with_token(method.clone(), &path, READ, Some(body)),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "read_only", "{body}");
        let msg = body["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains("read-only") && msg.contains(&path), "{msg}");
    }
    let (_, q) = app.get("/v1/queues/q").await;
    assert_eq!(q["paused"], false, "nothing changed: {q}");
    assert_eq!(q["counts"]["queued"], 1, "nothing enqueued or claimed: {q}");
    let (_, j) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(j["state"], "queued");

    // The full token may, and says so.
    let (status, headers, body) = fetch(
        r.clone(),
        with_token(
            Method::PUT,
            "/v1/queues/q",
            TOKEN,
            Some(json!({"paused": true})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["orderly-access"], "full");
    // A wrong token is neither.
    let (status, _) = send(r, with_token(Method::GET, "/v1/queues", "nope", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn enqueue_from(origin: &str, host: &str) -> Request<AxumBody> {
    Request::post("/v1/queues/q/jobs")
        .header(header::ORIGIN, origin)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .body(AxumBody::from(r#"{"payload": 1}"#))
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_servers_own_origin_is_accepted_by_ip_address() {
    let app = TestApp::new();
    for (origin, host) in [
        ("http://10.1.2.3:7771", "10.1.2.3:7771"),
        ("http://10.1.2.3", "10.1.2.3:80"),
        ("https://192.168.0.9", "192.168.0.9"),
        ("http://[fd00::7]:7771", "[fd00::7]:7771"),
        ("http://127.0.0.1:7771", "elsewhere.example"),
    ] {
        let (status, body) = send(app.router.clone(), enqueue_from(origin, host)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{origin} to {host}: {body}");
    }
    for (origin, host) in [
        // Another port of the same machine is another site.
        ("http://10.1.2.3:8080", "10.1.2.3:7771"),
        ("http://10.1.2.4:7771", "10.1.2.3:7771"),
        // A name that matches its Host proves nothing: DNS rebinding points
        // a hostile name at this server's address.
        ("http://evil.example:7771", "evil.example:7771"),
        ("http://10.1.2.3:7771/path", "10.1.2.3:7771"),
        ("null", "10.1.2.3:7771"),
        ("ftp://10.1.2.3:7771", "10.1.2.3:7771"),
    ] {
        let (status, body) = send(app.router.clone(), enqueue_from(origin, host)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin} to {host}: {body}");
        assert_eq!(body["error"]["code"], "forbidden_origin");
    }
    let (_, q) = app.get("/v1/queues/q").await;
    assert_eq!(q["counts"]["queued"], 5, "only the accepted ones: {q}");
}

/// What the key view reads: `GET /v1/queues/{q}/jobs?key=` lists that key's
/// line (its unfinished jobs, by seq, with their positions and why they
/// wait); a finished state with a key, or a bad key, is a clear `400`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_list_of_a_key_is_its_line() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 3})).await;
    let a1 = app.enqueue("q", json!({"key": "a/1", "payload": 1})).await;
    app.enqueue("q", json!({"key": "b", "payload": 2})).await;
    let a2 = app.enqueue("q", json!({"key": "a/1", "payload": 3})).await;
    let leases = app.claim("q", "w", 3).await;
    assert_eq!(leases.len(), 2, "one per key");
    let (status, body) = app.get("/v1/queues/q/jobs?key=a%2F1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jobs = body["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2, "{body}");
    assert_eq!(jobs[0]["id"], a1["id"]);
    assert_eq!(jobs[0]["state"], "running");
    assert_eq!(jobs[1]["id"], a2["id"]);
    assert_eq!(jobs[1]["waiting_on"]["reason"], "key", "{body}");
    assert_eq!(jobs[1]["waiting_on"]["job"], a1["id"]);
    assert_eq!(jobs[1]["key_position"], 1);
    let (_, body) = app.get("/v1/queues/q/jobs?key=a%2F1&state=queued").await;
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(1), "{body}");
    for (path, code, names) in [
        (
            "/v1/queues/q/jobs?key=a%2F1&state=succeeded",
            "invalid_value",
            "state",
        ),
        ("/v1/queues/q/jobs?key=", "invalid_key", "key"),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(names),
            "{path}: {body}"
        );
    }
}
