//! The sync session seen from a client (a phone, or anything that syncs *to* a server), sans I/O.
//!
//! [`ClientSession`] is the counterpart of [`crate::session`]: it sends `join`, reads the
//! server's `peer`, chooses between `request` (a document we do not hold yet) and `sync` (one we
//! hold), applies the server's replies, and says when each document is done and what the server
//! has *acknowledged*. The server replies only after it has committed what it received, so the
//! heads it announces in a reply are heads it holds durably: every change they cover is safe at
//! the server.
//!
//! The session owns no document: the caller keeps them (a phone keeps recording while a sync
//! runs) and lends them through [`Documents`]. It returns [`Effect`]s — frames to send, and what
//! to persist (the sync state, the acknowledged heads, whether the document gained changes) —
//! which the caller must carry out in order: persist before sending what follows.
//!
//! # Example
//!
//! A phone syncs a new document with a server; both ends run in memory.
//!
//! ```
//! use std::collections::BTreeMap;
//! use hamlet_sync_core::automerge::{transaction::Transactable, Automerge, AutomergeError, ROOT};
//! use hamlet_sync_core::client::{ClientSession, Effect};
//! use hamlet_sync_core::session::{Connection, DocumentSync, Event, Identity, Outgoing};
//! use hamlet_sync_core::wire::{self, DocMessage, Message};
//! use hamlet_sync_core::DocumentId;
//!
//! let id = DocumentId::from_bytes([7; 16]);
//! let mut phone_doc = Automerge::new();
//! phone_doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "hamlet", "Thôn Đông")).map_err(|f| f.error)?;
//! let mut docs = BTreeMap::from([(id, phone_doc)]);
//!
//! let mut server = Connection::new(Identity { peer_id: "server".into(), storage_id: "s".into() });
//! let mut server_doc = DocumentSync::new(id, Automerge::new());
//! let mut phone = ClientSession::new("phone", "phone-storage");
//!
//! let mut to_server = vec![phone.join()];
//! while !phone.is_complete() {
//!     let mut to_phone = Vec::new();
//!     for frame in to_server.drain(..) {
//!         match server.receive(&frame)? {
//!             Event::Joined { reply, .. } => to_phone.push(wire::encode(&reply)),
//!             Event::Sync { data, is_request, .. } => {
//!                 server_doc.receive("phone", &data, is_request)?;
//!                 if let Some(unsaved) = server_doc.unsaved() { server_doc.saved(unsaved.heads); }
//!                 for (_, out) in server_doc.outgoing() {
//!                     if let Outgoing::Sync(data) = out {
//!                         let m = DocMessage { sender_id: "server".into(), target_id: "phone".into(),
//!                                              document_id: id.to_string(), data };
//!                         to_phone.push(wire::encode(&Message::Sync(m)));
//!                     }
//!                 }
//!             }
//!             _ => {}
//!         }
//!     }
//!     for frame in to_phone {
//!         for effect in phone.receive(&frame, &mut docs)? {
//!             match effect {
//!                 Effect::Joined(_) => to_server.extend(phone.open_document(id, None, &docs)?),
//!                 Effect::Send(frame) => to_server.push(frame),
//!                 Effect::Persist(_) => {} // a real client stores the state and acknowledgement here
//!             }
//!         }
//!     }
//! }
//! assert_eq!(server_doc.doc().get_heads(), docs[&id].get_heads());
//! assert!(phone.document(&id).is_some_and(|d| d.acknowledged == docs[&id].get_heads()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};

use crate::docid::DocumentId;
use crate::wire::{self, DocMessage, Message, PROTOCOL_VERSION, PeerMetadata, WireError};

/// Where the client's documents live: the session borrows them for each step.
pub trait Documents {
    /// The document, if the caller holds it.
    fn document(&self, id: &DocumentId) -> Option<&Automerge>;
    /// The document, to apply changes to.
    fn document_mut(&mut self, id: &DocumentId) -> Option<&mut Automerge>;
}

