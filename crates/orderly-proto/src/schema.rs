//! The OpenAPI schemas written by hand, for the two wire types whose serde
//! code is written by hand too: a derive would describe them wrongly.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::{ErrorCode, ReportOutcome};

/// The codes of [`ErrorCode::ALL`]: every code a server sends (`unknown` is
/// only what a client reads for a code it does not know).
impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some("Stable snake_case error code."))
            .into()
    }
}

impl ToSchema for ErrorCode {}

/// Any string: `succeeded` and `failed` are outcomes, and any other string
/// is refused in its own slot of the answer, not by the request as a whole.
impl PartialSchema for ReportOutcome {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "`succeeded` or `failed`; any other string is refused in this item's \
                 result (`invalid_value`), the other items are still applied.",
            ))
            .examples(["succeeded", "failed"])
            .into()
    }
}

impl ToSchema for ReportOutcome {}
