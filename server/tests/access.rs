//! Accounts, enrollment and access control, against a real server on SQLite and (when
//! `HAMLET_TEST_DATABASE_URL` is set) PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use client::{Client, Reply, Running, request_from, secure_config, start};
use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::store::Store;
use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::{ActorId, Automerge};
use hamlet_sync_core::{AnswerKey, AnswerValue, DocumentId, Ledger, Level, NewResponse, fixtures};

const ADMIN_PASSWORD: &str = "quản trị viên 2025";

/// A server with an admin, a viewer, two collectors, a relay, their devices and tokens.
struct World {
    server: Running,
    url: String,
    admin_token: String,
    viewer_token: String,
    /// Device tokens and actor ids by person.
    devices: BTreeMap<&'static str, (String, String, ActorId)>,
}

fn campaign() -> String {
    fixtures::campaign().id.to_string()
}

impl World {
    async fn new(url: &str) -> World {
        World::with(url, &[]).await
    }

    async fn with(url: &str, extra: &[&str]) -> World {
        let store = Store::open(url).await.unwrap();
        let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
        accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
        accounts.set_password("admin", ADMIN_PASSWORD, false).await.unwrap();
        store.close().await;
        let server = start(secure_config(url, extra)).await;
        let mut world = World {
            server,
            url: url.to_owned(),
            admin_token: String::new(),
            viewer_token: String::new(),
            devices: BTreeMap::new(),
        };
        let (cookie, csrf) = world.sign_in("admin", ADMIN_PASSWORD).await;
        let session = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
        let reply = world.post_as(&session, "/api/tokens", r#"{"person":"admin","label":"tests"}"#).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        world.admin_token = reply.json()["token"].as_str().unwrap().to_owned();
        for (id, role) in [("viewer", "viewer"), ("c1", "collector"), ("c2", "collector"), ("relay", "relay")] {
            let body = format!(r#"{{"id":"{id}","display_name":"{id}","role":"{role}"}}"#);
            assert_eq!(world.admin("POST", "/api/people", Some(&body)).await.status, 201);
        }
        let viewer_password = world.admin("GET", "/api/people", None).await;
        assert_eq!(viewer_password.status, 200);
        let reply = world.admin("POST", "/api/tokens", Some(r#"{"person":"viewer","label":"reports"}"#)).await;
        world.viewer_token = reply.json()["token"].as_str().unwrap().to_owned();
        // The campaign the collectors are assigned to, a draft: assignments name its hamlets.
        let units = hamlet_server::district::catalog::units_csv(fixtures::unit_tree().units());
        let auth = format!("Bearer {}", world.admin_token);
        let csv = [("Authorization", auth.as_str()), ("Content-Type", "text/csv")];
        assert_eq!(world.server.request("POST", "/api/units", &csv, Some(&units)).await.status, 200);
        let draft = serde_json::to_string(&fixtures::campaign()).unwrap();
        let created = world.admin("POST", "/api/campaigns", Some(&draft)).await;
        assert_eq!(created.status, 201, "{created:?}");
        for (person, hamlets) in
            [("c1", vec!["thon-dong"]), ("c2", vec!["thon-tay"]), ("relay", vec!["thon-dong", "thon-tay"])]
        {
            let body = serde_json::json!({ "campaign": campaign(), "hamlets": hamlets }).to_string();
            let reply = world.admin("PUT", &format!("/api/people/{person}/assignments"), Some(&body)).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            let actor = ActorId::random();
            let (token, device) = world.enroll(person, &actor).await;
            world.devices.insert(person, (token, device, actor));
        }
        world
    }

    async fn sign_in(&self, name: &str, password: &str) -> (String, String) {
        let body = serde_json::json!({ "name": name, "password": password }).to_string();
        let reply = self.server.request("POST", "/api/session", &[], Some(&body)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let cookie = format!("hamlet_session={}", reply.cookie("hamlet_session").expect("session cookie"));
        (cookie, reply.json()["csrf"].as_str().unwrap().to_owned())
    }

    async fn post_as(&self, headers: &[(&str, &str)], path: &str, body: &str) -> Reply {
        self.server.request("POST", path, headers, Some(body)).await
    }

    async fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let auth = format!("Bearer {}", self.admin_token);
        self.server.request(method, path, &[("Authorization", &auth)], body).await
    }

    /// Issues a code for `person` and enrolls a device writing as `actor`: (token, device id).
    async fn enroll(&self, person: &str, actor: &ActorId) -> (String, String) {
        let code = self.admin("POST", &format!("/api/people/{person}/enrollment-codes"), Some("{}")).await;
        assert_eq!(code.status, 200, "{code:?}");
        let code = code.json();
        assert!(
            code["qr_svg"].as_str().unwrap().starts_with("<?xml") || code["qr_svg"].as_str().unwrap().contains("<svg")
        );
        let body =
            serde_json::json!({ "code": code["code"], "actor_ids": [actor.to_hex_string()], "device_name": "phone" });
        let reply = self.server.request("POST", "/api/enroll", &[], Some(&body.to_string())).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let json = reply.json();
        assert_eq!(json["collector"], person);
        (json["token"].as_str().unwrap().to_owned(), json["device"].as_str().unwrap().to_owned())
    }

    fn token(&self, person: &str) -> &str {
        &self.devices[person].0
    }

    async fn phone(&self, person: &str) -> Client {
        Client::join_with(
            &self.server.url(),
            &format!("peer-{person}-{}", rand_suffix()),
            None,
            Some(self.token(person)),
        )
        .await
    }

    async fn stored_heads(&self, document: DocumentId) -> usize {
        let store = Store::open(&self.url).await.unwrap();
        let chunks = store.load(&document.to_string()).await.unwrap();
        store.close().await;
        let mut doc = Automerge::new();
        for c in chunks {
            doc.load_incremental(&c.data).unwrap();
        }
        doc.get_changes(&[]).len()
    }

    async fn audit_actions(&self) -> Vec<String> {
        let store = Store::open(&self.url).await.unwrap();
        let rows: Vec<(String,)> = match store.pool() {
            hamlet_server::store::PoolRef::Sqlite(p) => {
                sqlx::query_as("SELECT action FROM audit_log ORDER BY id").fetch_all(p).await
            }
            hamlet_server::store::PoolRef::Postgres(p) => {
                sqlx::query_as("SELECT action FROM audit_log ORDER BY id").fetch_all(p).await
            }
        }
        .unwrap();
        store.close().await;
        rows.into_iter().map(|(a,)| a).collect()
    }
}

fn rand_suffix() -> String {
    ActorId::random().to_hex_string()[..8].to_owned()
}

fn ledger_of(hamlet: &str, actor: &ActorId) -> Ledger {
    let campaign = fixtures::open_campaign();
    Ledger::create(&campaign.id, &fixtures::hamlet(hamlet), actor.clone())
}

fn record(ledger: &mut Ledger, id: &str) {
    let campaign = fixtures::open_campaign();
    let key = AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"));
    let response = NewResponse {
        id: id.parse().unwrap(),
        collector: "c1".parse().unwrap(),
        answers: BTreeMap::from([(key, AnswerValue::Level(Level::TinNhiem))]),
    };
    ledger.record(&campaign, &response, "2025-06-02".parse().unwrap()).unwrap();
}

/// Every endpoint × every role (and anonymous): allowed or refused as the rules say.
#[tokio::test]
async fn every_endpoint_answers_each_role_as_the_rules_say() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let (cookie, csrf) = world.sign_in("admin", ADMIN_PASSWORD).await;
        let bearer = |t: &str| format!("Bearer {t}");
        let roles: Vec<(&str, Vec<(String, String)>)> = vec![
            ("anonymous", vec![]),
            ("admin-token", vec![("Authorization".into(), bearer(&world.admin_token))]),
            ("admin-session", vec![("Cookie".into(), cookie.clone()), ("X-CSRF-Token".into(), csrf.clone())]),
            ("viewer", vec![("Authorization".into(), bearer(&world.viewer_token))]),
            ("collector", vec![("Authorization".into(), bearer(world.token("c1")))]),
            ("relay", vec![("Authorization".into(), bearer(world.token("relay")))]),
        ];
        // (method, path, body, expected status for each role above, in order)
        let table: Vec<(&str, &str, Option<&str>, [u16; 6])> = vec![
            ("GET", "/healthz", None, [200, 200, 200, 200, 200, 200]),
            ("GET", "/api/openapi.json", None, [200, 200, 200, 200, 200, 200]),
            ("POST", "/api/people/nobody/sign-out-everywhere", None, [401, 404, 404, 403, 403, 403]),
            ("GET", "/api/me", None, [401, 200, 200, 200, 200, 200]),
            ("GET", "/api/people", None, [401, 200, 200, 403, 403, 403]),
            (
                "POST",
                "/api/people",
                Some(r#"{"id":"new-ROLE","display_name":"x","role":"collector"}"#),
                [401, 201, 201, 403, 403, 403],
            ),
            (
                "PUT",
                "/api/people/c2/assignments",
                Some(r#"{"campaign":"tin-nhiem-2025","hamlets":["thon-tay"]}"#),
                [401, 200, 200, 403, 403, 403],
            ),
            ("POST", "/api/people/c2/enrollment-codes", Some("{}"), [401, 200, 200, 403, 403, 403]),
            ("GET", "/api/devices", None, [401, 200, 200, 403, 403, 403]),
            ("POST", "/api/tokens", Some(r#"{"person":"viewer","label":"x"}"#), [401, 201, 201, 403, 403, 403]),
            ("DELETE", "/api/tokens/tok-none", None, [401, 404, 404, 403, 403, 403]),
            ("POST", "/api/devices/dev-none/revoke", None, [401, 404, 404, 403, 403, 403]),
            ("GET", "/admin/people", None, [303, 200, 200, 403, 403, 403]),
            ("GET", "/admin/devices", None, [303, 200, 200, 403, 403, 403]),
            ("GET", "/api/device/assignments", None, [401, 403, 403, 403, 200, 200]),
            ("POST", "/api/device/actors", Some(r#"{"actor_ids":["ROLEab"]}"#), [401, 403, 403, 403, 204, 204]),
            (
                "POST",
                "/api/enroll",
                Some(r#"{"code":"WRONG-CODE1","actor_ids":["ab"]}"#),
                [401, 401, 401, 401, 401, 401],
            ),
            ("GET", "/password", None, [303, 200, 200, 200, 403, 403]),
        ];
        for (method, path, body, expected) in &table {
            for ((role, headers), want) in roles.iter().zip(expected) {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let suffix = rand_suffix();
                let body = body.map(|b| b.replace("ROLE", &suffix));
                let reply = world.server.request(method, path, &headers, body.as_deref()).await;
                assert_eq!(reply.status, *want, "{} {method} {path} as {role}: {}", db.name, reply.body);
                if reply.status >= 400 && path.starts_with("/api/") {
                    let json = reply.json();
                    assert!(json["code"].is_string() && json["message"].is_string(), "JSON error: {}", reply.body);
                }
            }
        }
        world.server.stop().await;
    }
}

#[tokio::test]
async fn a_cookie_session_needs_its_csrf_token_to_change_anything() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let (cookie, csrf) = world.sign_in("admin", ADMIN_PASSWORD).await;
        let body = r#"{"person":"viewer","label":"x"}"#;
        let without = world.post_as(&[("Cookie", &cookie)], "/api/tokens", body).await;
        assert_eq!((without.status, without.json()["code"].as_str()), (403, Some("csrf")));
        let wrong = world.post_as(&[("Cookie", &cookie), ("X-CSRF-Token", "nope")], "/api/tokens", body).await;
        assert_eq!(wrong.status, 403);
        let right = world.post_as(&[("Cookie", &cookie), ("X-CSRF-Token", &csrf)], "/api/tokens", body).await;
        assert_eq!(right.status, 201);
        // Forms carry it as a field.
        let form = [("Cookie", cookie.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
        let device = &world.devices["c2"].1;
        let reply = world.post_as(&form, &format!("/admin/devices/{device}/revoke"), "csrf=wrong").await;
        assert_eq!(reply.status, 403);
        let reply =
            world.post_as(&form, &format!("/admin/devices/{device}/revoke"), &format!("csrf={csrf}&confirm=yes")).await;
        assert_eq!(reply.status, 303, "{reply:?}");
        // The people page adds a collector with hamlets, then issues a code shown as text and QR.
        let body = format!(
            "csrf={csrf}&id=chi-lan&display_name=Ch%E1%BB%8B+Lan&role=collector&campaign=tin-nhiem-2025&hamlets=thon-dong%2C+thon-tay"
        );
        let reply = world.post_as(&form, "/admin/people", &body).await;
        assert_eq!(reply.status, 303, "{reply:?}");
        let typo = format!(
            "csrf={csrf}&id=chi-mai&display_name=Mai&role=collector&campaign=tin-nhiem-2025&hamlets=th%C3%B4n+3"
        );
        assert_eq!(world.post_as(&form, "/admin/people", &typo).await.status, 400);
        let page = world.server.request("GET", "/admin/people", &[("Cookie", &cookie)], None).await;
        assert!(!page.body.contains("chi-mai"), "a refused form creates nobody");
        assert!(page.body.contains("chi-lan") && page.body.contains("tin-nhiem-2025/thon-tay"), "{}", page.body);
        let reply = world.post_as(&form, "/admin/people/chi-lan/enroll", &format!("csrf={csrf}")).await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.contains("<svg") && reply.body.contains("<code>"), "{}", reply.body);
        // Signing out ends the session.
        let reply = world.post_as(&[("Cookie", &cookie)], "/logout", "").await;
        assert_eq!(reply.status, 303);
        let after = world.server.request("GET", "/api/me", &[("Cookie", &cookie)], None).await;
        assert_eq!(after.status, 401);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn brute_force_sign_in_is_slowed() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        for _ in 0..10 {
            let body = r#"{"name":"admin","password":"guess"}"#;
            assert_eq!(world.server.request("POST", "/api/session", &[], Some(body)).await.status, 401);
        }
        // The right password is refused too while the account is locked, with a time to wait.
        let body = serde_json::json!({ "name": "admin", "password": ADMIN_PASSWORD }).to_string();
        let reply = world.server.request("POST", "/api/session", &[], Some(&body)).await;
        assert_eq!(reply.status, 429, "{reply:?}");
        let wait: u64 = reply.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!(wait > 0 && wait <= 600);
        // The HTML form says so in words.
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let reply = world.server.request("POST", "/login", &form, Some("name=admin&password=guess")).await;
        assert_eq!(reply.status, 429);
        assert!(reply.body.contains("Quá nhiều lần thử sai"), "{}", reply.body);
        assert!(world.audit_actions().await.iter().filter(|a| *a == "sign-in.failed").count() >= 10);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn enrollment_codes_are_single_use_and_expire() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let code = world.admin("POST", "/api/people/c2/enrollment-codes", Some("{}")).await.json();
        let enroll = |actor: &str| serde_json::json!({ "code": code["code"], "actor_ids": [actor] }).to_string();
        let first = world.server.request("POST", "/api/enroll", &[], Some(&enroll("aa01"))).await;
        assert_eq!(first.status, 200);
        let json = first.json();
        assert_eq!(json["campaigns"][0]["campaign"], campaign());
        assert_eq!(json["campaigns"][0]["hamlets"], serde_json::json!(["thon-tay"]));
        assert!(json["token"].as_str().unwrap().len() >= 64, "at least 256 bits");
        let again = world.server.request("POST", "/api/enroll", &[], Some(&enroll("aa02"))).await;
        assert_eq!((again.status, again.json()["code"].as_str()), (410, Some("used_code")));

        let code = world.admin("POST", "/api/people/c2/enrollment-codes", Some("{}")).await.json();
        let store = Store::open(&world.url).await.unwrap();
        match store.pool() {
            hamlet_server::store::PoolRef::Sqlite(p) => {
                sqlx::query("UPDATE enrollment_codes SET expires_at = 0 WHERE used_at IS NULL")
                    .execute(p)
                    .await
                    .map(drop)
            }
            hamlet_server::store::PoolRef::Postgres(p) => {
                sqlx::query("UPDATE enrollment_codes SET expires_at = 0 WHERE used_at IS NULL")
                    .execute(p)
                    .await
                    .map(drop)
            }
        }
        .unwrap();
        store.close().await;
        let body = serde_json::json!({ "code": code["code"], "actor_ids": ["aa03"] }).to_string();
        let expired = world.server.request("POST", "/api/enroll", &[], Some(&body)).await;
        assert_eq!((expired.status, expired.json()["code"].as_str()), (410, Some("expired_code")));
        // An actor id enrolled to another device is refused.
        let code = world.admin("POST", "/api/people/c2/enrollment-codes", Some("{}")).await.json();
        let body = serde_json::json!({ "code": code["code"], "actor_ids": ["aa01"] }).to_string();
        assert_eq!(world.server.request("POST", "/api/enroll", &[], Some(&body)).await.status, 409);
        world.server.stop().await;
    }
}

#[tokio::test]
async fn guessing_enrollment_codes_is_slowed_per_address() {
    let dbs = support::databases().await;
    let world = World::new(dbs[0].url()).await;
    let guesser: std::net::IpAddr = [127, 0, 0, 2].into();
    for i in 0..10 {
        let body = format!(r#"{{"code":"GUESS-{i:05}","actor_ids":["ab"]}}"#);
        assert_eq!(request_from(guesser, world.server.addr, "POST", "/api/enroll", &[], &body).await, 401);
    }
    let last = r#"{"code":"GUESS-LAST","actor_ids":["ab"]}"#;
    assert_eq!(request_from(guesser, world.server.addr, "POST", "/api/enroll", &[], last).await, 429);
    // Another address is not slowed by the guesser (a global limit would lock every phone out).
    let reply = world.server.request("POST", "/api/enroll", &[], Some(last)).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    for _ in 0..9 {
        world.server.request("POST", "/api/enroll", &[], Some(last)).await;
    }
    let reply = world.server.request("POST", "/api/enroll", &[], Some(last)).await;
    assert_eq!(reply.status, 429);
    assert!(reply.header("retry-after").is_some());
    world.server.stop().await;
}

#[tokio::test]
async fn syncing_needs_a_token_and_stays_inside_the_assigned_hamlets() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        assert_eq!(Client::connect_with(&world.server.url(), "anon", None).await.err(), Some(401));
        assert_eq!(Client::connect_with(&world.server.url(), "anon", Some("not-a-token")).await.err(), Some(401));

        // c1 writes its own hamlet's ledger.
        let c1_actor = world.devices["c1"].2.clone();
        let mut dong = ledger_of("thon-dong", &c1_actor);
        record(&mut dong, "r-1");
        let mut phone = world.phone("c1").await;
        let mut doc = dong.doc().clone();
        phone.sync(dong.id(), &mut doc, &mut sync::State::new()).await;
        assert_eq!(world.stored_heads(dong.id()).await, 2, "skeleton and response stored");

        // Another hamlet's ledger is unavailable, for reading and for writing.
        let mut tay = ledger_of("thon-tay", &c1_actor);
        record(&mut tay, "r-2");
        let err = phone.sync_with(tay.id(), &mut Automerge::new(), &mut sync::State::new(), true).await.unwrap_err();
        assert!(err.starts_with("DocUnavailable"), "{err}");
        let err = phone.sync_with(tay.id(), &mut tay.doc().clone(), &mut sync::State::new(), false).await.unwrap_err();
        assert!(err.starts_with("DocUnavailable"), "{err}");
        assert_eq!(world.stored_heads(tay.id()).await, 0, "nothing stored");

        // A change by an actor enrolled nowhere is refused whole: nothing of the message stays.
        let mut forged = Ledger::load(&dong.doc().save(), ActorId::random()).unwrap();
        record(&mut forged, "r-forged");
        let mut forged_doc = forged.doc().clone();
        let err = phone.sync_with(dong.id(), &mut forged_doc, &mut sync::State::new(), false).await.unwrap_err();
        assert!(err.contains("changes refused") && err.contains("not from a device assigned"), "{err}");
        assert_eq!(world.stored_heads(dong.id()).await, 2);

        // c2's actor is enrolled, but for thon-tay: its change to thon-dong is refused even when
        // c1's phone carries it.
        let mut foreign = Ledger::load(&dong.doc().save(), world.devices["c2"].2.clone()).unwrap();
        record(&mut foreign, "r-foreign");
        let mut phone = world.phone("c1").await;
        let err =
            phone.sync_with(dong.id(), &mut foreign.doc().clone(), &mut sync::State::new(), false).await.unwrap_err();
        assert!(err.contains("changes refused"), "{err}");
        assert_eq!(world.stored_heads(dong.id()).await, 2);

        // A relay of both hamlets passes on c1's later change: accepted, it is c1's.
        record(&mut dong, "r-3");
        let mut relay = world.phone("relay").await;
        relay.sync(dong.id(), &mut dong.doc().clone(), &mut sync::State::new()).await;
        assert_eq!(world.stored_heads(dong.id()).await, 3);

        // A colleague's ledger that exists: c2 stores thon-tay, and c1 still cannot read it — it
        // hears exactly what it hears of a ledger nobody stored, so a refusal reveals nothing.
        let c2_actor = world.devices["c2"].2.clone();
        let mut theirs = ledger_of("thon-tay", &c2_actor);
        record(&mut theirs, "t-1");
        let mut c2 = world.phone("c2").await;
        c2.sync(theirs.id(), &mut theirs.doc().clone(), &mut sync::State::new()).await;
        assert_eq!(world.stored_heads(theirs.id()).await, 2, "c2's ledger is stored");
        let mut c1 = world.phone("c1").await;
        let mut read = Automerge::new();
        let err = c1.sync_with(theirs.id(), &mut read, &mut sync::State::new(), true).await.unwrap_err();
        assert!(err.starts_with("DocUnavailable"), "{err}");
        assert!(read.get_heads().is_empty(), "nothing of c2's ledger reached c1");

        // A revoked device's change, carried by a relay assigned to its hamlet, is refused.
        record(&mut theirs, "t-2");
        let device = world.devices["c2"].1.clone();
        assert_eq!(world.admin("POST", &format!("/api/devices/{device}/revoke"), None).await.status, 204);
        let mut relay = world.phone("relay").await;
        let err =
            relay.sync_with(theirs.id(), &mut theirs.doc().clone(), &mut sync::State::new(), false).await.unwrap_err();
        assert!(err.contains("changes refused"), "{err}");
        assert_eq!(world.stored_heads(theirs.id()).await, 2, "the revoked device's change is not stored");

        // The campaign document is read-only for devices.
        let campaign_doc = DocumentId::for_campaign(&fixtures::campaign().id);
        let mut written = Automerge::new();
        written
            .transact::<_, _, hamlet_sync_core::automerge::AutomergeError>(|tx| {
                use hamlet_sync_core::automerge::transaction::Transactable;
                tx.put(hamlet_sync_core::automerge::ROOT, "schema", "hamlet-campaign/1")
            })
            .map_err(|f| f.error)
            .unwrap();
        let before = world.stored_heads(campaign_doc).await;
        let err = relay.sync_with(campaign_doc, &mut written, &mut sync::State::new(), false).await.unwrap_err();
        assert!(err.contains("read-only"), "{err}");
        assert_eq!(world.stored_heads(campaign_doc).await, before, "the district's campaign document, unchanged");

        let actions = world.audit_actions().await;
        assert!(actions.iter().filter(|a| *a == "sync.refused").count() >= 3, "{actions:?}");
        assert!(actions.iter().any(|a| a == "document.denied"), "{actions:?}");
        world.server.stop().await;
    }
}

#[tokio::test]
async fn a_revoked_device_is_disconnected_and_cannot_reconnect() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let mut phone = world.phone("c1").await;
        let device = world.devices["c1"].1.clone();
        let reply = world.admin("POST", &format!("/api/devices/{device}/revoke"), None).await;
        assert_eq!(reply.status, 204);
        assert!(phone.closed().await, "the open connection is closed");
        let again = Client::connect_with(&world.server.url(), "again", Some(world.token("c1"))).await;
        assert_eq!(again.err(), Some(401));
        let listed = world.admin("GET", "/api/devices", None).await.json();
        let entry = listed.as_array().unwrap().iter().find(|d| d["id"] == device.as_str()).unwrap().clone();
        assert!(entry["revoked_at"].is_i64());
        assert!(entry["last_sync_at"].is_i64(), "the sync time was recorded: {entry}");
        world.server.stop().await;
    }
}

#[tokio::test]
async fn a_staff_session_cannot_sync() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let c1_actor = world.devices["c1"].2.clone();
        let mut dong = ledger_of("thon-dong", &c1_actor);
        record(&mut dong, "r-1");
        world.phone("c1").await.sync(dong.id(), &mut dong.doc().clone(), &mut sync::State::new()).await;

        // Staff read results on the dashboard (small groups hidden, reads audited); a session
        // cookie does not open the raw ledgers, as a browser would send it.
        let (cookie, _) = world.sign_in("admin", ADMIN_PASSWORD).await;
        let refused = Client::connect_headers(&world.server.url(), "staff-browser", &[("Cookie", &cookie)]).await;
        assert_eq!(refused.err(), Some(403), "a staff session is refused on /sync");
        world.server.stop().await;
    }
}

#[test]
fn role_names_round_trip_and_only_staff_sign_in() {
    // Role names are what the API and the database store.
    for role in [Role::Admin, Role::Viewer, Role::Collector, Role::Relay] {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }
    assert!(Role::Admin.is_staff() && Role::Viewer.is_staff());
    assert!(!Role::Collector.is_staff() && !Role::Relay.is_staff());
}

#[tokio::test]
async fn a_device_over_its_message_rate_is_cut_off_and_large_bodies_are_refused() {
    let dbs = support::databases().await;
    let world = World::with(dbs[0].url(), &["--device-messages-per-second", "1"]).await;
    let mut phone = world.phone("c1").await;
    let ledger = ledger_of("thon-dong", &world.devices["c1"].2);
    let mut refused = None;
    for _ in 0..40 {
        let message = ledger.doc().generate_sync_message(&mut sync::State::new()).unwrap().encode();
        phone.send(&hamlet_sync_core::wire::Message::Sync(phone.doc_message(ledger.id(), message))).await;
    }
    while let Some(message) = phone.recv().await {
        if let hamlet_sync_core::wire::Message::Error { message, .. } = message {
            refused = Some(message);
            break;
        }
    }
    assert!(refused.as_deref().is_some_and(|m| m.contains("too many messages")), "{refused:?}");
    assert!(phone.closed().await);

    let big = format!(r#"{{"code":"{}","actor_ids":["ab"]}}"#, "x".repeat(3 << 20));
    let reply = world.server.request("POST", "/api/enroll", &[], Some(&big)).await;
    assert_eq!(reply.status, 413);
    world.server.stop().await;
}

/// A phone tells its clock when it connects to sync (`Hamlet-Device-Time`, unix milliseconds):
/// the server keeps, per device, how far it is from its own, and the devices page flags a
/// device more than a day off, ahead or behind (its responses would be dated wrongly).
#[tokio::test]
async fn a_device_whose_clock_is_days_off_is_flagged_on_the_devices_page() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let day = 86_400_000i64;
        for (person, clock) in [("c1", Some(now + 3 * day)), ("c2", Some(now - 2 * day)), ("relay", Some(now))] {
            let auth = format!("Bearer {}", world.token(person));
            let clock = clock.map(|c| c.to_string());
            let mut headers = vec![("Authorization", auth.as_str())];
            if let Some(c) = &clock {
                headers.push(("Hamlet-Device-Time", c.as_str()));
            }
            let phone = Client::connect_headers(&world.server.url(), &format!("peer-{person}"), &headers).await;
            assert!(phone.is_ok(), "{person} connects");
        }
        let listed = world.admin("GET", "/api/devices", None).await;
        assert_eq!(listed.status, 200, "{listed:?}");
        let listed = listed.json();
        let offset = |person: &str| {
            let device = &world.devices[person].1;
            listed.as_array().unwrap().iter().find(|d| d["id"] == device.as_str()).unwrap()["clock_offset_ms"].as_i64()
        };
        let near = |got: Option<i64>, want: i64| got.is_some_and(|g| (g - want).abs() < 60_000);
        assert!(near(offset("c1"), 3 * day), "{listed}");
        assert!(near(offset("c2"), -2 * day), "{listed}");
        assert!(near(offset("relay"), 0), "{listed}");

        let auth = format!("Bearer {}", world.admin_token);
        let page = world
            .server
            .request("GET", "/admin/devices", &[("Authorization", &auth), ("Accept-Language", "en")], None)
            .await;
        assert_eq!(page.status, 200);
        let row = |person: &str| {
            let device = &world.devices[person].1;
            page.body.split("<tr>").find(|r| r.contains(device.as_str())).unwrap_or_default().to_owned()
        };
        assert!(row("c1").contains("clock 3 days ahead of the server"), "{}", row("c1"));
        assert!(row("c2").contains("clock 2 days behind the server"), "{}", row("c2"));
        assert!(!row("relay").contains("clock"), "{}", row("relay"));
        world.server.stop().await;
    }
}

/// Who a route is for, as the rules say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum For {
    /// Anyone (what it answers is the route's own business: a wrong enrollment code is a 401).
    Anyone,
    /// Anyone signed in: staff or device.
    SignedIn,
    /// Admins and viewers.
    Staff,
    /// Admins.
    Admin,
    /// Enrolled devices: collectors and relays.
    Device,
    /// A relay's device only.
    Relay,
}

/// The rule of every route. The test below reads the routes from the server's source, so a
/// route added without a rule here fails it, as does a rule for a route that is gone.
const RULES: &[(&str, &str, For)] = &[
    ("GET", "/sync", For::Anyone),
    ("GET", "/healthz", For::Anyone),
    ("GET", "/readyz", For::Anyone),
    ("GET", "/metrics", For::Anyone),
    ("GET", "/api/openapi.json", For::Anyone),
    ("GET", "/login", For::Anyone),
    ("POST", "/login", For::Anyone),
    ("POST", "/logout", For::Anyone),
    ("POST", "/api/session", For::Anyone),
    ("POST", "/api/enroll", For::Anyone),
    ("GET", "/api/me", For::SignedIn),
    ("GET", "/password", For::Staff),
    ("POST", "/password", For::Staff),
    ("POST", "/api/device/actors", For::Device),
    ("GET", "/api/device/assignments", For::Device),
    ("POST", "/api/device/token", For::Device),
    ("GET", "/api/relay/feed", For::Relay),
    ("GET", "/api/people", For::Admin),
    ("POST", "/api/people", For::Admin),
    ("PUT", "/api/people/{id}/assignments", For::Admin),
    ("POST", "/api/people/{id}/enrollment-codes", For::Admin),
    ("POST", "/api/people/{id}/sign-out-everywhere", For::Admin),
    ("GET", "/api/devices", For::Admin),
    ("POST", "/api/devices/{id}/revoke", For::Admin),
    ("POST", "/api/tokens", For::Admin),
    ("DELETE", "/api/tokens/{id}", For::Admin),
    ("GET", "/admin/people", For::Admin),
    ("POST", "/admin/people", For::Admin),
    ("POST", "/admin/people/{id}/enroll", For::Admin),
    ("POST", "/admin/people/{id}/sign-out-everywhere", For::Admin),
    ("GET", "/admin/devices", For::Admin),
    ("POST", "/admin/devices/{id}/revoke", For::Admin),
    // The district: staff read and review, admins manage.
    ("GET", "/api/campaigns", For::Staff),
    ("GET", "/api/campaigns/{campaign}", For::Staff),
    ("GET", "/api/campaigns/{campaign}/results", For::Staff),
    ("GET", "/api/campaigns/{campaign}/progress", For::Staff),
    ("GET", "/api/campaigns/{campaign}/comments", For::Staff),
    ("GET", "/api/campaigns/{campaign}/review", For::Staff),
    ("POST", "/api/campaigns/{campaign}/review", For::Staff),
    ("GET", "/api/campaigns/{campaign}/export/{file}", For::Staff),
    ("GET", "/api/units", For::Staff),
    ("POST", "/api/campaigns", For::Admin),
    ("PUT", "/api/campaigns/{campaign}", For::Admin),
    ("POST", "/api/campaigns/{campaign}/open", For::Admin),
    ("POST", "/api/campaigns/{campaign}/close", For::Admin),
    ("POST", "/api/campaigns/{campaign}/publish", For::Admin),
    ("POST", "/api/campaigns/{campaign}/subjects", For::Admin),
    ("POST", "/api/campaigns/{campaign}/hamlets", For::Admin),
    ("POST", "/api/units", For::Admin),
    ("GET", "/api/audit", For::Admin),
    ("GET", "/", For::Staff),
    ("GET", "/campaigns/{campaign}", For::Staff),
    ("GET", "/campaigns/{campaign}/results", For::Staff),
    ("GET", "/campaigns/{campaign}/results/{subject}", For::Staff),
    ("GET", "/campaigns/{campaign}/hamlets/{hamlet}", For::Staff),
    ("GET", "/campaigns/{campaign}/comments", For::Staff),
    ("GET", "/campaigns/{campaign}/review", For::Staff),
    ("POST", "/campaigns/{campaign}/review", For::Staff),
    ("GET", "/campaigns/{campaign}/devices", For::Staff),
    ("GET", "/admin/audit", For::Admin),
    ("GET", "/admin/campaigns", For::Admin),
    ("POST", "/admin/campaigns", For::Admin),
    ("GET", "/admin/campaigns/{campaign}", For::Admin),
    ("POST", "/admin/campaigns/{campaign}", For::Admin),
    ("POST", "/admin/campaigns/{campaign}/subjects", For::Admin),
    ("POST", "/admin/campaigns/{campaign}/hamlets", For::Admin),
    ("POST", "/admin/campaigns/{campaign}/state", For::Admin),
    ("GET", "/admin/units", For::Admin),
    ("POST", "/admin/units", For::Admin),
];

/// Every route the server's web layer declares, as (method, path): the `.route("…", get(…)
/// .post(…))` calls and the `#[utoipa::path(method, path = "…")]` descriptions that
/// `routes!` routes, read from the source under `server/src/web`.
fn declared_routes() -> std::collections::BTreeSet<(String, String)> {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    /// The text inside the parenthesis opened just before `from`.
    fn inside(text: &str, from: usize) -> &str {
        let mut depth = 1;
        for (i, c) in text[from..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 1 => return &text[from..from + i],
                ')' => depth -= 1,
                _ => {}
            }
        }
        &text[from..]
    }
    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];
    let mut sources = Vec::new();
    files(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web"), &mut sources);
    let mut routes = std::collections::BTreeSet::new();
    for file in sources {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices(".route(\"") {
            let args = inside(&text, at + ".route(".len());
            let path = args[1..].split('"').next().unwrap().to_owned();
            // The methods called at the top level of the second argument (`get(a).post(b)`).
            let mut depth = 0;
            let mut word = String::new();
            for c in args.chars() {
                match c {
                    '(' => {
                        if depth == 0 && METHODS.contains(&word.as_str()) {
                            routes.insert((word.to_uppercase(), path.clone()));
                        }
                        depth += 1;
                        word.clear();
                    }
                    ')' => depth -= 1,
                    c if c.is_ascii_alphanumeric() || c == '_' => word.push(c),
                    _ => word.clear(),
                }
            }
        }
        for (at, _) in text.match_indices("#[utoipa::path(") {
            let args = inside(&text, at + "#[utoipa::path(".len());
            let method = args.split(',').next().unwrap().trim().to_uppercase();
            let path = args.split("path = \"").nth(1).unwrap().split('"').next().unwrap().to_owned();
            routes.insert((method, path));
        }
    }
    routes
}

