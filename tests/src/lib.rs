//! End-to-end tests across Hamlet's crates, and the load generator. The tests live in `tests/`.

#![deny(missing_docs)]
