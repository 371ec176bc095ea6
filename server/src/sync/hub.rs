//! The hub: which peers are connected, and one task per document in use.
//!
//! Every message about a document goes through that document's task, in the order its
//! connection received it, so the messages of one (peer, document) are processed strictly in
//! order. A document task applies what it received, stores it through the group committer,
//! and only after the commit sends the replies: a peer is never told its changes arrived before
//! they are durable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hamlet_sync_core::DocumentId;
use hamlet_sync_core::automerge::{ActorId, Automerge, ChangeHash};
use hamlet_sync_core::guard;
use hamlet_sync_core::session::{DocumentSync, Identity, Outgoing, Peer, SyncError, encode_heads};
use hamlet_sync_core::wire::{self, Message};
use tokio::sync::{mpsc, oneshot};

use super::Limits;
use super::access::{WriteRule, check_changes};
use super::metrics::{ErrorKind, Metrics};
pub use super::outbox::Outbound;
use super::outbox::Outbox;
use crate::accounts::Accounts;
use crate::store::{ChunkKind, Committer, Store, StoreError, Write, Written};

/// How long a document stays in memory with no peer before its task ends.
const IDLE: Duration = Duration::from_secs(30);
/// Most commands a document task takes in one round (one commit).
const ROUND: usize = 128;
/// Ephemeral (session, count) pairs remembered per document, to drop duplicates.
const EPHEMERAL_MEMORY: usize = 1024;

/// A round of a document's task, once what it brought is stored.
#[derive(Debug)]
pub struct StoredRound<'a> {
    /// The document.
    pub document: DocumentId,
    /// The document as stored now.
    pub doc: &'a Automerge,
    /// Its heads before the round.
    pub before: &'a [ChangeHash],
    /// The peers whose messages the round handled.
    pub peers: &'a [&'a Peer],
    /// When (unix ms): the time the round's messages were received.
    pub at: i64,
}

/// Told of every stored round: the district's projector is one. Called inside the document's
/// task, so it must be quick and never wait (queue the work).
pub trait RoundObserver: Send + Sync + std::fmt::Debug {
    /// `round` is stored: its changes are durable.
    fn round_stored(&self, round: &StoredRound<'_>);
}

/// An observer that does nothing: a hub with no district (tests, benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl RoundObserver for NoObserver {
    fn round_stored(&self, _: &StoredRound<'_>) {}
}

/// A change the server itself makes to a document (a campaign document, written on behalf of
/// staff). It runs inside the document's task, so it is stored like a peer's changes and then
/// sent to the document's peers. It must write in one transaction: on `Err` nothing is written.
pub type DocWrite = Box<dyn FnOnce(&mut Automerge) -> Result<(), String> + Send>;

/// Why a [`Hub::write`] did not happen.
#[derive(Debug, thiserror::Error)]
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
    /// The document's task ended before answering (the server is stopping).
    #[error("the document's task stopped before answering")]
    Stopped,
}

type WriteReply = oneshot::Sender<Result<Vec<ChangeHash>, WriteError>>;

/// A command for a document task.
enum DocCommand {
    Sync { peer: Peer, conn: u64, data: Vec<u8>, is_request: bool, rule: WriteRule, who: String, at: i64 },
    Ephemeral { from: String, message: Message, dedup: (String, u64) },
    PeerGone { peer: Peer, conn: u64 },
    Write { write: DocWrite, reply: WriteReply },
}

impl DocCommand {
    /// Bytes of peer data the command holds (what a document's queue is bounded by).
    fn bytes(&self) -> usize {
        match self {
            DocCommand::Sync { data, .. } => data.len(),
            DocCommand::Ephemeral { message: Message::Ephemeral { data, .. }, .. } => data.len(),
            _ => 0,
        }
    }
}

/// A document task's queue, and the bytes of peer data waiting in it.
struct DocQueue {
    tx: mpsc::Sender<DocCommand>,
    bytes: Arc<AtomicUsize>,
}

