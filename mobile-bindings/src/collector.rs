//! The collector library: what a phone does, behind a blocking API.
//!
//! [`Collector`] opens the local store, keeps the documents it holds in memory (a campaign
//! document per campaign, a ledger per assigned hamlet), and writes every change to the store
//! before it returns. It owns a small tokio runtime for the store and the network, so callers
//! (the FFI, the command line) stay synchronous; calls may come from several threads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hamlet_sync_core::automerge::{ActorId, Automerge, ChangeHash, LoadOptions, OnPartialLoad};
use hamlet_sync_core::campaign_doc::read_campaign;
use hamlet_sync_core::client::Documents;
use hamlet_sync_core::ids::IdError;
use hamlet_sync_core::ledger::{Ballots, CountKey, ResponseView};
use hamlet_sync_core::{
    Campaign, CampaignId, Day, DocumentId, EditOutcome, Ledger, LedgerError, NewResponse, PersonId, ResponseId, Tally,
    TallyId, UnitId,
};

use hamlet_sync_core::enrollment::{CertificatePin, EnrollmentLink, LinkError};

use crate::address::{AddressError, ServerAddress};
use crate::answers::{self, AnswerInputError};
use crate::bundle::{self, BundleFileError, BundleProgress};
use crate::enroll::{self, EnrollError, EnrollRequest};
use crate::store::{Assignment, DocWrite, DocumentRecord, IndexFilter, IndexRow, Store, StoreError, StoredIdentity};
use crate::sync::{self, SyncError, SyncEvent, SyncOptions};
use crate::transport::{PemError, Trust};
use crate::views::{
    AnswerSlot, AssignmentView, BundleReport, CampaignView, Counts, EnrollmentView, HamletView, RefusedDocument,
    ResponseFilter, ResponseItem, SetAsideItem, SyncReport, TallyInput, TallyItem,
};

