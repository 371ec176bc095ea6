//! The projection: from a ledger to the rows the district server stores and aggregates.
//!
//! A pure function of the ledger, its campaign, and what the caller knows of its actors
//! ([`Authors`]). [`project`] lists every row;
//! [`project_since`] lists only the rows of the responses and tallies touched by the changes
//! between two sets of heads, found from Automerge's patches rather than by re-reading
//! everything.
//!
//! # Contract for storage
//!
//! Rows belong to an [`Entity`] (a response, a tally, or the ledger itself). For a
//! [`Projection`] with `full == true`, replace every row of the ledger; otherwise, for each
//! entity in `entities`, delete all of that entity's rows and insert those given. Both are
//! idempotent: applying a projection twice gives the same tables, and an entity listed with no
//! rows has gone.
//!
//! # What is counted
//!
//! Who wrote what comes from the changes' actors ([`crate::authorship`]): a response belongs to
//! the device that made it, and only that device's writes inside it count. What another device
//! wrote there is flagged ([`FlagKind::ForeignWrite`]) and changes nothing. Who recorded,
//! submitted or voided a response is the person of the device behind the actor, never the
//! `collector` or `by` strings in the document.
//!
//! A draft's answers are listed with `counted = false`. A submitted response's *sealed* answers
//! are listed with `counted = true`: those of the owner's first seal, as its own change wrote
//! them. A later write to a seal, by anyone, is flagged ([`FlagKind::SealRewritten`]) and never
//! counted; edits of the answers after the seal are flagged ([`FlagKind::EditedAfterSeal`]) and
//! never counted. A response the owner voided keeps its rows, all with `counted = false`. Values
//! that do not fit the form are not listed as answers but flagged.
//!
//! Only what the campaign's rules allow counts; the rest is kept and flagged: an answer or a
//! tally's count about a subject not on the hamlet's ballot ([`FlagKind::OutsideBallot`]) is
//! never counted (the response's other answers are); a response on
//! another form version ([`FlagKind::FormVersion`]), or recorded before the schedule opens or
//! submitted after it closes ([`FlagKind::OutsideSchedule`]), has no counted answer. A tally is
//! counted (`TallyRow::counted`) only when nothing is flagged on it: figures that do not add up,
//! more ballots returned than the hamlet's expected voters, or the same figures as a tally with
//! a smaller id ([`FlagKind::TallyDuplicate`], a retry that made a new id). The server may count
//! a flagged tally once staff reviewed it. Since a duplicate depends on the other tallies, a
//! change to any tally re-reads them all (a hamlet holds a handful).
//!
//! The ledger's campaign and hamlet are the caller's ([`Ledger::open`]): never read from the
//! document's root.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, PatchAction, Prop, ROOT, ReadDoc, Value};
use serde::{Deserialize, Serialize};

use crate::authorship::{Authors, History, ResponseWrites, Write};
use crate::campaign::Campaign;
use crate::day::Day;
use crate::form::{AnswerKey, AnswerValue, Level};
use crate::ids::{CampaignId, QuestionId, ResponseId, SubjectId, TallyId, UnitId};
use crate::ledger::{
    Ballots, Conflict, ConflictValue, CountKey, Ledger, LedgerError, ResponseView, Scalar, SealView, Status, VoidView,
};
use crate::sealed::{SEALED_KEY, SecretKey};

/// What a row belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Entity {
    /// The ledger as a whole (its skeleton, keys that are not valid ids).
    Ledger,
    /// One response.
    Response(ResponseId),
    /// One meeting tally.
    Tally(TallyId),
}

/// A response's row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseRow {
    /// The response.
    pub response: ResponseId,
    /// Life-cycle state.
    pub status: Status,
    /// Form version it answers.
    pub form_version: Option<i64>,
    /// Day recorded.
    pub recorded_on: Option<Day>,
    /// Collector who recorded it.
    pub collector: Option<String>,
    /// Who stands behind the actor that made the response: its enrolled device's id, or the
    /// actor (hex) when no device was enrolled with it. Not a claim of the document.
    #[serde(default)]
    pub writer: Option<String>,
    /// Day submitted.
    pub submitted_on: Option<Day>,
    /// Who submitted.
    pub submitted_by: Option<String>,
    /// Day voided.
    pub voided_on: Option<Day>,
    /// Who voided.
    pub voided_by: Option<String>,
    /// Why.
    pub void_reason: Option<String>,
}

