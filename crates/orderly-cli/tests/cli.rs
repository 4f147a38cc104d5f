//! End-to-end tests of the `orderly` command line (contract sections 9 and
//! 10): `enqueue` (one, replay, JSON-lines file), `jobs`, `job`, `queue
//! set/show`, environment variables, and the token rules of `serve`.

#[macro_use]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::proto::{JobListResponse, JobView, QueueView};
use support::{orderly, run_bounded, show, ClientError, TestServer};

/// Parses a command's stdout as `$ty`, failing with the server log on error.
macro_rules! parse {
    ($srv:expr, $ty:ty, $what:expr, $text:expr) => {{
        let text: &str = &$text;
        match serde_json::from_str::<$ty>(text) {
            Ok(v) => v,
            Err(e) => $srv.fail(format!(
                "{}: stdout is not the expected JSON ({e}):\n{text}",
                $what
            )),
        }
    }};
}

/// Contract §9: the client commands against a real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_commands_enqueue_list_show_and_configure() {
    const Q: &str = "cliq";
    let srv = TestServer::start().await;
    let c = srv.client();

    // One job, then an idempotent replay.
    let args = ["enqueue", Q, r#"{"a":1}"#, "--key", "k", "--id", "x1"];
    let out = srv.run_cli(&args).await;
    ensure!(srv, out.status.success(), "enqueue failed: {}", show(&out));
    let first = parse!(
        srv,
        JobView,
        "enqueue",
        &String::from_utf8_lossy(&out.stdout)
    );
    ensure!(
        srv,
        first.id == "x1"
            && first.queue == Q
            && first.key.as_deref() == Some("k")
            && first.payload == json!({"a": 1})
            && first.state == "queued"
            && first.position == Some(0),
        "enqueued job: {first:?}"
    );
    ensure!(
        srv,
        !String::from_utf8_lossy(&out.stderr).contains("already enqueued"),
        "a new job reported as a replay: {}",
        show(&out)
    );
    let out = srv.run_cli(&args).await;
    ensure!(srv, out.status.success(), "replay failed: {}", show(&out));
    let replay = parse!(
        srv,
        JobView,
        "replay",
        &String::from_utf8_lossy(&out.stdout)
    );
    ensure!(
        srv,
        replay.id == first.id
            && replay.seq == first.seq
            && replay.payload == first.payload
            && replay.key == first.key
            && replay.enqueued_at == first.enqueued_at,
        "replay printed a different job:\n{first:?}\n{replay:?}"
    );
    ensure!(
        srv,
        String::from_utf8_lossy(&out.stderr).contains("already enqueued"),
        "replay not reported as such: {}",
        show(&out)
    );
    // Same id, different payload: refused, nothing changes.
    let out = srv
        .run_cli(&["enqueue", Q, r#"{"a":2}"#, "--key", "k", "--id", "x1"])
        .await;
    ensure!(
        srv,
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("id_conflict"),
        "conflicting reuse of an id was not refused: {}",
        show(&out)
    );
    ensure!(
        srv,
        srv.job("x1").await.payload == json!({"a": 1}),
        "conflict changed the job"
    );

    // 2,500 jobs from a JSON-lines file, in file order.
    let file = srv.dir().join("jobs.jsonl");
    let mut lines = String::new();
    for i in 0..2500 {
        let line = if i % 10 == 0 {
            json!({"id": format!("f-{i:04}"), "key": format!("fk{}", i % 7), "payload": {"n": i}})
        } else {
            json!({"id": format!("f-{i:04}"), "payload": {"n": i}})
        };
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    std::fs::write(&file, lines).unwrap();
    let file_arg = file.to_string_lossy().into_owned();
    let stdout = srv.run_cli_ok(&["enqueue", Q, "--file", &file_arg]).await;
    ensure!(
        srv,
        stdout.contains("enqueued 2500 jobs"),
        "enqueue --file said: {stdout}"
    );
    let listed = srv.list_all(Q).await;
    support::check_listing(&srv, &listed);
    ensure!(
        srv,
        listed.len() == 2501,
        "{} jobs listed, expected 2501",
        listed.len()
    );
    ensure!(srv, listed[0].id == "x1", "first listed: {}", listed[0].id);
    for (i, j) in listed[1..].iter().enumerate() {
        ensure!(
            srv,
            j.id == format!("f-{i:04}") && j.payload == json!({"n": i}),
            "listing position {i}: {} {:?}",
            j.id,
            j.payload
        );
        ensure!(
            srv,
            j.seq == listed[1].seq + i as i64,
            "file jobs' seqs not consecutive in file order at line {i}: {}",
            j.seq
        );
        let key = (i % 10 == 0).then(|| format!("fk{}", i % 7));
        ensure!(srv, j.key == key, "line {i}: key {:?}", j.key);
    }

    // `orderly jobs` (table and JSON) and `orderly job`.
    let table = srv.run_cli_ok(&["jobs", Q]).await;
    for id in ["x1", "f-0000", "f-0001", "f-0048"] {
        ensure!(
            srv,
            table.contains(id),
            "`orderly jobs` lacks {id}:\n{table}"
        );
    }
    ensure!(srv, table.contains("SEQ"), "no header:\n{table}");
    let json_out = srv
        .run_cli_ok(&["jobs", Q, "--json", "--state", "queued", "--limit", "3"])
        .await;
    let page = parse!(srv, JobListResponse, "jobs --json", &json_out);
    let ids: Vec<&str> = page.jobs.iter().map(|j| j.id.as_str()).collect();
    ensure!(
        srv,
        ids == ["x1", "f-0000", "f-0001"],
        "jobs --json --limit 3: {ids:?}"
    );
    ensure!(
        srv,
        page.next_after == Some(page.jobs[2].seq),
        "next_after {:?}",
        page.next_after
    );
    // `--key`: that key's line only, in seq order.
    let key_out = srv.run_cli_ok(&["jobs", Q, "--json", "--key", "fk3"]).await;
    let line = parse!(srv, JobListResponse, "jobs --key --json", &key_out);
    let want: Vec<i64> = listed
        .iter()
        .filter(|j| j.key.as_deref() == Some("fk3"))
        .map(|j| j.seq)
        .collect();
    let got: Vec<i64> = line.jobs.iter().map(|j| j.seq).collect();
    ensure!(
        srv,
        !want.is_empty() && got == want,
        "jobs --key fk3: {got:?}, want {want:?}"
    );
    let shown = parse!(
        srv,
        JobView,
        "job",
        &srv.run_cli_ok(&["job", "f-0100", "--json"]).await
    );
    ensure!(
        srv,
        shown.id == "f-0100" && shown.payload == json!({"n": 100}) && shown.position == Some(101),
        "orderly job f-0100: {shown:?}"
    );
    // Without --json, a line in words comes first: state, place, why, when.
    let words = srv.run_cli_ok(&["job", "f-0100"]).await;
    let first = words.lines().next().unwrap_or("");
    ensure!(
        srv,
        first.starts_with("queued, 101 ahead; ")
            && (first.ends_with("(estimate)") || first.ends_with("; no estimate yet")),
        "orderly job f-0100's first line: {first:?}"
    );
    let out = srv.run_cli(&["job", "no-such-job"]).await;
    ensure!(
        srv,
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("job_not_found"),
        "orderly job of a missing id: {}",
        show(&out)
    );

    // ORDERLY_SERVER instead of --server.
    let mut cmd = orderly();
    cmd.args(["job", "x1", "--json"])
        .env("ORDERLY_SERVER", srv.url());
    let out = run_bounded(cmd, Duration::from_secs(20)).await;
    ensure!(
        srv,
        out.status.success(),
        "ORDERLY_SERVER ignored: {}",
        show(&out)
    );
    let via_env = parse!(
        srv,
        JobView,
        "job via env",
        &String::from_utf8_lossy(&out.stdout)
    );
    ensure!(srv, via_env.id == "x1", "job via env: {via_env:?}");

    // `queue set` then `queue show`.
    let set = srv
        .run_cli_ok(&["queue", "set", Q, "--concurrency", "3", "--lease", "5s"])
        .await;
    let set = parse!(srv, QueueView, "queue set", &set);
    ensure!(
        srv,
        set.concurrency == 3 && set.lease_ms == 5000,
        "queue set answered {set:?}"
    );
    let shown = parse!(
        srv,
        QueueView,
        "queue show",
        &srv.run_cli_ok(&["queue", "show", Q]).await
    );
    ensure!(
        srv,
        shown.name == Q
            && shown.concurrency == 3
            && shown.lease_ms == 5000
            && shown.max_attempts == 5
            && !shown.paused,
        "queue show: {shown:?}"
    );
    ensure!(
        srv,
        shown.counts.queued == 2501,
        "queue counts: {:?}",
        shown.counts
    );
    let api = c.queue(Q).await.unwrap();
    ensure!(
        srv,
        api.concurrency == 3 && api.lease_ms == 5000,
        "API view: {api:?}"
    );
    let list = srv.run_cli_ok(&["queue"]).await;
    ensure!(srv, list.contains(Q), "`orderly queue` lacks {Q}:\n{list}");
}

/// Contract §10: no token on a non-loopback address is refused before listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_refuses_a_public_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut cmd = orderly();
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("0.0.0.0:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let out = run_bounded(cmd, Duration::from_secs(20)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve on 0.0.0.0 without a token did not fail: {}",
        show(&out)
    );
    assert!(
        stderr.contains("--token"),
        "the refusal does not mention --token: {}",
        show(&out)
    );
    assert!(
        !stderr.contains("listening on"),
        "it listened before refusing: {}",
        show(&out)
    );
    // Port 0 (any port) is refused the same way.
    let mut cmd = orderly();
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"));
    let out = run_bounded(cmd, Duration::from_secs(20)).await;
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--token"),
        "serve --listen 0.0.0.0:0: {}",
        show(&out)
    );
}

/// `--read-token` needs a full `--token` beside it, and a different one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_refuses_a_read_token_alone_or_equal_to_the_token() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--read-token", "r"][..], "--read-token needs --token"),
        (&["--token", "t", "--read-token", "t"][..], "must differ"),
        (
            &["--token", "t", "--read-token", ""][..],
            "--read-token is empty",
        ),
    ] {
        let mut cmd = orderly();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args);
        let out = run_bounded(cmd, Duration::from_secs(20)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "serve {args:?}: {}",
            show(&out)
        );
        assert!(!stderr.contains("listening on"), "{}", show(&out));
    }
}

