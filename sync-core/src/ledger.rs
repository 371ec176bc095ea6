//! The hamlet ledger: one Automerge document per campaign × hamlet, written by the collectors of
//! that hamlet.
//!
//! # Schema (`hamlet-ledger/1`)
//!
//! ```text
//! ROOT
//! ├─ schema:    "hamlet-ledger/1"
//! ├─ campaign:  campaign id
//! ├─ hamlet:    unit id
//! ├─ responses: { <response id>: Response }
//! └─ tallies:   { <tally id>: Tally }
//! ```
//!
//! The root and its two maps form the *skeleton*. Every device creates it with the same change —
//! same actor (the document id's bytes), same time (0), same operations — so every copy shares
//! one `responses` map and one `tallies` map. Were two devices to create `responses` each with its
//! own change, Automerge would keep both maps as a conflict and show only one of them: the other
//! device's responses would vanish from view. After the skeleton, each device writes with its own
//! actor id. `docs/schema.md` describes the whole schema for clients in other languages.
//!
//! Every change Hamlet writes is stamped with midnight UTC of the day it was made: nothing finer
//! than a day can be read back from a ledger.

use std::collections::{BTreeMap, BTreeSet};

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, AutomergeError, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};

use crate::campaign::{Campaign, CampaignState};
use crate::day::Day;
use crate::docid::DocumentId;
use crate::form::{AnswerError, AnswerKey, AnswerValue, Level, QuestionKind};
use crate::ids::{CampaignId, PersonId, QuestionId, ResponseId, SubjectId, TallyId, UnitId};
use crate::sealed::SEALED_KEY;

/// The value of the ledger's `schema` key.
pub const LEDGER_SCHEMA: &str = "hamlet-ledger/1";

/// The longest void reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;

/// What went wrong with a ledger operation.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Automerge refused the data or the operation.
    #[error("automerge: {0}")]
    Automerge(#[from] AutomergeError),
    /// The document is not a Hamlet ledger.
    #[error("not a Hamlet ledger: {0}")]
    NotALedger(String),
    /// The campaign given is not the ledger's.
    #[error("ledger belongs to campaign {ledger}, not {given}")]
    WrongCampaign {
        /// The ledger's campaign.
        ledger: CampaignId,
        /// The campaign given.
        given: CampaignId,
    },
    /// The ledger's hamlet is not in the campaign's scope.
    #[error("hamlet {0} is not in the campaign's scope")]
    HamletNotInScope(UnitId),
    /// Responses are recorded and submitted only while the campaign is open.
    #[error("the campaign is {0:?}, not open")]
    NotOpen(CampaignState),
    /// An answer does not fit the form.
    #[error(transparent)]
    Answer(#[from] AnswerError),
    /// A tally does not add up or does not fit the form.
    #[error(transparent)]
    Tally(#[from] TallyError),
    /// A response with this id already exists.
    #[error("response {0} already exists")]
    DuplicateResponse(ResponseId),
    /// No response has this id.
    #[error("no response {0}")]
    UnknownResponse(ResponseId),
    /// The response is voided: it can no longer change.
    #[error("response {0} is voided")]
    Voided(ResponseId),
    /// The response was already submitted.
    #[error("response {0} is already submitted")]
    AlreadySubmitted(ResponseId),
    /// A void needs a reason.
    #[error("a void needs a reason of 1 to {MAX_REASON_CHARS} characters")]
    Reason,
    /// The campaign's answers are sealed: write them with the sealed operations.
    #[error("the campaign's answers are sealed: they are written only as ciphertext")]
    SealedCampaign,
    /// The campaign's answers are not sealed: there is no key to seal them for.
    #[error("the campaign's answers are not sealed")]
    NotSealedCampaign,
    /// A sealed response holds no sealed answers to submit.
    #[error("response {0} holds no sealed answers")]
    NothingSealed(ResponseId),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] crate::sealed::SealError),
}

/// What is wrong with a meeting tally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TallyError {
    /// More ballots returned than issued.
    #[error("{returned} ballots returned but only {issued} issued")]
    ReturnedOverIssued {
        /// Issued.
        issued: u32,
        /// Returned.
        returned: u32,
    },
    /// Valid and invalid ballots do not add up to those returned.
    #[error("{valid} valid + {invalid} invalid ballots do not make the {returned} returned")]
    Unbalanced {
        /// Returned.
        returned: u32,
        /// Valid.
        valid: u32,
        /// Invalid.
        invalid: u32,
    },
    /// A count for a question that is not a rating, a subject not evaluated, or a level of the
    /// other scale.
    #[error("count {key}: {reason}")]
    BadCount {
        /// The count's key, `question/subject/level`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// More answers for one subject than valid ballots.
    #[error("question {question}, subject {subject}: {sum} counted but only {valid} valid ballots")]
    OverValid {
        /// The question.
        question: QuestionId,
        /// The subject.
        subject: SubjectId,
        /// Sum of the counts.
        sum: u64,
        /// Valid ballots.
        valid: u32,
    },
}

/// The ballot counts of a meeting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ballots {
    /// Ballots handed out.
    pub issued: u32,
    /// Ballots put back in the box.
    pub returned: u32,
    /// Returned ballots that count.
    pub valid: u32,
    /// Returned ballots that do not.
    pub invalid: u32,
}

