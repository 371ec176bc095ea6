//! Who is evaluated where (schema version 2): each hamlet rates the subjects of its own ballot,
//! and a campaign made under version 1 still reads as "every hamlet rates every subject".
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{ActorId, Automerge, AutomergeError, ObjType, ROOT, ReadDoc};
use hamlet_sync_core::campaign_doc::{CAMPAIGN_SCHEMA, new_campaign_doc, read_campaign};
use hamlet_sync_core::form::AnswerError;
use hamlet_sync_core::ledger::{Ballots, CountKey};
use hamlet_sync_core::projection::FlagKind;
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, CampaignError, CampaignState, EvaluationScope, Ledger, LedgerError, Level,
    NewResponse, SubjectId, Tally, UnitId, fixtures, project,
};

fn open_scoped() -> Campaign {
    let mut c = fixtures::scoped_campaign();
    c.transition(CampaignState::Open, Some(&fixtures::unit_tree())).expect("opens");
    c
}

fn ids(list: &[&str]) -> Vec<SubjectId> {
    list.iter().map(|s| fixtures::subject(s)).collect()
}

fn hamlet(h: &str) -> UnitId {
    fixtures::hamlet(h)
}

fn ledger_of(campaign: &Campaign, h: &str, actor_n: u8) -> Ledger {
    Ledger::create(&campaign.id, &hamlet(h), actor(actor_n))
}

fn rated(subjects: &[&str], level: Level) -> BTreeMap<AnswerKey, AnswerValue> {
    subjects.iter().map(|s| (rating(s), AnswerValue::Level(level))).collect()
}

#[test]
fn each_hamlet_gets_the_ballot_of_the_subjects_whose_scope_holds_it() {
    let c = fixtures::scoped_campaign();
    assert_eq!(c.ballot(&hamlet("thon-dong")), ids(&["ong-an", "ba-binh"]), "ong-an: the whole commune");
    assert_eq!(c.ballot(&hamlet("thon-tay")), ids(&["ong-an", "ong-cuong", "ba-dung"]));
    assert_eq!(c.ballot(&hamlet("to-1")), ids(&["ong-em"]), "another commune: not ong-an");
    let scope: Vec<&str> = c.scope_of(&fixtures::subject("ong-an")).map(|h| h.hamlet.as_str()).collect();
    assert_eq!(scope, ["thon-dong", "thon-tay"]);

    // A list of hamlets widens the home hamlet; a hamlet nobody is evaluated in leaves the campaign.
    let mut c = fixtures::scoped_campaign();
    c.subjects.retain(|s| s.id.as_str() != "ong-em");
    c.subjects[1].scope = EvaluationScope::Hamlets(vec![hamlet("thon-tay")]);
    c.resolve_ballots(&fixtures::unit_tree());
    assert_eq!(c.ballot(&hamlet("thon-tay")), ids(&["ong-an", "ba-binh", "ong-cuong", "ba-dung"]));
    assert_eq!(c.ballot(&hamlet("to-1")), ids(&[]));
    assert!(!c.has_hamlet(&hamlet("to-1")), "no subject in scope: not in the campaign");
    assert_eq!(c.in_campaign().count(), 2);
    assert_eq!(c.validate(Some(&fixtures::unit_tree())), Ok(()));
}

#[test]
fn a_scope_must_follow_the_campaign_and_be_resolved() {
    let tree = fixtures::unit_tree();
    let mut c = fixtures::scoped_campaign();
    c.subjects[1].scope = EvaluationScope::Hamlets(vec![hamlet("thon-bac")]);
    assert_eq!(
        c.validate(Some(&tree)),
        Err(CampaignError::ScopeOutsideCampaign { subject: fixtures::subject("ba-binh"), hamlet: hamlet("thon-bac") })
    );
    let mut c = fixtures::scoped_campaign();
    c.subjects[2].scope = EvaluationScope::Commune; // ballots not resolved again
    assert_eq!(c.validate(Some(&tree)), Err(CampaignError::Ballot(hamlet("thon-dong"))));
    let mut c = fixtures::scoped_campaign();
    c.hamlets.retain(|h| h.hamlet.as_str() != "to-1");
    assert_eq!(
        c.validate(Some(&tree)),
        Err(CampaignError::ScopeOutsideCampaign { subject: fixtures::subject("ong-em"), hamlet: hamlet("to-1") })
    );
}

