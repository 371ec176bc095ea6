//! What each fuzz target asserts. The functions live in files of their own so that the
//! regression tests of `hamlet-sync-core` and `hamlet-server` compile the very same code
//! (`#[path]` modules) and replay `fuzz/regressions/<target>/` in a normal `cargo test`.

pub mod checks;
pub mod csv_checks;
