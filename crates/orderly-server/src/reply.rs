//! [`Json`]: the API's JSON responses.
//!
//! `axum::Json` serializes into a `BytesMut` through its `io::Write`
//! adapter, starting at 128 bytes: every key, quote and value is a
//! `put_slice` through `BufMut`'s chunk loop, and a job of about 450 bytes
//! grows the buffer twice. Serializing into a `Vec<u8>` sized for a job
//! writes each piece with one `extend_from_slice`; the bytes sent are the
//! same (`serde_json::to_writer` either way). Measured in
//! docs/performance.md (stop 24).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// About one job as JSON: the first allocation fits most answers.
const FIRST_CAPACITY: usize = 640;

/// A JSON response body (`200` unless paired with a status).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(FIRST_CAPACITY);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                axum::body::Body::from(body),
            )
                .into_response(),
            Err(e) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                orderly_proto::codes::INTERNAL,
                format!("the answer could not be written as JSON: {e}"),
            )
            .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes are `serde_json`'s, under `application/json`, whatever
    /// the size (one job, or a batch that outgrows the first allocation).
    #[tokio::test]
    async fn the_body_is_serde_jsons_bytes_as_application_json() {
        let one =
            serde_json::json!({"id": "a\"b\u{1}", "seq": 1, "payload": {"é": [1, 2.5, null]}});
        let many: Vec<_> = (0..100).map(|_| one.clone()).collect();
        for value in [one.clone(), serde_json::Value::Array(many)] {
            let response = Json(&value).into_response();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .map(|v| v.as_bytes()),
                Some(&b"application/json"[..])
            );
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            assert_eq!(body.as_ref(), serde_json::to_vec(&value).expect("json"));
        }
    }
}
