//! Who wrote what in a ledger: attacks by an enrolled collector on the ledgers of their own
//! hamlet, against a real server on a real socket (SQLite, and PostgreSQL when
//! `HAMLET_TEST_DATABASE_URL` is set), one test per attack. Each checks that the attack changes
//! nothing that counts, and that the honest device's next sync still goes through.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod district;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use client::{Client, Running, secure_config, start};
use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::district::catalog;
use hamlet_server::store::{PoolRef, Store};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{ActorId, Automerge, AutomergeError, ObjId, ObjType, ROOT, ReadDoc, sync};
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, CampaignState, Day, DocumentId, Ledger, Level, NewResponse, ResponseId, fixtures,
};

fn day() -> Day {
    "2025-06-03".parse().unwrap()
}

fn rid(s: &str) -> ResponseId {
    s.parse().unwrap()
}

fn open_campaign() -> Campaign {
    let mut c = fixtures::campaign();
    c.state = CampaignState::Open;
    c
}

fn rating() -> AnswerKey {
    AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"))
}

/// Records and seals responses `{prefix}-0..n`, each rating every subject `level`.
fn seal_all(ledger: &mut Ledger, prefix: &str, n: usize, level: Level, by: &str) {
    let campaign = open_campaign();
    for i in 0..n {
        let mut answers = BTreeMap::new();
        for s in &campaign.subjects {
            answers.insert(
                AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()),
                AnswerValue::Level(level),
            );
        }
        let id = rid(&format!("{prefix}-{i}"));
        ledger
            .record(&campaign, &NewResponse { id: id.clone(), collector: by.parse().unwrap(), answers }, day())
            .unwrap();
        ledger.submit(&campaign, &id, &by.parse().unwrap(), day()).unwrap();
    }
}

fn draft(ledger: &mut Ledger, id: &str, by: &str) {
    let answers = BTreeMap::from([(rating(), AnswerValue::Level(Level::TinNhiem))]);
    ledger
        .record(&open_campaign(), &NewResponse { id: rid(id), collector: by.parse().unwrap(), answers }, day())
        .unwrap();
}

fn map(doc: &Automerge, obj: &ObjId, key: &str) -> ObjId {
    match doc.get(obj, key).unwrap() {
        Some((hamlet_sync_core::automerge::Value::Object(_), id)) => id,
        other => panic!("{key}: {other:?}"),
    }
}

