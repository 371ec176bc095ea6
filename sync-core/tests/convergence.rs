//! Ledgers written offline on several devices converge, whatever the order, duplication or
//! reordering of what they exchange, and no device's responses disappear.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{ActorId, Automerge, AutomergeError, ObjType, ROOT, ReadDoc};
use hamlet_sync_core::ledger::Scalar;
use hamlet_sync_core::{AnswerValue, Ledger, Level, PersonId, ResponseId, Status, fixtures, project};
use proptest::prelude::*;

fn ids(l: &Ledger) -> BTreeSet<String> {
    l.responses().unwrap().into_iter().map(|r| r.id.to_string()).collect()
}

/// Why the skeleton exists: two devices that each create `responses` on their own make a
/// conflict, and the losing device's responses vanish from view.
#[test]
fn independently_created_maps_would_hide_responses() {
    let mut devices: Vec<Automerge> = (1..=2u8)
        .map(|n| {
            let mut doc = Automerge::new().with_actor(ActorId::from([n; 16]));
            doc.transact::<_, _, AutomergeError>(|tx| {
                let responses = tx.put_object(ROOT, "responses", ObjType::Map)?;
                tx.put(&responses, format!("from-device-{n}"), true)?;
                Ok(())
            })
            .unwrap();
            doc
        })
        .collect();
    let mut other = devices.pop().unwrap();
    let mut merged = devices.pop().unwrap();
    merged.merge(&mut other).unwrap();
    assert_eq!(merged.get_all(ROOT, "responses").unwrap().len(), 2, "two maps in conflict");
    let (_, shown) = merged.get(ROOT, "responses").unwrap().unwrap();
    assert_eq!(merged.keys(&shown).count(), 1, "only one device's response is visible");
}

#[test]
fn every_device_creates_the_same_skeleton() {
    let a = ledger(1);
    let b = ledger(2);
    assert_eq!(a.doc().get_heads(), b.doc().get_heads(), "one skeleton change, same hash");
    let mut merged = ledger(3);
    merge(&mut merged, &a);
    merge(&mut merged, &b);
    assert_eq!(merged.doc().get_changes(&[]).len(), 1);
    assert!(merged.conflicts().unwrap().is_empty());
}

/// Four devices record offline; merging their ledgers in each of the 24 orders shows all twelve
/// responses, with the same heads every time.
#[test]
fn every_merge_order_finds_every_response() {
    let campaign = fixtures::open_campaign();
    let devices: Vec<Ledger> = (1..=4u8)
        .map(|n| {
            let mut l = ledger(n);
            for i in 0..3 {
                l.record(&campaign, &response(&format!("d{n}-r{i}"), Level::TinNhiem), today()).unwrap();
            }
            l
        })
        .collect();
    let expected: BTreeSet<String> = (1..=4).flat_map(|n| (0..3).map(move |i| format!("d{n}-r{i}"))).collect();
    let mut heads = None;
    for order in permutations(&[0, 1, 2, 3]) {
        // Merge into an empty document that has never seen the skeleton.
        let mut doc = Automerge::new().with_actor(actor(9));
        for &i in &order {
            doc.load_incremental(&devices[i].doc().save()).unwrap();
        }
        let fresh = Ledger::from_doc(doc).unwrap();
        assert_eq!(ids(&fresh), expected, "order {order:?}");
        let h = fresh.doc().get_heads();
        assert_eq!(*heads.get_or_insert_with(|| h.clone()), h, "order {order:?}");
    }
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for (i, first) in items.iter().enumerate() {
        let mut rest = items.to_vec();
        rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, *first);
            out.push(p);
        }
    }
    out
}

