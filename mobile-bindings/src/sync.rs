//! Sync with a server or relay: the automerge-repo protocol over a WebSocket, driven by the
//! sans-I/O [`ClientSession`] of sync-core. This module only moves bytes, keeps time and stores
//! what the session says to store.
//!
//! Every step is stored before the next message leaves: changes received, the sync state, and
//! the receipt of what the server acknowledged. A connection cut at any point therefore loses
//! nothing, and the next attempt starts from the kept sync state: what the server acknowledged
//! is not sent again. Slow links get generous timeouts, and failed attempts are retried with
//! exponential back-off.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hamlet_sync_core::DocumentId;
use hamlet_sync_core::client::{self, ClientError, ClientSession, Effect, Persist, Phase};
use hamlet_sync_core::session::encode_heads;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::address::ServerAddress;
use crate::collector::{Body, CollectorError, Shared, index_row};
use crate::store::DocWrite;
use crate::views::SyncReport;

/// Timeouts and retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncOptions {
    /// Time allowed to open the connection.
    pub connect_timeout: Duration,
    /// Time allowed for each answer from the server.
    pub reply_timeout: Duration,
    /// Connections tried before giving up.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each one after.
    pub backoff: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            connect_timeout: Duration::from_secs(15),
            reply_timeout: Duration::from_secs(30),
            attempts: 4,
            backoff: Duration::from_secs(1),
        }
    }
}

/// What a sync is doing, for progress displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncEvent {
    /// Connecting (attempt from 1).
    Connecting {
        /// The attempt.
        attempt: u32,
    },
    /// Documents done out of the total.
    Progress {
        /// Done.
        done: u32,
        /// Total.
        total: u32,
    },
    /// An attempt failed; the next starts after a pause.
    Retrying {
        /// The attempt that failed.
        attempt: u32,
        /// The pause, in milliseconds.
        after_ms: u64,
        /// What failed.
        reason: String,
    },
}

/// Why a sync did not finish. Nothing is lost either way: sync again.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The server could not be reached.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server refused the device (token unknown or revoked).
    #[error("the server refused this device (HTTP {status}): enroll again")]
    Unauthorized {
        /// HTTP status.
        status: u16,
    },
    /// The server did not answer in time.
    #[error("no answer from the server within {0} s")]
    Timeout(u64),
    /// The connection closed before the sync finished.
    #[error("the connection closed before the sync finished{0}")]
    Closed(String),
    /// The server broke the protocol, or reported an error.
    #[error("{0}")]
    Protocol(#[from] ClientError),
    /// Storing what arrived failed.
    #[error("{0}")]
    Local(String),
}

impl SyncError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SyncError::Unauthorized { .. } | SyncError::Local(_))
    }
}

impl From<CollectorError> for SyncError {
    fn from(e: CollectorError) -> Self {
        SyncError::Local(e.to_string())
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Totals over attempts.
#[derive(Default)]
struct Totals {
    changes_sent: u64,
    changes_received: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

/// Syncs every document the store holds with `server`.
pub(crate) async fn sync(
    shared: &Shared,
    server: &ServerAddress,
    options: &SyncOptions,
    progress: &(dyn Fn(SyncEvent) + Send + Sync),
) -> Result<SyncReport, CollectorError> {
    let _one_at_a_time = shared.sync_lock.lock().await;
    let started = Instant::now();
    let before = shared.counts().await?;
    let token = shared.inner.lock().await.identity.as_ref().and_then(|i| i.token.clone());
    let url = server.sync_url();
    let mut totals = Totals::default();
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        progress(SyncEvent::Connecting { attempt });
        let mut session = ClientSession::new(format!("hamlet-collector-{}", shared.storage_id), &shared.storage_id);
        let result = run(shared, &url, token.as_deref(), options, &mut session, progress).await;
        for (_, p) in session.documents() {
            totals.changes_sent += p.changes_sent;
            totals.changes_received += p.changes_received;
            totals.bytes_sent += p.bytes_sent;
            totals.bytes_received += p.bytes_received;
        }
        match result {
            Ok(()) => break Ok(session),
            Err(e) if e.is_retryable() && attempt < options.attempts.max(1) => {
                let pause = options.backoff.saturating_mul(2u32.saturating_pow(attempt - 1));
                tracing::info!(attempt, error = %e, "sync attempt failed; retrying");
                progress(SyncEvent::Retrying { attempt, after_ms: pause.as_millis() as u64, reason: e.to_string() });
                tokio::time::sleep(pause).await;
            }
            Err(e) => break Err(e),
        }
    };
    let session = outcome?;
    let after = shared.counts().await?;
    let unavailable =
        session.documents().filter(|(_, p)| p.phase == Phase::Unavailable).map(|(id, _)| id.url()).collect();
    Ok(SyncReport {
        server: url,
        documents: session.documents().count() as u32,
        unavailable,
        changes_sent: totals.changes_sent,
        changes_received: totals.changes_received,
        bytes_sent: totals.bytes_sent,
        bytes_received: totals.bytes_received,
        round_trips: session.documents().map(|(_, p)| p.messages_received).max().unwrap_or(0) as u32,
        attempts: attempt,
        duration_ms: started.elapsed().as_millis() as u64,
        newly_acknowledged: after.acknowledged.saturating_sub(before.acknowledged),
        counts: after,
    })
}

async fn connect(url: &str, token: Option<&str>, timeout: Duration) -> Result<Socket, SyncError> {
    let failed = |reason: String| SyncError::Connect { url: url.to_owned(), reason };
    let mut request = url.into_client_request().map_err(|e| failed(e.to_string()))?;
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| failed(e.to_string()))?;
        request.headers_mut().insert("authorization", value);
    }
    match tokio::time::timeout(timeout, tokio_tungstenite::connect_async(request)).await {
        Err(_) => Err(SyncError::Timeout(timeout.as_secs())),
        Ok(Err(tungstenite::Error::Http(response))) if matches!(response.status().as_u16(), 401 | 403) => {
            Err(SyncError::Unauthorized { status: response.status().as_u16() })
        }
        Ok(Err(e)) => Err(failed(e.to_string())),
        Ok(Ok((socket, _))) => Ok(socket),
    }
}