/// Every route the server declares has a rule, and answers each role as its rule says:
/// anonymous callers are sent to sign in (401 for the API, a redirect for pages), other roles
/// are refused with 403, allowed ones are let through to the handler (whatever it then says of
/// the made-up ids and bodies sent). Every route that changes something refuses a cookie session
/// without its CSRF token.
#[tokio::test]
async fn every_declared_route_has_a_rule_that_holds_for_every_role() {
    let declared = declared_routes();
    let ruled: std::collections::BTreeSet<(String, String)> =
        RULES.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    let unruled: Vec<_> = declared.difference(&ruled).collect();
    assert!(unruled.is_empty(), "routes without a rule in RULES: {unruled:?}");
    let gone: Vec<_> = ruled.difference(&declared).collect();
    assert!(gone.is_empty(), "rules for routes the server no longer declares: {gone:?}");
    assert!(declared.len() >= 60, "only {} routes read from the source", declared.len());

    let db = support::databases().await.into_iter().next().expect("SQLite");
    let world = World::new(db.url()).await;
    let (cookie, csrf) = world.sign_in("admin", ADMIN_PASSWORD).await;
    let bearer = |t: &str| format!("Bearer {t}");
    // (name, the headers it sends, the rules that let it through)
    type Role<'a> = (&'a str, Vec<(String, String)>, &'a [For]);
    let roles: Vec<Role<'_>> = vec![
        ("anonymous", vec![], &[For::Anyone]),
        (
            "admin-token",
            vec![("Authorization".into(), bearer(&world.admin_token))],
            &[For::Anyone, For::SignedIn, For::Staff, For::Admin],
        ),
        (
            "admin-session",
            vec![("Cookie".into(), cookie.clone()), ("X-CSRF-Token".into(), csrf.clone())],
            &[For::Anyone, For::SignedIn, For::Staff, For::Admin],
        ),
        (
            "viewer",
            vec![("Authorization".into(), bearer(&world.viewer_token))],
            &[For::Anyone, For::SignedIn, For::Staff],
        ),
        (
            "collector",
            vec![("Authorization".into(), bearer(world.token("c1")))],
            &[For::Anyone, For::SignedIn, For::Device],
        ),
        (
            "relay",
            vec![("Authorization".into(), bearer(world.token("relay")))],
            &[For::Anyone, For::SignedIn, For::Device, For::Relay],
        ),
    ];
    // Made-up ids: an allowed caller reaches the handler, which finds nothing.
    let concrete = |path: &str| {
        path.replace("{campaign}", "no-such-campaign")
            .replace("{subject}", "nobody")
            .replace("{hamlet}", "no-hamlet")
            .replace("{file}", "results.csv")
            .replace("{id}", "nobody")
    };
    // Rotating a device's token ends the one the table uses: that route goes last.
    let mut rules: Vec<_> = RULES.iter().filter(|(_, _, rule)| *rule != For::Anyone).collect();
    rules.sort_by_key(|(_, path, _)| *path == "/api/device/token");
    let mut checked = 0;
    for (method, path, rule) in rules {
        let path = concrete(path);
        let page = !path.starts_with("/api/");
        let content_type = if page { "application/x-www-form-urlencoded" } else { "application/json" };
        let body = if *method == "GET" {
            None
        } else if page {
            Some("x=1")
        } else {
            Some("{}")
        };
        for (role, headers, allowed) in &roles {
            let mut headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            headers.push(("Content-Type", content_type));
            if page {
                headers.push(("Accept", "text/html"));
            }
            let reply = world.server.request(method, &path, &headers, body).await;
            let here = format!("{method} {path} as {role} ({rule:?}): {} {}", reply.status, reply.body);
            let to_sign_in = reply.status == 303 && reply.header("location").is_some_and(|l| l.starts_with("/login"));
            if allowed.contains(rule) {
                assert!(![401, 403].contains(&reply.status) && !to_sign_in, "refused: {here}");
                assert_ne!(reply.status, 405, "not routed: {here}");
            } else if *role == "anonymous" {
                let expected = if page { to_sign_in } else { reply.status == 401 };
                assert!(expected, "anonymous not sent to sign in: {here}");
            } else {
                assert_eq!(reply.status, 403, "not refused: {here}");
            }
            checked += 1;
        }
        // A cookie session without its CSRF token changes nothing.
        if *method != "GET" && [For::SignedIn, For::Staff, For::Admin].contains(rule) {
            let headers = [("Cookie", cookie.as_str()), ("Content-Type", content_type)];
            let reply = world.server.request(method, &path, &headers, body).await;
            assert_eq!(reply.status, 403, "{method} {path} without the CSRF token: {}", reply.body);
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked} cells checked");
    world.server.stop().await;
}

