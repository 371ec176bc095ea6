//! Counting by the campaign's rules, through the hub and the projector, on SQLite and
//! PostgreSQL: what is kept and flagged but not counted, and what review changes.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod district;
mod support;

use std::collections::BTreeMap;

use district::{admin, harness, ledger};
use hamlet_server::district::{campaigns, results, review};
use hamlet_sync_core::ledger::{Ballots, CountKey};
use hamlet_sync_core::{AnswerKey, AnswerValue, Campaign, CampaignState, Day, Level, NewResponse, Tally, fixtures};

fn day() -> Day {
    "2025-06-04".parse().unwrap()
}

fn tally(campaign: &Campaign, id: &str, valid: u32) -> Tally {
    let counts: BTreeMap<CountKey, u32> = campaign
        .subjects
        .iter()
        .map(|s| {
            (
                CountKey {
                    question: fixtures::question("tin-nhiem"),
                    subject: s.id.clone(),
                    level: Level::TinNhiemCao,
                },
                valid,
            )
        })
        .collect();
    Tally {
        id: id.parse().unwrap(),
        collector: "thu-ky".parse().unwrap(),
        ballots: Ballots { issued: valid, returned: valid, valid, invalid: 0 },
        counts,
    }
}

async fn total(h: &district::Harness, campaign: &Campaign, unit: &str) -> u64 {
    let r = results::load(&h.district, campaign, results::Depth::Hamlet, None).await.unwrap();
    let s = r.subjects.iter().find(|s| s.subject == "ong-an").unwrap();
    s.rows.iter().find(|x| x.unit == unit).unwrap().total
}

#[tokio::test]
async fn a_tally_of_more_ballots_than_voters_counts_only_once_reviewed() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let campaign = h.open(&fixtures::campaign()).await;
        // to-1 expects 180 voters: a tally of two million, and a plausible one entered twice.
        let mut phone = h.phone(1);
        let mut l = ledger(&campaign, "to-1", 1);
        l.record_tally(&campaign, &tally(&campaign, "hop-1", 2_000_000), day()).unwrap();
        l.record_tally(&campaign, &tally(&campaign, "hop-2", 60), day()).unwrap();
        l.record_tally(&campaign, &tally(&campaign, "hop-3", 60), day()).unwrap();
        h.sync(&mut phone, &mut l).await;
        assert_eq!(total(&h, &campaign, "to-1").await, 60, "{}: only the plausible tally, once", db.name);
        let items = review::items(&h.district, &campaign, true, &district::admin()).await.unwrap();
        let mut flags: Vec<(&str, &str)> =
            items.iter().map(|i| (i.entity_id.as_str(), i.flag.as_deref().unwrap_or("conflict"))).collect();
        flags.sort();
        assert_eq!(flags, [("hop-1", "tally_inconsistent"), ("hop-3", "tally_duplicate")], "{}", db.name);
        let progress = hamlet_server::district::progress::load(&h.district, &campaign).await.unwrap();
        let to1 = progress.hamlets.iter().find(|x| x.id == "to-1").unwrap();
        assert_eq!(to1.counts.ballots_returned, 60, "{}: participation counts what counts", db.name);

        // Staff check the duplicate with the hamlet: it was a second meeting after all.
        let key = &items.iter().find(|i| i.entity_id == "hop-3").unwrap().item_key;
        review::mark_reviewed(&h.district, &campaign, key, "Hai cuộc họp", &district::admin()).await.unwrap();
        assert_eq!(total(&h, &campaign, "to-1").await, 120, "{}: counted once reviewed", db.name);
        // A later change to the ledger keeps it counted.
        l.record_tally(&campaign, &tally(&campaign, "hop-4", 10), day()).unwrap();
        h.sync(&mut phone, &mut l).await;
        assert_eq!(total(&h, &campaign, "to-1").await, 130, "{}", db.name);
    }
}

