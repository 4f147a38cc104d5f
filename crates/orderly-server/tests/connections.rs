//! Connections over real loopback TCP through `orderly_server::serve::serve`:
//! slow and idle clients are cut off, slow or broken bodies get a JSON error,
//! and long polls are not mistaken for idle connections.
//!
//! Requests are written by hand on a raw `TcpStream`, so a test controls every
//! byte and every pause. Timeouts are short; every wait has a deadline.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use orderly_server::{router, ServerConfig};
use serde_json::Value;
use support::{assert_error, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Generous bound on any wait of these tests (they pass in well under it).
const PATIENCE: Duration = Duration::from_secs(10);

/// A server on a free loopback port.
struct Live {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    _app: TestApp,
}

impl Live {
    async fn start(config: ServerConfig) -> Self {
        let timeouts = config.connection_timeouts();
        let app = TestApp::with_config(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let routes = router(app.state.clone());
        tokio::spawn(orderly_server::serve::serve(
            listener,
            routes,
            timeouts,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(1),
        ));
        Live {
            addr,
            stop: Some(tx),
            _app: app,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn config(header: Duration, idle: Duration, body: Duration) -> ServerConfig {
    ServerConfig {
        header_timeout: header,
        idle_timeout: idle,
        body_timeout: body,
        ..ServerConfig::default()
    }
}

/// Waits until the server closes `s` (EOF or reset); `false` if it is still
/// open after `within`. Bytes the server sends meanwhile are returned too.
async fn closed_within(s: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (false, got),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one HTTP/1.1 response with a Content-Length; `(status, JSON body)`.
async fn read_response(s: &mut TcpStream, within: Duration) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("content-length"))
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                let status: u16 = head[9..12].parse().expect("status");
                let body = &got[end + 4..end + 4 + len];
                let value = serde_json::from_slice(body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
                return (status, value);
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!(
                "no complete response within {within:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "connection closed before a complete response; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test]
async fn slowloris_headers_are_cut_off_after_the_header_timeout() {
    let srv = Live::start(config(
        Duration::from_millis(300),
        Duration::from_secs(30),
        Duration::from_secs(30),
    ))
    .await;
    let mut s = srv.connect().await;
    let (mut rd, mut wr) = s.split();
    // A request that would take 60 s to arrive at one byte every 100 ms.
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'X', 600));
    let writer = async {
        for b in request {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::future::pending::<()>().await
    };
    let reader = async {
        let mut buf = [0u8; 1024];
        rd.read(&mut buf).await.map(|n| buf[..n].to_vec())
    };
    let outcome = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            _ = writer => unreachable!("the writer never ends by itself"),
            r = reader => r,
        }
    })
    .await;
    match outcome {
        Err(_) => panic!("a client trickling its headers was still connected after {PATIENCE:?}"),
        Ok(Ok(bytes)) => assert!(
            bytes.is_empty() || !String::from_utf8_lossy(&bytes).contains("200 OK"),
            "a request whose headers never completed was answered: {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        Ok(Err(_)) => {} // reset: disconnected too
    }
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is longer than the idle one: the idle timeout is what closes it.
    let srv = Live::start(config(
        Duration::from_secs(30),
        Duration::from_millis(300),
        Duration::from_secs(30),
    ))
    .await;
    let mut s = srv.connect().await;
    s.write_all(HEALTHZ).await.expect("write");
    let (status, _) = read_response(&mut s, PATIENCE).await;
    assert_eq!(status, 200);
    let (closed, extra) = closed_within(&mut s, PATIENCE).await;
    assert!(
        closed,
        "an idle keep-alive connection was still open after {PATIENCE:?}"
    );
    assert!(extra.is_empty(), "unexpected bytes: {extra:?}");
}

#[tokio::test]
async fn keep_alive_idle_longer_than_the_header_timeout_still_serves() {
    // hyper's own header timer starts when a connection waits for its next
    // request; the idle timeout, not the header timeout, must govern that wait.
    let srv = Live::start(config(
        Duration::from_millis(200),
        Duration::from_secs(30),
        Duration::from_secs(30),
    ))
    .await;
    let mut s = srv.connect().await;
    s.write_all(HEALTHZ).await.expect("write");
    assert_eq!(read_response(&mut s, PATIENCE).await.0, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.write_all(HEALTHZ)
        .await
        .expect("write the second request");
    assert_eq!(read_response(&mut s, PATIENCE).await.0, 200);
}

#[tokio::test]
async fn body_shorter_than_its_content_length_gets_408_after_the_body_timeout() {
    let srv = Live::start(config(
        Duration::from_secs(30),
        Duration::from_secs(30),
        Duration::from_millis(300),
    ))
    .await;
    let mut s = srv.connect().await;
    s.write_all(
        b"POST /v1/queues/q/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"payload\":",
    )
    .await
    .expect("write");
    let (status, body) = read_response(&mut s, PATIENCE).await;
    assert_eq!(status, 408, "body: {body}");
    let msg = assert_error(&body, "body_timeout", "short body");
    assert!(
        msg.contains("body timeout") && msg.contains("300ms"),
        "{msg}"
    );
    assert!(
        srv._app.all_jobs("q").await.is_empty(),
        "a job was accepted from an incomplete body"
    );
}

#[tokio::test]
async fn broken_chunked_encoding_is_a_400_malformed_body() {
    let srv = Live::start(ServerConfig::default()).await;
    let mut s = srv.connect().await;
    s.write_all(
        b"POST /v1/queues/q/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\nzz\r\n{\"payload\": 1}\r\n0\r\n\r\n",
    )
    .await
    .expect("write");
    let (status, body) = read_response(&mut s, PATIENCE).await;
    assert_eq!(status, 400, "body: {body}");
    let msg = assert_error(&body, "malformed_body", "bad chunked framing");
    assert!(msg.contains("malformed"), "{msg}");
    assert!(srv._app.all_jobs("q").await.is_empty());
}

#[tokio::test]
async fn long_polls_outlive_the_idle_and_header_timeouts() {
    let srv = Live::start(config(
        Duration::from_millis(200),
        Duration::from_millis(200),
        Duration::from_secs(30),
    ))
    .await;
    let mut s = srv.connect().await;
    let body = br#"{"worker": "w", "max": 1, "wait_ms": 1200}"#;
    let mut req = format!(
        "POST /v1/queues/lp/claim HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).await.expect("write claim");
    let (status, answer) = read_response(&mut s, PATIENCE).await;
    assert_eq!(status, 200, "claim: {answer}");
    assert_eq!(answer["leases"], serde_json::json!([]), "{answer}");

    // `/wait` on a job that does not finish: answered at its timeout, not cut off.
    let job = srv
        ._app
        .enqueue("lp", serde_json::json!({"payload": 1}))
        .await;
    let id = job["id"].as_str().expect("id");
    s.write_all(
        format!("GET /v1/jobs/{id}/wait?timeout_ms=1200 HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write wait");
    let (status, answer) = read_response(&mut s, PATIENCE).await;
    assert_eq!(status, 200, "wait: {answer}");
    assert_eq!(answer["id"], serde_json::json!(id), "{answer}");
}
