//! The accounts' JSON API: sign-in for scripts, people and their assignments, enrollment codes,
//! devices and API tokens (administrators), and what enrolled phones call (enroll, their
//! assignments, more actor ids, a new token). Each handler is described where it is written
//! (`#[utoipa::path]`) and routed by the `routes!` call that describes it, as the district API.
//! The account pages share the operations that audit (in [`crate::web::auth`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hamlet_sync_core::texts::Lang;
use hamlet_sync_core::{CampaignId, DocumentId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::district::Failed;
use crate::accounts::{AccountError, Device, Person, Role};
use crate::web::auth::{self, ClientAddress, IssuedCode, Principal};
use crate::web::error::JsonBody;
use crate::web::{ApiError, AppState};

/// Sign-in for scripts and enrollment for phones: public, with failures slowed per address.
pub fn public_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(auth::api_session)).routes(routes!(enroll))
}

/// Who is asking: for anyone signed in (staff or device).
pub fn signed_in_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// What an enrolled device calls with its token.
pub fn device_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_actors))
        .routes(routes!(device_assignments))
        .routes(routes!(rotate_device_token))
        .routes(routes!(relay_feed))
}

/// People, codes, devices and tokens: for administrators.
pub fn admin_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_people, create_person))
        .routes(routes!(set_assignments))
        .routes(routes!(create_code))
        .routes(routes!(sign_out_everywhere))
        .routes(routes!(list_devices))
        .routes(routes!(revoke_device))
        .routes(routes!(create_token))
        .routes(routes!(revoke_token))
}

fn actor_name(principal: &Principal) -> String {
    principal.person().id.clone()
}

/// Who is asking.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The person (for a device, the collector it belongs to).
    pub person: Person,
    /// The device's id, when a device asks.
    pub device: Option<String>,
}

#[utoipa::path(get, path = "/api/me", tag = "accounts", summary = "Who the session or token belongs to.", responses((status = 200, body = Me), Failed))]
async fn me(axum::Extension(principal): axum::Extension<Principal>) -> Json<Me> {
    let device = match &principal {
        Principal::Device { device, .. } => Some(device.clone()),
        Principal::Staff { .. } => None,
    };
    Json(Me { person: principal.person().clone(), device })
}

#[utoipa::path(get, path = "/api/people", tag = "admin", summary = "Every person: staff, collectors, relays.", responses((status = 200, body = Vec<Person>), Failed))]
async fn list_people(State(state): State<AppState>) -> Result<Json<Vec<Person>>, ApiError> {
    Ok(Json(state.accounts.people().await?))
}

/// A person to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPerson {
    /// Identifier; staff sign in with it.
    id: String,
    /// Name shown.
    display_name: String,
    /// What they may do.
    role: Role,
}

/// A person created.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedPerson {
    /// The person.
    pub person: Option<Person>,
    /// For staff, the password of their first sign-in, shown only here; they must change it.
    pub one_time_password: Option<String>,
}

#[utoipa::path(post, path = "/api/people", tag = "admin", summary = "Adds a person; staff get a one-time password, shown once.", request_body = NewPerson, responses((status = 201, body = CreatedPerson), Failed))]
async fn create_person(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    JsonBody(body): JsonBody<NewPerson>,
) -> Result<Response, ApiError> {
    let password = state.accounts.create_person(&body.id, &body.display_name, body.role).await?;
    auth::audit(&state, &actor_name(&principal), "person.create", &body.id, body.role.as_str()).await;
    let person = state.accounts.person(&body.id).await?;
    Ok((StatusCode::CREATED, Json(CreatedPerson { person, one_time_password: password })).into_response())
}

/// Assignments to set.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignmentsBody {
    /// The campaign.
    campaign: String,
    /// The hamlets the person collects in for it (replacing those they had).
    hamlets: Vec<String>,
}

/// A person's assignments.
#[derive(Debug, Serialize, ToSchema)]
pub struct Assignments {
    /// The person.
    pub person: String,
    /// Every (campaign, hamlet) they collect in.
    pub assignments: Vec<(String, String)>,
}

#[utoipa::path(put, path = "/api/people/{id}/assignments", tag = "admin", summary = "Sets the hamlets a person collects in for a campaign.", params(("id" = String, Path, description = "the person's id")), request_body = AssignmentsBody, responses((status = 200, body = Assignments), Failed))]
async fn set_assignments(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(person): Path<String>,
    JsonBody(body): JsonBody<AssignmentsBody>,
) -> Result<Json<Assignments>, ApiError> {
    auth::check_assignment(&state, Lang::En, &body.campaign, &body.hamlets).await?;
    state.accounts.set_assignments(&person, &body.campaign, &body.hamlets).await?;
    let detail = format!("{}: {}", body.campaign, body.hamlets.join(", "));
    auth::audit(&state, &actor_name(&principal), "assignments.set", &person, &detail).await;
    let assignments = state.accounts.assignments(&person).await?;
    Ok(Json(Assignments { person, assignments }))
}

