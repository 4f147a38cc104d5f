//! `POST /v1/reports` with `claim_next`, and the worker runtime's batching
//! reporter against a real server.
//!
//! The endpoint tests go through the router over a real SQLite file
//! (`support::TestApp`): leases come back in `seq` order and within the
//! queue's concurrency, a stale token is refused in its item and claims
//! nothing, a replayed batch answers the same leases, a `claim_next` that
//! waits is a `400` naming its field. The runner test serves the same
//! router on loopback TCP and drains a concurrency-16 and a serial queue
//! with 16 slots each through `HttpSource`, counting the batches it sent.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use orderly_client::Client;
use orderly_server::ServerConfig;
use orderly_worker::{
    Beat, ClaimParams, Failure, Handler, HttpSource, Job, JobContext, JobSource, Lease, Outcome,
    Report, ReportAnswer, Runner, RunnerConfig, SourceError,
};
use serde_json::{json, Value};
use support::{assert_error, TestApp};
use tokio::sync::oneshot;

/// Enqueues `n` jobs on `queue` in one batch; their ids in `seq` order.
async fn fill(app: &TestApp, queue: &str, n: usize) -> Vec<String> {
    let jobs: Vec<Value> = (0..n).map(|i| json!({"payload": {"i": i}})).collect();
    let (status, body) = app
        .post(
            &format!("/v1/queues/{queue}/jobs/batch"),
            json!({ "jobs": jobs }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("id").to_string())
        .collect()
}

/// `(id, token)` of each lease.
fn held(leases: &[Value]) -> Vec<(String, String)> {
    leases
        .iter()
        .map(|l| {
            (
                l["job"]["id"].as_str().expect("id").to_string(),
                l["token"].as_str().expect("token").to_string(),
            )
        })
        .collect()
}

fn done(id: &str, token: &str, claim_next: Option<Value>) -> Value {
    let mut item = json!({"id": id, "token": token, "outcome": "succeeded", "result": {"ok": id}});
    if let Some(c) = claim_next {
        item["claim_next"] = c;
    }
    item
}

async fn reports(app: &TestApp, items: Vec<Value>) -> Vec<Value> {
    let (status, body) = app.post("/v1/reports", json!({ "reports": items })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"].as_array().expect("results").clone()
}

fn seqs(leases: &Value) -> Vec<i64> {
    leases
        .as_array()
        .expect("leases")
        .iter()
        .map(|l| l["job"]["seq"].as_i64().expect("seq"))
        .collect()
}

/// Each item's `claim_next` claims on its job's queue in item order: the
/// leases come back in `seq` order across the batch and never take the
/// queue past its concurrency; an item without `claim_next` has no `leases`.
#[tokio::test]
async fn batch_claims_in_seq_order_within_concurrency() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 3})).await;
    fill(&app, "q", 10).await;
    let first = held(&app.claim("q", "w", 3).await);
    let next = json!({"worker": "w", "max": 5});
    let results = reports(
        &app,
        vec![
            done(&first[0].0, &first[0].1, Some(next.clone())),
            done(&first[1].0, &first[1].1, None),
            done(&first[2].0, &first[2].1, Some(next)),
        ],
    )
    .await;
    for r in &results {
        assert_eq!(r["job"]["state"], "succeeded", "{r}");
        assert!(r.get("error").is_none(), "{r}");
    }
    assert!(results[1].get("leases").is_none(), "{}", results[1]);
    // Item 0 freed one place of three: one lease. Item 1 freed another, item 2
    // its own: two more, never beyond the concurrency.
    let (a, c) = (seqs(&results[0]["leases"]), seqs(&results[2]["leases"]));
    assert_eq!(a.len(), 1, "{}", results[0]);
    assert_eq!(c.len(), 2, "{}", results[2]);
    let all: Vec<i64> = a.iter().chain(&c).copied().collect();
    assert_eq!(all, [4, 5, 6], "the next jobs in line, in seq order");
    let q = app.queue("q").await;
    assert_eq!(q["counts"]["running"], 3, "{q}");
}

