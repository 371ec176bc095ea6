//! What a commune relay must know to apply the district's rules while its uplink is down: the
//! relay's hamlets, the collectors assigned to them, their devices (token *hashes*, actor ids,
//! revocations). The district builds a [`Feed`] for a relay's device ([`Accounts::relay_feed`]);
//! the relay stores it in the same tables the district keeps them in
//! ([`Accounts::apply_feed`]), so that the very same checks (`device_by_token`,
//! `actors_allowed`, `actor_devices`, the sync access) run at the relay unchanged.
//!
//! Nothing else crosses: no staff account, no password, no session, no token in clear, no
//! device or assignment outside the relay's hamlets. A collector who also works elsewhere is
//! known to the relay only with the hamlets it shares with the relay, so a phone can do no more
//! at the relay than at the district.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use super::{AccountError, Accounts, Role, check_id, is_actor_id};
use crate::store::{BeginWrite, on_pool, query_failed};

/// Most people, devices or assignments a feed may hold: far beyond a commune, and a bound on
/// what a relay stores from one answer.
pub const MAX_FEED_ITEMS: usize = 100_000;

/// What the district tells a relay about its hamlets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Feed {
    /// The relay's own person id.
    pub relay: String,
    /// The relay's name, as the district shows it.
    pub relay_name: String,
    /// The hamlets the relay serves, as (campaign id, hamlet id).
    pub hamlets: Vec<(String, String)>,
    /// The collectors working in those hamlets.
    pub people: Vec<FeedPerson>,
    /// Their assignments, limited to the relay's hamlets: (person, campaign, hamlet).
    pub assignments: Vec<(String, String, String)>,
    /// Their devices, revoked ones included (a revoked device's actors still own its
    /// responses).
    pub devices: Vec<FeedDevice>,
}

/// A collector, as a relay knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeedPerson {
    /// Identifier.
    pub id: String,
    /// Name shown.
    pub display_name: String,
}

/// A device, as a relay knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeedDevice {
    /// Identifier.
    pub id: String,
    /// Whose it is.
    pub person_id: String,
    /// Name given at enrollment.
    pub name: String,
    /// SHA-256 of its token, hex (the token itself never leaves the device).
    pub token_hash: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Revocation, unix milliseconds.
    pub revoked_at: Option<i64>,
    /// Its Automerge actor ids.
    pub actors: Vec<String>,
}

impl Feed {
    /// Checks what a relay is about to store: ids as the district writes them, bounded counts,
    /// nobody outside the feed's own people, no hamlet outside the relay's.
    pub fn check(&self) -> Result<(), AccountError> {
        let too_many = [self.hamlets.len(), self.people.len(), self.assignments.len(), self.devices.len()]
            .iter()
            .any(|n| *n > MAX_FEED_ITEMS);
        if too_many {
            return Err(AccountError::Invalid(format!("a feed holds at most {MAX_FEED_ITEMS} items of each kind")));
        }
        check_id("relay id", &self.relay)?;
        let hamlets: HashSet<&(String, String)> = self.hamlets.iter().collect();
        for (campaign, hamlet) in &self.hamlets {
            check_id("campaign id", campaign)?;
            check_id("hamlet id", hamlet)?;
        }
        let people: HashSet<&str> = self.people.iter().map(|p| p.id.as_str()).collect();
        for p in &self.people {
            check_id("person id", &p.id)?;
            if p.id == self.relay {
                return Err(AccountError::Invalid("the feed lists the relay among its collectors".into()));
            }
        }
        for (person, campaign, hamlet) in &self.assignments {
            if !people.contains(person.as_str()) {
                return Err(AccountError::Invalid(format!("the feed assigns {person:?}, whom it does not list")));
            }
            if !hamlets.contains(&(campaign.clone(), hamlet.clone())) {
                return Err(AccountError::Invalid(format!("the feed assigns {hamlet:?}, which is not the relay's")));
            }
        }
        for d in &self.devices {
            check_id("device id", &d.id)?;
            if !people.contains(d.person_id.as_str()) {
                return Err(AccountError::Invalid(format!("device {:?} belongs to nobody the feed lists", d.id)));
            }
            let hash_ok = d.token_hash.len() == 64 && d.token_hash.bytes().all(|b| b.is_ascii_hexdigit());
            if !hash_ok || d.actors.len() > super::MAX_DEVICE_ACTORS || !d.actors.iter().all(|a| is_actor_id(a)) {
                return Err(AccountError::Invalid(format!("device {:?} is not as the district writes one", d.id)));
            }
        }
        Ok(())
    }
}

