//! `GET /v1/events` end to end (contract section 4): a real server, real
//! HTTP. A job's life arrives as its exact sequence of events, filters
//! keep other queues' and jobs' events out, `Last-Event-ID` resumes with
//! exactly the events after it (and says `gap` when they are no longer
//! held), a subscriber that never reads is dropped while the server and
//! every other subscriber keep going (told `dropped` when it falls behind
//! the buffer and reads again; cut off by the write timeout when its socket
//! stays full), and `orderly job ID --follow` exits when the job finishes.

#[macro_use]
mod support;

use std::time::Duration;

use orderly_client::{EventStream, EventsQuery, StreamItem};
use serde_json::json;
use support::proto::{
    BatchRequest, CompleteRequest, EventKind, EventView, HeartbeatRequest, QueueConfigRequest,
    ReportItem, ReportOutcome, ReportsRequest,
};
use support::{claim_req, job_req, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READ_LIMIT: Duration = Duration::from_secs(30);

async fn open(srv: &TestServer, q: EventsQuery) -> EventStream {
    srv.client()
        .events(&q)
        .await
        .unwrap_or_else(|e| srv.fail(format!("GET /v1/events {q:?}: {e}")))
}

async fn next_item(srv: &TestServer, s: &mut EventStream) -> StreamItem {
    match tokio::time::timeout(READ_LIMIT, s.next()).await {
        Ok(Ok(Some(item))) => item,
        Ok(Ok(None)) => srv.fail("the event stream ended".into()),
        Ok(Err(e)) => srv.fail(format!("reading the event stream: {e}")),
        Err(_) => srv.fail(format!("no event within {READ_LIMIT:?}")),
    }
}

async fn next_event(srv: &TestServer, s: &mut EventStream) -> EventView {
    match next_item(srv, s).await {
        StreamItem::Event(e) => e,
        other => srv.fail(format!("expected an event, got {other:?}")),
    }
}

/// `(kind, job id)` of an event, for comparing sequences.
fn brief(e: &EventView) -> (EventKind, String) {
    (
        e.kind,
        e.job.as_ref().map_or(String::new(), |j| j.id.clone()),
    )
}

#[tokio::test]
async fn a_jobs_life_streams_in_order_filters_hold_and_last_event_id_resumes() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let mut by_queue = open(
        &srv,
        EventsQuery {
            queue: Some("q".into()),
            ..Default::default()
        },
    )
    .await;
    let mut by_job = open(
        &srv,
        EventsQuery {
            job: Some("j1".into()),
            ..Default::default()
        },
    )
    .await;
    let mut other = open(
        &srv,
        EventsQuery {
            queue: Some("other".into()),
            ..Default::default()
        },
    )
    .await;

    srv.configure("q", QueueConfigRequest::default()).await;
    c.enqueue("q", &job_req("j1", Some("acct-7"), json!({"n": 1})))
        .await
        .unwrap();
    c.enqueue("other", &job_req("o1", None, json!(null)))
        .await
        .unwrap();
    let lease = c
        .claim("q", &claim_req("w1", 1, 0))
        .await
        .unwrap()
        .leases
        .remove(0);
    let progress = json!({"done": 1, "total": 2});
    c.heartbeat(
        "j1",
        &HeartbeatRequest {
            token: lease.token.clone(),
            progress: Some(progress.clone()),
        },
    )
    .await
    .unwrap();
    c.complete(
        "j1",
        &CompleteRequest {
            token: lease.token,
            result: Some(json!("ok")),
            claim_next: None,
        },
    )
    .await
    .unwrap();
    c.enqueue("other", &job_req("o2", None, json!(null)))
        .await
        .unwrap();

    // The job's own stream: exactly its life, in order.
    let mut life = Vec::new();
    for _ in 0..4 {
        life.push(next_event(&srv, &mut by_job).await);
    }
    let kinds: Vec<_> = life.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Enqueued,
            EventKind::Started,
            EventKind::Progress,
            EventKind::Succeeded
        ]
    );
    let states: Vec<_> = life
        .iter()
        .map(|e| e.job.as_ref().unwrap().state.as_str())
        .collect();
    assert_eq!(states, ["queued", "running", "running", "succeeded"]);
    assert!(
        life.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase: {life:?}"
    );
    for e in &life {
        let j = e.job.as_ref().unwrap();
        assert_eq!(
            (e.queue.as_str(), j.key.as_deref(), j.seq),
            ("q", Some("acct-7"), life[0].job.as_ref().unwrap().seq)
        );
    }
    assert_eq!(life[2].progress, Some(progress));
    assert_eq!(life[0].progress, None);

    // The queue's stream: its configuration, then the same life; never another queue's.
    let first = next_event(&srv, &mut by_queue).await;
    assert_eq!(
        (first.kind, first.queue.as_str(), first.job.is_none()),
        (EventKind::QueueConfigured, "q", true)
    );
    for want in &life {
        assert_eq!(&next_event(&srv, &mut by_queue).await, want);
    }
    // The other queue's stream: o1 then o2, nothing of q in between.
    let o: Vec<_> = [
        next_event(&srv, &mut other).await,
        next_event(&srv, &mut other).await,
    ]
    .iter()
    .map(brief)
    .collect();
    assert_eq!(
        o,
        [
            (EventKind::Enqueued, "o1".into()),
            (EventKind::Enqueued, "o2".into())
        ]
    );

    // Resume after `started`: exactly what was published after it, then live.
    let mut resumed = open(
        &srv,
        EventsQuery {
            last_event_id: Some(life[1].id),
            ..Default::default()
        },
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_event(&srv, &mut resumed).await);
    }
    assert_eq!(
        got.iter().map(brief).collect::<Vec<_>>(),
        [
            (EventKind::Progress, "j1".into()),
            (EventKind::Succeeded, "j1".into()),
            (EventKind::Enqueued, "o2".into())
        ]
    );
    let ids: Vec<u64> = got.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [life[1].id + 1, life[1].id + 2, life[1].id + 3],
        "no gap, no repeat"
    );
    c.enqueue("q", &job_req("j2", None, json!(null)))
        .await
        .unwrap();
    let live = next_event(&srv, &mut resumed).await;
    assert_eq!(
        (brief(&live), live.id),
        ((EventKind::Enqueued, "j2".into()), ids[2] + 1)
    );

    // `?last_event_id=` for clients that cannot set headers, on a raw socket.
    let text = raw_until(
        &srv,
        &format!("/v1/events?job=j1&last_event_id={}", life[2].id),
        "\"succeeded\"}",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(
        !text.contains("event: progress"),
        "replayed from after progress: {text}"
    );
    assert!(
        text.contains(&format!("id: {}\nevent: succeeded\n", life[3].id)),
        "{text}"
    );

    // Bad filters and ids are refused like the rest of the API.
    for (q, field) in [
        (
            EventsQuery {
                queue: Some("no spaces".into()),
                ..Default::default()
            },
            "queue",
        ),
        (
            EventsQuery {
                job: Some(String::new()),
                ..Default::default()
            },
            "id",
        ),
    ] {
        let err = c.events(&q).await.expect_err("refused");
        assert_eq!(err.status(), Some(400), "{q:?}: {err}");
        assert!(err.to_string().contains(field), "{q:?}: {err}");
    }
    let text = raw_until(&srv, "/v1/events?last_event_id=soon", "}}").await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("last_event_id"), "{text}");
}