#[test]
fn concurrent_edits_of_one_answer_are_listed_as_a_conflict_with_both_authors() {
    let campaign = fixtures::open_campaign();
    let mut a = ledger(1);
    a.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    let mut b = Ledger::load(&a.doc().save(), actor(2)).unwrap();
    let id: ResponseId = "r1".parse().unwrap();
    a.edit(&campaign, &id, &[(rating("ong-an"), Some(AnswerValue::Level(Level::TinNhiemCao)))], today()).unwrap();
    b.edit(&campaign, &id, &[(rating("ong-an"), Some(AnswerValue::Level(Level::TinNhiemThap)))], today()).unwrap();
    merge(&mut a, &b);
    merge(&mut b, &a);
    let conflicts = a.conflicts().unwrap();
    assert_eq!(conflicts, b.conflicts().unwrap());
    assert_eq!(conflicts.len(), 1);
    let c = &conflicts[0];
    assert_eq!(c.path, ["responses", "r1", "answers", "tin-nhiem/ong-an"]);
    let mut seen: Vec<(Scalar, String)> = c.values.iter().map(|v| (v.value.clone(), v.actor.clone())).collect();
    seen.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        seen,
        vec![
            (Scalar::Str("tin_nhiem_cao".into()), actor(1).to_hex_string()),
            (Scalar::Str("tin_nhiem_thap".into()), actor(2).to_hex_string()),
        ]
    );
    let shown = a.response(&id).unwrap().unwrap().answers["tin-nhiem/ong-an"].clone();
    assert_eq!(c.values[0].value, shown, "the value shown is listed first");
    let rows = project(&campaign, &a).unwrap().rows;
    assert_eq!(rows.conflicts.len(), 1);
}

#[test]
fn an_edit_concurrent_with_submission_is_flagged_and_counted_once() {
    let campaign = fixtures::open_campaign();
    let mut a = ledger(1);
    a.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    let mut b = Ledger::load(&a.doc().save(), actor(2)).unwrap();
    let id: ResponseId = "r1".parse().unwrap();
    a.submit(&campaign, &id, &"thu-ha".parse().unwrap(), today()).unwrap();
    b.edit(&campaign, &id, &[(rating("ong-an"), Some(AnswerValue::Level(Level::TinNhiemThap)))], today()).unwrap();
    merge(&mut a, &b);
    let rows = project(&campaign, &a).unwrap().rows;
    let counted: Vec<_> = rows.answers.iter().filter(|r| r.counted).collect();
    assert_eq!(counted.len(), 3, "one counted answer per subject");
    assert!(counted.iter().all(|r| r.value == AnswerValue::Level(Level::TinNhiem)));
    assert_eq!(rows.flags.len(), 1, "{:?}", rows.flags);
}

#[test]
fn a_void_concurrent_with_an_edit_wins() {
    let campaign = fixtures::open_campaign();
    let mut a = ledger(1);
    a.record(&campaign, &response("r1", Level::TinNhiem), today()).unwrap();
    let mut b = Ledger::load(&a.doc().save(), actor(2)).unwrap();
    let id: ResponseId = "r1".parse().unwrap();
    a.void(&id, "Trùng phiếu", &"thu-ha".parse().unwrap(), today()).unwrap();
    b.edit(&campaign, &id, &[(rating("ong-an"), Some(AnswerValue::Level(Level::TinNhiemThap)))], today()).unwrap();
    merge(&mut b, &a);
    assert_eq!(b.response(&id).unwrap().unwrap().status(), Status::Voided);
    assert!(project(&campaign, &b).unwrap().rows.answers.iter().all(|r| !r.counted));
}

#[derive(Clone, Debug)]
enum Op {
    Record {
        device: usize,
    },
    Edit {
        device: usize,
        pick: usize,
        level: usize,
    },
    Submit {
        device: usize,
        pick: usize,
    },
    Void {
        device: usize,
        pick: usize,
    },
    /// The device sends what it has written since its last send to another device.
    Send {
        from: usize,
        to: usize,
    },
    /// A message in flight is delivered now (and stays in flight when `duplicate`).
    Deliver {
        pick: usize,
        duplicate: bool,
    },
}

