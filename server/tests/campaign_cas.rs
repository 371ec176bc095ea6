//! Campaign saves, on SQLite and PostgreSQL: compare-and-swap (two server processes sharing one
//! database, one with a stale cached copy, cannot undo each other's changes), audited in the
//! same transaction, and checked when made.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod district;
mod support;

use district::{admin, harness};
use hamlet_server::district::{DistrictError, campaigns, catalog};
use hamlet_sync_core::{CampaignState, fixtures};

#[tokio::test]
async fn a_stale_open_cannot_reopen_a_closed_campaign() {
    for db in support::databases().await {
        let one = harness(db.url()).await;
        let two = harness(db.url()).await;
        let csv = catalog::units_csv(fixtures::unit_tree().units());
        campaigns::import_units_text(&one.district, &admin(), &csv).await.unwrap();
        let campaign = fixtures::campaign();
        campaigns::create(&one.district, &admin(), campaign.clone()).await.unwrap();
        let id = campaign.id.as_str();
        // The second process reads (and caches) the draft.
        assert_eq!(two.district.catalog().require(id).await.unwrap().state, CampaignState::Draft, "{}", db.name);
        campaigns::transition(&one.district, &admin(), id, CampaignState::Open).await.unwrap();
        campaigns::transition(&one.district, &admin(), id, CampaignState::Closed).await.unwrap();
        let stale = campaigns::transition(&two.district, &admin(), id, CampaignState::Open).await;
        assert!(
            matches!(&stale, Err(DistrictError::Conflict { code: "campaign_changed", .. })),
            "{}: {stale:?}",
            db.name
        );
        let fresh = harness(db.url()).await;
        assert_eq!(fresh.district.catalog().require(id).await.unwrap().state, CampaignState::Closed, "{}", db.name);
        // A stale draft edit is refused the same way.
        let mut renamed = campaign.clone();
        renamed.name.en = "Renamed".into();
        let late = campaigns::update(&two.district, &admin(), id, renamed).await;
        assert!(matches!(late, Err(DistrictError::Conflict { .. })), "{}: {late:?}", db.name);
    }
}

#[tokio::test]
async fn a_form_change_raises_the_form_version() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let campaign = fixtures::campaign();
        campaigns::create(&h.district, &admin(), campaign.clone()).await.unwrap();
        let mut changed = campaign.clone();
        changed.form.questions.pop();
        campaigns::update(&h.district, &admin(), campaign.id.as_str(), changed).await.unwrap();
        let stored = h.district.catalog().require(campaign.id.as_str()).await.unwrap();
        assert_eq!(stored.form.version, campaign.form.version + 1, "{}", db.name);
        // The same form again keeps its version.
        campaigns::update(&h.district, &admin(), campaign.id.as_str(), (*stored).clone()).await.unwrap();
        let again = h.district.catalog().require(campaign.id.as_str()).await.unwrap();
        assert_eq!(again.form.version, stored.form.version, "{}", db.name);
    }
}

/// Two server processes editing different campaigns at the same moment: each save reads the
/// stored definition before it writes, and neither may be refused because the other wrote in
/// between (on SQLite a deferred transaction cannot take the write lock once its snapshot is
/// stale: `database is locked`, with no wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_wait_for_each_other_instead_of_failing() {
    for db in support::databases().await {
        let one = harness(db.url()).await;
        let two = harness(db.url()).await;
        let csv = catalog::units_csv(fixtures::unit_tree().units());
        campaigns::import_units_text(&one.district, &admin(), &csv).await.unwrap();
        let mut campaigns = Vec::new();
        for n in 0..8 {
            let mut c = fixtures::campaign();
            c.id = format!("race-{n}").parse().unwrap();
            campaigns::create(&one.district, &admin(), c.clone()).await.unwrap();
            campaigns.push(c);
        }
        let mut tasks = Vec::new();
        for (n, c) in campaigns.iter().enumerate() {
            let district = if n % 2 == 0 { one.district.clone() } else { two.district.clone() };
            let id = c.id.to_string();
            let base = c.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..6 {
                    let mut renamed = base.clone();
                    renamed.name.en = format!("Round {round}");
                    campaigns::update(&district, &admin(), &id, renamed).await?;
                }
                Ok::<_, DistrictError>(())
            }));
        }
        for task in tasks {
            let done = task.await.unwrap();
            assert!(done.is_ok(), "{}: {done:?}", db.name);
        }
    }
}

