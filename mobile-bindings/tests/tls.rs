//! The collector library over TLS against a real district server that terminates it
//! (`--tls-cert`, `--tls-key`): a district authority the phone is told to believe, a
//! self-signed office server whose certificate the enrollment code pins, and impostors — TLS
//! servers with another certificate — that must hear nothing from the phone.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../../server/tests/pki/mod.rs"]
mod pki;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hamlet_mobile::enroll::EnrollError;
use hamlet_mobile::sync::SyncError;
use hamlet_mobile::transport::CertificateError;
use hamlet_mobile::{Collector, CollectorError, SyncOptions};
use hamlet_sync_core::enrollment::EnrollmentLink;
use hamlet_sync_core::fixtures;
use support::{District, phone_path};
use tokio::io::AsyncReadExt;

const CAMPAIGN: &str = "tin-nhiem-2025";
const DAY: &str = "2025-06-02";

fn answers(n: usize) -> Vec<(String, String)> {
    let levels = ["tin_nhiem_cao", "tin_nhiem", "tin_nhiem_thap"];
    let mut out: Vec<(String, String)> = fixtures::open_campaign()
        .subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("tin-nhiem/{}", s.id), levels[(n + i) % 3].to_owned()))
        .collect();
    out.push(("so-nguoi".into(), format!("{}", 1 + n % 9)));
    out
}

fn quick(attempts: u32) -> SyncOptions {
    SyncOptions {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(5),
        attempts,
        backoff: Duration::from_millis(50),
        ..SyncOptions::default()
    }
}

fn phone(dir: &Path, name: &str) -> Collector {
    let phone = Collector::open(phone_path(dir, name)).expect("store opens");
    phone.set_fixed_today(Some(DAY)).expect("a day");
    phone
}

/// A district server terminating TLS with `pair`, looking at its files every second.
fn district_with(dir: &Path, pair: &pki::Pair) -> District {
    let (cert, key) = pair.write(&dir.join("tls"));
    let (cert, key) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
    District::start_with(
        dir,
        &fixtures::open_campaign(),
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-reload-seconds", "1"],
    )
}

fn record_and_submit(phone: &Collector, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = phone.record(CAMPAIGN, "thon-dong", &answers(i)).expect("recorded");
            phone.submit(&id).expect("submitted");
            id
        })
        .collect()
}

fn counted(district: &District) -> std::collections::BTreeSet<String> {
    district.counted(&fixtures::open_campaign(), &["thon-dong"]).into_keys().map(|(r, _)| r).collect()
}

/// A TLS server that is not the district: it presents its own certificate and counts what
/// clients send once a handshake is done.
struct Impostor {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Impostor {
    fn start(pair: &pki::Pair, addr: &str) -> Impostor {
        use rustls::pki_types::pem::PemObject;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr)).expect("binds");
        let addr = listener.local_addr().unwrap();
        let (received, handshakes, refused) = (Arc::default(), Arc::default(), Arc::default());
        let counters: (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>) =
            (Arc::clone(&received), Arc::clone(&handshakes), Arc::clone(&refused));
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, (received, handshakes, refused)) = (acceptor.clone(), counters.clone());
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            handshakes.fetch_add(1, Ordering::SeqCst);
                            let mut buf = [0u8; 4096];
                            while let Ok(n @ 1..) = tls.read(&mut buf).await {
                                received.fetch_add(n, Ordering::SeqCst);
                            }
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Impostor { addr, received, handshakes, refused, _runtime: runtime }
    }

    /// (bytes received after a handshake, handshakes completed, handshakes the client ended).
    fn heard(&self) -> (usize, usize, usize) {
        // The client's alert reaches the server a moment after the client gave up.
        std::thread::sleep(Duration::from_millis(200));
        (
            self.received.load(Ordering::SeqCst),
            self.handshakes.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
        )
    }
}

fn is_pin_mismatch(error: &CertificateError, presented: &pki::Pair) -> bool {
    matches!(error, CertificateError::PinMismatch { presented: p, .. } if *p == presented.pin().colon_hex())
}

#[test]
fn a_phone_trusting_the_district_authority_enrolls_and_syncs_over_wss() {
    let dir = tempfile::tempdir().unwrap();
    let authority = pki::Authority::new();
    let district = district_with(dir.path(), &authority.sign(pki::NAMES));
    let server = format!("https://localhost:{}", district.addr.port());
    let code = district.code("collector-a", &["thon-dong"]);

    // The compiled-in public roots do not know the district's authority.
    let phone = phone(dir.path(), "a");
    let refused = phone.enroll(&server, &code, "phone").unwrap_err();
    assert!(
        matches!(
            refused,
            CollectorError::Enroll(EnrollError::Certificate { error: CertificateError::Untrusted(_), .. })
        ),
        "{refused:?}"
    );
    // Told to believe it, the phone enrolls with the same code (nothing reached the server).
    assert_eq!(phone.trust_authorities(&authority.pem).expect("a PEM certificate"), 1);
    let enrolled = phone.enroll(&server, &code, "phone").expect("enrolls over https");
    assert_eq!((enrolled.server.as_str(), enrolled.certificate_pin), (server.as_str(), None));
    phone.sync(None, &quick(1), &|_| ()).expect("downloads the campaign over wss");
    let ids = record_and_submit(&phone, 3);
    let report = phone.sync(None, &quick(1), &|_| ()).expect("syncs over wss");
    assert_eq!(report.server, format!("wss://localhost:{}/sync", district.addr.port()));
    assert_eq!(counted(&district), ids.into_iter().collect());

    // The district renews its certificate (same authority): the phone keeps syncing.
    let renewed = authority.sign(pki::NAMES);
    renewed.write(&dir.path().join("tls"));
    std::thread::sleep(Duration::from_millis(2500));
    let more = record_and_submit(&phone, 1);
    phone.sync(None, &quick(1), &|_| ()).expect("syncs after the renewal");
    assert!(counted(&district).contains(&more[0]));
}

