//! The commune-office relay end to end, with real processes: a district (`hamlet-server serve`)
//! and a relay (`hamlet-server relay`) on SQLite folders, phones speaking the protocol over real
//! sockets with their district tokens.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod pki;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use client::{Client, http, server_command};
use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::district::catalog;
use hamlet_server::store::{PoolRef, Store};
use hamlet_sync_core::automerge::{ActorId, sync};
use hamlet_sync_core::{
    AnswerKey, AnswerValue, Campaign, CampaignState, Day, DocumentId, Ledger, Level, NewResponse, fixtures,
};

fn open_campaign() -> Campaign {
    let mut c = fixtures::campaign();
    c.state = CampaignState::Open;
    c
}

/// Records and seals `n` responses rating every subject `level`.
fn seal_all(ledger: &mut Ledger, prefix: &str, n: usize, level: Level, by: &str) {
    let campaign = open_campaign();
    let day: Day = "2025-06-03".parse().unwrap();
    for i in 0..n {
        let answers = campaign
            .subjects
            .iter()
            .map(|s| (AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()), AnswerValue::Level(level)))
            .collect::<BTreeMap<_, _>>();
        let id: hamlet_sync_core::ResponseId = format!("{prefix}-{i}").parse().unwrap();
        let response = NewResponse { id: id.clone(), collector: by.parse().unwrap(), answers };
        ledger.record(&campaign, &response, day).unwrap();
        ledger.submit(&campaign, &id, &by.parse().unwrap(), day).unwrap();
    }
}

/// A `hamlet-server` child process; killed (SIGKILL) when dropped.
struct Child {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Child {
    /// Runs `hamlet-server args` and waits for the address it prints first.
    fn spawn(args: &[&str]) -> Child {
        let mut child = server_command()
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the server starts");
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).expect("it prints its address");
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Child { child, addr }
    }

    fn sync_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    /// SIGKILL: nothing flushed, nothing said.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn district(dir: &Path, port: u16) -> Child {
    let listen = format!("127.0.0.1:{port}");
    Child::spawn(&["serve", "--listen", &listen, "--data-dir", dir.to_str().unwrap()])
}

fn relay(dir: &Path) -> Child {
    relay_every(dir, 1)
}

