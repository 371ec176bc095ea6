//! The district: what district staff see and do with the merged feedback.
//!
//! - [`projector`]: keeps SQL tables (responses, answers, tallies, conflicts, flags, and the
//!   aggregates results are read from) in step with the hamlet ledgers, incrementally.
//! - [`catalog`]: campaigns, administrative units and subjects, in SQL and in the campaign
//!   documents devices read; imports from CSV.
//! - [`results`], [`progress`], [`review`]: results per subject up the unit tree, progress per
//!   hamlet and device, conflicts, flags and comments to review.
//! - [`api`]: the JSON API and its OpenAPI document; [`pages`]: the dashboard (Vietnamese by
//!   default, English on request, no JavaScript); [`export`]: CSV and XLSX, streamed.
//! - [`audit`]: the audit log of staff actions; [`demo_seed`]: the living demo district.
//!
//! Routes come in two groups, [`viewer_routes`] and [`admin_routes`], so that access control
//! can be layered on each. Handlers take the acting person as an [`Actor`] from the request's
//! extensions ("anonymous" when none was set).

pub mod api;
pub mod audit;
pub mod catalog;
pub mod csv;
pub mod demo_seed;
pub mod export;
pub mod html;
pub mod i18n;
pub mod pages;
pub mod progress;
pub mod projector;
pub mod results;
pub mod review;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::hub::Hub;
use crate::store::{Store, StoreError};

pub use catalog::Catalog;
pub use projector::Projector;

/// Settings of the district features.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A device that has not synced for more than this many days is shown as silent.
    pub silent_device_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { silent_device_days: 3 }
    }
}

/// Who acts: set in the request's extensions by the authentication layer; "anonymous" until
/// then. Recorded in the audit log ("reviewed by").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The person's account name.
    pub name: String,
    /// Their role (`admin`, `viewer`, …).
    pub role: String,
}

impl Actor {
    /// The actor of a request nobody signed in to.
    pub fn anonymous() -> Actor {
        Actor { name: "anonymous".into(), role: "anonymous".into() }
    }

    /// Whether the actor may see admin pages and links.
    pub fn is_admin(&self) -> bool {
        self.role == "admin" || self.role == "anonymous"
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Actor>().cloned().unwrap_or_else(Actor::anonymous))
    }
}

/// An error of the district API: JSON `{code, message}` with a stable code. A 5xx says only
/// that something failed; its cause is logged once, here.
#[derive(Debug, thiserror::Error)]
pub enum DistrictError {
    /// Nothing has this id.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be understood.
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// What to fix.
        message: String,
    },
    /// The request is understood but its content is invalid (with line-numbered details for CSV).
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
        /// Each problem found, for imports.
        details: Vec<csv::CsvError>,
    },
    /// The request conflicts with the current state (say, editing an open campaign).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The actor may not do this (their role does not allow it).
    #[error("{0}")]
    Forbidden(String),
    /// The district features are not running in this process.
    #[error("the district features are not available on this server")]
    Unavailable,
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Something else failed on the server.
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<ErrorDetail>,
}

#[derive(Serialize)]
struct ErrorDetail {
    line: usize,
    message: String,
}

impl DistrictError {
    /// The HTTP status, stable code and the message a client may see.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            DistrictError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            DistrictError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message.clone()),
            DistrictError::Invalid { code, message, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code, message.clone()),
            DistrictError::Conflict { code, message } => (StatusCode::CONFLICT, code, message.clone()),
            DistrictError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            DistrictError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", self.to_string()),
            DistrictError::Store(_) | DistrictError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server could not do this; try again later".into())
            }
        }
    }

    /// Logs the cause of a server error (once, where the response is made).
    pub fn log(&self) {
        if matches!(self, DistrictError::Store(_) | DistrictError::Internal(_)) {
            tracing::error!(error = %self, "district request failed");
        }
    }

    /// A 400 with `code`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> DistrictError {
        DistrictError::BadRequest { code, message: message.into() }
    }

    /// A 422 with `code`.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> DistrictError {
        DistrictError::Invalid { code, message: message.into(), details: Vec::new() }
    }

    /// A 409 with `code`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> DistrictError {
        DistrictError::Conflict { code, message: message.into() }
    }
}

impl IntoResponse for DistrictError {
    fn into_response(self) -> Response {
        self.log();
        let (status, code, message) = self.parts();
        let details = match &self {
            DistrictError::Invalid { details, .. } => {
                details.iter().map(|d| ErrorDetail { line: d.line, message: d.message.clone() }).collect()
            }
            _ => Vec::new(),
        };
        (status, Json(ErrorBody { code, message, details })).into_response()
    }
}

