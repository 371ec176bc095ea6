//! Results per subject: the counts and shares of each level at every level of the unit tree,
//! from individual responses and meeting tallies together; participation against the expected
//! voters; the campaign's thresholds; and suppression of small groups.
//!
//! The counts come from the aggregates the projector keeps: `commune_level_counts` for the
//! levels above hamlets (a few thousand rows, whatever the campaign's size), `level_counts` per
//! hamlet when one subject is looked at down to its hamlets. They are summed up the tree here.
//!
//! # Batches while open
//!
//! Results that changed with each sync, read before and after, would show single answers. So
//! while a campaign is open, results read each hamlet's counts as last *released*
//! (`released_level_counts`, `released_commune_level_counts`): the projector releases a
//! hamlet's counts, in the transaction that projects its ledger, only once at least
//! [`MIN_GROUP`] answers (submitted responses and returned ballots) were counted there since
//! its last release. Every figure above a hamlet is a sum of hamlets, so it too moves only by
//! whole batches of one hamlet or more. The page says so, with the number of answers not shown
//! yet. Once the campaign is closed, every counted answer shows (the live aggregates); once
//! published, the copy below.
//!
//! # Published results are frozen
//!
//! Publishing a campaign copies the counts ([`freeze`]): `level_counts` and participation, and
//! which responses and tallies were counted. A published campaign's results are read from that
//! copy, so nothing synced later (a phone that was offline) changes them. What arrived later is
//! kept in the live tables, listed by [`after_publication`] (counted now but not then, or then
//! but not now), counted on the results page and flagged for review (`after_publication`).
//!
//! # Small groups
//!
//! A group (a unit, for one subject) with fewer than [`MIN_GROUP`] answers is not broken down:
//! its total is shown, its levels are not. So that hidden groups cannot be recovered by
//! subtraction, suppression is completed top down: under a shown unit, the hidden children
//! together hold no answer or at least [`MIN_GROUP`]; under a hidden unit, they hold at least
//! [`MIN_GROUP`] or every child with answers is hidden. Then every figure that can be derived
//! from the rows shown (a shown unit minus its shown descendants, and any sum or difference of
//! those) is the count of a group of no answer or at least [`MIN_GROUP`]: the leaves under a
//! shown unit and not under a shown unit below it hold all of a hidden child's unknown part,
//! which is either at least [`MIN_GROUP`] or the whole child, and the rule at the shown unit
//! covers the whole children. A property test checks it by rank over random trees. What it
//! does not hide: a group of five or more who all answered alike shows how each of them
//! answered, as a shown hamlet of five does.

use std::collections::{BTreeMap, HashMap};

use hamlet_sync_core::{Campaign, CampaignState, Label, Level, LevelSet, QuestionKind, SubjectId, UnitLevel, UnitTree};
use serde::Serialize;

use super::{District, DistrictError};
use crate::store::{on_pool, query_failed};

/// Groups with fewer answers than this are not broken down by level.
pub const MIN_GROUP: u64 = 5;

/// The id of the row that sums the whole campaign.
pub const OVERALL: &str = "*";

/// How deep the tree of results goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Depth {
    /// Province, district and commune rows.
    Commune,
    /// Down to each hamlet.
    Hamlet,
}

/// A threshold, for display.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ThresholdInfo {
    /// What crossing it means.
    pub label: Label,
    /// Share numerator.
    pub numerator: u32,
    /// Share denominator.
    pub denominator: u32,
    /// "at least" rather than "more than".
    pub inclusive: bool,
}

/// A level of a scale, for display.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LevelInfo {
    /// Its code.
    pub code: &'static str,
    /// Its label.
    pub label: Label,
    /// Whether thresholds count it.
    pub low: bool,
}

/// A unit in the results, with participation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnitRow {
    /// Unit id ([`OVERALL`] for the whole campaign).
    pub id: String,
    /// Name.
    pub name: String,
    /// `campaign`, `province`, `district`, `commune` or `hamlet`.
    pub level: &'static str,
    /// The row above, if any.
    pub parent: Option<String>,
    /// Depth in the table, from 0.
    pub depth: usize,
    /// The unit it was merged into, if it was (lineage), by name.
    pub merged_into: Option<String>,
    /// Voters expected in the hamlets below.
    pub expected_voters: u64,
    /// Submitted responses counted.
    pub submitted: u64,
    /// Ballots returned at meetings.
    pub ballots_returned: u64,
    /// `submitted + ballots_returned`, in percent of the expected voters (one decimal).
    pub participation_percent: Option<f64>,
}

/// One row of a subject's results.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResultRow {
    /// The unit (see [`Results::units`]).
    pub unit: String,
    /// Answers counted for the subject.
    pub total: u64,
    /// Whether the levels are hidden (a small group, or to protect one).
    pub suppressed: bool,
    /// Count per level, in the scale's order (`None` when suppressed).
    pub counts: Option<Vec<u64>>,
    /// Share per level in percent, one decimal (`None` when suppressed).
    pub shares: Option<Vec<f64>>,
    /// For each campaign threshold, whether the low level crosses it (`None` when suppressed).
    pub crossed: Option<Vec<bool>>,
    /// Voters expected in the hamlets below that evaluate the subject (its scope): the base
    /// of the subject's participation here. 0 outside the scope.
    pub expected_voters: u64,
    /// Responses submitted and ballots returned in those hamlets, in percent of their
    /// expected voters (one decimal); `None` outside the scope.
    pub participation_percent: Option<f64>,
}