/// A relay whose uplink passes every `seconds` when no phone nudges it.
fn relay_every(dir: &Path, seconds: u64) -> Child {
    let seconds = seconds.to_string();
    Child::spawn(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.to_str().unwrap(),
        "--uplink-seconds",
        &seconds,
    ])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` every 100 ms until it gives a value, for at most `within` (no event tells a
/// test that another process has done something).
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    check: impl Fn() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submitted responses the district counts for `hamlet`, and its counted "ong-an" ratings.
async fn district_counts(url: &str, hamlet: &str) -> (i64, i64) {
    let store = Store::open(url).await.unwrap();
    const HAMLET: &str = "SELECT submitted FROM hamlet_counts WHERE hamlet_id = $1";
    const LEVELS: &str =
        "SELECT COALESCE(SUM(from_responses), 0) FROM level_counts WHERE hamlet_id = $1 AND subject_id = 'ong-an'";
    let (submitted, rated): (Option<i64>, i64) = match store.pool() {
        PoolRef::Sqlite(p) => (
            sqlx::query_scalar(HAMLET).bind(hamlet).fetch_optional(p).await.unwrap(),
            sqlx::query_scalar(LEVELS).bind(hamlet).fetch_one(p).await.unwrap(),
        ),
        PoolRef::Postgres(_) => unreachable!("the district runs on SQLite here"),
    };
    store.close().await;
    (submitted.unwrap_or(0), rated)
}

/// Imports the example units and opens the example campaign at the district.
async fn open_the_campaign(district: SocketAddr, admin: &str) {
    let units = catalog::units_csv(fixtures::unit_tree().units());
    let csv = [("Authorization", admin), ("Content-Type", "text/csv")];
    assert_eq!(http(district, "POST", "/api/units", &csv, Some(&units)).await.status, 200);
    let json = [("Authorization", admin)];
    let body = serde_json::to_string(&fixtures::campaign()).unwrap();
    assert_eq!(http(district, "POST", "/api/campaigns", &json, Some(&body)).await.status, 201);
    let open = format!("/api/campaigns/{}/open", fixtures::campaign().id);
    assert_eq!(http(district, "POST", &open, &json, Some("")).await.status, 200);
}

/// The relay's status page.
async fn status(relay: &Child) -> String {
    let reply = http(relay.addr, "GET", "/", &[], None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// A phone's sync of `ledger` with the server at `url`: `Err` with what it said.
async fn sync_ledger(url: &str, token: &str, peer: &str, ledger: &mut Ledger) -> Result<(), String> {
    let id = ledger.id();
    let mut phone = Client::join_with(url, peer, None, Some(token)).await;
    phone.sync_with(id, ledger.doc_mut(), &mut sync::State::new(), false).await.map(drop)
}

#[tokio::test]
async fn phones_sync_to_a_relay_while_the_district_is_down_and_everything_arrives_once() {
    let district_dir = tempfile::tempdir().unwrap();
    let relay_dir = tempfile::tempdir().unwrap();
    let district_db = format!("sqlite:{}", district_dir.path().join("hamlet.db").display());
    let campaign = fixtures::campaign().id.to_string();

    // The district's people: an admin, a collector in each of two hamlets, a relay for both.
    let store = Store::open(&district_db).await.unwrap();
    let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
    accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
    let (_, admin) = accounts.create_api_token("admin", "tests").await.unwrap();
    let admin = format!("Bearer {admin}");
    let mut phones = BTreeMap::new();
    let mut codes = BTreeMap::new();
    for (person, hamlet) in [("c1", "thon-dong"), ("c2", "thon-tay"), ("c3", "thon-dong")] {
        accounts.create_person(person, person, Role::Collector).await.unwrap();
        accounts.set_assignments(person, &campaign, &[hamlet.to_owned()]).await.unwrap();
        let (code, _) = accounts.issue_code(person, Duration::from_secs(600)).await.unwrap();
        if person == "c1" {
            // c1's phone enrolls through the relay, below.
            codes.insert("now", code);
            codes.insert("later", accounts.issue_code(person, Duration::from_secs(600)).await.unwrap().0);
            continue;
        }
        let actor = ActorId::random();
        let enrolled = accounts.enroll(&code, &[actor.to_hex_string()], "phone").await.unwrap();
        phones.insert(person, (enrolled.token, enrolled.device_id, actor, hamlet));
    }
    accounts.create_person("xa-an-binh", "Xã An Bình", Role::Relay).await.unwrap();
    accounts.set_assignments("xa-an-binh", &campaign, &["thon-dong".into(), "thon-tay".into()]).await.unwrap();
    let (relay_code, _) = accounts.issue_code("xa-an-binh", Duration::from_secs(600)).await.unwrap();
    let (collector_code, _) = accounts.issue_code("c1", Duration::from_secs(600)).await.unwrap();
    store.close().await;

    let port = free_port();
    let up = district(district_dir.path(), port);
    open_the_campaign(up.addr, &admin).await;
    let json = [("Authorization", admin.as_str())];

    // Enrollment: a collector's code does not make a relay; the relay's does, once.
    let upstream = format!("http://127.0.0.1:{port}");
    let relay_data = relay_dir.path().to_str().unwrap();
    let enroll = |code: &str, upstream: &str| {
        server_command()
            .args(["relay", "enroll", "--upstream", upstream, "--code", code, "--data-dir", relay_data])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let refused = enroll(&collector_code, &upstream);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a relay"), "{refused:?}");
    // The sync URL names the same district as the base URL.
    let enrolled = enroll(&relay_code, &format!("ws://127.0.0.1:{port}/sync"));
    assert!(enrolled.status.success(), "{enrolled:?}");
    assert!(String::from_utf8_lossy(&enrolled.stdout).contains("xa-an-binh"), "{enrolled:?}");
    assert!(!enroll(&relay_code, &upstream).status.success(), "a relay enrolls once");

    // The relay learns its hamlets from the district while the uplink is up.
    let mut relay_process = relay(relay_dir.path());
    until("the relay's first pass", Duration::from_secs(30), || async {
        let page = status(&relay_process).await;
        (page.contains(r#"data-uplink="up""#) && page.contains(r#"data-hamlet="thon-tay""#)).then_some(())
    })
    .await;
    let page = status(&relay_process).await;
    assert!(page.contains("Trạm chuyển tiếp của xã"), "Vietnamese first: {page}");

    // A phone enrolls through the relay while its uplink is up.
    let enroll_at_relay = |code: &str, actor: &ActorId| {
        serde_json::json!({ "code": code, "actor_ids": [actor.to_hex_string()], "device_name": "phone" }).to_string()
    };
    let json_body = [("Content-Type", "application/json")];
    let actor = ActorId::random();
    let reply =
        http(relay_process.addr, "POST", "/api/enroll", &json_body, Some(&enroll_at_relay(&codes["now"], &actor)))
            .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    let c1 = (answer["token"].as_str().unwrap().to_owned(), answer["device"].as_str().unwrap().to_owned());
    phones.insert("c1", (c1.0, c1.1, actor, "thon-dong"));

    // The district goes down; two phones sync with the relay, which takes custody.
    up.kill();
    let actor = ActorId::random();
    let reply =
        http(relay_process.addr, "POST", "/api/enroll", &json_body, Some(&enroll_at_relay(&codes["later"], &actor)))
            .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("needs the district"), "{}", reply.body);
    let mut ledgers = BTreeMap::new();
    for (person, n, level) in [("c1", 3, Level::TinNhiem), ("c2", 2, Level::TinNhiemThap)] {
        let (token, _, actor, hamlet) = &phones[person];
        let mut ledger = Ledger::create(&open_campaign().id, &fixtures::hamlet(hamlet), actor.clone());
        seal_all(&mut ledger, person, n, level, person);
        sync_ledger(&relay_process.sync_url(), token, &format!("{person}-phone"), &mut ledger)
            .await
            .unwrap_or_else(|e| panic!("{person} at the relay: {e}"));
        ledgers.insert(person, ledger);
    }
    // A phone may write only as itself, at the relay as at the district.
    let (c1_token, _, _, _) = &phones["c1"];
    let mut forged = Ledger::create(&open_campaign().id, &fixtures::hamlet("thon-tay"), phones["c2"].2.clone());
    seal_all(&mut forged, "forged", 1, Level::TinNhiem, "c2");
    assert!(sync_ledger(&relay_process.sync_url(), c1_token, "c1-forger", &mut forged).await.is_err());
    let page = status(&relay_process).await;
    assert!(page.contains(r#"data-uplink="down""#), "the uplink is down: {page}");
    assert!(!page.contains(r#"data-pending="0""#), "nothing has reached the district: {page}");

    // The relay is killed and restarted; then the district comes back.
    relay_process.kill();
    relay_process = relay(relay_dir.path());
    let up = district(district_dir.path(), port);
    let counted = until("the district counts what the relay carried", Duration::from_secs(60), || async {
        let counts =
            (district_counts(&district_db, "thon-dong").await, district_counts(&district_db, "thon-tay").await);
        (counts.0.0 >= 3 && counts.1.0 >= 2).then_some(counts)
    })
    .await;
    // Exactly once: three and two responses, each rating "ong-an" once.
    assert_eq!(counted, ((3, 3), (2, 2)));
    until("the relay sees everything at the district", Duration::from_secs(30), || async {
        let page = status(&relay_process).await;
        (page.matches(r#"data-pending="0""#).count() == 2 && page.contains(r#"data-uplink="up""#)).then_some(())
    })
    .await;

    // Other phones' changes come down: c3 syncs with the district itself, and c1's phone at the
    // relay receives c3's response.
    let (c3_token, _, c3_actor, _) = &phones["c3"];
    let mut c3_ledger = Ledger::create(&open_campaign().id, &fixtures::hamlet("thon-dong"), c3_actor.clone());
    seal_all(&mut c3_ledger, "c3", 1, Level::TinNhiem, "c3");
    sync_ledger(&up.sync_url(), c3_token, "c3-phone", &mut c3_ledger).await.unwrap();
    let c1_ledger = &ledgers["c1"];
    let (c1_token, _, _, _) = &phones["c1"];
    let relay_url = relay_process.sync_url();
    until("c3's response reaches c1's phone through the relay", Duration::from_secs(30), || {
        let mut copy =
            Ledger::open(c1_ledger.doc().clone(), &open_campaign().id, &fixtures::hamlet("thon-dong")).unwrap();
        let relay_url = relay_url.clone();
        async move {
            sync_ledger(&relay_url, c1_token, "c1-phone", &mut copy).await.ok()?;
            (copy.responses().unwrap().len() == 4).then_some(())
        }
    })
    .await;
    assert_eq!(district_counts(&district_db, "thon-dong").await, (4, 4));

    // The district's documents come down: the campaign document, fetched by the relay, for a
    // phone at the relay.
    let mut reader = Client::join_with(&relay_process.sync_url(), "c1-reader", None, Some(c1_token)).await;
    let mut campaign_doc = hamlet_sync_core::automerge::Automerge::new();
    let campaign_id = DocumentId::for_campaign(&open_campaign().id);
    reader.sync_with(campaign_id, &mut campaign_doc, &mut sync::State::new(), true).await.unwrap();
    assert!(!campaign_doc.get_heads().is_empty(), "the campaign document reached the relay's phones");
    drop(reader);

    // A revoked phone is refused by the relay after its next feed.
    let (c2_token, c2_device, _, _) = &phones["c2"];
    let revoke = format!("/api/devices/{c2_device}/revoke");
    assert_eq!(http(up.addr, "POST", &revoke, &json, Some("")).await.status, 204);
    until("the relay refuses the revoked phone", Duration::from_secs(30), || async {
        Client::connect_with(&relay_process.sync_url(), "c2-again", Some(c2_token)).await.err().filter(|s| *s == 401)
    })
    .await;
    assert!(Client::connect_with(&relay_process.sync_url(), "c1-again", Some(c1_token)).await.is_ok());
    // And stays refused with the district down and the relay restarted: revocations are kept.
    up.kill();
    relay_process.kill();
    let relay_process = relay(relay_dir.path());
    assert_eq!(Client::connect_with(&relay_process.sync_url(), "c2-later", Some(c2_token)).await.err(), Some(401));
    assert_eq!(district_counts(&district_db, "thon-tay").await, (2, 2));
}

/// What the district feeds a relay: the collectors and devices of the relay's hamlets and
/// nothing else, token hashes and never tokens; applied at the relay, the district's own checks
/// answer there as at the district, and a revocation fed later is kept.
#[tokio::test]
async fn the_feed_carries_only_the_relays_hamlets_and_the_relay_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let district = Store::open(&format!("sqlite:{}", dir.path().join("district.db").display())).await.unwrap();
    let accounts = Accounts::new(district.clone(), Duration::from_secs(3600));
    let campaign = fixtures::campaign().id.to_string();
    accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
    let mut tokens = BTreeMap::new();
    for (person, hamlets) in [("c1", vec!["thon-dong"]), ("c2", vec!["thon-tay", "thon-bac"]), ("c3", vec!["thon-bac"])]
    {
        accounts.create_person(person, person, Role::Collector).await.unwrap();
        let hamlets: Vec<String> = hamlets.into_iter().map(String::from).collect();
        accounts.set_assignments(person, &campaign, &hamlets).await.unwrap();
        let (code, _) = accounts.issue_code(person, Duration::from_secs(600)).await.unwrap();
        let enrolled = accounts.enroll(&code, &[ActorId::random().to_hex_string()], "phone").await.unwrap();
        tokens.insert(person, (enrolled.token, enrolled.device_id));
    }
    accounts.create_person("relay", "Xã A", Role::Relay).await.unwrap();
    accounts.set_assignments("relay", &campaign, &["thon-dong".into(), "thon-tay".into()]).await.unwrap();
    assert!(accounts.relay_feed("c1").await.is_err(), "only a relay has a feed");

    let feed = accounts.relay_feed("relay").await.unwrap();
    let people: Vec<&str> = feed.people.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(people, ["c1", "c2"], "nobody outside the relay's hamlets, no staff");
    let c2: Vec<&str> = feed.assignments.iter().filter(|(p, _, _)| p == "c2").map(|(_, _, h)| h.as_str()).collect();
    assert_eq!(c2, ["thon-tay"], "only the hamlets shared with the relay");
    let text = serde_json::to_string(&feed).unwrap();
    for (token, _) in tokens.values() {
        assert!(!text.contains(token.as_str()), "a token in clear in the feed");
    }

    let relay_store = Store::open(&format!("sqlite:{}", dir.path().join("relay.db").display())).await.unwrap();
    let at_relay = Accounts::new(relay_store.clone(), Duration::from_secs(3600));
    at_relay.apply_feed(&feed).await.unwrap();
    let (device, person) = at_relay.device_by_token(&tokens["c1"].0).await.unwrap().expect("c1 at the relay");
    assert_eq!((device.as_str(), person.id.as_str()), (tokens["c1"].1.as_str(), "c1"));
    assert!(at_relay.device_by_token(&tokens["c3"].0).await.unwrap().is_none(), "c3 is not the relay's");
    assert_eq!(at_relay.assignments("c2").await.unwrap(), [(campaign.clone(), "thon-tay".to_owned())]);
    assert!(at_relay.people().await.unwrap().iter().all(|p| !p.role.is_staff()));

    // A feed that assigns outside the relay's hamlets is refused whole.
    let mut tampered = feed.clone();
    tampered.assignments.push(("c1".into(), campaign.clone(), "thon-bac".into()));
    assert!(at_relay.apply_feed(&tampered).await.is_err());
    assert!(at_relay.assignments("c1").await.unwrap().iter().all(|(_, h)| h != "thon-bac"));

    // Revoked at the district: refused at the relay once fed, and still after a reopening.
    assert!(accounts.revoke_device(&tokens["c1"].1).await.unwrap());
    at_relay.apply_feed(&accounts.relay_feed("relay").await.unwrap()).await.unwrap();
    assert!(at_relay.device_by_token(&tokens["c1"].0).await.unwrap().is_none());
    relay_store.close().await;
    let reopened = Store::open(&format!("sqlite:{}", dir.path().join("relay.db").display())).await.unwrap();
    let at_relay = Accounts::new(reopened.clone(), Duration::from_secs(3600));
    assert!(at_relay.device_by_token(&tokens["c1"].0).await.unwrap().is_none());
    assert!(at_relay.device_by_token(&tokens["c2"].0).await.unwrap().is_some());
    // A collector taken off the relay's hamlets loses the relay too.
    accounts.set_assignments("c2", &campaign, &["thon-bac".into()]).await.unwrap();
    at_relay.apply_feed(&accounts.relay_feed("relay").await.unwrap()).await.unwrap();
    assert!(at_relay.device_by_token(&tokens["c2"].0).await.unwrap().is_none());
    reopened.close().await;
    district.close().await;
}

/// An `https://` district: the relay believes the district's own authority when given it, and
/// without it refuses the certificate before anything is sent (the code is not spent).
#[tokio::test]
async fn a_relay_reaches_an_https_district_through_the_authority_it_is_given() {
    let district_dir = tempfile::tempdir().unwrap();
    let relay_dir = tempfile::tempdir().unwrap();
    let district_db = format!("sqlite:{}", district_dir.path().join("hamlet.db").display());
    let store = Store::open(&district_db).await.unwrap();
    let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
    let campaign = fixtures::campaign().id.to_string();
    accounts.create_person("xa-an-binh", "Xã An Bình", Role::Relay).await.unwrap();
    accounts.set_assignments("xa-an-binh", &campaign, &["thon-dong".into()]).await.unwrap();
    let (code, _) = accounts.issue_code("xa-an-binh", Duration::from_secs(600)).await.unwrap();
    store.close().await;

    let authority = pki::Authority::new();
    let (cert, key) = authority.sign(&["localhost"]).write(&district_dir.path().join("tls"));
    let ca = authority.write(&district_dir.path().join("district-ca.pem"));
    let up = Child::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        district_dir.path().to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let upstream = format!("https://localhost:{}", up.addr.port());
    let relay_data = relay_dir.path().to_str().unwrap();
    let enroll = |extra: &[&str]| {
        server_command()
            .args(["relay", "enroll", "--upstream", &upstream, "--code", &code, "--data-dir", relay_data])
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let refused = enroll(&[]);
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success() && said.contains("nothing was sent"), "{said}");
    let enrolled = enroll(&["--upstream-ca", ca.to_str().unwrap()]);
    assert!(enrolled.status.success(), "the code was not spent by the refused try: {enrolled:?}");

    let args = ["relay", "--listen", "127.0.0.1:0", "--data-dir", relay_data, "--upstream-ca", ca.to_str().unwrap()];
    let relay_process = Child::spawn(&args);
    until("the relay's first pass over TLS", Duration::from_secs(30), || async {
        let page = status(&relay_process).await;
        (page.contains(r#"data-uplink="up""#) && page.contains(r#"data-hamlet="thon-dong""#)).then_some(())
    })
    .await;
}

/// SIGKILL at any moment loses nothing the relay acknowledged: a phone syncs a few responses at
/// a time with the relay, which is killed at a different moment after each sync (its uplink
/// perhaps mid-pass) and restarted; the district ends up counting every one, once.
#[tokio::test]
async fn a_relay_killed_at_any_moment_loses_nothing_it_acknowledged() {
    let district_dir = tempfile::tempdir().unwrap();
    let relay_dir = tempfile::tempdir().unwrap();
    let district_db = format!("sqlite:{}", district_dir.path().join("hamlet.db").display());
    let campaign = fixtures::campaign().id.to_string();
    let store = Store::open(&district_db).await.unwrap();
    let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
    accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
    let (_, admin) = accounts.create_api_token("admin", "tests").await.unwrap();
    accounts.create_person("c1", "c1", Role::Collector).await.unwrap();
    accounts.set_assignments("c1", &campaign, &["thon-dong".into()]).await.unwrap();
    let (code, _) = accounts.issue_code("c1", Duration::from_secs(600)).await.unwrap();
    let actor = ActorId::random();
    let phone = accounts.enroll(&code, &[actor.to_hex_string()], "phone").await.unwrap();
    accounts.create_person("relay", "Xã A", Role::Relay).await.unwrap();
    accounts.set_assignments("relay", &campaign, &["thon-dong".into()]).await.unwrap();
    let (relay_code, _) = accounts.issue_code("relay", Duration::from_secs(600)).await.unwrap();
    store.close().await;

    let up = district(district_dir.path(), free_port());
    open_the_campaign(up.addr, &format!("Bearer {admin}")).await;
    let upstream = format!("http://{}", up.addr);
    let relay_data = relay_dir.path().to_str().unwrap();
    let enrolled = server_command()
        .args(["relay", "enroll", "--upstream", &upstream, "--code", &relay_code, "--data-dir", relay_data])
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{enrolled:?}");

    let mut relay_process = relay(relay_dir.path());
    // The phone enrolled at the district: the relay knows its token from its first feed on.
    until("the relay's first pass", Duration::from_secs(30), || async {
        status(&relay_process).await.contains(r#"data-hamlet="thon-dong""#).then_some(())
    })
    .await;
    let mut ledger = Ledger::create(&open_campaign().id, &fixtures::hamlet("thon-dong"), actor);
    let rounds = 8;
    for round in 0..rounds {
        seal_all(&mut ledger, &format!("r{round}"), 2, Level::TinNhiem, "c1");
        sync_ledger(&relay_process.sync_url(), &phone.token, &format!("c1-{round}"), &mut ledger)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // Killed at a different moment each round: at once, or while its uplink may be passing.
        tokio::time::sleep(Duration::from_millis((round * 53 % 300) as u64)).await;
        relay_process.kill();
        relay_process = relay(relay_dir.path());
    }
    let expected = (2 * rounds) as i64;
    let counted = until("the district counts every response", Duration::from_secs(60), || async {
        let counts = district_counts(&district_db, "thon-dong").await;
        (counts.0 >= expected).then_some(counts)
    })
    .await;
    assert_eq!(counted, (expected, expected), "each response once");
    drop(relay_process);
}

/// The window a relay cannot close alone: a phone revoked at the district since the relay's last
/// feed is still taken at the relay; the next pass learns the revocation and the district refuses
/// those changes, which the relay's page then shows (the district counts none of them).
#[tokio::test]
async fn a_change_taken_before_the_relay_heard_of_a_revocation_is_refused_by_the_district_and_shown() {
    let district_dir = tempfile::tempdir().unwrap();
    let relay_dir = tempfile::tempdir().unwrap();
    let district_db = format!("sqlite:{}", district_dir.path().join("hamlet.db").display());
    let campaign = fixtures::campaign().id.to_string();
    let store = Store::open(&district_db).await.unwrap();
    let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
    accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
    let (_, admin) = accounts.create_api_token("admin", "tests").await.unwrap();
    let admin = format!("Bearer {admin}");
    accounts.create_person("c1", "c1", Role::Collector).await.unwrap();
    accounts.set_assignments("c1", &campaign, &["thon-dong".into()]).await.unwrap();
    let (code, _) = accounts.issue_code("c1", Duration::from_secs(600)).await.unwrap();
    let actor = ActorId::random();
    let phone = accounts.enroll(&code, &[actor.to_hex_string()], "phone").await.unwrap();
    accounts.create_person("relay", "Xã A", Role::Relay).await.unwrap();
    accounts.set_assignments("relay", &campaign, &["thon-dong".into()]).await.unwrap();
    let (relay_code, _) = accounts.issue_code("relay", Duration::from_secs(600)).await.unwrap();
    store.close().await;

    let up = district(district_dir.path(), free_port());
    open_the_campaign(up.addr, &admin).await;
    let upstream = format!("http://{}", up.addr);
    let relay_data = relay_dir.path().to_str().unwrap();
    let enrolled = server_command()
        .args(["relay", "enroll", "--upstream", &upstream, "--code", &relay_code, "--data-dir", relay_data])
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{enrolled:?}");
    // Passes only when a phone brings something (and at start).
    let relay_process = relay_every(relay_dir.path(), 3600);
    until("the relay's first pass", Duration::from_secs(30), || async {
        status(&relay_process).await.contains(r#"data-hamlet="thon-dong""#).then_some(())
    })
    .await;

    let revoke = format!("/api/devices/{}/revoke", phone.device_id);
    assert_eq!(http(up.addr, "POST", &revoke, &[("Authorization", admin.as_str())], Some("")).await.status, 204);
    let mut ledger = Ledger::create(&open_campaign().id, &fixtures::hamlet("thon-dong"), actor);
    seal_all(&mut ledger, "late", 1, Level::TinNhiem, "c1");
    sync_ledger(&relay_process.sync_url(), &phone.token, "c1-late", &mut ledger)
        .await
        .expect("the relay has not heard of the revocation yet");
    let page = until("the relay shows the district's refusal", Duration::from_secs(30), || async {
        let page = status(&relay_process).await;
        page.contains("the district refused changes").then_some(page)
    })
    .await;
    assert!(page.contains("not from a device assigned"), "{page}");
    assert_eq!(Client::connect_with(&relay_process.sync_url(), "c1-again", Some(&phone.token)).await.err(), Some(401));
    assert_eq!(district_counts(&district_db, "thon-dong").await, (0, 0));
}
