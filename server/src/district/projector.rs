//! The projector: keeps the SQL tables of responses, answers, tallies, conflicts and flags, and
//! the aggregates results are read from, in step with the hamlet ledgers.
//!
//! A document task calls [`Projector::after_round`] after each round it stored; the call only
//! queues a job (a copy of the document when it changed, and the devices that synced). One worker
//! task takes the jobs, coalesced per document, and for each ledger:
//!
//! 1. reads the *mark*: the heads its rows reflect (`projection_marks`);
//! 2. asks sync-core for the rows of the entities changed since the mark
//!    ([`hamlet_sync_core::project_since`], from Automerge's patches) — or every row when there is no mark;
//! 3. in one transaction, re-checks the mark, replaces those entities' rows, adjusts the
//!    aggregates (`level_counts`, `hamlet_counts`) by the old and new counted answers, and moves
//!    the mark.
//!
//! The same transaction releases the hamlet's counts to the results of an open campaign when at
//! least the minimum group of answers was counted since the last release (`released_*`; see
//! `results.rs`).
//!
//! Applying a projection twice changes nothing, and a crash between the chunk's commit and the
//! projection's loses nothing: [`Projector::catch_up`] (run at start-up) projects every ledger
//! whose stored heads differ from its mark. When the mark names changes this process's copy does
//! not hold (another server process sharing the database projected them), the ledger is loaded
//! from storage first. [`Projector::reproject`] rebuilds every table from the documents.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use hamlet_sync_core::authorship::Authors;
use hamlet_sync_core::automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use hamlet_sync_core::projection::{Entity, FlagKind, Projection};
use hamlet_sync_core::session::{Peer, decode_heads, encode_heads};
use hamlet_sync_core::{
    AnswerValue, Campaign, CampaignId, DocumentId, Ledger, LedgerError, UnitId, project_opened, project_since_opened,
};
use sqlx::QueryBuilder;
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::catalog::Catalog;
use super::results::MIN_GROUP;
use super::{Settings, fold_search, short_hash};
use crate::lock;
use crate::store::{PoolRef, Store, StoreError, query_failed};
use crate::sync::hub::{RoundObserver, StoredRound};

/// Most rows bound in one INSERT (both databases accept far more parameters than this needs).
const INSERT_CHUNK: usize = 400;
/// Most ids in one `IN (…)` list.
const IN_CHUNK: usize = 400;
/// The first half of the PostgreSQL advisory lock key of a ledger's projection ("Prj1").
const PROJECTION_LOCK_CLASS: i32 = 0x5072_6a31;

/// Why a ledger could not be projected.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The document is not a readable ledger.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Stored chunks do not load.
    #[error("document {0} does not load from storage")]
    Load(String),
    /// The mark kept moving (another process projects the same ledger).
    #[error("the projection of {0} kept changing under us")]
    Contended(String),
    /// The unit tree could not be read.
    #[error("units: {0}")]
    Units(String),
    /// A campaign key could not be read or unwrapped.
    #[error("campaign key: {0}")]
    Keys(String),
}

/// A device seen syncing a ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DeviceSeen {
    device: String,
    peer: String,
}

/// A queued projection.
struct Job {
    doc: Option<Automerge>,
    devices: Vec<DeviceSeen>,
    at: i64,
}

/// Projects ledgers into SQL; see the module docs.
pub struct Projector {
    store: Store,
    catalog: Arc<Catalog>,
    settings: Settings,
    pending: Mutex<HashMap<DocumentId, Job>>,
    /// Wakes the worker when a job is queued.
    wake: Arc<Notify>,
    /// Cancels the worker when the projector is dropped.
    _stop_worker: DropGuard,
    /// Jobs queued or running; [`Projector::flush`] waits for zero.
    outstanding: watch::Sender<usize>,
    /// The ledgers known so far: document id → (campaign, hamlet), from `campaign_hamlets`.
    ledgers: Mutex<HashMap<DocumentId, (CampaignId, UnitId)>>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The hub tells the projector of each stored round.
impl RoundObserver for Projector {
    fn round_stored(&self, round: &StoredRound<'_>) {
        self.after_round(round.document, round.doc, round.before, round.peers, round.at);
    }
}

impl Projector {
    /// A projector over `store`, with its worker task spawned on the current runtime.
    pub fn start(store: Store, catalog: Arc<Catalog>, settings: Settings) -> Arc<Projector> {
        let (wake, stop) = (Arc::new(Notify::new()), CancellationToken::new());
        let projector = Arc::new(Projector {
            store,
            catalog,
            settings,
            pending: Mutex::new(HashMap::new()),
            wake: wake.clone(),
            _stop_worker: stop.clone().drop_guard(),
            outstanding: watch::Sender::new(0),
            ledgers: Mutex::new(HashMap::new()),
        });
        tokio::spawn(Projector::work(Arc::downgrade(&projector), wake, stop));
        projector
    }

