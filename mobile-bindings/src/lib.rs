//! Hamlet's collector library: what a collector's phone does, for the phone apps (through
//! UniFFI), the `hamlet-collector` command line and the load generator.
//!
//! - [`collector`]: [`Collector`], the library's one entry point, with a blocking API.
//! - [`store`]: the local store, one SQLite file (documents, sync states, identity, receipts).
//! - [`sync`]: sync with a server or relay over the automerge-repo WebSocket protocol.
//! - [`enroll`]: enrollment with a one-time code.
//! - [`transport`]: TCP and TLS under both, and which certificates are believed (pins).
//! - [`bundle`]: bundle files, to carry changes without a network.
//! - [`answers`]: answers as typed, read against the form.
//! - [`views`]: the records returned (and passed through the FFI).
//! - [`ffi`]: the UniFFI object, which only delegates.
//!
//! The document model and the sans-I/O protocol are [`hamlet_sync_core`]'s.
//!
//! # Example
//!
//! A device set up for an open server records offline; its documents are on disk at once.
//!
//! ```
//! use hamlet_mobile::Collector;
//!
//! let dir = tempfile::tempdir()?;
//! let phone = Collector::open(dir.path().join("phone.db"))?;
//! phone.setup_without_enrollment(
//!     "127.0.0.1:8080",
//!     "nguyen-van-a",
//!     &[("tin-nhiem-2025".into(), vec!["thon-dong".into()])],
//! )?;
//! // The campaign's form arrives with the first sync: until then nothing can be recorded.
//! let err = phone.record("tin-nhiem-2025", "thon-dong", &[]).unwrap_err();
//! assert!(err.to_string().contains("sync first"));
//! assert_eq!(phone.counts()?.drafts, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

uniffi::setup_scaffolding!();

pub mod address;
pub mod answers;
pub mod bundle;
pub mod collector;
pub mod enroll;
pub mod ffi;
pub mod store;
pub mod sync;
pub mod transport;
pub mod views;

pub use collector::{Collector, CollectorError};
pub use sync::{SyncEvent, SyncOptions};
