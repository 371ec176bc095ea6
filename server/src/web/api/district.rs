//! The district's JSON API, and its OpenAPI document generated from the same table of routes:
//! each route is added to the router and described in the document by one call, so neither can
//! miss one.
//!
//! Errors are JSON `{"code": "...", "message": "..."}` ([`DistrictError`]); imports add
//! `details`, one per problem with its CSV line.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use hamlet_sync_core::{Campaign, CampaignState, SubjectId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{self, Actor};
use crate::district::campaigns::{create, import_units_text, replace_hamlets, replace_subjects, transition, update};
use crate::district::{District, DistrictError, export, progress, results, review};
use crate::web::AppState;

/// A documented query parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// One operation of the API, as the OpenAPI document describes it.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `get`, `post` or `put`.
    pub method: &'static str,
    /// The path, with `{name}` parameters (the same text axum routes by).
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Query parameters.
    pub query: &'static [Param],
    /// The request body's media type, if it takes one.
    pub body: Option<&'static str>,
    /// The success response's media type.
    pub produces: &'static str,
}

/// Routes and their descriptions, built together.
#[derive(Debug)]
pub struct Api {
    /// The routes.
    pub router: Router<AppState>,
    /// Their descriptions.
    pub operations: Vec<Operation>,
}

impl Api {
    fn new() -> Api {
        Api { router: Router::new(), operations: Vec::new() }
    }

    fn add(mut self, operation: Operation, route: MethodRouter<AppState>) -> Api {
        self.router = self.router.route(operation.path, route);
        self.operations.push(operation);
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        summary: &'static str,
        query: &'static [Param],
        produces: &'static str,
        handler: H,
    ) -> Api {
        self.add(Operation { method: "get", path, summary, query, body: None, produces }, get(handler))
    }

    fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        summary: &'static str,
        body: Option<&'static str>,
        handler: H,
    ) -> Api {
        let op = Operation { method: "post", path, summary, query: &[], body, produces: JSON };
        self.add(op, post(handler))
    }

    fn put<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        summary: &'static str,
        body: Option<&'static str>,
        handler: H,
    ) -> Api {
        let op = Operation { method: "put", path, summary, query: &[], body, produces: JSON };
        self.add(op, put(handler))
    }
}

const JSON: &str = "application/json";
const CSV: &str = "text/csv";

/// The API for staff who read (and review).
pub fn viewer_api() -> Api {
    Api::new()
        .get("/api/campaigns", "Every campaign, newest first.", &[], JSON, list_campaigns)
        .get("/api/campaigns/{campaign}", "A campaign's definition (form, subjects, hamlets, thresholds, state).", &[], JSON, get_campaign)
        .get(
            "/api/campaigns/{campaign}/results",
            "Results per subject at every level of the unit tree, with participation, thresholds and small groups suppressed.",
            &[
                Param { name: "depth", description: "`commune` (default: province, district, commune) or `hamlet`" },
                Param { name: "subject", description: "only this subject (recommended with depth=hamlet)" },
            ],
            JSON,
            get_results,
        )
        .get("/api/campaigns/{campaign}/progress", "Progress per commune and hamlet, with devices and their last sync.", &[], JSON, get_progress)
        .get(
            "/api/campaigns/{campaign}/comments",
            "Residents' comments of submitted responses; search ignores case and diacritics.",
            &[
                Param { name: "q", description: "text to look for" },
                Param { name: "subject", description: "only about this subject" },
                Param { name: "limit", description: "at most this many (1-500, default 50)" },
                Param { name: "offset", description: "skip this many" },
            ],
            JSON,
            get_comments,
        )
        .get(
            "/api/campaigns/{campaign}/review",
            "Conflicts and flags, with their reviews.",
            &[Param { name: "status", description: "`open` (default) or `all`" }],
            JSON,
            get_review,
        )
        .post("/api/campaigns/{campaign}/review", "Marks a conflict or flag as reviewed, with a comment (audited). Body: {\"item_key\", \"comment\"}.", Some(JSON), post_review)
        .get(
            "/api/campaigns/{campaign}/export/{file}",
            "Exports, streamed and audited: `results.csv`, `results.xlsx` (small groups suppressed); `responses.csv`, `responses.xlsx` (one row per response, no identities; administrators only). A failure half-way aborts the connection.",
            &[],
            "application/octet-stream",
            get_export,
        )
        .get("/api/units", "Every administrative unit, with validity and lineage.", &[], JSON, list_units)
}

