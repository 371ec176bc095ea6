//! The projection: ledgers synced through the hub become rows, incrementally; applying it again
//! changes nothing; a ledger stored while no projector ran is projected at start-up; and a
//! rebuild from the documents gives exactly the tables the increments built — on SQLite and
//! PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod district;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use district::{Harness, harness, ledger};
use hamlet_server::accounts::Accounts;
use hamlet_server::config::Limits;
use hamlet_server::demo::seed::Phone;
use hamlet_server::store::{Committer, PoolRef, Store};
use hamlet_server::sync::hub::{Hub, NoObserver};
use hamlet_server::sync::metrics::Metrics;
use hamlet_sync_core::ledger::{Ballots, CountKey};
use hamlet_sync_core::session::Identity;
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, Day, Ledger, Level, NewResponse, ResponseId, Tally, fixtures,
};

fn day() -> Day {
    "2025-06-03".parse().unwrap()
}

fn rid(s: &str) -> ResponseId {
    s.parse().unwrap()
}

/// Records a response rating every subject `level` (and a comment on the first).
fn record(campaign: &Campaign, ledger: &mut Ledger, id: &str, level: Level) {
    let mut answers = BTreeMap::new();
    for s in &campaign.subjects {
        answers
            .insert(AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()), AnswerValue::Level(level));
    }
    answers.insert(
        AnswerKey::for_subject(fixtures::question("y-kien"), campaign.subjects[0].id.clone()),
        AnswerValue::Comment(format!("Ý kiến về phiếu {id}: Tốt")),
    );
    let response = NewResponse { id: rid(id), collector: "thu-ky-1".parse().unwrap(), answers };
    ledger.record(campaign, &response, day()).unwrap();
}

/// Every row of every projected table, as text, sorted (the mark's time left out).
async fn tables(store: &Store) -> BTreeMap<&'static str, Vec<String>> {
    let specs: [(&str, &str); 10] = [
        (
            "responses",
            "campaign_id, hamlet_id, response_id, status, form_version, recorded_on, collector, submitted_on, submitted_by, voided_on, voided_by, void_reason",
        ),
        (
            "answers",
            "campaign_id, hamlet_id, response_id, question_id, subject_id, kind, value_text, value_number, search_text, counted",
        ),
        (
            "tallies",
            "campaign_id, hamlet_id, tally_id, recorded_on, collector, ballots_issued, ballots_returned, ballots_valid, ballots_invalid",
        ),
        ("tally_counts", "campaign_id, hamlet_id, tally_id, question_id, subject_id, level, count"),
        ("conflicts", "campaign_id, hamlet_id, entity_kind, entity_id, path, item_key, detail"),
        ("flags", "campaign_id, hamlet_id, entity_kind, entity_id, ordinal, kind, item_key, detail"),
        ("level_counts", "campaign_id, hamlet_id, question_id, subject_id, level, from_responses, from_tallies"),
        (
            "commune_level_counts",
            "campaign_id, commune_id, question_id, subject_id, level, from_responses, from_tallies",
        ),
        (
            "hamlet_counts",
            "campaign_id, hamlet_id, drafts, submitted, voided, tallies, ballots_issued, ballots_returned, ballots_valid, ballots_invalid",
        ),
        ("projection_marks", "document_id, campaign_id, hamlet_id"),
    ];
    let mut out = BTreeMap::new();
    for (table, columns) in specs {
        let expr: Vec<String> = columns.split(", ").map(|c| format!("COALESCE(CAST({c} AS TEXT), '~')")).collect();
        let sql = format!("SELECT {} FROM {table}", expr.join(" || '|' || "));
        let mut rows: Vec<String> = match store.pool() {
            PoolRef::Sqlite(p) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(p).await.unwrap(),
            PoolRef::Postgres(p) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(p).await.unwrap(),
        };
        rows.sort();
        out.insert(table, rows);
    }
    out
}