    /// The catalog of campaigns and units.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The district settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Called by a document task after a round: queues the projection of a document that
    /// changed since `before`, and notes the devices (`peers`) that synced it. Cheap: no I/O, and
    /// the document is copied only when it changed. Whether it is a ledger, and whose, the worker
    /// reads from the server's own records (`campaign_hamlets`), never from the document.
    pub fn after_round(&self, id: DocumentId, doc: &Automerge, before: &[ChangeHash], peers: &[&Peer], at: i64) {
        let changed = doc.get_heads() != before;
        if !changed && peers.is_empty() {
            return;
        }
        let devices: Vec<DeviceSeen> = peers
            .iter()
            .map(|p| DeviceSeen {
                device: p.storage_id.clone().unwrap_or_else(|| p.peer_id.clone()),
                peer: p.peer_id.clone(),
            })
            .collect();
        let mut pending = lock(&self.pending);
        let job = pending.entry(id).or_insert_with(|| {
            self.outstanding.send_modify(|n| *n += 1);
            Job { doc: None, devices: Vec::new(), at }
        });
        if changed {
            job.doc = Some(doc.clone());
        }
        job.at = at;
        for device in devices {
            if !job.devices.contains(&device) {
                job.devices.push(device);
            }
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// Waits until every queued projection has been applied (tests, the demo, benchmarks).
    pub async fn flush(&self) {
        let mut rx = self.outstanding.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// The worker: holds the projector only while it works, so that dropping the projector
    /// ends it (through `stop`).
    async fn work(projector: std::sync::Weak<Projector>, wake: Arc<Notify>, stop: CancellationToken) {
        loop {
            let Some(this) = projector.upgrade() else { return };
            let jobs: Vec<(DocumentId, Job)> = lock(&this.pending).drain().collect();
            if jobs.is_empty() {
                drop(this);
                // A job queued since the drain left a permit: `notified` returns at once.
                tokio::select! {
                    () = wake.notified() => {}
                    () = stop.cancelled() => return,
                }
                continue;
            }
            for (id, job) in jobs {
                if let Err(e) = this.run_job(id, job).await {
                    tracing::error!(document = %id, error = %e, "projection failed; it is retried at the next change or start-up");
                }
                this.outstanding.send_modify(|n| *n = n.saturating_sub(1));
            }
        }
    }

    /// The campaign and hamlet of ledger `id`, from the server's records; `None` for a document
    /// that is no ledger of a campaign the server knows (a campaign document, say).
    async fn identity(&self, id: DocumentId) -> Result<Option<(CampaignId, UnitId)>, StoreError> {
        if let Some(known) = lock(&self.ledgers).get(&id) {
            return Ok(Some(known.clone()));
        }
        const SQL: &str = "SELECT campaign_id, hamlet_id FROM campaign_hamlets WHERE document_id = $1";
        let rows: Vec<(String, String)> = crate::store::on_pool!(self.store, pool => {
            sqlx::query_as(SQL).bind(id.to_string()).fetch_all(pool).await
        })
        .map_err(query_failed("reading a ledger's campaign and hamlet"))?;
        // The id is derived from campaign and hamlet: only the pair it was derived from counts.
        let found = rows.into_iter().find_map(|(c, h)| {
            let (c, h) = (c.parse::<CampaignId>().ok()?, h.parse::<UnitId>().ok()?);
            (DocumentId::for_ledger(&c, &h) == id).then_some((c, h))
        });
        if let Some(pair) = &found {
            lock(&self.ledgers).insert(id, pair.clone());
        }
        Ok(found)
    }

    /// Which device (and person) each enrolled actor writes for. Without accounts (tests, the
    /// demo's simulated phones) nobody is known and every actor counts as a device of its own.
    async fn authors(&self) -> Result<Authors, StoreError> {
        const SQL: &str = "SELECT da.actor_id, d.id, d.person_id FROM device_actors da \
                           JOIN devices d ON d.id = da.device_id";
        let rows: Vec<(String, String, String)> = crate::store::on_pool!(self.store, pool => {
            sqlx::query_as(SQL).fetch_all(pool).await
        })
        .map_err(query_failed("reading the devices' actors"))?;
        let mut authors = Authors::new();
        for (actor, device, person) in rows {
            if let Ok(actor) = actor.parse::<ActorId>() {
                authors.insert(actor, device, Some(person));
            }
        }
        Ok(authors)
    }

    async fn run_job(&self, id: DocumentId, job: Job) -> Result<(), ProjectorError> {
        let Some((campaign_id, hamlet)) = self.identity(id).await? else { return Ok(()) };
        let Some(campaign) = self.catalog.campaign(&campaign_id).await? else {
            tracing::debug!(document = %id, campaign = %campaign_id, "ledger of an unknown campaign: not projected");
            return Ok(());
        };
        if let Some(doc) = job.doc {
            self.project_document(id, &campaign, &hamlet, doc).await?;
        }
        if !job.devices.is_empty() {
            self.touch_devices(&campaign_id, &hamlet, &job.devices, job.at).await?;
        }
        Ok(())
    }

    /// Brings the rows of ledger `id` (of `hamlet` in `campaign`, as the server's records say)
    /// up to `doc` (which holds at least what is stored).
    async fn project_document(
        &self,
        id: DocumentId,
        campaign: &Campaign,
        hamlet: &UnitId,
        doc: Automerge,
    ) -> Result<(), ProjectorError> {
        let mut ledger = Ledger::open(doc, &campaign.id, hamlet)?;
        let authors = self.authors().await?;
        let secret = match (campaign.seal_key(), &self.settings.campaign_kek) {
            (Some(_), Some(kek)) => super::keys::secret(&self.store, kek, &campaign.id)
                .await
                .map_err(|e| ProjectorError::Keys(e.to_string()))?,
            _ => None,
        };
        if campaign.seal_key().is_some() && secret.is_none() {
            // Projected anyway: every sealed answer is flagged unreadable until the key is back
            // (restore its backup, then reproject).
            tracing::warn!(campaign = %campaign.id, "no key at hand for a sealed campaign: its answers are not counted");
        }
        let key = id.to_string();
        let tree = self.catalog.units().await.map_err(|e| ProjectorError::Units(e.to_string()))?;
        let commune =
            tree.get(ledger.hamlet()).and_then(|u| u.parent.as_ref()).map_or_else(String::new, |c| c.to_string());
        for _ in 0..4 {
            let mark = self.mark(&key).await?;
            let heads = ledger.doc().get_heads();
            if mark.as_ref().is_some_and(|m| same_heads(m, &heads)) {
                return Ok(());
            }
            let projection = match &mark {
                None => project_opened(campaign, &ledger, &authors, secret.as_ref())?,
                Some(m) if m.iter().all(|h| ledger.doc().get_change_by_hash(h).is_some()) => {
                    project_since_opened(campaign, &ledger, m, &authors, secret.as_ref())?
                }
                Some(_) => {
                    // The mark holds changes this copy lacks: start from what storage holds.
                    let mut stored = self.load(&key).await?;
                    stored.merge(ledger.doc_mut()).map_err(LedgerError::from)?;
                    ledger = Ledger::open(stored, &campaign.id, hamlet)?;
                    continue;
                }
            };
            let mut rows = SqlRows::from_projection(&projection);
            self.count_reviewed_tallies(campaign.id.as_str(), &mut rows).await?;
            let apply = Apply {
                document: &key,
                campaign: projection.campaign.as_str(),
                hamlet: projection.hamlet.as_str(),
                commune: &commune,
                full: projection.full,
                entities: &projection.entities,
                rows: &rows,
                expected_mark: mark.as_deref().map(encode_heads),
                new_mark: encode_heads(&heads),
                now: self.store.now_ms(),
            };
            if self.apply(&apply).await? {
                return Ok(());
            }
        }
        Err(ProjectorError::Contended(key))
    }

    /// Counts the flagged tallies of `rows` whose every flag staff reviewed.
    async fn count_reviewed_tallies(&self, campaign: &str, rows: &mut SqlRows) -> Result<(), StoreError> {
        let flagged: Vec<&ItemSql> = rows.flags.iter().filter(|f| f.entity_kind == "tally").collect();
        if flagged.is_empty() {
            return Ok(());
        }
        const SQL: &str = "SELECT item_key FROM reviews WHERE campaign_id = $1 AND item_key LIKE 'flag:%:tally:%'";
        let reviewed: BTreeSet<String> = crate::store::on_pool!(self.store, pool => {
            sqlx::query_scalar(SQL).bind(campaign).fetch_all(pool).await
        })
        .map_err(query_failed("reading reviewed tally flags"))?
        .into_iter()
        .collect();
        let mut pending: BTreeSet<String> = BTreeSet::new();
        for f in flagged {
            if !reviewed.contains(&f.item_key) {
                pending.insert(f.entity_id.clone());
            }
        }
        for t in rows.tallies.iter_mut().filter(|t| t.counted == 0 && !pending.contains(&t.id)) {
            t.counted = 1;
        }
        Ok(())
    }

    /// Projects ledger `document` again in full (after a review changed what it counts).
    pub async fn reproject_document(&self, document: &str) -> Result<(), ProjectorError> {
        crate::store::on_pool!(self.store, pool => {
            sqlx::query("DELETE FROM projection_marks WHERE document_id = $1").bind(document).execute(pool).await.map(drop)
        })
        .map_err(query_failed("dropping a projection mark"))?;
        let Ok(id) = document.parse::<DocumentId>() else { return Ok(()) };
        let Some((campaign, hamlet)) = self.identity(id).await? else { return Ok(()) };
        let Some(campaign) = self.catalog.campaign(&campaign).await? else { return Ok(()) };
        let doc = self.load(document).await?;
        self.project_document(id, &campaign, &hamlet, doc).await
    }

    /// The document as stored (every chunk).
    async fn load(&self, key: &str) -> Result<Automerge, ProjectorError> {
        let mut doc = Automerge::new();
        for chunk in self.store.load(key).await? {
            if doc.load_incremental(&chunk.data).is_err() {
                return Err(ProjectorError::Load(key.to_owned()));
            }
        }
        Ok(doc)
    }

    async fn mark(&self, key: &str) -> Result<Option<Vec<ChangeHash>>, StoreError> {
        const SQL: &str = "SELECT heads FROM projection_marks WHERE document_id = $1";
        let heads: Option<Vec<u8>> = crate::store::on_pool!(self.store, pool => {
            sqlx::query_scalar(SQL).bind(key).fetch_optional(pool).await
        })
        .map_err(query_failed("reading a projection mark"))?;
        // Unreadable heads read as no mark: the ledger is projected again in full.
        Ok(heads.and_then(|h| decode_heads(&h)))
    }

    async fn apply(&self, apply: &Apply<'_>) -> Result<bool, StoreError> {
        match self.store.pool() {
            PoolRef::Sqlite(pool) => {
                let mut tx =
                    pool.begin_with("BEGIN IMMEDIATE").await.map_err(query_failed("beginning a projection"))?;
                let done = sqlite::apply(&mut tx, apply).await?;
                if done {
                    tx.commit().await.map_err(query_failed("committing a projection"))?;
                }
                Ok(done)
            }
            PoolRef::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(query_failed("beginning a projection"))?;
                sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                    .bind(PROJECTION_LOCK_CLASS)
                    .bind(crate::store::lock_key(apply.document))
                    .execute(&mut *tx)
                    .await
                    .map_err(query_failed("locking a ledger's projection"))?;
                let done = postgres::apply(&mut tx, apply).await?;
                if done {
                    tx.commit().await.map_err(query_failed("committing a projection"))?;
                }
                Ok(done)
            }
        }
    }

    async fn touch_devices(
        &self,
        campaign: &CampaignId,
        hamlet: &UnitId,
        devices: &[DeviceSeen],
        at: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO ledger_devices \
                (campaign_id, hamlet_id, device_id, peer_id, first_seen_at, last_sync_at, syncs) \
            VALUES ($1, $2, $3, $4, $5, $5, 1) \
            ON CONFLICT (campaign_id, hamlet_id, device_id) DO UPDATE SET peer_id = excluded.peer_id, \
                last_sync_at = CASE WHEN excluded.last_sync_at > ledger_devices.last_sync_at \
                    THEN excluded.last_sync_at ELSE ledger_devices.last_sync_at END, \
                syncs = ledger_devices.syncs + 1";
        for d in devices {
            crate::store::on_pool!(self.store, pool => {
                sqlx::query(SQL)
                    .bind(campaign.as_str())
                    .bind(hamlet.as_str())
                    .bind(&d.device)
                    .bind(&d.peer)
                    .bind(at)
                    .execute(pool)
                    .await
                    .map(drop)
            })
            .map_err(query_failed("recording a device's sync"))?;
        }
        Ok(())
    }

    /// Projects every ledger of every campaign whose stored heads differ from its mark (at
    /// start-up, and after a campaign is saved). Returns how many ledgers were projected.
    pub async fn catch_up(&self, only: Option<&CampaignId>) -> Result<usize, ProjectorError> {
        const SQL: &str = "SELECT ch.campaign_id, ch.hamlet_id, ch.document_id, d.heads, m.heads \
            FROM campaign_hamlets ch \
            JOIN documents d ON d.id = ch.document_id \
            LEFT JOIN projection_marks m ON m.document_id = ch.document_id \
            ORDER BY ch.document_id";
        type Row = (String, String, String, Vec<u8>, Option<Vec<u8>>);
        let rows: Vec<Row> = crate::store::on_pool!(self.store, pool => {
            sqlx::query_as(SQL).fetch_all(pool).await
        })
        .map_err(query_failed("listing the ledgers to project"))?;
        let mut projected = 0;
        for (campaign_id, hamlet, document, stored, mark) in rows {
            if only.is_some_and(|c| c.as_str() != campaign_id) || mark.as_ref() == Some(&stored) {
                continue;
            }
            let (Ok(campaign_id), Ok(hamlet), Ok(id)) =
                (campaign_id.parse::<CampaignId>(), hamlet.parse::<UnitId>(), document.parse::<DocumentId>())
            else {
                continue;
            };
            if DocumentId::for_ledger(&campaign_id, &hamlet) != id {
                continue;
            }
            let Some(campaign) = self.catalog.campaign(&campaign_id).await? else { continue };
            let doc = self.load(&document).await?;
            match self.project_document(id, &campaign, &hamlet, doc).await {
                Ok(()) => projected += 1,
                Err(e) => tracing::error!(document = %document, error = %e, "catch-up projection failed"),
            }
        }
        Ok(projected)
    }

    /// Deletes every projected row, aggregate and mark, and projects every ledger again from
    /// its stored document. Reviews and the devices' sync times are kept.
    pub async fn reproject(&self) -> Result<usize, ProjectorError> {
        for table in [
            "responses",
            "answers",
            "tallies",
            "tally_counts",
            "conflicts",
            "flags",
            "level_counts",
            "commune_level_counts",
            "hamlet_counts",
            "projection_marks",
        ] {
            let sql = sqlx::AssertSqlSafe(format!("DELETE FROM {table}"));
            crate::store::on_pool!(self.store, pool => sqlx::query(sql).execute(pool).await.map(drop))
                .map_err(query_failed("emptying a projection table"))?;
        }
        self.catch_up(None).await
    }
}

fn same_heads(a: &[ChangeHash], b: &[ChangeHash]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// A table of per-level sums, and the column naming its unit: the hamlets' `level_counts`
/// and the communes' `commune_level_counts` have the same shape.
#[derive(Debug, Clone, Copy)]
struct LevelTable {
    name: &'static str,
    unit_column: &'static str,
}

impl LevelTable {
    const HAMLET: LevelTable = LevelTable { name: "level_counts", unit_column: "hamlet_id" };
    const COMMUNE: LevelTable = LevelTable { name: "commune_level_counts", unit_column: "commune_id" };
}

/// One projection to apply.
struct Apply<'a> {
    document: &'a str,
    campaign: &'a str,
    hamlet: &'a str,
    /// The hamlet's commune in the unit tree ('' when it is not there).
    commune: &'a str,
    full: bool,
    entities: &'a BTreeSet<Entity>,
    rows: &'a SqlRows,
    expected_mark: Option<Vec<u8>>,
    new_mark: Vec<u8>,
    now: i64,
}

/// The rows of a projection as the tables hold them.
#[derive(Debug, Default)]
struct SqlRows {
    responses: Vec<ResponseSql>,
    answers: Vec<AnswerSql>,
    tallies: Vec<TallySql>,
    tally_counts: Vec<TallyCountSql>,
    conflicts: Vec<ItemSql>,
    flags: Vec<ItemSql>,
}

#[derive(Debug)]
struct ResponseSql {
    id: String,
    status: &'static str,
    form_version: Option<i64>,
    recorded_on: Option<String>,
    collector: Option<String>,
    writer: Option<String>,
    submitted_on: Option<String>,
    submitted_by: Option<String>,
    voided_on: Option<String>,
    voided_by: Option<String>,
    void_reason: Option<String>,
}

#[derive(Debug)]
struct AnswerSql {
    response: String,
    question: String,
    subject: String,
    kind: &'static str,
    text: Option<String>,
    number: Option<i64>,
    search: Option<String>,
    counted: i64,
}

#[derive(Debug)]
struct TallySql {
    id: String,
    recorded_on: Option<String>,
    collector: Option<String>,
    ballots: [i64; 4],
    /// 1 when it counts: nothing flagged on it, or every flag reviewed.
    counted: i64,
}

#[derive(Debug)]
struct TallyCountSql {
    tally: String,
    question: String,
    subject: String,
    level: &'static str,
    count: i64,
}

/// A conflict or a flag.
#[derive(Debug)]
struct ItemSql {
    entity_kind: &'static str,
    entity_id: String,
    /// The path (conflicts) or the ordinal (flags).
    path: String,
    ordinal: i64,
    kind: String,
    item_key: String,
    detail: String,
}

fn entity_parts(entity: &Entity) -> (&'static str, String) {
    match entity {
        Entity::Ledger => ("ledger", String::new()),
        Entity::Response(id) => ("response", id.to_string()),
        Entity::Tally(id) => ("tally", id.to_string()),
    }
}

/// Every code `flag_kind` stores, in `flags.kind`: the pages give each its words. The match
/// below takes its codes from here, so none can be stored that this list lacks.
pub const FLAG_CODES: [&str; 13] = [
    "edited_after_seal",
    "seal_rewritten",
    "foreign_write",
    "invalid_answer",
    "form_version",
    "invalid_count",
    "tally_inconsistent",
    "outside_schedule",
    "tally_duplicate",
    "malformed_key",
    "outside_ballot",
    "sealed_unreadable",
    "unsealed",
];

fn flag_kind(kind: &FlagKind) -> &'static str {
    FLAG_CODES[match kind {
        FlagKind::EditedAfterSeal { .. } => 0,
        FlagKind::SealRewritten { .. } => 1,
        FlagKind::ForeignWrite { .. } => 2,
        FlagKind::InvalidAnswer { .. } => 3,
        FlagKind::FormVersion { .. } => 4,
        FlagKind::InvalidCount { .. } => 5,
        FlagKind::TallyInconsistent { .. } => 6,
        FlagKind::OutsideSchedule { .. } => 7,
        FlagKind::TallyDuplicate { .. } => 8,
        FlagKind::MalformedKey { .. } => 9,
        FlagKind::OutsideBallot { .. } => 10,
        FlagKind::SealedUnreadable { .. } => 11,
        FlagKind::Unsealed { .. } => 12,
    }]
}

fn day(d: Option<hamlet_sync_core::Day>) -> Option<String> {
    d.map(|d| d.to_string())
}

impl SqlRows {
    fn from_projection(p: &Projection) -> SqlRows {
        let r = &p.rows;
        let hamlet = p.hamlet.as_str();
        let responses = r
            .responses
            .iter()
            .map(|x| ResponseSql {
                id: x.response.to_string(),
                status: match x.status {
                    hamlet_sync_core::Status::Draft => "draft",
                    hamlet_sync_core::Status::Submitted => "submitted",
                    hamlet_sync_core::Status::Voided => "voided",
                },
                form_version: x.form_version,
                recorded_on: day(x.recorded_on),
                collector: x.collector.clone(),
                writer: x.writer.clone(),
                submitted_on: day(x.submitted_on),
                submitted_by: x.submitted_by.clone(),
                voided_on: day(x.voided_on),
                voided_by: x.voided_by.clone(),
                void_reason: x.void_reason.clone(),
            })
            .collect();
        let answers = r
            .answers
            .iter()
            .map(|a| {
                let (kind, text, number, search) = match &a.value {
                    AnswerValue::Level(l) => ("level", Some(l.code().to_owned()), None, None),
                    AnswerValue::YesNo(b) => ("yes_no", None, Some(i64::from(*b)), None),
                    AnswerValue::Number(n) => ("number", None, Some(*n), None),
                    AnswerValue::Comment(c) => ("comment", Some(c.clone()), None, Some(fold_search(c))),
                };
                AnswerSql {
                    response: a.response.to_string(),
                    question: a.question.to_string(),
                    subject: a.subject.as_ref().map(|s| s.to_string()).unwrap_or_default(),
                    kind,
                    text,
                    number,
                    search,
                    counted: i64::from(a.counted),
                }
            })
            .collect();
        let tallies = r
            .tallies
            .iter()
            .map(|t| TallySql {
                id: t.tally.to_string(),
                recorded_on: day(t.recorded_on),
                collector: t.collector.clone(),
                ballots: [t.ballots.issued, t.ballots.returned, t.ballots.valid, t.ballots.invalid].map(i64::from),
                counted: i64::from(t.counted),
            })
            .collect();
        let tally_counts = r
            .tally_counts
            .iter()
            .map(|c| TallyCountSql {
                tally: c.tally.to_string(),
                question: c.question.to_string(),
                subject: c.subject.to_string(),
                level: c.level.code(),
                count: i64::from(c.count),
            })
            .collect();
        let conflicts = r
            .conflicts
            .iter()
            .map(|c| {
                let (entity_kind, entity_id) = entity_parts(&c.entity);
                let path = c.path.join("/");
                let detail = serde_json::to_string(&c.values).unwrap_or_else(|_| "[]".into());
                let item_key = format!("conflict:{hamlet}:{path}:{}", short_hash(&detail));
                ItemSql { entity_kind, entity_id, path, ordinal: 0, kind: "conflict".into(), item_key, detail }
            })
            .collect();
        let mut ordinals: BTreeMap<&Entity, i64> = BTreeMap::new();
        let flags = r
            .flags
            .iter()
            .map(|f| {
                let (entity_kind, entity_id) = entity_parts(&f.entity);
                let ordinal = ordinals.entry(&f.entity).or_default();
                *ordinal += 1;
                let detail = serde_json::to_string(&f.kind).unwrap_or_else(|_| "{}".into());
                let item_key = format!("flag:{hamlet}:{entity_kind}:{entity_id}:{}", short_hash(&detail));
                ItemSql {
                    entity_kind,
                    entity_id,
                    path: String::new(),
                    ordinal: *ordinal,
                    kind: flag_kind(&f.kind).into(),
                    item_key,
                    detail,
                }
            })
            .collect();
        SqlRows { responses, answers, tallies, tally_counts, conflicts, flags }
    }
}

/// What the aggregates count of some rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counted {
    /// drafts, submitted, voided, tallies, issued, returned, valid, invalid.
    hamlet: [i64; 8],
    /// (question, subject, level) → (from responses, from tallies).
    levels: BTreeMap<(String, String, String), (i64, i64)>,
}

impl Counted {
    fn add_status(&mut self, status: &str, sign: i64) {
        let i = match status {
            "draft" => 0,
            "submitted" => 1,
            _ => 2,
        };
        self.hamlet[i] += sign;
    }

