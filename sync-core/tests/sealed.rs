//! Sealed answers (schema version 2): a campaign with a sealing key has its answers and comments
//! written only as ciphertext; the projection opens them with the key, counts them as before, and
//! flags whatever does not open, does not fit, or was written after the seal.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use hamlet_sync_core::authorship::Authors;
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{ObjType, ReadDoc, ScalarValue, Value};
use hamlet_sync_core::projection::{FlagKind, Projection};
use hamlet_sync_core::sealed::{self, SEALED_KEY, SecretKey};
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, EditOutcome, Ledger, LedgerError, Level, NewResponse, ResponseId, fixtures,
    project_opened,
};

const COMMENT: &str = "Cán bộ này nhận quà của dân khi làm sổ đỏ";

fn answers(level: Level, comment: &str) -> BTreeMap<AnswerKey, AnswerValue> {
    BTreeMap::from([
        (rating("ong-an"), AnswerValue::Level(level)),
        (rating("ba-binh"), AnswerValue::Level(Level::TinNhiemCao)),
        (
            AnswerKey::for_subject(fixtures::question("y-kien"), fixtures::subject("ong-an")),
            AnswerValue::Comment(comment.into()),
        ),
        (AnswerKey::once(fixtures::question("so-nguoi")), AnswerValue::Number(6)),
    ])
}

fn new(id: &str, level: Level) -> NewResponse {
    NewResponse {
        id: id.parse().expect("id"),
        collector: "thu-ha".parse().expect("id"),
        answers: answers(level, COMMENT),
    }
}

fn entropy(n: u8) -> [u8; 32] {
    [n; 32]
}

fn setup() -> (Campaign, SecretKey, Ledger) {
    let (campaign, key) = fixtures::sealed_campaign([42; 32]);
    let ledger = Ledger::create(&campaign.id, &fixtures::hamlet("thon-dong"), actor(1));
    (campaign, key, ledger)
}

fn flags(p: &Projection) -> Vec<&FlagKind> {
    p.rows.flags.iter().map(|f| &f.kind).collect()
}

fn counted(p: &Projection) -> usize {
    p.rows.answers.iter().filter(|a| a.counted).count()
}

/// Every string (or UTF-8 run in bytes) any change wrote that holds one of `needles`.
fn plaintext_found(ledger: &Ledger, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for value in sealed::every_value_written(ledger.doc()) {
        let bytes: Vec<u8> = match &value {
            ScalarValue::Str(s) => s.as_bytes().to_vec(),
            ScalarValue::Bytes(b) => b.clone(),
            _ => continue,
        };
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{needle} in {value:?}"));
            }
        }
    }
    found
}

