//! What an enrollment QR code holds, shared by the server that draws it and the apps that scan it.
//!
//! With a public URL configured (`--public-url`), the code is a link into the web collector:
//! `https://district.example/collect/#enroll=ABCDE-FGHJK`. A phone's camera app opens it in the
//! browser; the Hamlet apps read the server and the code out of it, so the collector types
//! nothing. The code sits in the fragment, which browsers never send, so it stays out of proxy
//! and server logs. Without a public URL the server cannot know the address phones reach it by,
//! and the QR code holds the code alone (`ABCDE-FGHJK`); the collector then types the server.
//!
//! A server whose certificate no public authority signed (a relay or a small office server on
//! the LAN, with a self-signed certificate) adds the SHA-256 fingerprint of its certificate:
//! `https://192.168.1.10:8443/collect/#enroll=ABCDE-FGHJK&pin=<64 hex digits>`, or
//! `ABCDE-FGHJK&pin=<64 hex digits>` without a public URL. A phone that enrolls from such a code
//! *pins* that certificate: it talks to the server only when the server presents exactly that
//! certificate, and sends nothing otherwise. The fingerprint comes from the district, through the
//! QR code, never from the first connection: there is no trust on first use. Codes without a pin
//! read as before.
//!
//! ```
//! use hamlet_sync_core::enrollment::{CertificatePin, EnrollmentLink};
//!
//! let pin = CertificatePin::of_certificate(b"the certificate's DER bytes");
//! let link = EnrollmentLink::new(Some("https://10.0.0.2:8443"), "ABCDE-FGHJK").with_pin(Some(pin));
//! let read = EnrollmentLink::parse(&link.to_string()).unwrap();
//! assert_eq!(read.pin, Some(pin));
//! assert!(read.pin.unwrap().matches(b"the certificate's DER bytes"));
//! assert_eq!(EnrollmentLink::parse("abcde-fghjk").unwrap().pin, None);
//! ```

use std::fmt;

use sha2::{Digest, Sha256};

/// Where the web collector lives on a server, and the fragment key of the code.
const LINK_PATH: &str = "/collect/#enroll=";

/// The parameter after the code that carries the certificate's fingerprint.
const PIN_PARAM: &str = "pin=";

/// The longest text read as an enrollment code or link: a scanned QR code is untrusted input.
pub const MAX_LINK_CHARS: usize = 512;

/// The SHA-256 fingerprint of a server's TLS certificate (of its DER bytes, as
/// `openssl x509 -noout -fingerprint -sha256` computes it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificatePin([u8; 32]);

/// Text that is not a SHA-256 fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a SHA-256 certificate fingerprint (64 hexadecimal digits, colons allowed)")]
pub struct PinError(pub String);

impl CertificatePin {
    /// The fingerprint of a certificate, from its DER bytes.
    pub fn of_certificate(der: &[u8]) -> CertificatePin {
        CertificatePin(Sha256::digest(der).into())
    }

    /// Reads a fingerprint as people copy it: 64 hexadecimal digits in any case, with or
    /// without colons between the bytes (`AB:CD:…`, as openssl prints it), optionally after
    /// `sha256:` or `SHA256 Fingerprint=`.
    pub fn parse(text: &str) -> Result<CertificatePin, PinError> {
        let error = || PinError(text.chars().take(120).collect());
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        let digits =
            ["sha256 fingerprint=", "sha256:"].iter().find_map(|prefix| lower.strip_prefix(prefix)).unwrap_or(&lower);
        let digits: String = digits.chars().filter(|c| *c != ':').collect();
        if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(error());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| error())?;
        }
        Ok(CertificatePin(bytes))
    }

    /// Whether `der` is the pinned certificate.
    pub fn matches(&self, der: &[u8]) -> bool {
        CertificatePin::of_certificate(der) == *self
    }

    /// The 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// As openssl prints it, for people to compare: `AB:CD:…`.
    pub fn colon_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }
}

impl fmt::Display for CertificatePin {
    /// 64 lowercase hexadecimal digits, as enrollment links carry it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CertificatePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificatePin({self})")
    }
}

/// An enrollment code, with the server to enroll with when the QR code names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentLink {
    /// The server's public URL (`https://host[:port][/prefix]`, no trailing slash), if known.
    pub server: Option<String>,
    /// The one-time code, as issued (`XXXXX-XXXXX`).
    pub code: String,
    /// The fingerprint of the server's certificate, for a server the phone must pin.
    pub pin: Option<CertificatePin>,
}

