//! [`reap_orphans`] for real: a detached process tree carrying the marker is
//! killed (with a member of its group that dropped the marker), a process
//! with another marker value survives, and the caller — which carries the
//! marker too — is never signalled.
//!
//! A process's `/proc/PID/environ` is the environment it was started with,
//! so for the caller to carry the marker the test runs itself again as a
//! child with the marker in its environment, and does the work there.

#![cfg(target_os = "linux")]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orderly_worker::command::reap_orphans;

const KEY: &str = "ORDERLY_NODE";

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        !matches!(state, Some("Z") | Some("X"))
    })
}

/// Waits (bounded) for a pid written to `file`.
fn wait_for_pid(file: &Path) -> u32 {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return p;
        }
        assert!(Instant::now() < until, "no pid in {}", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A detached process group, killed on drop should the test fail half way.
struct Tree(Child);

impl Drop for Tree {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Starts `sh -c SCRIPT` with `KEY=value`, in its own process group, not
/// tied to this process (a std `Child` does not kill on drop).
fn detached(value: &str, script: &str) -> Tree {
    Tree(
        Command::new("sh")
            .args(["-c", script])
            .env(KEY, value)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Set on the test's own rerun.
const RERUN: &str = "ORDERLY_REAP_TEST_RERUN";

#[test]
fn reaper_kills_the_marked_tree_and_nothing_else() {
    if std::env::var_os(RERUN).is_none() {
        // Unique on a machine shared with other test runs.
        let value = format!(
            "reap-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "reaper_kills_the_marked_tree_and_nothing_else",
                "--nocapture",
            ])
            .env(RERUN, "1")
            .env(KEY, &value)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the rerun carrying the marker failed (or was killed): {status:?}"
        );
        return;
    }
    let value = std::env::var(KEY).unwrap();
    let other = format!("{value}-other");
    // The caller carries the marker where the reaper looks.
    let own = std::fs::read("/proc/self/environ").unwrap();
    let marker = format!("{KEY}={value}");
    assert!(own.split(|b| *b == 0).any(|v| v == marker.as_bytes()));

    let dir = tempfile::tempdir().unwrap();
    let bg_file = dir.path().join("bg.pid");
    let cleared_file = dir.path().join("cleared.pid");
    // `sh` starts one sleep in the background and one more that dropped the
    // marker from its environment (only the group kill reaches it), then
    // becomes a third.
    let mut orphan = detached(
        &value,
        &format!(
            "sleep 300 & echo $! > {}; env -u {KEY} sleep 300 & echo $! > {}; exec sleep 300",
            bg_file.display(),
            cleared_file.display()
        ),
    );
    let leader = orphan.0.id();
    let bg = wait_for_pid(&bg_file);
    let cleared = wait_for_pid(&cleared_file);
    let mut survivor = detached(&other, "exec sleep 300");
    assert!(alive(leader) && alive(bg) && alive(cleared) && alive(survivor.0.id()));
    // Until `env` has exec'd `sleep`, the forked process still has the marker.
    let until = Instant::now() + Duration::from_secs(10);
    while std::fs::read(format!("/proc/{cleared}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .any(|v| v.starts_with(KEY.as_bytes()))
    {
        assert!(Instant::now() < until, "{cleared} kept the marker");
        std::thread::sleep(Duration::from_millis(20));
    }

    let reaped = reap_orphans(KEY, &value).unwrap();

    assert!(reaped.killed.contains(&leader), "{reaped:?}");
    assert!(!reaped.killed.contains(&std::process::id()), "{reaped:?}");
    assert!(!reaped.killed.contains(&survivor.0.id()), "{reaped:?}");
    assert!(reaped.remaining.is_empty(), "{reaped:?}");
    // The sleeps are gone (the leader is this process's zombie until waited).
    let until = Instant::now() + Duration::from_secs(10);
    while alive(leader) || alive(bg) || alive(cleared) {
        assert!(
            Instant::now() < until,
            "orphans survived: leader {leader} {}, background {bg} {}, cleared {cleared} {}",
            alive(leader),
            alive(bg),
            alive(cleared)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = orphan.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status:?}"
    );
    assert!(
        alive(survivor.0.id()),
        "the other marker's process was killed"
    );

    // Nothing carries the marker any more: a second call kills nothing.
    assert_eq!(reap_orphans(KEY, &value).unwrap().killed, Vec::<u32>::new());

    survivor.0.kill().unwrap();
    survivor.0.wait().unwrap();
    assert!(!alive(survivor.0.id()));
}
