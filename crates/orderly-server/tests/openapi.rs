//! `GET /openapi.json`: the document lists exactly the routes the router
//! serves, is OpenAPI 3.1, and says what the server checks; and the
//! regressions that `scripts/api-fuzz.sh` (schemathesis) found.

mod support;

use std::collections::BTreeSet;

use axum::body::Body as AxumBody;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use orderly_proto::ErrorCode;
use orderly_server::ServerConfig;
use serde_json::{json, Value};
use support::{assert_error, TestApp};
use tower::ServiceExt;

/// Every route of the API, as `METHOD path`.
const ROUTES: &[&str] = &[
    "GET /healthz",
    "GET /openapi.json",
    "GET /metrics",
    "GET /v1/queues",
    "GET /v1/queues/{queue}",
    "PUT /v1/queues/{queue}",
    "POST /v1/queues/{queue}/jobs",
    "GET /v1/queues/{queue}/jobs",
    "POST /v1/queues/{queue}/jobs/batch",
    "GET /v1/queues/{queue}/starts",
    "POST /v1/queues/{queue}/claim",
    "GET /v1/jobs/{id}",
    "GET /v1/jobs/{id}/attempts",
    "GET /v1/jobs/{id}/wait",
    "POST /v1/jobs/{id}/cancel",
    "POST /v1/jobs/{id}/retry",
    "POST /v1/jobs/{id}/heartbeat",
    "POST /v1/jobs/{id}/complete",
    "POST /v1/jobs/{id}/fail",
    "POST /v1/reports",
    "GET /v1/events",
];

fn with_token() -> TestApp {
    TestApp::with_config(ServerConfig {
        token: Some("sekrit".into()),
        ..ServerConfig::default()
    })
}

/// The document as the router serves it, without a token.
async fn served(app: &TestApp) -> Value {
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    doc
}

/// Every `METHOD path` the document lists.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops
}

/// The status of `method path` and its error code, if it answered one;
/// an event stream's body is not read (it does not end).
async fn probe(app: &TestApp, method: &str, path: &str) -> (StatusCode, Option<String>) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", "Bearer sekrit")
        .body(AxumBody::empty())
        .expect("request");
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let is_json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return (status, None);
    }
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("JSON");
    let code = body["error"]["code"].as_str().map(str::to_string);
    (status, code)
}

#[tokio::test]
async fn the_document_lists_every_route_the_router_serves() {
    let app = with_token();
    let doc = served(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Orderly");
    let expected: BTreeSet<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    assert_eq!(operations(&doc), expected);
    // The public builder gives the same document the router serves.
    assert_eq!(
        orderly_server::openapi::document(&ServerConfig::default()),
        doc
    );
    // Each listed operation reaches a handler: neither the unknown-route
    // fallback nor the wrong-method one answers it.
    for route in ROUTES {
        let (method, template) = route.split_once(' ').expect("METHOD path");
        let mut path = template.replace("{queue}", "q").replace("{id}", "j");
        if path.ends_with("/wait") {
            path.push_str("?timeout_ms=0");
        }
        let (status, code) = probe(&app, method, &path).await;
        assert!(
            code.as_deref() != Some("not_found") && code.as_deref() != Some("method_not_allowed"),
            "{route}: {status} {code:?}"
        );
    }
    // And a route the document does not list is not served.
    let (status, code) = probe(&app, "DELETE", "/v1/jobs/j").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{code:?}");
}

#[tokio::test]
async fn the_document_is_open_and_the_token_guards_the_rest() {
    let app = with_token();
    let doc = served(&app).await;
    let (status, _) = app.call(Method::GET, "/v1/queues", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer"})
    );
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let open = path == "/healthz" || path == "/openapi.json";
            let security = &op["security"];
            if open {
                assert!(security.is_null(), "{method} {path} is open: {security}");
            } else {
                assert_eq!(security, &json!([{"bearer": []}]), "{method} {path}");
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path}: no 401"
                );
            }
            assert!(op["operationId"].is_string(), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn errors_have_one_schema_whose_code_is_the_table() {
    let doc = served(&with_token()).await;
    let schemas = &doc["components"]["schemas"];
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(schemas["ErrorCode"]["enum"], json!(codes));
    assert_eq!(
        schemas["ErrorDetail"]["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            for (status, resp) in op["responses"].as_object().expect("responses") {
                if status.starts_with('4') || (status.starts_with('5') && path != "/healthz") {
                    assert_eq!(
                        resp["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn links_name_operations_that_exist() {
    let doc = served(&with_token()).await;
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("item").values() {
            ids.insert(op["operationId"].as_str().expect("id").to_string());
        }
    }
    let enqueue = &doc["paths"]["/v1/queues/{queue}/jobs"]["post"]["responses"]["202"];
    assert_eq!(
        enqueue["links"]["GetJob"],
        json!({"operationId": "get_job", "parameters": {"id": "$response.body#/id"}})
    );
    let claim = &doc["paths"]["/v1/queues/{queue}/claim"]["post"]["responses"]["200"];
    assert_eq!(
        claim["links"]["CompleteJob"]["requestBody"],
        json!({"token": "$response.body#/leases/0/token"})
    );
    let mut links = 0;
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("item").values() {
            for resp in op["responses"].as_object().expect("responses").values() {
                for link in resp["links"]
                    .as_object()
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    let target = link["operationId"].as_str().expect("operationId");
                    assert!(ids.contains(target), "{target}");
                    links += 1;
                }
            }
        }
    }
    assert!(links > 50, "{links} links");
}

/// Found by schemathesis: the document said an `EventView` stream was a
/// string, let every query parameter be `null`, and did not say that
/// `run_at` and `delay_ms` exclude each other.
#[tokio::test]
async fn the_document_says_what_the_server_checks() {
    let doc = served(&with_token()).await;
    let events = &doc["paths"]["/v1/events"]["get"];
    let stream = &events["responses"]["200"]["content"]["text/event-stream"]["schema"]["$ref"];
    let name = stream
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .expect("a $ref");
    let stream = &doc["components"]["schemas"][name];
    assert_eq!(stream["type"], "object", "{stream}");
    assert_eq!(stream["required"], json!(["event", "data"]));
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("item").values() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let ty = &p["schema"]["type"];
                assert!(
                    !ty.as_array().is_some_and(|t| t.contains(&json!("null"))),
                    "{} may be null: {p}",
                    p["name"]
                );
            }
        }
    }
    assert_eq!(
        doc["components"]["schemas"]["EnqueueRequest"]["not"]["required"],
        json!(["run_at", "delay_ms"])
    );
    // Found by the long run: `state=` (empty) is no filter, and is served.
    let list = &doc["paths"]["/v1/queues/{queue}/jobs"]["get"]["parameters"];
    let state = list
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "state"))
        .expect("a state parameter");
    assert!(
        state["schema"]["enum"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("")) && e.contains(&json!("queued"))),
        "{state}"
    );
}

