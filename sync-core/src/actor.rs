//! One document on the server, sans I/O: rounds of commands, what to store, and when a reply may
//! leave.
//!
//! A [`DocumentActor`] is the server's document task without its awaits. It takes
//! [`Command`]s (a peer's `sync` or `request`, an ephemeral message, a peer gone, a staff write)
//! and answers with [`ActorAction`]s, which the executor carries out **in order**. Whatever needs
//! the outside world is a *request* action, and its answer comes back as an [`ActorEvent`]:
//!
//! | request | answer |
//! | --- | --- |
//! | [`ActorAction::Load`] (start, and reload) | [`ActorEvent::Loaded`] |
//! | [`ActorAction::LoadSyncState`] (a peer's first message) | [`ActorEvent::SyncStateLoaded`] |
//! | [`ActorAction::Check`] (changes a peer brought, before they are stored) | [`ActorEvent::Checked`] |
//! | [`ActorAction::Commit`] (one transaction) | [`ActorEvent::Committed`] |
//!
//! While a request is outstanding the actor does nothing else; commands that arrive meanwhile
//! wait for the next round. [`ActorAction::Audit`] is carried out before the actions after it
//! (the refused peer reads the audit trail after it hears of the refusal) and has no answer.
//!
//! A round:
//!
//! 1. takes up to [`ActorLimits::round`] waiting commands, and applies them one by one:
//!    a peer's sync message goes through [`DocumentSync::receive`] and, when it brought changes
//!    and the peer's connection has a write rule, through the access check and the per-actor
//!    share of the document. A refused message is dropped whole (the document goes back to the
//!    heads before it; other peers' changes and sync states stay) and its peer hears why;
//! 2. if the document would outgrow [`ActorLimits::max_document_bytes`], nothing of the round is
//!    stored: the document goes back to the heads before the round and its senders hear why;
//! 3. asks for one commit of the new changes and the senders' sync states;
//! 4. only once that commit is done: answers staff writes, compacts if the document holds more
//!    than [`ActorLimits::compact_after`] chunks, sends the sync replies, announces the new
//!    heads to peers subscribed to the server's storage (timestamped with `now`), and hands the
//!    round to the projector ([`ActorAction::Project`]).
//!
//! A failed commit tells the senders and reloads the document from storage; Automerge
//! panicking on a message reloads it too. Either way peers sync again from scratch and lose
//! nothing, since nobody was told that the lost changes arrived.
//!
//! # Example
//!
//! An executor in a few lines: a store in a `Vec`, a phone in memory. The reply that tells the
//! phone its change arrived comes only once the commit holding the change is done.
//!
//! ```
//! use hamlet_sync_core::actor::{ActorAction, ActorEvent, ActorLimits, Command, DocumentActor, StoreWrite, Written};
//! use hamlet_sync_core::automerge::{sync::{self, SyncDoc}, transaction::Transactable, Automerge, AutomergeError, ROOT};
//! use hamlet_sync_core::session::{Identity, Peer};
//! use hamlet_sync_core::wire::Message;
//! use hamlet_sync_core::DocumentId;
//!
//! let mut phone = Automerge::new();
//! phone.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "hamlet", "Thôn Đông").map(|_| ())).map_err(|f| f.error)?;
//! let mut phone_state = sync::State::new();
//! let peer = Peer { peer_id: "-/phone".into(), storage_id: None, is_ephemeral: true };
//!
//! let identity = Identity { peer_id: "district".into(), storage_id: "district-store".into() };
//! let (mut actor, mut actions) = DocumentActor::<()>::new(DocumentId::from_bytes([1; 16]), identity, ActorLimits::default());
//! let mut stored: Vec<Vec<u8>> = Vec::new();
//! while !phone_state.their_heads.as_ref().is_some_and(|h| *h == phone.get_heads()) {
//!     let mut events = Vec::new();
//!     if let Some(m) = phone.generate_sync_message(&mut phone_state) {
//!         let data = m.encode();
//!         let command = Command::Sync { peer: peer.clone(), conn: 1, data, is_request: false, rule: None, who: "phone".into() };
//!         events.push(ActorEvent::Commands(vec![command]));
//!     }
//!     for action in std::mem::take(&mut actions) {
//!         match action {
//!             ActorAction::Load { request } => events.insert(0, ActorEvent::Loaded { request, chunks: Ok(vec![]) }),
//!             ActorAction::Commit { request, writes } => {
//!                 let mut written = Vec::new();
//!                 for write in writes {
//!                     if let StoreWrite::Chunk { data, .. } = write {
//!                         stored.push(data);
//!                         written.push(Written::Chunk { id: stored.len() as i64 });
//!                     }
//!                 }
//!                 events.push(ActorEvent::Committed { request, result: Ok(written) });
//!             }
//!             ActorAction::Send { message: Message::Sync(m), .. } => {
//!                 // Whatever the reply acknowledges is already stored.
//!                 assert!(stored.len() > 0 || phone_state.their_heads.is_none());
//!                 phone.receive_sync_message(&mut phone_state, sync::Message::decode(&m.data)?)?;
//!             }
//!             _ => {}
//!         }
//!     }
//!     for event in events {
//!         actions.extend(actor.handle(event, 0));
//!     }
//! }
//! assert_eq!(stored.len(), 1, "one commit held the phone's change");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, HashSet, VecDeque};

