//! The seed app as a child process: the example binary `cargo test`
//! built, started in a working directory of the test's choosing, its
//! address read from its stdout, its output kept, and the seed's routes
//! called over real HTTP.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The seed's three request ids, in the order its client posted them.
pub const UIDS: [&str; 3] = [
    "c880cc1b-dc27-4175-b616-29a69322d156",
    "4f0ea1f1-a5a3-4a7c-a114-17e57a1c55db",
    "15ba0d0a-3c94-4906-a331-054a3847171c",
];

/// How long each job takes in the app (`--job-seconds`).
pub const JOB_SECONDS: &str = "1";

/// Longest any wait may take before it fails the test (a bound against
/// hangs, not a performance check).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The example binary `cargo test` built beside this test
/// (`target/<profile>/deps/seed_app-…` → `target/<profile>/examples/seed_app`).
pub fn seed_app_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = profile
        .join("examples")
        .join(format!("seed_app{}", std::env::consts::EXE_SUFFIX));
    let how = "`cargo test -p orderly` builds it (a filter such as `--test seed_app` \
               does not: run `cargo build -p orderly --example seed_app` first)";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "the seed_app example is not built at {}: {how}",
                bin.display()
            )
        });
    // A binary older than the crate's sources would test old code.
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![crate_dir.join("examples/seed_app.rs")];
    if let Ok(dir) = std::fs::read_dir(crate_dir.join("src")) {
        sources.extend(dir.filter_map(Result::ok).map(|e| e.path()));
    }
    for src in sources {
        if let Ok(changed) = std::fs::metadata(&src).and_then(|m| m.modified()) {
            assert!(
                changed <= built,
                "the seed_app example at {} is older than {}: {how}",
                bin.display(),
                src.display()
            );
        }
    }
    bin
}

/// A running seed app: its address, its output so far, killed on drop.
pub struct App {
    child: tokio::process::Child,
    base: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

/// Collects a child's output lines; sends the address of `listening on
/// http://ADDR` once it shows.
pub fn collect(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
    mut addr: Option<tokio::sync::oneshot::Sender<String>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(a) = line.strip_prefix("listening on ") {
                if let Some(tx) = addr.take() {
                    let _ = tx.send(a.trim().to_string());
                }
            }
            into.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
}

impl App {
    /// Starts the app with its working directory (and so its data) in `dir`.
    pub async fn start(dir: &Path) -> App {
        let mut cmd = tokio::process::Command::new(seed_app_bin());
        cmd.args(["--listen", "127.0.0.1:0", "--job-seconds", JOB_SECONDS])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the seed_app example");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        collect(
            child.stdout.take().expect("stdout"),
            Arc::clone(&stdout),
            Some(tx),
        );
        collect(
            child.stderr.take().expect("stderr"),
            Arc::clone(&stderr),
            None,
        );
        let base = match tokio::time::timeout(PATIENCE, rx).await {
            Ok(Ok(a)) => a,
            _ => panic!(
                "seed_app never printed `listening on http://ADDR`; stderr: {:?}",
                stderr.lock().unwrap_or_else(|p| p.into_inner())
            ),
        };
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        App {
            child,
            base,
            stdout,
            stderr,
            http: reqwest::Client::new(),
        }
    }

    /// Its stdout lines `start UID (attempt N)` so far.
    pub fn starts(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| l.starts_with("start "))
            .cloned()
            .collect()
    }

    /// Its stderr so far, for failure messages.
    pub fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// kill -9, and reaps it.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("kill -9 the app");
        let status = self.child.wait().await.expect("reap the app");
        assert!(!status.success(), "the killed app exited cleanly: {status}");
    }

    /// `POST /request/{uid}`: status code and body (printed as it came).
    pub async fn post(&self, uid: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/request/{uid}", self.base))
            .send()
            .await
            .expect("POST /request");
        let code = r.status().as_u16();
        let body = r.text().await.expect("body");
        println!("POST /request/{uid} -> {code} {body}");
        (code, serde_json::from_str(&body).expect("a JSON answer"))
    }

    /// `GET /status`: the raw body and the statuses of `UIDS` in post order.
    pub async fn status(&self) -> (String, Vec<String>) {
        let r = self
            .http
            .get(format!("{}/status", self.base))
            .send()
            .await
            .expect("GET /status");
        assert_eq!(r.status(), 200);
        let body = r.text().await.expect("body");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        let map = v.as_object().expect("a map from uid");
        assert_eq!(map.len(), UIDS.len(), "a new job appeared: {body}");
        let states = UIDS
            .iter()
            .map(|u| {
                let e = &map[*u];
                assert_eq!(e["uid"], *u, "{body}");
                e["status"].as_str().expect("a status").to_string()
            })
            .collect();
        // The map lists the requests in the order they came.
        let at: Vec<usize> = UIDS.iter().map(|u| body.find(u).unwrap_or(0)).collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "not in post order: {body}"
        );
        (body, states)
    }

    /// `GET /orderly/v1/jobs/{uid}`: the job as Orderly shows it.
    pub async fn job(&self, uid: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/orderly/v1/jobs/{uid}", self.base))
            .send()
            .await
            .expect("GET job");
        assert_eq!(r.status(), 200);
        r.json().await.expect("JSON")
    }
}