#[test]
fn the_ledger_refuses_an_answer_about_a_subject_outside_its_ballot() {
    let c = open_scoped();
    let mut l = ledger_of(&c, "thon-dong", 1);
    let outside = NewResponse {
        id: "r1".parse().unwrap(),
        collector: "thu-ha".parse().unwrap(),
        answers: rated(&["ong-an", "ong-cuong"], Level::TinNhiem),
    };
    match l.record(&c, &outside, today()) {
        Err(LedgerError::Answer(AnswerError::UnknownSubject { subject, .. })) => {
            assert_eq!(subject.as_str(), "ong-cuong")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The hamlet's own ballot is enough to submit: nobody asks thon-dong about ong-cuong.
    let own = NewResponse { answers: rated(&["ong-an", "ba-binh"], Level::TinNhiem), ..outside };
    l.record(&c, &own, today()).unwrap();
    l.submit(&c, &own.id, &"thu-ha".parse().unwrap(), today()).unwrap();
    let tally = Tally {
        id: "t1".parse().unwrap(),
        collector: "thu-ha".parse().unwrap(),
        ballots: Ballots { issued: 10, returned: 10, valid: 10, invalid: 0 },
        counts: [(
            CountKey {
                question: fixtures::question("tin-nhiem"),
                subject: fixtures::subject("ong-cuong"),
                level: Level::TinNhiem,
            },
            3,
        )]
        .into(),
    };
    assert!(matches!(l.record_tally(&c, &tally, today()), Err(LedgerError::Tally(_))));
}

/// Writes a submitted response as another client could, answers and seal alike.
fn write_sealed(l: &mut Ledger, id: &str, answers: &BTreeMap<AnswerKey, AnswerValue>) {
    let responses = l.doc().get(ROOT, "responses").unwrap().unwrap().1;
    l.doc_mut()
        .transact::<_, _, AutomergeError>(|tx| {
            let r = tx.put_object(&responses, id, ObjType::Map)?;
            tx.put(&r, "form_version", 1)?;
            tx.put(&r, "recorded_on", "2025-06-02")?;
            tx.put(&r, "collector", "thu-ha")?;
            let a = tx.put_object(&r, "answers", ObjType::Map)?;
            let seal = tx.put_object(&r, "seal", ObjType::Map)?;
            tx.put(&seal, "on", "2025-06-02")?;
            tx.put(&seal, "by", "thu-ha")?;
            let sealed = tx.put_object(&seal, "answers", ObjType::Map)?;
            for (k, v) in answers {
                tx.put(&a, k.to_string(), hamlet_sync_core::automerge::ScalarValue::from(v))?;
                tx.put(&sealed, k.to_string(), hamlet_sync_core::automerge::ScalarValue::from(v))?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_ballot_answer_outside_the_scope_is_flagged_and_not_counted() {
    let c = open_scoped();
    let mut l = ledger_of(&c, "thon-dong", 1);
    write_sealed(&mut l, "r1", &rated(&["ong-an", "ba-binh", "ong-cuong"], Level::TinNhiemThap));
    let rows = project(&c, &l).unwrap().rows;
    let counted: Vec<&str> =
        rows.answers.iter().filter(|a| a.counted).filter_map(|a| a.subject.as_ref()).map(|s| s.as_str()).collect();
    assert_eq!(counted, ["ba-binh", "ong-an"], "the hamlet's own subjects count");
    let flags: Vec<&FlagKind> = rows.flags.iter().map(|f| &f.kind).collect();
    assert_eq!(
        flags,
        [&FlagKind::OutsideBallot { key: "tin-nhiem/ong-cuong".into(), subject: fixtures::subject("ong-cuong") }]
    );

    // A meeting's count about ong-cuong is flagged and dropped; the rest of the tally counts.
    let tallies = l.doc().get(ROOT, "tallies").unwrap().unwrap().1;
    l.doc_mut()
        .transact::<_, _, AutomergeError>(|tx| {
            let t = tx.put_object(&tallies, "t1", ObjType::Map)?;
            tx.put(&t, "recorded_on", "2025-06-02")?;
            tx.put(&t, "collector", "thu-ha")?;
            for (k, n) in
                [("ballots_issued", 10), ("ballots_returned", 10), ("ballots_valid", 10), ("ballots_invalid", 0)]
            {
                tx.put(&t, k, n)?;
            }
            let counts = tx.put_object(&t, "counts", ObjType::Map)?;
            tx.put(&counts, "tin-nhiem/ong-an/tin_nhiem", 10)?;
            tx.put(&counts, "tin-nhiem/ong-cuong/tin_nhiem_thap", 10)?;
            Ok(())
        })
        .unwrap();
    let rows = project(&c, &l).unwrap().rows;
    let counts: Vec<&str> = rows.tally_counts.iter().map(|t| t.subject.as_str()).collect();
    assert_eq!(counts, ["ong-an"]);
    assert!(rows.tallies[0].counted, "what is left of the tally adds up");
    assert!(rows.flags.iter().any(
        |f| matches!(&f.kind, FlagKind::OutsideBallot { key, .. } if key == "tin-nhiem/ong-cuong/tin_nhiem_thap")
    ));
}

#[test]
fn an_old_version_campaign_counts_every_hamlet_for_every_subject() {
    // The example campaign is a version 1 campaign: xa-a's cadres, rated in xa-b's to-1 too.
    let c = fixtures::open_campaign();
    assert!(!c.is_scoped());
    assert_eq!(c.ballot(&hamlet("to-1")), c.subject_ids());
    let mut l = ledger_of(&c, "to-1", 1);
    l.record(&c, &response("r1", Level::TinNhiem), today()).unwrap();
    l.submit(&c, &"r1".parse().unwrap(), &"thu-ha".parse().unwrap(), today()).unwrap();
    let rows = project(&c, &l).unwrap().rows;
    assert_eq!(rows.answers.iter().filter(|a| a.counted).count(), 3);
    assert!(rows.flags.is_empty(), "{:?}", rows.flags);

    // The same answers under version 2 (each cadre evaluated at home): to-1 evaluates none of
    // them, so it is not in the campaign at all.
    let mut v2 = c.clone();
    v2.schema_version = hamlet_sync_core::CAMPAIGN_VERSION;
    v2.resolve_ballots(&fixtures::unit_tree());
    assert!(!v2.has_hamlet(&hamlet("to-1")));
    assert_eq!(v2.ballot(&hamlet("thon-tay")), ids(&["can-bo-01"]));
}

#[test]
fn campaign_documents_of_both_versions_read() {
    let today = day("2025-05-20");
    let scoped = fixtures::scoped_campaign();
    let doc = new_campaign_doc(&scoped, ActorId::random(), today).unwrap();
    let doc = Automerge::load(&doc.save()).unwrap();
    assert_eq!(doc.get(ROOT, "schema").unwrap().unwrap().0.as_str(), Some(CAMPAIGN_SCHEMA));
    assert_eq!(read_campaign(&doc).unwrap(), scoped);

    // A document as the version 1 server wrote it: no `schema_version`, no ballot, no scope.
    let old = fixtures::open_campaign();
    let mut doc = new_campaign_doc(&old, ActorId::random(), today).unwrap();
    let campaign = doc.get(ROOT, "campaign").unwrap().unwrap().1;
    doc.transact::<_, _, AutomergeError>(|tx| tx.delete(&campaign, "schema_version")).unwrap();
    assert_eq!(doc.get(ROOT, "schema").unwrap().unwrap().0.as_str(), Some("hamlet-campaign/1"));
    let read = read_campaign(&doc).unwrap();
    assert_eq!(read, old);
    assert_eq!(read.ballot(&hamlet("to-1")), old.subject_ids());
}
