//! Sync with a server or relay: the automerge-repo protocol over a WebSocket, driven by the
//! sans-I/O [`ClientSession`] of sync-core. This module only moves bytes, keeps time and stores
//! what the session says to store.
//!
//! Every step is stored before the next message leaves, under the lock that guards the
//! documents (so no local write can land between a step's changes and their index rows):
//! changes received, the sync state, and the receipt of what the server acknowledged. A connection cut at any point therefore loses
//! nothing, and the next attempt starts from the kept sync state: what the server acknowledged
//! is not sent again. Slow links get generous timeouts, and failed attempts are retried with
//! exponential back-off.
//!
//! What a server can do to a phone is bounded: a whole sync has a deadline and can be
//! cancelled; each document a bound on messages ([`SyncOptions::max_rounds`]); each message a
//! size ([`MAX_MESSAGE_BYTES`]). Documents are synced one at a time, so that a refusal (the
//! protocol's `error` names no document) is known to be about the document in flight: that
//! document's sync ends, it is kept with the reason, and the others go on.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hamlet_sync_core::DocumentId;
use hamlet_sync_core::client::{self, ClientError, ClientSession, Effect, Persist, Phase};
use hamlet_sync_core::session::encode_heads;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as Frame};

use crate::address::ServerAddress;
use crate::collector::{Body, CollectorError, Inner, Shared, index_row};
use crate::store::DocWrite;
use crate::transport::{self, CertificateError, ConnectError, Connection, Trust};
use crate::views::{RefusedDocument, SyncReport};

/// The largest message a phone accepts from a server, as the server's own default bound (a
/// WebSocket library's default would let a server make the phone hold 64 MiB at once).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The header in which the phone sends its clock (unix milliseconds) when it connects to sync.
pub const DEVICE_TIME_HEADER: &str = "hamlet-device-time";

/// The most a document may take on the phone by default, as the server's own default bound on
/// a document.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

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
    /// Time allowed for the whole sync, every attempt and pause included.
    pub deadline: Duration,
    /// Messages one document may take in one attempt before the server is taken to be stuck.
    pub max_rounds: u64,
    /// Bytes a document may take in the store: changes from the server that would grow one
    /// beyond are not kept, and that document's sync ends refused (the others go on).
    pub max_document_bytes: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            connect_timeout: Duration::from_secs(15),
            reply_timeout: Duration::from_secs(30),
            attempts: 4,
            backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(10 * 60),
            max_rounds: client::DEFAULT_ROUND_LIMIT,
            max_document_bytes: MAX_DOCUMENT_BYTES,
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
    /// The server's certificate is not the one to trust: nothing was sent (not retried).
    #[error("{url}: {error}; nothing was sent")]
    Certificate {
        /// The URL.
        url: String,
        /// What was wrong with it.
        error: CertificateError,
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
    /// The whole sync took longer than its deadline (seconds); what was stored stays.
    #[error("the sync did not finish within {0} s: sync again")]
    Deadline(u64),
    /// The sync was cancelled; what was stored stays.
    #[error("the sync was cancelled")]
    Cancelled,
    /// The server sent a message beyond the phone's bound ([`MAX_MESSAGE_BYTES`], the
    /// server's own): nothing of it was kept, and asking again would bring the same message.
    #[error("the server sent a message larger than {} MiB, the most a phone accepts: nothing of it was kept", .limit >> 20)]
    TooLarge {
        /// The bound, in bytes.
        limit: usize,
    },
}

impl SyncError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            SyncError::Unauthorized { .. }
                | SyncError::Certificate { .. }
                | SyncError::Local(_)
                | SyncError::Deadline(_)
                | SyncError::Cancelled
                | SyncError::TooLarge { .. }
                | SyncError::Protocol(ClientError::TooManyRounds { .. })
        )
    }
}

/// When a sync must stop: its deadline, or a cancel. Only waits on the network and pauses
/// are cut short; a step being stored always finishes.
struct Stop {
    deadline: tokio::time::Instant,
    allowed: Duration,
    cancel: tokio::sync::watch::Receiver<u64>,
}

impl Stop {
    async fn guard<T>(&mut self, f: impl std::future::Future<Output = T>) -> Result<T, SyncError> {
        tokio::select! {
            out = f => Ok(out),
            _ = tokio::time::sleep_until(self.deadline) => Err(SyncError::Deadline(self.allowed.as_secs())),
            _ = self.cancel.changed() => Err(SyncError::Cancelled),
        }
    }
}

impl From<CollectorError> for SyncError {
    fn from(e: CollectorError) -> Self {
        SyncError::Local(e.to_string())
    }
}