/// An assignment names a campaign that exists and hamlets of its scope, from the people page
/// and the API alike: a typo, a hamlet outside the campaign, hamlets without a campaign and an
/// unknown campaign are refused with the reason (a page for the form, in its language) and
/// create or change nothing.
#[tokio::test]
async fn assignments_name_a_campaign_and_hamlets_of_its_scope() {
    for db in support::databases().await {
        let world = World::new(db.url()).await;
        let (cookie, csrf) = world.sign_in("admin", ADMIN_PASSWORD).await;
        let form = [("Cookie", cookie.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
        for (campaign, hamlets, said) in [
            ("tin-nhiem-2025", "thon-dongg", "Không thuộc đợt tin-nhiem-2025: thon-dongg"),
            ("tin-nhiem-2025", "thon-dong%2C+xa-a", "Không thuộc đợt tin-nhiem-2025: xa-a"),
            ("", "thon-dong", "Hãy chọn đợt lấy ý kiến"),
            ("tin-nhiem-2099", "thon-dong", "Không có đợt lấy ý kiến nào mã &quot;tin-nhiem-2099&quot;"),
        ] {
            let body =
                format!("csrf={csrf}&id=chi-mai&display_name=Mai&role=collector&campaign={campaign}&hamlets={hamlets}");
            let reply = world.post_as(&form, "/admin/people", &body).await;
            assert_eq!(reply.status, 400, "{}: {campaign} {hamlets}: {reply:?}", db.name);
            assert!(reply.header("content-type").unwrap().starts_with("text/html"), "{}: a page, not JSON", db.name);
            assert!(reply.body.contains(said), "{}: {said}: {}", db.name, reply.body);
            assert!(!reply.body.contains("<td>chi-mai</td>"), "{}: nobody was created", db.name);
        }
        // The people page still creates a collector of the campaign's hamlets, and a viewer.
        let body =
            format!("csrf={csrf}&id=chi-mai&display_name=Mai&role=collector&campaign=tin-nhiem-2025&hamlets=thon-tay");
        assert_eq!(world.post_as(&form, "/admin/people", &body).await.status, 303, "{}", db.name);

        let path = "/api/people/c1/assignments";
        let typo = serde_json::json!({ "campaign": campaign(), "hamlets": ["thon-dongg"] }).to_string();
        let refused = world.admin("PUT", path, Some(&typo)).await;
        assert_eq!((refused.status, refused.json()["code"].as_str()), (400, Some("invalid_assignment")), "{}", db.name);
        assert!(refused.json()["message"].as_str().unwrap().contains("thon-dongg"), "{refused:?}");
        let page = world.server.request("GET", "/admin/people", &[("Cookie", &cookie)], None).await;
        assert!(
            page.body.contains("<td>c1</td><td>c1</td><td>collector</td><td>tin-nhiem-2025/thon-dong</td>"),
            "{}",
            db.name
        );
        assert!(!page.body.contains("thon-dongg"), "{}: c1's assignment unchanged", db.name);
        world.server.stop().await;
    }
}
