//! The webhook handler against real HTTP receivers on 127.0.0.1: what it
//! sends, how each kind of answer is read, timeouts, refused connections,
//! cancellation and connection reuse. The signature's tests are in
//! [`signature`].

mod answers;
mod receiver;
mod signature;

use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};

use super::*;
use receiver::{Receiver, Silent};

/// Guards a wait that should end soon, so a broken handler fails the test
/// instead of hanging it.
const HANG_GUARD: Duration = Duration::from_secs(20);

fn job() -> Job {
    Job {
        id: "0190c7a4-5b2e-7000-8000-00000000002a".into(),
        queue: "emails".into(),
        key: Some("customer-42".into()),
        seq: 17,
        attempt: 2,
        payload: json!({"to": "a@example.com", "n": [1, 2.5, "three"], "deep": {"x": null}}),
        timeout_ms: None,
    }
}

/// A receiver answering every request with `status` and `body`.
async fn answering(status: StatusCode, body: &'static str) -> Receiver {
    Receiver::start(move || async move { (status, body).into_response() }).await
}

/// Runs `job()` through `handler`.
async fn run(handler: &WebhookHandler) -> Result<Value, Failure> {
    tokio::time::timeout(HANG_GUARD, handler.handle(job(), JobContext::new()))
        .await
        .expect("the handler hung")
}

/// The body is the job as JSON; Orderly's headers and the configured ones
/// are sent; the path and query are kept; no signature without a secret.
#[tokio::test]
async fn request_body_and_headers() {
    let r = answering(StatusCode::OK, "").await;
    let h = WebhookHandler::new(&r.url("/hooks/in?src=orderly"))
        .unwrap()
        .header("X-Token", "abc123")
        .unwrap()
        .header("X-Multi", "one")
        .unwrap()
        .header("X-Multi", "two")
        .unwrap();
    run(&h).await.unwrap();
    let mut unkeyed = job();
    unkeyed.key = None;
    unkeyed.attempt = 1;
    h.handle(unkeyed, JobContext::new()).await.unwrap();

    let seen = r.seen();
    assert_eq!(seen.len(), 2);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.uri.path(), "/hooks/in");
    assert_eq!(s.uri.query(), Some("src=orderly"));
    let body: Value = serde_json::from_slice(&s.body).unwrap();
    assert_eq!(
        body,
        json!({
            "id": "0190c7a4-5b2e-7000-8000-00000000002a",
            "queue": "emails",
            "key": "customer-42",
            "seq": 17,
            "attempt": 2,
            "payload": {"to": "a@example.com", "n": [1, 2.5, "three"], "deep": {"x": null}},
        })
    );
    assert_eq!(s.header("content-type"), "application/json");
    assert_eq!(
        s.header("orderly-job-id"),
        "0190c7a4-5b2e-7000-8000-00000000002a"
    );
    assert_eq!(s.header("orderly-queue"), "emails");
    assert_eq!(s.header("orderly-attempt"), "2");
    assert_eq!(s.header("x-token"), "abc123");
    let multi: Vec<_> = s.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
    assert!(s.header("user-agent").starts_with("orderly-webhook/"));
    assert!(s.headers.get("orderly-signature").is_none());

    let body: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(body["key"], Value::Null);
    assert_eq!(body["attempt"], json!(1));
    assert_eq!(seen[1].header("orderly-attempt"), "1");
}

/// Every job of a handler goes over the one pooled connection.
#[tokio::test]
async fn connections_are_reused() {
    let r = answering(StatusCode::OK, r#"{"ok": true}"#).await;
    let h = WebhookHandler::new(&r.url("/")).unwrap();
    for _ in 0..5 {
        assert_eq!(run(&h).await, Ok(json!({"ok": true})));
    }
    // A clone shares the client, and so the pool.
    assert_eq!(run(&h.clone()).await, Ok(json!({"ok": true})));
    assert_eq!(r.seen().len(), 6);
    assert_eq!(r.connections(), 1, "one TCP connection for six requests");
}

/// The timeout covers the whole exchange: a receiver that never answers,
/// and one that sends its headers and then a body that never ends. Either
/// is a retryable failure saying it timed out.
#[tokio::test]
async fn timeouts() {
    let silent = Receiver::start(|| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        StatusCode::OK.into_response()
    })
    .await;
    let endless_body = Receiver::start(|| async {
        let stream = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("{")) })
            .chain(futures::stream::pending());
        axum::body::Body::from_stream(stream).into_response()
    })
    .await;
    for r in [silent, endless_body] {
        let h = WebhookHandler::new(&r.url("/"))
            .unwrap()
            .timeout(Duration::from_millis(300));
        let f = run(&h).await.unwrap_err();
        assert!(f.retry);
        assert_eq!(f.retry_after, None);
        assert_eq!(f.error["kind"], json!("timeout"));
        assert_eq!(f.error["timeout_ms"], json!(300));
        assert!(error_text(&f).contains("timed out after 300 ms"), "{f:?}");
        assert_eq!(r.seen().len(), 1);
    }
}

