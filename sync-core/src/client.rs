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
    /// The server refused our changes to it (the reason is in [`DocumentProgress::refusal`]):
    /// this session is done with it, and the other documents go on.
    Refused,
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
    /// What the server said when it refused our changes.
    pub refusal: Option<String>,
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
    /// The server kept a document syncing beyond the bound on rounds (announcing heads it
    /// never sends, or never acknowledging what we sent).
    #[error("document {document}: no end after {rounds} messages")]
    TooManyRounds {
        /// The document.
        document: DocumentId,
        /// Messages received about it.
        rounds: u64,
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
    /// Messages in a row that brought no change while the server announced heads we lack.
    idle: u32,
}

/// Messages received about one document, in one session, before the server is taken to be
/// stuck or hostile: an honest exchange needs a handful.
pub const DEFAULT_ROUND_LIMIT: u64 = 64;

/// Messages in a row without a change, while the server announces heads it does not send,
/// after which a document whose changes are all acknowledged is done.
const IDLE_LIMIT: u32 = 2;

/// A client's sync session with one server over one connection.
#[derive(Debug)]
pub struct ClientSession {
    peer_id: String,
    storage_id: String,
    server: Option<ServerPeer>,
    docs: BTreeMap<DocumentId, Tracked>,
    round_limit: u64,
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

impl ClientSession {
    /// A session for the client `peer_id` whose storage (kept between sessions) is `storage_id`.
    pub fn new(peer_id: impl Into<String>, storage_id: impl Into<String>) -> Self {
        ClientSession {
            peer_id: peer_id.into(),
            storage_id: storage_id.into(),
            server: None,
            docs: BTreeMap::new(),
            round_limit: DEFAULT_ROUND_LIMIT,
        }
    }

    /// The same session with another bound on the messages one document may take
    /// ([`DEFAULT_ROUND_LIMIT`] by default): beyond it, [`ClientError::TooManyRounds`].
    pub fn with_round_limit(mut self, messages: u64) -> Self {
        self.round_limit = messages.max(1);
        self
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
            refusal: None,
        };
        self.docs.insert(id, Tracked { state, progress, idle: 0 });
        let Some(doc) = docs.document(&id) else { return Ok(Vec::new()) };
        let request = doc.get_heads().is_empty();
        Ok(self.generate(id, doc, request).into_iter().collect())
    }

    /// Ends this session's sync of `id` from the client's side (the server sent more than the
    /// client keeps): the document counts as refused, with `reason`, and the others go on.
    pub fn refuse(&mut self, id: &DocumentId, reason: impl Into<String>) {
        if let Some(t) = self.docs.get_mut(id) {
            t.progress.phase = Phase::Refused;
            t.progress.refusal = Some(reason.into());
        }
    }

    /// One document's progress, if it was opened.
    pub fn document(&self, id: &DocumentId) -> Option<&DocumentProgress> {
        self.docs.get(id).map(|t| &t.progress)
    }

    /// Every opened document's progress.
    pub fn documents(&self) -> impl Iterator<Item = (&DocumentId, &DocumentProgress)> {
        self.docs.iter().map(|(id, t)| (id, &t.progress))
    }

    /// Whether every opened document is done, unavailable or refused (and the handshake happened).
    pub fn is_complete(&self) -> bool {
        self.server.is_some() && self.docs.values().all(|t| t.progress.phase != Phase::Syncing)
    }

