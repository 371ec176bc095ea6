//! The phone library through a commune relay: a phone enrolls through the relay, downloads the
//! campaign the relay fetched, records, and syncs with the relay; the district counts what the
//! relay forwards. District and relay run in this process on their own runtimes.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use hamlet_mobile::{Collector, SyncOptions};
use hamlet_server::accounts::Role;
use hamlet_server::app::{Relay, enroll_relay};
use hamlet_server::config::{RelayConfig, RelayEnrollConfig};
use hamlet_sync_core::{Campaign, fixtures};
use support::{District, phone_path};

const CAMPAIGN: &str = "tin-nhiem-2025";

fn campaign() -> Campaign {
    fixtures::open_campaign()
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    relay: RelayConfig,
}

fn quick() -> SyncOptions {
    SyncOptions {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(5),
        attempts: 1,
        backoff: Duration::from_millis(50),
        ..SyncOptions::default()
    }
}

/// A full answer sheet: every subject rated, `n` choosing the level.
fn answers(n: usize) -> Vec<(String, String)> {
    let levels = ["tin_nhiem_cao", "tin_nhiem", "tin_nhiem_thap"];
    let mut out: Vec<(String, String)> = campaign()
        .subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("tin-nhiem/{}", s.id), levels[(n + i) % 3].to_owned()))
        .collect();
    out.push(("so-nguoi".into(), format!("{}", 1 + n % 9)));
    out
}