    fn add_tally(&mut self, ballots: [i64; 4], sign: i64) {
        self.hamlet[3] += sign;
        for (i, b) in ballots.into_iter().enumerate() {
            self.hamlet[4 + i] += sign * b;
        }
    }

    fn add_level(&mut self, key: (String, String, String), responses: i64, tallies: i64) {
        let entry = self.levels.entry(key).or_default();
        entry.0 += responses;
        entry.1 += tallies;
    }

    fn of_rows(rows: &SqlRows) -> Counted {
        let mut c = Counted::default();
        for r in &rows.responses {
            c.add_status(r.status, 1);
        }
        for a in rows.answers.iter().filter(|a| a.counted == 1 && a.kind == "level") {
            let level = a.text.clone().unwrap_or_default();
            c.add_level((a.question.clone(), a.subject.clone(), level), 1, 0);
        }
        // A tally that does not count adds nothing: no ballots, no levels.
        let mut counted = BTreeSet::new();
        for t in rows.tallies.iter().filter(|t| t.counted == 1) {
            c.add_tally(t.ballots, 1);
            counted.insert(t.id.as_str());
        }
        for t in rows.tally_counts.iter().filter(|t| counted.contains(t.tally.as_str())) {
            c.add_level((t.question.clone(), t.subject.clone(), t.level.to_owned()), 0, t.count);
        }
        c
    }
}

/// The projection's SQL, the same text on both backends (see the store's module docs).
macro_rules! projection_sql {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type Conn = <$db as sqlx::Database>::Connection;

            /// Applies `a` if the mark is still `a.expected_mark`; returns whether it did.
            pub(super) async fn apply(conn: &mut Conn, a: &Apply<'_>) -> Result<bool, StoreError> {
                let current: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT heads FROM projection_marks WHERE document_id = $1")
                        .bind(a.document)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(query_failed("reading a projection mark"))?;
                if current != a.expected_mark {
                    return Ok(false);
                }
                if a.full {
                    // What the hamlet contributed so far, to take out of its commune's sums.
                    let old: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
                        "SELECT question_id, subject_id, level, from_responses, from_tallies FROM level_counts \
                         WHERE campaign_id = $1 AND hamlet_id = $2",
                    )
                    .bind(a.campaign)
                    .bind(a.hamlet)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(query_failed("reading a hamlet's level counts"))?;
                    for table in [
                        "responses",
                        "answers",
                        "tallies",
                        "tally_counts",
                        "conflicts",
                        "flags",
                        "level_counts",
                        "hamlet_counts",
                    ] {
                        let sql = format!("DELETE FROM {table} WHERE campaign_id = $1 AND hamlet_id = $2");
                        sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(a.campaign)
                            .bind(a.hamlet)
                            .execute(&mut *conn)
                            .await
                            .map_err(query_failed("clearing a ledger's rows"))?;
                    }
                    insert_rows(conn, a).await?;
                    let counted = Counted::of_rows(a.rows);
                    add_counts(conn, a, &counted, true).await?;
                    let mut delta = counted.levels.clone();
                    for (question, subject, level, r, t) in old {
                        let entry = delta.entry((question, subject, level)).or_default();
                        entry.0 -= r;
                        entry.1 -= t;
                    }
                    add_commune_counts(conn, a, &delta).await?;
                } else {
                    let old = old_counts(conn, a).await?;
                    delete_entities(conn, a).await?;
                    insert_rows(conn, a).await?;
                    let mut delta = Counted::of_rows(a.rows);
                    for (i, v) in old.hamlet.iter().enumerate() {
                        delta.hamlet[i] -= v;
                    }
                    for (key, (r, t)) in old.levels {
                        delta.add_level(key, -r, -t);
                    }
                    add_counts(conn, a, &delta, false).await?;
                    add_commune_counts(conn, a, &delta.levels).await?;
                }
                release_if_due(conn, a).await?;
                sqlx::query(
                    "INSERT INTO projection_marks (document_id, campaign_id, hamlet_id, heads, projected_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (document_id) \
                     DO UPDATE SET heads = excluded.heads, projected_at = excluded.projected_at",
                )
                .bind(a.document)
                .bind(a.campaign)
                .bind(a.hamlet)
                .bind(&a.new_mark)
                .bind(a.now)
                .execute(&mut *conn)
                .await
                .map_err(query_failed("moving a projection mark"))?;
                Ok(true)
            }