    /// Messages to send after local changes made while the session runs (a document that was
    /// done starts again).
    pub fn poll(&mut self, docs: &impl Documents) -> Vec<Effect> {
        let ids: Vec<DocumentId> = self
            .docs
            .iter()
            .filter(|(_, t)| !matches!(t.progress.phase, Phase::Unavailable | Phase::Refused))
            .map(|(id, _)| *id)
            .collect();
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
                // A second `peer` (a server repeating itself) changes nothing: the documents are
                // open already, and reopening them all would start every sync again.
                if self.server.is_some() {
                    return Ok(Vec::new());
                }
                if selected_protocol_version != PROTOCOL_VERSION {
                    return Err(ClientError::Version(selected_protocol_version));
                }
                let server = ServerPeer { peer_id: sender_id, storage_id: peer_metadata.storage_id };
                self.server = Some(server.clone());
                Ok(vec![Effect::Joined(server)])
            }
            Message::Error { message, .. } => {
                // automerge-repo's `error` names no document. With one document in flight it
                // can only be about that one (a refusal of its changes): that document is done,
                // the others go on. Otherwise the session ends.
                let mut in_flight = self.docs.values_mut().filter(|t| t.progress.phase == Phase::Syncing);
                match (in_flight.next(), in_flight.next()) {
                    (Some(t), None) => {
                        t.progress.phase = Phase::Refused;
                        t.progress.refusal = Some(message);
                        t.progress.messages_received += 1;
                        t.progress.bytes_received += bytes.len() as u64;
                        Ok(Vec::new())
                    }
                    _ => Err(ClientError::Server(message)),
                }
            }
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
        // A server is a peer like any other: its Bloom filters and compressed chunks are checked
        // before Automerge reads them.
        let message = crate::guard::sync_message(&m.data, &crate::guard::Limits::default())
            .map_err(|e| sync_error(e.to_string()))?;
        // A document we never opened (the server pushes only what we asked for, but be lenient):
        // ignore it rather than fail the whole session.
        let (Some(t), Some(doc)) = (self.docs.get_mut(&id), docs.document_mut(&id)) else { return Ok(Vec::new()) };
        // A refused document is done for this session: answering would send the refused
        // changes again.
        if t.progress.phase == Phase::Refused {
            return Ok(Vec::new());
        }
        t.progress.messages_received += 1;
        t.progress.bytes_received += frame_len as u64;
        if t.progress.messages_received > self.round_limit {
            return Err(ClientError::TooManyRounds { document: id, rounds: t.progress.messages_received });
        }
        let before = doc.get_heads();
        let state = &mut t.state;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.receive_sync_message(state, message)))
            .map_err(|_| sync_error("the server's message could not be applied".into()))?
            .map_err(|e| sync_error(e.to_string()))?;
        let changed = doc.get_heads() != before;
        if changed {
            t.progress.changes_received += doc.get_changes(&before).len() as u64;
            t.idle = 0;
        } else {
            t.idle = t.idle.saturating_add(1);
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
            && !matches!(t.progress.phase, Phase::Unavailable | Phase::Refused)
        {
            // Done when the server has acknowledged every change we hold, and we hold every
            // head it announced — or it announced heads it does not send (two messages in a row
            // brought nothing): what we sent is safe, and a server cannot keep us syncing by
            // claiming changes it never gives. A message we just sent (our acknowledgement of
            // its changes) needs no answer.
            let done = t.state.their_heads.as_ref().is_some_and(|theirs| {
                let acknowledged = unacknowledged(doc, theirs).is_empty();
                let hold_theirs = theirs.iter().all(|h| doc.get_change_meta_by_hash(h).is_some());
                acknowledged && (hold_theirs || t.idle >= IDLE_LIMIT)
            });
            t.progress.phase = if done { Phase::Done } else { Phase::Syncing };
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

    /// A session joined with a server peer "server", with documents opened.
    fn joined(docs: &BTreeMap<DocumentId, Automerge>) -> (ClientSession, Vec<Vec<u8>>) {
        let mut session = ClientSession::new("phone", "store");
        let peer = wire::encode(&Message::Peer {
            sender_id: "server".into(),
            target_id: "phone".into(),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: "1".into(),
        });
        let mut docs_mut = docs.clone();
        session.receive(&peer, &mut docs_mut).expect("joined");
        let mut frames = Vec::new();
        for id in docs.keys() {
            frames.extend(session.open_document(*id, None, docs).expect("opened"));
        }
        (session, frames)
    }

    fn sync_frame(document: DocumentId, message: sync::Message) -> Vec<u8> {
        wire::encode(&Message::Sync(DocMessage {
            sender_id: "server".into(),
            target_id: "phone".into(),
            document_id: document.to_string(),
            data: message.encode(),
        }))
    }

    #[test]
    fn a_repeated_peer_message_does_not_open_every_document_again() {
        let mut docs = BTreeMap::from([(id(1), Automerge::new())]);
        let (mut session, _) = joined(&docs);
        let peer = wire::encode(&Message::Peer {
            sender_id: "server".into(),
            target_id: "phone".into(),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: "1".into(),
        });
        assert_eq!(session.receive(&peer, &mut docs), Ok(Vec::new()), "no second Joined");
    }

    #[test]
    fn a_server_announcing_a_head_it_never_sends_does_not_keep_the_phone_syncing() {
        let mut doc = Automerge::new();
        write(&mut doc, "a", "1");
        let ours = doc.get_heads();
        let mut docs = BTreeMap::from([(id(1), doc)]);
        let (mut session, _) = joined(&docs);
        // The server claims our change (acknowledging it) and one more that it never sends.
        let phantom = ChangeHash([9; 32]);
        let mut claimed = vec![ours[0], phantom];
        claimed.sort();
        let claim = || sync::Message {
            heads: claimed.clone(),
            need: Vec::new(),
            have: vec![sync::Have { last_sync: ours.clone(), bloom: sync::BloomFilter::default() }],
            changes: Vec::<Vec<u8>>::new().into(),
            flags: None,
            version: sync::MessageVersion::V1,
        };
        for _ in 0..10 {
            if session.is_complete() {
                break;
            }
            session.receive(&sync_frame(id(1), claim()), &mut docs).expect("read");
        }
        assert!(session.is_complete(), "{:?}", session.document(&id(1)));
        assert_eq!(session.document(&id(1)).map(|p| p.phase), Some(Phase::Done));
        assert!(unacknowledged(&docs[&id(1)], &session.document(&id(1)).expect("opened").acknowledged).is_empty());
    }

    #[test]
    fn a_server_that_never_acknowledges_is_stopped_by_the_round_bound() {
        let mut doc = Automerge::new();
        write(&mut doc, "a", "1");
        let mut docs = BTreeMap::from([(id(1), doc)]);
        let (session, _) = joined(&docs);
        let mut session = session.with_round_limit(8);
        // Heads the phone never holds, and no acknowledgement of its own change, forever.
        let mut outcome = Ok(Vec::new());
        for n in 0..100u8 {
            let message = sync::Message {
                heads: vec![ChangeHash([n; 32])],
                need: Vec::new(),
                have: Vec::new(),
                changes: Vec::<Vec<u8>>::new().into(),
                flags: None,
                version: sync::MessageVersion::V1,
            };
            outcome = session.receive(&sync_frame(id(1), message), &mut docs);
            if outcome.is_err() {
                break;
            }
        }
        assert!(matches!(outcome, Err(ClientError::TooManyRounds { .. })), "{outcome:?}");
    }

    #[test]
    fn a_refusal_ends_that_document_and_the_others_go_on() {
        let mut mine = Automerge::new();
        write(&mut mine, "a", "1");
        let mut other = Automerge::new();
        write(&mut other, "b", "2");
        let mut docs = BTreeMap::from([(id(1), mine), (id(2), other)]);
        let mut session = ClientSession::new("phone", "store");
        let peer = wire::encode(&Message::Peer {
            sender_id: "server".into(),
            target_id: "phone".into(),
            peer_metadata: PeerMetadata::default(),
            selected_protocol_version: "1".into(),
        });
        session.receive(&peer, &mut docs).expect("joined");
        // One document in flight at a time: a refusal can only be about it.
        assert_eq!(session.open_document(id(1), None, &docs).expect("opened").len(), 1);
        let refused = wire::encode(&Message::Error {
            sender_id: Some("server".into()),
            target_id: Some("phone".into()),
            message: "changes refused, nothing of this message was stored: read-only".into(),
        });
        assert_eq!(session.receive(&refused, &mut docs), Ok(Vec::new()));
        let p = session.document(&id(1)).expect("opened");
        assert_eq!(p.phase, Phase::Refused);
        assert!(p.refusal.as_deref().is_some_and(|r| r.contains("read-only")), "{p:?}");
        assert!(session.is_complete());
        // The next document syncs as usual; an error with two in flight still ends the session.
        assert_eq!(session.open_document(id(2), None, &docs).expect("opened").len(), 1);
        assert!(!session.is_complete());
        let mut third = Automerge::new();
        write(&mut third, "c", "3");
        docs.insert(id(3), third);
        session.open_document(id(3), None, &docs).expect("opened");
        assert!(matches!(session.receive(&refused, &mut docs), Err(ClientError::Server(_))));
    }
}
