//! Results from known inputs: responses and tallies recorded on phones, synced through the hub
//! and projected, give exactly the expected counts, shares, thresholds, participation and
//! suppression — on SQLite and PostgreSQL. Conflicts, voids, drafts and sealed edits are among
//! the inputs; only what is sealed and not voided counts, once.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod district;
mod support;

use std::collections::BTreeMap;

use district::{Harness, harness, ledger};
use hamlet_server::district::{progress, results, review};
use hamlet_sync_core::ledger::{Ballots, CountKey};
use hamlet_sync_core::{AnswerKey, AnswerValue, Campaign, Day, Level, NewResponse, ResponseId, Tally, fixtures};

use Level::{TinNhiem as MID, TinNhiemCao as HIGH, TinNhiemThap as LOW};

fn day() -> Day {
    "2025-06-04".parse().unwrap()
}

/// What happens to one response (rating `ong-an` with the level given; other subjects `MID`).
#[derive(Clone, Copy, Debug)]
enum Input {
    Submitted(Level),
    Draft(Level),
    Voided(Level),
    /// Submitted with the first level, then changed to the second: only the first counts.
    EditedAfterSeal(Level, Level),
    /// Submitted on two phones at once (a conflict on the seal): counts once.
    SubmittedOnTwoPhones(Level),
    /// A meeting tally: ballots valid (the sum of counts) and one invalid; counts high, mid, low.
    Tally([u32; 3]),
}

/// What a row of the results should say.
#[derive(Debug, PartialEq)]
struct Expect {
    total: u64,
    /// high, mid, low — `None` when suppressed.
    counts: Option<[u64; 3]>,
    shares: Option<[f64; 3]>,
    /// More than 1/2 low, at least 2/3 low.
    crossed: Option<[bool; 2]>,
}

fn shown(counts: [u64; 3], shares: [f64; 3], crossed: [bool; 2]) -> Expect {
    Expect { total: counts.iter().sum(), counts: Some(counts), shares: Some(shares), crossed: Some(crossed) }
}

fn hidden(total: u64) -> Expect {
    Expect { total, counts: None, shares: None, crossed: None }
}

fn answers(campaign: &Campaign, level: Level) -> BTreeMap<AnswerKey, AnswerValue> {
    campaign
        .subjects
        .iter()
        .map(|s| {
            let l = if s.id.as_str() == "ong-an" { level } else { MID };
            (AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()), AnswerValue::Level(l))
        })
        .collect()
}

