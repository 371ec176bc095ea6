//! The sync session, sans I/O: protocol messages in, decisions out.
//!
//! Two state machines, which the server, the relay and the phone drive with their own sockets,
//! storage and clocks:
//!
//! - [`Connection`]: one peer's connection, from `join` to `leave`. It checks the handshake, the
//!   protocol version and the sender of every message, and turns bytes into [`Event`]s.
//! - [`DocumentSync`]: one document and every peer syncing it. It applies incoming sync
//!   messages, says what must be stored ([`DocumentSync::unsaved`]), and only once that is stored
//!   says what to send ([`DocumentSync::outgoing`]): a peer never hears that its changes arrived
//!   before they are durable.
//!
//! # Example
//!
//! ```
//! use hamlet_sync_core::automerge::{transaction::Transactable, Automerge, AutomergeError, ROOT, sync::{self, SyncDoc}};
//! use hamlet_sync_core::session::{DocumentSync, Outgoing};
//! use hamlet_sync_core::DocumentId;
//!
//! // A client made a document; the server has never seen it.
//! let mut client = Automerge::new();
//! client.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "hamlet", "Thôn Đông")).map_err(|f| f.error)?;
//! let mut client_state = sync::State::new();
//!
//! let id = DocumentId::from_bytes([1; 16]);
//! let mut server = DocumentSync::new(id, Automerge::new());
//! server.add_peer("phone", None);
//! loop {
//!     if let Some(msg) = client.generate_sync_message(&mut client_state) {
//!         server.receive("phone", &msg.encode(), false)?;
//!     }
//!     // The server stores what it received before it answers.
//!     if let Some(unsaved) = server.unsaved() {
//!         server.saved(unsaved.heads);
//!     }
//!     let replies = server.outgoing();
//!     if replies.is_empty() { break; }
//!     for (_, reply) in replies {
//!         if let Outgoing::Sync(data) = reply {
//!             client.receive_sync_message(&mut client_state, sync::Message::decode(&data)?)?;
//!         }
//!     }
//! }
//! assert_eq!(server.doc().get_heads(), client.get_heads());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash, ReadDoc};

use crate::docid::DocumentId;
use crate::guard::{self, GuardError, Limits};
use crate::wire::{self, DocMessage, Message, PROTOCOL_VERSION, PeerMetadata, WireError};

/// Who the server is on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Its peer id.
    pub peer_id: String,
    /// Its storage id, stable across restarts.
    pub storage_id: String,
}

/// A peer that has joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer id it announced.
    pub peer_id: String,
    /// Its storage id, if it keeps data.
    pub storage_id: Option<String>,
    /// Whether it keeps nothing between sessions.
    pub is_ephemeral: bool,
}

impl Peer {
    /// The storage id under which this peer's sync state is worth saving, if any.
    pub fn durable_storage_id(&self) -> Option<&str> {
        self.storage_id.as_deref().filter(|_| !self.is_ephemeral)
    }
}

/// What a message asks of the I/O layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake succeeded: send `reply`, then treat the socket as `peer`.
    Joined {
        /// The peer.
        peer: Peer,
        /// The `peer` message to send back.
        reply: Message,
    },
    /// A `request` (`is_request`) or `sync` for a document.
    Sync {
        /// The document.
        document: DocumentId,
        /// The Automerge sync message.
        data: Vec<u8>,
        /// Whether it was a `request`.
        is_request: bool,
    },
    /// An ephemeral message to relay to the document's other peers.
    Ephemeral {
        /// The document.
        document: DocumentId,
        /// The message, to forward with only its `targetId` changed.
        message: Message,
        /// Sender session and count, to drop duplicates.
        dedup: (String, u64),
    },
    /// The peer does not have a document it was asked for.
    Unavailable {
        /// The document.
        document: DocumentId,
    },
    /// The peer changes which storages' heads it wants to hear of.
    Subscription {
        /// Storage ids added.
        add: Vec<String>,
        /// Storage ids removed.
        remove: Vec<String>,
    },
    /// The peer leaves.
    Leave,
    /// Nothing to do (heads of other storages, errors reported by the peer).
    Nothing,
}

