//! A store damaged before one store had one writer (two writers gave one actor the same sequence
//! number, or a disk fault) opens, keeps every chunk that loads, and says what it set aside.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use hamlet_mobile::Collector;

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

/// Writes into `hamlet`'s ledger, as two writers of the same actor would: each from the same
/// stored state, each a change with the same sequence number. Returns the two response ids.
fn damage_as_two_writers_did(path: &std::path::Path, actor: &str, hamlet: &str) -> (String, String) {
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
        let stored = Automerge::load(&bytes).expect("loads before the damage");
        let campaign = hamlet_sync_core::fixtures::open_campaign();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let mut doc = stored.fork().with_actor(ActorId::try_from(actor).unwrap());
            doc.set_actor(ActorId::try_from(actor).unwrap());
            let mut ledger = Ledger::from_doc(doc).unwrap();
            let response = ResponseId::new(uuid::Uuid::new_v4().to_string()).unwrap();
            let new = NewResponse {
                id: response.clone(),
                collector: PersonId::new("nguyen-van-a").unwrap(),
                answers: Default::default(),
            };
            ledger.record(&campaign, &new, Day::from_ymd(2025, 6, 2).unwrap()).expect("records");
            let chunk = ledger.doc().save_after(&stored.get_heads());
            store
                .write(&DocWrite { document: id.to_string(), chunk: Some(chunk), ..DocWrite::default() })
                .await
                .expect("writes");
            ids.push(response.to_string());
        }
        store.close().await;
        (ids[0].clone(), ids[1].clone())
    })
}

#[test]
fn a_store_two_writers_damaged_opens_keeps_what_loads_and_sets_aside_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let phone = Collector::open(&path).expect("opens");
    set_up(&phone);
    let actor = phone.actor_id();
    drop(phone);
    let (kept, clashing) = damage_as_two_writers_did(&path, &actor, "thon-dong");

    let phone = Collector::open(&path).expect("a damaged store still opens");
    let set_aside = phone.set_aside().expect("lists");
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert!(set_aside[0].reason.contains("duplicate seq"), "{set_aside:?}");
    assert!(
        set_aside[0].document.contains(
            &hamlet_sync_core::DocumentId::for_ledger(
                &hamlet_sync_core::CampaignId::new(CAMPAIGN).unwrap(),
                &hamlet_sync_core::UnitId::new("thon-dong").unwrap()
            )
            .to_string()
        )
    );
    // The first writer's response is there; the other ledger was never in danger.
    assert!(phone.response(&kept).is_ok(), "the change that loads is kept");
    assert!(phone.response(&clashing).is_err());
    let all = phone.responses(&Default::default()).expect("lists");
    assert_eq!(all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![kept.clone()]);
    // What was set aside stays set aside, and the store keeps working and reopening.
    drop(phone);
    let phone = Collector::open(&path).expect("reopens");
    assert_eq!(phone.set_aside().expect("lists").len(), 1);
    assert!(phone.response(&kept).is_ok());
}

#[test]
fn one_ledger_that_does_not_load_never_makes_the_others_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let phone = Collector::open(&path).expect("opens");
    set_up(&phone);
    drop(phone);
    // The whole of one ledger is garbage (a disk fault, a foreign writer).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let broken = hamlet_sync_core::DocumentId::for_ledger(
        &hamlet_sync_core::CampaignId::new(CAMPAIGN).unwrap(),
        &hamlet_sync_core::UnitId::new("thon-tay").unwrap(),
    );
    runtime.block_on(async {
        use hamlet_mobile::store::{DocWrite, Store};
        let store = Store::open(&path).await.unwrap();
        let write =
            DocWrite { document: broken.to_string(), chunk: Some(b"not automerge".to_vec()), ..DocWrite::default() };
        store.write(&write).await.unwrap();
        store.close().await;
    });
    let phone = Collector::open(&path).expect("opens");
    let set_aside = phone.set_aside().expect("lists");
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(set_aside[0].document, broken.to_string());
    assert_eq!(phone.campaigns()[0].hamlets.len(), 2);
    let file = dir.path().join("out.bundle");
    phone.export_bundle(&file, &|_, _| ()).expect("export still works");
}

/// A crash between a sync's receiving and its storing used to leave a colleague's responses
/// in the ledger without their index rows: they were there, and never listed.
#[test]
fn the_index_is_checked_against_the_ledgers_on_open_and_rebuilt_where_they_differ() {
    use hamlet_mobile::store::{DocWrite, Store};
    use hamlet_sync_core::automerge::{ActorId, Automerge};
    use hamlet_sync_core::{CampaignId, Day, DocumentId, Ledger, NewResponse, PersonId, ResponseId, UnitId};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let phone = Collector::open(&path).expect("opens");
    set_up(&phone);
    drop(phone);
    let id = DocumentId::for_ledger(&CampaignId::new(CAMPAIGN).unwrap(), &UnitId::new("thon-dong").unwrap());
    let colleague = ResponseId::new(uuid::Uuid::new_v4().to_string()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::open(&path).await.unwrap();
        let mut bytes = Vec::new();
        for c in store.chunks().await.unwrap().into_iter().filter(|c| c.document == id.to_string()) {
            bytes.extend(c.data);
        }
        let stored = Automerge::load(&bytes).unwrap();
        let mut ledger = Ledger::from_doc(stored.fork().with_actor(ActorId::random())).unwrap();
        let new = NewResponse {
            id: colleague.clone(),
            collector: PersonId::new("tran-thi-b").unwrap(),
            answers: Default::default(),
        };
        let campaign = hamlet_sync_core::fixtures::open_campaign();
        ledger.record(&campaign, &new, Day::from_ymd(2025, 6, 2).unwrap()).unwrap();
        let chunk = ledger.doc().save_after(&stored.get_heads());
        // The changes are stored, their index rows are not.
        store.write(&DocWrite { document: id.to_string(), chunk: Some(chunk), ..DocWrite::default() }).await.unwrap();
        store.close().await;
    });
    let phone = Collector::open(&path).expect("opens");
    let listed = phone
        .responses(&hamlet_mobile::views::ResponseFilter { mine_only: false, ..Default::default() })
        .expect("lists");
    assert_eq!(listed.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![colleague.to_string()]);
    assert_eq!(listed[0].collector.as_deref(), Some("tran-thi-b"));
}
