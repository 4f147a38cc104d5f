//! The HTTP API mounted in the application's own axum router under a
//! prefix, served on 127.0.0.1 and driven with real HTTP: the token of
//! `Options` guards it, the application's own routes stay as they are, and
//! a job enqueued over HTTP runs in an in-process handler.

mod support;

use axum::routing::get;
use orderly::{Fail, JobCx, Options, Orderly};
use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "mount-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_mounted_under_a_prefix_enqueues_and_reads_jobs() {
    let dir = tempdir();
    let mut opts = Options::new(dir.path());
    opts.token = Some(TOKEN.into());
    let o = Orderly::open_with(opts).await.expect("open");
    o.handle("q", 1, |cx: JobCx<Value>| async move {
        Ok::<_, Fail>(json!({ "handled": cx.payload, "seq": cx.seq }))
    })
    .expect("register");
    let app = axum::Router::new()
        .route("/hello", get(|| async { "hello from the app" }))
        .nest("/orderly", o.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    // The application's route needs no token; the API does.
    let r = http.get(format!("{base}/hello")).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "hello from the app");
    let r = http
        .post(format!("{base}/orderly/v1/queues/q/jobs"))
        .json(&json!({ "id": "j1", "payload": { "n": 1 } }))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401, "no token: {:?}", r.text().await);
    let r = http
        .post(format!("{base}/orderly/v1/queues/q/jobs"))
        .bearer_auth("wrong")
        .json(&json!({ "id": "j1", "payload": { "n": 1 } }))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401, "wrong token: {:?}", r.text().await);
    assert!(o.jobs("q", None, 10).await.expect("list").is_empty());
    // Unmounted paths are not the API's.
    let r = http
        .get(format!("{base}/v1/jobs/j1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 404);

    let r = http
        .post(format!("{base}/orderly/v1/queues/q/jobs"))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": "j1", "payload": { "n": 1 } }))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 202);
    let created: Value = r.json().await.expect("JSON");
    assert_eq!(created["id"], "j1");
    assert_eq!(created["queue"], "q");

    let r = http
        .get(format!("{base}/orderly/v1/jobs/j1"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 401, "reading without the token");
    let done = wait_until(|| async {
        let r = http
            .get(format!("{base}/orderly/v1/jobs/j1"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        let j: Value = r.json().await.expect("JSON");
        j["state"] == "succeeded"
    })
    .await;
    assert!(done, "the job never succeeded: {:?}", o.job("j1").await);
    let r = http
        .get(format!("{base}/orderly/v1/jobs/j1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET");
    let j: Value = r.json().await.expect("JSON");
    assert_eq!(j["attempt"], 1, "{j}");
    assert_eq!(
        j["result"],
        json!({ "handled": { "n": 1 }, "seq": created["seq"] }),
        "{j}"
    );
    // The library sees the same job.
    assert_eq!(
        o.job("j1").await.expect("job").seq.to_string(),
        j["seq"].to_string()
    );

    server.abort();
    o.shutdown().await;
}

/// The dashboard mounted under `/orderly`: every view's page (the root at
/// `/orderly` itself) loads its assets by relative URLs that resolve inside
/// the mount, and the assets and API answer there; the read-only token
/// reads and cannot act.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_mounted_under_a_prefix_finds_its_assets() {
    let dir = tempdir();
    let mut opts = Options::new(dir.path());
    opts.token = Some(TOKEN.into());
    opts.read_token = Some("mount-read-token".into());
    let o = Orderly::open_with(opts).await.expect("open");
    let app = axum::Router::new().nest("/orderly", o.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    for (path, asset) in [
        ("/orderly", "/orderly/dashboard/js/main.js"),
        ("/orderly/queues/q", "/orderly/dashboard/js/main.js"),
        ("/orderly/queues/q/keys/k", "/orderly/dashboard/js/main.js"),
        ("/orderly/jobs/j1", "/orderly/dashboard/js/main.js"),
    ] {
        let page_url = format!("{base}{path}");
        let r = http.get(&page_url).send().await.expect("GET");
        assert_eq!(r.status(), 200, "{path}");
        let html = r.text().await.expect("body");
        let src = html
            .split("src=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a script src");
        let resolved = reqwest::Url::parse(&page_url)
            .expect("url")
            .join(src)
            .expect("join");
        assert_eq!(resolved.path(), asset, "{path}: {src}");
        let r = http.get(resolved).send().await.expect("GET");
        assert_eq!(r.status(), 200, "{asset}");
        assert_eq!(
            r.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
    }
    let r = http
        .get(format!("{base}/orderly/v1/queues"))
        .bearer_auth("mount-read-token")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let r = http
        .put(format!("{base}/orderly/v1/queues/q"))
        .bearer_auth("mount-read-token")
        .json(&json!({ "paused": true }))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), 403);

    server.abort();
    o.shutdown().await;
}
