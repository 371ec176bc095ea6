//! Plain records the collector library returns and takes: what a phone's screens show, what the
//! command line prints as JSON, and what the UniFFI bindings pass across (as records).

use std::collections::HashMap;

use serde::Serialize;

/// A campaign the collector is assigned to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct CampaignView {
    /// Campaign id.
    pub id: String,
    /// The campaign document's URL (`automerge:…`).
    pub document: String,
    /// Name in Vietnamese (empty until the campaign document has been downloaded).
    pub name_vi: String,
    /// Name in English (falls back to Vietnamese).
    pub name_en: String,
    /// `draft`, `open`, `closed`, `published`, or `unknown` until downloaded.
    pub state: String,
    /// Whether the campaign document is here (needed to record).
    pub downloaded: bool,
    /// First day of collection, once known.
    pub opens_on: Option<String>,
    /// Last day of collection, once known.
    pub closes_on: Option<String>,
    /// The hamlets assigned to this collector in this campaign.
    pub hamlets: Vec<HamletView>,
}

/// An assigned hamlet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct HamletView {
    /// Unit id.
    pub id: String,
    /// Voters expected, once the campaign is known.
    pub expected_voters: Option<u32>,
    /// The subjects its residents evaluate (its ballot), once the campaign is known: every
    /// subject under a schema version 1 campaign; none for a hamlet not in the campaign.
    pub ballot: Vec<String>,
    /// The ledger's document URL.
    pub document: String,
}

/// One choice of a rating question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct ChoiceView {
    /// The level code stored (`tin_nhiem_cao`…).
    pub code: String,
    /// Vietnamese label.
    pub label_vi: String,
    /// English label.
    pub label_en: String,
}

/// One answer a response can hold: a question, and a subject for per-subject questions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct AnswerSlot {
    /// The answer key (`question` or `question/subject`).
    pub key: String,
    /// The question id.
    pub question: String,
    /// The subject id, for per-subject questions.
    pub subject: Option<String>,
    /// The subject's name and position, for display.
    pub subject_name: Option<String>,
    /// The question in Vietnamese.
    pub label_vi: String,
    /// The question in English.
    pub label_en: String,
    /// `rating`, `yes_no`, `number` or `comment`.
    pub kind: String,
    /// Whether a response needs it to be submitted.
    pub required: bool,
    /// The levels, for a rating.
    pub choices: Vec<ChoiceView>,
    /// Smallest number accepted.
    pub min: Option<i64>,
    /// Largest number accepted.
    pub max: Option<i64>,
    /// Longest comment accepted, in characters.
    pub max_chars: Option<u32>,
}

/// A response as the collector sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct ResponseItem {
    /// Response id (a UUID).
    pub id: String,
    /// Campaign id.
    pub campaign: String,
    /// Hamlet id.
    pub hamlet: String,
    /// Who recorded it.
    pub collector: Option<String>,
    /// `draft`, `submitted` or `voided`.
    pub status: String,
    /// Day recorded.
    pub recorded_on: Option<String>,
    /// Whether a server acknowledged the last change made to it on this device (always true
    /// for responses that came from elsewhere).
    pub acknowledged: bool,
    /// Current answers, by key, as text.
    pub answers: HashMap<String, String>,
    /// The answers sealed at submission (the ones counted), by key, as text.
    pub sealed_answers: HashMap<String, String>,
    /// Answer keys changed after submission: kept, flagged, not counted.
    pub edited_after_submission: Vec<String>,
    /// Why it was voided.
    pub void_reason: Option<String>,
}

/// Which responses to list; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct ResponseFilter {
    /// Only this campaign.
    pub campaign: Option<String>,
    /// Only this hamlet.
    pub hamlet: Option<String>,
    /// Only this status (`draft`, `submitted`, `voided`).
    pub status: Option<String>,
    /// Only recorded on this day (`YYYY-MM-DD`).
    pub recorded_on: Option<String>,
    /// Only the enrolled collector's own responses.
    pub mine_only: bool,
}

/// A meeting tally to record, or to correct (same id).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct TallyInput {
    /// The tally to correct; `None` records a new one.
    pub id: Option<String>,
    /// Campaign id.
    pub campaign: String,
    /// Hamlet id.
    pub hamlet: String,
    /// Ballots handed out.
    pub issued: u32,
    /// Ballots returned.
    pub returned: u32,
    /// Valid ballots.
    pub valid: u32,
    /// Invalid ballots.
    pub invalid: u32,
    /// Counts by `question/subject/level`.
    pub counts: HashMap<String, u32>,
}

