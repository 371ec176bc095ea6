//! The hub: the executor of sync-core's [`hub::Hub`](CoreHub) and
//! [`DocumentActor`]s. Everything the protocol decides — who a peer is, the newest socket of a
//! peer winning, what a connection may read, the bounds on frames, rates and subscriptions,
//! rounds, refusals, when a reply may leave, compaction, ephemeral relay — is decided there,
//! without I/O; this file carries out what they ask, as `mobile-bindings/src/sync.rs` does for
//! the phone's `ClientSession`:
//!
//! - a connection's frames become [`HubEvent`]s ([`Hub::frame`]), and the hub's actions become
//!   frames queued in the connection's [`Outbox`], closes, audit entries, and commands queued
//!   for a document;
//! - each document in use has a task owning its [`DocumentActor`]: it feeds the actor the
//!   commands that queued up, performs the actor's requests against the [`Store`], the
//!   [`Committer`] and the access check ([`check_changes`]) and feeds the answers back, hands
//!   the actor's messages to the hub, answers staff writes, and reports stored rounds to the
//!   [`RoundObserver`] (the district's projector).
//!
//! What stays here is what needs the runtime: the bounded queues in front of each document
//! (a full one closes the sending connection as busy), a document leaving memory after
//! `IDLE` (30 s) with no peer, a panicked document task counted and replaced on the next command.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hamlet_sync_core::DocumentId;
use hamlet_sync_core::actor::{
    ActorAction, ActorEvent, ActorLimits, Command, ConnId, DocumentActor, Incident, StoreWrite, StoredChunk,
};
pub use hamlet_sync_core::actor::{DocWrite, WriteError};
use hamlet_sync_core::automerge::{Automerge, ChangeHash};
use hamlet_sync_core::hub::{Access, Hub as CoreHub, HubAction, HubEvent, HubIncident, HubLimits};
use hamlet_sync_core::session::{Identity, Peer, encode_heads};
use hamlet_sync_core::wire::{self, Message};
use tokio::sync::{mpsc, oneshot};

use super::Limits;
use super::access::{SyncAccess, WriteRule, check_changes};
use super::metrics::{ErrorKind, Metrics};
pub use super::outbox::Outbound;
use super::outbox::Outbox;
use crate::accounts::Accounts;
use crate::store::{ChunkKind, Committer, Store, Write, Written};

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

/// What one connection may do, as sync-core's hub asks it.
#[derive(Debug, Clone)]
pub struct ConnAccess(pub Arc<SyncAccess>);

impl Access for ConnAccess {
    type Rule = WriteRule;

    fn can_read(&self, document: &DocumentId) -> bool {
        self.0.can_read(document)
    }

    fn write_rule(&self, document: &DocumentId) -> Option<WriteRule> {
        match self.0.write_rule(document) {
            WriteRule::Any => None,
            rule => Some(rule),
        }
    }

    fn who(&self) -> String {
        self.0.who()
    }

    fn device(&self) -> Option<&str> {
        self.0.device_id()
    }
}

type WriteReply = oneshot::Sender<Result<Vec<ChangeHash>, WriteError>>;

/// What waits in a document's queue.
enum Input {
    /// A command from the hub, with when its frame was received (unix ms).
    Command { command: Command<WriteRule>, at: i64 },
    /// A staff write and where to answer.
    Write { write: DocWrite, reply: WriteReply },
}

impl Input {
    /// Bytes of peer data it holds (what a document's queue is bounded by).
    fn bytes(&self) -> usize {
        match self {
            Input::Command { command, .. } => command.bytes(),
            Input::Write { .. } => 0,
        }
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Command { command, .. } => command.fmt(f),
            Input::Write { .. } => f.write_str("Write"),
        }
    }
}

/// A document task's queue, and the bytes of peer data waiting in it.
struct DocQueue {
    tx: mpsc::Sender<Input>,
    bytes: Arc<AtomicUsize>,
}

/// The document's queue is full; the connection that sent the command is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is busy with this document; reconnect and retry")]
pub struct Busy;

