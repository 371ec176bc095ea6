//! A district server in this process without sockets: store, hub, projector, and simulated
//! phones that sync through the hub's document tasks.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hamlet_server::accounts::Accounts;
use hamlet_server::config::Limits;
use hamlet_server::demo::seed::Phone;
use hamlet_server::district::{self, Actor, District, Settings, campaigns, catalog};
use hamlet_server::store::{Committer, Store};
use hamlet_server::sync::hub::Hub;
use hamlet_server::sync::metrics::Metrics;
use hamlet_sync_core::automerge::ActorId;
use hamlet_sync_core::session::Identity;
use hamlet_sync_core::{Campaign, CampaignState, Ledger, fixtures};

/// A district over one database.
pub struct Harness {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub district: District,
}

pub async fn harness(url: &str) -> Harness {
    harness_with(url, Settings::default()).await
}

/// A district over one database, with these settings.
pub async fn harness_with(url: &str, settings: Settings) -> Harness {
    let store = Store::open(url).await.expect("store opens");
    let (committer, _writer) = Committer::spawn(store.clone(), 64);
    let identity = Identity { peer_id: "test-server".into(), storage_id: store.storage_id().await.unwrap() };
    let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
    let projector = district::new_projector(&store, settings);
    let hub = Hub::new(
        store.clone(),
        committer,
        identity,
        Limits::default(),
        Arc::new(Metrics::default()),
        accounts,
        projector.clone(),
    );
    let district = district::start(hub.clone(), projector);
    Harness { store, hub, district }
}

pub fn admin() -> Actor {
    Actor { name: "test-admin".into(), role: "admin".into() }
}

impl Harness {
    /// Imports the fixture units and creates and opens `campaign` (a draft).
    pub async fn open(&self, campaign: &Campaign) -> Campaign {
        let csv = catalog::units_csv(fixtures::unit_tree().units());
        campaigns::import_units_text(&self.district, &admin(), &csv).await.expect("units import");
        let mut draft = campaign.clone();
        draft.state = CampaignState::Draft;
        campaigns::create(&self.district, &admin(), draft).await.expect("campaign created");
        campaigns::transition(&self.district, &admin(), campaign.id.as_str(), CampaignState::Open).await.expect("opens")
    }

    /// Closes `campaign` (open): its figures stop moving.
    pub async fn close(&self, campaign: &Campaign) -> Campaign {
        campaigns::transition(&self.district, &admin(), campaign.id.as_str(), CampaignState::Closed)
            .await
            .expect("closes")
    }

    pub fn phone(&self, n: u8) -> Phone {
        Phone::connect(&self.hub, &format!("phone-{n}"), &format!("device-{n}"))
    }

    /// Syncs and waits until the projection has caught up.
    pub async fn sync(&self, phone: &mut Phone, ledger: &mut Ledger) {
        phone.sync(ledger).await.expect("sync");
        self.district.projector.flush().await;
    }
}

pub fn ledger(campaign: &Campaign, hamlet: &str, device: u8) -> Ledger {
    Ledger::create(&campaign.id, &fixtures::hamlet(hamlet), ActorId::from([device; 16]))
}