/// Renames the audit log away (or back), so that writing an entry fails.
async fn audit_log_missing(store: &hamlet_server::store::Store, missing: bool) {
    let sql = if missing {
        "ALTER TABLE audit_log RENAME TO audit_log_away"
    } else {
        "ALTER TABLE audit_log_away RENAME TO audit_log"
    };
    match store.pool() {
        hamlet_server::store::PoolRef::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        hamlet_server::store::PoolRef::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
    }
    .expect("audit log renamed");
}

/// A campaign change and its audit entry are one transaction: when the entry cannot be written,
/// the change is not made either (nothing happens that the log does not show).
#[tokio::test]
async fn a_change_whose_audit_entry_fails_is_not_made() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let csv = catalog::units_csv(fixtures::unit_tree().units());
        let campaign = fixtures::campaign();
        let id = campaign.id.as_str();

        audit_log_missing(&h.store, true).await;
        let units = campaigns::import_units_text(&h.district, &admin(), &csv).await;
        assert!(units.is_err(), "{}: {units:?}", db.name);
        let created = campaigns::create(&h.district, &admin(), campaign.clone()).await;
        assert!(created.is_err(), "{}: {created:?}", db.name);
        audit_log_missing(&h.store, false).await;

        let fresh = harness(db.url()).await;
        assert!(fresh.district.catalog().campaign(&campaign.id).await.unwrap().is_none(), "{}", db.name);
        assert!(fresh.district.catalog().units().await.unwrap().units().next().is_none(), "{}", db.name);

        // With the log back, the same operations are made and logged.
        campaigns::import_units_text(&fresh.district, &admin(), &csv).await.unwrap();
        campaigns::create(&fresh.district, &admin(), campaign.clone()).await.unwrap();
        audit_log_missing(&fresh.store, true).await;
        let opened = campaigns::transition(&fresh.district, &admin(), id, CampaignState::Open).await;
        assert!(opened.is_err(), "{}: {opened:?}", db.name);
        audit_log_missing(&fresh.store, false).await;
        let again = harness(db.url()).await;
        assert_eq!(again.district.catalog().require(id).await.unwrap().state, CampaignState::Draft, "{}", db.name);
        let filter = hamlet_server::audit::AuditFilter { limit: 50, ..Default::default() };
        let actions: Vec<String> =
            hamlet_server::audit::list(&again.store, &filter).await.unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["campaign.create", "units.import"], "{}", db.name);
    }
}

/// A schedule that closes before it opens is refused when the campaign is created or edited, not
/// only when someone tries to open it days later.
#[tokio::test]
async fn a_schedule_that_ends_before_it_begins_is_refused_when_saved() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let csv = catalog::units_csv(fixtures::unit_tree().units());
        campaigns::import_units_text(&h.district, &admin(), &csv).await.unwrap();
        let mut backwards = fixtures::campaign();
        backwards.schedule.closes_on = "2025-05-31".parse().unwrap();
        let refused = campaigns::create(&h.district, &admin(), backwards.clone()).await;
        assert!(
            matches!(&refused, Err(DistrictError::Invalid { code: "invalid_schedule", .. })),
            "{}: {refused:?}",
            db.name
        );
        assert!(h.district.catalog().campaign(&backwards.id).await.unwrap().is_none(), "{}: nothing saved", db.name);

        let campaign = fixtures::campaign();
        campaigns::create(&h.district, &admin(), campaign.clone()).await.unwrap();
        let refused = campaigns::update(&h.district, &admin(), campaign.id.as_str(), backwards).await;
        assert!(
            matches!(&refused, Err(DistrictError::Invalid { code: "invalid_schedule", .. })),
            "{}: {refused:?}",
            db.name
        );
        let kept = h.district.catalog().require(campaign.id.as_str()).await.unwrap();
        assert_eq!(kept.schedule, campaign.schedule, "{}: the saved schedule is unchanged", db.name);
        // A one-day campaign is a schedule.
        let mut one_day = campaign.clone();
        one_day.schedule.closes_on = one_day.schedule.opens_on;
        campaigns::update(&h.district, &admin(), campaign.id.as_str(), one_day).await.unwrap();
    }
}