/// Sends `GET path` on a raw socket and reads until `until` is in the answer.
async fn raw_until(srv: &TestServer, path: &str, until: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.port()))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&buf).contains(until) {
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    if tokio::time::timeout(READ_LIMIT, read).await.is_err() {
        srv.fail(format!("{path}: no {until:?} within {READ_LIMIT:?}"));
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn an_id_older_than_the_ring_says_gap_then_replays_what_is_held() {
    let srv = TestServer::start_with_args(None, &["--events-ring", "4"]).await;
    let c = srv.client();
    let jobs = (1..=10)
        .map(|i| job_req(&format!("g{i:02}"), None, json!(i)))
        .collect();
    c.enqueue_batch("q", &BatchRequest { jobs }).await.unwrap();
    let mut s = open(
        &srv,
        EventsQuery {
            last_event_id: Some(2),
            ..Default::default()
        },
    )
    .await;
    match next_item(&srv, &mut s).await {
        StreamItem::Gap(g) => assert_eq!((g.from, g.oldest, g.reason.as_str()), (2, 7, "too_old")),
        other => srv.fail(format!("expected a gap, got {other:?}")),
    }
    for want in 7..=10u64 {
        let e = next_event(&srv, &mut s).await;
        assert_eq!(
            (e.id, brief(&e)),
            (want, (EventKind::Enqueued, format!("g{want:02}")))
        );
    }
    // An id this process never gave (from before a restart) is a gap too.
    let mut s = open(
        &srv,
        EventsQuery {
            last_event_id: Some(1000),
            ..Default::default()
        },
    )
    .await;
    match next_item(&srv, &mut s).await {
        StreamItem::Gap(g) => {
            assert_eq!((g.from, g.oldest, g.reason.as_str()), (1000, 7, "unknown"))
        }
        other => srv.fail(format!("expected a gap, got {other:?}")),
    }
}

const BULK_JOBS: usize = 20_000;

// The healthy reader gets its own thread, so the test driving the work
// cannot starve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_dropped_and_slows_no_one() {
    // A write timeout longer than the test: here the stuck one must live
    // until it reads again and learns it was dropped.
    let srv = TestServer::start_with_args(
        None,
        &[
            "--durability",
            "none",
            "--events-buffer",
            "8192",
            "--write-timeout",
            "1h",
        ],
    )
    .await;
    let c = srv.client();
    srv.configure(
        "bulk",
        QueueConfigRequest {
            concurrency: Some(1000),
            ..Default::default()
        },
    )
    .await;

    // The stuck one: a small receive buffer, the request sent, never read.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stuck = sock
        .connect(([127, 0, 0, 1], srv.port()).into())
        .await
        .unwrap();
    stuck
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // A healthy one, reading everything on its own task.
    let mut healthy = open(&srv, EventsQuery::default()).await;
    let reader = tokio::spawn(async move {
        let mut events = Vec::new();
        let mut succeeded = 0;
        while succeeded < BULK_JOBS {
            match tokio::time::timeout(Duration::from_secs(60), healthy.next()).await {
                Ok(Ok(Some(StreamItem::Event(e)))) => {
                    succeeded += usize::from(e.kind == EventKind::Succeeded);
                    events.push(e);
                }
                other => return Err(format!("after {} events: {other:?}", events.len())),
            }
        }
        Ok(events)
    });
    // Make sure both subscriptions are in place before the work starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let id = |i: usize| format!("bulk-job-{i:06}-0000-0000-0000-000000000000");
    for chunk in (0..BULK_JOBS).collect::<Vec<_>>().chunks(500) {
        let jobs = chunk
            .iter()
            .map(|&i| job_req(&id(i), None, json!(i)))
            .collect();
        c.enqueue_batch("bulk", &BatchRequest { jobs })
            .await
            .unwrap();
    }
    let mut done = 0;
    while done < BULK_JOBS {
        let leases = c
            .claim("bulk", &claim_req("w", 500, 1000))
            .await
            .unwrap()
            .leases;
        ensure!(
            srv,
            !leases.is_empty(),
            "nothing to claim after {done} done"
        );
        let reports = leases
            .into_iter()
            .map(|l| ReportItem {
                id: l.job.id,
                token: l.token,
                outcome: ReportOutcome::Succeeded,
                result: None,
                error: None,
                retry: None,
                retry_after_ms: None,
                claim_next: None,
            })
            .collect::<Vec<_>>();
        done += reports.len();
        c.reports(&ReportsRequest {
            reports,
            brief: false,
        })
        .await
        .unwrap();
    }
    let events = reader
        .await
        .unwrap()
        .unwrap_or_else(|e| srv.fail(format!("the healthy subscriber: {e}")));
    assert_eq!(
        events.len(),
        3 * BULK_JOBS,
        "enqueued, started, succeeded of each"
    );
    assert!(
        events.windows(2).all(|w| w[1].id == w[0].id + 1),
        "the healthy subscriber saw every id once, in order"
    );
    for kind in [
        EventKind::Enqueued,
        EventKind::Started,
        EventKind::Succeeded,
    ] {
        assert_eq!(
            events.iter().filter(|e| e.kind == kind).count(),
            BULK_JOBS,
            "{kind:?}"
        );
    }

    // Now the stuck one reads: what was buffered, then `dropped`, then the end.
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = stuck.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.ends_with(b"\r\n0\r\n\r\n") {
                break;
            }
        }
    };
    if tokio::time::timeout(READ_LIMIT, read).await.is_err() {
        srv.fail("the stuck subscriber's stream did not end".into());
    }
    let text = String::from_utf8_lossy(&buf);
    let dropped = text.find("event: dropped\ndata: ").unwrap_or_else(|| {
        srv.fail(format!(
            "no `dropped` in the last bytes: {}",
            &text[text.len().saturating_sub(2000)..]
        ))
    });
    assert!(
        text[dropped..].contains("fell behind"),
        "{}",
        &text[dropped..]
    );
    assert!(text.ends_with("\r\n0\r\n\r\n"), "the stream ended");
    let received = text.matches("\nevent: succeeded\n").count();
    assert!(
        received < BULK_JOBS,
        "it was dropped before the end ({received} succeeded events reached it)"
    );
    let metrics = c.metrics().await.unwrap();
    assert_eq!(
        gauge(&metrics, "orderly_events_dropped_lagging_total"),
        Some(1),
        "one subscriber dropped for lagging:\n{metrics}"
    );
}

