//! What a connection may read and write, and the check of every change before it is stored.
//!
//! A collector's device reads the campaign documents of its campaigns and reads and writes the
//! ledgers of its assigned hamlets; a relay the same for the hamlets assigned to it; staff read
//! everything and write nothing. Any other document is answered `doc-unavailable`, exactly as a
//! document that does not exist.
//!
//! Every change a sync message brings into a ledger is checked before it is stored (see
//! ARCHITECTURE.md, "Who wrote what"):
//!
//! - its actor is enrolled to a live device whose person works in that ledger's hamlet, and —
//!   on a collector's connection — to *that* device: a phone introduces only its own changes
//!   (a change the server already holds is never new, so carrying it is free); a relay carries
//!   the changes of any device of its hamlets;
//! - the skeleton's actor (the document id's bytes) writes only the canonical skeleton, and no
//!   other actor writes at the root: a ledger's identity and collections are fixed;
//! - a response belongs to the device whose actor made it: no other device writes anything
//!   inside it, and nobody replaces or deletes a response.
//!
//! Campaign documents take no change from any client: the server writes them on behalf of
//! admins.

use std::collections::{HashMap, HashSet};

use hamlet_sync_core::authorship::{Write, writes};
use hamlet_sync_core::automerge::{ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, ReadDoc};
use hamlet_sync_core::{CampaignId, DocumentId, Ledger, UnitId};

use crate::accounts::{AccountError, Accounts, Person, Role};

/// What one connection may touch.
#[derive(Clone, Debug)]
pub enum SyncAccess {
    /// Anything (the `--insecure-open-sync` development mode).
    Open,
    /// Read everything, write nothing (a staff session).
    ReadOnly {
        /// Who.
        person: String,
    },
    /// A device of a collector or relay.
    Device {
        /// The device id.
        device: String,
        /// Its person.
        person: String,
        /// Ledgers it may read and write, with their campaign and hamlet.
        ledgers: HashMap<DocumentId, (CampaignId, UnitId)>,
        /// Campaign documents it may read.
        campaigns: HashSet<DocumentId>,
        /// Whether it carries other devices' changes (a relay).
        relay: bool,
    },
}

/// Whose changes a connection may bring into a ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// A collector's device: changes by its own actors only.
    Device(String),
    /// A relay: changes by actors of any live device assigned to the hamlet.
    Relay,
}

/// How the changes a connection brings into one document are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRule {
    /// No check (open mode).
    Any,
    /// No change at all may come in.
    Nothing,
    /// A ledger: its canonical skeleton, and changes by the actors `carrier` may bring, each
    /// writing only into responses of its own device.
    Ledger {
        /// The campaign.
        campaign: CampaignId,
        /// The hamlet.
        hamlet: UnitId,
        /// Whose changes the connection brings.
        carrier: Carrier,
    },
}

impl SyncAccess {
    /// The access of a device whose person has these assignments (campaign id, hamlet id).
    /// Assignments that are not valid ids are ignored (they cannot name a document).
    pub fn device(device: &str, person: &Person, assignments: &[(String, String)]) -> SyncAccess {
        let mut ledgers = HashMap::new();
        let mut campaigns = HashSet::new();
        for (campaign, hamlet) in assignments {
            let (Ok(campaign), Ok(hamlet)) = (campaign.parse::<CampaignId>(), hamlet.parse::<UnitId>()) else {
                continue;
            };
            campaigns.insert(DocumentId::for_campaign(&campaign));
            ledgers.insert(DocumentId::for_ledger(&campaign, &hamlet), (campaign, hamlet));
        }
        let relay = person.role == Role::Relay;
        SyncAccess::Device { device: device.to_owned(), person: person.id.clone(), ledgers, campaigns, relay }
    }

    /// The access of a device, read from the accounts.
    pub async fn for_device(accounts: &Accounts, device: &str, person: &Person) -> Result<SyncAccess, AccountError> {
        if !matches!(person.role, Role::Collector | Role::Relay) {
            return Ok(SyncAccess::Device {
                device: device.to_owned(),
                person: person.id.clone(),
                ledgers: HashMap::new(),
                campaigns: HashSet::new(),
                relay: false,
            });
        }
        Ok(SyncAccess::device(device, person, &accounts.assignments(&person.id).await?))
    }