/// Plays `inputs` on phones in each hamlet and syncs them.
async fn play(h: &Harness, campaign: &Campaign, inputs: &[(&str, Vec<Input>)]) {
    let by = "thu-ky".parse().unwrap();
    let mut device = 10;
    for (hamlet, list) in inputs {
        device += 2;
        let mut a = ledger(campaign, hamlet, device);
        let mut b = ledger(campaign, hamlet, device + 1);
        let (mut pa, mut pb) = (h.phone(device), h.phone(device + 1));
        let mut twice: Vec<ResponseId> = Vec::new();
        for (i, input) in list.iter().enumerate() {
            let id: ResponseId = format!("{hamlet}-{i}").parse().unwrap();
            let new = |level| NewResponse {
                id: id.clone(),
                collector: "thu-ky".parse().unwrap(),
                answers: answers(campaign, level),
            };
            match *input {
                Input::Submitted(l) => {
                    a.record(campaign, &new(l), day()).unwrap();
                    a.submit(campaign, &id, &by, day()).unwrap();
                }
                Input::Draft(l) => a.record(campaign, &new(l), day()).unwrap(),
                Input::Voided(l) => {
                    a.record(campaign, &new(l), day()).unwrap();
                    a.submit(campaign, &id, &by, day()).unwrap();
                    a.void(&id, "trùng phiếu", &by, day()).unwrap();
                }
                Input::EditedAfterSeal(sealed, edited) => {
                    a.record(campaign, &new(sealed), day()).unwrap();
                    a.submit(campaign, &id, &by, day()).unwrap();
                    let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"));
                    a.edit(campaign, &id, &[(key, Some(AnswerValue::Level(edited)))], day()).unwrap();
                }
                Input::SubmittedOnTwoPhones(l) => {
                    a.record(campaign, &new(l), day()).unwrap();
                    twice.push(id);
                }
                Input::Tally([high, mid, low]) => {
                    let valid = high + mid + low;
                    let mut counts = BTreeMap::new();
                    for s in &campaign.subjects {
                        let levels = if s.id.as_str() == "ong-an" { [high, mid, low] } else { [0, valid, 0] };
                        for (level, n) in [HIGH, MID, LOW].into_iter().zip(levels) {
                            counts.insert(
                                CountKey { question: fixtures::question("tin-nhiem"), subject: s.id.clone(), level },
                                n,
                            );
                        }
                    }
                    let tally = Tally {
                        id: format!("hop-{hamlet}-{i}").parse().unwrap(),
                        collector: "thu-ky".parse().unwrap(),
                        ballots: Ballots { issued: valid + 2, returned: valid + 1, valid, invalid: 1 },
                        counts,
                    };
                    a.record_tally(campaign, &tally, day()).unwrap();
                }
            }
        }
        h.sync(&mut pa, &mut a).await;
        if !twice.is_empty() {
            h.sync(&mut pb, &mut b).await;
            for id in &twice {
                a.submit(campaign, id, &by, day()).unwrap();
                b.submit(campaign, id, &"thu-ky-2".parse().unwrap(), day()).unwrap();
            }
            h.sync(&mut pa, &mut a).await;
            h.sync(&mut pb, &mut b).await;
        }
    }
}

fn check_rows(results: &results::Results, expected: &[(&str, Expect)], db: &str) {
    let subject = results.subjects.iter().find(|s| s.subject == "ong-an").expect("ong-an");
    for (unit, want) in expected {
        let row = subject.rows.iter().find(|r| r.unit == *unit).unwrap_or_else(|| panic!("{db}: no row {unit}"));
        let got = Expect {
            total: row.total,
            counts: row.counts.as_ref().map(|c| [c[0], c[1], c[2]]),
            shares: row.shares.as_ref().map(|s| [s[0], s[1], s[2]]),
            crossed: row.crossed.as_ref().map(|c| [c[0], c[1]]),
        };
        assert_eq!(&got, want, "{db}: unit {unit}");
    }
}

