//! Maintenance across `orderly serve` nodes on one PostgreSQL schema: it
//! runs on exactly one node (the advisory-lock leader, shown by the
//! `orderly_maintenance_leader` gauge), another takes over when the leader
//! is killed, and lease expiry follows the database's clock, never a node's.
//!
//! The clock test runs one node under libfaketime (Debian package
//! `faketime`, installed in CI) with its wall clock an hour fast; it fails
//! loudly where libfaketime is missing, it does not skip.

#[macro_use]
mod support;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::nodes::{database_url, Schema};
use support::proto::{ClaimRequest, CompleteRequest, HeartbeatRequest, JobState};
use support::{deadline, job_req, orderly, wait_until, Client};

/// Where Debian and Ubuntu install libfaketime.
const FAKETIME_LIBS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// One `orderly serve` node on the test schema; killed (-9) on drop.
struct Node {
    child: Option<Child>,
    client: Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node on `schema`, under libfaketime at `fake` when given,
    /// and waits until it is healthy.
    async fn start(schema: &str, fake: Option<(&PathBuf, &str)>) -> Node {
        Node::start_with(schema, fake, &[]).await
    }

    /// [`Node::start`] with more `orderly serve` flags.
    async fn start_with(schema: &str, fake: Option<(&PathBuf, &str)>, extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = support::free_port();
        let log = dir.path().join("server.log");
        let file = std::fs::File::create(&log).expect("log");
        let mut cmd = orderly();
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .args([
            "--database-url",
            &database_url(),
            "--database-schema",
            schema,
        ])
        .args(extra)
        .stdout(file.try_clone().expect("log fd"))
        .stderr(file)
        .stdin(Stdio::null());
        if let Some((lib, offset)) = fake {
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let node = Node {
            child: Some(cmd.spawn().expect("spawn orderly serve")),
            client: Client::new(format!("http://127.0.0.1:{port}"), None),
            log,
            _dir: dir,
        };
        let c = node.client.clone();
        let healthy = wait_until(deadline(Duration::from_secs(30)), || {
            let c = c.clone();
            async move { c.health().await.is_ok_and(|h| h.status == "ok") }
        })
        .await;
        if !healthy {
            node.fail("not healthy within 30 s".into());
        }
        node
    }

    fn fail(&self, msg: String) -> ! {
        panic!(
            "{msg}\n--- server log ---\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// The `orderly_maintenance_leader` gauge (`None` when unreachable).
    async fn leader(&self) -> Option<bool> {
        let text = self.client.metrics().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("orderly_maintenance_leader "))
            .map(|v| v.trim() == "1")
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until exactly one of `nodes` says it leads; returns its index.
async fn one_leader(nodes: &[&Node]) -> usize {
    let until = deadline(Duration::from_secs(60));
    loop {
        let mut leaders = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if n.leader().await == Some(true) {
                leaders.push(i);
            }
        }
        if leaders.len() == 1 {
            return leaders[0];
        }
        if std::time::Instant::now() >= until {
            nodes[0].fail(format!("leaders after 60 s: {leaders:?}, want exactly one"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn claim(worker: &str, lease_ms: u64) -> ClaimRequest {
    ClaimRequest {
        worker: worker.into(),
        max: 1,
        wait_ms: 5_000,
        lease_ms: Some(lease_ms),
    }
}

/// Waits until `id` is no longer running in its first attempt (reaped).
async fn wait_reaped(node: &Node, id: &str) {
    let c = node.client.clone();
    let reaped = wait_until(deadline(Duration::from_secs(60)), || {
        let c = c.clone();
        async move {
            c.job(id)
                .await
                .is_ok_and(|j| j.state != JobState::Running || j.attempt > 1)
        }
    })
    .await;
    if !reaped {
        node.fail(format!("{id}'s expired lease was not reaped within 60 s"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_fast_clock_leads_maintenance_without_reaping_live_leases_early() {
    let lib = FAKETIME_LIBS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "libfaketime is missing (install the `faketime` package): this test does not skip"
            )
        });
    let schema = Schema::new("lead");
    // B, an hour fast, starts first and so leads maintenance.
    let b = Node::start(&schema.0, Some((&lib, "+1h"))).await;
    ensure!(b, one_leader(&[&b]).await == 0, "B leads");
    let a = Node::start(&schema.0, None).await;
    ensure!(b, one_leader(&[&b, &a]).await == 0, "B still leads");

    let c = a.client.clone();
    c.enqueue("clock", &job_req("j1", None, serde_json::json!({})))
        .await
        .expect("enqueue");
    let lease = c.claim("clock", &claim("w", 5_000)).await.expect("claim");
    let lease = lease
        .leases
        .into_iter()
        .next()
        .unwrap_or_else(|| a.fail("nothing claimed".into()));
    // Heartbeat through A for three lease lengths: B's maintenance must not
    // take the lease away (without the database clock B reaps it at once).
    for beat in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let hb = c
            .heartbeat(
                "j1",
                &HeartbeatRequest {
                    token: lease.token.clone(),
                    progress: None,
                },
            )
            .await;
        ensure!(
            b,
            hb.is_ok(),
            "heartbeat {beat}: the live lease was taken: {hb:?}"
        );
    }
    let job = c.job("j1").await.expect("job");
    ensure!(
        b,
        job.state == JobState::Running && job.attempt == 1,
        "a heartbeated job was reaped: {job:?}"
    );
    // Stop heartbeating: the lease ends and B's maintenance reaps it.
    wait_reaped(&b, "j1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_nodes_leads_maintenance_and_another_takes_over_when_it_dies() {
    let schema = Schema::new("lead");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start_with(&schema.0, None, &["--retention", "2s"]).await);
    }
    let leader = one_leader(&nodes.iter().collect::<Vec<_>>()).await;
    // A job leased through the leader, its worker gone: the lease must
    // still expire once the leader is dead.
    let c = nodes[leader].client.clone();
    c.enqueue("lead", &job_req("orphan", None, serde_json::json!({})))
        .await
        .expect("enqueue");
    let got = c.claim("lead", &claim("gone", 2_000)).await.expect("claim");
    ensure!(nodes[leader], got.leases.len() == 1, "nothing claimed");
    // A job finished before the leader dies, older than the retention (2 s)
    // when it dies: the leader's retention pass ran at its start, before.
    c.enqueue("old", &job_req("old", None, serde_json::json!({})))
        .await
        .expect("enqueue");
    let old = c.claim("old", &claim("w", 30_000)).await.expect("claim");
    ensure!(nodes[leader], old.leases.len() == 1, "nothing claimed");
    c.complete(
        "old",
        &CompleteRequest {
            token: old.leases[0].token.clone(),
            result: None,
            claim_next: None,
        },
    )
    .await
    .expect("complete");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    ensure!(
        nodes[leader],
        c.job("old").await.is_ok(),
        "the job was deleted before the leader died"
    );
    nodes[leader].kill9();
    let dead = nodes.remove(leader);
    drop(dead);
    let next = one_leader(&nodes.iter().collect::<Vec<_>>()).await;
    wait_reaped(&nodes[next], "orphan").await;
    // Retention moved too: the new leader's first pass, within seconds of
    // taking over (not a retention interval, 10 min, later), deletes the
    // job that finished more than 2 s before.
    let c = nodes[next].client.clone();
    let gone = wait_until(deadline(Duration::from_secs(30)), || {
        let c = c.clone();
        async move { c.job("old").await.is_err_and(|e| e.status() == Some(404)) }
    })
    .await;
    ensure!(
        nodes[next],
        gone,
        "the new leader's retention did not delete a job finished before it took over, within 30 s"
    );
}