/// Several phones and rounds: drafts, submissions, voids, edits after the seal, a conflict, a
/// tally entered and then corrected.
async fn eventful_campaign(h: &Harness) -> Campaign {
    let campaign = h.open(&fixtures::campaign()).await;
    let mut a = ledger(&campaign, "thon-dong", 1);
    let mut b = ledger(&campaign, "thon-dong", 2);
    let mut c = ledger(&campaign, "to-1", 3);
    let (mut pa, mut pb, mut pc) = (h.phone(1), h.phone(2), h.phone(3));
    for i in 0..6 {
        record(&campaign, &mut a, &format!("a-{i}"), if i % 3 == 0 { Level::TinNhiemThap } else { Level::TinNhiem });
    }
    h.sync(&mut pa, &mut a).await;
    for i in 0..4 {
        a.submit(&campaign, &rid(&format!("a-{i}")), &"thu-ky-1".parse().unwrap(), day()).unwrap();
    }
    a.void(&rid("a-4"), "ghi nhầm", &"thu-ky-1".parse().unwrap(), day()).unwrap();
    record(&campaign, &mut b, "b-0", Level::TinNhiemCao);
    b.submit(&campaign, &rid("b-0"), &"thu-ky-2".parse().unwrap(), day()).unwrap();
    h.sync(&mut pa, &mut a).await;
    h.sync(&mut pb, &mut b).await;
    // Both phones now hold a-5 (a draft) and change the same answer: a conflict.
    let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"));
    a.edit(&campaign, &rid("a-5"), &[(key.clone(), Some(AnswerValue::Level(Level::TinNhiemCao)))], day()).unwrap();
    b.edit(&campaign, &rid("a-5"), &[(key.clone(), Some(AnswerValue::Level(Level::TinNhiemThap)))], day()).unwrap();
    // An edit after the seal: kept, flagged, not counted.
    a.edit(&campaign, &rid("a-0"), &[(key, Some(AnswerValue::Level(Level::TinNhiemCao)))], day()).unwrap();
    h.sync(&mut pa, &mut a).await;
    h.sync(&mut pb, &mut b).await;
    h.sync(&mut pa, &mut a).await;
    let mut counts = BTreeMap::new();
    for s in &campaign.subjects {
        for (level, n) in [(Level::TinNhiemCao, 5), (Level::TinNhiem, 3), (Level::TinNhiemThap, 2)] {
            counts.insert(CountKey { question: fixtures::question("tin-nhiem"), subject: s.id.clone(), level }, n);
        }
    }
    let mut tally = Tally {
        id: "hop-1".parse().unwrap(),
        collector: "thu-ky-3".parse().unwrap(),
        ballots: Ballots { issued: 12, returned: 11, valid: 10, invalid: 1 },
        counts,
    };
    c.record_tally(&campaign, &tally, day()).unwrap();
    h.sync(&mut pc, &mut c).await;
    // Corrected: one ballot moves from high to low.
    for s in &campaign.subjects {
        let q = fixtures::question("tin-nhiem");
        tally.counts.insert(CountKey { question: q.clone(), subject: s.id.clone(), level: Level::TinNhiemCao }, 4);
        tally.counts.insert(CountKey { question: q, subject: s.id.clone(), level: Level::TinNhiemThap }, 3);
    }
    c.record_tally(&campaign, &tally, day()).unwrap();
    h.sync(&mut pc, &mut c).await;
    campaign
}

#[tokio::test]
async fn rebuilt_tables_equal_incremental_ones() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        eventful_campaign(&h).await;
        let incremental = tables(&h.store).await;
        assert_eq!(incremental["responses"].len(), 7, "{}: every response has its row", db.name);
        assert_eq!(incremental["conflicts"].len(), 1, "{}: the concurrent edit", db.name);
        // The edit after the seal, and phone b's write into phone a's draft a-5 (kept, flagged,
        // never counted: a response belongs to the device that recorded it).
        assert_eq!(incremental["flags"].len(), 2, "{}: {:?}", db.name, incremental["flags"]);
        assert!(incremental["flags"].iter().any(|f| f.contains("|a-5|") && f.contains("foreign_write")), "{}", db.name);
        assert_eq!(incremental["tallies"].len(), 1, "{}", db.name);
        assert!(
            incremental["hamlet_counts"].contains(&"tin-nhiem-2025|thon-dong|1|5|1|0|0|0|0|0".to_owned()),
            "{}: {:?}",
            db.name,
            incremental["hamlet_counts"]
        );
        let projected = h.district.projector.reproject().await.unwrap();
        assert_eq!(projected, 2, "{}: two ledgers rebuilt", db.name);
        let rebuilt = tables(&h.store).await;
        for (table, rows) in &incremental {
            assert_eq!(rows, &rebuilt[table], "{}: table {table} differs after the rebuild", db.name);
        }
    }
}