/// One answer of a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRow {
    /// The response.
    pub response: ResponseId,
    /// The question.
    pub question: QuestionId,
    /// The subject, for per-subject questions.
    pub subject: Option<SubjectId>,
    /// The value.
    pub value: AnswerValue,
    /// Whether it counts in results: sealed, and the response not voided.
    pub counted: bool,
}

/// A meeting tally's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyRow {
    /// The tally.
    pub tally: TallyId,
    /// Day entered or corrected.
    pub recorded_on: Option<Day>,
    /// Collector.
    pub collector: Option<String>,
    /// Ballot counts.
    pub ballots: Ballots,
    /// Whether it counts in results: nothing is flagged on it.
    pub counted: bool,
}

/// One count of a tally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyCountRow {
    /// The tally.
    pub tally: TallyId,
    /// The rating question.
    pub question: QuestionId,
    /// The subject.
    pub subject: SubjectId,
    /// The level.
    pub level: Level,
    /// How many ballots gave this level.
    pub count: u32,
}

/// A conflict, attached to its entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictRow {
    /// Where it is.
    pub entity: Entity,
    /// Keys from the root.
    pub path: Vec<String>,
    /// Every value, the one shown first.
    pub values: Vec<ConflictValue>,
}

/// Something district staff should review.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FlagKind {
    /// An answer changed after the response was submitted: not counted.
    EditedAfterSeal {
        /// The answer key.
        key: String,
        /// The sealed, counted value.
        sealed: Option<Scalar>,
        /// The value now in the document.
        current: Option<Scalar>,
    },
    /// A seal written to after it was made (by anyone): the first seal counts, this is not.
    SealRewritten {
        /// The answer key whose sealed value now reads differently, or `seal` when the seal
        /// was written to without changing an answer (replaced, deleted, its day changed).
        key: String,
        /// The first sealed value, the one counted.
        sealed: Option<Scalar>,
        /// The value the seal now shows.
        current: Option<Scalar>,
    },
    /// Another device wrote into a response it does not own: kept, never counted.
    ForeignWrite {
        /// The actor that wrote, hex.
        actor: String,
        /// Its enrolled device, when known.
        device: Option<String>,
        /// How many operations it wrote into the response.
        writes: usize,
    },
    /// A stored answer that does not fit the form.
    InvalidAnswer {
        /// The answer key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A response recorded on another form version than the campaign's.
    FormVersion {
        /// Version in the response.
        found: Option<i64>,
        /// The campaign's version.
        expected: u32,
    },
    /// A tally count that cannot be read or does not fit the form.
    InvalidCount {
        /// The count key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A tally whose figures do not add up, or exceed the hamlet's voters.
    TallyInconsistent {
        /// Why.
        reason: String,
    },
    /// A response recorded before the campaign's schedule opens or submitted after it closes:
    /// kept, not counted.
    OutsideSchedule {
        /// Day recorded.
        recorded_on: Option<Day>,
        /// Day submitted.
        submitted_on: Option<Day>,
        /// The schedule's first day.
        opens_on: Day,
        /// The schedule's last day.
        closes_on: Day,
    },
    /// A tally with exactly the figures of another one (a retry entered it again).
    TallyDuplicate {
        /// The tally it repeats (the smaller id, which counts).
        of: TallyId,
    },
    /// An answer (or a tally's count) about a subject who is in the campaign but not on this
    /// hamlet's ballot (schema version 2): kept, never counted.
    OutsideBallot {
        /// The answer or count key.
        key: String,
        /// The subject.
        subject: SubjectId,
    },
    /// A sealed object that did not open (truncated, altered, another response's, not for the
    /// campaign's key) or that opened to something other than answers: none of it counts.
    SealedUnreadable {
        /// Why.
        reason: String,
    },
    /// An answer written in the clear in a campaign whose answers are sealed: kept, never
    /// counted (and never shown as an answer).
    Unsealed {
        /// The answer key.
        key: String,
    },
    /// A response or tally key that is not a valid id.
    MalformedKey {
        /// "responses" or "tallies".
        collection: String,
        /// The key.
        key: String,
    },
}

/// A flag, attached to its entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlagRow {
    /// What it concerns.
    pub entity: Entity,
    /// What it is.
    #[serde(flatten)]
    pub kind: FlagKind,
}

