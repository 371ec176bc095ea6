//! Campaigns, administrative units and subjects as the server keeps them: in SQL tables for
//! queries, and — for campaigns — in the campaign document that devices read, written through
//! the document's task so that connected devices receive each change.
//!
//! Units and subjects are imported from CSV; each problem found is reported with its line.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hamlet_sync_core::campaign_doc::write_campaign;
use hamlet_sync_core::{
    Campaign, CampaignId, CampaignState, Day, DocumentId, EvaluationScope, HamletScope, Post, Subject, SubjectCategory,
    Unit, UnitId, UnitLevel, UnitTree,
};
use serde::Serialize;

use super::DistrictError;
use super::csv::{self, CsvError, Record};
use crate::audit::{self, Entry};
use crate::store::{BeginWrite, Store, StoreError, on_pool, query_failed};
use crate::sync::hub::Hub;

/// The header of a units file.
pub const UNITS_HEADER: [&str; 8] =
    ["id", "name", "level", "parent", "valid_from", "valid_until", "merged_from", "merged_into"];
/// The header of a subjects file.
pub const SUBJECTS_HEADER: [&str; 5] = ["id", "name", "position", "commune", "home_hamlet"];
/// Optional columns of a subjects file, after [`SUBJECTS_HEADER`], in any order: the category
/// (`can_bo`, `cong_chuc`, `khong_chuyen_trach`, or their Vietnamese names), the post (a
/// [`Post`] code or its Vietnamese name) and the evaluation scope (empty or `home`: the home
/// hamlet; `commune`: every hamlet of the commune; or hamlet ids separated by spaces, evaluated
/// besides the home hamlet).
pub const SUBJECTS_OPTIONAL: [&str; 3] = ["category", "post", "scope"];
/// The header of a file of hamlets in scope.
pub const HAMLETS_HEADER: [&str; 2] = ["hamlet", "expected_voters"];

/// A campaign as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CampaignSummary {
    /// Identifier.
    pub id: String,
    /// Name in Vietnamese.
    pub name_vi: String,
    /// Name in English.
    pub name_en: String,
    /// `draft`, `open`, `closed` or `published`.
    pub state: String,
    /// When it was created (unix ms).
    pub created_at: i64,
    /// When it last changed (unix ms).
    pub updated_at: i64,
}

/// How long a cached campaign or unit tree is trusted: changes made by another server process
/// sharing the database are seen within this time (this process's own changes at once).
const CACHE_TTL: Duration = Duration::from_secs(5);

/// Campaigns and units, cached in memory (the tree and each campaign are read on every results
/// request and every projection).
#[derive(Debug)]
pub struct Catalog {
    store: Store,
    campaigns: RwLock<HashMap<String, (Instant, Arc<Campaign>)>>,
    units: RwLock<Option<(Instant, Arc<UnitTree>)>>,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn level_code(level: UnitLevel) -> &'static str {
    match level {
        UnitLevel::Province => "province",
        UnitLevel::District => "district",
        UnitLevel::Commune => "commune",
        UnitLevel::Hamlet => "hamlet",
    }
}

/// A level from its code or its Vietnamese name.
pub fn parse_level(text: &str) -> Option<UnitLevel> {
    match super::fold_search(text.trim()).as_str() {
        "province" | "tinh" | "thanh pho" => Some(UnitLevel::Province),
        "district" | "huyen" | "quan" | "thi xa" => Some(UnitLevel::District),
        "commune" | "xa" | "phuong" | "thi tran" => Some(UnitLevel::Commune),
        "hamlet" | "thon" | "to dan pho" | "ban" | "ap" | "lang" => Some(UnitLevel::Hamlet),
        _ => None,
    }
}

impl Catalog {
    /// A catalog over `store`.
    pub fn new(store: Store) -> Catalog {
        Catalog { store, campaigns: RwLock::new(HashMap::new()), units: RwLock::new(None) }
    }