use automerge::{ActorId, Automerge, Change, ChangeHash};

use crate::docid::DocumentId;
use crate::guard;
use crate::session::{DocumentSync, Identity, Outgoing, Peer, SyncError};
use crate::wire::{self, Message};

/// A connection's number, given by the hub.
pub type ConnId = u64;

/// A stored chunk's id, given by the store.
pub type ChunkId = i64;

/// A number that pairs a request with its answer.
pub type RequestId = u64;

/// A change the server itself makes to a document (a campaign document, written on behalf of
/// staff). It must write in one transaction: on `Err` nothing is written.
pub type DocWrite = Box<dyn FnOnce(&mut Automerge) -> Result<(), String> + Send>;

/// What a document is asked to do. `R` is the executor's write rule: what the access check
/// needs to know about the connection (the actor only carries it).
pub enum Command<R> {
    /// A `request` or `sync` from a peer.
    Sync {
        /// The peer as the hub knows it.
        peer: Peer,
        /// The connection it came through.
        conn: ConnId,
        /// The Automerge sync message.
        data: Vec<u8>,
        /// Whether it was a `request`.
        is_request: bool,
        /// How its changes are checked; `None` takes them unchecked (open mode).
        rule: Option<R>,
        /// Who sent it, for the audit trail.
        who: String,
    },
    /// An ephemeral message to relay to the document's other peers.
    Ephemeral {
        /// The sending peer (as the hub knows it).
        from: String,
        /// The message, forwarded with only its `targetId` changed.
        message: Message,
        /// Its session and count, to drop duplicates.
        dedup: (String, u64),
    },
    /// Connection `conn` of `peer` closed.
    PeerGone {
        /// The peer.
        peer: Peer,
        /// The connection that closed.
        conn: ConnId,
    },
    /// A write by the server itself; answered by [`ActorAction::WriteDone`] with `ticket`.
    Write {
        /// The write.
        write: DocWrite,
        /// The caller's number for the answer.
        ticket: u64,
    },
}

impl<R> Command<R> {
    /// Bytes of peer data the command holds (what an executor bounds its queue by).
    pub fn bytes(&self) -> usize {
        match self {
            Command::Sync { data, .. } => data.len(),
            Command::Ephemeral { message: Message::Ephemeral { data, .. }, .. } => data.len(),
            _ => 0,
        }
    }
}

impl<R: std::fmt::Debug> std::fmt::Debug for Command<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Sync { peer, conn, data, is_request, rule, .. } => f
                .debug_struct("Sync")
                .field("peer", &peer.peer_id)
                .field("conn", conn)
                .field("bytes", &data.len())
                .field("is_request", is_request)
                .field("rule", rule)
                .finish(),
            Command::Ephemeral { from, dedup, .. } => {
                f.debug_struct("Ephemeral").field("from", from).field("dedup", dedup).finish()
            }
            Command::PeerGone { peer, conn } => {
                f.debug_struct("PeerGone").field("peer", &peer.peer_id).field("conn", conn).finish()
            }
            Command::Write { ticket, .. } => f.debug_struct("Write").field("ticket", ticket).finish(),
        }
    }
}

/// A chunk as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChunk {
    /// Its id.
    pub id: ChunkId,
    /// Its bytes (changes, or a whole document).
    pub data: Vec<u8>,
}

/// One write of a commit; all the writes of one [`ActorAction::Commit`] go in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreWrite {
    /// Append a chunk of changes; the document's heads become `heads`.
    Chunk {
        /// The changes.
        data: Vec<u8>,
        /// The document's heads after it.
        heads: Vec<ChangeHash>,
    },
    /// Store `snapshot` and delete exactly the chunks in `replaces`; fails as a whole if one of
    /// them is gone (another process compacted first).
    Compact {
        /// The whole document.
        snapshot: Vec<u8>,
        /// Its heads.
        heads: Vec<ChangeHash>,
        /// The chunks it replaces.
        replaces: Vec<ChunkId>,
    },
    /// Create or replace the sync state kept for a peer's storage.
    SyncState {
        /// The peer's storage id (as the hub namespaced it).
        storage_id: String,
        /// The encoded sync state.
        state: Vec<u8>,
    },
}

/// What a commit wrote, one entry per [`StoreWrite`], in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// A chunk, with its id.
    Chunk {
        /// The id.
        id: ChunkId,
    },
    /// A compaction's snapshot, with its id.
    Compacted {
        /// The id.
        id: ChunkId,
    },
    /// A sync state.
    SyncState,
}

