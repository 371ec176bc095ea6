//! Server addresses as collectors type them: `192.168.1.10:8080`, `http://xa-a.local:8080`,
//! `ws://host:8080/sync`, `https://district.example`. One address serves both enrollment (HTTP)
//! and sync (WebSocket), in clear text (`http`, `ws`) or over TLS (`https`, `wss`).

use std::fmt;

/// An address that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Empty, or not `host:port` with an optional scheme.
    #[error("{0:?} is not a server address (expected host:port, http://host:port, https://host:port or ws://, wss://)")]
    Invalid(String),
    /// A pinned certificate asked for on a clear-text address.
    #[error("{0:?} is not encrypted (http://, ws://): a server with a pinned certificate is reached by https://")]
    PinWithoutTls(String),
}

/// Clear text or TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `http://` and `ws://`.
    Plain,
    /// `https://` and `wss://`.
    Tls,
}

/// A server: scheme, host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddress {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl ServerAddress {
    /// Reads an address; without a scheme it is clear text, and the port defaults to 80 (443
    /// with TLS).
    pub fn parse(text: &str) -> Result<ServerAddress, AddressError> {
        ServerAddress::parse_with_default(text, Scheme::Plain)
    }

    /// Reads an address for a server whose certificate is pinned: without a scheme it is TLS,
    /// and an explicit clear-text scheme is refused (the pin would protect nothing).
    pub fn parse_pinned(text: &str) -> Result<ServerAddress, AddressError> {
        let address = ServerAddress::parse_with_default(text, Scheme::Tls)?;
        if address.scheme != Scheme::Tls {
            return Err(AddressError::PinWithoutTls(text.to_owned()));
        }
        Ok(address)
    }

    fn parse_with_default(text: &str, default: Scheme) -> Result<ServerAddress, AddressError> {
        let trimmed = text.trim();
        let invalid = || AddressError::Invalid(text.to_owned());
        let (scheme, rest) =
            if let Some(rest) = trimmed.strip_prefix("http://").or_else(|| trimmed.strip_prefix("ws://")) {
                (Scheme::Plain, rest)
            } else if let Some(rest) = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("wss://")) {
                (Scheme::Tls, rest)
            } else if trimmed.contains("://") {
                return Err(invalid());
            } else {
                (default, trimmed)
            };
        let default_port = match scheme {
            Scheme::Plain => 80,
            Scheme::Tls => 443,
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
            return Err(invalid());
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port: "[::1]".
            Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().map_err(|_| invalid())?),
            _ => (authority, default_port),
        };
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(ServerAddress { scheme, host: host.to_owned(), port })
    }

    /// Clear text or TLS.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host as TLS names it: a DNS name or an IP address, without an IPv6 literal's
    /// brackets.
    pub fn host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// `host:port`, to connect a socket to.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The WebSocket sync endpoint.
    pub fn sync_url(&self) -> String {
        let ws = match self.scheme {
            Scheme::Plain => "ws",
            Scheme::Tls => "wss",
        };
        format!("{ws}://{}/sync", self.authority())
    }

    /// The enrollment endpoint.
    pub fn enroll_url(&self) -> String {
        format!("{self}/api/enroll")
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let http = match self.scheme {
            Scheme::Plain => "http",
            Scheme::Tls => "https",
        };
        write!(f, "{http}://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, ()>) {
        let got = ServerAddress::parse(input).map(|a| a.authority()).map_err(|_| ());
        assert_eq!(got.as_deref().map_err(|_| ()), expected, "{input}");
    }

    #[test]
    fn addresses_as_collectors_type_them() {
        check("192.168.1.10:8080", Ok("192.168.1.10:8080"));
        check(" http://xa-a.local:8080/ ", Ok("xa-a.local:8080"));
        check("ws://127.0.0.1:9000/sync", Ok("127.0.0.1:9000"));
        check("district.example", Ok("district.example:80"));
        check("[::1]:8080", Ok("[::1]:8080"));
        check("", Err(()));
        check("ftp://x:1", Err(()));
        check("host:99999", Err(()));
        check("user@host:1", Err(()));
        check("https://district.example", Ok("district.example:443"));
        check("wss://10.0.0.2:8443/sync", Ok("10.0.0.2:8443"));
        let a = ServerAddress::parse("h:1").expect("valid");
        assert_eq!((a.sync_url().as_str(), a.enroll_url().as_str()), ("ws://h:1/sync", "http://h:1/api/enroll"));
        let a = ServerAddress::parse("https://h:1/").expect("valid");
        assert_eq!((a.sync_url().as_str(), a.enroll_url().as_str()), ("wss://h:1/sync", "https://h:1/api/enroll"));
        assert_eq!(ServerAddress::parse("wss://[::1]:9").expect("valid").host(), "::1");
        // An old store's address reads back as it was written.
        assert_eq!(ServerAddress::parse("http://h:1").expect("valid").to_string(), "http://h:1");
        assert_ne!(ServerAddress::parse("http://h:1"), ServerAddress::parse("https://h:1"));
    }

    #[test]
    fn a_pinned_server_is_reached_by_tls() {
        assert_eq!(ServerAddress::parse_pinned("10.0.0.2:8443").expect("valid").to_string(), "https://10.0.0.2:8443");
        assert_eq!(ServerAddress::parse_pinned("10.0.0.2").expect("valid").authority(), "10.0.0.2:443");
        assert!(matches!(ServerAddress::parse_pinned("http://10.0.0.2"), Err(AddressError::PinWithoutTls(_))));
        assert!(matches!(ServerAddress::parse_pinned("ws://10.0.0.2"), Err(AddressError::PinWithoutTls(_))));
    }
}