impl Documents for BTreeMap<DocumentId, Automerge> {
    fn document(&self, id: &DocumentId) -> Option<&Automerge> {
        self.get(id)
    }
    fn document_mut(&mut self, id: &DocumentId) -> Option<&mut Automerge> {
        self.get_mut(id)
    }
}

/// The server, as it introduced itself in `peer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPeer {
    /// Its peer id, the target of every message.
    pub peer_id: String,
    /// Its storage id: the key under which sync states and acknowledgements are kept, since
    /// they are only true of that storage.
    pub storage_id: Option<String>,
}

/// Where one document's sync stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Messages are in flight.
    Syncing,
    /// The server holds exactly what we hold.
    Done,
    /// The server does not have the document, or does not share it with us.
    Unavailable,
}

/// One document's progress in this session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentProgress {
    /// Where it stands.
    pub phase: Phase,
    /// The heads the server last said it holds (durably). Empty until it has said so.
    pub acknowledged: Vec<ChangeHash>,
    /// Sync messages sent.
    pub messages_sent: u64,
    /// Sync messages received: each answers one of ours, so this counts round trips.
    pub messages_received: u64,
    /// Changes sent.
    pub changes_sent: u64,
    /// Changes the document gained from the server.
    pub changes_received: u64,
    /// Bytes of frames sent about this document.
    pub bytes_sent: u64,
    /// Bytes of frames received about this document.
    pub bytes_received: u64,
}

/// What the caller must persist for a document, before it sends anything that follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persist {
    /// The document.
    pub document: DocumentId,
    /// Whether it gained changes from the server (store them first).
    pub changed: bool,
    /// The sync state to keep for the next session with this server's storage.
    pub sync_state: Vec<u8>,
    /// The heads the server holds durably.
    pub acknowledged: Vec<ChangeHash>,
}

/// What the caller must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The handshake is done: open the documents to sync with [`ClientSession::open_document`].
    Joined(ServerPeer),
    /// Send this frame.
    Send(Vec<u8>),
    /// Persist this before sending anything after it.
    Persist(Persist),
}

/// What the server sent that ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The bytes are not a protocol message.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The server reported an error (it may close the connection after it).
    #[error("the server reported: {0}")]
    Server(String),
    /// The server chose a protocol version we do not speak.
    #[error("the server selected protocol version {0:?}")]
    Version(String),
    /// A message that makes no sense here (a document message before `peer`, a `join`...).
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
    /// A message for another peer, or from someone other than the server.
    #[error("message from {from:?} to {to:?} on our connection")]
    Misaddressed {
        /// Who sent it.
        from: String,
        /// Who it was for.
        to: String,
    },
    /// A sync message we cannot apply.
    #[error("document {document}: {reason}")]
    Sync {
        /// The document.
        document: DocumentId,
        /// What went wrong.
        reason: String,
    },
}

#[derive(Debug)]
struct Tracked {
    state: sync::State,
    progress: DocumentProgress,
}

/// A client's sync session with one server over one connection.
#[derive(Debug)]
pub struct ClientSession {
    peer_id: String,
    storage_id: String,
    server: Option<ServerPeer>,
    docs: BTreeMap<DocumentId, Tracked>,
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

impl ClientSession {
    /// A session for the client `peer_id` whose storage (kept between sessions) is `storage_id`.
    pub fn new(peer_id: impl Into<String>, storage_id: impl Into<String>) -> Self {
        ClientSession { peer_id: peer_id.into(), storage_id: storage_id.into(), server: None, docs: BTreeMap::new() }
    }

    /// The `join` frame that opens the session.
    pub fn join(&self) -> Vec<u8> {
        wire::encode(&Message::Join {
            sender_id: self.peer_id.clone(),
            peer_metadata: Some(PeerMetadata { storage_id: Some(self.storage_id.clone()), is_ephemeral: false }),
            supported_protocol_versions: Some(vec![PROTOCOL_VERSION.into()]),
        })
    }