/// The results of one rating question for one subject.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubjectResult {
    /// The rating question.
    pub question: String,
    /// Its label.
    pub question_label: Label,
    /// The subject.
    pub subject: String,
    /// The subject's name.
    pub name: String,
    /// The subject's position.
    pub position: String,
    /// The subject's category, if known.
    pub category: Option<hamlet_sync_core::SubjectCategory>,
    /// The subject's post, if known.
    pub post: Option<hamlet_sync_core::Post>,
    /// The hamlets that evaluate the subject (its scope), by id.
    pub scope: Vec<String>,
    /// The scale's levels, in order.
    pub levels: Vec<LevelInfo>,
    /// One row per unit, in the order of [`Results::units`].
    pub rows: Vec<ResultRow>,
}

impl SubjectResult {
    /// The campaign-wide row.
    pub fn overall(&self) -> Option<&ResultRow> {
        self.rows.first()
    }
}

/// The results of a campaign.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Results {
    /// The campaign.
    pub campaign: String,
    /// How deep the rows go.
    pub depth: Depth,
    /// Groups smaller than this are not broken down.
    pub min_group: u64,
    /// The campaign's thresholds.
    pub thresholds: Vec<ThresholdInfo>,
    /// The units shown, in table order (the campaign first, then depth first).
    pub units: Vec<UnitRow>,
    /// One entry per rating question and subject.
    pub subjects: Vec<SubjectResult>,
    /// For a published campaign, when its results were frozen and what arrived later.
    pub published: Option<Publication>,
    /// For an open campaign, how its figures are released (in batches).
    pub batched: Option<Batched>,
}

/// How an open campaign's figures move: a hamlet's counts are released again only once at
/// least `batch` answers were counted there since the last release.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Batched {
    /// Answers (responses and ballots) a hamlet needs since its last release.
    pub batch: u64,
    /// Answers counted but not released yet, over every hamlet.
    pub pending: u64,
}

/// The freezing of a published campaign's results.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Publication {
    /// When it was published (unix ms).
    pub published_at: i64,
    /// Responses and tallies counted now but not in the published results, or the reverse:
    /// kept and flagged, not counted in these results.
    pub later: u64,
}

/// A response or tally whose counting changed after publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Later {
    /// The hamlet.
    pub hamlet: String,
    /// `response` or `tally`.
    pub entity_kind: String,
    /// Its id.
    pub entity_id: String,
    /// `counted` (counted now, not in the published results) or `withdrawn` (the reverse).
    pub change: &'static str,
}

/// Counted answers of one hamlet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HamletTotals {
    /// Submitted responses.
    pub submitted: u64,
    /// Ballots returned at meetings.
    pub ballots_returned: u64,
}

/// Counts per (question, subject) → unit → level.
pub type LevelCounts = BTreeMap<(String, String), HashMap<String, BTreeMap<Level, u64>>>;

/// Reads the results of `campaign` from the aggregates.
pub async fn load(
    district: &District,
    campaign: &Campaign,
    depth: Depth,
    subject: Option<&SubjectId>,
) -> Result<Results, DistrictError> {
    let tree = district.catalog().units().await?;
    let store = district.store();
    let id = campaign.id.as_str();
    let (source, published, batched) = source(district, campaign).await?;
    let hamlets = hamlet_totals(district, id, source == Source::Frozen).await?;
    let q = source.queries();
    let rows: Vec<(Option<String>, String, String, String, i64)> = match (depth, subject) {
        (Depth::Commune, _) => on_pool!(store, pool => sqlx::query_as(q.communes).bind(id).fetch_all(pool).await),
        (Depth::Hamlet, Some(subject)) => {
            on_pool!(store, pool => sqlx::query_as(q.subject_hamlets).bind(id).bind(subject.as_str()).fetch_all(pool).await)
        }
        (Depth::Hamlet, None) => on_pool!(store, pool => sqlx::query_as(q.hamlets).bind(id).fetch_all(pool).await),
    }
    .map_err(query_failed("reading level counts"))?;
    let mut results = compute(campaign, &tree, &hamlets, &level_counts(rows), depth, subject);
    results.published = published;
    results.batched = batched;
    Ok(results)
}

/// The results down to the hamlets of `commune` alone (the hamlet page): the other communes are
/// read from their sums. Suppression comes out as in [`load`] at [`Depth::Hamlet`]: hiding a
/// hamlet never hides a commune, so a commune's status does not depend on its hamlets' rows.
pub async fn load_commune(district: &District, campaign: &Campaign, commune: &str) -> Result<Results, DistrictError> {
    let tree = district.catalog().units().await?;
    let store = district.store();
    let id = campaign.id.as_str();
    let (source, published, batched) = source(district, campaign).await?;
    let hamlets = hamlet_totals(district, id, source == Source::Frozen).await?;
    let q = source.queries();
    let mut rows: Vec<(Option<String>, String, String, String, i64)> =
        on_pool!(store, pool => sqlx::query_as(q.other_communes).bind(id).bind(commune).fetch_all(pool).await)
            .map_err(query_failed("reading commune level counts"))?;
    let own: Vec<(Option<String>, String, String, String, i64)> =
        on_pool!(store, pool => sqlx::query_as(q.commune_hamlets).bind(id).bind(commune).fetch_all(pool).await)
            .map_err(query_failed("reading level counts"))?;
    rows.extend(own);
    let mut results = compute(campaign, &tree, &hamlets, &level_counts(rows), Depth::Hamlet, None);
    results.published = published;
    results.batched = batched;
    Ok(results)
}

