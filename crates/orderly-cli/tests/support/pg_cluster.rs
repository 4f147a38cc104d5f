//! A private, throwaway PostgreSQL cluster for tests that must stop and
//! start the database (outages) or change its authentication: `initdb` into
//! a temp dir from the installed binaries, `pg_ctl start` on a free loopback
//! port, `pg_ctl stop -m immediate` on drop.
//!
//! initdb refuses to run as root, so when the tests run as root (as here and
//! in CI) every PostgreSQL binary runs as the `postgres` OS user through
//! `runuser`, with the temp dir handed to it. Missing binaries fail loudly,
//! saying what to install.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How a private cluster is initialised.
#[derive(Debug, Clone, Default)]
pub struct PgClusterOptions {
    /// With a password: `--auth=scram-sha-256 --pwfile` (user `postgres`);
    /// without: trust authentication.
    pub password: Option<String>,
}

/// A running private PostgreSQL cluster (stopped on drop).
pub struct PgCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    as_postgres: bool,
    password: Option<String>,
    running: bool,
}

/// The database every private cluster gets, besides `postgres`.
pub const DATABASE: &str = "orderly_test";

/// The directory of the installed PostgreSQL binaries: `pg_config --bindir`,
/// else the newest `/usr/lib/postgresql/*/bin` that has `initdb`.
pub fn find_bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return dir;
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found: neither \
             `pg_config --bindir` nor /usr/lib/postgresql/*/bin has them. Install the \
             PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`; macOS: \
             `brew install postgresql`) to run these tests"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgCluster {
    /// Initialises a cluster in a temp dir and starts it on a free port.
    pub async fn start_new(opts: PgClusterOptions) -> Self {
        let bindir = find_bindir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("orderly-pg-")
            .tempdir()
            .expect("temp dir");
        let mut c = PgCluster {
            dir,
            bindir,
            port: super::free_port(),
            as_postgres,
            password: opts.password.clone(),
            running: false,
        };
        std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod temp dir");
        let mut initdb = vec![
            "-D".to_string(),
            c.data_dir().display().to_string(),
            "-U".into(),
            "postgres".into(),
            "--no-sync".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
        ];
        if let Some(pw) = &opts.password {
            let pwfile = c.dir.path().join("pwfile");
            std::fs::write(&pwfile, format!("{pw}\n")).expect("write pwfile");
            initdb.push("--auth=scram-sha-256".into());
            initdb.push(format!("--pwfile={}", pwfile.display()));
        } else {
            initdb.push("--auth=trust".into());
        }
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(c.dir.path())
                .status()
                .expect("run chown");
            assert!(
                st.success(),
                "chown of the cluster's temp dir to postgres failed"
            );
        }
        let out = c.pg("initdb", &initdb);
        assert!(out.status.success(), "initdb failed: {}", super::show(&out));
        c.start().await;
        let admin = c.connect("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .expect("create the test database");
        c
    }

    /// Runs one PostgreSQL binary (as the `postgres` user when we are root).
    fn pg(&self, bin: &str, args: &[String]) -> Output {
        let exe = self.bindir.join(bin);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).current_dir(self.dir.path());
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server log (pg_ctl's `-l`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string to [`DATABASE`], with the cluster's password if any.
    pub fn url(&self) -> String {
        self.url_with_password(self.password.as_deref())
    }

    /// A connection string to [`DATABASE`] with the given password.
    pub fn url_with_password(&self, password: Option<&str>) -> String {
        match password {
            Some(pw) => format!(
                "postgres://postgres:{pw}@127.0.0.1:{}/{DATABASE}",
                self.port
            ),
            None => format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port),
        }
    }

    /// A direct connection (for setup and checks).
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname(db);
        if let Some(pw) = &self.password {
            cfg.password(pw.as_str());
        }
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to the private cluster: {e}"));
        tokio::spawn(conn);
        client
    }

    /// Starts the cluster (again) on the same port and data dir; returns when
    /// it accepts connections (`pg_ctl -w`).
    pub async fn start(&mut self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let args = vec![
            "-D".to_string(),
            self.data_dir().display().to_string(),
            "-l".into(),
            self.log_path().display().to_string(),
            "-o".into(),
            opts,
            "-w".into(),
            "-t".into(),
            "60".into(),
            "start".into(),
        ];
        let out = tokio::task::block_in_place(|| self.pg("pg_ctl", &args));
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n=== postgres log ===\n{}",
            super::show(&out),
            super::file_tail(&self.log_path(), 4000)
        );
        self.running = true;
    }

    /// Stops the cluster at once (`pg_ctl stop -m immediate`, a crash for
    /// PostgreSQL: it recovers from its WAL on the next start).
    pub fn stop_immediate(&mut self) {
        let args = vec![
            "-D".to_string(),
            self.data_dir().display().to_string(),
            "-m".into(),
            "immediate".into(),
            "-w".into(),
            "stop".into(),
        ];
        let out = self.pg("pg_ctl", &args);
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            super::show(&out)
        );
        self.running = false;
    }

    /// The temp dir holding the data dir, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let args = vec![
                "-D".to_string(),
                self.data_dir().display().to_string(),
                "-m".into(),
                "immediate".into(),
                "stop".into(),
            ];
            let _ = self.pg("pg_ctl", &args);
        }
    }
}