#[tokio::test]
async fn known_inputs_give_exact_results() {
    let inputs = vec![
        (
            "thon-dong",
            vec![
                Input::Submitted(LOW),
                Input::Submitted(LOW),
                Input::Submitted(LOW),
                Input::Submitted(MID),
                Input::Submitted(MID),
                Input::Submitted(HIGH),
                Input::Draft(LOW),
                Input::Voided(LOW),
                Input::EditedAfterSeal(HIGH, LOW),
                Input::SubmittedOnTwoPhones(LOW),
            ],
        ),
        ("thon-tay", vec![Input::Submitted(HIGH), Input::Submitted(HIGH)]),
        ("to-1", vec![Input::Tally([1, 2, 7]), Input::Submitted(LOW)]),
    ];
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let campaign = h.open(&fixtures::campaign()).await;
        play(&h, &campaign, &inputs).await;
        // Closed: every counted answer shows (while open, hamlets' figures move in batches).
        let campaign = h.close(&campaign).await;
        let hamlets = results::load(&h.district, &campaign, results::Depth::Hamlet, None).await.unwrap();
        check_rows(
            &hamlets,
            &[
                // thon-dong: 4 low (3 + the one submitted on two phones), 2 mid, 2 high (one
                // sealed high, edited later); the draft and the void do not count. It is hidden
                // all the same: shown, it would reveal thon-tay (2 answers) by subtraction.
                ("thon-dong", hidden(8)),
                ("thon-tay", hidden(2)),
                ("xa-a", shown([4, 2, 4], [40.0, 20.0, 40.0], [false, false])),
                ("huyen", shown([4, 2, 4], [40.0, 20.0, 40.0], [false, false])),
                // to-1: the tally's 10 valid ballots and one response: 8 low of 11.
                ("to-1", shown([1, 2, 8], [9.1, 18.2, 72.7], [true, true])),
                ("xa-b", shown([1, 2, 8], [9.1, 18.2, 72.7], [true, true])),
                // 12 low of 21: more than a half, less than two thirds.
                ("tinh", shown([5, 4, 12], [23.8, 19.0, 57.1], [true, false])),
                ("*", shown([5, 4, 12], [23.8, 19.0, 57.1], [true, false])),
            ],
            db.name,
        );
        // The hamlet page reads one commune's hamlets and the other communes' sums: same rows.
        for (commune, hamlet) in [("xa-a", "thon-dong"), ("xa-a", "thon-tay"), ("xa-b", "to-1")] {
            let one = results::load_commune(&h.district, &campaign, commune).await.unwrap();
            let pick = |r: &results::Results| {
                let s = r.subjects.iter().find(|s| s.subject == "ong-an").unwrap();
                let row = s.rows.iter().find(|x| x.unit == hamlet).unwrap();
                (row.total, row.suppressed, row.counts.clone())
            };
            assert_eq!(pick(&one), pick(&hamlets), "{}: {hamlet}", db.name);
        }

        // The commune-level query (summed in SQL) agrees with the hamlet-level one.
        let communes = results::load(&h.district, &campaign, results::Depth::Commune, None).await.unwrap();
        assert!(communes.units.iter().all(|u| u.level != "hamlet"), "{}", db.name);
        check_rows(
            &communes,
            &[
                ("xa-a", shown([4, 2, 4], [40.0, 20.0, 40.0], [false, false])),
                ("xa-b", shown([1, 2, 8], [9.1, 18.2, 72.7], [true, true])),
                ("*", shown([5, 4, 12], [23.8, 19.0, 57.1], [true, false])),
            ],
            db.name,
        );
        // A hamlet of a campaign under way cannot move to another commune (its counts would move
        // with it mid-campaign): the import is refused and the sums stay.
        let mut moved = fixtures::unit_tree().units().cloned().collect::<Vec<_>>();
        for u in &mut moved {
            if u.id.as_str() == "thon-tay" {
                u.parent = Some("xa-b".parse().unwrap());
            }
        }
        let csv = hamlet_server::district::catalog::units_csv(&moved);
        let refused =
            hamlet_server::district::campaigns::import_units_text(&h.district, &district::admin(), &csv).await;
        assert!(refused.is_err(), "{}: {refused:?}", db.name);
        let after = results::load(&h.district, &campaign, results::Depth::Commune, None).await.unwrap();
        let total = |r: &results::Results, unit: &str| {
            let s = r.subjects.iter().find(|s| s.subject == "ong-an").unwrap();
            s.rows.iter().find(|x| x.unit == unit).unwrap().total
        };
        assert_eq!((total(&after, "xa-a"), total(&after, "xa-b"), total(&after, "*")), (10, 11, 21), "{}", db.name);

        // Participation: submitted responses and returned ballots against expected voters.
        let unit = |id: &str| communes.units.iter().find(|u| u.id == id).unwrap();
        assert_eq!((unit("xa-a").submitted, unit("xa-a").expected_voters), (10, 595), "{}", db.name);
        assert_eq!(unit("xa-a").participation_percent, Some(1.7), "{}", db.name);
        assert_eq!((unit("xa-b").submitted, unit("xa-b").ballots_returned), (1, 11), "{}", db.name);
        assert_eq!(unit("xa-b").participation_percent, Some(6.7), "{}", db.name);

        // Progress counts what was recorded, submitted and voided.
        let progress = progress::load(&h.district, &campaign).await.unwrap();
        let dong = progress.hamlets.iter().find(|x| x.id == "thon-dong").unwrap();
        assert_eq!(
            (dong.counts.recorded, dong.counts.drafts, dong.counts.submitted, dong.counts.voided),
            (10, 1, 8, 1),
            "{}",
            db.name
        );
        assert_eq!(dong.devices.len(), 2, "{}: both phones synced thon-dong", db.name);
        let to1 = progress.hamlets.iter().find(|x| x.id == "to-1").unwrap();
        assert_eq!((to1.counts.tallies, to1.counts.ballots_returned), (1, 11), "{}", db.name);

        // Review: the edit after the seal is flagged, the double submission is a conflict.
        let items = review::items(&h.district, &campaign, true, &district::admin()).await.unwrap();
        let flags: Vec<_> = items.iter().filter_map(|i| i.flag.as_deref()).collect();
        // Phone b's seal of phone a's response is kept and flagged, never counted: a response
        // belongs to the device that recorded it.
        assert_eq!(flags, ["edited_after_seal", "foreign_write"], "{}", db.name);
        let conflicts: Vec<_> = items.iter().filter(|i| i.kind == "conflict").collect();
        assert_eq!(conflicts.len(), 1, "{}: {conflicts:?}", db.name);
        assert!(conflicts[0].path.ends_with("/seal"), "{}: {}", db.name, conflicts[0].path);
        assert_eq!(conflicts[0].values.len(), 2, "{}: both values, with their devices", db.name);
        assert_ne!(conflicts[0].values[0].actor, conflicts[0].values[1].actor, "{}", db.name);
        let actor = district::admin();
        review::mark_reviewed(&h.district, &campaign, &conflicts[0].item_key, "Đã kiểm tra: một phiếu", &actor)
            .await
            .unwrap();
        // Left to review: the two flags.
        assert_eq!(
            review::items(&h.district, &campaign, true, &district::admin()).await.unwrap().len(),
            2,
            "{}",
            db.name
        );
        let all = review::items(&h.district, &campaign, false, &district::admin()).await.unwrap();
        let done = all.iter().find(|i| i.kind == "conflict").unwrap().reviewed.as_ref().unwrap();
        assert_eq!((done.by.as_str(), done.comment.as_str()), ("test-admin", "Đã kiểm tra: một phiếu"), "{}", db.name);
        let log = hamlet_server::audit::list(&h.store, &Default::default()).await.unwrap();
        assert_eq!(log[0].action, "review.mark", "{}: audited", db.name);
    }
}

