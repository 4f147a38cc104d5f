//! Tests of [`CommandHandler`] with real child processes.

use std::path::Path;

use super::*;

fn job(payload: Value) -> Job {
    Job {
        id: "j-1".into(),
        queue: "q".into(),
        key: Some("k".into()),
        seq: 7,
        attempt: 2,
        payload,
        timeout_ms: None,
    }
}

fn sh_in(mode: Env, script: &str) -> CommandHandler {
    CommandHandler::new(vec!["sh".into(), "-c".into(), script.into()], mode).unwrap()
}

fn sh(script: &str) -> CommandHandler {
    sh_in(Env::Inherit, script)
}

async fn run(h: &CommandHandler, j: Job) -> Result<Value, Failure> {
    h.handle(j, JobContext::new()).await
}

fn message(f: &Failure) -> &str {
    f.error["message"].as_str().unwrap_or_default()
}

/// An empty command is refused.
#[test]
fn empty_command_is_refused() {
    assert_eq!(
        CommandHandler::new(Vec::new(), Env::Inherit).unwrap_err(),
        CommandError::Empty
    );
    assert_eq!(
        CommandHandler::new(vec![String::new()], Env::AllowList).unwrap_err(),
        CommandError::Empty
    );
}

/// stdin carries the payload; JSON stdout is the result.
#[tokio::test]
async fn payload_in_result_out() {
    let p = json!({"a": [1, 2], "s": "x"});
    assert_eq!(run(&sh("cat"), job(p.clone())).await, Ok(p));
    let r = run(&sh("echo plain text"), job(json!(null))).await;
    assert_eq!(r, Ok(json!("plain text")));
}

/// The job is described in the environment, beside the configured variables.
#[tokio::test]
async fn environment() {
    for mode in [Env::Inherit, Env::AllowList] {
        let r = run(
            &sh_in(mode, r#"echo "$ORDERLY_JOB_ID $ORDERLY_QUEUE $ORDERLY_SEQ $ORDERLY_ATTEMPT $ORDERLY_KEY $ORDERLY_JOB_KEY $EXTRA""#)
                .env("EXTRA", "yes"),
            job(json!(null)),
        )
        .await;
        assert_eq!(r, Ok(json!("j-1 q 7 2 k k yes")), "{mode:?}");
    }
}

/// Configured variables cannot pose as the job: its variables win, and
/// `ORDERLY_KEY` is absent when the job has no key.
#[tokio::test]
async fn job_variables_win_over_configured_ones() {
    let script = r#"echo "$ORDERLY_JOB_ID $ORDERLY_QUEUE $ORDERLY_SEQ $ORDERLY_ATTEMPT ${ORDERLY_KEY-none} ${ORDERLY_JOB_KEY-none}""#;
    for mode in [Env::Inherit, Env::AllowList] {
        let mut h = sh_in(mode, script);
        for var in JOB_VARS {
            h = h.env(var, "forged");
        }
        let keyless = Job {
            key: None,
            ..job(json!(null))
        };
        assert_eq!(
            run(&h, keyless).await,
            Ok(json!("j-1 q 7 2 none none")),
            "{mode:?}"
        );
        assert_eq!(
            run(&h, job(json!(null))).await,
            Ok(json!("j-1 q 7 2 k k")),
            "{mode:?}"
        );
    }
}

/// The marker reaches every child, in both modes, and nothing configured
/// overrides it.
#[tokio::test]
async fn marker_is_set_on_every_child() {
    for mode in [Env::Inherit, Env::AllowList] {
        let h = sh_in(mode, r#"echo "$ORDERLY_NODE""#)
            .env("ORDERLY_NODE", "configured")
            .marker("ORDERLY_NODE", "node-1")
            .unwrap();
        assert_eq!(
            run(&h, job(json!(null))).await,
            Ok(json!("node-1")),
            "{mode:?}"
        );
    }
}

/// A marker no environment can hold, or one posing as a job variable, is
/// refused, naming it.
#[test]
fn bad_markers_are_refused() {
    for (key, why) in [
        ("", "its name is empty"),
        ("A=B", "its name contains '='"),
        ("ORDERLY_JOB_ID", "it is one of the job's variables"),
    ] {
        let e = sh("true").marker(key, "v").unwrap_err();
        assert_eq!(
            e,
            CommandError::BadMarker {
                key: key.into(),
                why
            }
        );
        assert!(e.to_string().contains(&format!("{key:?}")), "{e}");
    }
}

/// A configured variable no environment can hold fails the run for good,
/// naming it; nothing is started.
#[tokio::test]
async fn bad_configured_variable_is_named() {
    let f = run(&sh("true").env("BAD=NAME", "x"), job(json!(null)))
        .await
        .unwrap_err();
    assert!(!f.retry);
    assert_eq!(f.error["variable"], json!("BAD=NAME"));
    assert!(message(&f).contains("\"BAD=NAME\""), "{f:?}");
}

/// The child runs in the working directory it is given.
#[tokio::test]
async fn cwd_is_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let r = run(&sh("pwd -P").cwd(&dir), job(json!(null))).await;
    assert_eq!(r, Ok(json!(dir.display().to_string())));
    // A relative path inside it.
    std::fs::write(dir.join("data.txt"), "inside").unwrap();
    let r = run(&sh("cat data.txt").cwd(&dir), job(json!(null))).await;
    assert_eq!(r, Ok(json!("inside")));
}

/// A missing working directory (or a file in its place) is a failure that
/// names it, not a panic, and not mistaken for a missing program.
#[tokio::test]
async fn missing_cwd_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let f = run(&sh("true").cwd(&missing), job(json!(null)))
        .await
        .unwrap_err();
    let shown = missing.display().to_string();
    assert_eq!(f.error["cwd"], json!(shown));
    assert!(message(&f).contains(&shown), "{f:?}");
    assert!(message(&f).contains("working directory"), "{f:?}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let f = run(&sh("true").cwd(&file), job(json!(null)))
        .await
        .unwrap_err();
    assert!(message(&f).contains("is not a directory"), "{f:?}");
    assert!(message(&f).contains(&file.display().to_string()), "{f:?}");
}

/// A non-zero exit fails with the code and stderr's tail.
#[tokio::test]
async fn failure_has_code_and_stderr() {
    let f = run(&sh("echo oops >&2; exit 4"), job(json!(null)))
        .await
        .unwrap_err();
    assert!(f.retry);
    assert_eq!(f.error["exit_code"], json!(4));
    assert_eq!(f.error["stderr"], json!("oops"));
}

/// Too much stdout fails the run, naming the bound.
#[tokio::test]
async fn stdout_bound_is_named() {
    let f = run(
        &sh("head -c 5000 /dev/zero").max_output_bytes(1000),
        job(json!(null)),
    )
    .await
    .unwrap_err();
    assert!(message(&f).contains("1000-byte bound"), "{f:?}");
    assert!(message(&f).contains("max_output_bytes"), "{f:?}");
    assert_eq!(f.error["max_output_bytes"], json!(1000));
}

/// By default 1 MiB of stdout is a result and one byte more is not.
#[tokio::test]
async fn default_bound_is_one_mib() {
    let at = run(&sh("yes | head -c 1048576"), job(json!(null)))
        .await
        .unwrap();
    assert_eq!(
        at.as_str().map(str::len),
        Some(1_048_575),
        "trimmed newline"
    );
    let f = run(&sh("yes | head -c 1048577"), job(json!(null)))
        .await
        .unwrap_err();
    assert_eq!(f.error["max_output_bytes"], json!(1_048_576));
    assert!(message(&f).contains("1048576-byte bound"), "{f:?}");
}

/// How a run is stopped in the group tests.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Cancel(CancelReason),
    Timeout,
    Drop,
}

