//! A full disk, for real: the server's data directory lives on a tiny tmpfs.
//! Enqueues must answer 507 `storage_full` and change nothing, reads and
//! `/healthz` keep working, and once space is freed enqueues succeed again
//! without a restart.
//!
//! Mounting a tmpfs needs root (CI and the dev machines run as root); where
//! the mount is refused the test says so and returns.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orderly_client::proto::EnqueueRequest;
use orderly_client::Client;

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(dir).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| Mount(dir.to_path_buf()))
}

async fn wait_healthy(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.health().await.is_err() {
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_answers_507_keeps_reads_and_recovers_by_itself() {
    let base = std::env::temp_dir().join(format!("orderly-diskfull-{}", std::process::id()));
    let Some(mount) = mount_tmpfs(&base, "4m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    // Fill most of the disk with a file we can delete later to free space.
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![0u8; 2 * 1024 * 1024]).expect("write filler");
    let port = free_port();
    let data = mount.0.join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start orderly serve");
    let _server = Server(child);
    let client = Client::new(format!("http://127.0.0.1:{port}"), None);
    wait_healthy(&client).await;

    // Enqueue 20 KB jobs until the disk is full.
    let payload = serde_json::json!({ "blob": "x".repeat(20_000) });
    let mut accepted = Vec::new();
    let full = loop {
        assert!(accepted.len() < 1000, "the disk never filled up");
        let req = EnqueueRequest {
            payload: payload.clone(),
            ..Default::default()
        };
        match client.enqueue("q", &req).await {
            Ok(e) => accepted.push(e.value.seq),
            Err(e) => break e,
        }
    };
    assert_eq!(full.status(), Some(507), "{full}");
    assert_eq!(full.code(), Some("storage_full"), "{full}");
    assert!(!accepted.is_empty());

    // Nothing half-written: the queue holds exactly the acknowledged jobs, in order.
    let info = client.queue("q").await.expect("queue readable while full");
    assert_eq!(info.counts.queued, accepted.len() as u64);
    let page = client
        .list("q", None, None, 1000)
        .await
        .expect("list while full");
    let seqs: Vec<i64> = page.jobs.iter().map(|j| j.seq).collect();
    assert_eq!(seqs, accepted);
    let health = client.health().await.expect("healthz while full");
    assert_eq!(health.status, "ok");
    // Still full: a second attempt is refused the same way.
    let again = client
        .enqueue(
            "q",
            &EnqueueRequest {
                payload: payload.clone(),
                ..Default::default()
            },
        )
        .await
        .expect_err("still full");
    assert_eq!(again.status(), Some(507));

    // Free space: enqueues work again, without a restart, and seqs keep increasing.
    std::fs::remove_file(&filler).expect("remove filler");
    let after = client
        .enqueue(
            "q",
            &EnqueueRequest {
                payload: serde_json::json!({"after": true}),
                ..Default::default()
            },
        )
        .await
        .expect("enqueue after freeing space");
    assert!(after.created);
    assert!(after.value.seq > *accepted.last().unwrap());
    let info = client.queue("q").await.unwrap();
    assert_eq!(info.counts.queued, accepted.len() as u64 + 1);
}
