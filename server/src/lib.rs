//! Hamlet's district server: the automerge-repo sync endpoint over durable storage.
//!
//! - [`app`]: routes and the server's life cycle ([`app::Server`]).
//! - [`connection`]: one WebSocket connection.
//! - [`hub`]: connected peers and one task per document in use.
//! - [`store`]: documents as append-only chunks in SQLite or PostgreSQL, with group commit.
//! - [`config`], [`metrics`]: flags and counters.
//! - [`demo`]: the example district.
//! - [`district`]: what district staff see: the projection of ledgers into SQL, results,
//!   progress, review, the JSON API, the dashboard, exports and the demo district.

#![deny(missing_docs)]

pub mod access;
pub mod app;
pub mod auth;
pub mod config;
pub mod connection;
pub mod demo;
pub mod district;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod store;
