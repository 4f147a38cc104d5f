//! The error body every failed request answers with, and the one table of
//! stable error codes ([`ErrorCode`], by name in [`codes`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (see [`ErrorCode`]).
    pub code: ErrorCode,
    /// What went wrong and how to fix it.
    pub message: String,
}

/// The stable error codes: the one table of every `code` the API answers
/// with. Each serializes as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Body is not JSON.
    InvalidJson,
    /// Body is JSON of the wrong shape (unknown field, wrong type, missing field).
    InvalidRequest,
    /// A field's value is out of range or malformed.
    InvalidValue,
    /// Bad queue name.
    InvalidQueueName,
    /// Bad job id.
    InvalidJobId,
    /// Bad key.
    InvalidKey,
    /// Request body over the limit.
    BodyTooLarge,
    /// Request body framing broken (e.g. a bad chunked encoding).
    MalformedBody,
    /// Request body did not arrive within the body timeout.
    BodyTimeout,
    /// A job's payload over the limit.
    PayloadTooLarge,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// A browser request from a web page of another site, to a server without a token.
    ForbiddenOrigin,
    /// A read-only token asked to change something.
    ReadOnly,
    /// A feature this release does not have.
    NotSupported,
    /// No such job.
    JobNotFound,
    /// No such queue.
    QueueNotFound,
    /// No such route.
    NotFound,
    /// Method not allowed on this route.
    MethodNotAllowed,
    /// Id reused with different content.
    IdConflict,
    /// Report or heartbeat on a lease that is not current.
    StaleLease,
    /// The job's state forbids the operation.
    InvalidState,
    /// Disk full: nothing was written.
    StorageFull,
    /// Storage failed; the server stopped accepting writes.
    StorageFailed,
    /// The database is briefly out of reach: nothing was written, retry later.
    StorageUnavailable,
    /// A stored row could not be read back as written.
    CorruptData,
    /// Server shutting down.
    ShuttingDown,
    /// Any other internal error.
    Internal,
    /// A code this client does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code, in the order of the table.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidValue,
        ErrorCode::InvalidQueueName,
        ErrorCode::InvalidJobId,
        ErrorCode::InvalidKey,
        ErrorCode::BodyTooLarge,
        ErrorCode::MalformedBody,
        ErrorCode::BodyTimeout,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::ForbiddenOrigin,
        ErrorCode::ReadOnly,
        ErrorCode::NotSupported,
        ErrorCode::JobNotFound,
        ErrorCode::QueueNotFound,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::IdConflict,
        ErrorCode::StaleLease,
        ErrorCode::InvalidState,
        ErrorCode::StorageFull,
        ErrorCode::StorageFailed,
        ErrorCode::StorageUnavailable,
        ErrorCode::CorruptData,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    /// The code as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::InvalidQueueName => "invalid_queue_name",
            ErrorCode::InvalidJobId => "invalid_job_id",
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::MalformedBody => "malformed_body",
            ErrorCode::BodyTimeout => "body_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ForbiddenOrigin => "forbidden_origin",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::NotSupported => "not_supported",
            ErrorCode::JobNotFound => "job_not_found",
            ErrorCode::QueueNotFound => "queue_not_found",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::IdConflict => "id_conflict",
            ErrorCode::StaleLease => "stale_lease",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::StorageFailed => "storage_failed",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::CorruptData => "corrupt_data",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// The code named `s`, if it is one of the table.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The stable error codes by name, as constants of [`ErrorCode`].
pub mod codes {
    use super::ErrorCode;

    /// Body is not JSON.
    pub const INVALID_JSON: ErrorCode = ErrorCode::InvalidJson;
    /// Body is JSON of the wrong shape (unknown field, wrong type, missing field).
    pub const INVALID_REQUEST: ErrorCode = ErrorCode::InvalidRequest;
    /// A field's value is out of range or malformed.
    pub const INVALID_VALUE: ErrorCode = ErrorCode::InvalidValue;
    /// Bad queue name.
    pub const INVALID_QUEUE_NAME: ErrorCode = ErrorCode::InvalidQueueName;
    /// Bad job id.
    pub const INVALID_JOB_ID: ErrorCode = ErrorCode::InvalidJobId;
    /// Bad key.
    pub const INVALID_KEY: ErrorCode = ErrorCode::InvalidKey;
    /// Request body over the limit.
    pub const BODY_TOO_LARGE: ErrorCode = ErrorCode::BodyTooLarge;
    /// Request body framing broken (e.g. a bad chunked encoding).
    pub const MALFORMED_BODY: ErrorCode = ErrorCode::MalformedBody;
    /// Request body did not arrive within the body timeout.
    pub const BODY_TIMEOUT: ErrorCode = ErrorCode::BodyTimeout;
    /// A job's payload over the limit.
    pub const PAYLOAD_TOO_LARGE: ErrorCode = ErrorCode::PayloadTooLarge;
    /// Missing or wrong bearer token.
    pub const UNAUTHORIZED: ErrorCode = ErrorCode::Unauthorized;
    /// A browser request from a web page of another site, to a server without a token.
    pub const FORBIDDEN_ORIGIN: ErrorCode = ErrorCode::ForbiddenOrigin;
    /// A read-only token asked to change something.
    pub const READ_ONLY: ErrorCode = ErrorCode::ReadOnly;
    /// A feature this release does not have.
    pub const NOT_SUPPORTED: ErrorCode = ErrorCode::NotSupported;
    /// No such job.
    pub const JOB_NOT_FOUND: ErrorCode = ErrorCode::JobNotFound;
    /// No such queue.
    pub const QUEUE_NOT_FOUND: ErrorCode = ErrorCode::QueueNotFound;
    /// No such route.
    pub const NOT_FOUND: ErrorCode = ErrorCode::NotFound;
    /// Method not allowed on this route.
    pub const METHOD_NOT_ALLOWED: ErrorCode = ErrorCode::MethodNotAllowed;
    /// Id reused with different content.
    pub const ID_CONFLICT: ErrorCode = ErrorCode::IdConflict;
    /// Report or heartbeat on a lease that is not current.
    pub const STALE_LEASE: ErrorCode = ErrorCode::StaleLease;
    /// The job's state forbids the operation.
    pub const INVALID_STATE: ErrorCode = ErrorCode::InvalidState;
    /// Disk full: nothing was written.
    pub const STORAGE_FULL: ErrorCode = ErrorCode::StorageFull;
    /// Storage failed; the server stopped accepting writes.
    pub const STORAGE_FAILED: ErrorCode = ErrorCode::StorageFailed;
    /// The database is briefly out of reach: nothing was written, retry later.
    pub const STORAGE_UNAVAILABLE: ErrorCode = ErrorCode::StorageUnavailable;
    /// A stored row could not be read back as written.
    pub const CORRUPT_DATA: ErrorCode = ErrorCode::CorruptData;
    /// Server shutting down.
    pub const SHUTTING_DOWN: ErrorCode = ErrorCode::ShuttingDown;
    /// Any other internal error.
    pub const INTERNAL: ErrorCode = ErrorCode::Internal;
}