/// Contract §10: with `--token` the API needs the bearer token; `/healthz` stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_guards_the_api_but_not_healthz() {
    const Q: &str = "guarded";
    let srv = TestServer::start_with(Some("T0ken-e2e")).await;
    let anon = srv.anonymous_client();
    match anon.list(Q, None, None, 10).await {
        Err(ClientError::Api {
            status: 401, code, ..
        }) if code == "unauthorized" => {}
        other => srv.fail(format!("request without a token: {other:?}")),
    }
    let wrong = support::Client::new(srv.url(), Some("wrong".into()));
    match wrong
        .enqueue(Q, &support::job_req("nope", None, Value::Null))
        .await
    {
        Err(ClientError::Api { status: 401, .. }) => {}
        other => srv.fail(format!("request with a wrong token: {other:?}")),
    }
    let h = anon
        .health()
        .await
        .unwrap_or_else(|e| srv.fail(format!("/healthz without a token: {e}")));
    ensure!(srv, h.status == "ok", "healthz: {h:?}");

    let c = srv.client();
    c.enqueue(Q, &support::job_req("g1", None, json!({"ok": true})))
        .await
        .unwrap_or_else(|e| srv.fail(format!("enqueue with the token: {e}")));
    // Nothing was enqueued by the refused request.
    ensure!(
        srv,
        matches!(
            c.job("nope").await,
            Err(ClientError::Api { status: 404, .. })
        ),
        "a refused request enqueued a job"
    );

    // CLI with --token (TestServer::cli adds it).
    let table = srv.run_cli_ok(&["jobs", Q]).await;
    ensure!(
        srv,
        table.contains("g1"),
        "`orderly jobs --token`:\n{table}"
    );
    // CLI without a token.
    let mut cmd = orderly();
    cmd.args(["jobs", Q, "--server", &srv.url()]);
    let out = run_bounded(cmd, Duration::from_secs(20)).await;
    ensure!(
        srv,
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("401"),
        "`orderly jobs` without a token: {}",
        show(&out)
    );
    // ORDERLY_SERVER and ORDERLY_TOKEN from the environment.
    let mut cmd = orderly();
    cmd.args(["jobs", Q])
        .env("ORDERLY_SERVER", srv.url())
        .env("ORDERLY_TOKEN", "T0ken-e2e");
    let out = run_bounded(cmd, Duration::from_secs(20)).await;
    ensure!(
        srv,
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("g1"),
        "ORDERLY_SERVER + ORDERLY_TOKEN: {}",
        show(&out)
    );
}