#[test]
fn a_sealed_response_holds_no_plaintext_and_counts_when_opened() {
    let (campaign, key, mut ledger) = setup();
    ledger.record_sealed(&campaign, &new("r-1", Level::TinNhiem), today(), entropy(1)).expect("record");
    // An edit is the next sealed version, holding every answer.
    let edited = answers(Level::TinNhiemThap, COMMENT);
    let outcome = ledger.edit_sealed(&campaign, &"r-1".parse().unwrap(), &edited, today(), entropy(2)).expect("edit");
    assert_eq!(outcome, EditOutcome::Draft);
    assert_eq!(ledger.sealed_version(&"r-1".parse().unwrap()).unwrap(), 2);
    ledger.submit(&campaign, &"r-1".parse().unwrap(), &"thu-ha".parse().unwrap(), today()).expect("submit");

    // Nothing of the answers or comments in any value any change wrote, draft versions included.
    let leaks = plaintext_found(&ledger, &["tin_nhiem", "nhận quà", "sổ đỏ", COMMENT]);
    assert!(leaks.is_empty(), "{leaks:?}");
    // The same check finds plaintext where there is some: it can fail.
    let (plain_campaign, mut plain) = (fixtures::open_campaign(), ledger_for_plain());
    let mut r = response("r-9", Level::TinNhiemThap);
    r.answers.insert(
        AnswerKey::for_subject(fixtures::question("y-kien"), fixtures::subject("ong-an")),
        AnswerValue::Comment(COMMENT.into()),
    );
    plain.record(&plain_campaign, &r, today()).unwrap();
    assert!(!plaintext_found(&plain, &[COMMENT]).is_empty());

    // Status, day and collector stay readable without the key: progress works anywhere.
    let view = ledger.response(&"r-1".parse().unwrap()).unwrap().unwrap();
    assert_eq!(view.status(), hamlet_sync_core::Status::Submitted);
    assert_eq!(view.recorded_on, Some(today()));
    assert_eq!(view.answers.keys().collect::<Vec<_>>(), vec![SEALED_KEY]);

    // At the district, with the key: the last version before the seal counts, as plain answers did.
    let p = project_opened(&campaign, &ledger, &Authors::new(), Some(&key)).expect("project");
    assert!(flags(&p).is_empty(), "{:?}", flags(&p));
    assert_eq!(counted(&p), 4);
    let an = p
        .rows
        .answers
        .iter()
        .find(|a| a.subject.as_ref().is_some_and(|s| s.as_str() == "ong-an") && a.question.as_str() == "tin-nhiem")
        .unwrap();
    assert_eq!(an.value, AnswerValue::Level(Level::TinNhiemThap));
    assert!(p.rows.answers.iter().any(|a| a.value == AnswerValue::Comment(COMMENT.into())));

    // Without the key (a relay, a phone): flagged as unreadable, nothing counted, no panic.
    let p = project_opened(&campaign, &ledger, &Authors::new(), None).expect("project");
    assert_eq!(counted(&p), 0);
    assert!(flags(&p).iter().any(|f| matches!(f, FlagKind::SealedUnreadable { .. })));
}

fn ledger_for_plain() -> Ledger {
    ledger(9)
}

#[test]
fn plain_writes_are_refused_for_a_sealed_campaign() {
    let (campaign, _, mut ledger) = setup();
    assert!(matches!(
        ledger.record(&campaign, &new("r-1", Level::TinNhiem), today()),
        Err(LedgerError::SealedCampaign)
    ));
    ledger.record_sealed(&campaign, &new("r-1", Level::TinNhiem), today(), entropy(1)).unwrap();
    let change = [(rating("ong-an"), Some(AnswerValue::Level(Level::TinNhiemThap)))];
    assert!(matches!(
        ledger.edit(&campaign, &"r-1".parse().unwrap(), &change, today()),
        Err(LedgerError::SealedCampaign)
    ));
    // And sealed writes are refused for a campaign without a key.
    let plain = fixtures::open_campaign();
    let mut other = ledger_for_plain();
    assert!(matches!(
        other.record_sealed(&plain, &response("r-2", Level::TinNhiem), today(), entropy(1)),
        Err(LedgerError::NotSealedCampaign)
    ));
    // An answer outside the form is refused before anything is sealed.
    let mut bad = answers(Level::TinNhiem, COMMENT);
    bad.insert(rating("ong-em"), AnswerValue::Level(Level::TinNhiem));
    assert!(ledger.edit_sealed(&campaign, &"r-1".parse().unwrap(), &bad, today(), entropy(3)).is_err());
}

/// Puts `value` at `answers/~sealed` of a response (or of its seal), as a hostile device would.
fn overwrite(ledger: &mut Ledger, id: &str, in_seal: bool, value: Vec<u8>) {
    let responses = ledger.responses_obj().clone();
    let doc = ledger.doc_mut();
    let (_, r) = doc.get(&responses, id).unwrap().unwrap();
    let parent = if in_seal { doc.get(&r, "seal").unwrap().unwrap().1 } else { r };
    let (_, answers) = doc.get(&parent, "answers").unwrap().unwrap();
    let mut tx = doc.transaction();
    tx.put(&answers, SEALED_KEY, ScalarValue::Bytes(value)).unwrap();
    tx.commit();
}