/// Options of a new enrollment code.
#[derive(Debug, Deserialize, Default, ToSchema)]
pub struct CodeBody {
    /// How long the code may be used, in hours (1 to 336; default: the server's setting).
    ttl_hours: Option<u64>,
}

#[utoipa::path(post, path = "/api/people/{id}/enrollment-codes", tag = "admin", summary = "Issues a one-time enrollment code (and its QR code) for a collector's phone.", params(("id" = String, Path, description = "the person's id")), request_body(content = CodeBody, description = "optional"), responses((status = 200, body = IssuedCode), Failed))]
async fn create_code(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(person): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<IssuedCode>, ApiError> {
    // The body is optional: none asks for the server's default lifetime.
    let options: CodeBody = if body.iter().all(u8::is_ascii_whitespace) {
        CodeBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not valid: {e}"))
        })?
    };
    let ttl = options.ttl_hours;
    Ok(Json(auth::issue_code(&state, &principal, &person, ttl).await?))
}

/// What signing a person out everywhere ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedOut {
    /// The person.
    pub person: String,
    /// Sessions ended.
    pub sessions_ended: u64,
    /// API tokens revoked.
    pub tokens_revoked: u64,
}

#[utoipa::path(post, path = "/api/people/{id}/sign-out-everywhere", tag = "admin", summary = "Ends every session and revokes every API token of a person (a lost laptop); audited.", params(("id" = String, Path, description = "the person's id")), responses((status = 200, body = SignedOut), Failed))]
async fn sign_out_everywhere(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(person): Path<String>,
) -> Result<Json<SignedOut>, ApiError> {
    let (sessions_ended, tokens_revoked) = auth::sign_out_everywhere(&state, &principal, &person).await?;
    Ok(Json(SignedOut { person, sessions_ended, tokens_revoked }))
}

#[utoipa::path(get, path = "/api/devices", tag = "admin", summary = "Every enrolled device, revoked ones included.", responses((status = 200, body = Vec<Device>), Failed))]
async fn list_devices(State(state): State<AppState>) -> Result<Json<Vec<Device>>, ApiError> {
    Ok(Json(state.accounts.devices().await?))
}

#[utoipa::path(post, path = "/api/devices/{id}/revoke", tag = "admin", summary = "Revokes a device: its token stops working at once and its open connection is closed.", params(("id" = String, Path, description = "the device's id")), responses((status = 204, description = "revoked"), Failed))]
async fn revoke_device(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(device): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth::revoke(&state, &principal, &device).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenBody {
    /// The staff member it acts as.
    person: String,
    /// What it is for, shown in the audit log.
    label: String,
}

/// A new API token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// Its id, to revoke it.
    pub id: String,
    /// The token, shown only here: send it as `Authorization: Bearer …`.
    pub token: String,
}

#[utoipa::path(post, path = "/api/tokens", tag = "admin", summary = "Creates a bearer token for automation, acting as a staff member; shown once.", request_body = TokenBody, responses((status = 201, body = CreatedToken), Failed))]
async fn create_token(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<Response, ApiError> {
    match state.accounts.person(&body.person).await? {
        Some(p) if p.role.is_staff() => {}
        Some(_) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid", "API tokens are for staff; devices enroll"));
        }
        None => return Err(AccountError::NotFound(body.person).into()),
    }
    let (id, token) = state.accounts.create_api_token(&body.person, &body.label).await?;
    auth::audit(&state, &actor_name(&principal), "token.create", &body.person, &id).await;
    Ok((StatusCode::CREATED, Json(CreatedToken { id, token })).into_response())
}

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "admin", summary = "Revokes an API token.", params(("id" = String, Path, description = "the token's id")), responses((status = 204, description = "revoked"), Failed))]
async fn revoke_token(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.accounts.revoke_api_token(&id).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no live token {id}")));
    }
    auth::audit(&state, &actor_name(&principal), "token.revoke", &id, "").await;
    Ok(StatusCode::NO_CONTENT)
}

// ----- Phones ---------------------------------------------------------------------------------

/// What a phone sends to enroll.
#[derive(Deserialize, ToSchema)]
pub struct EnrollBody {
    /// The one-time code.
    code: String,
    /// The Automerge actor ids the phone writes with (hex).
    actor_ids: Vec<String>,
    /// A name for the device, shown to administrators.
    #[serde(default)]
    device_name: String,
}

impl std::fmt::Debug for EnrollBody {
    // The code is a secret until used.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrollBody { .. }")
    }
}

/// A campaign a collector works on, and where.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignAssignment {
    /// The campaign's id.
    pub campaign: String,
    /// Its campaign document (`automerge:…`), when the id is a valid campaign id.
    pub document: Option<String>,
    /// The hamlets the collector records in.
    pub hamlets: Vec<String>,
}

