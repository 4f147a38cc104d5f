//! [`reap_orphans`]: kills what an earlier run of this process left behind.
//!
//! A server killed with SIGKILL cannot kill its children, and a child is not
//! told when its parent dies (no `prctl` hook: `unsafe_code` is forbidden).
//! Every child of a [`CommandHandler`](super::CommandHandler) with a
//! [`marker`](super::CommandHandler::marker) carries `key=value` in its
//! environment, and so does what it starts unless it clears its
//! environment; on its next start the server calls [`reap_orphans`] with the
//! same marker, before it runs any job, and SIGKILLs every process that still
//! carries it, with its process group when it leads one (which also catches a
//! descendant that cleared its environment but stayed in the group).
//!
//! Invariants:
//! - It never signals the calling process nor its process group.
//! - A process whose environment it cannot read (another user's: permission
//!   denied) is skipped, never guessed at.
//! - It scans again after killing (a process may fork between the scan and
//!   the kill) until a scan finds nothing, for at most [`REAP_ROUNDS`] scans.
//! - A pid is signalled only if it still is the process that was scanned
//!   (same start time), so a pid reused in between is left alone.
//!
//! Linux only (`/proc`); elsewhere it finds nothing.

use std::time::Duration;

/// Most scans of one [`reap_orphans`] call.
pub const REAP_ROUNDS: u32 = 50;
/// Pause between two scans (the killed need a moment to exit).
const REAP_PAUSE: Duration = Duration::from_millis(20);

/// What [`reap_orphans`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Pids it sent SIGKILL to (each once, in the order it did).
    pub killed: Vec<u32>,
    /// Pids that still carried the marker after the last scan (they could not
    /// be killed, or did not die in time).
    pub remaining: Vec<u32>,
}

/// SIGKILLs every process (and the process group it leads) whose environment
/// holds exactly `key=value`, other than the calling process; scans again
/// until none is left or after [`REAP_ROUNDS`] scans. Blocking: run it on a
/// blocking thread. An error only when `/proc` cannot be listed or the marker
/// is not a valid variable. See the module docs.
pub fn reap_orphans(key: &str, value: &str) -> std::io::Result<Reaped> {
    if let Some(why) = super::env::invalid_var(key, value) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("marker {key:?} cannot be an environment variable: {why}"),
        ));
    }
    imp::reap(key, value)
}

#[cfg(target_os = "linux")]
mod imp {
    use nix::errno::Errno;
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::{getpgrp, Pid};

    use super::{Reaped, REAP_PAUSE, REAP_ROUNDS};

    /// A process found carrying the marker.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Found {
        pub(super) pid: i32,
        pub(super) pgid: i32,
        pub(super) start: u64,
    }

    pub(super) fn reap(key: &str, value: &str) -> std::io::Result<Reaped> {
        let marker = format!("{key}={value}").into_bytes();
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let my_group = getpgrp().as_raw();
        let mut reaped = Reaped::default();
        for round in 1..=REAP_ROUNDS {
            let found = scan(&marker, me)?;
            if found.is_empty() {
                return Ok(reaped);
            }
            if round == REAP_ROUNDS {
                reaped.remaining = found.iter().map(|f| f.pid.unsigned_abs()).collect();
                return Ok(reaped);
            }
            for f in found {
                // Still the process scanned, not a reused pid.
                if stat(f.pid).map(|(_, start)| start) != Some(f.start) {
                    continue;
                }
                let sent = if f.pgid == f.pid && f.pgid != my_group {
                    killpg(Pid::from_raw(f.pgid), Signal::SIGKILL)
                } else {
                    kill(Pid::from_raw(f.pid), Signal::SIGKILL)
                };
                match sent {
                    // Gone by itself in between: nothing to do.
                    Err(Errno::ESRCH) => {}
                    Ok(()) => {
                        let pid = f.pid.unsigned_abs();
                        if !reaped.killed.contains(&pid) {
                            tracing::warn!(
                                "killed orphan process {pid} (group leader: {})",
                                f.pgid == f.pid
                            );
                            reaped.killed.push(pid);
                        }
                    }
                    Err(e) => tracing::warn!("cannot kill orphan process {}: {e}", f.pid),
                }
            }
            std::thread::sleep(REAP_PAUSE);
        }
        Ok(reaped)
    }

    /// Live processes other than `me` whose environment holds `marker`
    /// exactly (`key=value`).
    pub(super) fn scan(marker: &[u8], me: i32) -> std::io::Result<Vec<Found>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            // Start time first: if the pid is reused after this, the start
            // time no longer matches and the kill is skipped.
            let Some((pgid, start)) = stat(pid) else {
                continue;
            };
            // Unreadable (permission denied: another user's) or gone: skipped.
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if environ.split(|b| *b == 0).any(|var| var == marker)
                && stat(pid).map(|(_, s)| s) == Some(start)
            {
                found.push(Found { pid, pgid, start });
            }
        }
        Ok(found)
    }

    /// A live process's group and start time from `/proc/PID/stat` (`None`
    /// when it is gone or a zombie).
    pub(super) fn stat(pid: i32) -> Option<(i32, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold anything.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state), [2] field 5 (pgrp), [19] field 22
        // (starttime).
        if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
            return None;
        }
        Some((fields.get(2)?.parse().ok()?, fields.get(19)?.parse().ok()?))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Reaped;

    pub(super) fn reap(_key: &str, _value: &str) -> std::io::Result<Reaped> {
        Ok(Reaped::default())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The scan never lists the caller, even when it carries the marker:
    /// every entry of this process's own environment is looked for.
    #[test]
    fn scan_never_lists_the_caller() {
        let me = i32::try_from(std::process::id()).unwrap();
        let environ = std::fs::read("/proc/self/environ").unwrap();
        let vars: Vec<&[u8]> = environ
            .split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .collect();
        assert!(!vars.is_empty(), "this test process has an environment");
        for var in vars.iter().take(5) {
            let found = imp::scan(var, me).unwrap();
            assert!(found.iter().all(|f| f.pid != me), "{found:?}");
        }
    }

    /// The stat parser reads this process's group and a start time.
    #[test]
    fn stat_of_self() {
        let me = i32::try_from(std::process::id()).unwrap();
        let (pgid, start) = imp::stat(me).unwrap();
        assert_eq!(pgid, nix::unistd::getpgrp().as_raw());
        assert!(start > 0);
        assert_eq!(imp::stat(i32::MAX), None);
    }

    /// A marker that is no variable is refused, naming it.
    #[test]
    fn bad_marker_is_refused() {
        let e = reap_orphans("A=B", "x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("\"A=B\""), "{e}");
        let e = reap_orphans("", "x").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
