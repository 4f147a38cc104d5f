//! The seed's FastAPI app rebuilt on the embedded library
//! (`examples/seed_app.rs`), run as a real child process and driven exactly
//! as the seed's own client drove the original: three `POST /request/{uid}`
//! with the seed's three UUIDs, then `GET /status` every 250 ms. At every
//! poll the states must be consistent with FIFO, and the jobs must complete
//! 1, 2, 3, also across a kill -9 of the app in the middle of job 2.
//!
//! Each poll's answer is printed (`cargo test -p orderly --test seed_app --
//! --nocapture` shows them).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The seed's three request ids, in the order its client posted them.
const UIDS: [&str; 3] = [
    "c880cc1b-dc27-4175-b616-29a69322d156",
    "4f0ea1f1-a5a3-4a7c-a114-17e57a1c55db",
    "15ba0d0a-3c94-4906-a331-054a3847171c",
];

/// How long each job takes in the app (`--job-seconds`).
const JOB_SECONDS: &str = "1";

/// The seed client's polling interval.
const POLL: Duration = Duration::from_millis(250);

/// Longest any wait may take before it fails the test (a bound against
/// hangs, not a performance check).
const PATIENCE: Duration = Duration::from_secs(30);

/// The example binary `cargo test` built beside this test
/// (`target/<profile>/deps/seed_app-…` → `target/<profile>/examples/seed_app`).
fn seed_app_bin() -> PathBuf {
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

/// Whether statuses in post order read `complete`* then at most one
/// `in_progress` then `in_queue`*: what a one-at-a-time FIFO queue can show.
fn fifo_consistent(states: &[String]) -> bool {
    // 0: completes so far, 1: after the one in progress, 2: in the queue.
    let mut phase = 0;
    for s in states {
        phase = match (s.as_str(), phase) {
            ("complete", 0) => 0,
            ("in_progress", 0) => 1,
            ("in_queue", _) => 2,
            _ => return false,
        };
    }
    true
}

/// The check itself tells FIFO from what the seed's app did (1, 3, 2).
#[test]
fn the_fifo_check_rejects_the_seeds_order() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(fifo_consistent(&s(&[
        "complete",
        "in_progress",
        "in_queue"
    ])));
    assert!(fifo_consistent(&s(&["in_queue", "in_queue", "in_queue"])));
    assert!(fifo_consistent(&s(&["complete", "complete", "complete"])));
    assert!(!fifo_consistent(&s(&["complete", "in_queue", "complete"])));
    assert!(!fifo_consistent(&s(&[
        "complete",
        "in_queue",
        "in_progress"
    ])));
    assert!(!fifo_consistent(&s(&[
        "in_progress",
        "in_progress",
        "in_queue"
    ])));
    assert!(!fifo_consistent(&s(&["complete", "failed", "in_queue"])));
}