            /// Releases the hamlet's counts to the results of an open campaign once at least
            /// [`MIN_GROUP`] answers were counted since the last release (`results.rs`, "Batches").
            async fn release_if_due(conn: &mut Conn, a: &Apply<'_>) -> Result<(), StoreError> {
                let live: Option<i64> = sqlx::query_scalar(
                    "SELECT submitted + ballots_returned FROM hamlet_counts WHERE campaign_id = $1 AND hamlet_id = $2",
                )
                .bind(a.campaign)
                .bind(a.hamlet)
                .fetch_optional(&mut *conn)
                .await
                .map_err(query_failed("reading a hamlet's counts"))?;
                let released: Option<i64> = sqlx::query_scalar(
                    "SELECT answers FROM released_hamlets WHERE campaign_id = $1 AND hamlet_id = $2",
                )
                .bind(a.campaign)
                .bind(a.hamlet)
                .fetch_optional(&mut *conn)
                .await
                .map_err(query_failed("reading a hamlet's release"))?;
                let live = live.unwrap_or(0);
                if live - released.unwrap_or(0) < MIN_GROUP as i64 {
                    return Ok(());
                }
                for sql in [
                    "DELETE FROM released_level_counts WHERE campaign_id = $1 AND hamlet_id = $2",
                    "INSERT INTO released_level_counts SELECT campaign_id, hamlet_id, question_id, subject_id, level, \
                     from_responses, from_tallies FROM level_counts WHERE campaign_id = $1 AND hamlet_id = $2",
                ] {
                    sqlx::query(sql)
                        .bind(a.campaign)
                        .bind(a.hamlet)
                        .execute(&mut *conn)
                        .await
                        .map_err(query_failed("releasing a hamlet's counts"))?;
                }
                if !a.commune.is_empty() {
                    for sql in [
                        "DELETE FROM released_commune_level_counts WHERE campaign_id = $1 AND commune_id = $2",
                        "INSERT INTO released_commune_level_counts SELECT r.campaign_id, u.parent_id, r.question_id, \
                         r.subject_id, r.level, CAST(SUM(r.from_responses) AS BIGINT), CAST(SUM(r.from_tallies) AS BIGINT) \
                         FROM released_level_counts r JOIN units u ON u.id = r.hamlet_id \
                         WHERE r.campaign_id = $1 AND u.parent_id = $2 \
                         GROUP BY r.campaign_id, u.parent_id, r.question_id, r.subject_id, r.level",
                    ] {
                        sqlx::query(sql)
                            .bind(a.campaign)
                            .bind(a.commune)
                            .execute(&mut *conn)
                            .await
                            .map_err(query_failed("releasing a commune's counts"))?;
                    }
                }
                sqlx::query(
                    "INSERT INTO released_hamlets (campaign_id, hamlet_id, answers, released_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (campaign_id, hamlet_id) DO UPDATE SET answers = excluded.answers, \
                     released_at = excluded.released_at",
                )
                .bind(a.campaign)
                .bind(a.hamlet)
                .bind(live)
                .bind(a.now)
                .execute(&mut *conn)
                .await
                .map_err(query_failed("releasing a hamlet's counts"))?;
                Ok(())
            }

