//! The district's JSON API, and its OpenAPI document generated from the handlers: each is
//! described where it is written (`#[utoipa::path]`), and routed and described by one
//! `routes!` call, so neither can miss one. Schemas come from the types the handlers read and
//! write.
//!
//! Errors are JSON `{"code": "...", "message": "..."}` ([`ErrorBody`]); imports add
//! `details`, one per problem with its CSV line.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use hamlet_sync_core::{Campaign, CampaignState, SubjectId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Actor};
use crate::district::campaigns::{create, import_units_text, replace_hamlets, replace_subjects, transition, update};
use crate::district::catalog::CampaignSummary;
use crate::district::{District, DistrictError, export, progress, results, review};
use crate::web::AppState;
use crate::web::error::ErrorBody;

/// The district's operations for staff who read (and review), with their descriptions.
pub fn viewer_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns))
        .routes(routes!(get_campaign))
        .routes(routes!(get_results))
        .routes(routes!(get_progress))
        .routes(routes!(get_comments))
        .routes(routes!(get_review, post_review))
        .routes(routes!(get_export))
        .routes(routes!(list_units))
}

/// The district's operations for administrators, with their descriptions.
pub fn admin_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_campaign))
        .routes(routes!(update_campaign))
        .routes(routes!(open_campaign))
        .routes(routes!(close_campaign))
        .routes(routes!(publish_campaign))
        .routes(routes!(import_subjects))
        .routes(routes!(import_hamlets))
        .routes(routes!(import_units))
        .routes(routes!(get_audit))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hamlet district API",
        description = "Campaigns, units, results, progress, comments, conflicts and exports of the Hamlet district server, and its accounts: people, enrollment codes, devices, API tokens. Viewer operations are tagged `viewer`, administrator ones `admin`, what enrolled phones call `devices` (with the device token), sign-in and who-am-I `accounts`. This document, at /api/openapi.json, is public; every operation it describes needs a session or a bearer token except `POST /api/session` and `POST /api/enroll`, which are slowed after failures per address."
    ),
    components(schemas(ErrorBody))
)]
struct Document;

/// The OpenAPI 3.1 document of every operation of [`viewer_api`] and [`admin_api`] and of the
/// accounts' API ([`super::accounts`]), with the schemas of their request and response bodies.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = Document::openapi();
    document.merge(viewer_api().into_openapi());
    document.merge(admin_api().into_openapi());
    document.merge(super::accounts::public_api().into_openapi());
    document.merge(super::accounts::signed_in_api().into_openapi());
    document.merge(super::accounts::device_api().into_openapi());
    document.merge(super::accounts::admin_api().into_openapi());
    document
}

/// A downloaded file's bytes, as the document describes them.
struct FileBody;

impl utoipa::PartialSchema for FileBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("the file's bytes"))
            .into()
    }
}

impl ToSchema for FileBody {}

/// What every operation answers when it fails: a status and the JSON error body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // describes responses; never built
pub(crate) enum Failed {
    /// The request is wrong (unknown campaign, invalid input, not allowed now); the body says why.
    #[response(status = "4XX")]
    Refused(ErrorBody),
    /// The server failed; try again later.
    #[response(status = "5XX")]
    Failed(ErrorBody),
}

/// The campaign named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct CampaignPath {
    /// The campaign's id.
    campaign: String,
}

/// The export named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ExportPath {
    /// The campaign's id.
    campaign: String,
    /// `results.csv`, `results.xlsx`, `responses.csv` or `responses.xlsx`.
    file: String,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DistrictError> {
    serde_json::from_slice(body).map_err(|e| DistrictError::bad("invalid_json", format!("the body is not valid: {e}")))
}

fn utf8(body: &[u8]) -> Result<&str, DistrictError> {
    std::str::from_utf8(body).map_err(|_| DistrictError::bad("invalid_encoding", "the file must be UTF-8 text"))
}

#[utoipa::path(get, path = "/api/campaigns", tag = "viewer", summary = "Every campaign, newest first.", responses((status = 200, body = Vec<CampaignSummary>), Failed))]
async fn list_campaigns(district: District) -> Result<Response, DistrictError> {
    Ok(Json(district.catalog().campaigns().await?).into_response())
}

#[utoipa::path(get, path = "/api/campaigns/{campaign}", tag = "viewer", summary = "A campaign's definition (form, subjects, hamlets, thresholds, state).", params(CampaignPath), responses((status = 200, body = Campaign), Failed))]
async fn get_campaign(
    district: District,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    Ok(Json(&*campaign).into_response())
}

