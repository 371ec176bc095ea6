//! Results follow the campaign's rules: what the projection counts, and what it only keeps and
//! flags (another form version, a submission dated outside the schedule, a tally that cannot be
//! true or was entered twice).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use hamlet_sync_core::ledger::{Ballots, CountKey};
use hamlet_sync_core::projection::{Entity, FlagKind, Projection};
use hamlet_sync_core::{Level, Tally, TallyId, fixtures, project, project_since};

fn submitted(on: &str) -> (hamlet_sync_core::Campaign, hamlet_sync_core::Ledger) {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record(&campaign, &response("r1", Level::TinNhiemCao), day("2025-06-02")).unwrap();
    l.submit(&campaign, &"r1".parse().unwrap(), &"thu-ha".parse().unwrap(), day(on)).unwrap();
    (campaign, l)
}

fn counted(p: &Projection) -> usize {
    p.rows.answers.iter().filter(|a| a.counted).count()
}

fn flags_of(p: &Projection, entity: &Entity) -> Vec<FlagKind> {
    p.rows.flags.iter().filter(|f| &f.entity == entity).map(|f| f.kind.clone()).collect()
}

#[test]
fn a_response_on_another_form_version_is_flagged_and_not_counted() {
    let (mut campaign, l) = submitted("2025-06-02");
    assert_eq!(counted(&project(&campaign, &l).unwrap()), 3, "three ratings, on the campaign's version");
    campaign.form.version = 2;
    let p = project(&campaign, &l).unwrap();
    let r1 = Entity::Response("r1".parse().unwrap());
    assert!(flags_of(&p, &r1).contains(&FlagKind::FormVersion { found: Some(1), expected: 2 }));
    assert_eq!(counted(&p), 0, "answers of another form version are kept, not counted");
}

#[test]
fn a_submission_dated_after_the_close_is_flagged_and_not_counted() {
    let (campaign, l) = submitted("2025-06-21");
    let p = project(&campaign, &l).unwrap();
    let r1 = Entity::Response("r1".parse().unwrap());
    assert_eq!(
        flags_of(&p, &r1),
        [FlagKind::OutsideSchedule {
            recorded_on: Some(day("2025-06-02")),
            submitted_on: Some(day("2025-06-21")),
            opens_on: day("2025-06-01"),
            closes_on: day("2025-06-20"),
        }]
    );
    assert_eq!(counted(&p), 0);
    assert_eq!(p.rows.answers.len(), 3, "kept");
    // On the last day it counts.
    let (campaign, l) = submitted("2025-06-20");
    assert_eq!(counted(&project(&campaign, &l).unwrap()), 3);
}

#[test]
fn a_response_recorded_before_the_opening_is_flagged_and_not_counted() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record(&campaign, &response("r1", Level::TinNhiemCao), day("2025-05-30")).unwrap();
    l.submit(&campaign, &"r1".parse().unwrap(), &"thu-ha".parse().unwrap(), day("2025-06-02")).unwrap();
    let p = project(&campaign, &l).unwrap();
    assert_eq!(counted(&p), 0);
    assert!(matches!(flags_of(&p, &Entity::Response("r1".parse().unwrap()))[..], [FlagKind::OutsideSchedule { .. }]));
}

fn tally(id: &str, issued: u32, high: u32) -> Tally {
    let key =
        |s: &str, level| CountKey { question: fixtures::question("tin-nhiem"), subject: fixtures::subject(s), level };
    let counts = BTreeMap::from([(key("ong-an", Level::TinNhiemCao), high)]);
    Tally {
        id: id.parse().unwrap(),
        collector: "thu-ha".parse().unwrap(),
        ballots: Ballots { issued, returned: issued, valid: issued, invalid: 0 },
        counts,
    }
}

fn tally_counted(p: &Projection, id: &str) -> bool {
    let id: TallyId = id.parse().unwrap();
    p.rows.tallies.iter().find(|t| t.tally == id).expect("tally row").counted
}

#[test]
fn a_tally_with_more_ballots_than_the_hamlets_voters_is_flagged_and_not_counted() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    // thon-dong expects 320 voters.
    l.record_tally(&campaign, &tally("t1", 300, 300), today()).unwrap();
    l.record_tally(&campaign, &tally("t2", 3_000_000, 3_000_000), today()).unwrap();
    let p = project(&campaign, &l).unwrap();
    assert!(tally_counted(&p, "t1"));
    assert!(!tally_counted(&p, "t2"), "millions of votes in a hamlet of 320");
    let flags = flags_of(&p, &Entity::Tally("t2".parse().unwrap()));
    assert!(matches!(flags[..], [FlagKind::TallyInconsistent { .. }]), "{flags:?}");
    assert!(flags_of(&p, &Entity::Tally("t1".parse().unwrap())).is_empty());
}

#[test]
fn a_tally_entered_twice_is_flagged_once_and_counted_once() {
    let campaign = fixtures::open_campaign();
    let mut l = ledger(1);
    l.record_tally(&campaign, &tally("t-b", 100, 60), today()).unwrap();
    let before = l.doc().get_heads();
    // A retry makes a new id with the same figures.
    l.record_tally(&campaign, &tally("t-a", 100, 60), today()).unwrap();
    let p = project(&campaign, &l).unwrap();
    let counted: Vec<bool> = ["t-a", "t-b"].iter().map(|t| tally_counted(&p, t)).collect();
    assert_eq!(counted, [true, false], "the first by id counts, the copy waits for review");
    assert_eq!(
        flags_of(&p, &Entity::Tally("t-b".parse().unwrap())),
        [FlagKind::TallyDuplicate { of: "t-a".parse().unwrap() }]
    );
    // The incremental projection re-reads every tally, so it says the same.
    let since = project_since(&campaign, &l, &before).unwrap();
    assert!(since.entities.contains(&Entity::Tally("t-b".parse().unwrap())));
    assert!(!tally_counted(&since, "t-b"));
}