/// Rows of every table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Responses.
    pub responses: Vec<ResponseRow>,
    /// Answers.
    pub answers: Vec<AnswerRow>,
    /// Tallies.
    pub tallies: Vec<TallyRow>,
    /// Tally counts.
    pub tally_counts: Vec<TallyCountRow>,
    /// Conflicts.
    pub conflicts: Vec<ConflictRow>,
    /// Flags.
    pub flags: Vec<FlagRow>,
}

/// The rows of a ledger, or of the part of it that changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// The ledger's campaign.
    pub campaign: CampaignId,
    /// The ledger's hamlet.
    pub hamlet: UnitId,
    /// `true` when `rows` are every row of the ledger.
    pub full: bool,
    /// The entities whose rows are replaced.
    pub entities: BTreeSet<Entity>,
    /// The new rows of those entities.
    pub rows: Rows,
}

/// Every row of the ledger, every actor counting as a device of its own.
pub fn project(campaign: &Campaign, ledger: &Ledger) -> Result<Projection, LedgerError> {
    project_with(campaign, ledger, &Authors::new())
}

/// The rows of the entities touched by the changes between `before` and the ledger's heads,
/// every actor counting as a device of its own.
pub fn project_since(campaign: &Campaign, ledger: &Ledger, before: &[ChangeHash]) -> Result<Projection, LedgerError> {
    project_since_with(campaign, ledger, before, &Authors::new())
}

/// Every row of the ledger; `authors` says which device each actor writes for. A campaign whose
/// answers are sealed needs its key: see [`project_opened`].
pub fn project_with(campaign: &Campaign, ledger: &Ledger, authors: &Authors) -> Result<Projection, LedgerError> {
    project_opened(campaign, ledger, authors, None)
}

/// As [`project_with`], opening sealed answers with the campaign's `key`. Without it, every
/// sealed object is flagged as unreadable and nothing of it counts.
pub fn project_opened(
    campaign: &Campaign,
    ledger: &Ledger,
    authors: &Authors,
    key: Option<&SecretKey>,
) -> Result<Projection, LedgerError> {
    let history = History::of(ledger.doc(), ledger.responses_obj());
    let mut entities: BTreeSet<Entity> = BTreeSet::from([Entity::Ledger]);
    entities.extend(ledger.response_ids().0.into_iter().map(Entity::Response));
    // A response another device deleted from view is still its owner's.
    entities.extend(history.responses().filter_map(|(k, _)| ResponseId::new(k).ok()).map(Entity::Response));
    entities.extend(ledger.tally_ids().into_iter().map(Entity::Tally));
    build(campaign, ledger, authors, key, &history, true, entities)
}

/// As [`project_since`], with what `authors` says of the actors.
pub fn project_since_with(
    campaign: &Campaign,
    ledger: &Ledger,
    before: &[ChangeHash],
    authors: &Authors,
) -> Result<Projection, LedgerError> {
    project_since_opened(campaign, ledger, before, authors, None)
}

/// As [`project_since_with`], opening sealed answers with the campaign's `key`.
pub fn project_since_opened(
    campaign: &Campaign,
    ledger: &Ledger,
    before: &[ChangeHash],
    authors: &Authors,
    key: Option<&SecretKey>,
) -> Result<Projection, LedgerError> {
    let after = ledger.doc().get_heads();
    let mut entities = BTreeSet::new();
    let mut tallies_touched = false;
    for patch in ledger.doc().diff(before, &after) {
        if patch.obj == ROOT {
            // The skeleton itself changed: only the first sync of a ledger does this.
            return project_opened(campaign, ledger, authors, key);
        }
        let collection = match patch.path.first() {
            Some((_, Prop::Map(name))) => name.as_str(),
            _ => return project_opened(campaign, ledger, authors, key),
        };
        let key = match (patch.path.get(1), &patch.action) {
            (Some((_, Prop::Map(key))), _) => key.clone(),
            (None, PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key }) => key.clone(),
            (None, PatchAction::Conflict { prop: Prop::Map(key) }) => key.clone(),
            _ => return project_opened(campaign, ledger, authors, key),
        };
        let entity = entity_of(collection, &key);
        tallies_touched |= matches!(entity, Entity::Tally(_));
        entities.insert(entity);
    }
    if tallies_touched {
        // Whether a tally repeats another depends on every tally.
        entities.extend(ledger.tally_ids().into_iter().map(Entity::Tally));
    }
    let history = History::of(ledger.doc(), ledger.responses_obj());
    build(campaign, ledger, authors, key, &history, false, entities)
}

