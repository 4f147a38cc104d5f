//! How each kind of answer is read: 2xx bodies as results and their bound,
//! `Retry-After` on 429 and 503, 410, other statuses and redirects.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use super::*;

/// A 2xx body is the result: JSON if it parses, else the text, nothing →
/// null; any 2xx status counts.
#[tokio::test]
async fn success_bodies() {
    for (status, body, expected) in [
        (
            StatusCode::OK,
            r#"{"sent": 3, "ids": ["a"]}"#,
            json!({"sent": 3, "ids": ["a"]}),
        ),
        (StatusCode::OK, "[1, 2]\n", json!([1, 2])),
        (
            StatusCode::OK,
            "queued for delivery\n",
            json!("queued for delivery"),
        ),
        (StatusCode::CREATED, "42", json!(42)),
        (StatusCode::OK, "", Value::Null),
        (StatusCode::NO_CONTENT, "", Value::Null),
        (StatusCode::ACCEPTED, "  \n", Value::Null),
    ] {
        let r = answering(status, body).await;
        let h = WebhookHandler::new(&r.url("/")).unwrap();
        assert_eq!(run(&h).await, Ok(expected), "{status} {body:?}");
    }
}

/// A body over the bound fails the attempt naming the bound, whether its
/// length is announced or not; a body of exactly the bound is fine.
#[tokio::test]
async fn response_bound() {
    const ANNOUNCED: &str = "0123456789012345678901234567890123456789";
    let r = answering(StatusCode::OK, ANNOUNCED).await;
    let exact = WebhookHandler::new(&r.url("/"))
        .unwrap()
        .max_response_bytes(ANNOUNCED.len());
    assert_eq!(run(&exact).await, Ok(json!(ANNOUNCED)));
    let f = run(&exact.clone().max_response_bytes(ANNOUNCED.len() - 1))
        .await
        .unwrap_err();
    assert!(f.retry);
    assert_eq!(f.error["kind"], json!("response_too_large"));
    assert_eq!(f.error["max_response_bytes"], json!(39));
    assert_eq!(f.error["status"], json!(200));
    let message = error_text(&f);
    assert!(message.contains("39-byte bound"), "{message}");
    assert!(message.contains("max_response_bytes"), "{message}");

    // Streamed without a length: reading stops at the bound, long before
    // the receiver could have sent it all.
    const CHUNKS: usize = 16 * 1024;
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    let r = Receiver::start(move || {
        let counter = counter.clone();
        async move {
            let stream = futures::stream::iter(0..CHUNKS).map(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024]))
            });
            axum::body::Body::from_stream(stream).into_response()
        }
    })
    .await;
    let h = WebhookHandler::new(&r.url("/"))
        .unwrap()
        .max_response_bytes(1000);
    let f = run(&h).await.unwrap_err();
    assert_eq!(f.error["kind"], json!("response_too_large"));
    assert!(error_text(&f).contains("1000-byte bound"), "{f:?}");
    let sent = produced.load(Ordering::SeqCst);
    assert!(
        sent < CHUNKS,
        "the whole 1 GiB body was produced ({sent} chunks)"
    );
}

/// 429 with delta-seconds: retried after exactly that long.
#[tokio::test]
async fn too_many_requests_with_delta_seconds() {
    let r = Receiver::start(|| async {
        with_header(
            StatusCode::TOO_MANY_REQUESTS,
            "retry-after",
            "7".into(),
            "slow down",
        )
    })
    .await;
    let f = failure_from(&r).await;
    assert!(f.retry);
    assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(f.error["status"], json!(429));
    assert_eq!(f.error["retry_after_ms"], json!(7000));
    assert_eq!(f.error["body"], json!("slow down"));
    assert!(error_text(&f).contains("429 Too Many Requests"), "{f:?}");
}

/// 429 with an HTTP-date: retried at that time (whole seconds, so a little
/// less than the two minutes given).
#[tokio::test]
async fn too_many_requests_with_an_http_date() {
    let r = Receiver::start(|| async {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        with_header(StatusCode::TOO_MANY_REQUESTS, "retry-after", at, "")
    })
    .await;
    let f = failure_from(&r).await;
    assert!(f.retry);
    let delay = f.retry_after.expect("a Retry-After delay");
    assert!(
        delay <= Duration::from_secs(120) && delay >= Duration::from_secs(60),
        "{delay:?}"
    );
}

