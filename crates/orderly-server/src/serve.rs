//! Orderly's own accept loop: HTTP/1.1 over TCP with bounded connections.
//!
//! `axum::serve` keeps a connection for as long as the client likes. Here
//! every connection is in one of three phases, and two of them have a deadline:
//!
//! - **head**: bytes of a request have arrived (or the connection was just
//!   accepted) but its headers are not complete. It must complete within the
//!   *header timeout*, however slowly the bytes trickle in: a client sending a
//!   byte a second (slowloris) is cut off.
//! - **idle**: no request in flight and no byte of a next one. A keep-alive
//!   connection idle for the *idle timeout* is closed.
//! - **busy**: a request is in flight, from the moment its headers are read
//!   until its response body is sent. No deadline on the phase: long polls
//!   (`claim` `wait_ms`, `/wait` `timeout_ms`) and event streams are requests
//!   in flight, and a request body is bounded by the body timeout of
//!   [`crate::extract::ApiJson`].
//!
//! In every phase, a write to the socket that cannot make progress for the
//! *write timeout* (the client has stopped reading: its window is shut and
//! the kernel's send buffer full) fails the connection, which is then
//! dropped with everything it holds. That is what cuts off a
//! `GET /v1/events` subscriber that stopped reading: while its socket is
//! full hyper no longer polls the stream, so nothing inside the stream could
//! notice (see `routes/events.rs`). Slow but moving readers are not cut:
//! the clock restarts with every byte the socket takes.
//!
//! hyper 1.x's own `header_read_timeout` starts when the connection is ready
//! for its next request head, so on a keep-alive connection it also bounds the
//! idle wait: with it alone, an idle timeout longer than the header timeout
//! could never be honoured. The phases above are therefore tracked here (a
//! wrapper around the socket sees the first byte of a request, a guard on the
//! response body sees its end), and hyper's timer is set to the sum of both
//! timeouts, only as a backstop.
//!
//! Graceful shutdown: when the `shutdown` future resolves, the loop stops
//! accepting and asks every connection to finish its request in flight and
//! close (idle connections close at once). Connections still open after the
//! grace period are dropped and counted in the [`ShutdownReport`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Time limits of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTimeouts {
    /// Longest a request's headers may take to arrive, from their first byte
    /// (or from the accept, for a new connection).
    pub header: Duration,
    /// Longest a keep-alive connection may stay open with no request in flight.
    pub idle: Duration,
    /// Longest a write to the socket may wait for the client to take bytes.
    pub write: Duration,
}

/// What a graceful shutdown left undone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections still open when the grace period ended (dropped then).
    pub abandoned_connections: usize,
    /// Requests in flight on them (their clients got no answer).
    pub abandoned_requests: usize,
}