/// Where a campaign's results are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The aggregates as projected (a draft, a closed campaign).
    Live,
    /// The counts of each hamlet as last released (an open campaign).
    Released,
    /// The copy taken at publication.
    Frozen,
}

/// The level-count queries of a source: `$1` the campaign, `$2` a subject or a commune.
struct Queries {
    /// Per commune.
    communes: &'static str,
    /// Per hamlet, of subject `$2`.
    subject_hamlets: &'static str,
    /// Per hamlet.
    hamlets: &'static str,
    /// Per commune, but commune `$2`.
    other_communes: &'static str,
    /// Per hamlet of commune `$2`.
    commune_hamlets: &'static str,
}

impl Source {
    fn queries(self) -> Queries {
        match self {
            Source::Live => Queries {
                communes: "SELECT commune_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM commune_level_counts WHERE campaign_id = $1 AND commune_id <> ''",
                subject_hamlets: "SELECT hamlet_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM level_counts WHERE campaign_id = $1 AND subject_id = $2",
                hamlets: "SELECT hamlet_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM level_counts WHERE campaign_id = $1",
                other_communes: "SELECT commune_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM commune_level_counts WHERE campaign_id = $1 AND commune_id <> '' AND commune_id <> $2",
                commune_hamlets: "SELECT lc.hamlet_id, lc.question_id, lc.subject_id, lc.level, \
                    lc.from_responses + lc.from_tallies FROM level_counts lc JOIN units u ON u.id = lc.hamlet_id \
                    WHERE lc.campaign_id = $1 AND u.parent_id = $2",
            },
            Source::Released => Queries {
                communes: "SELECT commune_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM released_commune_level_counts WHERE campaign_id = $1 AND commune_id <> ''",
                subject_hamlets: "SELECT hamlet_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM released_level_counts WHERE campaign_id = $1 AND subject_id = $2",
                hamlets: "SELECT hamlet_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM released_level_counts WHERE campaign_id = $1",
                other_communes: "SELECT commune_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM released_commune_level_counts WHERE campaign_id = $1 AND commune_id <> '' AND commune_id <> $2",
                commune_hamlets: "SELECT r.hamlet_id, r.question_id, r.subject_id, r.level, \
                    r.from_responses + r.from_tallies FROM released_level_counts r JOIN units u ON u.id = r.hamlet_id \
                    WHERE r.campaign_id = $1 AND u.parent_id = $2",
            },
            Source::Frozen => Queries {
                communes: "SELECT u.parent_id, p.question_id, p.subject_id, p.level, \
                    CAST(SUM(p.from_responses + p.from_tallies) AS BIGINT) \
                    FROM published_level_counts p JOIN units u ON u.id = p.hamlet_id \
                    WHERE p.campaign_id = $1 AND u.parent_id IS NOT NULL \
                    GROUP BY u.parent_id, p.question_id, p.subject_id, p.level",
                subject_hamlets: "SELECT hamlet_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM published_level_counts WHERE campaign_id = $1 AND subject_id = $2",
                hamlets: "SELECT hamlet_id, question_id, subject_id, level, from_responses + from_tallies \
                    FROM published_level_counts WHERE campaign_id = $1",
                other_communes: "SELECT u.parent_id, p.question_id, p.subject_id, p.level, \
                    CAST(SUM(p.from_responses + p.from_tallies) AS BIGINT) \
                    FROM published_level_counts p JOIN units u ON u.id = p.hamlet_id \
                    WHERE p.campaign_id = $1 AND u.parent_id IS NOT NULL AND u.parent_id <> $2 \
                    GROUP BY u.parent_id, p.question_id, p.subject_id, p.level",
                commune_hamlets: "SELECT p.hamlet_id, p.question_id, p.subject_id, p.level, \
                    p.from_responses + p.from_tallies FROM published_level_counts p JOIN units u ON u.id = p.hamlet_id \
                    WHERE p.campaign_id = $1 AND u.parent_id = $2",
            },
        }
    }
}

/// Where `campaign`'s results come from, with what the page says about it.
async fn source(
    district: &District,
    campaign: &Campaign,
) -> Result<(Source, Option<Publication>, Option<Batched>), DistrictError> {
    match campaign.state {
        CampaignState::Open => {
            const SQL: &str = "SELECT CAST(COALESCE(SUM(CASE WHEN hc.submitted + hc.ballots_returned > \
                    COALESCE(r.answers, 0) THEN hc.submitted + hc.ballots_returned - COALESCE(r.answers, 0) \
                    ELSE 0 END), 0) AS BIGINT) \
                FROM hamlet_counts hc LEFT JOIN released_hamlets r \
                    ON r.campaign_id = hc.campaign_id AND r.hamlet_id = hc.hamlet_id \
                WHERE hc.campaign_id = $1";
            let pending: i64 = on_pool!(district.store(), pool => {
                sqlx::query_scalar(SQL).bind(campaign.id.as_str()).fetch_one(pool).await
            })
            .map_err(query_failed("reading what is not released yet"))?;
            Ok((Source::Released, None, Some(Batched { batch: MIN_GROUP, pending: pending.max(0) as u64 })))
        }
        CampaignState::Published => match publication(district, campaign).await? {
            Some(p) => Ok((Source::Frozen, Some(p), None)),
            None => Ok((Source::Live, None, None)),
        },
        CampaignState::Draft | CampaignState::Closed => Ok((Source::Live, None, None)),
    }
}

