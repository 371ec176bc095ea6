//! A simulated server: the real [`Hub`] and [`DocumentActor`]s, driven by an executor over an
//! in-memory store whose every request waits until the scheduler completes it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};

use crate::actor::{
    ActorAction, ActorEvent, ActorLimits, ChunkId, Command, ConnId, DocumentActor, RequestId, StoreWrite, StoredChunk,
    Written,
};
use crate::docid::DocumentId;
use crate::hub::{Access, Hub, HubAction, HubEvent, HubLimits};
use crate::projection::{Entity, Projection, Rows};
use crate::session::Identity;
use crate::wire::Message;
use crate::{Campaign, Ledger, UnitId, project, project_since};

/// What a simulated phone's connection may do: read its assigned ledgers, and bring into them
/// only changes by its own actor (besides the canonical skeleton).
#[derive(Clone, Debug)]
pub struct SimAccess {
    /// The device.
    pub device: String,
    /// Ledgers it may read and write.
    pub readable: BTreeSet<DocumentId>,
    /// The actor enrolled for the device.
    pub actor: ActorId,
}

/// The check a simulated connection's changes pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRule {
    /// The only actor whose new changes the connection may bring.
    pub actor: ActorId,
}

impl Access for SimAccess {
    type Rule = SimRule;
    fn can_read(&self, document: &DocumentId) -> bool {
        self.readable.contains(document)
    }
    fn write_rule(&self, _document: &DocumentId) -> Option<SimRule> {
        Some(SimRule { actor: self.actor.clone() })
    }
    fn who(&self) -> String {
        format!("device {}", self.device)
    }
    fn device(&self) -> Option<&str> {
        Some(&self.device)
    }
}

/// The durable part of a server: what survives a crash.
#[derive(Debug, Default)]
pub struct SimStore {
    chunks: BTreeMap<DocumentId, Vec<(ChunkId, Vec<u8>)>>,
    sync_states: BTreeMap<(DocumentId, String), Vec<u8>>,
    next_chunk: ChunkId,
    /// The audit trail, one line an entry.
    pub audit: Vec<String>,
    /// Every committed change, per document (what a reply may acknowledge), kept up to date
    /// commit by commit.
    committed: BTreeMap<DocumentId, Automerge>,
}

impl SimStore {
    /// The document as a fresh load of its stored chunks would build it.
    pub fn load(&self, id: &DocumentId) -> Automerge {
        let mut doc = Automerge::new();
        for (_, data) in self.chunks.get(id).into_iter().flatten() {
            // A chunk that does not load is skipped, as the actor does.
            let _ = doc.load_incremental(data);
        }
        doc
    }

    /// Documents with stored chunks.
    pub fn documents(&self) -> impl Iterator<Item = &DocumentId> {
        self.chunks.keys()
    }

    /// Chunks stored for `id`.
    pub fn chunk_count(&self, id: &DocumentId) -> usize {
        self.chunks.get(id).map_or(0, Vec::len)
    }

    /// Whether the change `hash` of `id` was committed.
    pub fn holds(&self, id: &DocumentId, hash: &ChangeHash) -> bool {
        self.committed.get(id).is_some_and(|d| d.get_change_by_hash(hash).is_some())
    }