/// Query of the results.
#[derive(Debug, Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultsQuery {
    /// `commune` (default: province, district, commune) or `hamlet`.
    pub depth: Option<String>,
    /// Only this subject (recommended with depth=hamlet).
    pub subject: Option<String>,
}

impl ResultsQuery {
    /// The depth and subject asked for.
    pub fn parse(&self, campaign: &Campaign) -> Result<(results::Depth, Option<SubjectId>), DistrictError> {
        let depth = match self.depth.as_deref() {
            None | Some("") | Some("commune") => results::Depth::Commune,
            Some("hamlet") => results::Depth::Hamlet,
            Some(other) => {
                return Err(DistrictError::bad("invalid_depth", format!("depth {other:?} is not commune or hamlet")));
            }
        };
        let subject = match self.subject.as_deref() {
            None | Some("") => None,
            Some(s) => {
                let id: SubjectId = s.parse().map_err(|_| DistrictError::NotFound(format!("no subject {s:?}")))?;
                if !campaign.subjects.iter().any(|x| x.id == id) {
                    return Err(DistrictError::NotFound(format!("no subject {s:?} in campaign {}", campaign.id)));
                }
                Some(id)
            }
        };
        Ok((depth, subject))
    }
}

#[utoipa::path(get, path = "/api/campaigns/{campaign}/results", tag = "viewer", summary = "Results per subject at every level of the unit tree, with participation, thresholds and small groups suppressed.", params(CampaignPath, ResultsQuery), responses((status = 200, body = results::Results), Failed))]
async fn get_results(
    district: District,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
    Query(q): Query<ResultsQuery>,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    let (depth, subject) = q.parse(&campaign)?;
    Ok(Json(results::load(&district, &campaign, depth, subject.as_ref()).await?).into_response())
}

#[utoipa::path(get, path = "/api/campaigns/{campaign}/progress", tag = "viewer", summary = "Progress per commune and hamlet, with devices and their last sync.", params(CampaignPath), responses((status = 200, body = progress::Progress), Failed))]
async fn get_progress(
    district: District,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    Ok(Json(progress::load(&district, &campaign).await?).into_response())
}

/// Query of the comments.
#[derive(Debug, Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommentsQuery {
    /// Text to look for.
    pub q: Option<String>,
    /// Only about this subject.
    pub subject: Option<String>,
    /// At most this many (1-500, default 50).
    pub limit: Option<String>,
    /// Skip this many.
    pub offset: Option<String>,
}

/// An optional number from a query string within `range`, or a 400 naming the parameter.
fn number(
    value: Option<&str>,
    name: &'static str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, DistrictError> {
    match value {
        None | Some("") => Ok(default),
        Some(text) => text.parse().ok().filter(|n| range.contains(n)).ok_or_else(|| {
            DistrictError::bad(
                "invalid_parameter",
                format!("{name} {text:?} is not a number from {} to {}", range.start(), range.end()),
            )
        }),
    }
}

/// The most comments skipped by `offset` (far past any campaign's).
const MAX_OFFSET: i64 = 100_000_000;

#[utoipa::path(get, path = "/api/campaigns/{campaign}/comments", tag = "viewer", summary = "Residents' comments of submitted responses; search ignores case and diacritics. Audited.", params(CampaignPath, CommentsQuery), responses((status = 200, body = review::Comments), Failed))]
async fn get_comments(
    district: District,
    actor: Actor,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
    Query(q): Query<CommentsQuery>,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    let limit = number(q.limit.as_deref(), "limit", 50, 1..=500)?;
    let offset = number(q.offset.as_deref(), "offset", 0, 0..=MAX_OFFSET)?;
    let text = q.q.as_deref().unwrap_or("");
    let found = review::comments(&district, &campaign, text, q.subject.as_deref(), limit, offset).await?;
    // Residents' words read by staff: who searched for what is kept.
    let detail = format!("q={text:?} subject={:?} offset={offset}", q.subject.as_deref().unwrap_or(""));
    audit::record(district.store(), &actor.name, "comments.read", campaign.id.as_str(), &detail).await?;
    Ok(Json(found).into_response())
}

/// Which conflicts and flags to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReviewQuery {
    /// `open` (default) or `all`.
    status: Option<String>,
}

/// The answer to a review: the item marked.
#[derive(Debug, Serialize, ToSchema)]
struct ReviewDone {
    /// The item's key.
    reviewed: String,
}