/// Incremental chunks a document may gather before they are replaced by one snapshot.
const COMPACT_AFTER: usize = 128;
/// Vietnam's offset from UTC, the default for "today".
const DEFAULT_UTC_OFFSET_MINUTES: i32 = 7 * 60;
/// How long enrollment may take.
const ENROLL_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong, with what the collector needs to put it right.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An answer does not fit the form (the message names the question).
    #[error(transparent)]
    Answer(#[from] AnswerInputError),
    /// The ledger refused the operation (a missing required answer, a voided response…).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An identifier or value given is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The device is not enrolled yet.
    #[error("this device is not enrolled: run enroll first")]
    NotEnrolled,
    /// The campaign is not assigned to this collector.
    #[error("campaign {0} is not assigned to this collector")]
    UnknownCampaign(String),
    /// The campaign document has not been downloaded yet.
    #[error("campaign {0} has not been downloaded yet: sync first")]
    CampaignNotDownloaded(String),
    /// The hamlet is not assigned to this collector in this campaign.
    #[error("hamlet {hamlet} is not assigned to this collector in campaign {campaign}")]
    HamletNotAssigned {
        /// The campaign.
        campaign: String,
        /// The hamlet.
        hamlet: String,
    },
    /// No response or tally with this id here.
    #[error("no {kind} {id} on this device")]
    NotFound {
        /// "response" or "tally".
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// The server address is unusable.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// Enrollment failed.
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    /// Sync failed (nothing is lost: sync again).
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A bundle could not be written or read.
    #[error(transparent)]
    Bundle(#[from] BundleFileError),
    /// A stored document does not load.
    #[error("document {document} does not load: {reason}")]
    Document {
        /// The document.
        document: String,
        /// Why.
        reason: String,
    },
    /// The device token goes only to the server the device enrolled with.
    #[error("{given} is not the server this device enrolled with ({enrolled}): nothing was sent")]
    UntrustedServer {
        /// The server asked for.
        given: String,
        /// The enrolled server.
        enrolled: String,
    },
    /// A certificate file that does not read.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// An enrollment code or link that does not read.
    #[error(transparent)]
    Link(#[from] hamlet_sync_core::enrollment::LinkError),
    /// The library could not start its runtime.
    #[error("cannot start: {0}")]
    Runtime(String),
}

impl From<IdError> for CollectorError {
    fn from(e: IdError) -> Self {
        CollectorError::Invalid(e.to_string())
    }
}

/// A document held in memory.
#[derive(Debug)]
pub(crate) enum Body {
    /// A campaign document, and the campaign once it reads.
    Campaign { doc: Automerge, campaign: Option<Box<Campaign>> },
    /// A hamlet ledger.
    Ledger(Ledger),
}

impl Body {
    pub(crate) fn doc(&self) -> &Automerge {
        match self {
            Body::Campaign { doc, .. } => doc,
            Body::Ledger(l) => l.doc(),
        }
    }

    pub(crate) fn doc_mut(&mut self) -> &mut Automerge {
        match self {
            Body::Campaign { doc, .. } => doc,
            Body::Ledger(l) => l.doc_mut(),
        }
    }
}

/// A document, and how much of it is stored.
#[derive(Debug)]
pub(crate) struct Doc {
    pub(crate) record: DocumentRecord,
    pub(crate) body: Body,
    /// Heads of what the store holds: the next chunk is what came after.
    pub(crate) saved_heads: Vec<ChangeHash>,
    /// Chunks stored since the last snapshot.
    pub(crate) chunks: usize,
    /// The newest chunk's sequence number.
    pub(crate) last_seq: i64,
    /// Bytes of its chunks in the store (bounded by [`SyncOptions::max_document_bytes`] for
    /// what a server sends).
    pub(crate) stored_bytes: usize,
}

/// What the library holds in memory, behind one lock.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) identity: Option<StoredIdentity>,
    pub(crate) assignments: Vec<Assignment>,
    /// Every document the store holds.
    pub(crate) records: BTreeMap<DocumentId, DocumentRecord>,
    /// The documents in memory: each is loaded when first used ([`Shared::ensure`]), not when
    /// the store opens.
    pub(crate) docs: BTreeMap<DocumentId, Doc>,
    pub(crate) utc_offset_minutes: i32,
    /// A day that stands for "today" instead of the clock (demos and tests replaying a
    /// campaign's schedule); not kept in the store.
    pub(crate) fixed_today: Option<Day>,
}

impl Documents for Inner {
    fn document(&self, id: &DocumentId) -> Option<&Automerge> {
        self.docs.get(id).map(|d| d.body.doc())
    }
    fn document_mut(&mut self, id: &DocumentId) -> Option<&mut Automerge> {
        self.docs.get_mut(id).map(|d| d.body.doc_mut())
    }
}

impl Inner {
    pub(crate) fn today(&self) -> Day {
        if let Some(day) = self.fixed_today {
            return day;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let now = i64::try_from(now).unwrap_or(0);
        Day::from_unix_seconds(now + i64::from(self.utc_offset_minutes) * 60)
    }

    fn collector(&self) -> Result<PersonId, CollectorError> {
        let identity = self.identity.as_ref().ok_or(CollectorError::NotEnrolled)?;
        Ok(PersonId::new(identity.collector.clone())?)
    }

    /// The campaign, from its document (loaded with [`Shared::ensure_for`]).
    fn campaign(&self, id: &CampaignId) -> Result<&Campaign, CollectorError> {
        let doc = self.campaign_document(id).ok_or_else(|| CollectorError::UnknownCampaign(id.to_string()))?;
        match self.docs.get(&doc).map(|d| &d.body) {
            Some(Body::Campaign { campaign: Some(c), .. }) => Ok(c),
            _ => Err(CollectorError::CampaignNotDownloaded(id.to_string())),
        }
    }

    /// The campaign document of `id`, if the store holds one.
    fn campaign_document(&self, id: &CampaignId) -> Option<DocumentId> {
        self.records.iter().find(|(_, r)| r.kind == "campaign" && r.campaign == id.as_str()).map(|(d, _)| *d)
    }

    /// The ledgers the store holds, of `campaign` and `hamlet` when given.
    pub(crate) fn ledgers_of(&self, campaign: Option<&str>, hamlet: Option<&str>) -> Vec<DocumentId> {
        self.records
            .iter()
            .filter(|(_, r)| {
                r.kind == "ledger"
                    && campaign.is_none_or(|c| c == r.campaign)
                    && hamlet.is_none_or(|h| r.hamlet.as_deref() == Some(h))
            })
            .map(|(d, _)| *d)
            .collect()
    }

    fn ledger_id(&self, campaign: &CampaignId, hamlet: &UnitId) -> Result<DocumentId, CollectorError> {
        let id = DocumentId::for_ledger(campaign, hamlet);
        if self.records.contains_key(&id) {
            Ok(id)
        } else if self.assignments.iter().any(|a| a.campaign == campaign.as_str()) {
            Err(CollectorError::HamletNotAssigned { campaign: campaign.to_string(), hamlet: hamlet.to_string() })
        } else {
            Err(CollectorError::UnknownCampaign(campaign.to_string()))
        }
    }

    /// Whether a document belongs to a current assignment (a campaign's document, or the
    /// ledger of an assigned hamlet).
    pub(crate) fn is_assigned(&self, id: &DocumentId) -> bool {
        self.assignments.iter().any(|a| {
            DocumentId::parse_url_or_id(&a.campaign_document).is_ok_and(|d| d == *id)
                || match (CampaignId::new(a.campaign.as_str()), UnitId::new(a.hamlet.as_str())) {
                    (Ok(c), Ok(h)) => DocumentId::for_ledger(&c, &h) == *id,
                    _ => false,
                }
        })
    }

    fn ledger(&self, id: &DocumentId) -> Option<&Ledger> {
        match self.docs.get(id).map(|d| &d.body) {
            Some(Body::Ledger(l)) => Some(l),
            _ => None,
        }
    }

    fn ledger_mut(&mut self, id: &DocumentId) -> Option<&mut Ledger> {
        match self.docs.get_mut(id).map(|d| &mut d.body) {
            Some(Body::Ledger(l)) => Some(l),
            _ => None,
        }
    }
}

/// Index row of a response as its ledger shows it.
pub(crate) fn index_row(doc: &DocumentRecord, view: &ResponseView, last_change: Option<Vec<u8>>) -> IndexRow {
    let status = match view.status() {
        hamlet_sync_core::Status::Draft => "draft",
        hamlet_sync_core::Status::Submitted => "submitted",
        hamlet_sync_core::Status::Voided => "voided",
    };
    IndexRow {
        id: view.id.to_string(),
        document: doc.id.clone(),
        campaign: doc.campaign.clone(),
        hamlet: doc.hamlet.clone().unwrap_or_default(),
        collector: view.collector.clone(),
        status: status.to_owned(),
        recorded_on: view.recorded_on.map(|d| d.to_string()),
        acknowledged: last_change.is_none(),
        last_change,
    }
}

/// What the library's parts share: the store, the documents, the device's identity.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) inner: tokio::sync::Mutex<Inner>,
    /// One sync at a time per store.
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    /// This store's storage id, sent in `join`: servers keep our sync state under it.
    pub(crate) storage_id: String,
    /// The actor id this device writes with.
    pub(crate) actor: ActorId,
    /// Bumped to cancel the sync that runs (each sync watches it from its start).
    pub(crate) cancel: tokio::sync::watch::Sender<u64>,
    /// The certificate authorities believed for TLS servers that are not pinned.
    pub(crate) trust: std::sync::RwLock<Trust>,
}

impl Shared {
    /// How to check `server`: its pinned certificate when it is the enrolled server and the
    /// enrollment pinned one, else the authorities.
    pub(crate) fn trust_for(&self, server: &ServerAddress, identity: Option<&StoredIdentity>) -> Trust {
        let trust = self.trust.read().map(|t| t.clone()).unwrap_or_default();
        let pin = identity
            .filter(|i| ServerAddress::parse(&i.server).is_ok_and(|enrolled| enrolled == *server))
            .and_then(|i| i.certificate_pin.as_deref())
            .and_then(|p| CertificatePin::parse(p).ok());
        trust.pinned(pin)
    }
}

impl Shared {
    /// Loads one document from its chunks. Chunks that do not load (two writers gave one actor
    /// the same sequence number, a disk fault) are left out and returned with the reason, for
    /// the caller to set aside: one bad chunk never makes the rest of the document, or any
    /// other document, unreachable.
    fn load_doc(
        &self,
        record: DocumentRecord,
        chunks: &[(i64, bool, Vec<u8>)],
    ) -> Result<(Doc, Vec<(i64, String)>), CollectorError> {
        let strict = |bytes: &[u8]| {
            Automerge::load_with_options(bytes, LoadOptions::new().on_partial_load(OnPartialLoad::Error))
        };
        let all: Vec<u8> = chunks.iter().flat_map(|(_, _, d)| d.iter().copied()).collect();
        // A ledger's skeleton is the same change everywhere: a ledger can always start from it.
        let skeleton = || match (record.kind.as_str(), CampaignId::new(record.campaign.as_str()), &record.hamlet) {
            ("ledger", Ok(campaign), Some(hamlet)) => {
                UnitId::new(hamlet.as_str()).ok().map(|h| Ledger::skeleton(&campaign, &h).save())
            }
            _ => None,
        };
        let mut bad = Vec::new();
        let mut doc = if all.is_empty() {
            match &skeleton() {
                Some(s) => strict(s).map_err(|e| self.bad(&record, e.to_string()))?,
                None => Automerge::new(),
            }
        } else {
            match strict(&all) {
                Ok(doc) => doc,
                Err(e) => {
                    tracing::warn!(document = %record.id, error = %e, "a stored document does not load; repairing");
                    // Chunk by chunk, keeping each one that loads with those kept before it.
                    let mut good = skeleton().unwrap_or_default();
                    for (seq, _, data) in chunks {
                        let mut trial = good.clone();
                        trial.extend_from_slice(data);
                        match strict(&trial) {
                            Ok(_) => good = trial,
                            Err(e) => bad.push((*seq, e.to_string())),
                        }
                    }
                    if good.is_empty() {
                        Automerge::new()
                    } else {
                        strict(&good).map_err(|e| self.bad(&record, e.to_string()))?
                    }
                }
            }
        };
        doc.set_actor(self.actor.clone());
        let body = if record.kind == "ledger" {
            match Ledger::from_doc(doc) {
                Ok(ledger) => Body::Ledger(ledger),
                // Not a ledger at all: keep every chunk apart, start again from the skeleton.
                Err(e) => {
                    let skeleton = skeleton().ok_or_else(|| self.bad(&record, e.to_string()))?;
                    bad = chunks.iter().map(|(seq, _, _)| (*seq, format!("not a hamlet ledger: {e}"))).collect();
                    let mut doc = strict(&skeleton).map_err(|e| self.bad(&record, e.to_string()))?;
                    doc.set_actor(self.actor.clone());
                    Body::Ledger(Ledger::from_doc(doc).map_err(|e| self.bad(&record, e.to_string()))?)
                }
            }
        } else {
            let campaign = read_campaign(&doc).ok().map(Box::new);
            Body::Campaign { doc, campaign }
        };
        let saved_heads = body.doc().get_heads();
        let kept: Vec<&(i64, bool, Vec<u8>)> =
            chunks.iter().filter(|(seq, _, _)| !bad.iter().any(|(b, _)| b == seq)).collect();
        let since_snapshot = kept.iter().rev().take_while(|(_, snapshot, _)| !snapshot).count();
        let last_seq = kept.last().map_or(0, |(seq, _, _)| *seq);
        let stored_bytes = kept.iter().map(|(_, _, data)| data.len()).sum();
        Ok((Doc { record, body, saved_heads, chunks: since_snapshot, last_seq, stored_bytes }, bad))
    }

    fn bad(&self, record: &DocumentRecord, reason: String) -> CollectorError {
        CollectorError::Document { document: record.id.clone(), reason }
    }

    /// Loads a document and sets aside in the store what of it does not load, saying so.
    async fn load_and_repair(
        &self,
        record: DocumentRecord,
        chunks: &[(i64, bool, Vec<u8>)],
    ) -> Result<Doc, CollectorError> {
        let id = record.id.clone();
        let (doc, bad) = self.load_doc(record, chunks)?;
        if !bad.is_empty() {
            for (seq, reason) in &bad {
                tracing::warn!(document = %id, chunk = seq, reason, "a stored chunk does not load: set aside");
            }
            self.store.set_aside(&bad).await?;
        }
        Ok(doc)
    }

    /// The chunks of one document as [`Shared::load_doc`] takes them.
    async fn stored_chunks(&self, document: &str) -> Result<Vec<(i64, bool, Vec<u8>)>, CollectorError> {
        Ok(self.store.chunks_of(document).await?.into_iter().map(|c| (c.seq, c.snapshot, c.data)).collect())
    }

    /// Drops the in-memory copy of a document and loads what the store holds.
    pub(crate) async fn reload(&self, inner: &mut Inner, id: &DocumentId) -> Result<(), CollectorError> {
        let Some(record) = inner.docs.get(id).map(|d| d.record.clone()) else { return Ok(()) };
        let chunks = self.stored_chunks(&record.id).await?;
        let doc = self.load_and_repair(record, &chunks).await?;
        inner.docs.insert(*id, doc);
        Ok(())
    }

    /// Loads those of `ids` not in memory yet: each from its chunks (setting aside what does
    /// not load), its index rows checked against it. Documents load when first used, so that
    /// opening a store with many ledgers parses none of them.
    pub(crate) async fn ensure(&self, inner: &mut Inner, ids: &[DocumentId]) -> Result<(), CollectorError> {
        for id in ids {
            if inner.docs.contains_key(id) {
                continue;
            }
            let Some(record) = inner.records.get(id).cloned() else { continue };
            let chunks = self.stored_chunks(&record.id).await?;
            let doc = self.load_and_repair(record, &chunks).await?;
            let me = inner.identity.as_ref().map(|i| i.collector.clone());
            self.check_index(me.as_deref(), &doc).await?;
            inner.docs.insert(*id, doc);
        }
        Ok(())
    }

    /// Loads every document (for what needs them all: a bundle, the list of what was set aside).
    pub(crate) async fn ensure_all(&self, inner: &mut Inner) -> Result<(), CollectorError> {
        let ids: Vec<DocumentId> = inner.records.keys().copied().collect();
        self.ensure(inner, &ids).await
    }

    /// Loads the campaign document of `campaign`, and the ledgers given.
    async fn ensure_for(
        &self,
        inner: &mut Inner,
        campaign: &CampaignId,
        ledgers: &[DocumentId],
    ) -> Result<(), CollectorError> {
        let mut ids: Vec<DocumentId> = inner.campaign_document(campaign).into_iter().collect();
        ids.extend_from_slice(ledgers);
        self.ensure(inner, &ids).await
    }

    /// Stores what changed in `id` since it was last stored, with `write`'s other contents, in
    /// one transaction; on failure the in-memory document goes back to what is stored.
    pub(crate) async fn persist(
        &self,
        inner: &mut Inner,
        id: &DocumentId,
        mut write: DocWrite,
    ) -> Result<(), CollectorError> {
        let Some(doc) = inner.docs.get(id) else { return Ok(()) };
        let heads = doc.body.doc().get_heads();
        if heads != doc.saved_heads && write.chunk.is_none() {
            write.chunk = Some(doc.body.doc().save_after(&doc.saved_heads));
        }
        let written = write.chunk.as_ref().map_or(0, Vec::len);
        write.document = doc.record.id.clone();
        match self.store.write(&write).await {
            Ok(seq) => {
                if let Some(doc) = inner.docs.get_mut(id) {
                    doc.saved_heads = heads;
                    if let Some(seq) = seq {
                        doc.chunks += 1;
                        doc.last_seq = seq;
                        doc.stored_bytes += written;
                    }
                }
                self.maybe_compact(inner, id).await;
                Ok(())
            }
            Err(e) => {
                // The change is in memory only: drop it, so memory says what the store holds.
                if let Err(reload) = self.reload(inner, id).await {
                    tracing::error!(error = %reload, "cannot reload a document after a failed write");
                }
                Err(e.into())
            }
        }
    }

    /// Replaces a document's chunks by one snapshot once they are many. A failure is only
    /// logged: the chunks stay, and loading them still works.
    async fn maybe_compact(&self, inner: &mut Inner, id: &DocumentId) {
        let Some(doc) = inner.docs.get_mut(id) else { return };
        if doc.chunks < COMPACT_AFTER {
            return;
        }
        let snapshot = doc.body.doc().save();
        match self.store.compact(&doc.record.id, &snapshot, doc.last_seq).await {
            Ok(seq) => {
                doc.chunks = 0;
                doc.last_seq = seq;
                doc.stored_bytes = snapshot.len();
            }
            Err(e) => tracing::warn!(document = %doc.record.id, error = %e, "compaction failed"),
        }
    }

    /// Checks the response index against the ledgers and corrects what differs: a crash, or an
    /// older version of this library, may have stored a ledger's changes without their rows.
    /// A missing row for one of this collector's responses is marked not acknowledged: the
    /// next sync confirms it, so the phone never shows as safe what may not be.
    async fn check_index(&self, me: Option<&str>, doc: &Doc) -> Result<(), CollectorError> {
        {
            let Body::Ledger(ledger) = &doc.body else { return Ok(()) };
            let stored = self.store.index_of(&doc.record.id).await?;
            let mut rows = Vec::new();
            let mut present = BTreeSet::new();
            for view in ledger.responses()? {
                present.insert(view.id.to_string());
                let mut row = index_row(&doc.record, &view, None);
                match stored.iter().find(|s| s.id == row.id) {
                    Some(s)
                        if s.status == row.status
                            && s.collector == row.collector
                            && s.recorded_on == row.recorded_on =>
                    {
                        continue;
                    }
                    Some(_) => {}
                    None if row.collector.is_some() && row.collector.as_deref() == me => {
                        row.last_change = ledger.doc().get_heads().first().map(|h| h.0.to_vec());
                        row.acknowledged = false;
                    }
                    None => {}
                }
                rows.push(row);
            }
            let removed: Vec<String> =
                stored.iter().filter(|s| !present.contains(&s.id)).map(|s| s.id.clone()).collect();
            if !rows.is_empty() || !removed.is_empty() {
                tracing::warn!(document = %doc.record.id, corrected = rows.len(), removed = removed.len(), "the response index disagreed with the ledger: corrected");
                self.store.repair_index(&doc.record.id, &rows, &removed).await?;
            }
        }
        Ok(())
    }

    /// After a local operation on `responses` of ledger `id`: stores the change and the index
    /// rows, each marked with the change just made (not yet acknowledged).
    async fn persist_local(
        &self,
        inner: &mut Inner,
        id: &DocumentId,
        responses: &[ResponseId],
    ) -> Result<(), CollectorError> {
        let mut rows = Vec::new();
        if let Some(doc) = inner.docs.get(id)
            && let Body::Ledger(ledger) = &doc.body
        {
            // A local commit depends on every head: it is the only head afterwards.
            let change = ledger.doc().get_heads().first().map(|h| h.0.to_vec());
            for r in responses {
                if let Some(view) = ledger.response(r)? {
                    rows.push(index_row(&doc.record, &view, change.clone()));
                }
            }
        }
        self.persist(inner, id, DocWrite { index: rows, ..DocWrite::default() }).await
    }
}

/// The collector library.
#[derive(Debug)]
pub struct Collector {
    runtime: tokio::runtime::Runtime,
    pub(crate) shared: Arc<Shared>,
}

/// 32 fresh random bytes, for one sealed object.
fn entropy() -> Result<[u8; 32], CollectorError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| CollectorError::Invalid(format!("no randomness on this phone: {e}")))?;
    Ok(bytes)
}