/// A meeting tally as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct TallyItem {
    /// Tally id.
    pub id: String,
    /// Campaign id.
    pub campaign: String,
    /// Hamlet id.
    pub hamlet: String,
    /// Day entered or last corrected.
    pub recorded_on: Option<String>,
    /// Who entered it.
    pub collector: Option<String>,
    /// Ballots handed out.
    pub issued: u32,
    /// Ballots returned.
    pub returned: u32,
    /// Valid ballots.
    pub valid: u32,
    /// Invalid ballots.
    pub invalid: u32,
    /// Counts by `question/subject/level`.
    pub counts: HashMap<String, u32>,
}

/// The collector's own responses, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct Counts {
    /// Recorded today, whatever their status.
    pub recorded_today: u64,
    /// Drafts.
    pub drafts: u64,
    /// Submitted, not yet acknowledged by a server.
    pub pending: u64,
    /// Submitted and acknowledged.
    pub acknowledged: u64,
    /// Voided.
    pub voided: u64,
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct SyncReport {
    /// The server's WebSocket URL.
    pub server: String,
    /// Documents synced.
    pub documents: u32,
    /// Documents the server does not have (a campaign not published to it yet).
    pub unavailable: Vec<String>,
    /// Changes sent, over all attempts.
    pub changes_sent: u64,
    /// Changes received, over all attempts.
    pub changes_received: u64,
    /// Bytes of protocol frames sent, over all attempts.
    pub bytes_sent: u64,
    /// Bytes of protocol frames received, over all attempts.
    pub bytes_received: u64,
    /// Round trips of the successful attempt: the most replies any document needed.
    pub round_trips: u32,
    /// Connections made (1 when nothing failed).
    pub attempts: u32,
    /// Wall-clock time, milliseconds.
    pub duration_ms: u64,
    /// The collector's responses acknowledged by this sync.
    pub newly_acknowledged: u64,
    /// The counts after the sync.
    pub counts: Counts,
    /// Documents whose changes the server refused, with its reason: their sync ended, the
    /// others went on. The refused changes stay on the phone (and in an exported bundle).
    pub refused: Vec<RefusedDocument>,
}

/// A document whose changes a server refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct RefusedDocument {
    /// The document's URL (`automerge:…`).
    pub document: String,
    /// The server storage that refused it.
    pub server: String,
    /// What the server said.
    pub reason: String,
}

/// What exporting or importing a bundle did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct BundleReport {
    /// The file.
    pub path: String,
    /// Documents written, or applied.
    pub documents: u32,
    /// Changes written, or gained.
    pub changes: u64,
    /// Size of the file.
    pub bytes: u64,
    /// Documents in the bundle this device does not keep (not its hamlets): left out.
    pub skipped: Vec<String>,
    /// Documents whose changes wait for others this device lacks (sync, then import again).
    pub incomplete: Vec<String>,
    /// Documents whose changes the server would refuse from this phone (a campaign document,
    /// which only the district writes; a ledger of a hamlet no longer assigned): not applied.
    pub refused: Vec<String>,
}

/// A campaign and the hamlets assigned in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct AssignmentView {
    /// Campaign id.
    pub campaign: String,
    /// The campaign document's URL.
    pub document: String,
    /// Hamlet ids.
    pub hamlets: Vec<String>,
}

/// The device's enrollment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct EnrollmentView {
    /// The server address.
    pub server: String,
    /// The collector's person id.
    pub collector: String,
    /// The device name.
    pub device_name: String,
    /// Whether the device holds a token (false when set up for an open server).
    pub has_token: bool,
    /// The SHA-256 fingerprint (`AB:CD:…`) of the server certificate this device pinned at
    /// enrollment, if the code carried one.
    pub certificate_pin: Option<String>,
    /// What is assigned.
    pub campaigns: Vec<AssignmentView>,
}

/// A stored chunk that did not load when the store was opened, kept apart (never loaded again,
/// never deleted) with the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, uniffi::Record)]
pub struct SetAsideItem {
    /// The document it belonged to.
    pub document: String,
    /// Its place in the store's writing order.
    pub seq: i64,
    /// Its size.
    pub bytes: u64,
    /// Why it did not load.
    pub reason: String,
}
