//! What an enrollment QR code holds, shared by the server that draws it and the apps that scan it.
//!
//! With a public URL configured (`--public-url`), the code is a link into the web collector:
//! `https://district.example/collect/#enroll=ABCDE-FGHJK`. A phone's camera app opens it in the
//! browser; the Hamlet apps read the server and the code out of it, so the collector types
//! nothing. The code sits in the fragment, which browsers never send, so it stays out of proxy
//! and server logs. Without a public URL the server cannot know the address phones reach it by,
//! and the QR code holds the code alone (`ABCDE-FGHJK`); the collector then types the server.

use std::fmt;

/// Where the web collector lives on a server, and the fragment key of the code.
const LINK_PATH: &str = "/collect/#enroll=";

/// The longest text read as an enrollment code or link: a scanned QR code is untrusted input.
pub const MAX_LINK_CHARS: usize = 512;

/// An enrollment code, with the server to enroll with when the QR code names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentLink {
    /// The server's public URL (`https://host[:port][/prefix]`, no trailing slash), if known.
    pub server: Option<String>,
    /// The one-time code, as issued (`XXXXX-XXXXX`).
    pub code: String,
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
}

impl EnrollmentLink {
    /// The link of `code` on the server at `public_url` (or the bare code without one).
    pub fn new(public_url: Option<&str>, code: &str) -> EnrollmentLink {
        EnrollmentLink { server: public_url.map(|u| u.trim_end_matches('/').to_owned()), code: code.to_owned() }
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
        let letters: String = code.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
        if letters.len() != 10 || !letters.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(LinkError::NotACode);
        }
        let upper = letters.to_ascii_uppercase();
        Ok(EnrollmentLink { server, code: format!("{}-{}", &upper[..5], &upper[5..]) })
    }
}

impl fmt::Display for EnrollmentLink {
    /// What the QR code holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.server {
            Some(server) => write!(f, "{server}{LINK_PATH}{}", self.code),
            None => f.write_str(&self.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<(Option<&str>, &str), LinkError>) {
        let got = EnrollmentLink::parse(text);
        let expected = expected.map(|(s, c)| EnrollmentLink { server: s.map(str::to_owned), code: c.to_owned() });
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
}
