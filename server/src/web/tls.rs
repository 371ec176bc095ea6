//! TLS terminated by the server itself (`--tls-cert`, `--tls-key`), for a small office that runs
//! no reverse proxy: rustls with the `ring` provider over the same axum application.
//!
//! - **Reload.** The certificate and key files are read again every `--tls-reload-seconds`;
//!   when their bytes changed and the new pair reads (the key matches the certificate), new
//!   connections get it. A half-written pair (the certificate renewed, the key not yet) is
//!   logged and the old one kept until the next look. Connections already open keep theirs.
//! - **Handshakes off the accept loop.** Each handshake runs in its own task with a deadline, at
//!   most [`MAX_HANDSHAKES`] at once, so a client that opens a socket and says nothing holds up
//!   no one.
//! - **HSTS.** With TLS on, every answer says `Strict-Transport-Security`: a browser that came
//!   once over HTTPS does not go back to clear text.
//! - **Pins.** Enrollment codes carry the certificate's SHA-256 fingerprint when the certificate
//!   is self-signed (no public authority vouches for it, so phones must pin it), or as
//!   `--enrollment-pin` says; the fingerprint is printed at start for the admin to compare.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::Response;
use clap::Args;
use hamlet_sync_core::enrollment::CertificatePin;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;

/// Time a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What browsers are told: HTTPS only, for a year.
const HSTS: &str = "max-age=31536000";

/// The TLS flags of `serve`.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsConfig {
    /// Serve HTTPS (and `wss://`) with this certificate: a PEM file, the server's certificate
    /// first, then its intermediates. Needs --tls-key.
    #[arg(long, env = "HAMLET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM: PKCS#8, RSA or EC).
    #[arg(long, env = "HAMLET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Seconds between looks at the certificate and key files; a changed pair is used for new
    /// connections.
    #[arg(long, env = "HAMLET_TLS_RELOAD_SECONDS", default_value_t = 30)]
    pub tls_reload_seconds: u64,

    /// What enrollment codes pin for phones: `auto` (this server's certificate fingerprint when
    /// it is self-signed), `always` (this server's, even if an authority signed it), `never`, or
    /// a SHA-256 fingerprint (the certificate of a TLS proxy in front of this server).
    #[arg(long, env = "HAMLET_ENROLLMENT_PIN", default_value = "auto", value_parser = PinPolicy::parse)]
    pub enrollment_pin: PinPolicy,
}

impl TlsConfig {
    /// Whether the server terminates TLS itself.
    pub fn enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The reload interval.
    pub fn reload_every(&self) -> Duration {
        Duration::from_secs(self.tls_reload_seconds.max(1))
    }
}

/// What enrollment codes pin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PinPolicy {
    /// This server's certificate when it is self-signed.
    #[default]
    Auto,
    /// This server's certificate, whoever signed it.
    Always,
    /// Nothing.
    Never,
    /// This fingerprint.
    Fixed(CertificatePin),
}

impl PinPolicy {
    /// Reads `auto`, `always`, `never` or a fingerprint.
    pub fn parse(text: &str) -> Result<PinPolicy, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(PinPolicy::Auto),
            "always" => Ok(PinPolicy::Always),
            "never" => Ok(PinPolicy::Never),
            _ => CertificatePin::parse(text)
                .map(PinPolicy::Fixed)
                .map_err(|e| format!("expected auto, always, never or a fingerprint: {e}")),
        }
    }
}

/// A certificate and key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The PEM does not hold what it should.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The key does not fit the certificate, or is of a kind rustls does not sign with.
    #[error("the key does not go with the certificate: {0}")]
    Key(String),
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Config(String),
}

/// The pair in use.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' bytes as read, to tell a change.
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    fingerprint: CertificatePin,
    self_signed: bool,
}

/// The server's certificate, read from its files and read again when they change.
#[derive(Debug)]
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<Loaded>>,
}

impl Certificates {
    /// Reads the pair; fails if it does not read (the server then does not start).
    pub fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Arc<Certificates>, TlsError> {
        let loaded = read_pair(&cert_path, &key_path)?;
        Ok(Arc::new(Certificates { cert_path, key_path, current: RwLock::new(Arc::new(loaded)) }))
    }

    fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The SHA-256 fingerprint of the certificate in use.
    pub fn fingerprint(&self) -> CertificatePin {
        self.current().fingerprint
    }