/// Writes a submitted response as another client could (the library itself refuses an answer
/// outside the hamlet's ballot): answers and seal alike.
fn write_sealed(l: &mut hamlet_sync_core::Ledger, id: &str, answers: &[(&str, Level)]) {
    use hamlet_sync_core::automerge::transaction::Transactable;
    use hamlet_sync_core::automerge::{AutomergeError, ObjType, ROOT, ReadDoc, ScalarValue};
    let responses = l.doc().get(ROOT, "responses").unwrap().unwrap().1;
    l.doc_mut()
        .transact_with::<_, _, AutomergeError, _>(
            |_| hamlet_sync_core::automerge::transaction::CommitOptions::default().with_time(day().unix_seconds()),
            |tx| {
                let r = tx.put_object(&responses, id, ObjType::Map)?;
                tx.put(&r, "form_version", 1)?;
                tx.put(&r, "recorded_on", day().to_string())?;
                tx.put(&r, "collector", "thu-ky")?;
                let a = tx.put_object(&r, "answers", ObjType::Map)?;
                let seal = tx.put_object(&r, "seal", ObjType::Map)?;
                tx.put(&seal, "on", day().to_string())?;
                tx.put(&seal, "by", "thu-ky")?;
                let sealed = tx.put_object(&seal, "answers", ObjType::Map)?;
                for (subject, level) in answers {
                    let key = format!("tin-nhiem/{subject}");
                    tx.put(&a, key.as_str(), ScalarValue::Str(level.code().into()))?;
                    tx.put(&sealed, key.as_str(), ScalarValue::Str(level.code().into()))?;
                }
                Ok(())
            },
        )
        .unwrap();
}

