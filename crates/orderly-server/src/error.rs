//! Errors of the service layer and their one mapping to HTTP.
//!
//! `StoreError` (storage) and `ValidationError` (domain) become
//! [`ServiceError`]; [`ApiError`] turns any of them into a status code and the
//! JSON body `{"error": {"code", "message"}}`. No other place knows status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderly_core::{StoreError, ValidationError};
use orderly_proto::{codes, ErrorBody, ErrorCode, ErrorDetail};

/// What can go wrong in the service layer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A value broke a domain rule.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A job's payload is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An HTTP error response.
#[derive(Debug)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// Message for people.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The error detail as sent on the wire.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            ServiceError::Validation(v) => (StatusCode::BAD_REQUEST, validation_code(v)),
            ServiceError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, codes::PAYLOAD_TOO_LARGE)
            }
            ServiceError::Store(s) => match s {
                StoreError::Invalid(v) => (StatusCode::BAD_REQUEST, validation_code(v)),
                StoreError::JobNotFound(_) => (StatusCode::NOT_FOUND, codes::JOB_NOT_FOUND),
                StoreError::QueueNotFound(_) => (StatusCode::NOT_FOUND, codes::QUEUE_NOT_FOUND),
                StoreError::IdConflict { .. } => (StatusCode::CONFLICT, codes::ID_CONFLICT),
                StoreError::StaleLease { .. } => (StatusCode::CONFLICT, codes::STALE_LEASE),
                StoreError::InvalidState { .. } => (StatusCode::CONFLICT, codes::INVALID_STATE),
                StoreError::StorageFull(_) => {
                    (StatusCode::INSUFFICIENT_STORAGE, codes::STORAGE_FULL)
                }
                StoreError::StorageFailed(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, codes::STORAGE_FAILED)
                }
                StoreError::Unavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, codes::STORAGE_UNAVAILABLE)
                }
                StoreError::Corrupt(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::CORRUPT_DATA),
                StoreError::Closed => (StatusCode::SERVICE_UNAVAILABLE, codes::SHUTTING_DOWN),
                StoreError::Backend(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL),
            },
        };
        if status.is_server_error() {
            tracing::error!(code = code.as_str(), %message, "request failed");
        }
        ApiError::new(status, code, message)
    }
}

/// The wire code of a domain validation error (the domain names its codes
/// by the same snake_case words; a test checks every one is in the table).
fn validation_code(v: &ValidationError) -> ErrorCode {
    ErrorCode::parse(v.code).unwrap_or(codes::INVALID_VALUE)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ServiceError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.detail(),
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use orderly_proto::ErrorCode;

    /// Every code the domain's validation uses is one of the wire table's.
    #[test]
    fn validation_codes_are_in_the_table() {
        for code in [
            "invalid_value",
            "invalid_queue_name",
            "invalid_job_id",
            "invalid_key",
            "not_supported",
        ] {
            assert!(
                ErrorCode::parse(code).is_some(),
                "{code} is not in ErrorCode"
            );
        }
    }
}
