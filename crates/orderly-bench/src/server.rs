//! The server the bench starts: `orderly serve` on a free loopback port with
//! a fresh data directory (and, for a PostgreSQL-backed run, a fresh schema), configured by its flags only (every `ORDERLY_…`
//! variable but the log filter is removed from its environment), killed and
//! cleaned up at the end — on drop too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use orderly_client::Client;

use crate::pg::Database;
use crate::Durability;

/// Longest the bench waits for its server to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports tried before giving up when each is taken before the server binds it.
const PORT_ATTEMPTS: u32 = 5;

/// A `orderly serve` child process on a free loopback port with a fresh data
/// directory. Killed (and its directory removed) by [`LocalServer::stop`], or
/// on drop if stop was never reached.
pub struct LocalServer {
    /// The child; `None` once stopped.
    child: Option<tokio::process::Child>,
    /// Temporary directory holding the data directory and the server's log.
    dir: PathBuf,
    /// The server's stderr.
    log: PathBuf,
    /// `http://127.0.0.1:<port>`.
    url: String,
    /// For a PostgreSQL-backed server: the database and the run's schema
    /// (dropped by [`LocalServer::stop`]).
    pg: Option<(String, String)>,
}

impl LocalServer {
    /// Starts the server and waits until `/healthz` answers `ok`. With
    /// `database`, it stores its jobs in a fresh schema of that PostgreSQL
    /// database (named by `tag`), dropped when the server stops.
    pub async fn start(
        exe: &Path,
        durability: Durability,
        token: Option<&str>,
        database: Option<(&Database, &str)>,
    ) -> anyhow::Result<LocalServer> {
        // A free port is free only until someone takes it: another process
        // may bind it (or use it as a connection's local port) before the
        // server does. Then a server that answers `/healthz` there is not
        // ours: start again on another port.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(exe, durability, token, database).await? {
                Some(server) => return Ok(server),
                None if attempt < PORT_ATTEMPTS => continue,
                None => bail!("no free port on 127.0.0.1 held for {PORT_ATTEMPTS} tries"),
            }
        }
    }

    /// One try of [`Self::start`]; `None` when the port was taken meanwhile.
    async fn start_once(
        exe: &Path,
        durability: Durability,
        token: Option<&str>,
        database: Option<(&Database, &str)>,
    ) -> anyhow::Result<Option<LocalServer>> {
        let pg = match database {
            Some((db, tag)) => {
                let schema = db.next_schema(tag);
                crate::pg::ensure_fresh(&db.url, &schema).await?;
                Some((db.url.clone(), schema))
            }
            None => None,
        };
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("orderly-bench-{}", unique_suffix()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create the scratch directory {}", dir.display()))?;
        let log = dir.join("server.log");
        let data = dir.join("data");
        let mut server = LocalServer {
            child: None,
            dir,
            log,
            url: format!("http://127.0.0.1:{port}"),
            pg,
        };
        let stderr = std::fs::File::create(&server.log)
            .with_context(|| format!("cannot create {}", server.log.display()))?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        cmd.arg("--durability").arg(durability.flag());
        if let Some((url, schema)) = &server.pg {
            cmd.arg("--database-url")
                .arg(url)
                .arg("--database-schema")
                .arg(schema);
        }
        // The child reads every flag from ORDERLY_… variables too: only the
        // flags above (and the log filter) may configure it.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("ORDERLY_") && k != "ORDERLY_LOG" {
                cmd.env_remove(&key);
            }
        }
        if let Some(t) = token {
            cmd.env("ORDERLY_TOKEN", t);
        }
        cmd.env("NO_COLOR", "1");
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        server.child = Some(child);
        let client = Client::new(server.url.clone(), None);
        if let Err(e) = wait_healthy(&client, server.child.as_mut(), START_TIMEOUT).await {
            let e = server.explain(
                e.context(format!(
                    "the bench's server ({} serve on {}) did not come up",
                    exe.display(),
                    server.url
                )),
                true,
            );
            server.stop().await;
            return Err(e);
        }
        if !server.listens_itself(port).await? {
            server.stop().await;
            return Ok(None);
        }
        Ok(Some(server))
    }

    /// Whether this server's own log says it listens on `port` (so the
    /// `/healthz` that answered was its own), waiting for the line; `false`
    /// when it exited because the port was taken. Without the default log
    /// level (`ORDERLY_LOG` set) the line may be missing: then `true`.
    async fn listens_itself(&mut self, port: u16) -> anyhow::Result<bool> {
        if std::env::var_os("ORDERLY_LOG").is_some() {
            return Ok(true);
        }
        let line = format!("listening on http://127.0.0.1:{port}");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(&line) {
                return Ok(true);
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() && log.contains("Address already in use") {
                return Ok(false);
            }
            if exited.is_some() || Instant::now() >= deadline {
                let e = anyhow!("the bench's server did not say it listens on {port}");
                return Err(self.explain(e, true));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Adds what the server's side knows to `e`: whether it exited, and its
    /// log's tail when it exited, logged a warning or error, or `always`.
    pub fn explain(&mut self, e: anyhow::Error, always: bool) -> anyhow::Error {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        let tail = log_tail(&self.log, 20, 4_000);
        let tail = if tail.is_empty() {
            "(empty)".to_string()
        } else {
            tail
        };
        let noteworthy = tail
            .lines()
            .any(|l| l.contains(" WARN ") || l.contains(" ERROR "));
        let note = match exited {
            Some(status) => format!(
                "the bench's server ({}) exited ({status}); its log ends with:\n{tail}",
                self.url
            ),
            None if always || noteworthy => {
                format!("the bench's server ({}) logged:\n{tail}", self.url)
            }
            None => return e,
        };
        anyhow!("{e:#}\n{note}")
    }

    /// The scratch directory holding the data directory (for files that
    /// must be on the data directory's file system).
    pub fn scratch_dir(&self) -> &Path {
        &self.dir
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// For a PostgreSQL-backed server: its database's URL and schema.
    pub fn database(&self) -> Option<(&str, &str)> {
        self.pg.as_ref().map(|(u, s)| (u.as_str(), s.as_str()))
    }

    /// The server's resident memory now, from `/proc/PID/status` (`None`
    /// once stopped, or where there is no `/proc`).
    pub fn memory(&self) -> Option<Memory> {
        let pid = self.child.as_ref()?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Memory::parse(&status)
    }

    /// Kills the server, waits for it (bounded), removes its directory and
    /// drops its PostgreSQL schema.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                eprintln!("warning: the bench's server did not exit within 10 s of SIGKILL");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!(
                "warning: cannot remove the bench's scratch directory {}: {e}",
                self.dir.display()
            );
        }
        if let Some((url, schema)) = self.pg.take() {
            crate::pg::drop_schema(&url, &schema).await;
        }
    }
}