/// For a published campaign, when it was frozen and what arrived later; `None` otherwise (and
/// for a published campaign without a copy, which cannot happen after migration 0006: its live
/// counts are read then, with a warning).
async fn publication(district: &District, campaign: &Campaign) -> Result<Option<Publication>, DistrictError> {
    if campaign.state != CampaignState::Published {
        return Ok(None);
    }
    let id = campaign.id.as_str();
    const SQL: &str = "SELECT published_at FROM publications WHERE campaign_id = $1";
    let at: Option<i64> =
        on_pool!(district.store(), pool => sqlx::query_scalar(SQL).bind(id).fetch_optional(pool).await)
            .map_err(query_failed("reading a publication"))?;
    let Some(published_at) = at else {
        tracing::warn!(campaign = id, "published campaign without a frozen copy: showing live counts");
        return Ok(None);
    };
    let later = after_publication(district, id).await?.len() as u64;
    Ok(Some(Publication { published_at, later }))
}

/// Freezes the results of campaign `id`, as it is being published: copies the counts and what
/// is counted, in one transaction that sees a single state of the projection.
pub async fn freeze(district: &District, id: &str) -> Result<(), DistrictError> {
    use crate::store::BeginWrite as _;
    let postgres = matches!(district.store().pool(), crate::store::PoolRef::Postgres(_));
    let now = district.store().now_ms();
    const CLEAR: [&str; 4] = [
        "DELETE FROM publications WHERE campaign_id = $1",
        "DELETE FROM published_level_counts WHERE campaign_id = $1",
        "DELETE FROM published_hamlet_counts WHERE campaign_id = $1",
        "DELETE FROM published_entities WHERE campaign_id = $1",
    ];
    const COPY: [&str; 4] = [
        "INSERT INTO published_level_counts SELECT campaign_id, hamlet_id, question_id, subject_id, level, \
            from_responses, from_tallies FROM level_counts WHERE campaign_id = $1",
        "INSERT INTO published_hamlet_counts SELECT campaign_id, hamlet_id, submitted, ballots_returned \
            FROM hamlet_counts WHERE campaign_id = $1",
        "INSERT INTO published_entities SELECT DISTINCT campaign_id, hamlet_id, 'response', response_id \
            FROM answers WHERE campaign_id = $1 AND counted = 1",
        "INSERT INTO published_entities SELECT campaign_id, hamlet_id, 'tally', tally_id \
            FROM tallies WHERE campaign_id = $1 AND counted = 1",
    ];
    on_pool!(district.store(), pool => {
        let mut tx = pool.begin_write().await.map_err(query_failed("beginning a publication"))?;
        if postgres {
            // One snapshot for every copy, whatever the projector commits meanwhile.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .map_err(query_failed("beginning a publication"))?;
        }
        for sql in CLEAR.into_iter().chain(COPY) {
            sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(query_failed("freezing results"))?;
        }
        sqlx::query("INSERT INTO publications (campaign_id, published_at) VALUES ($1, $2)")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(query_failed("freezing results"))?;
        tx.commit().await.map_err(query_failed("committing a publication"))
    })?;
    Ok(())
}

/// The responses and tallies of published campaign `id` whose counting changed since it was
/// frozen, by hamlet, kind and id.
pub async fn after_publication(district: &District, id: &str) -> Result<Vec<Later>, DistrictError> {
    const COUNTED: &str = "SELECT hamlet_id, CAST('response' AS TEXT), response_id FROM answers \
            WHERE campaign_id = $1 AND counted = 1 \
        UNION SELECT hamlet_id, CAST('tally' AS TEXT), tally_id FROM tallies WHERE campaign_id = $1 AND counted = 1 \
        EXCEPT SELECT hamlet_id, entity_kind, entity_id FROM published_entities WHERE campaign_id = $1";
    const WITHDRAWN: &str = "SELECT hamlet_id, entity_kind, entity_id FROM published_entities WHERE campaign_id = $1 \
        EXCEPT SELECT hamlet_id, CAST('response' AS TEXT), response_id FROM answers \
            WHERE campaign_id = $1 AND counted = 1 \
        EXCEPT SELECT hamlet_id, CAST('tally' AS TEXT), tally_id FROM tallies WHERE campaign_id = $1 AND counted = 1";
    let mut out = Vec::new();
    for (sql, change) in [(COUNTED, "counted"), (WITHDRAWN, "withdrawn")] {
        let rows: Vec<(String, String, String)> =
            on_pool!(district.store(), pool => sqlx::query_as(sql).bind(id).fetch_all(pool).await)
                .map_err(query_failed("reading what arrived after publication"))?;
        out.extend(rows.into_iter().map(|(hamlet, entity_kind, entity_id)| Later {
            hamlet,
            entity_kind,
            entity_id,
            change,
        }));
    }
    out.sort_by(|a, b| (&a.hamlet, &a.entity_kind, &a.entity_id).cmp(&(&b.hamlet, &b.entity_kind, &b.entity_id)));
    Ok(out)
}

async fn hamlet_totals(
    district: &District,
    id: &str,
    frozen: bool,
) -> Result<HashMap<String, HamletTotals>, DistrictError> {
    const HAMLETS: &str = "SELECT hamlet_id, submitted, ballots_returned FROM hamlet_counts WHERE campaign_id = $1";
    const FROZEN: &str =
        "SELECT hamlet_id, submitted, ballots_returned FROM published_hamlet_counts WHERE campaign_id = $1";
    let sql = if frozen { FROZEN } else { HAMLETS };
    let rows: Vec<(String, i64, i64)> =
        on_pool!(district.store(), pool => sqlx::query_as(sql).bind(id).fetch_all(pool).await)
            .map_err(query_failed("reading hamlet counts"))?;
    Ok(rows
        .into_iter()
        .map(|(h, s, b)| (h, HamletTotals { submitted: s.max(0) as u64, ballots_returned: b.max(0) as u64 }))
        .collect())
}