/// 503 without Retry-After, or with one that is neither form: a plain
/// retryable failure (the queue's backoff applies).
#[tokio::test]
async fn unavailable_without_a_usable_retry_after() {
    let r = answering(StatusCode::SERVICE_UNAVAILABLE, "maintenance").await;
    let f = failure_from(&r).await;
    assert!(f.retry);
    assert_eq!(f.retry_after, None);
    assert_eq!(f.error["status"], json!(503));
    assert_eq!(f.error["body"], json!("maintenance"));

    let r = Receiver::start(|| async {
        with_header(
            StatusCode::SERVICE_UNAVAILABLE,
            "retry-after",
            "soon".into(),
            "",
        )
    })
    .await;
    let f = failure_from(&r).await;
    assert!(f.retry);
    assert_eq!(f.retry_after, None);
    assert_eq!(f.error["retry_after"], json!("soon"));
    assert!(error_text(&f).contains("unusable Retry-After"), "{f:?}");
}

/// Retry-After on another status is not a retry-at: a 500's is ignored.
#[tokio::test]
async fn retry_after_only_on_429_and_503() {
    let r = Receiver::start(|| async {
        with_header(
            StatusCode::INTERNAL_SERVER_ERROR,
            "retry-after",
            "7".into(),
            "",
        )
    })
    .await;
    let f = failure_from(&r).await;
    assert!(f.retry);
    assert_eq!(f.retry_after, None);
}

/// 410 Gone fails the job for good.
#[tokio::test]
async fn gone_is_fatal() {
    let r = answering(StatusCode::GONE, "unsubscribed").await;
    let f = failure_from(&r).await;
    assert!(!f.retry);
    assert_eq!(f.retry_after, None);
    assert_eq!(f.error["status"], json!(410));
    assert_eq!(f.error["body"], json!("unsubscribed"));
    assert!(error_text(&f).contains("410 Gone"), "{f:?}");
}

/// Another status is a retryable failure naming it, with the body's tail
/// (bounded) as it ends.
#[tokio::test]
async fn server_error_keeps_the_body_tail() {
    let r = answering(StatusCode::INTERNAL_SERVER_ERROR, "db down").await;
    let f = failure_from(&r).await;
    assert!(f.retry);
    assert_eq!(f.error["kind"], json!("status"));
    assert_eq!(f.error["status"], json!(500));
    assert_eq!(f.error["body"], json!("db down"));
    assert!(f.error.get("body_truncated").is_none());
    assert!(
        error_text(&f).contains("500 Internal Server Error"),
        "{f:?}"
    );

    let long: &'static str =
        Box::leak(format!("{}THE-END", "é-trace ".repeat(2000)).into_boxed_str());
    let r = answering(StatusCode::BAD_GATEWAY, long).await;
    let f = failure_from(&r).await;
    assert!(f.retry);
    let body = f.error["body"].as_str().unwrap();
    assert!(body.ends_with("THE-END"), "{body}");
    assert!(
        body.len() <= response::ERROR_BODY_TAIL_BYTES,
        "{}",
        body.len()
    );
    assert!(
        body.len() > response::ERROR_BODY_TAIL_BYTES - 16,
        "{}",
        body.len()
    );
    assert!(
        !body.contains('\u{fffd}'),
        "the tail starts inside a character"
    );
    assert_eq!(f.error["body_truncated"], json!(true));
}

/// A redirect is not followed: it is "another status", and the receiver
/// sees one request.
#[tokio::test]
async fn redirects_are_not_followed() {
    let r = Receiver::start(|| async {
        with_header(StatusCode::FOUND, "location", "/elsewhere".into(), "")
    })
    .await;
    let f = failure_from(&r).await;
    assert!(f.retry);
    assert_eq!(f.error["status"], json!(302));
    assert_eq!(f.error["location"], json!("/elsewhere"));
    assert!(
        error_text(&f).contains("redirects are not followed"),
        "{f:?}"
    );
    assert_eq!(r.seen().len(), 1);
}