/// What a district handler needs: the hub (to write campaign documents) and the projector
/// (store, catalog, settings). Extracted from the application state.
#[derive(Clone, Debug)]
pub struct District {
    /// The hub.
    pub hub: Arc<Hub>,
    /// The projector.
    pub projector: Arc<Projector>,
}

impl District {
    /// The store.
    pub fn store(&self) -> &Store {
        self.projector.store()
    }

    /// The catalog of campaigns and units.
    pub fn catalog(&self) -> &Catalog {
        self.projector.catalog()
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        self.projector.settings()
    }
}

impl FromRequestParts<AppState> for District {
    type Rejection = DistrictError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let hub = state.hub().clone();
        let projector = hub.projector().cloned().ok_or(DistrictError::Unavailable)?;
        Ok(District { hub, projector })
    }
}

/// Starts the district features on `hub`: the catalog, the projector (set on the hub, so that
/// document tasks call it), and a catch-up of ledgers stored but not projected (after a crash,
/// say) in the background.
pub async fn start(hub: &Arc<Hub>, settings: Settings) -> District {
    let store = hub.store().clone();
    let catalog = Arc::new(Catalog::new(store.clone()));
    let projector = Projector::start(store, catalog, settings);
    hub.set_projector(projector.clone());
    let catching_up = projector.clone();
    tokio::spawn(async move {
        match catching_up.catch_up(None).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(ledgers = n, "projected ledgers stored while the projection lagged"),
            Err(e) => tracing::error!(error = %e, "start-up projection failed"),
        }
    });
    District { hub: hub.clone(), projector }
}

/// Rebuilds every projected table of the database at `url` from its stored documents (the
/// `hamlet-server reproject` command); returns how many ledgers were projected.
pub async fn reproject_all(url: &str) -> Result<usize, projector::ProjectorError> {
    let store = Store::open(url).await?;
    let catalog = Arc::new(Catalog::new(store.clone()));
    let projector = Projector::start(store.clone(), catalog, Settings::default());
    let projected = projector.reproject().await;
    store.close().await;
    projected
}

/// Every district route: [`viewer_routes`] and [`admin_routes`].
pub fn router() -> Router<AppState> {
    viewer_routes().merge(admin_routes())
}

/// Routes for staff who read: the dashboard, results, progress, review, exports, and the API
/// that serves them. (Marking a conflict or flag as reviewed is here too: it is the working
/// groups' job, not an administrator's.)
pub fn viewer_routes() -> Router<AppState> {
    api::viewer_api().router.merge(pages::viewer_pages())
}

/// Routes for administrators: campaigns, units and subjects, and the audit log.
pub fn admin_routes() -> Router<AppState> {
    api::admin_api().router.merge(pages::admin_pages())
}

/// Locks a mutex, ignoring poisoning (the maps it guards stay usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

/// A short stable hash (FNV-1a, 64 bits, hex) of `text`.
pub(crate) fn short_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Vietnamese letters with their diacritics, and the plain letter each folds to.
const FOLDS: [(&str, char); 7] = [
    ("àáảãạăằắẳẵặâầấẩẫậ", 'a'),
    ("èéẻẽẹêềếểễệ", 'e'),
    ("ìíỉĩị", 'i'),
    ("òóỏõọôồốổỗộơờớởỡợ", 'o'),
    ("ùúủũụưừứửữự", 'u'),
    ("ỳýỷỹỵ", 'y'),
    ("đ", 'd'),
];

/// Text folded for search: lower case, without diacritics ("Tốt lắm" → "tot lam"), so that
/// staff typing without accents still find what they look for.
pub fn fold_search(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if ('\u{300}'..='\u{36f}').contains(&c) {
            continue; // combining marks of decomposed text
        }
        match FOLDS.iter().find(|(from, _)| from.contains(c)) {
            Some((_, to)) => out.push(*to),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_folds_case_and_diacritics() {
        assert_eq!(fold_search("Tốt LẮM, Đồng chí Ý"), "tot lam, dong chi y");
        assert_eq!(fold_search("Tie\u{302}\u{301}n"), "tien");
    }

    #[test]
    fn hashes_are_stable() {
        assert_eq!(short_hash(""), "cbf29ce484222325");
        assert_ne!(short_hash("a"), short_hash("b"));
    }
}
