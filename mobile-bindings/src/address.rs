//! Server addresses as collectors type them: `192.168.1.10:8080`, `http://xa-a.local:8080`,
//! `ws://host:8080/sync`. One address serves both enrollment (HTTP) and sync (WebSocket).

use std::fmt;

/// An address that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Empty, or not `host:port` with an optional scheme.
    #[error("{0:?} is not a server address (expected host:port, http://host:port or ws://host:port)")]
    Invalid(String),
    /// `https://` and `wss://` need TLS, which this build does not include.
    #[error(
        "{0:?}: encrypted connections (https, wss) are not supported by this build; use http:// on the office network"
    )]
    Tls(String),
}

/// A server: host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddress {
    host: String,
    port: u16,
}

impl ServerAddress {
    /// Reads an address; the port defaults to 80.
    pub fn parse(text: &str) -> Result<ServerAddress, AddressError> {
        let trimmed = text.trim();
        let invalid = || AddressError::Invalid(text.to_owned());
        let rest = if let Some(rest) = trimmed.strip_prefix("http://").or_else(|| trimmed.strip_prefix("ws://")) {
            rest
        } else if trimmed.starts_with("https://") || trimmed.starts_with("wss://") {
            return Err(AddressError::Tls(text.to_owned()));
        } else if trimmed.contains("://") {
            return Err(invalid());
        } else {
            trimmed
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
            return Err(invalid());
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port: "[::1]".
            Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().map_err(|_| invalid())?),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(ServerAddress { host: host.to_owned(), port })
    }

    /// `host:port`, to connect a socket to.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The WebSocket sync endpoint.
    pub fn sync_url(&self) -> String {
        format!("ws://{}/sync", self.authority())
    }

    /// The enrollment endpoint.
    pub fn enroll_url(&self) -> String {
        format!("http://{}/api/enroll", self.authority())
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.authority())
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
        assert!(matches!(ServerAddress::parse("https://x"), Err(AddressError::Tls(_))));
        let a = ServerAddress::parse("h:1").expect("valid");
        assert_eq!((a.sync_url().as_str(), a.enroll_url().as_str()), ("ws://h:1/sync", "http://h:1/api/enroll"));
    }
}