/// The API for administrators.
pub fn admin_api() -> Api {
    Api::new()
        .post(
            "/api/campaigns",
            "Creates a draft campaign from its JSON definition (docs/schema.md).",
            Some(JSON),
            create_campaign,
        )
        .put("/api/campaigns/{campaign}", "Replaces a draft campaign's definition.", Some(JSON), update_campaign)
        .post(
            "/api/campaigns/{campaign}/open",
            "Opens a draft campaign (checked against the unit tree).",
            None,
            open_campaign,
        )
        .post("/api/campaigns/{campaign}/close", "Closes an open campaign.", None, close_campaign)
        .post("/api/campaigns/{campaign}/publish", "Publishes a closed campaign's results.", None, publish_campaign)
        .post(
            "/api/campaigns/{campaign}/subjects",
            "Replaces a draft campaign's subjects from CSV: id,name,position,commune,home_hamlet.",
            Some(CSV),
            import_subjects,
        )
        .post(
            "/api/campaigns/{campaign}/hamlets",
            "Replaces a draft campaign's hamlets in scope from CSV: hamlet,expected_voters.",
            Some(CSV),
            import_hamlets,
        )
        .post(
            "/api/units",
            "Imports units from CSV: id,name,level,parent,valid_from,valid_until,merged_from,merged_into.",
            Some(CSV),
            import_units,
        )
        .get(
            "/api/audit",
            "The audit log, newest first.",
            &[
                Param { name: "actor", description: "only this actor" },
                Param { name: "action", description: "only actions starting with this" },
                Param { name: "q", description: "text in the target or detail" },
                Param { name: "before", description: "only entries with a smaller id (paging)" },
                Param { name: "limit", description: "at most this many (1-500, default 100)" },
            ],
            JSON,
            get_audit,
        )
}

/// The OpenAPI 3.1 document of every operation of [`viewer_api`] and [`admin_api`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    let viewer = viewer_api().operations.into_iter().map(|o| (o, "viewer"));
    let admin = admin_api().operations.into_iter().map(|o| (o, "admin"));
    for (op, group) in viewer.chain(admin) {
        let mut parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(op.query.iter().map(|p| {
            json!({"name": p.name, "in": "query", "required": false, "description": p.description, "schema": {"type": "string"}})
        }));
        let mut operation = json!({
            "summary": op.summary,
            "tags": [group],
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {op.produces: {}}},
                "4XX": {"description": "The request is wrong; the body says why.", "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "5XX": {"description": "The server failed.", "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if let Some(media) = op.body {
            operation["requestBody"] = json!({"required": true, "content": {media: {}}});
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Hamlet district API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Campaigns, units, results, progress, comments, conflicts and exports of the Hamlet district server. Viewer operations are tagged `viewer`, administrator ones `admin`. This document, at /api/openapi.json, is public; every operation it describes needs a session or a bearer token."
        },
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable, for programs"},
                "message": {"type": "string", "description": "for people"},
                "details": {"type": "array", "items": {"type": "object", "properties": {"line": {"type": "integer"}, "message": {"type": "string"}}}}
            }
        }}}
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DistrictError> {
    serde_json::from_slice(body).map_err(|e| DistrictError::bad("invalid_json", format!("the body is not valid: {e}")))
}

fn utf8(body: &[u8]) -> Result<&str, DistrictError> {
    std::str::from_utf8(body).map_err(|_| DistrictError::bad("invalid_encoding", "the file must be UTF-8 text"))
}

async fn list_campaigns(district: District) -> Result<Response, DistrictError> {
    Ok(Json(district.catalog().campaigns().await?).into_response())
}

async fn get_campaign(district: District, Path(id): Path<String>) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    Ok(Json(&*campaign).into_response())
}

