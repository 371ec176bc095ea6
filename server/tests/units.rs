//! The unit tree and the campaigns over it, on SQLite and PostgreSQL: lineage that loops is
//! refused at import; a campaign's hamlets are valid on its dates and do not count a hamlet
//! twice through a merger; an import cannot move the hamlets of a campaign under way.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod district;
mod support;

use district::{admin, harness};
use hamlet_server::district::{DistrictError, campaigns, catalog};
use hamlet_sync_core::{Campaign, CampaignState, HamletScope, Unit, UnitLevel, fixtures};

fn fixture_units() -> Vec<Unit> {
    fixtures::unit_tree().units().cloned().collect()
}

/// A hamlet of `xa-a` like `thon-tay`, with another id and name.
fn hamlet(id: &str, name: &str) -> Unit {
    let mut u = fixture_units().into_iter().find(|u| u.id.as_str() == "thon-tay").unwrap();
    u.id = id.parse().unwrap();
    u.name = name.into();
    u
}

fn csv(units: &[Unit]) -> String {
    catalog::units_csv(units.iter())
}

fn is_invalid<T: std::fmt::Debug>(result: &Result<T, DistrictError>, word: &str) -> bool {
    matches!(result, Err(DistrictError::Invalid { message, .. }) if message.contains(word))
}

#[tokio::test]
async fn an_import_refuses_lineage_that_loops() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        campaigns::import_units_text(&h.district, &admin(), &csv(&fixture_units())).await.unwrap();
        // Merged into itself.
        let mut own = hamlet("thon-bac", "Thôn Bắc");
        own.valid_until = Some("2026-01-01".parse().unwrap());
        own.merged_into = Some(own.id.clone());
        own.merged_from = vec![own.id.clone()];
        let refused = campaigns::import_units_text(&h.district, &admin(), &csv(&[own])).await;
        assert!(is_invalid(&refused, "merged into itself"), "{}: {refused:?}", db.name);
        // Two units merged into each other.
        let mut a = hamlet("thon-bac", "Thôn Bắc");
        let mut b = hamlet("thon-nam", "Thôn Nam");
        for (x, y) in [(&mut a, "thon-nam"), (&mut b, "thon-bac")] {
            x.valid_until = Some("2026-01-01".parse().unwrap());
            x.merged_into = Some(y.parse().unwrap());
            x.merged_from = vec![y.parse().unwrap()];
        }
        let refused = campaigns::import_units_text(&h.district, &admin(), &csv(&[a, b])).await;
        assert!(is_invalid(&refused, "loop"), "{}: {refused:?}", db.name);
        assert_eq!(h.district.catalog().units().await.unwrap().units().count(), 7, "{}: nothing stored", db.name);
    }
}

/// Creates the example campaign as draft `id`, with its hamlets plus `extra`, after importing
/// `units`.
async fn draft(h: &district::Harness, units: &[Unit], extra: &[&str], id: &str) -> Campaign {
    campaigns::import_units_text(&h.district, &admin(), &csv(units)).await.unwrap();
    let mut campaign = fixtures::campaign();
    campaign.id = id.parse().unwrap();
    campaign.state = CampaignState::Draft;
    for id in extra {
        campaign.hamlets.push(HamletScope { hamlet: id.parse().unwrap(), expected_voters: 40, ballot: vec![] });
    }
    campaigns::create(&h.district, &admin(), campaign.clone()).await.unwrap();
    campaign
}

#[tokio::test]
async fn a_campaign_cannot_count_a_hamlet_and_the_one_it_was_merged_into() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        // thon-bac was merged into thon-dong; both are valid on the campaign's dates.
        let mut units = fixture_units();
        let mut bac = hamlet("thon-bac", "Thôn Bắc");
        bac.valid_until = Some("2026-01-01".parse().unwrap());
        bac.merged_into = Some("thon-dong".parse().unwrap());
        units.iter_mut().find(|u| u.id.as_str() == "thon-dong").unwrap().merged_from = vec![bac.id.clone()];
        units.push(bac);
        let campaign = draft(&h, &units, &["thon-bac"], "merged").await;
        let refused = campaigns::transition(&h.district, &admin(), campaign.id.as_str(), CampaignState::Open).await;
        assert!(is_invalid(&refused, "merged into"), "{}: {refused:?}", db.name);
    }
}

