//! What a connection may read and write, and the check of every change before it is stored.
//!
//! A collector's device reads the campaign documents of its campaigns and reads and writes the
//! ledgers of its assigned hamlets; a relay the same for the hamlets assigned to it; staff read
//! everything and write nothing. Any other document is answered `doc-unavailable`, exactly as a
//! document that does not exist.
//!
//! Every change a sync message brings into a ledger must have been made by an actor enrolled to a
//! live device whose person works in that ledger's hamlet — whichever connection carries it (a
//! phone may pass on changes it imported from another phone, a relay those of its hamlets). The
//! only other change a ledger may hold is its canonical skeleton. Campaign documents take no
//! change from any client: the server writes them on behalf of admins.

use std::collections::{HashMap, HashSet};

use hamlet_sync_core::automerge::{Change, ChangeHash};
use hamlet_sync_core::{CampaignId, DocumentId, Ledger, UnitId};

use crate::auth::{AccountError, Accounts, Person, Role};

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
    },
}

/// How the changes a connection brings into one document are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteRule {
    /// No check (open mode).
    Any,
    /// No change at all may come in.
    Nothing,
    /// A ledger: changes by actors of devices assigned to its hamlet, or its skeleton.
    Ledger {
        /// The campaign.
        campaign: CampaignId,
        /// The hamlet.
        hamlet: UnitId,
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
        SyncAccess::Device { device: device.to_owned(), person: person.id.clone(), ledgers, campaigns }
    }

    /// The access of a device, read from the accounts.
    pub async fn for_device(accounts: &Accounts, device: &str, person: &Person) -> Result<SyncAccess, AccountError> {
        if !matches!(person.role, Role::Collector | Role::Relay) {
            return Ok(SyncAccess::Device {
                device: device.to_owned(),
                person: person.id.clone(),
                ledgers: HashMap::new(),
                campaigns: HashSet::new(),
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
            SyncAccess::Device { ledgers, .. } => match ledgers.get(document) {
                Some((campaign, hamlet)) => WriteRule::Ledger { campaign: campaign.clone(), hamlet: hamlet.clone() },
                None => WriteRule::Nothing,
            },
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
    /// The accounts could not be read: refuse rather than guess.
    #[error("the server cannot check these changes now")]
    Accounts(#[from] AccountError),
}

/// Checks `changes` (those a message added to the document) against `rule`.
pub async fn check_changes(accounts: &Accounts, rule: &WriteRule, changes: &[Change]) -> Result<(), Refusal> {
    match rule {
        WriteRule::Any => Ok(()),
        _ if changes.is_empty() => Ok(()),
        WriteRule::Nothing => Err(Refusal::ReadOnly),
        WriteRule::Ledger { campaign, hamlet } => {
            let skeleton: Vec<ChangeHash> = Ledger::skeleton(campaign, hamlet).get_heads();
            let others: Vec<&Change> = changes.iter().filter(|c| !skeleton.contains(&c.hash())).collect();
            let actors: Vec<String> =
                others.iter().map(|c| c.actor_id().to_hex_string()).collect::<HashSet<_>>().into_iter().collect();
            let allowed = accounts.actors_allowed(campaign.as_str(), hamlet.as_str(), &actors).await?;
            match others.into_iter().find(|c| !allowed.contains(&c.actor_id().to_hex_string())) {
                Some(c) => Err(Refusal::Actor { hash: c.hash(), actor: c.actor_id().to_hex_string() }),
                None => Ok(()),
            }
        }
    }
}