/// A running seed app: its address, its output so far, killed on drop.
struct App {
    child: tokio::process::Child,
    base: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

/// Collects a child's output lines; sends the address of `listening on
/// http://ADDR` once it shows.
fn collect(
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
    async fn start(dir: &Path) -> App {
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
    fn starts(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| l.starts_with("start "))
            .cloned()
            .collect()
    }

    /// Its stderr so far, for failure messages.
    fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// kill -9, and reaps it.
    async fn kill(mut self) {
        self.child.start_kill().expect("kill -9 the app");
        let status = self.child.wait().await.expect("reap the app");
        assert!(!status.success(), "the killed app exited cleanly: {status}");
    }

    /// `POST /request/{uid}`: status code and body (printed as it came).
    async fn post(&self, uid: &str) -> (u16, Value) {
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
    async fn status(&self) -> (String, Vec<String>) {
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
    async fn job(&self, uid: &str) -> Value {
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

/// The seed client's loop: polls `/status` every 250 ms, printing each
/// answer and checking FIFO, until `done` holds for the statuses (in post
/// order); records when each job was first seen complete.
struct Poller {
    t0: Instant,
    n: u32,
    completed: Vec<String>,
    saw_in_progress: bool,
}

impl Poller {
    fn new() -> Self {
        Poller {
            t0: Instant::now(),
            n: 0,
            completed: Vec::new(),
            saw_in_progress: false,
        }
    }

    async fn until(&mut self, app: &App, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (body, states) = app.status().await;
            self.n += 1;
            println!(
                "poll {:>2} at {:>5} ms [{}]: {body}",
                self.n,
                self.t0.elapsed().as_millis(),
                states.join(" ")
            );
            assert!(
                fifo_consistent(&states),
                "poll {}: not FIFO: {states:?}",
                self.n
            );
            for (uid, s) in UIDS.iter().zip(&states) {
                if s == "complete" && !self.completed.iter().any(|c| c == uid) {
                    self.completed.push(uid.to_string());
                }
                self.saw_in_progress |= s == "in_progress";
            }
            if done(&states) {
                return states;
            }
            assert!(
                Instant::now() < deadline,
                "still {states:?} after {PATIENCE:?}; app log:\n{}",
                app.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

fn all_complete(s: &[String]) -> bool {
    s.iter().all(|s| s == "complete")
}

/// Posts the seed's three requests; each is accepted as `in_queue`.
async fn post_all(app: &App) {
    for uid in UIDS {
        let (code, body) = app.post(uid).await;
        assert_eq!(code, 202, "{body}");
        assert_eq!(
            body,
            serde_json::json!({ "uid": uid, "status": "in_queue" }),
            "{body}"
        );
    }
}

/// The `start_no` of a job as Orderly shows it.
fn start_no(job: &Value) -> i64 {
    job["start_no"].as_i64().unwrap_or_else(|| panic!("{job}"))
}

/// The seed's client against the rebuilt app: FIFO at every poll, complete
/// 1, 2, 3, and a re-post is the same job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_client_sees_fifo_and_completion_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = App::start(dir.path()).await;
    post_all(&app).await;
    // Posting a uid again is the same job, not a second one.
    let before = app.job(UIDS[2]).await;
    let (code, body) = app.post(UIDS[2]).await;
    assert_eq!(code, 200, "a re-post: {body}");
    assert_eq!(body["uid"], UIDS[2]);
    assert_eq!(app.job(UIDS[2]).await["seq"], before["seq"]);

    let mut polls = Poller::new();
    polls.until(&app, all_complete).await;
    assert_eq!(polls.completed, UIDS, "completion order");
    assert!(polls.saw_in_progress, "no poll saw a job in progress");

    let jobs = [
        app.job(UIDS[0]).await,
        app.job(UIDS[1]).await,
        app.job(UIDS[2]).await,
    ];
    for j in &jobs {
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(j["attempt"], 1, "{j}");
    }
    assert!(
        start_no(&jobs[0]) < start_no(&jobs[1]) && start_no(&jobs[1]) < start_no(&jobs[2]),
        "start order: {jobs:?}"
    );
    // A re-post of a finished request does not run it again.
    let (code, body) = app.post(UIDS[0]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "complete", "{body}");
    app.status().await;
    assert_eq!(app.job(UIDS[0]).await["attempt"], 1);
    let starts = app.starts();
    assert_eq!(
        starts,
        UIDS.iter()
            .map(|u| format!("start {u} (attempt 1)"))
            .collect::<Vec<_>>(),
        "the handler's runs"
    );
}

/// kill -9 while job 2 runs; started again in the same directory, the app
/// reruns job 2 first (attempt 2), then job 3, and all complete 1, 2, 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_job_2_reruns_it_first_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = App::start(dir.path()).await;
    post_all(&app).await;
    let mut polls = Poller::new();
    // Poll until job 2 is the one in progress, and kill at once.
    polls.until(&app, |s| s[1] == "in_progress").await;
    println!("kill -9 the app");
    app.kill().await;
    assert_eq!(polls.completed, [UIDS[0]], "before the kill");

    let app = App::start(dir.path()).await;
    println!("started again");
    let states = polls.until(&app, all_complete).await;
    assert!(all_complete(&states));
    assert_eq!(polls.completed, UIDS, "completion order");

    let jobs = [
        app.job(UIDS[0]).await,
        app.job(UIDS[1]).await,
        app.job(UIDS[2]).await,
    ];
    for j in &jobs {
        assert_eq!(j["state"], "succeeded", "{j}");
    }
    assert_eq!(jobs[0]["attempt"], 1, "{}", jobs[0]);
    assert_eq!(jobs[1]["attempt"], 2, "job 2 did not rerun: {}", jobs[1]);
    assert_eq!(jobs[2]["attempt"], 1, "{}", jobs[2]);
    assert!(
        start_no(&jobs[2]) > start_no(&jobs[1]),
        "job 3 started before job 2's rerun: {jobs:?}"
    );
    assert_eq!(
        app.starts(),
        [
            format!("start {} (attempt 2)", UIDS[1]),
            format!("start {} (attempt 1)", UIDS[2]),
        ],
        "the restarted app's runs"
    );
}
