//! The district as a relay reaches it: its address (`--upstream`, the base URL or the sync URL,
//! both work), JSON over HTTP (enrollment, the feed) and the `/sync` WebSocket.
//!
//! `https://` and `wss://` addresses are reached over TLS (rustls, `ring`): the district's
//! certificate must be vouched for by the Mozilla roots compiled in (`webpki-roots`) or by an
//! authority given with `--upstream-ca` (a district's own); a refused certificate ends the
//! handshake before the token or a code is written.
//!
//! Answers are bounded before they are read ([`MAX_ANSWER_BYTES`], and the sync protocol's own
//! message bound); every call has a timeout.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::accounts::feed::Feed;

/// The most an HTTP answer from the district may hold (the feed of a large commune is far less).
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// Time allowed for one HTTP call or for opening the WebSocket.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the district could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The address is not one the relay can use.
    #[error("{0:?} is not a district address: give http(s)://HOST[:PORT] or ws(s)://HOST[:PORT]/sync")]
    Address(String),
    /// The certificate authorities given cannot be read.
    #[error("the certificate authorities given do not read as PEM certificates: {0}")]
    Authorities(String),
    /// The district's certificate was refused, or the TLS handshake failed: nothing was sent.
    #[error("TLS with {url}: {reason}; nothing was sent")]
    Tls {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The district could not be reached.
    #[error("cannot reach the district at {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The district refused the relay's token (revoked, or not a relay's).
    #[error("the district refused this relay (HTTP {status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
    /// The district answered with something else.
    #[error("the district answered HTTP {status}: {message}")]
    Failed {
        /// HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
    /// The district did not answer in time.
    #[error("the district did not answer within {} s", CALL_TIMEOUT.as_secs())]
    Timeout,
}

/// The district's address, and whom to believe when it speaks TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `http(s)://host:port` and any path prefix, without a trailing slash.
    base: String,
    host: String,
    port: u16,
    prefix: String,
    tls: bool,
    /// Authorities believed besides the compiled-in roots.
    authorities: Vec<CertificateDer<'static>>,
}

/// A byte stream to the district, clear or encrypted.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What `POST /api/enroll` answers, as far as the relay reads it.
#[derive(Debug, Deserialize)]
pub struct Enrolled {
    /// The device token.
    pub token: String,
    /// The device id.
    pub device: String,
    /// The person enrolled (the relay's).
    pub collector: String,
}

/// A WebSocket to the district's `/sync`.
pub type SyncSocket = WebSocketStream<Box<dyn Stream>>;