/// The value of an unlabelled metric in a `/metrics` text.
fn gauge(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Open `GET /v1/events` streams, as `/metrics` counts them.
async fn subscribers(srv: &TestServer) -> i64 {
    let text = srv
        .client()
        .metrics()
        .await
        .unwrap_or_else(|e| srv.fail(format!("GET /metrics: {e}")));
    gauge(&text, "orderly_events_subscribers")
        .unwrap_or_else(|| srv.fail(format!("no orderly_events_subscribers in:\n{text}")))
}

/// A long queue name and long ids make big events, so a socket fills sooner.
fn stall_queue() -> String {
    format!("stall-{}", "q".repeat(90))
}

fn stall_id(i: usize) -> String {
    format!("{i:08}-{}", "x".repeat(150))
}

/// Enqueues the next [`STALL_BATCH`] jobs and reads their events from
/// `healthy`, checking each is the next one.
async fn publish_and_read(
    srv: &TestServer,
    healthy: &mut EventStream,
    next: &mut usize,
    seen: &mut Vec<u64>,
) {
    let jobs = (*next..*next + STALL_BATCH)
        .map(|i| job_req(&stall_id(i), None, json!(null)))
        .collect();
    srv.client()
        .enqueue_batch(&stall_queue(), &BatchRequest { jobs })
        .await
        .unwrap();
    for i in *next..*next + STALL_BATCH {
        let e = next_event(srv, healthy).await;
        assert_eq!(
            brief(&e),
            (EventKind::Enqueued, stall_id(i)),
            "event {}",
            e.id
        );
        seen.push(e.id);
    }
    *next += STALL_BATCH;
}

/// Batches the cut-off test may enqueue before it gives up on the cut.
const MAX_STALL_BATCHES: usize = 400;
const STALL_BATCH: usize = 500;

// The healthy reader is read in step with the batches, so it never lags.
// The stuck one's stream may end first by lagging (hyper keeps pulling
// events into its own buffer while the socket is full); what proves the
// cut is its closed socket: without the write timeout the connection stays
// open with its buffers and its task for good (checked: the read below
// then times out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_socket_stays_full_is_cut_off_and_a_reader_gets_every_event() {
    let srv =
        TestServer::start_with_args(None, &["--durability", "none", "--write-timeout", "1s"]).await;
    // The stuck one: a small receive buffer, the request sent, never read.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stuck = sock
        .connect(([127, 0, 0, 1], srv.port()).into())
        .await
        .unwrap();
    stuck
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut healthy = open(&srv, EventsQuery::default()).await;
    srv.wait_for(READ_LIMIT, "both subscribers counted", || async {
        subscribers(&srv).await == 2
    })
    .await;

    let mut next = 0;
    let mut seen: Vec<u64> = Vec::new();
    let mut batches = 0;
    while subscribers(&srv).await > 1 {
        ensure!(
            srv,
            batches < MAX_STALL_BATCHES,
            "the stuck subscriber is still counted after {next} events"
        );
        publish_and_read(&srv, &mut healthy, &mut next, &mut seen).await;
        batches += 1;
    }
    // The reader goes on as before.
    publish_and_read(&srv, &mut healthy, &mut next, &mut seen).await;
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "the healthy subscriber saw every id once, in order"
    );
    assert_eq!(subscribers(&srv).await, 1);

    // The stuck one's connection is closed, its stream cut, not ended.
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match stuck.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    if tokio::time::timeout(READ_LIMIT, read).await.is_err() {
        srv.fail("the stuck subscriber's connection is still open".into());
    }
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(
        !text.ends_with("\r\n0\r\n\r\n"),
        "the stream was cut, not ended"
    );
    assert!(
        text.matches("\nevent: enqueued\n").count() < next,
        "it was cut before the end"
    );
    let log = srv.log_tail();
    ensure!(
        srv,
        log.contains("the client took no bytes for the write timeout of 1s"),
        "no log line says why"
    );
}