/// Schema version 2: each subject's results and participation come from their scope only; an
/// answer about a subject outside the hamlet's ballot is flagged and never counted.
#[tokio::test]
async fn results_per_subject_come_only_from_its_scope() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let campaign = h.open(&fixtures::scoped_campaign()).await;
        // thon-dong rates ong-an and ba-binh; a careless client also rates ong-cuong there.
        let mut dong = ledger(&campaign, "thon-dong", 31);
        for i in 0..6 {
            write_sealed(&mut dong, &format!("dong-{i}"), &[("ong-an", LOW), ("ba-binh", MID), ("ong-cuong", LOW)]);
        }
        h.sync(&mut h.phone(31), &mut dong).await;
        // thon-tay rates ong-an, ong-cuong and ba-dung.
        let mut tay = ledger(&campaign, "thon-tay", 32);
        for i in 0..5 {
            write_sealed(&mut tay, &format!("tay-{i}"), &[("ong-an", HIGH), ("ong-cuong", HIGH), ("ba-dung", MID)]);
        }
        h.sync(&mut h.phone(32), &mut tay).await;
        let campaign = h.close(&campaign).await;

        let r = results::load(&h.district, &campaign, results::Depth::Hamlet, None).await.unwrap();
        let subject = |id: &str| r.subjects.iter().find(|s| s.subject == id).unwrap_or_else(|| panic!("{id}"));
        let overall = |id: &str| subject(id).overall().unwrap().clone();
        assert_eq!(overall("ong-cuong").total, 5, "{}: thon-dong's answers about ong-cuong are not counted", db.name);
        assert_eq!(overall("ong-cuong").counts, Some(vec![5, 0, 0]), "{}", db.name);
        assert_eq!(overall("ong-an").total, 11, "{}: the whole commune rates ong-an", db.name);
        assert_eq!(overall("ba-binh").total, 6, "{}", db.name);
        assert_eq!(subject("ong-an").scope, ["thon-dong", "thon-tay"], "{}", db.name);
        assert_eq!(subject("ong-em").scope, ["to-1"], "{}", db.name);
        // Participation per subject, against the expected voters of the scope: thon-dong 320,
        // thon-tay 275, to-1 180.
        assert_eq!(
            (overall("ong-cuong").expected_voters, overall("ong-cuong").participation_percent),
            (275, Some(1.8))
        );
        assert_eq!((overall("ong-an").expected_voters, overall("ong-an").participation_percent), (595, Some(1.8)));
        assert_eq!((overall("ba-binh").expected_voters, overall("ba-binh").participation_percent), (320, Some(1.9)));
        assert_eq!((overall("ong-em").expected_voters, overall("ong-em").participation_percent), (180, Some(0.0)));
        let row = |id: &str, unit: &str| subject(id).rows.iter().find(|x| x.unit == unit).unwrap().clone();
        assert_eq!(row("ong-cuong", "thon-dong").expected_voters, 0, "{}: outside the scope", db.name);
        assert_eq!(row("ong-cuong", "thon-dong").participation_percent, None, "{}", db.name);
        assert_eq!(row("ong-cuong", "thon-dong").total, 0, "{}", db.name);

        // The projection flagged each answer outside the ballot.
        const FLAGGED: &str = "SELECT COUNT(*) FROM flags WHERE kind = 'outside_ballot'";
        let flagged: i64 = match h.store.pool() {
            hamlet_server::store::PoolRef::Sqlite(pool) => sqlx::query_scalar(FLAGGED).fetch_one(pool).await,
            hamlet_server::store::PoolRef::Postgres(pool) => sqlx::query_scalar(FLAGGED).fetch_one(pool).await,
        }
        .unwrap();
        assert_eq!(flagged, 6, "{}", db.name);

        // Progress shows what each hamlet evaluates.
        let p = progress::load(&h.district, &campaign).await.unwrap();
        let ballot = |hamlet: &str| -> Vec<String> {
            p.hamlets.iter().find(|x| x.id == hamlet).unwrap().ballot.iter().map(|s| s.id.clone()).collect()
        };
        assert_eq!(ballot("thon-dong"), ["ong-an", "ba-binh"], "{}", db.name);
        assert_eq!(ballot("to-1"), ["ong-em"], "{}", db.name);
    }
}