/// Query of the results.
#[derive(Debug, Deserialize, Default)]
pub struct ResultsQuery {
    /// `commune` or `hamlet`.
    pub depth: Option<String>,
    /// One subject.
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

async fn get_results(
    district: District,
    Path(id): Path<String>,
    Query(q): Query<ResultsQuery>,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    let (depth, subject) = q.parse(&campaign)?;
    Ok(Json(results::load(&district, &campaign, depth, subject.as_ref()).await?).into_response())
}

async fn get_progress(district: District, Path(id): Path<String>) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    Ok(Json(progress::load(&district, &campaign).await?).into_response())
}

/// Query of the comments.
#[derive(Debug, Deserialize, Default)]
pub struct CommentsQuery {
    /// Text to look for.
    pub q: Option<String>,
    /// One subject.
    pub subject: Option<String>,
    /// Page size.
    pub limit: Option<String>,
    /// Skip.
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

async fn get_comments(
    district: District,
    actor: Actor,
    Path(id): Path<String>,
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

#[derive(Debug, Deserialize)]
struct ReviewQuery {
    status: Option<String>,
}

async fn get_review(
    district: District,
    actor: Actor,
    Path(id): Path<String>,
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

#[derive(Debug, Deserialize)]
struct ReviewBody {
    item_key: String,
    #[serde(default)]
    comment: String,
}

async fn post_review(
    district: District,
    actor: Actor,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    let body: ReviewBody = parse_json(&body)?;
    review::mark_reviewed(&district, &campaign, &body.item_key, &body.comment, &actor).await?;
    Ok(Json(json!({"reviewed": body.item_key})).into_response())
}

async fn get_export(
    district: District,
    actor: Actor,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, DistrictError> {
    let campaign = district.catalog().require(&id).await?;
    let kind = export::Kind::from_file_name(&file).ok_or_else(|| {
        DistrictError::NotFound(format!(
            "no export {file:?}: results.csv, results.xlsx, responses.csv or responses.xlsx"
        ))
    })?;
    crate::web::export::response(&district, campaign, kind, &actor).await
}

async fn list_units(district: District) -> Result<Response, DistrictError> {
    let tree = district.catalog().units().await?;
    let units: Vec<&hamlet_sync_core::Unit> = tree.units().collect();
    Ok(Json(units).into_response())
}

async fn create_campaign(district: District, actor: Actor, body: Bytes) -> Result<Response, DistrictError> {
    let campaign: Campaign = parse_json(&body)?;
    create(&district, &actor, campaign.clone()).await?;
    Ok((axum::http::StatusCode::CREATED, Json(campaign)).into_response())
}

async fn update_campaign(
    district: District,
    actor: Actor,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DistrictError> {
    let campaign: Campaign = parse_json(&body)?;
    update(&district, &actor, &id, campaign.clone()).await?;
    Ok(Json(campaign).into_response())
}

async fn open_campaign(district: District, actor: Actor, Path(id): Path<String>) -> Result<Response, DistrictError> {
    Ok(Json(transition(&district, &actor, &id, CampaignState::Open).await?).into_response())
}

async fn close_campaign(district: District, actor: Actor, Path(id): Path<String>) -> Result<Response, DistrictError> {
    Ok(Json(transition(&district, &actor, &id, CampaignState::Closed).await?).into_response())
}

async fn publish_campaign(district: District, actor: Actor, Path(id): Path<String>) -> Result<Response, DistrictError> {
    Ok(Json(transition(&district, &actor, &id, CampaignState::Published).await?).into_response())
}

async fn import_subjects(
    district: District,
    actor: Actor,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DistrictError> {
    let n = replace_subjects(&district, &actor, &id, utf8(&body)?).await?;
    Ok(Json(json!({"subjects": n})).into_response())
}

async fn import_hamlets(
    district: District,
    actor: Actor,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DistrictError> {
    let n = replace_hamlets(&district, &actor, &id, utf8(&body)?).await?;
    Ok(Json(json!({"hamlets": n})).into_response())
}

async fn import_units(district: District, actor: Actor, body: Bytes) -> Result<Response, DistrictError> {
    let n = import_units_text(&district, &actor, utf8(&body)?).await?;
    Ok(Json(json!({"units": n})).into_response())
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    q: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

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