/// The document's queue is full; the connection that sent the command is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is busy with this document; reconnect and retry")]
pub struct Busy;

/// One counted connection of a device ([`Hub::open_device`]).
#[derive(Debug)]
pub struct DeviceConnection {
    hub: Arc<Hub>,
    device: String,
}

impl Drop for DeviceConnection {
    fn drop(&mut self) {
        let mut conns = lock(&self.hub.device_conns);
        if let Some(n) = conns.get_mut(&self.device) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                conns.remove(&self.device);
            }
        }
    }
}

impl std::fmt::Debug for DocCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DocCommand::Sync { .. } => "Sync",
            DocCommand::Ephemeral { .. } => "Ephemeral",
            DocCommand::PeerGone { .. } => "PeerGone",
            DocCommand::Write { .. } => "Write",
        })
    }
}

struct PeerHandle {
    conn: u64,
    /// The peer id as the peer wrote it, for the `targetId` of what is sent to it.
    wire_id: String,
    outbox: Outbox,
    device: Option<String>,
    /// Storage ids whose heads the peer asked to hear of (`remote-subscription-change`).
    subscriptions: HashSet<String>,
}

/// Shared by every connection and document task.
pub struct Hub {
    store: Store,
    committer: Committer,
    identity: Identity,
    limits: Limits,
    metrics: Arc<Metrics>,
    docs: Mutex<HashMap<DocumentId, DocQueue>>,
    /// Joined peers, by their key (see [`Hub::register`]).
    peers: Mutex<HashMap<String, PeerHandle>>,
    /// Open connections per device.
    device_conns: Mutex<HashMap<String, usize>>,
    next_conn: AtomicU64,
    accounts: Accounts,
    /// Told of each stored round (the district's projector).
    observer: Arc<dyn RoundObserver>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("identity", &self.identity).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain maps behind: keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    /// A hub over `store`, committing through `committer`, telling `observer` of each stored
    /// round.
    pub fn new(
        store: Store,
        committer: Committer,
        identity: Identity,
        limits: Limits,
        metrics: Arc<Metrics>,
        accounts: Accounts,
        observer: Arc<dyn RoundObserver>,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            store,
            committer,
            identity,
            limits,
            metrics,
            docs: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            device_conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            accounts,
            observer,
        })
    }

    /// Writes into `document` through its task: the change is stored, then sent to the
    /// document's peers. Returns the document's heads once the change is stored.
    pub async fn write(self: &Arc<Self>, document: DocumentId, write: DocWrite) -> Result<Vec<ChangeHash>, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.dispatch_always(document, DocCommand::Write { write, reply });
        answer.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// The server's identity on the wire.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A fresh connection number.
    pub fn next_connection(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a new connection of `device`; `None` when the device already holds as many as
    /// it may. The connection is counted until the returned guard is dropped.
    pub fn open_device(self: &Arc<Self>, device: &str) -> Option<DeviceConnection> {
        let mut conns = lock(&self.device_conns);
        let n = conns.entry(device.to_owned()).or_default();
        if *n >= self.limits.connections_per_device {
            return None;
        }
        *n += 1;
        Some(DeviceConnection { hub: self.clone(), device: device.to_owned() })
    }

    /// Binds the peer that joined on connection `conn` (for `device`, if the connection is a
    /// device's), and returns the peer as the hub knows it.
    ///
    /// What a peer says of itself is a claim: its peer id and storage id are namespaced by the
    /// device that authenticated the connection, so one device can neither take another's peer
    /// id (and disconnect it) nor read or overwrite another's saved sync state. Within one
    /// device (or among unauthenticated open-mode peers) the newest socket of a peer id wins.
    pub fn register(&self, peer: &Peer, conn: u64, outbox: Outbox, device: Option<&str>) -> Peer {
        let space = device.unwrap_or("-");
        let key = format!("{space}/{}", peer.peer_id);
        let storage_id = peer.storage_id.as_ref().map(|s| format!("{space}/{s}"));
        let handle = PeerHandle {
            conn,
            wire_id: peer.peer_id.clone(),
            outbox,
            device: device.map(str::to_owned),
            subscriptions: HashSet::new(),
        };
        let old = lock(&self.peers).insert(key.clone(), handle);
        if let Some(old) = old.filter(|o| o.conn != conn) {
            old.outbox.close("replaced by a newer connection of the same peer");
        }
        Peer { peer_id: key, storage_id, is_ephemeral: peer.is_ephemeral }
    }

    /// Records which storages' heads `peer` wants to hear of (at most
    /// [`Limits::subscriptions_per_peer`], each of a plausible length).
    pub fn subscribe(&self, peer: &str, add: &[String], remove: &[String]) {
        if let Some(handle) = lock(&self.peers).get_mut(peer) {
            for storage in remove {
                handle.subscriptions.remove(storage);
            }
            for storage in add.iter().filter(|s| s.len() <= wire::MAX_ID_BYTES) {
                if handle.subscriptions.len() >= self.limits.subscriptions_per_peer {
                    break;
                }
                handle.subscriptions.insert(storage.clone());
            }
        }
    }

    fn subscribed(&self, peer: &str, storage: &str) -> bool {
        lock(&self.peers).get(peer).is_some_and(|h| h.subscriptions.contains(storage))
    }

    /// Closes every connection of `device` (it was revoked).
    pub fn close_device(&self, device: &str) {
        for handle in lock(&self.peers).values().filter(|h| h.device.as_deref() == Some(device)) {
            handle.outbox.close("device revoked");
        }
    }

    /// Forgets connection `conn` of `peer`, and tells the documents it synced.
    pub fn unregister(self: &Arc<Self>, peer: &Peer, conn: u64, documents: impl IntoIterator<Item = DocumentId>) {
        {
            let mut peers = lock(&self.peers);
            if peers.get(&peer.peer_id).is_some_and(|h| h.conn == conn) {
                peers.remove(&peer.peer_id);
            }
        }
        for document in documents {
            self.dispatch_always(document, DocCommand::PeerGone { peer: peer.clone(), conn });
        }
    }

    /// Hands a `request` or `sync` to the document's task.
    /// `rule` says how the changes it brings are checked; `who` names the connection in the
    /// audit trail; `at` is when it was received (unix ms). `Err(Busy)` when the document's queue is full: the caller closes the
    /// connection rather than holding more.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        self: &Arc<Self>,
        document: DocumentId,
        peer: &Peer,
        conn: u64,
        data: Vec<u8>,
        is_request: bool,
        rule: WriteRule,
        who: String,
        at: i64,
    ) -> Result<(), Busy> {
        self.dispatch(document, DocCommand::Sync { peer: peer.clone(), conn, data, is_request, rule, who, at })
    }

    /// Hands an ephemeral message to the document's task, to relay.
    pub fn ephemeral(
        self: &Arc<Self>,
        document: DocumentId,
        from: &str,
        message: Message,
        dedup: (String, u64),
    ) -> Result<(), Busy> {
        self.dispatch(document, DocCommand::Ephemeral { from: from.to_owned(), message, dedup })
    }

    /// Sends `message` to `peer` if it is connected (with the peer's own id as `targetId`). A
    /// peer whose queue is full is asked to close instead.
    fn send(&self, peer: &str, message: &Message) {
        let peers = lock(&self.peers);
        let Some(handle) = peers.get(peer) else { return };
        let mut message = message.clone();
        message.set_target_id(&handle.wire_id);
        let bytes = wire::encode(&message);
        let len = bytes.len();
        if handle.outbox.push(bytes) {
            self.metrics.message_out(len);
        } else {
            self.metrics.error(ErrorKind::Overloaded);
        }
    }

    /// Queues `command` for the document's task, starting the task if there is none.
    fn dispatch(self: &Arc<Self>, document: DocumentId, command: DocCommand) -> Result<(), Busy> {
        let bytes = command.bytes();
        let mut docs = lock(&self.docs);
        let command = match docs.get(&document) {
            Some(queue) => {
                if queue.bytes.load(Ordering::Acquire) + bytes > self.limits.document_bytes_queued {
                    self.metrics.error(ErrorKind::Overloaded);
                    return Err(Busy);
                }
                match queue.tx.try_send(command) {
                    Ok(()) => {
                        queue.bytes.fetch_add(bytes, Ordering::AcqRel);
                        return Ok(());
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.metrics.error(ErrorKind::Overloaded);
                        return Err(Busy);
                    }
                    // The task ended (idle, or it panicked); start a new one with the command.
                    Err(mpsc::error::TrySendError::Closed(command)) => command,
                }
            }
            None => command,
        };
        let (tx, rx) = mpsc::channel(self.limits.document_commands.max(1));
        let queued = Arc::new(AtomicUsize::new(bytes));
        // The receiver is alive and the channel empty: it was just made.
        let _ = tx.try_send(command);
        docs.insert(document, DocQueue { tx, bytes: queued.clone() });
        let task = tokio::spawn(DocumentTask::run(self.clone(), document, rx, queued));
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = task.await
                && e.is_panic()
            {
                // The task's commands are lost (their peers hear nothing and resend); the next
                // command for the document starts a fresh task from storage.
                metrics.error(ErrorKind::Panic);
                tracing::error!(document = %document, "a document task panicked");
            }
        });
        Ok(())
    }

    /// Like [`dispatch`](Self::dispatch) for commands that must not be dropped (a peer leaving,
    /// a staff write): when the queue is full they wait for room.
    fn dispatch_always(self: &Arc<Self>, document: DocumentId, command: DocCommand) {
        let full = {
            let docs = lock(&self.docs);
            match docs.get(&document) {
                Some(queue) => match queue.tx.try_send(command) {
                    Ok(()) => return,
                    Err(mpsc::error::TrySendError::Full(command)) => Ok((queue.tx.clone(), command)),
                    Err(mpsc::error::TrySendError::Closed(command)) => Err(command),
                },
                None => Err(command),
            }
        };
        match full {
            Ok((tx, command)) => {
                tokio::spawn(async move {
                    let _ = tx.send(command).await;
                });
            }
            // No task holds the document, so none holds the peer.
            Err(DocCommand::PeerGone { .. }) => {}
            // A new queue is never busy.
            Err(command) => {
                let _ = self.dispatch(document, command);
            }
        }
    }

    /// Ends every document task once it has finished what it holds (used at shutdown).
    pub fn close_documents(&self) {
        lock(&self.docs).clear();
    }

    /// Documents held in memory now.
    pub fn documents_in_memory(&self) -> usize {
        lock(&self.docs).len()
    }
}