/// A stale token is refused in its own item (`stale_lease`) and claims
/// nothing: the next item, with the right token, gets the next job.
#[tokio::test]
async fn stale_token_is_refused_per_item_and_claims_nothing() {
    let app = TestApp::new();
    let ids = fill(&app, "serial", 3).await;
    let (id, token) = app.claim_one("serial").await;
    assert_eq!(id, ids[0]);
    let next = json!({"worker": "w", "max": 10});
    let results = reports(
        &app,
        vec![
            done(&id, "not-the-token", Some(next.clone())),
            done(&id, &token, Some(next)),
        ],
    )
    .await;
    assert_error(&results[0], "stale_lease", "stale item");
    assert!(results[0].get("leases").is_none(), "{}", results[0]);
    assert!(results[0].get("job").is_none(), "{}", results[0]);
    let leases = results[1]["leases"].as_array().expect("leases");
    assert_eq!(
        leases.len(),
        1,
        "a serial queue hands out one: {}",
        results[1]
    );
    assert_eq!(leases[0]["job"]["id"], ids[1].as_str());
    let q = app.queue("serial").await;
    assert_eq!(q["counts"]["running"], 1, "{q}");
}

/// With `brief`, an accepted item answers its job's state after the report
/// instead of the whole job (what the worker runtime asks for), with its
/// leases as without it; a refused item answers its error alone. Without
/// `brief`, the whole job (the default).
#[tokio::test]
async fn brief_results_carry_the_state_not_the_job() {
    let app = TestApp::new();
    let ids = fill(&app, "serial", 3).await;
    let (id, token) = app.claim_one("serial").await;
    let next = json!({"worker": "w", "max": 10});
    let (status, body) = app
        .post(
            "/v1/reports",
            json!({
                "brief": true,
                "reports": [
                    done(&id, "not-the-token", Some(next.clone())),
                    done(&id, &token, Some(next)),
                ],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_error(&results[0], "stale_lease", "stale item");
    assert!(results[0].get("state").is_none(), "{}", results[0]);
    assert_eq!(results[1]["state"], "succeeded", "{}", results[1]);
    assert!(
        results[1].get("job").is_none(),
        "brief: no job: {}",
        results[1]
    );
    let leases = results[1]["leases"].as_array().expect("leases");
    assert_eq!(leases.len(), 1, "{}", results[1]);
    assert_eq!(leases[0]["job"]["id"], ids[1].as_str());
    let token = leases[0]["token"].as_str().expect("token");
    let results = reports(&app, vec![done(&ids[1], token, None)]).await;
    assert_eq!(results[0]["job"]["id"], ids[1].as_str(), "{}", results[0]);
    assert_eq!(results[0]["job"]["state"], "succeeded", "{}", results[0]);
    assert!(
        results[0].get("state").is_none(),
        "not brief: {}",
        results[0]
    );
}

/// The same batch sent again (its answer lost) answers the same jobs and
/// exactly the leases the first one issued, and claims nothing more.
#[tokio::test]
async fn replayed_batch_answers_the_same() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 2})).await;
    fill(&app, "q", 6).await;
    let first = held(&app.claim("q", "w", 2).await);
    let next = json!({"worker": "w", "max": 1});
    let items: Vec<Value> = first
        .iter()
        .map(|(id, token)| done(id, token, Some(next.clone())))
        .collect();
    let once = reports(&app, items.clone()).await;
    let again = reports(&app, items).await;
    for (a, b) in once.iter().zip(&again) {
        assert_eq!(a["job"]["id"], b["job"]["id"]);
        assert_eq!(a["job"]["state"], b["job"]["state"]);
        let (la, lb) = (
            held(a["leases"].as_array().unwrap()),
            held(b["leases"].as_array().unwrap()),
        );
        assert_eq!(la.len(), 1, "{a}");
        assert_eq!(la, lb, "the replay gets the first answer's leases");
    }
    let q = app.queue("q").await;
    assert_eq!(q["counts"]["running"], 2, "{q}");
    assert_eq!(q["counts"]["queued"], 2, "{q}");
}