impl Upstream {
    /// Reads `--upstream`: `http(s)://host[:port][/prefix]`, or the sync URL
    /// `ws(s)://host[:port][/prefix]/sync`.
    pub fn parse(text: &str) -> Result<Upstream, UpstreamError> {
        let bad = || UpstreamError::Address(text.to_owned());
        let trimmed = text.trim();
        let (rest, tls) = if let Some(rest) = trimmed.strip_prefix("http://").or_else(|| trimmed.strip_prefix("ws://"))
        {
            (rest, false)
        } else if let Some(rest) = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("wss://")) {
            (rest, true)
        } else {
            return Err(bad());
        };
        if rest.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#' || c == '@') {
            return Err(bad());
        }
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix("sync").map_or(path, |p| p.trim_end_matches('/'));
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host.to_owned(), port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority.to_owned(), default_port),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let prefix = if path.is_empty() { String::new() } else { format!("/{path}") };
        let scheme = if tls { "https" } else { "http" };
        let base = format!("{scheme}://{host}:{port}{prefix}");
        Ok(Upstream { base, host, port, prefix, tls, authorities: Vec::new() })
    }

    /// The same address, also believing the authorities in `pem` (PEM certificates).
    pub fn with_authorities(mut self, pem: &[u8]) -> Result<Upstream, UpstreamError> {
        let read: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
        let read = read.map_err(|e| UpstreamError::Authorities(e.to_string()))?;
        if read.is_empty() {
            return Err(UpstreamError::Authorities("no certificate in it".into()));
        }
        self.authorities.extend(read);
        Ok(self)
    }

    /// The base URL, as kept in the relay's identity.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The sync URL.
    pub fn sync_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}:{}{}/sync", self.host, self.port, self.prefix)
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, UpstreamError> {
        let unreachable = |reason: String| UpstreamError::Unreachable { url: self.base.clone(), reason };
        let tcp = match tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect((self.host.as_str(), self.port))).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Ok(Ok(stream)) => stream,
        };
        let _ = tcp.set_nodelay(true);
        if !self.tls {
            return Ok(Box::new(tcp));
        }
        let refused = |reason: String| UpstreamError::Tls { url: self.base.clone(), reason };
        let host = self.host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let name = ServerName::try_from(host).map_err(|e| refused(e.to_string()))?;
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let (_, ignored) = roots.add_parsable_certificates(self.authorities.iter().cloned());
        if ignored > 0 {
            tracing::warn!(ignored, "some certificate authorities given with --upstream-ca do not read");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| refused(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        match tokio::time::timeout(CALL_TIMEOUT, connector.connect(name, tcp)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(refused(e.to_string())),
            Ok(Ok(stream)) => Ok(Box::new(stream)),
        }
    }

    /// One JSON call: `method path` with `body`, presenting `token`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Result<T, UpstreamError> {
        let unreachable = |reason: String| UpstreamError::Unreachable { url: self.base.clone(), reason };
        let exchange = async {
            let stream = self.connect().await?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let mut request = hyper::Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.prefix))
                .header("host", format!("{}:{}", self.host, self.port))
                .header("accept", "application/json")
                .header("content-type", "application/json");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let request = request
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| unreachable(e.to_string()))?;
            let response = sender.send_request(request).await.map_err(|e| unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, UpstreamError>((status, bytes))
        };
        let (status, bytes) =
            tokio::time::timeout(CALL_TIMEOUT, exchange).await.map_err(|_| UpstreamError::Timeout)??;
        let message = || {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect())
        };
        match status {
            200..=299 => serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Failed {
                status,
                message: format!("an answer the relay cannot read: {e}"),
            }),
            401 | 403 => Err(UpstreamError::Refused { status, message: message() }),
            _ => Err(UpstreamError::Failed { status, message: message() }),
        }
    }

    /// `POST /api/enroll` with a phone's body, as it came to the relay: the district's status
    /// and answer, unread.
    pub async fn forward_enroll(&self, body: Vec<u8>) -> Result<(u16, Bytes), UpstreamError> {
        let unreachable = |reason: String| UpstreamError::Unreachable { url: self.base.clone(), reason };
        let exchange = async {
            let stream = self.connect().await?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let request = hyper::Request::builder()
                .method("POST")
                .uri(format!("{}/api/enroll", self.prefix))
                .header("host", format!("{}:{}", self.host, self.port))
                .header("accept", "application/json")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| unreachable(e.to_string()))?;
            let response = sender.send_request(request).await.map_err(|e| unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, UpstreamError>((status, bytes))
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange).await.map_err(|_| UpstreamError::Timeout)?
    }

    /// `POST /api/enroll` with a relay enrollment code.
    pub async fn enroll(&self, code: &str, actor: &str, name: &str) -> Result<Enrolled, UpstreamError> {
        let body = serde_json::json!({ "code": code.trim(), "actor_ids": [actor], "device_name": name }).to_string();
        self.call("POST", "/api/enroll", None, Some(body)).await
    }

    /// `GET /api/relay/feed` with the relay's token.
    pub async fn feed(&self, token: &str) -> Result<Feed, UpstreamError> {
        self.call("GET", "/api/relay/feed", Some(token), None).await
    }

    /// Opens `/sync` with the relay's token; messages are bounded by `max_message_bytes`.
    pub async fn open_sync(&self, token: &str, max_message_bytes: usize) -> Result<SyncSocket, UpstreamError> {
        let url = self.sync_url();
        let unreachable = |reason: String| UpstreamError::Unreachable { url: url.clone(), reason };
        let mut request = url.as_str().into_client_request().map_err(|e| unreachable(e.to_string()))?;
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| unreachable(e.to_string()))?;
        request.headers_mut().insert("authorization", value);
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message_bytes))
            .max_frame_size(Some(max_message_bytes));
        let open = async {
            let stream = self.connect().await?;
            match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
                Ok((socket, _)) => Ok(socket),
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    let status = response.status().as_u16();
                    let message = format!("HTTP {status} on {url}");
                    if matches!(status, 401 | 403) {
                        Err(UpstreamError::Refused { status, message })
                    } else {
                        Err(UpstreamError::Failed { status, message })
                    }
                }
                Err(e) => Err(unreachable(e.to_string())),
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, open).await.map_err(|_| UpstreamError::Timeout)?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_and_the_sync_url_name_the_same_district() {
        for (given, base, sync) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080", "ws://127.0.0.1:8080/sync"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080", "ws://127.0.0.1:8080/sync"),
            ("ws://127.0.0.1:8080/sync", "http://127.0.0.1:8080", "ws://127.0.0.1:8080/sync"),
            ("http://district.example", "http://district.example:80", "ws://district.example:80/sync"),
            (
                "ws://district.example/hamlet/sync/",
                "http://district.example:80/hamlet",
                "ws://district.example:80/hamlet/sync",
            ),
        ] {
            let upstream = Upstream::parse(given).unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!((upstream.base(), upstream.sync_url().as_str()), (base, sync), "{given}");
        }
        for bad in ["district.example", "ftp://x", "http://", "http://a:b", "http://u@host", "http://h/?x"] {
            assert!(matches!(Upstream::parse(bad), Err(UpstreamError::Address(_))), "{bad}");
        }
        let tls = Upstream::parse("wss://district.example/sync").unwrap();
        assert_eq!(
            (tls.base(), tls.sync_url().as_str()),
            ("https://district.example:443", "wss://district.example:443/sync")
        );
        assert_eq!(Upstream::parse("https://district.example:8443/").unwrap().base(), "https://district.example:8443");
        assert!(matches!(
            Upstream::parse("https://d.example").unwrap().with_authorities(b"not a certificate"),
            Err(UpstreamError::Authorities(_))
        ));
    }
}