type Socket = WebSocketStream<Connection>;

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
    trust: &Trust,
    options: &SyncOptions,
    progress: &(dyn Fn(SyncEvent) + Send + Sync),
) -> Result<SyncReport, CollectorError> {
    // Subscribed before anything else: a cancel from now on stops this sync, not an earlier one.
    let mut stop = Stop {
        deadline: tokio::time::Instant::now() + options.deadline,
        allowed: options.deadline,
        cancel: shared.cancel.subscribe(),
    };
    let _one_at_a_time = stop.guard(shared.sync_lock.lock()).await.map_err(CollectorError::from)?;
    let started = Instant::now();
    let before = shared.counts().await?;
    let token = shared.inner.lock().await.identity.as_ref().and_then(|i| i.token.clone());
    let url = server.sync_url();
    let mut totals = Totals::default();
    let mut refused: BTreeMap<DocumentId, RefusedDocument> = BTreeMap::new();
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        progress(SyncEvent::Connecting { attempt });
        let mut session = ClientSession::new(format!("hamlet-collector-{}", shared.storage_id), &shared.storage_id)
            .with_round_limit(options.max_rounds);
        let link = Link { server, trust, url: &url, token: token.as_deref() };
        let result = run(shared, &link, options, &mut stop, &mut session, &mut refused, progress).await;
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
                if let Err(e) = stop.guard(tokio::time::sleep(pause)).await {
                    break Err(e);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let session = outcome?;
    // A document that went through is no longer refused by this server.
    if let Some(server) = session.server() {
        let storage = server.storage_id.clone().unwrap_or_else(|| server.peer_id.clone());
        for (id, _) in session.documents().filter(|(_, p)| p.phase == Phase::Done) {
            shared.store.clear_refusal(&id.to_string(), &storage).await?;
        }
    }
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
        refused: refused.into_values().collect(),
    })
}

/// Where a sync connects, and with what.
struct Link<'a> {
    server: &'a ServerAddress,
    trust: &'a Trust,
    url: &'a str,
    token: Option<&'a str>,
}

async fn connect(link: &Link<'_>, timeout: Duration) -> Result<Socket, SyncError> {
    match tokio::time::timeout(timeout, open(link)).await {
        Err(_) => Err(SyncError::Timeout(timeout.as_secs())),
        Ok(result) => result,
    }
}

async fn open(link: &Link<'_>) -> Result<Socket, SyncError> {
    let url = link.url;
    let config =
        WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE_BYTES)).max_frame_size(Some(MAX_MESSAGE_BYTES));
    let failed = |reason: String| SyncError::Connect { url: url.to_owned(), reason };
    let mut request = url.into_client_request().map_err(|e| failed(e.to_string()))?;
    // The connection first: a server whose certificate is refused hears nothing, not even the
    // request line.
    let stream = transport::connect(link.server, link.trust).await.map_err(|e| match e {
        ConnectError::Network(reason) => failed(reason),
        ConnectError::Certificate(error) => SyncError::Certificate { url: url.to_owned(), error },
    })?;
    if let Some(token) = link.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| failed(e.to_string()))?;
        request.headers_mut().insert("authorization", value);
    }
    // The phone's clock, so that the server can flag a phone whose clock is days off (its
    // responses are dated by it).
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    request.headers_mut().insert(DEVICE_TIME_HEADER, HeaderValue::from(now_ms as u64));
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Err(tungstenite::Error::Http(response)) if matches!(response.status().as_u16(), 401 | 403) => {
            Err(SyncError::Unauthorized { status: response.status().as_u16() })
        }
        Err(e) => Err(failed(e.to_string())),
        Ok((socket, _)) => Ok(socket),
    }
}