/// How many subjects a campaign now has.
#[derive(Debug, Serialize, ToSchema)]
struct SubjectsImported {
    /// Subjects imported.
    subjects: usize,
}

/// How many hamlets a campaign now has in scope.
#[derive(Debug, Serialize, ToSchema)]
struct HamletsImported {
    /// Hamlets imported.
    hamlets: usize,
}

/// How many units were imported.
#[derive(Debug, Serialize, ToSchema)]
struct UnitsImported {
    /// Units imported (new or changed).
    units: usize,
}

#[utoipa::path(get, path = "/api/campaigns/{campaign}/review", tag = "viewer", summary = "Conflicts and flags, with their reviews.", params(CampaignPath, ReviewQuery), responses((status = 200, body = Vec<review::ReviewItem>), Failed))]
async fn get_review(
    district: District,
    actor: Actor,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
    Query(q): Query<ReviewQuery>,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    let open_only = match q.status.as_deref() {
        None | Some("") | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            return Err(DistrictError::bad("invalid_status", format!("status {other:?} is not open or all")));
        }
    };
    Ok(Json(review::items(&district, &campaign, open_only, &actor).await?).into_response())
}

/// A conflict or flag marked as reviewed.
#[derive(Debug, Deserialize, ToSchema)]
struct ReviewBody {
    /// The item's key, as listed by the review.
    item_key: String,
    /// What the reviewer says.
    #[serde(default)]
    comment: String,
}

#[utoipa::path(post, path = "/api/campaigns/{campaign}/review", tag = "viewer", summary = "Marks a conflict or flag as reviewed, with a comment (audited).", params(CampaignPath), request_body(content = ReviewBody, content_type = "application/json"), responses((status = 200, body = ReviewDone), Failed))]
async fn post_review(
    district: District,
    actor: Actor,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
    body: Bytes,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    let body: ReviewBody = parse_json(&body)?;
    review::mark_reviewed(&district, &campaign, &body.item_key, &body.comment, &actor).await?;
    Ok(Json(ReviewDone { reviewed: body.item_key }).into_response())
}

#[utoipa::path(get, path = "/api/campaigns/{campaign}/export/{file}", tag = "viewer", summary = "Exports, streamed and audited: `results.csv`, `results.xlsx` (small groups suppressed); `responses.csv`, `responses.xlsx` (one row per response, no identities; administrators only). A failure half-way aborts the connection.", params(ExportPath), responses((status = 200, description = "the file", content((FileBody = "text/csv"), (FileBody = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))), Failed))]
async fn get_export(
    district: District,
    actor: Actor,
    Path(ExportPath { campaign: id, file }): Path<ExportPath>,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    let kind = export::Kind::from_file_name(&file).ok_or_else(|| {
        DistrictError::NotFound(format!(
            "no export {file:?}: results.csv, results.xlsx, responses.csv or responses.xlsx"
        ))
    })?;
    crate::web::export::response(&district, campaign, kind, &actor).await
}

#[utoipa::path(get, path = "/api/units", tag = "viewer", summary = "Every administrative unit, with validity and lineage.", responses((status = 200, body = Vec<hamlet_sync_core::Unit>), Failed))]
async fn list_units(district: District) -> Result<Response, DistrictError> {
    let tree = district.catalog().units().await?;
    let units: Vec<&hamlet_sync_core::Unit> = tree.units().collect();
    Ok(Json(units).into_response())
}

#[utoipa::path(post, path = "/api/campaigns", tag = "admin", summary = "Creates a draft campaign from its JSON definition (docs/schema.md).", request_body(content = Campaign, content_type = "application/json"), responses((status = 201, body = Campaign), Failed))]
async fn create_campaign(district: District, actor: Actor, body: Bytes) -> Result<Response, DistrictError> {
    let campaign: Campaign = parse_json(&body)?;
    create(&district, &actor, campaign.clone()).await?;
    Ok((axum::http::StatusCode::CREATED, Json(campaign)).into_response())
}

#[utoipa::path(put, path = "/api/campaigns/{campaign}", tag = "admin", summary = "Replaces a draft campaign's definition.", params(CampaignPath), request_body(content = Campaign, content_type = "application/json"), responses((status = 200, body = Campaign), Failed))]
async fn update_campaign(
    district: District,
    actor: Actor,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
    body: Bytes,
) -> Result<Response, DistrictError> {
    let campaign: Campaign = parse_json(&body)?;
    update(&district, &actor, &id, campaign.clone()).await?;
    Ok(Json(campaign).into_response())
}