    /// Whether the connection may read `document` (or learn that it exists).
    pub fn can_read(&self, document: &DocumentId) -> bool {
        match self {
            SyncAccess::Open | SyncAccess::ReadOnly { .. } => true,
            SyncAccess::Device { ledgers, campaigns, .. } => {
                ledgers.contains_key(document) || campaigns.contains(document)
            }
        }
    }

    /// How changes to `document` from this connection are checked.
    pub fn write_rule(&self, document: &DocumentId) -> WriteRule {
        match self {
            SyncAccess::Open => WriteRule::Any,
            SyncAccess::ReadOnly { .. } => WriteRule::Nothing,
            SyncAccess::Device { ledgers, device, relay, .. } => match ledgers.get(document) {
                Some((campaign, hamlet)) => WriteRule::Ledger {
                    campaign: campaign.clone(),
                    hamlet: hamlet.clone(),
                    carrier: if *relay { Carrier::Relay } else { Carrier::Device(device.clone()) },
                },
                None => WriteRule::Nothing,
            },
        }
    }

    /// Whether `other` lets the connection read and write exactly the same documents.
    pub fn same_documents(&self, other: &SyncAccess) -> bool {
        match (self, other) {
            (
                SyncAccess::Device { ledgers: a, campaigns: c, .. },
                SyncAccess::Device { ledgers: b, campaigns: d, .. },
            ) => a == b && c == d,
            (SyncAccess::Open, SyncAccess::Open) => true,
            (SyncAccess::ReadOnly { .. }, SyncAccess::ReadOnly { .. }) => true,
            _ => false,
        }
    }

    /// Who is on the connection, for logs and the audit trail.
    pub fn who(&self) -> String {
        match self {
            SyncAccess::Open => "open-sync".into(),
            SyncAccess::ReadOnly { person } => person.clone(),
            SyncAccess::Device { device, person, .. } => format!("{person} ({device})"),
        }
    }

    /// The device, if the connection is one.
    pub fn device_id(&self) -> Option<&str> {
        match self {
            SyncAccess::Device { device, .. } => Some(device),
            _ => None,
        }
    }
}

/// Why new changes were refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The document takes no change from this connection.
    #[error("this document is read-only for this connection")]
    ReadOnly,
    /// A change by an actor that is not enrolled for this ledger's hamlet.
    #[error("change {hash} by actor {actor} is not from a device assigned to this hamlet")]
    Actor {
        /// The change.
        hash: ChangeHash,
        /// Its actor, hex.
        actor: String,
    },
    /// A change by another device's actor, which this connection may not introduce.
    #[error("change {hash} by actor {actor} is another device's: a device sends only its own new changes")]
    NotOwnActor {
        /// The change.
        hash: ChangeHash,
        /// Its actor, hex.
        actor: String,
    },
    /// A change by the skeleton's actor that is not the canonical skeleton.
    #[error("change {hash} is written as the ledger's skeleton but is not the canonical skeleton")]
    Skeleton {
        /// The change.
        hash: ChangeHash,
    },
    /// A change that writes at the ledger's root.
    #[error("change {hash} writes {key:?} at the ledger's root, which only the canonical skeleton writes")]
    Root {
        /// The change.
        hash: ChangeHash,
        /// The root key.
        key: String,
    },
    /// A change that writes into a response of another device, or replaces or deletes one.
    #[error("change {hash} writes into response {response:?}, which belongs to another device")]
    NotOwner {
        /// The change.
        hash: ChangeHash,
        /// The response key.
        response: String,
    },
    /// A change that replaces or deletes a response.
    #[error("change {hash} replaces or deletes response {response:?}")]
    Replaces {
        /// The change.
        hash: ChangeHash,
        /// The response key.
        response: String,
    },
    /// The accounts could not be read: refuse rather than guess.
    #[error("the server cannot check these changes now")]
    Accounts(#[from] AccountError),
}