fn entity_of(collection: &str, key: &str) -> Entity {
    match collection {
        "responses" => ResponseId::new(key).map_or(Entity::Ledger, Entity::Response),
        "tallies" => TallyId::new(key).map_or(Entity::Ledger, Entity::Tally),
        _ => Entity::Ledger,
    }
}

fn build(
    campaign: &Campaign,
    ledger: &Ledger,
    authors: &Authors,
    key: Option<&SecretKey>,
    history: &History,
    full: bool,
    entities: BTreeSet<Entity>,
) -> Result<Projection, LedgerError> {
    let mut rows = Rows::default();
    let mut firsts = None;
    for entity in &entities {
        match entity {
            Entity::Ledger => ledger_rows(ledger, &mut rows)?,
            Entity::Response(id) => response_rows(campaign, ledger, authors, key, history, id, &mut rows)?,
            Entity::Tally(id) => {
                if firsts.is_none() {
                    firsts = Some(first_tallies(ledger)?);
                }
                tally_rows(campaign, ledger, id, firsts.as_ref().unwrap_or(&BTreeMap::new()), &mut rows)?
            }
        }
    }
    Ok(Projection { campaign: ledger.campaign().clone(), hamlet: ledger.hamlet().clone(), full, entities, rows })
}

fn attach(entity: &Entity, conflicts: Vec<Conflict>, rows: &mut Rows) {
    rows.conflicts.extend(conflicts.into_iter().map(|c| ConflictRow {
        entity: entity.clone(),
        path: c.path,
        values: c.values,
    }));
}

fn ledger_rows(ledger: &Ledger, rows: &mut Rows) -> Result<(), LedgerError> {
    // Conflicts on the skeleton's own keys (only a client that ignores the schema makes them).
    let root_conflicts = ledger.conflicts()?.into_iter().filter(|c| c.path.len() == 1).collect();
    attach(&Entity::Ledger, root_conflicts, rows);
    let flag = |collection: &str, key: String| FlagRow {
        entity: Entity::Ledger,
        kind: FlagKind::MalformedKey { collection: collection.into(), key },
    };
    rows.flags.extend(ledger.response_ids().1.into_iter().map(|k| flag("responses", k)));
    let tallies = ledger.doc().get(ROOT, "tallies")?.map(|(_, id)| id);
    if let Some(tallies) = tallies {
        let bad = ledger.doc().keys(&tallies).filter(|k| TallyId::new(k.as_str()).is_err());
        rows.flags.extend(bad.map(|k| flag("tallies", k)).collect::<Vec<_>>());
    }
    Ok(())
}