/// A device enrolled.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enrollment {
    /// The device token, shown only here: the phone keeps it.
    pub token: String,
    /// The device's id.
    pub device: String,
    /// The collector it belongs to.
    pub collector: String,
    /// What the collector works on.
    pub campaigns: Vec<CampaignAssignment>,
}

/// What an enrolled device works on now.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceAssignments {
    /// The collector the device belongs to.
    pub collector: String,
    /// What the collector works on.
    pub campaigns: Vec<CampaignAssignment>,
}

/// A device's new token.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedToken {
    /// The new token; the one sent stops working at once.
    pub token: String,
    /// The device's id.
    pub device: String,
}

#[utoipa::path(post, path = "/api/enroll", tag = "devices", summary = "Exchanges a one-time enrollment code for a device token and the device's assignments.", request_body = EnrollBody, responses((status = 200, body = Enrollment), Failed))]
async fn enroll(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    JsonBody(body): JsonBody<EnrollBody>,
) -> Result<Json<Enrollment>, ApiError> {
    let enrolled = match state.accounts.enroll(&body.code, &body.actor_ids, &body.device_name).await {
        Ok(e) => e,
        Err(e) => {
            if !matches!(e, AccountError::Store(_) | AccountError::Random(_) | AccountError::Hashing(_)) {
                auth::audit(&state, "anonymous", "enroll.failed", "", &format!("{e} (from {address})")).await;
            }
            return Err(e.into());
        }
    };
    let detail = format!("actors {}", body.actor_ids.join(", "));
    auth::audit(&state, &enrolled.person.id, "enroll", &enrolled.device_id, &detail).await;
    Ok(Json(Enrollment {
        campaigns: campaigns_of(&state, &enrolled.person.id).await?,
        token: enrolled.token,
        device: enrolled.device_id,
        collector: enrolled.person.id,
    }))
}

async fn campaigns_of(state: &AppState, person: &str) -> Result<Vec<CampaignAssignment>, ApiError> {
    let mut by_campaign: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (campaign, hamlet) in state.accounts.assignments(person).await? {
        by_campaign.entry(campaign).or_default().push(hamlet);
    }
    Ok(by_campaign
        .into_iter()
        .map(|(campaign, hamlets)| {
            let document = campaign.parse::<CampaignId>().map(|c| DocumentId::for_campaign(&c).url()).ok();
            CampaignAssignment { campaign, document, hamlets }
        })
        .collect())
}

#[utoipa::path(get, path = "/api/device/assignments", tag = "devices", summary = "What the calling device's collector works on now.", responses((status = 200, body = DeviceAssignments), Failed))]
async fn device_assignments(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<DeviceAssignments>, ApiError> {
    let collector = principal.person().id.clone();
    Ok(Json(DeviceAssignments { campaigns: campaigns_of(&state, &collector).await?, collector }))
}

#[utoipa::path(get, path = "/api/relay/feed", tag = "devices", summary = "For a relay's device: its hamlets, their collectors and devices (token hashes, actor ids, revocations), so it can apply the district's rules offline.", responses((status = 200, body = crate::accounts::feed::Feed), Failed))]
async fn relay_feed(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<crate::accounts::feed::Feed>, ApiError> {
    let Principal::Device { person, .. } = &principal else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only a relay's device reads the relay feed"));
    };
    if person.role != Role::Relay {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only a relay's device reads the relay feed"));
    }
    Ok(Json(state.accounts.relay_feed(&person.id).await?))
}

/// More actor ids for the calling device.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ActorsBody {
    /// Automerge actor ids (hex).
    actor_ids: Vec<String>,
}

#[utoipa::path(post, path = "/api/device/actors", tag = "devices", summary = "Registers more actor ids for the calling device.", request_body = ActorsBody, responses((status = 204, description = "registered"), Failed))]
async fn add_actors(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    JsonBody(body): JsonBody<ActorsBody>,
) -> Result<StatusCode, ApiError> {
    let Principal::Device { device, person } = &principal else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only devices register actor ids"));
    };
    state.accounts.add_actors(device, &body.actor_ids).await?;
    auth::audit(&state, &person.id, "device.actors", device, &body.actor_ids.join(", ")).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/device/token", tag = "devices", summary = "A new token for the calling device in place of the one in `Authorization: Bearer`, which stops working at once; open connections stay open.", responses((status = 200, body = RotatedToken), Failed))]
async fn rotate_device_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<RotatedToken>, ApiError> {
    let Principal::Device { device, person } = &principal else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only devices rotate their token"));
    };
    let Some(old) = auth::bearer(&headers) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "token_in_header",
            "send the current token in the Authorization header to rotate it",
        ));
    };
    let token = state.accounts.rotate_device_token(device, &old).await?;
    auth::audit(&state, &person.id, "device.token-rotate", device, "").await;
    Ok(Json(RotatedToken { token, device: device.clone() }))
}
