//! Hamlet's district server.
//!
//! Today it holds the demo district that the README's run command shows; the sync endpoint,
//! storage and dashboard are built on it next (see ARCHITECTURE.md).

#![deny(missing_docs)]

pub mod demo;