/// What a document task keeps between rounds.
struct DocumentTask {
    hub: Arc<Hub>,
    id: DocumentId,
    session: DocumentSync,
    /// Chunk ids the in-memory document was built from (what a compaction may delete).
    chunks: Vec<i64>,
    stored_bytes: usize,
    /// The connection each peer of the session syncs through.
    conns: HashMap<String, (u64, Peer)>,
    seen_ephemeral: VecDeque<(String, u64)>,
    seen_set: HashSet<(String, u64)>,
    /// Bytes of changes each actor has in the document, once a device's changes needed it.
    actor_bytes: Option<HashMap<ActorId, usize>>,
}

impl DocumentTask {
    async fn load(hub: Arc<Hub>, id: DocumentId) -> Result<DocumentTask, StoreError> {
        let stored = hub.store.load(&id.to_string()).await?;
        let mut doc = Automerge::new();
        let mut chunks = Vec::with_capacity(stored.len());
        let mut stored_bytes = 0;
        for chunk in stored {
            // A chunk that does not load is kept in the database for inspection and skipped
            // here, so one bad chunk cannot make a whole document unavailable.
            if let Err(e) = doc.load_incremental(&chunk.data) {
                tracing::error!(document = %id, chunk = chunk.id, error = %e, "stored chunk does not load");
            }
            stored_bytes += chunk.data.len();
            chunks.push(chunk.id);
        }
        hub.metrics.document_loaded();
        let limits = guard::Limits { max_inflated_bytes: hub.limits.max_document_bytes, ..guard::Limits::default() };
        Ok(DocumentTask {
            hub,
            id,
            session: DocumentSync::with_limits(id, doc, limits),
            chunks,
            stored_bytes,
            conns: HashMap::new(),
            seen_ephemeral: VecDeque::new(),
            seen_set: HashSet::new(),
            actor_bytes: None,
        })
    }