    /// The campaign with this id.
    pub async fn campaign(&self, id: &CampaignId) -> Result<Option<Arc<Campaign>>, StoreError> {
        if let Some((at, c)) = read(&self.campaigns).get(id.as_str())
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(c.clone()));
        }
        const SQL: &str = "SELECT definition FROM campaigns WHERE id = $1";
        let json: Option<String> = on_pool!(self.store, pool => {
            sqlx::query_scalar(SQL).bind(id.as_str()).fetch_optional(pool).await
        })
        .map_err(query_failed("reading a campaign"))?;
        let Some(json) = json else { return Ok(None) };
        match serde_json::from_str::<Campaign>(&json) {
            Ok(c) => {
                let c = Arc::new(c);
                write(&self.campaigns).insert(id.to_string(), (Instant::now(), c.clone()));
                Ok(Some(c))
            }
            Err(e) => {
                tracing::error!(campaign = %id, error = %e, "stored campaign does not read");
                Ok(None)
            }
        }
    }

    /// The campaign with this id, or a 404.
    pub async fn require(&self, id: &str) -> Result<Arc<Campaign>, DistrictError> {
        let not_found = || DistrictError::NotFound(format!("no campaign {id:?}"));
        let id: CampaignId = id.parse().map_err(|_| not_found())?;
        self.campaign(&id).await?.ok_or_else(not_found)
    }

    /// Every campaign, newest first.
    pub async fn campaigns(&self) -> Result<Vec<CampaignSummary>, StoreError> {
        const SQL: &str =
            "SELECT id, name_vi, name_en, state, created_at, updated_at FROM campaigns ORDER BY created_at DESC, id";
        let rows: Vec<(String, String, String, String, i64, i64)> =
            on_pool!(self.store, pool => sqlx::query_as(SQL).fetch_all(pool).await)
                .map_err(query_failed("listing campaigns"))?;
        Ok(rows
            .into_iter()
            .map(|(id, name_vi, name_en, state, created_at, updated_at)| CampaignSummary {
                id,
                name_vi,
                name_en,
                state,
                created_at,
                updated_at,
            })
            .collect())
    }

    /// The unit tree (empty before any import).
    pub async fn units(&self) -> Result<Arc<UnitTree>, DistrictError> {
        if let Some((at, tree)) = read(&self.units)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(tree);
        }
        let units = self.stored_units().await?;
        let tree = UnitTree::new(units).map_err(|e| DistrictError::Internal(format!("stored units: {e}")))?;
        let tree = Arc::new(tree);
        *write(&self.units) = Some((Instant::now(), tree.clone()));
        Ok(tree)
    }

    async fn stored_units(&self) -> Result<Vec<Unit>, DistrictError> {
        const SQL: &str = "SELECT id, name, level, parent_id, valid_from, valid_until, merged_from, merged_into \
            FROM units ORDER BY id";
        type Row = (String, String, String, Option<String>, String, Option<String>, String, Option<String>);
        let rows: Vec<Row> = on_pool!(self.store, pool => sqlx::query_as(SQL).fetch_all(pool).await)
            .map_err(query_failed("reading units"))?;
        let bad = |what: String| DistrictError::Internal(format!("stored unit: {what}"));
        rows.into_iter()
            .map(|(id, name, level, parent, from, until, merged_from, merged_into)| {
                Ok(Unit {
                    id: id.parse().map_err(|_| bad(id.clone()))?,
                    name,
                    level: parse_level(&level).ok_or_else(|| bad(level.clone()))?,
                    parent: parent.and_then(|p| p.parse().ok()),
                    valid_from: from.parse().map_err(|_| bad(from.clone()))?,
                    valid_until: until.and_then(|u| u.parse().ok()),
                    merged_from: serde_json::from_str(&merged_from).unwrap_or_default(),
                    merged_into: merged_into.and_then(|m| m.parse().ok()),
                })
            })
            .collect()
    }

    /// Imports units from CSV (header [`UNITS_HEADER`]): new units are added, known ones
    /// replaced; the whole tree must stay consistent. Returns how many units the file held. The
    /// import is logged as `actor`'s `units.import` in the same transaction.
    pub async fn import_units(&self, text: &str, actor: &str) -> Result<usize, DistrictError> {
        let records = csv::with_header(csv::parse(text).map_err(csv_error)?, &UNITS_HEADER).map_err(csv_error)?;
        let mut errors = Vec::new();
        let mut imported: BTreeMap<UnitId, (usize, Unit)> = BTreeMap::new();
        for record in &records {
            match unit_from(record) {
                Ok(unit) => {
                    if imported.contains_key(&unit.id) {
                        errors.push(CsvError { line: record.line, message: format!("unit {} appears twice", unit.id) });
                    } else {
                        imported.insert(unit.id.clone(), (record.line, unit));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(import_errors(errors));
        }
        let mut all: BTreeMap<UnitId, Unit> =
            self.stored_units().await?.into_iter().map(|u| (u.id.clone(), u)).collect();
        // The hamlets of a campaign under way (open, or closed and not yet published) keep their
        // place: moving one would move its counts to another commune mid-campaign.
        const UNDER_WAY: &str = "SELECT ch.hamlet_id, MIN(c.id) FROM campaign_hamlets ch \
            JOIN campaigns c ON c.id = ch.campaign_id WHERE c.state IN ('open', 'closed') GROUP BY ch.hamlet_id";
        let under_way: BTreeMap<String, String> =
            on_pool!(self.store, pool => sqlx::query_as::<_, (String, String)>(UNDER_WAY).fetch_all(pool).await)
                .map_err(query_failed("reading the hamlets of campaigns under way"))?
                .into_iter()
                .collect();
        for (id, (line, unit)) in &imported {
            let (Some(campaign), Some(stored)) = (under_way.get(id.as_str()), all.get(id)) else { continue };
            if stored.parent != unit.parent || stored.level != unit.level {
                errors.push(CsvError {
                    line: *line,
                    message: format!(
                        "unit {id} is a hamlet of campaign {campaign}, which is under way: its parent and level \
                         cannot change until the campaign is published"
                    ),
                });
            }
        }
        if !errors.is_empty() {
            return Err(import_errors(errors));
        }
        for (id, (_, unit)) in &imported {
            all.insert(id.clone(), unit.clone());
        }
        if let Err(e) = UnitTree::new(all.values().cloned()) {
            let line = unit_error_subject(&e).and_then(|id| imported.get(id)).map_or(1, |(line, _)| *line);
            return Err(import_errors(vec![CsvError { line, message: e.to_string() }]));
        }
        let now = self.store.now_ms();
        const SQL: &str = "INSERT INTO units (id, name, level, parent_id, valid_from, valid_until, merged_from, \
                merged_into, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
            ON CONFLICT (id) DO UPDATE SET name = excluded.name, level = excluded.level, \
                parent_id = excluded.parent_id, valid_from = excluded.valid_from, valid_until = excluded.valid_until, \
                merged_from = excluded.merged_from, merged_into = excluded.merged_into, updated_at = excluded.updated_at";
        let count = imported.len();
        let entry = Entry::new(actor, "units.import", "units", &format!("{count} units"));
        on_pool!(self.store, pool => {
            let mut tx = pool.begin_write().await.map_err(query_failed("beginning a units import"))?;
            for (_, unit) in imported.values() {
                sqlx::query(SQL)
                    .bind(unit.id.as_str())
                    .bind(&unit.name)
                    .bind(level_code(unit.level))
                    .bind(unit.parent.as_ref().map(|p| p.to_string()))
                    .bind(unit.valid_from.to_string())
                    .bind(unit.valid_until.map(|d| d.to_string()))
                    .bind(serde_json::to_string(&unit.merged_from).unwrap_or_else(|_| "[]".into()))
                    .bind(unit.merged_into.as_ref().map(|m| m.to_string()))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_failed("storing a unit"))?;
            }
            // Hamlets may have moved to another commune: sum the communes again.
            for sql in [
                "DELETE FROM commune_level_counts",
                "INSERT INTO commune_level_counts (campaign_id, commune_id, question_id, subject_id, level, \
                    from_responses, from_tallies) \
                 SELECT lc.campaign_id, COALESCE(u.parent_id, ''), lc.question_id, lc.subject_id, lc.level, \
                    CAST(SUM(lc.from_responses) AS BIGINT), CAST(SUM(lc.from_tallies) AS BIGINT) \
                 FROM level_counts lc LEFT JOIN units u ON u.id = lc.hamlet_id \
                 GROUP BY lc.campaign_id, COALESCE(u.parent_id, ''), lc.question_id, lc.subject_id, lc.level",
            ] {
                sqlx::query(sql).execute(&mut *tx).await.map_err(query_failed("summing communes again"))?;
            }
            audit::insert_in!(tx, now, &entry)?;
            tx.commit().await.map_err(query_failed("committing a units import"))
        })?;
        *write(&self.units) = None;
        Ok(count)
    }

    /// Stores `campaign` if the stored one is still `base` (`None`: if there is none yet): its
    /// definition and subjects and hamlets in SQL, then the campaign document (through `hub`, so
    /// that devices syncing it receive the change).
    ///
    /// A compare-and-swap: the SQL row changes only while its definition is exactly `base`'s, so
    /// a save made from a stale copy (another server process's cache, a request racing another)
    /// is refused with a conflict instead of undoing what happened since. SQL goes first, so
    /// devices never read a state that SQL does not hold; if the document cannot be written, the
    /// SQL change is swapped back, so both change or neither does.
    pub async fn save(
        &self,
        hub: &Arc<Hub>,
        campaign: &Campaign,
        base: Option<&Campaign>,
        entry: &Entry,
    ) -> Result<(), DistrictError> {
        self.store_sql(campaign, base, entry).await?;
        let document = DocumentId::for_campaign(&campaign.id);
        let written = campaign.clone();
        let today = Day::from_unix_seconds(self.store.now_ms() / 1000);
        let wrote = hub
            .write(document, Box::new(move |doc| write_campaign(doc, &written, today).map_err(|e| e.to_string())))
            .await;
        if let Err(e) = wrote {
            tracing::error!(campaign = %campaign.id, error = %e, "campaign document not written; undoing the SQL change");
            // The undoing is logged too, after the entry of the change it undoes.
            let undo = Entry::new(
                &entry.actor,
                "campaign.undo",
                campaign.id.as_str(),
                &format!("{} undone: the campaign document could not be written ({e})", entry.action),
            );
            let undone = match base {
                Some(base) => self.store_sql(base, Some(campaign), &undo).await,
                None => self.delete_sql(campaign, &undo).await,
            };
            if let Err(undo) = undone {
                tracing::error!(campaign = %campaign.id, error = %undo, "could not undo a campaign's SQL change");
            }
            write(&self.campaigns).remove(campaign.id.as_str());
            return Err(DistrictError::Internal(format!("writing the campaign document: {e}")));
        }
        write(&self.campaigns).insert(campaign.id.to_string(), (Instant::now(), Arc::new(campaign.clone())));
        Ok(())
    }

    /// Removes a campaign created by a save whose document could not be written.
    async fn delete_sql(&self, campaign: &Campaign, entry: &Entry) -> Result<(), DistrictError> {
        let id = campaign.id.as_str();
        let now = self.store.now_ms();
        on_pool!(self.store, pool => {
            let mut tx = pool.begin_write().await.map_err(query_failed("beginning a campaign removal"))?;
            for table in ["campaigns WHERE id", "campaign_subjects WHERE campaign_id", "campaign_hamlets WHERE campaign_id"] {
                let sql = sqlx::AssertSqlSafe(format!("DELETE FROM {table} = $1"));
                sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(query_failed("removing a campaign"))?;
            }
            audit::insert_in!(tx, now, entry)?;
            tx.commit().await.map_err(query_failed("committing a campaign removal"))
        })?;
        Ok(())
    }

    /// The SQL half of [`save`](Self::save), compare-and-swap on the stored definition.
    async fn store_sql(
        &self,
        campaign: &Campaign,
        base: Option<&Campaign>,
        entry: &Entry,
    ) -> Result<(), DistrictError> {
        let document = DocumentId::for_campaign(&campaign.id);
        let now = self.store.now_ms();
        let definition =
            serde_json::to_string(campaign).map_err(|e| DistrictError::Internal(format!("campaign JSON: {e}")))?;
        let changed = || {
            DistrictError::conflict(
                "campaign_changed",
                format!("campaign {} changed since it was read (or already exists): read it again", campaign.id),
            )
        };
        let state = serde_json::to_value(campaign.state).ok().and_then(|v| v.as_str().map(str::to_owned));
        let state = state.unwrap_or_else(|| "draft".into());
        let id = campaign.id.as_str();
        on_pool!(self.store, pool => {
            let mut tx = pool.begin_write().await.map_err(query_failed("beginning a campaign save"))?;
            // The text stored, if it still reads as `base` (older texts may lack newer fields).
            let expected: Option<String> = match base {
                None => None,
                Some(base) => {
                    let text: Option<String> = sqlx::query_scalar("SELECT definition FROM campaigns WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(query_failed("reading a campaign to save"))?;
                    match text {
                        Some(text) if serde_json::from_str::<Campaign>(&text).ok().as_ref() == Some(base) => Some(text),
                        _ => return Err(changed()),
                    }
                }
            };
            let stored = match &expected {
                None => sqlx::query(
                    "INSERT INTO campaigns (id, name_vi, name_en, state, document_id, definition, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(&campaign.name.vi)
                .bind(&campaign.name.en)
                .bind(&state)
                .bind(document.to_string())
                .bind(&definition)
                .bind(now)
                .execute(&mut *tx)
                .await,
                Some(expected) => sqlx::query(
                    "UPDATE campaigns SET name_vi = $2, name_en = $3, state = $4, definition = $5, updated_at = $6 \
                     WHERE id = $1 AND definition = $7",
                )
                .bind(id)
                .bind(&campaign.name.vi)
                .bind(&campaign.name.en)
                .bind(&state)
                .bind(&definition)
                .bind(now)
                .bind(expected)
                .execute(&mut *tx)
                .await,
            }
            .map_err(query_failed("storing a campaign"))?;
            if stored.rows_affected() != 1 {
                // Dropping the transaction rolls it back.
                return Err(changed());
            }
            for table in ["campaign_subjects", "campaign_hamlets"] {
                let sql = sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE campaign_id = $1"));
                sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(query_failed("replacing a campaign's lists"))?;
            }
            for (i, s) in campaign.subjects.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO campaign_subjects (campaign_id, subject_id, ordinal, name, position, commune_id, \
                     home_hamlet_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id)
                .bind(s.id.as_str())
                .bind(i as i64)
                .bind(&s.name)
                .bind(&s.position)
                .bind(s.commune.as_str())
                .bind(s.home_hamlet.as_str())
                .execute(&mut *tx)
                .await
                .map_err(query_failed("storing a subject"))?;
            }
            // Only the hamlets in the campaign: one with no subject to evaluate has no ledger.
            for h in campaign.in_campaign() {
                sqlx::query(
                    "INSERT INTO campaign_hamlets (campaign_id, hamlet_id, expected_voters, document_id) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(h.hamlet.as_str())
                .bind(i64::from(h.expected_voters))
                .bind(DocumentId::for_ledger(&campaign.id, &h.hamlet).to_string())
                .execute(&mut *tx)
                .await
                .map_err(query_failed("storing a hamlet in scope"))?;
            }
            audit::insert_in!(tx, now, entry)?;
            tx.commit().await.map_err(query_failed("committing a campaign save"))
        })?;
        Ok(())
    }
}

/// Units as a CSV file in the import format ([`UNITS_HEADER`]).
pub fn units_csv<'a>(units: impl IntoIterator<Item = &'a Unit>) -> String {
    let mut out = csv::line(&UNITS_HEADER);
    for u in units {
        let merged_from: Vec<&str> = u.merged_from.iter().map(|m| m.as_str()).collect();
        out.push_str(&csv::line(&[
            u.id.to_string(),
            u.name.clone(),
            level_code(u.level).to_owned(),
            u.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            u.valid_from.to_string(),
            u.valid_until.map(|d| d.to_string()).unwrap_or_default(),
            merged_from.join(";"),
            u.merged_into.as_ref().map(|m| m.to_string()).unwrap_or_default(),
        ]));
    }
    out
}

fn csv_error(e: CsvError) -> DistrictError {
    import_errors(vec![e])
}

fn import_errors(details: Vec<CsvError>) -> DistrictError {
    let message = match details.as_slice() {
        [one] => format!("the file was not imported: {one}"),
        many => format!("the file was not imported: {} problems, the first on line {}", many.len(), many[0].line),
    };
    DistrictError::Invalid { code: "invalid_csv", message, details }
}

fn unit_error_subject(e: &hamlet_sync_core::unit::UnitError) -> Option<&UnitId> {
    use hamlet_sync_core::unit::UnitError as E;
    match e {
        E::Duplicate(id) | E::NoName(id) | E::MissingParent(id) => Some(id),
        E::Unknown { unit, .. } | E::WrongParentLevel { unit, .. } | E::EmptyValidity { unit, .. } => Some(unit),
        E::Lineage { from, .. } => Some(from),
    }
}

fn parse_field<T: std::str::FromStr>(record: &Record, i: usize, what: &str) -> Result<T, CsvError> {
    let text = record.get(i);
    text.parse().map_err(|_| CsvError { line: record.line, message: format!("{what} {text:?} is not valid") })
}

fn optional<T: std::str::FromStr>(record: &Record, i: usize, what: &str) -> Result<Option<T>, CsvError> {
    if record.get(i).is_empty() { Ok(None) } else { parse_field(record, i, what).map(Some) }
}

/// One unit from a record of a units file ([`UNITS_HEADER`]); no database is read (the fuzz
/// targets call it directly).
pub fn unit_from(r: &Record) -> Result<Unit, CsvError> {
    let level = parse_level(r.get(2)).ok_or_else(|| CsvError {
        line: r.line,
        message: format!("level {:?} is not province, district, commune or hamlet", r.get(2)),
    })?;
    let merged_from = r
        .get(6)
        .split([';', ' ', '|'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<UnitId>()
                .map_err(|_| CsvError { line: r.line, message: format!("merged_from {s:?} is not a unit id") })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if r.get(1).is_empty() {
        return Err(CsvError { line: r.line, message: "the name is empty".into() });
    }
    Ok(Unit {
        id: parse_field(r, 0, "id")?,
        name: r.get(1).to_owned(),
        level,
        parent: optional(r, 3, "parent")?,
        valid_from: if r.get(4).is_empty() {
            Day::from_ymd(2000, 1, 1).unwrap_or(Day::from_unix_seconds(0))
        } else {
            parse_field(r, 4, "valid_from (YYYY-MM-DD)")?
        },
        valid_until: optional(r, 5, "valid_until (YYYY-MM-DD)")?,
        merged_from,
        merged_into: optional(r, 7, "merged_into")?,
    })
}

/// Reads subjects from CSV (header [`SUBJECTS_HEADER`]), checking that each names a commune and
/// a hamlet of `tree`.
pub fn subjects_from_csv(text: &str, tree: &UnitTree) -> Result<Vec<Subject>, DistrictError> {
    let all = csv::parse(text).map_err(csv_error)?;
    let header: Vec<String> =
        all.first().map(|h| h.fields.iter().map(|f| f.trim().to_lowercase()).collect()).unwrap_or_default();
    let column = |name: &str| header.iter().skip(SUBJECTS_HEADER.len()).position(|h| h == name).map(|i| i + 5);
    let [category_at, post_at, scope_at] = SUBJECTS_OPTIONAL.map(column);
    let records = csv::with_header(all, &SUBJECTS_HEADER).map_err(csv_error)?;
    let mut errors = Vec::new();
    let mut subjects: Vec<Subject> = Vec::new();
    for r in &records {
        let subject = (|| {
            let optional = |at: Option<usize>| at.map(|i| r.get(i).trim()).filter(|v| !v.is_empty());
            let bad = |message: String| CsvError { line: r.line, message };
            let category = optional(category_at)
                .map(|v| {
                    parse_category(v).ok_or_else(|| {
                        bad(format!("category {v:?} is not one of can_bo, cong_chuc, khong_chuyen_trach"))
                    })
                })
                .transpose()?;
            let post = optional(post_at)
                .map(|v| parse_post(v).ok_or_else(|| bad(format!("post {v:?} is not a known post"))))
                .transpose()?;
            let scope = match optional(scope_at) {
                None => EvaluationScope::Home,
                Some(v) => parse_scope(v, tree).map_err(bad)?,
            };
            let s = Subject {
                id: parse_field(r, 0, "id")?,
                name: r.get(1).to_owned(),
                position: r.get(2).to_owned(),
                commune: parse_field(r, 3, "commune")?,
                home_hamlet: parse_field(r, 4, "home_hamlet")?,
                category,
                post,
                scope,
            };
            if s.name.is_empty() || s.position.is_empty() {
                return Err(CsvError { line: r.line, message: "a subject needs a name and a position".into() });
            }
            for (unit, level, what) in
                [(&s.commune, UnitLevel::Commune, "commune"), (&s.home_hamlet, UnitLevel::Hamlet, "home_hamlet")]
            {
                if tree.get(unit).map(|u| u.level) != Some(level) {
                    return Err(CsvError { line: r.line, message: format!("{what} {unit} is not a known {what}") });
                }
            }
            if subjects.iter().any(|o| o.id == s.id) {
                return Err(CsvError { line: r.line, message: format!("subject {} appears twice", s.id) });
            }
            Ok(s)
        })();
        match subject {
            Ok(s) => subjects.push(s),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(import_errors(errors));
    }
    if subjects.is_empty() {
        return Err(import_errors(vec![CsvError { line: 1, message: "the file lists no subject".into() }]));
    }
    Ok(subjects)
}

/// A category from its code or its Vietnamese name (accents and case aside).
pub fn parse_category(text: &str) -> Option<SubjectCategory> {
    SubjectCategory::from_code(text.trim()).or_else(|| match super::fold_search(text.trim()).as_str() {
        "can bo" => Some(SubjectCategory::CanBo),
        "cong chuc" => Some(SubjectCategory::CongChuc),
        "nguoi hoat dong khong chuyen trach" | "khong chuyen trach" => Some(SubjectCategory::KhongChuyenTrach),
        _ => None,
    })
}

/// A post from its code or its Vietnamese name (accents and case aside; "Đảng ủy", "xã" and
/// "phường" may follow).
pub fn parse_post(text: &str) -> Option<Post> {
    if let Some(post) = Post::from_code(text.trim()) {
        return Some(post);
    }
    let folded = super::fold_search(text.trim());
    let name = ["xa", "phuong", "thi tran", "dang uy"]
        .iter()
        .fold(folded.as_str(), |n, tail| n.strip_suffix(tail).map_or(n, str::trim_end));
    Some(match name {
        "bi thu" => Post::BiThu,
        "pho bi thu" => Post::PhoBiThu,
        "chu tich hdnd" | "chu tich hoi dong nhan dan" => Post::ChuTichHdnd,
        "pho chu tich hdnd" | "pho chu tich hoi dong nhan dan" => Post::PhoChuTichHdnd,
        "chu tich ubnd" | "chu tich uy ban nhan dan" => Post::ChuTichUbnd,
        "pho chu tich ubnd" | "pho chu tich uy ban nhan dan" => Post::PhoChuTichUbnd,
        "chu tich mttq" | "chu tich uy ban mttq" | "chu tich uy ban mat tran to quoc" => Post::ChuTichMttq,
        "truong doan the" => Post::TruongDoanThe,
        "khac" => Post::Other,
        _ => return None,
    })
}

/// An evaluation scope as a subjects file writes it (see [`SUBJECTS_OPTIONAL`]).
fn parse_scope(text: &str, tree: &UnitTree) -> Result<EvaluationScope, String> {
    match super::fold_search(text.trim()).as_str() {
        "home" | "nha" | "noi cu tru" => return Ok(EvaluationScope::Home),
        "commune" | "xa" | "toan xa" => return Ok(EvaluationScope::Commune),
        _ => {}
    }
    let mut hamlets: Vec<UnitId> = Vec::new();
    for part in text.split([' ', ',', ';', '\t']).filter(|p| !p.is_empty()) {
        let id: UnitId = part.parse().map_err(|_| format!("scope: {part:?} is not a hamlet id"))?;
        if tree.get(&id).map(|u| u.level) != Some(UnitLevel::Hamlet) {
            return Err(format!("scope: {id} is not a known hamlet"));
        }
        if !hamlets.contains(&id) {
            hamlets.push(id);
        }
    }
    Ok(EvaluationScope::Hamlets(hamlets))
}

/// Reads the hamlets in scope from CSV (header [`HAMLETS_HEADER`]).
pub fn hamlets_from_csv(text: &str, tree: &UnitTree) -> Result<Vec<HamletScope>, DistrictError> {
    let records = csv::with_header(csv::parse(text).map_err(csv_error)?, &HAMLETS_HEADER).map_err(csv_error)?;
    let mut errors = Vec::new();
    let mut hamlets: Vec<HamletScope> = Vec::new();
    for r in &records {
        let scope = (|| {
            let h = HamletScope {
                hamlet: parse_field(r, 0, "hamlet")?,
                expected_voters: parse_field(r, 1, "expected_voters")?,
                ballot: Vec::new(),
            };
            if tree.get(&h.hamlet).map(|u| u.level) != Some(UnitLevel::Hamlet) {
                return Err(CsvError { line: r.line, message: format!("{} is not a known hamlet", h.hamlet) });
            }
            if h.expected_voters == 0 {
                return Err(CsvError { line: r.line, message: "expected_voters must be at least 1".into() });
            }
            if hamlets.iter().any(|o| o.hamlet == h.hamlet) {
                return Err(CsvError { line: r.line, message: format!("hamlet {} appears twice", h.hamlet) });
            }
            Ok(h)
        })();
        match scope {
            Ok(h) => hamlets.push(h),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(import_errors(errors));
    }
    Ok(hamlets)
}

/// Whether the campaign may still be edited.
pub fn require_draft(campaign: &Campaign) -> Result<(), DistrictError> {
    if campaign.state == CampaignState::Draft {
        Ok(())
    } else {
        Err(DistrictError::conflict(
            "campaign_not_draft",
            format!("campaign {} is {:?}: only a draft can be edited", campaign.id, campaign.state).to_lowercase(),
        ))
    }
}