fn response_rows(
    campaign: &Campaign,
    ledger: &Ledger,
    authors: &Authors,
    key: Option<&SecretKey>,
    history: &History,
    id: &ResponseId,
    rows: &mut Rows,
) -> Result<(), LedgerError> {
    let Some(writes) = history.response(id.as_str()) else { return Ok(()) };
    let Some(owned) = owned_response(ledger.doc(), authors, id, writes)? else { return Ok(()) };
    let view = owned.view;
    let entity = Entity::Response(id.clone());
    let status = view.status();
    let flag = |kind| FlagRow { entity: entity.clone(), kind };
    rows.flags.extend(owned.flags.into_iter().map(flag));
    let mut by_the_rules = true;
    if view.form_version != Some(i64::from(campaign.form.version)) {
        rows.flags.push(flag(FlagKind::FormVersion { found: view.form_version, expected: campaign.form.version }));
        by_the_rules = false;
    }
    let submitted_on = view.seal.as_ref().and_then(|s| s.on);
    let schedule = campaign.schedule;
    let early = view.recorded_on.is_some_and(|d| d < schedule.opens_on);
    let late = submitted_on.is_some_and(|d| d > schedule.closes_on);
    if early || late {
        rows.flags.push(flag(FlagKind::OutsideSchedule {
            recorded_on: view.recorded_on,
            submitted_on,
            opens_on: schedule.opens_on,
            closes_on: schedule.closes_on,
        }));
        by_the_rules = false;
    }
    let (answers, mut counted) = match &view.seal {
        Some(seal) => (&seal.answers, status == Status::Submitted && by_the_rules),
        None => (&view.answers, false),
    };
    let opened;
    let answers = if campaign.seal_key().is_some() {
        let (found, unsealed, problem) = open_answers(campaign, id, answers, key);
        for k in unsealed {
            rows.flags.push(flag(FlagKind::Unsealed { key: k }));
        }
        if let Some(reason) = problem {
            rows.flags.push(flag(FlagKind::SealedUnreadable { reason }));
            counted = false;
        }
        opened = found;
        &opened
    } else {
        answers
    };
    let subjects = campaign.subject_ids();
    let answers_before = rows.answers.len();
    let flags_before = rows.flags.len();
    for (key, scalar) in answers {
        let read = key
            .parse::<AnswerKey>()
            .map_err(|e| e.to_string())
            .and_then(|k| campaign.form.check_key(&subjects, &k).map(|q| (k, q)).map_err(|e| e.to_string()))
            .and_then(|(k, q)| {
                let value = scalar.to_answer(&q.kind).ok_or_else(|| format!("{scalar:?} does not fit the question"))?;
                campaign.form.check_answer(&subjects, &k, &value).map_err(|e| e.to_string())?;
                Ok((k, value))
            });
        match read {
            Ok((k, value)) => match k.subject {
                Some(subject) if !campaign.evaluates(ledger.hamlet(), &subject) => {
                    rows.flags.push(flag(FlagKind::OutsideBallot { key: key.clone(), subject }));
                }
                subject => {
                    rows.answers.push(AnswerRow { response: id.clone(), question: k.question, subject, value, counted })
                }
            },
            Err(reason) => rows.flags.push(flag(FlagKind::InvalidAnswer { key: key.clone(), reason })),
        }
    }
    // A sealed object is one ballot: when part of what it opens to does not fit the form, none
    // of it counts.
    let misfit = rows.flags[flags_before..].iter().any(|f| matches!(f.kind, FlagKind::InvalidAnswer { .. }));
    if campaign.seal_key().is_some() && misfit {
        rows.answers[answers_before..].iter_mut().for_each(|a| a.counted = false);
    }
    for (key, sealed, current) in view.edits_after_seal().into_iter().filter(|(k, ..)| !owned.masked.contains(k)) {
        rows.flags.push(flag(FlagKind::EditedAfterSeal { key, sealed, current }));
    }
    attach(&entity, ledger.conflicts_of("responses", id.as_str())?, rows);
    let (seal, void) = (view.seal.as_ref(), view.void.as_ref());
    rows.responses.push(ResponseRow {
        response: id.clone(),
        status,
        form_version: view.form_version,
        recorded_on: view.recorded_on,
        collector: view.collector,
        writer: Some(owned.writer.clone()),
        submitted_on: seal.and_then(|s| s.on),
        submitted_by: seal.and_then(|s| s.by.clone()),
        voided_on: void.and_then(|v| v.on),
        voided_by: void.and_then(|v| v.by.clone()),
        void_reason: void.and_then(|v| v.reason.clone()),
    });
    Ok(())
}

/// Opens the sealed object of a map of a sealed campaign's answers: the answers it holds, the
/// keys written in the clear beside it, and why it did not open (if it did not).
fn open_answers(
    campaign: &Campaign,
    id: &ResponseId,
    answers: &BTreeMap<String, Scalar>,
    key: Option<&SecretKey>,
) -> (BTreeMap<String, Scalar>, Vec<String>, Option<String>) {
    let unsealed: Vec<String> = answers.keys().filter(|k| *k != SEALED_KEY).cloned().collect();
    let opened = match (answers.get(SEALED_KEY), key) {
        (None, _) => Ok(BTreeMap::new()),
        (Some(Scalar::Bytes(bytes)), Some(key)) => {
            crate::sealed::open(key, &campaign.id, id, bytes).map(|o| o.answers).map_err(|e| e.to_string())
        }
        (Some(Scalar::Bytes(_)), None) => Err("the campaign's key is not at hand".to_owned()),
        (Some(other), _) => Err(format!("{SEALED_KEY} holds {other:?}, not bytes")),
    };
    match opened {
        Ok(found) => (found, unsealed, None),
        Err(reason) => (BTreeMap::new(), unsealed, Some(reason)),
    }
}

