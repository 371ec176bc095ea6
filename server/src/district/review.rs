//! What district staff review: conflicts (the same field edited on two devices — every value,
//! with the device that wrote it), flagged edits of sealed responses and other flags, each
//! markable as reviewed with a comment (audited); and the residents' comments, searchable.
//!
//! Both obey the small-group rule. The values of a conflict or flag (a single response's sealed
//! and current answers) are shown to administrators, and to other staff only for hamlets with at
//! least [`MIN_NAMED_HAMLET`] submitted responses. Comments are listed by subject, then by their
//! own text: their order says nothing of the hamlet or the response they come from, so one
//! resident's comments on several cadres cannot be lined up. A hamlet is named beside a comment
//! only when it has at least [`MIN_NAMED_HAMLET`] submitted responses, and its commune only when
//! the commune's unnamed hamlets together have at least as many (a commune with a single small
//! hamlet would name it).

use std::collections::HashMap;

use hamlet_sync_core::{Campaign, UnitId, UnitLevel};
use serde::Serialize;

use super::{Actor, District, DistrictError, fold_search};
use crate::audit;
use crate::store::{BeginWrite, on_pool, query_failed};

/// A hamlet with fewer submitted responses than this is not named beside a comment.
pub const MIN_NAMED_HAMLET: i64 = super::results::MIN_GROUP as i64;

/// A review already made.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reviewed {
    /// When (unix ms).
    pub at: i64,
    /// By whom.
    pub by: String,
    /// Their comment.
    pub comment: String,
}

/// One value of a conflict.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConflictValue {
    /// The value, as text.
    pub value: String,
    /// The Automerge actor (device) that wrote it, hex.
    pub actor: String,
    /// The enrolled device writing as that actor, and its collector, when known.
    pub device: Option<String>,
    /// Whether this is the value currently shown by the document.
    pub shown: bool,
}

/// A conflict or a flag.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReviewItem {
    /// `conflict` or `flag`.
    pub kind: &'static str,
    /// What a review of it refers to.
    pub item_key: String,
    /// The hamlet.
    pub hamlet: String,
    /// Its name.
    pub hamlet_name: String,
    /// Its commune's name.
    pub commune_name: String,
    /// `ledger`, `response` or `tally`.
    pub entity_kind: String,
    /// The response or tally id.
    pub entity_id: String,
    /// For a conflict, the field (keys from the root, joined by `/`).
    pub path: String,
    /// For a flag, its kind (`edited_after_seal`, `invalid_answer`, …).
    pub flag: Option<String>,
    /// For a conflict, every value with its device.
    pub values: Vec<ConflictValue>,
    /// For a flag, its details as stored.
    pub detail: serde_json::Value,
    /// The review, if it was reviewed.
    pub reviewed: Option<Reviewed>,
}

fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    }
}