fn day_text(day: Option<Day>) -> Option<String> {
    day.map(|d| d.to_string())
}

impl Collector {
    /// Opens the store at `path`, creating it on first use.
    pub fn open(path: impl AsRef<Path>) -> Result<Collector, CollectorError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hamlet-collector")
            .enable_all()
            .build()
            .map_err(|e| CollectorError::Runtime(e.to_string()))?;
        let shared = runtime.block_on(Collector::load(path.as_ref()))?;
        Ok(Collector { runtime, shared: Arc::new(shared) })
    }

    async fn load(path: &Path) -> Result<Shared, CollectorError> {
        let store = Store::open(path).await?;
        let storage_id = store.meta_or_insert("storage_id", &uuid::Uuid::new_v4().to_string()).await?;
        let actor_hex = store.meta_or_insert("actor", &ActorId::random().to_hex_string()).await?;
        let actor = ActorId::try_from(actor_hex.as_str())
            .map_err(|_| StoreError::Corrupt(format!("actor id {actor_hex:?} is not hex")))?;
        let utc_offset_minutes = match store.meta("utc_offset_minutes").await? {
            Some(text) => text.parse().map_err(|_| StoreError::Corrupt(format!("UTC offset {text:?}")))?,
            None => DEFAULT_UTC_OFFSET_MINUTES,
        };
        let identity = store.identity().await?;
        let assignments = store.assignments().await?;
        let mut records = BTreeMap::new();
        for record in store.documents().await? {
            let id = DocumentId::parse_url_or_id(&record.id)
                .map_err(|e| StoreError::Corrupt(format!("document id: {e}")))?;
            records.insert(id, record);
        }
        // A store an older version wrote may hold an index that disagrees with its documents
        // (this version writes both in one transaction): it is checked in full once, as it is
        // upgraded. Otherwise nothing is parsed now: each document loads when first used.
        let check_all = store.upgraded_from().is_some();
        let shared = Shared {
            store,
            inner: tokio::sync::Mutex::new(Inner {
                identity,
                assignments,
                records,
                docs: BTreeMap::new(),
                utc_offset_minutes,
                fixed_today: None,
            }),
            sync_lock: tokio::sync::Mutex::new(()),
            storage_id,
            actor,
            cancel: tokio::sync::watch::Sender::new(0),
            trust: std::sync::RwLock::new(Trust::public()),
        };
        if check_all {
            let mut inner = shared.inner.lock().await;
            shared.ensure_all(&mut inner).await?;
        }
        Ok(shared)
    }

    pub(crate) fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// This store's storage id (what servers keep sync states under).
    pub fn storage_id(&self) -> String {
        self.shared.storage_id.clone()
    }

    /// The actor id this device writes with, in hex.
    pub fn actor_id(&self) -> String {
        self.shared.actor.to_hex_string()
    }

    /// Today, for this collector (local time at the configured offset from UTC).
    pub fn today(&self) -> String {
        self.block(async { self.shared.inner.lock().await.today().to_string() })
    }

    /// Makes `day` (`YYYY-MM-DD`) "today" for this `Collector`, instead of the clock, or goes
    /// back to the clock with `None`: for demos and tests that replay a campaign's schedule.
    /// Not kept in the store.
    pub fn set_fixed_today(&self, day: Option<&str>) -> Result<(), CollectorError> {
        let day = match day {
            Some(text) => {
                Some(text.parse::<Day>().map_err(|e| CollectorError::Invalid(format!("{text:?} is not a day: {e}")))?)
            }
            None => None,
        };
        self.block(async { self.shared.inner.lock().await.fixed_today = day });
        Ok(())
    }

    /// Sets the offset from UTC used for "today" (default +07:00).
    pub fn set_utc_offset_minutes(&self, minutes: i32) -> Result<(), CollectorError> {
        if !(-14 * 60..=14 * 60).contains(&minutes) {
            return Err(CollectorError::Invalid(format!("UTC offset of {minutes} minutes is out of range")));
        }
        self.block(async {
            self.shared.store.set_meta("utc_offset_minutes", &minutes.to_string()).await?;
            self.shared.inner.lock().await.utc_offset_minutes = minutes;
            Ok(())
        })
    }

    /// Enrolls this device with a one-time code, then keeps the identity, the token and the
    /// assignments. The campaign documents arrive with the next sync.
    ///
    /// `code` is what the QR code holds or the collector typed: the code alone, or a link
    /// (`<server>/collect/#enroll=<code>`), either perhaps with the fingerprint of the server's
    /// certificate (`&pin=…`). `server` may be empty when the link names the server; when both
    /// are given, `server` is where to reach it. With a fingerprint the server is reached over
    /// TLS and must present exactly that certificate, at enrollment and at every sync after:
    /// otherwise nothing is sent.
    pub fn enroll(&self, server: &str, code: &str, device_name: &str) -> Result<EnrollmentView, CollectorError> {
        if code.trim().is_empty() {
            return Err(CollectorError::Invalid("the enrollment code is empty".into()));
        }
        let link = match EnrollmentLink::parse(code) {
            Ok(link) => link,
            // Typed text that is not shaped like a code (no link, no parameters): the server
            // decides, as it always did.
            Err(LinkError::NotACode) if !code.contains("://") && !code.contains('&') => {
                EnrollmentLink::new(None, code.trim())
            }
            Err(e) => return Err(e.into()),
        };
        let server = match (server.trim(), link.server.as_deref()) {
            ("", Some(from_link)) => from_link,
            ("", None) => return Err(CollectorError::Invalid("no server given, and the code names none".into())),
            (given, _) => given,
        };
        let address = match link.pin {
            Some(_) => ServerAddress::parse_pinned(server)?,
            None => ServerAddress::parse(server)?,
        };
        let trust = self.shared.trust.read().map(|t| t.clone()).unwrap_or_default().pinned(link.pin);
        let device_name = if device_name.trim().is_empty() { "phone" } else { device_name.trim() };
        let request =
            EnrollRequest { code: link.code, actor_ids: vec![self.actor_id()], device_name: device_name.to_owned() };
        let answer = self.block(enroll::enroll(&address, &trust, &request, ENROLL_TIMEOUT))?;
        let mut assignments = Vec::new();
        for c in &answer.campaigns {
            let document = match &c.document {
                Some(text) => DocumentId::parse_url_or_id(text).map_err(|e| {
                    EnrollError::BadResponse(format!("campaign {}: document {text:?}: {e}", c.campaign))
                })?,
                None => DocumentId::for_campaign(&CampaignId::new(c.campaign.as_str())?),
            };
            for hamlet in &c.hamlets {
                assignments.push((c.campaign.clone(), document, hamlet.clone()));
            }
        }
        let enrolled = Enrolled { collector: answer.collector, token: Some(answer.token), pin: link.pin };
        self.save_assignments(address, enrolled, device_name, assignments)
    }

    /// Believes, besides the public authorities, the certificate authorities in `pem` (PEM
    /// text, one or more certificates) for TLS servers whose certificate is not pinned: a
    /// district's own authority. For this `Collector` only (not stored: give it at every
    /// start). Returns how many certificates were read.
    pub fn trust_authorities(&self, pem: &str) -> Result<u32, CollectorError> {
        let current = self.shared.trust.read().map(|t| t.clone()).unwrap_or_default();
        let (trust, read) = current.with_authorities(pem.as_bytes())?;
        if let Ok(mut slot) = self.shared.trust.write() {
            *slot = trust;
        }
        Ok(read as u32)
    }

    /// Sets up this device for a server that does not enroll devices (a test or demo server):
    /// the collector's id and the hamlets assigned in each campaign, given by hand.
    pub fn setup_without_enrollment(
        &self,
        server: &str,
        collector: &str,
        campaigns: &[(String, Vec<String>)],
    ) -> Result<EnrollmentView, CollectorError> {
        let address = ServerAddress::parse(server)?;
        PersonId::new(collector)?;
        let mut assignments = Vec::new();
        for (campaign, hamlets) in campaigns {
            let document = DocumentId::for_campaign(&CampaignId::new(campaign.as_str())?);
            if hamlets.is_empty() {
                return Err(CollectorError::Invalid(format!("campaign {campaign}: no hamlet given")));
            }
            for hamlet in hamlets {
                assignments.push((campaign.clone(), document, hamlet.clone()));
            }
        }
        let enrolled = Enrolled { collector: collector.to_owned(), token: None, pin: None };
        self.save_assignments(address, enrolled, "phone", assignments)
    }

    fn save_assignments(
        &self,
        address: ServerAddress,
        enrolled: Enrolled,
        device_name: &str,
        assignments: Vec<(String, DocumentId, String)>,
    ) -> Result<EnrollmentView, CollectorError> {
        let Enrolled { collector, token, pin } = enrolled;
        PersonId::new(collector.as_str())?;
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            let identity = StoredIdentity {
                server: address.to_string(),
                collector,
                token,
                device_name: device_name.to_owned(),
                enrolled_on: inner.today().to_string(),
                certificate_pin: pin.map(|p| p.to_string()),
            };
            let mut stored = Vec::new();
            let mut new_docs: Vec<(DocumentRecord, Option<Vec<u8>>)> = Vec::new();
            let mut seen = BTreeSet::new();
            for (campaign, document, hamlet) in &assignments {
                let campaign_id = CampaignId::new(campaign.as_str())?;
                let hamlet_id = UnitId::new(hamlet.as_str())?;
                stored.push(Assignment {
                    campaign: campaign.clone(),
                    campaign_document: document.to_string(),
                    hamlet: hamlet.clone(),
                });
                if !inner.records.contains_key(document) && seen.insert(*document) {
                    let record = DocumentRecord {
                        id: document.to_string(),
                        kind: "campaign".into(),
                        campaign: campaign.clone(),
                        hamlet: None,
                    };
                    new_docs.push((record, None));
                }
                let ledger_id = DocumentId::for_ledger(&campaign_id, &hamlet_id);
                if !inner.records.contains_key(&ledger_id) && seen.insert(ledger_id) {
                    // The skeleton is the same change on every device: creating it here
                    // cannot conflict with the copy at the server or on another phone.
                    let skeleton = Ledger::skeleton(&campaign_id, &hamlet_id).save();
                    let record = DocumentRecord {
                        id: ledger_id.to_string(),
                        kind: "ledger".into(),
                        campaign: campaign.clone(),
                        hamlet: Some(hamlet.clone()),
                    };
                    new_docs.push((record, Some(skeleton)));
                }
            }
            self.shared.store.save_enrollment(&identity, &stored, &new_docs).await?;
            // The new documents load from the store when first used, like every other.
            for (record, _) in new_docs {
                let id = DocumentId::parse_url_or_id(&record.id)
                    .map_err(|e| CollectorError::Invalid(format!("document id: {e}")))?;
                inner.records.insert(id, record);
            }
            inner.identity = Some(identity);
            inner.assignments = stored;
            Ok(enrollment_view(&inner))
        })
    }

    /// The enrollment, if the device has one.
    pub fn enrollment(&self) -> Option<EnrollmentView> {
        self.block(async {
            let inner = self.shared.inner.lock().await;
            inner.identity.as_ref().map(|_| enrollment_view(&inner))
        })
    }

    /// The campaigns assigned, with their hamlets.
    pub fn campaigns(&self) -> Vec<CampaignView> {
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            let documents: Vec<DocumentId> =
                inner.records.iter().filter(|(_, r)| r.kind == "campaign").map(|(d, _)| *d).collect();
            if let Err(e) = self.shared.ensure(&mut inner, &documents).await {
                tracing::warn!(error = %e, "a campaign document does not load");
            }
            let inner = &*inner;
            let mut by_campaign: BTreeMap<&str, Vec<&Assignment>> = BTreeMap::new();
            for a in &inner.assignments {
                by_campaign.entry(&a.campaign).or_default().push(a);
            }
            by_campaign
                .into_iter()
                .map(|(id, assigned)| {
                    let campaign = CampaignId::new(id).ok().and_then(|c| inner.campaign(&c).ok());
                    let hamlets = assigned
                        .iter()
                        .map(|a| HamletView {
                            id: a.hamlet.clone(),
                            expected_voters: campaign.and_then(|c| {
                                c.hamlets.iter().find(|h| h.hamlet.as_str() == a.hamlet).map(|h| h.expected_voters)
                            }),
                            ballot: campaign
                                .zip(UnitId::new(a.hamlet.as_str()).ok())
                                .map(|(c, h)| c.ballot(&h).iter().map(ToString::to_string).collect())
                                .unwrap_or_default(),
                            document: match (CampaignId::new(id), UnitId::new(a.hamlet.as_str())) {
                                (Ok(c), Ok(h)) => DocumentId::for_ledger(&c, &h).url(),
                                _ => String::new(),
                            },
                        })
                        .collect();
                    let document = assigned
                        .first()
                        .and_then(|a| DocumentId::parse_url_or_id(&a.campaign_document).ok())
                        .map(|d| d.url())
                        .unwrap_or_default();
                    CampaignView {
                        id: id.to_owned(),
                        document,
                        name_vi: campaign.map(|c| c.name.vi.clone()).unwrap_or_default(),
                        name_en: campaign.map(|c| c.name.get("en").to_owned()).unwrap_or_default(),
                        state: campaign.map_or("unknown".into(), |c| {
                            serde_json::to_value(c.state)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default()
                        }),
                        downloaded: campaign.is_some(),
                        opens_on: campaign.map(|c| c.schedule.opens_on.to_string()),
                        closes_on: campaign.map(|c| c.schedule.closes_on.to_string()),
                        hamlets,
                    }
                })
                .collect()
        })
    }

    /// Every answer a response to `campaign` in `hamlet` can hold, in the order of the form:
    /// questions about subjects only for the subjects of the hamlet's ballot.
    pub fn answer_slots(&self, campaign: &str, hamlet: &str) -> Result<Vec<AnswerSlot>, CollectorError> {
        let id = CampaignId::new(campaign)?;
        let hamlet = UnitId::new(hamlet)?;
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            self.shared.ensure_for(&mut inner, &id, &[]).await?;
            Ok(answers::slots(inner.campaign(&id)?, &hamlet))
        })
    }

    /// Checks one answer, as typed, against the form and `hamlet`'s ballot (before recording,
    /// to ask again at once).
    pub fn check_answer(&self, campaign: &str, hamlet: &str, key: &str, text: &str) -> Result<(), CollectorError> {
        let id = CampaignId::new(campaign)?;
        let hamlet = UnitId::new(hamlet)?;
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            self.shared.ensure_for(&mut inner, &id, &[]).await?;
            answers::parse(inner.campaign(&id)?, &hamlet, key, text)?;
            Ok(())
        })
    }

    /// Records a new draft response in `hamlet`; `answers` are (key, text) pairs read against
    /// the form (empty texts are left out). Returns the response id.
    pub fn record(&self, campaign: &str, hamlet: &str, answers: &[(String, String)]) -> Result<String, CollectorError> {
        let campaign_id = CampaignId::new(campaign)?;
        let hamlet_id = UnitId::new(hamlet)?;
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            let me = inner.collector()?;
            let doc_id = inner.ledger_id(&campaign_id, &hamlet_id)?;
            self.shared.ensure_for(&mut inner, &campaign_id, &[doc_id]).await?;
            let form = inner.campaign(&campaign_id)?.clone();
            let mut parsed = BTreeMap::new();
            for (key, text) in answers.iter().filter(|(_, t)| !t.trim().is_empty()) {
                let (key, value) = answers::parse(&form, &hamlet_id, key, text)?;
                parsed.insert(key, value);
            }
            let id = ResponseId::new(uuid::Uuid::new_v4().to_string())?;
            let today = inner.today();
            let sealed = form.seal_key().is_some();
            if sealed {
                // The plaintext stays here only; the ledger gets the ciphertext.
                self.shared.store.set_plaintext(&doc_id.to_string(), id.as_str(), &answers::to_json(&parsed)).await?;
            }
            let ledger = inner.ledger_mut(&doc_id).ok_or_else(|| CollectorError::UnknownCampaign(campaign.into()))?;
            let response = NewResponse { id: id.clone(), collector: me, answers: parsed };
            if sealed {
                ledger.record_sealed(&form, &response, today, entropy()?)?;
            } else {
                ledger.record(&form, &response, today)?;
            }
            self.shared.persist_local(&mut inner, &doc_id, std::slice::from_ref(&id)).await?;
            Ok(id.to_string())
        })
    }

    /// The index row a response id names: the one response with this id or, when several
    /// ledgers hold the same id (another device chose it too), the collector's own.
    async fn row_of(&self, inner: &Inner, id: &str) -> Result<Option<IndexRow>, CollectorError> {
        let mut rows = self.shared.store.response(id).await?;
        if rows.len() <= 1 {
            return Ok(rows.pop());
        }
        let me = inner.identity.as_ref().map(|i| i.collector.as_str());
        let mut mine: Vec<IndexRow> =
            rows.iter().filter(|r| me.is_some() && r.collector.as_deref() == me).cloned().collect();
        if mine.len() == 1 {
            return Ok(mine.pop());
        }
        let hamlets: Vec<&str> = rows.iter().map(|r| r.hamlet.as_str()).collect();
        Err(CollectorError::Invalid(format!(
            "response id {id} names {} responses, in the ledgers of {}: list them by hamlet",
            rows.len(),
            hamlets.join(", ")
        )))
    }

    /// The response `id` names, its ledger and campaign, both loaded.
    async fn locate(
        &self,
        inner: &mut Inner,
        id: &str,
    ) -> Result<(ResponseId, DocumentId, CampaignId), CollectorError> {
        let not_found = || CollectorError::NotFound { kind: "response", id: id.to_owned() };
        let rid = ResponseId::new(id).map_err(|_| not_found())?;
        let row = self.row_of(inner, id).await?.ok_or_else(not_found)?;
        let doc = DocumentId::parse_url_or_id(&row.document).map_err(|_| not_found())?;
        self.shared.ensure_for(inner, &CampaignId::new(row.campaign.as_str())?, &[doc]).await?;
        if inner.ledger(&doc).is_none() {
            return Err(not_found());
        }
        Ok((rid, doc, CampaignId::new(row.campaign)?))
    }

    /// Changes answers of a response: (key, text) pairs, an empty text clearing the answer.
    /// Returns `true` when the response was already submitted: the edit is kept but flagged,
    /// and the submitted answers stay the ones counted.
    pub fn edit(&self, id: &str, changes: &[(String, String)]) -> Result<bool, CollectorError> {
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            let (rid, doc_id, campaign_id) = self.locate(&mut inner, id).await?;
            let form = inner.campaign(&campaign_id)?.clone();
            let hamlet = inner
                .ledger(&doc_id)
                .map(|l| l.hamlet().clone())
                .ok_or_else(|| CollectorError::NotFound { kind: "response", id: id.into() })?;
            let mut parsed = Vec::new();
            for (key, text) in changes {
                if text.trim().is_empty() {
                    let k = key
                        .parse()
                        .map_err(|e: IdError| AnswerInputError { key: key.clone(), message: e.to_string() })?;
                    let subjects = answers::ballot(&form, &hamlet, &k)
                        .map_err(|message| AnswerInputError { key: key.clone(), message })?;
                    form.form
                        .check_key(&subjects, &k)
                        .map_err(|e| AnswerInputError { key: key.clone(), message: e.to_string() })?;
                    parsed.push((k, None));
                } else {
                    let (k, v) = answers::parse(&form, &hamlet, key, text)?;
                    parsed.push((k, Some(v)));
                }
            }
            let today = inner.today();
            let outcome = if form.seal_key().is_some() {
                // The whole answer set is sealed again as the next version.
                let document = doc_id.to_string();
                let held = self.shared.store.plaintext(&document, rid.as_str()).await?.ok_or_else(|| {
                    CollectorError::Invalid(format!("the answers of response {id} are no longer on this phone"))
                })?;
                let mut answers = answers::from_json(&form, &held);
                for (k, v) in parsed {
                    match v {
                        Some(v) => answers.insert(k, v),
                        None => answers.remove(&k),
                    };
                }
                self.shared.store.set_plaintext(&document, rid.as_str(), &answers::to_json(&answers)).await?;
                let ledger = inner
                    .ledger_mut(&doc_id)
                    .ok_or_else(|| CollectorError::NotFound { kind: "response", id: id.into() })?;
                ledger.edit_sealed(&form, &rid, &answers, today, entropy()?)?
            } else {
                let ledger = inner
                    .ledger_mut(&doc_id)
                    .ok_or_else(|| CollectorError::NotFound { kind: "response", id: id.into() })?;
                ledger.edit(&form, &rid, &parsed, today)?
            };
            self.shared.persist_local(&mut inner, &doc_id, std::slice::from_ref(&rid)).await?;
            Ok(outcome == EditOutcome::FlaggedAfterSeal)
        })
    }

    /// Submits a response: its answers are sealed and counted.
    pub fn submit(&self, id: &str) -> Result<(), CollectorError> {
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            let me = inner.collector()?;
            let (rid, doc_id, campaign_id) = self.locate(&mut inner, id).await?;
            let form = inner.campaign(&campaign_id)?.clone();
            let today = inner.today();
            if form.seal_key().is_some() {
                // The ledger cannot read sealed answers: the required ones are checked here.
                let held = self.shared.store.plaintext(&doc_id.to_string(), rid.as_str()).await?.unwrap_or_default();
                let answers = answers::from_json(&form, &held);
                let hamlet = inner.ledger(&doc_id).map(|l| l.hamlet().clone());
                if let Some(hamlet) = hamlet {
                    for key in form.form.required_keys(&form.ballot(&hamlet)) {
                        if !answers.contains_key(&key) {
                            return Err(LedgerError::from(hamlet_sync_core::AnswerError::Missing(key)).into());
                        }
                    }
                }
            }
            let ledger = inner
                .ledger_mut(&doc_id)
                .ok_or_else(|| CollectorError::NotFound { kind: "response", id: id.into() })?;
            ledger.submit(&form, &rid, &me, today)?;
            self.shared.persist_local(&mut inner, &doc_id, std::slice::from_ref(&rid)).await
        })
    }

    /// Voids a response, with a reason: it is kept, never counted.
    pub fn void(&self, id: &str, reason: &str) -> Result<(), CollectorError> {
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            let me = inner.collector()?;
            let (rid, doc_id, _) = self.locate(&mut inner, id).await?;
            let today = inner.today();
            let ledger = inner
                .ledger_mut(&doc_id)
                .ok_or_else(|| CollectorError::NotFound { kind: "response", id: id.into() })?;
            ledger.void(&rid, reason, &me, today)?;
            self.shared.persist_local(&mut inner, &doc_id, std::slice::from_ref(&rid)).await
        })
    }

    /// Records a meeting tally, or corrects one (same id). Returns the tally id.
    pub fn record_tally(&self, input: &TallyInput) -> Result<String, CollectorError> {
        let campaign_id = CampaignId::new(input.campaign.as_str())?;
        let hamlet_id = UnitId::new(input.hamlet.as_str())?;
        let mut counts = BTreeMap::new();
        for (key, count) in &input.counts {
            let k = CountKey::decode(key).ok_or_else(|| AnswerInputError {
                key: key.clone(),
                message: "a count key is question/subject/level".into(),
            })?;
            counts.insert(k, *count);
        }
        let id = match &input.id {
            Some(id) => TallyId::new(id.as_str())?,
            None => TallyId::new(uuid::Uuid::new_v4().to_string())?,
        };
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            let me = inner.collector()?;
            let doc_id = inner.ledger_id(&campaign_id, &hamlet_id)?;
            self.shared.ensure_for(&mut inner, &campaign_id, &[doc_id]).await?;
            let form = inner.campaign(&campaign_id)?.clone();
            let ledger =
                inner.ledger_mut(&doc_id).ok_or_else(|| CollectorError::UnknownCampaign(input.campaign.clone()))?;
            if input.id.is_some() && ledger.tally(&id)?.is_none() {
                return Err(CollectorError::NotFound { kind: "tally", id: id.to_string() });
            }
            let tally = Tally {
                id: id.clone(),
                collector: me,
                ballots: Ballots {
                    issued: input.issued,
                    returned: input.returned,
                    valid: input.valid,
                    invalid: input.invalid,
                },
                counts,
            };
            let today = inner.today();
            let ledger =
                inner.ledger_mut(&doc_id).ok_or_else(|| CollectorError::UnknownCampaign(input.campaign.clone()))?;
            ledger.record_tally(&form, &tally, today)?;
            self.shared.persist_local(&mut inner, &doc_id, &[]).await?;
            Ok(id.to_string())
        })
    }

    /// The tallies of the assigned hamlets, optionally of one campaign or hamlet.
    pub fn tallies(&self, campaign: Option<&str>, hamlet: Option<&str>) -> Result<Vec<TallyItem>, CollectorError> {
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            let ledgers = inner.ledgers_of(campaign, hamlet);
            self.shared.ensure(&mut inner, &ledgers).await?;
            let mut out = Vec::new();
            for doc in inner.docs.values() {
                let Body::Ledger(ledger) = &doc.body else { continue };
                if campaign.is_some_and(|c| c != ledger.campaign().as_str())
                    || hamlet.is_some_and(|h| h != ledger.hamlet().as_str())
                {
                    continue;
                }
                for t in ledger.tallies()? {
                    out.push(TallyItem {
                        id: t.id.to_string(),
                        campaign: ledger.campaign().to_string(),
                        hamlet: ledger.hamlet().to_string(),
                        recorded_on: day_text(t.recorded_on),
                        collector: t.collector,
                        issued: t.ballots.issued,
                        returned: t.ballots.returned,
                        valid: t.ballots.valid,
                        invalid: t.ballots.invalid,
                        counts: t
                            .counts
                            .iter()
                            .filter_map(|(k, v)| answers::show(v).parse::<u32>().ok().map(|n| (k.clone(), n)))
                            .collect(),
                    });
                }
            }
            Ok(out)
        })
    }

    /// The responses matching `filter`, newest day first.
    pub fn responses(&self, filter: &ResponseFilter) -> Result<Vec<ResponseItem>, CollectorError> {
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            // The ledgers listed, loaded first: loading checks their index rows.
            let ledgers = inner.ledgers_of(filter.campaign.as_deref(), filter.hamlet.as_deref());
            self.shared.ensure(&mut inner, &ledgers).await?;
            let collector = if filter.mine_only { Some(inner.collector()?.to_string()) } else { None };
            let rows = self
                .shared
                .store
                .responses(&IndexFilter {
                    campaign: filter.campaign.clone(),
                    hamlet: filter.hamlet.clone(),
                    status: filter.status.clone(),
                    recorded_on: filter.recorded_on.clone(),
                    collector,
                })
                .await?;
            let plaintexts = self.shared.store.plaintexts().await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let held = plaintexts.get(&(row.document.clone(), row.id.clone())).map(String::as_str);
                out.extend(response_item(&inner, &row, held)?);
            }
            Ok(out)
        })
    }

    /// One response.
    pub fn response(&self, id: &str) -> Result<ResponseItem, CollectorError> {
        self.block(async {
            let mut inner = self.shared.inner.lock().await;
            let not_found = || CollectorError::NotFound { kind: "response", id: id.to_owned() };
            let row = self.row_of(&inner, id).await?.ok_or_else(not_found)?;
            if let Ok(doc) = DocumentId::parse_url_or_id(&row.document) {
                self.shared.ensure(&mut inner, &[doc]).await?;
            }
            let held = self.shared.store.plaintext(&row.document, &row.id).await?;
            response_item(&inner, &row, held.as_deref())?.ok_or_else(not_found)
        })
    }

    /// The enrolled collector's own responses, counted.
    pub fn counts(&self) -> Result<Counts, CollectorError> {
        self.block(self.shared.counts())
    }

    /// Syncs every document with `server`, or with the enrolled server when `None`.
    pub fn sync(
        &self,
        server: Option<&str>,
        options: &SyncOptions,
        progress: &(dyn Fn(SyncEvent) + Send + Sync),
    ) -> Result<SyncReport, CollectorError> {
        let identity = self.block(async { self.shared.inner.lock().await.identity.clone() });
        let identity = identity.ok_or(CollectorError::NotEnrolled)?;
        let enrolled = ServerAddress::parse(&identity.server)?;
        let address = match server {
            Some(s) => ServerAddress::parse(s)?,
            None => enrolled.clone(),
        };
        // The token is the device's key: it goes to the enrolled server only. (A device set up
        // without enrollment holds no token and may sync anywhere.)
        if identity.token.is_some() && address != enrolled {
            return Err(CollectorError::UntrustedServer { given: address.to_string(), enrolled: enrolled.to_string() });
        }
        let trust = self.shared.trust_for(&address, Some(&identity));
        self.block(sync::sync(&self.shared, &address, &trust, options, progress))
    }

    /// Cancels the sync that runs, if any (from another thread): it ends with
    /// [`SyncError::Cancelled`] at its next wait on the network; what it stored stays.
    pub fn cancel_sync(&self) {
        self.shared.cancel.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The documents whose changes a server refused, with its reason, until a sync gets
    /// them through.
    pub fn refusals(&self) -> Result<Vec<RefusedDocument>, CollectorError> {
        let rows = self.block(self.shared.store.refusals())?;
        Ok(rows
            .into_iter()
            .map(|(document, server, reason)| RefusedDocument {
                document: DocumentId::parse_url_or_id(&document).map(|d| d.url()).unwrap_or(document),
                server,
                reason,
            })
            .collect())
    }

    /// Writes everything no server has acknowledged into a bundle file.
    pub fn export_bundle(
        &self,
        path: impl AsRef<Path>,
        progress: BundleProgress<'_>,
    ) -> Result<BundleReport, CollectorError> {
        self.block(bundle::export(&self.shared, path.as_ref(), progress))
    }

    /// Applies a bundle file (from a relay, another phone) to the documents this device keeps.
    pub fn import_bundle(
        &self,
        path: impl AsRef<Path>,
        progress: BundleProgress<'_>,
    ) -> Result<BundleReport, CollectorError> {
        self.block(bundle::import(&self.shared, path.as_ref(), progress))
    }

    /// The chunks set aside when the store was opened because they did not load.
    pub fn set_aside(&self) -> Result<Vec<SetAsideItem>, CollectorError> {
        // A document's chunks that do not load are set aside as it loads: load them all.
        let chunks = self.block(async {
            let mut inner = self.shared.inner.lock().await;
            self.shared.ensure_all(&mut inner).await?;
            Ok::<_, CollectorError>(self.shared.store.set_aside_chunks().await?)
        })?;
        Ok(chunks
            .into_iter()
            .map(|c| SetAsideItem {
                document: c.chunk.document,
                seq: c.chunk.seq,
                bytes: c.chunk.data.len() as u64,
                reason: c.reason,
            })
            .collect())
    }

    /// How many documents are in memory (each loads when first used): for diagnostics.
    pub fn documents_in_memory(&self) -> usize {
        self.block(async { self.shared.inner.lock().await.docs.len() })
    }

    /// SQLite's integrity check of the store: `ok` when sound.
    pub fn integrity_check(&self) -> Result<String, CollectorError> {
        Ok(self.block(self.shared.store.integrity_check())?)
    }
}

