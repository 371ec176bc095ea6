//! A simulated phone: ledgers kept durably, and the real [`ClientSession`] for each connection.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ActorId, Automerge, ChangeHash};

use crate::actor::ConnId;
use crate::client::{ClientSession, Effect};
use crate::docid::DocumentId;
use crate::{AnswerKey, AnswerValue, Campaign, Day, Ledger, Level, NewResponse, UnitId, fixtures};

/// The actor a rogue phone forges changes with: enrolled for nobody.
pub fn forged_actor() -> ActorId {
    ActorId::from([0xEE; 16])
}

/// One phone.
#[derive(Debug)]
pub struct SimPhone {
    /// Its name (its peer id).
    pub name: String,
    /// The actor enrolled for it.
    pub actor: ActorId,
    /// The ledgers it holds, by document (what it has is durable: a phone stores before it sends).
    pub docs: BTreeMap<DocumentId, Automerge>,
    /// The hamlet of each ledger it holds.
    pub hamlets: BTreeMap<DocumentId, UnitId>,
    /// The ledgers it is assigned (it may hold others, and ask for them in vain).
    pub assigned: BTreeSet<DocumentId>,
    /// Sync states kept from earlier sessions.
    pub states: BTreeMap<DocumentId, Vec<u8>>,
    /// Every head the server ever acknowledged, per document.
    pub acked: BTreeMap<DocumentId, BTreeSet<ChangeHash>>,
    /// The connection and its session, while connected.
    pub session: Option<(ConnId, ClientSession)>,
    /// Responses recorded so far.
    pub recorded: u32,
    /// Whether it forges changes by an actor not its own.
    pub rogue: bool,
    /// Whether it asks, once joined, to hear the heads the server's storage holds
    /// (`remote-subscription-change`), as a client showing "saved on the server" does.
    pub subscribes: bool,
    /// `remote-heads-changed` messages it received.
    pub heads_heard: usize,
    /// Presence messages it sent (ephemeral, one per ledger it holds each time it joins).
    pub presence_sent: u64,
    /// Presence messages of other phones it heard, per ledger.
    pub presence_heard: BTreeMap<DocumentId, usize>,
}

impl SimPhone {
    /// A phone holding the skeletons of `hamlets` (of which `assigned` are its own).
    pub fn new(name: &str, n: u8, campaign: &Campaign, hamlets: &[UnitId], assigned: &[UnitId]) -> Self {
        let actor = ActorId::from([n; 16]);
        let mut docs = BTreeMap::new();
        let mut ids = BTreeMap::new();
        for hamlet in hamlets {
            let id = DocumentId::for_ledger(&campaign.id, hamlet);
            // A ledger it is not assigned starts empty: it can only ask for it.
            let doc = if assigned.contains(hamlet) {
                let mut doc = Ledger::create(&campaign.id, hamlet, actor.clone()).into_doc();
                doc.set_actor(actor.clone());
                doc
            } else {
                Automerge::new().with_actor(actor.clone())
            };
            docs.insert(id, doc);
            ids.insert(id, hamlet.clone());
        }
        let assigned = assigned.iter().map(|h| DocumentId::for_ledger(&campaign.id, h)).collect();
        SimPhone {
            name: name.to_owned(),
            actor,
            docs,
            hamlets: ids,
            assigned,
            states: BTreeMap::new(),
            acked: BTreeMap::new(),
            session: None,
            recorded: 0,
            rogue: false,
            subscribes: false,
            heads_heard: 0,
            presence_sent: 0,
            presence_heard: BTreeMap::new(),
        }
    }