/// One raw change written with the document's actor, as a client that ignores the library would.
fn write(doc: &mut Automerge, f: impl FnOnce(&mut hamlet_sync_core::automerge::transaction::Transaction<'_>)) {
    doc.transact::<_, _, AutomergeError>(|tx| {
        f(tx);
        Ok(())
    })
    .map_err(|f| f.error)
    .unwrap();
}

/// A server with units, the open example campaign, and enrolled devices: `c1` and `c2` in
/// thon-dong, `c3` in thon-tay.
struct World {
    server: Running,
    url: String,
    admin: String,
    /// Token, device id and actor of each collector's phone.
    phones: BTreeMap<&'static str, (String, String, ActorId)>,
}

impl World {
    async fn new(url: &str) -> World {
        let store = Store::open(url).await.unwrap();
        let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
        accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
        let (_, admin) = accounts.create_api_token("admin", "tests").await.unwrap();
        let campaign = fixtures::campaign().id.to_string();
        let mut phones = BTreeMap::new();
        for (person, hamlet) in [("c1", "thon-dong"), ("c2", "thon-dong"), ("c3", "thon-tay")] {
            accounts.create_person(person, person, Role::Collector).await.unwrap();
            accounts.set_assignments(person, &campaign, &[hamlet.to_owned()]).await.unwrap();
            let (code, _) = accounts.issue_code(person, Duration::from_secs(600)).await.unwrap();
            let actor = ActorId::random();
            let enrolled = accounts.enroll(&code, &[actor.to_hex_string()], "phone").await.unwrap();
            phones.insert(person, (enrolled.token, enrolled.device_id, actor));
        }
        store.close().await;
        let server = start(secure_config(url, &[])).await;
        let world = World { server, url: url.to_owned(), admin: format!("Bearer {admin}"), phones };
        let units = catalog::units_csv(fixtures::unit_tree().units());
        let headers = [("Authorization", world.admin.as_str()), ("Content-Type", "text/csv")];
        assert_eq!(world.server.request("POST", "/api/units", &headers, Some(&units)).await.status, 200);
        let headers = [("Authorization", world.admin.as_str())];
        let body = serde_json::to_string(&fixtures::campaign()).unwrap();
        assert_eq!(world.server.request("POST", "/api/campaigns", &headers, Some(&body)).await.status, 201);
        let path = format!("/api/campaigns/{campaign}/open");
        assert_eq!(world.server.request("POST", &path, &headers, Some("")).await.status, 200);
        world
    }

    fn actor(&self, person: &str) -> ActorId {
        self.phones[person].2.clone()
    }

    fn ledger(&self, hamlet: &str, person: &str) -> Ledger {
        Ledger::create(&open_campaign().id, &fixtures::hamlet(hamlet), self.actor(person))
    }

    async fn phone(&self, person: &str) -> Client {
        let peer = format!("peer-{person}-{}", &ActorId::random().to_hex_string()[..8]);
        Client::join_with(&self.server.url(), &peer, None, Some(&self.phones[person].0)).await
    }

    /// Syncs `ledger` as `person`'s phone: `Err` with what the server said.
    async fn sync(&self, person: &str, ledger: &mut Ledger) -> Result<(), String> {
        let id = ledger.id();
        self.phone(person).await.sync_with(id, ledger.doc_mut(), &mut sync::State::new(), false).await.map(drop)
    }

    /// Waits until the hamlet's counts satisfy `done`; returns them. The server runs in this
    /// process but keeps its projector to itself, and the district API announces no projection:
    /// polling the API is the only way to see one, so this polls, with a deadline (10 s) that
    /// only a projection that never comes reaches.
    async fn wait_for(&self, hamlet: &str, done: impl Fn(&Counts) -> bool) -> Counts {
        let mut last = Counts::default();
        for _ in 0..200 {
            last = counts(&self.url, hamlet).await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{hamlet}: never reached the expected counts: {last:?}");
    }
}

/// What the district sees of one hamlet.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    drafts: i64,
    submitted: i64,
    voided: i64,
    /// Counted "ong-an" ratings by level code.
    levels: BTreeMap<String, i64>,
    /// Flags, as `kind:entity`.
    flags: Vec<String>,
}

async fn counts(url: &str, hamlet: &str) -> Counts {
    let store = Store::open(url).await.unwrap();
    const HAMLET: &str = "SELECT drafts, submitted, voided FROM hamlet_counts WHERE hamlet_id = $1";
    const LEVELS: &str =
        "SELECT level, from_responses FROM level_counts WHERE hamlet_id = $1 AND subject_id = 'ong-an'";
    const FLAGS: &str = "SELECT kind || ':' || entity_id FROM flags WHERE hamlet_id = $1 ORDER BY kind";
    type Rows = (Option<(i64, i64, i64)>, Vec<(String, i64)>, Vec<String>);
    let (h, levels, flags): Rows = match store.pool() {
        PoolRef::Sqlite(p) => (
            sqlx::query_as(HAMLET).bind(hamlet).fetch_optional(p).await.unwrap(),
            sqlx::query_as(LEVELS).bind(hamlet).fetch_all(p).await.unwrap(),
            sqlx::query_scalar(FLAGS).bind(hamlet).fetch_all(p).await.unwrap(),
        ),
        PoolRef::Postgres(p) => (
            sqlx::query_as(HAMLET).bind(hamlet).fetch_optional(p).await.unwrap(),
            sqlx::query_as(LEVELS).bind(hamlet).fetch_all(p).await.unwrap(),
            sqlx::query_scalar(FLAGS).bind(hamlet).fetch_all(p).await.unwrap(),
        ),
    };
    store.close().await;
    let (drafts, submitted, voided) = h.unwrap_or_default();
    Counts { drafts, submitted, voided, levels: levels.into_iter().filter(|(_, n)| *n != 0).collect(), flags }
}

fn levels(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(l, n)| (l.to_string(), *n)).collect()
}