#[tokio::test]
async fn job_follow_exits_when_the_job_succeeds_and_prints_it() {
    let srv = TestServer::start().await;
    let c = srv.client();
    c.enqueue("f", &job_req("fj", None, json!(null)))
        .await
        .unwrap();
    let mut cmd = tokio::process::Command::from(srv.cli(&["job", "fj", "--follow"]));
    cmd.kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn orderly job --follow");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    // It prints the job's state once it is subscribed: work only then.
    let mut first = String::new();
    let read = tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut first);
    tokio::time::timeout(READ_LIMIT, read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "fj: queued\n");
    let lease = c
        .claim("f", &claim_req("w", 1, 0))
        .await
        .unwrap()
        .leases
        .remove(0);
    c.heartbeat(
        "fj",
        &HeartbeatRequest {
            token: lease.token.clone(),
            progress: Some(json!(0.5)),
        },
    )
    .await
    .unwrap();
    c.complete(
        "fj",
        &CompleteRequest {
            token: lease.token,
            result: Some(json!(42)),
            claim_next: None,
        },
    )
    .await
    .unwrap();
    let mut rest = String::new();
    let out = async {
        stdout.read_to_string(&mut rest).await.unwrap();
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(READ_LIMIT, out)
        .await
        .unwrap_or_else(|_| srv.fail("orderly job --follow did not exit".into()));
    assert!(status.success(), "{status:?}: {rest}");
    let lines: Vec<&str> = rest.lines().collect();
    assert!(lines[0].ends_with(" started (running)"), "{rest}");
    assert!(lines[1].ends_with(" succeeded (succeeded)"), "{rest}");
    let job: serde_json::Value = serde_json::from_str(&lines[2..].join("\n")).unwrap();
    assert_eq!(
        (job["state"].clone(), job["result"].clone()),
        (json!("succeeded"), json!(42))
    );
}