    /// Records one response in the ledger `id` (by `actor`); `level` varies the answers.
    /// Returns the response's id.
    pub fn record(&mut self, campaign: &Campaign, id: DocumentId, actor: &ActorId, level: usize) -> Option<String> {
        let hamlet = self.hamlets.get(&id)?.clone();
        let doc = self.docs.remove(&id)?;
        let mut doc_with_actor = doc;
        doc_with_actor.set_actor(actor.clone());
        let mut ledger = match Ledger::open(doc_with_actor, &campaign.id, &hamlet) {
            Ok(l) => l,
            Err(_) => return None,
        };
        self.recorded += 1;
        let response = format!("{}-{}", self.name, self.recorded);
        let levels = [Level::TinNhiemCao, Level::TinNhiem, Level::TinNhiemThap];
        let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"));
        let new = NewResponse {
            id: response.parse().ok()?,
            collector: "thu-ha".parse().ok()?,
            answers: BTreeMap::from([(key, AnswerValue::Level(levels[level % levels.len()]))]),
        };
        let today: Day = "2025-06-02".parse().ok()?;
        let recorded = ledger.record(campaign, &new, today).is_ok();
        let mut doc = ledger.into_doc();
        doc.set_actor(self.actor.clone());
        self.docs.insert(id, doc);
        recorded.then_some(response)
    }

    /// Works on response `n` (one this phone recorded) in the ledger `id`: `how` 0 submits it,
    /// 1 edits its answer (after a seal, the edit is kept and flagged), 2 voids it. Returns what
    /// it did, if the ledger took it.
    pub fn amend(&mut self, campaign: &Campaign, id: DocumentId, n: u32, how: usize) -> Option<String> {
        let hamlet = self.hamlets.get(&id)?.clone();
        let response: crate::ResponseId = format!("{}-{n}", self.name).parse().ok()?;
        let doc = self.docs.remove(&id)?;
        let mut ledger = match Ledger::open(doc, &campaign.id, &hamlet) {
            Ok(l) => l,
            Err(_) => return None,
        };
        let today: Day = "2025-06-03".parse().ok()?;
        let by: crate::PersonId = "thu-ha".parse().ok()?;
        let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"));
        let (done, what) = match how % 3 {
            0 => (ledger.submit(campaign, &response, &by, today).is_ok(), "submits"),
            1 => {
                let changes = [(key, Some(AnswerValue::Level(Level::TinNhiemThap)))];
                (ledger.edit(campaign, &response, &changes, today).is_ok(), "edits")
            }
            _ => (ledger.void(&response, "ghi nhầm", &by, today).is_ok(), "voids"),
        };
        let mut doc = ledger.into_doc();
        doc.set_actor(self.actor.clone());
        self.docs.insert(id, doc);
        done.then(|| format!("{what} response {response}"))
    }

    /// Keeps what a session said to persist; returns the frames to send.
    pub fn effects(&mut self, effects: Vec<Effect>) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for effect in effects {
            match effect {
                Effect::Joined(server) => {
                    if self.subscribes
                        && let Some(storage) = server.storage_id
                    {
                        frames.push(crate::wire::encode(&crate::wire::Message::RemoteSubscriptionChange {
                            sender_id: self.name.clone(),
                            target_id: server.peer_id.clone(),
                            add: vec![storage],
                            remove: Vec::new(),
                        }));
                    }
                    let ids: Vec<DocumentId> = self.docs.keys().copied().collect();
                    if let Some((_, session)) = self.session.as_mut() {
                        for id in ids {
                            let saved = self.states.get(&id).cloned();
                            if let Ok(out) = session.open_document(id, saved.as_deref(), &self.docs) {
                                frames.extend(out);
                            }
                            // Presence, as an app shows who else works on a ledger: relayed to
                            // the ledger's other peers, never stored. Sent for every ledger it
                            // holds, those it may not read too.
                            self.presence_sent += 1;
                            frames.push(crate::wire::encode(&crate::wire::Message::Ephemeral {
                                sender_id: self.name.clone(),
                                target_id: server.peer_id.clone(),
                                document_id: id.to_string(),
                                session_id: format!("{}-presence", self.name),
                                count: self.presence_sent,
                                data: self.name.as_bytes().to_vec(),
                            }));
                        }
                    }
                }
                Effect::Send(frame) => frames.push(frame),
                Effect::Persist(p) => {
                    self.states.insert(p.document, p.sync_state);
                    self.acked.entry(p.document).or_default().extend(p.acknowledged);
                }
            }
        }
        frames
    }
}