#[tokio::test]
async fn a_ledger_that_names_another_hamlet_is_refused_and_wipes_nothing() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let mut tay = world.ledger("thon-tay", "c3");
        seal_all(&mut tay, "t", 6, Level::TinNhiemCao, "c3");
        world.sync("c3", &mut tay).await.unwrap();
        world.wait_for("thon-tay", |c| c.submitted == 6).await;

        // c1 rewrites its own ledger's root to name thon-tay (and records one draft).
        let mut dong = world.ledger("thon-dong", "c1");
        draft(&mut dong, "d-0", "c1");
        write(dong.doc_mut(), |tx| tx.put(ROOT, "hamlet", "thon-tay").unwrap());
        let err = world.sync("c1", &mut dong).await.unwrap_err();
        assert!(err.contains("changes refused") && err.contains("root"), "{}: {err}", db.name);

        // A skeleton of its own, written with c1's actor, is refused too.
        let mut own = Automerge::new().with_actor(world.actor("c1"));
        let docid = DocumentId::for_ledger(&open_campaign().id, &fixtures::hamlet("thon-dong"));
        write(&mut own, |tx| {
            tx.put(ROOT, "schema", "hamlet-ledger/1").unwrap();
            tx.put(ROOT, "campaign", "tin-nhiem-2025").unwrap();
            tx.put(ROOT, "hamlet", "thon-tay").unwrap();
            tx.put_object(ROOT, "responses", ObjType::Map).unwrap();
            tx.put_object(ROOT, "tallies", ObjType::Map).unwrap();
        });
        let err = world.phone("c1").await.sync_with(docid, &mut own, &mut sync::State::new(), false).await;
        assert!(err.is_err_and(|e| e.contains("changes refused")), "{}", db.name);

        // thon-tay keeps its results; thon-dong's honest draft still syncs.
        let mut honest = world.ledger("thon-dong", "c1");
        draft(&mut honest, "d-1", "c1");
        world.sync("c1", &mut honest).await.unwrap();
        world.wait_for("thon-dong", |c| c.drafts == 1).await;
        let tay = counts(db.url(), "thon-tay").await;
        assert_eq!((tay.submitted, tay.levels.clone()), (6, levels(&[("tin_nhiem_cao", 6)])), "{}: {tay:?}", db.name);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn a_device_cannot_write_with_a_colleagues_actor_nor_claim_the_skeleton_actor() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let mut c1 = world.ledger("thon-dong", "c1");
        draft(&mut c1, "a-0", "c1");
        world.sync("c1", &mut c1).await.unwrap();

        // c2, in the same hamlet, writes as c1: its next change would take c1's sequence number.
        let mut forged = Ledger::load(&c1.doc().save(), world.actor("c1")).unwrap();
        draft(&mut forged, "forged", "c1");
        let err = world.sync("c2", &mut forged).await.unwrap_err();
        assert!(err.contains("changes refused"), "{}: {err}", db.name);
        // c1's own next change (the same sequence number) is still accepted.
        draft(&mut c1, "a-1", "c1");
        world.sync("c1", &mut c1).await.unwrap();
        world.wait_for("thon-dong", |c| c.drafts == 2).await;

        // The skeleton's actor (the document id's bytes) cannot be claimed, at enrollment or later.
        let skeleton = ActorId::from(c1.id().as_bytes().as_slice()).to_hex_string();
        let body = serde_json::json!({ "actor_ids": [skeleton] }).to_string();
        let bearer = format!("Bearer {}", world.phones["c2"].0);
        let reply =
            world.server.request("POST", "/api/device/actors", &[("Authorization", &bearer)], Some(&body)).await;
        assert_eq!(
            (reply.status, reply.json()["code"].as_str()),
            (409, Some("actor_reserved")),
            "{}: {reply:?}",
            db.name
        );
        let campaign_doc = DocumentId::for_campaign(&open_campaign().id);
        let body =
            serde_json::json!({ "actor_ids": [ActorId::from(campaign_doc.as_bytes().as_slice()).to_hex_string()] })
                .to_string();
        let reply =
            world.server.request("POST", "/api/device/actors", &[("Authorization", &bearer)], Some(&body)).await;
        assert_eq!(
            (reply.status, reply.json()["code"].as_str()),
            (409, Some("actor_reserved")),
            "{}: {reply:?}",
            db.name
        );
        world.server.stop().await;
    }
}

