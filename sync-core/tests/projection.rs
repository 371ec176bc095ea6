//! The projection lists exactly the rows the server stores, and its incremental form agrees with
//! a full re-read.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{ChangeHash, ReadDoc};
use hamlet_sync_core::ledger::{Ballots, CountKey};
use hamlet_sync_core::projection::{Entity, FlagKind, Rows};
use hamlet_sync_core::{AnswerValue, Ledger, Level, ResponseId, Status, Tally, fixtures, project, project_since};

/// Applies a projection to in-memory tables the way the storage contract says.
#[derive(Default)]
struct Tables {
    rows: BTreeMap<Entity, Rows>,
}

impl Tables {
    fn apply(&mut self, p: hamlet_sync_core::Projection) {
        if p.full {
            self.rows.clear();
        }
        for e in &p.entities {
            self.rows.remove(e);
        }
        let mut by_entity: BTreeMap<Entity, Rows> = p.entities.iter().map(|e| (e.clone(), Rows::default())).collect();
        for r in p.rows.responses {
            by_entity.get_mut(&Entity::Response(r.response.clone())).unwrap().responses.push(r);
        }
        for r in p.rows.answers {
            by_entity.get_mut(&Entity::Response(r.response.clone())).unwrap().answers.push(r);
        }
        for r in p.rows.tallies {
            by_entity.get_mut(&Entity::Tally(r.tally.clone())).unwrap().tallies.push(r);
        }
        for r in p.rows.tally_counts {
            by_entity.get_mut(&Entity::Tally(r.tally.clone())).unwrap().tally_counts.push(r);
        }
        for r in p.rows.conflicts {
            by_entity.get_mut(&r.entity.clone()).unwrap().conflicts.push(r);
        }
        for r in p.rows.flags {
            by_entity.get_mut(&r.entity.clone()).unwrap().flags.push(r);
        }
        self.rows.extend(by_entity.into_iter().filter(|(_, r)| *r != Rows::default()));
    }
}

fn full(campaign: &hamlet_sync_core::Campaign, l: &Ledger) -> BTreeMap<Entity, Rows> {
    let mut t = Tables::default();
    t.apply(project(campaign, l).unwrap());
    t.rows
}

/// One step of a scenario: something done to device A or B.
type Step<'a> = Box<dyn Fn(&mut Ledger, &mut Ledger) + 'a>;

#[test]
fn incremental_projection_equals_a_full_one_at_every_step() {
    let campaign = fixtures::open_campaign();
    let mut a = ledger(1);
    let mut b = ledger(2);
    let mut tables = Tables::default();
    let mut seen: Vec<ChangeHash> = Vec::new();
    let by = "thu-ha".parse().unwrap();
    let steps: Vec<Step> = vec![
        Box::new(|a, _| a.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap()),
        Box::new(|_, b| b.record(&campaign, &response("r2", Level::TinNhiemThap), today()).unwrap()),
        Box::new(|a, b| merge(a, b)),
        Box::new(|a, _| a.submit(&campaign, &"r1".parse().unwrap(), &by, today()).unwrap()),
        Box::new(|a, _| {
            let change = [(rating("ong-an"), Some(AnswerValue::Level(Level::TinNhiemCao)))];
            a.edit(&campaign, &"r1".parse().unwrap(), &change, today()).unwrap();
        }),
        // r2 is b's: b voids it (a void by another device would not count).
        Box::new(|a, b| {
            b.void(&"r2".parse().unwrap(), "Phiếu trùng", &by, today()).unwrap();
            merge(a, b);
        }),
        Box::new(|a, _| {
            let tally = Tally {
                id: "t1".parse().unwrap(),
                collector: by.clone(),
                ballots: Ballots { issued: 50, returned: 48, valid: 47, invalid: 1 },
                counts: BTreeMap::from([(
                    CountKey {
                        question: fixtures::question("tin-nhiem"),
                        subject: fixtures::subject("ong-an"),
                        level: Level::TinNhiem,
                    },
                    40,
                )]),
            };
            a.record_tally(&campaign, &tally, today()).unwrap();
        }),
    ];
    for (i, step) in steps.iter().enumerate() {
        step(&mut a, &mut b);
        let p = project_since(&campaign, &a, &seen).unwrap();
        assert!(i == 0 || !p.full, "step {i} should be incremental");
        tables.apply(p);
        seen = a.doc().get_heads();
        assert_eq!(tables.rows, full(&campaign, &a), "after step {i}");
        // Projecting the same changes again changes nothing.
        let again = project_since(&campaign, &a, &seen).unwrap();
        assert!(again.entities.is_empty(), "nothing new after step {i}");
    }
    let rows = project(&campaign, &a).unwrap().rows;
    let status: BTreeMap<String, Status> = rows.responses.iter().map(|r| (r.response.to_string(), r.status)).collect();
    assert_eq!(status, BTreeMap::from([("r1".into(), Status::Submitted), ("r2".into(), Status::Voided)]));
    assert_eq!(rows.answers.iter().filter(|r| r.counted).count(), 3);
    assert_eq!(rows.tally_counts.len(), 1);
    assert!(matches!(rows.flags.as_slice(), [f] if matches!(f.kind, FlagKind::EditedAfterSeal { .. })));
}

