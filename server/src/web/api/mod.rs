//! The JSON API — of the district (campaigns, units, results, progress, review, exports, the
//! audit log) and of the accounts (people, codes, devices, tokens, and what phones call) — and
//! its OpenAPI document, made from both.

pub mod accounts;
pub mod district;

pub use district::{admin_api, openapi, viewer_api};