/// sync-core's hub and the outbox of each of its connections, behind one short lock.
struct Connections {
    hub: CoreHub<ConnAccess>,
    outboxes: HashMap<ConnId, Outbox>,
}

/// Shared by every connection and document task.
pub struct Hub {
    store: Store,
    committer: Committer,
    identity: Identity,
    limits: Limits,
    metrics: Arc<Metrics>,
    accounts: Accounts,
    /// Told of each stored round (the district's projector).
    observer: Arc<dyn RoundObserver>,
    connections: Mutex<Connections>,
    docs: Mutex<HashMap<DocumentId, DocQueue>>,
    /// The origin of the hub's own clock (rate limits), which only moves forward.
    started: Instant,
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

/// An audit entry the hub asked for, written before the actions after it.
struct AuditEntry {
    who: String,
    action: &'static str,
    target: String,
    detail: String,
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
        let hub_limits = HubLimits {
            max_message_bytes: limits.max_message_bytes,
            max_ephemeral_bytes: limits.max_ephemeral_bytes,
            subscriptions_per_peer: limits.subscriptions_per_peer,
            connections_per_device: limits.connections_per_device,
            device_messages_per_second: limits.device_messages_per_second,
        };
        Arc::new(Hub {
            store,
            committer,
            connections: Mutex::new(Connections {
                hub: CoreHub::new(identity.clone(), hub_limits),
                outboxes: HashMap::new(),
            }),
            identity,
            limits,
            metrics,
            accounts,
            observer,
            docs: Mutex::new(HashMap::new()),
            started: Instant::now(),
        })
    }

    /// Writes into `document` through its task: the change is stored, then sent to the
    /// document's peers. Returns the document's heads once the change is stored.
    pub async fn write(self: &Arc<Self>, document: DocumentId, write: DocWrite) -> Result<Vec<ChangeHash>, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.dispatch_always(document, Input::Write { write, reply });
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