fn sealed_bytes(ledger: &Ledger, id: &str) -> Vec<u8> {
    let view = ledger.response(&id.parse().unwrap()).unwrap().unwrap();
    match view.answers.get(SEALED_KEY) {
        Some(hamlet_sync_core::ledger::Scalar::Bytes(b)) => b.clone(),
        other => panic!("not sealed: {other:?}"),
    }
}

#[test]
fn a_tampered_or_swapped_ciphertext_is_flagged_and_never_counted() {
    let (campaign, key, mut ledger) = setup();
    let by = "thu-ha".parse().unwrap();
    for (n, id) in ["r-1", "r-2", "r-3"].into_iter().enumerate() {
        ledger.record_sealed(&campaign, &new(id, Level::TinNhiem), today(), entropy(n as u8 + 1)).unwrap();
    }
    // r-1: one byte of its ciphertext flipped. r-2: r-3's sealed object copied in. r-3 intact.
    let mut tampered = sealed_bytes(&ledger, "r-1");
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    overwrite(&mut ledger, "r-1", false, tampered);
    let r3 = sealed_bytes(&ledger, "r-3");
    overwrite(&mut ledger, "r-2", false, r3);
    // r-4: junk that is no sealed object at all.
    ledger.record_sealed(&campaign, &new("r-4", Level::TinNhiem), today(), entropy(9)).unwrap();
    overwrite(&mut ledger, "r-4", false, vec![1, 0, 0]);
    for id in ["r-1", "r-2", "r-3", "r-4"] {
        ledger.submit(&campaign, &id.parse().unwrap(), &by, today()).unwrap();
    }
    let p = project_opened(&campaign, &ledger, &Authors::new(), Some(&key)).unwrap();
    let unreadable: Vec<&ResponseId> = p
        .rows
        .flags
        .iter()
        .filter(|f| matches!(f.kind, FlagKind::SealedUnreadable { .. }))
        .filter_map(|f| match &f.entity {
            hamlet_sync_core::projection::Entity::Response(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(unreadable.iter().map(|r| r.as_str()).collect::<Vec<_>>(), vec!["r-1", "r-2", "r-4"]);
    // Only r-3 counts; the others are still submitted responses, for progress.
    assert_eq!(counted(&p), 4);
    assert!(p.rows.answers.iter().filter(|a| a.counted).all(|a| a.response.as_str() == "r-3"));
    assert_eq!(p.rows.responses.iter().filter(|r| r.status == hamlet_sync_core::Status::Submitted).count(), 4);
}

#[test]
fn a_later_write_to_a_sealed_ciphertext_is_flagged_and_the_first_counts() {
    let (campaign, key, mut ledger) = setup();
    let id: ResponseId = "r-1".parse().unwrap();
    ledger.record_sealed(&campaign, &new("r-1", Level::TinNhiem), today(), entropy(1)).unwrap();
    ledger.submit(&campaign, &id, &"thu-ha".parse().unwrap(), today()).unwrap();
    // The owner seals other answers (a valid object for this response, version 2) into the seal.
    let binding = sealed::Binding { campaign: &campaign.id, response: &id, version: 2 };
    let other = sealed::seal(campaign.seal_key().unwrap(), &binding, &answers(Level::TinNhiemThap, "khác"), entropy(7))
        .unwrap();
    overwrite(&mut ledger, "r-1", true, other.clone());
    // And edits the answers after the seal, through the library.
    let outcome =
        ledger.edit_sealed(&campaign, &id, &answers(Level::TinNhiemThap, "khác"), today(), entropy(8)).unwrap();
    assert_eq!(outcome, EditOutcome::FlaggedAfterSeal);
    let p = project_opened(&campaign, &ledger, &Authors::new(), Some(&key)).unwrap();
    let kinds = flags(&p);
    assert!(kinds.iter().any(|f| matches!(f, FlagKind::SealRewritten { key, .. } if key == SEALED_KEY)), "{kinds:?}");
    assert!(kinds.iter().any(|f| matches!(f, FlagKind::EditedAfterSeal { key, .. } if key == SEALED_KEY)), "{kinds:?}");
    // What counts is the first sealed value: tin_nhiem for ong-an, and the first comment.
    let an = p
        .rows
        .answers
        .iter()
        .find(|a| {
            a.counted
                && a.question.as_str() == "tin-nhiem"
                && a.subject.as_ref().is_some_and(|s| s.as_str() == "ong-an")
        })
        .unwrap();
    assert_eq!(an.value, AnswerValue::Level(Level::TinNhiem));
    assert!(p.rows.answers.iter().any(|a| a.counted && a.value == AnswerValue::Comment(COMMENT.into())));
}

#[test]
fn answers_in_the_clear_or_not_fitting_the_form_are_flagged_never_counted() {
    let (campaign, key, mut ledger) = setup();
    let id: ResponseId = "r-1".parse().unwrap();
    // A device that seals an answer the form does not allow (a subject outside the ballot is
    // flagged as before; a level of the wrong scale does not fit).
    let mut misfit = answers(Level::TinNhiem, COMMENT);
    misfit.insert(AnswerKey::once(fixtures::question("du-hop")), AnswerValue::Number(3));
    let binding = sealed::Binding { campaign: &campaign.id, response: &id, version: 1 };
    let bytes = sealed::seal(campaign.seal_key().unwrap(), &binding, &misfit, entropy(1)).unwrap();
    ledger.record_sealed(&campaign, &new("r-1", Level::TinNhiem), today(), entropy(2)).unwrap();
    overwrite(&mut ledger, "r-1", false, bytes);
    // And one beside it in the clear.
    {
        let responses = ledger.responses_obj().clone();
        let doc = ledger.doc_mut();
        let (_, r) = doc.get(&responses, "r-1").unwrap().unwrap();
        let (_, a) = doc.get(&r, "answers").unwrap().unwrap();
        let mut tx = doc.transaction();
        tx.put(&a, "tin-nhiem/ba-binh", "tin_nhiem_thap").unwrap();
        tx.commit();
    }
    ledger.submit(&campaign, &id, &"thu-ha".parse().unwrap(), today()).unwrap();
    let p = project_opened(&campaign, &ledger, &Authors::new(), Some(&key)).unwrap();
    let kinds = flags(&p);
    assert!(kinds.iter().any(|f| matches!(f, FlagKind::InvalidAnswer { key, .. } if key == "du-hop")), "{kinds:?}");
    assert!(kinds.iter().any(|f| matches!(f, FlagKind::Unsealed { key } if key == "tin-nhiem/ba-binh")), "{kinds:?}");
    assert_eq!(counted(&p), 0);
    // The value in the clear is never listed as an answer.
    assert!(!p.rows.answers.iter().any(|a| a.value == AnswerValue::Level(Level::TinNhiemThap)));
}

#[test]
fn a_sealed_campaign_round_trips_through_its_document_and_needs_version_2() {
    let (campaign, _) = fixtures::sealed_campaign([42; 32]);
    campaign.validate(Some(&fixtures::unit_tree())).expect("valid");
    let doc = hamlet_sync_core::campaign_doc::new_campaign_doc(&campaign, actor(5), today()).expect("doc");
    let read = hamlet_sync_core::campaign_doc::read_campaign(&doc).expect("read");
    assert_eq!(read.sealing, campaign.sealing);
    let json = serde_json::to_value(&campaign).unwrap();
    assert_eq!(json["sealing"]["suite"], sealed::SUITE);
    assert_eq!(json["sealing"]["public_key"].as_str().unwrap().len(), 64);
    let mut v1 = campaign.clone();
    v1.schema_version = 1;
    assert!(v1.validate(None).is_err());
    let mut unknown = campaign;
    unknown.sealing.as_mut().unwrap().suite = "rot13".into();
    assert!(unknown.validate(None).is_err());
    let _ = (ObjType::Map, Value::Object(ObjType::Map));
}