/// Why a staff write did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The write itself refused (its message says why); nothing was written.
    #[error("the write was refused: {0}")]
    Refused(String),
    /// The document would grow over the size limit; nothing was stored.
    #[error("the document would exceed its size limit")]
    TooLarge,
    /// The change could not be stored; nothing was stored.
    #[error("the change could not be stored")]
    Storage,
    /// The document's actor stopped before answering.
    #[error("the document's task stopped before answering")]
    Stopped,
}

/// Something worth counting or logging; it changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incident {
    /// The document was loaded from storage.
    Loaded,
    /// The document could not be loaded.
    LoadFailed(String),
    /// A stored chunk did not load (it is skipped, and kept in the store for inspection).
    BadChunk {
        /// The chunk.
        id: ChunkId,
        /// Automerge's reason.
        reason: String,
    },
    /// A sync message that could not be applied.
    InvalidSync {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Automerge panicked on a message (the document is reloaded).
    Panic {
        /// The peer.
        peer: String,
    },
    /// Changes refused by the access check or the per-actor share.
    Refused {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// One actor would go over its share of the document (counted as rate-limited).
    ActorShare,
    /// A round would have grown the document over its limit.
    TooLarge,
    /// A commit failed (the document is reloaded).
    CommitFailed(String),
    /// A commit succeeded after being requested at `requested_at` (the `now` of that moment).
    Committed {
        /// When it was requested.
        requested_at: u64,
    },
    /// A compaction failed (typically another process compacted first); the document is reloaded.
    CompactionSkipped(String),
}

/// What the actor needs from outside, or asks to be done.
#[derive(Clone, Debug, PartialEq)]
pub enum ActorAction<R> {
    /// Read every chunk of the document; answer with [`ActorEvent::Loaded`].
    Load {
        /// The request.
        request: RequestId,
    },
    /// Read the sync state kept for `storage_id`; answer with [`ActorEvent::SyncStateLoaded`].
    LoadSyncState {
        /// The request.
        request: RequestId,
        /// The peer's storage id (namespaced).
        storage_id: String,
    },
    /// Check `changes` against `rule` (with the document, [`DocumentActor::doc`], as it stands
    /// now, holding them); answer with [`ActorEvent::Checked`].
    Check {
        /// The request.
        request: RequestId,
        /// The rule of the sender's connection.
        rule: R,
        /// The changes the message added.
        changes: Vec<Change>,
    },
    /// Write `writes` in one transaction; answer with [`ActorEvent::Committed`].
    Commit {
        /// The request.
        request: RequestId,
        /// What to write.
        writes: Vec<StoreWrite>,
    },
    /// Append to the audit trail before carrying out what follows (no answer).
    Audit {
        /// Who acted.
        who: String,
        /// What happened (`sync.refused`).
        action: &'static str,
        /// The document.
        target: String,
        /// Why.
        detail: String,
    },
    /// Send `message` to `peer` (as the hub knows it) through the hub, which sets `targetId`;
    /// when `if_subscribed`, only if the peer subscribed to the server's storage.
    Send {
        /// The peer.
        peer: String,
        /// The message.
        message: Message,
        /// Whether it goes only to peers subscribed to the server's storage.
        if_subscribed: bool,
    },
    /// A staff write is answered: `Ok` with the document's heads once its change is stored.
    WriteDone {
        /// The write's ticket.
        ticket: u64,
        /// The answer.
        result: Result<Vec<ChangeHash>, WriteError>,
    },
    /// A round stored what it got: hand the document ([`DocumentActor::doc`], as it stands now)
    /// to the projector, with its heads before the round and the peers that sent in it.
    Project {
        /// The heads before the round.
        before: Vec<ChangeHash>,
        /// The peers whose messages the round took.
        peers: Vec<Peer>,
    },
    /// Something to count or log.
    Note(Incident),
    /// The actor has stopped (the document could not be loaded); every command it held was
    /// answered. Later commands need a new actor.
    Stopped,
}

/// An answer to a request.
#[derive(Debug)]
pub enum ActorEvent<R> {
    /// Commands to process, in the order they arrived.
    Commands(Vec<Command<R>>),
    /// The document's chunks, or why they cannot be read.
    Loaded {
        /// The request answered.
        request: RequestId,
        /// The chunks in the order they were written.
        chunks: Result<Vec<StoredChunk>, String>,
    },
    /// The sync state kept for a peer's storage (`None` when there is none or it cannot be
    /// read: the sync then starts afresh).
    SyncStateLoaded {
        /// The request answered.
        request: RequestId,
        /// The state.
        state: Option<Vec<u8>>,
    },
    /// The access check's verdict.
    Checked {
        /// The request answered.
        request: RequestId,
        /// `Err` with the reason the changes are refused.
        verdict: Result<(), String>,
    },
    /// A commit's outcome.
    Committed {
        /// The request answered.
        request: RequestId,
        /// What was written, or why nothing was.
        result: Result<Vec<Written>, String>,
    },
}

/// The bounds a document actor keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActorLimits {
    /// Largest a document may grow, in stored bytes; a round that would pass it stores nothing.
    pub max_document_bytes: usize,
    /// Chunks before the document is compacted into one snapshot.
    pub compact_after: usize,
    /// Most commands one round (one commit) takes.
    pub round: usize,
    /// Ephemeral (session, count) pairs remembered, to drop duplicates.
    pub ephemeral_memory: usize,
}

