//! The JSON API of the district (campaigns, units, results, progress, review, exports, the
//! audit log) and its OpenAPI document; the account API lives with authentication, in
//! [`crate::web::auth`].

pub mod district;

pub use district::{admin_api, openapi, viewer_api};
