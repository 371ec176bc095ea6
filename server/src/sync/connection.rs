//! One sync connection: frames in, protocol events to the hub, hub messages out, pings. The
//! web layer adapts its WebSocket to a [`Socket`]; nothing here knows HTTP.
//!
//! A bad message is answered with an `error` and, where the protocol says so, a close; it never
//! affects another connection.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hamlet_sync_core::DocumentId;
use hamlet_sync_core::session::{Connection, Event, Peer};
use hamlet_sync_core::wire::{self, Message};
use std::future::Future;
use tokio_util::sync::CancellationToken;

use super::access::SyncAccess;
use super::hub::{Hub, Outbound};
use super::metrics::ErrorKind;
use super::outbox::{Outbox, outbox};
use crate::accounts::Accounts;

/// A WebSocket frame, as a connection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A binary frame: one protocol message.
    Binary(Vec<u8>),
    /// A text frame (refused: the protocol is binary).
    Text,
    /// A ping (sent) or a ping or pong (received).
    Ping,
    /// A pong received.
    Pong,
    /// A close frame, with its code and reason when it has them.
    Close(Option<(u16, String)>),
}

/// Close code: going away (the server shuts down).
pub const CLOSE_AWAY: u16 = 1001;
/// Close code: policy violation (a refused message, a revoked device).
pub const CLOSE_POLICY: u16 = 1008;

/// The socket a connection is served over.
pub trait Socket: Send {
    /// The next frame; `None` once the socket is closed.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Frame, String>>> + Send;
    /// Sends one frame.
    fn send(&mut self, frame: Frame) -> impl Future<Output = Result<(), String>> + Send;
}

/// A token bucket: `rate` messages a second, bursts up to ten seconds' worth.
#[derive(Debug)]
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        RateLimit { rate: f64::from(rate), tokens: f64::from(rate) * 10.0, last: Instant::now() }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate * 10.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How often a device's connection checks that the device was not revoked and that its
/// assignments did not change (by any server sharing the database); a revocation on this
/// server closes the connection at once.
const REVOCATION_CHECK: Duration = Duration::from_secs(5);