#[tokio::test]
async fn a_campaign_cannot_have_a_hamlet_not_valid_on_its_dates() {
    for db in support::databases().await {
        // The schedule runs from 2025-06-01 to 2025-06-20.
        let cases = [("2020-01-01", Some("2025-06-10")), ("2025-06-15", None), ("2020-01-01", Some("2025-06-20"))];
        for (n, (from, until)) in cases.into_iter().enumerate() {
            let h = harness(db.url()).await;
            let mut units = fixture_units();
            let mut cu = hamlet("thon-cu", "Thôn Cũ");
            cu.valid_from = from.parse().unwrap();
            cu.valid_until = until.map(|d| d.parse().unwrap());
            units.push(cu);
            let campaign = draft(&h, &units, &["thon-cu"], &format!("dates-{n}")).await;
            let refused = campaigns::transition(&h.district, &admin(), campaign.id.as_str(), CampaignState::Open).await;
            assert!(is_invalid(&refused, "not valid"), "{}: {from}..{until:?}: {refused:?}", db.name);
        }
        // Valid through the last day (until is exclusive): accepted.
        let h = harness(db.url()).await;
        let mut units = fixture_units();
        let mut cu = hamlet("thon-cu", "Thôn Cũ");
        cu.valid_until = Some("2025-06-21".parse().unwrap());
        units.push(cu);
        let campaign = draft(&h, &units, &["thon-cu"], "dates-ok").await;
        campaigns::transition(&h.district, &admin(), campaign.id.as_str(), CampaignState::Open).await.unwrap();
    }
}

#[tokio::test]
async fn an_import_cannot_move_the_hamlets_of_a_campaign_under_way() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let campaign = draft(&h, &fixture_units(), &[], "under-way").await;
        let moved = |parent: &str, level: UnitLevel| {
            let mut tay = fixture_units().into_iter().find(|u| u.id.as_str() == "thon-tay").unwrap();
            tay.parent = Some(parent.parse().unwrap());
            tay.level = level;
            csv(&[tay])
        };
        // A draft does not hold its hamlets yet.
        campaigns::import_units_text(&h.district, &admin(), &moved("xa-b", UnitLevel::Hamlet)).await.unwrap();
        campaigns::import_units_text(&h.district, &admin(), &moved("xa-a", UnitLevel::Hamlet)).await.unwrap();
        let id = campaign.id.as_str();
        campaigns::transition(&h.district, &admin(), id, CampaignState::Open).await.unwrap();
        for state in [CampaignState::Open, CampaignState::Closed] {
            if state == CampaignState::Closed {
                campaigns::transition(&h.district, &admin(), id, state).await.unwrap();
            }
            let refused = campaigns::import_units_text(&h.district, &admin(), &moved("xa-b", UnitLevel::Hamlet)).await;
            assert!(is_invalid(&refused, "campaign"), "{}: {state:?}: {refused:?}", db.name);
            let refused =
                campaigns::import_units_text(&h.district, &admin(), &moved("huyen", UnitLevel::Commune)).await;
            assert!(is_invalid(&refused, "campaign"), "{}: {state:?}: {refused:?}", db.name);
            // Renaming it is fine.
            let mut renamed = fixture_units().into_iter().find(|u| u.id.as_str() == "thon-tay").unwrap();
            renamed.name = "Thôn Tây Mới".into();
            campaigns::import_units_text(&h.district, &admin(), &csv(&[renamed])).await.unwrap();
        }
        let tree = h.district.catalog().units().await.unwrap();
        let tay = tree.get(&"thon-tay".parse().unwrap()).unwrap();
        assert_eq!(tay.parent.as_ref().map(|p| p.as_str()), Some("xa-a"), "{}", db.name);
    }
}