/// Where a tally count goes: rating question, subject, level. Written `question/subject/level`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CountKey {
    /// The rating question.
    pub question: QuestionId,
    /// The subject.
    pub subject: SubjectId,
    /// The level.
    pub level: Level,
}

impl CountKey {
    /// The key as written in the document.
    pub fn encode(&self) -> String {
        format!("{}/{}/{}", self.question, self.subject, self.level.code())
    }

    /// Reads a key written by [`encode`](Self::encode).
    pub fn decode(text: &str) -> Option<CountKey> {
        let mut parts = text.split('/');
        let key = CountKey {
            question: parts.next()?.parse().ok()?,
            subject: parts.next()?.parse().ok()?,
            level: Level::from_code(parts.next()?)?,
        };
        parts.next().is_none().then_some(key)
    }
}

/// A meeting tally as entered by a collector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Identifier (a random UUID).
    pub id: TallyId,
    /// Who entered it.
    pub collector: PersonId,
    /// Ballot counts.
    pub ballots: Ballots,
    /// Counts per rating question, subject and level.
    pub counts: BTreeMap<CountKey, u32>,
}

impl Tally {
    /// Checks the tally against itself, the campaign's form and `hamlet`'s ballot.
    pub fn validate(&self, campaign: &Campaign, hamlet: &UnitId) -> Result<(), TallyError> {
        check_tally(campaign, hamlet, &self.ballots, &self.counts)
    }
}

/// Checks ballot figures and counts against each other, the campaign's form and the ballot of
/// `hamlet` (a count for a subject the hamlet does not evaluate does not fit).
pub fn check_tally(
    campaign: &Campaign,
    hamlet: &UnitId,
    ballots: &Ballots,
    counts: &BTreeMap<CountKey, u32>,
) -> Result<(), TallyError> {
    let b = *ballots;
    if b.returned > b.issued {
        return Err(TallyError::ReturnedOverIssued { issued: b.issued, returned: b.returned });
    }
    if u64::from(b.valid) + u64::from(b.invalid) != u64::from(b.returned) {
        return Err(TallyError::Unbalanced { returned: b.returned, valid: b.valid, invalid: b.invalid });
    }
    let subjects = campaign.ballot(hamlet);
    let mut sums: BTreeMap<(&QuestionId, &SubjectId), u64> = BTreeMap::new();
    for (key, count) in counts {
        let bad = |reason: String| TallyError::BadCount { key: key.encode(), reason };
        match campaign.form.question(&key.question).map(|q| &q.kind) {
            Some(QuestionKind::Rating { levels }) if *levels == key.level.set() => {}
            Some(QuestionKind::Rating { .. }) => return Err(bad("level is not on the question's scale".into())),
            Some(_) => return Err(bad("question is not a rating".into())),
            None => return Err(bad("question is not on the form".into())),
        }
        if !subjects.contains(&key.subject) {
            return Err(bad("subject is not on this hamlet's ballot".into()));
        }
        *sums.entry((&key.question, &key.subject)).or_default() += u64::from(*count);
    }
    for ((question, subject), sum) in sums {
        if sum > u64::from(b.valid) {
            return Err(TallyError::OverValid {
                question: question.clone(),
                subject: subject.clone(),
                sum,
                valid: b.valid,
            });
        }
    }
    Ok(())
}

/// A new response as a collector records it. It holds no resident identity: only answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewResponse {
    /// A random UUID, made by the device.
    pub id: ResponseId,
    /// The collector recording it.
    pub collector: PersonId,
    /// The answers given so far.
    pub answers: BTreeMap<AnswerKey, AnswerValue>,
}

/// A scalar read from a document, independent of Automerge's types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Str(String),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// Null.
    Null,
    /// Bytes: a sealed object (see [`crate::sealed`]).
    Bytes(Vec<u8>),
    /// Anything else (an object, a counter, a timestamp), described.
    Other(String),
}