#[tokio::test]
async fn applying_a_projection_again_changes_nothing() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        eventful_campaign(&h).await;
        let before = tables(&h.store).await;
        // Without marks every ledger is projected again in full over the existing rows.
        match h.store.pool() {
            PoolRef::Sqlite(p) => drop(sqlx::query("DELETE FROM projection_marks").execute(p).await.unwrap()),
            PoolRef::Postgres(p) => drop(sqlx::query("DELETE FROM projection_marks").execute(p).await.unwrap()),
        };
        assert_eq!(h.district.projector.catch_up(None).await.unwrap(), 2, "{}", db.name);
        assert_eq!(h.district.projector.catch_up(None).await.unwrap(), 0, "{}: nothing left to do", db.name);
        assert_eq!(before, tables(&h.store).await, "{}", db.name);
    }
}

/// Two server processes projecting the same ledgers at the same moment, over and over: the
/// per-ledger lock and the projection mark's compare-and-swap leave the same rows one projector
/// alone writes — nothing counted twice, nothing lost. (Without the advisory lock the
/// compare-and-swap alone still keeps this true on PostgreSQL; the lock saves the wasted work.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projectors_on_the_same_ledgers_count_each_response_once() {
    for db in support::databases().await {
        let one = harness(db.url()).await;
        eventful_campaign(&one).await;
        // What one projector alone writes, once it has projected everything stored.
        one.district.projector.reproject().await.unwrap();
        let alone = tables(&one.store).await;
        let two = harness(db.url()).await;
        for round in 0..8 {
            match one.store.pool() {
                PoolRef::Sqlite(p) => drop(sqlx::query("DELETE FROM projection_marks").execute(p).await.unwrap()),
                PoolRef::Postgres(p) => drop(sqlx::query("DELETE FROM projection_marks").execute(p).await.unwrap()),
            };
            let (a, b) = tokio::join!(one.district.projector.catch_up(None), two.district.projector.catch_up(None));
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(a + b >= 2, "{} round {round}: both ledgers projected ({a} + {b})", db.name);
            assert_eq!(tables(&one.store).await, alone, "{} round {round}", db.name);
        }
    }
}

#[tokio::test]
async fn a_ledger_stored_while_no_projector_ran_is_projected_at_start_up() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let campaign = h.open(&fixtures::campaign()).await;
        // A second server process on the same database, without the district features: it
        // stores the ledger but projects nothing (as if it crashed before projecting).
        let store = Store::open(db.url()).await.unwrap();
        let (committer, _writer) = Committer::spawn(store.clone(), 16);
        let identity = Identity { peer_id: "other".into(), storage_id: store.storage_id().await.unwrap() };
        let accounts = Accounts::new(store.clone(), Duration::from_secs(60));
        let bare = Hub::new(
            store.clone(),
            committer,
            identity,
            Limits::default(),
            Arc::new(Metrics::default()),
            accounts,
            Arc::new(NoObserver),
        );
        let mut l = ledger(&campaign, "thon-tay", 7);
        record(&campaign, &mut l, "t-1", Level::TinNhiemThap);
        l.submit(&campaign, &rid("t-1"), &"thu-ky-1".parse().unwrap(), day()).unwrap();
        let mut phone = Phone::connect(&bare, "phone-7", "device-7");
        phone.sync(&mut l).await.unwrap();
        assert!(tables(&h.store).await["responses"].is_empty(), "{}: not projected yet", db.name);
        // A restart runs the catch-up. It runs in a task of its own that tells nobody when it is
        // done, so the tables are polled, with a deadline only a catch-up that never comes
        // reaches.
        let restarted = harness(db.url()).await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while tables(&restarted.store).await["responses"].is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("projected at start-up");
        let rows = tables(&restarted.store).await;
        assert_eq!(rows["responses"].len(), 1, "{}", db.name);
        assert!(rows["responses"][0].contains("|t-1|submitted|"), "{}: {:?}", db.name, rows["responses"]);
    }
}