/// A response as its owner wrote it, and the flags of what others (or later writes to the
/// seal) did to it.
struct Owned {
    view: ResponseView,
    flags: Vec<FlagKind>,
    /// Answer keys where only another device's value shows.
    masked: BTreeSet<String>,
    /// Who owns it (see [`ResponseRow::writer`]).
    writer: String,
}

fn actor_of(id: &ObjId) -> Option<&ActorId> {
    match id {
        ObjId::Root => None,
        ObjId::Id(_, actor, _) => Some(actor),
    }
}

/// Reads a value as a scalar; a text object reads as its string.
fn scalar(doc: &Automerge, value: &Value<'_>, id: &ObjId, heads: Option<&[ChangeHash]>) -> Scalar {
    match value {
        Value::Object(ObjType::Text) => {
            let text = match heads {
                Some(h) => doc.text_at(id, h),
                None => doc.text(id),
            };
            Scalar::Str(text.unwrap_or_default())
        }
        other => Scalar::from_value(other),
    }
}

/// Reads one response as written by its owner: see the module docs.
fn owned_response(
    doc: &Automerge,
    authors: &Authors,
    id: &ResponseId,
    writes: &ResponseWrites,
) -> Result<Option<Owned>, LedgerError> {
    let Some(response) = writes.objects.first() else { return Ok(None) };
    let Some(owner_actor) = actor_of(response) else { return Ok(None) };
    let owner = authors.writer(owner_actor);
    let mine = |w: &Write| authors.writer(&w.actor) == owner;
    let mut flags = Vec::new();

    // What other devices wrote: one flag per actor.
    let mut foreign: BTreeMap<&ActorId, usize> = BTreeMap::new();
    for w in writes.writes.iter().filter(|w| !mine(w)) {
        *foreign.entry(&w.actor).or_default() += 1;
    }
    for (actor, n) in foreign {
        flags.push(FlagKind::ForeignWrite {
            actor: actor.to_hex_string(),
            device: authors.device(actor).map(str::to_owned),
            writes: n,
        });
    }

    // The owner's latest value at `obj[key]` (as of `heads`, or now).
    let owned_value = |obj: &ObjId, key: &str, heads: Option<&[ChangeHash]>| -> Option<(Value<'_>, ObjId)> {
        let all = match heads {
            Some(h) => doc.get_all_at(obj, key, h),
            None => doc.get_all(obj, key),
        };
        all.ok()?
            .into_iter()
            .filter(|(_, vid)| actor_of(vid).is_some_and(|a| authors.writer(a) == owner))
            .max_by(|a, b| a.1.cmp(&b.1))
    };
    let owned_scalar = |obj: &ObjId, key: &str, heads: Option<&[ChangeHash]>| {
        owned_value(obj, key, heads).map(|(v, vid)| scalar(doc, &v, &vid, heads))
    };
    let text = |s: Option<Scalar>| match s {
        Some(Scalar::Str(s)) => Some(s),
        _ => None,
    };
    // What the document says of who wrote: read only for an actor no device is enrolled with
    // (open-sync mode, tests, the demo), where the server knows nothing better.
    let claimed = |obj: &ObjId, at: Option<&[ChangeHash]>| {
        if authors.device(owner_actor).is_some() {
            return None;
        }
        text(owned_scalar(obj, "by", at))
    };
    let first_made = |key: &str| writes.writes.iter().find(|w| mine(w) && w.makes_map_at(response, key));
    let keys_written = |obj: &ObjId| -> BTreeSet<String> {
        writes.writes.iter().filter(|w| w.obj == *obj).filter_map(|w| w.key.clone()).collect()
    };

    // The draft answers: the owner's answers map, the owner's values in it. A key where only
    // another device's value shows is *masked*: not the owner's edit (it is flagged as foreign).
    let mut answers = BTreeMap::new();
    let mut masked = BTreeSet::new();
    if let Some(a) = first_made("answers") {
        for key in keys_written(&a.id) {
            match owned_scalar(&a.id, &key, None) {
                Some(v) => {
                    answers.insert(key, v);
                }
                None if doc.get_all(&a.id, key.as_str()).is_ok_and(|v| !v.is_empty()) => {
                    masked.insert(key);
                }
                None => {}
            }
        }
    }

    // The first seal the owner made, read as its own change left it.
    let mut seal = None;
    if let Some(s) = first_made("seal") {
        let sealed_in = doc.hash_for_opid(&s.id);
        let heads: Vec<ChangeHash> = sealed_in.into_iter().collect();
        let at = Some(heads.as_slice());
        let mut sealed = BTreeMap::new();
        if let Some((Value::Object(ObjType::Map), sa)) = owned_value(&s.id, "answers", at) {
            for item in doc.map_range_at(&sa, .., &heads) {
                let vid = item.id();
                sealed.insert(item.key.to_string(), scalar(doc, &item.value.into_value(), &vid, at));
            }
        }
        let on = text(owned_scalar(&s.id, "on", at)).and_then(|d| d.parse().ok());
        let by = authors.person(&s.actor).map(str::to_owned).or_else(|| claimed(&s.id, at));
        flags.extend(seal_rewrites(doc, response, s, &heads, writes, &sealed, &mine));
        seal = Some(SealView { on, by, answers: sealed });
    }

    // The first void the owner made.
    let mut void = None;
    if let Some(v) = first_made("void") {
        let heads: Vec<ChangeHash> = doc.hash_for_opid(&v.id).into_iter().collect();
        let at = Some(heads.as_slice());
        void = Some(VoidView {
            on: text(owned_scalar(&v.id, "on", at)).and_then(|d| d.parse().ok()),
            by: authors.person(&v.actor).map(str::to_owned).or_else(|| claimed(&v.id, at)),
            reason: text(owned_scalar(&v.id, "reason", at)),
        });
    }

    let view = ResponseView {
        id: id.clone(),
        form_version: owned_scalar(response, "form_version", None).and_then(|s| s.as_i64()),
        recorded_on: text(owned_scalar(response, "recorded_on", None)).and_then(|d| d.parse().ok()),
        collector: authors
            .person(owner_actor)
            .map(str::to_owned)
            .or_else(|| text(owned_scalar(response, "collector", None))),
        answers,
        seal,
        void,
    };
    let writer = match owner {
        crate::authorship::Writer::Device(device) => device.to_owned(),
        crate::authorship::Writer::Actor(actor) => actor.to_hex_string(),
    };
    Ok(Some(Owned { view, flags, masked, writer }))
}