impl Drop for LocalServer {
    /// Last resort when [`LocalServer::stop`] was not reached: kill, clean up.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
        }
        if self.dir.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if let Some((_, schema)) = &self.pg {
            eprintln!("warning: the bench stopped early: drop its schema {schema} by hand");
        }
    }
}

/// A process's resident memory, in KiB, as `/proc/PID/status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most it was resident so far.
    pub hwm_kib: u64,
}

impl Memory {
    /// Reads `VmRSS` and `VmHWM` from the text of `/proc/PID/status`.
    pub fn parse(status: &str) -> Option<Memory> {
        let field = |name: &str| {
            status.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
            })
        };
        Some(Memory {
            rss_kib: field("VmRSS")?,
            hwm_kib: field("VmHWM")?,
        })
    }

    /// `VmRSS` in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    /// `VmHWM` in MiB.
    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("cannot read the free port")?
        .port())
}

/// `<pid>-<nanoseconds>`: a name no other run uses.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// The last `lines` lines of a file, at most `max_chars` characters.
fn log_tail(path: &Path, lines: usize, max_chars: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    let skip = tail.chars().count().saturating_sub(max_chars);
    tail.chars().skip(skip).collect()
}

/// Waits until `/healthz` answers `ok` within `limit`; fails early if `child` exits.
pub async fn wait_healthy(
    client: &Client,
    mut child: Option<&mut tokio::process::Child>,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(c) = child.as_deref_mut() {
            if let Some(status) = c.try_wait().context("cannot check the server process")? {
                bail!("the server exited ({status}) before answering /healthz");
            }
        }
        let last = match tokio::time::timeout(Duration::from_secs(2), client.health()).await {
            Ok(Ok(h)) if h.status == "ok" => return Ok(()),
            Ok(Ok(h)) => format!(
                "/healthz says {}{}",
                h.status,
                h.reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "/healthz did not answer within 2 s".into(),
        };
        if Instant::now() >= deadline {
            bail!("no healthy answer within {} s ({last})", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Memory;

    /// The two fields are read from their lines, in KiB; a status without
    /// them gives nothing rather than a zero.
    #[test]
    fn memory_is_read_from_proc_status() {
        let status = "Name:\torderly\nVmPeak:\t  900000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(
            Memory::parse(status),
            Some(Memory {
                rss_kib: 51_200,
                hwm_kib: 81_234
            })
        );
        assert_eq!(Memory::parse("Name:\torderly\nVmRSS:\t1 kB\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let m = Memory::parse(&own).expect("this process's memory");
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib, "{m:?}");
    }
}