impl ShutdownReport {
    /// Nothing was abandoned.
    pub fn is_clean(&self) -> bool {
        self.abandoned_connections == 0 && self.abandoned_requests == 0
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight for at most `grace`.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    timeouts: ConnectionTimeouts,
    shutdown: F,
    grace: Duration,
) -> ShutdownReport
where
    F: Future<Output = ()> + Send + 'static,
{
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let tracker = TaskTracker::new();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(timeouts.header.saturating_add(timeouts.idle));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        // Small request/response pairs: send each answer at once (no Nagle delay).
        let _ = tcp.set_nodelay(true);
        tracker.spawn(serve_connection(
            tcp,
            peer,
            app.clone(),
            builder.clone(),
            timeouts,
            in_flight.clone(),
            stop.clone(),
            abort.clone(),
        ));
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_ok() {
        return ShutdownReport::default();
    }
    let report = ShutdownReport {
        abandoned_connections: tracker.len(),
        abandoned_requests: in_flight.load(Ordering::SeqCst),
    };
    abort.cancel();
    // Dropping a connection is immediate; this only lets the tasks run to it.
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    report
}

async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    match e.kind() {
        // The peer gave up before the accept: nothing to do.
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted => {}
        // Out of file descriptors and the like: wait instead of spinning.
        _ => {
            tracing::error!("accept failed: {e}; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: Arc<hyper::server::conn::http1::Builder>,
    timeouts: ConnectionTimeouts,
    in_flight: Arc<AtomicUsize>,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let activity = Arc::new(Activity::new(timeouts));
    let io = TokioIo::new(Watched {
        io: tcp,
        activity: activity.clone(),
        write_timeout: timeouts.write,
        stalled: None,
    });
    let svc_activity = activity.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = BusyGuard::new(svc_activity.clone(), in_flight.clone());
        let app = app.clone();
        async move {
            let response = match app.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(response.map(|inner| {
                Body::new(Tracked {
                    inner,
                    _guard: guard,
                })
            }))
        }
    });
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let changed = activity.changed.notified();
        // While a request is in flight there is no deadline: look again after
        // an idle timeout (the phase has changed by then, or still is busy).
        let deadline = activity.arm();
        tokio::select! {
            res = conn.as_mut() => {
                if activity.write_stalled.load(Ordering::Relaxed) {
                    tracing::info!(
                        %peer,
                        "closed the connection: the client took no bytes for the write timeout of {:?} \
                         (it stopped reading; an event stream's subscriber is dropped this way)",
                        timeouts.write
                    );
                } else if let Err(e) = res {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = stop.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = abort.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {
                if let Some(why) = activity.expired() {
                    tracing::debug!(%peer, "closing the connection: {why}");
                    return;
                }
            }
            _ = changed => {}
        }
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request's headers since this instant.
    Head(Instant),
    /// No request in flight and no byte of the next one since this instant.
    Idle(Instant),
    /// This many requests in flight.
    Busy(usize),
}

/// A connection's phase, shared by the socket wrapper, the request guards and
/// the connection's task.
struct Activity {
    /// The phase, and the deadline the connection's task sleeps until.
    state: Mutex<(Phase, Option<Instant>)>,
    timeouts: ConnectionTimeouts,
    /// Wakes the connection's task when the deadline moved closer.
    changed: Notify,
    /// Set when a write made no progress for the write timeout.
    write_stalled: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new(timeouts: ConnectionTimeouts) -> Self {
        // A new connection must send its first request's headers in time.
        Activity {
            state: Mutex::new((Phase::Head(Instant::now()), None)),
            timeouts,
            changed: Notify::new(),
            write_stalled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (Phase, Option<Instant>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deadline_of(&self, phase: Phase) -> Option<Instant> {
        match phase {
            Phase::Head(since) => Some(since + self.timeouts.header),
            Phase::Idle(since) => Some(since + self.timeouts.idle),
            Phase::Busy(_) => None,
        }
    }

    /// The deadline for the connection's task to sleep until, remembered so
    /// that a change knows whether it must wake the task. While a request is
    /// in flight there is none: the task looks again after an idle timeout.
    fn arm(&self) -> Instant {
        let mut st = self.state();
        let at = self
            .deadline_of(st.0)
            .unwrap_or_else(|| Instant::now() + self.timeouts.idle);
        st.1 = Some(at);
        at
    }

    /// Sets the phase. The connection's task is woken only if the deadline
    /// moved closer than the one it sleeps until; a later one it finds when
    /// it wakes (nothing has expired, it looks again). So most requests cost
    /// the task no wake-up, rather than one per phase change.
    fn set(&self, f: impl FnOnce(Phase) -> Option<Phase>) {
        let sooner = {
            let mut st = self.state();
            let Some(phase) = f(st.0) else { return };
            st.0 = phase;
            matches!((self.deadline_of(phase), st.1), (Some(new), Some(armed)) if new < armed)
        };
        if sooner {
            self.changed.notify_one();
        }
    }

    /// Bytes arrived on the socket: an idle connection starts a request.
    fn read_some(&self) {
        self.set(|p| match p {
            Phase::Idle(_) => Some(Phase::Head(Instant::now())),
            _ => None,
        });
    }

    /// Why the connection must close now, if it must.
    fn expired(&self) -> Option<String> {
        let now = Instant::now();
        let t = self.timeouts;
        match self.state().0 {
            Phase::Head(since) if now >= since + t.header => Some(format!(
                "request headers not complete within the header timeout of {:?}",
                t.header
            )),
            Phase::Idle(since) if now >= since + t.idle => Some(format!(
                "no request within the idle timeout of {:?}",
                t.idle
            )),
            _ => None,
        }
    }
}

/// Marks a request in flight, from its headers to the end of its response.
struct BusyGuard {
    activity: Arc<Activity>,
    in_flight: Arc<AtomicUsize>,
}

impl BusyGuard {
    fn new(activity: Arc<Activity>, in_flight: Arc<AtomicUsize>) -> Self {
        activity.set(|p| match p {
            Phase::Busy(n) => Some(Phase::Busy(n + 1)),
            _ => Some(Phase::Busy(1)),
        });
        in_flight.fetch_add(1, Ordering::SeqCst);
        BusyGuard {
            activity,
            in_flight,
        }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.activity.set(|p| match p {
            Phase::Busy(n) if n > 1 => Some(Phase::Busy(n - 1)),
            _ => Some(Phase::Idle(Instant::now())),
        });
    }
}

/// A response body that keeps its request marked in flight until hyper is
/// done with it (sent, or dropped with the connection).
struct Tracked {
    inner: Body,
    _guard: BusyGuard,
}

impl hyper::body::Body for Tracked {
    type Data = <Body as hyper::body::Body>::Data;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling [`Activity`] when bytes arrive and failing a write
/// that stays blocked for the write timeout.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
    write_timeout: Duration,
    /// Armed when a write returned `Pending`; cleared when one makes progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Watched {
    /// Passes on a write's outcome: progress (or an error) clears the stall
    /// timer; `Pending` arms it (the first time) and polls it, so the task is
    /// woken when it expires, and then the write fails with `TimedOut`.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if res.is_ready() {
            self.stalled = None;
            return res;
        }
        let timeout = self.write_timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.activity.write_stalled.store(true, Ordering::Relaxed);
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the client took no bytes for {timeout:?}"),
        )))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        self.timed(cx, res)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_flush(cx);
        self.timed(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.timed(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
