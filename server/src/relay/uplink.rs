//! The relay's uplink: passes over the district, each one the feed (accounts, so the relay's
//! checks follow the district's) and then a sync of every document of the relay's hamlets, driven
//! by sync-core's [`ClientSession`] as a phone's sync is.
//!
//! A pass starts when a phone's round is stored here (the hub's [`RoundObserver`] nudges it),
//! every `every` otherwise, and sooner after a failure with back-off. What the district sends is
//! stored through the document's actor ([`Hub::write`]), so the phones connected here receive it
//! at once and it is durable before the uplink says anything more; the sync state and the heads
//! the district acknowledged are kept per document, so a cut pass resumes without resending what
//! the district holds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hamlet_sync_core::automerge::{Automerge, ChangeHash};
use hamlet_sync_core::client::{ClientError, ClientSession, Effect, Phase};
use hamlet_sync_core::{CampaignId, DocumentId, UnitId};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;

use super::upstream::{SyncSocket, Upstream, UpstreamError};
use super::{Identity, RelayError, RelayStore};
use crate::accounts::Accounts;
use crate::accounts::feed::Feed;
use crate::store::StoreError;
use crate::sync::hub::{Hub, RoundObserver, StoredRound};

/// Time allowed for each answer of the district during a pass.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest pause after failed passes.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Nudges the uplink when a round is stored here (a phone brought changes).
#[derive(Debug, Default)]
pub struct Nudge(Notify);

impl Nudge {
    /// A new one, shared by the hub and the uplink.
    pub fn new() -> Arc<Nudge> {
        Arc::new(Nudge::default())
    }
}

impl RoundObserver for Nudge {
    fn round_stored(&self, _: &StoredRound<'_>) {
        self.0.notify_one();
    }
}

/// Why a pass ended early. Nothing is lost either way: the next pass resumes.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The district, or the way to it.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The relay's own database or accounts.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The protocol.
    #[error("sync: {0}")]
    Protocol(#[from] ClientError),
    /// The connection closed or failed.
    #[error("the connection to the district closed: {0}")]
    Closed(String),
    /// Storing what the district sent failed.
    #[error("storing what the district sent: {0}")]
    Write(String),
}

impl From<StoreError> for PassError {
    fn from(e: StoreError) -> Self {
        PassError::Relay(RelayError::Store(e))
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Documents synced.
    pub documents: usize,
    /// Changes sent to the district.
    pub changes_sent: u64,
    /// Changes received from it.
    pub changes_received: u64,
    /// Documents the district refused, with why.
    pub refused: Vec<(DocumentId, String)>,
}

/// The uplink of one relay.
#[derive(Debug)]
pub struct Uplink {
    hub: Arc<Hub>,
    accounts: Accounts,
    relays: RelayStore,
    upstream: Upstream,
    identity: Identity,
    nudge: Arc<Nudge>,
    every: Duration,
}

/// The documents a relay carries for its hamlets: each campaign's document and each hamlet's
/// ledger.
pub fn documents_of(hamlets: &[(String, String)]) -> Vec<DocumentId> {
    let mut campaigns = Vec::new();
    let mut ledgers = Vec::new();
    for (campaign, hamlet) in hamlets {
        let (Ok(campaign), Ok(hamlet)) = (campaign.parse::<CampaignId>(), hamlet.parse::<UnitId>()) else { continue };
        let id = DocumentId::for_campaign(&campaign);
        if !campaigns.contains(&id) {
            campaigns.push(id);
        }
        ledgers.push(DocumentId::for_ledger(&campaign, &hamlet));
    }
    // Campaign documents first: a phone that connects next finds its forms.
    campaigns.extend(ledgers);
    campaigns
}

impl Uplink {
    /// The uplink of the relay `identity`, storing through `hub`, nudged by `nudge`, passing at
    /// least every `every`.
    pub fn new(
        hub: Arc<Hub>,
        accounts: Accounts,
        identity: Identity,
        upstream: Upstream,
        nudge: Arc<Nudge>,
        every: Duration,
    ) -> Uplink {
        let relays = RelayStore::new(hub.store().clone());
        Uplink { hub, accounts, relays, upstream, identity, nudge, every }
    }