impl Scalar {
    pub(crate) fn from_value(value: &Value<'_>) -> Scalar {
        match value {
            Value::Object(kind) => Scalar::Other(format!("{kind:?}").to_lowercase()),
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Str(s) => Scalar::Str(s.to_string()),
                ScalarValue::Int(i) => Scalar::Int(*i),
                ScalarValue::Uint(u) => Scalar::Uint(*u),
                ScalarValue::F64(f) => Scalar::F64(*f),
                ScalarValue::Boolean(b) => Scalar::Bool(*b),
                ScalarValue::Null => Scalar::Null,
                ScalarValue::Bytes(b) => Scalar::Bytes(b.clone()),
                other => Scalar::Other(format!("{other:?}")),
            },
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Uint(u) => i64::try_from(*u).ok(),
            // JavaScript numbers arrive as floats when they are not stored as explicit ints.
            Scalar::F64(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    /// The scalar an answer is written as.
    pub fn from_answer(value: &AnswerValue) -> Scalar {
        match value {
            AnswerValue::Level(l) => Scalar::Str(l.code().into()),
            AnswerValue::YesNo(b) => Scalar::Bool(*b),
            AnswerValue::Number(n) => Scalar::Int(*n),
            AnswerValue::Comment(s) => Scalar::Str(s.clone()),
        }
    }

    /// Reads the scalar as an answer to a question of `kind`.
    pub fn to_answer(&self, kind: &QuestionKind) -> Option<AnswerValue> {
        match (kind, self) {
            (QuestionKind::Rating { levels }, Scalar::Str(code)) => {
                Level::from_code(code).filter(|l| l.set() == *levels).map(AnswerValue::Level)
            }
            (QuestionKind::YesNo, Scalar::Bool(b)) => Some(AnswerValue::YesNo(*b)),
            (QuestionKind::Number { .. }, n) => n.as_i64().map(AnswerValue::Number),
            (QuestionKind::Comment { .. }, Scalar::Str(s)) => Some(AnswerValue::Comment(s.clone())),
            _ => None,
        }
    }
}

impl From<&AnswerValue> for ScalarValue {
    fn from(value: &AnswerValue) -> ScalarValue {
        match value {
            AnswerValue::Level(l) => ScalarValue::Str(l.code().into()),
            AnswerValue::YesNo(b) => ScalarValue::Boolean(*b),
            AnswerValue::Number(n) => ScalarValue::Int(*n),
            AnswerValue::Comment(s) => ScalarValue::Str(s.as_str().into()),
        }
    }
}

/// Where a response is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Editable on the device; not counted.
    Draft,
    /// Sealed: its sealed answers are counted.
    Submitted,
    /// Kept, never counted.
    Voided,
}

/// The seal written at submission: the answers as they were, which are the ones counted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SealView {
    /// Day of submission.
    pub on: Option<Day>,
    /// Who submitted.
    pub by: Option<String>,
    /// The answers sealed.
    pub answers: BTreeMap<String, Scalar>,
}

/// A void: why, by whom, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VoidView {
    /// Day of the void.
    pub on: Option<Day>,
    /// Who voided.
    pub by: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// A response as read from a ledger. Fields a foreign client left out or mistyped read as `None`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseView {
    /// The response id.
    pub id: ResponseId,
    /// The form version it answers.
    pub form_version: Option<i64>,
    /// Day recorded.
    pub recorded_on: Option<Day>,
    /// Collector who recorded it.
    pub collector: Option<String>,
    /// Current answers, by `question` or `question/subject` key.
    pub answers: BTreeMap<String, Scalar>,
    /// The seal, once submitted.
    pub seal: Option<SealView>,
    /// The void, once voided.
    pub void: Option<VoidView>,
}

impl ResponseView {
    /// Its life-cycle state. A void outranks a seal; neither makes a draft.
    pub fn status(&self) -> Status {
        if self.void.is_some() {
            Status::Voided
        } else if self.seal.is_some() {
            Status::Submitted
        } else {
            Status::Draft
        }
    }

    /// Answers changed after the seal: each key whose current value differs from the sealed
    /// one, with both values. Empty for drafts and voided responses.
    pub fn edits_after_seal(&self) -> Vec<(String, Option<Scalar>, Option<Scalar>)> {
        let Some(seal) = self.seal.as_ref().filter(|_| self.void.is_none()) else {
            return Vec::new();
        };
        let keys: BTreeSet<&String> = seal.answers.keys().chain(self.answers.keys()).collect();
        keys.into_iter()
            .filter_map(|k| {
                let (sealed, current) = (seal.answers.get(k), self.answers.get(k));
                (sealed != current).then(|| (k.clone(), sealed.cloned(), current.cloned()))
            })
            .collect()
    }
}

/// A tally as read from a ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TallyView {
    /// The tally id.
    pub id: TallyId,
    /// Day entered or last corrected.
    pub recorded_on: Option<Day>,
    /// Collector who entered it.
    pub collector: Option<String>,
    /// Ballot counts; a missing or unreadable count reads as 0.
    pub ballots: Ballots,
    /// Counts by `question/subject/level` key, as stored.
    pub counts: BTreeMap<String, Scalar>,
}

/// One value of a conflict, with the actor (device) that wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictValue {
    /// The value (an object reads as `Other("map")`).
    pub value: Scalar,
    /// Hex actor id of the change that wrote it.
    pub actor: String,
}

/// The same field written concurrently on two or more devices. Automerge keeps every value and
/// shows one; Hamlet lists them all for district staff.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// Keys from the root, for example `["responses", id, "answers", "q/s"]`.
    pub path: Vec<String>,
    /// Every value, the one shown first.
    pub values: Vec<ConflictValue>,
}

/// Whether an edit touched a draft or a sealed response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditOutcome {
    /// A draft changed.
    Draft,
    /// A submitted response changed: the edit is kept but flagged, and not counted.
    FlaggedAfterSeal,
}

/// A hamlet ledger, opened with the actor id of the device writing to it.
#[derive(Debug, Clone)]
pub struct Ledger {
    doc: Automerge,
    id: DocumentId,
    campaign: CampaignId,
    hamlet: UnitId,
    responses: ObjId,
    tallies: ObjId,
}

fn commit_options(day: Day) -> CommitOptions {
    CommitOptions::default().with_time(day.unix_seconds())
}

