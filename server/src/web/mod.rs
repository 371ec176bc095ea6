//! HTTP: the routes, authentication, the JSON API, the pages and the sync endpoint — the only
//! layer that names axum. It drives the layers below and turns their errors into responses.
//!
//! - `state`: what the handlers share ([`AppState`]); `error`: the one error type.
//! - [`auth`]: who is asking, role guards, CSRF, sign-in, the people, device and token
//!   handlers, enrollment; `proxy`: the client's address behind trusted proxies.
//! - `api`: the district's JSON API and its OpenAPI document.
//! - `pages`: the dashboard and account pages (Vietnamese by default, English on request,
//!   no JavaScript); `i18n`: which language a request asks for (the words are
//!   `hamlet_sync_core::texts`, shared with the collector command).
//! - [`export`]: CSV and XLSX downloads, streamed; `sync`: `/sync`, `/readyz`, `/metrics`.
//! - `tls`: TLS terminated by the server itself, reloaded when its files change; HSTS; the
//!   certificate fingerprint enrollment codes carry.
//!
//! Only `auth`, `export` and the router are public (the integration tests sign in, read QR
//! codes and exports through them); the other modules are private to the crate, so their items
//! are documented where a comment says something, not because a lint asks.
//!
//! District routes come in two groups, [`viewer_routes`] and [`admin_routes`], so that access
//! control can be layered on each. Handlers take the acting person as an
//! [`Actor`] from the request's extensions ("anonymous" when none was set).

pub(crate) mod api;
pub mod auth;
pub(crate) mod error;
pub mod export;
pub(crate) mod i18n;
pub(crate) mod pages;
pub(crate) mod proxy;
pub(crate) mod state;
pub(crate) mod sync;
pub(crate) mod tls;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};

pub use error::ApiError;
pub use state::AppState;

use crate::audit::Actor;
use crate::district::{District, DistrictError};

/// Largest request body the HTTP API reads.
const MAX_BODY_BYTES: usize = 2 << 20;

/// The routes. Public: `/sync` (WebSocket; a token, or `--insecure-open-sync`), `/healthz`,
/// `/readyz`, `/metrics` (unless moved to its own address or behind a token), `/login`,
/// `/api/enroll`, `/api/openapi.json` (it describes, holds no data). The rest require a role.
pub fn router(state: AppState) -> Router {
    let public = Router::new()
        .route("/sync", get(sync::endpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(sync::ready))
        .route("/metrics", get(sync::metrics))
        .route("/api/openapi.json", get(|| async { axum::Json(api::openapi()) }))
        .route("/login", get(auth::login_form))
        .route("/logout", post(auth::logout));
    // Guessing is slowed per address here, and per account inside the handlers.
    let limited = Router::new()
        .route("/login", post(auth::login))
        .merge(Router::from(api::accounts::public_api()))
        .route_layer(from_fn_with_state(state.clone(), auth::limit_failures_by_address));
    let signed_in = Router::from(api::accounts::signed_in_api()).route_layer(from_fn(auth::require_signed_in));
    let staff = Router::new()
        .route("/password", get(auth::password_form).post(auth::change_password))
        .route_layer(from_fn(auth::require_staff));
    let devices = Router::from(api::accounts::device_api()).route_layer(from_fn(auth::require_device));
    let admin = Router::from(api::accounts::admin_api())
        .route("/admin/people", get(auth::people_page).post(auth::create_person_form))
        .route("/admin/people/{id}/enroll", post(auth::enroll_page))
        .route("/admin/people/{id}/sign-out-everywhere", post(auth::sign_out_everywhere_form))
        .route("/admin/devices", get(auth::devices_page))
        .route("/admin/devices/{id}/revoke", post(auth::revoke_device_form))
        .route_layer(from_fn(auth::require_admin));
    Router::new()
        .merge(public)
        .merge(limited)
        .merge(signed_in)
        .merge(staff)
        .merge(devices)
        .merge(admin)
        // District pages and API: staff read, admins manage.
        .merge(viewer_routes().route_layer(from_fn(auth::require_staff)))
        .merge(admin_routes().route_layer(from_fn(auth::require_admin)))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Routes for staff who read: the dashboard, results, progress, review, exports, and the API
/// that serves them. (Marking a conflict or flag as reviewed is here too: it is the working
/// groups' job, not an administrator's.)
pub fn viewer_routes() -> Router<AppState> {
    Router::from(api::viewer_api()).merge(pages::district::viewer_pages())
}

/// Routes for administrators: campaigns, units and subjects, and the audit log.
pub fn admin_routes() -> Router<AppState> {
    Router::from(api::admin_api()).merge(pages::district::admin_pages())
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Actor>().cloned().unwrap_or_else(Actor::anonymous))
    }
}

impl FromRequestParts<AppState> for District {
    type Rejection = DistrictError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(state.district.clone())
    }
}
