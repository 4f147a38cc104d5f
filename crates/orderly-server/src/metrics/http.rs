//! The layer that counts HTTP requests by matched route template.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// Counts each request and its time under its method, the route template
/// it matched (`/v1/jobs/{id}`, never the raw path: ids stay out of the
/// labels) and its status. Requests that matched no route count under
/// `unmatched`, and unusual methods under `other`, so the number of label
/// sets stays bounded whatever clients send.
pub async fn track_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // `MatchedPath` is shared (an `Arc<str>`): cloning it copies nothing.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let began = Instant::now();
    let response = next.run(req).await;
    state.service.metrics().record_http(
        method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        began.elapsed().as_secs_f64(),
    );
    response
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