/// A relay for `thon-dong`, enrolled at `district` and running on its own runtime in this
/// process, passing to the district every second: (runtime, address, data folder).
fn start_relay(dir: &std::path::Path, district: &District) -> (tokio::runtime::Runtime, std::net::SocketAddr, PathBuf) {
    let relay_code = district.code_as("relay", Role::Relay, &["thon-dong"]);
    let relay_dir = dir.join("relay");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let enroll = RelayEnrollConfig {
        upstream: format!("http://{}", district.address()),
        upstream_ca: None,
        code: relay_code,
        data_dir: relay_dir.clone(),
        name: "relay".into(),
    };
    runtime.block_on(enroll_relay(&enroll)).expect("the relay enrolls");
    let data_dir = relay_dir.to_str().unwrap();
    let config = Args::parse_from(["relay", "--data-dir", data_dir, "--uplink-seconds", "1"]).relay;
    let relay_addr = runtime.block_on(async {
        let relay = Relay::open(config).await.expect("the relay opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(relay.run(listener, std::future::pending()));
        addr
    });
    (runtime, relay_addr, relay_dir)
}

#[test]
fn a_phone_enrolls_and_syncs_through_a_relay_and_the_district_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let district = District::start(dir.path(), &campaign());
    let (_relay, relay_addr, _) = start_relay(dir.path(), &district);
    let phone = Collector::open(phone_path(dir.path(), "c1")).expect("store opens");
    phone.set_fixed_today(Some("2025-06-02")).expect("a day");
    let deadline = Instant::now() + Duration::from_secs(30);
    // The relay's first pass brings its hamlets' accounts: enrolling needs the district anyway.
    let code = district.code("c1", &["thon-dong"]);
    phone.enroll(&relay_addr.to_string(), &code, "phone").expect("enrolled through the relay");
    while !phone.campaigns().first().is_some_and(|c| c.downloaded) {
        assert!(Instant::now() < deadline, "the campaign never came down through the relay");
        let _ = phone.sync(None, &quick(), &|_| ());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut submitted = BTreeSet::new();
    for i in 0..3 {
        let id = phone.record(CAMPAIGN, "thon-dong", &answers(i)).expect("recorded");
        phone.submit(&id).expect("submitted");
        submitted.insert(id);
    }
    let report = phone.sync(None, &quick(), &|_| ()).expect("synced with the relay");
    assert_eq!(report.newly_acknowledged, 3, "acknowledged by the relay: {report:?}");
    loop {
        let counted: BTreeSet<String> =
            district.counted(&campaign(), &["thon-dong"]).into_keys().map(|(r, _)| r).collect();
        if counted == submitted {
            break;
        }
        assert!(Instant::now() < deadline, "the district never counted them: {counted:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A sealed campaign (issue 17) through the relay: the relay carries the phone's response to the
/// district, and nothing it stores — campaign document or ledger, every value of every change —
/// holds an answer or a comment in the clear; the district opens and counts it.
#[test]
fn a_sealed_response_crosses_the_relay_as_ciphertext_only() {
    const COMMENT: &str = "Trưởng thôn hay hứa mà không làm";
    let dir = tempfile::tempdir().unwrap();
    let (campaign, key) = fixtures::sealed_campaign([42; 32]);
    let district = District::start(dir.path(), &campaign);
    let (relay_runtime, relay_addr, relay_dir) = start_relay(dir.path(), &district);
    let phone = Collector::open(phone_path(dir.path(), "c1")).expect("store opens");
    phone.set_fixed_today(Some("2025-06-02")).expect("a day");
    let deadline = Instant::now() + Duration::from_secs(30);
    phone.enroll(&relay_addr.to_string(), &district.code("c1", &["thon-dong"]), "phone").expect("enrolled");
    while !phone.campaigns().first().is_some_and(|c| c.downloaded) {
        assert!(Instant::now() < deadline, "the campaign never came down through the relay");
        let _ = phone.sync(None, &quick(), &|_| ());
        std::thread::sleep(Duration::from_millis(100));
    }
    let sheet = [
        ("tin-nhiem/ong-an".to_owned(), "tin_nhiem_thap".to_owned()),
        ("tin-nhiem/ba-binh".to_owned(), "tin_nhiem_cao".to_owned()),
        ("y-kien/ong-an".to_owned(), COMMENT.to_owned()),
    ];
    let id = phone.record(CAMPAIGN, "thon-dong", &sheet).expect("recorded");
    phone.submit(&id).expect("submitted");
    let report = phone.sync(None, &quick(), &|_| ()).expect("synced with the relay");
    assert_eq!(report.newly_acknowledged, 1, "acknowledged by the relay: {report:?}");

    // At the district, opened with the campaign's key: counted, the comment readable there.
    let opened = loop {
        if let Some(ledger) = district.ledger(&campaign, "thon-dong") {
            let p = hamlet_sync_core::project_opened(&campaign, &ledger, &Default::default(), Some(&key)).unwrap();
            let counted: Vec<_> = p.rows.answers.into_iter().filter(|a| a.counted).collect();
            if !counted.is_empty() {
                break counted;
            }
        }
        assert!(Instant::now() < deadline, "the district never counted it");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(opened.len(), 3, "{opened:?}");
    assert!(opened.iter().any(|a| a.value == hamlet_sync_core::AnswerValue::Comment(COMMENT.into())));

    // The relay's own database: every document it holds, every value any change wrote.
    let url = format!("sqlite:{}", relay_dir.join("hamlet-relay.db").display());
    relay_runtime.block_on(async {
        let store = hamlet_server::store::Store::open(&url).await.expect("the relay's store opens");
        let documents = [
            hamlet_sync_core::DocumentId::for_campaign(&campaign.id),
            hamlet_sync_core::DocumentId::for_ledger(&campaign.id, &fixtures::hamlet("thon-dong")),
        ];
        for document in documents {
            let chunks = store.load(&document.to_string()).await.unwrap();
            assert!(!chunks.is_empty(), "the relay holds {document}");
            let mut doc = hamlet_sync_core::automerge::Automerge::new();
            for chunk in chunks {
                doc.load_incremental(&chunk.data).unwrap();
            }
            for value in hamlet_sync_core::sealed::every_value_written(&doc) {
                let raw = match &value {
                    hamlet_sync_core::automerge::ScalarValue::Str(s) => s.as_bytes().to_vec(),
                    hamlet_sync_core::automerge::ScalarValue::Bytes(b) => b.clone(),
                    _ => continue,
                };
                for needle in [COMMENT, "tin_nhiem_thap", "tin_nhiem_cao"] {
                    let found = raw.windows(needle.len()).any(|w| w == needle.as_bytes());
                    assert!(!found, "the relay's {document} holds {needle:?} in the clear");
                }
            }
        }
    });
}
