//! The district as a relay reaches it: its address (`--upstream`, the base URL or the sync URL,
//! both work), JSON over HTTP (enrollment, the feed) and the `/sync` WebSocket.
//!
//! Answers are bounded before they are read ([`MAX_ANSWER_BYTES`], and the sync protocol's own
//! message bound); every call has a timeout.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
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
    #[error("{0:?} is not a district address: give http://HOST[:PORT] or ws://HOST[:PORT]/sync")]
    Address(String),
    /// The address needs TLS, which the relay's uplink does not speak yet.
    #[error(
        "{0}: the relay's uplink does not speak TLS yet; reach the district over http:// (a VPN or the office's tunnel)"
    )]
    Tls(String),
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

/// The district's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `http://host:port` and any path prefix, without a trailing slash.
    base: String,
    host: String,
    port: u16,
    prefix: String,
}

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
pub type SyncSocket = WebSocketStream<TcpStream>;

impl Upstream {
    /// Reads `--upstream`: `http://host[:port][/prefix]`, or the sync URL
    /// `ws://host[:port][/prefix]/sync`; `https://` and `wss://` are refused for now.
    pub fn parse(text: &str) -> Result<Upstream, UpstreamError> {
        let bad = || UpstreamError::Address(text.to_owned());
        let trimmed = text.trim();
        let rest = if let Some(rest) = trimmed.strip_prefix("http://").or_else(|| trimmed.strip_prefix("ws://")) {
            rest
        } else if trimmed.starts_with("https://") || trimmed.starts_with("wss://") {
            return Err(UpstreamError::Tls(trimmed.to_owned()));
        } else {
            return Err(bad());
        };
        if rest.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#' || c == '@') {
            return Err(bad());
        }
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix("sync").map_or(path, |p| p.trim_end_matches('/'));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host.to_owned(), port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority.to_owned(), 80),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let prefix = if path.is_empty() { String::new() } else { format!("/{path}") };
        let base = format!("http://{host}:{port}{prefix}");
        Ok(Upstream { base, host, port, prefix })
    }

    /// The base URL, as kept in the relay's identity.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The sync URL.
    pub fn sync_url(&self) -> String {
        format!("ws://{}:{}{}/sync", self.host, self.port, self.prefix)
    }

    async fn connect(&self) -> Result<TcpStream, UpstreamError> {
        let unreachable = |reason: String| UpstreamError::Unreachable { url: self.base.clone(), reason };
        match tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect((self.host.as_str(), self.port))).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Ok(Ok(stream)) => Ok(stream),
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
        assert!(matches!(Upstream::parse("https://district.example"), Err(UpstreamError::Tls(_))));
        assert!(matches!(Upstream::parse("wss://district.example/sync"), Err(UpstreamError::Tls(_))));
    }
}