fn level_counts(rows: Vec<(Option<String>, String, String, String, i64)>) -> LevelCounts {
    let mut counts: LevelCounts = BTreeMap::new();
    for (unit, question, subject, level, n) in rows {
        let (Some(unit), Some(level)) = (unit, Level::from_code(&level)) else { continue };
        *counts.entry((question, subject)).or_default().entry(unit).or_default().entry(level).or_default() +=
            n.max(0) as u64;
    }
    counts
}

/// A node of the table being built.
struct Node {
    row: UnitRow,
    parent: Option<usize>,
    children: Vec<usize>,
}

fn level_name(level: UnitLevel) -> &'static str {
    match level {
        UnitLevel::Province => "province",
        UnitLevel::District => "district",
        UnitLevel::Commune => "commune",
        UnitLevel::Hamlet => "hamlet",
    }
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| ((part as f64) * 1000.0 / (whole as f64)).round() / 10.0)
}

/// The results from per-unit counts: `counts` are keyed by hamlet ids (depth hamlet) or commune
/// ids (depth commune); `hamlets` holds each hamlet's participation. Pure: the tests feed it
/// known inputs.
pub fn compute(
    campaign: &Campaign,
    tree: &UnitTree,
    hamlets: &HashMap<String, HamletTotals>,
    counts: &LevelCounts,
    depth: Depth,
    only: Option<&SubjectId>,
) -> Results {
    let mut nodes: Vec<Node> = vec![Node {
        row: UnitRow {
            id: OVERALL.into(),
            name: campaign.name.vi.clone(),
            level: "campaign",
            parent: None,
            depth: 0,
            merged_into: None,
            expected_voters: 0,
            submitted: 0,
            ballots_returned: 0,
            participation_percent: None,
        },
        parent: None,
        children: Vec::new(),
    }];
    let mut index: HashMap<String, usize> = HashMap::new();
    // Each hamlet in the campaign, with its chain of ancestors from the top down; and the
    // nodes each hamlet's participation goes to (the deepest shown and every one above).
    let mut hamlet_nodes: Vec<(&hamlet_sync_core::HamletScope, HamletTotals, Vec<usize>)> = Vec::new();
    for scope in campaign.in_campaign() {
        let mut chain: Vec<(String, String, &'static str, Option<String>)> = Vec::new();
        if let Some(unit) = tree.get(&scope.hamlet) {
            for u in tree.ancestors(&scope.hamlet).into_iter().rev().chain(std::iter::once(unit)) {
                let merged = u.merged_into.as_ref().and_then(|m| tree.get(m)).map(|m| m.name.clone());
                chain.push((u.id.to_string(), u.name.clone(), level_name(u.level), merged));
            }
        } else {
            chain.push((scope.hamlet.to_string(), scope.hamlet.to_string(), "hamlet", None));
        }
        let totals = hamlets.get(scope.hamlet.as_str()).copied().unwrap_or_default();
        let mut parent = 0;
        for (id, name, level, merged_into) in chain {
            if level == "hamlet" && depth == Depth::Commune {
                break;
            }
            let at = match index.get(&id) {
                Some(at) => *at,
                None => {
                    let at = nodes.len();
                    nodes.push(Node {
                        row: UnitRow {
                            id: id.clone(),
                            name,
                            level,
                            parent: Some(nodes[parent].row.id.clone()),
                            depth: nodes[parent].row.depth + 1,
                            merged_into,
                            expected_voters: 0,
                            submitted: 0,
                            ballots_returned: 0,
                            participation_percent: None,
                        },
                        parent: Some(parent),
                        children: Vec::new(),
                    });
                    nodes[parent].children.push(at);
                    index.insert(id, at);
                    at
                }
            };
            parent = at;
        }
        // Participation goes to the deepest node shown and every node above it.
        let mut at = Some(parent);
        let mut above = Vec::new();
        while let Some(i) = at {
            let row = &mut nodes[i].row;
            row.expected_voters += u64::from(scope.expected_voters);
            row.submitted += totals.submitted;
            row.ballots_returned += totals.ballots_returned;
            above.push(i);
            at = nodes[i].parent;
        }
        hamlet_nodes.push((scope, totals, above));
    }
    for node in &mut nodes {
        let r = &mut node.row;
        r.participation_percent = percent(r.submitted + r.ballots_returned, r.expected_voters);
    }
    // Table order: depth first, children by name.
    for i in 0..nodes.len() {
        let mut children = std::mem::take(&mut nodes[i].children);
        children.sort_by_cached_key(|c| {
            let row = &nodes[*c].row;
            (super::fold_search(&row.name), row.name.clone(), row.id.clone())
        });
        nodes[i].children = children;
    }
    let mut order = Vec::with_capacity(nodes.len());
    let mut stack = vec![0];
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(nodes[i].children.iter().rev());
    }

    let thresholds: Vec<ThresholdInfo> = campaign
        .thresholds
        .iter()
        .map(|t| ThresholdInfo {
            label: t.label.clone(),
            numerator: t.numerator,
            denominator: t.denominator,
            inclusive: t.inclusive,
        })
        .collect();
    let mut subjects = Vec::new();
    for question in &campaign.form.questions {
        let QuestionKind::Rating { levels: scale } = question.kind else { continue };
        for subject in campaign.subjects.iter().filter(|s| only.is_none_or(|o| *o == s.id)) {
            let key = (question.id.to_string(), subject.id.to_string());
            let empty = HashMap::new();
            let by_unit = counts.get(&key).unwrap_or(&empty);
            // The subject's own base: the expected voters and answers of the hamlets of its scope.
            let mut base = vec![(0u64, 0u64); nodes.len()];
            let mut scope = Vec::new();
            for (h, totals, above) in hamlet_nodes.iter().filter(|(h, ..)| campaign.evaluates(&h.hamlet, &subject.id)) {
                scope.push(h.hamlet.to_string());
                for &i in above {
                    base[i].0 += u64::from(h.expected_voters);
                    base[i].1 += totals.submitted + totals.ballots_returned;
                }
            }
            let mut result = subject_result(campaign, &nodes, &order, scale, by_unit, question, subject);
            for (row, &i) in result.rows.iter_mut().zip(&order) {
                row.expected_voters = base[i].0;
                row.participation_percent = percent(base[i].1, base[i].0);
            }
            result.scope = scope;
            subjects.push(result);
        }
    }
    Results {
        campaign: campaign.id.to_string(),
        depth,
        min_group: MIN_GROUP,
        thresholds,
        units: order.iter().map(|i| nodes[*i].row.clone()).collect(),
        subjects,
        published: None,
        batched: None,
    }
}

