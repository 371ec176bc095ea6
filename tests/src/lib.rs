//! End-to-end tests across Hamlet's crates, and the load generator. The tests live in `tests/`;
//! the load generator is [`load`], run as the `hamlet-load` binary.

#![deny(missing_docs)]

pub mod load;
