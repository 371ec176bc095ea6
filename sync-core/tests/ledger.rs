//! The life cycle of responses and tallies in one ledger, and what each rule refuses.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use hamlet_sync_core::ledger::{Ballots, CountKey, Scalar, TallyError};
use hamlet_sync_core::{
    AnswerError, AnswerValue, CampaignState, EditOutcome, Ledger, LedgerError, Level, PersonId, ResponseId, Status,
    Tally, fixtures, project,
};

fn person() -> PersonId {
    "thu-ha".parse().unwrap()
}

fn rid(s: &str) -> ResponseId {
    s.parse().unwrap()
}

#[test]
fn a_response_goes_from_draft_to_submitted_to_voided() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    assert_eq!(l.response(&rid("r1")).unwrap().unwrap().status(), Status::Draft);

    let edit = [(rating("ong-an"), Some(AnswerValue::Level(Level::TinNhiemCao)))];
    assert_eq!(l.edit(&campaign, &rid("r1"), &edit, today()).unwrap(), EditOutcome::Draft);
    l.submit(&campaign, &rid("r1"), &person(), today()).unwrap();
    let view = l.response(&rid("r1")).unwrap().unwrap();
    assert_eq!(view.status(), Status::Submitted);
    let sealed = &view.seal.as_ref().unwrap().answers;
    assert_eq!(sealed.get("tin-nhiem/ong-an"), Some(&Scalar::Str("tin_nhiem_cao".into())));
    assert!(view.edits_after_seal().is_empty());

    assert!(matches!(l.submit(&campaign, &rid("r1"), &person(), today()), Err(LedgerError::AlreadySubmitted(_))));
    l.void(&rid("r1"), "Ghi nhầm thôn", &person(), today()).unwrap();
    let view = l.response(&rid("r1")).unwrap().unwrap();
    assert_eq!(view.status(), Status::Voided);
    assert_eq!(view.void.unwrap().reason.as_deref(), Some("Ghi nhầm thôn"));
    assert!(matches!(l.void(&rid("r1"), "again", &person(), today()), Err(LedgerError::Voided(_))));
    assert!(matches!(l.edit(&campaign, &rid("r1"), &edit, today()), Err(LedgerError::Voided(_))));
}

#[test]
fn an_edit_after_submission_is_kept_flagged_and_not_counted() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    l.submit(&campaign, &rid("r1"), &person(), today()).unwrap();
    let edit = [(rating("ong-an"), Some(AnswerValue::Level(Level::TinNhiemThap)))];
    assert_eq!(l.edit(&campaign, &rid("r1"), &edit, today()).unwrap(), EditOutcome::FlaggedAfterSeal);

    let view = l.response(&rid("r1")).unwrap().unwrap();
    assert_eq!(view.answers.get("tin-nhiem/ong-an"), Some(&Scalar::Str("tin_nhiem_thap".into())), "edit kept");
    assert_eq!(
        view.edits_after_seal(),
        vec![(
            "tin-nhiem/ong-an".to_owned(),
            Some(Scalar::Str("tin_nhiem".into())),
            Some(Scalar::Str("tin_nhiem_thap".into()))
        )]
    );
    let rows = project(&campaign, &l).unwrap().rows;
    let counted: Vec<_> =
        rows.answers.iter().filter(|a| a.counted && a.subject.as_ref().unwrap().as_str() == "ong-an").collect();
    assert_eq!(counted.len(), 1);
    assert_eq!(counted[0].value, AnswerValue::Level(Level::TinNhiem), "the sealed value is the counted one");
    assert_eq!(rows.flags.len(), 1);
}

#[test]
fn refusals_say_what_is_wrong() {
    let mut campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    assert!(matches!(
        l.record(&campaign, &response("r1", Level::TinNhiem), today()),
        Err(LedgerError::DuplicateResponse(id)) if id.as_str() == "r1"
    ));
    let mut wrong_scale = response("r2", Level::TinNhiem);
    wrong_scale.answers.insert(rating("ong-an"), AnswerValue::Level(Level::HoanThanh));
    let err = l.record(&campaign, &wrong_scale, today()).unwrap_err();
    assert!(matches!(err, LedgerError::Answer(AnswerError::LevelNotInScale { .. })), "{err}");
    assert!(err.to_string().contains("tin-nhiem"), "names the question: {err}");

    let mut partial = response("r3", Level::TinNhiem);
    partial.answers.remove(&rating("can-bo-02"));
    l.record(&campaign, &partial, today()).unwrap();
    assert!(matches!(
        l.submit(&campaign, &rid("r3"), &person(), today()),
        Err(LedgerError::Answer(AnswerError::Missing(key))) if key == rating("can-bo-02")
    ));
    assert!(matches!(l.void(&rid("r3"), "  ", &person(), today()), Err(LedgerError::Reason)));
    assert!(matches!(l.void(&rid("nope"), "x", &person(), today()), Err(LedgerError::UnknownResponse(_))));

    let mut other = fixtures::open_campaign();
    other.id = "khac".parse().unwrap();
    assert!(matches!(
        l.record(&other, &response("r4", Level::TinNhiem), today()),
        Err(LedgerError::WrongCampaign { .. })
    ));
    let mut out_of_scope = fixtures::open_campaign();
    out_of_scope.hamlets.retain(|h| h.hamlet.as_str() != "thon-dong");
    assert!(matches!(
        l.record(&out_of_scope, &response("r4", Level::TinNhiem), today()),
        Err(LedgerError::HamletNotInScope(_))
    ));
    campaign.state = CampaignState::Closed;
    assert!(matches!(
        l.record(&campaign, &response("r4", Level::TinNhiem), today()),
        Err(LedgerError::NotOpen(CampaignState::Closed))
    ));
}