    /// Applies `writes` in one transaction, or nothing of them.
    fn commit(&mut self, id: DocumentId, writes: &[StoreWrite]) -> Result<Vec<Written>, String> {
        let held: BTreeSet<ChunkId> = self.chunks.get(&id).into_iter().flatten().map(|(c, _)| *c).collect();
        for write in writes {
            if let StoreWrite::Compact { replaces, .. } = write
                && let Some(gone) = replaces.iter().find(|c| !held.contains(c))
            {
                return Err(format!("compaction conflict: chunk {gone} is gone"));
            }
        }
        let mut written = Vec::new();
        for write in writes {
            match write {
                StoreWrite::Chunk { data, .. } => {
                    self.next_chunk += 1;
                    let chunk = self.next_chunk;
                    self.chunks.entry(id).or_default().push((chunk, data.clone()));
                    let _ = self.committed.entry(id).or_default().load_incremental(data);
                    written.push(Written::Chunk { id: chunk });
                }
                StoreWrite::Compact { snapshot, replaces, .. } => {
                    self.next_chunk += 1;
                    let chunk = self.next_chunk;
                    let list = self.chunks.entry(id).or_default();
                    list.retain(|(c, _)| !replaces.contains(c));
                    list.push((chunk, snapshot.clone()));
                    written.push(Written::Compacted { id: chunk });
                }
                StoreWrite::SyncState { storage_id, state } => {
                    self.sync_states.insert((id, storage_id.clone()), state.clone());
                    written.push(Written::SyncState);
                }
            }
        }
        Ok(written)
    }
}

/// The projector's durable rows: per ledger, its mark and its rows by entity.
#[derive(Debug, Default)]
pub struct SimProjector {
    marks: BTreeMap<DocumentId, Vec<ChangeHash>>,
    rows: BTreeMap<DocumentId, Table>,
}

/// Rows by entity, each as JSON so they compare and sort.
pub type Table = BTreeMap<Entity, BTreeSet<String>>;

fn table_of(rows: &Rows) -> Table {
    let mut table = Table::new();
    let mut put = |entity: Entity, row: String| {
        table.entry(entity).or_default().insert(row);
    };
    let json = |v: &dyn erased::Json| v.json();
    for r in &rows.responses {
        put(Entity::Response(r.response.clone()), json(r));
    }
    for r in &rows.answers {
        put(Entity::Response(r.response.clone()), json(r));
    }
    for r in &rows.tallies {
        put(Entity::Tally(r.tally.clone()), json(r));
    }
    for r in &rows.tally_counts {
        put(Entity::Tally(r.tally.clone()), json(r));
    }
    for r in &rows.conflicts {
        put(r.entity.clone(), json(r));
    }
    for r in &rows.flags {
        put(r.entity.clone(), json(r));
    }
    table
}

mod erased {
    /// A row that serialises to JSON.
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

impl SimProjector {
    /// Projects `doc` (the ledger of `hamlet`) from its mark, as the server's projector does.
    pub fn project(&mut self, campaign: &Campaign, hamlet: &UnitId, id: DocumentId, doc: &Automerge) {
        let heads = doc.get_heads();
        let mark = self.marks.get(&id).cloned();
        if mark.as_ref() == Some(&heads) {
            return;
        }
        let Ok(ledger) = Ledger::open(doc.clone(), &campaign.id, hamlet) else { return };
        let projection: Result<Projection, _> = match &mark {
            Some(mark) if mark.iter().all(|h| doc.get_change_by_hash(h).is_some()) => {
                project_since(campaign, &ledger, mark)
            }
            _ => project(campaign, &ledger),
        };
        let Ok(projection) = projection else { return };
        let table = self.rows.entry(id).or_default();
        if projection.full {
            table.clear();
        } else {
            for entity in &projection.entities {
                table.remove(entity);
            }
        }
        for (entity, rows) in table_of(&projection.rows) {
            table.entry(entity).or_default().extend(rows);
        }
        self.marks.insert(id, heads);
    }