    /// The hub's own clock, in milliseconds: monotonic, for rate limits.
    fn tick(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Opens a connection with `access`, whose frames leave through `outbox`. A device already
    /// holding as many connections as it may has the new one closed at once.
    pub fn open(self: &Arc<Self>, access: Arc<SyncAccess>, outbox: Outbox) -> ConnId {
        let (conn, actions) = {
            let mut connections = lock(&self.connections);
            let (conn, actions) = connections.hub.open(ConnAccess(access), self.tick());
            connections.outboxes.insert(conn, outbox);
            (conn, actions)
        };
        self.carry_out_now(actions, 0, None);
        conn
    }

    /// A binary frame read on `conn`, at `at` (unix ms: when it was received, which dates what
    /// it brings for the district).
    pub async fn frame(self: &Arc<Self>, conn: ConnId, bytes: Vec<u8>, at: i64) {
        let actions = lock(&self.connections).hub.handle(HubEvent::Frame { conn, bytes }, self.tick());
        self.carry_out(actions, at, conn).await;
    }

    /// Like [`frame`](Self::frame), for a caller that cannot wait (a simulated phone joining):
    /// an audit entry the frame leads to is written in the background, not before what follows.
    pub fn frame_now(self: &Arc<Self>, conn: ConnId, bytes: Vec<u8>, at: i64) {
        let actions = lock(&self.connections).hub.handle(HubEvent::Frame { conn, bytes }, self.tick());
        self.carry_out_now(actions, at, Some(conn));
    }

    /// Asks for `conn` to be closed with `reason` (the peer hears it as an `error` first).
    pub fn close_connection(self: &Arc<Self>, conn: ConnId, reason: &str) {
        let actions =
            lock(&self.connections).hub.handle(HubEvent::Close { conn, reason: reason.to_owned() }, self.tick());
        self.carry_out_now(actions, 0, None);
    }

    /// `conn` is closed: forgets it, and tells the documents its peer synced.
    pub fn closed(self: &Arc<Self>, conn: ConnId) {
        let actions = {
            let mut connections = lock(&self.connections);
            connections.outboxes.remove(&conn);
            connections.hub.handle(HubEvent::Closed { conn }, self.tick())
        };
        self.carry_out_now(actions, 0, None);
    }

    /// Closes every connection of `device` (it was revoked).
    pub fn close_device(self: &Arc<Self>, device: &str) {
        let actions = lock(&self.connections).hub.handle(HubEvent::Revoked { device: device.to_owned() }, self.tick());
        self.carry_out_now(actions, 0, None);
    }

    /// A document's actor sends `message` to `peer`.
    fn deliver(self: &Arc<Self>, peer: String, message: Message, if_subscribed: bool) {
        let actions =
            lock(&self.connections).hub.handle(HubEvent::Deliver { peer, message, if_subscribed }, self.tick());
        self.carry_out_now(actions, 0, None);
    }

    /// Carries out the actions a frame from `from` led to, in order, each audit entry written
    /// before what follows.
    async fn carry_out(self: &Arc<Self>, actions: Vec<HubAction<ConnAccess>>, at: i64, from: ConnId) {
        for action in actions {
            if let Some(entry) = self.carry_out_one(action, at, Some(from)) {
                self.audit(entry).await;
            }
        }
    }

    /// Like [`carry_out`](Self::carry_out) where no audit entry is expected (closes, deliveries,
    /// connections going); one that comes anyway is written in the background.
    fn carry_out_now(self: &Arc<Self>, actions: Vec<HubAction<ConnAccess>>, at: i64, from: Option<ConnId>) {
        for action in actions {
            if let Some(entry) = self.carry_out_one(action, at, from) {
                let hub = self.clone();
                tokio::spawn(async move { hub.audit(entry).await });
            }
        }
    }

    async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.accounts.audit(&entry.who, entry.action, &entry.target, &entry.detail).await {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }

    /// Carries out one action; `from` is the connection whose frame led to it, if one did.
    fn carry_out_one(
        self: &Arc<Self>,
        action: HubAction<ConnAccess>,
        at: i64,
        from: Option<ConnId>,
    ) -> Option<AuditEntry> {
        match action {
            HubAction::Send { conn, message } => self.send(conn, &message),
            HubAction::Close { conn, error, reason } => {
                let outbox = lock(&self.connections).outboxes.get(&conn).cloned();
                if let Some(outbox) = outbox {
                    let error = error.map(|m| wire::encode(&m));
                    outbox.close(error, &reason);
                }
            }
            HubAction::Audit { who, action, target, detail } => {
                return Some(AuditEntry { who, action, target, detail });
            }
            HubAction::ToDocument { document, command } => self.to_document(document, command, at, from),
            HubAction::Note(incident) => self.note_hub(&incident),
        }
        None
    }

    /// Queues a command from the hub for its document; a full queue closes the connection whose
    /// frame it came from.
    fn to_document(self: &Arc<Self>, document: DocumentId, command: Command<WriteRule>, at: i64, from: Option<ConnId>) {
        match command {
            Command::PeerGone { .. } => self.dispatch_always(document, Input::Command { command, at }),
            command => {
                if let Err(busy) = self.dispatch(document, Input::Command { command, at })
                    && let Some(conn) = from
                {
                    self.close_connection(conn, &busy.to_string());
                }
            }
        }
    }

    /// Queues `message` on `conn`'s outbox. A connection whose queue is full is closed.
    fn send(self: &Arc<Self>, conn: ConnId, message: &Message) {
        let Some(outbox) = lock(&self.connections).outboxes.get(&conn).cloned() else { return };
        let bytes = wire::encode(message);
        let len = bytes.len();
        if outbox.push(bytes) {
            self.metrics.message_out(len);
        } else {
            self.metrics.error(ErrorKind::Overloaded);
            self.close_connection(conn, "the connection is not reading what the server sends; reconnect");
        }
    }

    fn note_hub(&self, incident: &HubIncident) {
        match incident {
            HubIncident::Denied => {
                self.metrics.error(ErrorKind::Forbidden);
                tracing::info!("document denied");
            }
            HubIncident::TooLarge => {
                self.metrics.error(ErrorKind::MessageTooLarge);
                tracing::warn!("message over the size limit");
            }
            HubIncident::RateLimited => {
                self.metrics.error(ErrorKind::RateLimited);
                tracing::warn!("device over its message rate or connection count");
            }
            HubIncident::Protocol(e) => {
                self.metrics.error(ErrorKind::Protocol);
                tracing::warn!(error = %e, "protocol error");
            }
            HubIncident::Panic => {
                self.metrics.error(ErrorKind::Panic);
                tracing::error!("decoding a message panicked");
            }
        }
    }

    fn actor_limits(&self) -> ActorLimits {
        ActorLimits {
            max_document_bytes: self.limits.max_document_bytes,
            compact_after: self.limits.compact_after,
            round: ROUND,
            ephemeral_memory: EPHEMERAL_MEMORY,
        }
    }

    /// Queues `input` for the document's task, starting the task if there is none.
    fn dispatch(self: &Arc<Self>, document: DocumentId, input: Input) -> Result<(), Busy> {
        let bytes = input.bytes();
        let mut docs = lock(&self.docs);
        let input = match docs.get(&document) {
            Some(queue) => {
                if queue.bytes.load(Ordering::Acquire) + bytes > self.limits.document_bytes_queued {
                    self.metrics.error(ErrorKind::Overloaded);
                    return Err(Busy);
                }
                match queue.tx.try_send(input) {
                    Ok(()) => {
                        queue.bytes.fetch_add(bytes, Ordering::AcqRel);
                        return Ok(());
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.metrics.error(ErrorKind::Overloaded);
                        return Err(Busy);
                    }
                    // The task ended (idle, or it panicked); start a new one with the command.
                    Err(mpsc::error::TrySendError::Closed(input)) => input,
                }
            }
            None => input,
        };
        let (tx, rx) = mpsc::channel(self.limits.document_commands.max(1));
        let queued = Arc::new(AtomicUsize::new(bytes));
        // The receiver is alive and the channel empty: it was just made.
        let _ = tx.try_send(input);
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

    /// Like [`dispatch`](Self::dispatch) for what must not be dropped (a peer leaving, a staff
    /// write): when the queue is full it waits for room.
    fn dispatch_always(self: &Arc<Self>, document: DocumentId, input: Input) {
        let full = {
            let docs = lock(&self.docs);
            match docs.get(&document) {
                Some(queue) => match queue.tx.try_send(input) {
                    Ok(()) => return,
                    Err(mpsc::error::TrySendError::Full(input)) => Ok((queue.tx.clone(), input)),
                    Err(mpsc::error::TrySendError::Closed(input)) => Err(input),
                },
                None => Err(input),
            }
        };
        match full {
            Ok((tx, input)) => {
                tokio::spawn(async move {
                    let _ = tx.send(input).await;
                });
            }
            // No task holds the document, so none holds the peer.
            Err(Input::Command { command: Command::PeerGone { .. }, .. }) => {}
            // A new queue is never busy.
            Err(input) => {
                let _ = self.dispatch(document, input);
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

/// A document's task: its actor, and the staff writes waiting for an answer.
struct DocumentTask {
    hub: Arc<Hub>,
    id: DocumentId,
    actor: DocumentActor<WriteRule>,
    replies: HashMap<u64, WriteReply>,
    next_ticket: u64,
    /// When the current round's messages were received (the latest), if it has any.
    at: Option<i64>,
    /// How long the last commit took, for the metrics once the actor says it counted.
    last_commit: Option<Duration>,
}

impl DocumentTask {
    async fn run(hub: Arc<Hub>, id: DocumentId, mut rx: mpsc::Receiver<Input>, queued: Arc<AtomicUsize>) {
        let (actor, actions) = DocumentActor::new(id, hub.identity.clone(), hub.actor_limits());
        let mut task = DocumentTask {
            hub: hub.clone(),
            id,
            actor,
            replies: HashMap::new(),
            next_ticket: 1,
            at: None,
            last_commit: None,
        };
        task.execute(actions).await;
        loop {
            if task.actor.is_stopped() {
                // The document cannot be read: whatever waits is answered, and the next command
                // starts a fresh task.
                lock(&hub.docs).remove(&id);
                rx.close();
                let mut rest = Vec::new();
                while let Ok(input) = rx.try_recv() {
                    rest.push(input);
                }
                task.feed(rest).await;
                return;
            }
            let first = match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(input)) => input,
                Ok(None) => break,
                Err(_) if !task.actor.has_peers() => {
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
            let mut batch = vec![first];
            while batch.len() < ROUND {
                match rx.try_recv() {
                    Ok(input) => batch.push(input),
                    Err(_) => break,
                }
            }
            queued.fetch_sub(batch.iter().map(Input::bytes).sum::<usize>(), Ordering::AcqRel);
            task.feed(batch).await;
        }
        // Whatever arrived after the map entry was removed goes to a fresh task.
        rx.close();
        while let Ok(input) = rx.try_recv() {
            hub.dispatch_always(id, input);
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.hub.store.now_ms()).unwrap_or(0)
    }

    /// Gives the actor a batch (one round: the actor is idle, and a batch is at most a round).
    async fn feed(&mut self, batch: Vec<Input>) {
        if batch.is_empty() {
            return;
        }
        let mut commands = Vec::with_capacity(batch.len());
        let mut at: Option<i64> = None;
        for input in batch {
            match input {
                Input::Command { command, at: received } => {
                    if matches!(command, Command::Sync { .. }) {
                        at = Some(at.map_or(received, |t| t.max(received)));
                    }
                    commands.push(command);
                }
                Input::Write { write, reply } => {
                    let ticket = self.next_ticket;
                    self.next_ticket += 1;
                    self.replies.insert(ticket, reply);
                    commands.push(Command::Write { write, ticket });
                }
            }
        }
        self.at = at;
        let now = self.now();
        let actions = self.actor.handle(ActorEvent::Commands(commands), now);
        self.execute(actions).await;
    }

    /// Carries out the actor's actions in order, feeding each request's answer back, until it
    /// waits for nothing.
    async fn execute(&mut self, actions: Vec<ActorAction<WriteRule>>) {
        let mut queue: VecDeque<ActorAction<WriteRule>> = actions.into();
        while let Some(action) = queue.pop_front() {
            let Some(event) = self.perform(action).await else { continue };
            let now = self.now();
            queue.extend(self.actor.handle(event, now));
        }
    }

    /// Performs one action; a request's answer is returned for the actor.
    async fn perform(&mut self, action: ActorAction<WriteRule>) -> Option<ActorEvent<WriteRule>> {
        let document = self.id.to_string();
        match action {
            ActorAction::Load { request } => {
                let chunks = self
                    .hub
                    .store
                    .load(&document)
                    .await
                    .map(|chunks| chunks.into_iter().map(|c| StoredChunk { id: c.id, data: c.data }).collect())
                    .map_err(|e| e.to_string());
                Some(ActorEvent::Loaded { request, chunks })
            }
            ActorAction::LoadSyncState { request, storage_id } => {
                let state = self.hub.store.load_sync_state(&document, &storage_id).await.unwrap_or_else(|e| {
                    tracing::warn!(document, error = %e, "cannot read saved sync state; starting afresh");
                    None
                });
                Some(ActorEvent::SyncStateLoaded { request, state })
            }
            ActorAction::Check { request, rule, changes } => {
                let verdict = check_changes(&self.hub.accounts, &rule, self.actor.doc(), &changes)
                    .await
                    .map_err(|refusal| refusal.to_string());
                Some(ActorEvent::Checked { request, verdict })
            }
            ActorAction::Commit { request, writes } => {
                let writes: Vec<Write> = writes.into_iter().map(|w| store_write(&document, w)).collect();
                let started = Instant::now();
                let result = self.hub.committer.commit(writes).await;
                self.last_commit = Some(started.elapsed());
                let result = result
                    .map(|written| {
                        written
                            .into_iter()
                            .map(|w| match w {
                                Written::Chunk { id } => hamlet_sync_core::actor::Written::Chunk { id },
                                Written::Compacted { id } => hamlet_sync_core::actor::Written::Compacted { id },
                                Written::SyncState => hamlet_sync_core::actor::Written::SyncState,
                            })
                            .collect()
                    })
                    .map_err(|e| e.to_string());
                Some(ActorEvent::Committed { request, result })
            }
            ActorAction::Audit { who, action, target, detail } => {
                self.hub.audit(AuditEntry { who, action, target, detail }).await;
                None
            }
            ActorAction::Send { peer, message, if_subscribed } => {
                self.hub.deliver(peer, message, if_subscribed);
                None
            }
            ActorAction::WriteDone { ticket, result } => {
                if let Some(reply) = self.replies.remove(&ticket) {
                    let _ = reply.send(result);
                }
                None
            }
            ActorAction::Project { before, peers } => {
                let peers: Vec<&Peer> = peers.iter().collect();
                self.hub.observer.round_stored(&StoredRound {
                    document: self.id,
                    doc: self.actor.doc(),
                    before: &before,
                    peers: &peers,
                    at: self.at.unwrap_or_else(|| self.hub.store.now_ms()),
                });
                None
            }
            ActorAction::Note(incident) => {
                self.note(incident);
                None
            }
            ActorAction::Stopped => None,
        }
    }

    fn note(&mut self, incident: Incident) {
        let metrics = &self.hub.metrics;
        let document = self.id.to_string();
        match incident {
            Incident::Loaded => metrics.document_loaded(),
            Incident::LoadFailed(reason) => {
                tracing::error!(document, error = %reason, "cannot load document");
                metrics.error(ErrorKind::Storage);
            }
            Incident::BadChunk { id, reason } => {
                tracing::error!(document, chunk = id, error = %reason, "stored chunk does not load");
            }
            Incident::InvalidSync { peer, reason } => {
                tracing::warn!(document, peer, error = %reason, "sync message refused");
                metrics.error(ErrorKind::InvalidSync);
            }
            Incident::Panic { peer } => {
                tracing::warn!(document, peer, "Automerge panicked on a sync message; reloading");
                metrics.error(ErrorKind::Panic);
            }
            Incident::Refused { peer, reason } => {
                tracing::warn!(document, peer, reason, "changes refused");
                metrics.error(ErrorKind::Forbidden);
            }
            Incident::ActorShare => metrics.error(ErrorKind::RateLimited),
            Incident::TooLarge => {
                tracing::warn!(document, "document over the size limit");
                metrics.error(ErrorKind::DocumentTooLarge);
            }
            Incident::CommitFailed(reason) => {
                tracing::error!(document, error = %reason, "commit failed");
                metrics.error(ErrorKind::Storage);
            }
            Incident::Committed { .. } => {
                if let Some(took) = self.last_commit.take() {
                    metrics.committed(took);
                }
            }
            Incident::CompactionSkipped(reason) => {
                // Typically another process compacted first: nothing is lost, but the list of
                // chunks was stale, so the actor reads the document again.
                tracing::info!(document, error = %reason, "compaction skipped; reloading");
            }
        }
    }
}

/// One of the actor's writes as the store takes it.
fn store_write(document: &str, write: StoreWrite) -> Write {
    let document = document.to_owned();
    match write {
        StoreWrite::Chunk { data, heads } => {
            Write::Chunk { document, kind: ChunkKind::Incremental, data, heads: encode_heads(&heads) }
        }
        StoreWrite::Compact { snapshot, heads, replaces } => {
            Write::Compact { document, snapshot, heads: encode_heads(&heads), replaces }
        }
        StoreWrite::SyncState { storage_id, state } => Write::SyncState { document, storage_id, state },
    }
}