/// One connection: join, open every document, exchange until each is done.
async fn run(
    shared: &Shared,
    url: &str,
    token: Option<&str>,
    options: &SyncOptions,
    session: &mut ClientSession,
    progress: &(dyn Fn(SyncEvent) + Send + Sync),
) -> Result<(), SyncError> {
    let mut socket = connect(url, token, options.connect_timeout).await?;
    send(&mut socket, session.join()).await?;
    let mut server_storage = String::new();
    loop {
        let bytes = match tokio::time::timeout(options.reply_timeout, socket.next()).await {
            Err(_) => return Err(SyncError::Timeout(options.reply_timeout.as_secs())),
            Ok(None) => return Err(SyncError::Closed(String::new())),
            Ok(Some(Err(e))) => return Err(SyncError::Closed(format!(": {e}"))),
            Ok(Some(Ok(Frame::Binary(bytes)))) => bytes,
            Ok(Some(Ok(Frame::Close(reason)))) => {
                return Err(SyncError::Closed(reason.map(|r| format!(": {}", r.reason)).unwrap_or_default()));
            }
            Ok(Some(Ok(_))) => continue,
        };
        let effects = {
            let mut inner = shared.inner.lock().await;
            session.receive(&bytes, &mut *inner)?
        };
        for effect in effects {
            match effect {
                Effect::Joined(server) => {
                    // Sync states and receipts are true of one storage: key them by its id.
                    server_storage = server.storage_id.unwrap_or(server.peer_id);
                    let inner = shared.inner.lock().await;
                    // Only what is assigned now: a hamlet taken away stays on the phone, untouched.
                    let ids: Vec<DocumentId> = inner.docs.keys().copied().filter(|id| inner.is_assigned(id)).collect();
                    let mut frames = Vec::new();
                    for id in ids {
                        let saved = shared
                            .store
                            .sync_state(&id.to_string(), &server_storage)
                            .await
                            .map_err(CollectorError::from)?;
                        frames.extend(session.open_document(id, saved.as_deref(), &*inner)?);
                    }
                    drop(inner);
                    for frame in frames {
                        send(&mut socket, frame).await?;
                    }
                }
                Effect::Persist(p) => persist(shared, &server_storage, p).await?,
                Effect::Send(frame) => send(&mut socket, frame).await?,
            }
        }
        let total = session.documents().count() as u32;
        let done = session.documents().filter(|(_, p)| p.phase != Phase::Syncing).count() as u32;
        progress(SyncEvent::Progress { done, total });
        if session.is_complete() {
            // Responses recorded while this sync ran go out with it.
            let more = {
                let inner = shared.inner.lock().await;
                session.poll(&*inner)
            };
            let mut sent_more = false;
            for effect in more {
                if let Effect::Send(frame) = effect {
                    send(&mut socket, frame).await?;
                    sent_more = true;
                }
            }
            if !sent_more && session.is_complete() {
                let _ = send(&mut socket, session.leave()).await;
                let _ = socket.close(None).await;
                return Ok(());
            }
        }
    }
}

async fn send(socket: &mut Socket, frame: Vec<u8>) -> Result<(), SyncError> {
    socket.send(Frame::Binary(frame.into())).await.map_err(|e| SyncError::Closed(format!(": {e}")))
}

/// Stores one step: the changes that arrived (and what they mean for the index), the sync state,
/// the receipt, and the responses it acknowledges.
async fn persist(shared: &Shared, server_storage: &str, p: Persist) -> Result<(), CollectorError> {
    let mut inner = shared.inner.lock().await;
    let Some(doc) = inner.docs.get_mut(&p.document) else { return Ok(()) };
    let mut write = DocWrite {
        sync: Some((server_storage.to_owned(), p.sync_state, encode_heads(&p.acknowledged))),
        ..DocWrite::default()
    };
    match &mut doc.body {
        Body::Ledger(ledger) => {
            if p.changed {
                // Responses from other devices, or edits of ours made elsewhere: index them,
                // keeping what we know of our own changes.
                for view in ledger.responses()? {
                    write.index.push(index_row(&doc.record, &view, None));
                }
            }
            let unacknowledged = client::unacknowledged(ledger.doc(), &p.acknowledged);
            for (id, document, change) in shared.store.unacknowledged().await? {
                let covered = <[u8; 32]>::try_from(change.as_slice())
                    .map(|h| !unacknowledged.contains(&hamlet_sync_core::automerge::ChangeHash(h)))
                    .unwrap_or(false);
                if document == doc.record.id && covered {
                    write.acknowledged.push(id);
                }
            }
        }
        Body::Campaign { doc: campaign_doc, campaign } => {
            if p.changed {
                *campaign = hamlet_sync_core::campaign_doc::read_campaign(campaign_doc).ok().map(Box::new);
            }
        }
    }
    shared.persist(&mut inner, &p.document, write).await
}