/// Serves one upgraded socket until it closes, the peer falls silent, or the server shuts down.
/// `access` says what the connection may read and write.
pub async fn serve(
    hub: Arc<Hub>,
    mut socket: impl Socket,
    shutdown: CancellationToken,
    access: Arc<SyncAccess>,
    accounts: Accounts,
) {
    let metrics = hub.clone();
    metrics.metrics().connection_opened();
    let conn_id = hub.next_connection();
    let mut conn = Connection::new(hub.identity().clone());
    let limits = hub.limits();
    let (out_tx, mut out_rx) = outbox(limits.outbound_frames, limits.outbound_bytes);
    let mut documents: HashSet<DocumentId> = HashSet::new();
    // The peer as the hub knows it (namespaced by the device), once joined.
    let mut joined: Option<Peer> = None;
    // A device holds a bounded number of connections; the count is given back on return.
    let _counted = match access.device_id() {
        Some(device) => match hub.open_device(device) {
            Some(counted) => Some(counted),
            None => {
                hub.metrics().error(ErrorKind::RateLimited);
                tracing::warn!(conn = conn_id, who = %access.who(), "device over its connection limit");
                let reason = format!(
                    "this device already has {} connections open; close one and retry",
                    limits.connections_per_device
                );
                close_with_error(&hub, &conn, &mut socket, &reason, limits.ping_interval).await;
                metrics.metrics().connection_closed();
                return;
            }
        },
        None => None,
    };
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let mut last_checked = Instant::now();
    let mut rate = access.device_id().map(|_| RateLimit::new(limits.device_messages_per_second));

    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let frame = match incoming {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        tracing::debug!(conn = conn_id, error = %e, "socket error");
                        break;
                    }
                    None => break,
                };
                last_heard = Instant::now();
                let bytes = match frame {
                    Frame::Binary(bytes) => bytes,
                    Frame::Text => {
                        let reason = "this endpoint speaks CBOR in binary frames";
                        close_with_error(&hub, &conn, &mut socket, reason, limits.ping_interval).await;
                        break;
                    }
                    Frame::Ping | Frame::Pong => continue,
                    Frame::Close(_) => break,
                };
                hub.metrics().message_in(bytes.len());
                if rate.as_mut().is_some_and(|r| !r.allow()) {
                    hub.metrics().error(ErrorKind::RateLimited);
                    tracing::warn!(conn = conn_id, who = %access.who(), "device over its message rate");
                    close_with_error(&hub, &conn, &mut socket, "too many messages; slow down and reconnect", limits.ping_interval).await;
                    break;
                }
                if bytes.len() > limits.max_message_bytes {
                    hub.metrics().error(ErrorKind::MessageTooLarge);
                    let reason = format!(
                        "message of {} bytes exceeds the limit of {} bytes",
                        bytes.len(),
                        limits.max_message_bytes
                    );
                    tracing::warn!(conn = conn_id, size = bytes.len(), "message over the size limit");
                    close_with_error(&hub, &conn, &mut socket, &reason, limits.ping_interval).await;
                    break;
                }
                // Decoding is ours and should not panic; if it ever does, this connection ends
                // and no other.
                let received = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| conn.receive(&bytes)));
                let Ok(received) = received else {
                    hub.metrics().error(ErrorKind::Panic);
                    tracing::error!(conn = conn_id, "decoding a message panicked");
                    close_with_error(&hub, &conn, &mut socket, "the server could not read this message", limits.ping_interval).await;
                    break;
                };
                match received {
                    Ok(event) => {
                        let context = Context {
                            hub: &hub,
                            conn: &conn,
                            conn_id,
                            access: &access,
                            accounts: &accounts,
                            timeout: limits.ping_interval * 2,
                        };
                        match handle(&context, event, &out_tx, &mut socket, &mut documents, &mut joined).await {
                            Handled::Continue => {}
                            Handled::Stop => break,
                            Handled::Close(reason) => {
                                close_with_error(&hub, &conn, &mut socket, &reason, limits.ping_interval).await;
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        hub.metrics().error(ErrorKind::Protocol);
                        tracing::warn!(conn = conn_id, error = %e, "protocol error");
                        if e.closes() {
                            close_with_error(&hub, &conn, &mut socket, &e.to_string(), limits.ping_interval).await;
                            break;
                        }
                        if !send(&hub, &mut socket, &conn.error_message(&e), limits.ping_interval * 2).await {
                            break;
                        }
                    }
                }
            }
            outbound = out_rx.recv() => match outbound {
                Some(Outbound::Frame(bytes)) => {
                    // A peer that does not read within two ping intervals is dropped: it
                    // must not hold this loop (pings, the silence check) hostage.
                    if !send_frame(&mut socket, Frame::Binary(bytes), limits.ping_interval * 2).await {
                        tracing::info!(conn = conn_id, "dropping a peer that does not read");
                        break;
                    }
                }
                Some(Outbound::Close(reason)) => {
                    close_with_error(&hub, &conn, &mut socket, &reason, limits.ping_interval).await;
                    break;
                }
                None => break,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.ping_interval * 2 {
                    tracing::info!(conn = conn_id, "dropping a silent peer");
                    break;
                }
                if let Some(device) = access.device_id()
                    && last_checked.elapsed() >= REVOCATION_CHECK
                {
                    last_checked = Instant::now();
                    if matches!(accounts.device_active(device).await, Ok(false)) {
                        close(&mut socket, CLOSE_POLICY, "device revoked", limits.ping_interval).await;
                        break;
                    }
                    if assignments_changed(&accounts, &access).await {
                        tracing::info!(conn = conn_id, who = %access.who(), "assignments changed; closing");
                        let reason = "your assignments changed; reconnect";
                        close_with_error(&hub, &conn, &mut socket, reason, limits.ping_interval).await;
                        break;
                    }
                }
                if !send_frame(&mut socket, Frame::Ping, limits.ping_interval * 2).await {
                    break;
                }
            }
            () = shutdown.cancelled() => {
                close(&mut socket, CLOSE_AWAY, "server shutting down", limits.ping_interval).await;
                break;
            }
        }
    }
    if let Some(peer) = &joined {
        hub.unregister(peer, conn_id, documents);
    }
    if let Some(device) = access.device_id()
        && let Err(e) = accounts.touch_device(device).await
    {
        tracing::warn!(error = %e, "cannot record the device's sync time");
    }
    metrics.metrics().connection_closed();
}

/// Whether the device's assignments differ from those the connection was opened with.
async fn assignments_changed(accounts: &Accounts, access: &SyncAccess) -> bool {
    let SyncAccess::Device { device, person, .. } = access else { return false };
    let Ok(Some(person)) = accounts.person(person).await else { return false };
    match SyncAccess::for_device(accounts, device, &person).await {
        Ok(now) => !now.same_documents(access),
        Err(_) => false,
    }
}

