//! Fixtures of the process-level end-to-end tests: the real `orderly` binary
//! (`orderly serve` on a free loopback port with its SQLite store in a temp
//! dir, `orderly worker` processes, CLI commands), real HTTP through
//! `orderly_client::Client`, and bounded waits that poll instead of sleeping.
//!
//! Every wait has a deadline; a failure panics with the server log's tail.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use orderly_client::proto;
#[allow(unused_imports)]
pub use orderly_client::{Client, ClientError};
use proto::{ClaimRequest, EnqueueRequest, JobView, QueueConfigRequest};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_orderly");

/// Panics with a message and the server log's tail when `cond` is false.
#[macro_export]
macro_rules! ensure {
    ($srv:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            $srv.fail(format!($($arg)+));
        }
    };
}

/// A `Command` for the binary that inherits no `ORDERLY_*` variable from the
/// environment running the tests (so a developer's ORDERLY_TOKEN or
/// ORDERLY_SERVER cannot change what a test exercises).
pub fn orderly() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ORDERLY_") {
            c.env_remove(k);
        }
    }
    c.env("ORDERLY_LOG", "info");
    c.stdin(Stdio::null());
    c
}

/// A loopback port that was free a moment ago (bind to :0, read it, drop it).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Polls `cond` every 20 ms until it holds (`true`) or `deadline` passes (`false`).
pub async fn wait_until<F, Fut>(deadline: Instant, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `timeout` from now.
pub fn deadline(timeout: Duration) -> Instant {
    Instant::now() + timeout
}

/// The last `max` bytes of a file, as text.
pub fn file_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no file {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs a command to completion with a time limit (killed if it overruns).
pub async fn run_bounded(cmd: Command, timeout: Duration) -> Output {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn orderly");
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.expect("wait for orderly"),
        Err(_) => panic!("command did not finish within {timeout:?}"),
    }
}

/// Output as text, for messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parses an RFC 3339 time from the API into milliseconds since the epoch.
pub fn millis(t: &str) -> i64 {
    let st = humantime::parse_rfc3339(t).unwrap_or_else(|e| panic!("time {t:?}: {e}"));
    st.duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64
}

/// A claim request.
pub fn claim_req(worker: &str, max: u32, wait_ms: u64) -> ClaimRequest {
    ClaimRequest {
        worker: worker.into(),
        max,
        wait_ms,
        lease_ms: None,
    }
}

/// An enqueue request with a client-chosen id.
pub fn job_req(id: &str, key: Option<&str>, payload: serde_json::Value) -> EnqueueRequest {
    EnqueueRequest {
        id: Some(id.into()),
        key: key.map(Into::into),
        payload,
        ..Default::default()
    }
}

/// A running `orderly serve` child process with its own data dir and port.
pub struct TestServer {
    dir: tempfile::TempDir,
    port: u16,
    token: Option<String>,
    child: Option<Child>,
    log: PathBuf,
    client: Client,
    extra_args: Vec<String>,
}

impl TestServer {
    /// Starts a server without a token.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a server; with a token the API requires it.
    pub async fn start_with(token: Option<&str>) -> Self {
        Self::start_with_args(token, &[]).await
    }

    /// Starts a server with extra `orderly serve` flags (kept across restarts).
    pub async fn start_with_args(token: Option<&str>, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("orderly-e2e-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let log = dir.path().join("server.log");
        let url = format!("http://127.0.0.1:{port}");
        let mut s = TestServer {
            client: Client::new(url, token.map(Into::into)),
            dir,
            port,
            token: token.map(Into::into),
            child: None,
            log,
            extra_args: extra.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        let mut cmd = orderly();
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir());
        if let Some(t) = &self.token {
            cmd.arg("--token").arg(t);
        }
        cmd.args(&self.extra_args);
        cmd.stdout(log.try_clone().expect("log fd")).stderr(log);
        self.child = Some(cmd.spawn().expect("spawn orderly serve"));
        let probe = Client::new(self.url(), None);
        let until = deadline(Duration::from_secs(30));
        loop {
            if probe.health().await.is_ok_and(|h| h.status == "ok") {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                self.fail(format!("orderly serve exited early with {status}"));
            }
            if Instant::now() >= until {
                self.fail("orderly serve not healthy within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server process's id (panics if it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client (with the server's token, if any).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client without a token.
    pub fn anonymous_client(&self) -> Client {
        Client::new(self.url(), None)
    }

    /// The temp dir (the store is in `data/`, the log in `server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The store's directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log tail.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log, 6000)
    }

    /// Panics with `msg` and the server log's tail.
    #[track_caller]
    pub fn fail(&self, msg: String) -> ! {
        panic!(
            "{msg}\n=== server log tail ({}) ===\n{}",
            self.log.display(),
            self.log_tail()
        )
    }

    /// Waits (polling every 20 ms) until `cond` holds; panics after `timeout`.
    pub async fn wait_for<F, Fut>(&self, timeout: Duration, what: &str, cond: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        if !wait_until(deadline(timeout), cond).await {
            self.fail(format!("timed out after {timeout:?} waiting for {what}"));
        }
    }

    /// Is the server process running?
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL (`Child::kill` sends SIGKILL on unix) and reap the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (a graceful shutdown) to the server process.
    pub fn sigterm(&self) {
        let pid = self.child.as_ref().expect("server running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits (polling every 20 ms) for the server to exit and reaps it; `None` on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = deadline(timeout);
        loop {
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again on the same data dir and port (killing it first if it runs).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// Creates or configures a queue.
    pub async fn configure(&self, queue: &str, req: QueueConfigRequest) {
        if let Err(e) = self.client.configure(queue, &req).await {
            self.fail(format!("configure {queue}: {e}"));
        }
    }

    /// One job (panics if missing).
    pub async fn job(&self, id: &str) -> JobView {
        match self.client.job(id).await {
            Ok(j) => j,
            Err(e) => self.fail(format!("GET /v1/jobs/{id}: {e}")),
        }
    }

    /// Waits (polling every 50 ms, up to `timeout`) until `queue` holds
    /// exactly `n` jobs, all finished, and returns them in `seq` order; fails
    /// the test with their states otherwise.
    pub async fn wait_all_finished(
        &self,
        queue: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<JobView> {
        let done = |jobs: &[JobView]| jobs.len() == n && jobs.iter().all(|j| j.state.is_finished());
        let until = deadline(timeout);
        loop {
            let jobs = self.list_all(queue).await;
            if done(&jobs) {
                return jobs;
            }
            if Instant::now() >= until {
                self.fail(format!(
                    "{queue}: not all {n} jobs finished: {:?}",
                    jobs.iter().map(|j| (j.seq, j.state)).collect::<Vec<_>>()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The whole start log of `queue`, in start order, paging by `limit`
    /// through `next_after`.
    pub async fn start_log(&self, queue: &str, limit: u32) -> Vec<proto::StartView> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = match self.client.starts(queue, after, limit).await {
                Ok(p) => p,
                Err(e) => self.fail(format!("start log of {queue} after {after:?}: {e}")),
            };
            out.extend(page.starts);
            match page.next_after {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    }

    /// Every job of a queue in listing order, paging with `after`.
    pub async fn list_all(&self, queue: &str) -> Vec<JobView> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = match self.client.list(queue, None, after, 1000).await {
                Ok(p) => p,
                Err(e) => self.fail(format!("list {queue} after {after:?}: {e}")),
            };
            out.extend(page.jobs);
            match page.next_after {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    }

    /// A `Command` for a client subcommand pointed at this server (`--server`, `--token`).
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut c = orderly();
        c.args(args).arg("--server").arg(self.url());
        if let Some(t) = &self.token {
            c.arg("--token").arg(t);
        }
        c
    }

    /// Runs a client subcommand (20 s limit); returns its output.
    pub async fn run_cli(&self, args: &[&str]) -> Output {
        run_bounded(self.cli(args), Duration::from_secs(20)).await
    }

    /// Runs a client subcommand that must succeed; returns its stdout.
    pub async fn run_cli_ok(&self, args: &[&str]) -> String {
        let out = self.run_cli(args).await;
        if !out.status.success() {
            self.fail(format!("orderly {args:?} failed: {}", show(&out)));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `orderly worker QUEUE [extra…] -- command…` against this server.
    pub fn worker(&self, queue: &str, extra: &[&str], command: &[&str]) -> WorkerProc {
        let n = WORKER_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = self.dir().join(format!("worker-{queue}-{n}.log"));
        let file = File::create(&log).expect("worker log");
        let mut cmd = orderly();
        cmd.arg("worker")
            .arg(queue)
            .arg("--server")
            .arg(self.url())
            .arg("--name")
            .arg(format!("e2e-worker-{n}"));
        if let Some(t) = &self.token {
            cmd.arg("--token").arg(t);
        }
        cmd.args(&self.extra_args);
        cmd.args(extra).arg("--").args(command);
        cmd.stdout(file.try_clone().expect("log fd")).stderr(file);
        {
            use std::os::unix::process::CommandExt;
            // Own process group, so the commands it runs can be cleaned up with it.
            cmd.process_group(0);
        }
        let child = cmd.spawn().expect("spawn orderly worker");
        WorkerProc {
            child: Some(child),
            log,
        }
    }
}

static WORKER_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An `orderly worker` child process (in its own process group).
pub struct WorkerProc {
    child: Option<Child>,
    log: PathBuf,
}

impl WorkerProc {
    /// The worker's log (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL the worker process only (its running command is left orphaned,
    /// as after a real crash); [`WorkerProc::kill_group`] cleans up later.
    pub fn kill9(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL the whole process group (the worker and the commands it started).
    pub fn kill_group(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            let _ = c.kill();
            let _ = c.wait();
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Waits (polling every 20 ms) for the worker to exit; `None` on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = deadline(timeout);
        loop {
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Asserts ids are unique and seqs strictly increase in listing order.
pub fn check_listing(srv: &TestServer, jobs: &[JobView]) {
    let mut ids = HashSet::new();
    for (i, j) in jobs.iter().enumerate() {
        ensure!(srv, ids.insert(j.id.clone()), "id {} listed twice", j.id);
        if i > 0 {
            ensure!(
                srv,
                jobs[i - 1].seq < j.seq,
                "listing not in strictly increasing seq order at {i}: {} then {}",
                jobs[i - 1].seq,
                j.seq
            );
        }
    }
}

/// A private throwaway PostgreSQL cluster (outage and authentication tests).
pub mod pg_cluster;

/// Several nodes on one PostgreSQL schema, and their start log.
pub mod nodes;