/// A message the protocol refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes are not a protocol message.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The peer speaks no version we speak.
    #[error("unsupported protocol version: offered {offered:?}, this server speaks \"1\"")]
    UnsupportedVersion {
        /// What the peer offered.
        offered: Vec<String>,
    },
    /// A message before `join`.
    #[error("{0} message before join")]
    NotJoined(String),
    /// A message whose sender is not the peer of this connection.
    #[error("message from {got:?} on the connection of {expected:?}")]
    WrongSender {
        /// The connection's peer.
        expected: String,
        /// The sender named in the message.
        got: String,
    },
    /// A second `join` naming another peer on the same connection.
    #[error("connection of {current:?} cannot join again as {new:?}")]
    Rejoin {
        /// The connection's peer.
        current: String,
        /// The peer named in the new join.
        new: String,
    },
    /// A document id that is not base58check of 16 bytes.
    #[error("invalid document id {0:?}")]
    DocumentId(String),
    /// A message only servers send.
    #[error("a client cannot send {0} messages")]
    Unexpected(&'static str),
    /// A peer id or storage id longer than [`wire::MAX_ID_BYTES`].
    #[error("{field} of {len} bytes is too long (at most {max})", max = wire::MAX_ID_BYTES)]
    IdTooLong {
        /// Which id.
        field: &'static str,
        /// Its length.
        len: usize,
    },
}

impl ProtocolError {
    /// Whether the connection must be closed after the error is reported. Errors that leave the
    /// conversation in an unknown state close it; a bad document id concerns one document only.
    pub fn closes(&self) -> bool {
        !matches!(self, ProtocolError::DocumentId(_))
    }
}

/// One peer's connection, seen from the server.
#[derive(Debug, Clone)]
pub struct Connection {
    server: Identity,
    peer: Option<Peer>,
}

impl Connection {
    /// A new connection, awaiting `join`.
    pub fn new(server: Identity) -> Self {
        Connection { server, peer: None }
    }

    /// The peer, once joined.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// Reads one frame.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Event, ProtocolError> {
        let message = wire::decode(bytes)?;
        if let Message::Join { sender_id, peer_metadata, supported_protocol_versions } = message {
            if let Some(offered) = supported_protocol_versions
                && !offered.iter().any(|v| v == PROTOCOL_VERSION)
            {
                return Err(ProtocolError::UnsupportedVersion { offered });
            }
            let meta = peer_metadata.unwrap_or_default();
            for (field, id) in [("senderId", Some(&sender_id)), ("storageId", meta.storage_id.as_ref())] {
                if let Some(id) = id.filter(|id| id.len() > wire::MAX_ID_BYTES) {
                    return Err(ProtocolError::IdTooLong { field, len: id.len() });
                }
            }
            if let Some(current) = &self.peer
                && current.peer_id != sender_id
            {
                return Err(ProtocolError::Rejoin { current: current.peer_id.clone(), new: sender_id });
            }
            let peer = Peer { peer_id: sender_id, storage_id: meta.storage_id, is_ephemeral: meta.is_ephemeral };
            self.peer = Some(peer.clone());
            let reply = Message::Peer {
                sender_id: self.server.peer_id.clone(),
                target_id: peer.peer_id.clone(),
                peer_metadata: PeerMetadata { storage_id: Some(self.server.storage_id.clone()), is_ephemeral: false },
                selected_protocol_version: PROTOCOL_VERSION.into(),
            };
            return Ok(Event::Joined { peer, reply });
        }
        let Some(peer) = &self.peer else { return Err(ProtocolError::NotJoined(message.kind().into())) };
        if let Some(sender) = message.sender_id()
            && sender != peer.peer_id
        {
            return Err(ProtocolError::WrongSender { expected: peer.peer_id.clone(), got: shorten(sender) });
        }
        let document = |id: &str| id.parse::<DocumentId>().map_err(|_| ProtocolError::DocumentId(shorten(id)));
        Ok(match message {
            Message::Request(DocMessage { document_id, data, .. }) => {
                Event::Sync { document: document(&document_id)?, data, is_request: true }
            }
            Message::Sync(DocMessage { document_id, data, .. }) => {
                Event::Sync { document: document(&document_id)?, data, is_request: false }
            }
            Message::DocUnavailable { document_id, .. } => Event::Unavailable { document: document(&document_id)? },
            Message::Ephemeral { ref document_id, ref session_id, count, .. } => {
                let doc = document(document_id)?;
                let dedup = (session_id.clone(), count);
                Event::Ephemeral { document: doc, message, dedup }
            }
            Message::RemoteSubscriptionChange { add, remove, .. } => Event::Subscription { add, remove },
            Message::Leave { .. } => Event::Leave,
            Message::RemoteHeadsChanged { .. } | Message::Error { .. } => Event::Nothing,
            Message::Peer { .. } => return Err(ProtocolError::Unexpected("peer")),
            Message::Join { .. } => Event::Nothing,
        })
    }

    /// The `error` message reporting `error` to this connection's peer.
    pub fn error_message(&self, error: &ProtocolError) -> Message {
        Message::Error {
            sender_id: Some(self.server.peer_id.clone()),
            target_id: self.peer.as_ref().map(|p| p.peer_id.clone()),
            message: error.to_string(),
        }
    }
}

