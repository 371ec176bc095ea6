//! One sync connection: frames in to the hub, the hub's frames out, pings, the silence and
//! revocation checks. The web layer adapts its WebSocket to a [`Socket`]; nothing here knows
//! HTTP, and nothing here reads the protocol: sync-core's hub decides what a frame means (see
//! [`super::hub`]).
//!
//! A bad message is answered with an `error` and, where the protocol says so, a close; it never
//! affects another connection.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::access::SyncAccess;
use super::hub::{Hub, Outbound};
use super::outbox::outbox;
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
    hub.metrics().connection_opened();
    let limits = hub.limits();
    let (out_tx, mut out_rx) = outbox(limits.outbound_frames, limits.outbound_bytes);
    let conn = hub.open(access.clone(), out_tx);
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let mut last_checked = Instant::now();

    loop {
        tokio::select! {
            outbound = out_rx.recv() => match outbound {
                Some(Outbound::Frame(bytes)) => {
                    // A peer that does not read within two ping intervals is dropped: it
                    // must not hold this loop (pings, the silence check) hostage.
                    if !send_frame(&mut socket, Frame::Binary(bytes), limits.ping_interval * 2).await {
                        tracing::info!(conn, "dropping a peer that does not read");
                        break;
                    }
                }
                Some(Outbound::Close { error, reason }) => {
                    // Without an `error` (the peer said `leave`) the connection just ends.
                    if let Some(error) = error {
                        tracing::info!(conn, who = %access.who(), reason, "closing");
                        hub.metrics().message_out(error.len());
                        if send_frame(&mut socket, Frame::Binary(error), limits.ping_interval).await {
                            close(&mut socket, CLOSE_POLICY, &reason, limits.ping_interval).await;
                        }
                    }
                    break;
                }
                None => break,
            },
            incoming = socket.recv() => {
                let frame = match incoming {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        tracing::debug!(conn, error = %e, "socket error");
                        break;
                    }
                    None => break,
                };
                last_heard = Instant::now();
                match frame {
                    Frame::Binary(bytes) => {
                        hub.metrics().message_in(bytes.len());
                        hub.frame(conn, bytes, hub.store().now_ms()).await;
                    }
                    Frame::Text => hub.close_connection(conn, "this endpoint speaks CBOR in binary frames"),
                    Frame::Ping | Frame::Pong => {}
                    Frame::Close(_) => break,
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.ping_interval * 2 {
                    tracing::info!(conn, "dropping a silent peer");
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
                        tracing::info!(conn, who = %access.who(), "assignments changed; closing");
                        hub.close_connection(conn, "your assignments changed; reconnect");
                        continue;
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
    hub.closed(conn);
    if let Some(device) = access.device_id()
        && let Err(e) = accounts.touch_device(device).await
    {
        tracing::warn!(error = %e, "cannot record the device's sync time");
    }
    hub.metrics().connection_closed();
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

/// Sends one frame, giving up after `timeout` (a peer that does not read).
async fn send_frame(socket: &mut impl Socket, frame: Frame, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, socket.send(frame)).await, Ok(Ok(())))
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