/// A batch does not long-poll: a `claim_next.wait_ms` other than 0 refuses
/// the whole request, naming the item, and nothing is applied; 0 is taken.
#[tokio::test]
async fn waiting_claim_next_is_refused_whole() {
    let app = TestApp::new();
    app.configure("q", json!({"concurrency": 2})).await;
    fill(&app, "q", 4).await;
    let first = held(&app.claim("q", "w", 2).await);
    let items = vec![
        done(
            &first[0].0,
            &first[0].1,
            Some(json!({"worker": "w", "wait_ms": 0})),
        ),
        done(
            &first[1].0,
            &first[1].1,
            Some(json!({"worker": "w", "wait_ms": 50})),
        ),
    ];
    let (status, body) = app
        .post("/v1/reports", json!({ "reports": items.clone() }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = assert_error(&body, "invalid_value", "wait_ms");
    assert!(
        message.contains("reports[1].claim_next.wait_ms"),
        "{message}"
    );
    for (id, _) in &first {
        assert_eq!(app.job(id).await["state"], "running", "nothing applied");
    }
    // Out of range elsewhere in `claim_next`: the whole request too.
    let (status, body) = app
        .post(
            "/v1/reports",
            json!({"reports": [done(&first[0].0, &first[0].1, Some(json!({"worker": "w", "max": 0})))]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = assert_error(&body, "invalid_value", "max");
    assert!(message.contains("reports[0].claim_next.max"), "{message}");
    // Without the wait, the same batch is taken.
    let mut fixed = items;
    fixed[1]["claim_next"] = json!({"worker": "w"});
    let results = reports(&app, fixed).await;
    assert!(results.iter().all(|r| r["job"]["state"] == "succeeded"));
}

// ---- the runner against a live server ----

/// The router served on a free loopback port; stopped on drop.
struct Live {
    app: TestApp,
    base: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Live {
    async fn start() -> Self {
        Self::start_with(|r| r).await
    }

    /// With the router changed by `wrap` (to play an older server).
    async fn start_with(wrap: impl FnOnce(axum::Router) -> axum::Router) -> Self {
        let config = ServerConfig::default();
        let timeouts = config.connection_timeouts();
        let app = TestApp::with_config(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(orderly_server::serve::serve(
            listener,
            wrap(orderly_server::router(app.state.clone())),
            timeouts,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(1),
        ));
        Live {
            app,
            base: format!("http://{addr}"),
            stop: Some(tx),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// [`HttpSource`] that counts its batch calls.
struct Counting {
    inner: HttpSource,
    /// `report_many` calls with more than one report.
    batches: AtomicU64,
    /// Reports sent in those.
    batched: AtomicU64,
}

#[async_trait::async_trait]
impl JobSource for Counting {
    async fn claim(&self, queue: &str, params: &ClaimParams) -> Result<Vec<Lease>, SourceError> {
        self.inner.claim(queue, params).await
    }
    async fn heartbeat(&self, lease: &Lease, progress: Option<Value>) -> Result<Beat, SourceError> {
        self.inner.heartbeat(lease, progress).await
    }
    async fn report(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        claim_next: Option<&ClaimParams>,
    ) -> Result<Vec<Lease>, SourceError> {
        self.inner.report(lease, outcome, claim_next).await
    }
    async fn report_many(&self, reports: &[Report]) -> Result<Vec<ReportAnswer>, SourceError> {
        if reports.len() > 1 {
            self.batches.fetch_add(1, Ordering::SeqCst);
            self.batched
                .fetch_add(reports.len() as u64, Ordering::SeqCst);
        }
        self.inner.report_many(reports).await
    }
}

/// Succeeds at once.
struct Noop;

#[async_trait::async_trait]
impl Handler for Noop {
    async fn handle(&self, job: Job, _: JobContext) -> Result<Value, Failure> {
        Ok(json!({"seq": job.seq}))
    }
}

/// Drains `queue` (`n` jobs) with 16 slots; returns the source's counts.
async fn drain(base: &str, queue: &str, n: u64) -> (u64, u64) {
    let source = Arc::new(Counting {
        inner: HttpSource::new(Client::new(base, None)),
        batches: AtomicU64::new(0),
        batched: AtomicU64::new(0),
    });
    let mut config = RunnerConfig::new(queue, format!("{queue}-w"));
    config.slots = 16;
    config.max_jobs = Some(n);
    config.claim_wait = Duration::from_millis(500);
    let summary = tokio::time::timeout(
        Duration::from_secs(120),
        Runner::new(source.clone(), Arc::new(Noop), config).run(),
    )
    .await
    .expect("the drain ended")
    .expect("the runner ran");
    assert_eq!(summary.handled, n, "{queue}");
    (
        source.batches.load(Ordering::SeqCst),
        source.batched.load(Ordering::SeqCst),
    )
}

/// The start log of `queue`, whole.
async fn start_log(app: &TestApp, queue: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/v1/queues/{queue}/starts?limit=1000");
    loop {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        out.extend(body["starts"].as_array().expect("starts").iter().cloned());
        match body["next_after"].as_i64() {
            Some(n) => path = format!("/v1/queues/{queue}/starts?limit=1000&after={n}"),
            None => return out,
        }
    }
}

/// Every job ran once and succeeded; the start log has one start per job.
/// Returns the seqs in start order.
async fn ran_once(app: &TestApp, queue: &str, n: usize) -> Vec<i64> {
    let jobs = app.all_jobs(queue).await;
    assert_eq!(jobs.len(), n, "{queue}");
    for j in &jobs {
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(j["attempt"], 1, "started once: {j}");
    }
    let starts = start_log(app, queue).await;
    assert_eq!(starts.len(), n, "{queue}: one start per job");
    let ids: HashSet<&str> = starts
        .iter()
        .map(|s| s["job_id"].as_str().expect("job_id"))
        .collect();
    assert_eq!(ids.len(), n, "{queue}: no job started twice");
    starts
        .iter()
        .map(|s| s["seq"].as_i64().expect("seq"))
        .collect()
}

/// 16 slots drain a concurrency-16 queue and a serial queue at the same
/// time through the batching reporter: every job succeeds exactly once,
/// the serial queue's start log has no inversion, and reports really went
/// in batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_slots_batch_their_reports() {
    const N: usize = 400;
    let live = Live::start().await;
    live.app.configure("wide", json!({"concurrency": 16})).await;
    live.app
        .configure("serial", json!({"concurrency": 1}))
        .await;
    fill(&live.app, "wide", N).await;
    fill(&live.app, "serial", N / 4).await;
    let ((batches, batched), _) = tokio::join!(
        drain(&live.base, "wide", N as u64),
        drain(&live.base, "serial", (N / 4) as u64),
    );
    println!("wide: {batches} batches of more than one report, {batched} reports in them, of {N}");
    ran_once(&live.app, "wide", N).await;
    let serial = ran_once(&live.app, "serial", N / 4).await;
    let inversions = serial.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(inversions, 0, "start order of the serial queue: {serial:?}");
    assert!(
        batches >= 1 && batched >= 2,
        "16 slots never sent a batch ({batches} batches, {batched} reports)"
    );
    let metrics = live.app.get("/metrics").await.1;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.contains("/v1/reports"), "the batch route was used");
}

/// The OpenAPI document says what the batch takes and answers: an item's
/// `claim_next` cannot wait, a result may carry `leases`.
#[tokio::test]
async fn openapi_documents_claim_next_in_a_batch() {
    let app = TestApp::new();
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let schemas = &doc["components"]["schemas"];
    let item = &schemas["ReportItem"]["properties"]["claim_next"];
    assert!(item.to_string().contains("BatchClaimNext"), "{item}");
    let wait = &schemas["BatchClaimNext"]["properties"]["wait_ms"];
    assert_eq!(wait["maximum"], 0, "{wait}");
    assert_eq!(wait["minimum"], 0, "{wait}");
    let leases = &schemas["ReportResult"]["properties"]["leases"];
    assert!(leases.to_string().contains("LeaseView"), "{leases}");
}

/// A server that refuses the batch call as a whole, as one older than
/// `claim_next` in its items would (`400 invalid_request`, nothing applied):
/// `HttpSource` reports one call per job from then on (a request already in
/// flight when the first refusal came back is refused too and falls back
/// the same way), and the drain completes with every job run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_refusing_batches_gets_single_reports() {
    const N: usize = 200;
    let refused = Arc::new(AtomicU64::new(0));
    let seen = refused.clone();
    let live = Live::start_with(move |r| {
        r.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let seen = seen.clone();
                async move {
                    if req.uri().path() == "/v1/reports" {
                        seen.fetch_add(1, Ordering::SeqCst);
                        let body = json!({"error": {"code": "invalid_request", "message": "unknown field `claim_next`"}});
                        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
                    }
                    next.run(req).await
                }
            },
        ))
    })
    .await;
    live.app.configure("wide", json!({"concurrency": 16})).await;
    fill(&live.app, "wide", N).await;
    let (batches, _) = drain(&live.base, "wide", N as u64).await;
    ran_once(&live.app, "wide", N).await;
    let refused = refused.load(Ordering::SeqCst);
    assert!(batches >= 1, "no batch was tried");
    // The runner keeps two requests of reports in flight: both may be
    // refused before the first refusal is known, never a third.
    assert!(
        (1..=2).contains(&refused),
        "asked at most once per request in flight ({refused} refusals), then one call per report"
    );
}

/// `HttpSource::report_many` maps each item on its own: a stale token is a
/// lost lease for that report only; the other's `claim_next` brings its lease.
#[tokio::test]
async fn http_source_maps_each_item() {
    let live = Live::start().await;
    live.app.configure("q", json!({"concurrency": 2})).await;
    fill(&live.app, "q", 4).await;
    let source = HttpSource::new(Client::new(&live.base, None));
    let params = |wait: u64| ClaimParams {
        worker: "w".into(),
        max: 2,
        wait: Duration::from_millis(wait),
        lease_ms: None,
    };
    let leases = source.claim("q", &params(0)).await.expect("claim");
    assert_eq!(leases.len(), 2);
    let mut stale = leases[0].clone();
    stale.token = "not-the-token".into();
    let reports = [
        Report {
            lease: stale,
            outcome: Outcome::Succeeded(json!(1)),
            claim_next: Some(params(0)),
        },
        Report {
            lease: leases[1].clone(),
            outcome: Outcome::Failed(Failure::message("no")),
            claim_next: Some(params(0)),
        },
    ];
    let answers = source.report_many(&reports).await.expect("one request");
    assert!(
        matches!(&answers[0], Err(SourceError::LeaseLost(e)) if e.contains("stale_lease")),
        "{answers:?}"
    );
    let next = answers[1].as_ref().expect("taken");
    assert_eq!(next.len(), 1, "one place was freed: {next:?}");
    assert_eq!(next[0].job.seq, 3);
    let failed = live.app.job(&leases[1].job.id).await;
    assert_eq!(failed["error"], json!({"message": "no"}), "{failed}");
    assert_eq!(
        failed["state"], "scheduled",
        "retried with backoff: {failed}"
    );
}
