//! The district: what district staff see and do with the merged feedback.
//!
//! - [`projector`]: keeps SQL tables (responses, answers, tallies, conflicts, flags, and the
//!   aggregates results are read from) in step with the hamlet ledgers, incrementally.
//! - [`catalog`]: campaigns, administrative units and subjects, in SQL and in the campaign
//!   documents devices read; imports from CSV.
//! - [`results`], [`progress`], [`review`]: results per subject up the unit tree, progress per
//!   hamlet and device, conflicts, flags and comments to review.
//! - [`campaigns`]: the operations staff do on campaigns and units (create, edit, open, close,
//!   publish, imports), each with its audit entry.
//! - [`export`]: the rows of the CSV and XLSX exports; [`csv`]: reading and writing CSV.
//!
//! Nothing here knows HTTP: the web layer calls these and turns a [`DistrictError`] into a
//! response.

pub mod campaigns;
pub mod catalog;
pub mod csv;
pub mod export;
pub mod keys;
pub mod progress;
pub mod projector;
pub mod results;
pub mod review;

use std::sync::Arc;

use crate::store::{Store, StoreError};
use crate::sync::hub::Hub;

pub use crate::audit::Actor;
pub use catalog::Catalog;
pub use projector::Projector;

/// Settings of the district features.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A device that has not synced for more than this many days is shown as silent.
    pub silent_device_days: u32,
    /// The key-encryption key campaign keys are stored under; without it, campaigns open
    /// without sealing (see [`keys`]).
    pub campaign_kek: Option<keys::Kek>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { silent_device_days: 3, campaign_kek: None }
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
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Something else failed on the server.
    #[error("{0}")]
    Internal(String),
}

impl DistrictError {
    /// The stable code and the message a client may see (a server error says only that
    /// something failed: its cause is in [`DistrictError::log`]).
    pub fn code_and_message(&self) -> (&'static str, String) {
        match self {
            DistrictError::NotFound(m) => ("not_found", m.clone()),
            DistrictError::BadRequest { code, message }
            | DistrictError::Invalid { code, message, .. }
            | DistrictError::Conflict { code, message } => (code, message.clone()),
            DistrictError::Forbidden(m) => ("forbidden", m.clone()),
            DistrictError::Store(_) | DistrictError::Internal(_) => {
                ("internal", "the server could not do this; try again later".into())
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

/// The district's projector over `store`, with its catalog: give it to the hub as its
/// [`RoundObserver`](crate::sync::hub::RoundObserver), then [`start`] the district.
pub fn new_projector(store: &Store, settings: Settings) -> Arc<Projector> {
    let catalog = Arc::new(Catalog::new(store.clone()));
    Projector::start(store.clone(), catalog, settings)
}

/// Starts the district features on `hub`, whose observer is `projector`: a catch-up of
/// ledgers stored but not projected (after a crash, say) runs in the background.
pub fn start(hub: Arc<Hub>, projector: Arc<Projector>) -> District {
    let catching_up = projector.clone();
    tokio::spawn(async move {
        match catching_up.catch_up(None).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(ledgers = n, "projected ledgers stored while the projection lagged"),
            Err(e) => tracing::error!(error = %e, "start-up projection failed"),
        }
    });
    District { hub, projector }
}

/// Rebuilds every projected table of the database at `url` from its stored documents (the
/// `hamlet-server reproject` command); returns how many ledgers were projected.
pub async fn reproject_all(url: &str) -> Result<usize, projector::ProjectorError> {
    reproject_all_with(url, None).await
}

/// As [`reproject_all`], opening sealed campaigns' answers with the keys stored under
/// `campaign_kek`.
pub async fn reproject_all_with(
    url: &str,
    campaign_kek: Option<keys::Kek>,
) -> Result<usize, projector::ProjectorError> {
    let store = Store::open(url).await?;
    let catalog = Arc::new(Catalog::new(store.clone()));
    let projector = Projector::start(store.clone(), catalog, Settings { campaign_kek, ..Settings::default() });
    let projected = projector.reproject().await;
    store.close().await;
    projected
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