/// Text that is neither an enrollment code nor an enrollment link.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Longer than [`MAX_LINK_CHARS`].
    #[error("{0} characters is too long for an enrollment code")]
    TooLong(usize),
    /// Not a code, nor a link of the form `<server>/collect/#enroll=<code>`.
    #[error("this is not a Hamlet enrollment code")]
    NotACode,
    /// A certificate fingerprint that does not read.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// A pinned certificate on a server reached without TLS (`http://`): the pin would protect
    /// nothing.
    #[error("this enrollment code pins a certificate, but its server is not https://")]
    PinWithoutTls,
}

impl EnrollmentLink {
    /// The link of `code` on the server at `public_url` (or the bare code without one).
    pub fn new(public_url: Option<&str>, code: &str) -> EnrollmentLink {
        EnrollmentLink {
            server: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            code: code.to_owned(),
            pin: None,
        }
    }

    /// The same link, carrying `pin` (the server's certificate fingerprint) when given.
    pub fn with_pin(self, pin: Option<CertificatePin>) -> EnrollmentLink {
        EnrollmentLink { pin, ..self }
    }

    /// Reads what a QR code or a collector gave: a link, or a code typed by hand (any case,
    /// with or without the dash and spaces).
    pub fn parse(text: &str) -> Result<EnrollmentLink, LinkError> {
        let chars = text.chars().count();
        if chars > MAX_LINK_CHARS {
            return Err(LinkError::TooLong(chars));
        }
        let text = text.trim();
        let (server, code) = match text.split_once(LINK_PATH) {
            Some((server, code)) => {
                let host = server.strip_prefix("https://").or_else(|| server.strip_prefix("http://"));
                match host {
                    Some(h)
                        if !h.is_empty()
                            && !h.contains(|c: char| c.is_whitespace() || c.is_control() || "?#@".contains(c)) =>
                    {
                        (Some(server.to_owned()), code)
                    }
                    _ => return Err(LinkError::NotACode),
                }
            }
            None if text.contains("://") => return Err(LinkError::NotACode),
            None => (None, text),
        };
        // After the code, `&`-separated parameters; parameters this version does not know are
        // left for later versions.
        let mut parts = code.split('&');
        let code = parts.next().unwrap_or_default();
        let mut pin = None;
        for param in parts {
            if let Some(value) = param.trim().strip_prefix(PIN_PARAM) {
                if pin.is_some() {
                    return Err(LinkError::NotACode);
                }
                pin = Some(CertificatePin::parse(value)?);
            }
        }
        if pin.is_some() && server.as_deref().is_some_and(|s| s.starts_with("http://")) {
            return Err(LinkError::PinWithoutTls);
        }
        let letters: String = code.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
        if letters.len() != 10 || !letters.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(LinkError::NotACode);
        }
        let upper = letters.to_ascii_uppercase();
        Ok(EnrollmentLink { server, code: format!("{}-{}", &upper[..5], &upper[5..]), pin })
    }
}