/// What [`handle`] needs to know about the connection.
struct Context<'a> {
    hub: &'a Arc<Hub>,
    conn: &'a Connection,
    conn_id: u64,
    access: &'a SyncAccess,
    accounts: &'a Accounts,
    /// How long a send to the socket may take.
    timeout: Duration,
}

/// What the connection does after an event.
enum Handled {
    Continue,
    Stop,
    /// Report this and close.
    Close(String),
}

/// Acts on one event.
async fn handle(
    cx: &Context<'_>,
    event: Event,
    out_tx: &Outbox,
    socket: &mut impl Socket,
    documents: &mut HashSet<DocumentId>,
    joined: &mut Option<Peer>,
) -> Handled {
    let hub = cx.hub;
    let sent = |ok: bool| if ok { Handled::Continue } else { Handled::Stop };
    if let Event::Joined { peer, reply } = event {
        let known = hub.register(&peer, cx.conn_id, out_tx.clone(), cx.access.device_id());
        tracing::debug!(conn = cx.conn_id, peer = %known.peer_id, "joined");
        *joined = Some(known);
        return sent(send(hub, socket, &reply, cx.timeout).await);
    }
    let Some(peer) = joined.as_ref() else { return Handled::Continue };
    let busy = |_| Handled::Close(super::hub::Busy.to_string());
    match event {
        Event::Joined { .. } => {}
        Event::Sync { document, data, is_request } => {
            if !cx.access.can_read(&document) {
                // Exactly what a document that does not exist gets.
                hub.metrics().error(ErrorKind::Forbidden);
                let who = cx.access.who();
                tracing::info!(document = %document, who = %who, "document denied");
                if let Err(e) = cx.accounts.audit(&who, "document.denied", &document.to_string(), "").await {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
                let unavailable = Message::DocUnavailable {
                    sender_id: hub.identity().peer_id.clone(),
                    target_id: cx.conn.peer().map_or_else(String::new, |p| p.peer_id.clone()),
                    document_id: document.to_string(),
                };
                return sent(send(hub, socket, &unavailable, cx.timeout).await);
            }
            documents.insert(document);
            let rule = cx.access.write_rule(&document);
            if let Err(e) =
                hub.sync(document, peer, cx.conn_id, data, is_request, rule, cx.access.who(), hub.store().now_ms())
            {
                return busy(e);
            }
        }
        Event::Ephemeral { document, message, dedup } if cx.access.can_read(&document) => {
            let size = match &message {
                Message::Ephemeral { data, .. } => data.len(),
                _ => 0,
            };
            let max = hub.limits().max_ephemeral_bytes;
            if size > max {
                hub.metrics().error(ErrorKind::MessageTooLarge);
                return Handled::Close(format!("ephemeral message of {size} bytes; at most {max} are relayed"));
            }
            if let Err(e) = hub.ephemeral(document, &peer.peer_id, message, dedup) {
                return busy(e);
            }
        }
        Event::Subscription { add, remove } => hub.subscribe(&peer.peer_id, &add, &remove),
        Event::Leave => return Handled::Stop,
        Event::Ephemeral { .. } | Event::Unavailable { .. } | Event::Nothing => {}
    }
    Handled::Continue
}

/// Sends one frame, giving up after `timeout` (a peer that does not read).
async fn send_frame(socket: &mut impl Socket, frame: Frame, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, socket.send(frame)).await, Ok(Ok(())))
}

async fn send(hub: &Hub, socket: &mut impl Socket, message: &Message, timeout: Duration) -> bool {
    let bytes = wire::encode(message);
    hub.metrics().message_out(bytes.len());
    send_frame(socket, Frame::Binary(bytes), timeout).await
}

async fn close_with_error(hub: &Hub, conn: &Connection, socket: &mut impl Socket, reason: &str, timeout: Duration) {
    let error = Message::Error {
        sender_id: Some(hub.identity().peer_id.clone()),
        target_id: conn.peer().map(|p| p.peer_id.clone()),
        message: reason.to_owned(),
    };
    if send(hub, socket, &error, timeout).await {
        close(socket, CLOSE_POLICY, reason, timeout).await;
    }
}

async fn close(socket: &mut impl Socket, code: u16, reason: &str, timeout: Duration) {
    // A close reason must fit in a control frame (123 bytes).
    let reason: String = reason
        .chars()
        .scan(0, |n, c| {
            *n += c.len_utf8();
            (*n <= 120).then_some(c)
        })
        .collect();
    let _ = send_frame(socket, Frame::Close(Some((code, reason))), timeout).await;
}