#[tokio::test]
async fn a_sealed_ballot_cannot_be_rewritten() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let mut l = world.ledger("thon-dong", "c1");
        seal_all(&mut l, "s", 6, Level::TinNhiemCao, "c1");
        world.sync("c1", &mut l).await.unwrap();
        world.wait_for("thon-dong", |c| c.submitted == 6).await;

        // The sealing device itself rewrites its seals: into seal/answers (four of them), a new
        // seal in place of the old (one), the seal deleted (one).
        let doc = l.doc_mut();
        let responses = map(doc, &ROOT, "responses");
        let key = rating().to_string();
        for i in 0..6 {
            let r = map(doc, &responses, &format!("s-{i}"));
            let seal = map(doc, &r, "seal");
            let answers = map(doc, &seal, "answers");
            write(doc, |tx| match i {
                0..=3 => tx.put(&answers, key.as_str(), "tin_nhiem_thap").unwrap(),
                4 => {
                    let new = tx.put_object(&r, "seal", ObjType::Map).unwrap();
                    tx.put(&new, "on", "2025-06-04").unwrap();
                    let a = tx.put_object(&new, "answers", ObjType::Map).unwrap();
                    tx.put(&a, key.as_str(), "tin_nhiem_thap").unwrap();
                }
                _ => tx.delete(&r, "seal").unwrap(),
            });
        }
        draft(&mut l, "barrier", "c1");
        world.sync("c1", &mut l).await.unwrap();
        let after = world.wait_for("thon-dong", |c| c.drafts >= 1).await;
        assert_eq!(after.drafts, 1, "{}: {after:?}", db.name);
        assert_eq!(
            (after.submitted, after.levels.clone()),
            (6, levels(&[("tin_nhiem_cao", 6)])),
            "{}: {after:?}",
            db.name
        );
        let sealed: std::collections::BTreeSet<&String> =
            after.flags.iter().filter(|f| f.starts_with("seal_rewritten:")).collect();
        assert_eq!(sealed.len(), 6, "{}: one response or more each: {after:?}", db.name);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn a_colleague_cannot_void_or_change_a_ballot_in_someone_elses_name() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let mut a = world.ledger("thon-dong", "c1");
        seal_all(&mut a, "v", 6, Level::TinNhiemCao, "c1");
        world.sync("c1", &mut a).await.unwrap();
        world.wait_for("thon-dong", |c| c.submitted == 6).await;

        // c2 gets the ledger and voids every one of c1's ballots with its own actor, "by" c1.
        let mut b = world.ledger("thon-dong", "c2");
        world.sync("c2", &mut b).await.unwrap();
        let mut b = Ledger::load(&b.doc().save(), world.actor("c2")).unwrap();
        for i in 0..6 {
            b.void(&rid(&format!("v-{i}")), "ghi nhầm", &"c1".parse().unwrap(), day()).unwrap();
        }
        let err = world.sync("c2", &mut b).await.unwrap_err();
        assert!(err.contains("changes refused") && err.contains("another device"), "{}: {err}", db.name);
        // Nor may it edit a colleague's draft.
        draft(&mut a, "v-draft", "c1");
        world.sync("c1", &mut a).await.unwrap();
        let mut b = world.ledger("thon-dong", "c2");
        world.sync("c2", &mut b).await.unwrap();
        let mut b = Ledger::load(&b.doc().save(), world.actor("c2")).unwrap();
        b.edit(&open_campaign(), &rid("v-draft"), &[(rating(), Some(AnswerValue::Level(Level::TinNhiemThap)))], day())
            .unwrap();
        assert!(world.sync("c2", &mut b).await.is_err(), "{}", db.name);
        // c2's own ballots are welcome.
        let mut own = world.ledger("thon-dong", "c2");
        draft(&mut own, "c2-0", "c2");
        world.sync("c2", &mut own).await.unwrap();
        let after = world.wait_for("thon-dong", |c| c.drafts == 2).await;
        assert_eq!((after.submitted, after.voided), (6, 0), "{}: {after:?}", db.name);
        world.server.stop().await;
    }
}

