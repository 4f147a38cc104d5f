//! JSON kept exactly, over real HTTP to the real binary: every number of a
//! payload, a result and a progress comes back as it was sent (no rounding
//! through `f64`, no overflow to a float), and an enqueue without `payload`
//! is refused with a 400 that names it.
//!
//! Requests are written by hand so the bytes on the wire are what is checked,
//! not what a client library makes of them.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Numbers no `f64` or `i64`/`u64` holds exactly, as the canonical text
/// (keys sorted, no spaces) the server stores and answers.
const NUMBERS: &str = r#"{"a":18446744073709551617,"b":-9223372036854775809,"c":0.1000000000000000055511151231257827,"d":1e-400,"e":-0.0,"f":1e+999}"#;

/// One request on its own connection (`Connection: close`); `(status, body text)`.
async fn raw(srv: &TestServer, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.port()))
        .await
        .expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("answer within 20 s")
        .expect("read");
    let text = String::from_utf8(out).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().expect("status");
    (status, body.to_string())
}

/// The text of `field` of the JSON object `body`, as the server wrote it.
fn field_text(body: &str, field: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    serde_json::to_string(&v[field]).expect("serialize")
}

#[tokio::test]
async fn payload_numbers_round_trip_exactly_through_enqueue_and_get() {
    let srv = TestServer::start().await;
    let body = format!(r#"{{"id": "n1", "payload": {NUMBERS}}}"#);
    let (status, text) = raw(&srv, "POST", "/v1/queues/q/jobs", Some(&body)).await;
    ensure!(srv, status == 202, "enqueue: {status} {text}");
    ensure!(
        srv,
        text.contains(NUMBERS),
        "the 202 answer changed the numbers: {text}"
    );
    let (status, text) = raw(&srv, "GET", "/v1/jobs/n1", None).await;
    ensure!(srv, status == 200, "get: {status} {text}");
    let got = field_text(&text, "payload");
    ensure!(
        srv,
        got == NUMBERS,
        "payload came back as {got}, sent {NUMBERS}"
    );
    ensure!(srv, text.contains(NUMBERS), "GET answer: {text}");
    // The same payload again is a replay, not a conflict.
    let (status, text) = raw(&srv, "POST", "/v1/queues/q/jobs", Some(&body)).await;
    ensure!(srv, status == 200, "replay: {status} {text}");
}

#[tokio::test]
async fn result_and_progress_numbers_round_trip_exactly_through_the_worker_protocol() {
    let srv = TestServer::start().await;
    let (status, text) = raw(
        &srv,
        "POST",
        "/v1/queues/w/jobs",
        Some(r#"{"id": "r1", "payload": 1}"#),
    )
    .await;
    ensure!(srv, status == 202, "enqueue: {status} {text}");
    let (status, text) = raw(
        &srv,
        "POST",
        "/v1/queues/w/claim",
        Some(r#"{"worker": "w", "max": 1}"#),
    )
    .await;
    ensure!(srv, status == 200, "claim: {status} {text}");
    let claim: Value = serde_json::from_str(&text).expect("claim JSON");
    let token = claim["leases"][0]["token"]
        .as_str()
        .unwrap_or_else(|| srv.fail(format!("no lease: {text}")))
        .to_string();

    let hb = format!(r#"{{"token": "{token}", "progress": {NUMBERS}}}"#);
    let (status, text) = raw(&srv, "POST", "/v1/jobs/r1/heartbeat", Some(&hb)).await;
    ensure!(srv, status == 200, "heartbeat: {status} {text}");
    let (_, text) = raw(&srv, "GET", "/v1/jobs/r1", None).await;
    let got = field_text(&text, "progress");
    ensure!(
        srv,
        got == NUMBERS,
        "progress came back as {got}, sent {NUMBERS}"
    );

    let done = format!(r#"{{"token": "{token}", "result": {NUMBERS}}}"#);
    let (status, text) = raw(&srv, "POST", "/v1/jobs/r1/complete", Some(&done)).await;
    ensure!(srv, status == 200, "complete: {status} {text}");
    let (_, text) = raw(&srv, "GET", "/v1/jobs/r1", None).await;
    let got = field_text(&text, "result");
    ensure!(
        srv,
        got == NUMBERS,
        "result came back as {got}, sent {NUMBERS}"
    );
    ensure!(
        srv,
        field_text(&text, "state") == r#""succeeded""#,
        "{text}"
    );
}

#[tokio::test]
async fn enqueue_without_payload_is_a_400_naming_payload_and_changes_nothing() {
    let srv = TestServer::start().await;
    let (_, before) = raw(&srv, "GET", "/v1/queues", None).await;
    for (path, body) in [
        ("/v1/queues/q/jobs", r#"{"id": "x"}"#),
        ("/v1/queues/q/jobs", r#"{"key": "k"}"#),
        (
            "/v1/queues/q/jobs/batch",
            r#"{"jobs": [{"id": "y", "payload": 1}, {"id": "z"}]}"#,
        ),
    ] {
        let (status, text) = raw(&srv, "POST", path, Some(body)).await;
        ensure!(srv, status == 400, "{body}: {status} {text}");
        let v: Value = serde_json::from_str(&text).expect("error JSON");
        ensure!(
            srv,
            v["error"]["code"] == "invalid_request",
            "{body}: code {}",
            v["error"]["code"]
        );
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        ensure!(srv, msg.contains("payload"), "{body}: message {msg:?}");
    }
    for id in ["x", "y", "z"] {
        let (status, text) = raw(&srv, "GET", &format!("/v1/jobs/{id}"), None).await;
        ensure!(srv, status == 404, "job {id} exists: {text}");
    }
    let (_, after) = raw(&srv, "GET", "/v1/queues", None).await;
    ensure!(srv, before == after, "queues changed: {before} -> {after}");
}