impl Shared {
    pub(crate) async fn counts(&self) -> Result<Counts, CollectorError> {
        let (collector, today) = {
            let inner = self.inner.lock().await;
            (inner.collector()?.to_string(), inner.today().to_string())
        };
        let c = self.store.counts(&collector, &today).await?;
        Ok(Counts {
            recorded_today: c.recorded_today,
            drafts: c.drafts,
            pending: c.pending,
            acknowledged: c.acknowledged,
            voided: c.voided,
        })
    }
}

/// Who the server says the device is, after enrollment (or as given without one).
struct Enrolled {
    collector: String,
    token: Option<String>,
    pin: Option<CertificatePin>,
}

fn enrollment_view(inner: &Inner) -> EnrollmentView {
    let identity = inner.identity.clone().unwrap_or(StoredIdentity {
        server: String::new(),
        collector: String::new(),
        token: None,
        device_name: String::new(),
        enrolled_on: String::new(),
        certificate_pin: None,
    });
    let mut campaigns: Vec<AssignmentView> = Vec::new();
    for a in &inner.assignments {
        let document = DocumentId::parse_url_or_id(&a.campaign_document).map(|d| d.url()).unwrap_or_default();
        match campaigns.iter_mut().find(|c| c.campaign == a.campaign) {
            Some(c) => c.hamlets.push(a.hamlet.clone()),
            None => campaigns.push(AssignmentView {
                campaign: a.campaign.clone(),
                document,
                hamlets: vec![a.hamlet.clone()],
            }),
        }
    }
    EnrollmentView {
        server: identity.server,
        collector: identity.collector,
        device_name: identity.device_name,
        has_token: identity.token.is_some(),
        certificate_pin: identity
            .certificate_pin
            .as_deref()
            .and_then(|p| CertificatePin::parse(p).ok())
            .map(|p| p.colon_hex()),
        campaigns,
    }
}

