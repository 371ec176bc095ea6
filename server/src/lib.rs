//! Hamlet's district server: the automerge-repo sync endpoint over durable storage, and what
//! district staff see of the merged feedback.
//!
//! Layers, each using only those above it in this list (CI checks it, `.ci/layers`):
//!
//! - [`clock`]: time, passed in.
//! - [`store`]: documents as append-only chunks in SQLite or PostgreSQL, with group commit.
//! - [`audit`]: the audit log of staff actions.
//! - [`accounts`]: people, roles, sessions, tokens, devices, secrets, the failure limiter.
//! - [`sync`]: connected peers, one task per document in use, who may read and write what.
//! - [`district`]: the projection of ledgers into SQL, campaigns and their operations,
//!   results, progress, review, export rows.
//! - [`web`]: HTTP — the routes, authentication, the JSON API, the pages, the sync endpoint.
//! - [`relay`]: the commune-office relay — the same sync endpoint for a commune's phones, the
//!   uplink to the district, the accounts it is fed, its status page.
//! - [`demo`]: the example district, through district operations.
//! - [`config`], [`app`]: flags, and the server built from the layers ([`app::Server`], [`app::Relay`]).
//!
//! Nothing below [`web`] names axum or HTTP.

#![deny(missing_docs)]

pub mod accounts;
pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod demo;
pub mod district;
pub mod relay;
pub mod store;
pub mod sync;
pub mod web;

/// Locks a mutex, ignoring poisoning (the maps it guards stay usable).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
