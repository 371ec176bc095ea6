//! Schemas of the types whose JSON is a plain string (identifiers, days), for the server's
//! OpenAPI document (feature `openapi`). The structs and enums derive theirs.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A string schema with `description` and, if given, the `pattern` every value matches.
pub(crate) fn text(description: &str, pattern: Option<&str>) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).description(Some(description)).pattern(pattern).into()
}