    /// The `leave` frame that closes it politely.
    pub fn leave(&self) -> Vec<u8> {
        wire::encode(&Message::Leave { sender_id: self.peer_id.clone() })
    }

    /// The server, once it has answered `join`.
    pub fn server(&self) -> Option<&ServerPeer> {
        self.server.as_ref()
    }

    /// Starts syncing document `id`, from `saved_state` (kept from an earlier session with the
    /// same server storage) if there is one. A document we hold nothing of is asked for with
    /// `request`; one we hold is offered with `sync`. Returns the frames to send.
    pub fn open_document(
        &mut self,
        id: DocumentId,
        saved_state: Option<&[u8]>,
        docs: &impl Documents,
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        if self.server.is_none() {
            return Err(ClientError::Unexpected("document opened before peer"));
        }
        // An unreadable saved state only costs a fuller first exchange.
        let state = saved_state.and_then(|s| sync::State::decode(s).ok()).unwrap_or_default();
        let progress = DocumentProgress {
            phase: Phase::Syncing,
            acknowledged: Vec::new(),
            messages_sent: 0,
            messages_received: 0,
            changes_sent: 0,
            changes_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
        };
        self.docs.insert(id, Tracked { state, progress });
        let Some(doc) = docs.document(&id) else { return Ok(Vec::new()) };
        let request = doc.get_heads().is_empty();
        Ok(self.generate(id, doc, request).into_iter().collect())
    }

    /// One document's progress, if it was opened.
    pub fn document(&self, id: &DocumentId) -> Option<&DocumentProgress> {
        self.docs.get(id).map(|t| &t.progress)
    }

    /// Every opened document's progress.
    pub fn documents(&self) -> impl Iterator<Item = (&DocumentId, &DocumentProgress)> {
        self.docs.iter().map(|(id, t)| (id, &t.progress))
    }

    /// Whether every opened document is done or unavailable (and the handshake happened).
    pub fn is_complete(&self) -> bool {
        self.server.is_some() && self.docs.values().all(|t| t.progress.phase != Phase::Syncing)
    }

    /// Messages to send after local changes made while the session runs (a document that was
    /// done starts again).
    pub fn poll(&mut self, docs: &impl Documents) -> Vec<Effect> {
        let ids: Vec<DocumentId> =
            self.docs.iter().filter(|(_, t)| t.progress.phase != Phase::Unavailable).map(|(id, _)| *id).collect();
        let mut out = Vec::new();
        for id in ids {
            let Some(doc) = docs.document(&id) else { continue };
            if let Some(frame) = self.generate(id, doc, false) {
                out.push(Effect::Send(frame));
            }
            self.update_phase(id, doc);
        }
        out
    }