impl Ledger {
    /// The canonical skeleton of a ledger: the same change on every device.
    pub fn skeleton(campaign: &CampaignId, hamlet: &UnitId) -> Automerge {
        let id = DocumentId::for_ledger(campaign, hamlet);
        let mut doc = Automerge::new().with_actor(ActorId::from(id.as_bytes()));
        let written = doc.transact_with::<_, _, AutomergeError, _>(
            |_| CommitOptions::default().with_time(0),
            |tx| {
                tx.put(ROOT, "schema", LEDGER_SCHEMA)?;
                tx.put(ROOT, "campaign", campaign.as_str())?;
                tx.put(ROOT, "hamlet", hamlet.as_str())?;
                tx.put_object(ROOT, "responses", ObjType::Map)?;
                tx.put_object(ROOT, "tallies", ObjType::Map)?;
                Ok(())
            },
        );
        // Writing fixed keys at the root of an empty document has no way to fail.
        #[allow(clippy::expect_used)]
        written.map_err(|f| f.error).expect("skeleton of an empty document");
        doc
    }

    /// A new ledger for `hamlet` in `campaign`, written by `actor` from now on.
    pub fn create(campaign: &CampaignId, hamlet: &UnitId, actor: ActorId) -> Ledger {
        let mut doc = Ledger::skeleton(campaign, hamlet);
        doc.set_actor(actor);
        // The skeleton was just written with the expected shape.
        #[allow(clippy::expect_used)]
        Ledger::from_doc(doc).expect("a fresh skeleton is a ledger")
    }