#[tokio::test]
async fn implausible_numbers_stand_out_in_progress() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let mut definition = fixtures::campaign();
        definition.max_responses_per_day = 3;
        for scope in &mut definition.hamlets {
            if scope.hamlet.as_str() == "thon-tay" {
                scope.expected_voters = 3;
            }
        }
        let campaign = h.open(&definition).await;
        let mut phone = h.phone(1);
        let mut l = ledger(&campaign, "thon-tay", 1);
        for i in 0..4 {
            let answers = campaign
                .subjects
                .iter()
                .map(|s| {
                    (
                        hamlet_sync_core::AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()),
                        hamlet_sync_core::AnswerValue::Level(Level::TinNhiem),
                    )
                })
                .collect();
            let new = hamlet_sync_core::NewResponse {
                id: format!("r{i}").parse().unwrap(),
                collector: "thu-ky".parse().unwrap(),
                answers,
            };
            l.record(&campaign, &new, day()).unwrap();
        }
        h.sync(&mut phone, &mut l).await;
        let progress = hamlet_server::district::progress::load(&h.district, &campaign).await.unwrap();
        use hamlet_server::district::progress::Alert;
        assert_eq!(
            progress.alerts,
            [
                Alert::OverVoters {
                    hamlet: "thon-tay".into(),
                    hamlet_name: "Thôn Tây".into(),
                    counted: 4,
                    expected: 3
                },
                Alert::BusyCollector {
                    hamlet: "thon-tay".into(),
                    hamlet_name: "Thôn Tây".into(),
                    device: hex(1),
                    collector: "thu-ky".into(),
                    day: "2025-06-04".into(),
                    responses: 4,
                    limit: 3
                },
            ],
            "{}",
            db.name
        );
    }
}

/// Records and submits response `id`, rating every subject `level`.
fn respond(l: &mut hamlet_sync_core::Ledger, campaign: &Campaign, id: &str, level: Level) {
    let answers = campaign
        .subjects
        .iter()
        .map(|s| (AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()), AnswerValue::Level(level)))
        .collect();
    let new = NewResponse { id: id.parse().unwrap(), collector: "thu-ky".parse().unwrap(), answers };
    l.record(campaign, &new, day()).unwrap();
    l.submit(campaign, &new.id, &"thu-ky".parse().unwrap(), day()).unwrap();
}

#[tokio::test]
async fn a_published_campaigns_results_are_frozen_and_what_came_later_is_recorded() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let campaign = h.open(&fixtures::campaign()).await;
        let id = campaign.id.as_str();
        let mut phone = h.phone(1);
        let mut l = ledger(&campaign, "to-1", 1);
        l.record_tally(&campaign, &tally(&campaign, "hop-1", 60), day()).unwrap();
        for n in 0..6 {
            respond(&mut l, &campaign, &format!("r{n}"), Level::TinNhiem);
        }
        h.sync(&mut phone, &mut l).await;
        campaigns::transition(&h.district, &admin(), id, CampaignState::Closed).await.unwrap();
        let published = campaigns::transition(&h.district, &admin(), id, CampaignState::Published).await.unwrap();
        let before = results::load(&h.district, &published, results::Depth::Commune, None).await.unwrap();
        assert_eq!(before.published.as_ref().map(|p| p.later), Some(0), "{}", db.name);
        assert_eq!(total(&h, &published, "to-1").await, 66, "{}", db.name);

        // A phone that was offline syncs a second meeting's tally, a new response and a void,
        // all dated within the schedule.
        l.record_tally(&campaign, &tally(&campaign, "hop-2", 10), day()).unwrap();
        respond(&mut l, &campaign, "r9", Level::TinNhiemThap);
        l.void(&"r0".parse().unwrap(), "nhầm", &"thu-ky".parse().unwrap(), day()).unwrap();
        h.sync(&mut phone, &mut l).await;

        assert_eq!(total(&h, &published, "to-1").await, 66, "{}: the published results do not move", db.name);
        let after = results::load(&h.district, &published, results::Depth::Commune, None).await.unwrap();
        let overall = |r: &results::Results| {
            let s = r.subjects.iter().find(|s| s.subject == "ong-an").unwrap();
            (s.overall().unwrap().total, s.overall().unwrap().counts.clone())
        };
        assert_eq!(overall(&after), overall(&before), "{}", db.name);
        let xa_b = after.units.iter().find(|u| u.id == "xa-b").unwrap();
        assert_eq!((xa_b.submitted, xa_b.ballots_returned), (6, 60), "{}: participation too", db.name);
        assert_eq!(after.published.as_ref().map(|p| p.later), Some(3), "{}: two arrived, one withdrawn", db.name);
        // Kept and flagged for review.
        let items = review::items(&h.district, &published, true, &admin()).await.unwrap();
        let mut late: Vec<&str> = items
            .iter()
            .filter(|i| i.flag.as_deref() == Some("after_publication"))
            .map(|i| i.entity_id.as_str())
            .collect();
        late.sort();
        assert_eq!(late, ["hop-2", "r0", "r9"], "{}", db.name);
        let progress = hamlet_server::district::progress::load(&h.district, &published).await.unwrap();
        let to1 = progress.hamlets.iter().find(|x| x.id == "to-1").unwrap();
        assert_eq!(to1.counts.ballots_returned, 70, "{}: the rows are kept", db.name);
    }
}