    /// Reads one frame from the server.
    pub fn receive(&mut self, bytes: &[u8], docs: &mut impl Documents) -> Result<Vec<Effect>, ClientError> {
        let message = wire::decode(bytes)?;
        if let Some(target) = target_of(&message)
            && target != self.peer_id
        {
            let from = message.sender_id().unwrap_or_default().to_owned();
            return Err(ClientError::Misaddressed { from, to: target.to_owned() });
        }
        if let (Some(server), Some(sender)) = (&self.server, message.sender_id())
            && sender != server.peer_id
        {
            return Err(ClientError::Misaddressed { from: sender.to_owned(), to: self.peer_id.clone() });
        }
        match message {
            Message::Peer { sender_id, peer_metadata, selected_protocol_version, .. } => {
                if selected_protocol_version != PROTOCOL_VERSION {
                    return Err(ClientError::Version(selected_protocol_version));
                }
                let server = ServerPeer { peer_id: sender_id, storage_id: peer_metadata.storage_id };
                self.server = Some(server.clone());
                Ok(vec![Effect::Joined(server)])
            }
            Message::Error { message, .. } => Err(ClientError::Server(message)),
            Message::Sync(m) | Message::Request(m) => {
                if self.server.is_none() {
                    return Err(ClientError::Unexpected("sync before peer"));
                }
                self.receive_sync(m, bytes.len(), docs)
            }
            Message::DocUnavailable { document_id, .. } => {
                let id = parse_id(&document_id)?;
                if let Some(t) = self.docs.get_mut(&id) {
                    t.progress.messages_received += 1;
                    t.progress.bytes_received += bytes.len() as u64;
                    // Either the server does not have a document we asked for, or it will not
                    // share one with us (not assigned): either way this session is done with it.
                    t.progress.phase = Phase::Unavailable;
                }
                Ok(Vec::new())
            }
            Message::Join { .. } => Err(ClientError::Unexpected("join")),
            // Relayed presence, heads of other storages, a leave: nothing to do for a client
            // that syncs and goes.
            Message::Ephemeral { .. }
            | Message::RemoteHeadsChanged { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::Leave { .. } => Ok(Vec::new()),
        }
    }

    fn receive_sync(
        &mut self,
        m: DocMessage,
        frame_len: usize,
        docs: &mut impl Documents,
    ) -> Result<Vec<Effect>, ClientError> {
        let id = parse_id(&m.document_id)?;
        let sync_error = |reason: String| ClientError::Sync { document: id, reason };
        let message = sync::Message::decode(&m.data).map_err(|e| sync_error(e.to_string()))?;
        // A document we never opened (the server pushes only what we asked for, but be lenient):
        // ignore it rather than fail the whole session.
        let (Some(t), Some(doc)) = (self.docs.get_mut(&id), docs.document_mut(&id)) else { return Ok(Vec::new()) };
        t.progress.messages_received += 1;
        t.progress.bytes_received += frame_len as u64;
        let before = doc.get_heads();
        doc.receive_sync_message(&mut t.state, message).map_err(|e| sync_error(e.to_string()))?;
        let changed = doc.get_heads() != before;
        if changed {
            t.progress.changes_received += doc.get_changes(&before).len() as u64;
        }
        if let Some(theirs) = &t.state.their_heads {
            t.progress.acknowledged = sorted(theirs.clone());
        }
        let persist = Persist {
            document: id,
            changed,
            sync_state: t.state.encode(),
            acknowledged: t.progress.acknowledged.clone(),
        };
        let mut effects = vec![Effect::Persist(persist)];
        let doc = docs.document(&id).ok_or_else(|| sync_error("document went away".into()))?;
        if let Some(frame) = self.generate(id, doc, false) {
            effects.push(Effect::Send(frame));
        }
        self.update_phase(id, doc);
        Ok(effects)
    }

    fn update_phase(&mut self, id: DocumentId, doc: &Automerge) {
        if let Some(t) = self.docs.get_mut(&id)
            && t.progress.phase != Phase::Unavailable
        {
            // The server holds exactly our heads: it has all we have, we have all it has. A
            // message we just sent (our acknowledgement of its changes) needs no answer.
            let in_sync = t.state.their_heads.as_ref().is_some_and(|h| sorted(h.clone()) == sorted(doc.get_heads()));
            t.progress.phase = if in_sync { Phase::Done } else { Phase::Syncing };
        }
    }

    fn generate(&mut self, id: DocumentId, doc: &Automerge, request: bool) -> Option<Vec<u8>> {
        let server = self.server.as_ref()?;
        let t = self.docs.get_mut(&id)?;
        let sent_before = t.state.sent_hashes.len();
        let message = doc.generate_sync_message(&mut t.state)?;
        let changes = t.state.sent_hashes.len().saturating_sub(sent_before);
        let m = DocMessage {
            sender_id: self.peer_id.clone(),
            target_id: server.peer_id.clone(),
            document_id: id.to_string(),
            data: message.encode(),
        };
        let frame = wire::encode(&if request { Message::Request(m) } else { Message::Sync(m) });
        t.progress.messages_sent += 1;
        t.progress.changes_sent += changes as u64;
        t.progress.bytes_sent += frame.len() as u64;
        t.progress.phase = Phase::Syncing;
        Some(frame)
    }
}

fn parse_id(text: &str) -> Result<DocumentId, ClientError> {
    text.parse().map_err(|_| ClientError::Wire(WireError::Missing { message_type: "sync".into(), field: "documentId" }))
}

fn target_of(message: &Message) -> Option<&str> {
    match message {
        Message::Peer { target_id, .. }
        | Message::DocUnavailable { target_id, .. }
        | Message::Ephemeral { target_id, .. }
        | Message::RemoteSubscriptionChange { target_id, .. }
        | Message::RemoteHeadsChanged { target_id, .. } => Some(target_id),
        Message::Request(m) | Message::Sync(m) => Some(&m.target_id),
        Message::Error { target_id, .. } => target_id.as_deref(),
        Message::Join { .. } | Message::Leave { .. } => None,
    }
}

/// The changes of `doc` that `acknowledged` heads do not cover: neither one of them nor an
/// ancestor of one. Heads the document does not hold are ignored, which can only make the answer
/// more cautious (a change is reported unacknowledged until the heads that cover it arrive).
pub fn unacknowledged(doc: &Automerge, acknowledged: &[ChangeHash]) -> BTreeSet<ChangeHash> {
    let known: Vec<ChangeHash> =
        acknowledged.iter().filter(|h| doc.get_change_meta_by_hash(h).is_some()).copied().collect();
    doc.get_changes_meta(&known).into_iter().map(|c| c.hash).collect()
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{AutomergeError, ROOT, ReadDoc};

    use super::*;
    use crate::session::{Connection, DocumentSync, Event, Identity, Outgoing};

    /// A server in memory: the real server-side state machines, storing instantly.
    struct Server {
        conn: Connection,
        docs: BTreeMap<DocumentId, DocumentSync>,
        saved_states: BTreeMap<(DocumentId, String), Vec<u8>>,
        peer: Option<String>,
    }

    impl Server {
        fn new() -> Self {
            Server {
                conn: Connection::new(Identity { peer_id: "server".into(), storage_id: "server-store".into() }),
                docs: BTreeMap::new(),
                saved_states: BTreeMap::new(),
                peer: None,
            }
        }

        /// A new connection to the same storage (the server forgets in-memory peers).
        fn reconnect(&mut self) {
            for (id, doc) in &mut self.docs {
                if let Some(peer) = &self.peer {
                    if let Some(state) = doc.encoded_state(peer) {
                        self.saved_states.insert((*id, "phone-store".into()), state);
                    }
                    doc.remove_peer(peer);
                }
            }
            self.conn = Connection::new(Identity { peer_id: "server".into(), storage_id: "server-store".into() });
            self.peer = None;
        }

        fn receive(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            match self.conn.receive(frame).expect("valid frame") {
                Event::Joined { peer, reply } => {
                    self.peer = Some(peer.peer_id);
                    out.push(wire::encode(&reply));
                }
                Event::Sync { document, data, is_request } => {
                    let peer = self.peer.clone().expect("joined");
                    let saved = self.saved_states.get(&(document, "phone-store".into())).cloned();
                    let doc =
                        self.docs.entry(document).or_insert_with(|| DocumentSync::new(document, Automerge::new()));
                    if !doc.has_peer(&peer) {
                        doc.add_peer(&peer, saved.as_deref());
                    }
                    doc.receive(&peer, &data, is_request).expect("applies");
                    if let Some(u) = doc.unsaved() {
                        doc.saved(u.heads);
                    }
                    for (target, o) in doc.outgoing() {
                        let m = match o {
                            Outgoing::Sync(data) => Message::Sync(DocMessage {
                                sender_id: "server".into(),
                                target_id: target,
                                document_id: document.to_string(),
                                data,
                            }),
                            Outgoing::Unavailable => Message::DocUnavailable {
                                sender_id: "server".into(),
                                target_id: target,
                                document_id: document.to_string(),
                            },
                        };
                        out.push(wire::encode(&m));
                    }
                }
                _ => {}
            }
            out
        }

        fn heads(&self, id: &DocumentId) -> Vec<ChangeHash> {
            self.docs.get(id).map(|d| d.doc().get_heads()).unwrap_or_default()
        }
    }

    /// A phone: its documents and what it persisted.
    #[derive(Default)]
    struct Phone {
        docs: BTreeMap<DocumentId, Automerge>,
        states: BTreeMap<DocumentId, Vec<u8>>,
        acked: BTreeMap<DocumentId, Vec<ChangeHash>>,
    }

    /// Runs a session to completion or until `cut_after` frames have crossed (either way).
    /// Returns the session and whether it completed.
    fn run(phone: &mut Phone, server: &mut Server, cut_after: Option<usize>) -> (ClientSession, bool) {
        server.reconnect();
        let mut session = ClientSession::new("phone", "phone-store");
        let mut to_server = vec![session.join()];
        let mut crossed = 0;
        let ids: Vec<DocumentId> = phone.docs.keys().copied().collect();
        for _ in 0..100 {
            if session.is_complete() {
                return (session, true);
            }
            let mut to_phone = Vec::new();
            for frame in to_server.drain(..) {
                crossed += 1;
                if cut_after.is_some_and(|c| crossed > c) {
                    return (session, false);
                }
                to_phone.extend(server.receive(&frame));
            }
            for frame in to_phone {
                crossed += 1;
                if cut_after.is_some_and(|c| crossed > c) {
                    return (session, false);
                }
                for effect in session.receive(&frame, &mut phone.docs).expect("valid reply") {
                    match effect {
                        Effect::Joined(_) => {
                            for id in &ids {
                                let saved = phone.states.get(id).cloned();
                                to_server
                                    .extend(session.open_document(*id, saved.as_deref(), &phone.docs).expect("open"));
                            }
                        }
                        Effect::Send(f) => to_server.push(f),
                        Effect::Persist(p) => {
                            phone.states.insert(p.document, p.sync_state);
                            phone.acked.insert(p.document, p.acknowledged);
                        }
                    }
                }
            }
            if to_server.is_empty() && !session.is_complete() {
                panic!("stalled: {:?}", session.documents().collect::<Vec<_>>());
            }
        }
        panic!("no convergence in 100 rounds");
    }

    fn write(doc: &mut Automerge, key: &str, value: &str) {
        doc.transact::<_, _, AutomergeError>(|tx| {
            tx.put(ROOT, key, value)?;
            Ok(())
        })
        .map_err(|f| f.error)
        .expect("write");
    }

    fn id(n: u8) -> DocumentId {
        DocumentId::from_bytes([n; 16])
    }

    #[test]
    fn a_new_document_reaches_the_server_and_is_acknowledged() {
        let mut phone = Phone::default();
        let mut doc = Automerge::new();
        write(&mut doc, "a", "1");
        phone.docs.insert(id(1), doc);
        let mut server = Server::new();
        let (session, done) = run(&mut phone, &mut server, None);
        assert!(done);
        let heads = phone.docs[&id(1)].get_heads();
        assert_eq!(server.heads(&id(1)), heads);
        assert_eq!(phone.acked[&id(1)], heads);
        let progress = session.document(&id(1)).expect("opened");
        assert_eq!(progress.phase, Phase::Done);
        assert_eq!(progress.changes_sent, 1);
        assert!(unacknowledged(&phone.docs[&id(1)], &phone.acked[&id(1)]).is_empty());
        assert_eq!(unacknowledged(&phone.docs[&id(1)], &[]).len(), 1);
    }

    #[test]
    fn with_a_kept_sync_state_new_changes_take_two_round_trips_and_old_ones_are_not_resent() {
        let mut phone = Phone::default();
        let mut doc = Automerge::new();
        for i in 0..50 {
            write(&mut doc, &format!("k{i}"), "old");
        }
        phone.docs.insert(id(1), doc);
        let mut server = Server::new();
        assert!(run(&mut phone, &mut server, None).1);
        let doc = phone.docs.get_mut(&id(1)).expect("doc");
        for i in 0..10 {
            write(doc, &format!("new{i}"), "new");
        }
        let (session, done) = run(&mut phone, &mut server, None);
        assert!(done);
        let p = session.document(&id(1)).expect("opened");
        assert_eq!(p.changes_sent, 10, "only the new changes travel");
        assert_eq!(p.messages_received, 2, "two round trips");
        assert_eq!(server.heads(&id(1)), phone.docs[&id(1)].get_heads());
    }

    #[test]
    fn nothing_new_is_one_round_trip_and_sends_no_change() {
        let mut phone = Phone::default();
        let mut doc = Automerge::new();
        write(&mut doc, "a", "1");
        phone.docs.insert(id(1), doc);
        let mut server = Server::new();
        assert!(run(&mut phone, &mut server, None).1);
        let (session, done) = run(&mut phone, &mut server, None);
        assert!(done);
        let p = session.document(&id(1)).expect("opened");
        assert_eq!((p.changes_sent, p.messages_received), (0, 1));
    }

    #[test]
    fn a_document_held_only_by_the_server_is_requested_and_downloaded() {
        let mut server = Server::new();
        // Another phone brings the document to the server.
        let mut other = Phone::default();
        let mut doc = Automerge::new();
        write(&mut doc, "campaign", "tin-nhiem-2025");
        other.docs.insert(id(2), doc);
        assert!(run(&mut other, &mut server, None).1);

        let mut phone = Phone::default();
        phone.docs.insert(id(2), Automerge::new());
        phone.docs.insert(id(3), Automerge::new());
        let (session, done) = run(&mut phone, &mut server, None);
        assert!(done);
        assert_eq!(phone.docs[&id(2)].get_heads(), other.docs[&id(2)].get_heads());
        assert_eq!(session.document(&id(2)).map(|p| p.phase), Some(Phase::Done));
        assert_eq!(session.document(&id(3)).map(|p| p.phase), Some(Phase::Unavailable));
    }

    #[test]
    fn a_sync_cut_anywhere_loses_nothing_and_the_next_one_finishes() {
        for cut in 0..12 {
            let mut server = Server::new();
            let mut other = Phone::default();
            let mut theirs = Automerge::new();
            write(&mut theirs, "from-other", "x");
            other.docs.insert(id(1), theirs);
            assert!(run(&mut other, &mut server, None).1);

            let mut phone = Phone::default();
            let mut doc = Automerge::new();
            for i in 0..5 {
                write(&mut doc, &format!("mine{i}"), "y");
            }
            phone.docs.insert(id(1), doc);
            let (_, done) = run(&mut phone, &mut server, Some(cut));
            let (session, finished) = run(&mut phone, &mut server, None);
            assert!(finished, "cut after {cut} frames");
            let heads = phone.docs[&id(1)].get_heads();
            assert_eq!(server.heads(&id(1)), heads, "cut after {cut}");
            assert_eq!(phone.acked[&id(1)], sorted(heads.clone()));
            let keys: Vec<String> = phone.docs[&id(1)].keys(ROOT).collect();
            assert_eq!(keys.len(), 6, "cut after {cut}: {keys:?}");
            if done {
                assert_eq!(session.document(&id(1)).map(|p| p.changes_sent), Some(0));
            }
        }
    }

    #[test]
    fn local_changes_during_a_sync_are_sent_by_poll() {
        let mut phone = Phone::default();
        let mut doc = Automerge::new();
        write(&mut doc, "a", "1");
        phone.docs.insert(id(1), doc);
        let mut server = Server::new();
        let (mut session, done) = run(&mut phone, &mut server, None);
        assert!(done);
        write(phone.docs.get_mut(&id(1)).expect("doc"), "b", "2");
        let effects = session.poll(&phone.docs);
        assert!(!session.is_complete());
        let mut frames: Vec<Vec<u8>> = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 1);
        for _ in 0..10 {
            let mut next = Vec::new();
            for f in frames.drain(..) {
                for reply in server.receive(&f) {
                    for e in session.receive(&reply, &mut phone.docs).expect("valid") {
                        if let Effect::Send(f) = e {
                            next.push(f);
                        }
                    }
                }
            }
            frames = next;
        }
        assert!(session.is_complete());
        assert_eq!(server.heads(&id(1)), phone.docs[&id(1)].get_heads());
    }