    /// The rows held for `id`.
    pub fn rows(&self, id: &DocumentId) -> Table {
        self.rows.get(id).cloned().unwrap_or_default()
    }
}

/// A fresh projection of `doc`, as a rebuild would write it.
pub fn fresh_rows(campaign: &Campaign, hamlet: &UnitId, doc: &Automerge) -> Table {
    match Ledger::open(doc.clone(), &campaign.id, hamlet).and_then(|l| project(campaign, &l)) {
        Ok(p) => table_of(&p.rows),
        Err(_) => Table::new(),
    }
}

/// A request an actor waits for.
#[derive(Debug)]
pub enum Pending {
    /// Load the document.
    Load(RequestId),
    /// Load a sync state.
    SyncState(RequestId, String),
    /// Check changes.
    Check(RequestId, SimRule, Vec<automerge::Change>),
    /// Commit.
    Commit(RequestId, Vec<StoreWrite>),
}

/// What the server sent, for the network and the properties.
#[derive(Debug)]
pub enum Output {
    /// A message on a connection.
    Send(ConnId, Message),
    /// A connection the server closes.
    Close(ConnId, String),
}

/// A simulated server.
#[derive(Debug)]
pub struct SimServer {
    /// Its identity.
    pub identity: Identity,
    /// Whether it runs.
    pub up: bool,
    /// The hub.
    pub hub: Hub<SimAccess>,
    /// The document actors in memory.
    pub actors: BTreeMap<DocumentId, DocumentActor<SimRule>>,
    queues: BTreeMap<DocumentId, VecDeque<Command<SimRule>>>,
    /// The request each document waits for.
    pub pending: BTreeMap<DocumentId, Pending>,
    /// The store.
    pub store: SimStore,
    /// The projector.
    pub projector: SimProjector,
    limits: ActorLimits,
    hamlets: BTreeMap<DocumentId, UnitId>,
    campaign: Campaign,
    skeletons: BTreeSet<ChangeHash>,
    /// Sync replies sent before their heads were stored (the first property), as text.
    pub violations: Vec<String>,
    /// Documents sent where they may not be read, as text.
    pub leaks: Vec<String>,
    /// Ephemeral messages relayed, by original sender and document.
    relayed: BTreeMap<(String, DocumentId), usize>,
}

impl SimServer {
    /// A server for `campaign`'s ledgers of `hamlets`.
    pub fn new(campaign: Campaign, hamlets: &[UnitId], limits: ActorLimits) -> Self {
        let identity = Identity { peer_id: "district".into(), storage_id: "district-store".into() };
        let hamlets: BTreeMap<DocumentId, UnitId> =
            hamlets.iter().map(|h| (DocumentId::for_ledger(&campaign.id, h), h.clone())).collect();
        let skeletons = hamlets.values().flat_map(|h| Ledger::skeleton(&campaign.id, h).get_heads()).collect();
        SimServer {
            hub: Hub::new(identity.clone(), HubLimits::default()),
            identity,
            up: true,
            actors: BTreeMap::new(),
            queues: BTreeMap::new(),
            pending: BTreeMap::new(),
            store: SimStore::default(),
            projector: SimProjector::default(),
            limits,
            hamlets,
            campaign,
            skeletons,
            violations: Vec::new(),
            leaks: Vec::new(),
            relayed: BTreeMap::new(),
        }
    }

    /// Ephemeral messages of `sender` about `document` the server relayed to other peers.
    pub fn relayed_from(&self, sender: &str, document: &DocumentId) -> usize {
        self.relayed.get(&(sender.to_owned(), *document)).copied().unwrap_or(0)
    }

    /// Loses everything in memory: connections, actors, requests not completed.
    pub fn crash(&mut self) {
        self.up = false;
        self.hub = Hub::new(self.identity.clone(), HubLimits::default());
        self.actors.clear();
        self.queues.clear();
        self.pending.clear();
    }

    /// Starts again from the store; the projector catches up on what is stored beyond its marks.
    pub fn restart(&mut self) {
        self.up = true;
        let ids: Vec<DocumentId> = self.store.documents().copied().collect();
        for id in ids {
            let doc = self.store.load(&id);
            if let Some(hamlet) = self.hamlets.get(&id).cloned() {
                self.projector.project(&self.campaign, &hamlet, id, &doc);
            }
        }
    }

    /// Drops actors that wait for nothing and have no peer (the server's idle timeout).
    pub fn unload_idle(&mut self) -> usize {
        let idle: Vec<DocumentId> = self
            .actors
            .iter()
            .filter(|(id, a)| a.is_idle() && !a.has_peers() && self.queues.get(id).is_none_or(VecDeque::is_empty))
            .map(|(id, _)| *id)
            .collect();
        for id in &idle {
            self.actors.remove(id);
        }
        idle.len()
    }

