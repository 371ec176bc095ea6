//! Who wrote what in a ledger, as the actors of its changes tell it.
//!
//! A device writes with one or more Automerge actor ids, which the server records when it
//! enrolls the device. The strings a device writes into a response (`collector`, `seal/by`,
//! `void/by`) are claims; the actor of the change that wrote an operation is what the server
//! knows. [`Authors`] is that knowledge, handed in by the caller (this crate holds no accounts);
//! [`History`] reads every operation of a ledger and files it under the response it touches.
//!
//! The rules the projection applies with them (see `docs/schema.md`):
//!
//! - a response belongs to the device whose actor made its map first (in Automerge's op order);
//! - only that device's writes inside the response count; anything another device wrote there
//!   is kept in the document, flagged, and never changes what counts;
//! - a seal is final: the first seal the owner made, read as its own change left it, is the one
//!   counted; a later write to a seal, by anyone, is flagged and never counted.
//!
//! ```
//! use hamlet_sync_core::authorship::{Authors, History};
//! use hamlet_sync_core::automerge::ActorId;
//! use hamlet_sync_core::{Ledger, fixtures};
//!
//! let campaign = fixtures::open_campaign();
//! let actor = ActorId::from([7; 16]);
//! let ledger = Ledger::create(&campaign.id, &fixtures::hamlet("thon-dong"), actor.clone());
//! let mut authors = Authors::new();
//! authors.insert(actor.clone(), "phone-1", Some("chi-ha".into()));
//! assert_eq!(authors.person(&actor), Some("chi-ha"));
//! assert!(History::of(ledger.doc(), ledger.responses_obj()).responses().next().is_none());
//! ```

use std::collections::{BTreeMap, HashMap};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{ActorId, Automerge, Change, ObjId, ObjType};

/// The device an actor writes for, and that device's person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    /// The enrolled device.
    pub device: String,
    /// Its person, when known.
    pub person: Option<String>,
}

/// What the caller knows of actors: the device each writes for.
#[derive(Clone, Debug, Default)]
pub struct Authors {
    by_actor: HashMap<ActorId, Author>,
}

/// Who stands behind an actor: an enrolled device, or (for an actor nobody enrolled) the actor
/// alone, which then counts as a device of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Writer<'a> {
    /// An enrolled device, by id.
    Device(&'a str),
    /// An actor no device was enrolled with.
    Actor(&'a ActorId),
}

impl Authors {
    /// Nobody known: every actor is a device of its own.
    pub fn new() -> Authors {
        Authors::default()
    }

    /// Records that `actor` writes for `device` (of `person`).
    pub fn insert(&mut self, actor: ActorId, device: impl Into<String>, person: Option<String>) {
        self.by_actor.insert(actor, Author { device: device.into(), person });
    }

    /// Who writes as `actor`.
    pub fn writer<'a>(&'a self, actor: &'a ActorId) -> Writer<'a> {
        match self.by_actor.get(actor) {
            Some(a) => Writer::Device(&a.device),
            None => Writer::Actor(actor),
        }
    }

    /// The person of the device writing as `actor`, when known.
    pub fn person(&self, actor: &ActorId) -> Option<&str> {
        self.by_actor.get(actor).and_then(|a| a.person.as_deref())
    }

    /// The device writing as `actor`, when known.
    pub fn device(&self, actor: &ActorId) -> Option<&str> {
        self.by_actor.get(actor).map(|a| a.device.as_str())
    }
}

/// One operation of a change, located.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// The operation's id (also the id of the object it makes, if it makes one).
    pub id: ObjId,
    /// The actor that wrote it.
    pub actor: ActorId,
    /// The object written into.
    pub obj: ObjId,
    /// The map key written, for maps.
    pub key: Option<String>,
    /// The kind of object the operation makes, if it makes one.
    pub makes: Option<ObjType>,
    /// Whether it deletes.
    pub deletes: bool,
    /// Whether it replaces or deletes earlier values (it names predecessors).
    pub overwrites: bool,
}

impl Write {
    /// Whether this operation makes a map at `key` of `obj`.
    pub fn makes_map_at(&self, obj: &ObjId, key: &str) -> bool {
        self.obj == *obj && self.key.as_deref() == Some(key) && self.makes == Some(ObjType::Map)
    }
}