impl ActorLimits {
    /// What one actor may add to one document: an eighth of the document's limit, so that one
    /// device cannot fill a hamlet's ledger and stop its colleagues.
    pub fn max_actor_bytes(&self) -> usize {
        self.max_document_bytes / 8
    }
}

impl Default for ActorLimits {
    /// The server's defaults: 64 MiB documents, compaction after 64 chunks, rounds of 128
    /// commands, 1,024 ephemeral messages remembered.
    fn default() -> Self {
        ActorLimits { max_document_bytes: 64 * 1024 * 1024, compact_after: 64, round: 128, ephemeral_memory: 1024 }
    }
}

/// What happens after a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterLoad {
    /// The first load: serve.
    Start,
    /// Go on with the round's next command.
    NextCommand,
    /// The round is over (its commit failed).
    EndRound,
    /// The round goes on to its replies (a compaction failed).
    Replies,
}

/// The request the actor waits for.
#[derive(Debug)]
enum Waiting<R> {
    Nothing,
    Load { request: RequestId, then: AfterLoad },
    SyncState { request: RequestId, command: Command<R> },
    Check { request: RequestId, peer: Peer, who: String, heads_before: Vec<ChangeHash>, added: Vec<Change> },
    Commit { request: RequestId, unsaved: Option<(usize, Vec<ChangeHash>)>, requested_at: u64 },
    Compact { request: RequestId, len: usize },
}

/// A round in progress.
#[derive(Debug)]
struct Round<R> {
    commands: VecDeque<Command<R>>,
    before: Vec<ChangeHash>,
    writes: Vec<StoreWrite>,
    senders: Vec<String>,
    tickets: Vec<u64>,
}

/// One document on the server: see the [module docs](self).
#[derive(Debug)]
pub struct DocumentActor<R> {
    id: DocumentId,
    identity: Identity,
    limits: ActorLimits,
    session: DocumentSync,
    /// Chunk ids the in-memory document was built from (what a compaction may delete).
    chunks: Vec<ChunkId>,
    stored_bytes: usize,
    /// The connection each peer of the session syncs through.
    conns: HashMap<String, (ConnId, Peer)>,
    seen_ephemeral: VecDeque<(String, u64)>,
    seen_set: HashSet<(String, u64)>,
    /// Bytes of changes each actor has in the document, once a checked message needed it.
    actor_bytes: Option<HashMap<ActorId, usize>>,
    inbox: VecDeque<Command<R>>,
    round: Option<Round<R>>,
    waiting: Waiting<R>,
    next_request: RequestId,
    stopped: bool,
}

fn error(identity: &Identity, peer: &str, message: &str) -> Message {
    Message::Error {
        sender_id: Some(identity.peer_id.clone()),
        target_id: Some(peer.to_owned()),
        message: message.to_owned(),
    }
}

impl<R: Clone> DocumentActor<R> {
    /// An actor for document `id`, served as `identity`; it starts by asking for the document.
    pub fn new(id: DocumentId, identity: Identity, limits: ActorLimits) -> (Self, Vec<ActorAction<R>>) {
        let mut actor = DocumentActor {
            id,
            identity,
            limits,
            session: Self::session(id, Automerge::new(), limits),
            chunks: Vec::new(),
            stored_bytes: 0,
            conns: HashMap::new(),
            seen_ephemeral: VecDeque::new(),
            seen_set: HashSet::new(),
            actor_bytes: None,
            inbox: VecDeque::new(),
            round: None,
            waiting: Waiting::Nothing,
            next_request: 1,
            stopped: false,
        };
        let mut actions = Vec::new();
        actor.load(AfterLoad::Start, &mut actions);
        (actor, actions)
    }

    fn session(id: DocumentId, doc: Automerge, limits: ActorLimits) -> DocumentSync {
        let guard = guard::Limits { max_inflated_bytes: limits.max_document_bytes, ..guard::Limits::default() };
        DocumentSync::with_limits(id, doc, guard)
    }

    /// The document's id.
    pub fn id(&self) -> DocumentId {
        self.id
    }

    /// The document as it stands (between a request and its answer: with what the request is
    /// about, such as the changes to check).
    pub fn doc(&self) -> &Automerge {
        self.session.doc()
    }

    /// Whether the actor waits for nothing and holds no command: an executor may feed it the
    /// next batch, or let it go once it has no peer.
    pub fn is_idle(&self) -> bool {
        matches!(self.waiting, Waiting::Nothing) && self.round.is_none() && self.inbox.is_empty()
    }

    /// Whether any peer syncs the document through this actor.
    pub fn has_peers(&self) -> bool {
        !self.conns.is_empty()
    }