    async fn run(hub: Arc<Hub>, id: DocumentId, mut rx: mpsc::Receiver<DocCommand>, queued: Arc<AtomicUsize>) {
        let mut task = match DocumentTask::load(hub.clone(), id).await {
            Ok(task) => task,
            Err(e) => {
                tracing::error!(document = %id, error = %e, "cannot load document");
                hub.metrics.error(ErrorKind::Storage);
                DocumentTask::refuse_all(&hub, id, &mut rx, "the server cannot read this document now; retry later");
                return;
            }
        };
        loop {
            let first = match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(command)) => command,
                Ok(None) => break,
                Err(_) if task.conns.is_empty() => {
                    // Idle with no peer: leave memory, unless a command slipped in meanwhile.
                    let mut docs = lock(&hub.docs);
                    if rx.is_empty() {
                        docs.remove(&id);
                        break;
                    }
                    continue;
                }
                Err(_) => continue,
            };
            let mut round = vec![first];
            while round.len() < ROUND {
                match rx.try_recv() {
                    Ok(command) => round.push(command),
                    Err(_) => break,
                }
            }
            queued.fetch_sub(round.iter().map(DocCommand::bytes).sum::<usize>(), Ordering::AcqRel);
            task.round(round).await;
        }
        // Whatever arrived after the map entry was removed goes to a fresh task.
        rx.close();
        while let Ok(command) = rx.try_recv() {
            hub.dispatch_always(id, command);
        }
    }

    fn refuse_all(hub: &Arc<Hub>, id: DocumentId, rx: &mut mpsc::Receiver<DocCommand>, reason: &str) {
        lock(&hub.docs).remove(&id);
        rx.close();
        while let Ok(command) = rx.try_recv() {
            if let DocCommand::Sync { peer, .. } = command {
                hub.send(&peer.peer_id, &error(&hub.identity, &peer.peer_id, reason));
            }
        }
    }

    /// Processes a round of commands: apply, store once, then reply.
    async fn round(&mut self, commands: Vec<DocCommand>) {
        let mut writes = Vec::new();
        let mut senders: Vec<String> = Vec::new();
        let before = self.session.doc().get_heads();
        let mut write_replies: Vec<WriteReply> = Vec::new();
        let mut received_at: Option<i64> = None;
        let fail_writes = |replies: &mut Vec<WriteReply>, error: fn() -> WriteError| {
            for reply in replies.drain(..) {
                let _ = reply.send(Err(error()));
            }
        };
        for command in commands {
            match command {
                DocCommand::Write { write, reply } => match write(self.session.doc_mut()) {
                    Ok(()) => write_replies.push(reply),
                    Err(reason) => {
                        let _ = reply.send(Err(WriteError::Refused(reason)));
                    }
                },
                DocCommand::Sync { peer, conn, data, is_request, rule, who, at } => {
                    received_at = Some(received_at.map_or(at, |t| t.max(at)));
                    self.ensure_peer(&peer, conn).await;
                    let heads_before = self.session.doc().get_heads();
                    match self.session.receive(&peer.peer_id, &data, is_request) {
                        Ok(true) if rule != WriteRule::Any => {
                            let added = self.session.doc().get_changes(&heads_before);
                            let checked =
                                match check_changes(&self.hub.accounts, &rule, self.session.doc(), &added).await {
                                    Ok(()) => self.charge_actors(&added),
                                    Err(refusal) => Err(refusal.to_string()),
                                };
                            if let Err(reason) = checked {
                                self.session.revert(&peer.peer_id, &heads_before);
                                self.refuse(&peer, &who, &reason).await;
                                continue;
                            }
                            if !senders.contains(&peer.peer_id) {
                                senders.push(peer.peer_id.clone());
                            }
                        }
                        Ok(_) => {
                            if !senders.contains(&peer.peer_id) {
                                senders.push(peer.peer_id.clone());
                            }
                        }
                        Err(e) => {
                            tracing::warn!(document = %self.id, peer = %peer.peer_id, error = %e, "sync message refused");
                            let kind = if matches!(e, SyncError::Panicked) {
                                ErrorKind::Panic
                            } else {
                                ErrorKind::InvalidSync
                            };
                            self.hub.metrics.error(kind);
                            self.hub.send(&peer.peer_id, &error(&self.hub.identity, &peer.peer_id, &e.to_string()));
                            if matches!(e, SyncError::Panicked) {
                                // Automerge stopped half-way: the in-memory document cannot be
                                // trusted. Start again from storage (this round's unsaved
                                // changes go; no one was told they arrived, so they come again).
                                fail_writes(&mut write_replies, || WriteError::Storage);
                                senders.clear();
                                self.reload().await;
                            }
                            // Otherwise the session put the document back as it was before
                            // this message; others' changes and sync states stay.
                        }
                    }
                }
                DocCommand::Ephemeral { from, message, dedup } => self.relay(&from, message, dedup),
                DocCommand::PeerGone { peer, conn } => {
                    if self.conns.get(&peer.peer_id).is_some_and(|(c, _)| *c == conn) {
                        if let (Some(storage), Some(state)) =
                            (peer.durable_storage_id(), self.session.encoded_state(&peer.peer_id))
                        {
                            writes.push(Write::SyncState {
                                document: self.id.to_string(),
                                storage_id: storage.to_owned(),
                                state,
                            });
                        }
                        self.session.remove_peer(&peer.peer_id);
                        self.conns.remove(&peer.peer_id);
                    }
                }
            }
        }
        let unsaved = self.session.unsaved();
        if let Some(u) = &unsaved {
            if self.stored_bytes + u.chunk.len() > self.hub.limits.max_document_bytes {
                self.hub.metrics.error(ErrorKind::DocumentTooLarge);
                let reason = format!(
                    "document {} would exceed the size limit of {} bytes; its new changes were not stored",
                    self.id, self.hub.limits.max_document_bytes
                );
                tracing::warn!(document = %self.id, "document over the size limit");
                // Nothing of this round is stored: put the document back as it was before it,
                // and let the senders start their sync afresh.
                self.session.rewind(&before);
                for peer in &senders {
                    self.hub.send(peer, &error(&self.hub.identity, peer, &reason));
                    self.session.reset_peer(peer);
                }
                fail_writes(&mut write_replies, || WriteError::TooLarge);
                self.actor_bytes = None;
                return;
            }
            writes.push(Write::Chunk {
                document: self.id.to_string(),
                kind: ChunkKind::Incremental,
                data: u.chunk.clone(),
                heads: encode_heads(&u.heads),
            });
        }
        for peer in &senders {
            if let Some((_, p)) = self.conns.get(peer)
                && let (Some(storage), Some(state)) = (p.durable_storage_id(), self.session.encoded_state(peer))
            {
                writes.push(Write::SyncState { document: self.id.to_string(), storage_id: storage.to_owned(), state });
            }
        }
        if !writes.is_empty() {
            let started = Instant::now();
            match self.hub.committer.commit(writes).await {
                Ok(written) => {
                    self.hub.metrics.committed(started.elapsed());
                    if let Some(u) = unsaved {
                        self.stored_bytes += u.chunk.len();
                        self.chunks.extend(written.iter().filter_map(|w| match w {
                            Written::Chunk { id } => Some(*id),
                            _ => None,
                        }));
                        self.session.saved(u.heads);
                    }
                }
                Err(e) => {
                    tracing::error!(document = %self.id, error = %e, "commit failed");
                    self.hub.metrics.error(ErrorKind::Storage);
                    for peer in &senders {
                        let reason = "the server could not store these changes; they will be sent again";
                        self.hub.send(peer, &error(&self.hub.identity, peer, reason));
                    }
                    fail_writes(&mut write_replies, || WriteError::Storage);
                    self.reload().await;
                    return;
                }
            }
        }
        let heads = self.session.doc().get_heads();
        for reply in write_replies {
            let _ = reply.send(Ok(heads.clone()));
        }
        if self.chunks.len() > self.hub.limits.compact_after {
            self.compact().await;
        }
        for (peer, out) in self.session.outgoing() {
            let message = match out {
                Outgoing::Sync(data) => Message::Sync(wire::DocMessage {
                    sender_id: self.hub.identity.peer_id.clone(),
                    target_id: peer.clone(),
                    document_id: self.id.to_string(),
                    data,
                }),
                Outgoing::Unavailable => Message::DocUnavailable {
                    sender_id: self.hub.identity.peer_id.clone(),
                    target_id: peer.clone(),
                    document_id: self.id.to_string(),
                },
            };
            self.hub.send(&peer, &message);
        }
        let heads = self.session.doc().get_heads();
        if heads != before {
            self.announce_heads(&heads);
        }
        let peers: Vec<&Peer> = senders.iter().filter_map(|p| self.conns.get(p).map(|(_, peer)| peer)).collect();
        self.hub.observer.round_stored(&StoredRound {
            document: self.id,
            doc: self.session.doc(),
            before: &before,
            peers: &peers,
            at: received_at.unwrap_or_else(|| self.hub.store.now_ms()),
        });
    }

    /// Tells the document's peers that subscribed to this server's storage that it now holds
    /// `heads` (stored: this runs after the commit) — how a client shows "saved on the server".
    fn announce_heads(&self, heads: &[ChangeHash]) {
        let storage = &self.hub.identity.storage_id;
        let timestamp = u64::try_from(self.hub.store.now_ms()).unwrap_or(0);
        let hex: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
        for peer in self.session.peers().filter(|p| self.hub.subscribed(p, storage)) {
            let message = Message::RemoteHeadsChanged {
                sender_id: self.hub.identity.peer_id.clone(),
                target_id: peer.to_owned(),
                document_id: self.id.to_string(),
                new_heads: vec![wire::RemoteHeads { storage_id: storage.clone(), heads: hex.clone(), timestamp }],
            };
            self.hub.send(peer, &message);
        }
    }

    /// Counts `added` (changes that passed the access check) against what each actor may add
    /// to one document; refuses them all if one actor goes over.
    fn charge_actors(&mut self, added: &[hamlet_sync_core::automerge::Change]) -> Result<(), String> {
        let max = self.hub.limits.max_actor_bytes();
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
                self.hub.metrics.error(ErrorKind::RateLimited);
                return Err(format!(
                    "one device may add at most {max} bytes to one hamlet's ledger, and these changes would bring \
                     this device to {total}; ask the district to look at this ledger"
                ));
            }
        }
        *totals = after;
        Ok(())
    }

    /// Refuses a message whose changes break the access rules (the caller has already put the
    /// document back as it was before the message): the peer is told and the event audited.
    /// Other peers' changes in this round, and their sync states, stay.
    async fn refuse(&mut self, peer: &Peer, who: &str, reason: &str) {
        tracing::warn!(document = %self.id, peer = %peer.peer_id, who, reason, "changes refused");
        self.hub.metrics.error(ErrorKind::Forbidden);
        // Audited before the peer hears of it, so that what it reads next already shows it.
        if let Err(e) = self.hub.accounts.audit(who, "sync.refused", &self.id.to_string(), reason).await {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        let message = format!("changes refused, nothing of this message was stored: {reason}");
        self.hub.send(&peer.peer_id, &error(&self.hub.identity, &peer.peer_id, &message));
    }

    /// Adds `peer` to the session on its first message through connection `conn`, with the
    /// sync state saved for its storage if there is one.
    async fn ensure_peer(&mut self, peer: &Peer, conn: u64) {
        if self.conns.get(&peer.peer_id).is_some_and(|(c, _)| *c == conn) {
            return;
        }
        let saved = match peer.durable_storage_id() {
            Some(storage) => self.hub.store.load_sync_state(&self.id.to_string(), storage).await.unwrap_or_else(|e| {
                tracing::warn!(document = %self.id, error = %e, "cannot read saved sync state; starting afresh");
                None
            }),
            None => None,
        };
        self.session.add_peer(&peer.peer_id, saved.as_deref());
        self.conns.insert(peer.peer_id.clone(), (conn, peer.clone()));
    }

    /// Drops the in-memory document and loads it again from storage; peers start their sync
    /// afresh, which costs a round trip and loses nothing.
    async fn reload(&mut self) {
        match DocumentTask::load(self.hub.clone(), self.id).await {
            Ok(fresh) => {
                self.session = fresh.session;
                self.chunks = fresh.chunks;
                self.stored_bytes = fresh.stored_bytes;
                self.actor_bytes = None;
                for peer in self.conns.keys() {
                    self.session.add_peer(peer, None);
                }
            }
            Err(e) => {
                tracing::error!(document = %self.id, error = %e, "cannot reload document");
                self.hub.metrics.error(ErrorKind::Storage);
            }
        }
    }

    /// Replaces the chunks this task loaded or wrote by one snapshot. Chunks another process
    /// appended meanwhile are not in `replaces`, so they stay.
    async fn compact(&mut self) {
        let snapshot = self.session.doc().save();
        let len = snapshot.len();
        let write = Write::Compact {
            document: self.id.to_string(),
            snapshot,
            heads: encode_heads(&self.session.doc().get_heads()),
            replaces: self.chunks.clone(),
        };
        match self.hub.committer.commit(vec![write]).await {
            Ok(written) => {
                if let Some(Written::Compacted { id }) = written.first() {
                    self.chunks = vec![*id];
                    self.stored_bytes = len;
                }
            }
            Err(e) => {
                // Typically another process compacted first: nothing is lost, but our list of
                // chunks is stale, so read the document again before compacting later.
                tracing::info!(document = %self.id, error = %e, "compaction skipped; reloading");
                self.reload().await;
            }
        }
    }

    fn relay(&mut self, from: &str, message: Message, dedup: (String, u64)) {
        if !self.seen_set.insert(dedup.clone()) {
            return;
        }
        self.seen_ephemeral.push_back(dedup);
        if self.seen_ephemeral.len() > EPHEMERAL_MEMORY
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
            self.hub.send(peer, &forwarded);
        }
    }
}

fn error(identity: &Identity, peer: &str, message: &str) -> Message {
    Message::Error {
        sender_id: Some(identity.peer_id.clone()),
        target_id: Some(peer.to_owned()),
        message: message.to_owned(),
    }
}
