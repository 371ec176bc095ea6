//! Hamlet's collector library for phones.
//!
//! It will hold the local store, enrollment, recording and sync that phones run, exposed through
//! UniFFI; the document model it builds on is [`hamlet_sync_core`]. Nothing is exported yet.

#![deny(missing_docs)]