/// At most the first 40 characters of `text`, for error messages that quote a peer.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// What to send to a peer about a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// An Automerge sync message.
    Sync(Vec<u8>),
    /// The document does not exist here.
    Unavailable,
}

/// An incoming sync message that cannot be applied. Except after [`SyncError::Panicked`], the
/// document is as it was before the message (see [`DocumentSync::receive`]).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Not an Automerge sync message, or one with parameters no honest peer writes.
    #[error("invalid sync message: {0}")]
    Decode(#[from] GuardError),
    /// Automerge refused its changes.
    #[error("invalid changes: {0}")]
    Apply(String),
    /// The message's changes wait for history that never came, beyond what may wait in memory.
    #[error(
        "too many changes wait for history this server does not have ({bytes} bytes); send their dependencies first"
    )]
    Pending {
        /// Bytes of messages whose changes wait.
        bytes: usize,
    },
    /// Automerge panicked on the message. The in-memory document can no longer be trusted:
    /// drop this [`DocumentSync`] and load the document again from storage.
    #[error("the message could not be applied")]
    Panicked,
}

/// Changes received but not yet stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsaved {
    /// The changes, as one incremental chunk for [`Automerge::load_incremental`].
    pub chunk: Vec<u8>,
    /// The heads once the chunk is stored.
    pub heads: Vec<ChangeHash>,
}

#[derive(Debug)]
struct PeerSync {
    state: sync::State,
    searching: bool,
    told_unavailable: bool,
}

/// One document and the peers syncing it.
#[derive(Debug)]
pub struct DocumentSync {
    id: DocumentId,
    doc: Automerge,
    saved_heads: Vec<ChangeHash>,
    peers: BTreeMap<String, PeerSync>,
    limits: Limits,
    /// Bytes of messages received since the document last had no change waiting for missing
    /// history (Automerge keeps such changes in memory, outside the document).
    pending_bytes: usize,
}

impl DocumentSync {
    /// Wraps a document as loaded from storage (empty when it was not there), with the default
    /// [`Limits`] on what a peer's message may make Automerge do.
    pub fn new(id: DocumentId, doc: Automerge) -> Self {
        Self::with_limits(id, doc, Limits::default())
    }

    /// Like [`new`](Self::new), with `limits` for every message received.
    pub fn with_limits(id: DocumentId, doc: Automerge, limits: Limits) -> Self {
        let saved_heads = doc.get_heads();
        DocumentSync { id, doc, saved_heads, peers: BTreeMap::new(), limits, pending_bytes: 0 }
    }

    /// The document's id.
    pub fn id(&self) -> DocumentId {
        self.id
    }

    /// The document.
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// The document, for the holder of the document to write into (the server writes campaign
    /// documents this way). Like changes received from a peer, what is written is reported by
    /// [`unsaved`](Self::unsaved) and sent to peers only once [`saved`](Self::saved).
    pub fn doc_mut(&mut self) -> &mut Automerge {
        &mut self.doc
    }

    /// Whether the document holds no change at all.
    pub fn is_empty(&self) -> bool {
        self.doc.get_heads().is_empty()
    }

    /// The peers syncing this document.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    /// Whether `peer` syncs this document.
    pub fn has_peer(&self, peer: &str) -> bool {
        self.peers.contains_key(peer)
    }

    /// Starts syncing with `peer`, from a sync state saved in an earlier session if there is one
    /// (an unreadable one is ignored: the sync merely starts from scratch).
    pub fn add_peer(&mut self, peer: &str, saved_state: Option<&[u8]>) {
        let state = saved_state.and_then(|s| sync::State::decode(s).ok()).unwrap_or_default();
        self.peers.insert(peer.to_owned(), PeerSync { state, searching: false, told_unavailable: false });
    }

    /// Stops syncing with `peer`.
    pub fn remove_peer(&mut self, peer: &str) {
        self.peers.remove(peer);
    }

    /// The sync state to save for `peer`.
    pub fn encoded_state(&self, peer: &str) -> Option<Vec<u8>> {
        self.peers.get(peer).map(|p| p.state.encode())
    }

