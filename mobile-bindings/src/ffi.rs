//! The UniFFI surface: one object that delegates to [`Collector`], one small error enum mapped
//! from the library's errors in one place, and the records of [`crate::views`]. No logic lives
//! here: each method is one call.

use std::collections::HashMap;
use std::sync::Arc;

use crate::collector::{Collector, CollectorError};
use crate::sync::SyncOptions;
use crate::views::{
    AnswerSlot, BundleReport, CampaignView, Counts, EnrollmentView, RefusedDocument, ResponseFilter, ResponseItem,
    SetAsideItem, SyncReport, TallyInput, TallyItem,
};

/// What went wrong, in the few kinds an app reacts to differently. `message` is for people.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum HamletError {
    /// Input that does not fit (an answer, an id, a reason): fix it and try again.
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the question or field.
        message: String,
    },
    /// The device must enroll first.
    #[error("{message}")]
    NotEnrolled {
        /// What is missing.
        message: String,
    },
    /// No such response, tally, campaign or hamlet here (or the campaign is not downloaded).
    #[error("{message}")]
    NotFound {
        /// What was not found.
        message: String,
    },
    /// The server could not be reached, or the link broke: nothing is lost, try again later.
    #[error("{message}")]
    Network {
        /// What failed.
        message: String,
    },
    /// The server refused: a used or expired code, a revoked device.
    #[error("{message}")]
    Refused {
        /// What the server said.
        message: String,
    },
    /// The server is not the one this device trusts (its certificate is not the pinned one, or
    /// no trusted authority vouches for it): nothing was sent. Not a network fault: retrying
    /// reaches the same server; say so to the collector.
    #[error("{message}")]
    UntrustedCertificate {
        /// Which server, and what it presented.
        message: String,
    },
    /// Another program (or another `HamletCollector` in this app) has the store open: one store
    /// has one writer. Close the other, or use the one already open.
    #[error("{message}")]
    StoreInUse {
        /// Which store.
        message: String,
    },
    /// The sync was cancelled (by `cancel_sync`): nothing stored is lost.
    #[error("{message}")]
    Cancelled {
        /// What was cancelled.
        message: String,
    },
    /// The local store or a bundle file failed.
    #[error("{message}")]
    Storage {
        /// What failed.
        message: String,
    },
}

impl From<CollectorError> for HamletError {
    fn from(e: CollectorError) -> Self {
        use crate::enroll::EnrollError;
        use crate::sync::SyncError;
        let message = e.to_string();
        match e {
            CollectorError::Answer(_)
            | CollectorError::Ledger(_)
            | CollectorError::Invalid(_)
            | CollectorError::Address(_)
            | CollectorError::Link(_)
            | CollectorError::Pem(_)
            | CollectorError::UntrustedServer { .. } => HamletError::Invalid { message },
            CollectorError::Enroll(EnrollError::Certificate { .. })
            | CollectorError::Sync(SyncError::Certificate { .. }) => HamletError::UntrustedCertificate { message },
            CollectorError::NotEnrolled => HamletError::NotEnrolled { message },
            CollectorError::UnknownCampaign(_)
            | CollectorError::CampaignNotDownloaded(_)
            | CollectorError::HamletNotAssigned { .. }
            | CollectorError::NotFound { .. } => HamletError::NotFound { message },
            CollectorError::Enroll(EnrollError::Refused { .. })
            | CollectorError::Sync(SyncError::Unauthorized { .. }) => HamletError::Refused { message },
            CollectorError::Sync(SyncError::Cancelled) => HamletError::Cancelled { message },
            CollectorError::Sync(SyncError::Local(_)) => HamletError::Storage { message },
            CollectorError::Enroll(_) | CollectorError::Sync(_) => HamletError::Network { message },
            CollectorError::Store(crate::store::StoreError::InUse { .. }) => HamletError::StoreInUse { message },
            CollectorError::Store(_)
            | CollectorError::Bundle(_)
            | CollectorError::Document { .. }
            | CollectorError::Runtime(_) => HamletError::Storage { message },
        }
    }
}

fn pairs(map: HashMap<String, String>) -> Vec<(String, String)> {
    map.into_iter().collect()
}

fn quiet<T>(_: T) {}

/// A collector's phone: the local store and everything done with it.
#[derive(Debug, uniffi::Object)]
pub struct HamletCollector {
    inner: Collector,
}

#[uniffi::export]
impl HamletCollector {
    /// Opens the store at `path` (one file), creating it on first use.
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<Self>, HamletError> {
        Ok(Arc::new(HamletCollector { inner: Collector::open(path)? }))
    }

    /// Enrolls the device with a server and a one-time code, or what the QR code holds (a link
    /// naming the server, perhaps pinning its certificate; `server` may then be empty).
    pub fn enroll(&self, server: String, code: String, device_name: String) -> Result<EnrollmentView, HamletError> {
        Ok(self.inner.enroll(&server, &code, &device_name)?)
    }

    /// Also believes the certificate authorities in `pem` for servers not pinned; returns how
    /// many were read. Not stored: call it at every start.
    pub fn trust_authorities(&self, pem: String) -> Result<u32, HamletError> {
        Ok(self.inner.trust_authorities(&pem)?)
    }