/// The same attacks where no server check stands in the way (a document stored before the
/// checks, or synced in open mode): the projection itself keeps them from counting.
#[tokio::test]
async fn the_projection_counts_only_what_the_owner_sealed_in_the_right_hamlet() {
    for db in support::databases().await {
        let h = district::harness(db.url()).await;
        let campaign = h.open(&fixtures::campaign()).await;
        let mut tay = district::ledger(&campaign, "thon-tay", 3);
        seal_all(&mut tay, "t", 6, Level::TinNhiemCao, "c3");
        h.sync(&mut h.phone(3), &mut tay).await;

        // A thon-dong ledger whose root claims thon-tay.
        let mut dong = district::ledger(&campaign, "thon-dong", 1);
        seal_all(&mut dong, "d", 6, Level::TinNhiemThap, "c1");
        write(dong.doc_mut(), |tx| tx.put(ROOT, "hamlet", "thon-tay").unwrap());
        let mut p1 = h.phone(1);
        p1.sync(&mut dong).await.unwrap();
        h.district.projector.flush().await;

        // Another device voids one of thon-dong's ballots and rewrites another's seal.
        let mut other = Ledger::load(&dong.doc().save(), ActorId::from([2; 16])).unwrap();
        other.void(&rid("d-0"), "ghi nhầm", &"c1".parse().unwrap(), day()).unwrap();
        let doc = other.doc_mut();
        let responses = map(doc, &ROOT, "responses");
        let r = map(doc, &responses, "d-1");
        let answers = map(doc, &map(doc, &r, "seal"), "answers");
        write(doc, |tx| tx.put(&answers, rating().to_string().as_str(), "tin_nhiem_cao").unwrap());
        // (The ledger's own id: `other` read its root, which names thon-tay.)
        h.phone(2).sync_document(dong.id(), other.doc_mut()).await.unwrap();
        h.district.projector.flush().await;

        for pass in ["incremental", "rebuilt"] {
            let tay = counts(db.url(), "thon-tay").await;
            assert_eq!(
                (tay.submitted, tay.levels.clone()),
                (6, levels(&[("tin_nhiem_cao", 6)])),
                "{} {pass}: {tay:?}",
                db.name
            );
            let dong = counts(db.url(), "thon-dong").await;
            assert_eq!((dong.submitted, dong.voided), (6, 0), "{} {pass}: {dong:?}", db.name);
            assert_eq!(dong.levels, levels(&[("tin_nhiem_thap", 6)]), "{} {pass}: {dong:?}", db.name);
            assert!(dong.flags.contains(&"foreign_write:d-0".to_owned()), "{} {pass}: {dong:?}", db.name);
            assert!(dong.flags.contains(&"seal_rewritten:d-1".to_owned()), "{} {pass}: {dong:?}", db.name);
            h.district.projector.reproject().await.unwrap();
        }
    }
}
