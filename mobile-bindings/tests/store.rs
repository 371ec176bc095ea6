//! The local store holds up: one writer at a time, and a store damaged before that rule existed
//! opens, keeps everything that loads and says what it set aside.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use hamlet_mobile::Collector;
use hamlet_mobile::CollectorError;
use hamlet_mobile::store::StoreError;

const CAMPAIGN: &str = "tin-nhiem-2025";

fn set_up(phone: &Collector) {
    phone
        .setup_without_enrollment(
            "127.0.0.1:9",
            "nguyen-van-a",
            &[(CAMPAIGN.into(), vec!["thon-dong".into(), "thon-tay".into()])],
        )
        .expect("set up");
}

#[test]
fn a_second_opener_of_a_store_is_told_it_is_in_use_and_the_first_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let first = Collector::open(&path).expect("opens");
    set_up(&first);

    let second = Collector::open(&path);
    match second {
        Err(CollectorError::Store(StoreError::InUse { .. })) => {}
        Err(e) => panic!("the wrong error: {e}"),
        Ok(_) => panic!("a second writer opened a store in use"),
    }
    let message = Collector::open(&path).map(|_| ()).expect_err("in use").to_string();
    assert!(message.contains("in use by another program"), "{message}");
    // The first opener is not disturbed.
    assert_eq!(first.counts().expect("counts").drafts, 0);
    assert!(first.enrollment().is_some());

    // Once the first is closed, the store opens again.
    drop(first);
    let again = Collector::open(&path).expect("opens once the first is closed");
    assert_eq!(again.enrollment().map(|e| e.collector), Some("nguyen-van-a".to_owned()));
}

/// Writes a response with id `response` by `collector` into `hamlet`'s ledger, straight into the
/// store (as another device's changes arrive), without index rows: the check on open adds them.
fn write_response(path: &std::path::Path, hamlet: &str, response: &str, collector: &str) {
    use hamlet_mobile::store::{DocWrite, Store};
    use hamlet_sync_core::automerge::{ActorId, Automerge};
    use hamlet_sync_core::{CampaignId, Day, DocumentId, Ledger, NewResponse, PersonId, ResponseId, UnitId};

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::open(path).await.expect("opens");
        let id = DocumentId::for_ledger(&CampaignId::new(CAMPAIGN).unwrap(), &UnitId::new(hamlet).unwrap());
        let mut bytes = Vec::new();
        for c in store.chunks().await.unwrap().into_iter().filter(|c| c.document == id.to_string()) {
            bytes.extend(c.data);
        }
        let stored = Automerge::load(&bytes).expect("loads");
        let mut ledger = Ledger::from_doc(stored.fork().with_actor(ActorId::random())).unwrap();
        let new = NewResponse {
            id: ResponseId::new(response).unwrap(),
            collector: PersonId::new(collector).unwrap(),
            answers: Default::default(),
        };
        let campaign = hamlet_sync_core::fixtures::open_campaign();
        ledger.record(&campaign, &new, Day::from_ymd(2025, 6, 2).unwrap()).expect("records");
        let chunk = ledger.doc().save_after(&stored.get_heads());
        store.write(&DocWrite { document: id.to_string(), chunk: Some(chunk), ..DocWrite::default() }).await.unwrap();
        store.close().await;
    });
}

/// Two ledgers may hold the same response id (another device chose it too): the index keeps a
/// row for each, where it used to keep one and lose the other.
#[test]
fn two_ledgers_holding_the_same_response_id_are_both_listed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let phone = Collector::open(&path).expect("opens");
    set_up(&phone);
    drop(phone);
    let same = "0b0e6a4e-5a43-4d5b-9c59-6e0c3c1f0a11";
    write_response(&path, "thon-dong", same, "nguyen-van-a");
    write_response(&path, "thon-tay", same, "tran-thi-b");

    let phone = Collector::open(&path).expect("opens");
    let everyone = hamlet_mobile::views::ResponseFilter { mine_only: false, ..Default::default() };
    let listed = phone.responses(&everyone).expect("lists");
    let mut seen: Vec<(String, String, Option<String>)> =
        listed.iter().map(|r| (r.id.clone(), r.hamlet.clone(), r.collector.clone())).collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (same.to_owned(), "thon-dong".to_owned(), Some("nguyen-van-a".to_owned())),
            (same.to_owned(), "thon-tay".to_owned(), Some("tran-thi-b".to_owned())),
        ]
    );
    assert_eq!(phone.counts().expect("counts").drafts, 1, "the collector's own draft");
    // The id names the collector's own response.
    assert_eq!(phone.response(same).expect("found").hamlet, "thon-dong");
    // And the rows stay apart after reopening (the index check finds nothing to correct).
    drop(phone);
    let phone = Collector::open(&path).expect("reopens");
    assert_eq!(phone.responses(&everyone).expect("lists").len(), 2);
}

/// Opening a store parses no document: each is loaded when first used (a phone with many
/// hamlets starts at once), and what needs every document loads every document.
#[test]
fn documents_load_when_first_used_not_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let mut hamlets: Vec<String> = (1..40).map(|i| format!("thon-{i:02}")).collect();
    hamlets.push("thon-dong".into());
    let phone = Collector::open(&path).expect("opens");
    phone
        .setup_without_enrollment("127.0.0.1:9", "nguyen-van-a", &[(CAMPAIGN.into(), hamlets.clone())])
        .expect("set up");
    drop(phone);
    let response = "5d7c8a2e-0c4e-4f7a-9f55-0b9c1d2e3f40";
    write_response(&path, "thon-dong", response, "nguyen-van-a");

    let phone = Collector::open(&path).expect("opens");
    assert_eq!(phone.documents_in_memory(), 0, "opening parsed documents");
    // What the index answers needs no document.
    assert_eq!(phone.enrollment().map(|e| e.campaigns[0].hamlets.len()), Some(40));
    // One hamlet's responses: that ledger only (and its index is checked as it loads).
    let one = hamlet_mobile::views::ResponseFilter {
        mine_only: false,
        hamlet: Some("thon-dong".into()),
        ..Default::default()
    };
    assert_eq!(phone.responses(&one).expect("lists").len(), 1);
    assert_eq!(phone.documents_in_memory(), 1);
    // A response by id: its ledger, loaded already.
    assert_eq!(phone.response(response).expect("found").hamlet, "thon-dong");
    assert_eq!(phone.documents_in_memory(), 1);
    // A bundle needs every ledger; the list of what was set aside, every document.
    phone.export_bundle(dir.path().join("out.bundle"), &|_, _| ()).expect("exports");
    assert_eq!(phone.documents_in_memory(), 40);
    assert!(phone.set_aside().expect("lists").is_empty());
    assert_eq!(phone.documents_in_memory(), 41, "and the campaign document");
}