/// Found by schemathesis: JSON Schema's `integer` takes `886.0`, and so
/// must the API (JSON does not tell it from `886`); a fraction is refused.
#[tokio::test]
async fn whole_numbers_written_with_a_fraction_part_are_integers() {
    let app = TestApp::new();
    let (status, job) = app
        .post(
            "/v1/queues/q/jobs",
            json!({"payload": 1, "max_attempts": 3.0, "delay_ms": 0.0}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["max_attempts"], 3);
    let (status, queue) = app
        .put(
            "/v1/queues/q",
            json!({"concurrency": 2.0, "backoff": {"initial_ms": 1e3, "max_ms": 2000.0, "factor": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["concurrency"], 2);
    assert_eq!(queue["backoff"]["initial_ms"], 1000);
    let (status, claim) = app
        .post(
            "/v1/queues/q/claim",
            json!({"worker": "w", "max": 886.0, "wait_ms": 0.0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{claim}");
    assert_eq!(claim["leases"].as_array().map(Vec::len), Some(1));
    for bad in [json!(1.5), json!(-1), json!(1e30), json!("2")] {
        let (status, body) = app
            .post("/v1/queues/q/claim", json!({"worker": "w", "max": bad}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "max {bad}: {body}");
        assert_error(&body, "invalid_request", "a max that is no whole number");
    }
    // Found by the long run: 2^64, one past the largest `u64`, was read as
    // `u64::MAX` (a float bound that rounds up) instead of refused.
    let body = r#"{"reports": [{"id": "j", "token": "t", "outcome": "failed", "retry_after_ms": 18446744073709551616}]}"#;
    let (status, body) = app
        .req(Method::POST, "/v1/reports", Some(support::raw(body)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "invalid_request", "retry_after_ms of 2^64");
}

/// Found by schemathesis: with a `Last-Event-ID` header, a malformed
/// `last_event_id` parameter was ignored instead of refused.
#[tokio::test]
async fn a_malformed_last_event_id_is_refused_even_beside_the_header() {
    let app = TestApp::new();
    let request = Request::get("/v1/events?last_event_id=null")
        .header("last-event-id", "0")
        .body(AxumBody::empty())
        .expect("request");
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    // Only a refusal is read whole: a stream (the bug) would never end.
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("JSON");
    let msg = assert_error(&body, "invalid_value", "last_event_id=null");
    assert!(msg.contains("last_event_id"), "{msg}");
    // The two together, both well formed, still resume from the header.
    let request = Request::get("/v1/events?last_event_id=5")
        .header("last-event-id", "0")
        .body(AxumBody::empty())
        .expect("request");
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
}
