//! The connection under enrollment and sync: TCP, and TLS for `https://` and `wss://` (rustls
//! with the `ring` provider).
//!
//! Which TLS servers a phone believes, by [`Trust`]:
//!
//! - **A pinned certificate** (the enrollment code carried its SHA-256 fingerprint: a relay or
//!   an office server with a self-signed certificate). Only that exact certificate is accepted,
//!   whoever signed it and whatever name or dates it bears; the server must still prove, in the
//!   handshake, that it holds the certificate's key. Anything else ends the handshake before a
//!   byte of HTTP is written: no token, no enrollment code, no change leaves the phone.
//! - **Otherwise, public authorities**: the Mozilla roots compiled into the library
//!   (`webpki-roots`), plus any authority the app adds ([`Trust::with_authorities`], say a
//!   province's own CA). Compiled-in roots, not the platform's store: the same on Android, iOS
//!   and the command line, with nothing to initialise from the app's side (a platform verifier
//!   needs Java-side set-up on Android), at the cost of ignoring authorities a phone's owner
//!   installed; an app that needs one passes it in.
//!
//! Clear-text addresses (`http://`, `ws://`) stay plain TCP, for an office network.

use std::sync::{Arc, Mutex};

use hamlet_sync_core::enrollment::CertificatePin;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::address::{Scheme, ServerAddress};

/// A byte stream to a server, clear or encrypted.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open connection.
pub(crate) type Connection = Box<dyn Stream>;

/// Which TLS servers to believe.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pin: Option<CertificatePin>,
    authorities: Vec<CertificateDer<'static>>,
}

/// Why a server's certificate was not accepted. Nothing was sent to the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The server presented another certificate than the one this device pinned.
    #[error(
        "the server presented a certificate with SHA-256 {presented}, not the one this device was enrolled to trust ({expected})"
    )]
    PinMismatch {
        /// The pinned fingerprint (as openssl prints it).
        expected: String,
        /// The fingerprint presented.
        presented: String,
    },
    /// No trusted authority vouches for the server's certificate (or it names another host,
    /// or has expired).
    #[error("the server's certificate is not trusted: {0}")]
    Untrusted(String),
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The network: refused, unreachable, cut during the handshake.
    #[error("{0}")]
    Network(String),
    /// The server is not the one to talk to.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

/// PEM text that holds no certificate, or one that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PEM certificate file: {0}")]
pub struct PemError(String);

impl Trust {
    /// Public authorities only (the compiled-in roots).
    pub fn public() -> Trust {
        Trust::default()
    }

    /// Only the certificate with this fingerprint, when `pin` is given.
    pub fn pinned(self, pin: Option<CertificatePin>) -> Trust {
        Trust { pin, ..self }
    }

    /// Also the authorities (CA certificates) in `pem`; returns how many were read.
    pub fn with_authorities(mut self, pem: &[u8]) -> Result<(Trust, usize), PemError> {
        let mut read = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            self.authorities.push(cert.map_err(|e| PemError(e.to_string()))?);
            read += 1;
        }
        if read == 0 {
            return Err(PemError("no CERTIFICATE block".into()));
        }
        Ok((self, read))
    }

    /// The pinned fingerprint, if any.
    pub fn pin(&self) -> Option<CertificatePin> {
        self.pin
    }
}

/// Opens a TCP connection to `address`, and the TLS session over it for `https`/`wss`.
pub(crate) async fn connect(address: &ServerAddress, trust: &Trust) -> Result<Connection, ConnectError> {
    let tcp = TcpStream::connect(address.authority()).await.map_err(|e| ConnectError::Network(e.to_string()))?;
    // Small frames (acknowledgements, `request`s) go at once.
    let _ = tcp.set_nodelay(true);
    if address.scheme() == Scheme::Plain {
        return Ok(Box::new(tcp));
    }
    let name = ServerName::try_from(address.host().to_owned())
        .map_err(|_| ConnectError::Network(format!("{:?} is not a host name for TLS", address.host())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Network(e.to_string()))?;
    let presented = Arc::new(Mutex::new(None));
    let config = match trust.pin {
        Some(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin,
                presented: presented.clone(),
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        None => builder.with_root_certificates(roots(&trust.authorities)).with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match connector.connect(name, tcp).await {
        Ok(tls) => Ok(Box::new(tls)),
        Err(e) => Err(handshake_error(e, trust.pin, &presented)),
    }
}

fn roots(authorities: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let (added, ignored) = roots.add_parsable_certificates(authorities.iter().cloned());
    if ignored > 0 {
        tracing::warn!(added, ignored, "some added certificate authorities do not read");
    }
    roots
}

/// A failed handshake: the certificate's fault, or the network's.
fn handshake_error(
    e: std::io::Error,
    pin: Option<CertificatePin>,
    presented: &Mutex<Option<CertificatePin>>,
) -> ConnectError {
    let presented = presented.lock().ok().and_then(|p| *p);
    if let (Some(expected), Some(presented)) = (pin, presented) {
        return CertificateError::PinMismatch { expected: expected.colon_hex(), presented: presented.colon_hex() }
            .into();
    }
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(reason)) => CertificateError::Untrusted(format!("{reason:?}")).into(),
        _ => ConnectError::Network(e.to_string()),
    }
}

/// Accepts exactly one certificate, by its fingerprint; handshake signatures are still checked
/// against it, so the server must hold its key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: CertificatePin,
    /// What a refused server presented, for the error message.
    presented: Arc<Mutex<Option<CertificatePin>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The pin is the server's identity: its name (an office IP address) and dates do not
        // matter, and a self-signed certificate has no chain.
        if self.pin.matches(end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        if let Ok(mut presented) = self.presented.lock() {
            *presented = Some(CertificatePin::of_certificate(end_entity.as_ref()));
        }
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