impl fmt::Display for EnrollmentLink {
    /// What the QR code holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.server {
            Some(server) => write!(f, "{server}{LINK_PATH}{}", self.code)?,
            None => f.write_str(&self.code)?,
        }
        match &self.pin {
            Some(pin) => write!(f, "&{PIN_PARAM}{pin}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// A QR code or a typed text is anything a camera or a person gives: it never panics the
        /// parser, and every link the server issues reads back as issued.
        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,600}", tail in "(&pin=[0-9a-fA-F:]{0,70})?.{0,20}") {
            let _ = EnrollmentLink::parse(&text);
            let _ = EnrollmentLink::parse(&format!("https://x/collect/#enroll=ABCDE-12345{tail}"));
            let _ = CertificatePin::parse(&text);
        }

        #[test]
        fn issued_links_read_back(
            code in "[A-Z0-9]{10}",
            url in prop::option::of("https?://[a-z]{1,12}(\\.[a-z]{2,5})?(:[0-9]{2,5})?"),
            pin in prop::option::of(any::<[u8; 32]>()),
        ) {
            let code = format!("{}-{}", &code[..5], &code[5..]);
            // A pin is never issued for an http:// server.
            let pin = pin.filter(|_| url.as_deref().is_none_or(|u| u.starts_with("https://"))).map(CertificatePin);
            let link = EnrollmentLink::new(url.as_deref(), &code).with_pin(pin);
            prop_assert_eq!(EnrollmentLink::parse(&link.to_string()), Ok(link));
        }
    }

    fn check(text: &str, expected: Result<(Option<&str>, &str), LinkError>) {
        let got = EnrollmentLink::parse(text);
        let expected =
            expected.map(|(s, c)| EnrollmentLink { server: s.map(str::to_owned), code: c.to_owned(), pin: None });
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn links_and_codes() {
        check("https://huyen.example/collect/#enroll=ABCDE-FGHJK", Ok((Some("https://huyen.example"), "ABCDE-FGHJK")));
        check(
            "https://huyen.example:8443/hamlet/collect/#enroll=ABCDE-FGHJK",
            Ok((Some("https://huyen.example:8443/hamlet"), "ABCDE-FGHJK")),
        );
        check(
            "http://192.168.1.10:8080/collect/#enroll=abcdefghjk",
            Ok((Some("http://192.168.1.10:8080"), "ABCDE-FGHJK")),
        );
        check("  abcde fghjk ", Ok((None, "ABCDE-FGHJK")));
        check("ABCDE-FGHJK", Ok((None, "ABCDE-FGHJK")));
        check("ftp://x/collect/#enroll=ABCDE-FGHJK", Err(LinkError::NotACode));
        check("https://evil@x/collect/#enroll=ABCDE-FGHJK", Err(LinkError::NotACode));
        check("https:///collect/#enroll=ABCDE-FGHJK", Err(LinkError::NotACode));
        check("https://x.example/other", Err(LinkError::NotACode));
        check("ABCDE", Err(LinkError::NotACode));
        check("ABCDE-FGHJK-LMNPQ", Err(LinkError::NotACode));
        check("ÀBCDE-FGHJK", Err(LinkError::NotACode));
        check(&"A".repeat(10_000), Err(LinkError::TooLong(10_000)));
    }

    #[test]
    fn what_the_server_draws_reads_back() {
        for server in [None, Some("https://huyen.example"), Some("http://10.0.0.2:8080/sub")] {
            let link = EnrollmentLink::new(server, "ABCDE-FGHJK");
            assert_eq!(EnrollmentLink::parse(&link.to_string()), Ok(link.clone()), "{link}");
        }
        assert_eq!(
            EnrollmentLink::new(Some("https://x.example/"), "ABCDE-FGHJK").to_string(),
            "https://x.example/collect/#enroll=ABCDE-FGHJK"
        );
    }

    const HEX: &str = "3f2a0b1c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

    #[test]
    fn fingerprints_as_people_copy_them() {
        let pin = CertificatePin::parse(HEX).expect("plain hex");
        assert_eq!(pin.to_string(), HEX);
        let colons = pin.colon_hex();
        assert_eq!(&colons[..6], "3F:2A:");
        for text in
            [colons.clone(), format!("sha256:{HEX}"), format!("SHA256 Fingerprint={colons}"), HEX.to_uppercase()]
        {
            assert_eq!(CertificatePin::parse(&text), Ok(pin), "{text}");
        }
        for bad in ["", "3f2a", &HEX[1..], &format!("{HEX}00"), &HEX.replace('3', "g")] {
            assert!(CertificatePin::parse(bad).is_err(), "{bad}");
        }
        assert!(CertificatePin::of_certificate(b"der").matches(b"der"));
        assert!(!CertificatePin::of_certificate(b"der").matches(b"other"));
    }

    #[test]
    fn links_with_a_pin() {
        let pin = CertificatePin::parse(HEX).ok();
        let read = |text: &str| EnrollmentLink::parse(text);
        let link = read(&format!("https://10.0.0.2:8443/collect/#enroll=abcde-fghjk&pin={HEX}")).expect("reads");
        assert_eq!(
            (link.server.as_deref(), link.code.as_str(), link.pin),
            (Some("https://10.0.0.2:8443"), "ABCDE-FGHJK", pin)
        );
        let bare = read(&format!("ABCDE-FGHJK&pin={}", HEX.to_uppercase())).expect("reads");
        assert_eq!((bare.server, bare.pin), (None, pin));
        // Parameters of later versions are left alone; a pin that does not read is refused.
        assert_eq!(read(&format!("ABCDE-FGHJK&later=1&pin={HEX}")).expect("reads").pin, pin);
        assert!(matches!(read("ABCDE-FGHJK&pin=12ab"), Err(LinkError::Pin(_))));
        assert_eq!(read(&format!("ABCDE-FGHJK&pin={HEX}&pin={HEX}")), Err(LinkError::NotACode));
        assert_eq!(
            read(&format!("http://10.0.0.2/collect/#enroll=ABCDE-FGHJK&pin={HEX}")),
            Err(LinkError::PinWithoutTls)
        );
        for server in [None, Some("https://10.0.0.2:8443")] {
            let link = EnrollmentLink::new(server, "ABCDE-FGHJK").with_pin(pin);
            assert_eq!(read(&link.to_string()), Ok(link.clone()), "{link}");
        }
    }
}
