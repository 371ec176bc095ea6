//! Sync: the automerge-repo protocol served over durable storage.
//!
//! - [`hub`]: the executor of sync-core's hub and document actors (which decide what the
//!   protocol does): connections' frames in, one task per document in use performing its
//!   actor's storage and access requests; reports each stored round to a
//!   [`hub::RoundObserver`] (the district's projector).
//! - [`connection`]: one connection, frames in and out (the web layer hands it the socket).
//! - [`access`]: what a connection may read and write.
//! - [`metrics`]: counters; [`outbox`]: a connection's bounded send queue.

pub mod access;
pub mod connection;
pub mod hub;
pub mod metrics;
pub mod outbox;

use std::time::Duration;

/// Limits and intervals of the sync endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted.
    pub max_message_bytes: usize,
    /// Largest document accepted.
    pub max_document_bytes: usize,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// Chunks before compaction.
    pub compact_after: usize,
    /// Sustained message rate allowed per device.
    pub device_messages_per_second: u32,
    /// Connections one device may hold open at once.
    pub connections_per_device: usize,
    /// Frames waiting to be sent to one connection; a connection that lets more pile up (it
    /// does not read) is closed.
    pub outbound_frames: usize,
    /// Bytes waiting to be sent to one connection, likewise.
    pub outbound_bytes: usize,
    /// Commands waiting for one document; beyond, the sending connection is closed ("busy").
    pub document_commands: usize,
    /// Bytes of sync data waiting for one document, likewise.
    pub document_bytes_queued: usize,
    /// Largest ephemeral message relayed.
    pub max_ephemeral_bytes: usize,
    /// Storage ids one peer may subscribe to.
    pub subscriptions_per_peer: usize,
}

impl Limits {
    /// What one actor may add to one ledger: an eighth of a document's limit, so that one
    /// device cannot fill a hamlet's ledger and stop its colleagues.
    pub fn max_actor_bytes(&self) -> usize {
        self.max_document_bytes / 8
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 * 1024 * 1024,
            max_document_bytes: 64 * 1024 * 1024,
            ping_interval: Duration::from_secs(5),
            compact_after: 64,
            device_messages_per_second: 200,
            connections_per_device: 4,
            outbound_frames: 4096,
            outbound_bytes: 32 * 1024 * 1024,
            document_commands: 4096,
            document_bytes_queued: 64 * 1024 * 1024,
            max_ephemeral_bytes: 64 * 1024,
            subscriptions_per_peer: 16,
        }
    }
}