fn exid(counter: u64, actor: &ActorId) -> ObjId {
    // The actor index is a hint Automerge checks against the actor and looks up when wrong.
    ObjId::Id(counter, actor.clone(), 0)
}

/// Every operation of `change`, located.
pub fn writes(change: &Change) -> Vec<Write> {
    let expanded = change.decode();
    let start = expanded.start_op.get();
    expanded
        .operations
        .iter()
        .enumerate()
        .map(|(i, op)| Write {
            id: exid(start + i as u64, &expanded.actor_id),
            actor: expanded.actor_id.clone(),
            obj: match &op.obj {
                ObjectId::Root => ObjId::Root,
                ObjectId::Id(id) => exid(id.0, &id.1),
            },
            key: match &op.key {
                Key::Map(k) => Some(k.to_string()),
                Key::Seq(_) => None,
            },
            makes: match op.action {
                OpType::Make(kind) => Some(kind),
                _ => None,
            },
            deletes: matches!(op.action, OpType::Delete),
            overwrites: !op.pred.is_empty(),
        })
        .collect()
}

/// The operations of one response: every object made at its key of `responses`, and every
/// operation at that key or inside those objects, at any depth.
#[derive(Clone, Debug, Default)]
pub struct ResponseWrites {
    /// Objects made at `responses[key]`, earliest first.
    pub objects: Vec<ObjId>,
    /// Every operation, in op order.
    pub writes: Vec<Write>,
}

/// Every operation of a ledger, filed by the response it touches.
#[derive(Clone, Debug, Default)]
pub struct History {
    responses: BTreeMap<String, ResponseWrites>,
}

impl History {
    /// Reads every change of `doc`; `responses` is the ledger's canonical `responses` map.
    pub fn of(doc: &Automerge, responses: &ObjId) -> History {
        let all: Vec<Write> = doc.get_changes(&[]).iter().flat_map(writes).collect();
        let parents: HashMap<&ObjId, &ObjId> =
            all.iter().filter(|w| w.makes.is_some()).map(|w| (&w.id, &w.obj)).collect();
        let mut history = History::default();
        let mut owner_key: HashMap<&ObjId, &str> = HashMap::new();
        for w in &all {
            if w.obj == *responses
                && let Some(key) = &w.key
            {
                let entry = history.responses.entry(key.clone()).or_default();
                if w.makes == Some(ObjType::Map) {
                    entry.objects.push(w.id.clone());
                    owner_key.insert(&w.id, key);
                }
            }
        }
        let mut memo: HashMap<&ObjId, Option<&str>> = HashMap::new();
        for w in &all {
            let key = if w.obj == *responses {
                w.key.as_deref()
            } else {
                response_above(&w.obj, &parents, &owner_key, &mut memo)
            };
            if let Some(key) = key {
                history.responses.entry(key.to_owned()).or_default().writes.push(w.clone());
            }
        }
        for r in history.responses.values_mut() {
            r.objects.sort();
            r.writes.sort_by(|a, b| a.id.cmp(&b.id));
        }
        history
    }

    /// The operations of the response at `key`.
    pub fn response(&self, key: &str) -> Option<&ResponseWrites> {
        self.responses.get(key)
    }

    /// Every response key with operations, and its operations.
    pub fn responses(&self) -> impl Iterator<Item = (&str, &ResponseWrites)> {
        self.responses.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// The response key an object lies under, walking up the objects' parents.
fn response_above<'a>(
    obj: &'a ObjId,
    parents: &HashMap<&'a ObjId, &'a ObjId>,
    owner_key: &HashMap<&'a ObjId, &'a str>,
    memo: &mut HashMap<&'a ObjId, Option<&'a str>>,
) -> Option<&'a str> {
    let mut path = Vec::new();
    let mut at = obj;
    let found = loop {
        if let Some(known) = memo.get(at) {
            break *known;
        }
        if let Some(key) = owner_key.get(at) {
            break Some(*key);
        }
        path.push(at);
        if path.len() > parents.len() {
            // Only a cycle walks this far, and operations cannot make one; stay safe anyway.
            break None;
        }
        match parents.get(at) {
            Some(up) => at = up,
            None => break None,
        }
    };
    for p in path {
        memo.insert(p, found);
    }
    found
}