    #[test]
    fn a_document_the_server_will_not_share_ends_as_unavailable_and_does_not_block_the_session() {
        let mut doc = Automerge::new();
        write(&mut doc, "a", "1");
        let mut docs = BTreeMap::from([(id(1), doc), (id(2), Automerge::new())]);
        let mut session = ClientSession::new("phone", "store");
        let peer = wire::encode(&Message::Peer {
            sender_id: "server".into(),
            target_id: "phone".into(),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: "1".into(),
        });
        session.receive(&peer, &mut docs).expect("joined");
        assert_eq!(session.open_document(id(1), None, &docs).expect("opened").len(), 1);
        assert!(!session.is_complete());
        let denied = wire::encode(&Message::DocUnavailable {
            sender_id: "server".into(),
            target_id: "phone".into(),
            document_id: id(1).to_string(),
        });
        session.receive(&denied, &mut docs).expect("read");
        assert!(session.is_complete());
        assert_eq!(session.document(&id(1)).map(|p| p.phase), Some(Phase::Unavailable));
    }

    #[test]
    fn misbehaving_servers_are_refused() {
        let mut docs = BTreeMap::<DocumentId, Automerge>::new();
        let mut session = ClientSession::new("phone", "store");
        let sync = |from: &str, to: &str| {
            wire::encode(&Message::Sync(DocMessage {
                sender_id: from.into(),
                target_id: to.into(),
                document_id: id(1).to_string(),
                data: vec![],
            }))
        };
        assert_eq!(
            session.receive(&sync("server", "phone"), &mut docs),
            Err(ClientError::Unexpected("sync before peer"))
        );
        assert!(matches!(
            session.receive(&sync("server", "someone"), &mut docs),
            Err(ClientError::Misaddressed { .. })
        ));
        let peer = |version: &str| {
            wire::encode(&Message::Peer {
                sender_id: "server".into(),
                target_id: "phone".into(),
                peer_metadata: PeerMetadata::default(),
                selected_protocol_version: version.into(),
            })
        };
        assert_eq!(session.receive(&peer("2"), &mut docs), Err(ClientError::Version("2".into())));
        assert!(matches!(session.receive(&peer("1"), &mut docs).as_deref(), Ok([Effect::Joined(_)])));
        assert!(matches!(
            session.receive(&sync("intruder", "phone"), &mut docs),
            Err(ClientError::Misaddressed { .. })
        ));
        let error = wire::encode(&Message::Error { sender_id: None, target_id: None, message: "full".into() });
        assert_eq!(session.receive(&error, &mut docs), Err(ClientError::Server("full".into())));
        assert!(matches!(session.receive(&[0xff], &mut docs), Err(ClientError::Wire(_))));
    }
}
