//! One WebSocket connection: frames in, protocol events to the hub, hub messages out, pings.
//!
//! A bad message is answered with an `error` and, where the protocol says so, a close; it never
//! affects another connection.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, close_code};
use hamlet_sync_core::DocumentId;
use hamlet_sync_core::session::{Connection, Event};
use hamlet_sync_core::wire::{self, Message};
use tokio::sync::{mpsc, watch};

use crate::access::SyncAccess;
use crate::auth::Accounts;
use crate::hub::{Hub, Outbound};
use crate::metrics::ErrorKind;

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

/// How often a device's connection checks that the device was not revoked (by any server
/// sharing the database); a revocation on this server closes the connection at once.
const REVOCATION_CHECK: Duration = Duration::from_secs(5);

/// Serves one upgraded socket until it closes, the peer falls silent, or the server shuts down.
/// `access` says what the connection may read and write.
pub async fn serve(
    hub: Arc<Hub>,
    mut socket: WebSocket,
    mut shutdown: watch::Receiver<bool>,
    access: Arc<SyncAccess>,
    accounts: Accounts,
) {
    let metrics = hub.clone();
    metrics.metrics().connection_opened();
    let conn_id = hub.next_connection();
    let mut conn = Connection::new(hub.identity().clone());
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outbound>();
    let mut documents: HashSet<DocumentId> = HashSet::new();
    let limits = hub.limits();
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
                    Frame::Text(_) => {
                        let reason = "this endpoint speaks CBOR in binary frames";
                        close_with_error(&hub, &conn, &mut socket, reason).await;
                        break;
                    }
                    Frame::Ping(_) | Frame::Pong(_) => continue,
                    Frame::Close(_) => break,
                };
                hub.metrics().message_in(bytes.len());
                if rate.as_mut().is_some_and(|r| !r.allow()) {
                    hub.metrics().error(ErrorKind::RateLimited);
                    tracing::warn!(conn = conn_id, who = %access.who(), "device over its message rate");
                    close_with_error(&hub, &conn, &mut socket, "too many messages; slow down and reconnect").await;
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
                    close_with_error(&hub, &conn, &mut socket, &reason).await;
                    break;
                }
                match conn.receive(&bytes) {
                    Ok(event) => {
                        let context = Context { hub: &hub, conn: &conn, conn_id, access: &access, accounts: &accounts };
                        if !handle(&context, event, &out_tx, &mut socket, &mut documents).await {
                            break;
                        }
                    }
                    Err(e) => {
                        hub.metrics().error(ErrorKind::Protocol);
                        tracing::warn!(conn = conn_id, error = %e, "protocol error");
                        if e.closes() {
                            close_with_error(&hub, &conn, &mut socket, &e.to_string()).await;
                            break;
                        }
                        if !send(&hub, &mut socket, &conn.error_message(&e)).await {
                            break;
                        }
                    }
                }
            }
            outbound = out_rx.recv() => match outbound {
                Some(Outbound::Frame(bytes)) => {
                    if socket.send(Frame::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(reason)) => {
                    close(&mut socket, close_code::POLICY, &reason).await;
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
                        close(&mut socket, close_code::POLICY, "device revoked").await;
                        break;
                    }
                }
                if socket.send(Frame::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => {
                close(&mut socket, close_code::AWAY, "server shutting down").await;
                break;
            }
        }
    }
    if let Some(peer) = conn.peer() {
        hub.unregister(peer, conn_id, documents);
    }
    if let Some(device) = access.device_id()
        && let Err(e) = accounts.touch_device(device).await
    {
        tracing::warn!(error = %e, "cannot record the device's sync time");
    }
    metrics.metrics().connection_closed();
}

/// What [`handle`] needs to know about the connection.
struct Context<'a> {
    hub: &'a Arc<Hub>,
    conn: &'a Connection,
    conn_id: u64,
    access: &'a SyncAccess,
    accounts: &'a Accounts,
}

/// Acts on one event; returns whether the connection stays open.
async fn handle(
    cx: &Context<'_>,
    event: Event,
    out_tx: &mpsc::UnboundedSender<Outbound>,
    socket: &mut WebSocket,
    documents: &mut HashSet<DocumentId>,
) -> bool {
    let hub = cx.hub;
    let Some(peer) = cx.conn.peer() else { return true };
    match event {
        Event::Joined { peer, reply } => {
            hub.register(&peer.peer_id, cx.conn_id, out_tx.clone(), cx.access.device_id());
            tracing::debug!(conn = cx.conn_id, peer = %peer.peer_id, "joined");
            return send(hub, socket, &reply).await;
        }
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
                    target_id: peer.peer_id.clone(),
                    document_id: document.to_string(),
                };
                return send(hub, socket, &unavailable).await;
            }
            documents.insert(document);
            let rule = cx.access.write_rule(&document);
            hub.sync(document, peer, cx.conn_id, data, is_request, rule, cx.access.who());
        }
        Event::Ephemeral { document, message, dedup } if cx.access.can_read(&document) => {
            hub.ephemeral(document, &peer.peer_id, message, dedup)
        }
        Event::Subscription { add, remove } => hub.subscribe(&peer.peer_id, &add, &remove),
        Event::Leave => return false,
        Event::Ephemeral { .. } | Event::Unavailable { .. } | Event::Nothing => {}
    }
    true
}

async fn send(hub: &Hub, socket: &mut WebSocket, message: &Message) -> bool {
    let bytes = wire::encode(message);
    hub.metrics().message_out(bytes.len());
    socket.send(Frame::Binary(bytes.into())).await.is_ok()
}

async fn close_with_error(hub: &Hub, conn: &Connection, socket: &mut WebSocket, reason: &str) {
    let error = Message::Error {
        sender_id: Some(hub.identity().peer_id.clone()),
        target_id: conn.peer().map(|p| p.peer_id.clone()),
        message: reason.to_owned(),
    };
    if send(hub, socket, &error).await {
        close(socket, close_code::POLICY, reason).await;
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    // A close reason must fit in a control frame (123 bytes).
    let reason: String = reason
        .chars()
        .scan(0, |n, c| {
            *n += c.len_utf8();
            (*n <= 120).then_some(c)
        })
        .collect();
    let _ = socket.send(Frame::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}