    /// Sets up the device for a server that does not enroll devices: campaign → hamlets.
    pub fn setup_without_enrollment(
        &self,
        server: String,
        collector: String,
        campaigns: HashMap<String, Vec<String>>,
    ) -> Result<EnrollmentView, HamletError> {
        Ok(self.inner.setup_without_enrollment(&server, &collector, &campaigns.into_iter().collect::<Vec<_>>())?)
    }

    /// The enrollment, if any.
    pub fn enrollment(&self) -> Option<EnrollmentView> {
        self.inner.enrollment()
    }

    /// The campaigns and hamlets assigned.
    pub fn campaigns(&self) -> Vec<CampaignView> {
        self.inner.campaigns()
    }

    /// The answers a response to `campaign` in `hamlet` can hold (its ballot), in form order.
    pub fn answer_slots(&self, campaign: String, hamlet: String) -> Result<Vec<AnswerSlot>, HamletError> {
        Ok(self.inner.answer_slots(&campaign, &hamlet)?)
    }

    /// Checks one answer, as typed, against the form and the hamlet's ballot.
    pub fn check_answer(&self, campaign: String, hamlet: String, key: String, text: String) -> Result<(), HamletError> {
        Ok(self.inner.check_answer(&campaign, &hamlet, &key, &text)?)
    }

    /// Records a draft response; answers by key, as text. Returns its id.
    pub fn record(
        &self,
        campaign: String,
        hamlet: String,
        answers: HashMap<String, String>,
    ) -> Result<String, HamletError> {
        Ok(self.inner.record(&campaign, &hamlet, &pairs(answers))?)
    }

    /// Changes answers (an empty text clears one). Returns true if the response was already
    /// submitted: the edit is flagged and not counted.
    pub fn edit(&self, id: String, changes: HashMap<String, String>) -> Result<bool, HamletError> {
        Ok(self.inner.edit(&id, &pairs(changes))?)
    }

    /// Submits a response.
    pub fn submit(&self, id: String) -> Result<(), HamletError> {
        Ok(self.inner.submit(&id)?)
    }

    /// Voids a response with a reason.
    pub fn void_response(&self, id: String, reason: String) -> Result<(), HamletError> {
        Ok(self.inner.void(&id, &reason)?)
    }

    /// Records or corrects a meeting tally. Returns its id.
    pub fn record_tally(&self, input: TallyInput) -> Result<String, HamletError> {
        Ok(self.inner.record_tally(&input)?)
    }

    /// The tallies, optionally of one campaign or hamlet.
    pub fn tallies(&self, campaign: Option<String>, hamlet: Option<String>) -> Result<Vec<TallyItem>, HamletError> {
        Ok(self.inner.tallies(campaign.as_deref(), hamlet.as_deref())?)
    }

    /// The responses matching `filter`.
    pub fn responses(&self, filter: ResponseFilter) -> Result<Vec<ResponseItem>, HamletError> {
        Ok(self.inner.responses(&filter)?)
    }

    /// One response.
    pub fn response(&self, id: String) -> Result<ResponseItem, HamletError> {
        Ok(self.inner.response(&id)?)
    }

    /// The collector's responses, counted.
    pub fn counts(&self) -> Result<Counts, HamletError> {
        Ok(self.inner.counts()?)
    }

    /// Syncs with `server`, or the enrolled server when `None`, with default timeouts and retries.
    pub fn sync(&self, server: Option<String>) -> Result<SyncReport, HamletError> {
        Ok(self.inner.sync(server.as_deref(), &SyncOptions::default(), &quiet)?)
    }

    /// Cancels the sync running in another thread: it ends with `Cancelled`.
    pub fn cancel_sync(&self) {
        self.inner.cancel_sync()
    }

    /// Documents whose changes a server refused, with the reason.
    pub fn refusals(&self) -> Result<Vec<RefusedDocument>, HamletError> {
        Ok(self.inner.refusals()?)
    }

    /// Writes everything not yet acknowledged by a server into a bundle file.
    pub fn export_bundle(&self, path: String) -> Result<BundleReport, HamletError> {
        Ok(self.inner.export_bundle(path, &|_, _| ())?)
    }

    /// Applies a bundle file.
    pub fn import_bundle(&self, path: String) -> Result<BundleReport, HamletError> {
        Ok(self.inner.import_bundle(path, &|_, _| ())?)
    }

    /// Today for this collector (`YYYY-MM-DD`).
    pub fn today(&self) -> String {
        self.inner.today()
    }

    /// Makes `day` (`YYYY-MM-DD`) "today" instead of the clock, or the clock again with `None`
    /// (demos and tests replaying a campaign's schedule).
    pub fn set_fixed_today(&self, day: Option<String>) -> Result<(), HamletError> {
        Ok(self.inner.set_fixed_today(day.as_deref())?)
    }

    /// Sets the offset from UTC used for "today" (default +07:00, i.e. 420).
    pub fn set_utc_offset_minutes(&self, minutes: i32) -> Result<(), HamletError> {
        Ok(self.inner.set_utc_offset_minutes(minutes)?)
    }

    /// The chunks of documents set aside when the store was opened because they did not load.
    pub fn set_aside(&self) -> Result<Vec<SetAsideItem>, HamletError> {
        Ok(self.inner.set_aside()?)
    }

    /// The actor id this device writes with (hex).
    pub fn actor_id(&self) -> String {
        self.inner.actor_id()
    }
}