fn count(q: &str, s: &str, level: Level) -> CountKey {
    CountKey { question: fixtures::question(q), subject: fixtures::subject(s), level }
}

fn tally(issued: u32, returned: u32, valid: u32, invalid: u32, counts: &[(CountKey, u32)]) -> Tally {
    Tally {
        id: "t1".parse().unwrap(),
        collector: person(),
        ballots: Ballots { issued, returned, valid, invalid },
        counts: counts.iter().cloned().collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn a_tally_is_recorded_then_corrected() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    let first = tally(
        100,
        90,
        88,
        2,
        &[(count("tin-nhiem", "ong-an", Level::TinNhiem), 80), (count("tin-nhiem", "ong-an", Level::TinNhiemThap), 8)],
    );
    l.record_tally(&campaign, &first, today()).unwrap();
    let corrected = tally(100, 90, 89, 1, &[(count("tin-nhiem", "ong-an", Level::TinNhiem), 81)]);
    l.record_tally(&campaign, &corrected, today().plus_days(1)).unwrap();
    let view = l.tally(&"t1".parse().unwrap()).unwrap().unwrap();
    assert_eq!(view.ballots, corrected.ballots);
    assert_eq!(view.counts.len(), 1, "the count left out was removed");
    assert_eq!(view.counts.get("tin-nhiem/ong-an/tin_nhiem"), Some(&Scalar::Int(81)));
    assert_eq!(view.recorded_on, Some(today().plus_days(1)));
    assert_eq!(l.tallies().unwrap().len(), 1);
}

#[test]
fn tallies_that_do_not_add_up_are_refused() {
    let campaign = fixtures::open_campaign();
    let check = |t: Tally, expected: TallyError| {
        let mut l = ledger(1);
        match l.record_tally(&campaign, &t, today()) {
            Err(LedgerError::Tally(e)) => assert_eq!(e, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    };
    check(tally(10, 11, 11, 0, &[]), TallyError::ReturnedOverIssued { issued: 10, returned: 11 });
    check(tally(10, 10, 8, 1, &[]), TallyError::Unbalanced { returned: 10, valid: 8, invalid: 1 });
    let bad = |key: CountKey, reason: &str| TallyError::BadCount { key: key.encode(), reason: reason.into() };
    let k = count("du-hop", "ong-an", Level::TinNhiem);
    check(tally(10, 10, 10, 0, &[(k.clone(), 1)]), bad(k, "question is not a rating"));
    let k = count("tin-nhiem", "ong-an", Level::HoanThanh);
    check(tally(10, 10, 10, 0, &[(k.clone(), 1)]), bad(k, "level is not on the question's scale"));
    let k = count("tin-nhiem", "ba-khac", Level::TinNhiem);
    check(tally(10, 10, 10, 0, &[(k.clone(), 1)]), bad(k, "subject is not on this hamlet's ballot"));
    check(
        tally(
            10,
            10,
            10,
            0,
            &[
                (count("tin-nhiem", "ong-an", Level::TinNhiem), 6),
                (count("tin-nhiem", "ong-an", Level::TinNhiemThap), 5),
            ],
        ),
        TallyError::OverValid {
            question: fixtures::question("tin-nhiem"),
            subject: fixtures::subject("ong-an"),
            sum: 11,
            valid: 10,
        },
    );
}

#[test]
fn change_times_are_coarsened_to_the_day() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    l.submit(&campaign, &rid("r1"), &person(), today().plus_days(1)).unwrap();
    let changes = l.doc().get_changes(&[]);
    assert_eq!(changes.len(), 3, "skeleton, record, submit");
    for change in changes {
        assert_eq!(change.timestamp() % 86_400, 0, "change stamped {}", change.timestamp());
    }
    let view = l.response(&rid("r1")).unwrap().unwrap();
    assert_eq!(view.recorded_on, Some(today()));
    assert_eq!(view.seal.unwrap().on, Some(today().plus_days(1)));
}

#[test]
fn a_saved_ledger_loads_with_another_actor() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    let mut loaded = Ledger::load(&l.doc().save(), actor(2)).unwrap();
    assert_eq!(loaded.responses().unwrap(), l.responses().unwrap());
    assert_eq!(loaded.id(), l.id());
    loaded.record(&campaign, &response("r2", Level::TinNhiem), today()).unwrap();
    assert_eq!(loaded.doc().get_last_local_change().unwrap().actor_id(), &actor(2));
}

#[test]
fn documents_that_are_not_ledgers_are_refused() {
    let doc = hamlet_sync_core::automerge::Automerge::new();
    assert!(matches!(Ledger::from_doc(doc), Err(LedgerError::NotALedger(_))));
    assert!(matches!(Ledger::load(b"not automerge", actor(1)), Err(LedgerError::Automerge(_))));
}

/// The skeleton's hash is fixed by the schema: a client in another language (the JavaScript
/// interoperability test builds it from docs/schema.md) must produce exactly this change.
#[test]
fn the_skeleton_hash_is_fixed() {
    let campaign = fixtures::campaign().id;
    let heads = Ledger::skeleton(&campaign, &fixtures::hamlet("thon-dong")).get_heads();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].to_string(), "bed032215d5de6c8e34cd9fb22674e9693612edab76028254eefc831fa9e1e35");
}
