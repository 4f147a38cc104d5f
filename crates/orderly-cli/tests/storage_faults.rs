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

/// Starts `orderly serve` on a free port with its data in `data`; waits until healthy.
async fn serve(data: &Path) -> (Server, Client) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start orderly serve");
    let server = Server(child);
    let client = Client::new(format!("http://127.0.0.1:{port}"), None);
    wait_healthy(&client).await;
    (server, client)
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
    let (_server, client) = serve(&mount.0.join("data")).await;

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

/// An ext4 filesystem on a loop device whose backing file lives on a small
/// tmpfs: filling the tmpfs makes the block device fail writes, so the
/// server's next commit gets a real I/O error from the kernel.
struct FailingDisk {
    backing: Mount,
    fs: PathBuf,
}

impl Drop for FailingDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.fs).status();
        let _ = std::fs::remove_dir_all(&self.fs);
        let img = self.backing.0.join("fs.img");
        // Detach the loop device bound to our image, if any is left.
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(img)
            .stderr(Stdio::null())
            .status();
    }
}

fn failing_disk(base: &Path) -> Option<FailingDisk> {
    let backing = mount_tmpfs(&base.join("backing"), "48m")?;
    let img = backing.0.join("fs.img");
    let fs = base.join("fs");
    std::fs::create_dir_all(&fs).ok()?;
    let run = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let ok = run(Command::new("truncate").args(["-s", "64M"]).arg(&img))
        && run(Command::new("mkfs.ext4").arg("-q").arg(&img))
        && run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&fs));
    let disk = FailingDisk { backing, fs };
    ok.then_some(disk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_error_on_commit_stops_writes_and_turns_healthz_503() {
    let base = std::env::temp_dir().join(format!("orderly-ioerr-{}", std::process::id()));
    let Some(disk) = failing_disk(&base) else {
        eprintln!("SKIPPED: cannot set up a loop-mounted ext4 on tmpfs here (needs root, losetup, mkfs.ext4)");
        return;
    };
    let (_server, client) = serve(&disk.fs.join("data")).await;
    let first = client
        .enqueue(
            "q",
            &EnqueueRequest {
                payload: serde_json::json!(1),
                ..Default::default()
            },
        )
        .await
        .expect("enqueue before the fault");

    // Fill the tmpfs under the loop device: its writes now fail with EIO.
    let fill = disk.backing.0.join("fill");
    let _ = std::fs::write(&fill, vec![0u8; 64 * 1024 * 1024]);

    // Enqueue until a commit hits the fault (ext4 may absorb a few writes in its
    // page cache, but the fsync of each commit has to reach the device).
    let mut acknowledged_after_fault = 0;
    let failure = loop {
        assert!(
            acknowledged_after_fault < 50,
            "commits kept succeeding on a failing device"
        );
        let noise: String = (0..20_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        match client
            .enqueue(
                "q",
                &EnqueueRequest {
                    payload: serde_json::json!({ "noise": noise }),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => acknowledged_after_fault += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(failure.status(), Some(503), "{failure}");
    assert_eq!(failure.code(), Some("storage_failed"), "{failure}");

    // Fail-stop: unhealthy, and writes stay refused even once the device works again.
    let unhealthy = client.health().await.expect_err("healthz must not say ok");
    assert_eq!(unhealthy.status(), Some(503), "{unhealthy}");
    std::fs::remove_file(&fill).expect("free the backing tmpfs");
    let later = client
        .enqueue(
            "q",
            &EnqueueRequest {
                payload: serde_json::json!(2),
                ..Default::default()
            },
        )
        .await
        .expect_err("writes stay stopped after a failed commit");
    assert_eq!(later.code(), Some("storage_failed"));
    // Reads still answer.
    let job = client
        .job(&first.value.id)
        .await
        .expect("read after the fault");
    assert_eq!(job.seq, first.value.seq);
}