fn subject_result(
    campaign: &Campaign,
    nodes: &[Node],
    order: &[usize],
    scale: LevelSet,
    by_unit: &HashMap<String, BTreeMap<Level, u64>>,
    question: &hamlet_sync_core::Question,
    subject: &hamlet_sync_core::Subject,
) -> SubjectResult {
    let levels = scale.levels();
    // Counts of each node: the leaves' from the input, summed upwards.
    let mut per_node: Vec<Vec<u64>> = vec![vec![0; levels.len()]; nodes.len()];
    let mut has_input = vec![false; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        if let Some(found) = by_unit.get(&node.row.id) {
            has_input[i] = true;
            for (l, level) in levels.iter().enumerate() {
                per_node[i][l] = found.get(level).copied().unwrap_or(0);
            }
        }
    }
    // Sum children into parents that had no input of their own, deepest first.
    for &i in order.iter().rev() {
        if let Some(p) = nodes[i].parent
            && !has_input[p]
        {
            let child = per_node[i].clone();
            for (sum, c) in per_node[p].iter_mut().zip(child) {
                *sum += c;
            }
        }
    }
    let totals: Vec<u64> = per_node.iter().map(|c| c.iter().sum()).collect();
    let children: Vec<Vec<usize>> = nodes.iter().map(|n| n.children.clone()).collect();
    let suppressed = suppress(&children, &totals);
    let low = levels.iter().position(|l| *l == scale.low()).unwrap_or(levels.len() - 1);
    let rows = order
        .iter()
        .map(|&i| {
            let total = totals[i];
            let hidden = suppressed[i];
            let counts = &per_node[i];
            ResultRow {
                unit: nodes[i].row.id.clone(),
                total,
                suppressed: hidden,
                counts: (!hidden).then(|| counts.clone()),
                shares: (!hidden).then(|| counts.iter().map(|c| percent(*c, total).unwrap_or(0.0)).collect()),
                crossed: (!hidden).then(|| campaign.thresholds.iter().map(|t| t.crossed(counts[low], total)).collect()),
                expected_voters: 0,
                participation_percent: None,
            }
        })
        .collect();
    SubjectResult {
        question: question.id.to_string(),
        question_label: question.label.clone(),
        subject: subject.id.to_string(),
        name: subject.name.clone(),
        position: subject.position.clone(),
        category: subject.category,
        post: subject.post,
        scope: Vec::new(),
        levels: levels.iter().map(|l| LevelInfo { code: l.code(), label: l.label(), low: *l == scale.low() }).collect(),
        rows,
    }
}