/// Flags for writes to a seal after the change that made it: one per answer whose value the
/// seal now shows differently, or one for the seal itself when the owner wrote to it without
/// changing an answer (another device's writes are flagged as foreign already).
fn seal_rewrites(
    doc: &Automerge,
    response: &ObjId,
    seal: &Write,
    heads: &[ChangeHash],
    writes: &ResponseWrites,
    sealed: &BTreeMap<String, Scalar>,
    mine: &dyn Fn(&Write) -> bool,
) -> Vec<FlagKind> {
    // The seal's objects: the seal and whatever was made inside it, by anyone.
    let mut inside: HashSet<&ObjId> = HashSet::from([&seal.id]);
    for w in &writes.writes {
        if w.makes.is_some() && inside.contains(&w.obj) {
            inside.insert(&w.id);
        }
    }
    let sealing_change = heads.first();
    let later: Vec<&Write> = writes
        .writes
        .iter()
        .filter(|w| {
            let at_seal_key = w.obj == *response && w.key.as_deref() == Some("seal") && w.id != seal.id;
            let into_seal = inside.contains(&w.obj) && doc.hash_for_opid(&w.id).as_ref() != sealing_change;
            at_seal_key || into_seal
        })
        .collect();
    if later.is_empty() {
        return Vec::new();
    }
    // What the seal now shows, whoever wrote it.
    let mut current = BTreeMap::new();
    if let Ok(Some((Value::Object(ObjType::Map), now))) = doc.get(response, "seal")
        && let Ok(Some((Value::Object(ObjType::Map), answers))) = doc.get(&now, "answers")
    {
        for item in doc.map_range(&answers, ..) {
            let vid = item.id();
            current.insert(item.key.to_string(), scalar(doc, &item.value.into_value(), &vid, None));
        }
    }
    let keys: BTreeSet<&String> = sealed.keys().chain(current.keys()).collect();
    let mut flags: Vec<FlagKind> = keys
        .into_iter()
        .filter(|k| sealed.get(*k) != current.get(*k))
        .map(|k| FlagKind::SealRewritten {
            key: k.clone(),
            sealed: sealed.get(k).cloned(),
            current: current.get(k).cloned(),
        })
        .collect();
    if flags.is_empty() && later.iter().any(|w| mine(w)) {
        flags.push(FlagKind::SealRewritten { key: "seal".into(), sealed: None, current: None });
    }
    flags
}