/// Runs a script that starts a background child, stops the run `how`, and
/// checks the child is gone; returns the run's failure (none when dropped).
async fn stopping_kills_the_group(how: Stop) -> Option<Failure> {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    let mut h = sh(&script);
    if let Stop::Timeout = how {
        // Long enough for the script to write its child's pid first.
        h = h.timeout(Some(Duration::from_secs(3)));
    }
    let ctx = JobContext::new();
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { h.handle(job(json!(null)), ctx).await }
    });
    let pid = wait_for_pid(&pid_file).await;
    assert!(alive(pid), "the script's child {pid} is not running");
    let failure = match how {
        Stop::Cancel(reason) => {
            ctx.cancel(reason);
            Some(run.await.unwrap().unwrap_err())
        }
        Stop::Timeout => Some(run.await.unwrap().unwrap_err()),
        Stop::Drop => {
            run.abort();
            assert!(run.await.unwrap_err().is_cancelled());
            None
        }
    };
    let until = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < until,
            "the command's child {pid} survived {how:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    failure
}

/// Waits (bounded) for the script to write its child's pid.
async fn wait_for_pid(file: &Path) -> i32 {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return p;
        }
        assert!(Instant::now() < until, "no child pid in {}", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        !matches!(state, Some("Z") | Some("X"))
    })
}

/// A cancel kills the whole process group, children included; it is not
/// retried.
#[tokio::test]
async fn cancel_kills_the_group() {
    let f = stopping_kills_the_group(Stop::Cancel(CancelReason::Requested))
        .await
        .unwrap();
    assert!(!f.retry);
    assert_eq!(message(&f), "cancelled while running");
}

/// A shutdown past its grace period kills the whole process group at once.
#[tokio::test]
async fn shutdown_kills_the_group() {
    let f = stopping_kills_the_group(Stop::Cancel(CancelReason::Shutdown))
        .await
        .unwrap();
    assert_eq!(message(&f), "stopped by a shutdown");
}

/// A lost lease kills the whole process group.
#[tokio::test]
async fn lease_loss_kills_the_group() {
    let f = stopping_kills_the_group(Stop::Cancel(CancelReason::LeaseLost))
        .await
        .unwrap();
    assert!(f.retry);
    assert_eq!(message(&f), "lease lost while running");
}

/// A run past its timeout is killed, group and all, and fails.
#[tokio::test]
async fn timeout_kills_the_group() {
    let f = stopping_kills_the_group(Stop::Timeout).await.unwrap();
    assert!(f.retry);
    assert_eq!(message(&f), "timed out after 3000 ms");
}

/// A run dropped half way (its task aborted) kills the group too.
#[tokio::test]
async fn dropped_run_kills_the_group() {
    assert!(stopping_kills_the_group(Stop::Drop).await.is_none());
}
