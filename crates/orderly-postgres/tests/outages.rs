//! Outages seen by one store: a database that stops answering (a TCP peer
//! that holds the connection and never replies, a "blackhole") answers
//! `Unavailable` within the operation timeout, for writes and for the
//! health check alike, never a false success and never a hang; once the
//! database answers again the same store serves again without reopening.
//!
//! The blackhole is a TCP proxy in the test in front of the real
//! PostgreSQL: forwarding, then holding every socket (old and new) without
//! a byte either way, then forwarding again.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderly_core::{EnqueueParams, NewJob, Store, StoreError};
use orderly_postgres::{PostgresOptions, PostgresStore};
use support::Schemas;
use tokio::net::{TcpListener, TcpStream};

const T0: i64 = 1_700_000_000_000;

/// Generous outer bound on any one call, only so a regression hangs no test.
const HANG: Duration = Duration::from_secs(120);

fn job(id: &str) -> NewJob {
    NewJob {
        id: id.into(),
        key: None,
        payload: serde_json::json!({}),
        run_at: None,
        max_attempts: None,
        timeout_ms: None,
    }
}

/// A proxy to the test database that can be switched into a blackhole.
struct Proxy {
    port: u16,
    /// `true`: connections are held without forwarding a byte.
    blackhole: Arc<AtomicBool>,
    /// Bumped to cut every connection of the previous epoch.
    epoch: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let target: tokio_postgres::Config = support::database_url().parse().expect("url");
        let host = match target.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let target = format!(
            "{host}:{}",
            target.get_ports().first().copied().unwrap_or(5432)
        );
        let blackhole = Arc::new(AtomicBool::new(false));
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        let epoch = Arc::new(epoch);
        let (hole, ep) = (blackhole.clone(), epoch.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (hole, target) = (hole.clone(), target.clone());
                let mut cut = ep.subscribe();
                tokio::spawn(async move {
                    if hole.load(Ordering::SeqCst) {
                        // Hold the socket, answer nothing, until cut.
                        let _held = client;
                        let _ = cut.changed().await;
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    forward(client, server, hole, cut).await;
                });
            }
        });
        Proxy {
            port,
            blackhole,
            epoch,
        }
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port,
            support::database_url()
                .rsplit('/')
                .next()
                .unwrap_or("test")
                .split('?')
                .next()
                .unwrap_or("test")
        )
    }

    /// Stops forwarding: every socket, open or new, is held silent.
    fn go_silent(&self) {
        self.blackhole.store(true, Ordering::SeqCst);
    }

    /// Cuts every held socket and forwards new connections again.
    fn come_back(&self) {
        self.blackhole.store(false, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }
}

/// Copies both ways while the proxy forwards; once it is a blackhole the
/// bytes read are dropped (nothing reaches the other side) until cut.
async fn forward(
    client: TcpStream,
    server: TcpStream,
    hole: Arc<AtomicBool>,
    mut cut: tokio::sync::watch::Receiver<u64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let h1 = hole.clone();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !h1.load(Ordering::SeqCst) && sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !hole.load(Ordering::SeqCst) && cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.changed() => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_answers_unavailable_within_the_operation_timeout_and_the_store_recovers()
{
    let schemas = Schemas::default();
    let schema = support::fresh_schema();
    schemas.adopt(&schema);
    let proxy = Proxy::start().await;
    let op_timeout = Duration::from_secs(2);
    let store = PostgresStore::open(&PostgresOptions {
        url: proxy.url(),
        op_timeout,
        connect_timeout: Duration::from_secs(2),
        ..support::options(&schema)
    })
    .await
    .expect("open through the proxy");
    store
        .job_enqueue_many(EnqueueParams {
            queue: "q".into(),
            jobs: vec![job("before")],
            now: T0,
        })
        .await
        .expect("an enqueue while the database answers");

    proxy.go_silent();
    let started = Instant::now();
    let write = tokio::time::timeout(
        HANG,
        store.job_enqueue_many(EnqueueParams {
            queue: "q".into(),
            jobs: vec![job("during")],
            now: T0,
        }),
    )
    .await
    .expect("the enqueue hung past any timeout");
    let took = started.elapsed();
    assert!(
        matches!(write, Err(StoreError::Unavailable(_))),
        "a write to a silent database must be Unavailable, got {write:?}"
    );
    eprintln!("enqueue against the silent database answered after {took:?} (operation timeout {op_timeout:?})");
    let started = Instant::now();
    let health = tokio::time::timeout(HANG, store.health())
        .await
        .expect("the health check hung");
    eprintln!(
        "health against the silent database answered after {:?}",
        started.elapsed()
    );
    assert!(
        matches!(health, Err(StoreError::Unavailable(_))),
        "health of a silent database must be Unavailable, got {health:?}"
    );

    proxy.come_back();
    let mut recovered = false;
    for _ in 0..20 {
        if tokio::time::timeout(HANG, store.health())
            .await
            .expect("health hung")
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "the store did not recover once the database answered again"
    );
    store
        .job_enqueue_many(EnqueueParams {
            queue: "q".into(),
            jobs: vec![job("after")],
            now: T0,
        })
        .await
        .expect("an enqueue once the database is back");
    let before = store.job_get("before").await.expect("read");
    assert!(before.is_some(), "the acknowledged job is gone");
    store.close().await;
}

/// Every session cut while the database is silent: a write answers
/// `Unavailable` (the pool's new sessions hang in their start-up, bounded by
/// the connect and operation timeouts), never a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_sessions_and_a_silent_database_answer_unavailable() {
    let schemas = Schemas::default();
    let schema = support::fresh_schema();
    schemas.adopt(&schema);
    let proxy = Proxy::start().await;
    let store = PostgresStore::open(&PostgresOptions {
        url: proxy.url(),
        op_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..support::options(&schema)
    })
    .await
    .expect("open through the proxy");
    // Silent, then cut: every pooled session is gone and new ones are held.
    proxy.go_silent();
    proxy.epoch.send_modify(|e| *e += 1);
    let out = tokio::time::timeout(
        HANG,
        store.job_enqueue_many(EnqueueParams {
            queue: "q".into(),
            jobs: vec![job("cut")],
            now: T0,
        }),
    )
    .await
    .expect("the enqueue hung");
    assert!(
        matches!(out, Err(StoreError::Unavailable(_))),
        "a write over cut sessions must be Unavailable, got {out:?}"
    );
    store.close().await;
}
