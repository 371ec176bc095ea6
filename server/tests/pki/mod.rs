//! Certificates for the TLS tests, made with rcgen: a district's own authority and what it
//! signs, and self-signed certificates as an office server or relay makes them. Compiled into
//! the server's and the phone library's tests alike.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use hamlet_sync_core::enrollment::CertificatePin;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The names test servers are reached by.
pub const NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// A certificate and its key.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Pair {
    /// Its SHA-256 fingerprint.
    pub fn pin(&self) -> CertificatePin {
        CertificatePin::of_certificate(&self.der)
    }

    /// Writes `cert.pem` and `key.pem` into `dir` (replacing what is there); returns the paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        // Each file replaced in one rename, as a careful admin (or certbot) does.
        for (path, text) in [(&key, &self.key_pem), (&cert, &self.cert_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (cert, key)
    }
}

fn params(names: &[&str], common_name: &str) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params
}

/// A self-signed certificate for `names` (an office server's own).
pub fn self_signed(names: &[&str]) -> Pair {
    let key = KeyPair::generate().unwrap();
    let cert = params(names, "hamlet office server").self_signed(&key).unwrap();
    Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
}

/// A certificate authority of the district's own.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub pem: String,
}

impl Authority {
    pub fn new() -> Authority {
        let mut params = params(&[], "Hamlet test district authority");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Authority { issuer, pem }
    }

    /// A server certificate for `names`, signed by this authority.
    pub fn sign(&self, names: &[&str]) -> Pair {
        let key = KeyPair::generate().unwrap();
        let cert = params(names, "hamlet district server").signed_by(&key, &self.issuer).unwrap();
        Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
    }

    /// Writes the authority's certificate to `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).unwrap();
        path.to_owned()
    }
}