    /// Opens a connection for `access`.
    pub fn open(&mut self, access: SimAccess, now: u64) -> (ConnId, Vec<Output>) {
        let (conn, actions) = self.hub.open(access, now);
        let mut out = Vec::new();
        self.hub_actions(actions, now, &mut out);
        (conn, out)
    }

    /// A frame from a connection.
    pub fn frame(&mut self, conn: ConnId, bytes: Vec<u8>, now: u64) -> Vec<Output> {
        let actions = self.hub.handle(HubEvent::Frame { conn, bytes }, now);
        let mut out = Vec::new();
        self.hub_actions(actions, now, &mut out);
        out
    }

    /// A connection closed.
    pub fn closed(&mut self, conn: ConnId, now: u64) -> Vec<Output> {
        let actions = self.hub.handle(HubEvent::Closed { conn }, now);
        let mut out = Vec::new();
        self.hub_actions(actions, now, &mut out);
        out
    }

    /// Completes the request `id` waits for; `fail` makes a commit fail.
    pub fn complete(&mut self, id: DocumentId, fail: bool, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(pending) = self.pending.remove(&id) else { return out };
        let event = match pending {
            Pending::Load(request) => {
                let chunks = self
                    .store
                    .chunks
                    .get(&id)
                    .into_iter()
                    .flatten()
                    .map(|(c, data)| StoredChunk { id: *c, data: data.clone() })
                    .collect();
                ActorEvent::Loaded { request, chunks: Ok(chunks) }
            }
            Pending::SyncState(request, storage) => {
                ActorEvent::SyncStateLoaded { request, state: self.store.sync_states.get(&(id, storage)).cloned() }
            }
            Pending::Check(request, rule, changes) => {
                let bad = changes.iter().find(|c| !self.skeletons.contains(&c.hash()) && *c.actor_id() != rule.actor);
                let verdict = match bad {
                    Some(c) => Err(format!("change {} by actor {} is not this device's", c.hash(), c.actor_id())),
                    None => Ok(()),
                };
                ActorEvent::Checked { request, verdict }
            }
            Pending::Commit(request, writes) => {
                let result = if fail { Err("the disk is full".to_owned()) } else { self.store.commit(id, &writes) };
                ActorEvent::Committed { request, result }
            }
        };
        self.actor_event(id, event, now, &mut out);
        out
    }

    fn hub_actions(&mut self, actions: Vec<HubAction<SimAccess>>, now: u64, out: &mut Vec<Output>) {
        for action in actions {
            match action {
                HubAction::Send { conn, message } => self.send(conn, message, out),
                HubAction::Close { conn, error, reason } => {
                    // As the server's executor: the peer hears why, then the connection ends.
                    if let Some(error) = error {
                        self.send(conn, error, out);
                    }
                    out.push(Output::Close(conn, reason));
                }
                HubAction::Audit { who, action, target, detail } => {
                    self.store.audit.push(format!("{who} {action} {target} {detail}"))
                }
                // No actor holds the document, so none holds the peer (as the server's hub).
                HubAction::ToDocument { document, command: Command::PeerGone { .. } }
                    if !self.actors.contains_key(&document) => {}
                HubAction::ToDocument { document, command } => {
                    self.queues.entry(document).or_default().push_back(command);
                    self.pump(document, now, out);
                }
                HubAction::Note(_) => {}
            }
        }
    }