/// Which nodes hide their levels: small groups, and what protects them (see the module docs).
/// `children_of[i]` lists node `i`'s children; node 0 is the root.
///
/// Top down, so that a node's status is final before its children are looked at: hiding a
/// child never changes anything above it (a commune's status never depends on its hamlets,
/// and the commune-level table agrees with the hamlet-level one). At each node, the smallest
/// children shown are hidden until the hidden children hold nothing or at least [`MIN_GROUP`]
/// answers (a shown node), or at least [`MIN_GROUP`] answers or every child with answers (a
/// hidden node).
fn suppress(children_of: &[Vec<usize>], totals: &[u64]) -> Vec<bool> {
    let mut hidden: Vec<bool> = totals.iter().map(|t| *t < MIN_GROUP).collect();
    let mut stack = vec![0];
    while let Some(node) = stack.pop() {
        let Some(children) = children_of.get(node) else { continue };
        stack.extend(children.iter().copied());
        let mut held: u64 = children.iter().filter(|c| hidden[**c]).map(|c| totals[*c]).sum();
        // Shown children (each holds at least MIN_GROUP), the smallest last.
        let mut shown: Vec<usize> = children.iter().copied().filter(|c| !hidden[*c]).collect();
        shown.sort_by_key(|c| std::cmp::Reverse((totals[*c], *c)));
        loop {
            let protected = if hidden[node] { held >= MIN_GROUP } else { held == 0 || held >= MIN_GROUP };
            if protected {
                break;
            }
            let Some(c) = shown.pop() else { break };
            hidden[c] = true;
            held += totals[c];
        }
    }
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;
    use hamlet_sync_core::fixtures;

    fn counts(entries: &[(&str, [u64; 3])]) -> LevelCounts {
        let mut by_unit = HashMap::new();
        for (unit, [high, mid, low]) in entries {
            let levels =
                BTreeMap::from([(Level::TinNhiemCao, *high), (Level::TinNhiem, *mid), (Level::TinNhiemThap, *low)]);
            by_unit.insert((*unit).to_owned(), levels);
        }
        BTreeMap::from([(("tin-nhiem".to_owned(), "ong-an".to_owned()), by_unit)])
    }

    fn row<'a>(r: &'a Results, unit: &str) -> &'a ResultRow {
        let subject = r.subjects.iter().find(|s| s.subject == "ong-an").expect("ong-an");
        subject.rows.iter().find(|x| x.unit == unit).unwrap_or_else(|| panic!("row {unit}"))
    }

    #[test]
    fn sums_up_the_tree_and_hides_small_groups_and_their_protectors() {
        let campaign = fixtures::open_campaign();
        let tree = fixtures::unit_tree();
        let hamlets = HashMap::new();
        // thon-dong 6 answers, thon-tay 2 (small), to-1 10.
        let input = counts(&[("thon-dong", [1, 1, 4]), ("thon-tay", [2, 0, 0]), ("to-1", [5, 5, 0])]);
        let r = compute(&campaign, &tree, &hamlets, &input, Depth::Hamlet, None);
        let ids: Vec<&str> = r.units.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["*", "tinh", "huyen", "xa-a", "thon-dong", "thon-tay", "xa-b", "to-1"]);
        assert_eq!(row(&r, "*").counts, Some(vec![8, 6, 4]));
        assert_eq!(row(&r, "xa-a").counts, Some(vec![3, 1, 4]));
        assert!(row(&r, "thon-tay").suppressed, "2 answers");
        assert!(row(&r, "thon-dong").suppressed, "would reveal thon-tay by subtraction from xa-a");
        assert_eq!(row(&r, "thon-dong").total, 6);
        assert_eq!(row(&r, "to-1").shares, Some(vec![50.0, 50.0, 0.0]));
        // 4 low of 8 at xa-a: exactly 1/2 is not more than 1/2.
        assert_eq!(row(&r, "xa-a").crossed, Some(vec![false, false]));
        assert_eq!(row(&r, "thon-dong").crossed, None);
    }

    #[test]
    fn a_hidden_parent_with_every_child_shown_hides_one_child() {
        let campaign = fixtures::open_campaign();
        let tree = fixtures::unit_tree();
        // to-1 is small; protecting it hides huyen (its only sibling under tinh), then xa-a
        // (huyen's only child), then thon-dong (so that xa-a is not the sum of shown hamlets).
        let input = counts(&[("thon-dong", [2, 2, 2]), ("thon-tay", [3, 3, 0]), ("to-1", [1, 1, 0])]);
        let r = compute(&campaign, &tree, &HashMap::new(), &input, Depth::Hamlet, None);
        let hidden: Vec<&str> = r.units.iter().map(|u| u.id.as_str()).filter(|u| row(&r, u).suppressed).collect();
        assert_eq!(hidden, ["huyen", "xa-a", "thon-dong", "xa-b", "to-1"]);
        assert_eq!(row(&r, "tinh").counts, Some(vec![6, 6, 2]));
        assert_eq!(row(&r, "thon-tay").counts, Some(vec![3, 3, 0]));
    }

    /// The example tree with a third hamlet, `thon-bac`, in `xa-a`.
    fn three_hamlet_commune() -> (Campaign, UnitTree) {
        let mut units: Vec<hamlet_sync_core::Unit> = fixtures::unit_tree().units().cloned().collect();
        let mut bac = units.iter().find(|u| u.id.as_str() == "thon-tay").cloned().expect("thon-tay");
        bac.id = "thon-bac".parse().expect("id");
        bac.name = "Thôn Bắc".into();
        units.push(bac);
        let tree = UnitTree::new(units).expect("tree");
        let mut campaign = fixtures::open_campaign();
        campaign.hamlets.push(hamlet_sync_core::HamletScope {
            hamlet: "thon-bac".parse().expect("id"),
            expected_voters: 50,
            ballot: vec![],
        });
        (campaign, tree)
    }

    #[test]
    fn two_hidden_hamlets_are_not_revealed_by_their_commune_minus_the_shown_one() {
        // The example of the review: H1 = [0,0,1] and H2 = [0,0,1] are small, H3 = [10,10,0]
        // is shown; the commune [10,10,2] minus H3 would give [0,0,2].
        let (campaign, tree) = three_hamlet_commune();
        let input = counts(&[("thon-dong", [0, 0, 1]), ("thon-tay", [0, 0, 1]), ("thon-bac", [10, 10, 0])]);
        let r = compute(&campaign, &tree, &HashMap::new(), &input, Depth::Hamlet, None);
        assert!(row(&r, "thon-dong").suppressed && row(&r, "thon-tay").suppressed);
        assert_eq!(row(&r, "xa-a").counts, Some(vec![10, 10, 2]), "the commune has 22 answers");
        assert!(row(&r, "thon-bac").suppressed, "xa-a minus thon-bac would reveal two answers");
    }

    /// Property: over random trees and counts, no combination of the figures shown (each shown
    /// row's counts, and every total) determines the counts of a group of respondents of fewer
    /// than [`MIN_GROUP`]. A group is a set of leaves; its counts are determined exactly when its
    /// indicator vector lies in the span of the shown rows' indicators (and the zero leaves',
    /// which are known from their totals). Checked by rank over a large prime field, exact for
    /// these sizes (every minor of a 0/1 matrix of this size is far below the prime).
    mod property {
        use super::super::*;
        use proptest::prelude::*;

        const P: u128 = (1 << 61) - 1;

        fn rank(rows: &[Vec<u128>]) -> usize {
            let mut m: Vec<Vec<u128>> = rows.to_vec();
            let cols = m.first().map_or(0, Vec::len);
            let mut r = 0;
            for c in 0..cols {
                let Some(pivot) = (r..m.len()).find(|i| m[*i][c] != 0) else { continue };
                m.swap(r, pivot);
                let inv = pow(m[r][c], P - 2);
                for x in &mut m[r] {
                    *x = *x * inv % P;
                }
                let pivot_row = m[r].clone();
                for (i, row) in m.iter_mut().enumerate() {
                    if i != r && row[c] != 0 {
                        let f = row[c];
                        for (x, p) in row.iter_mut().zip(&pivot_row) {
                            *x = (*x + P - f * p % P) % P;
                        }
                    }
                }
                r += 1;
            }
            r
        }

        fn pow(mut b: u128, mut e: u128) -> u128 {
            let mut acc = 1;
            while e > 0 {
                if e & 1 == 1 {
                    acc = acc * b % P;
                }
                b = b * b % P;
                e >>= 1;
            }
            acc
        }

        /// A random tree as parents (node 0 is the root, node i's parent is below i) and the
        /// counts of each leaf; small counts and zeros are frequent.
        fn tree() -> impl Strategy<Value = (Vec<usize>, Vec<u64>)> {
            (2usize..16).prop_flat_map(|n| {
                let parents = (1..n).map(|i| 0..i).collect::<Vec<_>>();
                let counts = proptest::collection::vec(prop_oneof![3 => 0u64..4, 2 => 0u64..12], n);
                (parents, counts)
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(5000))]
            #[test]
            fn no_shown_figure_or_difference_reveals_a_small_group((parents, leaf_counts) in tree()) {
                let n = leaf_counts.len();
                let mut children = vec![Vec::new(); n];
                for (i, p) in parents.iter().enumerate() {
                    children[*p].push(i + 1);
                }
                let parent = |i: usize| (i > 0).then(|| parents[i - 1]);
                let leaves: Vec<usize> = (0..n).filter(|i| children[*i].is_empty()).collect();
                // Totals: leaves carry counts, internal nodes sum their leaves.
                let mut totals = vec![0u64; n];
                for &l in &leaves {
                    let mut at = Some(l);
                    while let Some(i) = at {
                        totals[i] += leaf_counts[l];
                        at = parent(i);
                    }
                }
                let hidden = suppress(&children, &totals);
                // Shown rows are real groups of at least the minimum.
                for i in 0..n {
                    prop_assert!(hidden[i] || totals[i] >= MIN_GROUP, "node {i} shown with {}", totals[i]);
                }
                let under = |node: usize| -> Vec<u128> {
                    leaves.iter().map(|&l| {
                        let mut at = Some(l);
                        while let Some(i) = at {
                            if i == node { return 1; }
                            at = parent(i);
                        }
                        0
                    }).collect()
                };
                let mut known: Vec<Vec<u128>> = (0..n).filter(|i| !hidden[*i]).map(under).collect();
                for &l in leaves.iter().filter(|l| totals[**l] == 0) {
                    known.push(under(l));
                }
                let base = rank(&known);
                let positive: Vec<usize> = (0..leaves.len()).filter(|k| totals[leaves[*k]] > 0).collect();
                // Every set of positive leaves holding fewer than the minimum.
                let mut stack: Vec<(usize, Vec<usize>, u64)> = vec![(0, Vec::new(), 0)];
                while let Some((from, set, size)) = stack.pop() {
                    if !set.is_empty() {
                        let mut with = known.clone();
                        with.push((0..leaves.len()).map(|k| u128::from(set.contains(&k))).collect());
                        prop_assert!(rank(&with) > base, "leaves {:?} ({size} answers) can be derived", set.iter().map(|k| leaves[*k]).collect::<Vec<_>>());
                    }
                    for (at, &k) in positive.iter().enumerate().skip(from) {
                        let s = size + totals[leaves[k]];
                        if s < MIN_GROUP {
                            let mut next = set.clone();
                            next.push(k);
                            stack.push((at + 1, next, s));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn participation_counts_submitted_and_ballots_against_expected() {
        let campaign = fixtures::open_campaign();
        let tree = fixtures::unit_tree();
        let hamlets = HashMap::from([
            ("thon-dong".to_owned(), HamletTotals { submitted: 32, ballots_returned: 0 }),
            ("to-1".to_owned(), HamletTotals { submitted: 0, ballots_returned: 45 }),
        ]);
        let r = compute(&campaign, &tree, &hamlets, &BTreeMap::new(), Depth::Commune, None);
        let unit = |id: &str| r.units.iter().find(|u| u.id == id).expect("unit");
        assert_eq!(unit("xa-a").participation_percent, Some(5.4), "32 of 595");
        assert_eq!(unit("xa-b").participation_percent, Some(25.0), "45 of 180");
        assert_eq!(unit("*").expected_voters, 775);
        assert!(r.units.iter().all(|u| u.level != "hamlet"), "depth commune stops above hamlets");
    }
}