fn op(devices: usize) -> impl Strategy<Value = Op> {
    let d = 0..devices;
    prop_oneof![
        3 => d.clone().prop_map(|device| Op::Record { device }),
        2 => (d.clone(), any::<usize>(), 0..3usize).prop_map(|(device, pick, level)| Op::Edit { device, pick, level }),
        1 => (d.clone(), any::<usize>()).prop_map(|(device, pick)| Op::Submit { device, pick }),
        1 => (d.clone(), any::<usize>()).prop_map(|(device, pick)| Op::Void { device, pick }),
        2 => (d.clone(), d).prop_map(|(from, to)| Op::Send { from, to }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, duplicate)| Op::Deliver { pick, duplicate }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Op>, Vec<usize>)> {
    (2..=4usize)
        .prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..60), prop::collection::vec(any::<usize>(), 0..80)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// N devices, random operations, messages delivered late, twice, or out of order: at the end
    /// every device has the same heads, the same views, and every recorded response exactly once.
    #[test]
    fn devices_converge_whatever_the_delivery((n, ops, final_order) in scenario()) {
        let campaign = fixtures::open_campaign();
        let levels = [Level::TinNhiemCao, Level::TinNhiem, Level::TinNhiemThap];
        let by: PersonId = "thu-ha".parse().unwrap();
        let mut devices: Vec<Ledger> = (0..n).map(|i| ledger(i as u8 + 1)).collect();
        let mut sent_heads = vec![Vec::new(); n];
        let mut in_flight: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut recorded = BTreeSet::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Record { device } => {
                    let id = format!("d{device}-s{step}");
                    devices[device].record(&campaign, &response(&id, levels[step % 3]), today()).unwrap();
                    recorded.insert(id);
                }
                // Nothing recorded on this device yet: nothing to edit, submit or void.
                Op::Edit { device, .. } | Op::Submit { device, .. } | Op::Void { device, .. }
                    if devices[device].response_ids().0.is_empty() => {}
                Op::Edit { device, pick, level } => {
                    let id = pick_id(&devices[device], pick);
                    let change = [(rating("ong-an"), Some(AnswerValue::Level(levels[level])))];
                    // Voided responses refuse edits; every other outcome must succeed.
                    match devices[device].edit(&campaign, &id, &change, today()) {
                        Ok(_) | Err(hamlet_sync_core::LedgerError::Voided(_)) => {}
                        Err(e) => panic!("edit failed: {e}"),
                    }
                }
                Op::Submit { device, pick } => {
                    let id = pick_id(&devices[device], pick);
                    match devices[device].submit(&campaign, &id, &by, today()) {
                        Ok(()) | Err(hamlet_sync_core::LedgerError::Voided(_) | hamlet_sync_core::LedgerError::AlreadySubmitted(_)) => {}
                        Err(e) => panic!("submit failed: {e}"),
                    }
                }
                Op::Void { device, pick } => {
                    let id = pick_id(&devices[device], pick);
                    match devices[device].void(&id, "Phiếu trùng", &by, today()) {
                        Ok(()) | Err(hamlet_sync_core::LedgerError::Voided(_)) => {}
                        Err(e) => panic!("void failed: {e}"),
                    }
                }
                Op::Send { from, to } => {
                    let bytes = devices[from].doc().save_after(&sent_heads[from]);
                    sent_heads[from] = devices[from].doc().get_heads();
                    in_flight.push((to, bytes));
                }
                Op::Deliver { pick, duplicate } if !in_flight.is_empty() => {
                    let i = pick % in_flight.len();
                    let (to, bytes) = if duplicate { in_flight[i].clone() } else { in_flight.remove(i) };
                    devices[to].doc_mut().load_incremental(&bytes).unwrap();
                }
                Op::Deliver { .. } => {}
            }
        }
        // Deliver what is left in a random order, then let everyone exchange everything.
        for pick in final_order {
            if in_flight.is_empty() { break; }
            let (to, bytes) = in_flight.remove(pick % in_flight.len());
            devices[to].doc_mut().load_incremental(&bytes).unwrap();
        }
        for (to, bytes) in in_flight {
            devices[to].doc_mut().load_incremental(&bytes).unwrap();
        }
        let everything: Vec<Vec<u8>> = devices.iter().map(|d| d.doc().save()).collect();
        for device in &mut devices {
            for bytes in everything.iter().rev() {
                device.doc_mut().load_incremental(bytes).unwrap();
            }
        }
        let first = &devices[0];
        let heads = first.doc().get_heads();
        let responses = first.responses().unwrap();
        let seen: Vec<String> = responses.iter().map(|r| r.id.to_string()).collect();
        prop_assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), recorded.clone());
        prop_assert_eq!(seen.len(), recorded.len(), "each response exactly once");
        let rows = project(&campaign, first).unwrap();
        for other in &devices[1..] {
            prop_assert_eq!(other.doc().get_heads(), heads.clone());
            prop_assert_eq!(other.responses().unwrap(), responses.clone());
            prop_assert_eq!(other.conflicts().unwrap(), first.conflicts().unwrap());
            prop_assert_eq!(project(&campaign, other).unwrap(), rows.clone());
        }
    }
}

fn pick_id(l: &Ledger, pick: usize) -> ResponseId {
    let ids = l.response_ids().0;
    ids[pick % ids.len()].clone()
}