#[tokio::test]
async fn while_open_a_hamlets_figures_move_only_in_batches_of_the_minimum_group() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let campaign = h.open(&fixtures::campaign()).await;
        let mut phone = h.phone(1);
        let mut l = ledger(&campaign, "to-1", 1);
        let shown = |r: &results::Results, unit: &str| {
            let s = r.subjects.iter().find(|s| s.subject == "ong-an").unwrap();
            s.rows.iter().find(|x| x.unit == unit).unwrap().total
        };
        let look = async |h: &district::Harness| {
            let hamlets = results::load(&h.district, &campaign, results::Depth::Hamlet, None).await.unwrap();
            let communes = results::load(&h.district, &campaign, results::Depth::Commune, None).await.unwrap();
            let page = results::load_commune(&h.district, &campaign, "xa-b").await.unwrap();
            assert_eq!(shown(&communes, "xa-b"), shown(&hamlets, "to-1"), "{}", db.name);
            assert_eq!(shown(&page, "to-1"), shown(&hamlets, "to-1"), "{}", db.name);
            (shown(&hamlets, "to-1"), hamlets.batched.as_ref().map(|b| b.pending))
        };
        // One answer at a time: nothing shows until five arrived.
        for n in 0..4 {
            respond(&mut l, &campaign, &format!("r{n}"), Level::TinNhiem);
            h.sync(&mut phone, &mut l).await;
        }
        assert_eq!(look(&h).await, (0, Some(4)), "{}", db.name);
        respond(&mut l, &campaign, "r4", Level::TinNhiem);
        h.sync(&mut phone, &mut l).await;
        assert_eq!(look(&h).await, (5, Some(0)), "{}", db.name);
        // The sixth answer alone does not show: comparing before and after would reveal it.
        respond(&mut l, &campaign, "r5", Level::TinNhiemThap);
        h.sync(&mut phone, &mut l).await;
        assert_eq!(look(&h).await, (5, Some(1)), "{}", db.name);
        l.record_tally(&campaign, &tally(&campaign, "hop-1", 10), day()).unwrap();
        h.sync(&mut phone, &mut l).await;
        assert_eq!(look(&h).await, (16, Some(0)), "{}", db.name);
        respond(&mut l, &campaign, "r6", Level::TinNhiemThap);
        h.sync(&mut phone, &mut l).await;
        assert_eq!(look(&h).await, (16, Some(1)), "{}", db.name);
        // Closed, every counted answer shows: collection is over.
        let closed =
            campaigns::transition(&h.district, &admin(), campaign.id.as_str(), CampaignState::Closed).await.unwrap();
        let r = results::load(&h.district, &closed, results::Depth::Hamlet, None).await.unwrap();
        assert_eq!((shown(&r, "to-1"), r.batched.is_none()), (17, true), "{}", db.name);
    }
}

/// The hex form of the test actor of device `n` (no account: the actor is the device).
fn hex(n: u8) -> String {
    hamlet_sync_core::automerge::ActorId::from([n; 16]).to_hex_string()
}

/// The busy-collector alert counts what one device wrote, whatever collector names the
/// responses carry: a device cannot spread a day's stuffing over invented names.
#[tokio::test]
async fn the_busy_collector_alert_counts_per_device_not_per_written_name() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let mut definition = fixtures::campaign();
        definition.max_responses_per_day = 3;
        let campaign = h.open(&definition).await;
        let mut phone = h.phone(3);
        let mut l = ledger(&campaign, "thon-dong", 3);
        for (i, name) in ["an", "binh", "chi", "dung", "em"].iter().enumerate() {
            let answers = campaign
                .subjects
                .iter()
                .map(|s| {
                    (
                        AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()),
                        AnswerValue::Level(Level::TinNhiem),
                    )
                })
                .collect();
            let new = NewResponse { id: format!("r{i}").parse().unwrap(), collector: name.parse().unwrap(), answers };
            l.record(&campaign, &new, day()).unwrap();
        }
        h.sync(&mut phone, &mut l).await;
        let progress = hamlet_server::district::progress::load(&h.district, &campaign).await.unwrap();
        use hamlet_server::district::progress::Alert;
        let busy: Vec<(&str, &str, u64)> = progress
            .alerts
            .iter()
            .filter_map(|a| match a {
                Alert::BusyCollector { device, collector, responses, .. } => {
                    Some((device.as_str(), collector.as_str(), *responses))
                }
                _ => None,
            })
            .collect();
        let device = hex(3);
        assert_eq!(busy, [(device.as_str(), "an, binh, chi, dung, em", 5)], "{}", db.name);
    }
}
