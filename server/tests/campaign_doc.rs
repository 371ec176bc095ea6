//! The campaign document is written by the server through its document task (`Hub::write`):
//! a device fetching it reads the campaign, a device already syncing it is sent each change,
//! and a refused write stores nothing — on SQLite and PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod district;
mod support;

use district::{admin, harness};
use hamlet_server::district::campaigns;
use hamlet_server::sync::hub::WriteError;
use hamlet_sync_core::automerge::Automerge;
use hamlet_sync_core::campaign_doc::read_campaign;
use hamlet_sync_core::{CampaignState, DocumentId, fixtures};

#[tokio::test]
async fn devices_receive_the_campaign_and_its_changes() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let campaign = h.open(&fixtures::campaign()).await;
        let id = DocumentId::for_campaign(&campaign.id);

        let mut phone = h.phone(1);
        let mut doc = Automerge::new();
        phone.sync_document(id, &mut doc).await.unwrap();
        assert_eq!(read_campaign(&doc).unwrap(), campaign, "{}: the device reads the open campaign", db.name);

        // Staff close the campaign: the phone, a peer of the document, is sent the change.
        campaigns::transition(&h.district, &admin(), campaign.id.as_str(), CampaignState::Closed).await.unwrap();
        // The write is answered once stored, and pushed right after: wait for the push (the
        // bound only fails a server that never pushes).
        let pushed = tokio::time::timeout(std::time::Duration::from_secs(10), phone.wait_pushed()).await;
        assert!(pushed.is_ok_and(|n| n > 0), "{}: the change was pushed without being asked for", db.name);
        phone.sync_document(id, &mut doc).await.unwrap();
        assert_eq!(read_campaign(&doc).unwrap().state, CampaignState::Closed, "{}", db.name);

        // A write that fails stores nothing and says why.
        let before = h.store.load(&id.to_string()).await.unwrap().len();
        let refused = h.hub.write(id, Box::new(|_| Err("no, thank you".into()))).await;
        assert!(
            matches!(refused, Err(WriteError::Refused(ref why)) if why == "no, thank you"),
            "{}: {refused:?}",
            db.name
        );
        assert_eq!(h.store.load(&id.to_string()).await.unwrap().len(), before, "{}", db.name);
    }
}