/// One response as the phone shows it; `held`: the plaintext kept for a sealed campaign's
/// response (its ledger holds only ciphertext, which is never shown).
fn response_item(inner: &Inner, row: &IndexRow, held: Option<&str>) -> Result<Option<ResponseItem>, CollectorError> {
    let Ok(doc) = DocumentId::parse_url_or_id(&row.document) else { return Ok(None) };
    let Some(ledger) = inner.ledger(&doc) else { return Ok(None) };
    let Ok(id) = ResponseId::new(row.id.as_str()) else { return Ok(None) };
    let Some(mut view) = ledger.response(&id)? else { return Ok(None) };
    // Read on the ledger as it is: for a sealed response, `~sealed` when it changed after the seal.
    let edited: Vec<String> = view.edits_after_seal().into_iter().map(|(k, _, _)| k).collect();
    if let Ok(campaign) = inner.campaign(ledger.campaign())
        && campaign.seal_key().is_some()
    {
        let plain: BTreeMap<String, hamlet_sync_core::ledger::Scalar> = held
            .map(|h| answers::from_json(campaign, h))
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k.to_string(), hamlet_sync_core::ledger::Scalar::from_answer(v)))
            .collect();
        view.answers = plain.clone();
        if let Some(seal) = view.seal.as_mut() {
            seal.answers = plain;
        }
    }
    let text = |m: &BTreeMap<String, hamlet_sync_core::ledger::Scalar>| {
        m.iter().map(|(k, v)| (k.clone(), answers::show(v))).collect::<HashMap<_, _>>()
    };
    let status = index_row(&DocumentRecord::default_for(row), &view, None).status;
    Ok(Some(ResponseItem {
        id: row.id.clone(),
        campaign: row.campaign.clone(),
        hamlet: row.hamlet.clone(),
        collector: view.collector.clone(),
        status,
        recorded_on: day_text(view.recorded_on),
        acknowledged: row.acknowledged || row.last_change.is_none(),
        answers: text(&view.answers),
        sealed_answers: view.seal.as_ref().map(|s| text(&s.answers)).unwrap_or_default(),
        edited_after_submission: edited,
        void_reason: view.void.as_ref().and_then(|v| v.reason.clone()),
    }))
}

impl DocumentRecord {
    fn default_for(row: &IndexRow) -> DocumentRecord {
        DocumentRecord {
            id: row.document.clone(),
            kind: "ledger".into(),
            campaign: row.campaign.clone(),
            hamlet: Some(row.hamlet.clone()),
        }
    }
}
