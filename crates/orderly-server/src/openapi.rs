//! The OpenAPI 3.1 document of the API, served at `GET /openapi.json`.
//!
//! It cannot drift from the handlers: [`crate::routes`] registers every
//! route with `utoipa_axum::routes!`, which takes each handler's
//! `#[utoipa::path]` (method, path, parameters, bodies, statuses) and mounts
//! the handler from the same line. [`finish`] then adds what holds for many
//! operations at once: the bearer scheme on the routes behind the token,
//! the errors any request can meet, and (in the JSON) the links between
//! operations that let a client (or a stateful fuzzer) follow an id from
//! one answer into the next request.
//!
//! The document is served open, like `/healthz`: it says nothing about a
//! server's data, and a client needs it before it has a token.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Map, Value};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, Content, InfoBuilder, OpenApi, OpenApiBuilder, Ref};

use crate::ServerConfig;

/// The document as JSON text, a request extension set by [`crate::router`].
#[derive(Clone)]
pub struct Document(pub Arc<str>);

/// `GET /openapi.json`: the document, as [`Document`] holds it.
pub async fn serve(Extension(doc): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
        .into_response()
}

/// The document of a server with `config`, as `GET /openapi.json` serves it.
pub fn document(config: &ServerConfig) -> Value {
    finish(
        crate::routes::api(config).into_openapi(),
        crate::routes::open().into_openapi(),
    )
}

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

/// The errors every operation behind the token can answer.
const GUARDED_ERRORS: &[(&str, &str)] = &[
    ("401", "No token, or the wrong one, on a server with a token (`unauthorized`)."),
    ("403", "Sent by a web page of another site to a server without a token (`forbidden_origin`), or a change asked with the read-only token (`read_only`)."),
    ("500", "An internal error (`internal`), or a stored row that cannot be read back (`corrupt_data`)."),
    ("503", "Storage failed or is out of reach (`storage_failed`, `storage_unavailable`), or the server is shutting down (`shutting_down`)."),
];

/// The errors every operation with a request body can answer.
const BODY_ERRORS: &[(&str, &str)] = &[
    ("400", "The body is not JSON (`invalid_json`), or JSON of the wrong shape: an unknown field, a wrong type, a missing field (`invalid_request`)."),
    ("408", "The body did not arrive within the body timeout (`body_timeout`)."),
    ("413", "The body is larger than the route's limit (`body_too_large`), or a job's payload is (`payload_too_large`)."),
    ("507", "The disk is full: nothing was written (`storage_full`)."),
];

/// The error of every operation with parameters.
const PARAMETER_ERROR: (&str, &str) = (
    "400",
    "A parameter is malformed (`invalid_request`, `invalid_value`).",
);

/// The whole document from the guarded routes' `api` and the open routes'
/// `open` (each as `utoipa_axum` collected it).
pub fn finish(mut api: OpenApi, open: OpenApi) -> Value {
    for item in api.paths.paths.values_mut() {
        for op in operations(item) {
            op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            for (status, description) in GUARDED_ERRORS {
                add_error(op, status, description);
            }
        }
    }
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Orderly")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "A durable, strictly-FIFO background-job server. Every error is \
                     `{\"error\": {\"code\", \"message\"}}` with a stable `code`.",
                ))
                .build(),
        )
        .build();
    doc.merge(api);
    doc.merge(open);
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            if op.request_body.is_some() {
                for (status, description) in BODY_ERRORS {
                    add_error(op, status, description);
                }
            }
            if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                add_error(op, PARAMETER_ERROR.0, PARAMETER_ERROR.1);
            }
        }
    }
    let components = doc.components.get_or_insert_with(Components::new);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    add_links(&mut doc);
    add_rules(&mut doc);
    doc
}

