//! End-to-end tests across Hamlet's crates, the load generator and the crash soak. The tests
//! live in `tests/`; the load generator is [`load`], run as the `hamlet-load` binary; the SIGKILL
//! soak of the server binary is [`soak`], run as `hamlet-soak` (by `tests/bench/soak.sh`).

#![deny(missing_docs)]

pub mod load;
pub mod soak;