    /// Passes until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                outcome = self.pass() => outcome,
            };
            let wait = match &outcome {
                Ok(report) => {
                    backoff = Duration::from_secs(1);
                    tracing::info!(
                        documents = report.documents,
                        sent = report.changes_sent,
                        received = report.changes_received,
                        refused = report.refused.len(),
                        "uplink pass done"
                    );
                    self.every
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "the uplink could not reach the district");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            // A refusal is kept in view: the district will refuse the same changes at every
            // pass, and the hamlet's later changes with them, until someone acts.
            let problem = match &outcome {
                Err(e) => Some(e.to_string()),
                Ok(report) => report
                    .refused
                    .first()
                    .map(|(document, reason)| format!("the district refused changes to {document}: {reason}")),
            };
            if let Err(e) = self.relays.note_pass(outcome.is_ok(), problem.as_deref()).await {
                tracing::warn!(error = %e, "cannot record the uplink's pass");
            }
            if outcome.is_ok() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.nudge.0.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            } else {
                // After a failure, phones' rounds do not cut the back-off short: a relay whose
                // district is down does not knock on it for every round it stores.
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// One pass: the feed, then every document.
    pub async fn pass(&self) -> Result<PassReport, PassError> {
        let feed: Feed = self.upstream.feed(&self.identity.token).await?;
        self.accounts.apply_feed(&feed).await.map_err(RelayError::from)?;
        let documents = documents_of(&feed.hamlets);
        let limit = self.hub.limits().max_message_bytes;
        let mut socket = self.upstream.open_sync(&self.identity.token, limit).await?;
        let storage = self.hub.store().storage_id().await?;
        let mut session = ClientSession::new(format!("hamlet-relay-{storage}"), storage);
        let outcome = self.sync(&mut socket, &mut session, documents).await;
        let _ = socket.close(None).await;
        let mut report = outcome?;
        for (id, p) in session.documents() {
            report.changes_sent += p.changes_sent;
            report.changes_received += p.changes_received;
            if p.phase == Phase::Refused {
                let reason = p.refusal.clone().unwrap_or_default();
                tracing::warn!(document = %id, reason, "the district refused changes the relay carried");
                report.refused.push((*id, reason));
            }
        }
        Ok(report)
    }

    /// Joins, then syncs `documents` one at a time (so that a refusal is known to be about the
    /// one in flight), storing each step before the next message leaves.
    async fn sync(
        &self,
        socket: &mut SyncSocket,
        session: &mut ClientSession,
        documents: Vec<DocumentId>,
    ) -> Result<PassReport, PassError> {
        send(socket, session.join()).await?;
        let mut queue: VecDeque<DocumentId> = VecDeque::new();
        let mut docs: BTreeMap<DocumentId, Automerge> = BTreeMap::new();
        // The heads of each document as stored here: what the district sent beyond them is
        // written through the document's actor.
        let mut stored: BTreeMap<DocumentId, Vec<ChangeHash>> = BTreeMap::new();
        let mut server_storage = String::new();
        let mut joined = false;
        let mut report = PassReport::default();
        loop {
            let bytes = match tokio::time::timeout(REPLY_TIMEOUT, socket.next()).await {
                Err(_) => return Err(PassError::Closed(format!("no answer within {} s", REPLY_TIMEOUT.as_secs()))),
                Ok(None) => return Err(PassError::Closed("closed by the district".into())),
                Ok(Some(Err(e))) => return Err(PassError::Closed(e.to_string())),
                Ok(Some(Ok(Frame::Binary(bytes)))) => bytes,
                Ok(Some(Ok(Frame::Close(reason)))) => {
                    return Err(PassError::Closed(reason.map(|r| r.reason.to_string()).unwrap_or_default()));
                }
                Ok(Some(Ok(_))) => continue,
            };
            let mut frames = Vec::new();
            for effect in session.receive(&bytes, &mut docs)? {
                match effect {
                    Effect::Joined(server) => {
                        server_storage = server.storage_id.unwrap_or(server.peer_id);
                        queue = documents.iter().copied().collect();
                        joined = true;
                    }
                    Effect::Persist(p) => {
                        if p.changed
                            && let (Some(doc), Some(before)) = (docs.get(&p.document), stored.get(&p.document))
                        {
                            let chunk = doc.save_after(before);
                            let heads = doc.get_heads();
                            self.store_from_district(p.document, chunk).await?;
                            stored.insert(p.document, heads);
                        }
                        self.relays
                            .set_sync_state(&p.document, &server_storage, &p.sync_state, &p.acknowledged)
                            .await?;
                    }
                    Effect::Send(frame) => frames.push(frame),
                }
            }
            while joined && session.is_complete() {
                let Some(id) = queue.pop_front() else { break };
                let doc = self.relays.document(&id).await?;
                stored.insert(id, doc.get_heads());
                docs.insert(id, doc);
                let saved = self.relays.sync_state(&id, &server_storage).await?;
                frames.extend(session.open_document(id, saved.as_deref(), &docs)?);
                report.documents += 1;
            }
            for frame in frames {
                send(socket, frame).await?;
            }
            if joined && queue.is_empty() && session.is_complete() {
                let _ = send(socket, session.leave()).await;
                return Ok(report);
            }
        }
    }

    /// Stores changes the district sent through the document's actor: durable here, and sent
    /// on to the phones connected to the relay.
    async fn store_from_district(&self, document: DocumentId, chunk: Vec<u8>) -> Result<(), PassError> {
        let write =
            Box::new(move |doc: &mut Automerge| doc.load_incremental(&chunk).map(|_| ()).map_err(|e| e.to_string()));
        self.hub.write(document, write).await.map(|_| ()).map_err(|e| PassError::Write(e.to_string()))
    }
}

async fn send(socket: &mut SyncSocket, frame: Vec<u8>) -> Result<(), PassError> {
    socket.send(Frame::Binary(frame.into())).await.map_err(|e| PassError::Closed(e.to_string()))
}