/// One connection: join, then each document in turn, exchanging until each is done.
#[allow(clippy::too_many_arguments)]
async fn run(
    shared: &Shared,
    link: &Link<'_>,
    options: &SyncOptions,
    stop: &mut Stop,
    session: &mut ClientSession,
    refused: &mut BTreeMap<DocumentId, RefusedDocument>,
    progress: &(dyn Fn(SyncEvent) + Send + Sync),
) -> Result<(), SyncError> {
    let mut socket = stop.guard(connect(link, options.connect_timeout)).await??;
    stop.guard(send(&mut socket, session.join())).await??;
    let mut server_storage = String::new();
    let mut queue: VecDeque<DocumentId> = VecDeque::new();
    let mut joined = false;
    loop {
        let next = stop.guard(tokio::time::timeout(options.reply_timeout, socket.next())).await?;
        let bytes = match next {
            Err(_) => return Err(SyncError::Timeout(options.reply_timeout.as_secs())),
            Ok(None) => return Err(SyncError::Closed(String::new())),
            Ok(Some(Err(tungstenite::Error::Capacity(e)))) => {
                tracing::warn!(error = %e, "the server sent a message beyond the phone's bound");
                return Err(SyncError::TooLarge { limit: MAX_MESSAGE_BYTES });
            }
            Ok(Some(Err(e))) => return Err(SyncError::Closed(format!(": {e}"))),
            Ok(Some(Ok(Frame::Binary(bytes)))) => bytes,
            Ok(Some(Ok(Frame::Close(reason)))) => {
                return Err(SyncError::Closed(reason.map(|r| format!(": {}", r.reason)).unwrap_or_default()));
            }
            Ok(Some(Ok(_))) => continue,
        };
        // Received, applied and stored under one lock: a local write cannot fall in between.
        let mut frames = Vec::new();
        {
            let mut inner = shared.inner.lock().await;
            // A reply after changes that were not kept would acknowledge them: not sent.
            let mut not_kept = false;
            for effect in session.receive(&bytes, &mut *inner)? {
                match effect {
                    Effect::Joined(server) => {
                        // Sync states and receipts are true of one storage: key them by its id.
                        server_storage = server.storage_id.unwrap_or(server.peer_id);
                        // Only what is assigned now: a hamlet taken away stays on the phone,
                        // untouched; and not what this sync already saw refused.
                        queue = inner
                            .records
                            .keys()
                            .copied()
                            .filter(|id| inner.is_assigned(id) && !refused.contains_key(id))
                            .collect();
                        joined = true;
                    }
                    Effect::Persist(p) => {
                        let id = p.document;
                        let limit = options.max_document_bytes;
                        if let Some(reason) = persist(shared, &mut inner, &server_storage, p, limit).await? {
                            session.refuse(&id, reason);
                            not_kept = true;
                        }
                    }
                    Effect::Send(frame) if !not_kept => frames.push(frame),
                    Effect::Send(_) => {}
                }
            }
            // One document in flight at a time: open the next once the last is done.
            while joined && session.is_complete() {
                let Some(id) = queue.pop_front() else { break };
                shared.ensure(&mut inner, &[id]).await?;
                let saved =
                    shared.store.sync_state(&id.to_string(), &server_storage).await.map_err(CollectorError::from)?;
                frames.extend(session.open_document(id, saved.as_deref(), &*inner)?);
            }
        }
        for frame in frames {
            stop.guard(send(&mut socket, frame)).await??;
        }
        note_refusals(shared, session, &server_storage, refused).await?;
        let total = (session.documents().count() + queue.len()) as u32;
        let done = session.documents().filter(|(_, p)| p.phase != Phase::Syncing).count() as u32;
        progress(SyncEvent::Progress { done, total });
        if joined && queue.is_empty() && session.is_complete() {
            // Responses recorded while this sync ran go out with it.
            let more = {
                let inner = shared.inner.lock().await;
                session.poll(&*inner)
            };
            let mut sent_more = false;
            for effect in more {
                if let Effect::Send(frame) = effect {
                    stop.guard(send(&mut socket, frame)).await??;
                    sent_more = true;
                }
            }
            if !sent_more && session.is_complete() {
                let _ = stop.guard(send(&mut socket, session.leave())).await;
                let _ = stop.guard(socket.close(None)).await;
                return Ok(());
            }
        }
    }
}

/// Keeps each refusal the session saw, with the server's reason (shown to the collector).
async fn note_refusals(
    shared: &Shared,
    session: &ClientSession,
    server_storage: &str,
    refused: &mut BTreeMap<DocumentId, RefusedDocument>,
) -> Result<(), CollectorError> {
    for (id, p) in session.documents() {
        match p.phase {
            Phase::Refused if !refused.contains_key(id) => {
                let reason = p.refusal.clone().unwrap_or_default();
                tracing::warn!(document = %id, server = server_storage, reason, "the server refused this document's changes");
                let heads =
                    shared.inner.lock().await.docs.get(id).map(|d| d.body.doc().get_heads()).unwrap_or_default();
                shared.store.set_refusal(&id.to_string(), server_storage, &reason, &encode_heads(&heads)).await?;
                refused.insert(*id, RefusedDocument { document: id.url(), server: server_storage.to_owned(), reason });
            }
            _ => {}
        }
    }
    Ok(())
}

async fn send(socket: &mut Socket, frame: Vec<u8>) -> Result<(), SyncError> {
    socket.send(Frame::Binary(frame.into())).await.map_err(|e| SyncError::Closed(format!(": {e}")))
}

/// Stores one step: the changes that arrived (and what they mean for the index), the sync state,
/// the receipt, and the responses it acknowledges. Changes that would grow the document beyond
/// `max_document_bytes` are dropped instead (memory goes back to what the store holds), and the
/// reason is returned.
async fn persist(
    shared: &Shared,
    inner: &mut Inner,
    server_storage: &str,
    p: Persist,
    max_document_bytes: usize,
) -> Result<Option<String>, CollectorError> {
    let Some(doc) = inner.docs.get_mut(&p.document) else { return Ok(None) };
    let mut write = DocWrite {
        sync: Some((server_storage.to_owned(), p.sync_state, encode_heads(&p.acknowledged))),
        ..DocWrite::default()
    };
    if doc.body.doc().get_heads() != doc.saved_heads {
        let chunk = doc.body.doc().save_after(&doc.saved_heads);
        let size = doc.stored_bytes.saturating_add(chunk.len());
        if size > max_document_bytes {
            let reason = format!(
                "refused by this phone: the server's changes would make the document {size} bytes, \
                 beyond the {max_document_bytes} a phone keeps; they were not kept"
            );
            tracing::warn!(document = %p.document, size, limit = max_document_bytes, "a document from the server is too large: not kept");
            shared.reload(inner, &p.document).await?;
            return Ok(Some(reason));
        }
        write.chunk = Some(chunk);
    }
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
    shared.persist(inner, &p.document, write).await?;
    Ok(None)
}