    /// Whether the actor stopped ([`ActorAction::Stopped`]).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Commands waiting for a round.
    pub fn queued(&self) -> usize {
        self.inbox.len()
    }

    /// Takes one event; `now` (milliseconds since the epoch) dates the heads it announces.
    pub fn handle(&mut self, event: ActorEvent<R>, now: u64) -> Vec<ActorAction<R>> {
        let mut out = Vec::new();
        if self.stopped {
            if let ActorEvent::Commands(commands) = event {
                self.inbox.extend(commands);
                self.refuse_inbox(&mut out, "the server cannot read this document now; retry later");
            }
            return out;
        }
        match event {
            ActorEvent::Commands(commands) => self.inbox.extend(commands),
            ActorEvent::Loaded { request, chunks } => {
                let then = match &self.waiting {
                    Waiting::Load { request: r, then } if *r == request => *then,
                    _ => return out,
                };
                self.waiting = Waiting::Nothing;
                match chunks {
                    Ok(chunks) => self.loaded(chunks, then == AfterLoad::Start, &mut out),
                    Err(reason) => {
                        out.push(ActorAction::Note(Incident::LoadFailed(reason)));
                        if then == AfterLoad::Start {
                            self.stopped = true;
                            self.refuse_inbox(&mut out, "the server cannot read this document now; retry later");
                            out.push(ActorAction::Stopped);
                            return out;
                        }
                    }
                }
                match then {
                    AfterLoad::Start | AfterLoad::NextCommand => {}
                    AfterLoad::EndRound => self.round = None,
                    AfterLoad::Replies => self.replies(now, &mut out),
                }
            }
            ActorEvent::SyncStateLoaded { request, state } => {
                if !matches!(&self.waiting, Waiting::SyncState { request: r, .. } if *r == request) {
                    return out;
                }
                let Waiting::SyncState { command, .. } = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
                    return out;
                };
                if let Command::Sync { peer, conn, .. } = &command {
                    self.session.add_peer(&peer.peer_id, state.as_deref());
                    self.conns.insert(peer.peer_id.clone(), (*conn, peer.clone()));
                }
                self.apply(command, &mut out);
            }
            ActorEvent::Checked { request, verdict } => {
                if !matches!(&self.waiting, Waiting::Check { request: r, .. } if *r == request) {
                    return out;
                }
                let Waiting::Check { peer, who, heads_before, added, .. } =
                    std::mem::replace(&mut self.waiting, Waiting::Nothing)
                else {
                    return out;
                };
                let verdict = verdict.and_then(|()| self.charge_actors(&added, &mut out));
                match verdict {
                    Ok(()) => self.add_sender(&peer.peer_id),
                    Err(reason) => {
                        self.session.revert(&peer.peer_id, &heads_before);
                        self.refuse(&peer, &who, &reason, &mut out);
                    }
                }
            }
            ActorEvent::Committed { request, result } => match std::mem::replace(&mut self.waiting, Waiting::Nothing) {
                Waiting::Commit { request: r, unsaved, requested_at } if r == request => {
                    self.committed(result, unsaved, requested_at, now, &mut out)
                }
                Waiting::Compact { request: r, len } if r == request => match result {
                    Ok(written) => {
                        if let Some(Written::Compacted { id }) = written.first() {
                            self.chunks = vec![*id];
                            self.stored_bytes = len;
                        }
                        self.replies(now, &mut out);
                    }
                    Err(reason) => {
                        out.push(ActorAction::Note(Incident::CompactionSkipped(reason)));
                        self.load(AfterLoad::Replies, &mut out);
                    }
                },
                other => self.waiting = other,
            },
        }
        self.drive(now, &mut out);
        out
    }

    fn request(&mut self) -> RequestId {
        let r = self.next_request;
        self.next_request += 1;
        r
    }

    fn load(&mut self, then: AfterLoad, out: &mut Vec<ActorAction<R>>) {
        let request = self.request();
        self.waiting = Waiting::Load { request, then };
        out.push(ActorAction::Load { request });
    }

    /// Builds the document from `chunks`; a reload keeps the peers, whose syncs start afresh.
    fn loaded(&mut self, chunks: Vec<StoredChunk>, first: bool, out: &mut Vec<ActorAction<R>>) {
        let mut doc = Automerge::new();
        let mut ids = Vec::with_capacity(chunks.len());
        let mut bytes = 0;
        for chunk in chunks {
            // A chunk that does not load is kept in the store for inspection and skipped here,
            // so one bad chunk cannot make a whole document unavailable.
            if let Err(e) = doc.load_incremental(&chunk.data) {
                out.push(ActorAction::Note(Incident::BadChunk { id: chunk.id, reason: e.to_string() }));
            }
            bytes += chunk.data.len();
            ids.push(chunk.id);
        }
        self.session = Self::session(self.id, doc, self.limits);
        self.chunks = ids;
        self.stored_bytes = bytes;
        self.actor_bytes = None;
        if first {
            out.push(ActorAction::Note(Incident::Loaded));
        } else {
            for peer in self.conns.keys() {
                self.session.add_peer(peer, None);
            }
        }
    }

    /// Answers every waiting command of a document that cannot be served.
    fn refuse_inbox(&mut self, out: &mut Vec<ActorAction<R>>, reason: &str) {
        for command in self.inbox.drain(..) {
            match command {
                Command::Sync { peer, .. } => out.push(ActorAction::Send {
                    peer: peer.peer_id.clone(),
                    message: error(&self.identity, &peer.peer_id, reason),
                    if_subscribed: false,
                }),
                Command::Write { ticket, .. } => {
                    out.push(ActorAction::WriteDone { ticket, result: Err(WriteError::Stopped) })
                }
                Command::Ephemeral { .. } | Command::PeerGone { .. } => {}
            }
        }
    }

    /// Runs until the actor needs an answer or has nothing left to do.
    fn drive(&mut self, now: u64, out: &mut Vec<ActorAction<R>>) {
        loop {
            if !matches!(self.waiting, Waiting::Nothing) {
                return;
            }
            let Some(round) = self.round.as_mut() else {
                if self.inbox.is_empty() {
                    return;
                }
                let take = self.inbox.len().min(self.limits.round.max(1));
                let commands: VecDeque<Command<R>> = self.inbox.drain(..take).collect();
                self.round = Some(Round {
                    commands,
                    before: self.session.doc().get_heads(),
                    writes: Vec::new(),
                    senders: Vec::new(),
                    tickets: Vec::new(),
                });
                continue;
            };
            match round.commands.pop_front() {
                Some(command) => self.command(command, out),
                None => self.store(now, out),
            }
        }
    }

    fn add_sender(&mut self, peer: &str) {
        if let Some(round) = self.round.as_mut()
            && !round.senders.iter().any(|s| s == peer)
        {
            round.senders.push(peer.to_owned());
        }
    }

    fn command(&mut self, command: Command<R>, out: &mut Vec<ActorAction<R>>) {
        match command {
            Command::Write { write, ticket } => match write(self.session.doc_mut()) {
                Ok(()) => {
                    if let Some(round) = self.round.as_mut() {
                        round.tickets.push(ticket);
                    }
                }
                Err(reason) => out.push(ActorAction::WriteDone { ticket, result: Err(WriteError::Refused(reason)) }),
            },
            Command::Sync { .. } => {
                let Command::Sync { peer, conn, .. } = &command else { return };
                let (peer, conn) = (peer.clone(), *conn);
                if self.conns.get(&peer.peer_id).is_some_and(|(c, _)| *c == conn) {
                    self.apply(command, out);
                    return;
                }
                match peer.durable_storage_id() {
                    Some(storage) => {
                        let storage_id = storage.to_owned();
                        let request = self.request();
                        self.waiting = Waiting::SyncState { request, command };
                        out.push(ActorAction::LoadSyncState { request, storage_id });
                    }
                    None => {
                        self.session.add_peer(&peer.peer_id, None);
                        self.conns.insert(peer.peer_id.clone(), (conn, peer.clone()));
                        self.apply(command, out);
                    }
                }
            }
            Command::Ephemeral { from, message, dedup } => self.relay(&from, message, dedup, out),
            Command::PeerGone { peer, conn } => {
                if self.conns.get(&peer.peer_id).is_some_and(|(c, _)| *c == conn) {
                    if let (Some(storage), Some(state)) =
                        (peer.durable_storage_id(), self.session.encoded_state(&peer.peer_id))
                        && let Some(round) = self.round.as_mut()
                    {
                        round.writes.push(StoreWrite::SyncState { storage_id: storage.to_owned(), state });
                    }
                    self.session.remove_peer(&peer.peer_id);
                    self.conns.remove(&peer.peer_id);
                }
            }
        }
    }

    /// Applies a peer's sync message (the peer is in the session by now).
    fn apply(&mut self, command: Command<R>, out: &mut Vec<ActorAction<R>>) {
        let Command::Sync { peer, data, is_request, rule, who, .. } = command else { return };
        let heads_before = self.session.doc().get_heads();
        match self.session.receive(&peer.peer_id, &data, is_request) {
            Ok(true) if rule.is_some() => {
                let Some(rule) = rule else { return };
                let added = self.session.doc().get_changes(&heads_before);
                let request = self.request();
                out.push(ActorAction::Check { request, rule, changes: added.clone() });
                self.waiting = Waiting::Check { request, peer, who, heads_before, added };
            }
            Ok(_) => self.add_sender(&peer.peer_id),
            Err(e) => {
                let panicked = matches!(e, SyncError::Panicked);
                out.push(ActorAction::Note(if panicked {
                    Incident::Panic { peer: peer.peer_id.clone() }
                } else {
                    Incident::InvalidSync { peer: peer.peer_id.clone(), reason: e.to_string() }
                }));
                out.push(ActorAction::Send {
                    peer: peer.peer_id.clone(),
                    message: error(&self.identity, &peer.peer_id, &e.to_string()),
                    if_subscribed: false,
                });
                if panicked {
                    // Automerge stopped half-way: the in-memory document cannot be trusted.
                    // Start again from storage (this round's unsaved changes go; no one was
                    // told they arrived, so they come again).
                    if let Some(round) = self.round.as_mut() {
                        for ticket in round.tickets.drain(..) {
                            out.push(ActorAction::WriteDone { ticket, result: Err(WriteError::Storage) });
                        }
                        round.senders.clear();
                    }
                    self.load(AfterLoad::NextCommand, out);
                }
                // Otherwise the session put the document back as it was before this message;
                // others' changes and sync states stay.
            }
        }
    }

    /// Counts `added` (changes that passed the access check) against what each actor may add
    /// to one document; refuses them all if one actor goes over.
    fn charge_actors(&mut self, added: &[Change], out: &mut Vec<ActorAction<R>>) -> Result<(), String> {
        let max = self.limits.max_actor_bytes();
        let doc = self.session.doc();
        let totals = self.actor_bytes.get_or_insert_with(|| {
            // What the document held before this message: every change but the new ones.
            let new: HashSet<ChangeHash> = added.iter().map(|c| c.hash()).collect();
            let mut totals = HashMap::new();
            for change in doc.get_changes(&[]).iter().filter(|c| !new.contains(&c.hash())) {
                *totals.entry(change.actor_id().clone()).or_default() += change.raw_bytes().len();
            }
            totals
        });
        let mut after = totals.clone();
        for change in added {
            let total = after.entry(change.actor_id().clone()).or_default();
            *total += change.raw_bytes().len();
            if *total > max {
                out.push(ActorAction::Note(Incident::ActorShare));
                return Err(format!(
                    "one device may add at most {max} bytes to one hamlet's ledger, and these changes would bring \
                     this device to {total}; ask the district to look at this ledger"
                ));
            }
        }
        *totals = after;
        Ok(())
    }

    /// Refuses a message whose changes break the rules (the document is already back as it
    /// was before the message): audited first, then the peer is told.
    fn refuse(&mut self, peer: &Peer, who: &str, reason: &str, out: &mut Vec<ActorAction<R>>) {
        out.push(ActorAction::Note(Incident::Refused { peer: peer.peer_id.clone(), reason: reason.to_owned() }));
        out.push(ActorAction::Audit {
            who: who.to_owned(),
            action: "sync.refused",
            target: self.id.to_string(),
            detail: reason.to_owned(),
        });
        let message = format!("changes refused, nothing of this message was stored: {reason}");
        out.push(ActorAction::Send {
            peer: peer.peer_id.clone(),
            message: error(&self.identity, &peer.peer_id, &message),
            if_subscribed: false,
        });
    }

    /// The end of a round's commands: check the size, ask for the commit.
    fn store(&mut self, now: u64, out: &mut Vec<ActorAction<R>>) {
        let Some(round) = self.round.as_mut() else { return };
        let unsaved = self.session.unsaved();
        if let Some(u) = &unsaved {
            if self.stored_bytes + u.chunk.len() > self.limits.max_document_bytes {
                out.push(ActorAction::Note(Incident::TooLarge));
                let reason = format!(
                    "document {} would exceed the size limit of {} bytes; its new changes were not stored",
                    self.id, self.limits.max_document_bytes
                );
                // Nothing of this round is stored: put the document back as it was before it,
                // and let the senders start their sync afresh.
                self.session.rewind(&round.before);
                for peer in &round.senders {
                    out.push(ActorAction::Send {
                        peer: peer.clone(),
                        message: error(&self.identity, peer, &reason),
                        if_subscribed: false,
                    });
                    self.session.reset_peer(peer);
                }
                for ticket in round.tickets.drain(..) {
                    out.push(ActorAction::WriteDone { ticket, result: Err(WriteError::TooLarge) });
                }
                self.actor_bytes = None;
                self.round = None;
                return;
            }
            round.writes.push(StoreWrite::Chunk { data: u.chunk.clone(), heads: u.heads.clone() });
        }
        for peer in &round.senders {
            if let Some((_, p)) = self.conns.get(peer)
                && let (Some(storage), Some(state)) = (p.durable_storage_id(), self.session.encoded_state(peer))
            {
                round.writes.push(StoreWrite::SyncState { storage_id: storage.to_owned(), state });
            }
        }
        let unsaved = unsaved.map(|u| (u.chunk.len(), u.heads));
        if round.writes.is_empty() {
            self.after_commit(unsaved, now, out);
            return;
        }
        let writes = std::mem::take(&mut round.writes);
        let request = self.request();
        self.waiting = Waiting::Commit { request, unsaved, requested_at: now };
        out.push(ActorAction::Commit { request, writes });
    }

    fn committed(
        &mut self,
        result: Result<Vec<Written>, String>,
        unsaved: Option<(usize, Vec<ChangeHash>)>,
        requested_at: u64,
        now: u64,
        out: &mut Vec<ActorAction<R>>,
    ) {
        match result {
            Ok(written) => {
                out.push(ActorAction::Note(Incident::Committed { requested_at }));
                if let Some((len, _)) = &unsaved {
                    self.stored_bytes += len;
                    self.chunks.extend(written.iter().filter_map(|w| match w {
                        Written::Chunk { id } => Some(*id),
                        _ => None,
                    }));
                }
                self.after_commit(unsaved, now, out);
            }
            Err(reason) => {
                out.push(ActorAction::Note(Incident::CommitFailed(reason)));
                if let Some(round) = self.round.as_mut() {
                    for peer in &round.senders {
                        let reason = "the server could not store these changes; they will be sent again";
                        out.push(ActorAction::Send {
                            peer: peer.clone(),
                            message: error(&self.identity, peer, reason),
                            if_subscribed: false,
                        });
                    }
                    for ticket in round.tickets.drain(..) {
                        out.push(ActorAction::WriteDone { ticket, result: Err(WriteError::Storage) });
                    }
                }
                self.load(AfterLoad::EndRound, out);
            }
        }
    }

    /// Once the round's changes are stored: staff writes hear of it, then compaction, then
    /// replies.
    fn after_commit(&mut self, unsaved: Option<(usize, Vec<ChangeHash>)>, now: u64, out: &mut Vec<ActorAction<R>>) {
        if let Some((_, heads)) = unsaved {
            self.session.saved(heads);
        }
        let heads = self.session.doc().get_heads();
        if let Some(round) = self.round.as_mut() {
            for ticket in round.tickets.drain(..) {
                out.push(ActorAction::WriteDone { ticket, result: Ok(heads.clone()) });
            }
        }
        if self.chunks.len() > self.limits.compact_after {
            let snapshot = self.session.doc().save();
            let len = snapshot.len();
            let write = StoreWrite::Compact { snapshot, heads, replaces: self.chunks.clone() };
            let request = self.request();
            self.waiting = Waiting::Compact { request, len };
            out.push(ActorAction::Commit { request, writes: vec![write] });
            return;
        }
        self.replies(now, out);
    }

    /// The round's replies, heads announcement and hand-off to the projector; the round ends.
    fn replies(&mut self, now: u64, out: &mut Vec<ActorAction<R>>) {
        let Some(round) = self.round.take() else { return };
        for (peer, outgoing) in self.session.outgoing() {
            let message = match outgoing {
                Outgoing::Sync(data) => Message::Sync(wire::DocMessage {
                    sender_id: self.identity.peer_id.clone(),
                    target_id: peer.clone(),
                    document_id: self.id.to_string(),
                    data,
                }),
                Outgoing::Unavailable => Message::DocUnavailable {
                    sender_id: self.identity.peer_id.clone(),
                    target_id: peer.clone(),
                    document_id: self.id.to_string(),
                },
            };
            out.push(ActorAction::Send { peer, message, if_subscribed: false });
        }
        let heads = self.session.doc().get_heads();
        if heads != round.before {
            self.announce_heads(&heads, now, out);
        }
        let peers: Vec<Peer> =
            round.senders.iter().filter_map(|p| self.conns.get(p).map(|(_, peer)| peer.clone())).collect();
        out.push(ActorAction::Project { before: round.before, peers });
    }

    /// Tells the document's peers that subscribed to the server's storage that it now holds
    /// `heads` (stored: this runs after the commit) — how a client shows "saved on the server".
    fn announce_heads(&self, heads: &[ChangeHash], now: u64, out: &mut Vec<ActorAction<R>>) {
        let storage = &self.identity.storage_id;
        let hex: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
        for peer in self.session.peers() {
            let message = Message::RemoteHeadsChanged {
                sender_id: self.identity.peer_id.clone(),
                target_id: peer.to_owned(),
                document_id: self.id.to_string(),
                new_heads: vec![wire::RemoteHeads { storage_id: storage.clone(), heads: hex.clone(), timestamp: now }],
            };
            out.push(ActorAction::Send { peer: peer.to_owned(), message, if_subscribed: true });
        }
    }

    fn relay(&mut self, from: &str, message: Message, dedup: (String, u64), out: &mut Vec<ActorAction<R>>) {
        if !self.seen_set.insert(dedup.clone()) {
            return;
        }
        self.seen_ephemeral.push_back(dedup);
        if self.seen_ephemeral.len() > self.limits.ephemeral_memory
            && let Some(old) = self.seen_ephemeral.pop_front()
        {
            self.seen_set.remove(&old);
        }
        let Message::Ephemeral { sender_id, document_id, session_id, count, data, .. } = message else { return };
        for peer in self.session.peers().filter(|p| *p != from) {
            let forwarded = Message::Ephemeral {
                sender_id: sender_id.clone(),
                target_id: peer.to_owned(),
                document_id: document_id.clone(),
                session_id: session_id.clone(),
                count,
                data: data.clone(),
            };
            out.push(ActorAction::Send { peer: peer.to_owned(), message: forwarded, if_subscribed: false });
        }
    }
}