    /// Whether the certificate in use is its own issuer (no authority vouches for it).
    pub fn self_signed(&self) -> bool {
        self.current().self_signed
    }

    /// Reads the files again; returns whether a new pair is now in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let current = self.current();
        let cert_pem = read(&self.cert_path)?;
        let key_pem = read(&self.key_path)?;
        if cert_pem == current.cert_pem && key_pem == current.key_pem {
            return Ok(false);
        }
        let loaded = parse_pair(&self.cert_path, cert_pem, key_pem)?;
        let fingerprint = loaded.fingerprint;
        match self.current.write() {
            Ok(mut slot) => *slot = Arc::new(loaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
        }
        tracing::info!(fingerprint = %fingerprint.colon_hex(), "TLS certificate reloaded");
        Ok(true)
    }

    /// Looks at the files every `every` until `self` is the last reference left (the listener
    /// is gone).
    fn watch(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                tokio::time::sleep(every).await;
                let Some(certificates) = weak.upgrade() else { break };
                match certificates.reload() {
                    Ok(_) => last_error.clear(),
                    // Said once per distinct failure, not at every look.
                    Err(e) if e.to_string() != last_error => {
                        last_error = e.to_string();
                        tracing::warn!(error = %e, "the TLS certificate files do not read; keeping the certificate in use");
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<Loaded, TlsError> {
    parse_pair(cert_path, read(cert_path)?, read(key_path)?)
}

fn parse_pair(cert_path: &Path, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Loaded, TlsError> {
    let pem_error = |reason: String| TlsError::Pem { path: cert_path.display().to_string(), reason };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<_, _>>().map_err(|e| pem_error(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(pem_error("no CERTIFICATE block".into()));
    };
    let fingerprint = CertificatePin::of_certificate(leaf.as_ref());
    let parsed = webpki::EndEntityCert::try_from(leaf).map_err(|e| pem_error(format!("{e:?}")))?;
    let self_signed = parsed.issuer() == parsed.subject();
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    let key = CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map_err(|e| TlsError::Key(e.to_string()))?;
    Ok(Loaded { key: Arc::new(key), cert_pem, key_pem, fingerprint, self_signed })
}

/// What enrollment codes pin, asked each time a code is issued (the certificate may have been
/// reloaded since the start).
#[derive(Clone, Default)]
pub struct EnrollmentPin {
    policy: PinPolicy,
    certificates: Option<Arc<Certificates>>,
}

impl EnrollmentPin {
    /// The pin `policy` gives for the server's own `certificates` (none without TLS).
    pub fn new(policy: PinPolicy, certificates: Option<Arc<Certificates>>) -> EnrollmentPin {
        EnrollmentPin { policy, certificates }
    }

    /// The fingerprint a code issued now carries, if any.
    pub fn current(&self) -> Option<CertificatePin> {
        match (self.policy, &self.certificates) {
            (PinPolicy::Never, _) => None,
            (PinPolicy::Fixed(pin), _) => Some(pin),
            (PinPolicy::Always, Some(c)) => Some(c.fingerprint()),
            (PinPolicy::Auto, Some(c)) if c.self_signed() => Some(c.fingerprint()),
            _ => None,
        }
    }
}

impl fmt::Debug for EnrollmentPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentPin").field("policy", &self.policy).field("current", &self.current()).finish()
    }
}

/// Adds the HSTS header to an answer (a middleware for `axum::middleware::map_response`).
pub async fn hsts(mut response: Response) -> Response {
    response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    response
}

/// A listener whose connections are TLS sessions, handshaken before axum sees them.
#[derive(Debug)]
pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` with `certificates`, and looks at the certificate files every
    /// `reload_every` while the listener lives.
    pub fn new(
        listener: TcpListener,
        certificates: Arc<Certificates>,
        reload_every: Duration,
    ) -> Result<TlsListener, TlsError> {
        let local = listener.local_addr().map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        // HTTP/1.1 only: WebSockets (`/sync`) upgrade from it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        certificates.watch(reload_every);
        let (tx, incoming) = mpsc::channel(64);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let accepted = tokio::select! {
                    // axum dropped the listener: it stopped serving.
                    () = tx.closed() => break,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as axum's own loop does.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = tcp.set_nodelay(true);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { incoming, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accept loop ended (the runtime is shutting down): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
