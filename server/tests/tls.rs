//! The server terminating TLS itself (`--tls-cert`, `--tls-key`): HTTPS with HSTS, a renewed
//! certificate used by new connections without a restart, enrollment codes that pin a
//! self-signed certificate, the fingerprint printed at start, and the official JavaScript
//! client syncing over `wss://` with the district's own authority in `NODE_EXTRA_CA_CERTS`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod client;
mod pki;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hamlet_server::accounts::{Accounts, Role};
use hamlet_server::store::Store;
use hamlet_sync_core::enrollment::{CertificatePin, EnrollmentLink};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Takes any certificate: these tests look at which one the server presents.
#[derive(Debug)]
struct AnyCertificate(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// An HTTPS answer, and the certificate the server presented.
struct Answer {
    status: u16,
    head: String,
    body: String,
    presented: CertificatePin,
}

/// One HTTPS request over a fresh connection.
async fn https(addr: SocketAddr, method: &str, path: &str, bearer: Option<&str>) -> Answer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.signature_verification_algorithms)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    let presented = CertificatePin::of_certificate(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref());
    let auth = bearer.map(|b| format!("Authorization: Bearer {b}\r\n")).unwrap_or_default();
    let body = if method == "POST" { "{}" } else { "" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // rustls reports a peer that closes without close_notify; what arrived before is the answer.
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Answer { status, head: head.to_ascii_lowercase(), body: body.to_owned(), presented }
}

