//! What a child's environment holds: the [`Env`] policy, the configured
//! variables, the node marker and the job's own variables.
//!
//! Precedence, lowest first: the base ([`Env::Inherit`]: everything this
//! process has; [`Env::AllowList`]: only [`ALLOWED_ENV`] and `LC_*` of it),
//! then the configured variables, then the marker, then the job's variables
//! (`ORDERLY_JOB_ID`, `ORDERLY_QUEUE`, `ORDERLY_SEQ`, `ORDERLY_ATTEMPT`,
//! `ORDERLY_KEY` and `ORDERLY_JOB_KEY`), so nothing configured can pose as
//! the job, and `ORDERLY_KEY` is absent, whatever else says, when the job has
//! no key.

use std::ffi::OsStr;

use crate::handler::Job;

/// Variables of this process that an [`Env::AllowList`] child sees (with
/// every `LC_*` one, see [`ALLOWED_ENV_PREFIX`]).
pub const ALLOWED_ENV: [&str; 8] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR",
];
/// Prefix of the locale variables an [`Env::AllowList`] child sees.
pub const ALLOWED_ENV_PREFIX: &str = "LC_";
/// Names of the variables that describe the job (they override anything
/// configured).
pub const JOB_VARS: [&str; 6] = [
    "ORDERLY_JOB_ID",
    "ORDERLY_QUEUE",
    "ORDERLY_SEQ",
    "ORDERLY_ATTEMPT",
    "ORDERLY_KEY",
    "ORDERLY_JOB_KEY",
];

/// Which of this process's environment a child starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    /// All of it (`orderly worker`: the worker's environment plus the job's
    /// variables).
    Inherit,
    /// Only [`ALLOWED_ENV`] and `LC_*` (the server's command executor): no
    /// token, no database URL, no other `ORDERLY_*` setting of the server
    /// reaches the job.
    AllowList,
}

impl Env {
    /// Whether a variable of this process named `name` reaches the child.
    pub fn passes(self, name: &OsStr) -> bool {
        match self {
            Env::Inherit => true,
            Env::AllowList => name
                .to_str()
                .is_some_and(|n| ALLOWED_ENV.contains(&n) || n.starts_with(ALLOWED_ENV_PREFIX)),
        }
    }
}

/// Why a variable cannot be put in an environment.
pub fn invalid_var(name: &str, value: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("its name is empty")
    } else if name.contains('=') {
        Some("its name contains '='")
    } else if name.contains('\0') || value.contains('\0') {
        Some("it contains a NUL byte")
    } else {
        None
    }
}

/// Sets `cmd`'s environment for `job` (see the module docs).
pub(crate) fn apply(
    cmd: &mut tokio::process::Command,
    mode: Env,
    configured: &[(String, String)],
    marker: Option<&(String, String)>,
    job: &Job,
) {
    if mode == Env::AllowList {
        cmd.env_clear();
        for (k, v) in std::env::vars_os() {
            if mode.passes(&k) {
                cmd.env(k, v);
            }
        }
    }
    for (k, v) in configured.iter().chain(marker) {
        cmd.env(k, v);
    }
    cmd.env("ORDERLY_JOB_ID", &job.id)
        .env("ORDERLY_QUEUE", &job.queue)
        .env("ORDERLY_SEQ", job.seq.to_string())
        .env("ORDERLY_ATTEMPT", job.attempt.to_string());
    match &job.key {
        Some(k) => {
            cmd.env("ORDERLY_KEY", k).env("ORDERLY_JOB_KEY", k);
        }
        None => {
            cmd.env_remove("ORDERLY_KEY").env_remove("ORDERLY_JOB_KEY");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The allow-list takes the named variables and the locale ones only.
    #[test]
    fn allow_list_names() {
        for ok in ["PATH", "HOME", "TZ", "TMPDIR", "LC_ALL", "LC_CTYPE", "LANG"] {
            assert!(Env::AllowList.passes(OsStr::new(ok)), "{ok}");
        }
        for no in [
            "ORDERLY_TOKEN",
            "ORDERLY_DATABASE_URL",
            "AWS_SECRET_ACCESS_KEY",
            "PATHX",
            "path",
            "LD_PRELOAD",
            "LANGUAGE_SECRET",
        ] {
            assert!(!Env::AllowList.passes(OsStr::new(no)), "{no}");
            assert!(Env::Inherit.passes(OsStr::new(no)), "{no}");
        }
    }

    /// Names an environment cannot hold are refused with the reason.
    #[test]
    fn invalid_names() {
        assert_eq!(invalid_var("", "x"), Some("its name is empty"));
        assert_eq!(invalid_var("A=B", "x"), Some("its name contains '='"));
        assert_eq!(invalid_var("A", "x\0y"), Some("it contains a NUL byte"));
        assert_eq!(invalid_var("ORDERLY_NODE", "n-1"), None);
    }
}