    /// Checks what leaves against the properties, and sends it.
    fn send(&mut self, conn: ConnId, message: Message, out: &mut Vec<Output>) {
        let document = match &message {
            Message::Sync(m) | Message::Request(m) => Some(m.document_id.clone()),
            Message::Ephemeral { document_id, .. } | Message::RemoteHeadsChanged { document_id, .. } => {
                Some(document_id.clone())
            }
            _ => None,
        };
        if let Some(document) = document.and_then(|d| d.parse::<DocumentId>().ok()) {
            let readable = self.hub.access_of(conn).is_some_and(|a| a.can_read(&document));
            if !readable {
                let hamlet = self.hamlets.get(&document).map_or_else(|| document.to_string(), ToString::to_string);
                let kind = message.kind();
                self.leaks.push(format!("{kind} about {hamlet} sent on connection {conn}, which may not read it"));
            }
            let heads: Vec<ChangeHash> = match &message {
                Message::Sync(m) => automerge::sync::Message::decode(&m.data).map(|m| m.heads).unwrap_or_default(),
                Message::RemoteHeadsChanged { new_heads, .. } => {
                    new_heads.iter().flat_map(|h| h.heads.iter().filter_map(|x| x.parse().ok())).collect()
                }
                _ => Vec::new(),
            };
            if let Message::Ephemeral { sender_id, .. } = &message {
                *self.relayed.entry((sender_id.clone(), document)).or_default() += 1;
            }
            if let Some(h) = heads.iter().find(|h| !self.store.holds(&document, h)) {
                self.violations.push(format!("connection {conn} told of head {h} of {document} before it was stored"));
            }
        }
        out.push(Output::Send(conn, message));
    }

    /// Starts the document's actor if there is none, and feeds it when it is idle.
    fn pump(&mut self, id: DocumentId, now: u64, out: &mut Vec<Output>) {
        if !self.actors.contains_key(&id) {
            let (actor, actions) = DocumentActor::new(id, self.identity.clone(), self.limits);
            self.actors.insert(id, actor);
            self.actor_actions(id, actions, now, out);
        }
        let ready = self.actors.get(&id).is_some_and(|a| a.is_idle());
        if ready && let Some(queue) = self.queues.get_mut(&id) {
            let batch: Vec<Command<SimRule>> = queue.drain(..queue.len().min(self.limits.round)).collect();
            if !batch.is_empty() {
                self.actor_event(id, ActorEvent::Commands(batch), now, out);
            }
        }
    }

    fn actor_event(&mut self, id: DocumentId, event: ActorEvent<SimRule>, now: u64, out: &mut Vec<Output>) {
        let Some(actor) = self.actors.get_mut(&id) else { return };
        let actions = actor.handle(event, now);
        self.actor_actions(id, actions, now, out);
        self.pump(id, now, out);
    }

    fn actor_actions(&mut self, id: DocumentId, actions: Vec<ActorAction<SimRule>>, now: u64, out: &mut Vec<Output>) {
        for action in actions {
            match action {
                ActorAction::Load { request } => {
                    self.pending.insert(id, Pending::Load(request));
                }
                ActorAction::LoadSyncState { request, storage_id } => {
                    self.pending.insert(id, Pending::SyncState(request, storage_id));
                }
                ActorAction::Check { request, rule, changes } => {
                    self.pending.insert(id, Pending::Check(request, rule, changes));
                }
                ActorAction::Commit { request, writes } => {
                    self.pending.insert(id, Pending::Commit(request, writes));
                }
                ActorAction::Audit { who, action, target, detail } => {
                    self.store.audit.push(format!("{who} {action} {target} {detail}"))
                }
                ActorAction::Send { peer, message, if_subscribed } => {
                    let actions = self.hub.handle(HubEvent::Deliver { peer, message, if_subscribed }, now);
                    self.hub_actions(actions, now, out);
                }
                ActorAction::Project { .. } => {
                    if let (Some(hamlet), Some(actor)) = (self.hamlets.get(&id), self.actors.get(&id)) {
                        self.projector.project(&self.campaign, hamlet, id, actor.doc());
                    }
                }
                ActorAction::WriteDone { .. } | ActorAction::Note(_) => {}
                ActorAction::Stopped => {
                    self.actors.remove(&id);
                }
            }
        }
    }
}

/// Hashes of every change `doc` holds.
pub fn hashes(doc: &Automerge) -> BTreeSet<ChangeHash> {
    doc.get_changes(&[]).iter().map(|c| c.hash()).collect()
}