    /// Applies a `request` or `sync` from `peer` (added first if it was not). Returns whether
    /// the document gained changes.
    ///
    /// The message is checked by [`guard::sync_message`] before Automerge reads it. When it is
    /// refused or does not apply, the document is put back as it was before it (other peers'
    /// unsaved changes stay) and `peer`'s sync state starts afresh; other peers' states are
    /// untouched. Changes that wait for missing history may stay in memory only up to the
    /// inflation limit in bytes of messages; past it they are dropped and the message refused.
    pub fn receive(&mut self, peer: &str, data: &[u8], is_request: bool) -> Result<bool, SyncError> {
        let message = guard::sync_message(data, &self.limits)?;
        if !self.peers.contains_key(peer) {
            self.add_peer(peer, None);
        }
        let before = self.doc.get_heads();
        let Some(p) = self.peers.get_mut(peer) else { return Ok(false) };
        // A `request` from a peer that has nothing is a search for the document; one from a
        // peer that holds changes is an offer of them.
        p.searching = is_request && message.heads.is_empty();
        let doc = &mut self.doc;
        let state = &mut p.state;
        let applied =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.receive_sync_message(state, message)));
        match applied {
            Err(_) => return Err(SyncError::Panicked),
            Ok(Err(e)) => {
                self.revert(peer, &before);
                return Err(SyncError::Apply(e.to_string()));
            }
            Ok(Ok(())) => {}
        }
        if self.doc.get_missing_deps(&[]).is_empty() {
            self.pending_bytes = 0;
        } else {
            self.pending_bytes = self.pending_bytes.saturating_add(data.len());
            if self.pending_bytes > self.limits.max_inflated_bytes {
                let bytes = self.pending_bytes;
                self.revert(peer, &before);
                return Err(SyncError::Pending { bytes });
            }
        }
        Ok(self.doc.get_heads() != before)
    }

    /// Puts the document back to `heads` (which it holds), dropping whatever came after and any
    /// change waiting for missing history, and starts `peer`'s sync afresh. Other peers keep
    /// their sync states: nothing after `heads` was ever sent to them, since replies leave only
    /// once changes are saved, and `heads` holds every saved change.
    pub fn revert(&mut self, peer: &str, heads: &[ChangeHash]) {
        self.rewind(heads);
        self.reset_peer(peer);
    }

    /// Puts the document back to `heads` (which it holds) without touching any sync state; see
    /// [`revert`](Self::revert).
    pub fn rewind(&mut self, heads: &[ChangeHash]) {
        // `heads` were read from this document, so the fork exists; were it not to, the
        // document stays as it is and the caller's checks still refuse the message.
        if let Ok(mut fork) = self.doc.fork_at(heads) {
            fork.set_actor(self.doc.get_actor().clone());
            self.doc = fork;
        }
        self.pending_bytes = 0;
    }

    /// Starts the sync with `peer` afresh, as if it had just joined without a saved state.
    pub fn reset_peer(&mut self, peer: &str) {
        if self.peers.contains_key(peer) {
            self.add_peer(peer, None);
        }
    }

    /// Changes received and not yet stored, if any.
    pub fn unsaved(&self) -> Option<Unsaved> {
        let heads = self.doc.get_heads();
        (heads != self.saved_heads).then(|| Unsaved { chunk: self.doc.save_after(&self.saved_heads), heads })
    }

    /// Records that the document is stored up to `heads`.
    pub fn saved(&mut self, heads: Vec<ChangeHash>) {
        self.saved_heads = heads;
    }

    /// What to send to each peer now. Nothing while changes are unsaved: a reply would tell the
    /// peer that data is safe before it is.
    pub fn outgoing(&mut self) -> Vec<(String, Outgoing)> {
        if self.doc.get_heads() != self.saved_heads {
            return Vec::new();
        }
        let empty = self.is_empty();
        let mut out = Vec::new();
        for (peer, p) in &mut self.peers {
            if empty && p.searching {
                // A peer asked for a document nobody has given us: say so once, and keep it
                // as a peer so it hears of the document if another peer brings it.
                if !p.told_unavailable {
                    p.told_unavailable = true;
                    out.push((peer.clone(), Outgoing::Unavailable));
                }
                continue;
            }
            if let Some(message) = self.doc.generate_sync_message(&mut p.state) {
                out.push((peer.clone(), Outgoing::Sync(message.encode())));
            }
        }
        out
    }
}

/// Heads as stored: the 32-byte hashes one after another.
pub fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

