//! Sealed answers at the district (issue 17): a version 2 campaign gets its key when it opens,
//! phones seal answers and comments for it, the stored documents hold no plaintext of them, the
//! projector opens and counts them and flags a tampered one, and the key's backup restores on a
//! fresh server — on SQLite and PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod district;
mod support;

use std::collections::BTreeMap;

use district::{harness_with, ledger};
use hamlet_server::district::keys::{self, Kek};
use hamlet_server::district::{Settings, results};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{Automerge, ReadDoc, ScalarValue};
use hamlet_sync_core::sealed::{self, SEALED_KEY};
use hamlet_sync_core::{AnswerKey, AnswerValue, Day, Ledger, Level, NewResponse, fixtures};

const COMMENT: &str = "Chủ tịch xã thu tiền làm đường mà không công khai";

fn day() -> Day {
    "2025-06-04".parse().unwrap()
}

fn settings(kek: u8) -> Settings {
    Settings { campaign_kek: Some(Kek::from_bytes([kek; 32])), ..Settings::default() }
}

fn record(l: &mut Ledger, campaign: &hamlet_sync_core::Campaign, id: &str, level: Level, n: u8) {
    let answers = BTreeMap::from([
        (
            AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an")),
            AnswerValue::Level(level),
        ),
        (
            AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ba-binh")),
            AnswerValue::Level(level),
        ),
        (
            AnswerKey::for_subject(fixtures::question("y-kien"), fixtures::subject("ong-an")),
            AnswerValue::Comment(COMMENT.into()),
        ),
    ]);
    let response = NewResponse { id: id.parse().unwrap(), collector: "thu-ky".parse().unwrap(), answers };
    l.record_sealed(campaign, &response, day(), [n; 32]).unwrap();
    l.submit(campaign, &id.parse().unwrap(), &"thu-ky".parse().unwrap(), day()).unwrap();
}

/// Every string or byte value any change of any stored document wrote that holds `needle`.
async fn plaintext_in_store(store: &hamlet_server::store::Store, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for info in store.documents().await.unwrap() {
        let chunks = store.load(&info.id).await.unwrap();
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.data).collect();
        let doc = Automerge::load(&bytes).unwrap();
        for value in sealed::every_value_written(&doc) {
            let raw = match &value {
                ScalarValue::Str(s) => s.as_bytes().to_vec(),
                ScalarValue::Bytes(b) => b.clone(),
                _ => continue,
            };
            for needle in needles {
                if raw.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(format!("{}: {needle}", info.id));
                }
            }
        }
    }
    found
}

