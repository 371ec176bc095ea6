//! Sealed answers on the phone (issue 17): for a campaign whose document carries a public key,
//! the collector library writes answers and comments into the ledger only as ciphertext, keeps
//! the plaintext of its own drafts in the local store only, and forgets it once the response is
//! submitted and acknowledged; the district opens and counts what the server stores.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use hamlet_mobile::store::Store;
use hamlet_mobile::{Collector, SyncOptions};
use hamlet_sync_core::authorship::Authors;
use hamlet_sync_core::automerge::{Automerge, ScalarValue};
use hamlet_sync_core::sealed;
use hamlet_sync_core::{AnswerValue, fixtures, project_opened};
use support::{District, phone_path};

const CAMPAIGN: &str = "tin-nhiem-2025";
const DAY: &str = "2025-06-02";
const SUBMITTED: &str = "Trưởng thôn hay hứa mà không làm";
const DRAFT: &str = "Bà ấy giúp dân làm giấy tờ rất nhanh";

fn quick() -> SyncOptions {
    SyncOptions {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(5),
        attempts: 1,
        backoff: Duration::from_millis(50),
        ..SyncOptions::default()
    }
}

fn sheet(comment: &str) -> Vec<(String, String)> {
    vec![
        ("tin-nhiem/ong-an".into(), "tin_nhiem_thap".into()),
        ("tin-nhiem/ba-binh".into(), "tin_nhiem_cao".into()),
        ("y-kien/ong-an".into(), comment.into()),
    ]
}

/// Every string or byte value written by any change of `doc` that holds one of `needles`.
fn found_in(doc: &Automerge, needles: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for value in sealed::every_value_written(doc) {
        let raw = match &value {
            ScalarValue::Str(s) => s.as_bytes().to_vec(),
            ScalarValue::Bytes(b) => b.clone(),
            _ => continue,
        };
        out.extend(needles.iter().filter(|n| raw.windows(n.len()).any(|w| w == n.as_bytes())).map(|n| n.to_string()));
    }
    out
}

#[test]
fn a_sealed_response_leaves_no_plaintext_on_the_phone_or_the_server_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (campaign, key) = fixtures::sealed_campaign([42; 32]);
    let district = District::start(dir.path(), &campaign);
    let path = phone_path(dir.path(), "thu-ha");
    let phone = Collector::open(&path).expect("store opens");
    phone.set_fixed_today(Some(DAY)).unwrap();
    phone.enroll(&district.address(), &district.code("thu-ha", &["thon-dong"]), "phone").expect("enrolled");
    phone.sync(None, &quick(), &|_| ()).expect("first sync");

    let submitted = phone.record(CAMPAIGN, "thon-dong", &sheet("một câu khác")).expect("recorded");
    // Edited before submission: a new sealed version, the phone shows the plaintext it keeps.
    phone.edit(&submitted, &[("y-kien/ong-an".into(), SUBMITTED.into())]).expect("edited");
    assert_eq!(phone.response(&submitted).unwrap().answers["y-kien/ong-an"], SUBMITTED);
    // A required answer missing is refused on the phone, which alone can read the answers.
    let incomplete = phone.record(CAMPAIGN, "thon-dong", &sheet(DRAFT)[..1]).expect("recorded");
    assert!(phone.submit(&incomplete).is_err());
    phone.submit(&submitted).expect("submitted");
    let draft = phone.record(CAMPAIGN, "thon-dong", &sheet(DRAFT)).expect("a draft");

    let report = phone.sync(None, &quick(), &|_| ()).expect("sync");
    assert!(report.newly_acknowledged >= 1, "{report:?}");
    // Submitted and acknowledged: the phone no longer shows (or holds) its answers.
    assert!(phone.response(&submitted).unwrap().answers.is_empty());
    assert_eq!(phone.response(&draft).unwrap().answers["y-kien/ong-an"], DRAFT);
    drop(phone);

    // The phone's store: no document holds any answer in the clear; the draft's plaintext is
    // kept in its own table only, the submitted one's is gone.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::open(&path).await.expect("reopens");
        let mut documents: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        for chunk in store.chunks().await.unwrap() {
            documents.entry(chunk.document).or_default().extend(chunk.data);
        }
        assert!(documents.len() >= 2, "the campaign document and the ledger");
        for (id, bytes) in documents {
            let doc = Automerge::load(&bytes).unwrap();
            let leaks = found_in(&doc, &[SUBMITTED, DRAFT, "một câu khác", "tin_nhiem"]);
            assert!(leaks.is_empty(), "{id}: {leaks:?}");
        }
        let held = store.plaintexts().await.unwrap();
        let ids: Vec<&String> = held.keys().map(|(_, id)| id).collect();
        assert!(ids.contains(&&draft) && ids.contains(&&incomplete) && !ids.contains(&&submitted), "{ids:?}");
        assert!(held.values().all(|v| !v.contains(SUBMITTED)));
        store.close().await;
    });

    // The server's stored ledger: ciphertext only; opened with the campaign's key, it counts.
    let ledger = district.ledger(&campaign, "thon-dong").expect("stored");
    let leaks = found_in(ledger.doc(), &[SUBMITTED, DRAFT, "tin_nhiem"]);
    assert!(leaks.is_empty(), "{leaks:?}");
    let p = project_opened(&campaign, &ledger, &Authors::new(), Some(&key)).unwrap();
    assert!(p.rows.flags.is_empty(), "{:?}", p.rows.flags);
    let counted: Vec<_> = p.rows.answers.iter().filter(|a| a.counted).collect();
    assert_eq!(counted.len(), 3);
    assert!(counted.iter().all(|a| a.response.as_str() == submitted));
    assert!(counted.iter().any(|a| a.value == AnswerValue::Comment(SUBMITTED.into())));
}