#[test]
fn only_the_touched_response_is_reprojected() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    for i in 0..5 {
        l.record(&campaign, &response(&format!("r{i}"), Level::TinNhiem), today()).unwrap();
    }
    let before = l.doc().get_heads();
    l.submit(&campaign, &"r3".parse().unwrap(), &"thu-ha".parse().unwrap(), today()).unwrap();
    let p = project_since(&campaign, &l, &before).unwrap();
    let r3: ResponseId = "r3".parse().unwrap();
    assert_eq!(p.entities.into_iter().collect::<Vec<_>>(), vec![Entity::Response(r3)]);
    assert_eq!(p.rows.responses.len(), 1);
}

/// A client in another language may write anything; the projection flags what does not fit the
/// form instead of failing or counting it.
#[test]
fn values_written_by_a_careless_client_are_flagged_not_counted() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    let responses = l.doc().get(hamlet_sync_core::automerge::ROOT, "responses").unwrap().unwrap().1;
    let r1 = l.doc().get(&responses, "r1").unwrap().unwrap().1;
    let answers = l.doc().get(&r1, "answers").unwrap().unwrap().1;
    l.doc_mut()
        .transact::<_, _, hamlet_sync_core::automerge::AutomergeError>(|tx| {
            tx.put(&answers, "tin-nhiem/ong-an", "rất tốt")?;
            tx.put(&answers, "tuoi", 40)?;
            tx.put(&answers, "so-nguoi", 4.0)?;
            tx.put(&responses, "not a valid id", "x")?;
            Ok(())
        })
        .unwrap();
    let rows = project(&campaign, &l).unwrap().rows;
    let mut flagged: Vec<String> = rows
        .flags
        .iter()
        .map(|f| match &f.kind {
            FlagKind::InvalidAnswer { key, .. } => key.clone(),
            FlagKind::MalformedKey { key, .. } => format!("malformed {key}"),
            other => format!("{other:?}"),
        })
        .collect();
    flagged.sort();
    assert_eq!(flagged, ["malformed not a valid id", "tin-nhiem/ong-an", "tuoi"]);
    let numbers: Vec<&AnswerValue> =
        rows.answers.iter().filter(|a| a.question.as_str() == "so-nguoi").map(|a| &a.value).collect();
    assert_eq!(numbers, [&AnswerValue::Number(4)], "JavaScript numbers arrive as floats");
    assert_eq!(rows.answers.len(), 3, "two valid ratings and the household size");
}

/// JavaScript's Automerge turns a plain string into a text object unless it is wrapped in
/// `ImmutableString`; such answers are read as their text rather than lost.
#[test]
fn answers_written_as_text_objects_are_read_as_strings() {
    use hamlet_sync_core::automerge::ObjType;
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    let responses = l.doc().get(hamlet_sync_core::automerge::ROOT, "responses").unwrap().unwrap().1;
    let r1 = l.doc().get(&responses, "r1").unwrap().unwrap().1;
    let answers = l.doc().get(&r1, "answers").unwrap().unwrap().1;
    l.doc_mut()
        .transact::<_, _, hamlet_sync_core::automerge::AutomergeError>(|tx| {
            let text = tx.put_object(&answers, "tin-nhiem/ong-an", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, "tin_nhiem_thap")?;
            Ok(())
        })
        .unwrap();
    let rows = project(&campaign, &l).unwrap().rows;
    let ong_an: Vec<&AnswerValue> = rows
        .answers
        .iter()
        .filter(|a| a.subject.as_ref().is_some_and(|s| s.as_str() == "ong-an"))
        .map(|a| &a.value)
        .collect();
    assert_eq!(ong_an, [&AnswerValue::Level(Level::TinNhiemThap)]);
    assert!(rows.flags.is_empty(), "{:?}", rows.flags);
}