#[tokio::test]
async fn an_open_stream_ends_at_shutdown_and_does_not_hold_the_server() {
    let mut srv = TestServer::start().await;
    let mut s = open(&srv, EventsQuery::default()).await;
    srv.sigterm();
    let end = tokio::time::timeout(READ_LIMIT, s.next()).await;
    assert!(matches!(end, Ok(Ok(None))), "the stream ended: {end:?}");
    let status = srv
        .wait_exit(READ_LIMIT)
        .await
        .unwrap_or_else(|| srv.fail("the server did not exit".into()));
    assert!(
        status.success(),
        "clean exit, no request abandoned: {status:?}"
    );
}

#[tokio::test]
async fn progress_of_a_job_started_before_a_restart_is_streamed() {
    let mut srv = TestServer::start().await;
    let c = srv.client();
    c.enqueue("r", &job_req("rj", None, json!(null)))
        .await
        .unwrap();
    let lease = c
        .claim("r", &claim_req("w", 1, 0))
        .await
        .unwrap()
        .leases
        .remove(0);
    srv.restart().await;
    let mut s = open(
        &srv,
        EventsQuery {
            job: Some("rj".into()),
            ..Default::default()
        },
    )
    .await;
    let beat = |p| HeartbeatRequest {
        token: lease.token.clone(),
        progress: Some(p),
    };
    c.heartbeat("rj", &beat(json!({"done": 1, "total": 3})))
        .await
        .unwrap();
    c.heartbeat("rj", &beat(json!({"done": 2, "total": 3})))
        .await
        .unwrap();
    c.complete(
        "rj",
        &CompleteRequest {
            token: lease.token.clone(),
            result: None,
            claim_next: None,
        },
    )
    .await
    .unwrap();
    let got: Vec<_> = [
        next_event(&srv, &mut s).await,
        next_event(&srv, &mut s).await,
        next_event(&srv, &mut s).await,
    ]
    .into_iter()
    .map(|e| (e.id, e.kind, e.progress))
    .collect();
    assert_eq!(
        got,
        [
            (1, EventKind::Progress, Some(json!({"done": 1, "total": 3}))),
            (2, EventKind::Progress, Some(json!({"done": 2, "total": 3}))),
            (3, EventKind::Succeeded, None),
        ],
        "ids begin again at 1 in the new process"
    );
}