/// The rules across fields that a derive cannot say: a job is given
/// `run_at` or `delay_ms`, not both (either may be `null`, which is not
/// giving it); an empty `state` filter is no filter; a report's `retry_after_ms` is any `u64` for the request
/// as a whole. (That a backoff's `max_ms` is not below its `initial_ms` is
/// beyond JSON Schema: its description says it.)
fn add_rules(doc: &mut Value) {
    if let Some(enqueue) = doc.pointer_mut("/components/schemas/EnqueueRequest") {
        enqueue["not"] = json!({
            "required": ["run_at", "delay_ms"],
            "properties": {"run_at": {"type": "string"}, "delay_ms": {"type": "number"}},
        });
    }
    // `state=` (empty) lists every state, as no `state` does.
    let states = [
        "scheduled",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "",
    ];
    if let Some(params) = doc
        .pointer_mut("/paths/~1v1~1queues~1{queue}~1jobs/get/parameters")
        .and_then(Value::as_array_mut)
    {
        for p in params.iter_mut().filter(|p| p["name"] == "state") {
            p["schema"] = json!({"type": "string", "enum": states});
        }
    }
    // Its bound (a year) is judged per report, in that report's result:
    // the request as a whole takes any `u64`.
    if let Some(ms) = doc.pointer_mut("/components/schemas/ReportItem/properties/retry_after_ms") {
        if let Some(ms) = ms.as_object_mut() {
            ms.remove("format");
            ms.insert("maximum".into(), json!(u64::MAX));
        }
    }
}

/// Every operation of `item`.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Documents `status` with the error body on `op`, unless it has one already.
fn add_error(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build()
                .into()
        });
}

/// The links: from a job in an answer to the operations on that job, from a
/// queue to the operations on that queue, and from a lease to the reports
/// that need its token. Written as JSON: utoipa 5.5 spells a link's fields
/// in snake_case (`operation_id`), which OpenAPI readers do not know.
fn add_links(doc: &mut Value) {
    let job_ops = [
        ("GetJob", "get_job"),
        ("ListAttempts", "list_attempts"),
        ("WaitJob", "wait_job"),
        ("CancelJob", "cancel_job"),
        ("RetryJob", "retry_job"),
    ];
    let queue_ops = [
        ("GetQueue", "get_queue"),
        ("ListJobs", "list_jobs"),
        ("ListStarts", "list_starts"),
        ("ClaimJobs", "claim_jobs"),
        ("EnqueueJob", "enqueue_job"),
    ];
    let link =
        |op: &str, param: &str, at: String| json!({"operationId": op, "parameters": {param: at}});
    // From a job found at JSON pointer `at` of the answer.
    let job_at = |at: &str| {
        let mut links = Map::new();
        for (name, op) in job_ops {
            links.insert(
                name.into(),
                link(op, "id", format!("$response.body#{at}/id")),
            );
        }
        for (name, op) in queue_ops {
            links.insert(
                name.into(),
                link(op, "queue", format!("$response.body#{at}/queue")),
            );
        }
        links
    };
    let mut leases = job_at("/leases/0/job");
    for (name, op) in [
        ("CompleteJob", "complete_job"),
        ("FailJob", "fail_job"),
        ("HeartbeatJob", "heartbeat_job"),
    ] {
        let mut l = link(op, "id", "$response.body#/leases/0/job/id".into());
        l["requestBody"] = json!({"token": "$response.body#/leases/0/token"});
        leases.insert(name.into(), l);
    }
    let mut queue = Map::new();
    for (name, op) in queue_ops {
        queue.insert(
            name.into(),
            link(op, "queue", "$response.body#/name".into()),
        );
    }
    let plan = [
        ("enqueue_job", "202", job_at("")),
        ("enqueue_job", "200", job_at("")),
        ("enqueue_batch", "202", job_at("/jobs/0")),
        ("enqueue_batch", "200", job_at("/jobs/0")),
        ("get_job", "200", job_at("")),
        ("cancel_job", "200", job_at("")),
        ("retry_job", "202", job_at("")),
        ("claim_jobs", "200", leases),
        ("configure_queue", "200", queue.clone()),
        ("get_queue", "200", queue),
    ];
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        for (op_id, status, links) in &plan {
            if op.get("operationId").and_then(Value::as_str) != Some(*op_id) {
                continue;
            }
            if let Some(resp) = op.pointer_mut(&format!("/responses/{status}")) {
                resp["links"] = Value::Object(links.clone());
            }
        }
    }
}