            /// The ids of the changed entities of each kind.
            fn ids(a: &Apply<'_>, kind: &str) -> Vec<String> {
                a.entities
                    .iter()
                    .map(entity_parts)
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, id)| id)
                    .collect()
            }

            fn scoped(sql: &str, a: &Apply<'_>) -> QueryBuilder<$db> {
                let mut q = QueryBuilder::<$db>::new(sql);
                q.push(" WHERE campaign_id = ").push_bind(a.campaign).push(" AND hamlet_id = ").push_bind(a.hamlet);
                q
            }

            fn push_in(q: &mut QueryBuilder<$db>, column: &str, ids: &[String]) {
                q.push(format!(" AND {column} IN ("));
                let mut list = q.separated(", ");
                for id in ids {
                    list.push_bind(id.as_str());
                }
                list.push_unseparated(")");
            }

            async fn old_counts(conn: &mut Conn, a: &Apply<'_>) -> Result<Counted, StoreError> {
                let mut old = Counted::default();
                let responses = ids(a, "response");
                for chunk in responses.chunks(IN_CHUNK) {
                    let mut q = scoped("SELECT status FROM responses", a);
                    push_in(&mut q, "response_id", chunk);
                    let statuses: Vec<String> = q
                        .build_query_scalar()
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(query_failed("reading old responses"))?;
                    for s in statuses {
                        old.add_status(&s, 1);
                    }
                    let mut q = scoped("SELECT question_id, subject_id, value_text FROM answers", a);
                    push_in(&mut q, "response_id", chunk);
                    q.push(" AND counted = 1 AND kind = 'level'");
                    let levels: Vec<(String, String, Option<String>)> = q
                        .build_query_as()
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(query_failed("reading old answers"))?;
                    for (question, subject, level) in levels {
                        old.add_level((question, subject, level.unwrap_or_default()), 1, 0);
                    }
                }
                let tallies = ids(a, "tally");
                for chunk in tallies.chunks(IN_CHUNK) {
                    let mut q = scoped(
                        "SELECT tally_id, ballots_issued, ballots_returned, ballots_valid, ballots_invalid FROM tallies",
                        a,
                    );
                    push_in(&mut q, "tally_id", chunk);
                    q.push(" AND counted = 1");
                    let rows: Vec<(String, i64, i64, i64, i64)> = q
                        .build_query_as()
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(query_failed("reading old tallies"))?;
                    let mut counted = BTreeSet::new();
                    for (id, i, r, v, n) in rows {
                        old.add_tally([i, r, v, n], 1);
                        counted.insert(id);
                    }
                    let mut q = scoped("SELECT tally_id, question_id, subject_id, level, count FROM tally_counts", a);
                    push_in(&mut q, "tally_id", chunk);
                    let rows: Vec<(String, String, String, String, i64)> = q
                        .build_query_as()
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(query_failed("reading old tally counts"))?;
                    for (id, question, subject, level, count) in rows {
                        if counted.contains(&id) {
                            old.add_level((question, subject, level), 0, count);
                        }
                    }
                }
                Ok(old)
            }

            async fn delete_entities(conn: &mut Conn, a: &Apply<'_>) -> Result<(), StoreError> {
                let responses = ids(a, "response");
                let tallies = ids(a, "tally");
                let targets: [(&str, &str, &[String]); 4] = [
                    ("DELETE FROM responses", "response_id", &responses),
                    ("DELETE FROM answers", "response_id", &responses),
                    ("DELETE FROM tallies", "tally_id", &tallies),
                    ("DELETE FROM tally_counts", "tally_id", &tallies),
                ];
                for (sql, column, list) in targets {
                    for chunk in list.chunks(IN_CHUNK) {
                        let mut q = scoped(sql, a);
                        push_in(&mut q, column, chunk);
                        q.build().execute(&mut *conn).await.map_err(query_failed("deleting changed rows"))?;
                    }
                }
                for kind in ["ledger", "response", "tally"] {
                    let list = ids(a, kind);
                    for table in ["DELETE FROM conflicts", "DELETE FROM flags"] {
                        for chunk in list.chunks(IN_CHUNK) {
                            let mut q = scoped(table, a);
                            q.push(" AND entity_kind = ").push_bind(kind);
                            push_in(&mut q, "entity_id", chunk);
                            q.build().execute(&mut *conn).await.map_err(query_failed("deleting changed items"))?;
                        }
                    }
                }
                Ok(())
            }

            /// Inserts `rows` into a table in statements of [`INSERT_CHUNK`] rows: `head` is the
            /// statement up to `VALUES`, whose first two columns are the campaign and the hamlet;
            /// `bind` binds the rest of a row.
            async fn insert_chunked<T>(
                conn: &mut Conn,
                a: &Apply<'_>,
                head: &str,
                rows: &[T],
                what: &'static str,
                bind: impl Fn(&mut sqlx::query_builder::Separated<'_, $db, &'static str>, &T),
            ) -> Result<(), StoreError> {
                for chunk in rows.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new(head);
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(a.campaign).push_bind(a.hamlet);
                        bind(&mut b, r);
                    });
                    q.build().execute(&mut *conn).await.map_err(query_failed(what))?;
                }
                Ok(())
            }

            async fn insert_rows(conn: &mut Conn, a: &Apply<'_>) -> Result<(), StoreError> {
                let rows = a.rows;
                insert_chunked(
                    conn,
                    a,
                    "INSERT INTO responses (campaign_id, hamlet_id, response_id, status, form_version, \
                         recorded_on, collector, writer, submitted_on, submitted_by, voided_on, voided_by, void_reason) ",
                    &rows.responses,
                    "inserting responses",
                    |b, r| {
                        b.push_bind(&r.id)
                            .push_bind(r.status)
                            .push_bind(r.form_version)
                            .push_bind(&r.recorded_on)
                            .push_bind(&r.collector)
                            .push_bind(&r.writer)
                            .push_bind(&r.submitted_on)
                            .push_bind(&r.submitted_by)
                            .push_bind(&r.voided_on)
                            .push_bind(&r.voided_by)
                            .push_bind(&r.void_reason);
                    },
                )
                .await?;
                insert_chunked(
                    conn,
                    a,
                    "INSERT INTO answers (campaign_id, hamlet_id, response_id, question_id, subject_id, kind, \
                         value_text, value_number, search_text, counted) ",
                    &rows.answers,
                    "inserting answers",
                    |b, r| {
                        b.push_bind(&r.response)
                            .push_bind(&r.question)
                            .push_bind(&r.subject)
                            .push_bind(r.kind)
                            .push_bind(&r.text)
                            .push_bind(r.number)
                            .push_bind(&r.search)
                            .push_bind(r.counted);
                    },
                )
                .await?;
                insert_chunked(
                    conn,
                    a,
                    "INSERT INTO tallies (campaign_id, hamlet_id, tally_id, recorded_on, collector, \
                         ballots_issued, ballots_returned, ballots_valid, ballots_invalid, counted) ",
                    &rows.tallies,
                    "inserting tallies",
                    |b, r| {
                        b.push_bind(&r.id)
                            .push_bind(&r.recorded_on)
                            .push_bind(&r.collector)
                            .push_bind(r.ballots[0])
                            .push_bind(r.ballots[1])
                            .push_bind(r.ballots[2])
                            .push_bind(r.ballots[3])
                            .push_bind(r.counted);
                    },
                )
                .await?;
                insert_chunked(
                    conn,
                    a,
                    "INSERT INTO tally_counts (campaign_id, hamlet_id, tally_id, question_id, subject_id, level, \
                         count) ",
                    &rows.tally_counts,
                    "inserting tally counts",
                    |b, r| {
                        b.push_bind(&r.tally)
                            .push_bind(&r.question)
                            .push_bind(&r.subject)
                            .push_bind(r.level)
                            .push_bind(r.count);
                    },
                )
                .await?;
                insert_chunked(
                    conn,
                    a,
                    "INSERT INTO conflicts (campaign_id, hamlet_id, entity_kind, entity_id, path, item_key, \
                         detail) ",
                    &rows.conflicts,
                    "inserting conflicts",
                    |b, r| {
                        b.push_bind(r.entity_kind)
                            .push_bind(&r.entity_id)
                            .push_bind(&r.path)
                            .push_bind(&r.item_key)
                            .push_bind(&r.detail);
                    },
                )
                .await?;
                insert_chunked(
                    conn,
                    a,
                    "INSERT INTO flags (campaign_id, hamlet_id, entity_kind, entity_id, ordinal, kind, item_key, \
                         detail) ",
                    &rows.flags,
                    "inserting flags",
                    |b, r| {
                        b.push_bind(r.entity_kind)
                            .push_bind(&r.entity_id)
                            .push_bind(r.ordinal)
                            .push_bind(&r.kind)
                            .push_bind(&r.item_key)
                            .push_bind(&r.detail);
                    },
                )
                .await?;
                Ok(())
            }

            /// Adds per-level deltas to the hamlet's commune's sums, dropping rows that fall to zero.
            async fn add_commune_counts(
                conn: &mut Conn,
                a: &Apply<'_>,
                levels: &BTreeMap<(String, String, String), (i64, i64)>,
            ) -> Result<(), StoreError> {
                add_level_deltas(conn, LevelTable::COMMUNE, a.campaign, a.commune, levels, true).await
            }

            /// Adds per-level deltas (responses, tallies) to `table`'s rows of `unit`; then, when
            /// `drop_empty`, deletes the unit's rows that fell to zero.
            async fn add_level_deltas(
                conn: &mut Conn,
                table: LevelTable,
                campaign: &str,
                unit: &str,
                levels: &BTreeMap<(String, String, String), (i64, i64)>,
                drop_empty: bool,
            ) -> Result<(), StoreError> {
                let LevelTable { name, unit_column } = table;
                let changed: Vec<_> = levels.iter().filter(|(_, (r, t))| *r != 0 || *t != 0).collect();
                if changed.is_empty() {
                    return Ok(()); // nothing moved, so nothing fell to zero
                }
                for chunk in changed.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new(format!(
                        "INSERT INTO {name} (campaign_id, {unit_column}, question_id, subject_id, level, \
                         from_responses, from_tallies) "
                    ));
                    q.push_values(chunk, |mut b, ((question, subject, level), (r, t))| {
                        b.push_bind(campaign)
                            .push_bind(unit)
                            .push_bind(question.as_str())
                            .push_bind(subject.as_str())
                            .push_bind(level.as_str())
                            .push_bind(*r)
                            .push_bind(*t);
                    });
                    q.push(format!(
                        " ON CONFLICT (campaign_id, {unit_column}, question_id, subject_id, level) DO UPDATE SET \
                         from_responses = {name}.from_responses + excluded.from_responses, \
                         from_tallies = {name}.from_tallies + excluded.from_tallies"
                    ));
                    q.build().execute(&mut *conn).await.map_err(query_failed("updating level counts"))?;
                }
                if drop_empty {
                    let delete = format!(
                        "DELETE FROM {name} WHERE campaign_id = $1 AND {unit_column} = $2 \
                         AND from_responses = 0 AND from_tallies = 0"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(delete))
                        .bind(campaign)
                        .bind(unit)
                        .execute(&mut *conn)
                        .await
                        .map_err(query_failed("dropping empty level counts"))?;
                }
                Ok(())
            }

            /// Adds `c` to the aggregates (a full projection inserts them; an incremental one adds
            /// its deltas), then drops level rows that fell to zero, as a full projection has none.
            async fn add_counts(conn: &mut Conn, a: &Apply<'_>, c: &Counted, full: bool) -> Result<(), StoreError> {
                let h = c.hamlet;
                if full || h.iter().any(|v| *v != 0) {
                    sqlx::query(
                        "INSERT INTO hamlet_counts (campaign_id, hamlet_id, drafts, submitted, voided, tallies, \
                         ballots_issued, ballots_returned, ballots_valid, ballots_invalid) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (campaign_id, hamlet_id) DO UPDATE SET \
                         drafts = hamlet_counts.drafts + excluded.drafts, \
                         submitted = hamlet_counts.submitted + excluded.submitted, \
                         voided = hamlet_counts.voided + excluded.voided, \
                         tallies = hamlet_counts.tallies + excluded.tallies, \
                         ballots_issued = hamlet_counts.ballots_issued + excluded.ballots_issued, \
                         ballots_returned = hamlet_counts.ballots_returned + excluded.ballots_returned, \
                         ballots_valid = hamlet_counts.ballots_valid + excluded.ballots_valid, \
                         ballots_invalid = hamlet_counts.ballots_invalid + excluded.ballots_invalid",
                    )
                    .bind(a.campaign)
                    .bind(a.hamlet)
                    .bind(h[0])
                    .bind(h[1])
                    .bind(h[2])
                    .bind(h[3])
                    .bind(h[4])
                    .bind(h[5])
                    .bind(h[6])
                    .bind(h[7])
                    .execute(&mut *conn)
                    .await
                    .map_err(query_failed("updating a hamlet's counts"))?;
                }
                // A full projection starts from no rows: nothing can have fallen to zero.
                add_level_deltas(conn, LevelTable::HAMLET, a.campaign, a.hamlet, &c.levels, !full).await?;
                Ok(())
            }
        }
    };
}

projection_sql!(sqlite, sqlx::Sqlite);
projection_sql!(postgres, sqlx::Postgres);