/// What a tally's figures are, for finding tallies entered twice.
fn figures(view: &crate::ledger::TallyView) -> String {
    serde_json::to_string(&(&view.ballots, &view.counts)).unwrap_or_default()
}

/// The smallest tally id with each set of figures.
fn first_tallies(ledger: &Ledger) -> Result<BTreeMap<String, TallyId>, LedgerError> {
    let mut firsts: BTreeMap<String, TallyId> = BTreeMap::new();
    for view in ledger.tallies()? {
        let first = firsts.entry(figures(&view)).or_insert_with(|| view.id.clone());
        if view.id < *first {
            *first = view.id;
        }
    }
    Ok(firsts)
}

fn tally_rows(
    campaign: &Campaign,
    ledger: &Ledger,
    id: &TallyId,
    firsts: &BTreeMap<String, TallyId>,
    rows: &mut Rows,
) -> Result<(), LedgerError> {
    let Some(view) = ledger.tally(id)? else { return Ok(()) };
    let entity = Entity::Tally(id.clone());
    let mut counts = BTreeMap::new();
    for (key, scalar) in &view.counts {
        let count = match scalar {
            Scalar::Int(n) => u32::try_from(*n).ok(),
            Scalar::Uint(n) => u32::try_from(*n).ok(),
            Scalar::F64(f) if f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX) => Some(*f as u32),
            _ => None,
        };
        match (CountKey::decode(key), count) {
            (Some(k), Some(_))
                if campaign.subjects.iter().any(|s| s.id == k.subject)
                    && !campaign.evaluates(ledger.hamlet(), &k.subject) =>
            {
                rows.flags.push(FlagRow {
                    entity: entity.clone(),
                    kind: FlagKind::OutsideBallot { key: key.clone(), subject: k.subject },
                });
            }
            (Some(k), Some(n)) => {
                counts.insert(k, n);
            }
            (k, _) => rows.flags.push(FlagRow {
                entity: entity.clone(),
                kind: FlagKind::InvalidCount {
                    key: key.clone(),
                    reason: if k.is_none() { "not question/subject/level" } else { "not a count" }.into(),
                },
            }),
        }
    }
    let flags_before = rows.flags.len();
    if let Err(e) = crate::ledger::check_tally(campaign, ledger.hamlet(), &view.ballots, &counts) {
        rows.flags
            .push(FlagRow { entity: entity.clone(), kind: FlagKind::TallyInconsistent { reason: e.to_string() } });
    } else if let Some(scope) = campaign.hamlet(ledger.hamlet())
        && view.ballots.returned > scope.expected_voters
    {
        let reason = format!(
            "{} ballots returned, more than the hamlet's {} expected voters",
            view.ballots.returned, scope.expected_voters
        );
        rows.flags.push(FlagRow { entity: entity.clone(), kind: FlagKind::TallyInconsistent { reason } });
    }
    // The same figures as a tally with a smaller id: entered twice.
    if let Some(first) = firsts.get(&figures(&view))
        && first != id
    {
        rows.flags.push(FlagRow { entity: entity.clone(), kind: FlagKind::TallyDuplicate { of: first.clone() } });
    }
    let counted = rows.flags.len() == flags_before;
    rows.tally_counts.extend(counts.into_iter().map(|(k, count)| TallyCountRow {
        tally: id.clone(),
        question: k.question,
        subject: k.subject,
        level: k.level,
        count,
    }));
    attach(&entity, ledger.conflicts_of("tallies", id.as_str())?, rows);
    rows.tallies.push(TallyRow {
        tally: id.clone(),
        recorded_on: view.recorded_on,
        collector: view.collector,
        ballots: view.ballots,
        counted,
    });
    Ok(())
}