fn tls_flags(dir: &Path, pair: &pki::Pair) -> Vec<String> {
    let (cert, key) = pair.write(dir);
    let flags = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--tls-reload-seconds", "1"];
    flags.iter().map(|s| s.to_string()).collect()
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn https_with_hsts_and_a_renewed_certificate_reaches_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("hamlet.db").display());
    let tls = dir.path().join("tls");
    let first = pki::self_signed(pki::NAMES);
    let flags = tls_flags(&tls, &first);
    let server = client::start(client::config(&db, &strs(&flags))).await;

    let answer = https(server.addr, "GET", "/healthz", None).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
    assert!(answer.head.contains("strict-transport-security: max-age=31536000"), "{}", answer.head);
    assert_eq!(answer.presented, first.pin());
    // Clear text on the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut raw)).await;
    assert!(!raw.starts_with(b"HTTP/1.1 200"), "clear text answered");

    // Half-way through a renewal (the new certificate, the old key): the pair in use stays.
    let renewed = pki::self_signed(pki::NAMES);
    std::fs::write(tls.join("cert.pem"), &renewed.cert_pem).unwrap();
    // That nothing changes has no event to wait for: give the reloader (every second) two
    // chances and a half to pick the mismatched pair, then check that it did not.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(https(server.addr, "GET", "/healthz", None).await.presented, first.pin(), "a mismatched pair was used");
    // The key follows: new connections get the renewed certificate within a few seconds.
    renewed.write(&tls);
    // The reloader tells no client when it swapped the pair: poll new connections, with a
    // deadline (10 s).
    let started = Instant::now();
    loop {
        let answer = https(server.addr, "GET", "/healthz", None).await;
        if answer.presented == renewed.pin() {
            assert_eq!(answer.status, 200);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the renewed certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("renewed certificate in use {} ms after its key was written", started.elapsed().as_millis());
    server.stop().await;
}

/// A server with an admin, over TLS with `pair` (or clear text without): the link of a fresh
/// enrollment code, issued through the API.
async fn issued_link(pair: Option<&pki::Pair>, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("hamlet.db").display());
    let store = Store::open(&db).await.unwrap();
    let accounts = Accounts::new(store.clone(), Duration::from_secs(3600));
    accounts.create_person("admin", "Ban Tổ chức", Role::Admin).await.unwrap();
    accounts.create_person("c1", "Thu thập", Role::Collector).await.unwrap();
    let (_, token) = accounts.create_api_token("admin", "tests").await.unwrap();
    store.close().await;
    let mut flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if let Some(pair) = pair {
        flags.extend(tls_flags(&dir.path().join("tls"), pair));
    }
    let server = client::start(client::secure_config(&db, &strs(&flags))).await;
    let path = "/api/people/c1/enrollment-codes";
    let body = match pair {
        Some(_) => https(server.addr, "POST", path, Some(&token)).await.body,
        None => {
            let auth = format!("Bearer {token}");
            server.request("POST", path, &[("Authorization", &auth)], Some("{}")).await.body
        }
    };
    server.stop().await;
    let issued: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    issued["link"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn enrollment_codes_pin_a_self_signed_certificate_and_not_an_authoritys() {
    let public = ["--public-url", "https://hamlet.lan:8443"];
    let office = pki::self_signed(pki::NAMES);
    let link = EnrollmentLink::parse(&issued_link(Some(&office), &public).await).unwrap();
    assert_eq!((link.server.as_deref(), link.pin), (Some("https://hamlet.lan:8443"), Some(office.pin())));
    // Without a public URL the code carries the pin alone; the collector types the address.
    let link = EnrollmentLink::parse(&issued_link(Some(&office), &[]).await).unwrap();
    assert_eq!((link.server, link.pin), (None, Some(office.pin())));

    let authority = pki::Authority::new();
    let signed = authority.sign(pki::NAMES);
    let link = EnrollmentLink::parse(&issued_link(Some(&signed), &public).await).unwrap();
    assert_eq!(link.pin, None, "a certificate an authority signed is not pinned by default");
    let always = [public[0], public[1], "--enrollment-pin", "always"];
    let link = EnrollmentLink::parse(&issued_link(Some(&signed), &always).await).unwrap();
    assert_eq!(link.pin, Some(signed.pin()));
    let never = ["--enrollment-pin", "never"];
    assert_eq!(EnrollmentLink::parse(&issued_link(Some(&office), &never).await).unwrap().pin, None);
    // Behind a TLS proxy with its own self-signed certificate: the admin gives its fingerprint.
    let proxy = pki::self_signed(pki::NAMES);
    let colons = proxy.pin().colon_hex();
    let fixed = [public[0], public[1], "--enrollment-pin", colons.as_str()];
    assert_eq!(EnrollmentLink::parse(&issued_link(None, &fixed).await).unwrap().pin, Some(proxy.pin()));
}

#[test]
fn the_javascript_client_syncs_over_wss_and_the_binary_prints_the_fingerprint() {
    use std::io::BufRead;
    if !client::node_ready("JavaScript TLS test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let authority = pki::Authority::new();
    let ca = authority.write(&dir.path().join("ca.pem"));
    let signed = authority.sign(pki::NAMES);
    let flags = tls_flags(&dir.path().join("tls"), &signed);
    let data_dir = dir.path().join("data");
    let mut child = client::server_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-open-sync", "--data-dir"])
        .arg(&data_dir)
        .args(&flags)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut listening, mut fingerprint) = (String::new(), String::new());
    reader.read_line(&mut listening).unwrap();
    reader.read_line(&mut fingerprint).unwrap();
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addr: SocketAddr =
        listening.trim().rsplit("https://").next().unwrap().parse().unwrap_or_else(|_| panic!("{listening}"));
    assert_eq!(fingerprint.trim(), format!("TLS certificate SHA-256 fingerprint: {}", signed.pin().colon_hex()));

    let url = format!("wss://localhost:{}/sync", addr.port());
    let written = dir.path().join("written.json");
    let written = written.to_str().unwrap();
    client::node("write.mjs", &[&url, written, "--docs", "3"], &[("NODE_EXTRA_CA_CERTS", ca.as_os_str())]);
    // A fresh client, with no local data, reads every document back over its own connection.
    client::node("read.mjs", &[&url, written], &[("NODE_EXTRA_CA_CERTS", ca.as_os_str())]);
    let _ = child.kill();
    let _ = child.wait();
}