    /// Loads a saved ledger (whole or as concatenated chunks) to be written by `actor`.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Ledger, LedgerError> {
        let mut doc = Automerge::load(bytes)?;
        doc.set_actor(actor);
        Ledger::from_doc(doc)
    }

    /// Wraps a document that holds a ledger, checking its skeleton.
    pub fn from_doc(doc: Automerge) -> Result<Ledger, LedgerError> {
        let text = |key: &str| -> Result<String, LedgerError> {
            match doc.get(ROOT, key)?.map(|(v, _)| Scalar::from_value(&v)) {
                Some(Scalar::Str(s)) => Ok(s),
                _ => Err(LedgerError::NotALedger(format!("root key {key:?} is missing or not a string"))),
            }
        };
        let map = |key: &str| -> Result<ObjId, LedgerError> {
            match doc.get(ROOT, key)? {
                Some((Value::Object(ObjType::Map), id)) => Ok(id),
                _ => Err(LedgerError::NotALedger(format!("root key {key:?} is missing or not a map"))),
            }
        };
        let schema = text("schema")?;
        if schema != LEDGER_SCHEMA {
            return Err(LedgerError::NotALedger(format!("schema {schema:?}, expected {LEDGER_SCHEMA:?}")));
        }
        let campaign = CampaignId::new(text("campaign")?).map_err(|e| LedgerError::NotALedger(e.to_string()))?;
        let hamlet = UnitId::new(text("hamlet")?).map_err(|e| LedgerError::NotALedger(e.to_string()))?;
        let responses = map("responses")?;
        let tallies = map("tallies")?;
        Ok(Ledger { id: DocumentId::for_ledger(&campaign, &hamlet), doc, campaign, hamlet, responses, tallies })
    }

    /// Opens `doc` as the ledger of `hamlet` in `campaign`: the identity the caller knows (the
    /// server from the document id it stored the document under), not what the root claims.
    /// The collections read are the canonical skeleton's objects, even where a change has put
    /// other objects at the root; a document without the canonical skeleton is not a ledger.
    pub fn open(doc: Automerge, campaign: &CampaignId, hamlet: &UnitId) -> Result<Ledger, LedgerError> {
        let id = DocumentId::for_ledger(campaign, hamlet);
        let actor = ActorId::from(id.as_bytes().as_slice());
        // The skeleton's change puts schema, campaign, hamlet, then makes responses (op 4) and
        // tallies (op 5); the actor index is a hint Automerge checks.
        let canonical = |counter: u64| -> Result<ObjId, LedgerError> {
            let obj = ObjId::Id(counter, actor.clone(), 0);
            match doc.object_type(&obj) {
                Ok(ObjType::Map) => Ok(obj),
                _ => Err(LedgerError::NotALedger("the canonical skeleton is missing".into())),
            }
        };
        let (responses, tallies) = (canonical(4)?, canonical(5)?);
        Ok(Ledger { id, doc, campaign: campaign.clone(), hamlet: hamlet.clone(), responses, tallies })
    }

    /// The canonical `responses` map.
    pub fn responses_obj(&self) -> &ObjId {
        &self.responses
    }

    /// The document id, derived from campaign and hamlet.
    pub fn id(&self) -> DocumentId {
        self.id
    }

    /// The campaign.
    pub fn campaign(&self) -> &CampaignId {
        &self.campaign
    }

    /// The hamlet.
    pub fn hamlet(&self) -> &UnitId {
        &self.hamlet
    }

    /// The Automerge document, to save or sync.
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// The Automerge document, to merge changes into. Changes that break the skeleton cannot
    /// come from merging: the skeleton's objects are shared by every copy.
    pub fn doc_mut(&mut self) -> &mut Automerge {
        &mut self.doc
    }

    /// The document, giving up the ledger view.
    pub fn into_doc(self) -> Automerge {
        self.doc
    }

    fn check_campaign(&self, campaign: &Campaign, must_be_open: bool) -> Result<(), LedgerError> {
        if campaign.id != self.campaign {
            return Err(LedgerError::WrongCampaign { ledger: self.campaign.clone(), given: campaign.id.clone() });
        }
        if !campaign.has_hamlet(&self.hamlet) {
            return Err(LedgerError::HamletNotInScope(self.hamlet.clone()));
        }
        if must_be_open && campaign.state != CampaignState::Open {
            return Err(LedgerError::NotOpen(campaign.state));
        }
        Ok(())
    }

    fn write<O>(
        &mut self,
        day: Day,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<O, LedgerError>,
    ) -> Result<O, LedgerError> {
        self.doc.transact_with(|_| commit_options(day), f).map(|ok| ok.result).map_err(|failed| failed.error)
    }

    fn response_obj(&self, id: &ResponseId) -> Result<ObjId, LedgerError> {
        match self.doc.get(&self.responses, id.as_str())? {
            Some((Value::Object(ObjType::Map), obj)) => Ok(obj),
            _ => Err(LedgerError::UnknownResponse(id.clone())),
        }
    }

    /// Records a new draft response on `today`. A campaign whose answers are sealed refuses it
    /// ([`LedgerError::SealedCampaign`]): use [`record_sealed`](Self::record_sealed).
    pub fn record(&mut self, campaign: &Campaign, response: &NewResponse, today: Day) -> Result<(), LedgerError> {
        if campaign.seal_key().is_some() {
            return Err(LedgerError::SealedCampaign);
        }
        self.record_checked(campaign, response, today, None)
    }

    /// Records a new draft response on `today` for a campaign whose answers are sealed: its
    /// answers are written only as the sealed object of version 1, made with `entropy` (32 fresh
    /// random bytes). The caller keeps the plaintext.
    pub fn record_sealed(
        &mut self,
        campaign: &Campaign,
        response: &NewResponse,
        today: Day,
        entropy: [u8; 32],
    ) -> Result<(), LedgerError> {
        self.record_checked(campaign, response, today, Some(entropy))
    }

    fn record_checked(
        &mut self,
        campaign: &Campaign,
        response: &NewResponse,
        today: Day,
        entropy: Option<[u8; 32]>,
    ) -> Result<(), LedgerError> {
        self.check_campaign(campaign, true)?;
        if self.doc.get(&self.responses, response.id.as_str())?.is_some() {
            return Err(LedgerError::DuplicateResponse(response.id.clone()));
        }
        let subjects = campaign.ballot(&self.hamlet);
        for (key, value) in &response.answers {
            campaign.form.check_answer(&subjects, key, value)?;
        }
        let sealed = match entropy {
            Some(entropy) => Some(seal_answers(campaign, &response.id, 1, &response.answers, entropy)?),
            None => None,
        };
        let responses = self.responses.clone();
        self.write(today, |tx| {
            let r = tx.put_object(&responses, response.id.as_str(), ObjType::Map)?;
            tx.put(&r, "form_version", i64::from(campaign.form.version))?;
            tx.put(&r, "recorded_on", today.to_string())?;
            tx.put(&r, "collector", response.collector.as_str())?;
            let answers = tx.put_object(&r, "answers", ObjType::Map)?;
            match sealed {
                Some(sealed) => tx.put(&answers, SEALED_KEY, ScalarValue::Bytes(sealed))?,
                None => {
                    for (key, value) in &response.answers {
                        tx.put(&answers, key.to_string(), ScalarValue::from(value))?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The version of the sealed object a response's answers hold now (0 for none).
    pub fn sealed_version(&self, id: &ResponseId) -> Result<u32, LedgerError> {
        let obj = self.response_obj(id)?;
        let Some(answers) = self.map_at(&obj, "answers")? else { return Ok(0) };
        Ok(match self.doc.get(&answers, SEALED_KEY)? {
            Some((Value::Scalar(v), _)) => match v.as_ref() {
                ScalarValue::Bytes(b) => crate::sealed::version_of(b).unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        })
    }

    /// Writes the next version of a sealed response's answers: `answers` is the whole set the
    /// response now has (the ledger cannot be read to merge an edit into it). As for
    /// [`edit`](Self::edit), a voided response cannot change and a submitted one's edit is
    /// flagged.
    pub fn edit_sealed(
        &mut self,
        campaign: &Campaign,
        id: &ResponseId,
        answers: &BTreeMap<AnswerKey, AnswerValue>,
        today: Day,
        entropy: [u8; 32],
    ) -> Result<EditOutcome, LedgerError> {
        self.check_campaign(campaign, false)?;
        if campaign.seal_key().is_none() {
            return Err(LedgerError::NotSealedCampaign);
        }
        let obj = self.response_obj(id)?;
        if self.doc.get(&obj, "void")?.is_some() {
            return Err(LedgerError::Voided(id.clone()));
        }
        let subjects = campaign.ballot(&self.hamlet);
        for (key, value) in answers {
            campaign.form.check_answer(&subjects, key, value)?;
        }
        let version = self.sealed_version(id)?.saturating_add(1);
        let sealed = seal_answers(campaign, id, version, answers, entropy)?;
        let was_sealed = self.doc.get(&obj, "seal")?.is_some();
        let map = self.map_at(&obj, "answers")?;
        self.write(today, |tx| {
            let map = match map {
                Some(a) => a,
                None => tx.put_object(&obj, "answers", ObjType::Map)?,
            };
            tx.put(&map, SEALED_KEY, ScalarValue::Bytes(sealed))?;
            Ok(())
        })?;
        Ok(if was_sealed { EditOutcome::FlaggedAfterSeal } else { EditOutcome::Draft })
    }

    /// Sets (`Some`) or clears (`None`) answers of a response. A voided response cannot change;
    /// a submitted one can, but the edit is flagged and its sealed answers stay the counted ones.
    pub fn edit(
        &mut self,
        campaign: &Campaign,
        id: &ResponseId,
        changes: &[(AnswerKey, Option<AnswerValue>)],
        today: Day,
    ) -> Result<EditOutcome, LedgerError> {
        self.check_campaign(campaign, false)?;
        if campaign.seal_key().is_some() {
            return Err(LedgerError::SealedCampaign);
        }
        let obj = self.response_obj(id)?;
        if self.doc.get(&obj, "void")?.is_some() {
            return Err(LedgerError::Voided(id.clone()));
        }
        let subjects = campaign.ballot(&self.hamlet);
        for (key, value) in changes {
            match value {
                Some(value) => campaign.form.check_answer(&subjects, key, value)?,
                None => campaign.form.check_key(&subjects, key).map(|_| ())?,
            }
        }
        let sealed = self.doc.get(&obj, "seal")?.is_some();
        let answers = match self.doc.get(&obj, "answers")? {
            Some((Value::Object(ObjType::Map), a)) => Some(a),
            _ => None,
        };
        self.write(today, |tx| {
            let answers = match answers {
                Some(a) => a,
                None => tx.put_object(&obj, "answers", ObjType::Map)?,
            };
            for (key, value) in changes {
                match value {
                    Some(value) => tx.put(&answers, key.to_string(), ScalarValue::from(value))?,
                    None => tx.delete(&answers, key.to_string())?,
                }
            }
            Ok(())
        })?;
        Ok(if sealed { EditOutcome::FlaggedAfterSeal } else { EditOutcome::Draft })
    }

    /// Submits (seals) a response: its current answers are copied into the seal and are the ones
    /// counted from now on. Every required answer must be present.
    pub fn submit(
        &mut self,
        campaign: &Campaign,
        id: &ResponseId,
        by: &PersonId,
        today: Day,
    ) -> Result<(), LedgerError> {
        self.check_campaign(campaign, true)?;
        let view = self.response(id)?.ok_or_else(|| LedgerError::UnknownResponse(id.clone()))?;
        match view.status() {
            Status::Voided => return Err(LedgerError::Voided(id.clone())),
            Status::Submitted => return Err(LedgerError::AlreadySubmitted(id.clone())),
            Status::Draft => {}
        }
        if campaign.seal_key().is_none() {
            for key in campaign.form.required_keys(&campaign.ballot(&self.hamlet)) {
                if !view.answers.contains_key(&key.to_string()) {
                    return Err(AnswerError::Missing(key).into());
                }
            }
        } else if !view.answers.contains_key(SEALED_KEY) {
            // The device checks the required answers against its plaintext; the ledger can only
            // tell that something was sealed.
            return Err(LedgerError::NothingSealed(id.clone()));
        }
        let obj = self.response_obj(id)?;
        let answers = match self.doc.get(&obj, "answers")? {
            Some((Value::Object(ObjType::Map), a)) => {
                self.doc.map_range(&a, ..).map(|item| (item.key.to_string(), item.value.into_value())).collect()
            }
            _ => Vec::new(),
        };
        self.write(today, |tx| {
            let seal = tx.put_object(&obj, "seal", ObjType::Map)?;
            tx.put(&seal, "on", today.to_string())?;
            tx.put(&seal, "by", by.as_str())?;
            let sealed = tx.put_object(&seal, "answers", ObjType::Map)?;
            for (key, value) in answers {
                if let Value::Scalar(s) = value {
                    tx.put(&sealed, key, s.into_owned())?;
                }
            }
            Ok(())
        })
    }

    /// Voids a response: it is kept, with the reason and who voided it, and never counted.
    pub fn void(&mut self, id: &ResponseId, reason: &str, by: &PersonId, today: Day) -> Result<(), LedgerError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(LedgerError::Reason);
        }
        let obj = self.response_obj(id)?;
        if self.doc.get(&obj, "void")?.is_some() {
            return Err(LedgerError::Voided(id.clone()));
        }
        self.write(today, |tx| {
            let void = tx.put_object(&obj, "void", ObjType::Map)?;
            tx.put(&void, "on", today.to_string())?;
            tx.put(&void, "by", by.as_str())?;
            tx.put(&void, "reason", reason)?;
            Ok(())
        })
    }

    /// Records a meeting tally, or corrects it when one with the same id exists: only the
    /// fields that differ are written, and counts left out are removed.
    pub fn record_tally(&mut self, campaign: &Campaign, tally: &Tally, today: Day) -> Result<(), LedgerError> {
        self.check_campaign(campaign, false)?;
        tally.validate(campaign, &self.hamlet)?;
        let existing = self.tally(&tally.id)?;
        let tallies = self.tallies.clone();
        let old_obj = match self.doc.get(&tallies, tally.id.as_str())? {
            Some((Value::Object(ObjType::Map), obj)) => Some(obj),
            _ => None,
        };
        let old_counts = match &old_obj {
            Some(obj) => match self.doc.get(obj, "counts")? {
                Some((Value::Object(ObjType::Map), c)) => Some(c),
                _ => None,
            },
            None => None,
        };
        self.write(today, |tx| {
            let obj = match old_obj {
                Some(obj) => obj,
                None => tx.put_object(&tallies, tally.id.as_str(), ObjType::Map)?,
            };
            let old = existing.as_ref();
            tx.put(&obj, "recorded_on", today.to_string())?;
            if old.and_then(|t| t.collector.as_deref()) != Some(tally.collector.as_str()) {
                tx.put(&obj, "collector", tally.collector.as_str())?;
            }
            let b = tally.ballots;
            let old_b = old.map(|t| t.ballots);
            for (key, value, before) in [
                ("ballots_issued", b.issued, old_b.map(|o| o.issued)),
                ("ballots_returned", b.returned, old_b.map(|o| o.returned)),
                ("ballots_valid", b.valid, old_b.map(|o| o.valid)),
                ("ballots_invalid", b.invalid, old_b.map(|o| o.invalid)),
            ] {
                if before != Some(value) {
                    tx.put(&obj, key, i64::from(value))?;
                }
            }
            let counts = match old_counts {
                Some(c) => c,
                None => tx.put_object(&obj, "counts", ObjType::Map)?,
            };
            let new: BTreeMap<String, u32> = tally.counts.iter().map(|(k, v)| (k.encode(), *v)).collect();
            if let Some(old) = old {
                for key in old.counts.keys().filter(|k| !new.contains_key(*k)) {
                    tx.delete(&counts, key.as_str())?;
                }
            }
            for (key, value) in &new {
                let before = old.and_then(|o| o.counts.get(key)).and_then(Scalar::as_i64);
                if before != Some(i64::from(*value)) {
                    tx.put(&counts, key.as_str(), i64::from(*value))?;
                }
            }
            Ok(())
        })
    }

    /// Reads a value as a scalar. A text object (what JavaScript's Automerge makes of a plain
    /// string) reads as its string, so a client that forgot `ImmutableString` is still read.
    fn read(&self, value: Value<'_>, id: &ObjId) -> Scalar {
        match value {
            Value::Object(ObjType::Text) => Scalar::Str(self.doc.text(id).unwrap_or_default()),
            other => Scalar::from_value(&other),
        }
    }

    fn scalar_at(&self, obj: &ObjId, key: &str) -> Result<Option<Scalar>, AutomergeError> {
        Ok(self.doc.get(obj, key)?.map(|(v, id)| self.read(v, &id)))
    }

    fn text_at(&self, obj: &ObjId, key: &str) -> Result<Option<String>, AutomergeError> {
        Ok(self.scalar_at(obj, key)?.and_then(|s| s.as_str().map(str::to_owned)))
    }

    fn day_at(&self, obj: &ObjId, key: &str) -> Result<Option<Day>, AutomergeError> {
        Ok(self.text_at(obj, key)?.and_then(|s| s.parse().ok()))
    }

    fn map_at(&self, obj: &ObjId, key: &str) -> Result<Option<ObjId>, AutomergeError> {
        Ok(match self.doc.get(obj, key)? {
            Some((Value::Object(ObjType::Map), id)) => Some(id),
            _ => None,
        })
    }

    fn scalars(&self, obj: Option<&ObjId>) -> BTreeMap<String, Scalar> {
        obj.map(|o| {
            self.doc
                .map_range(o, ..)
                .map(|item| {
                    let id = item.id();
                    (item.key.to_string(), self.read(item.value.into_value(), &id))
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// The response with this id, if any.
    pub fn response(&self, id: &ResponseId) -> Result<Option<ResponseView>, LedgerError> {
        let obj = match self.doc.get(&self.responses, id.as_str())? {
            Some((Value::Object(ObjType::Map), obj)) => obj,
            _ => return Ok(None),
        };
        let answers = self.map_at(&obj, "answers")?;
        let seal = match self.map_at(&obj, "seal")? {
            Some(s) => Some(SealView {
                on: self.day_at(&s, "on")?,
                by: self.text_at(&s, "by")?,
                answers: self.scalars(self.map_at(&s, "answers")?.as_ref()),
            }),
            None => None,
        };
        let void = match self.map_at(&obj, "void")? {
            Some(v) => Some(VoidView {
                on: self.day_at(&v, "on")?,
                by: self.text_at(&v, "by")?,
                reason: self.text_at(&v, "reason")?,
            }),
            None => None,
        };
        Ok(Some(ResponseView {
            id: id.clone(),
            form_version: self.scalar_at(&obj, "form_version")?.and_then(|s| s.as_i64()),
            recorded_on: self.day_at(&obj, "recorded_on")?,
            collector: self.text_at(&obj, "collector")?,
            answers: self.scalars(answers.as_ref()),
            seal,
            void,
        }))
    }

    /// The ids of every response, and the keys that are not valid response ids.
    pub fn response_ids(&self) -> (Vec<ResponseId>, Vec<String>) {
        let mut ids = Vec::new();
        let mut bad = Vec::new();
        for key in self.doc.keys(&self.responses) {
            match ResponseId::new(key.as_str()) {
                Ok(id) => ids.push(id),
                Err(_) => bad.push(key),
            }
        }
        (ids, bad)
    }

    /// Every response, in id order.
    pub fn responses(&self) -> Result<Vec<ResponseView>, LedgerError> {
        let mut out = Vec::new();
        for id in self.response_ids().0 {
            out.extend(self.response(&id)?);
        }
        Ok(out)
    }

    /// The tally with this id, if any.
    pub fn tally(&self, id: &TallyId) -> Result<Option<TallyView>, LedgerError> {
        let obj = match self.doc.get(&self.tallies, id.as_str())? {
            Some((Value::Object(ObjType::Map), obj)) => obj,
            _ => return Ok(None),
        };
        let count = |key: &str| -> Result<u32, LedgerError> {
            Ok(self.scalar_at(&obj, key)?.and_then(|s| s.as_i64()).and_then(|n| u32::try_from(n).ok()).unwrap_or(0))
        };
        Ok(Some(TallyView {
            id: id.clone(),
            recorded_on: self.day_at(&obj, "recorded_on")?,
            collector: self.text_at(&obj, "collector")?,
            ballots: Ballots {
                issued: count("ballots_issued")?,
                returned: count("ballots_returned")?,
                valid: count("ballots_valid")?,
                invalid: count("ballots_invalid")?,
            },
            counts: self.scalars(self.map_at(&obj, "counts")?.as_ref()),
        }))
    }

    /// The ids of every tally that has a valid id.
    pub fn tally_ids(&self) -> Vec<TallyId> {
        self.doc.keys(&self.tallies).filter_map(|k| TallyId::new(k).ok()).collect()
    }

    /// Every tally, in id order.
    pub fn tallies(&self) -> Result<Vec<TallyView>, LedgerError> {
        let mut out = Vec::new();
        for id in self.tally_ids() {
            out.extend(self.tally(&id)?);
        }
        Ok(out)
    }

    /// Every conflict in the ledger.
    pub fn conflicts(&self) -> Result<Vec<Conflict>, LedgerError> {
        let mut out = Vec::new();
        self.collect_conflicts(&ROOT, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    /// The conflicts of one response or tally (`collection` is "responses" or "tallies").
    pub fn conflicts_of(&self, collection: &str, id: &str) -> Result<Vec<Conflict>, LedgerError> {
        let parent = if collection == "responses" { &self.responses } else { &self.tallies };
        let mut out = Vec::new();
        let mut path = vec![collection.to_owned()];
        self.conflicts_at(parent, id, &mut path, &mut out)?;
        Ok(out)
    }

    fn collect_conflicts(
        &self,
        obj: &ObjId,
        path: &mut Vec<String>,
        out: &mut Vec<Conflict>,
    ) -> Result<(), AutomergeError> {
        for key in self.doc.keys(obj) {
            self.conflicts_at(obj, &key, path, out)?;
        }
        Ok(())
    }

    fn conflicts_at(
        &self,
        obj: &ObjId,
        key: &str,
        path: &mut Vec<String>,
        out: &mut Vec<Conflict>,
    ) -> Result<(), AutomergeError> {
        let values = self.doc.get_all(obj, key)?;
        path.push(key.to_owned());
        if values.len() > 1 {
            // `get` shows the winner; list it first so staff see which value is displayed.
            let winner = self.doc.get(obj, key)?.map(|(_, id)| id);
            let mut listed: Vec<ConflictValue> = Vec::with_capacity(values.len());
            for (value, id) in &values {
                let entry = ConflictValue { value: Scalar::from_value(value), actor: actor_of(id) };
                if Some(id) == winner.as_ref() { listed.insert(0, entry) } else { listed.push(entry) }
            }
            out.push(Conflict { path: path.clone(), values: listed });
        }
        if let Some((Value::Object(ObjType::Map), child)) = self.doc.get(obj, key)? {
            self.collect_conflicts(&child, path, out)?;
        }
        path.pop();
        Ok(())
    }
}

fn seal_answers(
    campaign: &Campaign,
    response: &ResponseId,
    version: u32,
    answers: &BTreeMap<AnswerKey, AnswerValue>,
    entropy: [u8; 32],
) -> Result<Vec<u8>, LedgerError> {
    let key = campaign.seal_key().ok_or(LedgerError::NotSealedCampaign)?;
    let binding = crate::sealed::Binding { campaign: &campaign.id, response, version };
    Ok(crate::sealed::seal(key, &binding, answers, entropy)?)
}

fn actor_of(id: &ObjId) -> String {
    match id {
        ObjId::Root => String::new(),
        ObjId::Id(_, actor, _) => actor.to_hex_string(),
    }
}
