//! The sync endpoint (`/sync`, a WebSocket handed to [`crate::sync::connection`]), and the
//! operator's probes: `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::Principal;
use super::{ApiError, AppState};
use crate::sync::access::SyncAccess;
use crate::sync::connection::{self, Frame, Socket};

/// The header in which a phone sends its clock (unix milliseconds) when it connects to sync.
pub const DEVICE_TIME_HEADER: &str = "hamlet-device-time";

/// `GET /sync`: the WebSocket, for a device token (`Authorization: Bearer` or `?token=`), or
/// anyone in `--insecure-open-sync` mode. Staff sessions are refused.
pub(crate) async fn endpoint(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    principal: Option<Extension<Principal>>,
) -> Response {
    let access = match principal.map(|p| p.0) {
        Some(Principal::Device { device, person }) => {
            match SyncAccess::for_device(&state.accounts, &device, &person).await {
                Ok(access) => {
                    if let Err(e) = state.accounts.touch_device(&device).await {
                        tracing::warn!(error = %e, "cannot record the device's sync time");
                    }
                    // The phone's clock, as it connects: a phone days off dates its responses
                    // wrongly, and the devices page says so.
                    let clock =
                        headers.get(DEVICE_TIME_HEADER).and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok());
                    if let Some(device_ms) = clock
                        && let Err(e) = state.accounts.note_device_clock(&device, device_ms).await
                    {
                        tracing::warn!(error = %e, "cannot record the device's clock");
                    }
                    access
                }
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
        // Staff read results on the dashboard, where small groups are hidden and reads are
        // audited; raw ledgers through /sync would bypass both.
        Some(Principal::Staff { .. }) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "devices_only",
                "syncing is for enrolled devices; staff read results on the dashboard",
            )
            .into_response();
        }
        None if state.open_sync => SyncAccess::Open,
        None => {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "a device token is required to sync")
                .into_response();
        }
    };
    let limit = state.hub.limits().max_message_bytes;
    // The socket layer accepts twice the protocol limit, so that a message just over it is
    // answered with an `error` saying why rather than a bare disconnection.
    ws.max_message_size(limit.saturating_mul(2)).max_frame_size(limit.saturating_mul(2)).on_upgrade(move |socket| {
        state.connections.track_future(connection::serve(
            state.hub,
            WebSocketFrames(socket),
            state.shutdown,
            Arc::new(access),
            state.accounts,
        ))
    })
}

pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    match state.hub.store().ping().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "database not reachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database not reachable\n").into_response()
        }
    }
}

/// `/metrics`: with `--metrics-token`, only for `Authorization: Bearer` that token; with
/// `--metrics-listen`, only on that address (the main router answers 404).
pub(crate) async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if state.security.metrics_elsewhere {
        return StatusCode::NOT_FOUND.into_response();
    }
    guarded_metrics(State(state), headers).await
}

pub(crate) async fn guarded_metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.security.metrics_token {
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        // Compared as hashes, so the time taken says nothing about the token.
        let hash = |t: &str| crate::accounts::secret::hash_token(t.trim());
        if given.is_none_or(|g| hash(g) != hash(expected)) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "the metrics token is required")
                .into_response();
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.hub.metrics().render()).into_response()
}

/// axum's WebSocket as the sync layer's [`Socket`].
struct WebSocketFrames(WebSocket);

impl Socket for WebSocketFrames {
    async fn recv(&mut self) -> Option<Result<Frame, String>> {
        let message = match self.0.recv().await? {
            Ok(message) => message,
            Err(e) => return Some(Err(e.to_string())),
        };
        Some(Ok(match message {
            Message::Binary(bytes) => Frame::Binary(bytes.into()),
            Message::Text(_) => Frame::Text,
            Message::Ping(_) => Frame::Ping,
            Message::Pong(_) => Frame::Pong,
            Message::Close(close) => Frame::Close(close.map(|c| (c.code, c.reason.to_string()))),
        }))
    }

    async fn send(&mut self, frame: Frame) -> Result<(), String> {
        let message = match frame {
            Frame::Binary(bytes) => Message::Binary(bytes.into()),
            Frame::Text => Message::Text(String::new().into()),
            Frame::Ping => Message::Ping(Default::default()),
            Frame::Pong => Message::Pong(Default::default()),
            Frame::Close(close) => {
                Message::Close(close.map(|(code, reason)| CloseFrame { code, reason: reason.into() }))
            }
        };
        self.0.send(message).await.map_err(|e| e.to_string())
    }
}
