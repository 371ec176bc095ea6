//! Accounts and access: who is asking, and what they may read or write.
//!
//! - [`accounts`]: people, staff sessions, API tokens, assignments, enrollment codes, devices.
//! - [`http`]: authentication middleware, role guards, CSRF, sign-in pages, the people, device
//!   and token API, enrollment.
//! - [`limiter`]: brute-force limits on sign-in and enrollment.
//! - [`proxy`]: the client's address behind trusted reverse proxies.
//! - [`secret`]: random tokens and codes, token and password hashes.

pub mod accounts;
pub mod http;
pub mod limiter;
pub mod proxy;
pub mod secret;

pub use accounts::{AccountError, Accounts, Device, Enrolled, Person, Role};
pub use http::Principal;