/// Nobody listening: a retryable failure saying it could not connect.
#[tokio::test]
async fn connection_refused() {
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let h = WebhookHandler::new(&format!("http://127.0.0.1:{port}/hook")).unwrap();
    let f = run(&h).await.unwrap_err();
    assert!(f.retry);
    assert_eq!(f.error["kind"], json!("connect"));
    let message = f.error["message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot connect to the webhook"),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(!message.contains(&port.to_string()), "no URL in {message}");
}

/// A cancel mid-request drops it at once (the receiver sees the connection
/// close) and fails the run: for good when requested, retryable when the
/// lease is lost or the worker shuts down.
#[tokio::test]
async fn cancel_mid_request() {
    for (reason, retry) in [
        (CancelReason::Requested, false),
        (CancelReason::LeaseLost, true),
        (CancelReason::Shutdown, true),
    ] {
        let silent = Silent::start().await;
        let h = WebhookHandler::new(&format!("http://{}/", silent.addr)).unwrap();
        let ctx = JobContext::new();
        let run = tokio::spawn({
            let ctx = ctx.clone();
            async move { h.handle(job(), ctx).await }
        });
        tokio::time::timeout(HANG_GUARD, silent.arrived)
            .await
            .expect("the request never arrived")
            .unwrap();
        ctx.cancel(reason);
        let f = tokio::time::timeout(HANG_GUARD, run)
            .await
            .expect("the cancelled run did not return")
            .unwrap()
            .unwrap_err();
        assert_eq!(f.retry, retry, "{reason:?}: {f:?}");
        assert_eq!(f.error["kind"], json!("cancelled"));
        tokio::time::timeout(HANG_GUARD, silent.closed)
            .await
            .expect("the connection stayed open after the cancel")
            .unwrap();
    }
}

/// Only http and https URLs, and only ones that parse.
#[test]
fn invalid_urls_are_refused() {
    for (url, expect) in [
        ("ftp://example.com/hook", "scheme \"ftp\" is not supported"),
        ("file:///etc/passwd", "scheme \"file\" is not supported"),
        ("unix:/run/orderly.sock", "scheme \"unix\" is not supported"),
        ("example.com/hook", "invalid webhook URL"),
        ("http://", "invalid webhook URL"),
        ("", "invalid webhook URL"),
    ] {
        let e = WebhookHandler::new(url).unwrap_err();
        assert!(e.to_string().contains(expect), "{url:?}: {e}");
    }
    assert!(WebhookHandler::new("https://example.com:8443/a?b=c").is_ok());
}

/// Bad header names and values and Orderly's own names are refused, with
/// the name in the error and never the value.
#[test]
fn invalid_and_reserved_headers_are_refused() {
    let h = || WebhookHandler::new("http://127.0.0.1:1/").unwrap();
    for name in ["bad name", "X-Bad\n", "", "x:y", "Ünï"] {
        let e = h().header(name, "v").unwrap_err();
        assert!(
            matches!(e, WebhookError::InvalidHeaderName { .. }),
            "{name:?}: {e}"
        );
        assert!(e.to_string().contains("invalid header name"), "{e}");
    }
    let e = h()
        .header("X-Token", "secret-token\r\nX-Evil: 1")
        .unwrap_err();
    assert!(matches!(e, WebhookError::InvalidHeaderValue { .. }), "{e}");
    assert!(e.to_string().contains("\"X-Token\""), "{e}");
    assert!(!e.to_string().contains("secret-token"), "{e}");
    for name in [
        "Content-Type",
        "content-length",
        "Transfer-Encoding",
        "Orderly-Signature",
        "ORDERLY-JOB-ID",
        "orderly-anything",
    ] {
        let e = h().header(name, "v").unwrap_err();
        assert!(
            matches!(e, WebhookError::ReservedHeader { .. }),
            "{name:?}: {e}"
        );
        assert!(e.to_string().contains("set by Orderly"), "{e}");
    }
    assert!(h().header("Authorization", "Bearer t").is_ok());
}

/// `Debug` shows the shape, never the secret, a header's value or a URL's
/// password.
#[test]
fn debug_hides_the_secret() {
    let h = WebhookHandler::new("https://user:hunter2@example.com/hook")
        .unwrap()
        .header("Authorization", "Bearer tok-777")
        .unwrap()
        .secret(Some("s3cr3t-value".into()));
    let shown = format!("{h:?} {h:#?}");
    for hidden in ["s3cr3t-value", "tok-777", "hunter2"] {
        assert!(!shown.contains(hidden), "{hidden} in {shown}");
    }
    assert!(shown.contains("authorization"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(shown.contains("example.com/hook"), "{shown}");
    let unsigned = format!("{:?}", WebhookHandler::new("http://a.test/").unwrap());
    assert!(unsigned.contains("secret: None"), "{unsigned}");
}

/// The failure of `job()` POSTed to `r` by a default handler.
async fn failure_from(r: &Receiver) -> Failure {
    run(&WebhookHandler::new(&r.url("/")).unwrap())
        .await
        .unwrap_err()
}

/// The failure's message.
fn error_text(f: &Failure) -> &str {
    f.error["message"].as_str().unwrap_or_default()
}

/// The response `status` with `body` and one header.
fn with_header(
    status: StatusCode,
    name: &'static str,
    value: String,
    body: &'static str,
) -> Response {
    (status, [(name, value)], body).into_response()
}
