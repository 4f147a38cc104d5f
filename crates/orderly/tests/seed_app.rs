//! The seed's FastAPI app rebuilt on the embedded library
//! (`examples/seed_app.rs`), run as a real child process and driven exactly
//! as the seed's own client drove the original: three `POST /request/{uid}`
//! with the seed's three UUIDs, then `GET /status` every 250 ms. At every
//! poll the states must be consistent with FIFO, and the jobs must complete
//! 1, 2, 3, also across a kill -9 of the app in the middle of job 2.
//!
//! Each poll's answer is printed (`cargo test -p orderly --test seed_app --
//! --nocapture` shows them).

mod seed_support;

use std::time::{Duration, Instant};

use seed_support::{App, PATIENCE, UIDS};
use serde_json::Value;

/// The seed client's polling interval.
const POLL: Duration = Duration::from_millis(250);

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