async fn count(store: &hamlet_server::store::Store, sql: &'static str) -> i64 {
    match store.pool() {
        hamlet_server::store::PoolRef::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        hamlet_server::store::PoolRef::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
    .unwrap()
}

#[tokio::test]
async fn sealed_answers_are_counted_at_the_district_and_stored_nowhere_in_the_clear() {
    for db in support::databases().await {
        let h = harness_with(db.url(), settings(7)).await;
        let campaign = h.open(&fixtures::scoped_campaign()).await;
        let public = campaign.sealing.as_ref().expect("a version 2 campaign opens sealed").public_key;
        // The campaign document the phones read carries the key.
        let doc_campaign = h.district.catalog().campaign(&campaign.id).await.unwrap().unwrap();
        assert_eq!(doc_campaign.seal_key(), Some(&public), "{}", db.name);

        let mut dong = ledger(&campaign, "thon-dong", 31);
        for (i, level) in [Level::TinNhiemThap, Level::TinNhiemThap, Level::TinNhiem].into_iter().enumerate() {
            record(&mut dong, &campaign, &format!("dong-{i}"), level, i as u8 + 1);
        }
        // A fourth, whose sealed ciphertext was altered after the seal was made.
        record(&mut dong, &campaign, "dong-x", Level::TinNhiemCao, 9);
        {
            let responses = dong.responses_obj().clone();
            let doc = dong.doc_mut();
            let r = doc.get(&responses, "dong-x").unwrap().unwrap().1;
            let a = doc.get(&r, "answers").unwrap().unwrap().1;
            let mut bytes = match doc.get(&a, SEALED_KEY).unwrap().unwrap().0.into_scalar().unwrap() {
                ScalarValue::Bytes(b) => b,
                other => panic!("{other:?}"),
            };
            bytes[60] ^= 0x10;
            let seal = doc.get(&r, "seal").unwrap().unwrap().1;
            let sa = doc.get(&seal, "answers").unwrap().unwrap().1;
            let mut tx = doc.transaction();
            tx.put(&sa, SEALED_KEY, ScalarValue::Bytes(bytes)).unwrap();
            tx.commit();
        }
        h.sync(&mut h.phone(31), &mut dong).await;
        let campaign = h.close(&campaign).await;

        let leaks = plaintext_in_store(&h.store, &[COMMENT, "thu tiền", "tin_nhiem"]).await;
        assert!(leaks.is_empty(), "{}: {leaks:?}", db.name);

        let r = results::load(&h.district, &campaign, results::Depth::Hamlet, None).await.unwrap();
        let an = r.subjects.iter().find(|s| s.subject == "ong-an").unwrap().overall().unwrap().clone();
        // The three intact responses count, as the phone sealed them (the fourth's first seal
        // counts too: the later write to its ciphertext is flagged and not counted).
        assert_eq!(an.total, 4, "{}", db.name);
        let low = count(
            &h.store,
            "SELECT COUNT(*) FROM answers WHERE counted = 1 AND question_id = 'tin-nhiem' \
             AND subject_id = 'ong-an' AND value_text = 'tin_nhiem_thap'",
        )
        .await;
        assert_eq!(low, 2, "{}", db.name);
        let rewritten = count(&h.store, "SELECT COUNT(*) FROM flags WHERE kind = 'seal_rewritten'").await;
        assert_eq!(rewritten, 1, "{}", db.name);
        let comments = count(&h.store, "SELECT COUNT(*) FROM answers WHERE kind = 'comment' AND counted = 1").await;
        assert_eq!(comments, 4, "{}: the comments are read at the district", db.name);
    }
}

#[tokio::test]
async fn a_ciphertext_that_does_not_open_is_flagged_and_not_counted() {
    for db in support::databases().await {
        let h = harness_with(db.url(), settings(7)).await;
        let campaign = h.open(&fixtures::scoped_campaign()).await;
        let mut dong = ledger(&campaign, "thon-dong", 31);
        record(&mut dong, &campaign, "dong-1", Level::TinNhiemThap, 1);
        // Sealed for another response, then copied here before submission.
        let mut other = ledger(&campaign, "thon-dong", 32);
        record(&mut other, &campaign, "dong-2", Level::TinNhiemCao, 2);
        let copied = other.response(&"dong-2".parse().unwrap()).unwrap().unwrap().answers[SEALED_KEY].clone();
        let hamlet_sync_core::ledger::Scalar::Bytes(copied) = copied else { panic!() };
        let responses = dong.responses_obj().clone();
        let response = NewResponse {
            id: "dong-3".parse().unwrap(),
            collector: "thu-ky".parse().unwrap(),
            answers: BTreeMap::new(),
        };
        dong.record_sealed(&campaign, &response, day(), [3; 32]).unwrap();
        {
            let doc = dong.doc_mut();
            let r = doc.get(&responses, "dong-3").unwrap().unwrap().1;
            let a = doc.get(&r, "answers").unwrap().unwrap().1;
            let mut tx = doc.transaction();
            tx.put(&a, SEALED_KEY, ScalarValue::Bytes(copied)).unwrap();
            tx.commit();
        }
        dong.submit(&campaign, &"dong-3".parse().unwrap(), &"thu-ky".parse().unwrap(), day()).unwrap();
        h.sync(&mut h.phone(31), &mut dong).await;
        let unreadable = count(&h.store, "SELECT COUNT(*) FROM flags WHERE kind = 'sealed_unreadable'").await;
        assert_eq!(unreadable, 1, "{}", db.name);
        let counted = count(
            &h.store,
            "SELECT COUNT(*) FROM answers WHERE counted = 1 AND question_id = 'tin-nhiem' AND subject_id = 'ong-an'",
        )
        .await;
        assert_eq!(counted, 1, "{}: only dong-1", db.name);
    }
}

#[tokio::test]
async fn a_key_backup_restores_on_a_fresh_server() {
    let dbs = support::databases().await;
    let (first, fresh) = (support::databases().await, dbs);
    let h = harness_with(first[0].url(), settings(7)).await;
    let campaign = h.open(&fixtures::scoped_campaign()).await;
    let public = campaign.sealing.as_ref().unwrap().public_key;
    let kek = Kek::from_bytes([7; 32]);
    let backup = keys::export(&h.store, &kek, &campaign.id, "một cụm mật khẩu dài").await.unwrap();
    assert!(backup.starts_with("hamlet-campaign-key/1\n"));
    assert!(keys::export(&h.store, &kek, &campaign.id, "short").await.is_err());
    // A phone's sealed object, to open with the restored key.
    let mut dong = ledger(&campaign, "thon-dong", 31);
    record(&mut dong, &campaign, "dong-1", Level::TinNhiemThap, 1);
    let sealed_bytes = match &dong.response(&"dong-1".parse().unwrap()).unwrap().unwrap().answers[SEALED_KEY] {
        hamlet_sync_core::ledger::Scalar::Bytes(b) => b.clone(),
        other => panic!("{other:?}"),
    };

    for db in &fresh {
        // Another server, with its own key file and an empty database.
        let store = hamlet_server::store::Store::open(db.url()).await.unwrap();
        let other_kek = Kek::from_bytes([8; 32]);
        assert!(keys::restore(&store, &other_kek, &backup, "not the passphrase").await.is_err(), "{}", db.name);
        let (restored, key) = keys::restore(&store, &other_kek, &backup, "một cụm mật khẩu dài").await.unwrap();
        assert_eq!((restored.clone(), key), (campaign.id.clone(), public), "{}", db.name);
        // Again: the same key is already there.
        keys::restore(&store, &other_kek, &backup, "một cụm mật khẩu dài").await.unwrap();
        let secret = keys::secret(&store, &other_kek, &campaign.id).await.unwrap().expect("held");
        assert_eq!(secret.public_key(), public);
        let opened = sealed::open(&secret, &campaign.id, &"dong-1".parse().unwrap(), &sealed_bytes).unwrap();
        assert_eq!(opened.answers["y-kien/ong-an"], hamlet_sync_core::ledger::Scalar::Str(COMMENT.into()));
        // The first server's key file does not unwrap what this one stored.
        assert!(keys::secret(&store, &kek, &campaign.id).await.is_err(), "{}", db.name);
        store.close().await;
    }
}