/// Reads heads written by [`encode_heads`]; `None` if the length is not a multiple of 32.
pub fn decode_heads(bytes: &[u8]) -> Option<Vec<ChangeHash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    bytes.chunks_exact(32).map(|c| ChangeHash::try_from(c).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode;

    fn server() -> Connection {
        Connection::new(Identity { peer_id: "server".into(), storage_id: "store-1".into() })
    }

    fn join(peer: &str, versions: Option<Vec<&str>>) -> Vec<u8> {
        encode(&Message::Join {
            sender_id: peer.into(),
            peer_metadata: Some(PeerMetadata { storage_id: Some("phone-store".into()), is_ephemeral: false }),
            supported_protocol_versions: versions.map(|v| v.into_iter().map(String::from).collect()),
        })
    }

    fn sync_from(peer: &str, document: &str) -> Vec<u8> {
        encode(&Message::Sync(DocMessage {
            sender_id: peer.into(),
            target_id: "server".into(),
            document_id: document.into(),
            data: vec![],
        }))
    }

    #[test]
    fn the_handshake_answers_with_the_servers_storage_id() {
        let mut c = server();
        let Ok(Event::Joined { peer, reply }) = c.receive(&join("phone", Some(vec!["1"]))) else {
            panic!("join refused")
        };
        assert_eq!(peer.durable_storage_id(), Some("phone-store"));
        assert_eq!(
            reply,
            Message::Peer {
                sender_id: "server".into(),
                target_id: "phone".into(),
                peer_metadata: PeerMetadata { storage_id: Some("store-1".into()), is_ephemeral: false },
                selected_protocol_version: "1".into(),
            }
        );
    }

    #[test]
    fn protocol_rules() {
        let doc = DocumentId::from_bytes([3; 16]).to_string();
        let mut c = server();
        let err = c.receive(&sync_from("phone", &doc)).expect_err("before join");
        assert_eq!(err, ProtocolError::NotJoined("sync".into()));
        assert!(err.closes());
        let long = encode(&Message::Join {
            sender_id: "p".repeat(4_000),
            peer_metadata: None,
            supported_protocol_versions: None,
        });
        assert_eq!(c.receive(&long).expect_err("long id"), ProtocolError::IdTooLong { field: "senderId", len: 4_000 });
        let err = c.receive(&join("phone", Some(vec!["2"]))).expect_err("version");
        assert_eq!(err, ProtocolError::UnsupportedVersion { offered: vec!["2".into()] });
        c.receive(&join("phone", None)).expect("no versions means version 1");
        let err = c.receive(&sync_from("intruder", &doc)).expect_err("spoofed sender");
        assert_eq!(err, ProtocolError::WrongSender { expected: "phone".into(), got: "intruder".into() });
        let err = c.receive(&sync_from("phone", "not-an-id")).expect_err("bad id");
        assert!(!err.closes(), "a bad document id concerns one document only");
        assert!(matches!(c.receive(&sync_from("phone", &doc)), Ok(Event::Sync { is_request: false, .. })));
        assert_eq!(
            c.receive(&join("other", None)).expect_err("rejoin"),
            ProtocolError::Rejoin { current: "phone".into(), new: "other".into() }
        );
        assert!(matches!(c.error_message(&err), Message::Error { target_id: Some(t), .. } if t == "phone"));
    }

    /// An error sent back and logged never carries a peer's megabytes: a long sender id in a
    /// second join or in a message on a joined connection is cut short in the error.
    #[test]
    fn errors_do_not_echo_long_ids() {
        let doc = DocumentId::from_bytes([3; 16]).to_string();
        let mut c = server();
        c.receive(&join("phone", None)).expect("join");
        let long = "p".repeat(4_000);
        let rejoin =
            encode(&Message::Join { sender_id: long.clone(), peer_metadata: None, supported_protocol_versions: None });
        let err = c.receive(&rejoin).expect_err("long rejoin");
        assert_eq!(err, ProtocolError::IdTooLong { field: "senderId", len: 4_000 });
        let err = c.receive(&sync_from(&long, &doc)).expect_err("long sender");
        assert!(matches!(err, ProtocolError::WrongSender { .. }), "{err:?}");
        assert!(err.to_string().len() < 200, "the error echoes {} bytes", err.to_string().len());
    }

    #[test]
    fn heads_round_trip() {
        let heads = vec![ChangeHash([1; 32]), ChangeHash([2; 32])];
        assert_eq!(decode_heads(&encode_heads(&heads)), Some(heads));
        assert_eq!(decode_heads(&[0; 31]), None);
    }
}