impl Accounts {
    /// The feed for the relay `relay` (a person with the relay role).
    pub async fn relay_feed(&self, relay: &str) -> Result<Feed, AccountError> {
        let person = self.person(relay).await?.ok_or_else(|| AccountError::NotFound(relay.to_owned()))?;
        if person.role != Role::Relay {
            return Err(AccountError::Invalid(format!("{relay} is not a relay")));
        }
        let hamlets = self.assignments(relay).await?;
        let mine: BTreeSet<(String, String)> = hamlets.iter().cloned().collect();
        let mut assignments: BTreeSet<(String, String, String)> = BTreeSet::new();
        const WHO: &str = "SELECT a.person_id FROM assignments a JOIN people p ON p.id = a.person_id \
                           WHERE a.campaign_id = $1 AND a.hamlet_id = $2 AND p.role = 'collector'";
        for (campaign, hamlet) in &mine {
            let who: Vec<(String,)> = on_pool!(self.store, pool =>
                sqlx::query_as(WHO).bind(campaign).bind(hamlet).fetch_all(pool).await)
            .map_err(query_failed("reading a relay's collectors"))?;
            for (person,) in who {
                assignments.insert((person, campaign.clone(), hamlet.clone()));
            }
        }
        let ids: BTreeSet<String> = assignments.iter().map(|(p, _, _)| p.clone()).collect();
        let mut people = Vec::new();
        let mut devices = Vec::new();
        type DeviceRow = (String, String, String, String, i64, Option<i64>);
        const DEVICES: &str = "SELECT id, person_id, name, token_hash, created_at, revoked_at FROM devices WHERE person_id = $1 ORDER BY id";
        const ACTORS: &str = "SELECT actor_id FROM device_actors WHERE device_id = $1 ORDER BY actor_id";
        for id in &ids {
            let Some(p) = self.person(id).await? else { continue };
            people.push(FeedPerson { id: p.id.clone(), display_name: p.display_name });
            let rows: Vec<DeviceRow> = on_pool!(self.store, pool =>
                sqlx::query_as(DEVICES).bind(id).fetch_all(pool).await)
            .map_err(query_failed("reading a relay's devices"))?;
            for (device, person_id, name, token_hash, created_at, revoked_at) in rows {
                let actors: Vec<(String,)> = on_pool!(self.store, pool =>
                    sqlx::query_as(ACTORS).bind(&device).fetch_all(pool).await)
                .map_err(query_failed("reading a relay's devices"))?;
                let actors = actors.into_iter().map(|(a,)| a).collect();
                devices.push(FeedDevice { id: device, person_id, name, token_hash, created_at, revoked_at, actors });
            }
        }
        Ok(Feed {
            relay: person.id,
            relay_name: person.display_name,
            hamlets,
            people,
            assignments: assignments.into_iter().collect(),
            devices,
        })
    }

    /// At a relay: makes the accounts what `feed` says, in one transaction. People, devices
    /// and actors the feed lists are written as it says; assignments are replaced whole; a
    /// device held here that the feed no longer lists is revoked here (its person left the
    /// relay's hamlets, or it was removed). Nothing else of the relay's database is touched.
    pub async fn apply_feed(&self, feed: &Feed) -> Result<(), AccountError> {
        feed.check()?;
        let now = self.store.now_ms();
        let listed: BTreeMap<&str, &FeedDevice> = feed.devices.iter().map(|d| (d.id.as_str(), d)).collect();
        on_pool!(self.store, pool => {
            let failed = query_failed("storing the district's feed");
            let mut tx = pool.begin_write().await.map_err(query_failed("storing the district's feed"))?;
            const PERSON: &str = "INSERT INTO people (id, display_name, role, created_at) VALUES ($1, $2, $3, $4) \
                                  ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, role = excluded.role";
            let relay = [(feed.relay.as_str(), feed.relay_name.as_str(), Role::Relay)];
            let collectors = feed.people.iter().map(|p| (p.id.as_str(), p.display_name.as_str(), Role::Collector));
            for (id, name, role) in relay.into_iter().chain(collectors) {
                sqlx::query(PERSON).bind(id).bind(name).bind(role.as_str()).bind(now)
                    .execute(&mut *tx).await.map_err(query_failed("storing the district's feed"))?;
            }
            sqlx::query("DELETE FROM assignments").execute(&mut *tx).await.map_err(query_failed("storing the district's feed"))?;
            const ASSIGN: &str = "INSERT INTO assignments (person_id, campaign_id, hamlet_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
            let own = feed.hamlets.iter().map(|(c, h)| (feed.relay.as_str(), c.as_str(), h.as_str()));
            let theirs = feed.assignments.iter().map(|(p, c, h)| (p.as_str(), c.as_str(), h.as_str()));
            for (person, campaign, hamlet) in own.chain(theirs) {
                sqlx::query(ASSIGN).bind(person).bind(campaign).bind(hamlet)
                    .execute(&mut *tx).await.map_err(query_failed("storing the district's feed"))?;
            }
            let held: Vec<(String,)> = sqlx::query_as("SELECT id FROM devices WHERE revoked_at IS NULL")
                .fetch_all(&mut *tx).await.map_err(query_failed("storing the district's feed"))?;
            for (id,) in held.iter().filter(|(id,)| !listed.contains_key(id.as_str())) {
                sqlx::query("UPDATE devices SET revoked_at = $1 WHERE id = $2").bind(now).bind(id)
                    .execute(&mut *tx).await.map_err(query_failed("storing the district's feed"))?;
            }
            const DEVICE: &str = "INSERT INTO devices (id, person_id, name, token_hash, created_at, revoked_at) \
                                  VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET person_id = excluded.person_id, \
                                  name = excluded.name, token_hash = excluded.token_hash, revoked_at = excluded.revoked_at";
            const ACTOR: &str = "INSERT INTO device_actors (actor_id, device_id) VALUES ($1, $2) \
                                 ON CONFLICT (actor_id) DO UPDATE SET device_id = excluded.device_id";
            for d in &feed.devices {
                sqlx::query(DEVICE).bind(&d.id).bind(&d.person_id).bind(&d.name).bind(d.token_hash.to_lowercase())
                    .bind(d.created_at).bind(d.revoked_at)
                    .execute(&mut *tx).await.map_err(query_failed("storing the district's feed"))?;
                for actor in &d.actors {
                    sqlx::query(ACTOR).bind(actor.to_lowercase()).bind(&d.id)
                        .execute(&mut *tx).await.map_err(query_failed("storing the district's feed"))?;
                }
            }
            tx.commit().await.map_err(failed)
        })?;
        Ok(())
    }
}
