//! One WebSocket connection: frames in, protocol events to the hub, hub messages out, pings.
//!
//! A bad message is answered with an `error` and, where the protocol says so, a close; it never
//! affects another connection.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, close_code};
use hamlet_sync_core::DocumentId;
use hamlet_sync_core::session::{Connection, Event};
use hamlet_sync_core::wire::{self, Message};
use tokio::sync::{mpsc, watch};

use crate::hub::{Hub, Outbound};
use crate::metrics::ErrorKind;

/// Serves one upgraded socket until it closes, the peer falls silent, or the server shuts down.
pub async fn serve(hub: Arc<Hub>, mut socket: WebSocket, mut shutdown: watch::Receiver<bool>) {
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
                        if !handle(&hub, &conn, conn_id, event, &out_tx, &mut socket, &mut documents).await {
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
    metrics.metrics().connection_closed();
}

/// Acts on one event; returns whether the connection stays open.
async fn handle(
    hub: &Arc<Hub>,
    conn: &Connection,
    conn_id: u64,
    event: Event,
    out_tx: &mpsc::UnboundedSender<Outbound>,
    socket: &mut WebSocket,
    documents: &mut HashSet<DocumentId>,
) -> bool {
    let Some(peer) = conn.peer() else { return true };
    match event {
        Event::Joined { peer, reply } => {
            hub.register(&peer.peer_id, conn_id, out_tx.clone());
            tracing::debug!(conn = conn_id, peer = %peer.peer_id, "joined");
            return send(hub, socket, &reply).await;
        }
        Event::Sync { document, data, is_request } => {
            documents.insert(document);
            hub.sync(document, peer, conn_id, data, is_request);
        }
        Event::Ephemeral { document, message, dedup } => hub.ephemeral(document, &peer.peer_id, message, dedup),
        Event::Leave => return false,
        Event::Unavailable { .. } | Event::Subscription { .. } | Event::Nothing => {}
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