#[utoipa::path(post, path = "/api/campaigns/{campaign}/open", tag = "admin", summary = "Opens a draft campaign (checked against the unit tree).", params(CampaignPath), responses((status = 200, body = Campaign), Failed))]
async fn open_campaign(
    district: District,
    actor: Actor,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
) -> Result<Response, DistrictError> {
    Ok(Json(transition(&district, &actor, &id, CampaignState::Open).await?).into_response())
}

#[utoipa::path(post, path = "/api/campaigns/{campaign}/close", tag = "admin", summary = "Closes an open campaign.", params(CampaignPath), responses((status = 200, body = Campaign), Failed))]
async fn close_campaign(
    district: District,
    actor: Actor,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
) -> Result<Response, DistrictError> {
    Ok(Json(transition(&district, &actor, &id, CampaignState::Closed).await?).into_response())
}

#[utoipa::path(post, path = "/api/campaigns/{campaign}/publish", tag = "admin", summary = "Publishes a closed campaign's results.", params(CampaignPath), responses((status = 200, body = Campaign), Failed))]
async fn publish_campaign(
    district: District,
    actor: Actor,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
) -> Result<Response, DistrictError> {
    Ok(Json(transition(&district, &actor, &id, CampaignState::Published).await?).into_response())
}

#[utoipa::path(post, path = "/api/campaigns/{campaign}/subjects", tag = "admin", summary = "Replaces a draft campaign's subjects from CSV: id,name,position,commune,home_hamlet.", params(CampaignPath), request_body(content = String, content_type = "text/csv"), responses((status = 200, body = SubjectsImported), Failed))]
async fn import_subjects(
    district: District,
    actor: Actor,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
    body: Bytes,
) -> Result<Response, DistrictError> {
    let n = replace_subjects(&district, &actor, &id, utf8(&body)?).await?;
    Ok(Json(SubjectsImported { subjects: n }).into_response())
}

#[utoipa::path(post, path = "/api/campaigns/{campaign}/hamlets", tag = "admin", summary = "Replaces a draft campaign's hamlets in scope from CSV: hamlet,expected_voters.", params(CampaignPath), request_body(content = String, content_type = "text/csv"), responses((status = 200, body = HamletsImported), Failed))]
async fn import_hamlets(
    district: District,
    actor: Actor,
    Path(CampaignPath { campaign: id }): Path<CampaignPath>,
    body: Bytes,
) -> Result<Response, DistrictError> {
    let n = replace_hamlets(&district, &actor, &id, utf8(&body)?).await?;
    Ok(Json(HamletsImported { hamlets: n }).into_response())
}

#[utoipa::path(post, path = "/api/units", tag = "admin", summary = "Imports units from CSV: id,name,level,parent,valid_from,valid_until,merged_from,merged_into.", request_body(content = String, content_type = "text/csv"), responses((status = 200, body = UnitsImported), Failed))]
async fn import_units(district: District, actor: Actor, body: Bytes) -> Result<Response, DistrictError> {
    let n = import_units_text(&district, &actor, utf8(&body)?).await?;
    Ok(Json(UnitsImported { units: n }).into_response())
}

/// Which audit entries to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only this actor.
    actor: Option<String>,
    /// Only actions starting with this.
    action: Option<String>,
    /// Text in the target or detail.
    q: Option<String>,
    /// Only entries with a smaller id (paging).
    before: Option<String>,
    /// At most this many (1-500, default 100).
    limit: Option<String>,
}

#[utoipa::path(get, path = "/api/audit", tag = "admin", summary = "The audit log, newest first.", params(AuditQuery), responses((status = 200, body = Vec<audit::AuditEntry>), Failed))]
async fn get_audit(district: District, Query(q): Query<AuditQuery>) -> Result<Response, DistrictError> {
    let filter = audit::AuditFilter {
        actor: q.actor.filter(|s| !s.is_empty()),
        action: q.action.filter(|s| !s.is_empty()),
        text: q.q.filter(|s| !s.is_empty()),
        before: match q.before.as_deref() {
            None | Some("") => None,
            before => Some(number(before, "before", 0, 0..=i64::MAX)?),
        },
        limit: number(q.limit.as_deref(), "limit", 100, 1..=500)?,
    };
    Ok(Json(audit::list(district.store(), &filter).await?).into_response())
}