#[test]
fn a_phone_pins_the_certificate_its_code_carries_and_sends_nothing_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let office = pki::self_signed(pki::NAMES);
    let district = district_with(dir.path(), &office);
    let code = district.code("collector-b", &["thon-dong"]);
    let link = |addr: SocketAddr| {
        EnrollmentLink::new(Some(&format!("https://127.0.0.1:{}", addr.port())), &code)
            .with_pin(Some(office.pin()))
            .to_string()
    };

    // A server with another certificate, where the code says the district is: the phone ends
    // the handshake, and the impostor never gets a byte of the request (nor the code).
    let other = pki::self_signed(pki::NAMES);
    let impostor = Impostor::start(&other, "127.0.0.1:0");
    let phone = phone(dir.path(), "b");
    let refused = phone.enroll("", &link(impostor.addr), "phone").unwrap_err();
    match &refused {
        CollectorError::Enroll(EnrollError::Certificate { error, .. }) => {
            assert!(is_pin_mismatch(error, &other), "{error:?}")
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    assert_eq!(impostor.heard(), (0, 0, 1), "the impostor heard something");

    // The real server presents the pinned certificate: enrolled from the link alone.
    let enrolled = phone.enroll("", &link(district.addr), "phone").expect("enrolls with the pin");
    assert_eq!(enrolled.certificate_pin, Some(office.pin().colon_hex()));
    assert_eq!(enrolled.server, format!("https://127.0.0.1:{}", district.addr.port()));
    phone.sync(None, &quick(1), &|_| ()).expect("downloads the campaign");
    let ids = record_and_submit(&phone, 2);
    phone.sync(None, &quick(1), &|_| ()).expect("syncs to the pinned server");
    assert_eq!(counted(&district), ids.iter().cloned().collect());

    // The district is gone and another server answers at its address: the phone's sync stops
    // at the handshake, is not retried (the next attempt would meet the same server), and
    // neither the token nor a frame leaves the phone.
    let addr = district.address();
    drop(district);
    let impostor = Impostor::start(&other, &addr);
    record_and_submit(&phone, 1);
    let refused = phone.sync(None, &quick(3), &|_| ()).unwrap_err();
    match &refused {
        CollectorError::Sync(SyncError::Certificate { error, .. }) => {
            assert!(is_pin_mismatch(error, &other), "{error:?}")
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    assert_eq!(impostor.heard(), (0, 0, 1), "the impostor heard something, or the phone retried");
}

#[test]
fn a_pin_over_clear_text_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let phone = phone(dir.path(), "c");
    let pin = pki::self_signed(pki::NAMES).pin();
    // Typed by hand: the server without a scheme is reached by TLS; http:// is refused.
    let code = EnrollmentLink::new(None, "ABCDE-FGHJK").with_pin(Some(pin)).to_string();
    let refused = phone.enroll("http://127.0.0.1:9", &code, "phone").unwrap_err();
    assert!(matches!(refused, CollectorError::Address(_)), "{refused:?}");
    assert!(phone.enrollment().is_none());
}

fn collector_cli(store: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hamlet-collector"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("HAMLET_LANG")
        .env_remove("HAMLET_SERVER")
        .env_remove("HAMLET_CA_CERT")
        .env("HAMLET_TODAY", DAY)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the command runs")
}

#[test]
fn the_command_line_enrolls_and_syncs_over_https_with_the_district_authority() {
    let dir = tempfile::tempdir().unwrap();
    let authority = pki::Authority::new();
    let ca = authority.write(&dir.path().join("ca.pem"));
    let ca = ca.to_str().unwrap();
    let district = district_with(dir.path(), &authority.sign(pki::NAMES));
    let server = format!("https://localhost:{}", district.addr.port());
    let code = district.code("collector-d", &["thon-dong"]);
    let store = dir.path().join("cli.db");

    // Not told of the authority: exit code 9, the server heard nothing (the code still works).
    let out = collector_cli(&store, &["--lang", "en", "enroll", "--server", &server, "--code", &code]);
    assert_eq!(out.status.code(), Some(9), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was sent"));
    let out = collector_cli(&store, &["--ca-cert", ca, "enroll", "--server", &server, "--code", &code]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = collector_cli(
        &store,
        &[
            "--ca-cert",
            ca,
            "--json",
            "record",
            "--submit",
            "-a",
            "so-nguoi=5",
            "-a",
            "tin-nhiem/ong-an=1",
            "-a",
            "tin-nhiem/can-bo-01=1",
            "-a",
            "tin-nhiem/can-bo-02=1",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recorded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = collector_cli(&store, &["--ca-cert", ca, "sync"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(counted(&district).contains(recorded["id"].as_str().unwrap()));
}
