//! The web dashboard: one HTML page and its static assets (plain ES modules
//! and CSS from `crates/orderly-server/dashboard/`, embedded in the binary,
//! no build step, nothing fetched from elsewhere).
//!
//! Every view has its own URL (`/`, `/queues/{queue}`,
//! `/queues/{queue}/keys/{key}`, `/jobs/{id}`); each answers with the same
//! page and the page routes on the client. The page and assets hold no data
//! and are served without a token, like `/healthz`: the page asks for the
//! token and sends it as `Authorization: Bearer` on every API call, so all
//! data stays behind [`super::system::require_token`].
//!
//! Invariants:
//! - asset URLs in the page are relative (`./dashboard/…`, `../dashboard/…`,
//!   by the depth of the view's path; `./orderly/dashboard/…` at the root of
//!   a mount at `/orderly`), so the dashboard works mounted under any prefix
//!   by the embedded library; the page computes its API's root from its own
//!   modules' URL;
//! - every answer carries a strict Content-Security-Policy: scripts, styles
//!   and connections only from this server, no inline script, no framing.

use axum::extract::{OriginalUri, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use orderly_proto::codes;

use crate::error::ApiError;
use crate::AppState;

/// The policy of every dashboard answer: only this server's own scripts,
/// styles and connections; images also as `data:` URLs (the favicon).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page every view's URL answers with; `{{ROOT}}` becomes the relative
/// path from the view's URL to the dashboard's root.
const PAGE: &str = include_str!("../../dashboard/index.html");

/// The assets under `/dashboard/`, by path.
const ASSETS: &[(&str, &str)] = &[
    ("style.css", include_str!("../../dashboard/style.css")),
    ("js/api.js", include_str!("../../dashboard/js/api.js")),
    ("js/charts.js", include_str!("../../dashboard/js/charts.js")),
    (
        "js/confirm.js",
        include_str!("../../dashboard/js/confirm.js"),
    ),
    ("js/dom.js", include_str!("../../dashboard/js/dom.js")),
    ("js/format.js", include_str!("../../dashboard/js/format.js")),
    ("js/live.js", include_str!("../../dashboard/js/live.js")),
    ("js/main.js", include_str!("../../dashboard/js/main.js")),
    ("js/sse.js", include_str!("../../dashboard/js/sse.js")),
    (
        "js/views/job.js",
        include_str!("../../dashboard/js/views/job.js"),
    ),
    (
        "js/views/key.js",
        include_str!("../../dashboard/js/views/key.js"),
    ),
    (
        "js/views/overview.js",
        include_str!("../../dashboard/js/views/overview.js"),
    ),
    (
        "js/views/queue.js",
        include_str!("../../dashboard/js/views/queue.js"),
    ),
];

/// The dashboard's routes (open: see the module docs).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/queues/{queue}", get(page))
        .route("/queues/{queue}/keys/{key}", get(page))
        .route("/jobs/{id}", get(page))
        .route("/dashboard/{*path}", get(asset))
}

/// The page, for any view's URL. The root of a mount is reached without
/// a trailing slash (axum's `nest("/orderly", …)` answers `/orderly`, not
/// `/orderly/`), and relative URLs from `/orderly` resolve next to it, so
/// there the root is `./orderly/`: the mount's last segment, taken from the
/// request's own path.
async fn page(OriginalUri(original): OriginalUri, req: Request) -> Response {
    let inner = req.uri().path();
    let outer = original.path();
    let depth = inner.matches('/').count().saturating_sub(1);
    let root = if inner == "/" && !outer.ends_with('/') {
        let last = outer.rsplit('/').next().unwrap_or("");
        // A path segment as the request spelled it, quoted into an
        // attribute: refuse anything that could leave the attribute.
        if last.contains(['"', '<', '>', '&', '\'']) {
            return not_found(outer);
        }
        format!("./{last}/")
    } else if depth == 0 {
        "./".to_string()
    } else {
        "../".repeat(depth)
    };
    secured("text/html; charset=utf-8", PAGE.replace("{{ROOT}}", &root))
}

/// `GET /dashboard/{path}`: one embedded asset, or `404`.
async fn asset(req: Request) -> Response {
    let path = req.uri().path();
    let name = path.strip_prefix("/dashboard/").unwrap_or("");
    match ASSETS.iter().find(|(n, _)| *n == name) {
        Some((n, body)) => secured(content_type(n), (*body).to_string()),
        None => not_found(path),
    }
}

fn not_found(path: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::NOT_FOUND,
        format!("the dashboard has no file {path}"),
    )
    .into_response()
}

/// The content type of an asset, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `body` with its type and the headers that keep the page to itself.
fn secured(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            // Always revalidate: a new binary's assets are seen at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_known_type_and_the_page_loads_its_entry() {
        for (name, body) in ASSETS {
            assert_ne!(content_type(name), "application/octet-stream", "{name}");
            assert!(!body.is_empty(), "{name}");
        }
        assert!(PAGE.contains(r#"src="{{ROOT}}dashboard/js/main.js""#));
    }

    #[test]
    fn every_module_a_module_imports_is_served() {
        for (name, body) in ASSETS.iter().filter(|(n, _)| n.ends_with(".js")) {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['"', '\'']).nth(1) else {
                    continue;
                };
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(
                    ASSETS.iter().any(|(n, _)| *n == target),
                    "{name} imports {spec} ({target}), which is not served"
                );
            }
        }
    }
}
