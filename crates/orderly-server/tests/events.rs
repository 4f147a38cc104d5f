//! `GET /v1/events` at the router: the stream's headers and framing, a
//! replay after `Last-Event-ID` (header and query), and bad input refused
//! with the API's JSON errors before any stream opens.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use support::{assert_error, send, TestApp};
use tower::ServiceExt;

/// Opens `path` and reads the body until it holds `want` SSE messages
/// (blank-line ended, keep-alive comments not counted).
async fn read_messages(
    app: &TestApp,
    path: &str,
    last_event_id: Option<&str>,
    want: usize,
) -> (StatusCode, Option<String>, Vec<String>) {
    let mut req = Request::get(path);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = app
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let mut body = resp.into_body();
    let mut text = String::new();
    let messages = |t: &str| -> Vec<String> {
        t.split("\n\n")
            .filter(|m| !m.is_empty() && !m.starts_with(':'))
            .map(str::to_string)
            .collect()
    };
    while text.matches("\n\n").count() < want {
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .expect("a message within 20 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let mut got = messages(&text);
    got.truncate(want);
    (status, ctype, got)
}

#[tokio::test]
async fn the_stream_replays_after_an_id_in_sse_framing() {
    let app = TestApp::new();
    app.enqueue("q", json!({"id": "a", "payload": 1})).await;
    app.enqueue("q", json!({"id": "b", "payload": 2})).await;
    let (status, ctype, got) = read_messages(&app, "/v1/events", Some("1"), 1).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype.as_deref(), Some("text/event-stream"));
    let want = "id: 2\nevent: enqueued\ndata: {\"id\":2,\"kind\":\"enqueued\",\"at\":\"";
    assert!(got[0].starts_with(want), "{got:?}");
    assert!(
        got[0].ends_with(
            ",\"queue\":\"q\",\"job\":{\"id\":\"b\",\"seq\":2,\"key\":null,\"state\":\"queued\"}}"
        ),
        "{got:?}"
    );
    // The query form, filtered to one job.
    let (_, _, got) = read_messages(&app, "/v1/events?job=a&last_event_id=0", None, 1).await;
    assert!(got[0].starts_with("id: 1\nevent: enqueued\n"), "{got:?}");
}

#[tokio::test]
async fn bad_filters_and_ids_are_refused_before_the_stream_opens() {
    let app = TestApp::new();
    for (path, code, mentions) in [
        (
            "/v1/events?queue=no%20spaces",
            "invalid_queue_name",
            "queue name",
        ),
        ("/v1/events?job=", "invalid_job_id", "job id"),
        (
            "/v1/events?last_event_id=-1",
            "invalid_value",
            "last_event_id",
        ),
        ("/v1/events?since=3", "invalid_request", "since"),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        let msg = assert_error(&body, code, path);
        assert!(msg.contains(mentions), "{path}: {msg}");
    }
    let req = Request::get("/v1/events")
        .header("last-event-id", "soon")
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(app.router.clone(), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let msg = assert_error(&body, "invalid_value", "Last-Event-ID");
    assert!(msg.contains("Last-Event-ID"), "{msg}");
}