/// Checks `changes` (those a message added to `doc`, which now holds them) against `rule`.
pub async fn check_changes(
    accounts: &Accounts,
    rule: &WriteRule,
    doc: &Automerge,
    changes: &[Change],
) -> Result<(), Refusal> {
    match rule {
        WriteRule::Any => Ok(()),
        _ if changes.is_empty() => Ok(()),
        WriteRule::Nothing => Err(Refusal::ReadOnly),
        WriteRule::Ledger { campaign, hamlet, carrier } => {
            let skeleton_actor = ActorId::from(DocumentId::for_ledger(campaign, hamlet).as_bytes().as_slice());
            let skeleton: Vec<ChangeHash> = Ledger::skeleton(campaign, hamlet).get_heads();
            let mut others: Vec<&Change> = Vec::new();
            for c in changes.iter().filter(|c| !skeleton.contains(&c.hash())) {
                if *c.actor_id() == skeleton_actor {
                    return Err(Refusal::Skeleton { hash: c.hash() });
                }
                others.push(c);
            }
            let hex = |a: &ActorId| a.to_hex_string();
            let actors: Vec<String> =
                others.iter().map(|c| hex(c.actor_id())).collect::<HashSet<_>>().into_iter().collect();
            let allowed = accounts.actors_allowed(campaign.as_str(), hamlet.as_str(), &actors).await?;
            if let Some(c) = others.iter().find(|c| !allowed.contains(&hex(c.actor_id()))) {
                return Err(Refusal::Actor { hash: c.hash(), actor: hex(c.actor_id()) });
            }
            if let Carrier::Device(device) = carrier {
                let owners = accounts.actor_devices(&actors).await?;
                if let Some(c) = others.iter().find(|c| owners.get(&hex(c.actor_id())) != Some(device)) {
                    return Err(Refusal::NotOwnActor { hash: c.hash(), actor: hex(c.actor_id()) });
                }
            }
            check_writes(accounts, doc, &skeleton_actor, &others).await
        }
    }
}

/// The root and response rules of [`check_changes`], from each change's operations.
async fn check_writes(
    accounts: &Accounts,
    doc: &Automerge,
    skeleton_actor: &ActorId,
    changes: &[&Change],
) -> Result<(), Refusal> {
    // The skeleton's change makes `responses` as its fourth operation.
    let responses = ObjId::Id(4, skeleton_actor.clone(), 0);
    let mut located: HashMap<ObjId, Option<(String, ObjId)>> = HashMap::new();
    // (change, writer actor, response key, response object)
    let mut into: Vec<(ChangeHash, ActorId, String, ObjId)> = Vec::new();
    for change in changes {
        let hash = change.hash();
        for w in writes(change) {
            if w.obj == ObjId::Root {
                return Err(Refusal::Root { hash, key: w.key.unwrap_or_default() });
            }
            if w.obj == responses {
                let key = w.key.clone().unwrap_or_default();
                if w.makes != Some(ObjType::Map) || w.overwrites {
                    return Err(Refusal::Replaces { hash, response: key });
                }
                // A response made at a key another device already holds would compete with it.
                for (_, other) in doc.get_all(&responses, key.as_str()).unwrap_or_default() {
                    if other != w.id {
                        into.push((hash, w.actor.clone(), key.clone(), other));
                    }
                }
                continue;
            }
            let place = match located.get(&w.obj) {
                Some(p) => p.clone(),
                None => {
                    let p = response_of(doc, &responses, &w);
                    located.insert(w.obj.clone(), p.clone());
                    p
                }
            };
            if let Some((key, response)) = place {
                into.push((hash, w.actor.clone(), key, response));
            }
        }
    }
    let mut owners: HashSet<String> =
        into.iter().filter_map(|(_, _, _, r)| actor_of(r)).map(|a| a.to_hex_string()).collect();
    owners.extend(into.iter().map(|(_, a, _, _)| a.to_hex_string()));
    let devices = accounts.actor_devices(&owners.into_iter().collect::<Vec<_>>()).await?;
    let device_of = |a: &ActorId| devices.get(&a.to_hex_string()).cloned();
    for (hash, writer, key, response) in into {
        let Some(owner) = actor_of(&response) else { continue };
        let same = *owner == writer || device_of(owner).is_some_and(|d| device_of(&writer) == Some(d));
        if !same {
            return Err(Refusal::NotOwner { hash, response: key });
        }
    }
    Ok(())
}

fn actor_of(id: &ObjId) -> Option<&ActorId> {
    match id {
        ObjId::Root => None,
        ObjId::Id(_, actor, _) => Some(actor),
    }
}

/// The response (key and object) the object `w` writes into lies in, if any.
fn response_of(doc: &Automerge, responses: &ObjId, w: &Write) -> Option<(String, ObjId)> {
    let mut below = w.obj.clone();
    for parent in doc.parents(&w.obj).ok()? {
        if parent.obj == *responses {
            let key = match parent.prop {
                hamlet_sync_core::automerge::Prop::Map(k) => k,
                hamlet_sync_core::automerge::Prop::Seq(_) => return None,
            };
            return Some((key, below));
        }
        below = parent.obj;
    }
    None
}