/// Every conflict and flag of `campaign` (`open_only`: those not reviewed yet), as `actor` may
/// see them: values of small hamlets only for administrators.
pub async fn items(
    district: &District,
    campaign: &Campaign,
    open_only: bool,
    actor: &Actor,
) -> Result<Vec<ReviewItem>, DistrictError> {
    let submitted = submitted_per_hamlet(district, campaign.id.as_str()).await?;
    let tree = district.catalog().units().await?;
    let store = district.store();
    const SQL: &str = "SELECT 'conflict', c.hamlet_id, c.entity_kind, c.entity_id, c.path, c.item_key, c.detail, \
            r.reviewed_at, r.reviewed_by, r.comment \
        FROM conflicts c LEFT JOIN reviews r ON r.campaign_id = c.campaign_id AND r.item_key = c.item_key \
        WHERE c.campaign_id = $1 \
        UNION ALL \
        SELECT f.kind, f.hamlet_id, f.entity_kind, f.entity_id, '', f.item_key, f.detail, \
            r.reviewed_at, r.reviewed_by, r.comment \
        FROM flags f LEFT JOIN reviews r ON r.campaign_id = f.campaign_id AND r.item_key = f.item_key \
        WHERE f.campaign_id = $1 \
        ORDER BY 2, 3, 4, 5";
    type Row = (String, String, String, String, String, String, String, Option<i64>, Option<String>, Option<String>);
    let mut rows: Vec<Row> =
        on_pool!(store, pool => sqlx::query_as(SQL).bind(campaign.id.as_str()).fetch_all(pool).await)
            .map_err(query_failed("reading conflicts and flags"))?;
    rows.extend(after_publication(district, campaign).await?);
    let mut out = Vec::new();
    for (kind, hamlet, entity_kind, entity_id, path, item_key, detail, at, by, comment) in rows {
        let reviewed = at.map(|at| Reviewed { at, by: by.unwrap_or_default(), comment: comment.unwrap_or_default() });
        if open_only && reviewed.is_some() {
            continue;
        }
        let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
        let unit = hamlet.parse::<UnitId>().ok();
        let hamlet_name =
            unit.as_ref().and_then(|id| tree.get(id).map(|u| u.name.clone())).unwrap_or_else(|| hamlet.clone());
        let commune_name = unit
            .as_ref()
            .and_then(|id| tree.ancestor_at(id, UnitLevel::Commune))
            .map_or_else(String::new, |c| c.name.clone());
        let is_conflict = kind == "conflict";
        let redact = !actor.is_admin() && submitted.get(&hamlet).copied().unwrap_or(0) < MIN_NAMED_HAMLET;
        let detail = if redact { redacted(&detail) } else { detail };
        let values = if is_conflict {
            detail
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| ConflictValue {
                            value: scalar_text(&v["value"]),
                            actor: v["actor"].as_str().unwrap_or_default().to_owned(),
                            device: None,
                            shown: i == 0,
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        out.push(ReviewItem {
            kind: if is_conflict { "conflict" } else { "flag" },
            item_key,
            hamlet,
            hamlet_name,
            commune_name,
            entity_kind,
            entity_id,
            path,
            flag: (!is_conflict).then_some(kind),
            values,
            detail: if is_conflict { serde_json::Value::Null } else { detail },
            reviewed,
        });
    }
    // Conflicts first: two devices disagree, and one value is hidden from the counts' view.
    out.sort_by_key(|i| i.kind != "conflict");
    let names = device_names(district).await;
    for value in out.iter_mut().flat_map(|i| i.values.iter_mut()) {
        value.device = names.get(&value.actor).cloned();
    }
    Ok(out)
}

/// A flag's or conflict's details without the values (the answers of one response): the kind
/// and key stay, so that the reviewer knows what to ask about.
fn redacted(detail: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match detail {
        J::Array(values) => J::Array(
            values
                .iter()
                .map(|v| serde_json::json!({"value": "…", "actor": v.get("actor").cloned().unwrap_or(J::Null)}))
                .collect(),
        ),
        J::Object(map) => J::Object(
            map.iter()
                .map(|(k, v)| match k.as_str() {
                    "sealed" | "current" => (k.clone(), J::String("…".into())),
                    _ => (k.clone(), v.clone()),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The responses and tallies whose counting changed after the campaign was published, as flags
/// (`after_publication`, with item key `late:<hamlet>:<kind>:<id>`): kept, not counted in the
/// published results.
#[allow(clippy::type_complexity)]
async fn after_publication(
    district: &District,
    campaign: &Campaign,
) -> Result<
    Vec<(String, String, String, String, String, String, String, Option<i64>, Option<String>, Option<String>)>,
    DistrictError,
> {
    if campaign.state != hamlet_sync_core::CampaignState::Published {
        return Ok(Vec::new());
    }
    let id = campaign.id.as_str();
    let later = super::results::after_publication(district, id).await?;
    if later.is_empty() {
        return Ok(Vec::new());
    }
    const SQL: &str = "SELECT item_key, reviewed_at, reviewed_by, comment FROM reviews WHERE campaign_id = $1 AND item_key LIKE 'late:%'";
    let reviews: HashMap<String, (i64, String, String)> =
        on_pool!(district.store(), pool => sqlx::query_as::<_, (String, i64, String, String)>(SQL).bind(id).fetch_all(pool).await)
            .map_err(query_failed("reading reviews"))?
            .into_iter()
            .map(|(k, at, by, c)| (k, (at, by, c)))
            .collect();
    Ok(later
        .into_iter()
        .map(|l| {
            let key = late_key(&l.hamlet, &l.entity_kind, &l.entity_id);
            let review = reviews.get(&key).cloned();
            let detail = serde_json::json!({ "change": l.change }).to_string();
            (
                "after_publication".to_owned(),
                l.hamlet,
                l.entity_kind,
                l.entity_id,
                String::new(),
                key,
                detail,
                review.as_ref().map(|r| r.0),
                review.as_ref().map(|r| r.1.clone()),
                review.map(|r| r.2),
            )
        })
        .collect())
}

fn late_key(hamlet: &str, kind: &str, id: &str) -> String {
    format!("late:{hamlet}:{kind}:{id}")
}

async fn submitted_per_hamlet(district: &District, campaign: &str) -> Result<HashMap<String, i64>, DistrictError> {
    const SQL: &str = "SELECT hamlet_id, submitted FROM hamlet_counts WHERE campaign_id = $1";
    Ok(on_pool!(district.store(), pool => sqlx::query_as::<_, (String, i64)>(SQL).bind(campaign).fetch_all(pool).await)
        .map_err(query_failed("reading hamlet counts"))?
        .into_iter()
        .collect())
}

/// "device (collector)" of every enrolled actor id. Best effort: without accounts, no names.
async fn device_names(district: &District) -> HashMap<String, String> {
    const SQL: &str =
        "SELECT da.actor_id, d.name, d.person_id FROM device_actors da JOIN devices d ON d.id = da.device_id";
    let rows: Result<Vec<(String, String, String)>, _> =
        on_pool!(district.store(), pool => sqlx::query_as(SQL).fetch_all(pool).await);
    match rows {
        Ok(rows) => rows.into_iter().map(|(actor, name, person)| (actor, format!("{name} ({person})"))).collect(),
        Err(e) => {
            tracing::debug!(error = %e, "no device names for conflicts");
            HashMap::new()
        }
    }
}

/// Marks a conflict or flag as reviewed, with a comment; audited in the same transaction.
pub async fn mark_reviewed(
    district: &District,
    campaign: &Campaign,
    item_key: &str,
    comment: &str,
    actor: &Actor,
) -> Result<(), DistrictError> {
    let comment = comment.trim();
    if comment.chars().count() > 2000 {
        return Err(DistrictError::invalid("comment_too_long", "a review comment has at most 2000 characters"));
    }
    let store = district.store();
    let id = campaign.id.as_str();
    const EXISTS: &str = "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT item_key FROM conflicts WHERE campaign_id = $1 \
        AND item_key = $2 UNION ALL SELECT item_key FROM flags WHERE campaign_id = $1 AND item_key = $2) items";
    let found: i64 = on_pool!(store, pool => sqlx::query_scalar(EXISTS).bind(id).bind(item_key).fetch_one(pool).await)
        .map_err(query_failed("finding an item to review"))?;
    let late = found == 0
        && item_key.starts_with("late:")
        && super::results::after_publication(district, id)
            .await?
            .iter()
            .any(|l| late_key(&l.hamlet, &l.entity_kind, &l.entity_id) == item_key);
    if found == 0 && !late {
        return Err(DistrictError::NotFound(format!("no conflict or flag {item_key:?} in campaign {id}")));
    }
    const SQL: &str = "INSERT INTO reviews (campaign_id, item_key, reviewed_at, reviewed_by, comment) \
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (campaign_id, item_key) DO UPDATE SET \
        reviewed_at = excluded.reviewed_at, reviewed_by = excluded.reviewed_by, comment = excluded.comment";
    let now = store.now_ms();
    let entry = audit::Entry::new(&actor.name, "review.mark", &format!("{id}/{item_key}"), comment);
    on_pool!(store, pool => {
        let mut tx = pool.begin_write().await.map_err(query_failed("beginning a review"))?;
        sqlx::query(SQL)
            .bind(id)
            .bind(item_key)
            .bind(now)
            .bind(&actor.name)
            .bind(comment)
            .execute(&mut *tx)
            .await
            .map_err(query_failed("storing a review"))?;
        audit::insert_in!(tx, now, &entry)?;
        tx.commit().await.map_err(query_failed("committing a review"))
    })?;
    // A flagged tally counts once reviewed: count its hamlet again.
    const TALLY: &str = "SELECT ch.document_id FROM flags f JOIN campaign_hamlets ch \
        ON ch.campaign_id = f.campaign_id AND ch.hamlet_id = f.hamlet_id \
        WHERE f.campaign_id = $1 AND f.item_key = $2 AND f.entity_kind = 'tally'";
    let documents: Vec<String> =
        on_pool!(store, pool => sqlx::query_scalar(TALLY).bind(id).bind(item_key).fetch_all(pool).await)
            .map_err(query_failed("finding a reviewed tally's ledger"))?;
    for document in documents {
        district
            .projector
            .reproject_document(&document)
            .await
            .map_err(|e| DistrictError::Internal(format!("counting a reviewed tally: {e}")))?;
    }
    Ok(())
}

/// A resident's comment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Comment {
    /// The subject it is about.
    pub subject: String,
    /// The subject's name.
    pub subject_name: String,
    /// The hamlet, unless it has too few responses to be named.
    pub hamlet: Option<String>,
    /// The hamlet's name, likewise.
    pub hamlet_name: Option<String>,
    /// The commune's name.
    pub commune_name: String,
    /// The text.
    pub text: String,
}

/// A page of comments.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Comments {
    /// Comments matching, in all.
    pub total: i64,
    /// This page.
    pub items: Vec<Comment>,
}

/// Comments of submitted responses matching `query` (case and diacritics ignored), about
/// `subject` if given; `limit` from `offset`.
pub async fn comments(
    district: &District,
    campaign: &Campaign,
    query: &str,
    subject: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Comments, DistrictError> {
    let tree = district.catalog().units().await?;
    let store = district.store();
    let id = campaign.id.as_str();
    let folded = fold_search(query.trim());
    let pattern = format!("%{}%", folded.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let subject = subject.unwrap_or("");
    const WHERE: &str = "WHERE a.campaign_id = $1 AND a.kind = 'comment' AND a.counted = 1 \
        AND a.search_text LIKE $2 ESCAPE '\\' AND ($3 = '' OR a.subject_id = $3)";
    let count_sql = sqlx::AssertSqlSafe(format!("SELECT CAST(COUNT(*) AS BIGINT) FROM answers a {WHERE}"));
    let total: i64 = on_pool!(store, pool => {
        sqlx::query_scalar(count_sql).bind(id).bind(&pattern).bind(subject).fetch_one(pool).await
    })
    .map_err(query_failed("counting comments"))?;
    let page_sql = sqlx::AssertSqlSafe(format!(
        "SELECT a.hamlet_id, a.subject_id, a.value_text FROM answers a {WHERE} \
         ORDER BY a.subject_id, a.search_text, a.value_text, a.question_id LIMIT $4 OFFSET $5"
    ));
    let rows: Vec<(String, String, Option<String>)> = on_pool!(store, pool => {
        sqlx::query_as(page_sql)
            .bind(id)
            .bind(&pattern)
            .bind(subject)
            .bind(limit.clamp(1, 500))
            .bind(offset.max(0))
            .fetch_all(pool)
            .await
    })
    .map_err(query_failed("reading comments"))?;
    let submitted = submitted_per_hamlet(district, id).await?;
    // Per commune, the submitted responses of its hamlets too small to be named.
    let mut unnamed: HashMap<String, i64> = HashMap::new();
    for (hamlet, n) in &submitted {
        if *n < MIN_NAMED_HAMLET
            && let Ok(unit) = hamlet.parse::<UnitId>()
            && let Some(commune) = tree.ancestor_at(&unit, UnitLevel::Commune)
        {
            *unnamed.entry(commune.id.to_string()).or_default() += n;
        }
    }
    let names: HashMap<&str, &str> = campaign.subjects.iter().map(|s| (s.id.as_str(), s.name.as_str())).collect();
    let items = rows
        .into_iter()
        .map(|(hamlet, subject, text)| {
            let unit = hamlet.parse::<UnitId>().ok();
            let named = submitted.get(&hamlet).copied().unwrap_or(0) >= MIN_NAMED_HAMLET;
            let hamlet_name = unit.as_ref().and_then(|u| tree.get(u)).map(|u| u.name.clone());
            let commune = unit.as_ref().and_then(|u| tree.ancestor_at(u, UnitLevel::Commune));
            let commune_named =
                named || commune.is_some_and(|c| unnamed.get(c.id.as_str()).copied().unwrap_or(0) >= MIN_NAMED_HAMLET);
            let commune_name = commune.filter(|_| commune_named).map_or_else(String::new, |c| c.name.clone());
            Comment {
                subject_name: names.get(subject.as_str()).map_or_else(|| subject.clone(), |n| (*n).to_owned()),
                subject,
                hamlet: named.then_some(hamlet),
                hamlet_name: if named { hamlet_name } else { None },
                commune_name,
                text: text.unwrap_or_default(),
            }
        })
        .collect();
    Ok(Comments { total, items })
}