#[tokio::test]
async fn the_stream_needs_the_token_like_the_rest_of_the_api() {
    let srv = TestServer::start_with(Some("s3cret")).await;
    let err = srv
        .anonymous_client()
        .events(&EventsQuery::default())
        .await
        .expect_err("refused without the token");
    assert_eq!(err.status(), Some(401), "{err}");
    let mut s = open(&srv, EventsQuery::default()).await;
    srv.client()
        .enqueue("t", &job_req("tj", None, json!(null)))
        .await
        .unwrap();
    let e = next_event(&srv, &mut s).await;
    assert_eq!(brief(&e), (EventKind::Enqueued, "tj".into()));
}

#[tokio::test]
async fn failures_retries_and_cancels_have_their_kinds() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let mut s = open(
        &srv,
        EventsQuery {
            job: Some("fk".into()),
            ..Default::default()
        },
    )
    .await;
    c.enqueue("k", &job_req("fk", None, json!(null)))
        .await
        .unwrap();
    let fail = |token: String, retry_after_ms| support::proto::FailRequest {
        token,
        error: json!("boom"),
        retry: None,
        retry_after_ms,
        claim_next: None,
    };
    // Fails with no delay (back in its place), then with a delay (backoff).
    let lease = c
        .claim("k", &claim_req("w", 1, 0))
        .await
        .unwrap()
        .leases
        .remove(0);
    c.fail("fk", &fail(lease.token, Some(0))).await.unwrap();
    let lease = c
        .claim("k", &claim_req("w", 1, 0))
        .await
        .unwrap()
        .leases
        .remove(0);
    c.fail("fk", &fail(lease.token, Some(3_600_000)))
        .await
        .unwrap();
    c.cancel("fk").await.unwrap();
    let retried = c.retry("fk").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..7 {
        let e = next_event(&srv, &mut s).await;
        let j = e.job.unwrap();
        got.push((e.kind, j.state.as_str().to_string(), j.seq));
    }
    let seq = got[0].2;
    assert_eq!(
        got,
        [
            (EventKind::Enqueued, "queued".into(), seq),
            (EventKind::Started, "running".into(), seq),
            (EventKind::Retrying, "queued".into(), seq),
            (EventKind::Started, "running".into(), seq),
            (EventKind::Retrying, "scheduled".into(), seq),
            (EventKind::Cancelled, "cancelled".into(), seq),
            (EventKind::Retried, "queued".into(), retried.seq),
        ]
    );
    assert!(retried.seq > seq, "a retry gives a new seq");
}

#[tokio::test]
async fn job_follow_of_a_job_that_did_not_succeed_exits_non_zero() {
    let srv = TestServer::start().await;
    let c = srv.client();
    c.enqueue("f", &job_req("cx", None, json!(null)))
        .await
        .unwrap();
    c.cancel("cx").await.unwrap();
    let out = srv.run_cli(&["job", "cx", "--follow"]).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{}", support::show(&out));
    assert!(
        stdout.starts_with("cx: cancelled\n"),
        "{}",
        support::show(&out)
    );
    assert!(
        stdout.contains("\"state\": \"cancelled\""),
        "{}",
        support::show(&out)
    );
    assert!(
        stderr.contains("job cx cancelled"),
        "{}",
        support::show(&out)
    );
}
